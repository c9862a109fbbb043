//! The spool: where `ferry backup` packs a run before the jump box exists, and what it still
//! has to upload after an interruption.
//!
//! ```text
//! <spool>/lock          flock(2): one run at a time
//! <spool>/repo/         a local repository (config, packs/, index/) holding what is not uploaded yet
//! <spool>/pending/      snapshots packed but not uploaded (JSON, 0600; sealed only at upload,
//!                       when the run's cloud usage is known)
//! <spool>/uploaded      the ledger: `KIND NAME` of every object the gate acknowledged
//! <spool>/runs.jsonl    one line per run, for `ferry status`
//! <spool>/session       the session whose jump box this spool's run has and has not seen
//!                       removed yet (written when ferry-build answers, removed once
//!                       ferry-clean did): a run killed with SIGKILL or a power cut leaves it,
//!                       and the next run asks ferry-clean to remove that box first
//! ```
//!
//! [`SpoolStorage`] is the engine's storage during collection. It answers "already present"
//! for objects in the ledger and lists ledger packs together with spooled ones, so the
//! engine's cache keeps deduplicating against what was uploaded (the put key cannot list the
//! bucket). Every write is checked against the cap first: the spool never grows beyond
//! `backup.spool_max`; a full spool is a clear error and the run still uploads what it holds.

use crate::error::{Context, Error, bail};
use ferry_repo::format::ObjectKind;
use ferry_repo::keys::PutKey;
use ferry_repo::storage::{LocalDir, PendingPut, PutOutcome, Storage, StorageError};
use ferry_repo::{RunUsage, Snapshot, SnapshotInfo};
use std::collections::{BTreeSet, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Packs sent before waiting for the remote to confirm them (the gate pipelines 4 at a time).
const CONFIRM_BATCH: usize = 8;

/// What [`Spool::upload`] did.
#[derive(Debug, Default)]
pub struct Uploaded {
    /// The snapshots written, oldest first.
    pub snapshots: Vec<SnapshotInfo>,
    /// Pending snapshots not written because packs they may reuse are no longer in the
    /// bucket (a prune moved them to trash/): removed; the run must pack again (the ledger,
    /// and so the engine's cache, have forgotten those packs).
    pub stale: usize,
    /// How many packs the ledger listed that the bucket no longer has.
    pub missing_packs: usize,
}

/// An open, locked spool.
pub struct Spool {
    dir: PathBuf,
    storage: Arc<SpoolStorage>,
    _lock: File,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool").field("dir", &self.dir).finish()
    }
}

/// What the spool holds (objects still to upload).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Number of packs in the spool's repository, not yet uploaded.
    pub packs: u64,
    /// Number of index objects in the spool's repository, not yet uploaded.
    pub indexes: u64,
    /// Number of pending snapshots (`pending/*.json`) waiting for their upload.
    pub snapshots: u64,
    /// Bytes on disk of packs, indexes and pending snapshots together.
    pub bytes: u64,
}

impl Held {
    /// No pack, index or snapshot is waiting (`bytes` is not looked at).
    pub fn is_empty(&self) -> bool {
        self.packs + self.indexes + self.snapshots == 0
    }
}

fn mkdir(p: &Path) -> Result<(), Error> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .with_context(|| format!("creating spool directory {}", p.display()))
}

// `Spool::upload` lists `packs/` and then writes the pending snapshots, all within one jump-box
// session (its gate refuses every request once the session expires). Prune's shortest grace
// period must outlast that, with an hour to spare for a request in flight at expiry and for
// clocks (docs/RETENTION.md, design step 3).
const _: () = assert!(
    ferry_repo::retention::prune::MIN_GRACE_HOURS * 60
        >= ferry_contract::limits::MAX_SESSION_MINUTES_LIMIT as i64 + 60
);

impl Spool {
    /// Create (0700) and lock the spool; a second run on the same spool is refused.
    pub fn open(dir: &Path, cap: u64) -> Result<Spool, Error> {
        mkdir(dir)?;
        mkdir(&dir.join("repo"))?;
        mkdir(&dir.join("pending"))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join("lock"))
            .with_context(|| format!("opening {}", dir.join("lock").display()))?;
        let locked = ferry_repo::lockfile::lock_exclusive(&lock, ferry_repo::lockfile::LOCK_WAIT)
            .with_context(|| format!("locking {}", dir.join("lock").display()))?;
        if !locked {
            bail!(
                "spool {} is in use by another ferry backup run (its lock file is held)",
                dir.display()
            );
        }
        // Temporary files of a killed run: never objects, safe to remove under the lock.
        for sub in [
            "repo",
            "repo/packs",
            "repo/index",
            "repo/snapshots",
            "pending",
        ] {
            if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().starts_with(".tmp") {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        let ledger = read_ledger(&dir.join("uploaded"))?;
        let used = dir_size(&dir.join("repo")) + dir_size(&dir.join("pending"));
        let storage = Arc::new(SpoolStorage {
            local: LocalDir::new(dir.join("repo")),
            dir: dir.to_path_buf(),
            ledger: Mutex::new(ledger),
            used: Arc::new(AtomicU64::new(used)),
            cap,
        });
        Ok(Spool {
            dir: dir.to_path_buf(),
            storage,
            _lock: lock,
        })
    }

    /// The spool directory (as opened; holds `repo/`, `pending/`, `uploaded`, `lock`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The spool's storage, shared: the local repository the backup writes into.
    pub fn storage(&self) -> Arc<SpoolStorage> {
        self.storage.clone()
    }

    /// Objects waiting for upload.
    pub fn held(&self) -> Result<Held, Error> {
        let mut h = Held::default();
        for (kind, n) in [
            (ObjectKind::Pack, &mut h.packs),
            (ObjectKind::Index, &mut h.indexes),
        ] {
            *n = self.storage.local.list(kind)?.len() as u64;
        }
        h.snapshots = self.pending()?.len() as u64;
        h.bytes = waiting_bytes(&self.dir);
        Ok(h)
    }

    fn pending(&self) -> Result<Vec<PathBuf>, Error> {
        let dir = self.dir.join("pending");
        let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        v.sort();
        Ok(v)
    }

    /// Keep a packed run's snapshot until it is uploaded (written atomically, 0600).
    pub fn save_pending(&self, snapshot: &Snapshot) -> Result<PathBuf, Error> {
        let bytes = serde_json::to_vec(snapshot).context("encoding the pending snapshot")?;
        self.storage.reserve(bytes.len() as u64)?;
        let path = self
            .dir
            .join("pending")
            .join(format!("{:020}.json", snapshot.time_ns.max(0)));
        write_private(&path, &bytes)?;
        Ok(path)
    }

    /// Upload everything the spool holds through `remote`: `config` (once per repository),
    /// packs, then index objects, then the pending snapshots, oldest first, each sealed with
    /// `usage` filled in. Each acknowledged object is recorded in the ledger and removed from
    /// the spool at once, so an interruption loses nothing and repeats at most one object.
    pub fn upload(
        &self,
        remote: &dyn Storage,
        key: &PutKey,
        usage: &Mutex<RunUsage>,
        stop: &AtomicBool,
    ) -> Result<Uploaded, Error> {
        let s = &self.storage;
        let check_stop = || -> Result<(), Error> {
            if stop.load(Ordering::SeqCst) {
                bail!("interrupted: the upload stopped; the spool keeps what is not uploaded");
            }
            Ok(())
        };
        let put = |kind: ObjectKind, name: &str, bytes: &[u8]| -> Result<PutOutcome, Error> {
            let out = remote
                .put_if_absent(kind, name, bytes)
                .with_context(|| format!("uploading {}", kind.key(name)))?;
            count_upload(usage, bytes.len() as u64);
            if kind == ObjectKind::Config && out == PutOutcome::AlreadyPresent {
                // The gate compares a repeated config with the stored one (ListObjectsV2).
                lock(usage).s3_list_requests += 1;
            }
            s.record_uploaded(kind, name)?;
            Ok(out)
        };
        if !s.is_uploaded(ObjectKind::Config, "config") {
            check_stop()?;
            let bytes = s.local.get(ObjectKind::Config, "config")?;
            put(ObjectKind::Config, "config", &bytes)?;
        }
        // Packs may be pipelined by the remote (its `put` returns once a pack is sent): they are
        // recorded as uploaded, and removed from the spool, only after a barrier has confirmed
        // them, a batch at a time. An interruption re-sends at most one batch (answered
        // ALREADY_PRESENT for what had arrived).
        let mut names = s.local.list(ObjectKind::Pack)?;
        names.sort();
        for batch in names.chunks(CONFIRM_BATCH) {
            let mut sent = Vec::with_capacity(batch.len());
            for name in batch {
                check_stop()?;
                let bytes = s.local.get(ObjectKind::Pack, name)?;
                remote
                    .put_if_absent(ObjectKind::Pack, name, &bytes)
                    .with_context(|| format!("uploading {}", ObjectKind::Pack.key(name)))?;
                sent.push((name, bytes.len() as u64));
            }
            remote
                .barrier()
                .context("waiting for the gate to confirm the packs sent")?;
            for (name, len) in sent {
                count_upload(usage, len);
                s.record_uploaded(ObjectKind::Pack, name)?;
                s.remove_local(ObjectKind::Pack, name)?;
            }
        }
        let mut names = s.local.list(ObjectKind::Index)?;
        names.sort();
        for name in names {
            check_stop()?;
            let bytes = s.local.get(ObjectKind::Index, &name)?;
            put(ObjectKind::Index, &name, &bytes)?;
            s.remove_local(ObjectKind::Index, &name)?;
        }
        let mut written = Vec::new();
        // A pending snapshot may reuse any pack the ledger holds: the engine's cache was
        // reconciled against it when the run was packed, possibly days ago. A prune may have
        // moved some of them to trash/ since; list them now, within this session (a prune
        // deletes a moved pack only after a grace period longer than any session).
        let pending = self.pending()?;
        if !pending.is_empty() {
            check_stop()?;
            let listed: HashSet<String> = remote
                .list(ObjectKind::Pack)
                .context("listing the packs in the bucket before writing the snapshots")?
                .into_iter()
                .collect();
            lock(usage).s3_list_requests += (listed.len() as u64).div_ceil(1000).max(1);
            let missing: Vec<String> = lock(&s.ledger)
                .iter()
                .filter(|(k, n)| *k == ObjectKind::Pack && !listed.contains(n))
                .map(|(_, n)| n.clone())
                .collect();
            if !missing.is_empty() {
                s.forget_uploaded(ObjectKind::Pack, &missing)?;
                // Its packs and indexes are uploaded (harmless: a prune removes what no
                // snapshot needs); the snapshot itself would point at a pack that may go.
                for p in &pending {
                    let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                    std::fs::remove_file(p).with_context(|| {
                        format!("removing the stale pending snapshot {}", p.display())
                    })?;
                    let _ = std::fs::remove_file(p.with_extension(SEALED));
                    release(&s.used, len);
                }
                return Ok(Uploaded {
                    snapshots: written,
                    stale: pending.len(),
                    missing_packs: missing.len(),
                });
            }
        }
        for path in pending {
            check_stop()?;
            let text = std::fs::read(&path)
                .with_context(|| format!("reading pending snapshot {}", path.display()))?;
            let mut snapshot: Snapshot = serde_json::from_slice(&text).with_context(|| {
                format!(
                    "pending snapshot {} is not valid (move it away to continue)",
                    path.display()
                )
            })?;
            // Sealed once, kept beside the pending file until S3 has it: sealing is randomized,
            // so a run that died after the put but before this cleanup must send the same
            // object again (answered as present), never a second snapshot of the same run.
            let sealed = path.with_extension(SEALED);
            let obj = match std::fs::read(&sealed) {
                Ok(obj) => obj,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let mut u = lock(usage).clone();
                    // This object itself, and the ferry-clean invocation that follows it.
                    u.s3_put_requests += 1;
                    u.uploaded_objects += 1;
                    u.lambda_invocations += 1;
                    snapshot.usage = Some(u);
                    let (_, obj) = snapshot.seal(key);
                    let json =
                        serde_json::to_vec(&snapshot).context("encoding the pending snapshot")?;
                    write_private(&path, &json)?;
                    write_private(&sealed, &obj)?;
                    obj
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("reading {}", sealed.display()));
                }
            };
            let id = ferry_repo::format::object_name(&obj);
            put(ObjectKind::Snapshot, &id, &obj)?;
            for p in [&sealed, &path] {
                std::fs::remove_file(p)
                    .with_context(|| format!("removing uploaded {}", p.display()))?;
            }
            release(&s.used, text.len() as u64);
            written.push(SnapshotInfo { id, snapshot });
        }
        Ok(Uploaded {
            snapshots: written,
            stale: 0,
            missing_packs: 0,
        })
    }

    /// Remember that a jump box of `session` exists (until [`forget_session`]): written
    /// durably before the run connects, so that a run that dies without cleaning up (SIGKILL,
    /// power loss) tells the next one which box to remove.
    pub fn note_session(&self, session: &str) -> Result<(), Error> {
        if !valid_session_id(session) {
            bail!("ferry-build answered a session id that is not one: {session:?}");
        }
        write_private(&self.dir.join(SESSION_FILE), session.as_bytes())
    }

    /// The session an earlier run left behind ([`note_session`](Self::note_session) without a
    /// [`forget_session`] after it), if any. A file that does not hold a session id (damaged)
    /// is removed and ignored: ferry-clean's sweep finds what it named by its tags.
    pub fn session_left(&self) -> Result<Option<String>, Error> {
        let path = self.dir.join(SESSION_FILE);
        let bytes = match ferry_repo::files::read_bounded(&path, 256) {
            Ok(b) => b,
            Err(ferry_repo::files::BoundedReadError::Io(e))
                if e.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(None);
            }
            Err(e) => bail!("reading {}: {e}", path.display()),
        };
        let id = String::from_utf8_lossy(&bytes).trim().to_string();
        if valid_session_id(&id) {
            Ok(Some(id))
        } else {
            forget_session(&self.dir)?;
            Ok(None)
        }
    }

    /// Append one run record (`runs.jsonl`, for `ferry status`).
    pub fn record_run(dir: &Path, record: &serde_json::Value) -> Result<(), Error> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        append_line(&dir.join("runs.jsonl"), &line)
    }
}

/// The last `n` run records of a spool (oldest first); unreadable lines are reported.
pub fn read_runs(dir: &Path, n: usize) -> Result<Vec<serde_json::Value>, Error> {
    let path = dir.join("runs.jsonl");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut v = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(r) => v.push(r),
            Err(e) => v.push(serde_json::json!({
                "result": "unreadable",
                "error": format!("{}:{}: {e}", path.display(), i + 1),
            })),
        }
    }
    let skip = v.len().saturating_sub(n);
    Ok(v.split_off(skip))
}

/// What `ferry status` shows: a spool's last run records and what it still holds. Serialises
/// as `{"runs": […], "spool": …, "waiting_bytes": …}`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// The last run records, oldest first ([`read_runs`]).
    pub runs: Vec<serde_json::Value>,
    /// The spool directory, as displayed.
    pub spool: String,
    /// Bytes waiting for upload ([`waiting_bytes`]).
    pub waiting_bytes: u64,
}

/// The last `n` run records of the spool at `dir` and the bytes it holds, read without the
/// spool's lock (a run may be going on).
pub fn status(dir: &Path, n: usize) -> Result<Status, Error> {
    Ok(Status {
        runs: read_runs(dir, n)?,
        spool: dir.display().to_string(),
        waiting_bytes: waiting_bytes(dir),
    })
}

/// Append `line` to a 0600 file and make it durable before returning.
fn append_line(path: &Path, line: &[u8]) -> Result<(), Error> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(line)
        .and_then(|_| f.sync_data())
        .with_context(|| format!("writing {}", path.display()))
}

/// The error of a write that would take the spool beyond its cap.
fn spool_full(dir: &Path, used: u64, cap: u64) -> StorageError {
    StorageError::Backend {
        location: dir.display().to_string(),
        message: format!(
            "the spool is full: {} of backup.spool_max {} used by what is not uploaded yet; \
             this run uploads what it holds, or raise backup.spool_max",
            crate::format::human(used),
            crate::format::human(cap)
        ),
    }
}

/// Count `n` more bytes in `used` unless that passes `cap`; `Err` carries the bytes in use.
fn reserve(used: &AtomicU64, cap: u64, n: u64) -> Result<(), u64> {
    used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| {
        cur.checked_add(n).filter(|next| *next <= cap)
    })
    .map(|_| ())
}

/// Give `n` bytes back (never below zero).
/// Write `bytes` to `path` atomically (a 0600 temporary file beside it, fsynced, renamed).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `<spool>/session`: see the module header.
const SESSION_FILE: &str = "session";

/// A session id as ferry-build makes them (the one rule, in ferry-contract).
fn valid_session_id(s: &str) -> bool {
    ferry_contract::lambda::is_session_id(s)
}

/// The jump box noted in the spool at `dir` is gone (ferry-clean removed it): forget it.
pub fn forget_session(dir: &Path) -> Result<(), Error> {
    let path = dir.join(SESSION_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// Extension of a pending snapshot's sealed object (`pending/<time>.sealed`), kept until S3
/// has it.
const SEALED: &str = "sealed";

fn release(used: &AtomicU64, n: u64) {
    let _ = used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| {
        Some(cur.saturating_sub(n))
    });
}

/// One object the gate stored: one S3 PUT request.
fn count_upload(usage: &Mutex<RunUsage>, bytes: u64) {
    let mut u = lock(usage);
    u.s3_put_requests += 1;
    u.uploaded_objects += 1;
    u.uploaded_bytes += bytes;
}

/// Bytes in the spool at `dir` that wait for upload (packs, index objects, pending
/// snapshots; not the spool's own `config`).
pub fn waiting_bytes(dir: &Path) -> u64 {
    dir_size(&dir.join("repo/packs"))
        + dir_size(&dir.join("repo/index"))
        + dir_size(&dir.join("pending"))
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_ledger(path: &Path) -> Result<HashSet<(ObjectKind, String)>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut set = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        // A torn last line (killed while appending) is not an acknowledgement: ignore it.
        let Some((k, name)) = line.split_once(' ') else {
            continue;
        };
        let kind = match k {
            "config" => ObjectKind::Config,
            "pack" => ObjectKind::Pack,
            "index" => ObjectKind::Index,
            "snapshot" => ObjectKind::Snapshot,
            _ => {
                tracing::warn!("{}:{}: unknown ledger entry ignored", path.display(), i + 1);
                continue;
            }
        };
        let valid = if kind == ObjectKind::Config {
            name == "config"
        } else {
            name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
        };
        if valid {
            set.insert((kind, name.to_string()));
        }
    }
    Ok(set)
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The engine's storage while packing into the spool (see the module doc).
pub struct SpoolStorage {
    local: LocalDir,
    dir: PathBuf,
    ledger: Mutex<HashSet<(ObjectKind, String)>>,
    used: Arc<AtomicU64>,
    cap: u64,
}

impl SpoolStorage {
    fn is_uploaded(&self, kind: ObjectKind, name: &str) -> bool {
        lock(&self.ledger).contains(&(kind, name.to_string()))
    }

    /// Count `n` more bytes against the cap, or refuse.
    fn reserve(&self, n: u64) -> Result<(), StorageError> {
        reserve(&self.used, self.cap, n).map_err(|used| spool_full(&self.dir, used, self.cap))
    }

    fn record_uploaded(&self, kind: ObjectKind, name: &str) -> Result<(), Error> {
        append_line(
            &self.dir.join("uploaded"),
            format!("{} {name}\n", kind.as_str()).as_bytes(),
        )?;
        lock(&self.ledger).insert((kind, name.to_string()));
        Ok(())
    }

    /// Drop `names` from the ledger (they are no longer in the bucket), rewriting it atomically.
    fn forget_uploaded(&self, kind: ObjectKind, names: &[String]) -> Result<(), Error> {
        let mut ledger = lock(&self.ledger);
        for n in names {
            ledger.remove(&(kind, n.clone()));
        }
        let mut text = String::new();
        let mut lines: Vec<String> = ledger
            .iter()
            .map(|(k, n)| format!("{} {n}\n", k.as_str()))
            .collect();
        lines.sort();
        for l in lines {
            text.push_str(&l);
        }
        let path = self.dir.join("uploaded");
        let tmp = self.dir.join(".uploaded.tmp");
        std::fs::write(&tmp, text.as_bytes())
            .and_then(|_| File::open(&tmp)?.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
        Ok(())
    }

    fn remove_local(&self, kind: ObjectKind, name: &str) -> Result<(), Error> {
        let path = self.dir.join("repo").join(kind.key(name));
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        std::fs::remove_file(&path)
            .with_context(|| format!("removing uploaded {}", path.display()))?;
        release(&self.used, len);
        Ok(())
    }
}

impl Storage for SpoolStorage {
    fn location(&self) -> String {
        format!("spool {}", self.dir.display())
    }

    fn put_if_absent(
        &self,
        kind: ObjectKind,
        name: &str,
        bytes: &[u8],
    ) -> Result<PutOutcome, StorageError> {
        if self.is_uploaded(kind, name) {
            return Ok(PutOutcome::AlreadyPresent);
        }
        self.reserve(bytes.len() as u64)?;
        let r = self.local.put_if_absent(kind, name, bytes);
        if !matches!(r, Ok(PutOutcome::Stored)) {
            release(&self.used, bytes.len() as u64);
        }
        r
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<String>, StorageError> {
        // Sorted, without repeats (the Storage contract): what is still here and what the ledger
        // says was uploaded.
        let mut names: BTreeSet<String> = self.local.list(kind)?.into_iter().collect();
        names.extend(
            lock(&self.ledger)
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, n)| n.clone()),
        );
        Ok(names.into_iter().collect())
    }

    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, StorageError> {
        self.local.get(kind, name)
    }

    fn begin_put(&self, kind: ObjectKind) -> Option<Result<Box<dyn PendingPut>, StorageError>> {
        let inner = match self.local.begin_put(kind)? {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(Box::new(CappedPut {
            inner: Some(inner),
            used: self.used.clone(),
            written: 0,
            cap: self.cap,
            dir: self.dir.clone(),
        })))
    }
}

/// A streaming pack write counted against the spool's cap.
struct CappedPut {
    /// `None` once committed.
    inner: Option<Box<dyn PendingPut>>,
    used: Arc<AtomicU64>,
    written: u64,
    cap: u64,
    dir: PathBuf,
}

impl PendingPut for CappedPut {
    fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let n = bytes.len() as u64;
        reserve(&self.used, self.cap, n).map_err(|used| spool_full(&self.dir, used, self.cap))?;
        self.written += n;
        match self.inner.as_mut() {
            Some(p) => p.write(bytes),
            None => Err(StorageError::Backend {
                location: self.dir.display().to_string(),
                message: "write after commit".into(),
            }),
        }
    }

    fn commit(mut self: Box<Self>, name: &str) -> Result<PutOutcome, StorageError> {
        let Some(inner) = self.inner.take() else {
            return Err(StorageError::Backend {
                location: self.dir.display().to_string(),
                message: "committed twice".into(),
            });
        };
        let r = inner.commit(name);
        if !matches!(r, Ok(PutOutcome::Stored)) {
            release(&self.used, self.written);
        }
        r
    }
}

impl Drop for CappedPut {
    fn drop(&mut self) {
        if self.inner.is_some() {
            // Abandoned: its temporary file is gone, so are its bytes.
            release(&self.used, self.written);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_repo::storage::MemStorage;
    use ferry_repo::{BackupOptions, BackupSession, MasterKey, NoProgress, Repository};

    /// Incompressible bytes (xorshift from `seed`).
    #[test]
    fn a_noted_session_is_left_behind_until_forgotten_and_a_damaged_note_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::open(d.path(), 1 << 20).unwrap();
        assert_eq!(spool.session_left().unwrap(), None);
        spool.note_session("fs-20261202-120000-0a1b2c3d").unwrap();
        // What a killed run leaves: the next run (a new open of the spool) sees it.
        drop(spool);
        let spool = Spool::open(d.path(), 1 << 20).unwrap();
        assert_eq!(
            spool.session_left().unwrap().as_deref(),
            Some("fs-20261202-120000-0a1b2c3d")
        );
        forget_session(spool.dir()).unwrap();
        assert_eq!(spool.session_left().unwrap(), None);
        forget_session(spool.dir()).unwrap(); // idempotent
        // A session id ferry-build would never make is refused, naming it.
        let e = spool.note_session("x; rm -rf /").unwrap_err();
        assert!(e.to_string().contains("x; rm -rf /"), "{e}");
        // The same rule as ferry-clean's (ferry-contract): not only "safe" characters, the form.
        for id in ["Fs-1", "fs-a_b", "local-1"] {
            assert!(spool.note_session(id).is_err(), "{id}");
        }
        // A note of another form (written by hand, or by an older version) is not a session.
        std::fs::write(d.path().join("session"), b"local_1").unwrap();
        assert_eq!(spool.session_left().unwrap(), None);
        // A damaged note (a torn write, junk) is removed and ignored.
        std::fs::write(d.path().join("session"), b"\xff\x00junk").unwrap();
        assert_eq!(spool.session_left().unwrap(), None);
        assert!(!d.path().join("session").exists());
    }

    fn noise(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Restore `snap` into `out` and read back the source file `src/a` (source name `vm`).
    fn restored_a(
        reader: &ferry_repo::Reader,
        snap: &SnapshotInfo,
        out: &Path,
        src: &Path,
    ) -> Vec<u8> {
        reader
            .restore(
                snap,
                out,
                &ferry_repo::RestoreOptions::default(),
                &NoProgress,
            )
            .unwrap();
        std::fs::read(
            out.join("vm")
                .join(src.strip_prefix("/").unwrap())
                .join("a"),
        )
        .unwrap()
    }

    fn pack_one_run(spool: &Spool, key: &PutKey, src: &Path, cache: &Path) -> Snapshot {
        try_pack_one_run(spool, key, src, cache).unwrap()
    }

    fn try_pack_one_run(
        spool: &Spool,
        key: &PutKey,
        src: &Path,
        cache: &Path,
    ) -> Result<Snapshot, Error> {
        let text = format!(
            "[sources]\n[sources.local]\nname = \"vm\"\npaths = [\"{}\"]\n",
            src.display()
        );
        let cfg = crate::config::FerryConfig::parse(&text, Path::new("t.toml")).unwrap();
        let repo = Repository::open_or_init(spool.storage(), key)?;
        let opts = BackupOptions {
            cache_dir: Some(cache.to_path_buf()),
            ..BackupOptions::default()
        };
        let (snap, _) = ferry_collect::backup_then(
            &repo,
            key,
            &cfg.sources,
            opts,
            Arc::new(NoProgress),
            BackupSession::finish_unwritten,
        )?;
        spool.save_pending(&snap)?;
        Ok(snap)
    }

    /// The remote stores an object, then the backup VM loses power before the spool records
    /// it (for `kind`, once): the put "fails" after the store.
    struct PowerLossAfterStore {
        inner: MemStorage,
        kind: ObjectKind,
        fired: AtomicBool,
    }

    impl Storage for PowerLossAfterStore {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn put_if_absent(
            &self,
            kind: ObjectKind,
            name: &str,
            bytes: &[u8],
        ) -> Result<PutOutcome, StorageError> {
            let r = self.inner.put_if_absent(kind, name, bytes)?;
            if kind == self.kind && !self.fired.swap(true, Ordering::SeqCst) {
                return Err(StorageError::Backend {
                    location: self.location(),
                    message: format!("power lost after {} was stored", kind.key(name)),
                });
            }
            Ok(r)
        }
        fn list(&self, kind: ObjectKind) -> Result<Vec<String>, StorageError> {
            self.inner.list(kind)
        }
        fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, StorageError> {
            self.inner.get(kind, name)
        }
    }

    /// Power loss on the backup VM between "the remote has it" and "the spool knows": after a
    /// pack, an index, and the snapshot. The next run sends what the spool still holds (the
    /// object already there is answered as present) and the repository ends with exactly one
    /// snapshot of the run, which restores byte for byte: nothing lost, nothing twice.
    #[test]
    fn power_loss_between_upload_and_spool_cleanup_loses_and_repeats_nothing() {
        for kind in [ObjectKind::Pack, ObjectKind::Index, ObjectKind::Snapshot] {
            let t = tempfile::tempdir().unwrap();
            let src = t.path().join("src");
            std::fs::create_dir(&src).unwrap();
            let data = noise(5, 2_500_000);
            std::fs::write(src.join("a"), &data).unwrap();
            let master = MasterKey::generate();
            let key = master.put_key();
            let spool_dir = t.path().join("spool");
            let cache = t.path().join("cache");
            let remote = PowerLossAfterStore {
                inner: MemStorage::new(),
                kind,
                fired: AtomicBool::new(false),
            };
            let usage = Mutex::new(RunUsage::default());
            let stop = AtomicBool::new(false);
            {
                let spool = Spool::open(&spool_dir, 1 << 30).unwrap();
                pack_one_run(&spool, &key, &src, &cache);
                let e = spool.upload(&remote, &key, &usage, &stop).unwrap_err();
                assert!(
                    crate::error::error_chain(&e).contains("power lost"),
                    "{kind:?}: {}",
                    crate::error::error_chain(&e)
                );
                // The VM is gone: the spool is dropped without any cleanup.
            }
            let spool = Spool::open(&spool_dir, 1 << 30).unwrap();
            assert_eq!(spool.held().unwrap().snapshots, 1, "{kind:?}");
            let up = spool.upload(&remote, &key, &usage, &stop).unwrap();
            assert_eq!(up.snapshots.len(), 1, "{kind:?}");
            assert!(spool.held().unwrap().is_empty(), "{kind:?}");
            let stored = remote.inner.list(ObjectKind::Snapshot).unwrap();
            assert_eq!(
                stored.len(),
                1,
                "{kind:?}: one run, one snapshot: {stored:?}"
            );
            assert_eq!(stored[0], up.snapshots[0].id, "{kind:?}");
            let repo = Repository::open(Arc::new(remote.inner.clone())).unwrap();
            let check = repo
                .check(&master, ferry_repo::ReadData::All, &NoProgress)
                .unwrap();
            assert!(check.is_ok(), "{kind:?}: {:?}", check.problems);
            let reader = repo.reader(&master).unwrap();
            let snap = reader.resolve_snapshot("latest").unwrap();
            let got = restored_a(&reader, &snap, &t.path().join("out"), &src);
            assert!(got == data, "{kind:?}: restored content differs");
        }
    }

    /// A tmpfs of the test's own (the test command runs as root), unmounted on drop.
    struct Tmpfs(PathBuf);

    impl Tmpfs {
        fn mount(dir: &Path, size: &str) -> Tmpfs {
            std::fs::create_dir_all(dir).unwrap();
            let st = std::process::Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0700"),
                    "tmpfs",
                ])
                .arg(dir)
                .status()
                .unwrap();
            assert!(
                st.success(),
                "mount -t tmpfs {} failed: this test needs root (the test command runs as root)",
                dir.display()
            );
            Tmpfs(dir.to_path_buf())
        }

        fn resize(&self, size: &str) {
            let st = std::process::Command::new("mount")
                .args(["-o", &format!("remount,size={size}")])
                .arg(&self.0)
                .status()
                .unwrap();
            assert!(st.success(), "remount {}", self.0.display());
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }

    /// The spool's file system full mid-pack (a 2 MiB tmpfs, 6 MiB of incompressible data): the
    /// run fails naming the spool and the cause, leaves no partial object and no pending
    /// snapshot; once there is room the next run packs and uploads everything, and it restores
    /// byte for byte.
    #[test]
    fn a_full_spool_file_system_fails_the_run_clearly_and_the_next_run_completes() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let data = noise(11, 6_000_000);
        std::fs::write(src.join("a"), &data).unwrap();
        let master = MasterKey::generate();
        let key = master.put_key();
        let spool_dir = t.path().join("spool");
        let fs = Tmpfs::mount(&spool_dir, "2m");
        let cache = t.path().join("cache");
        {
            let spool = Spool::open(&spool_dir, 1 << 30).unwrap();
            let e = try_pack_one_run(&spool, &key, &src, &cache).unwrap_err();
            let msg = crate::error::error_chain(&e);
            eprintln!("the full spool's error: {msg}");
            assert!(
                msg.contains("No space left on device")
                    && msg.contains(&*spool_dir.to_string_lossy()),
                "{msg}"
            );
            assert_eq!(spool.held().unwrap().snapshots, 0);
        }
        // Reopened (a new run): temporary files of the failed one are gone, nothing pending.
        fs.resize("64m");
        let spool = Spool::open(&spool_dir, 1 << 30).unwrap();
        let tmp_left = ["repo/packs", "repo/index", "repo/snapshots", "pending"]
            .iter()
            .filter_map(|d| std::fs::read_dir(spool_dir.join(d)).ok())
            .flat_map(|rd| rd.flatten())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
            .count();
        assert_eq!(tmp_left, 0);
        pack_one_run(&spool, &key, &src, &cache);
        let remote = MemStorage::new();
        let usage = Mutex::new(RunUsage::default());
        let stop = AtomicBool::new(false);
        let up = spool.upload(&remote, &key, &usage, &stop).unwrap();
        assert_eq!(up.snapshots.len(), 1);
        let repo = Repository::open(Arc::new(remote)).unwrap();
        let reader = repo.reader(&master).unwrap();
        let snap = reader.resolve_snapshot("latest").unwrap();
        let got = restored_a(&reader, &snap, &t.path().join("out"), &src);
        assert!(got == data, "restored content differs");
        drop(spool);
        drop(fs);
    }

    #[test]
    fn upload_order_ledger_dedup_and_restore() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir(&src).unwrap();
        // Incompressible-ish content, two files.
        let data = noise(7, 3_000_000);
        std::fs::write(src.join("a"), &data).unwrap();
        std::fs::write(src.join("b"), b"small").unwrap();
        let master = MasterKey::generate();
        let key = master.put_key();
        // In memory; it records the order of the objects it is given.
        let remote = MemStorage::new();
        let spool_dir = t.path().join("spool");
        let cache = t.path().join("cache");
        let usage = Mutex::new(RunUsage::default());
        let stop = AtomicBool::new(false);
        {
            let spool = Spool::open(&spool_dir, 1 << 30).unwrap();
            // One spool, one run at a time.
            let e = Spool::open(&spool_dir, 1 << 30).unwrap_err();
            assert!(
                crate::error::error_chain(&e).contains("in use"),
                "{}",
                crate::error::error_chain(&e)
            );
            pack_one_run(&spool, &key, &src, &cache);
            let held = spool.held().unwrap();
            assert!(
                held.packs >= 1 && held.indexes == 1 && held.snapshots == 1,
                "{held:?}"
            );
            let written = spool
                .upload(&remote, &key, &usage, &stop)
                .unwrap()
                .snapshots;
            assert_eq!(written.len(), 1);
            assert!(spool.held().unwrap().is_empty());
        }
        // Order: config, packs, index, snapshot last.
        let log = remote.puts();
        let kinds: Vec<ObjectKind> = log.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds.first(), Some(&ObjectKind::Config));
        assert_eq!(kinds.last(), Some(&ObjectKind::Snapshot));
        let first_index = kinds.iter().position(|k| *k == ObjectKind::Index).unwrap();
        let last_pack = kinds.iter().rposition(|k| *k == ObjectKind::Pack).unwrap();
        assert!(last_pack < first_index, "{kinds:?}");
        let u = lock(&usage).clone();
        assert_eq!(u.uploaded_objects as usize, log.len());
        assert_eq!(u.s3_put_requests as usize, log.len());

        // Second run, same content: the ledger keeps the engine deduplicating against what
        // was uploaded, and config is not sent again.
        remote.take_puts();
        {
            let spool = Spool::open(&spool_dir, 1 << 30).unwrap();
            let snap = pack_one_run(&spool, &key, &src, &cache);
            // Only directory trees are new (their metadata); no file content is read again.
            assert!(
                snap.stats.bytes_read == 0 && snap.stats.new_bytes < 4096,
                "{:?}",
                snap.stats
            );
            let before = lock(&usage).uploaded_bytes;
            spool.upload(&remote, &key, &usage, &stop).unwrap();
            let sent = lock(&usage).uploaded_bytes - before;
            assert!(sent < 64 * 1024, "second run uploaded {sent} bytes");
        }
        let log = remote.puts();
        assert!(log.iter().all(|(k, _)| *k != ObjectKind::Config), "{log:?}");

        // The remote is a whole repository: both snapshots carry usage, the data restores.
        let repo = Repository::open(Arc::new(remote.clone())).unwrap();
        let reader = repo.reader(&master).unwrap();
        let snaps = reader.snapshots().unwrap();
        assert_eq!(snaps.len(), 2);
        assert!(snaps.iter().all(|s| {
            s.snapshot
                .usage
                .as_ref()
                .is_some_and(|u| u.s3_put_requests > 0)
        }));
        let restored = restored_a(&reader, &snaps[1], &t.path().join("out"), &src);
        assert!(restored == data, "restored content differs");
    }

    /// A run packed before a prune and uploaded after it: its snapshot could reuse a pack the
    /// prune moved to trash/. The upload lists the bucket's packs, drops the stale snapshot,
    /// forgets the missing packs; packing again gives a complete, restorable snapshot.
    #[test]
    fn a_spooled_run_uploaded_after_a_prune_is_packed_again() {
        use ferry_repo::retention::{forget, prune};
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("a"), noise(1, 2_000_000)).unwrap();
        let master = MasterKey::generate();
        let key = master.put_key();
        let remote = MemStorage::new();
        let usage = Mutex::new(RunUsage::default());
        let stop = AtomicBool::new(false);
        let (spool_dir, cache) = (t.path().join("spool"), t.path().join("cache"));
        let spool = Spool::open(&spool_dir, 1 << 30).unwrap();
        pack_one_run(&spool, &key, &src, &cache);
        let first = spool.upload(&remote, &key, &usage, &stop).unwrap();
        assert_eq!(first.snapshots.len(), 1);
        // The next run is packed (reusing file a's packs from the cache) but not yet uploaded.
        std::fs::write(src.join("b"), noise(2, 100_000)).unwrap();
        pack_one_run(&spool, &key, &src, &cache);
        // Meanwhile the operator forgets the first snapshot and prunes: its packs go to trash/.
        let repo = Repository::open(Arc::new(remote.clone())).unwrap();
        let snaps = repo.reader(&master).unwrap().snapshots().unwrap();
        forget::forget(
            &repo,
            &master,
            &[(snaps[0].clone(), "test".into())],
            0,
            "test",
        )
        .unwrap();
        let r = prune::prune(&repo, &master, &prune::PruneOptions::default()).unwrap();
        assert!(!r.record.trashed.is_empty());
        // The upload finds the ledger's packs gone and does not write the stale snapshot.
        let up = spool.upload(&remote, &key, &usage, &stop).unwrap();
        assert_eq!((up.snapshots.len(), up.stale), (0, 1));
        assert!(up.missing_packs >= 1);
        assert!(remote.list(ObjectKind::Snapshot).unwrap().is_empty());
        assert!(lock(&usage).s3_list_requests >= 1);
        // Packed again, the run stores file a anew and its snapshot restores.
        let snap = pack_one_run(&spool, &key, &src, &cache);
        assert!(snap.stats.new_bytes >= 2_000_000, "{:?}", snap.stats);
        let up = spool.upload(&remote, &key, &usage, &stop).unwrap();
        assert_eq!((up.snapshots.len(), up.stale), (1, 0));
        let reader = repo.reader(&master).unwrap();
        let out = t.path().join("out");
        reader
            .restore(
                &up.snapshots[0],
                &out,
                &ferry_repo::RestoreOptions::default(),
                &NoProgress,
            )
            .unwrap();
        let base = out.join("vm").join(src.strip_prefix("/").unwrap());
        assert!(std::fs::read(base.join("a")).unwrap() == noise(1, 2_000_000));
        let report = repo
            .check(&master, ferry_repo::ReadData::All, &NoProgress)
            .unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
    }

    #[test]
    fn packs_leave_the_spool_only_when_confirmed() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("a"), vec![7u8; 100_000]).unwrap();
        let master = MasterKey::generate();
        let key = master.put_key();
        let spool = Spool::open(&t.path().join("spool"), 1 << 30).unwrap();
        pack_one_run(&spool, &key, &src, &t.path().join("cache"));
        let before = spool.held().unwrap();
        // A pipelining remote whose barrier reports that the packs never arrived.
        let remote = MemStorage::new();
        remote.fail_barriers(Some("the gate closed before confirming 1 pack".into()));
        let usage = Mutex::new(RunUsage::default());
        let e = spool
            .upload(&remote, &key, &usage, &AtomicBool::new(false))
            .unwrap_err();
        assert!(
            crate::error::error_chain(&e).contains("confirm"),
            "{}",
            crate::error::error_chain(&e)
        );
        // Nothing unconfirmed was forgotten: the spool still holds every pack, the ledger
        // names none, and no index or snapshot was sent after them.
        assert_eq!(spool.held().unwrap(), before);
        let ledger = std::fs::read_to_string(t.path().join("spool/uploaded")).unwrap_or_default();
        assert!(!ledger.contains("pack "), "{ledger}");
        assert!(remote.list(ObjectKind::Snapshot).unwrap().is_empty());
    }

    #[test]
    fn the_cap_is_never_exceeded_and_abandoned_writes_give_room_back() {
        let t = tempfile::tempdir().unwrap();
        let spool = Spool::open(t.path(), 1000).unwrap();
        let s = spool.storage();
        let name = |c: char| c.to_string().repeat(64);
        assert_eq!(
            s.put_if_absent(ObjectKind::Index, &name('a'), &[0; 600])
                .unwrap(),
            PutOutcome::Stored
        );
        let e = s
            .put_if_absent(ObjectKind::Index, &name('b'), &[0; 600])
            .unwrap_err();
        assert!(e.to_string().contains("spool is full"), "{e}");
        let mut p = s.begin_put(ObjectKind::Pack).unwrap().unwrap();
        p.write(&[0; 300]).unwrap();
        let e = p.write(&[0; 300]).unwrap_err();
        assert!(e.to_string().contains("backup.spool_max"), "{e}");
        drop(p);
        // The abandoned pack's 300 bytes are free again.
        assert_eq!(
            s.put_if_absent(ObjectKind::Index, &name('c'), &[0; 350])
                .unwrap(),
            PutOutcome::Stored
        );
        assert!(
            std::fs::read_dir(t.path().join("repo/index"))
                .unwrap()
                .count()
                == 2
        );
    }

    #[test]
    fn the_spool_passes_the_storage_conformance_suite() {
        use ferry_repo::storage::conformance::{Backend, run};
        let t = tempfile::tempdir().unwrap();
        let spool = Spool::open(t.path(), 1 << 30).unwrap();
        let storage = spool.storage();
        let report = run(&Backend::new("SpoolStorage", &*storage));
        // Like the local directory it writes to, it stores any name it is given.
        assert_eq!(
            report.skipped_cases(),
            vec!["refused names and objects"],
            "{report}"
        );
    }

    #[test]
    fn a_torn_ledger_line_is_not_an_acknowledgement() {
        let t = tempfile::tempdir().unwrap();
        let good = "a".repeat(64);
        std::fs::write(
            t.path().join("uploaded"),
            format!("pack {good}\nindex {}\npack bbbb", "c".repeat(64)),
        )
        .unwrap();
        let spool = Spool::open(t.path(), 1 << 20).unwrap();
        let packs = spool.storage().list(ObjectKind::Pack).unwrap();
        assert_eq!(packs, vec![good.clone()]);
        assert_eq!(
            spool
                .storage()
                .put_if_absent(ObjectKind::Pack, &good, b"x")
                .unwrap(),
            PutOutcome::AlreadyPresent
        );
    }
}
