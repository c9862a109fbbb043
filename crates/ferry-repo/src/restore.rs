//! Restore a snapshot (or part of it) into a target directory, safely.
//!
//! Every directory is opened relative to its parent's file descriptor with `O_NOFOLLOW`,
//! every file is created with `openat(O_CREAT | O_EXCL | O_NOFOLLOW)` and every symlink with
//! `symlinkat`, so nothing — not a `..` name, a name with `/`, an absolute path, nor a
//! symlink the restore itself created earlier — can make it write outside the target.
//! Names are also checked up front and an unsafe one stops the restore with
//! [`Error::UnsafePath`] naming it.

use crate::backup::bad_component;
use crate::error::{Error, Result};
use crate::fetch::FetchOptions;
use crate::ids::BlobId;
use crate::objects::{BlobEntry, Node, NodeKind, SnapshotInfo, Tree};
use crate::progress::Progress;
use crate::repo::Reader;
use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What to restore and how.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Glob patterns (globset syntax) matched against the path inside the snapshot, both as
    /// `etc/hosts` and `/etc/hosts`. A matching directory brings everything below it.
    /// Empty = everything.
    pub include: Vec<String>,
    /// Restore owner (uid/gid): `None` = only when running as root.
    pub restore_owner: Option<bool>,
    /// Requests to storage in flight at once; 0 = [`crate::fetch::DEFAULT_PARALLEL`].
    pub parallel: usize,
    /// Fetched pack bytes held at once; 0 = [`crate::fetch::DEFAULT_MAX_IN_FLIGHT`].
    pub max_in_flight: u64,
}

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RestoreStats {
    /// Regular files written.
    pub files: u64,
    /// Directories restored (created or already present), metadata applied.
    pub dirs: u64,
    /// Symbolic links created.
    pub symlinks: u64,
    /// File content bytes written.
    pub bytes: u64,
}

/// Distinct blobs one batch plans at most (its plan is ~100 bytes a blob, never blob data).
const BATCH_BLOBS: usize = 65_536;

/// Tree bytes fetched ahead of the walk at most; deeper trees are read as the walk reaches
/// them.
const TREE_AHEAD_BYTES: u64 = 32 * 1024 * 1024;

/// A file created (empty, `O_EXCL`) and sized, waiting for its content. Its metadata is
/// applied only once every blob is written.
struct PendingFile {
    dir: Arc<OwnedFd>,
    name: CString,
    path: Vec<u8>,
    node: Node,
    file: std::fs::File,
}

/// A restored directory whose metadata waits for the files below it.
struct PendingDir {
    fd: Arc<OwnedFd>,
    node: Node,
    path: Vec<u8>,
}

/// Files and directories whose content and metadata the next [`Ctx::flush`] writes.
#[derive(Default)]
struct Batch {
    files: Vec<PendingFile>,
    dirs: Vec<PendingDir>,
    /// Where each needed blob goes: (index in `files`, offset in the file).
    targets: HashMap<BlobId, Vec<(usize, u64)>>,
}

struct Ctx<'a> {
    reader: &'a Reader,
    progress: &'a dyn Progress,
    globs: Option<globset::GlobSet>,
    owner: bool,
    target: PathBuf,
    stats: RestoreStats,
    fetch: FetchOptions,
    batch: Batch,
    /// Files and directories a batch keeps open at most.
    max_open: usize,
    /// Trees fetched ahead ([`Ctx::prefetch_trees`]), taken out as the walk reaches them.
    trees: HashMap<BlobId, Tree>,
}

fn cstr(name: &[u8], path: &[u8]) -> Result<CString> {
    CString::new(name.to_vec()).map_err(|_| unsafe_path(path, "name contains NUL"))
}

fn unsafe_path(path: &[u8], reason: &str) -> Error {
    Error::UnsafePath {
        path: String::from_utf8_lossy(path).into_owned(),
        reason: reason.to_string(),
    }
}

fn last_os_error(op: &'static str, target: &Path, path: &[u8]) -> Error {
    Error::io(
        op,
        target.join(String::from_utf8_lossy(path).as_ref()),
        std::io::Error::last_os_error(),
    )
}

/// Raise the soft limit of open files to the hard one (as Go programs do at start) and
/// return how many files and directories a batch may keep open: half the limit, less a
/// margin for everything else, within 16..=16384.
fn open_files_budget() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 16;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    let soft = usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX);
    (soft.saturating_sub(128) / 2).clamp(16, 16_384)
}

impl Reader {
    /// Restore `snapshot` into `target` (created if missing). Existing regular files and
    /// symlinks at the same names are replaced; existing directories are reused (never
    /// followed if they are symlinks).
    ///
    /// The trees are walked first, in batches: every file of a batch is created and sized,
    /// then the blobs the batch needs are fetched with the parallel pack reader
    /// ([`crate::fetch`]: each blob once, coalesced ranges, `opts.parallel` requests, at most
    /// `opts.max_in_flight` bytes) and written at their offsets; then the files' and
    /// directories' metadata is applied. If anything fails, the files of the unfinished batch
    /// are removed (files of earlier batches are complete and stay), and the error names the
    /// pack, blob or file.
    pub fn restore(
        &self,
        snapshot: &SnapshotInfo,
        target: &Path,
        opts: &RestoreOptions,
        progress: &dyn Progress,
    ) -> Result<RestoreStats> {
        let globs = if opts.include.is_empty() {
            None
        } else {
            let mut b = globset::GlobSetBuilder::new();
            for p in &opts.include {
                let g = globset::GlobBuilder::new(p)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| Error::Glob {
                        pattern: p.clone(),
                        message: e.to_string(),
                    })?;
                b.add(g);
            }
            Some(b.build().map_err(|e| Error::Glob {
                pattern: opts.include.join(" "),
                message: e.to_string(),
            })?)
        };
        std::fs::create_dir_all(target)
            .map_err(|e| Error::io("create restore target", target, e))?;
        let t = CString::new(target.as_os_str().as_encoded_bytes().to_vec())
            .map_err(|_| Error::InvalidOption("target path contains NUL".into()))?;
        // SAFETY: plain syscall with a valid C string.
        let fd = unsafe {
            libc::open(
                t.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(Error::io(
                "open restore target",
                target,
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: fd is a freshly opened, owned descriptor.
        let root = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut ctx = Ctx {
            reader: self,
            progress,
            globs,
            owner: opts
                .restore_owner
                // SAFETY: geteuid has no preconditions.
                .unwrap_or_else(|| unsafe { libc::geteuid() } == 0),
            target: target.to_path_buf(),
            stats: RestoreStats::default(),
            fetch: FetchOptions::new(opts.parallel, opts.max_in_flight),
            batch: Batch::default(),
            max_open: open_files_budget(),
            trees: HashMap::new(),
        };
        ctx.prefetch_trees(snapshot.snapshot.root);
        let all = ctx.globs.is_none();
        let done = ctx
            .restore_dir(&root, snapshot.snapshot.root, b"", all, 0)
            .and_then(|_| ctx.flush());
        if let Err(e) = done {
            ctx.discard();
            return Err(e);
        }
        Ok(ctx.stats)
    }
}

impl Ctx<'_> {
    /// Fetch the snapshot's trees ahead of the walk, a level at a time with the parallel pack
    /// reader (a level's trees mostly share a pack: a few requests instead of one per
    /// directory, which on S3 is a round trip each), until [`TREE_AHEAD_BYTES`]. Best effort:
    /// a tree that cannot be fetched or parsed here is read by the walk, whose error names it.
    fn prefetch_trees(&mut self, root: BlobId) {
        let mut level = vec![root];
        let mut seen: std::collections::HashSet<BlobId> = level.iter().copied().collect();
        let mut bytes = 0u64;
        for _depth in 0..=crate::objects::MAX_TREE_DEPTH {
            if level.is_empty() || bytes >= TREE_AHEAD_BYTES {
                break;
            }
            let got: Mutex<Vec<(BlobId, Tree, u64)>> = Mutex::new(Vec::new());
            let sink = |e: &BlobEntry, data: &[u8]| -> Result<()> {
                // A data blob is never taken for a tree (the walk's read_tree names it).
                if e.kind != crate::ids::BlobKind::Tree {
                    return Ok(());
                }
                if let Ok(t) = Tree::parse(data) {
                    got.lock().unwrap_or_else(|p| p.into_inner()).push((
                        e.id,
                        t,
                        data.len() as u64,
                    ));
                }
                Ok(())
            };
            if self
                .reader
                .fetch_blobs(level.iter().copied(), self.fetch, &sink)
                .is_err()
            {
                break;
            }
            let mut next = Vec::new();
            for (id, tree, len) in got.into_inner().unwrap_or_else(|p| p.into_inner()) {
                bytes += len;
                for n in &tree.nodes {
                    if let NodeKind::Dir { subtree } = n.kind
                        && seen.insert(subtree)
                    {
                        next.push(subtree);
                    }
                }
                self.trees.insert(id, tree);
            }
            level = next;
        }
    }

    fn matches(&self, path: &[u8]) -> bool {
        match &self.globs {
            None => true,
            Some(g) => {
                let s = String::from_utf8_lossy(path);
                g.is_match(s.as_ref()) || g.is_match(format!("/{s}"))
            }
        }
    }

    /// Restore the entries of tree `id` into the open directory `dir`. Returns whether
    /// anything was restored.
    fn restore_dir(
        &mut self,
        dir: &Arc<OwnedFd>,
        id: BlobId,
        prefix: &[u8],
        included: bool,
        depth: usize,
    ) -> Result<bool> {
        if depth > crate::objects::MAX_TREE_DEPTH {
            return Err(unsafe_path(
                prefix,
                &format!(
                    "directory nesting deeper than {} levels",
                    crate::objects::MAX_TREE_DEPTH
                ),
            ));
        }
        let tree = match self.trees.remove(&id) {
            Some(t) => t,
            None => self.reader.read_tree(&id)?,
        };
        let mut any = false;
        let mut seen = std::collections::HashSet::new();
        for node in &tree.nodes {
            let mut path = prefix.to_vec();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&node.name);
            if let Some(reason) = bad_component(&node.name) {
                return Err(unsafe_path(
                    &path,
                    &format!("{reason} (would escape the target or is invalid)"),
                ));
            }
            if !seen.insert(node.name.clone()) {
                return Err(unsafe_path(
                    &path,
                    "the same name appears twice in one directory",
                ));
            }
            let inc = included || self.matches(&path);
            match &node.kind {
                NodeKind::Dir { subtree } => {
                    any |= self.restore_subdir(dir, node, *subtree, &path, inc, depth)?;
                }
                NodeKind::File { content } if inc => {
                    self.restore_file(dir, node, content, &path)?;
                    any = true;
                }
                NodeKind::Symlink { target } if inc => {
                    self.restore_symlink(dir, node, target, &path)?;
                    any = true;
                }
                _ => {}
            }
        }
        Ok(any)
    }

    fn restore_subdir(
        &mut self,
        parent: &Arc<OwnedFd>,
        node: &Node,
        subtree: BlobId,
        path: &[u8],
        inc: bool,
        depth: usize,
    ) -> Result<bool> {
        let name = cstr(&node.name, path)?;
        // SAFETY: valid fd and C string.
        let created = unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o700) } == 0;
        if !created {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(Error::io(
                    "create directory",
                    self.target.join(String::from_utf8_lossy(path).as_ref()),
                    e,
                ));
            }
        }
        // SAFETY: valid fd and C string; O_NOFOLLOW refuses a symlink planted at this name.
        let fd = unsafe {
            libc::openat(
                parent.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) {
                return Err(unsafe_path(
                    path,
                    "a symlink or non-directory is in the way of a directory; refusing to follow it",
                ));
            }
            return Err(Error::io(
                "open directory",
                self.target.join(String::from_utf8_lossy(path).as_ref()),
                e,
            ));
        }
        // SAFETY: fd is freshly opened and owned.
        let dfd = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let any = self.restore_dir(&dfd, subtree, path, inc, depth + 1)?;
        if !any && !inc {
            drop(dfd);
            if created {
                // SAFETY: valid fd and C string.
                unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) };
            }
            return Ok(false);
        }
        self.stats.dirs += 1;
        // Its mode and times are set after the files below it are written (a read-only
        // directory must still take them; writing would not change its times, but
        // removing an unfinished file would).
        self.batch.dirs.push(PendingDir {
            fd: dfd,
            node: node.clone(),
            path: path.to_vec(),
        });
        self.flush_if_full()?;
        Ok(true)
    }

    fn remove_existing(&self, dir: &OwnedFd, name: &CString) {
        // Replace a file or symlink at this name (never a directory, never followed).
        // SAFETY: valid fd and C string.
        unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
    }

    /// Create the file (`O_CREAT | O_EXCL | O_NOFOLLOW`, replacing a file or symlink at the
    /// name), size it, and plan where each of its blobs goes; the content is written by the
    /// batch's [`flush`](Self::flush).
    fn restore_file(
        &mut self,
        dir: &Arc<OwnedFd>,
        node: &Node,
        content: &[BlobId],
        path: &[u8],
    ) -> Result<()> {
        let name = cstr(&node.name, path)?;
        let open = || {
            // SAFETY: valid fd and C string.
            unsafe {
                libc::openat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_WRONLY
                        | libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    0o600 as libc::c_uint,
                )
            }
        };
        let mut fd = open();
        if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
            self.remove_existing(dir, &name);
            fd = open();
        }
        if fd < 0 {
            return Err(last_os_error("create file", &self.target, path));
        }
        // SAFETY: fd is freshly opened and owned.
        let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let fp = || self.target.join(String::from_utf8_lossy(path).as_ref());
        let mut offsets = Vec::with_capacity(content.len());
        let mut size: u64 = 0;
        let planned = content
            .iter()
            .try_for_each(|id| {
                let (_, loc) = self
                    .reader
                    .locate(id)
                    .ok_or_else(|| Error::MissingBlob { blob: id.to_hex() })?;
                if loc.entry.kind != crate::ids::BlobKind::Data {
                    return Err(Error::corrupt(
                        format!("snapshot entry {}", String::from_utf8_lossy(path)),
                        format!("content blob {id} is a tree blob, not file data"),
                    ));
                }
                offsets.push(size);
                size += u64::from(loc.entry.raw_length);
                Ok(())
            })
            .and_then(|()| {
                if size != node.size {
                    return Err(Error::corrupt(
                        format!("snapshot entry {}", String::from_utf8_lossy(path)),
                        format!("content is {size} bytes, the tree says {}", node.size),
                    ));
                }
                // Sized up front: runs of zeros are never written and stay holes.
                file.set_len(size)
                    .map_err(|e| Error::io("set length of", fp(), e))
            });
        if let Err(e) = planned {
            drop(file);
            self.remove_existing(dir, &name);
            return Err(e);
        }
        let slot = self.batch.files.len();
        for (id, off) in content.iter().zip(offsets) {
            self.batch.targets.entry(*id).or_default().push((slot, off));
        }
        self.batch.files.push(PendingFile {
            dir: dir.clone(),
            name,
            path: path.to_vec(),
            node: node.clone(),
            file,
        });
        self.flush_if_full()
    }

    fn flush_if_full(&mut self) -> Result<()> {
        let b = &self.batch;
        if b.files.len() + b.dirs.len() >= self.max_open || b.targets.len() >= BATCH_BLOBS {
            self.flush()?;
        }
        Ok(())
    }

    /// Fetch and write the batch's blobs, then apply its files' and directories' metadata.
    /// On an error the batch's files are removed (see [`discard`](Self::discard)).
    fn flush(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        let (files, target, progress) = (&batch.files, &self.target, self.progress);
        let sink = |b: &BlobEntry, data: &[u8]| -> Result<()> {
            let Some(goes) = batch.targets.get(&b.id) else {
                return Ok(());
            };
            let zeros = data.len() >= 4096 && data.iter().all(|&x| x == 0);
            for &(slot, offset) in goes {
                let f = &files[slot];
                if !zeros {
                    f.file.write_all_at(data, offset).map_err(|e| {
                        Error::io(
                            "write",
                            target.join(String::from_utf8_lossy(&f.path).as_ref()),
                            e,
                        )
                    })?;
                }
                progress.restore_bytes(data.len() as u64);
            }
            Ok(())
        };
        let fetched = self
            .reader
            .fetch_blobs(batch.targets.keys().copied(), self.fetch, &sink);
        if let Err(e) = fetched {
            self.batch = batch;
            self.discard();
            return Err(e);
        }
        for f in &batch.files {
            self.set_meta_fd(&f.file, &f.node, &f.path)?;
            self.stats.files += 1;
            self.stats.bytes += f.node.size;
            self.progress.restore_file(&f.path, f.node.size);
        }
        for d in &batch.dirs {
            self.set_meta_fd(d.fd.as_ref(), &d.node, &d.path)?;
        }
        Ok(())
    }

    /// Remove the files of the unfinished batch: created and sized, but not (all) written, so
    /// none is left looking complete. Directories stay (empty or holding earlier batches'
    /// complete files).
    fn discard(&mut self) {
        for f in std::mem::take(&mut self.batch).files {
            drop(f.file);
            // SAFETY: valid fd and C string; never follows (unlinks the name itself).
            unsafe { libc::unlinkat(f.dir.as_raw_fd(), f.name.as_ptr(), 0) };
        }
    }

    fn restore_symlink(
        &mut self,
        dir: &OwnedFd,
        node: &Node,
        target: &[u8],
        path: &[u8],
    ) -> Result<()> {
        let name = cstr(&node.name, path)?;
        let t = CString::new(target.to_vec())
            .map_err(|_| unsafe_path(path, "symlink target contains NUL"))?;
        self.remove_existing(dir, &name);
        // SAFETY: valid fd and C strings. The link is created, never followed by the restore.
        if unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), name.as_ptr()) } != 0 {
            return Err(last_os_error("create symlink", &self.target, path));
        }
        if self.owner {
            // SAFETY: valid fd and C string; AT_SYMLINK_NOFOLLOW changes the link itself.
            unsafe {
                libc::fchownat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    node.uid,
                    node.gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
        }
        let ts = times(node.mtime_ns);
        // SAFETY: as above.
        unsafe {
            libc::utimensat(
                dir.as_raw_fd(),
                name.as_ptr(),
                ts.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        self.stats.symlinks += 1;
        Ok(())
    }

    fn set_meta_fd(&self, fd: &impl AsRawFd, node: &Node, path: &[u8]) -> Result<()> {
        if self.owner {
            // SAFETY: valid fd.
            if unsafe { libc::fchown(fd.as_raw_fd(), node.uid, node.gid) } != 0 {
                return Err(last_os_error("set owner of", &self.target, path));
            }
        }
        // SAFETY: valid fd.
        if unsafe { libc::fchmod(fd.as_raw_fd(), (node.mode & 0o7777) as libc::mode_t) } != 0 {
            return Err(last_os_error("set mode of", &self.target, path));
        }
        let ts = times(node.mtime_ns);
        // SAFETY: valid fd and a 2-element timespec array.
        if unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) } != 0 {
            return Err(last_os_error("set times of", &self.target, path));
        }
        Ok(())
    }
}

fn times(mtime_ns: i64) -> [libc::timespec; 2] {
    let ts = libc::timespec {
        tv_sec: mtime_ns.div_euclid(1_000_000_000) as libc::time_t,
        tv_nsec: mtime_ns.rem_euclid(1_000_000_000) as _,
    };
    [ts, ts]
}

#[cfg(test)]
mod tests {
    //! Crafted malicious snapshots (trees Ferry itself would never write) cannot make
    //! restore write outside the target.
    use super::*;
    use crate::ids::BlobKind;
    use crate::objects::Tree;
    use crate::storage::{LocalDir, Storage};
    use crate::{BackupOptions, MasterKey, NoProgress, Repository};
    use std::sync::Arc;

    fn node(name: &[u8], kind: NodeKind) -> Node {
        Node {
            name: name.to_vec(),
            kind,
            mode: 0o644,
            mtime_ns: 0,
            uid: 0,
            gid: 0,
            size: 0,
            inode: 0,
        }
    }

    /// Write a snapshot whose root tree is built by `f` (which may store subtrees).
    fn craft(
        dir: &Path,
        f: impl FnOnce(&mut crate::BackupSession) -> Tree,
    ) -> (Repository, MasterKey, SnapshotInfo) {
        let key = MasterKey::generate();
        let s: Arc<dyn Storage> = Arc::new(LocalDir::new(dir.join("repo")));
        let repo = Repository::init(s, &key.put_key()).unwrap();
        let opts = BackupOptions {
            cache_disabled: true,
            ..Default::default()
        };
        let mut session = repo
            .begin_backup(&key.put_key(), opts, Arc::new(NoProgress))
            .unwrap();
        let root = f(&mut session);
        let root_id = session.store_raw_tree(&root).unwrap();
        let snap = session.finish_with_root(root_id).unwrap();
        (repo, key, snap)
    }

    fn assert_refused(
        dir: &Path,
        expect_in_msg: &str,
        f: impl FnOnce(&mut crate::BackupSession) -> Tree,
    ) {
        let (repo, key, snap) = craft(dir, f);
        let target = dir.join("target/inner");
        let err = repo
            .reader(&key)
            .unwrap()
            .restore(&snap, &target, &RestoreOptions::default(), &NoProgress)
            .unwrap_err();
        assert!(matches!(err, Error::UnsafePath { .. }), "{err}");
        assert!(err.to_string().contains(expect_in_msg), "{err}");
        // Nothing appeared next to the target or in the outside directory.
        let outside: Vec<_> = std::fs::read_dir(dir.join("target"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(outside, vec![std::ffi::OsString::from("inner")], "{err}");
        assert_eq!(std::fs::read_dir(dir.join("outside")).unwrap().count(), 0);
    }

    fn file_node(s: &mut crate::BackupSession, name: &[u8]) -> Node {
        let id = s.store_raw_blob(BlobKind::Data, b"evil".to_vec()).unwrap();
        let mut n = node(name, NodeKind::File { content: vec![id] });
        n.size = 4;
        n
    }

    #[test]
    fn malicious_names_are_refused() {
        let names: [(&[u8], &str); 6] = [
            (b"..", "\"..\""),
            (b".", "\".\""),
            (b"../escape", "../escape"),
            (b"/abs/path", "/abs/path"),
            (b"a/b", "a/b"),
            (b"", "empty name"),
        ];
        for (name, msg) in names {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("outside")).unwrap();
            assert_refused(dir.path(), msg, |s| Tree {
                nodes: vec![file_node(s, name)],
            });
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        assert_refused(dir.path(), "NUL", |s| Tree {
            nodes: vec![file_node(s, b"a\0b")],
        });
    }

    #[test]
    fn nested_dotdot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        assert_refused(dir.path(), "sub/..", |s| {
            let inner = Tree {
                nodes: vec![file_node(s, b"..")],
            };
            let id = s.store_raw_tree(&inner).unwrap();
            Tree {
                nodes: vec![node(b"sub", NodeKind::Dir { subtree: id })],
            }
        });
    }

    #[test]
    fn symlink_then_entry_through_it_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let out_bytes = outside.as_os_str().as_encoded_bytes().to_vec();
        // `x` is a symlink to the outside directory, then a directory `x` with a file in it.
        assert_refused(dir.path(), "x", |s| {
            let inner = Tree {
                nodes: vec![file_node(s, b"evil")],
            };
            let id = s.store_raw_tree(&inner).unwrap();
            Tree {
                nodes: vec![
                    node(
                        b"x",
                        NodeKind::Symlink {
                            target: out_bytes.clone(),
                        },
                    ),
                    node(b"x", NodeKind::Dir { subtree: id }),
                ],
            }
        });
        // Same with a directory sorted after the link by a different name but the tree
        // order reversed (duplicate detection does not depend on order).
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let out_bytes = outside.as_os_str().as_encoded_bytes().to_vec();
        assert_refused(dir.path(), "x", |s| {
            let inner = Tree {
                nodes: vec![file_node(s, b"evil")],
            };
            let id = s.store_raw_tree(&inner).unwrap();
            Tree {
                nodes: vec![
                    node(b"x", NodeKind::Dir { subtree: id }),
                    node(
                        b"x",
                        NodeKind::Symlink {
                            target: out_bytes.clone(),
                        },
                    ),
                ],
            }
        });
    }

    #[test]
    fn absolute_symlink_targets_are_created_but_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let out_bytes = outside.as_os_str().as_encoded_bytes().to_vec();
        let (repo, key, snap) = craft(dir.path(), |s| Tree {
            nodes: vec![
                node(
                    b"link",
                    NodeKind::Symlink {
                        target: out_bytes.clone(),
                    },
                ),
                file_node(s, b"zfile"),
            ],
        });
        let target = dir.path().join("target");
        repo.reader(&key)
            .unwrap()
            .restore(&snap, &target, &RestoreOptions::default(), &NoProgress)
            .unwrap();
        assert_eq!(std::fs::read_link(target.join("link")).unwrap(), outside);
        assert_eq!(std::fs::read(target.join("zfile")).unwrap(), b"evil");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }
}
