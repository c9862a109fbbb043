//! [`Repository`] (open/init against a [`Storage`]) and [`Reader`] (master key: list
//! snapshots, resolve ids, read trees and blobs, `ls`).

use crate::backup::{BackupOptions, BackupSession};
use crate::crypto;
use crate::error::{Error, Result};
use crate::format::ObjectKind;
use crate::ids::BlobId;
use crate::keys::{MasterKey, PutKey};
use crate::objects::{
    BlobEntry, IndexObject, Node, NodeKind, PACK_INFO, RepoConfig, Snapshot, SnapshotInfo, Tree,
};
use crate::progress::Progress;
use crate::storage::{PutOutcome, Storage, StorageError};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

thread_local! {
    /// A reader thread's zstd context and output buffer between two ranges
    /// ([`Reader::fetch_blobs`]).
    static BLOB_SCRATCH: Cell<Option<(Option<zstd::bulk::Decompressor<'static>>, Vec<u8>)>> =
        const { Cell::new(None) };
}

/// What a reader thread's output buffer keeps between ranges: the default chunker's
/// average blob (a larger one is grown for, then given back).
const KEPT_SCRATCH: usize = 1 << 20;

/// A repository: a storage backend plus its parsed `config`.
#[derive(Clone)]
pub struct Repository {
    storage: Arc<dyn Storage>,
    config: RepoConfig,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.storage.location())
            .field("config", &self.config)
            .finish()
    }
}

impl Repository {
    /// Create the repository (write `config`) for `key`. If a `config` for the same key is
    /// already there this just opens it; a different repository is an error.
    pub fn init(storage: Arc<dyn Storage>, key: &PutKey) -> Result<Repository> {
        let config = RepoConfig::for_key(key);
        match storage.put_if_absent(
            ObjectKind::Config,
            crate::format::CONFIG_NAME,
            &config.to_bytes(),
        )? {
            PutOutcome::Stored => Ok(Repository { storage, config }),
            PutOutcome::AlreadyPresent => {
                let repo = Repository::open(storage)?;
                if repo.config.check_key(key).is_err() {
                    return Err(Error::RepositoryExists {
                        location: repo.storage.location(),
                    });
                }
                Ok(repo)
            }
        }
    }

    /// Open an existing repository (reads `config`).
    pub fn open(storage: Arc<dyn Storage>) -> Result<Repository> {
        let bytes = match storage.get(ObjectKind::Config, crate::format::CONFIG_NAME) {
            Ok(b) => b,
            Err(StorageError::NotFound { .. }) => {
                return Err(Error::MissingRepository {
                    location: storage.location(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let config = RepoConfig::parse(&bytes)?;
        Ok(Repository { storage, config })
    }

    /// Open, or create if there is no `config` yet (backup with a put key on a fresh target).
    pub fn open_or_init(storage: Arc<dyn Storage>, key: &PutKey) -> Result<Repository> {
        match Repository::open(storage.clone()) {
            Err(Error::MissingRepository { .. }) => Repository::init(storage, key),
            other => other,
        }
    }

    /// The repository's parsed `config` object (read at open or written at init).
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// The storage backend the repository lives in.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Start a backup run (put key suffices).
    pub fn begin_backup(
        &self,
        key: &PutKey,
        opts: BackupOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<BackupSession> {
        BackupSession::start(self, key, opts, progress)
    }

    /// Write a snapshot made by [`BackupSession::finish_unwritten`] (put key suffices).
    pub fn put_snapshot(&self, key: &PutKey, snapshot: Snapshot) -> Result<SnapshotInfo> {
        self.config.check_key(key)?;
        let (id, obj) = snapshot.seal(key);
        self.storage
            .put_if_absent(ObjectKind::Snapshot, &id, &obj)?;
        Ok(SnapshotInfo { id, snapshot })
    }

    /// Load every index object and return a reader (master key). An index object that does
    /// not decrypt or parse (junk a hostile or broken client stored: the gate checks only its
    /// header and name), or is not a regular file ([`StorageError::NotRegularFile`]: a FIFO
    /// named like one, in a local directory), is skipped with a warning naming it ([`Reader::skipped`]), so it cannot
    /// block the restore of good snapshots; a storage failure is an error. [`check`](Self::check)
    /// reports every such object as a problem.
    pub fn reader(&self, key: &MasterKey) -> Result<Reader> {
        self.config.check_key(key.as_put())?;
        let mut r = Reader::from_indexes(self.storage.clone(), key, []);
        // Fetched and opened in parallel (on S3 each is a round trip), added in name order.
        let names = self.storage.list(ObjectKind::Index)?;
        let loaded = crate::fetch::run(
            names,
            Default::default(),
            |_| 0,
            |name| {
                let opened = match self.storage.get(ObjectKind::Index, &name) {
                    Ok(bytes) => IndexObject::open(key, &bytes, &name).map_err(|e| e.to_string()),
                    // A FIFO or other special file under an object's name holds no index.
                    Err(e) if e.is_not_regular_file() => Err(e.to_string()),
                    Err(e) => return Err(e.into()),
                };
                Ok((name, opened))
            },
        )?;
        for (name, opened) in loaded {
            match opened {
                Ok(idx) => r.add_index(idx),
                Err(why) => r.skip(ObjectKind::Index.key(&name), why),
            }
        }
        Ok(r)
    }

    /// Verify the repository (master key), reading the pack data `read` asks for; see
    /// [`crate::check`]. A [`ReadData::Subset`](crate::check::ReadData::Subset) the parser would
    /// refuse (e.g. part 0/5) is an [`Error::InvalidOption`].
    pub fn check(
        &self,
        key: &MasterKey,
        read: crate::check::ReadData,
        progress: &dyn Progress,
    ) -> Result<crate::check::CheckReport> {
        crate::check::check(self, key, read, Default::default(), progress)
    }

    /// [`check`](Self::check) reading packs with `fetch`'s parallelism and byte budget
    /// (`check` uses [`FetchOptions::default`](crate::fetch::FetchOptions::default)).
    pub fn check_with(
        &self,
        key: &MasterKey,
        read: crate::check::ReadData,
        fetch: crate::fetch::FetchOptions,
        progress: &dyn Progress,
    ) -> Result<crate::check::CheckReport> {
        crate::check::check(self, key, read, fetch, progress)
    }
}

/// Read from pack `packs/<name>` with `read(ObjectKind::Pack)`, or, when it is not there, from
/// `trash/<name>`: a prune moved it while an index still lists it (a snapshot written during
/// that prune, kept readable until the next prune moves it back; docs/RETENTION.md).
pub(crate) fn pack_or_trash<T>(
    read: impl Fn(ObjectKind) -> std::result::Result<T, StorageError>,
) -> std::result::Result<T, StorageError> {
    match read(ObjectKind::Pack) {
        Err(StorageError::NotFound { .. }) => read(ObjectKind::Trash),
        r => r,
    }
}

/// Where a blob lives.
#[derive(Clone, Copy, Debug)]
pub struct BlobLocation {
    /// Position of the pack in the [`Reader`]'s internal pack table (in index load order);
    /// only meaningful to that reader. [`Reader::locate`] also returns the pack's name.
    pub pack: u32,
    /// The blob's entry as listed by the index (offset and length within the pack).
    pub entry: BlobEntry,
}

/// Read access with the master key.
pub struct Reader {
    storage: Arc<dyn Storage>,
    key: MasterKey,
    packs: Vec<(String, [u8; 32])>,
    blobs: HashMap<BlobId, BlobLocation>,
    sym: Mutex<HashMap<u32, crypto::SymKey>>,
    skipped: Mutex<Vec<(String, String)>>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("location", &self.storage.location())
            .field("packs", &self.packs.len())
            .field("blobs", &self.blobs.len())
            .finish()
    }
}

/// One entry of an `ls` listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LsEntry {
    /// Path from the snapshot root, components joined by `/` (raw bytes).
    pub path: Vec<u8>,
    /// The entry's tree node (kind, metadata).
    pub node: Node,
}

impl Reader {
    /// A reader over indexes already loaded (prune loads them itself, skipping unreadable
    /// ones).
    pub(crate) fn from_indexes(
        storage: Arc<dyn Storage>,
        key: &MasterKey,
        indexes: impl IntoIterator<Item = IndexObject>,
    ) -> Reader {
        let mut r = Reader {
            storage,
            key: key.clone(),
            packs: Vec::new(),
            blobs: HashMap::new(),
            sym: Mutex::new(HashMap::new()),
            skipped: Mutex::new(Vec::new()),
        };
        for idx in indexes {
            r.add_index(idx);
        }
        r
    }

    /// The blobs `entries` of pack `pack` (one GET of the whole pack, from `trash/` if a
    /// prune moved it), each decrypted and checked against its id, in `entries`' order.
    pub(crate) fn read_pack_blobs(
        &self,
        pack: &str,
        ephemeral: &[u8; 32],
        entries: &[BlobEntry],
    ) -> Result<Vec<Vec<u8>>> {
        let bytes = pack_or_trash(|kind| self.storage.get(kind, pack))?;
        entries
            .iter()
            .map(|e| {
                let start = e.offset as usize;
                let record = bytes
                    .get(start..start.saturating_add(e.length as usize))
                    .ok_or_else(|| {
                        Error::corrupt(
                            ObjectKind::Pack.key(pack),
                            format!("blob {} lies past the end of the pack", e.id),
                        )
                    })?;
                crate::objects::open_blob(&self.key, ephemeral, e, record, pack)
            })
            .collect()
    }

    fn add_index(&mut self, idx: IndexObject) {
        for p in idx.packs {
            let pi = self.packs.len() as u32;
            self.packs.push((p.pack, p.ephemeral));
            for b in p.blobs {
                self.blobs.insert(b.id, BlobLocation { pack: pi, entry: b });
            }
        }
    }

    fn skip(&self, object: String, why: String) {
        tracing::warn!("skipping unreadable {object}: {why}");
        let mut s = self.skipped.lock().unwrap_or_else(|p| p.into_inner());
        if !s.iter().any(|(o, _)| *o == object) {
            s.push((object, why));
        }
    }

    /// Index and snapshot objects skipped so far because they do not decrypt or parse, or are
    /// not regular files (object key, why): junk that cannot refer to anything. `check` reports them.
    pub fn skipped(&self) -> Vec<(String, String)> {
        self.skipped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The master key this reader decrypts with.
    pub fn key(&self) -> &MasterKey {
        &self.key
    }

    /// The storage backend blobs are read from.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Where `id` is stored, if any index lists it.
    pub fn locate(&self, id: &BlobId) -> Option<(&str, BlobLocation)> {
        self.blobs
            .get(id)
            .map(|l| (self.packs[l.pack as usize].0.as_str(), *l))
    }

    /// Number of blobs the indexes list.
    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    /// All snapshots, oldest first. A snapshot object that does not decrypt or parse, or is not
    /// a regular file ([`StorageError::NotRegularFile`]), is skipped with a warning naming it ([`skipped`](Self::skipped)); a storage failure is an
    /// error.
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let mut out = Vec::new();
        // Fetched and opened in parallel (on S3 each is a round trip).
        let ids = self.storage.list(ObjectKind::Snapshot)?;
        let loaded = crate::fetch::run(
            ids,
            Default::default(),
            |_| 0,
            |id| {
                let opened = match self.storage.get(ObjectKind::Snapshot, &id) {
                    Ok(bytes) => Snapshot::open(&self.key, &bytes, &id).map_err(|e| e.to_string()),
                    // A FIFO or other special file under an object's name holds no snapshot.
                    Err(e) if e.is_not_regular_file() => Err(e.to_string()),
                    Err(e) => return Err(e.into()),
                };
                Ok((id, opened))
            },
        )?;
        for (id, opened) in loaded {
            match opened {
                Ok(snapshot) => out.push(SnapshotInfo { id, snapshot }),
                Err(why) => self.skip(ObjectKind::Snapshot.key(&id), why),
            }
        }
        out.sort_by(|a, b| {
            a.snapshot
                .time_ns
                .cmp(&b.snapshot.time_ns)
                .then(a.id.cmp(&b.id))
        });
        Ok(out)
    }

    /// Load one snapshot by full id.
    pub fn load_snapshot(&self, id: &str) -> Result<SnapshotInfo> {
        let bytes = self.storage.get(ObjectKind::Snapshot, id)?;
        let snapshot = Snapshot::open(&self.key, &bytes, id)?;
        Ok(SnapshotInfo {
            id: id.to_string(),
            snapshot,
        })
    }

    /// Resolve a full id, a unique prefix, or `latest`.
    pub fn resolve_snapshot(&self, spec: &str) -> Result<SnapshotInfo> {
        if spec == "latest" {
            return self.snapshots()?.pop().ok_or_else(|| {
                Error::SnapshotNotFound("latest (the repository has no snapshots)".into())
            });
        }
        let names = self.storage.list(ObjectKind::Snapshot)?;
        let id = match_snapshot(names.iter().map(String::as_str), spec)?;
        self.load_snapshot(id)
    }
}

/// [`Reader::resolve_snapshot`] among snapshots already read (sorted oldest first, as
/// [`Reader::snapshots`] returns them), without a request: `forget ID…` names many.
pub fn resolve_among(snaps: &[SnapshotInfo], spec: &str) -> Result<SnapshotInfo> {
    if spec == "latest" {
        return snaps.last().cloned().ok_or_else(|| {
            Error::SnapshotNotFound("latest (the repository has no snapshots)".into())
        });
    }
    let id = match_snapshot(snaps.iter().map(|s| s.id.as_str()), spec)?;
    snaps
        .iter()
        .find(|s| s.id == id)
        .cloned()
        .ok_or_else(|| Error::SnapshotNotFound(spec.to_string()))
}

/// The one id of `ids` that a full id or a unique hex prefix `spec` names.
fn match_snapshot<'a>(ids: impl Iterator<Item = &'a str>, spec: &str) -> Result<&'a str> {
    if spec.is_empty() || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::SnapshotNotFound(spec.to_string()));
    }
    let spec_l = spec.to_ascii_lowercase();
    let matches: Vec<&str> = ids.filter(|n| n.starts_with(&spec_l)).collect();
    match matches.len() {
        0 => Err(Error::SnapshotNotFound(spec.to_string())),
        1 => Ok(matches[0]),
        count => Err(Error::AmbiguousSnapshot {
            prefix: spec.to_string(),
            count,
        }),
    }
}

impl Reader {
    fn sym_key(&self, pack: u32) -> Result<crypto::SymKey> {
        let mut m = self.sym.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = m.get(&pack) {
            return Ok(k.clone());
        }
        let (name, eph) = &self.packs[pack as usize];
        let k = crypto::recipient_key(self.key.secret(), eph, PACK_INFO).ok_or_else(|| {
            Error::corrupt(
                ObjectKind::Pack.key(name),
                "invalid ephemeral public key in index",
            )
        })?;
        m.insert(pack, k.clone());
        Ok(k)
    }

    /// Read, decrypt and verify one blob.
    pub fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>> {
        let loc = self
            .blobs
            .get(id)
            .ok_or_else(|| Error::MissingBlob { blob: id.to_hex() })?;
        let (name, _) = &self.packs[loc.pack as usize];
        let (offset, length) = (loc.entry.offset as u64, loc.entry.length as u64);
        let record = match pack_or_trash(|kind| self.storage.get_range(kind, name, offset, length))
        {
            Err(StorageError::NotFound { .. }) => {
                return Err(Error::MissingBlob {
                    blob: format!("{id} (its pack {} is gone)", ObjectKind::Pack.key(name)),
                });
            }
            r => r?,
        };
        let sym = self.sym_key(loc.pack)?;
        crate::objects::open_blob_with(&sym, self.key.as_put(), &loc.entry, &record, name)
    }

    /// Fetch, decrypt and verify every blob of `wanted` (each once, whatever its repeats) with
    /// the parallel pack reader ([`crate::fetch`]): the blobs are grouped per pack and
    /// coalesced into few large ranges, fetched by `opts.parallel` threads within the
    /// `opts.max_in_flight` budget, and each blob is handed to `sink` (on one of those
    /// threads, in no particular order). A blob no index lists is [`Error::MissingBlob`]
    /// before anything is fetched; a missing pack is [`Error::MissingBlob`] naming it; the
    /// first error (or `sink`'s) stops the fetch.
    pub fn fetch_blobs(
        &self,
        wanted: impl IntoIterator<Item = BlobId>,
        opts: crate::fetch::FetchOptions,
        sink: &(dyn Fn(&BlobEntry, &[u8]) -> Result<()> + Sync),
    ) -> Result<()> {
        let mut per_pack: HashMap<u32, Vec<BlobEntry>> = HashMap::new();
        for id in wanted {
            let loc = self
                .blobs
                .get(&id)
                .ok_or_else(|| Error::MissingBlob { blob: id.to_hex() })?;
            per_pack.entry(loc.pack).or_default().push(loc.entry);
        }
        let mut packs: Vec<(u32, Vec<BlobEntry>)> = per_pack.into_iter().collect();
        packs.sort_by_key(|(p, _)| *p);
        let max_request = opts.max_request();
        let ranges: Vec<crate::fetch::PackRange> = packs
            .into_iter()
            .flat_map(|(p, blobs)| crate::fetch::coalesce(p, blobs, max_request))
            .collect();
        crate::fetch::run(ranges, opts, |r| r.len, |r| self.fetch_range(&r, sink))?;
        Ok(())
    }

    fn fetch_range(
        &self,
        r: &crate::fetch::PackRange,
        sink: &(dyn Fn(&BlobEntry, &[u8]) -> Result<()> + Sync),
    ) -> Result<()> {
        let (name, _) = &self.packs[r.pack as usize];
        let mut bytes =
            match pack_or_trash(|kind| self.storage.get_range(kind, name, r.start, r.len)) {
                Err(StorageError::NotFound { .. }) => {
                    let first = r.blobs.first().map(|b| b.id.to_hex()).unwrap_or_default();
                    return Err(Error::MissingBlob {
                        blob: format!("{first} (its pack {} is gone)", ObjectKind::Pack.key(name)),
                    });
                }
                other => other?,
            };
        let sym = self.sym_key(r.pack)?;
        // This thread's decompression context and buffer, taken out for the range and put
        // back after it: every blob is decrypted inside `bytes` and decompressed into the
        // same buffer, so a range costs one allocation however many blobs it holds.
        let (mut dctx, mut out) = BLOB_SCRATCH
            .take()
            .unwrap_or_else(|| (zstd::bulk::Decompressor::new().ok(), Vec::new()));
        for b in &r.blobs {
            // A short answer gives a short record, which `open_blob_in_place` calls truncated.
            // Records overlap only in a forged index, and then decrypting one where it lies
            // changes no outcome: each is sealed with its own id as associated data, so of two
            // overlapping records at most one can authenticate, and the read stops at the
            // other either way.
            let at = u64::from(b.offset) - r.start;
            let range = crate::storage::range_within(bytes.len(), at, u64::from(b.length));
            let data = crate::objects::open_blob_in_place(
                &sym,
                self.key.as_put(),
                b,
                &mut bytes[range],
                name,
                dctx.as_mut(),
                &mut out,
            )?;
            sink(b, data)?;
        }
        // Only a blob's worth is kept between ranges (restore's workers live for a batch).
        out.clear();
        out.shrink_to(KEPT_SCRATCH);
        BLOB_SCRATCH.set(Some((dctx, out)));
        Ok(())
    }

    /// Read and parse a tree blob.
    pub fn read_tree(&self, id: &BlobId) -> Result<Tree> {
        if let Some((_, loc)) = self.locate(id)
            && loc.entry.kind != crate::ids::BlobKind::Tree
        {
            return Err(Error::corrupt(
                format!("tree blob {id}"),
                "the index lists it as a data blob, not a tree",
            ));
        }
        let bytes = self.read_blob(id)?;
        Tree::parse(&bytes).map_err(|e| Error::corrupt(format!("tree blob {id}"), e.to_string()))
    }

    /// Find the node at `path` (slash-separated) in `snapshot`; `None` path = the root.
    /// Returns the node (None for the root) and, for directories, the subtree id.
    pub fn lookup(
        &self,
        snapshot: &SnapshotInfo,
        path: &[u8],
    ) -> Result<(Option<Node>, Option<BlobId>)> {
        let mut tree_id = snapshot.snapshot.root;
        let mut node = None;
        let comps: Vec<&[u8]> = path
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        for (i, c) in comps.iter().enumerate() {
            let tree = self.read_tree(&tree_id)?;
            let n = tree.find(c).cloned().ok_or_else(|| Error::PathNotFound {
                path: String::from_utf8_lossy(path).into_owned(),
                snapshot: snapshot.short_id().to_string(),
            })?;
            match &n.kind {
                NodeKind::Dir { subtree } => tree_id = *subtree,
                _ if i + 1 < comps.len() => {
                    return Err(Error::PathNotFound {
                        path: String::from_utf8_lossy(path).into_owned(),
                        snapshot: snapshot.short_id().to_string(),
                    });
                }
                _ => {}
            }
            node = Some(n);
        }
        let sub = match &node {
            None => Some(tree_id),
            Some(Node {
                kind: NodeKind::Dir { subtree },
                ..
            }) => Some(*subtree),
            _ => None,
        };
        Ok((node, sub))
    }

    /// Every entry at and below `path` (default: the whole snapshot), depth first, sorted.
    pub fn ls(&self, snapshot: &SnapshotInfo, path: Option<&[u8]>) -> Result<Vec<LsEntry>> {
        let p = path.unwrap_or(b"");
        let prefix: Vec<u8> = p
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
            .join(&b'/');
        let (node, sub) = self.lookup(snapshot, p)?;
        let mut out = Vec::new();
        if let Some(n) = node {
            out.push(LsEntry {
                path: prefix.clone(),
                node: n,
            });
        }
        if let Some(sub) = sub {
            self.ls_tree(sub, &prefix, &mut out, 0)?;
        }
        Ok(out)
    }

    fn ls_tree(
        &self,
        id: BlobId,
        prefix: &[u8],
        out: &mut Vec<LsEntry>,
        depth: usize,
    ) -> Result<()> {
        if depth > crate::objects::MAX_TREE_DEPTH {
            return Err(Error::corrupt(
                format!("tree blob {id}"),
                format!(
                    "directory nesting deeper than {} levels",
                    crate::objects::MAX_TREE_DEPTH
                ),
            ));
        }
        let tree = self.read_tree(&id)?;
        for n in tree.nodes {
            let mut path = prefix.to_vec();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&n.name);
            let sub = match &n.kind {
                NodeKind::Dir { subtree } => Some(*subtree),
                _ => None,
            };
            out.push(LsEntry {
                path: path.clone(),
                node: n,
            });
            if let Some(s) = sub {
                self.ls_tree(s, &path, out, depth + 1)?;
            }
        }
        Ok(())
    }
}
