//! Faults on the backup VM's own disk and clock (issue 15, "Disk"): the local cache
//! truncated, corrupted (bytes flipped anywhere) or deleted between runs, and the clock
//! jumping back. Each time the next backup completes, `check --read-data` passes, and every
//! snapshot restores byte for byte. The cache's own defences are what is tested: checksummed
//! journal records (a damaged tail is ignored), a checksummed file cache (ignored whole when
//! damaged), and "unchanged" trusted only while every blob is known stored.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;

use common::*;
use ferry_repo::*;
use std::path::{Path, PathBuf};

/// Every file under `dir`, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A source of a few files; `round` changes one of them.
fn write_source(src: &Path, round: u64) {
    std::fs::create_dir_all(src.join("logs")).unwrap();
    std::fs::write(src.join("db.bin"), noise(1, 700_000)).unwrap();
    std::fs::write(
        src.join("logs/app.log"),
        "line of log text\n".repeat(20_000),
    )
    .unwrap();
    std::fs::write(src.join("changing"), noise(100 + round, 300_000)).unwrap();
}

fn assert_all_restore(env: &Env, src: &Path, round: u64) {
    let check = env
        .repo
        .check(&env.key, ReadData::All, &NoProgress)
        .unwrap();
    assert!(check.is_ok(), "round {round}: {:?}", check.problems);
    let reader = env.reader();
    let latest = reader.resolve_snapshot("latest").unwrap();
    let out = env.dir.path().join(format!("out{round}"));
    env.restore(&latest, &out);
    assert_same_tree(src, &restored_path(&out, src));
}

/// Damage done to one cache file, given a random number.
type Damage = fn(&Path, u64);

#[test]
fn a_truncated_corrupted_or_deleted_cache_costs_at_most_an_upload_never_a_backup() {
    let env = Env::new();
    let src = env.dir.path().join("src");
    write_source(&src, 0);
    env.backup(std::slice::from_ref(&src));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // Each damage, twice (different bytes), then a backup with one file changed.
    let damages: [(&str, Damage); 3] = [
        ("truncated", |p, r| {
            let len = std::fs::metadata(p).unwrap().len();
            let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            f.set_len(if len == 0 { 0 } else { r % len }).unwrap();
        }),
        ("corrupted", |p, r| {
            let mut b = std::fs::read(p).unwrap();
            if !b.is_empty() {
                for i in 0..4 {
                    let at = (r.rotate_left(i * 16) as usize) % b.len();
                    b[at] ^= 1 << (i + 1);
                }
            }
            std::fs::write(p, b).unwrap();
        }),
        ("deleted", |p, _| std::fs::remove_file(p).unwrap()),
    ];
    let mut round = 1;
    for (what, damage) in damages {
        for _ in 0..2 {
            let cached = files(&env.cache_dir());
            let data: Vec<&PathBuf> = cached
                .iter()
                .filter(|p| p.file_name().is_some_and(|n| n != "lock"))
                .collect();
            assert!(!data.is_empty(), "no cache files to damage");
            for p in data {
                damage(p, next());
            }
            write_source(&src, round);
            env.backup(std::slice::from_ref(&src));
            assert_all_restore(&env, &src, round);
            eprintln!("cache {what}: round {round} ok");
            round += 1;
        }
    }
    // Every snapshot (one per round), not only the latest, restores.
    let reader = env.reader();
    assert_eq!(reader.snapshots().unwrap().len() as u64, round);
}

#[test]
fn a_clock_jumping_back_loses_nothing() {
    let env = Env::new();
    let src = env.dir.path().join("src");
    write_source(&src, 0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let day = 86_400_000_000_000i64;
    let first = env.backup_with(
        std::slice::from_ref(&src),
        BackupOptions {
            time_ns: Some(now),
            ..env.opts()
        },
        std::sync::Arc::new(NoProgress),
    );
    // The clock jumps back a day; a file changes (its new mtime is older than the first run).
    write_source(&src, 1);
    set_mtime(&src.join("changing"), (now - 2 * day) / 1_000_000_000, 0);
    let second = env.backup_with(
        std::slice::from_ref(&src),
        BackupOptions {
            time_ns: Some(now - day),
            ..env.opts()
        },
        std::sync::Arc::new(NoProgress),
    );
    assert_ne!(first.id, second.id);
    let check = env
        .repo
        .check(&env.key, ReadData::All, &NoProgress)
        .unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
    // Both restore by id, each with its own content.
    let out = env.dir.path().join("second");
    env.restore(&second, &out);
    assert_same_tree(&src, &restored_path(&out, &src));
    let out1 = env.dir.path().join("first");
    env.restore(&first, &out1);
    assert_eq!(
        std::fs::read(restored_path(&out1, &src).join("changing")).unwrap(),
        noise(100, 300_000)
    );
    // "latest" means the newest time, as in restic: the first run's snapshot, whose clock
    // was ahead. Said in docs/RELIABILITY.md.
    assert_eq!(
        env.reader().resolve_snapshot("latest").unwrap().id,
        first.id
    );
}
