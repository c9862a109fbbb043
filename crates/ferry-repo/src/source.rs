//! Backup input: [`BackupSession`] accepts entries from anywhere (the local walker in
//! [`local`], or a remote collector streaming a tar over SSH) and turns them into packs,
//! index objects and finally a snapshot.
//!
//! Pipeline (bounded memory): the caller's thread reads, chunks (FastCDC) and hashes
//! (keyed BLAKE3) file content and drops blobs already known; new blobs go through a bounded
//! channel to worker threads (zstd), then through a bounded channel to one pack writer
//! (XChaCha20-Poly1305 under the pack's key, SHA-256 naming, `put_if_absent`). Each committed
//! pack is recorded in the cache at once; `finish` writes the directory trees, the index
//! objects covering every pack not yet indexed, and the snapshot last.
//!
//! Paths are [`RepoPath`]s: lists of raw name components. Local sources keep their absolute
//! path structure (`/etc/hosts` → `etc/hosts`).

use crate::cache::{Cache, FileRecord, FilesCache};
use crate::crypto::{self, NONCE_LEN};
use crate::error::{Error, Result};
use crate::format::{self, ObjectKind};
use crate::ids::{BlobId, BlobKind};
use crate::keys::PutKey;
use crate::objects::{
    BlobEntry, IndexObject, IndexPack, Node, NodeKind, PACK_INFO, Snapshot, SnapshotInfo,
    SnapshotStats, SourceError, SourceStatus, TRAILER_AAD, Tree,
};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::storage::Storage;
use crossbeam_channel::{Receiver, Sender, bounded};
use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// A path inside a snapshot: raw name components (each non-empty, not `.`/`..`, no `/` or NUL).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RepoPath(Vec<Vec<u8>>);

impl RepoPath {
    /// The snapshot root.
    pub fn root() -> RepoPath {
        RepoPath(Vec::new())
    }

    /// From components, validating each.
    pub fn from_components<I, C>(components: I) -> Result<RepoPath>
    where
        I: IntoIterator<Item = C>,
        C: AsRef<[u8]>,
    {
        let comps: Vec<Vec<u8>> = components
            .into_iter()
            .map(|c| c.as_ref().to_vec())
            .collect();
        for c in &comps {
            if let Some(reason) = bad_component(c) {
                return Err(Error::InvalidPath {
                    path: String::from_utf8_lossy(&comps.join(&b'/')).into_owned(),
                    reason: reason.into(),
                });
            }
        }
        Ok(RepoPath(comps))
    }

    /// From slash-separated bytes (`etc/hosts`, leading/trailing/double slashes ignored).
    pub fn parse(slashed: &[u8]) -> Result<RepoPath> {
        Self::from_components(slashed.split(|&b| b == b'/').filter(|c| !c.is_empty()))
    }

    /// From a local path: made absolute (relative to the current directory), cleaned
    /// lexically (`.` dropped, `..` pops), then the components below `/`.
    pub fn from_local(path: &std::path::Path) -> Result<RepoPath> {
        Self::from_components(
            absolute_clean(path)?
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(n) => Some(n.as_encoded_bytes().to_vec()),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        )
    }

    pub fn components(&self) -> &[Vec<u8>] {
        &self.0
    }

    pub fn push(&mut self, name: &[u8]) -> Result<()> {
        if let Some(reason) = bad_component(name) {
            return Err(Error::InvalidPath {
                path: String::from_utf8_lossy(name).into_owned(),
                reason: reason.into(),
            });
        }
        self.0.push(name.to_vec());
        Ok(())
    }

    pub fn join(&self, name: &[u8]) -> Result<RepoPath> {
        let mut p = self.clone();
        p.push(name)?;
        Ok(p)
    }

    /// `a/b/c` as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.join(&b'/')
    }

    /// `a/b/c` (lossy UTF-8) for messages.
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.to_bytes()).into_owned()
    }
}

/// Why a name is not acceptable as a path component (`None` if it is fine).
pub fn bad_component(c: &[u8]) -> Option<&'static str> {
    if c.is_empty() {
        Some("empty name")
    } else if c == b"." || c == b".." {
        Some("`.` or `..` as a name")
    } else if c.contains(&b'/') {
        Some("name contains `/`")
    } else if c.contains(&0) {
        Some("name contains NUL")
    } else {
        None
    }
}

/// Make `path` absolute and clean it lexically.
pub fn absolute_clean(path: &std::path::Path) -> Result<std::path::PathBuf> {
    use std::path::{Component, PathBuf};
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("get current directory for", path, e))?
            .join(path)
    };
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Metadata of one entry, as a collector sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryMeta {
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub mtime_ns: i64,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub inode: u64,
}

impl EntryMeta {
    pub fn from_std(m: &std::fs::Metadata) -> EntryMeta {
        use std::os::unix::fs::MetadataExt;
        EntryMeta {
            mode: m.mode() & 0o7777,
            mtime_ns: m
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.mtime_nsec()),
            uid: m.uid(),
            gid: m.gid(),
            size: m.len(),
            inode: m.ino(),
        }
    }

    fn node(&self, name: Vec<u8>, kind: NodeKind) -> Node {
        Node {
            name,
            kind,
            mode: self.mode,
            mtime_ns: self.mtime_ns,
            uid: self.uid,
            gid: self.gid,
            size: self.size,
            inode: self.inode,
        }
    }
}

/// The previous run's content of a file known unchanged (from [`BackupSession::is_unchanged`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnchangedFile {
    pub content: Vec<BlobId>,
    pub size: u64,
}

/// Options of one backup run.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// Host recorded in the snapshot (default: this machine's hostname).
    pub host: Option<String>,
    pub tags: Vec<String>,
    /// The sources as shown in the snapshot's `paths` (the local walker fills this).
    pub paths: Vec<String>,
    /// Label selecting the file-metadata cache (default: host + sorted paths).
    pub source_set: Option<String>,
    /// Cache root (default [`Cache::default_root`]); `cache_disabled` keeps nothing.
    pub cache_dir: Option<std::path::PathBuf>,
    pub cache_disabled: bool,
    /// Pack target size in bytes (default 32 MiB).
    pub pack_size: usize,
    /// Compression worker threads (0 = number of CPUs).
    pub workers: usize,
    /// zstd level (default 3).
    pub compression_level: i32,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            host: None,
            tags: Vec::new(),
            paths: Vec::new(),
            source_set: None,
            cache_dir: None,
            cache_disabled: false,
            pack_size: 32 * 1024 * 1024,
            workers: 0,
            compression_level: 3,
        }
    }
}

/// This machine's hostname (lossy UTF-8), or `unknown`.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for buf.len() bytes; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

enum Child {
    Dir(DirBuild),
    Leaf(Node),
}

#[derive(Default)]
struct DirBuild {
    meta: Option<EntryMeta>,
    children: BTreeMap<Vec<u8>, Child>,
}

/// Default metadata of a directory a collector never described (implicit parent).
const IMPLICIT_DIR: EntryMeta = EntryMeta {
    mode: 0o755,
    mtime_ns: 0,
    uid: 0,
    gid: 0,
    size: 0,
    inode: 0,
};

struct Work {
    id: BlobId,
    kind: BlobKind,
    raw_len: u32,
    data: Vec<u8>,
}

struct Compressed {
    id: BlobId,
    kind: BlobKind,
    raw_len: u32,
    /// NONCE_LEN placeholder bytes, then flag | payload.
    record: Vec<u8>,
}

#[derive(Default)]
struct WriterStats {
    packs: u64,
    stored_bytes: u64,
}

struct SourceState {
    name: String,
    errors: u64,
    failed: bool,
}

/// One backup run. Create with [`Repository::begin_backup`]; feed entries; call
/// [`finish`](Self::finish). Dropping it without `finish` abandons the run: packs already
/// committed stay (and are indexed by the next run), no snapshot is written.
pub struct BackupSession {
    storage: Arc<dyn Storage>,
    key: PutKey,
    progress: Arc<dyn Progress>,
    cache: Arc<Mutex<Cache>>,
    known: HashSet<BlobId>,
    prev_files: FilesCache,
    new_files: FilesCache,
    root: DirBuild,
    stats: SnapshotStats,
    sources: Vec<SourceState>,
    errors: Vec<SourceError>,
    opts: BackupOptions,
    started: Instant,
    time_ns: i64,
    chunker: Chunker,
    work_tx: Option<Sender<Work>>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<Result<WriterStats>>>,
    abort: Arc<AtomicBool>,
}

impl std::fmt::Debug for BackupSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupSession")
            .field("location", &self.storage.location())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl BackupSession {
    pub(crate) fn start(
        repo: &Repository,
        key: &PutKey,
        mut opts: BackupOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<BackupSession> {
        repo.config().check_key(key)?;
        if opts.pack_size < 1024 * 1024 || opts.pack_size > 1024 * 1024 * 1024 {
            return Err(Error::InvalidOption(format!(
                "pack size {} is outside 1 MiB ..= 1 GiB",
                opts.pack_size
            )));
        }
        if !(-7..=22).contains(&opts.compression_level) {
            return Err(Error::InvalidOption(format!(
                "zstd level {} is outside -7..=22",
                opts.compression_level
            )));
        }
        let storage = repo.storage().clone();
        let mut cache = if opts.cache_disabled {
            Cache::in_memory()
        } else {
            match opts.cache_dir.clone().or_else(Cache::default_root) {
                Some(root) => Cache::open(&root, key.repo_id())?,
                None => Cache::in_memory(),
            }
        };
        if !cache.pack_names().is_empty() {
            let listed: HashSet<String> = storage.list(ObjectKind::Pack)?.into_iter().collect();
            let dropped = cache.reconcile(&listed)?;
            if dropped > 0 {
                tracing::info!(
                    dropped,
                    "cache listed packs the repository no longer has; forgot them"
                );
            }
        }
        let host = opts.host.clone().unwrap_or_else(hostname);
        opts.host = Some(host.clone());
        let source_set = opts.source_set.clone().unwrap_or_else(|| {
            let mut p = opts.paths.clone();
            p.sort();
            format!("{host}\n{}", p.join("\n"))
        });
        opts.source_set = Some(source_set.clone());
        let prev_files = cache.load_files(&source_set);
        let known = cache.known_blobs();
        let cache = Arc::new(Mutex::new(cache));

        let workers_n = if opts.workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        } else {
            opts.workers
        }
        .clamp(1, 64);
        let (work_tx, work_rx) = bounded::<Work>(workers_n + 1);
        let (write_tx, write_rx) = bounded::<Compressed>(workers_n + 1);
        let abort = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for i in 0..workers_n {
            let rx = work_rx.clone();
            let tx = write_tx.clone();
            let level = opts.compression_level;
            let h = std::thread::Builder::new()
                .name(format!("ferry-compress-{i}"))
                .spawn(move || compress_worker(rx, tx, level))
                .map_err(|e| Error::Pipeline(format!("spawn worker: {e}")))?;
            workers.push(h);
        }
        drop(write_tx);
        let w = PackWriter {
            storage: storage.clone(),
            public: *key.public_key(),
            target: opts.pack_size,
            cache: cache.clone(),
            progress: progress.clone(),
            abort: abort.clone(),
        };
        let writer = std::thread::Builder::new()
            .name("ferry-pack-writer".into())
            .spawn(move || w.run(write_rx))
            .map_err(|e| Error::Pipeline(format!("spawn pack writer: {e}")))?;
        let time_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        Ok(BackupSession {
            storage,
            chunker: Chunker::new(key),
            key: key.clone(),
            progress,
            cache,
            known,
            prev_files,
            new_files: FilesCache::new(),
            root: DirBuild::default(),
            stats: SnapshotStats::default(),
            sources: Vec::new(),
            errors: Vec::new(),
            opts,
            started: Instant::now(),
            time_ns,
            work_tx: Some(work_tx),
            workers,
            writer: Some(writer),
            abort,
        })
    }

    /// Statistics so far.
    pub fn stats(&self) -> &SnapshotStats {
        &self.stats
    }

    /// Register a source (shown in the snapshot's per-source status). Idempotent.
    pub fn add_source(&mut self, source: &str) {
        if !self.sources.iter().any(|s| s.name == source) {
            self.sources.push(SourceState {
                name: source.to_string(),
                errors: 0,
                failed: false,
            });
        }
    }

    /// Record an entry that could not be backed up; the run goes on and the snapshot
    /// lists it (CLI exit code 3).
    pub fn record_error(&mut self, source: &str, path: &[u8], message: &str) {
        self.add_source(source);
        if let Some(s) = self.sources.iter_mut().find(|s| s.name == source) {
            s.errors += 1;
        }
        self.stats.errors += 1;
        self.progress.error(path, message);
        self.errors.push(SourceError {
            source: source.to_string(),
            path: String::from_utf8_lossy(path).into_owned(),
            message: message.to_string(),
        });
    }

    /// Mark a whole source as failed (nothing could be read), with the reason.
    pub fn source_failed(&mut self, source: &str, message: &str) {
        self.record_error(source, source.as_bytes(), message);
        if let Some(s) = self.sources.iter_mut().find(|s| s.name == source) {
            s.failed = true;
        }
    }

    fn dir_mut(&mut self, path: &[Vec<u8>]) -> Result<&mut DirBuild> {
        let mut d = &mut self.root;
        for (i, c) in path.iter().enumerate() {
            let child = d
                .children
                .entry(c.clone())
                .or_insert_with(|| Child::Dir(DirBuild::default()));
            if let Child::Leaf(_) = child {
                // A file or symlink was recorded at a parent path; a directory replaces it.
                tracing::warn!(path = %String::from_utf8_lossy(&path[..=i].join(&b'/')), "replacing a non-directory by a directory");
                *child = Child::Dir(DirBuild::default());
            }
            let Child::Dir(dd) = child else {
                unreachable!()
            };
            d = dd;
        }
        Ok(d)
    }

    fn insert_leaf(&mut self, path: &RepoPath, node: Node) -> Result<()> {
        let comps = path.components();
        let Some((name, parent)) = comps.split_last() else {
            return Err(Error::InvalidPath {
                path: String::new(),
                reason: "a file or symlink cannot be the snapshot root".into(),
            });
        };
        let name = name.clone();
        let d = self.dir_mut(parent)?;
        d.children.insert(name, Child::Leaf(node));
        Ok(())
    }

    /// Record a directory (its metadata; entries are added separately). The root is allowed.
    pub fn add_dir(&mut self, path: &RepoPath, meta: &EntryMeta) -> Result<()> {
        let comps = path.components().to_vec();
        let d = self.dir_mut(&comps)?;
        d.meta = Some(*meta);
        self.stats.dirs += 1;
        self.progress.entry_recorded(&path.to_bytes());
        Ok(())
    }

    /// Record a symbolic link with its raw target.
    pub fn add_symlink(&mut self, path: &RepoPath, meta: &EntryMeta, target: &[u8]) -> Result<()> {
        let name = path.components().last().cloned().unwrap_or_default();
        let mut m = *meta;
        m.size = target.len() as u64;
        let node = m.node(
            name,
            NodeKind::Symlink {
                target: target.to_vec(),
            },
        );
        self.insert_leaf(path, node)?;
        self.stats.symlinks += 1;
        self.progress.entry_recorded(&path.to_bytes());
        Ok(())
    }

    /// Whether the previous run of this source set saw this file with the same size, mtime
    /// and inode, and all its blobs are known stored. A collector can then skip reading it and
    /// call [`add_unchanged_file`](Self::add_unchanged_file).
    pub fn is_unchanged(&self, path: &RepoPath, meta: &EntryMeta) -> Option<UnchangedFile> {
        let rec = self.prev_files.get(&path.to_bytes())?;
        if rec.size == meta.size
            && rec.mtime_ns == meta.mtime_ns
            && rec.inode == meta.inode
            && rec.content.iter().all(|b| self.known.contains(b))
        {
            Some(UnchangedFile {
                content: rec.content.clone(),
                size: rec.size,
            })
        } else {
            None
        }
    }

    /// Record a file whose content is unchanged since the previous run (no reading).
    pub fn add_unchanged_file(
        &mut self,
        path: &RepoPath,
        meta: &EntryMeta,
        prev: UnchangedFile,
    ) -> Result<()> {
        let key = path.to_bytes();
        let mut m = *meta;
        m.size = prev.size;
        let name = path.components().last().cloned().unwrap_or_default();
        self.stats.dedup_blobs += prev.content.len() as u64;
        self.insert_leaf(
            path,
            m.node(
                name,
                NodeKind::File {
                    content: prev.content.clone(),
                },
            ),
        )?;
        self.stats.files += 1;
        self.stats.unchanged_files += 1;
        self.stats.bytes += prev.size;
        self.progress.file_unchanged(&key, prev.size);
        self.new_files.insert(
            key,
            FileRecord {
                size: prev.size,
                mtime_ns: m.mtime_ns,
                inode: m.inode,
                content: prev.content,
            },
        );
        Ok(())
    }

    /// Read, chunk and store a file's content from `reader`. The recorded size is the number
    /// of bytes actually read. On a read error nothing is recorded for the file (the caller
    /// usually calls [`record_error`](Self::record_error) and goes on).
    pub fn add_file(
        &mut self,
        path: &RepoPath,
        meta: &EntryMeta,
        reader: &mut dyn Read,
    ) -> Result<()> {
        let key = path.to_bytes();
        self.progress.file_started(&key, meta.size);
        let mut content = Vec::new();
        let mut size = 0u64;
        self.chunker.reset();
        loop {
            let chunk = self
                .chunker
                .next(reader)
                .map_err(|e| Error::io("read", std::path::PathBuf::from(path.display()), e))?;
            let Some(chunk) = chunk else { break };
            size += chunk.len() as u64;
            self.progress.bytes_read(chunk.len() as u64);
            let id = crypto::blob_id(self.key.hash_key(), chunk);
            content.push(id);
            if self.known.insert(id) {
                let data = with_prefix(chunk);
                self.submit(id, BlobKind::Data, data)?;
            } else {
                self.stats.dedup_blobs += 1;
                self.progress.blob_deduplicated(chunk.len() as u64);
            }
        }
        self.stats.bytes_read += size;
        self.stats.bytes += size;
        self.stats.files += 1;
        let mut m = *meta;
        m.size = size;
        let name = path.components().last().cloned().unwrap_or_default();
        self.insert_leaf(
            path,
            m.node(
                name,
                NodeKind::File {
                    content: content.clone(),
                },
            ),
        )?;
        self.new_files.insert(
            key,
            FileRecord {
                size,
                mtime_ns: m.mtime_ns,
                inode: m.inode,
                content,
            },
        );
        Ok(())
    }

    /// Queue a new blob; `data` is [`with_prefix`]ed.
    fn submit(&mut self, id: BlobId, kind: BlobKind, data: Vec<u8>) -> Result<()> {
        let len = data.len() - (NONCE_LEN + 1);
        self.stats.new_blobs += 1;
        self.stats.new_bytes += len as u64;
        self.progress.blob_stored(len as u64);
        let raw_len = u32::try_from(len)
            .map_err(|_| Error::Pipeline(format!("blob of {} bytes is too large", data.len())))?;
        let tx = self
            .work_tx
            .as_ref()
            .ok_or_else(|| Error::Pipeline("session already closed".into()))?;
        if tx
            .send(Work {
                id,
                kind,
                raw_len,
                data,
            })
            .is_err()
        {
            // The writer stopped: report its error.
            return Err(self
                .shutdown()
                .err()
                .unwrap_or_else(|| Error::Pipeline("pack writer stopped".into())));
        }
        Ok(())
    }

    /// Close the pipeline and wait for it; returns the writer's result.
    fn shutdown(&mut self) -> Result<WriterStats> {
        self.work_tx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        match self.writer.take() {
            Some(h) => h
                .join()
                .map_err(|_| Error::Pipeline("pack writer panicked".into()))?,
            None => Err(Error::Pipeline("pipeline already shut down".into())),
        }
    }

    fn store_tree(&mut self, dir: DirBuild) -> Result<BlobId> {
        let mut nodes = Vec::with_capacity(dir.children.len());
        for (name, child) in dir.children {
            match child {
                Child::Leaf(n) => nodes.push(n),
                Child::Dir(d) => {
                    let meta = d.meta.unwrap_or(IMPLICIT_DIR);
                    let subtree = self.store_tree(d)?;
                    let mut m = meta;
                    m.size = 0;
                    nodes.push(m.node(name, NodeKind::Dir { subtree }));
                }
            }
        }
        let bytes = Tree { nodes }.to_bytes();
        let id = crypto::blob_id(self.key.hash_key(), &bytes);
        if self.known.insert(id) {
            self.submit(id, BlobKind::Tree, with_prefix(&bytes))?;
        } else {
            self.stats.dedup_blobs += 1;
        }
        Ok(id)
    }

    /// Write the trees, the last pack, the index objects and finally the snapshot.
    pub fn finish(mut self) -> Result<SnapshotInfo> {
        let root = std::mem::take(&mut self.root);
        let root_id = self.store_tree(root)?;
        self.finish_with_root(root_id)
    }

    /// Test hook: store an arbitrary (possibly malicious) tree blob.
    #[cfg(test)]
    pub(crate) fn store_raw_tree(&mut self, tree: &Tree) -> Result<BlobId> {
        self.store_raw_blob(BlobKind::Tree, tree.to_bytes())
    }

    /// Test hook: store an arbitrary blob.
    #[cfg(test)]
    pub(crate) fn store_raw_blob(&mut self, kind: BlobKind, bytes: Vec<u8>) -> Result<BlobId> {
        let id = crypto::blob_id(self.key.hash_key(), &bytes);
        if self.known.insert(id) {
            self.submit(id, kind, with_prefix(&bytes))?;
        }
        Ok(id)
    }

    /// Like [`finish`](Self::finish), but the snapshot is returned instead of written: the
    /// trees, the last pack and the index objects are stored, the caches saved. The caller
    /// writes the snapshot later (after uploading what this run stored) with
    /// [`Repository::put_snapshot`](crate::Repository::put_snapshot). Until then the
    /// repository has no snapshot for this run, exactly as if it had been interrupted.
    pub fn finish_unwritten(mut self) -> Result<Snapshot> {
        let root = std::mem::take(&mut self.root);
        let root_id = self.store_tree(root)?;
        self.finish_parts(root_id)
    }

    pub(crate) fn finish_with_root(self, root_id: BlobId) -> Result<SnapshotInfo> {
        let storage = self.storage.clone();
        let key = self.key.clone();
        let snapshot = self.finish_parts(root_id)?;
        let (id, obj) = snapshot.seal(&key);
        storage.put_if_absent(ObjectKind::Snapshot, &id, &obj)?;
        Ok(SnapshotInfo { id, snapshot })
    }

    fn finish_parts(mut self, root_id: BlobId) -> Result<Snapshot> {
        let ws = self.shutdown()?;
        self.stats.packs = ws.packs;
        self.stats.stored_bytes = ws.stored_bytes;

        // Index every committed pack no index covers yet (this run's and interrupted runs').
        let pending = lock(&self.cache).unindexed_packs();
        const BLOBS_PER_INDEX: usize = 100_000;
        let mut batch: Vec<IndexPack> = Vec::new();
        let mut count = 0;
        for p in pending {
            count += p.blobs.len();
            batch.push(p);
            if count >= BLOBS_PER_INDEX {
                self.write_index(std::mem::take(&mut batch))?;
                count = 0;
            }
        }
        if !batch.is_empty() {
            self.write_index(batch)?;
        }

        self.stats.duration_ms = self.started.elapsed().as_millis() as u64;
        let sources = self
            .sources
            .iter()
            .map(|s| SourceStatus {
                source: s.name.clone(),
                status: if s.failed {
                    "failed"
                } else if s.errors > 0 {
                    "partial"
                } else {
                    "ok"
                }
                .into(),
                errors: s.errors,
            })
            .collect();
        let snapshot = Snapshot {
            time: format_time(self.time_ns),
            time_ns: self.time_ns,
            host: self.opts.host.clone().unwrap_or_default(),
            paths: self.opts.paths.clone(),
            tags: self.opts.tags.clone(),
            source_set: self.opts.source_set.clone().unwrap_or_default(),
            root: root_id,
            stats: self.stats.clone(),
            sources,
            errors: std::mem::take(&mut self.errors),
            ferry_version: env!("CARGO_PKG_VERSION").to_string(),
            usage: None,
        };
        // A source that failed as a whole (a host that was down) keeps its previous file
        // records, so its next successful run does not read every file again. (Records are
        // only trusted while all their blobs are known stored: see `is_unchanged`.)
        for src in self.sources.iter().filter(|s| s.failed) {
            let prefix = [src.name.as_bytes(), b"/"].concat();
            for (k, rec) in &self.prev_files {
                if k.starts_with(&prefix) && !self.new_files.contains_key(k) {
                    self.new_files.insert(k.clone(), rec.clone());
                }
            }
        }
        let cache = lock(&self.cache);
        let source_set = self.opts.source_set.clone().unwrap_or_default();
        if let Err(e) = cache.save_files(&source_set, &self.new_files) {
            tracing::warn!("could not save the file cache: {e}");
        }
        drop(cache);
        if let Err(e) = lock(&self.cache).flush() {
            tracing::warn!("could not compact the cache: {e}");
        }
        Ok(snapshot)
    }

    fn write_index(&mut self, packs: Vec<IndexPack>) -> Result<()> {
        let names: Vec<String> = packs.iter().map(|p| p.pack.clone()).collect();
        let obj = crypto::seal_object(
            ObjectKind::Index,
            self.key.public_key(),
            &IndexObject { packs }.to_bytes(),
        );
        let name = format::object_name(&obj);
        self.storage.put_if_absent(ObjectKind::Index, &name, &obj)?;
        lock(&self.cache).record_indexed(&name, &names)?;
        Ok(())
    }
}

impl Drop for BackupSession {
    fn drop(&mut self) {
        if self.writer.is_some() {
            self.abort.store(true, Ordering::SeqCst);
            let _ = self.shutdown();
        }
    }
}

/// `NONCE_LEN + 1` reserved bytes (nonce, compression flag), then `data`, with room for the tag.
fn with_prefix(data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(NONCE_LEN + 1 + data.len() + crypto::TAG_LEN);
    v.resize(NONCE_LEN + 1, 0);
    v.extend_from_slice(data);
    v
}

fn lock(c: &Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

/// RFC 3339 UTC with nanoseconds.
pub(crate) fn format_time(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            nanos
        ),
        Err(_) => format!("@{ns}ns"),
    }
}

fn compress_worker(rx: Receiver<Work>, tx: Sender<Compressed>, level: i32) {
    let mut comp = zstd::bulk::Compressor::new(level).ok();
    for w in rx {
        let record = crypto::compress_in_place(comp.as_mut(), w.data, NONCE_LEN);
        if tx
            .send(Compressed {
                id: w.id,
                kind: w.kind,
                raw_len: w.raw_len,
                record,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Seals compressed blobs into packs (encryption under the current pack's key, offsets,
/// trailer); the [`Uploader`] thread streams the bytes to storage and names the pack.
struct PackWriter {
    storage: Arc<dyn Storage>,
    public: [u8; 32],
    target: usize,
    cache: Arc<Mutex<Cache>>,
    progress: Arc<dyn Progress>,
    abort: Arc<AtomicBool>,
}

struct OpenPack {
    size: usize,
    ephemeral: [u8; 32],
    key: crypto::SymKey,
    blobs: Vec<BlobEntry>,
}

enum Up {
    Begin([u8; 32]),
    Record(Vec<u8>),
    Finish {
        ephemeral: [u8; 32],
        blobs: Vec<BlobEntry>,
        trailer: Vec<u8>,
    },
}

impl PackWriter {
    fn run(self, rx: Receiver<Compressed>) -> Result<WriterStats> {
        let (up_tx, up_rx) = bounded::<Up>(4);
        let up = Uploader {
            storage: self.storage.clone(),
            cache: self.cache.clone(),
            progress: self.progress.clone(),
            abort: self.abort.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("ferry-pack-upload".into())
            .spawn(move || up.run(up_rx))
            .map_err(|e| Error::Pipeline(format!("spawn uploader: {e}")))?;
        let stored = self.seal_loop(rx, &up_tx);
        drop(up_tx);
        let up_result = handle
            .join()
            .map_err(|_| Error::Pipeline("pack uploader panicked".into()))?;
        let mut stats = up_result?;
        stats.stored_bytes = stored?;
        Ok(stats)
    }

    /// Returns the number of sealed bytes, or why it stopped.
    fn seal_loop(&self, rx: Receiver<Compressed>, up: &Sender<Up>) -> Result<u64> {
        let closed = || Error::Pipeline("pack uploader stopped".into());
        let mut stored = 0u64;
        let mut open: Option<OpenPack> = None;
        for c in rx {
            if self.abort.load(Ordering::Relaxed) {
                return Ok(stored);
            }
            let p = match open.as_mut() {
                Some(p) => p,
                None => {
                    let (ephemeral, key) = crypto::new_sender_key(&self.public, PACK_INFO);
                    up.send(Up::Begin(ephemeral)).map_err(|_| closed())?;
                    open.insert(OpenPack {
                        size: crate::format::HEADER_LEN + crypto::PUB_LEN,
                        ephemeral,
                        key,
                        blobs: Vec::new(),
                    })
                }
            };
            let record = crypto::seal_prefixed(&p.key, &c.id.0, c.record);
            let offset =
                u32::try_from(p.size).map_err(|_| Error::Pipeline("pack too large".into()))?;
            p.blobs.push(BlobEntry {
                id: c.id,
                kind: c.kind,
                offset,
                length: record.len() as u32,
                raw_length: c.raw_len,
            });
            p.size += record.len();
            stored += record.len() as u64;
            up.send(Up::Record(record)).map_err(|_| closed())?;
            if p.size >= self.target
                && let Some(full) = open.take()
            {
                self.finish_pack(full, up)?;
            }
        }
        if self.abort.load(Ordering::Relaxed) {
            return Ok(stored);
        }
        if let Some(p) = open.take() {
            self.finish_pack(p, up)?;
        }
        Ok(stored)
    }

    fn finish_pack(&self, p: OpenPack, up: &Sender<Up>) -> Result<()> {
        let trailer = crate::objects::PackTrailer { blobs: p.blobs }.to_bytes();
        let mut comp = zstd::bulk::Compressor::new(3).ok();
        let plain = crypto::compress_with(comp.as_mut(), &trailer, 0);
        let mut sealed = crypto::seal(&p.key, TRAILER_AAD, plain);
        let len = sealed.len() as u32;
        sealed.extend_from_slice(&len.to_le_bytes());
        let blobs = crate::objects::PackTrailer::parse(&trailer)?.blobs;
        up.send(Up::Finish {
            ephemeral: p.ephemeral,
            blobs,
            trailer: sealed,
        })
        .map_err(|_| Error::Pipeline("pack uploader stopped".into()))
    }
}

/// Streams pack bytes to storage, computes the SHA-256 name, commits, records in the cache.
struct Uploader {
    storage: Arc<dyn Storage>,
    cache: Arc<Mutex<Cache>>,
    progress: Arc<dyn Progress>,
    abort: Arc<AtomicBool>,
}

enum Sink {
    Stream(Box<dyn crate::storage::PendingPut>),
    Buffer(Vec<u8>),
}

impl Sink {
    fn write(&mut self, b: &[u8]) -> Result<()> {
        match self {
            Sink::Stream(p) => p.write(b).map_err(Error::from),
            Sink::Buffer(v) => {
                v.extend_from_slice(b);
                Ok(())
            }
        }
    }
}

struct Commit {
    sink: Sink,
    name: String,
    size: u64,
    ephemeral: [u8; 32],
    blobs: Vec<BlobEntry>,
}

impl Uploader {
    /// Writes pack bytes as they come; a committer thread makes each finished pack durable
    /// (fsync, link under its name) and records it in the cache, so the next pack is written
    /// while the previous one is synced.
    fn run(self, rx: Receiver<Up>) -> Result<WriterStats> {
        let (ctx, crx) = bounded::<Commit>(1);
        let committer = {
            let storage = self.storage.clone();
            let cache = self.cache.clone();
            let progress = self.progress.clone();
            let abort = self.abort.clone();
            std::thread::Builder::new()
                .name("ferry-pack-commit".into())
                .spawn(move || commit_loop(crx, storage, cache, progress, abort))
                .map_err(|e| Error::Pipeline(format!("spawn committer: {e}")))?
        };
        let res = self.upload_loop(rx, &ctx);
        drop(ctx);
        let stats = committer
            .join()
            .map_err(|_| Error::Pipeline("pack committer panicked".into()))??;
        res?;
        Ok(stats)
    }

    fn upload_loop(&self, rx: Receiver<Up>, commits: &Sender<Commit>) -> Result<()> {
        use sha2::Digest;
        let mut cur: Option<(Sink, sha2::Sha256, u64)> = None;
        for msg in rx {
            match msg {
                Up::Begin(eph) => {
                    let mut sink = match self.storage.begin_put(ObjectKind::Pack) {
                        Some(r) => Sink::Stream(r?),
                        None => Sink::Buffer(Vec::new()),
                    };
                    let mut h = sha2::Sha256::new();
                    let header = format::header(ObjectKind::Pack);
                    sink.write(&header)?;
                    sink.write(&eph)?;
                    h.update(header);
                    h.update(eph);
                    cur = Some((sink, h, (header.len() + eph.len()) as u64));
                }
                Up::Record(r) => {
                    if let Some((sink, h, n)) = cur.as_mut() {
                        sink.write(&r)?;
                        h.update(&r);
                        *n += r.len() as u64;
                    }
                }
                Up::Finish {
                    ephemeral,
                    blobs,
                    trailer,
                } => {
                    let Some((mut sink, mut h, n)) = cur.take() else {
                        continue;
                    };
                    sink.write(&trailer)?;
                    h.update(&trailer);
                    let c = Commit {
                        sink,
                        name: hex::encode(h.finalize()),
                        size: n + trailer.len() as u64,
                        ephemeral,
                        blobs,
                    };
                    if commits.send(c).is_err() {
                        return Err(Error::Pipeline("pack committer stopped".into()));
                    }
                }
            }
        }
        Ok(())
    }
}

fn commit_loop(
    rx: Receiver<Commit>,
    storage: Arc<dyn Storage>,
    cache: Arc<Mutex<Cache>>,
    progress: Arc<dyn Progress>,
    abort: Arc<AtomicBool>,
) -> Result<WriterStats> {
    let mut stats = WriterStats::default();
    for c in rx {
        if abort.load(Ordering::Relaxed) {
            return Ok(stats);
        }
        match c.sink {
            Sink::Stream(p) => p.commit(&c.name)?,
            Sink::Buffer(v) => storage.put_if_absent(ObjectKind::Pack, &c.name, &v)?,
        };
        lock(&cache).record_pack(&IndexPack {
            pack: c.name.clone(),
            ephemeral: c.ephemeral,
            blobs: c.blobs,
        })?;
        stats.packs += 1;
        progress.pack_written(&c.name, c.size);
    }
    Ok(stats)
}

/// Streaming FastCDC (v2020, level 1) over a reusable buffer, with the gear table keyed
/// from the put key's hash key.
struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl Chunker {
    fn new(key: &PutKey) -> Chunker {
        use fastcdc::v2020::{MASKS, Normalization, get_gear_with_seed, logarithm2};
        let p = key.chunker();
        let bits = logarithm2(p.avg_size);
        let norm = Normalization::Level1.bits();
        let (gear, gear_ls) = get_gear_with_seed(key.chunker_seed());
        Chunker {
            min: p.min_size as usize,
            avg: p.avg_size as usize,
            max: p.max_size as usize,
            mask_s: MASKS[(bits + norm) as usize],
            mask_l: MASKS[(bits - norm) as usize],
            gear,
            gear_ls,
            buf: Vec::new(),
            start: 0,
            end: 0,
            eof: false,
        }
    }

    fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.eof = false;
    }

    /// The next chunk, or `None` at end of input.
    fn next(&mut self, r: &mut dyn Read) -> std::io::Result<Option<&[u8]>> {
        if self.end - self.start < self.max && !self.eof {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let want = 2 * self.max;
            if self.buf.len() < want {
                // Grow lazily: small files never touch more than they need.
                let grow = (self.end + self.max).min(want);
                if self.buf.len() < grow {
                    self.buf.resize(grow, 0);
                }
            }
            while self.end < self.max && !self.eof {
                if self.end == self.buf.len() {
                    let n = (self.buf.len() * 2).clamp(64 * 1024, 2 * self.max);
                    self.buf.resize(n, 0);
                }
                match r.read(&mut self.buf[self.end..]) {
                    Ok(0) => self.eof = true,
                    Ok(n) => self.end += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let avail = self.end - self.start;
        if avail == 0 {
            return Ok(None);
        }
        let (_, cut) = fastcdc::v2020::cut_gear(
            &self.buf[self.start..self.end],
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear,
            &self.gear_ls,
        );
        let cut = cut.clamp(1, avail);
        let s = self.start;
        self.start += cut;
        Ok(Some(&self.buf[s..s + cut]))
    }
}

pub mod local {
    //! The local-filesystem collector: walks sources and feeds a [`BackupSession`].

    use super::*;
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};

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
}
