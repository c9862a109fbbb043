//! The local cache: `<root>/<repo-id>/` (root = `$FERRY_CACHE_DIR`, else `$XDG_CACHE_HOME/ferry`,
//! or an explicit path).
//!
//! * `packs.log`: an append-only journal of packs committed to storage (with their blob
//!   entries) and of index objects that cover them. A pack is recorded only after storage
//!   accepted it, so every blob id in the cache is really stored. Packs not yet covered by an
//!   index (an interrupted run) are indexed by the next run before its snapshot. Each record is
//!   `len u32 LE | blake3[..8] | postcard`, so a torn tail is ignored. Compacted atomically.
//! * `files-<hash of source set>.bin`: for one source set, the previous run's file metadata
//!   (size, mtime, inode) and content blob ids, written atomically (temp file + rename).
//!
//! The put key cannot read the repository, so dedup across runs comes from here alone:
//! deleting the cache costs one full upload, never a backup.

use crate::error::{Error, Result};
use crate::ids::{BlobId, RepoId};
use crate::objects::IndexPack;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What the cache remembers about one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Bytes read from the file by the run that stored it (what the snapshot records).
    pub size: u64,
    /// Modification time seen by that run, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Inode number seen by that run (with size and mtime, how an unchanged file is
    /// recognised).
    pub inode: u64,
    /// Ids of the file's data blobs, in file order (empty for an empty file).
    pub content: Vec<BlobId>,
}

/// Per source set: path (components joined by `/`) → file record.
pub type FilesCache = HashMap<Vec<u8>, FileRecord>;

#[derive(Serialize, Deserialize)]
enum LogRecord {
    Pack(IndexPack),
    Indexed { index: String, packs: Vec<String> },
}

struct CachedPack {
    entry: IndexPack,
    indexed: bool,
}

/// The cache of one repository. `Cache::in_memory` keeps nothing on disk.
pub struct Cache {
    dir: Option<PathBuf>,
    packs: BTreeMap<String, CachedPack>,
    log: Option<std::fs::File>,
    /// Held (flock) while the cache is open, so two runs never interleave their journals.
    _lock: Option<std::fs::File>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("dir", &self.dir)
            .field("packs", &self.packs.len())
            .finish()
    }
}

const LOG: &str = "packs.log";
const MAX_RECORD: usize = 512 * 1024 * 1024;

impl Cache {
    /// `$FERRY_CACHE_DIR`, else `<XDG cache dir>/ferry`.
    pub fn default_root() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("FERRY_CACHE_DIR").filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(d));
        }
        dirs::cache_dir().map(|d| d.join("ferry"))
    }

    /// A cache that remembers nothing (every run uploads everything once).
    pub fn in_memory() -> Cache {
        Cache {
            dir: None,
            packs: BTreeMap::new(),
            log: None,
            _lock: None,
        }
    }

    /// Open (creating) `<root>/<repo-id>/`.
    pub fn open(root: &Path, repo: RepoId) -> Result<Cache> {
        let dir = root.join(repo.to_hex());
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create cache directory", &dir, e))?;
        let lock_path = dir.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io("open cache lock", &lock_path, e))?;
        if !crate::lockfile::lock_exclusive(&lock, crate::lockfile::LOCK_WAIT)
            .map_err(|e| Error::io("lock cache", &lock_path, e))?
        {
            return Err(Error::Cache {
                path: dir,
                message: "in use by another ferry process (one backup per repository and cache at a time)".into(),
            });
        }
        let mut c = Cache {
            dir: Some(dir.clone()),
            packs: BTreeMap::new(),
            log: None,
            _lock: Some(lock),
        };
        let path = dir.join(LOG);
        match std::fs::read(&path) {
            Ok(bytes) => c.replay(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("read cache", &path, e)),
        }
        c.compact()?;
        Ok(c)
    }

    /// The directory, if on disk.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn replay(&mut self, mut bytes: &[u8]) {
        while bytes.len() >= 12 {
            let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
            if len > MAX_RECORD || bytes.len() < 12 + len {
                break;
            }
            let payload = &bytes[12..12 + len];
            if blake3::hash(payload).as_bytes()[..8] != bytes[4..12] {
                break;
            }
            match postcard::from_bytes::<LogRecord>(payload) {
                Ok(LogRecord::Pack(p)) => {
                    self.packs.insert(
                        p.pack.clone(),
                        CachedPack {
                            entry: p,
                            indexed: false,
                        },
                    );
                }
                Ok(LogRecord::Indexed { packs, .. }) => {
                    for p in packs {
                        if let Some(cp) = self.packs.get_mut(&p) {
                            cp.indexed = true;
                        }
                    }
                }
                Err(_) => break,
            }
            bytes = &bytes[12 + len..];
        }
    }

    fn encode(rec: &LogRecord) -> Vec<u8> {
        let payload = postcard::to_allocvec(rec).unwrap_or_default();
        let mut out = Vec::with_capacity(12 + payload.len());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&blake3::hash(&payload).as_bytes()[..8]);
        out.extend_from_slice(&payload);
        out
    }

    fn cache_err(&self, message: String) -> Error {
        Error::Cache {
            path: self.dir.clone().unwrap_or_default(),
            message,
        }
    }

    /// Rewrite the journal from the current state (atomically) and reopen it for appending.
    fn compact(&mut self) -> Result<()> {
        let Some(dir) = self.dir.clone() else {
            return Ok(());
        };
        let mut buf = Vec::new();
        let mut indexed = Vec::new();
        for cp in self.packs.values() {
            buf.extend(Self::encode(&LogRecord::Pack(cp.entry.clone())));
            if cp.indexed {
                indexed.push(cp.entry.pack.clone());
            }
        }
        if !indexed.is_empty() {
            buf.extend(Self::encode(&LogRecord::Indexed {
                index: String::new(),
                packs: indexed,
            }));
        }
        self.log = None;
        write_atomic(&dir.join(LOG), &buf)?;
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(LOG))
            .map_err(|e| Error::io("open cache journal", dir.join(LOG), e))?;
        self.log = Some(f);
        Ok(())
    }

    fn append(&mut self, rec: &LogRecord) -> Result<()> {
        let bytes = Self::encode(rec);
        if let Some(f) = self.log.as_mut()
            && let Err(e) = f.write_all(&bytes).and_then(|_| f.sync_data())
        {
            return Err(self.cache_err(format!(
                "append to journal: {}",
                crate::error::describe_io(&e)
            )));
        }
        Ok(())
    }

    /// Drop packs that storage no longer lists (`storage_packs` = `storage.list(Pack)`).
    /// Returns how many were dropped.
    pub fn reconcile(&mut self, storage_packs: &HashSet<String>) -> Result<usize> {
        let before = self.packs.len();
        self.packs.retain(|name, _| storage_packs.contains(name));
        let dropped = before - self.packs.len();
        if dropped > 0 {
            self.compact()?;
        }
        Ok(dropped)
    }

    /// Every blob id known to be stored in a committed pack.
    pub fn known_blobs(&self) -> HashSet<BlobId> {
        self.packs
            .values()
            .flat_map(|p| p.entry.blobs.iter().map(|b| b.id))
            .collect()
    }

    /// Names of the packs the cache knows.
    pub fn pack_names(&self) -> Vec<String> {
        self.packs.keys().cloned().collect()
    }

    /// Committed packs that no index object covers yet.
    pub fn unindexed_packs(&self) -> Vec<IndexPack> {
        self.packs
            .values()
            .filter(|p| !p.indexed)
            .map(|p| p.entry.clone())
            .collect()
    }

    /// Record a pack storage has accepted.
    pub fn record_pack(&mut self, pack: &IndexPack) -> Result<()> {
        self.append(&LogRecord::Pack(pack.clone()))?;
        self.packs.insert(
            pack.pack.clone(),
            CachedPack {
                entry: pack.clone(),
                indexed: false,
            },
        );
        Ok(())
    }

    /// Record that index object `index` (accepted by storage) covers `packs`.
    pub fn record_indexed(&mut self, index: &str, packs: &[String]) -> Result<()> {
        self.append(&LogRecord::Indexed {
            index: index.to_string(),
            packs: packs.to_vec(),
        })?;
        for p in packs {
            if let Some(cp) = self.packs.get_mut(p) {
                cp.indexed = true;
            }
        }
        Ok(())
    }

    fn files_path(&self, source_set: &str) -> Option<PathBuf> {
        let h = blake3::hash(source_set.as_bytes()).to_hex();
        self.dir
            .as_ref()
            .map(|d| d.join(format!("files-{}.bin", &h[..32])))
    }

    /// The file records of the previous run of `source_set` (empty if none or unreadable).
    pub fn load_files(&self, source_set: &str) -> FilesCache {
        let Some(path) = self.files_path(source_set) else {
            return FilesCache::new();
        };
        let Ok(bytes) = std::fs::read(&path) else {
            return FilesCache::new();
        };
        if bytes.len() < 8 || blake3::hash(&bytes[8..]).as_bytes()[..8] != bytes[..8] {
            tracing::warn!(path = %path.display(), "ignoring damaged file cache");
            return FilesCache::new();
        }
        postcard::from_bytes::<Vec<(Vec<u8>, FileRecord)>>(&bytes[8..])
            .map(|v| v.into_iter().collect())
            .unwrap_or_default()
    }

    /// Replace the file records of `source_set` (atomically).
    pub fn save_files(&self, source_set: &str, files: &FilesCache) -> Result<()> {
        let Some(path) = self.files_path(source_set) else {
            return Ok(());
        };
        let v: Vec<(&Vec<u8>, &FileRecord)> = files.iter().collect();
        let payload = postcard::to_allocvec(&v).map_err(|e| self.cache_err(e.to_string()))?;
        let mut out = blake3::hash(&payload).as_bytes()[..8].to_vec();
        out.extend_from_slice(&payload);
        write_atomic(&path, &out)
    }

    /// Compact the journal (called at the end of a run).
    pub fn flush(&mut self) -> Result<()> {
        self.compact()
    }
}

/// Write `bytes` to `path` via a temporary file in the same directory and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io("create temporary cache file in", dir, e))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_data())
        .map_err(|e| Error::io("write cache file", path, e))?;
    tmp.persist(path)
        .map_err(|e| Error::io("replace cache file", path, e.error))?;
    Ok(())
}

/// Lock a cache shared between a backup session and its pack committer. A poisoned lock is
/// taken over, not propagated: the panic itself is reported when its thread is joined.
pub(crate) fn lock(cache: &std::sync::Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    cache.lock().unwrap_or_else(|p| p.into_inner())
}
