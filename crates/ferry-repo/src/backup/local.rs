//! The local-filesystem walker ([`walk`], driven by a [`Visit`]or) and the local collector
//! built on it ([`backup_paths`], [`walk_source`]): walks sources and feeds a
//! [`BackupSession`]. ferry-collect's local source lists with the same [`walk`].

use super::{BackupOptions, BackupSession, EntryMeta, RepoPath, absolute_clean};
use crate::error::{Error, Result};
use crate::keys::PutKey;
use crate::objects::SnapshotInfo;
use crate::progress::Progress;
use crate::repo::Repository;
use std::fs::Metadata;
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
    walk(&path, &meta, &mut SessionVisitor { session, source })
}

/// Which step of a [`walk`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkStep {
    /// Opening or reading a directory (the path is the directory).
    ReadDir,
    /// `lstat` of an entry found in a directory (the path is the entry).
    Stat,
}

/// What a [`walk`] does with what it meets. Each method may stop the walk with an error.
pub trait Visit {
    /// Why a visitor stops the walk.
    type Error;

    /// An entry: the walk's start (with the metadata its caller gave) or one found below it
    /// (with its `lstat` metadata). Return `true` to descend into it if it is a directory.
    fn entry(&mut self, path: &Path, meta: &Metadata) -> std::result::Result<bool, Self::Error>;

    /// A directory could not be read, or an entry in it could not be stat'ed; the walk goes on.
    fn error(
        &mut self,
        path: &Path,
        step: WalkStep,
        err: &std::io::Error,
    ) -> std::result::Result<(), Self::Error>;
}

/// Bytes of the regular files under `paths`, from metadata only (what a progress bar's ETA
/// needs before the backup reads anything): the same walk as the backup, links not followed,
/// what cannot be read counted as 0.
pub fn file_bytes(paths: &[PathBuf]) -> u64 {
    struct Sum(u64);
    impl Visit for Sum {
        type Error = std::convert::Infallible;
        fn entry(&mut self, _: &Path, meta: &Metadata) -> std::result::Result<bool, Self::Error> {
            if meta.is_file() {
                self.0 += meta.len();
            }
            Ok(true)
        }
        fn error(
            &mut self,
            _: &Path,
            _: WalkStep,
            _: &std::io::Error,
        ) -> std::result::Result<(), Self::Error> {
            Ok(())
        }
    }
    let mut sum = Sum(0);
    for p in paths {
        if let Ok(m) = std::fs::symlink_metadata(p) {
            match walk(p, &m, &mut sum) {
                Ok(()) => {}
                Err(never) => match never {},
            }
        }
    }
    sum.0
}

/// The one local-filesystem walker: visit `path`, then (if it is a directory and the visitor
/// wants it) each entry below it, depth first, every directory's entries in byte order of
/// their names. Symbolic links below the start are never followed (entries are `lstat`ed);
/// whether the start itself is followed is the caller's choice of `meta`.
pub fn walk<V: Visit>(
    path: &Path,
    meta: &Metadata,
    visitor: &mut V,
) -> std::result::Result<(), V::Error> {
    if !visitor.entry(path, meta)? || !meta.is_dir() {
        return Ok(());
    }
    let rd = match std::fs::read_dir(path) {
        Ok(rd) => rd,
        Err(e) => return visitor.error(path, WalkStep::ReadDir, &e),
    };
    let mut names = Vec::new();
    for ent in rd {
        match ent {
            Ok(ent) => names.push(ent.file_name()),
            Err(e) => visitor.error(path, WalkStep::ReadDir, &e)?,
        }
    }
    names.sort();
    for name in names {
        let child = path.join(&name);
        match std::fs::symlink_metadata(&child) {
            Ok(m) => walk(&child, &m, visitor)?,
            Err(e) => visitor.error(&child, WalkStep::Stat, &e)?,
        }
    }
    Ok(())
}

/// Feeds what [`walk`] meets into a session, as one source.
struct SessionVisitor<'a> {
    session: &'a mut BackupSession,
    source: &'a str,
}

impl Visit for SessionVisitor<'_> {
    type Error = Error;

    fn entry(&mut self, path: &Path, meta: &Metadata) -> Result<bool> {
        let session = &mut *self.session;
        let source = self.source;
        let rp = RepoPath::from_local(path)?;
        let em = EntryMeta::from_std(meta);
        let ft = meta.file_type();
        if ft.is_dir() {
            session.add_dir(&rp, &em)?;
            return Ok(true);
        }
        if ft.is_symlink() {
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
                session.add_unchanged_file(&rp, &em, prev)?;
                return Ok(false);
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
        Ok(false)
    }

    fn error(&mut self, path: &Path, step: WalkStep, err: &std::io::Error) -> Result<()> {
        let message = match step {
            WalkStep::ReadDir => format!("read directory: {}", crate::error::describe_io(err)),
            WalkStep::Stat => crate::error::describe_io(err),
        };
        self.session
            .record_error(self.source, path.as_os_str().as_bytes(), &message);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    /// Records every entry (and whether it was a symlink) and every error.
    #[derive(Default)]
    struct Record {
        seen: Vec<(PathBuf, bool)>,
        errors: Vec<(PathBuf, WalkStep)>,
        skip: Option<PathBuf>,
    }

    impl Visit for Record {
        type Error = Infallible;
        fn entry(&mut self, path: &Path, meta: &Metadata) -> std::result::Result<bool, Infallible> {
            self.seen
                .push((path.to_path_buf(), meta.file_type().is_symlink()));
            Ok(self.skip.as_deref() != Some(path))
        }
        fn error(
            &mut self,
            path: &Path,
            step: WalkStep,
            _: &std::io::Error,
        ) -> std::result::Result<(), Infallible> {
            self.errors.push((path.to_path_buf(), step));
            Ok(())
        }
    }

    fn sample() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("b/d")).unwrap();
        std::fs::create_dir(r.join("e")).unwrap();
        std::fs::write(r.join("b/c"), b"c").unwrap();
        std::fs::write(r.join("b/d/f"), b"f").unwrap();
        std::fs::write(r.join("a"), b"a").unwrap();
        std::os::unix::fs::symlink(r.join("b"), r.join("link")).unwrap();
        t
    }

    #[test]
    fn file_bytes_counts_regular_files_once_and_follows_no_link() {
        let t = sample();
        std::fs::write(t.path().join("b/d/big"), vec![0u8; 1000]).unwrap();
        // a, b/c, b/d/f, b/d/big; not again through `link`; a missing path counts 0.
        let paths = [t.path().to_path_buf(), t.path().join("missing")];
        assert_eq!(file_bytes(&paths), 1003);
        assert_eq!(file_bytes(&[t.path().join("link")]), 0);
        assert_eq!(file_bytes(&[t.path().join("b"), t.path().join("a")]), 1003);
    }

    #[test]
    fn walk_is_depth_first_in_name_order_and_never_follows_links_below_the_start() {
        let t = sample();
        let r = t.path();
        let mut rec = Record::default();
        let Ok(()) = walk(r, &std::fs::symlink_metadata(r).unwrap(), &mut rec);
        let want: Vec<(PathBuf, bool)> = [
            ("", false),
            ("a", false),
            ("b", false),
            ("b/c", false),
            ("b/d", false),
            ("b/d/f", false),
            ("e", false),
            ("link", true),
        ]
        .iter()
        .map(|(p, l)| {
            (
                if p.is_empty() {
                    r.to_path_buf()
                } else {
                    r.join(p)
                },
                *l,
            )
        })
        .collect();
        assert_eq!(rec.seen, want);
        assert!(rec.errors.is_empty());
    }

    #[test]
    fn walk_follows_a_start_given_with_followed_metadata_and_skips_what_the_visitor_declines() {
        let t = sample();
        let link = t.path().join("link");
        let mut rec = Record {
            skip: Some(link.join("d")),
            ..Record::default()
        };
        let Ok(()) = walk(&link, &std::fs::metadata(&link).unwrap(), &mut rec);
        let paths: Vec<PathBuf> = rec.seen.into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, vec![link.clone(), link.join("c"), link.join("d")]);
    }

    #[test]
    fn walk_reports_a_directory_it_cannot_read_and_goes_on() {
        let t = sample();
        let r = t.path();
        // A directory's metadata for a path that is gone: read_dir fails, the walk returns.
        let md = std::fs::symlink_metadata(r.join("e")).unwrap();
        std::fs::remove_dir(r.join("e")).unwrap();
        let mut rec = Record::default();
        let Ok(()) = walk(&r.join("e"), &md, &mut rec);
        assert_eq!(rec.seen.len(), 1);
        assert_eq!(rec.errors, vec![(r.join("e"), WalkStep::ReadDir)]);
    }
}
