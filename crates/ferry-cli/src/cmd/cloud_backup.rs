//! `ferry backup --config FILE` through the cloud (the file has `[backup]` and `[cloud]`):
//!
//! 1. collect every source and pack it into the spool (no jump box exists yet);
//! 2. ask ferry-build for a jump box that accepts a client key made for this run;
//! 3. connect with the pinned host key, retrying (bounded) until the box is ready;
//! 4. upload packs, then index objects, then the snapshot last (with the run's usage);
//! 5. ask ferry-clean to remove the box, and report.
//!
//! Cleanup is guaranteed: on any error after step 2, and on SIGINT/SIGTERM at any point,
//! ferry-clean is invoked for the session before the process exits. A signal during step 2
//! waits (bounded) for ferry-build's answer so that its box can be removed. If ferry-clean
//! fails too, the message says so and that the box's own timer and the hourly sweep remove it.
//! What the spool holds survives every interruption; the next run uploads it first.

use crate::cli::{BackupArgs, Global, Outcome};
use crate::cloud::{Functions, Session};
use crate::config::{BackupPlan, CloudPlan, FerryConfig};
use crate::spool::{Held, Spool, lock};
use anyhow::Context;
use ferry_collect::CollectReport;
use ferry_repo::storage::Storage;
use ferry_repo::{BackupOptions, BackupSession, Repository, RunUsage, SnapshotInfo};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a signal handler waits for ferry-build's answer, and for a running ferry-clean.
const BUILD_WAIT: Duration = Duration::from_secs(180);
const CLEAN_WAIT: Duration = Duration::from_secs(150);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Collecting,
    Provisioning,
    /// A jump box exists for this session.
    Active(String),
    Cleaning,
    Done,
}

struct Shared {
    phase: Mutex<Phase>,
    changed: Condvar,
    stop: AtomicBool,
    cloud: CloudPlan,
    spool: PathBuf,
    started: String,
    usage: Mutex<RunUsage>,
    quiet: bool,
}

impl Shared {
    fn set(&self, p: Phase) {
        *lock(&self.phase) = p;
        self.changed.notify_all();
    }

    /// Take the active session for cleaning (whoever takes it cleans it, exactly once).
    fn take_active(&self) -> Option<String> {
        let mut ph = lock(&self.phase);
        if let Phase::Active(s) = &*ph {
            let s = s.clone();
            *ph = Phase::Cleaning;
            Some(s)
        } else {
            None
        }
    }

    fn say(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }
}

/// Invoke ferry-clean for `session` on a runtime of its own (usable from the signal thread).
/// Returns a sentence for the user.
fn clean(shared: &Shared, session: &str, expires: Option<&str>) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    let plan = shared.cloud.clone();
    let r = rt.block_on(async {
        let f = Functions::new(&plan).await;
        tokio::time::timeout(CLEAN_WAIT, f.clean(session)).await
    });
    lock(&shared.usage).lambda_invocations += 1;
    let later = match expires {
        Some(t) => format!("its own timer (at {t}) and the hourly sweep will remove it"),
        None => "its own timer and the hourly sweep will remove it".to_string(),
    };
    match r {
        Ok(Ok(())) => Ok(format!("jump box of session {session} removed")),
        Ok(Err(e)) => Err(format!(
            "could not remove the jump box of session {session}: {e:#}; {later}"
        )),
        Err(_) => Err(format!(
            "{} did not answer within {} s for session {session}; {later}",
            plan.clean_function,
            CLEAN_WAIT.as_secs()
        )),
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The signal thread: SIGINT/SIGTERM stop the run; a jump box that exists is removed first.
fn watch_signals(shared: Arc<Shared>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing the SIGINT/SIGTERM handler")?;
    std::thread::Builder::new()
        .name("ferry-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                on_signal(&shared, sig);
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

fn on_signal(shared: &Shared, sig: i32) -> ! {
    let name = if sig == signal_hook::consts::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    shared.stop.store(true, Ordering::SeqCst);
    eprintln!("ferry: {name}: stopping the backup");
    let deadline = Instant::now() + BUILD_WAIT + CLEAN_WAIT;
    let mut note = String::from("nothing was running in the cloud");
    let mut ph = lock(&shared.phase);
    loop {
        match ph.clone() {
            Phase::Collecting | Phase::Done => break,
            Phase::Provisioning => {
                eprintln!(
                    "ferry: waiting for ferry-build to answer, so that its jump box can be removed"
                );
            }
            Phase::Active(session) => {
                *ph = Phase::Cleaning;
                drop(ph);
                note = match clean(shared, &session, None) {
                    Ok(m) => m,
                    Err(m) => m,
                };
                eprintln!("ferry: {note}");
                break;
            }
            Phase::Cleaning => {
                note = "the run's own cleanup finished".into();
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            note = "gave up waiting for the cloud: the jump box's timer and the hourly sweep \
                    will remove anything left"
                .into();
            eprintln!("ferry: {note}");
            break;
        }
        ph = shared
            .changed
            .wait_timeout(ph, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    let _ = Spool::record_run(
        &shared.spool,
        &json!({
            "started": shared.started,
            "finished": now_rfc3339(),
            "result": "interrupted",
            "error": format!("{name}; {note}"),
            "usage": *lock(&shared.usage),
        }),
    );
    eprintln!("ferry: stopped; the spool keeps what was not uploaded, the next run resumes it");
    std::process::exit(128 + sig)
}

pub fn run(g: &Global, a: &BackupArgs, config: &Path) -> anyhow::Result<Outcome> {
    let cfg = FerryConfig::load(config)?;
    let (bplan, cplan) = cfg.cloud_run(config)?;
    let spool = Spool::open(&bplan.spool, bplan.spool_max)?;
    let shared = Arc::new(Shared {
        phase: Mutex::new(Phase::Collecting),
        changed: Condvar::new(),
        stop: AtomicBool::new(false),
        cloud: cplan.clone(),
        spool: spool.dir().to_path_buf(),
        started: now_rfc3339(),
        usage: Mutex::new(RunUsage::default()),
        quiet: g.quiet,
    });
    watch_signals(shared.clone())?;
    let result = run_inner(g, &cfg, &bplan, &spool, &shared);
    if shared.stop.load(Ordering::SeqCst) {
        // The signal thread owns the end of this run (it may be removing the jump box).
        std::thread::sleep(BUILD_WAIT + CLEAN_WAIT + Duration::from_secs(5));
    }
    let usage = lock(&shared.usage).clone();
    match &result {
        Ok(r) => {
            Spool::record_run(spool.dir(), &record(&shared, r, &usage))?;
        }
        Err(e) => {
            let _ = Spool::record_run(
                spool.dir(),
                &json!({
                    "started": shared.started,
                    "finished": now_rfc3339(),
                    "result": "failed",
                    "error": format!("{e:#}"),
                    "usage": usage,
                }),
            );
        }
    }
    let r = result?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary_json(&r, &usage))?
        );
    }
    if !g.quiet {
        print_summary(&r, &usage);
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

/// What a run did.
struct RunResult {
    report: Option<CollectReport>,
    /// Collection failed (e.g. the spool is full): the run still uploaded what it held.
    collect_error: Option<String>,
    resumed: Held,
    snapshots: Vec<SnapshotInfo>,
    session: Option<Session>,
    partial: bool,
    clean_error: Option<String>,
}

fn run_inner(
    g: &Global,
    cfg: &FerryConfig,
    bplan: &BackupPlan,
    spool: &Spool,
    shared: &Arc<Shared>,
) -> anyhow::Result<RunResult> {
    let key = {
        let path = &bplan.key;
        super::read_any_key(path)
            .with_context(|| format!("reading the put key {}", path.display()))?
            .put_key()
    };
    let storage: Arc<dyn Storage> = spool.storage();
    let repo = Repository::open_or_init(storage, &key)
        .with_context(|| format!("opening the spool {}", spool.dir().display()))?;
    let resumed = spool.held()?;
    if !resumed.is_empty() {
        shared.say(&format!(
            "The spool still holds {} of an earlier run: they are uploaded with this one.",
            held_summary(&resumed)
        ));
    }

    // 1. Collect and pack into the spool.
    let mut opts = BackupOptions {
        cache_dir: super::cache_dir(g),
        host: bplan.host.clone(),
        ..BackupOptions::default()
    };
    if let Some(p) = bplan.pack_size {
        opts.pack_size = p;
    }
    shared.say(&format!(
        "Collecting {} sources into the spool {}…",
        ferry_collect::jobs_of(&cfg.sources)?.len(),
        spool.dir().display()
    ));
    let bar = Arc::new(crate::output::Bar::new(
        crate::output::interactive(g.quiet),
        None,
    ));
    let collected = ferry_collect::backup_then(
        &repo,
        &key,
        &cfg.sources,
        opts,
        bar.clone(),
        BackupSession::finish_unwritten,
    );
    bar.finish();
    let (report, collect_error, partial) = match collected {
        Ok((snapshot, report)) => {
            spool.save_pending(&snapshot)?;
            let partial = report.is_partial() || snapshot.is_partial();
            (Some(report), None, partial)
        }
        Err(e) => {
            let e = anyhow::Error::new(e).context("collecting the sources");
            if spool.held()?.is_empty() {
                return Err(e);
            }
            shared.say(&format!("{e:#}\nUploading what the spool holds anyway."));
            (None, Some(format!("{e:#}")), true)
        }
    };
    let held = spool.held()?;
    if shared.stop.load(Ordering::SeqCst) {
        anyhow::bail!("interrupted");
    }

    // 2. A jump box for this run.
    shared.set(Phase::Provisioning);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let functions = rt.block_on(Functions::new(&shared.cloud));
    let (private, public) = crate::cloud::session_key()?;
    shared.say(&format!(
        "Asking {} for a jump box (site {})…",
        shared.cloud.build_function, bplan.site
    ));
    let built = rt.block_on(functions.build(&bplan.site, &public));
    lock(&shared.usage).lambda_invocations += 1;
    let session = match built {
        Ok(s) => s,
        Err(e) => {
            shared.set(Phase::Done);
            return Err(e.context(format!(
                "no jump box; the spool keeps {} for the next run",
                super::human(held.bytes)
            )));
        }
    };
    let box_started = Instant::now();
    lock(&shared.usage).s3_get_requests += 1; // the box fetches the gate artifact
    shared.set(Phase::Active(session.session.clone()));
    if shared.stop.load(Ordering::SeqCst) {
        anyhow::bail!("interrupted");
    }
    shared.say(&format!(
        "ferry-build launched a jump box at {}:{} (session {}, expires {}).",
        session.host, session.port, session.session, session.expires
    ));

    // 3 + 4. Connect and upload; whatever happens, 5. remove the box.
    let uploaded = upload(&private, &session, bplan, &key, spool, shared);
    let clean_error = match shared.take_active() {
        Some(s) => {
            shared.say(&format!(
                "Asking {} to remove the jump box…",
                functions.clean_function()
            ));
            let r = clean(shared, &s, Some(&session.expires));
            lock(&shared.usage).instance_seconds = box_started.elapsed().as_secs().max(1);
            shared.set(Phase::Done);
            match r {
                Ok(m) => {
                    shared.say(&m);
                    None
                }
                Err(m) => Some(m),
            }
        }
        None => None,
    };
    let snapshots = match uploaded {
        Ok(s) => s,
        Err(e) => {
            let e = e.context(format!(
                "uploading through session {} (the spool keeps what was not uploaded)",
                session.session
            ));
            return Err(match clean_error {
                Some(c) => e.context(c),
                None => e,
            });
        }
    };
    Ok(RunResult {
        report,
        collect_error,
        resumed,
        snapshots,
        session: Some(session),
        partial,
        clean_error,
    })
}

/// Write the session's client key and pinned host key, connect (retrying until the box is
/// ready, bounded by `cloud.connect_timeout`), upload everything the spool holds.
fn upload(
    private: &zeroize::Zeroizing<String>,
    session: &Session,
    bplan: &BackupPlan,
    key: &ferry_repo::PutKey,
    spool: &Spool,
    shared: &Shared,
) -> anyhow::Result<Vec<SnapshotInfo>> {
    let dir = tempfile::Builder::new()
        .prefix(".session-")
        .tempdir_in(spool.dir())
        .context("creating the session's key directory in the spool")?;
    let identity = dir.path().join("id_ed25519");
    ferry_cloud::infra::write_0600(&identity, private.as_bytes())?;
    let host_key = dir.path().join("host_key.pub");
    ferry_cloud::infra::write_0600(
        &host_key,
        format!("{}\n", session.host_key.trim()).as_bytes(),
    )?;
    let mut opts = ferry_remote::GateOptions::new(&identity, &host_key);
    opts.session = Some(session.session.clone());
    opts.ssh_config = shared.cloud.ssh_config.clone();
    // A new box refuses us for a while (sshd first runs with the AMI's own host keys and
    // without the session's key): retry everything but a gate refusal until connect_timeout,
    // 1 s doubling to at most 5 s between attempts.
    opts.attempts = 1000;
    opts.backoff = Duration::from_secs(1);
    opts.max_backoff = Duration::from_secs(5);
    opts.retry_budget = shared.cloud.connect_timeout;
    opts.ssh_debug = crate::output::ssh_debug();
    let host = if session.host.contains(':') {
        format!("[{}]", session.host)
    } else {
        session.host.clone()
    };
    let url = format!(
        "gate+ssh://{}@{host}:{}/{}",
        session.user, session.port, bplan.site
    );
    shared.say(&format!(
        "Connecting to the gate (up to {} s while the box boots)…",
        shared.cloud.connect_timeout.as_secs()
    ));
    let gate = ferry_remote::GateStorage::connect(&url, &opts)
        .with_context(|| format!("connecting to the jump box of session {}", session.session))?;
    let held = spool.held()?;
    shared.say(&format!("Uploading {}…", held_summary(&held)));
    let snapshots = spool.upload(&gate, key, &shared.usage, &shared.stop)?;
    gate.close()
        .with_context(|| format!("closing the gate session {}", session.session))?;
    Ok(snapshots)
}

fn sources_json(report: &CollectReport) -> Vec<serde_json::Value> {
    let mut v = super::sources::sources_json(report);
    for (j, s) in v.iter_mut().zip(&report.sources) {
        j["new_bytes"] = json!(s.new_bytes);
        j["dedup_ratio"] = json!(dedup_ratio(s.content_bytes, s.new_bytes));
    }
    v
}

/// The share of the bytes read that was already stored (0.0–1.0).
fn dedup_ratio(read: u64, new: u64) -> f64 {
    if read == 0 {
        return 1.0;
    }
    let r = 1.0 - (new as f64 / read as f64);
    (r.clamp(0.0, 1.0) * 1000.0).round() / 1000.0
}

fn summary_json(r: &RunResult, usage: &RunUsage) -> serde_json::Value {
    json!({
        "snapshots": r.snapshots.iter().map(|s| json!({
            "snapshot": s.id, "time": s.snapshot.time, "partial": s.snapshot.is_partial(),
            "stats": s.snapshot.stats,
        })).collect::<Vec<_>>(),
        "partial": r.partial,
        "collect_error": r.collect_error,
        "sources": r.report.as_ref().map(sources_json).unwrap_or_default(),
        "resumed": {"packs": r.resumed.packs, "indexes": r.resumed.indexes,
                    "snapshots": r.resumed.snapshots, "bytes": r.resumed.bytes},
        "session": r.session.as_ref().map(|s| json!({"session": s.session, "host": s.host, "expires": s.expires})),
        "usage": usage,
        "clean_error": r.clean_error,
    })
}

fn record(shared: &Shared, r: &RunResult, usage: &RunUsage) -> serde_json::Value {
    let last = r.snapshots.last();
    let result = if r.clean_error.is_some() || r.collect_error.is_some() {
        "failed"
    } else if r.partial {
        "partial"
    } else {
        "ok"
    };
    json!({
        "started": shared.started,
        "finished": now_rfc3339(),
        "result": result,
        "error": r.collect_error.clone().or_else(|| r.clean_error.clone()),
        "snapshot": last.map(|s| s.id.clone()),
        "session": r.session.as_ref().map(|s| s.session.clone()),
        "files": last.map(|s| s.snapshot.stats.files),
        "bytes": last.map(|s| s.snapshot.stats.bytes),
        "bytes_read": last.map(|s| s.snapshot.stats.bytes_read),
        "new_bytes": last.map(|s| s.snapshot.stats.new_bytes),
        "sources": r.report.as_ref().map(sources_json).unwrap_or_default(),
        "usage": usage,
    })
}

fn print_summary(r: &RunResult, u: &RunUsage) {
    use super::human;
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
                dedup_ratio(s.content_bytes, s.new_bytes) * 100.0
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
            super::count(st.files, "file"),
            human(st.bytes),
            human(st.bytes_read),
            human(st.new_bytes),
            human(st.stored_bytes),
            super::count(st.packs, "pack")
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
        super::count(h.packs, "pack"),
        super::count(h.indexes, "index object"),
        super::count(h.snapshots, "snapshot"),
        super::human(h.bytes)
    )
}
