//! The local-filesystem collector: walks sources and feeds a [`BackupSession`].

use super::{BackupOptions, BackupSession, EntryMeta, RepoPath, absolute_clean};
use crate::error::{Error, Result};
use crate::keys::PutKey;
use crate::objects::SnapshotInfo;
use crate::progress::Progress;
use crate::repo::Repository;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Back up local `sources` (absolute or relative paths) into a new snapshot.
/// Unreadable entries are recorded in the snapshot (`errors`), not fatal.
pub fn backup_paths(
    repo: &Repository,
    key: &PutKey,
    sources: &[PathBuf],
    mut opts: BackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<SnapshotInfo> {
    let mut abs = Vec::new();
    for s in sources {
        abs.push(absolute_clean(s)?);
    }
    if opts.paths.is_empty() {
        opts.paths = abs.iter().map(|p| p.display().to_string()).collect();
    }
    let mut session = repo.begin_backup(key, opts, progress)?;
    for (given, path) in sources.iter().zip(&abs) {
        walk_source(&mut session, &given.display().to_string(), path)?;
    }
    session.finish()
}

/// Add one local source (file, directory or symlink) and its ancestors' metadata.
pub fn walk_source(session: &mut BackupSession, source: &str, path: &Path) -> Result<()> {
    session.add_source(source);
    let path = absolute_clean(path)?;
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) => {
            session.source_failed(source, &crate::error::describe_io(&e));
            return Ok(());
        }
    };
    // Ancestors keep their real metadata (restic-like absolute layout).
    let mut anc = PathBuf::from("/");
    let mut rp = RepoPath::root();
    if let Ok(m) = std::fs::symlink_metadata(&anc) {
        session.add_dir(&rp, &EntryMeta::from_std(&m))?;
    }
    let comps: Vec<_> = path.components().skip(1).collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        anc.push(c);
        rp.push(c.as_os_str().as_bytes())?;
        if let Ok(m) = std::fs::symlink_metadata(&anc) {
            session.add_dir(&rp, &EntryMeta::from_std(&m))?;
        }
    }
    let rp = RepoPath::from_local(&path)?;
    walk(session, source, &path, rp, meta)
}

fn walk(
    session: &mut BackupSession,
    source: &str,
    path: &Path,
    rp: RepoPath,
    meta: std::fs::Metadata,
) -> Result<()> {
    let em = EntryMeta::from_std(&meta);
    let ft = meta.file_type();
    if ft.is_dir() {
        session.add_dir(&rp, &em)?;
        let rd = match std::fs::read_dir(path) {
            Ok(rd) => rd,
            Err(e) => {
                session.record_error(
                    source,
                    path.as_os_str().as_bytes(),
                    &format!("read directory: {}", crate::error::describe_io(&e)),
                );
                return Ok(());
            }
        };
        let mut entries = Vec::new();
        for ent in rd {
            match ent {
                Ok(ent) => entries.push(ent.file_name()),
                Err(e) => session.record_error(
                    source,
                    path.as_os_str().as_bytes(),
                    &format!("read directory: {}", crate::error::describe_io(&e)),
                ),
            }
        }
        entries.sort();
        for name in entries {
            let child = path.join(&name);
            let crp = rp.join(name.as_bytes())?;
            match std::fs::symlink_metadata(&child) {
                Ok(m) => walk(session, source, &child, crp, m)?,
                Err(e) => session.record_error(
                    source,
                    child.as_os_str().as_bytes(),
                    &crate::error::describe_io(&e),
                ),
            }
        }
    } else if ft.is_symlink() {
        match std::fs::read_link(path) {
            Ok(t) => session.add_symlink(&rp, &em, t.as_os_str().as_bytes())?,
            Err(e) => session.record_error(
                source,
                path.as_os_str().as_bytes(),
                &format!("read link: {}", crate::error::describe_io(&e)),
            ),
        }
    } else if ft.is_file() {
        if let Some(prev) = session.is_unchanged(&rp, &em) {
            return session.add_unchanged_file(&rp, &em, prev);
        }
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NOATIME)
            .open(path)
            .or_else(|_| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(path)
            });
        match f {
            Ok(mut f) => match session.add_file(&rp, &em, &mut f) {
                Ok(()) => {}
                Err(Error::Io { source: e, .. }) => session.record_error(
                    source,
                    path.as_os_str().as_bytes(),
                    &format!("read: {}", crate::error::describe_io(&e)),
                ),
                Err(e) => return Err(e),
            },
            Err(e) => session.record_error(
                source,
                path.as_os_str().as_bytes(),
                &format!("open: {}", crate::error::describe_io(&e)),
            ),
        }
    } else {
        tracing::debug!(path = %path.display(), "skipping special file (device, fifo or socket)");
    }
    Ok(())
}
