#![allow(clippy::unwrap_used)]
//! Forget and prune against clients that cannot read the repository (docs/RETENTION.md):
//! random interleavings of backups (fresh, stale-cache, racing a prune), forgets, prunes and
//! time; after every step every remaining snapshot reads back byte for byte and `check
//! --read-data` finds no problem. Plus: a prune killed after each of its writes, a backup whose
//! cache predates a prune, and the put-only refusals.

use ferry_repo::backup::local::backup_paths;
use ferry_repo::format::ObjectKind;
use ferry_repo::retention::{forget, prune};
use ferry_repo::storage::{LocalDir, MemStorage, Storage};
use ferry_repo::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const HOUR: i64 = 3_600_000_000_000;

/// One backup client: its source directory, its cache, and copies of older caches.
struct Client {
    src: PathBuf,
    cache: PathBuf,
    old_caches: Vec<PathBuf>,
    seed: u64,
}

struct World {
    dir: tempfile::TempDir,
    store: MemStorage,
    key: MasterKey,
    repo: Repository,
    clients: Vec<Client>,
    /// Snapshot id → expected files (name → bytes).
    expected: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    now: i64,
    steps: usize,
}

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    if let Ok(rd) = std::fs::read_dir(from) {
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            if p.is_dir() {
                copy_dir(&p, &to.join(e.file_name()));
            } else if e.file_name() != "lock" {
                std::fs::copy(&p, to.join(e.file_name())).unwrap();
            }
        }
    }
}

fn opts(cache: &Path) -> BackupOptions {
    BackupOptions {
        cache_dir: Some(cache.to_path_buf()),
        host: Some("h".into()),
        pack_size: 1024 * 1024,
        workers: 1,
        ..Default::default()
    }
}

fn prune_opts(now: i64, max_unused: f64) -> prune::PruneOptions {
    prune::PruneOptions {
        max_unused_percent: max_unused,
        now_ns: Some(now),
        pack: BackupOptions {
            pack_size: 1024 * 1024,
            workers: 1,
            ..Default::default()
        },
        ..Default::default()
    }
}

impl World {
    fn new(clients: usize) -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = MemStorage::named("retention");
        let key = MasterKey::generate();
        let repo = Repository::init(Arc::new(store.clone()), &key.put_key()).unwrap();
        let mut w = World {
            clients: (0..clients)
                .map(|i| Client {
                    src: dir.path().join(format!("c{i}")),
                    cache: dir.path().join(format!("cache{i}")),
                    old_caches: Vec::new(),
                    seed: i as u64 * 1000,
                })
                .collect(),
            dir,
            store,
            key,
            repo,
            expected: BTreeMap::new(),
            // The simulated clock starts at the real one (forget records use the real clock).
            now: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as i64,
            steps: 0,
        };
        for c in 0..clients {
            for f in 0..6 {
                w.write_file(c, f, 40_000 + 20_000 * f);
            }
        }
        w
    }

    fn write_file(&mut self, c: usize, f: usize, len: usize) {
        let cl = &mut self.clients[c];
        cl.seed += 1;
        std::fs::create_dir_all(&cl.src).unwrap();
        std::fs::write(cl.src.join(format!("f{f}")), noise(cl.seed, len)).unwrap();
    }

    fn mutate(&mut self, c: usize, what: u8) {
        match what % 3 {
            // Rewrite one file.
            0 => self.write_file(c, (what as usize / 3) % 6, 30_000 + what as usize * 500),
            // A log grows.
            1 => {
                let p = self.clients[c].src.join("f0");
                let mut b = std::fs::read(&p).unwrap();
                b.extend(noise(what as u64 + self.clients[c].seed, 20_000));
                self.clients[c].seed += 1;
                std::fs::write(&p, b).unwrap();
            }
            // Unchanged.
            _ => {}
        }
    }

    fn files_of(&self, c: usize) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(&self.clients[c].src)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    }

    fn save_cache(&mut self, c: usize) {
        self.steps += 1;
        let copy = self
            .dir
            .path()
            .join(format!("old-cache-{c}-{}", self.steps));
        copy_dir(&self.clients[c].cache, &copy);
        self.clients[c].old_caches.push(copy);
    }

    fn backup(&mut self, c: usize) -> Result<SnapshotInfo> {
        let cl = &self.clients[c];
        let r = backup_paths(
            &self.repo,
            &self.key.put_key(),
            std::slice::from_ref(&cl.src),
            opts(&cl.cache),
            Arc::new(NoProgress),
        );
        if let Ok(s) = &r {
            self.expected.insert(s.id.clone(), self.files_of(c));
            self.save_cache(c);
        }
        r
    }

    /// Back up with an older copy of the client's cache (restored from a backup of the VM).
    fn stale_backup(&mut self, c: usize, age: usize) -> Result<SnapshotInfo> {
        let old = &self.clients[c].old_caches;
        if let Some(p) = old
            .len()
            .checked_sub(1 + age % old.len().max(1))
            .map(|i| old[i].clone())
        {
            let cache = self.clients[c].cache.clone();
            std::fs::remove_dir_all(&cache).ok();
            copy_dir(&p, &cache);
        }
        self.backup(c)
    }

    /// A backup that lists packs, then a prune runs, then the backup finishes.
    fn racing_backup(&mut self, c: usize, max_unused: f64) -> Result<()> {
        let cl = &self.clients[c];
        let mut o = opts(&cl.cache);
        o.paths = vec![cl.src.display().to_string()];
        let mut session = self
            .repo
            .begin_backup(&self.key.put_key(), o, Arc::new(NoProgress))?;
        prune::prune(&self.repo, &self.key, &prune_opts(self.now, max_unused))?;
        // The session reads the files after the prune.
        let files = self.files_of(c);
        let src = cl.src.clone();
        ferry_repo::backup::local::walk_source(&mut session, &src.display().to_string(), &src)?;
        match session.finish() {
            Ok(s) => {
                self.expected.insert(s.id.clone(), files);
                self.save_cache(c);
                Ok(())
            }
            Err(Error::PrunedDuringBackup { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn forget(&mut self, mask: u32) {
        let reader = self.repo.reader(&self.key).unwrap();
        let snaps = reader.snapshots().unwrap();
        let remove: Vec<(SnapshotInfo, String)> = snaps
            .into_iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << (i % 32)) != 0)
            .map(|(_, s)| (s, "test".to_string()))
            .collect();
        let kept = self.expected.len() - remove.len();
        forget::forget(&self.repo, &self.key, &remove, kept as u64, "test").unwrap();
        for (s, _) in remove {
            self.expected.remove(&s.id);
        }
        // The simulated clock never runs behind the record just written.
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        self.now = self.now.max(real + 1);
    }

    fn prune(&mut self, max_unused: f64) -> prune::PruneReport {
        prune::prune(&self.repo, &self.key, &prune_opts(self.now, max_unused)).unwrap()
    }

    /// Every remaining snapshot reads back as recorded; check --read-data finds nothing.
    fn verify(&self, step: &str) {
        let reader = self.repo.reader(&self.key).unwrap();
        let snaps = reader.snapshots().unwrap();
        assert_eq!(
            snaps.len(),
            self.expected.len(),
            "after {step}: snapshot count"
        );
        for s in &snaps {
            let want = &self.expected[&s.id];
            let mut got = BTreeMap::new();
            for e in reader.ls(s, None).unwrap() {
                if let NodeKind::File { content } = &e.node.kind {
                    let mut bytes = Vec::new();
                    for b in content {
                        bytes.extend(reader.read_blob(b).unwrap_or_else(|err| {
                            panic!("after {step}: snapshot {} blob {b}: {err}", s.id)
                        }));
                    }
                    got.insert(e.node.name_lossy(), bytes);
                }
            }
            assert!(
                &got == want,
                "after {step}: snapshot {} content differs",
                s.id
            );
        }
        let report = self
            .repo
            .check(&self.key, ReadData::All, &NoProgress)
            .unwrap();
        assert!(report.is_ok(), "after {step}: check: {:?}", report.problems);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Mutate(usize, u8),
    Backup(usize),
    StaleBackup(usize, usize),
    RacingBackup(usize, u8),
    Forget(u32),
    Prune(u8),
    Advance(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2usize, any::<u8>()).prop_map(|(c, w)| Op::Mutate(c, w)),
        3 => (0..2usize).prop_map(Op::Backup),
        2 => (0..2usize, 0..4usize).prop_map(|(c, a)| Op::StaleBackup(c, a)),
        1 => (0..2usize, any::<u8>()).prop_map(|(c, m)| Op::RacingBackup(c, m)),
        2 => any::<u32>().prop_map(Op::Forget),
        3 => any::<u8>().prop_map(Op::Prune),
        2 => (1u8..60).prop_map(Op::Advance),
    ]
}

fn max_unused(m: u8) -> f64 {
    [0.0, 5.0, 50.0, 100.0][m as usize % 4]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, .. ProptestConfig::default() })]
    #[test]
    fn every_remaining_snapshot_restores_after_any_interleaving(ops in prop::collection::vec(op(), 6..16)) {
        let mut w = World::new(2);
        w.backup(0).unwrap();
        for (i, op) in ops.iter().enumerate() {
            let step = format!("step {i} {op:?}");
            match *op {
                Op::Mutate(c, what) => w.mutate(c, what),
                Op::Backup(c) => { w.backup(c).unwrap(); }
                Op::StaleBackup(c, age) => { w.stale_backup(c, age).unwrap(); }
                Op::RacingBackup(c, m) => w.racing_backup(c, max_unused(m)).unwrap(),
                Op::Forget(mask) => w.forget(mask),
                Op::Prune(m) => { w.prune(max_unused(m)); }
                Op::Advance(h) => w.now += h as i64 * HOUR,
            }
            w.verify(&step);
        }
        // Time passes, two prunes later everything unused is gone for good.
        w.now += 48 * HOUR;
        w.prune(0.0);
        w.now += 48 * HOUR;
        w.prune(0.0);
        w.verify("final prunes");
        prop_assert!(w.store.list(ObjectKind::Trash).unwrap().is_empty() || !w.expected.is_empty());
    }
}

/// A small repository: two backups of changing data, the first forgotten.
fn world_with_garbage() -> World {
    let mut w = World::new(1);
    w.backup(0).unwrap();
    for f in 0..6 {
        w.write_file(0, f, 50_000 + f * 10_000);
    }
    w.backup(0).unwrap();
    w.forget(1);
    w
}

#[test]
fn prune_moves_then_deletes_after_the_grace_period() {
    let mut w = world_with_garbage();
    let packs_before = w.store.list(ObjectKind::Pack).unwrap();
    let r = w.prune(5.0);
    let trashed = r.record.trashed.clone();
    assert!(!trashed.is_empty(), "{:?}", r.plan.packs);
    assert!(r.record.deleted.is_empty());
    for p in &trashed {
        assert!(packs_before.contains(p));
        assert!(w.store.object(ObjectKind::Pack, p).is_none());
        assert!(w.store.object(ObjectKind::Trash, p).is_some());
    }
    w.verify("first prune");
    // Within the grace period nothing is deleted.
    w.now += 23 * HOUR;
    let r = w.prune(5.0);
    assert!(r.record.deleted.is_empty());
    assert_eq!(r.plan.with(prune::PackAction::Wait).count(), trashed.len());
    // After it, they go, and the record says so.
    w.now += 2 * HOUR;
    let r = w.prune(5.0);
    let mut deleted = r.record.deleted.clone();
    deleted.sort();
    let mut want = trashed.clone();
    want.sort();
    assert_eq!(deleted, want);
    assert!(w.store.list(ObjectKind::Trash).unwrap().is_empty());
    w.verify("deleting prune");
    let (records, bad) = retention::log::read_all(w.repo.storage().as_ref(), &w.key).unwrap();
    assert!(bad.is_empty());
    // forget, prune (trash), prune (record: waiting unchanged → none), prune (delete).
    let ops: Vec<&str> = records
        .iter()
        .map(|(_, r)| match r.event {
            retention::log::LogEvent::Forget { .. } => "forget",
            retention::log::LogEvent::Prune(_) => "prune",
        })
        .collect();
    assert_eq!(ops, ["forget", "prune", "prune"]);
}

#[test]
fn a_backup_whose_cache_predates_a_prune_is_complete() {
    let mut w = world_with_garbage();
    // The client's cache still knows every pack, including those the prune takes away.
    let stale = w.clients[0].old_caches[0].clone();
    w.prune(100.0);
    w.now += 30 * HOUR;
    w.prune(100.0);
    assert!(w.store.list(ObjectKind::Trash).unwrap().is_empty());
    // Put the first run's files back: their blobs were in the deleted packs.
    let cache = w.clients[0].cache.clone();
    std::fs::remove_dir_all(&cache).unwrap();
    copy_dir(&stale, &cache);
    w.clients[0].seed = 0;
    for f in 0..6 {
        w.write_file(0, f, 40_000 + 20_000 * f);
    }
    let s = w.backup(0).unwrap();
    assert!(
        s.snapshot.stats.new_blobs > 0,
        "the cache must not claim deleted blobs"
    );
    w.verify("backup with a stale cache");
    // And a real restore to disk is byte for byte.
    let target = w.dir.path().join("out");
    let reader = w.repo.reader(&w.key).unwrap();
    reader
        .restore(&s, &target, &RestoreOptions::default(), &NoProgress)
        .unwrap();
    let restored = target.join(w.clients[0].src.strip_prefix("/").unwrap());
    for (name, bytes) in w.files_of(0) {
        assert_eq!(
            std::fs::read(restored.join(&name)).unwrap(),
            bytes,
            "{name}"
        );
    }
}

#[test]
fn a_prune_killed_after_any_write_leaves_a_valid_repository_and_the_next_completes() {
    // Count the mutations of an uninterrupted prune, then kill one after each of them.
    let probe = world_with_garbage();
    let before = probe.store.calls();
    let mut probe = probe;
    probe.prune(50.0);
    let after = probe.store.calls();
    let mutations = (after.puts - before.puts)
        + (after.deletes - before.deletes)
        + (after.copies - before.copies);
    assert!(
        mutations >= 4,
        "a prune with garbage makes several changes ({mutations})"
    );
    for n in 0..mutations {
        let mut w = world_with_garbage();
        w.store.crash_after(Some(n));
        let killed = prune::prune(&w.repo, &w.key, &prune_opts(w.now, 50.0));
        assert!(killed.is_err(), "the prune was killed after {n} changes");
        w.store.crash_after(None);
        w.verify(&format!("prune killed after {n} changes"));
        // The next prunes finish the job: nothing unused is left once the grace has passed.
        w.prune(50.0);
        w.now += 25 * HOUR;
        w.prune(50.0);
        w.verify(&format!("prunes after the one killed after {n} changes"));
        assert!(
            w.store.list(ObjectKind::Trash).unwrap().is_empty(),
            "after kill at {n}"
        );
        let again = prune::plan(&w.repo, &w.key, &prune_opts(w.now, 50.0)).unwrap();
        assert!(
            !again.changes_anything(),
            "after kill at {n}: {:?}",
            again.packs
        );
    }
}

#[test]
fn a_put_only_store_or_key_cannot_forget_or_prune() {
    let w = world_with_garbage();
    // (The put key cannot even be passed: forget and prune take a `MasterKey`; the CLI's
    // refusal of a put key file is tested in ferry-cli.)
    // A put-only store (as the gate and the spool are): refused, nothing changed.
    struct PutOnly(MemStorage);
    impl Storage for PutOnly {
        fn location(&self) -> String {
            "gate+ssh://put-only".into()
        }
        fn put_if_absent(
            &self,
            k: ObjectKind,
            n: &str,
            b: &[u8],
        ) -> std::result::Result<storage::PutOutcome, storage::StorageError> {
            self.0.put_if_absent(k, n, b)
        }
        fn list(&self, k: ObjectKind) -> std::result::Result<Vec<String>, storage::StorageError> {
            self.0.list(k)
        }
        fn get(
            &self,
            k: ObjectKind,
            n: &str,
        ) -> std::result::Result<Vec<u8>, storage::StorageError> {
            self.0.get(k, n)
        }
    }
    let repo = Repository::open(Arc::new(PutOnly(w.store.clone()))).unwrap();
    let keys_before = w.store.keys();
    let e = prune::prune(&repo, &w.key, &prune_opts(w.now, 5.0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("prune refused") && e.contains("put-only"), "{e}");
    let snaps = repo.reader(&w.key).unwrap().snapshots().unwrap();
    let e = forget::forget(&repo, &w.key, &[(snaps[0].clone(), "x".into())], 0, "x")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("forget refused") && e.contains("put-only"),
        "{e}"
    );
    assert_eq!(w.store.keys(), keys_before);
    // A local directory works the same as the in-memory store.
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn Storage> = Arc::new(LocalDir::new(dir.path()));
    let repo = Repository::init(local, &w.key.put_key()).unwrap();
    prune::prune(&repo, &w.key, &prune_opts(w.now, 5.0)).unwrap();
}
