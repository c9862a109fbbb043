//! [`CountedStorage`]: any [`Storage`], with its reads counted, for the summaries of restore
//! and `check --read-data` (`--json`: the storage requests a run made, the same for a local
//! directory and `s3://`).

use super::{PendingPut, PutOutcome, Storage, StorageError, VersionSweep};
use crate::format::ObjectKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The reads a [`CountedStorage`] passed on to its backend. Serialized as it is into the
/// `--json` summaries (`"storage_reads": {"get_requests": …, "bytes_fetched": …}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StorageReads {
    /// Object reads, whole ([`Storage::get`]) or of a byte range ([`Storage::get_range`]),
    /// failed ones included: one `GetObject` request each on `s3://` (the SDK's retries of a
    /// failed attempt not counted), one file read on a local directory.
    pub get_requests: u64,
    /// The bytes those reads returned.
    pub bytes_fetched: u64,
}

/// Wraps a [`Storage`] and counts the reads made through it ([`StorageReads`]); everything
/// else is passed on untouched.
pub struct CountedStorage {
    inner: Arc<dyn Storage>,
    gets: AtomicU64,
    bytes: AtomicU64,
}

impl std::fmt::Debug for CountedStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountedStorage")
            .field("location", &self.inner.location())
            .field("reads", &self.reads())
            .finish()
    }
}

impl CountedStorage {
    /// `inner`, counted from zero.
    pub fn new(inner: Arc<dyn Storage>) -> CountedStorage {
        CountedStorage {
            inner,
            gets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// The reads so far.
    pub fn reads(&self) -> StorageReads {
        StorageReads {
            get_requests: self.gets.load(Relaxed),
            bytes_fetched: self.bytes.load(Relaxed),
        }
    }

    fn count(&self, r: Result<Vec<u8>, StorageError>) -> Result<Vec<u8>, StorageError> {
        self.gets.fetch_add(1, Relaxed);
        if let Ok(b) = &r {
            self.bytes.fetch_add(b.len() as u64, Relaxed);
        }
        r
    }
}

impl Storage for CountedStorage {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn put_if_absent(
        &self,
        kind: ObjectKind,
        name: &str,
        bytes: &[u8],
    ) -> Result<PutOutcome, StorageError> {
        self.inner.put_if_absent(kind, name, bytes)
    }
    fn list(&self, kind: ObjectKind) -> Result<Vec<String>, StorageError> {
        self.inner.list(kind)
    }
    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, StorageError> {
        self.count(self.inner.get(kind, name))
    }
    fn begin_put(&self, kind: ObjectKind) -> Option<Result<Box<dyn PendingPut>, StorageError>> {
        self.inner.begin_put(kind)
    }
    fn barrier(&self) -> Result<(), StorageError> {
        self.inner.barrier()
    }
    fn can_delete(&self) -> bool {
        self.inner.can_delete()
    }
    fn delete(&self, kind: ObjectKind, name: &str) -> Result<(), StorageError> {
        self.inner.delete(kind, name)
    }
    fn copy(&self, from: ObjectKind, to: ObjectKind, name: &str) -> Result<(), StorageError> {
        self.inner.copy(from, to, name)
    }
    fn sweep_old_versions(&self, dry_run: bool) -> Result<Option<VersionSweep>, StorageError> {
        self.inner.sweep_old_versions(dry_run)
    }
    fn get_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StorageError> {
        self.count(self.inner.get_range(kind, name, offset, len))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

    use super::*;
    use crate::storage::MemStorage;

    #[test]
    fn reads_are_counted_and_everything_else_passed_on() {
        let mem = MemStorage::new();
        let c = CountedStorage::new(Arc::new(mem.clone()));
        let name = "ab".repeat(32);
        c.put_if_absent(ObjectKind::Pack, &name, b"0123456789")
            .unwrap();
        assert_eq!(c.list(ObjectKind::Pack).unwrap(), vec![name.clone()]);
        assert_eq!(c.reads(), StorageReads::default());
        assert_eq!(c.get(ObjectKind::Pack, &name).unwrap(), b"0123456789");
        assert_eq!(c.get_range(ObjectKind::Pack, &name, 2, 3).unwrap(), b"234");
        // A failed read is a request too, and fetched nothing.
        assert!(c.get(ObjectKind::Index, &name).is_err());
        assert_eq!(
            c.reads(),
            StorageReads {
                get_requests: 3,
                bytes_fetched: 13
            }
        );
        let calls = mem.calls();
        assert_eq!((calls.gets, calls.get_ranges, calls.puts), (2, 1, 1));
    }
}
