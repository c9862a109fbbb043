//! Object formats and their parsers: `config`, pack layout and trailer, index objects,
//! trees and snapshots. Every `parse` takes untrusted bytes and returns a clear error; none
//! panics or allocates more than a bounded multiple of its input.
//!
//! Pack layout: `header(Pack) | ephemeral X25519 public (32) | record* | trailer record |
//! trailer length (u32 LE)`. A record is `nonce (24) | XChaCha20-Poly1305(flag | payload)`.
//! The pack key is `HKDF-SHA256(salt = eph_pub || repo_pub, ikm = X25519, info = "ferry v1 pack")`.
//! A blob record's AAD is its 32-byte blob id; the trailer's AAD is `b"ferry trailer"`.
//! Offsets/lengths in [`BlobEntry`] address whole records inside the pack.

use crate::crypto::{self, NONCE_LEN, PUB_LEN, TAG_LEN};
use crate::error::{Error, Result};
use crate::format::{self, HEADER_LEN, ObjectKind};
use crate::ids::{BlobId, BlobKind, ChunkerParams, RepoId};
use crate::keys::{MasterKey, PutKey};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------
// config

/// The repository's public parameters (the `config` object: header + JSON, not encrypted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// Repository format version (1).
    pub version: u32,
    /// Random repository id (hex).
    pub repo_id: String,
    /// X25519 public key everything is encrypted to (hex).
    pub public_key: String,
    /// The repository's chunker parameters; must equal the key's.
    pub chunker: ChunkerParams,
}

impl RepoConfig {
    /// The `config` of a new repository for `key` (version 1, its id, public key and
    /// chunker parameters).
    pub fn for_key(key: &PutKey) -> RepoConfig {
        RepoConfig {
            version: 1,
            repo_id: key.repo_id().to_hex(),
            public_key: hex::encode(key.public_key()),
            chunker: key.chunker(),
        }
    }

    /// The object bytes (header + pretty JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format::header(ObjectKind::Config).to_vec();
        out.extend_from_slice(
            serde_json::to_string_pretty(self)
                .unwrap_or_default()
                .as_bytes(),
        );
        out.push(b'\n');
        out
    }

    /// Parse a `config` object.
    pub fn parse(bytes: &[u8]) -> Result<RepoConfig> {
        format::check_header(bytes, ObjectKind::Config)
            .map_err(|e| Error::corrupt("config", e.to_string()))?;
        let c: RepoConfig = serde_json::from_slice(&bytes[HEADER_LEN..])
            .map_err(|e| Error::corrupt("config", format!("invalid JSON: {e}")))?;
        if c.version != 1 {
            return Err(Error::corrupt(
                "config",
                format!("unsupported repository version {}", c.version),
            ));
        }
        let mut id = [0u8; 16];
        hex::decode_to_slice(&c.repo_id, &mut id)
            .map_err(|_| Error::corrupt("config", "repo_id is not 32 hex characters"))?;
        let mut pk = [0u8; 32];
        hex::decode_to_slice(&c.public_key, &mut pk)
            .map_err(|_| Error::corrupt("config", "public_key is not 64 hex characters"))?;
        c.chunker
            .validate()
            .map_err(|e| Error::corrupt("config", e.to_string()))?;
        Ok(c)
    }

    /// Whether `key` belongs to this repository (same id and public key).
    pub fn check_key(&self, key: &PutKey) -> Result<()> {
        if self.repo_id != key.repo_id().to_hex() {
            return Err(Error::WrongKey(format!(
                "the key is for repository {}, this repository is {}",
                key.repo_id(),
                self.repo_id
            )));
        }
        if self.public_key != hex::encode(key.public_key()) || self.chunker != key.chunker() {
            return Err(Error::WrongKey(format!(
                "the key's public parameters do not match repository {}",
                self.repo_id
            )));
        }
        Ok(())
    }

    /// The repository id decoded from `repo_id` (all zeroes if it is not valid hex, which
    /// [`parse`](Self::parse) already refuses).
    pub fn repo_id(&self) -> RepoId {
        let mut id = [0u8; 16];
        let _ = hex::decode_to_slice(&self.repo_id, &mut id);
        RepoId(id)
    }
}

// ---------------------------------------------------------------------------------------
// packs and indexes

/// One blob inside a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobEntry {
    /// The blob's id (keyed BLAKE3 of its plaintext; also the record's AAD).
    pub id: BlobId,
    /// Whether the blob is file content or a tree.
    pub kind: BlobKind,
    /// Offset of the record (nonce first) from the start of the pack object.
    pub offset: u32,
    /// Length of the record (nonce + ciphertext + tag).
    pub length: u32,
    /// Length of the blob's plaintext.
    pub raw_length: u32,
}

/// Largest blob plaintext accepted when reading (data blobs are ≤ 16 MiB; trees may be larger).
pub const MAX_BLOB_LEN: u32 = 256 * 1024 * 1024;

impl BlobEntry {
    /// Checks the entry's bounds; a bad one is a [`Error::Malformed`] `what` (the pack
    /// trailer or the index it came from).
    fn validate(&self, what: &'static str, pack_len: Option<u64>) -> Result<()> {
        let bad = |message: String| Err(Error::malformed(what, message));
        let min_off = (HEADER_LEN + PUB_LEN) as u32;
        if self.offset < min_off {
            return bad(format!("blob {} starts inside the pack header", self.id));
        }
        if (self.length as usize) < NONCE_LEN + TAG_LEN + 1 {
            return bad(format!("blob {} record is too short", self.id));
        }
        if self.raw_length > MAX_BLOB_LEN {
            return bad(format!("blob {} claims {} bytes", self.id, self.raw_length));
        }
        if let Some(len) = pack_len
            && self.offset as u64 + self.length as u64 > len
        {
            return bad(format!("blob {} extends past the end of the pack", self.id));
        }
        Ok(())
    }
}

/// The decrypted pack trailer: the blobs in the pack, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackTrailer {
    /// Every blob record of the pack, in the order written (ascending offsets).
    pub blobs: Vec<BlobEntry>,
}

pub(crate) const PACK_INFO: &[u8] = b"ferry v1 pack";
pub(crate) const TRAILER_AAD: &[u8] = b"ferry trailer";

impl PackTrailer {
    /// Parse a decrypted trailer payload.
    pub fn parse(plaintext: &[u8]) -> Result<PackTrailer> {
        let t: PackTrailer = postcard::from_bytes(plaintext)
            .map_err(|e| Error::malformed("pack trailer", e.to_string()))?;
        for b in &t.blobs {
            b.validate("pack trailer", None)?;
        }
        Ok(t)
    }

    /// The postcard encoding (the trailer plaintext before compression and encryption).
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }
}

/// The ephemeral public key written after a pack's header.
pub fn pack_ephemeral(pack: &[u8], name: &str) -> Result<[u8; 32]> {
    let object = ObjectKind::Pack.key(name);
    format::check_header(pack, ObjectKind::Pack)
        .map_err(|e| Error::corrupt(&object, e.to_string()))?;
    if pack.len() < HEADER_LEN + PUB_LEN + 4 {
        return Err(Error::corrupt(object, "too short for a pack"));
    }
    let mut eph = [0u8; 32];
    eph.copy_from_slice(&pack[HEADER_LEN..HEADER_LEN + PUB_LEN]);
    Ok(eph)
}

/// Decrypt and parse a whole pack's trailer (master key). `name` is used in errors.
pub fn open_pack_trailer(key: &MasterKey, pack: &[u8], name: &str) -> Result<PackTrailer> {
    let object = ObjectKind::Pack.key(name);
    let eph = pack_ephemeral(pack, name)?;
    let n = pack.len();
    let tlen = u32::from_le_bytes([pack[n - 4], pack[n - 3], pack[n - 2], pack[n - 1]]) as usize;
    let body_start = HEADER_LEN + PUB_LEN;
    if tlen > n - 4 - body_start {
        return Err(Error::corrupt(
            object,
            "trailer length points outside the pack",
        ));
    }
    let tstart = n - 4 - tlen;
    let sym = crypto::recipient_key(key.secret(), &eph, PACK_INFO)
        .ok_or_else(|| Error::corrupt(&object, "invalid ephemeral public key"))?;
    let plain = crypto::open(&sym, TRAILER_AAD, &pack[tstart..n - 4]).ok_or_else(|| {
        Error::corrupt(
            &object,
            "trailer decryption failed (damaged, or a different key)",
        )
    })?;
    let payload = crypto::decompress(&plain, crypto::MAX_OBJECT_PLAINTEXT)
        .map_err(|m| Error::corrupt(&object, m))?;
    let t = PackTrailer::parse(&payload).map_err(|e| Error::corrupt(&object, e.to_string()))?;
    for b in &t.blobs {
        if b.offset as usize + b.length as usize > tstart {
            return Err(Error::corrupt(
                &object,
                format!("blob {} overlaps the trailer", b.id),
            ));
        }
    }
    Ok(t)
}

/// One pack's entry in an index object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    /// The pack's object name (SHA-256 hex).
    pub pack: String,
    /// The pack's ephemeral public key (so a blob can be decrypted from a byte range).
    pub ephemeral: [u8; 32],
    /// The pack's blobs, as in its trailer.
    pub blobs: Vec<BlobEntry>,
}

/// The decrypted payload of an `index/` object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexObject {
    /// The packs this index covers, each with all its blobs.
    pub packs: Vec<IndexPack>,
}

impl IndexObject {
    /// Parse a decrypted index payload.
    pub fn parse(plaintext: &[u8]) -> Result<IndexObject> {
        let i: IndexObject = postcard::from_bytes(plaintext)
            .map_err(|e| Error::malformed("index", e.to_string()))?;
        for p in &i.packs {
            if !format::is_sha256_hex(&p.pack) {
                return Err(Error::malformed(
                    "index",
                    format!("pack name {:?} is not a SHA-256 hex name", p.pack),
                ));
            }
            for b in &p.blobs {
                b.validate("index", None)?;
            }
        }
        Ok(i)
    }

    /// The postcard encoding (the payload before compression and encryption).
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decrypt and parse a whole `index/<name>` object.
    pub fn open(key: &MasterKey, bytes: &[u8], name: &str) -> Result<IndexObject> {
        let object = ObjectKind::Index.key(name);
        let plain = crypto::open_object(ObjectKind::Index, key.secret(), bytes, &object)?;
        IndexObject::parse(&plain).map_err(|e| Error::corrupt(object, e.to_string()))
    }
}

/// Decrypt one blob record (as read from `offset..offset+length` of its pack) and check its id.
pub fn open_blob(
    key: &MasterKey,
    ephemeral: &[u8; 32],
    entry: &BlobEntry,
    record: &[u8],
    pack_name: &str,
) -> Result<Vec<u8>> {
    let sym = crypto::recipient_key(key.secret(), ephemeral, PACK_INFO).ok_or_else(|| {
        Error::corrupt(
            ObjectKind::Pack.key(pack_name),
            "invalid ephemeral public key",
        )
    })?;
    open_blob_with(&sym, key.as_put(), entry, record, pack_name)
}

pub(crate) fn open_blob_with(
    sym: &crypto::SymKey,
    put: &PutKey,
    entry: &BlobEntry,
    record: &[u8],
    pack_name: &str,
) -> Result<Vec<u8>> {
    let mut dctx = zstd::bulk::Decompressor::new().ok();
    let (mut record, mut out) = (record.to_vec(), Vec::new());
    open_blob_in_place(
        sym,
        put,
        entry,
        &mut record,
        pack_name,
        dctx.as_mut(),
        &mut out,
    )
    .map(<[u8]>::to_vec)
}

/// [`open_blob_with`] without a copy or an allocation per blob, for restore's workers:
/// `record` is decrypted where it lies (and left undefined), a compressed blob is
/// decompressed into `out` with `dctx`, and the verified data is answered as a slice of
/// `record` (a blob stored raw) or of `out`.
pub(crate) fn open_blob_in_place<'a>(
    sym: &crypto::SymKey,
    put: &PutKey,
    entry: &BlobEntry,
    record: &'a mut [u8],
    pack_name: &str,
    dctx: Option<&mut zstd::bulk::Decompressor<'static>>,
    out: &'a mut Vec<u8>,
) -> Result<&'a [u8]> {
    let object = || {
        format!(
            "{} (blob {} at offset {})",
            ObjectKind::Pack.key(pack_name),
            entry.id,
            entry.offset
        )
    };
    if record.len() != entry.length as usize {
        return Err(Error::corrupt(object(), "blob record truncated"));
    }
    let plain = crypto::open_in_place(sym, &entry.id.0, record)
        .ok_or_else(|| Error::corrupt(object(), "blob decryption failed"))?;
    let data = crypto::decompress_into(plain, entry.raw_length as usize, dctx, out)
        .map_err(|m| Error::corrupt(object(), m))?;
    if data.len() != entry.raw_length as usize {
        return Err(Error::corrupt(
            object(),
            "blob length differs from the index",
        ));
    }
    if crypto::blob_id(put.hash_key(), data) != entry.id {
        return Err(Error::corrupt(
            object(),
            "blob content does not match its id",
        ));
    }
    Ok(data)
}

// ---------------------------------------------------------------------------------------
// trees

/// What a tree node is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A regular file; its content is the concatenation of these blobs.
    File {
        /// Data blob ids in file order (empty for an empty file).
        content: Vec<BlobId>,
    },
    /// A directory; its entries are the tree blob `subtree`.
    Dir {
        /// Id of the tree blob listing the directory's entries.
        subtree: BlobId,
    },
    /// A symbolic link with its raw target bytes.
    Symlink {
        /// The link target exactly as `readlink` returned it (not necessarily UTF-8).
        target: Vec<u8>,
    },
}

/// One entry of a directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The raw name bytes (non-UTF-8 kept exactly). Never empty, `.`, `..`, or containing `/` or NUL
    /// when written by Ferry; restore re-checks.
    pub name: Vec<u8>,
    /// File, directory or symlink, with what it points to.
    pub kind: NodeKind,
    /// Permission bits (including setuid/setgid/sticky), without the file type.
    pub mode: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Numeric owner user id (restored if the restore options say so; by default as root).
    pub uid: u32,
    /// Numeric owner group id (restored like `uid`).
    pub gid: u32,
    /// File size in bytes (0 for directories; target length for symlinks).
    pub size: u64,
    /// Inode number on the source at backup time (informational; not restored).
    pub inode: u64,
}

impl Node {
    /// The name for display (lossy UTF-8).
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// The deepest directory nesting a snapshot may have: a tree more than this many levels below
/// the snapshot's root is refused by `restore` and `ls`, and reported by `check` (a crafted
/// chain of trees must not exhaust a reader's stack). One limit, so `check` reports exactly
/// what restore would refuse.
pub const MAX_TREE_DEPTH: usize = 4096;

/// A directory listing: nodes sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// The directory's entries, sorted by raw name bytes when written by Ferry.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Parse a tree blob's plaintext. Checks only the encoding; names are validated by
    /// restore (a malicious tree must still be reportable).
    pub fn parse(bytes: &[u8]) -> Result<Tree> {
        postcard::from_bytes(bytes).map_err(|e| Error::malformed("tree", e.to_string()))
    }

    /// The postcard encoding (the tree blob's plaintext).
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// The entry named `name` (raw bytes): binary search, then a linear scan in case the
    /// tree is not sorted.
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
            .or_else(|| self.nodes.iter().find(|n| n.name == name))
    }
}

// ---------------------------------------------------------------------------------------
// snapshots

/// Statistics of one backup run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStats {
    /// Regular files recorded (read or unchanged).
    pub files: u64,
    /// Directories recorded (including the root, when the collector adds it).
    pub dirs: u64,
    /// Symbolic links recorded.
    pub symlinks: u64,
    /// Total size of all files in the snapshot.
    pub bytes: u64,
    /// Bytes actually read (unchanged files are not read).
    pub bytes_read: u64,
    /// Files skipped because the cache showed them unchanged.
    pub unchanged_files: u64,
    /// Blobs (data + tree) this run stored.
    pub new_blobs: u64,
    /// Plaintext bytes of those blobs.
    pub new_bytes: u64,
    /// Bytes of those blobs after compression and encryption.
    pub stored_bytes: u64,
    /// Blobs that were already in the repository (or earlier in this run).
    pub dedup_blobs: u64,
    /// Packs written by this run.
    pub packs: u64,
    /// Entries that could not be read (see `errors`).
    pub errors: u64,
    /// Wall-clock length of the run, milliseconds (from session start to the snapshot).
    pub duration_ms: u64,
}

/// One source (a local path, or a remote host's path) and how it went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// The source's name, as registered with the backup session (its top-level path
    /// component in the snapshot).
    pub source: String,
    /// `ok`, `partial` (some entries unreadable) or `failed` (nothing could be read).
    pub status: String,
    /// Entries of this source that could not be backed up.
    pub errors: u64,
}

/// An entry that could not be backed up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceError {
    /// Name of the source the entry belongs to (as in [`SourceStatus::source`]).
    pub source: String,
    /// The path (lossy UTF-8) of the entry.
    pub path: String,
    /// Why it could not be backed up (e.g. the I/O error).
    pub message: String,
}

/// The decrypted content of a `snapshots/` object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// RFC 3339 UTC time the backup started.
    pub time: String,
    /// Nanoseconds since the Unix epoch (same instant as `time`).
    pub time_ns: i64,
    /// Host the backup is recorded for (the backing-up machine's hostname unless overridden).
    pub host: String,
    /// The sources as given.
    pub paths: Vec<String>,
    /// User-given tags, as given (possibly empty).
    pub tags: Vec<String>,
    /// Label of the source set (sources + host), which selects the file-metadata cache.
    pub source_set: String,
    /// Root tree blob.
    pub root: BlobId,
    /// Counters of the run that wrote this snapshot.
    pub stats: SnapshotStats,
    /// Each registered source and whether it was read fully.
    pub sources: Vec<SourceStatus>,
    /// Every entry that could not be backed up, in the order met.
    pub errors: Vec<SourceError>,
    /// Version of the `ferry-repo` crate that wrote the snapshot (`CARGO_PKG_VERSION`).
    pub ferry_version: String,
    /// What the run that uploaded this snapshot used in the cloud (`None` for a backup written
    /// straight to a repository).
    pub usage: Option<RunUsage>,
}

/// A backup run's cloud usage, as the client measured it (see docs/COST.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunUsage {
    /// Objects the gate stored with `PutObject` (each answered STORED or ALREADY_PRESENT is one
    /// S3 PUT request).
    pub s3_put_requests: u64,
    /// `ListObjectsV2` requests the gate made (comparing a repeated `config`).
    pub s3_list_requests: u64,
    /// `GetObject` requests of the session (the jump box fetching the gate artifact).
    pub s3_get_requests: u64,
    /// Bytes uploaded through the gate.
    pub uploaded_bytes: u64,
    /// Objects uploaded through the gate.
    pub uploaded_objects: u64,
    /// Lambda invocations made by the client (ferry-build, ferry-clean).
    pub lambda_invocations: u64,
    /// Seconds from ferry-build's answer until ferry-clean's (the jump box's life as the
    /// client saw it; EC2 bills at least 60 s).
    pub instance_seconds: u64,
}

impl Snapshot {
    /// Parse a decrypted snapshot payload.
    pub fn parse(plaintext: &[u8]) -> Result<Snapshot> {
        postcard::from_bytes(plaintext).map_err(|e| Error::malformed("snapshot", e.to_string()))
    }

    /// The postcard encoding (the payload before compression and encryption).
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decrypt and parse a whole `snapshots/<name>` object.
    pub fn open(key: &MasterKey, bytes: &[u8], name: &str) -> Result<Snapshot> {
        let object = ObjectKind::Snapshot.key(name);
        let plain = crypto::open_object(ObjectKind::Snapshot, key.secret(), bytes, &object)?;
        Snapshot::parse(&plain).map_err(|e| Error::corrupt(object, e.to_string()))
    }

    /// Encrypt to the master key: `(object name, object bytes)` for `snapshots/<name>`.
    pub fn seal(&self, key: &PutKey) -> (String, Vec<u8>) {
        let obj = crypto::seal_object(ObjectKind::Snapshot, key.public_key(), &self.to_bytes());
        (crate::format::object_name(&obj), obj)
    }

    /// Whether any source had errors (CLI exit code 3).
    pub fn is_partial(&self) -> bool {
        self.stats.errors > 0 || !self.errors.is_empty()
    }
}

/// A snapshot with its id (the object name). Serialises flat: `{"id": …, "time": …, …}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The snapshot's object name: lowercase hex SHA-256 of its stored bytes.
    pub id: String,
    /// The decrypted snapshot.
    #[serde(flatten)]
    pub snapshot: Snapshot,
}

impl SnapshotInfo {
    /// First 8 hex characters of the id.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(8)]
    }

    /// The `ferry backup --json` summary: the id and short id, the snapshot's metadata, its
    /// statistics, and every entry that could not be read (keys in alphabetical order).
    pub fn summary_json(&self) -> serde_json::Value {
        let s = &self.snapshot;
        serde_json::json!({
            "snapshot": self.id,
            "short_id": self.short_id(),
            "time": s.time,
            "host": s.host,
            "paths": s.paths,
            "partial": s.is_partial(),
            "stats": s.stats,
            "sources": s.sources,
            "errors": s.errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto;
    use proptest::prelude::*;

    fn entry(i: u8) -> BlobEntry {
        BlobEntry {
            id: BlobId([i; 32]),
            kind: if i.is_multiple_of(2) {
                BlobKind::Data
            } else {
                BlobKind::Tree
            },
            offset: 38 + i as u32 * 100,
            length: 100,
            raw_length: 60,
        }
    }

    #[test]
    fn round_trips() {
        let key = MasterKey::from_seed(&[1; 32]);
        let c = RepoConfig::for_key(key.as_put());
        assert_eq!(RepoConfig::parse(&c.to_bytes()).unwrap(), c);
        c.check_key(key.as_put()).unwrap();
        assert!(matches!(
            c.check_key(MasterKey::from_seed(&[2; 32]).as_put()),
            Err(Error::WrongKey(_))
        ));

        let t = PackTrailer {
            blobs: (0..5).map(entry).collect(),
        };
        assert_eq!(PackTrailer::parse(&t.to_bytes()).unwrap(), t);
        let idx = IndexObject {
            packs: vec![IndexPack {
                pack: "ab".repeat(32),
                ephemeral: [9; 32],
                blobs: t.blobs.clone(),
            }],
        };
        let obj = crypto::seal_object(
            ObjectKind::Index,
            key.as_put().public_key(),
            &idx.to_bytes(),
        );
        assert_eq!(IndexObject::open(&key, &obj, "x").unwrap(), idx);
        // Another key cannot open it, and says which object.
        let err = IndexObject::open(&MasterKey::from_seed(&[3; 32]), &obj, "x").unwrap_err();
        assert!(err.to_string().contains("index/x"), "{err}");
        // A bad pack name inside an index is refused.
        let mut bad = idx.clone();
        bad.packs[0].pack = "../../etc".into();
        assert!(IndexObject::parse(&bad.to_bytes()).is_err());
    }

    proptest! {
        /// Every parser returns an error (never panics) on arbitrary bytes.
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let key = MasterKey::from_seed(&[5; 32]);
            let _ = RepoConfig::parse(&bytes);
            let _ = PackTrailer::parse(&bytes);
            let _ = IndexObject::parse(&bytes);
            let _ = Tree::parse(&bytes);
            let _ = Snapshot::parse(&bytes);
            let _ = IndexObject::open(&key, &bytes, "f");
            let _ = Snapshot::open(&key, &bytes, "f");
            let _ = open_pack_trailer(&key, &bytes, "f");
            let _ = crate::keys::parse(&bytes).map(|k| k.unlock(None, "f"));
            let mut with_header = crate::format::header(ObjectKind::Pack).to_vec();
            with_header.extend_from_slice(&bytes);
            let _ = open_pack_trailer(&key, &with_header, "f");
            let mut cfg = crate::format::header(ObjectKind::Config).to_vec();
            cfg.extend_from_slice(&bytes);
            let _ = RepoConfig::parse(&cfg);
        }
    }
}
