//! What a run does around itself for the people who watch it (`[ping]`, `[hooks]`,
//! `[metrics]`): the start ping and `run-before` before the run; `run-after` or `run-failed`,
//! `run-finally` and the success or fail ping after it (the interrupt's end included); the
//! metrics file once the run is recorded. None of them fails the run: each failure is a
//! warning ([`crate::Event::Warning`]) and lands in the run's record (`warnings`) — except a
//! failing `run-before`, which skips the run.

use crate::config::OpsPlan;
use crate::error::Error;
use crate::hooks::{self, Hook};
use crate::metrics::{duration_seconds, render, succeeded, write_textfile};
use crate::ping::{PingKind, ping};
use crate::run::{Event, RunProgress};
use crate::spool::lock;
use ferry_contract::hooks as env;
use serde_json::Value;
use std::path::Path;
use std::sync::Mutex;

/// The `[metrics]`, `[ping]` and `[hooks]` of a run ([`crate::CloudRun::open_with`]).
#[derive(Debug, Default)]
pub struct Ops {
    plan: OpsPlan,
    site: String,
    warnings: Mutex<Vec<String>>,
}

impl Ops {
    /// The operations of `plan` for runs of `site`.
    pub fn new(plan: OpsPlan, site: &str) -> Ops {
        Ops {
            plan,
            site: site.to_string(),
            warnings: Mutex::new(Vec::new()),
        }
    }

    fn warn(&self, w: String, progress: &dyn RunProgress) {
        tracing::warn!("{w}");
        progress.event(Event::Warning(&w));
        lock(&self.warnings).push(w);
    }

    fn hook(
        &self,
        hook: Hook,
        vars: &[(&'static str, String)],
        progress: &dyn RunProgress,
    ) -> Result<(), String> {
        let Some(argv) = hook.command(&self.plan.hooks) else {
            return Ok(());
        };
        progress.event(Event::Hook {
            hook: hook.name(),
            program: argv.first().map(String::as_str).unwrap_or(""),
        });
        hooks::run(&self.plan.hooks, hook, vars).unwrap_or(Ok(()))
    }

    /// The start ping, then `run-before`: its failure skips the run (the error names the
    /// hook and its exit status).
    pub(crate) fn before(&self, progress: &dyn RunProgress) -> Result<(), Error> {
        if let Some(p) = &self.plan.ping {
            let body = format!("ferry backup of site {} started", self.site);
            if let Err(w) = ping(p, PingKind::Start, &body) {
                self.warn(w, progress);
            }
        }
        let vars = [(env::SITE, self.site.clone())];
        self.hook(Hook::Before, &vars, progress)
            .map_err(|e| Error::Message(format!("the backup did not run: {e}")))
    }

    /// After the run whose record is `record`: `run-after` (success) or `run-failed`, then
    /// `run-finally`, then the success or fail ping with the record as its body; the
    /// warnings of the whole run go into `record["warnings"]`.
    pub(crate) fn after(&self, record: &mut Value, progress: &dyn RunProgress) {
        let ok = succeeded(record);
        let vars = hook_vars(record, &self.site);
        for hook in [if ok { Hook::After } else { Hook::Failed }, Hook::Finally] {
            if let Err(w) = self.hook(hook, &vars, progress) {
                self.warn(w, progress);
            }
        }
        if let Some(p) = &self.plan.ping {
            let kind = if ok {
                PingKind::Success
            } else {
                PingKind::Fail
            };
            let mut with = record.clone();
            with["warnings"] = serde_json::json!(*lock(&self.warnings));
            let body = format!(
                "ferry backup of site {}: {}\n{}",
                self.site,
                record["result"].as_str().unwrap_or("unknown"),
                serde_json::to_string_pretty(&with).unwrap_or_default()
            );
            if let Err(w) = ping(p, kind, &body) {
                self.warn(w, progress);
            }
        }
        let w = lock(&self.warnings);
        if !w.is_empty() {
            record["warnings"] = serde_json::json!(*w);
        }
    }

    /// Write the metrics file (if configured) from the spool's run records.
    pub(crate) fn write_metrics(&self, spool: &Path, progress: &dyn RunProgress) {
        let Some(path) = &self.plan.metrics else {
            return;
        };
        let r = crate::spool::status(spool, usize::MAX)
            .and_then(|st| write_textfile(path, &render(&st)));
        if let Err(e) = r {
            self.warn(
                format!("writing the metrics file: {}", crate::error_chain(&e)),
                progress,
            );
        }
    }
}

/// A hook's environment from a run record (names in [`ferry_contract::hooks`]).
pub fn hook_vars(record: &Value, site: &str) -> Vec<(&'static str, String)> {
    let mut v = vec![
        (env::SITE, site.to_string()),
        (
            env::RESULT,
            if succeeded(record) {
                "success"
            } else {
                "failure"
            }
            .to_string(),
        ),
        (
            env::STATUS,
            record["result"].as_str().unwrap_or("unknown").to_string(),
        ),
    ];
    let s = |k: &str| record[k].as_str().map(str::to_string);
    let n = |v: &Value| v.as_u64().map(|n| n.to_string());
    for (name, value) in [
        (env::ERROR, s("error").map(|e| e.replace('\n', " "))),
        (env::SNAPSHOT, s("snapshot")),
        (env::FILES, n(&record["files"])),
        (env::BYTES_READ, n(&record["bytes_read"])),
        (env::BYTES_NEW, n(&record["new_bytes"])),
        (env::BYTES_UPLOADED, n(&record["usage"]["uploaded_bytes"])),
        (
            env::DURATION_SECONDS,
            duration_seconds(record).map(|d| d.to_string()),
        ),
        (env::STARTED, s("started")),
    ] {
        if let Some(value) = value {
            v.push((name, value));
        }
    }
    v
}
