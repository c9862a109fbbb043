//! [`MemStorage`]: an in-memory [`Storage`] with [`LocalDir`](super::LocalDir)'s semantics,
//! for unit tests in any crate (instead of hand-written mocks), with a log of puts, call
//! counts and fault knobs.

use super::{PendingPut, PutOutcome, Storage, StorageError};
use crate::format::{CONFIG_NAME, ObjectKind, is_sha256_hex};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// An in-memory repository store. Write-once like [`LocalDir`](super::LocalDir): a put of an
/// existing name is `AlreadyPresent` and changes nothing; a streaming put
/// ([`Storage::begin_put`]) appears only on `commit`, and one dropped uncommitted leaves
/// nothing; `get_range` returns exactly the bytes asked for (fewer at the end, none past it).
/// Unlike `LocalDir` it refuses names that are not a lowercase hex SHA-256 (`config` for the
/// config object), so a test that builds a bad name fails at once.
///
/// Clones share the same objects, log and knobs: hand one clone to the code under test
/// (e.g. as `Arc<dyn Storage>`) and inspect through another.
#[derive(Clone)]
pub struct MemStorage {
    inner: Arc<Inner>,
}

struct Inner {
    location: String,
    objects: Mutex<BTreeMap<(ObjectKind, String), Vec<u8>>>,
    puts: Mutex<Vec<(ObjectKind, String)>>,
    faults: Mutex<Faults>,
    calls: Calls,
}

#[derive(Default)]
struct Faults {
    /// (the put number that fails, counting every put and commit from 1; the message)
    put: Option<(u64, String)>,
    barrier: Option<String>,
    /// Mutations (puts, deletes, copies) still allowed before the store "crashes": every later
    /// one fails, as if the process writing had been killed.
    mutations_left: Option<u64>,
}

#[derive(Default)]
struct Calls {
    put: AtomicU64,
    list: AtomicU64,
    get: AtomicU64,
    get_range: AtomicU64,
    begin_put: AtomicU64,
    barrier: AtomicU64,
    delete: AtomicU64,
    copy: AtomicU64,
}

/// How often each [`Storage`] method of a [`MemStorage`] was called. `puts` counts
/// `put_if_absent` calls and streaming commits (each an attempt to store one object).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemCalls {
    /// `put_if_absent` calls plus streaming commits, including ones that failed or found
    /// the object already present.
    pub puts: u64,
    /// `list` calls (any kind).
    pub lists: u64,
    /// `get` calls (whole objects), found or not.
    pub gets: u64,
    /// `get_range` calls (partial reads, as restore does per blob).
    pub get_ranges: u64,
    /// `begin_put` calls (streaming uploads started, committed or not).
    pub begin_puts: u64,
    /// `barrier` calls.
    pub barriers: u64,
    /// `delete` calls (found or not).
    pub deletes: u64,
    /// `copy` calls.
    pub copies: u64,
}

impl std::fmt::Debug for MemStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStorage")
            .field("location", &self.inner.location)
            .field("objects", &lock(&self.inner.objects).len())
            .finish()
    }
}

impl Default for MemStorage {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemStorage {
    /// An empty store at `mem://N` (N unique in the process).
    pub fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self::named(&NEXT.fetch_add(1, Ordering::Relaxed).to_string())
    }

    /// An empty store at `mem://LABEL` (the label shows in messages).
    pub fn named(label: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                location: format!("mem://{label}"),
                objects: Mutex::new(BTreeMap::new()),
                puts: Mutex::new(Vec::new()),
                faults: Mutex::new(Faults::default()),
                calls: Calls::default(),
            }),
        }
    }

    /// Every put attempt so far, in order: `put_if_absent` calls and streaming commits,
    /// stored, already present or failed alike.
    pub fn puts(&self) -> Vec<(ObjectKind, String)> {
        lock(&self.inner.puts).clone()
    }

    /// [`puts`](Self::puts), emptying the log.
    pub fn take_puts(&self) -> Vec<(ObjectKind, String)> {
        std::mem::take(&mut *lock(&self.inner.puts))
    }

    /// How often each method was called.
    pub fn calls(&self) -> MemCalls {
        let c = &self.inner.calls;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MemCalls {
            puts: n(&c.put),
            lists: n(&c.list),
            gets: n(&c.get),
            get_ranges: n(&c.get_range),
            begin_puts: n(&c.begin_put),
            barriers: n(&c.barrier),
            deletes: n(&c.delete),
            copies: n(&c.copy),
        }
    }

    /// Make the `n`-th put attempt from now (1 = the next one; `put_if_absent` or a streaming
    /// commit) fail with `message`, storing nothing. Later puts succeed again.
    pub fn fail_put(&self, n: u64, message: impl Into<String>) {
        let at = self.inner.calls.put.load(Ordering::SeqCst) + n.max(1);
        lock(&self.inner.faults).put = Some((at, message.into()));
    }

    /// Make every [`Storage::barrier`] fail with `message` (as a pipelining backend whose
    /// store never confirmed the earlier puts); `None` makes barriers succeed again.
    pub fn fail_barriers(&self, message: Option<String>) {
        lock(&self.inner.faults).barrier = message;
    }

    /// Let `n` more mutations (puts, streaming commits, deletes, copies) succeed, then fail
    /// every later one, storing and deleting nothing: the writer was killed after its `n`-th
    /// change. `None` lifts it (the next process).
    pub fn crash_after(&self, n: Option<u64>) {
        lock(&self.inner.faults).mutations_left = n;
    }

    /// One mutation: fails when [`crash_after`](Self::crash_after)'s budget is spent.
    fn mutate(&self, what: &str) -> Result<(), StorageError> {
        let mut f = lock(&self.inner.faults);
        match &mut f.mutations_left {
            Some(0) => Err(self.backend(format!("{what}: the writer crashed"))),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Every stored (kind, name), sorted.
    pub fn keys(&self) -> Vec<(ObjectKind, String)> {
        lock(&self.inner.objects).keys().cloned().collect()
    }

    /// Replace or remove an object behind the store's back (tests that damage a repository).
    pub fn set_object(&self, kind: ObjectKind, name: &str, bytes: Option<Vec<u8>>) {
        let mut o = lock(&self.inner.objects);
        match bytes {
            Some(b) => o.insert((kind, name.to_string()), b),
            None => o.remove(&(kind, name.to_string())),
        };
    }

    /// The stored object, if any (without counting a `get`).
    pub fn object(&self, kind: ObjectKind, name: &str) -> Option<Vec<u8>> {
        lock(&self.inner.objects)
            .get(&(kind, name.to_string()))
            .cloned()
    }

    /// How many objects are stored.
    pub fn len(&self) -> usize {
        lock(&self.inner.objects).len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn backend(&self, message: String) -> StorageError {
        StorageError::Backend {
            location: self.inner.location.clone(),
            message,
        }
    }

    fn check_name(&self, kind: ObjectKind, name: &str) -> Result<(), StorageError> {
        let ok = if kind.content_addressed() {
            is_sha256_hex(name)
        } else {
            name == CONFIG_NAME
        };
        if ok {
            Ok(())
        } else {
            Err(self.backend(format!(
                "refusing {kind} object named {name:?}: not a valid {kind} name"
            )))
        }
    }

    /// One put attempt: logged, counted, possibly failed by a knob, then write-once.
    fn store(
        &self,
        kind: ObjectKind,
        name: &str,
        bytes: &[u8],
    ) -> Result<PutOutcome, StorageError> {
        lock(&self.inner.puts).push((kind, name.to_string()));
        let n = self.inner.calls.put.fetch_add(1, Ordering::SeqCst) + 1;
        {
            let mut faults = lock(&self.inner.faults);
            if faults.put.as_ref().is_some_and(|(at, _)| *at == n)
                && let Some((_, message)) = faults.put.take()
            {
                return Err(self.backend(format!("{}: {message}", kind.key(name))));
            }
        }
        self.check_name(kind, name)?;
        let key = (kind, name.to_string());
        if lock(&self.inner.objects).contains_key(&key) {
            return Ok(PutOutcome::AlreadyPresent);
        }
        self.mutate(&kind.key(name))?;
        let mut objects = lock(&self.inner.objects);
        if objects.contains_key(&key) {
            return Ok(PutOutcome::AlreadyPresent);
        }
        objects.insert(key, bytes.to_vec());
        Ok(PutOutcome::Stored)
    }
}

impl Storage for MemStorage {
    fn location(&self) -> String {
        self.inner.location.clone()
    }

    fn put_if_absent(
        &self,
        kind: ObjectKind,
        name: &str,
        bytes: &[u8],
    ) -> Result<PutOutcome, StorageError> {
        self.store(kind, name, bytes)
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<String>, StorageError> {
        self.inner.calls.list.fetch_add(1, Ordering::Relaxed);
        // BTreeMap order: sorted by kind, then name.
        Ok(lock(&self.inner.objects)
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| n.clone())
            .collect())
    }

    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, StorageError> {
        self.inner.calls.get.fetch_add(1, Ordering::Relaxed);
        self.object(kind, name)
            .ok_or_else(|| StorageError::NotFound {
                location: self.location(),
                key: kind.key(name),
            })
    }

    fn get_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StorageError> {
        self.inner.calls.get_range.fetch_add(1, Ordering::Relaxed);
        let objects = lock(&self.inner.objects);
        let all = objects
            .get(&(kind, name.to_string()))
            .ok_or_else(|| StorageError::NotFound {
                location: self.location(),
                key: kind.key(name),
            })?;
        Ok(super::byte_range(all, offset, len).to_vec())
    }

    fn begin_put(&self, kind: ObjectKind) -> Option<Result<Box<dyn PendingPut>, StorageError>> {
        self.inner.calls.begin_put.fetch_add(1, Ordering::Relaxed);
        Some(Ok(Box::new(MemPending {
            store: self.clone(),
            kind,
            bytes: Vec::new(),
        })))
    }

    fn can_delete(&self) -> bool {
        true
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> Result<(), StorageError> {
        self.inner.calls.delete.fetch_add(1, Ordering::Relaxed);
        self.mutate(&format!("deleting {}", kind.key(name)))?;
        lock(&self.inner.objects).remove(&(kind, name.to_string()));
        Ok(())
    }

    fn copy(&self, from: ObjectKind, to: ObjectKind, name: &str) -> Result<(), StorageError> {
        self.inner.calls.copy.fetch_add(1, Ordering::Relaxed);
        self.check_name(to, name)?;
        let bytes = self
            .object(from, name)
            .ok_or_else(|| StorageError::NotFound {
                location: self.location(),
                key: from.key(name),
            })?;
        self.mutate(&format!("copying {} to {}", from.key(name), to.key(name)))?;
        lock(&self.inner.objects)
            .entry((to, name.to_string()))
            .or_insert(bytes);
        Ok(())
    }

    fn barrier(&self) -> Result<(), StorageError> {
        self.inner.calls.barrier.fetch_add(1, Ordering::Relaxed);
        match &lock(&self.inner.faults).barrier {
            Some(message) => Err(self.backend(message.clone())),
            None => Ok(()),
        }
    }
}

/// A streaming put: bytes held aside until `commit`; dropped, it leaves nothing.
struct MemPending {
    store: MemStorage,
    kind: ObjectKind,
    bytes: Vec<u8>,
}

impl PendingPut for MemPending {
    fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }

    fn commit(self: Box<Self>, name: &str) -> Result<PutOutcome, StorageError> {
        self.store.store(self.kind, name, &self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::conformance::{Backend, Checks, run};

    #[test]
    fn mem_storage_passes_the_conformance_suite() {
        let s = MemStorage::new();
        let report = run(&Backend::new("MemStorage", &s).checks(Checks::Names));
        assert!(report.skipped.is_empty(), "{report}");
    }

    #[test]
    fn knobs_log_count_and_fail() {
        let s = MemStorage::named("knobs");
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        assert_eq!(
            s.put_if_absent(ObjectKind::Pack, &a, b"1").unwrap(),
            PutOutcome::Stored
        );
        s.fail_put(2, "disk on fire");
        assert_eq!(
            s.put_if_absent(ObjectKind::Index, &a, b"2").unwrap(),
            PutOutcome::Stored
        );
        let e = s.put_if_absent(ObjectKind::Index, &b, b"3").unwrap_err();
        assert_eq!(
            e.to_string(),
            "mem://knobs: index/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb: disk on fire"
        );
        assert!(s.object(ObjectKind::Index, &b).is_none());
        let mut p = s.begin_put(ObjectKind::Pack).unwrap().unwrap();
        p.write(b"streamed").unwrap();
        assert_eq!(p.commit(&b).unwrap(), PutOutcome::Stored);
        assert_eq!(
            s.take_puts(),
            vec![
                (ObjectKind::Pack, a.clone()),
                (ObjectKind::Index, a.clone()),
                (ObjectKind::Index, b.clone()),
                (ObjectKind::Pack, b.clone()),
            ]
        );
        assert!(s.puts().is_empty());
        s.barrier().unwrap();
        s.fail_barriers(Some("the gate closed before confirming 1 pack".into()));
        let e = s.barrier().unwrap_err().to_string();
        assert!(e.contains("confirming 1 pack"), "{e}");
        s.fail_barriers(None);
        s.barrier().unwrap();
        assert_eq!(s.get(ObjectKind::Pack, &b).unwrap(), b"streamed");
        assert_eq!(
            s.calls(),
            MemCalls {
                puts: 4,
                lists: 0,
                gets: 1,
                get_ranges: 0,
                begin_puts: 1,
                barriers: 3,
                deletes: 0,
                copies: 0,
            }
        );
        // A clone is the same store.
        assert_eq!(s.clone().len(), 3);
        assert!(format!("{s:?}").contains("mem://knobs"));
    }
}
