//! `check --read-data-subset`: parts partition the packs, damage is found by the part that
//! holds it (and by `--read-data`), not by the others; 100% reads every pack.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;
use common::*;
use ferry_repo::*;
use std::collections::HashMap;

/// A repository of at least 12 packs (28 MiB of noise in 1 MiB packs, ~2 chunks each), and its pack
/// names.
fn many_packs() -> (Env, Vec<String>) {
    let env = Env::new();
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..14u64 {
        std::fs::write(src.join(format!("f{i}")), noise(500 + i, 2 * 1024 * 1024)).unwrap();
    }
    let mut opts = env.opts();
    opts.pack_size = 1024 * 1024;
    env.backup_with(
        std::slice::from_ref(&src),
        opts,
        std::sync::Arc::new(NoProgress),
    );
    let mut packs: Vec<String> = std::fs::read_dir(env.repo_dir().join("packs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| format::is_sha256_hex(n))
        .collect();
    packs.sort();
    assert!(packs.len() >= 12, "only {} packs", packs.len());
    (env, packs)
}

/// Packs a check read, from the objects it reported reading (after the indexes and trees),
/// sorted by name.
#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<String>>);
impl Progress for Seen {
    fn check_object(&self, object: &str) {
        if let Some(p) = object.strip_prefix("packs/") {
            self.0.lock().unwrap().push(p.to_string());
        }
    }
}

fn check_reading(env: &Env, read: ReadData) -> (CheckReport, Vec<String>) {
    let seen = Seen::default();
    let rep = env.repo.check(&env.key, read, &seen).unwrap();
    // Sorted: the parallel pack reader reports packs as its threads start them.
    let mut read = seen.0.into_inner().unwrap();
    read.sort();
    (rep, read)
}

fn part(n: u32, of: u32) -> ReadData {
    ReadData::Subset(DataSubset::Part { n, of })
}

#[test]
fn parts_read_every_pack_exactly_once() {
    let (env, packs) = many_packs();
    let (all, all_read) = check_reading(&env, ReadData::All);
    assert!(all.is_ok(), "{:?}", all.problems);
    assert_eq!(all_read, packs, "--read-data reads every pack");
    assert_eq!(all.packs_read, packs.len() as u64);
    assert_eq!(all.read_data_subset, None);
    assert!(all.read_data);

    let (none, none_read) = check_reading(&env, ReadData::None);
    assert!(none.is_ok());
    assert!(none_read.is_empty());
    assert_eq!((none.packs_read, none.read_data), (0, false));

    for of in [1u32, 3, 5] {
        let mut count: HashMap<String, u32> = HashMap::new();
        let mut blobs = 0;
        for n in 1..=of {
            let (rep, read) = check_reading(&env, part(n, of));
            assert!(rep.is_ok(), "{:?}", rep.problems);
            assert!(rep.read_data);
            assert_eq!(rep.read_data_subset.as_deref(), Some(&*format!("{n}/{of}")));
            assert_eq!(rep.packs_read, read.len() as u64);
            assert_eq!(rep.packs, packs.len() as u64);
            for p in read {
                // restic's rule: the first byte of the name modulo t is n - 1.
                let first = u32::from_str_radix(&p[..2], 16).unwrap();
                assert_eq!(first % of, n - 1, "{p} read by {n}/{of}");
                *count.entry(p).or_default() += 1;
            }
            blobs += rep.blobs_verified;
        }
        assert_eq!(count.len(), packs.len(), "parts of {of} cover every pack");
        assert!(
            count.values().all(|&c| c == 1),
            "no pack read twice over {of} parts"
        );
        assert_eq!(
            blobs, all.blobs_verified,
            "the parts verify what --read-data does"
        );
    }

    let hundred = ReadData::Subset(DataSubset::Percent(100.0));
    let (rep, read) = check_reading(&env, hundred);
    assert_eq!(read, packs, "100% reads every pack");
    assert_eq!(rep.packs_read, packs.len() as u64);
    assert_eq!(rep.blobs_verified, all.blobs_verified);
    assert_eq!(rep.read_data_subset.as_deref(), Some("100%"));

    let (rep, read) = check_reading(&env, ReadData::Subset("10%".parse().unwrap()));
    assert_eq!(read.len(), packs.len() / 10, "10% rounded down");
    assert_eq!(rep.packs_read, read.len() as u64);

    let (rep, read) = check_reading(&env, ReadData::Subset("3M".parse().unwrap()));
    // Drawn until the sizes reach 3 MiB: at least that much, and without the largest pack
    // drawn (so without the last one drawn, too) less (plus a little for the trailers, which
    // the estimate from the index leaves out).
    let sizes: Vec<u64> = read
        .iter()
        .map(|p| {
            std::fs::metadata(env.repo_dir().join("packs").join(p))
                .unwrap()
                .len()
        })
        .collect();
    let sum: u64 = sizes.iter().sum();
    let max = sizes.iter().copied().max().unwrap();
    assert!(sum >= 3 << 20, "{sizes:?}");
    assert!(sum - max < (3 << 20) + (64 << 10), "{sizes:?}");
    assert_eq!(rep.read_data_subset.as_deref(), Some("3M"));
    let (_, read) = check_reading(&env, ReadData::Subset("1T".parse().unwrap()));
    assert_eq!(read, packs, "more than the repository reads it all");

    let err = env
        .repo
        .check(&env.key, part(0, 5), &NoProgress)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOption(_)), "{err}");
    assert!(err.to_string().contains("\"0/5\""), "{err}");
}

#[test]
fn damaged_pack_is_found_by_its_part_and_by_all_only() {
    let (env, packs) = many_packs();
    let of = 4u32;
    // Damage a pack of data blobs only: a pack holding a tree is read by every check (the
    // trees are walked), whatever the subset. Try packs until the check without data is clean.
    let victim = packs
        .iter()
        .find(|p| {
            let path = env.repo_dir().join("packs").join(p);
            let good = std::fs::read(&path).unwrap();
            let mut bad = good.clone();
            bad[200] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            let clean = env
                .repo
                .check(&env.key, ReadData::None, &NoProgress)
                .unwrap()
                .is_ok();
            if !clean {
                std::fs::write(&path, &good).unwrap();
            }
            clean
        })
        .expect("a pack without trees");
    let object = format!("packs/{victim}");
    let names = |rep: &CheckReport| rep.problems.iter().any(|p| p.object == object);

    let (all, _) = check_reading(&env, ReadData::All);
    assert!(names(&all), "{:?}", all.problems);
    let (none, _) = check_reading(&env, ReadData::None);
    assert!(none.is_ok(), "without reading data the damage is not seen");

    let group = u32::from_str_radix(&victim[..2], 16).unwrap() % of + 1;
    for n in 1..=of {
        let (rep, read) = check_reading(&env, part(n, of));
        if n == group {
            assert!(read.contains(victim));
            assert!(names(&rep), "{n}/{of}: {:?}", rep.problems);
            assert!(
                rep.problems.iter().all(|p| p.object == object),
                "only the damaged pack: {:?}",
                rep.problems
            );
        } else {
            assert!(!read.contains(victim));
            assert!(rep.is_ok(), "{n}/{of} does not read it: {:?}", rep.problems);
        }
    }
    let (rep, _) = check_reading(&env, ReadData::Subset(DataSubset::Percent(100.0)));
    assert!(names(&rep), "{:?}", rep.problems);
}
