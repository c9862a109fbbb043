//! `ferry backup --config FILE` through the cloud (the file has `[backup]` and `[cloud]`):
//! the run is `ferry-run`'s; this module installs the SIGINT/SIGTERM handler that stops it
//! (the library removes the jump box first), prints its progress and its report, and turns
//! the report into an exit code.

use super::backup::BackupArgs;
use super::{Global, Outcome};
use crate::output::{Bar, count, human, interactive};
use ferry_repo::RunUsage;
use ferry_run::{
    AwsCloud, Cancel, CloudRun, Event, Held, JsonLines, Ops, RunInput, RunProgress, RunReport,
};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Prints the run's events on stderr (`-q`: only an interrupt's) and shows the bar.
struct Printer {
    quiet: bool,
    bar: Mutex<Option<Arc<Bar>>>,
}

impl RunProgress for Printer {
    fn event(&self, e: Event<'_>) {
        let line = match e {
            // An interrupt is always reported.
            Event::Stopping { signal } => {
                return eprintln!("ferry: {signal}: stopping the backup");
            }
            Event::WaitingForBuild => {
                return eprintln!(
                    "ferry: waiting for ferry-build to answer, so that its jump box can be removed"
                );
            }
            Event::StopNote(note) => return eprintln!("ferry: {note}"),
            Event::Stopped => {
                return eprintln!(
                    "ferry: stopped; the spool keeps what was not uploaded, the next run resumes it"
                );
            }
            Event::Resuming(h) => format!(
                "The spool still holds {} of an earlier run: they are uploaded with this one.",
                held_summary(h)
            ),
            Event::Collecting { sources, spool } => format!(
                "Collecting {sources} sources into the spool {}…",
                spool.display()
            ),
            Event::CollectFailed(e) => format!("{e}\nUploading what the spool holds anyway."),
            Event::Building { function, site } => {
                format!("Asking {function} for a jump box (site {site})…")
            }
            Event::Launched(s) => format!(
                "ferry-build launched a jump box at {}:{} (session {}, expires {}).",
                s.host, s.port, s.session, s.expires
            ),
            Event::Connecting { timeout } => format!(
                "Connecting to the gate (up to {} s while the box boots)…",
                timeout.as_secs()
            ),
            Event::Uploading(h) => format!("Uploading {}…", held_summary(h)),
            Event::Repacking {
                stale,
                missing_packs,
            } => format!(
                "A prune removed {missing_packs} pack(s) the spooled snapshot(s) could reuse; dropped {stale} pending snapshot(s), packing the sources again…"
            ),
            Event::Cleaning { function } => format!("Asking {function} to remove the jump box…"),
            Event::Cleaned(m) => m.to_string(),
            Event::LeftBehind(session) => format!(
                "A run before this one ended without removing its jump box (session {session}): asking ferry-clean to remove it first…"
            ),
            Event::LeftBehindNote(m) => m.to_string(),
            Event::Hook { hook, program } => format!("Running the {hook} hook ({program})…"),
            Event::Warning(m) => {
                if !self.quiet {
                    eprintln!("warning: {m}");
                }
                return;
            }
        };
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    fn collection(&self) -> Arc<dyn ferry_repo::Progress> {
        let bar = Arc::new(Bar::new(interactive(self.quiet), None));
        *self.bar.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar.clone());
        bar
    }

    fn collection_done(&self) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            b.finish();
        }
    }
}

/// SIGINT/SIGTERM stop the run (a jump box that exists is removed first), then the process
/// exits with 128 + the signal.
fn watch_signals(cancel: Cancel, printer: Arc<dyn RunProgress>) -> anyhow::Result<()> {
    use anyhow::Context;
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing the SIGINT/SIGTERM handler")?;
    std::thread::Builder::new()
        .name("ferry-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                cancel.interrupt(name, &*printer);
                std::process::exit(128 + sig)
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

pub fn run(g: &Global, a: &BackupArgs, config: &Path) -> anyhow::Result<Outcome> {
    let cfg = super::load_config(config)?;
    let (bplan, cplan) = cfg.cloud_run(config)?;
    let ops = Ops::new(cfg.ops(config)?, &bplan.site);
    let cloud = Arc::new(AwsCloud::new(cplan, crate::output::ssh_debug()));
    let run = CloudRun::open_with(bplan, cloud, ops)?;
    let printer: Arc<dyn RunProgress> = Arc::new(Printer {
        quiet: g.quiet,
        bar: Mutex::new(None),
    });
    // --json: JSON lines on stdout (restic's convention), the human text stays on stderr.
    let printer: Arc<dyn RunProgress> = if a.json {
        Arc::new(JsonLines::new(Box::new(std::io::stdout()), Some(printer)))
    } else {
        printer
    };
    watch_signals(run.cancel(), printer.clone())?;
    let put_key = |p: &Path| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
        Ok(super::read_any_key(p)?.put_key())
    };
    let input = RunInput {
        sources: &cfg.sources,
        cache_dir: super::cache_dir(g),
        put_key: &put_key,
    };
    let r = match run.run(&input, &*printer) {
        Ok(r) => r,
        Err(e) if e.is_interrupted() => {
            // The signal thread exits once the jump box is removed and the run recorded.
            loop {
                std::thread::park();
            }
        }
        Err(e) => return Err(e.into()),
    };
    if !g.quiet {
        print_summary(&r, &r.usage);
    }
    if let Some(e) = &r.clean_error {
        anyhow::bail!(
            "the backup was uploaded{}, but {e}",
            r.snapshots
                .last()
                .map(|s| format!(" (snapshot {})", s.short_id()))
                .unwrap_or_default()
        );
    }
    if let Some(e) = &r.collect_error {
        anyhow::bail!("{e}; what the spool held was uploaded, run the backup again");
    }
    Ok(if r.partial {
        Outcome::Partial
    } else {
        Outcome::Ok
    })
}

fn print_summary(r: &RunReport, u: &RunUsage) {
    if let Some(rep) = &r.report {
        eprintln!("Sources:");
        for s in &rep.sources {
            let status = match &s.status {
                ferry_collect::SourceStatus::Ok => "ok".to_string(),
                ferry_collect::SourceStatus::Partial => {
                    format!("PARTIAL ({} unreadable)", s.errors.len())
                }
                ferry_collect::SourceStatus::Failed(m) => format!("FAILED: {m}"),
            };
            eprintln!(
                "  {:<14} {status}: {} entries, {} files read ({}), {} unchanged, {} new \
                 ({:.0}% already stored)",
                s.name,
                s.entries,
                s.files_read,
                human(s.content_bytes),
                s.files_unchanged,
                human(s.new_bytes),
                ferry_run::dedup_ratio(s.content_bytes, s.new_bytes) * 100.0
            );
            for (p, m) in s.errors.iter().take(10) {
                eprintln!("      {}: {m}", p.display());
            }
        }
    }
    for s in &r.snapshots {
        let st = &s.snapshot.stats;
        eprintln!(
            "Snapshot {} uploaded: {}, {} in total, {} read, {} new, stored as {} in {}.",
            s.short_id(),
            count(st.files, "file"),
            human(st.bytes),
            human(st.bytes_read),
            human(st.new_bytes),
            human(st.stored_bytes),
            count(st.packs, "pack")
        );
    }
    eprintln!(
        "Cloud usage: {} objects ({}) uploaded; S3 requests by the gate: {} PUT, {} LIST; by the \
         jump box: {} GET; {} Lambda invocations; jump box up {} s.",
        u.uploaded_objects,
        human(u.uploaded_bytes),
        u.s3_put_requests,
        u.s3_list_requests,
        u.s3_get_requests,
        u.lambda_invocations,
        u.instance_seconds
    );
    if let Some(e) = &r.clean_error {
        eprintln!("WARNING: {e}");
    }
}

/// `3 packs, 1 index object and 1 snapshot (1.2 MiB)`.
fn held_summary(h: &Held) -> String {
    format!(
        "{}, {} and {} ({})",
        count(h.packs, "pack"),
        count(h.indexes, "index object"),
        count(h.snapshots, "snapshot"),
        human(h.bytes)
    )
}
