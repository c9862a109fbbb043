//! The parallel pack reader of restore and `check --read-data` (issue 17): byte-for-byte
//! restores at parallelism 1 and 8, how many requests and bytes a restore makes (a storage
//! wrapper counts every get and get_range, the calls at once and the bytes asked for at
//! once), partial restores reading only their packs, and a missing or corrupt pack failing
//! the restore by name without leaving an unfinished file behind.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;

use common::*;
use ferry_repo::format::ObjectKind;
use ferry_repo::storage::{LocalDir, PutOutcome, Storage, StorageError};
use ferry_repo::*;
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MIB: u64 = 1 << 20;

/// A [`LocalDir`] that counts reads and waits `delay` in each (a far store's latency).
struct Counting {
    inner: LocalDir,
    delay: Duration,
    /// get + get_range calls on packs.
    pack_gets: AtomicU64,
    /// Bytes those calls returned.
    pack_bytes: AtomicU64,
    /// get + get_range calls on anything.
    all_gets: AtomicU64,
    running: AtomicU64,
    max_running: AtomicU64,
    /// Bytes asked for by the calls running (a whole get counts its object's size).
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// Packs read (names).
    packs_read: Mutex<BTreeSet<String>>,
}

impl Counting {
    fn new(root: PathBuf, delay: Duration) -> Arc<Counting> {
        Arc::new(Counting {
            inner: LocalDir::new(root),
            delay,
            pack_gets: AtomicU64::new(0),
            pack_bytes: AtomicU64::new(0),
            all_gets: AtomicU64::new(0),
            running: AtomicU64::new(0),
            max_running: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            packs_read: Mutex::new(BTreeSet::new()),
        })
    }

    fn reset(&self) {
        for a in [
            &self.pack_gets,
            &self.pack_bytes,
            &self.all_gets,
            &self.max_running,
            &self.max_in_flight,
        ] {
            a.store(0, SeqCst);
        }
        self.packs_read.lock().unwrap().clear();
    }

    fn read(
        &self,
        kind: ObjectKind,
        name: &str,
        asked: u64,
        f: impl FnOnce() -> Result<Vec<u8>, StorageError>,
    ) -> Result<Vec<u8>, StorageError> {
        self.all_gets.fetch_add(1, SeqCst);
        let r = self.running.fetch_add(1, SeqCst) + 1;
        self.max_running.fetch_max(r, SeqCst);
        let b = self.in_flight.fetch_add(asked, SeqCst) + asked;
        self.max_in_flight.fetch_max(b, SeqCst);
        std::thread::sleep(self.delay);
        let out = f();
        self.in_flight.fetch_sub(asked, SeqCst);
        self.running.fetch_sub(1, SeqCst);
        if kind == ObjectKind::Pack {
            self.pack_gets.fetch_add(1, SeqCst);
            self.packs_read.lock().unwrap().insert(name.to_string());
            if let Ok(b) = &out {
                self.pack_bytes.fetch_add(b.len() as u64, SeqCst);
            }
        }
        out
    }
}

impl Storage for Counting {
    fn location(&self) -> String {
        format!("counting+{}", self.inner.location())
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
        let size = std::fs::metadata(self.inner.root().join(kind.key(name)))
            .map(|m| m.len())
            .unwrap_or(0);
        self.read(kind, name, size, || self.inner.get(kind, name))
    }
    fn get_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StorageError> {
        self.read(kind, name, len, || {
            self.inner.get_range(kind, name, offset, len)
        })
    }
}

/// A corpus with dedup across files (three copies of one file, a file holding another's
/// content twice), a sparse file (20 MiB of zeros inside), a large file, empty files and many
/// small files in several directories. Returns its size in bytes.
fn corpus(root: &Path) -> u64 {
    let big = root.join("big");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::write(big.join("large.bin"), noise(7, 40 * MIB as usize + 12_345)).unwrap();
    let shared = noise(8, 4 * MIB as usize);
    for n in ["copy-a", "copy-b", "copy-c"] {
        std::fs::write(big.join(n), &shared).unwrap();
    }
    let mut twice = shared.clone();
    twice.extend_from_slice(&shared);
    std::fs::write(big.join("twice"), &twice).unwrap();
    let mut sparse = noise(9, 3 * MIB as usize);
    sparse.extend(std::iter::repeat_n(0u8, 20 * MIB as usize));
    sparse.extend(noise(10, 1_000_001));
    std::fs::write(big.join("sparse"), &sparse).unwrap();
    for d in 0..20 {
        let dir = root.join(format!("small/d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("empty"), b"").unwrap();
        for f in 0..100 {
            let len = 100 + (d * 100 + f) * 37 % 5000;
            std::fs::write(
                dir.join(format!("f{f:03}.conf")),
                noise(1000 + (d * 100 + f) as u64, len),
            )
            .unwrap();
        }
    }
    std::fs::write(root.join("empty-top"), b"").unwrap();
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

/// A backed-up corpus and a repository over a counting storage on the same directory.
struct Setup {
    env: Env,
    src: PathBuf,
    size: u64,
    snap: SnapshotInfo,
    counting: Arc<Counting>,
    reader: Reader,
}

fn setup(delay: Duration) -> Setup {
    setup_packs(delay, 32 * MIB as usize)
}

/// [`setup`] with packs of `pack_size` bytes.
fn setup_packs(delay: Duration, pack_size: usize) -> Setup {
    let env = Env::new();
    let src = env.dir.path().join("src");
    let size = corpus(&src);
    let backup = BackupOptions {
        pack_size,
        ..env.opts()
    };
    let snap = env.backup_with(std::slice::from_ref(&src), backup, Arc::new(NoProgress));
    let counting = Counting::new(env.repo_dir(), delay);
    let storage: Arc<dyn Storage> = counting.clone();
    let reader = Repository::open(storage).unwrap().reader(&env.key).unwrap();
    counting.reset();
    Setup {
        env,
        src,
        size,
        snap,
        counting,
        reader,
    }
}

fn opts(parallel: usize, max_in_flight: u64) -> RestoreOptions {
    RestoreOptions {
        parallel,
        max_in_flight,
        ..Default::default()
    }
}

#[test]
fn restores_byte_for_byte_at_parallelism_1_and_8_with_few_requests() {
    let s = setup(Duration::ZERO);
    let mut gets = Vec::new();
    for parallel in [1, 8] {
        s.counting.reset();
        let target = s.env.dir.path().join(format!("out{parallel}"));
        let st = s
            .reader
            .restore(&s.snap, &target, &opts(parallel, 0), &NoProgress)
            .unwrap();
        assert_same_tree(&s.src, &restored_path(&target, &s.src));
        assert_eq!(st.bytes, s.size);
        assert_eq!(st.files, 7 + 20 * 101);
        // The zeros were not written: the sparse file holds fewer blocks than its size.
        let sparse = std::fs::metadata(restored_path(&target, &s.src).join("big/sparse")).unwrap();
        assert!(
            sparse.blocks() * 512 < sparse.len() - 4 * MIB,
            "sparse file fully allocated: {} blocks for {} bytes",
            sparse.blocks(),
            sparse.len()
        );
        let pack_gets = s.counting.pack_gets.load(SeqCst);
        // ≤ 1 GET per 16 MiB restored, plus what the trees take: they are fetched ahead a
        // level at a time (a level's trees share a pack), so about one GET per level of
        // directories, not one per directory (there are 26).
        let dirs: Vec<usize> = s
            .reader
            .ls(&s.snap, None)
            .unwrap()
            .iter()
            .filter(|e| matches!(e.node.kind, NodeKind::Dir { .. }))
            .map(|e| e.path.split(|&b| b == b'/').count())
            .collect();
        assert!(dirs.len() > 20, "{} directories", dirs.len());
        let trees = 1 + *dirs.iter().max().unwrap() as u64;
        assert!(
            pack_gets <= s.size / (16 * MIB) + trees,
            "parallel {parallel}: {pack_gets} pack GETs for {} MiB",
            s.size / MIB
        );
        // Each blob is fetched once: the copies are not fetched again (pack bytes read are
        // less than the content restored, by at least the 3 extra copies' 12 MiB).
        let read = s.counting.pack_bytes.load(SeqCst);
        assert!(
            read + 12 * MIB < s.size,
            "read {read} bytes of packs for {} bytes restored",
            s.size
        );
        if parallel == 1 {
            assert_eq!(s.counting.max_running.load(SeqCst), 1);
        }
        gets.push(pack_gets);
    }
    assert_eq!(gets[0], gets[1], "the same plan at any parallelism");
}

#[test]
fn parallel_requests_stay_within_the_thread_count_and_the_byte_budget() {
    let s = setup(Duration::from_millis(15));
    let target = s.env.dir.path().join("out");
    let budget = 16 * MIB;
    s.reader
        .restore(&s.snap, &target, &opts(8, budget), &NoProgress)
        .unwrap();
    assert_same_tree(&s.src, &restored_path(&target, &s.src));
    let running = s.counting.max_running.load(SeqCst);
    let bytes = s.counting.max_in_flight.load(SeqCst);
    assert!(running <= 8, "{running} calls at once");
    assert!(running >= 2, "requests were not run in parallel");
    assert!(bytes <= budget, "{bytes} bytes in flight, budget {budget}");
    assert!(
        bytes > budget / 4,
        "{bytes} bytes in flight: the budget was not used"
    );
}

#[test]
fn a_partial_restore_reads_only_the_packs_its_files_need() {
    let s = setup(Duration::ZERO);
    // Where every blob of the snapshot lives, and which packs the included files need.
    let all = s.reader.ls(&s.snap, None).unwrap();
    let pack_of = |id: &BlobId| s.reader.locate(id).unwrap().0.to_string();
    let mut needed = BTreeSet::new();
    let mut every = BTreeSet::new();
    let mut trees = BTreeSet::from([pack_of(&s.snap.snapshot.root)]);
    let mut wanted_bytes = 0;
    for e in &all {
        match &e.node.kind {
            NodeKind::File { content } => {
                let inc = String::from_utf8_lossy(&e.path).contains("/small/d03/");
                for b in content {
                    every.insert(pack_of(b));
                    if inc {
                        needed.insert(pack_of(b));
                    }
                }
                if inc {
                    wanted_bytes += e.node.size;
                }
            }
            NodeKind::Dir { subtree } => {
                trees.insert(pack_of(subtree));
            }
            NodeKind::Symlink { .. } => {}
        }
    }
    assert!(wanted_bytes > 0);
    let target = s.env.dir.path().join("out");
    s.counting.reset();
    let st = s
        .reader
        .restore(
            &s.snap,
            &target,
            &RestoreOptions {
                include: vec!["**/small/d03".into()],
                parallel: 8,
                ..Default::default()
            },
            &NoProgress,
        )
        .unwrap();
    assert_eq!(st.files, 101);
    let d03 = restored_path(&target, &s.src).join("small/d03");
    assert_same_tree(&s.src.join("small/d03"), &d03);
    // Packs read: those of the included files' content and of the trees, no other.
    let read = s.counting.packs_read.lock().unwrap().clone();
    let allowed: BTreeSet<_> = needed.union(&trees).cloned().collect();
    assert!(
        read.is_subset(&allowed),
        "read {read:?}, needed {needed:?} and the trees' {trees:?}"
    );
    assert!(
        every.len() > needed.len(),
        "the corpus must span more packs"
    );
    // And only a little of them: not the 60 MiB of the rest of the snapshot.
    let bytes = s.counting.pack_bytes.load(SeqCst);
    assert!(
        bytes < wanted_bytes + 4 * MIB,
        "read {bytes} bytes for {wanted_bytes} wanted"
    );
}

/// Every regular file under `target` is complete: same bytes and mode as its source.
fn only_complete_files(src: &Path, target: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![target.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                let rel = p.strip_prefix(target).unwrap();
                let orig = Path::new("/").join(rel);
                assert!(orig.starts_with(src), "{}", orig.display());
                assert!(
                    std::fs::read(&p).unwrap() == std::fs::read(&orig).unwrap(),
                    "{} is not complete",
                    p.display()
                );
                assert_eq!(
                    m.mode(),
                    std::fs::metadata(&orig).unwrap().mode(),
                    "{}",
                    p.display()
                );
                n += 1;
            }
        }
    }
    n
}

#[test]
fn a_missing_or_corrupt_pack_fails_the_restore_by_name_and_leaves_no_unfinished_file() {
    let s = setup(Duration::ZERO);
    let large = s
        .reader
        .ls(&s.snap, None)
        .unwrap()
        .into_iter()
        .find(|e| e.path.ends_with(b"big/large.bin"))
        .unwrap();
    let NodeKind::File { content } = &large.node.kind else {
        panic!("not a file")
    };
    let (pack, _) = s.reader.locate(&content[2]).unwrap();
    let pack = pack.to_string();
    let pack_path = s.env.repo_dir().join(ObjectKind::Pack.key(&pack));
    let good = std::fs::read(&pack_path).unwrap();

    // Corrupt: one byte flipped in the middle of the pack.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    std::fs::remove_file(&pack_path).unwrap();
    std::fs::write(&pack_path, &bad).unwrap();
    let target = s.env.dir.path().join("corrupt");
    let err = s
        .reader
        .restore(&s.snap, &target, &opts(8, 0), &NoProgress)
        .unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&pack[..16]), "{err}");
    only_complete_files(&s.src, &target);
    assert!(
        !restored_path(&target, &s.src)
            .join("big/large.bin")
            .exists()
    );

    // Missing: the pack gone (and not in trash/).
    std::fs::remove_file(&pack_path).unwrap();
    let target = s.env.dir.path().join("missing");
    let err = s
        .reader
        .restore(&s.snap, &target, &opts(8, 0), &NoProgress)
        .unwrap_err();
    assert!(matches!(err, Error::MissingBlob { .. }), "{err}");
    assert!(
        err.to_string().contains(&ObjectKind::Pack.key(&pack)),
        "{err}"
    );
    only_complete_files(&s.src, &target);
    assert!(
        !restored_path(&target, &s.src)
            .join("big/large.bin")
            .exists()
    );

    // With the pack back, the same target restores in full over what is there.
    std::fs::write(&pack_path, &good).unwrap();
    s.reader
        .restore(&s.snap, &target, &opts(8, 0), &NoProgress)
        .unwrap();
    assert_same_tree(&s.src, &restored_path(&target, &s.src));
}

#[test]
fn check_read_data_reads_every_pack_once_in_parallel() {
    let s = setup_packs(Duration::from_millis(15), 2 * MIB as usize);
    let packs = s.env.count("packs") as u64;
    assert!(packs >= 10, "{packs} packs");
    s.counting.reset();
    let storage: Arc<dyn Storage> = s.counting.clone();
    let repo = Repository::open(storage).unwrap();
    let rep = repo
        .check_with(
            &s.env.key,
            ReadData::All,
            ferry_repo::fetch::FetchOptions::new(4, 256 * MIB),
            &NoProgress,
        )
        .unwrap();
    assert!(rep.is_ok(), "{:?}", rep.problems);
    assert_eq!(rep.packs_read, packs);
    // Every pack read whole once by the data pass (the tree pass reads tree blobs by range).
    let max_running = s.counting.max_running.load(SeqCst);
    assert!(
        (2..=4).contains(&max_running),
        "{max_running} reads at once"
    );
    assert_eq!(s.counting.packs_read.lock().unwrap().len() as u64, packs);
}

#[test]
fn index_and_snapshot_objects_load_in_parallel() {
    let env = Env::new();
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for round in 0..8u64 {
        std::fs::write(src.join("changing"), noise(round, 10_000)).unwrap();
        env.backup(std::slice::from_ref(&src));
    }
    assert!(env.count("index") >= 8 && env.count("snapshots") == 8);
    let counting = Counting::new(env.repo_dir(), Duration::from_millis(20));
    let storage: Arc<dyn Storage> = counting.clone();
    let repo = Repository::open(storage).unwrap();
    counting.reset();
    let reader = repo.reader(&env.key).unwrap();
    assert!(
        counting.max_running.load(SeqCst) >= 2,
        "indexes were loaded one by one"
    );
    counting.reset();
    let snaps = reader.snapshots().unwrap();
    assert_eq!(snaps.len(), 8);
    assert!(
        snaps
            .windows(2)
            .all(|w| w[0].snapshot.time_ns <= w[1].snapshot.time_ns),
        "oldest first"
    );
    assert!(
        counting.max_running.load(SeqCst) >= 2,
        "snapshots were loaded one by one"
    );
    assert_eq!(counting.all_gets.load(SeqCst), 8);
}
