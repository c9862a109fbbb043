//! Storage behind a small trait: put-if-absent, list, get. Objects are write-once.
//!
//! Backends: [`LocalDir`] and the in-memory [`MemStorage`] (for unit tests) here, and
//! [`CountedStorage`], which counts the reads made through any of them; the
//! gate-over-SSH backend lives in `ferry-remote`, the S3 backend in `ferry-s3`. Every
//! backend runs the one conformance suite, [`conformance`] (cargo feature `conformance`,
//! for dev-dependencies only).

use crate::format::ObjectKind;
use std::path::{Path, PathBuf};

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod counted;
mod mem;

pub use counted::{CountedStorage, StorageReads};
pub use mem::{MemCalls, MemStorage};

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written.
    Stored,
    /// An object with that name was already there; nothing was changed.
    AlreadyPresent,
}

/// A storage failure, naming the object or location.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object does not exist (`get`, `get_range`).
    #[error("object {key} not found in {location}")]
    NotFound {
        /// The backend's [`Storage::location`].
        location: String,
        /// The object's storage key ([`ObjectKind::key`], e.g. `snapshots/<id>`).
        key: String,
    },
    /// A local file operation failed (the [`LocalDir`] backend).
    #[error("{op} {key} in {location}: {}", crate::error::describe_io(source))]
    Io {
        /// The operation, as a verb shown before the key ("read", "commit", "list", …).
        op: &'static str,
        /// The backend's [`Storage::location`].
        location: String,
        /// The object's storage key, or the kind's directory for `list`.
        key: String,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },
    /// The object's name is there but is not a regular file (a FIFO, a socket, a device, a
    /// directory): it cannot hold an object, and opening it must not block ([`LocalDir`]
    /// refuses it without reading). Readers treat it like junk that does not decrypt.
    #[error("{key} in {location} is a {what}, not a regular file")]
    NotRegularFile {
        /// The backend's [`Storage::location`].
        location: String,
        /// The object's storage key ([`ObjectKind::key`], e.g. `packs/<name>`).
        key: String,
        /// What it is instead ("FIFO", "socket", "character device", "directory", …).
        what: &'static str,
    },
    /// The backend does not offer this operation: a store for the backup VM (the gate, the
    /// spool) can put and list but never delete or move.
    #[error(
        "{location} cannot {op} objects: it is put-only (forget and prune need the operator's storage: a local directory or s3:// with admin credentials)"
    )]
    Unsupported {
        /// The backend's [`Storage::location`].
        location: String,
        /// The refused operation (`delete`, `copy`).
        op: &'static str,
    },
    /// Any other backend failure (the gate over SSH, S3, a refused put, a lost
    /// connection), described in text.
    #[error("{location}: {message}")]
    Backend {
        /// The backend's [`Storage::location`].
        location: String,
        /// What failed, naming the objects concerned.
        message: String,
    },
}

impl StorageError {
    /// Whether the object is there but is not a regular file ([`StorageError::NotRegularFile`]):
    /// it cannot hold an object, so a reader skips it as junk instead of failing.
    pub fn is_not_regular_file(&self) -> bool {
        matches!(self, StorageError::NotRegularFile { .. })
    }
}

/// What [`Storage::sweep_old_versions`] found (and, unless a dry run, removed): the old
/// versions a versioned store keeps after a delete (S3 with Object Lock, where every object
/// version stays locked for the bucket's retention). Current objects are never touched.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VersionSweep {
    /// Old object versions removed (or, in a dry run, that would be).
    pub removed: u64,
    /// Their bytes.
    pub removed_bytes: u64,
    /// Delete markers removed (or that would be).
    pub removed_markers: u64,
    /// Old versions still locked: they wait for their retain-until date.
    pub locked: u64,
    /// Their bytes (still billed as storage).
    pub locked_bytes: u64,
    /// The earliest retain-until date among them (Unix seconds), when known.
    pub next_unlock: Option<i64>,
    /// The latest one (Unix seconds), when known: everything is gone by a prune after it.
    pub last_unlock: Option<i64>,
    /// Requests spent: list pages, reads of a version's lock, deletes.
    pub list_requests: u64,
    /// Reads of a version's retention (HEAD).
    pub head_requests: u64,
    /// Deletes of a version or a marker.
    pub delete_requests: u64,
}

/// A streaming upload of one object whose name is known only at the end (a pack).
/// Dropping it without `commit` abandons it (nothing appears under any name).
pub trait PendingPut: Send {
    /// Append `bytes` to the object being uploaded (called repeatedly, in order).
    fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError>;
    /// Store everything written under `name` unless an object by that name exists.
    fn commit(self: Box<Self>, name: &str) -> Result<PutOutcome, StorageError>;
}

/// Where repository objects live. Implementations never overwrite an existing object.
pub trait Storage: Send + Sync {
    /// A human-readable location for messages (a path, `gate+ssh://…`, `s3://…`).
    fn location(&self) -> String;
    /// Store `bytes` as (`kind`, `name`) unless an object by that name exists.
    fn put_if_absent(
        &self,
        kind: ObjectKind,
        name: &str,
        bytes: &[u8],
    ) -> Result<PutOutcome, StorageError>;
    /// Names of all objects of `kind`, sorted, without repeats (for `config`: `["config"]` if
    /// it exists).
    fn list(&self, kind: ObjectKind) -> Result<Vec<String>, StorageError>;
    /// The whole object.
    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, StorageError>;
    /// Start a streaming put (avoids holding a whole pack in memory). `None` (the default)
    /// means unsupported: the caller buffers the object and calls `put_if_absent`.
    fn begin_put(&self, _kind: ObjectKind) -> Option<Result<Box<dyn PendingPut>, StorageError>> {
        None
    }

    /// Wait until the store confirmed every earlier put. A backend that pipelines puts
    /// (the gate over SSH, for packs) returns from `put_if_absent` once the object is sent,
    /// with a provisional `Stored`; the real verdict — a refusal, a lost connection — comes
    /// from a later call or from this one, naming the object. Synchronous backends need
    /// nothing (the default). Such a backend also waits by itself before any put of an
    /// index, snapshot or config, which refer to earlier objects.
    fn barrier(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Whether [`delete`](Self::delete) and [`copy`](Self::copy) are offered (the operator's
    /// stores); `false` (the default) for the put-only stores of the backup VM.
    fn can_delete(&self) -> bool {
        false
    }

    /// Delete (`kind`, `name`): the operator's forget and prune only. Deleting an object that
    /// is not there succeeds, as S3's `DeleteObject` does. The default refuses
    /// ([`StorageError::Unsupported`]): a backend of the backup VM holds no credential that
    /// can delete.
    fn delete(&self, _kind: ObjectKind, _name: &str) -> Result<(), StorageError> {
        Err(StorageError::Unsupported {
            location: self.location(),
            op: "delete",
        })
    }

    /// Copy (`from`, `name`) to (`to`, `name`) inside the store, the bytes never passing
    /// through the caller (S3 `CopyObject`; a hard link in a directory). Prune moves a pack
    /// to `trash/` as copy, then delete. A destination already there is left as it is
    /// (both hold the same bytes: the name is their SHA-256); a missing source is
    /// [`StorageError::NotFound`]. The default refuses, like [`delete`](Self::delete).
    fn copy(&self, _from: ObjectKind, _to: ObjectKind, _name: &str) -> Result<(), StorageError> {
        Err(StorageError::Unsupported {
            location: self.location(),
            op: "copy",
        })
    }

    /// Remove the old versions a versioned store keeps after [`delete`](Self::delete) (and
    /// the delete markers no longer hiding anything), except those still under Object Lock,
    /// which are counted with their dates. Never touches a current object, so it can never
    /// remove what a snapshot needs. `dry_run` only counts. `None` (the default): the store
    /// keeps no old versions (a directory, memory, an S3 bucket without Object Lock).
    fn sweep_old_versions(&self, _dry_run: bool) -> Result<Option<VersionSweep>, StorageError> {
        Ok(None)
    }

    /// `len` bytes at `offset` of an object (restore and check read coalesced byte ranges of
    /// packs this way, from several threads at once: see [`crate::fetch`]).
    /// The default fetches the whole object; backends should override it.
    fn get_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StorageError> {
        let all = self.get(kind, name)?;
        Ok(byte_range(&all, offset, len).to_vec())
    }
}

/// The `len` bytes of `all` at `offset`, cut at its end (empty past the end): what
/// [`Storage::get_range`] answers for an object whose bytes are all at hand.
pub fn byte_range(all: &[u8], offset: u64, len: u64) -> &[u8] {
    &all[range_within(all.len(), offset, len)]
}

/// The indices of [`byte_range`]: `len` bytes at `offset` of `size`, cut at its end.
pub(crate) fn range_within(size: usize, offset: u64, len: u64) -> std::ops::Range<usize> {
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(size);
    let end = usize::try_from(offset.saturating_add(len))
        .unwrap_or(usize::MAX)
        .min(size);
    start..end.max(start)
}

/// A repository in a local directory: `config`, `packs/`, `index/`, `snapshots/`.
///
/// Writes go to a temporary file in the same directory, are fsynced, then linked into
/// place with `link(2)`, which fails if the name exists: a crash never leaves a partial
/// object under a real name, and an existing object is never replaced.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    /// A repository rooted at the directory `root`. Touches nothing on disk: directories
    /// are created by the first put.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The repository directory given to [`LocalDir::new`].
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, kind: ObjectKind, name: &str) -> PathBuf {
        self.root.join(kind.key(name))
    }

    /// Open the object file for reading without ever blocking (`O_NONBLOCK`: a FIFO named like
    /// an object would otherwise block the open forever, waiting for a writer), then refuse it
    /// if the opened file is not a regular file ([`StorageError::NotRegularFile`]).
    /// Returns the file and its size.
    fn open_object(
        &self,
        kind: ObjectKind,
        name: &str,
    ) -> Result<(std::fs::File, u64), StorageError> {
        use std::os::unix::fs::OpenOptionsExt;
        let key = kind.key(name);
        let f = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(self.path(kind, name))
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::NotFound {
                    location: self.location(),
                    key,
                });
            }
            Err(e) => return Err(self.io("open", key, e)),
        };
        // fstat of the opened file: what is read is what was checked.
        let meta = f.metadata().map_err(|e| self.io("stat", key.clone(), e))?;
        if !meta.file_type().is_file() {
            return Err(StorageError::NotRegularFile {
                location: self.location(),
                key,
                what: crate::error::file_type_name(&meta.file_type()),
            });
        }
        // O_NONBLOCK has no effect on a regular file's reads.
        Ok((f, meta.len()))
    }

    fn io(&self, op: &'static str, key: String, source: std::io::Error) -> StorageError {
        StorageError::Io {
            op,
            location: self.location(),
            key,
            source,
        }
    }
}

impl Storage for LocalDir {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn put_if_absent(
        &self,
        kind: ObjectKind,
        name: &str,
        bytes: &[u8],
    ) -> Result<PutOutcome, StorageError> {
        use std::io::Write;
        let key = kind.key(name);
        let dest = self.path(kind, name);
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| self.io("create directory for", key.clone(), e))?;
        if dest.exists() {
            return Ok(PutOutcome::AlreadyPresent);
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(|e| self.io("create temporary file for", key.clone(), e))?;
        tmp.write_all(bytes)
            .and_then(|_| tmp.as_file().sync_all())
            .map_err(|e| self.io("write", key.clone(), e))?;
        match std::fs::hard_link(tmp.path(), &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Ok(PutOutcome::AlreadyPresent);
            }
            Err(e) => return Err(self.io("commit", key, e)),
        }
        // tmp is removed on drop; the linked name stays.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(PutOutcome::Stored)
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<String>, StorageError> {
        if kind == ObjectKind::Config {
            return Ok(if self.path(kind, "config").exists() {
                vec!["config".to_string()]
            } else {
                vec![]
            });
        }
        let dir = self.root.join(kind.dir());
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(self.io("list", kind.dir().to_string(), e)),
        };
        let mut names = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| self.io("list", kind.dir().to_string(), e))?;
            if let Some(name) = entry.file_name().to_str()
                && crate::format::is_sha256_hex(name)
            {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, StorageError> {
        use std::io::Read;
        let (mut f, size) = self.open_object(kind, name)?;
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        f.read_to_end(&mut bytes)
            .map_err(|e| self.io("read", kind.key(name), e))?;
        Ok(bytes)
    }

    fn can_delete(&self) -> bool {
        true
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> Result<(), StorageError> {
        let path = self.path(kind, name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io("delete", kind.key(name), e)),
        }
        if let Some(d) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn copy(&self, from: ObjectKind, to: ObjectKind, name: &str) -> Result<(), StorageError> {
        let (src, dest) = (self.path(from, name), self.path(to, name));
        let key = to.key(name);
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| self.io("create directory for", key.clone(), e))?;
        // A hard link: atomic, no bytes copied, and the source's later deletion leaves it.
        // link(2) never opens the source, so a FIFO named like an object cannot block it (prune
        // moves such junk to `trash/` like any pack no index covers).
        match std::fs::hard_link(&src, &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !src.exists() => {
                return Err(StorageError::NotFound {
                    location: self.location(),
                    key: from.key(name),
                });
            }
            Err(e) => return Err(self.io("copy to", key, e)),
        }
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn begin_put(&self, kind: ObjectKind) -> Option<Result<Box<dyn PendingPut>, StorageError>> {
        let dir = self.root.join(kind.dir());
        let key = format!("{}/<new>", kind.dir());
        let r = std::fs::create_dir_all(&dir)
            .and_then(|_| tempfile::Builder::new().prefix(".tmp-").tempfile_in(&dir))
            .map_err(|e| self.io("create temporary file for", key, e))
            .map(|tmp| {
                Box::new(LocalPending {
                    repo: self.clone(),
                    kind,
                    dir,
                    tmp,
                }) as Box<dyn PendingPut>
            });
        Some(r)
    }

    fn get_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StorageError> {
        use std::os::unix::fs::FileExt;
        let key = kind.key(name);
        let (f, size) = self.open_object(kind, name)?;
        let end = offset.saturating_add(len).min(size);
        let mut buf = vec![0u8; end.saturating_sub(offset) as usize];
        f.read_exact_at(&mut buf, offset)
            .map_err(|e| self.io("read", key, e))?;
        Ok(buf)
    }
}

struct LocalPending {
    repo: LocalDir,
    kind: ObjectKind,
    dir: PathBuf,
    tmp: tempfile::NamedTempFile,
}

impl PendingPut for LocalPending {
    fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        use std::io::Write;
        self.tmp.write_all(bytes).map_err(|e| {
            self.repo
                .io("write", format!("{}/<new>", self.kind.dir()), e)
        })
    }

    fn commit(self: Box<Self>, name: &str) -> Result<PutOutcome, StorageError> {
        let key = self.kind.key(name);
        self.tmp
            .as_file()
            .sync_all()
            .map_err(|e| self.repo.io("write", key.clone(), e))?;
        let dest = self.repo.path(self.kind, name);
        match std::fs::hard_link(self.tmp.path(), &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Ok(PutOutcome::AlreadyPresent);
            }
            Err(e) => return Err(self.repo.io("commit", key, e)),
        }
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(PutOutcome::Stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::conformance::{Backend, run};

    #[test]
    fn local_dir_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalDir::new(dir.path());
        let report = run(&Backend::new("LocalDir", &s));
        assert_eq!(
            report.skipped_cases(),
            vec!["refused names and objects"],
            "{report}"
        );
        // No temporary file is left behind (committed, failed or abandoned puts).
        for d in ["packs", "index", "snapshots", ""] {
            for e in std::fs::read_dir(dir.path().join(d)).unwrap() {
                let name = e.unwrap().file_name();
                let name = name.to_string_lossy();
                assert!(!name.starts_with(".tmp-"), "{d}/{name} left behind");
            }
        }
    }

    #[test]
    fn local_dir_refuses_special_files_named_like_objects() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalDir::new(dir.path());
        let name = crate::format::object_name(b"not an object");
        std::fs::create_dir_all(dir.path().join("snapshots").join(&name)).unwrap();
        // A symbolic link is followed: what counts is the file opened.
        std::fs::create_dir_all(dir.path().join("index")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("index").join(&name)).unwrap();
        for (kind, what) in [
            (ObjectKind::Snapshot, "directory"),
            (ObjectKind::Index, "character device"),
        ] {
            assert_eq!(s.list(kind).unwrap(), vec![name.clone()]);
            for err in [
                s.get(kind, &name).unwrap_err(),
                s.get_range(kind, &name, 0, 4).unwrap_err(),
            ] {
                assert!(err.is_not_regular_file(), "{err}");
                assert_eq!(
                    err.to_string(),
                    format!(
                        "{} in {} is a {what}, not a regular file",
                        kind.key(&name),
                        s.location()
                    )
                );
            }
        }
    }
}
