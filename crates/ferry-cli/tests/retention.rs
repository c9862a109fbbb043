//! `ferry forget` and `ferry prune` through the real binary on a local repository: dry runs
//! change nothing, the policy keeps what it says, the record is written, every kept snapshot
//! restores and `check --read-data` passes, the retention file applies per site, a put key is
//! refused, and `ferry prune` killed (SIGKILL) at random points never damages the repository.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;

use common::*;
use std::ffi::OsStr;
use std::fs;
use std::time::Duration;

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Three backups of a changing tree: each run rewrites the data file.
fn three_backups(env: &Env) -> std::path::PathBuf {
    env.keys();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..3u64 {
        fs::write(src.join("data"), noise(i + 1, 3_000_000)).unwrap();
        fs::write(src.join("log"), log_text(i, 200_000)).unwrap();
        env.backup(&[&src]).ok();
    }
    src
}

#[test]
fn forget_then_prune_keeps_what_the_policy_says_and_everything_restores() {
    let env = Env::new();
    let src = three_backups(&env);
    let before = files(&env.repo.join("packs"));
    // A dry run lists the decision and changes nothing.
    let dry = env
        .run(env.repo_args(
            "forget",
            &env.master,
            &[
                OsStr::new("--keep-last"),
                OsStr::new("1"),
                OsStr::new("--dry-run"),
                OsStr::new("--prune"),
                OsStr::new("--json"),
            ],
        ))
        .ok();
    let j = dry.json();
    assert_eq!(j["remove"].as_array().unwrap().len(), 2, "{j}");
    assert_eq!(j["kept"], 1);
    assert_eq!(env.snapshots().len(), 3);
    assert!(
        j["prune"]["plan"]["requests"]["put"].as_u64().is_some(),
        "{j}"
    );
    assert_eq!(files(&env.repo.join("packs")), before);
    assert!(files(&env.repo.join("log")).is_empty());
    // The human form names the rule that keeps the one it keeps.
    let human = env
        .run(env.repo_args(
            "forget",
            &env.master,
            &[OsStr::new("--keep-last"), OsStr::new("1"), OsStr::new("-n")],
        ))
        .ok();
    let out = human.stdout_str();
    assert!(
        out.contains("keep") && out.contains("last snapshot") && out.contains("forget"),
        "{out}"
    );

    // For real: two snapshots go, the record stays, the unused packs move to trash/.
    let latest = env.snapshots().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.run(env.repo_args(
        "forget",
        &env.master,
        &[
            OsStr::new("--keep-last"),
            OsStr::new("1"),
            OsStr::new("--prune"),
        ],
    ))
    .ok();
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["id"], latest.as_str());
    assert_eq!(
        files(&env.repo.join("log")).len(),
        2,
        "a forget and a prune record"
    );
    assert!(
        !files(&env.repo.join("trash")).is_empty(),
        "unused packs wait in trash/"
    );
    env.check(true).ok();
    let target = env.path("restore");
    env.restore("latest", &target, &[]).ok();
    assert!(diff_trees(&src, &restored(&target, &src)).is_empty());

    // Within the grace period a prune deletes nothing; --keep-delete is at least 13h (longer
    // than the longest jump-box session).
    let p = env
        .run(env.repo_args("prune", &env.master, &[OsStr::new("--json")]))
        .ok()
        .json();
    assert_eq!(
        p["record"]["deleted"].as_array().map(Vec::len),
        Some(0),
        "{p}"
    );
    let r = env.run(env.repo_args(
        "prune",
        &env.master,
        &[OsStr::new("--keep-delete"), OsStr::new("12h")],
    ));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("at least 13 hours"), "{}", r.stderr);
    let r = env.run(env.repo_args(
        "prune",
        &env.master,
        &[OsStr::new("--max-unused"), OsStr::new("150%")],
    ));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--max-unused"), "{}", r.stderr);
}

#[test]
fn the_put_key_can_neither_forget_nor_prune_and_an_empty_policy_is_refused() {
    let env = Env::new();
    three_backups(&env);
    for args in [vec!["forget", "--keep-last", "1"], vec!["prune"]] {
        let r = env.run(env.repo_args(
            args[0],
            &env.put,
            &args[1..].iter().map(OsStr::new).collect::<Vec<_>>(),
        ));
        assert_ne!(r.code, 0);
        assert!(
            r.stderr.contains("put-only key") && r.stderr.contains("master key"),
            "{}",
            r.stderr
        );
    }
    let r = env.run(env.repo_args("forget", &env.master, &[]));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("no retention rule"), "{}", r.stderr);
    let r = env.run(env.repo_args(
        "forget",
        &env.master,
        &[OsStr::new("--keep-daily"), OsStr::new("x")],
    ));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("\"x\""), "{}", r.stderr);
    assert_eq!(env.snapshots().len(), 3);
}

#[test]
fn the_retention_file_applies_each_sites_policy() {
    let env = Env::new();
    three_backups(&env);
    let cfg = env.path("retention.toml");
    fs::write(
        &cfg,
        format!(
            "[retention.home]\nrepo = \"{}\"\nkey = \"{}\"\nkeep_last = 2\n",
            env.repo.display(),
            env.master.display()
        ),
    )
    .unwrap();
    let r = env
        .run([
            OsStr::new("forget"),
            OsStr::new("-c"),
            cfg.as_os_str(),
            OsStr::new("--prune"),
            OsStr::new("--json"),
        ])
        .ok();
    let j = r.json();
    assert_eq!(j[0]["site"], "home", "{j}");
    assert_eq!(env.snapshots().len(), 2);
    env.check(true).ok();
}

#[test]
fn sigkill_during_prune_never_damages_the_repository() {
    let env = Env::new();
    let src = three_backups(&env);
    env.run(env.repo_args(
        "forget",
        &env.master,
        &[OsStr::new("--keep-last"), OsStr::new("1")],
    ))
    .ok();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill delays seed {seed}");
    for round in 0..6 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut child = env
            .cmd()
            .args(env.repo_args(
                "prune",
                &env.master,
                &[OsStr::new("--max-unused"), OsStr::new("0")],
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(seed % 150));
        let _ = child.kill();
        let _ = child.wait();
        let c = env.check(true);
        assert_eq!(
            c.code, 0,
            "round {round}: check after the kill: {}",
            c.stderr
        );
    }
    env.run(env.repo_args("prune", &env.master, &[])).ok();
    env.check(true).ok();
    let target = env.path("restore");
    env.restore("latest", &target, &[]).ok();
    assert!(diff_trees(&src, &restored(&target, &src)).is_empty());
}
