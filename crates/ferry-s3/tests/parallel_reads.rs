//! Restore and `check --read-data` read through `S3Storage` from several threads at once
//! (ferry_repo's parallel pack reader): the calls must be concurrent requests, not queued
//! behind one another, and the restore must come back byte for byte. moto holds every pack GET
//! for a while (the kit's `unkind_s3_faults` rule), which also counts them in its log; the
//! restore's counted storage reads (what `ferry restore --json` reports) must be those GETs.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;

use ferry_repo::backup::local::backup_paths;
use ferry_repo::storage::{CountedStorage, Storage};
use ferry_repo::{BackupOptions, MasterKey, NoProgress, ReadData, Repository, RestoreOptions};
use ferry_s3::S3Storage;
use ferry_testkit::{Moto, S3Fault, S3FaultAnswer};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HOLD: Duration = Duration::from_millis(600);

/// Deterministic incompressible bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn parallel_restore_and_check_through_s3_are_concurrent_and_exact() {
    let moto = Moto::start().expect("moto");
    let s3: Arc<dyn Storage> = Arc::new(
        S3Storage::from_objects(common::objects(&moto, "ferry-parallel", "site1")).unwrap(),
    );
    let key = MasterKey::generate();
    let repo = Repository::init(s3.clone(), &key.put_key()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    // 24 files of 600 KiB in 1 MiB packs: a dozen packs, one range each.
    for i in 0..24u64 {
        std::fs::write(src.join(format!("f{i:02}")), noise(i + 1, 600 << 10)).unwrap();
    }
    let opts = BackupOptions {
        cache_disabled: true,
        pack_size: 1 << 20,
        ..Default::default()
    };
    let snap = backup_paths(
        &repo,
        &key.put_key(),
        std::slice::from_ref(&src),
        opts,
        Arc::new(NoProgress),
    )
    .unwrap();
    let packs = s3.list(ferry_repo::format::ObjectKind::Pack).unwrap().len() as u32;
    assert!(packs >= 10, "{packs} packs");

    // Every pack GET held HOLD: sequential reads would take packs × HOLD. Every other object
    // GET held 1 ms, so that moto's log counts every GET the restore makes.
    let mut hold = S3Fault::new("GET", "^site1/packs/", S3FaultAnswer::Normal);
    hold.delay = HOLD;
    let mut count = S3Fault::new("GET", "^site1/", S3FaultAnswer::Normal);
    count.delay = Duration::from_millis(1);
    moto.set_s3_faults(&[hold, count]).unwrap();
    // The storage reads a restore reports (`ferry restore --json`) are the GETs S3 saw.
    let counted = Arc::new(CountedStorage::new(s3.clone()));
    let reader = Repository::open(counted.clone())
        .unwrap()
        .reader(&key)
        .unwrap();
    let target = dir.path().join("out");
    let started = Instant::now();
    reader
        .restore(
            &snap,
            &target,
            &RestoreOptions {
                parallel: 8,
                ..Default::default()
            },
            &NoProgress,
        )
        .unwrap();
    let took = started.elapsed();
    let gets = moto.s3_faults_injected();
    let held = gets.iter().filter(|l| l.contains("(rule 0,")).count() as u32;
    let reads = counted.reads();
    assert_eq!(reads.get_requests, gets.len() as u64, "{gets:#?}");
    assert!(
        reads.bytes_fetched > 24 * (600 << 10),
        "{reads:?}: less than the files' bytes"
    );
    for i in 0..24u64 {
        let got = std::fs::read(
            target
                .join(src.strip_prefix("/").unwrap())
                .join(format!("f{i:02}")),
        )
        .unwrap();
        assert!(got == noise(i + 1, 600 << 10), "f{i:02} differs");
    }
    // The tree GETs come one by one (a directory's tree names its subtrees), then one GET
    // per pack of data: at least half of the packs' hold time must overlap.
    assert!(held >= packs, "{held} GETs held for {packs} packs");
    let sequential = HOLD * held;
    assert!(
        took < sequential - HOLD * packs / 2,
        "restore took {took:?}; {held} GETs one after the other take {sequential:?}"
    );

    // check --read-data: every pack, at once too (the trees before, one by one).
    let mut hold = S3Fault::new("GET", "^site1/packs/", S3FaultAnswer::Normal);
    hold.delay = HOLD;
    moto.set_s3_faults(&[hold]).unwrap();
    let started = Instant::now();
    let report = repo
        .check_with(
            &key,
            ReadData::All,
            ferry_repo::fetch::FetchOptions::new(8, 0),
            &NoProgress,
        )
        .unwrap();
    let took = started.elapsed();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.packs_read, u64::from(packs));
    let held = moto.s3_faults_injected().len() as u32 - gets.len() as u32;
    assert!(held >= packs, "{held} GETs held for {packs} packs");
    let sequential = HOLD * held;
    assert!(
        took < sequential - HOLD * packs / 2,
        "check took {took:?}; {held} GETs one after the other take {sequential:?}"
    );
}
