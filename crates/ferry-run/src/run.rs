//! The cloud run (the config file has `[backup]` and `[cloud]`):
//!
//! 1. collect every source and pack it into the spool (no jump box exists yet);
//! 2. ask ferry-build for a jump box that accepts a client key made for this run;
//! 3. connect with the pinned host key, retrying (bounded) until the box is ready;
//! 4. upload packs, then index objects, then the snapshot last (with the run's usage);
//! 5. ask ferry-clean to remove the box, and report.
//!
//! Cleanup is guaranteed: on any error after step 2, and when [`Cancel::interrupt`] is
//! called at any point, ferry-clean is invoked for the session (exactly once). An interrupt
//! during step 2 waits (bounded) for ferry-build's answer so that its box can be removed. If
//! ferry-clean fails too, the message says so and that the box's own timer and the hourly
//! sweep remove it. What the spool holds survives every interruption; the next run uploads it
//! first. Every run ends with one line in the spool's `runs.jsonl`.

use crate::cloud::Cloud;
use crate::config::BackupPlan;
use crate::error::{Context, Error, error_chain};
use crate::format::human;
use crate::lambda::{Session, session_key};
use crate::ops::Ops;
use crate::report::{RunReport, run_sources_json};
use crate::spool::{Held, Spool, lock};
use ferry_collect::SourcesConfig;
use ferry_repo::progress::Progress;
use ferry_repo::storage::Storage;
use ferry_repo::{BackupOptions, BackupSession, PutKey, Repository, RunUsage, SnapshotInfo};
use serde_json::json;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long an interrupt waits for ferry-build's answer, and for a running ferry-clean.
const BUILD_WAIT: Duration = Duration::from_secs(180);
const CLEAN_WAIT: Duration = Duration::from_secs(150);
/// The longest an interrupt takes to remove the run's jump box: both waits. The systemd
/// units give a stop this much and more (`TimeoutStopSec`, [`crate::schedule`]), so systemd
/// never SIGKILLs a run that is still removing its box.
pub const INTERRUPT_BUDGET: Duration =
    Duration::from_secs(BUILD_WAIT.as_secs() + CLEAN_WAIT.as_secs());

/// What the run tells its caller while it goes. The `ferry` binary prints these; an
/// interrupt's events come from the thread that called [`Cancel::interrupt`].
#[derive(Debug)]
pub enum Event<'a> {
    /// The spool still holds this much of an earlier run.
    Resuming(&'a Held),
    /// Collection into the spool starts.
    Collecting {
        /// Number of sources in the config's `[sources]`.
        sources: usize,
        /// Spool directory collected into.
        spool: &'a Path,
    },
    /// Collection failed (the full error chain); what the spool holds is uploaded anyway.
    CollectFailed(&'a str),
    /// ferry-build is asked for a jump box.
    Building {
        /// Name of the build function called.
        function: &'a str,
        /// The repository site the box is built for.
        site: &'a str,
    },
    /// ferry-build answered.
    Launched(&'a Session),
    /// Connecting to the new box's gate, for up to `timeout`.
    Connecting {
        /// The configured `cloud.connect_timeout`.
        timeout: Duration,
    },
    /// The upload of this much starts.
    Uploading(&'a Held),
    /// The pending snapshot(s) could reuse packs a prune has since moved out of the bucket:
    /// they were dropped, and the sources are packed again within this session.
    Repacking {
        /// Pending snapshots dropped.
        stale: usize,
        /// Packs the spool's ledger listed that the bucket no longer has.
        missing_packs: usize,
    },
    /// ferry-clean is asked to remove the box.
    Cleaning {
        /// Name of the clean function called.
        function: &'a str,
    },
    /// ferry-clean removed it (a sentence).
    Cleaned(&'a str),
    /// A run before this one ended without removing its jump box (killed, or the machine
    /// lost power): ferry-clean is asked to remove that session's box first.
    LeftBehind(&'a str),
    /// What became of it (a sentence): removed, or why not (the box's own timer and the
    /// six-hourly sweep remain).
    LeftBehindNote(&'a str),
    /// An interrupt arrived (`signal` names it).
    Stopping {
        /// The signal's name as the caller gave it (e.g. `SIGINT`).
        signal: &'a str,
    },
    /// The interrupt waits for ferry-build's answer, to remove its box.
    WaitingForBuild,
    /// What the interrupt did about the cloud (a sentence).
    StopNote(&'a str),
    /// The interrupt is done; the spool keeps what was not uploaded.
    Stopped,
    /// A `[hooks]` command starts (its output goes to stderr).
    Hook {
        /// `run-before`, `run-after`, `run-failed` or `run-finally`.
        hook: &'a str,
        /// Its program.
        program: &'a str,
    },
    /// Something around the run failed without failing it (a ping, a hook, the metrics
    /// file); also recorded in the run's `warnings`.
    Warning(&'a str),
}

/// The run's progress sink.
pub trait RunProgress: Send + Sync {
    /// Something happened.
    fn event(&self, event: Event<'_>);
    /// Collection starts: the engine's progress for it.
    fn collection(&self) -> Arc<dyn Progress>;
    /// Collection ended.
    fn collection_done(&self);
    /// The run ended (also when it failed or was interrupted): `summary` is its record in
    /// `runs.jsonl`, plus, for a run that uploaded, the snapshots, session and what it
    /// resumed ([`RunReport::summary_json`]).
    fn finished(&self, _summary: &serde_json::Value) {}
}

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
    /// Set once an interrupt has finished (cleaned, recorded).
    stopped: Mutex<bool>,
    stopped_changed: Condvar,
    cloud: Arc<dyn Cloud>,
    spool: PathBuf,
    started: String,
    usage: Mutex<RunUsage>,
    /// Each source of this run's collection, once it is done (failed runs record them too).
    sources: Mutex<Option<serde_json::Value>>,
    ops: Ops,
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

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The end of every run: the hooks and the end ping, the record in `runs.jsonl`, the
    /// metrics file, the caller's summary (`extra`: what a successful run adds to it).
    fn finish(
        &self,
        mut record: serde_json::Value,
        extra: Option<serde_json::Value>,
        progress: &dyn RunProgress,
    ) -> Result<(), Error> {
        if record.get("sources").is_none()
            && let Some(s) = lock(&self.sources).clone()
        {
            record["sources"] = s;
        }
        self.ops.after(&mut record, progress);
        let recorded = Spool::record_run(&self.spool, &record);
        self.ops.write_metrics(&self.spool, progress);
        let summary = crate::jsonl::merge_summary(record, extra);
        progress.finished(&summary);
        recorded
    }

    /// Invoke ferry-clean for `session`. Returns a sentence for the user.
    fn clean(&self, session: &str, expires: Option<&str>) -> Result<String, String> {
        let r = self.cloud.clean(session, CLEAN_WAIT);
        lock(&self.usage).lambda_invocations += 1;
        let later = match expires {
            Some(t) => format!("its own timer (at {t}) and the six-hourly sweep will remove it"),
            None => "its own timer and the six-hourly sweep will remove it".to_string(),
        };
        match r {
            Ok(()) => Ok(format!("jump box of session {session} removed")),
            Err(Error::Timeout { function, secs }) => Err(format!(
                "{function} did not answer within {secs} s for session {session}; {later}"
            )),
            Err(e) => Err(format!(
                "could not remove the jump box of session {session}: {}; {later}",
                error_chain(&e)
            )),
        }
    }
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Stops a run from another thread (the `ferry` binary calls it from its SIGINT/SIGTERM
/// handler). Cloning it is cheap.
#[derive(Clone)]
pub struct Cancel(Arc<Shared>);

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel")
            .field("stop", &self.0.stopping())
            .finish_non_exhaustive()
    }
}

impl Cancel {
    /// Stop the run: a jump box that exists is removed first (a run asking ferry-build for one
    /// is waited for, bounded, so that its box can be removed), then the run is recorded as
    /// interrupted by `signal`. Returns when that is done; the run itself then ends with
    /// [`Error::Interrupted`]. The caller exits.
    pub fn interrupt(&self, signal: &str, progress: &dyn RunProgress) {
        let shared = &self.0;
        shared.stop.store(true, Ordering::SeqCst);
        progress.event(Event::Stopping { signal });
        let deadline = Instant::now() + INTERRUPT_BUDGET;
        let mut note = String::from("nothing was running in the cloud");
        let mut ph = lock(&shared.phase);
        loop {
            match ph.clone() {
                Phase::Collecting | Phase::Done => break,
                Phase::Provisioning => progress.event(Event::WaitingForBuild),
                Phase::Active(session) => {
                    *ph = Phase::Cleaning;
                    drop(ph);
                    note = match shared.clean(&session, None) {
                        Ok(m) => {
                            let _ = crate::spool::forget_session(&shared.spool);
                            m
                        }
                        Err(m) => m,
                    };
                    progress.event(Event::StopNote(&note));
                    break;
                }
                Phase::Cleaning => {
                    note = "the run's own cleanup finished".into();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                note = "gave up waiting for the cloud: the jump box's timer and the six-hourly \
                        sweep will remove anything left"
                    .into();
                progress.event(Event::StopNote(&note));
                break;
            }
            ph = shared
                .changed
                .wait_timeout(ph, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let record = json!({
            "started": shared.started,
            "finished": now_rfc3339(),
            "result": "interrupted",
            "error": format!("{signal}; {note}"),
            "usage": *lock(&shared.usage),
        });
        let _ = shared.finish(record, None, progress);
        progress.event(Event::Stopped);
        *lock(&shared.stopped) = true;
        shared.stopped_changed.notify_all();
    }

    /// Whether [`Cancel::interrupt`] was called.
    pub fn is_interrupted(&self) -> bool {
        self.0.stopping()
    }

    /// Wait (at most `max`) until an interrupt has finished; whether it has.
    fn wait_stopped(&self, max: Duration) -> bool {
        let done = lock(&self.0.stopped);
        let (done, _) = self
            .0
            .stopped_changed
            .wait_timeout_while(done, max, |d| !*d)
            .unwrap_or_else(|p| p.into_inner());
        *done
    }
}

/// What a run takes besides its plan.
pub struct RunInput<'a> {
    /// The `[sources]` to collect.
    pub sources: &'a SourcesConfig,
    /// The engine's cache directory (`None`: the default).
    pub cache_dir: Option<PathBuf>,
    /// Reads the put key at `[backup] key` (the caller may ask for a passphrase).
    #[allow(clippy::type_complexity)]
    pub put_key: &'a dyn Fn(&Path) -> Result<PutKey, Box<dyn std::error::Error + Send + Sync>>,
}

/// One cloud run on an open, locked spool.
pub struct CloudRun {
    plan: BackupPlan,
    spool: Spool,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CloudRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudRun")
            .field("site", &self.plan.site)
            .field("spool", &self.spool)
            .finish_non_exhaustive()
    }
}

impl CloudRun {
    /// Open and lock the plan's spool (a second run on it is refused); the run starts now.
    pub fn open(plan: BackupPlan, cloud: Arc<dyn Cloud>) -> Result<CloudRun, Error> {
        Self::open_with(plan, cloud, Ops::default())
    }

    /// [`CloudRun::open`] with the config's `[metrics]`, `[ping]` and `[hooks]`.
    pub fn open_with(plan: BackupPlan, cloud: Arc<dyn Cloud>, ops: Ops) -> Result<CloudRun, Error> {
        let spool = Spool::open(&plan.spool, plan.spool_max)?;
        let shared = Arc::new(Shared {
            phase: Mutex::new(Phase::Collecting),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            stopped: Mutex::new(false),
            stopped_changed: Condvar::new(),
            cloud,
            spool: spool.dir().to_path_buf(),
            started: now_rfc3339(),
            usage: Mutex::new(RunUsage::default()),
            sources: Mutex::new(None),
            ops,
        });
        Ok(CloudRun {
            plan,
            spool,
            shared,
        })
    }

    /// The handle that stops this run.
    pub fn cancel(&self) -> Cancel {
        Cancel(self.shared.clone())
    }

    /// The spool's directory.
    pub fn spool_dir(&self) -> &Path {
        self.spool.dir()
    }

    /// The start ping and `run-before` (failing, it skips the run); collect, spool, build,
    /// upload, clean; the end hooks and ping, the record in `runs.jsonl`, the metrics file.
    /// After an interrupt, waits for it to finish and returns [`Error::Interrupted`] (the
    /// interrupt recorded the run).
    pub fn run(
        &self,
        input: &RunInput<'_>,
        progress: &dyn RunProgress,
    ) -> Result<RunReport, Error> {
        let shared = &self.shared;
        let result = match shared.ops.before(progress) {
            Ok(()) => self.run_inner(input, progress),
            Err(e) => Err(e),
        };
        if shared.stopping() {
            // The interrupt owns the end of this run (it may be removing the jump box).
            if self
                .cancel()
                .wait_stopped(INTERRUPT_BUDGET + Duration::from_secs(5))
            {
                return Err(Error::Interrupted);
            }
        }
        let usage = lock(&shared.usage).clone();
        match result {
            Ok(mut r) => {
                r.usage = usage;
                let record = r.record(&shared.started, &now_rfc3339());
                shared.finish(record, Some(r.summary_json()), progress)?;
                Ok(r)
            }
            Err(e) => {
                let record = json!({
                    "started": shared.started,
                    "finished": now_rfc3339(),
                    "result": "failed",
                    "error": error_chain(&e),
                    "usage": usage,
                });
                let _ = shared.finish(record, None, progress);
                Err(e)
            }
        }
    }

    fn run_inner(
        &self,
        input: &RunInput<'_>,
        progress: &dyn RunProgress,
    ) -> Result<RunReport, Error> {
        let (bplan, spool, shared) = (&self.plan, &self.spool, &self.shared);
        let key = (input.put_key)(&bplan.key)
            .map_err(Error::Caller)
            .with_context(|| format!("reading the put key {}", bplan.key.display()))?;
        let storage: Arc<dyn Storage> = spool.storage();
        let repo = Repository::open_or_init(storage, &key)
            .with_context(|| format!("opening the spool {}", spool.dir().display()))?;
        let resumed = spool.held()?;
        if !resumed.is_empty() {
            progress.event(Event::Resuming(&resumed));
        }

        // 1. Collect and pack into the spool.
        let mut opts = BackupOptions {
            cache_dir: input.cache_dir.clone(),
            host: bplan.host.clone(),
            ..BackupOptions::default()
        };
        if let Some(p) = bplan.pack_size {
            opts.pack_size = p;
        }
        let collect = || {
            progress.event(Event::Collecting {
                sources: ferry_collect::jobs_of(input.sources)?.len(),
                spool: spool.dir(),
            });
            let r = ferry_collect::backup_then(
                &repo,
                &key,
                input.sources,
                opts.clone(),
                progress.collection(),
                BackupSession::finish_unwritten,
            );
            progress.collection_done();
            Ok::<_, Error>(r)
        };
        let collected = collect()?;
        let (report, collect_error, partial) = match collected {
            Ok((snapshot, report)) => {
                *lock(&shared.sources) = Some(json!(run_sources_json(&report)));
                spool.save_pending(&snapshot)?;
                let partial = report.is_partial() || snapshot.is_partial();
                (Some(report), None, partial)
            }
            Err(e) => {
                let e = Error::from(e).context("collecting the sources");
                if spool.held()?.is_empty() {
                    return Err(e);
                }
                let chain = error_chain(&e);
                progress.event(Event::CollectFailed(&chain));
                (None, Some(chain), true)
            }
        };
        let held = spool.held()?;
        if shared.stopping() {
            return Err(Error::Interrupted);
        }

        // 2. A jump box for this run. First the box of a run that died without removing
        // its own (SIGKILL, power loss): it would hold the installation's session slot until
        // it expires.
        if let Some(old) = spool.session_left()? {
            progress.event(Event::LeftBehind(&old));
            let note = match shared.clean(&old, None) {
                Ok(m) => {
                    crate::spool::forget_session(spool.dir())?;
                    m
                }
                Err(m) => m,
            };
            progress.event(Event::LeftBehindNote(&note));
        }
        shared.set(Phase::Provisioning);
        let (private, public) = session_key()?;
        progress.event(Event::Building {
            function: shared.cloud.build_function(),
            site: &bplan.site,
        });
        let built = shared.cloud.build(&bplan.site, &public);
        lock(&shared.usage).lambda_invocations += 1;
        let session = match built {
            Ok(s) => s,
            Err(e) => {
                shared.set(Phase::Done);
                return Err(e.context(format!(
                    "no jump box; the spool keeps {} for the next run",
                    human(held.bytes)
                )));
            }
        };
        let box_started = Instant::now();
        lock(&shared.usage).s3_get_requests += 1; // the box fetches the gate artifact
        // Noted before the phase says a box exists, so that an interrupt's cleanup (which
        // forgets the note) always comes after it.
        if let Err(e) = spool.note_session(&session.session) {
            // Not fatal: this run still removes its box; only a run that dies before it
            // does would leave the box to its timer and the sweep.
            progress.event(Event::Warning(&format!(
                "could not note session {} in the spool: {}",
                session.session,
                error_chain(&e)
            )));
        }
        shared.set(Phase::Active(session.session.clone()));
        if shared.stopping() {
            return Err(Error::Interrupted);
        }
        progress.event(Event::Launched(&session));

        // 3 + 4. Connect and upload; whatever happens, 5. remove the box.
        let repack = || -> Result<(), Error> {
            let (snapshot, _) =
                collect()?.map_err(|e| Error::from(e).context("packing the sources again"))?;
            spool.save_pending(&snapshot)?;
            Ok(())
        };
        let uploaded = self.upload(&private, &session, &key, progress, &repack);
        let clean_error = match shared.take_active() {
            Some(s) => {
                progress.event(Event::Cleaning {
                    function: shared.cloud.clean_function(),
                });
                let r = shared.clean(&s, Some(&session.expires));
                if r.is_ok() {
                    crate::spool::forget_session(spool.dir())?;
                }
                lock(&shared.usage).instance_seconds = box_started.elapsed().as_secs().max(1);
                shared.set(Phase::Done);
                match r {
                    Ok(m) => {
                        progress.event(Event::Cleaned(&m));
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
        Ok(RunReport {
            report,
            collect_error,
            resumed,
            snapshots,
            session: Some(session),
            partial,
            clean_error,
            usage: RunUsage::default(),
        })
    }

    /// Write the session's client key and pinned host key, connect (retrying until the box
    /// is ready, bounded by `cloud.connect_timeout`), upload everything the spool holds.
    fn upload(
        &self,
        private: &zeroize::Zeroizing<String>,
        session: &Session,
        key: &PutKey,
        progress: &dyn RunProgress,
        repack: &dyn Fn() -> Result<(), Error>,
    ) -> Result<Vec<SnapshotInfo>, Error> {
        let (spool, shared) = (&self.spool, &self.shared);
        let dir = tempfile::Builder::new()
            .prefix(".session-")
            .tempdir_in(spool.dir())
            .context("creating the session's key directory in the spool")?;
        let identity = dir.path().join("id_ed25519");
        write_0600(&identity, private.as_bytes())?;
        let host_key = dir.path().join("host_key.pub");
        write_0600(
            &host_key,
            format!("{}\n", session.host_key.trim()).as_bytes(),
        )?;
        progress.event(Event::Connecting {
            timeout: shared.cloud.connect_timeout(),
        });
        let gate = shared
            .cloud
            .connect(session, &self.plan.site, &identity, &host_key)?;
        let held = spool.held()?;
        progress.event(Event::Uploading(&held));
        let mut up = spool.upload(&*gate, key, &shared.usage, &shared.stop)?;
        if up.stale > 0 {
            // A prune took packs the spooled snapshot may reuse: pack again, in this session.
            progress.event(Event::Repacking {
                stale: up.stale,
                missing_packs: up.missing_packs,
            });
            repack()?;
            let again = spool.upload(&*gate, key, &shared.usage, &shared.stop)?;
            if again.stale > 0 {
                return Err(Error::Message(format!(
                    "packs disappeared from the bucket again while this run re-packed ({} missing); the next run packs again",
                    again.missing_packs
                )));
            }
            up.snapshots.extend(again.snapshots);
        }
        let snapshots = up.snapshots;
        gate.close()
            .with_context(|| format!("closing the gate session {}", session.session))?;
        Ok(snapshots)
    }
}

/// Create `path` (it must not exist) with mode 0600 and `bytes`, durably.
fn write_0600(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}
