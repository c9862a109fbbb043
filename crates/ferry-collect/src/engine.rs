//! The repository engine as the collector's [`Sink`], and one whole backup of a config's
//! sources ([`backup`]).
//!
//! Concurrency: one [`BackupSession`] per run, shared by the source threads behind a
//! `Mutex`. Listing, SSH, the remote `tar` and reading the pipe run in parallel per host;
//! each file's content is fed to the session while holding the lock (chunking and hashing
//! happen there; compression and encryption run on the engine's own worker threads).

use crate::collect::{self, CollectReport, EngineFailure};
use crate::config::SourcesConfig;
use crate::listing::Entry;
use crate::sink::{Sink, SinkError};
use ferry_repo::backup::{BackupOptions, BackupSession, EntryMeta, RepoPath};
use ferry_repo::error::Error as RepoError;
use ferry_repo::keys::PutKey;
use ferry_repo::objects::SnapshotInfo;
use ferry_repo::progress::Progress;
use ferry_repo::repo::Repository;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::sync::Arc;

/// The file-cache label of collected sources: one set for all of them (paths in it start
/// with the source name, so sources never collide), stable when hosts are added or removed.
pub const SOURCE_SET: &str = "ferry-collect:sources";

fn repo_path(p: &Path) -> Result<RepoPath, SinkError> {
    RepoPath::from_components(p.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.as_bytes().to_vec()),
        _ => None,
    }))
    .map_err(|e| SinkError::Engine(e.to_string()))
}

fn meta(e: &Entry) -> EntryMeta {
    EntryMeta {
        mode: e.mode,
        mtime_ns: e
            .mtime_sec
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(e.mtime_nsec)),
        uid: e.uid,
        gid: e.gid,
        size: e.size,
        inode: e.inode,
    }
}

fn engine_err(e: RepoError) -> SinkError {
    SinkError::Engine(e.to_string())
}

impl Sink for BackupSession {
    fn add_dir(&mut self, path: &Path, m: &Entry) -> Result<(), SinkError> {
        BackupSession::add_dir(self, &repo_path(path)?, &meta(m)).map_err(engine_err)
    }

    fn add_symlink(&mut self, path: &Path, m: &Entry) -> Result<(), SinkError> {
        BackupSession::add_symlink(
            self,
            &repo_path(path)?,
            &meta(m),
            m.target.as_os_str().as_bytes(),
        )
        .map_err(engine_err)
    }

    fn reuse_unchanged(
        &mut self,
        path: &Path,
        previous: &Path,
        m: &Entry,
    ) -> Result<bool, SinkError> {
        let em = meta(m);
        match self.is_unchanged(&repo_path(previous)?, &em) {
            Some(prev) => {
                self.add_unchanged_file(&repo_path(path)?, &em, prev)
                    .map_err(engine_err)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn add_file(&mut self, path: &Path, m: &Entry, reader: &mut dyn Read) -> Result<(), SinkError> {
        match BackupSession::add_file(self, &repo_path(path)?, &meta(m), reader) {
            Ok(()) => Ok(()),
            // The engine reports a failed read of our reader as an I/O error on the path.
            Err(RepoError::Io { source, .. }) => Err(SinkError::Source(source)),
            Err(e) => Err(engine_err(e)),
        }
    }

    fn add_source(&mut self, source: &str) {
        BackupSession::add_source(self, source);
    }

    fn record_error(&mut self, source: &str, remote: &Path, message: &str) {
        BackupSession::record_error(self, source, remote.as_os_str().as_bytes(), message);
    }

    fn source_failed(&mut self, source: &str, message: &str) {
        BackupSession::source_failed(self, source, message);
    }

    fn new_bytes(&self) -> u64 {
        self.stats().new_bytes
    }
}

/// Why a backup of the sources failed as a whole (a source's own failure is not this: it
/// is recorded in the snapshot and the report).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The sources config failed validation; nothing was started.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The repository refused to begin the backup session.
    #[error("starting the backup: {0}")]
    Start(#[source] RepoError),
    /// The engine failed while collecting; the backup stopped and wrote no snapshot.
    #[error(transparent)]
    Engine(#[from] EngineFailure),
    /// Everything was collected, but ending the session (the `finish` step, e.g. writing
    /// the snapshot) failed.
    #[error("finishing the backup (the last packs, the index, the snapshot): {0}")]
    Finish(#[source] RepoError),
}

/// Back up every source of `cfg` into one snapshot. `opts.paths` defaults to the source
/// names, `opts.source_set` to [`SOURCE_SET`]. The report says which sources failed or were
/// partial (exit code 3); the snapshot records the same.
pub fn backup(
    repo: &Repository,
    key: &PutKey,
    cfg: &SourcesConfig,
    opts: BackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<(SnapshotInfo, CollectReport), BackupError> {
    backup_then(repo, key, cfg, opts, progress, BackupSession::finish)
}

/// [`backup`], ending the session with `finish` (e.g. [`BackupSession::finish_unwritten`],
/// to write the snapshot only after an upload).
pub fn backup_then<T>(
    repo: &Repository,
    key: &PutKey,
    cfg: &SourcesConfig,
    mut opts: BackupOptions,
    progress: Arc<dyn Progress>,
    finish: impl FnOnce(BackupSession) -> Result<T, RepoError>,
) -> Result<(T, CollectReport), BackupError> {
    let jobs = collect::jobs_of(cfg)?;
    if opts.paths.is_empty() {
        opts.paths = jobs.iter().map(|j| format!("/{}", j.name())).collect();
    }
    if opts.source_set.is_none() {
        opts.source_set = Some(SOURCE_SET.to_string());
    }
    let session = repo
        .begin_backup(key, opts, progress)
        .map_err(BackupError::Start)?;
    let (session, report) = collect::collect(&jobs, cfg.parallel, session)?;
    let info = finish(session).map_err(BackupError::Finish)?;
    Ok((info, report))
}
