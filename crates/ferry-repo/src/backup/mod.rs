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
//!
//! One file per job: `paths` (the [`RepoPath`] rules), `meta` (entry metadata), `tree`
//! (the tree builder), `chunker` (FastCDC), `packer` (compression workers and the pack
//! writer), `uploader` (streaming packs to storage and committing them) and [`local`] (the
//! local-filesystem walker). This file holds the session and its entry points.

mod chunker;
pub mod local;
mod meta;
mod packer;
mod paths;
mod tree;
mod uploader;

pub use meta::EntryMeta;
pub use paths::{RepoPath, absolute_clean, bad_component};

use chunker::Chunker;
use packer::{Pipeline, PipelineConfig, Work, with_prefix};
use tree::TreeBuilder;

use crate::cache::{Cache, FileRecord, FilesCache, lock};
use crate::crypto::{self, NONCE_LEN};
use crate::error::{Error, Result};
use crate::format::{self, ObjectKind};
use crate::ids::{BlobId, BlobKind};
use crate::keys::PutKey;
use crate::objects::{
    IndexObject, IndexPack, NodeKind, Snapshot, SnapshotInfo, SnapshotStats, SourceError,
    SourceStatus,
};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::storage::Storage;
use std::collections::HashSet;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The previous run's content of a file known unchanged (from [`BackupSession::is_unchanged`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnchangedFile {
    /// The file's data blobs, in order.
    pub content: Vec<BlobId>,
    /// Its size in bytes, as recorded then.
    pub size: u64,
}

/// Options of one backup run.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// Host recorded in the snapshot (default: this machine's hostname).
    pub host: Option<String>,
    /// Tags recorded in the snapshot.
    pub tags: Vec<String>,
    /// The sources as shown in the snapshot's `paths` (the local walker fills this).
    pub paths: Vec<String>,
    /// Label selecting the file-metadata cache (default: host + sorted paths).
    pub source_set: Option<String>,
    /// Cache root (default [`Cache::default_root`]); `cache_disabled` keeps nothing.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Keep no cache (every run reads and uploads as if it were the first).
    pub cache_disabled: bool,
    /// Pack target size in bytes (default 32 MiB).
    pub pack_size: usize,
    /// Compression worker threads (0 = number of CPUs).
    pub workers: usize,
    /// zstd level (default 3).
    pub compression_level: i32,
    /// The snapshot's time, ns since the epoch (restic's `--time`); default: now. A backup of
    /// an older state, or a benchmark's simulated calendar (`bench_year`).
    pub time_ns: Option<i64>,
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
            time_ns: None,
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
    tree: TreeBuilder,
    stats: SnapshotStats,
    sources: Vec<SourceState>,
    errors: Vec<SourceError>,
    opts: BackupOptions,
    started: Instant,
    time_ns: i64,
    chunker: Chunker,
    pipeline: Pipeline,
    /// The packs the cache knew at the start (after reconciling with storage's listing):
    /// everything this run may reuse. Checked again before the snapshot is written.
    reused_packs: Vec<String>,
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
        let reused_packs = cache.pack_names();
        let cache = Arc::new(Mutex::new(cache));

        let pipeline = Pipeline::start(PipelineConfig {
            storage: storage.clone(),
            public: *key.public_key(),
            pack_size: opts.pack_size,
            workers: opts.workers,
            compression_level: opts.compression_level,
            cache: cache.clone(),
            progress: progress.clone(),
        })?;
        let time_ns = opts.time_ns.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0)
        });
        Ok(BackupSession {
            storage,
            chunker: Chunker::new(key),
            key: key.clone(),
            progress,
            cache,
            known,
            prev_files,
            new_files: FilesCache::new(),
            tree: TreeBuilder::default(),
            stats: SnapshotStats::default(),
            sources: Vec::new(),
            errors: Vec::new(),
            opts,
            started: Instant::now(),
            time_ns,
            pipeline,
            reused_packs,
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

    /// Record a directory (its metadata; entries are added separately). The root is allowed.
    pub fn add_dir(&mut self, path: &RepoPath, meta: &EntryMeta) -> Result<()> {
        self.tree.set_dir_meta(path, *meta);
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
        self.tree.insert_leaf(path, node)?;
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
        self.tree.insert_leaf(
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
        self.tree.insert_leaf(
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
        self.pipeline.send(Work {
            id,
            kind,
            raw_len,
            data,
        })
    }

    /// Store one tree blob (unless known) and return its id.
    fn store_tree_blob(&mut self, bytes: &[u8]) -> Result<BlobId> {
        let id = crypto::blob_id(self.key.hash_key(), bytes);
        if self.known.insert(id) {
            self.submit(id, BlobKind::Tree, with_prefix(bytes))?;
        } else {
            self.stats.dedup_blobs += 1;
        }
        Ok(id)
    }

    /// Store every tree of the run, children first; returns the root tree's id.
    fn store_trees(&mut self) -> Result<BlobId> {
        let tree = std::mem::take(&mut self.tree);
        tree.store(&mut |bytes| self.store_tree_blob(bytes))
    }

    /// Write the trees, the last pack, the index objects and finally the snapshot.
    pub fn finish(mut self) -> Result<SnapshotInfo> {
        let root_id = self.store_trees()?;
        self.finish_with_root(root_id)
    }

    /// Test hook: store an arbitrary (possibly malicious) tree blob.
    #[cfg(test)]
    pub(crate) fn store_raw_tree(&mut self, tree: &crate::objects::Tree) -> Result<BlobId> {
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
        let root_id = self.store_trees()?;
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
        let ws = self.pipeline.shutdown()?;
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
        self.check_reused_packs()?;

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

    /// A prune may have moved packs out of `packs/` since the run listed them at its start.
    /// Before the snapshot refers to them, list again: the pack listing is strongly
    /// consistent, and a prune deletes a moved pack only after its grace period, longer than
    /// any run takes from here to the snapshot's put (docs/RETENTION.md).
    fn check_reused_packs(&mut self) -> Result<()> {
        if self.reused_packs.is_empty() {
            return Ok(());
        }
        let listed: HashSet<String> = self.storage.list(ObjectKind::Pack)?.into_iter().collect();
        let missing: Vec<&String> = self
            .reused_packs
            .iter()
            .filter(|p| !listed.contains(*p))
            .collect();
        if let Some(first) = missing.first() {
            let err = Error::PrunedDuringBackup {
                count: missing.len(),
                first: ObjectKind::Pack.key(first),
            };
            lock(&self.cache).reconcile(&listed)?;
            return Err(err);
        }
        Ok(())
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

/// Writes verified plaintext blobs into new packs through the backup's pipeline (the same
/// compression, encryption and pack size): prune's repack.
pub(crate) struct BlobWriter {
    pipeline: Pipeline,
    cache: Arc<Mutex<Cache>>,
}

impl BlobWriter {
    /// A writer to `storage`, sealing packs to `public` with `opts`' pack size, workers and
    /// compression level.
    pub(crate) fn start(
        storage: Arc<dyn Storage>,
        public: [u8; 32],
        opts: &BackupOptions,
    ) -> Result<BlobWriter> {
        let cache = Arc::new(Mutex::new(Cache::in_memory()));
        let pipeline = Pipeline::start(PipelineConfig {
            storage,
            public,
            pack_size: opts.pack_size,
            workers: opts.workers,
            compression_level: opts.compression_level,
            cache: cache.clone(),
            progress: Arc::new(crate::progress::NoProgress),
        })?;
        Ok(BlobWriter { pipeline, cache })
    }

    /// Queue one blob (its id already verified against `plaintext`).
    pub(crate) fn add(&mut self, id: BlobId, kind: BlobKind, plaintext: &[u8]) -> Result<()> {
        let raw_len = u32::try_from(plaintext.len())
            .map_err(|_| Error::Pipeline(format!("blob {id} is too large to repack")))?;
        self.pipeline.send(Work {
            id,
            kind,
            raw_len,
            data: with_prefix(plaintext),
        })
    }

    /// Seal the last pack, wait for every pack to be stored; the new packs' index entries.
    pub(crate) fn finish(mut self) -> Result<Vec<IndexPack>> {
        self.pipeline.shutdown()?;
        Ok(lock(&self.cache).unindexed_packs())
    }
}
