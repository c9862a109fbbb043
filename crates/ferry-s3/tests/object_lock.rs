//! Forget and prune on a bucket with S3 Object Lock (the kit's moto, which implements Object
//! Lock: default retention on every new version, a locked version refused to a delete by
//! version id). Every write Ferry makes (the gate's PutObject, prune's CopyObject) carries the
//! checksum header S3 asks for there; prune's deletes leave locked old versions that it counts
//! with their dates; once their lock has passed the next prune removes them; current objects,
//! and so every snapshot, are never touched.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;

use ferry_repo::backup::local::backup_paths;
use ferry_repo::format::ObjectKind;
use ferry_repo::retention::{forget, prune};
use ferry_repo::storage::Storage;
use ferry_repo::*;
use ferry_s3::S3Storage;
use ferry_testkit::Moto;
use std::sync::Arc;

const BUCKET: &str = "ferry-locked";

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

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// (old data versions, delete markers, current versions) under `site/`.
fn versions(moto: &Moto) -> (usize, usize, usize) {
    let out = moto
        .python(
            r#"import boto3, sys
r = boto3.client('s3').list_object_versions(Bucket=sys.argv[1], Prefix='site/')
v = r.get('Versions', [])
print(sum(1 for x in v if not x['IsLatest']), len(r.get('DeleteMarkers', [])), sum(1 for x in v if x['IsLatest']))"#,
            &[BUCKET],
            &[],
        )
        .unwrap();
    let n: Vec<usize> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
    (n[0], n[1], n[2])
}

fn restore_latest(repo: &Repository, key: &MasterKey, out: &std::path::Path) -> Vec<u8> {
    let reader = repo.reader(key).unwrap();
    let s = reader.resolve_snapshot("latest").unwrap();
    reader
        .restore(&s, out, &RestoreOptions::default(), &NoProgress)
        .unwrap();
    let f = walkdir_one(out);
    std::fs::read(f).unwrap()
}

/// The one regular file under `dir`.
fn walkdir_one(dir: &std::path::Path) -> std::path::PathBuf {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                return p;
            }
        }
    }
    panic!("no file under {}", dir.display())
}

#[test]
fn prune_counts_locked_versions_and_removes_them_once_their_lock_has_passed() {
    let moto = Moto::start().expect("moto");
    // A bucket as `ferry infra apply` makes it with [object_lock]: lock on, governance, 1 day.
    moto.python(
        r#"import boto3, sys
s3 = boto3.client('s3')
s3.create_bucket(Bucket=sys.argv[1], ObjectLockEnabledForBucket=True)
s3.put_object_lock_configuration(Bucket=sys.argv[1], ObjectLockConfiguration={
    'ObjectLockEnabled': 'Enabled', 'Rule': {'DefaultRetention': {'Mode': 'GOVERNANCE', 'Days': 1}}})"#,
        &[BUCKET],
        &[],
    )
    .unwrap();
    let store =
        Arc::new(S3Storage::from_objects(common::objects_in(&moto, BUCKET, "site")).unwrap());
    let key = MasterKey::generate();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // Puts into a bucket with default retention need the checksum header (moto refuses
    // without it, as S3 does): every backup write below goes through ferry-s3's put.
    let repo = Repository::init(store.clone(), &key.put_key()).unwrap();
    let bopts = || BackupOptions {
        cache_dir: Some(tmp.path().join("cache")),
        pack_size: 1024 * 1024,
        workers: 1,
        ..Default::default()
    };
    for seed in [1, 2] {
        std::fs::write(src.join("a"), noise(seed, 1_500_000)).unwrap();
        backup_paths(
            &repo,
            &key.put_key(),
            std::slice::from_ref(&src),
            bopts(),
            Arc::new(NoProgress),
        )
        .unwrap();
    }
    // Nothing deleted yet: nothing old to sweep.
    let none = prune::old_versions(&repo, true).unwrap().unwrap();
    assert_eq!((none.removed, none.locked, none.removed_markers), (0, 0, 0));
    assert_eq!(none.list_requests, 1);

    // A delete by version id of a locked backup is refused, even to the operator (no bypass).
    let refused = moto
        .python(
            r#"import boto3, sys
s3 = boto3.client('s3')
k = [o['Key'] for o in s3.list_objects_v2(Bucket=sys.argv[1], Prefix='site/snapshots/')['Contents']][0]
v = s3.head_object(Bucket=sys.argv[1], Key=k)
assert v['ObjectLockMode'] == 'GOVERNANCE', v
try:
    s3.delete_object(Bucket=sys.argv[1], Key=k, VersionId=v['VersionId'])
    print('deleted')
except Exception as e:
    print('refused', e)"#,
            &[BUCKET],
            &[],
        )
        .unwrap();
    assert!(
        refused.starts_with("refused") && refused.contains("AccessDenied"),
        "{refused}"
    );

    // Forget the first snapshot; prune moves its pack to trash/ (CopyObject into the locked
    // bucket) and, a grace period later, deletes it. Each delete leaves a locked old version.
    let snaps = repo.reader(&key).unwrap().snapshots().unwrap();
    forget::forget(&repo, &key, &[(snaps[0].clone(), "test".into())], 1, "test").unwrap();
    let mut o = prune::PruneOptions {
        max_unused_percent: 0.0,
        ..Default::default()
    };
    o.pack.pack_size = 1024 * 1024;
    let first = prune::prune(&repo, &key, &o).unwrap();
    assert!(!first.record.trashed.is_empty(), "{:?}", first.plan.packs);
    o.now_ns = Some(now_ns() + 25 * 3_600_000_000_000);
    let second = prune::prune(&repo, &key, &o).unwrap();
    assert!(!second.record.deleted.is_empty(), "{:?}", second.plan.packs);
    let v = second.versions.clone().unwrap();
    let (old, markers, current) = versions(&moto);
    assert!(old > 0 && markers > 0, "{old} {markers}");
    assert_eq!(v.removed, 0, "{v:?}");
    assert_eq!(v.locked as usize, old, "{v:?}");
    assert!(v.locked_bytes > 1_000_000, "{v:?}");
    // Locked for a day from when each was written.
    let now = now_ns() / 1_000_000_000;
    let (next, last) = (v.next_unlock.unwrap(), v.last_unlock.unwrap());
    assert!(
        (now + 86_400 - 300..=now + 86_400 + 60).contains(&next) && last >= next,
        "{v:?} now {now}"
    );
    assert_eq!(
        restore_latest(&repo, &key, &tmp.path().join("out1")),
        noise(2, 1_500_000)
    );

    // A dry run counts without deleting.
    let dry = prune::old_versions(&repo, true).unwrap().unwrap();
    assert_eq!((dry.locked, dry.removed), (v.locked, 0));

    // Time passes: the locks end (the test shortens them with the governance bypass, as an
    // administrator could; a prune holds no such permission and never sends the bypass).
    moto.python(
        r#"import boto3, sys, datetime
s3 = boto3.client('s3')
until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
r = s3.list_object_versions(Bucket=sys.argv[1], Prefix='site/')
for x in r.get('Versions', []):
    if not x['IsLatest']:
        s3.put_object_retention(Bucket=sys.argv[1], Key=x['Key'], VersionId=x['VersionId'],
            BypassGovernanceRetention=True, Retention={'Mode': 'GOVERNANCE', 'RetainUntilDate': until})"#,
        &[BUCKET],
        &[],
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let dry = prune::old_versions(&repo, true).unwrap().unwrap();
    assert_eq!((dry.locked, dry.removed), (0, v.locked), "{dry:?}");
    assert_eq!(
        versions(&moto),
        (old, markers, current),
        "a dry run deleted"
    );

    let third = prune::prune(&repo, &key, &o).unwrap();
    let v3 = third.versions.unwrap();
    assert_eq!((v3.removed, v3.locked), (v.locked, 0), "{v3:?}");
    assert_eq!(v3.removed_markers as usize, markers, "{v3:?}");
    // Only current objects are left, every one of them untouched.
    let (old3, markers3, current3) = versions(&moto);
    assert_eq!((old3, markers3), (0, 0));
    assert!(current3 >= current, "{current3} < {current}");
    assert!(store.list(ObjectKind::Trash).unwrap().is_empty());
    let check = repo.check(&key, ReadData::All, &NoProgress).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
    assert_eq!(
        restore_latest(&repo, &key, &tmp.path().join("out2")),
        noise(2, 1_500_000)
    );
}
