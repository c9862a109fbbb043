//! `ferry status --config FILE`: the last runs recorded in the spool (when, result, sizes,
//! cloud usage) and what the spool still holds; `--prometheus` prints them as the metrics
//! file of `[metrics] textfile`; `--max-age AGE` is a cron/Nagios-style check.

use super::{Global, Outcome};
use crate::output::human;
use anyhow::Context;
use ferry_repo::retention::policy::KeepWithin;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The config file whose spool keeps the run records.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// How many runs to show.
    #[arg(long, short = 'n', default_value_t = 10)]
    pub last: usize,
    /// Print JSON on stdout.
    #[arg(long, conflicts_with_all = ["prometheus", "max_age"])]
    pub json: bool,
    /// Print the runs as Prometheus metrics (what `[metrics] textfile` holds).
    #[arg(long, conflicts_with = "max_age")]
    pub prometheus: bool,
    /// Check: exit 1, saying why, unless the last run succeeded and the last successful run
    /// finished less than AGE ago (restic's units: 36h, 2d, 1d12h, 1m); one OK line otherwise.
    #[arg(long, value_name = "AGE")]
    pub max_age: Option<KeepWithin>,
}

pub fn run(_g: &Global, a: &StatusArgs) -> anyhow::Result<Outcome> {
    let cfg = super::load_config(&a.config)?;
    let b = cfg
        .backup
        .as_ref()
        .with_context(|| format!("config file {}: no [backup] section", a.config.display()))?
        .plan()?;
    if let Some(max) = &a.max_age {
        let st = ferry_run::spool::status(&b.spool, usize::MAX)?;
        let now = time::UtcDateTime::now();
        return Ok(match ferry_run::staleness::check(&st.runs, max, now) {
            Ok(line) => {
                println!("{line}");
                Outcome::Ok
            }
            Err(why) => {
                println!("FAIL: {why}");
                Outcome::Failed
            }
        });
    }
    if a.prometheus {
        let st = ferry_run::spool::status(&b.spool, usize::MAX)?;
        print!("{}", ferry_run::metrics::render(&st));
        return Ok(Outcome::Ok);
    }
    let st = ferry_run::spool::status(&b.spool, a.last)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(Outcome::Ok);
    }
    if st.runs.is_empty() {
        println!("No backup runs recorded in {} yet.", st.spool);
    } else {
        println!(
            "{:<20} {:<11} {:<8} {:>10} {:>10} {:>5} {:>6} {:>7}  error",
            "finished", "result", "snapshot", "total", "new", "PUTs", "λ", "box s"
        );
    }
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let n = |v: &serde_json::Value| v.as_u64();
    for r in &st.runs {
        let finished = s(&r["finished"]);
        let snap = s(&r["snapshot"]);
        println!(
            "{:<20} {:<11} {:<8} {:>10} {:>10} {:>5} {:>6} {:>7}  {}",
            finished.get(..19).unwrap_or(&finished),
            s(&r["result"]),
            snap.get(..8).unwrap_or(&snap),
            n(&r["bytes"]).map(human).unwrap_or_else(|| "-".into()),
            n(&r["new_bytes"]).map(human).unwrap_or_else(|| "-".into()),
            n(&r["usage"]["s3_put_requests"]).unwrap_or(0),
            n(&r["usage"]["lambda_invocations"]).unwrap_or(0),
            n(&r["usage"]["instance_seconds"]).unwrap_or(0),
            s(&r["error"]).lines().next().unwrap_or(""),
        );
    }
    if st.waiting_bytes > 0 {
        println!(
            "The spool holds {} not uploaded yet; the next run uploads it.",
            human(st.waiting_bytes)
        );
    }
    Ok(Outcome::Ok)
}
