//! SIGKILL during `ferry backup` never damages the repository, and the next backup completes.
//!
//! A ~300 MiB tree (half incompressible) is backed up with 2 MiB packs; each round starts a backup and kills it
//! (SIGKILL) at a random point, chosen by progress (after k new packs landed, plus a random
//! few hundred ms, so points fall in the walk, among pack writes and in the final index and
//! snapshot writes). After every kill `ferry check --read-data` must pass and every snapshot
//! present must be complete. Half the rounds also delete the local cache. Finally an
//! uninterrupted backup must complete and restore equal to the source. The random seed is
//! printed; set FERRY_KILL_SEED to replay it.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;

use common::*;
use std::fs;
use std::time::{Duration, Instant};

const ROUNDS: usize = 4;
/// Pairs of 2 MiB files (one incompressible, one log text): ~300 MiB in all.
const FILE_PAIRS: u64 = 75;
/// Kill points are drawn among the first this many new packs of a round (a whole first
/// backup writes ~70 packs of 2 MiB, later rounds fewer: their data is partly stored).
const MAX_KILL_PACKS: u64 = 50;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn count(dir: &std::path::Path) -> usize {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn sigkill_during_backup_leaves_a_valid_repository() {
    let seed = std::env::var("FERRY_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    eprintln!("kill test seed: FERRY_KILL_SEED={seed}");
    let mut rng = Rng(seed);

    let env = Env::new();
    env.keys();
    let src = env.path("src");
    sample_tree(&src);
    let mut files = 9u64; // sample_tree
    for i in 0..FILE_PAIRS {
        let d = src.join(format!("data/d{}", i % 5));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(format!("noise{i}.bin")), noise(100 + i, 2 << 20)).unwrap();
        fs::write(d.join(format!("log{i}.log")), log_text(1000 * i, 2 << 20)).unwrap();
        files += 2;
    }

    let packs_dir = env.repo.join("packs");
    for round in 0..ROUNDS {
        if round % 2 == 1 {
            let _ = fs::remove_dir_all(&env.cache);
        }
        let k = rng.below(MAX_KILL_PACKS) as usize;
        let extra = Duration::from_millis(rng.below(400));
        let before = count(&packs_dir);
        let mut child = env
            .cmd()
            .args(env.repo_args(
                "backup",
                &env.put,
                &[
                    "--pack-size".as_ref(),
                    "2MiB".as_ref(),
                    "-q".as_ref(),
                    src.as_os_str(),
                ],
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let mut reached: Option<Instant> = None;
        let finished = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            if reached.is_none() && count(&packs_dir) >= before + k {
                reached = Some(Instant::now());
            }
            if reached.is_some_and(|t| t.elapsed() >= extra) {
                break None;
            }
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "backup round {round} ran for 10 minutes"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        match finished {
            Some(st) => eprintln!(
                "round {round}: backup finished by itself ({st}) before the kill point (k={k})"
            ),
            None => {
                child.kill().unwrap(); // SIGKILL
                let st = child.wait().unwrap();
                eprintln!(
                    "round {round}: killed after {:?} ({} new packs, k={k}, +{extra:?}): {st}",
                    start.elapsed(),
                    count(&packs_dir) - before
                );
            }
        }
        if !env.repo.join("config").exists() {
            // Killed before the repository was even created: nothing to check yet.
            continue;
        }
        let r = env.check(true);
        assert_eq!(
            r.code, 0,
            "round {round}: check --read-data failed after SIGKILL (seed {seed}):\n{}",
            r.stderr
        );
        for s in env.snapshots() {
            assert_eq!(
                s["stats"]["files"], files,
                "round {round}: incomplete snapshot {s}"
            );
            assert_eq!(s["stats"]["errors"], 0);
        }
    }

    let r = env.backup(&[&src]);
    let r = r.ok();
    assert_eq!(r.summary()["stats"]["files"], files);
    env.check(true).ok();
    let target = env.path("restore");
    env.restore("latest", &target, &[]).ok();
    let diff = diff_trees(&src, &restored(&target, &src));
    assert!(
        diff.is_empty(),
        "restore after the kills differs (seed {seed}):\n{}",
        diff.join("\n")
    );
}
