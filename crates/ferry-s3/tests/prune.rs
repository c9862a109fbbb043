//! Forget and prune on S3 (the kit's moto) with the operator's S3Storage: objects move to
//! `trash/` by CopyObject + DeleteObject, and a prune killed after any of its writes (a
//! wrapper that refuses every change after the n-th) leaves a repository whose snapshots all
//! read back, and the next prune completes.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;

use ferry_repo::backup::local::backup_paths;
use ferry_repo::format::ObjectKind;
use ferry_repo::retention::{forget, prune};
use ferry_repo::storage::{PutOutcome, Storage, StorageError};
use ferry_repo::*;
use ferry_s3::S3Storage;
use ferry_testkit::Moto;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// S3Storage whose writer dies after `left` changes (puts, copies, deletes).
struct Dying {
    s3: S3Storage,
    left: AtomicU64,
    changes: AtomicU64,
}

impl Dying {
    fn change(&self) -> Result<(), StorageError> {
        self.changes.fetch_add(1, Ordering::SeqCst);
        if self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| l.checked_sub(1))
            .is_err()
        {
            return Err(StorageError::Backend {
                location: self.location(),
                message: "killed".into(),
            });
        }
        Ok(())
    }
}

impl Storage for Dying {
    fn location(&self) -> String {
        self.s3.location()
    }
    fn put_if_absent(&self, k: ObjectKind, n: &str, b: &[u8]) -> Result<PutOutcome, StorageError> {
        self.change()?;
        self.s3.put_if_absent(k, n, b)
    }
    fn list(&self, k: ObjectKind) -> Result<Vec<String>, StorageError> {
        self.s3.list(k)
    }
    fn get(&self, k: ObjectKind, n: &str) -> Result<Vec<u8>, StorageError> {
        self.s3.get(k, n)
    }
    fn get_range(&self, k: ObjectKind, n: &str, o: u64, l: u64) -> Result<Vec<u8>, StorageError> {
        self.s3.get_range(k, n, o, l)
    }
    fn can_delete(&self) -> bool {
        true
    }
    fn delete(&self, k: ObjectKind, n: &str) -> Result<(), StorageError> {
        self.change()?;
        self.s3.delete(k, n)
    }
    fn copy(&self, f: ObjectKind, t: ObjectKind, n: &str) -> Result<(), StorageError> {
        self.change()?;
        self.s3.copy(f, t, n)
    }
}

fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn opts() -> prune::PruneOptions {
    let mut o = prune::PruneOptions {
        max_unused_percent: 0.0,
        ..Default::default()
    };
    o.pack.pack_size = 1024 * 1024;
    o
}

#[test]
fn prune_on_s3_moves_deletes_and_survives_being_killed_after_any_change() {
    let moto = Moto::start().expect("moto");
    let key = MasterKey::generate();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let mut total = None;
    let mut bucket_made = false;
    for round in 0u64..40 {
        // Round 0 prunes uninterrupted and counts its changes; round k kills after k-1.
        let kill_at = round.saturating_sub(1);
        if total.is_some_and(|t| kill_at >= t) {
            return;
        }
        // A fresh repository (its own prefix) with two backups, the first forgotten.
        let prefix = format!("site{round}");
        let objects = if bucket_made {
            S3Storage::from_objects(common::objects_in(&moto, "ferry-prune", &prefix)).unwrap()
        } else {
            bucket_made = true;
            S3Storage::from_objects(common::objects(&moto, "ferry-prune", &prefix)).unwrap()
        };
        let store = Arc::new(Dying {
            s3: objects,
            left: AtomicU64::new(u64::MAX),
            changes: AtomicU64::new(0),
        });
        let repo = Repository::init(store.clone(), &key.put_key()).unwrap();
        let bopts = || BackupOptions {
            cache_dir: Some(tmp.path().join(format!("cache{round}"))),
            pack_size: 1024 * 1024,
            workers: 1,
            ..Default::default()
        };
        std::fs::write(src.join("a"), noise(1, 1_500_000)).unwrap();
        backup_paths(
            &repo,
            &key.put_key(),
            std::slice::from_ref(&src),
            bopts(),
            Arc::new(NoProgress),
        )
        .unwrap();
        std::fs::write(src.join("a"), noise(2, 1_500_000)).unwrap();
        backup_paths(
            &repo,
            &key.put_key(),
            std::slice::from_ref(&src),
            bopts(),
            Arc::new(NoProgress),
        )
        .unwrap();
        let snaps = repo.reader(&key).unwrap().snapshots().unwrap();
        forget::forget(&repo, &key, &[(snaps[0].clone(), "test".into())], 1, "test").unwrap();

        store.changes.store(0, Ordering::SeqCst);
        if total.is_some() {
            store.left.store(kill_at, Ordering::SeqCst);
            assert!(
                prune::prune(&repo, &key, &opts()).is_err(),
                "killed after {kill_at}"
            );
            store.left.store(u64::MAX, Ordering::SeqCst);
        } else {
            let r = prune::prune(&repo, &key, &opts()).unwrap();
            assert!(!r.record.trashed.is_empty(), "{:?}", r.plan.packs);
            assert!(!store.s3.list(ObjectKind::Trash).unwrap().is_empty());
            total = Some(store.changes.load(Ordering::SeqCst));
        }
        // Whatever happened, the kept snapshot reads back and check passes; a later prune
        // (after the grace period) leaves nothing unused behind.
        let check = repo.check(&key, ReadData::All, &NoProgress).unwrap();
        assert!(check.is_ok(), "kill at {kill_at}: {:?}", check.problems);
        let mut later = opts();
        later.now_ns = Some(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as i64
                + 25 * 3_600_000_000_000,
        );
        // One prune finishes the move, one a grace period later deletes.
        prune::prune(&repo, &key, &later).unwrap();
        later.now_ns = later.now_ns.map(|t| t + 25 * 3_600_000_000_000);
        prune::prune(&repo, &key, &later).unwrap();
        let left = prune::plan(&repo, &key, &later).unwrap();
        assert!(
            store.s3.list(ObjectKind::Trash).unwrap().is_empty(),
            "kill at {kill_at}: {:?}",
            left.packs
        );
        let reader = repo.reader(&key).unwrap();
        let s = reader.resolve_snapshot("latest").unwrap();
        let out = tmp.path().join(format!("out{round}"));
        reader
            .restore(&s, &out, &RestoreOptions::default(), &NoProgress)
            .unwrap();
        let got = std::fs::read(out.join(src.strip_prefix("/").unwrap()).join("a")).unwrap();
        assert!(
            got == noise(2, 1_500_000),
            "kill at {kill_at}: content differs"
        );
    }
    panic!("a prune of two backups should not need 40 changes ({total:?})");
}
