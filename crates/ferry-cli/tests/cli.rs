//! End-to-end tests of the `ferry` binary against a local directory repository.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;

use common::*;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

#[test]
fn key_init_writes_private_files_and_refuses_to_overwrite() {
    let env = Env::new();
    env.keys();
    for k in [&env.master, &env.put] {
        let mode = fs::metadata(k).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", k.display());
    }
    let master = fs::read(&env.master).unwrap();
    let put = fs::read(&env.put).unwrap();
    assert!(master.starts_with(b"-----BEGIN FERRY MASTER KEY-----"));
    assert!(put.starts_with(b"-----BEGIN FERRY PUT KEY-----"));

    // Either file existing is refused, and nothing is changed.
    let other = env.path("other.key");
    for (m, p) in [(&env.master, &other), (&other, &env.put)] {
        let r = env
            .cmd()
            .env("FERRY_PASSPHRASE", "")
            .args(["key", "init", "--master"])
            .arg(m)
            .arg("--put")
            .arg(p)
            .output()
            .unwrap();
        let r = Run::from(r);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(
            r.stderr.starts_with("error: ") && r.stderr.contains("already exists"),
            "{}",
            r.stderr
        );
        assert!(
            !other.exists(),
            "a key file was written next to an existing one"
        );
    }
    assert_eq!(fs::read(&env.master).unwrap(), master);
    assert_eq!(fs::read(&env.put).unwrap(), put);
}

#[test]
fn passphrase_protected_master_key_from_env() {
    let env = Env::new();
    let pass = "correct horse battery staple";
    let r: Run = env
        .cmd()
        .env("FERRY_PASSPHRASE", pass)
        .args(["key", "init", "--master"])
        .arg(&env.master)
        .arg("--put")
        .arg(&env.put)
        .output()
        .unwrap()
        .into();
    let r = r.ok();
    assert!(!r.stderr.contains(pass) && !r.stdout_str().contains(pass));
    assert!(!fs::read_to_string(&env.master).unwrap().contains(pass));

    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]).ok(); // the put key has no passphrase

    let snapshots = |p: Option<&str>| -> Run {
        let mut c = env.cmd();
        if let Some(p) = p {
            c.env("FERRY_PASSPHRASE", p);
        }
        c.args(env.repo_args("snapshots", &env.master, &[]))
            .output()
            .unwrap()
            .into()
    };
    // No passphrase and no terminal: a clear error, not a prompt.
    let r = snapshots(None);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("passphrase") && r.stderr.contains("FERRY_PASSPHRASE"),
        "{}",
        r.stderr
    );
    let r = snapshots(Some("wrong"));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("wrong passphrase"), "{}", r.stderr);
    assert!(!r.stderr.contains(pass));
    let r = snapshots(Some(pass)).ok();
    assert!(r.stdout_str().contains("1 snapshots"), "{}", r.stdout_str());
}

#[test]
fn backup_snapshots_ls_restore_round_trip() {
    let env = Env::new();
    env.keys();
    let src = env.path("src");
    sample_tree(&src);

    let b = env.backup(&[&src]).ok();
    let summary = b.summary();
    let id = summary["snapshot"]
        .as_str()
        .expect("summary has the snapshot id")
        .to_string();
    assert_eq!(id.len(), 64);
    assert_eq!(summary["partial"], false);
    assert_eq!(summary["stats"]["files"], 9, "{summary}");
    assert_eq!(summary["stats"]["symlinks"], 2, "{summary}");

    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1);
    let s = &snaps[0];
    assert_eq!(s["id"], id.as_str());
    assert!(
        s["time"].as_str().is_some_and(|t| t.starts_with("20")),
        "{s}"
    );
    assert!(s["host"].as_str().is_some_and(|h| !h.is_empty()));
    assert_eq!(s["paths"][0], src.to_str().unwrap());

    // ls: every entry, names as raw bytes, symlink targets shown.
    let ls = env
        .run(env.repo_args("ls", &env.master, &[OsStr::new("latest")]))
        .ok();
    let lines: Vec<&[u8]> = ls
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let has = |needle: &[u8]| {
        lines
            .iter()
            .any(|l| l.windows(needle.len()).any(|w| w == needle))
    };
    assert!(
        has(b"/src/caf\xe9-\xff.txt"),
        "non-UTF-8 name not listed exactly:\n{}",
        ls.stdout_str()
    );
    assert!(has(b"/src/link-to-conf -> etc/app.conf"));
    assert!(has(b"/src/a/b/c/d/e/f/g/deep.txt"));
    // ls PATH lists only that subtree.
    let sub = env.path("src/etc");
    let ls = env
        .run(env.repo_args("ls", &env.master, &[OsStr::new(&id[..12]), sub.as_os_str()]))
        .ok();
    let out = ls.stdout_str();
    assert!(
        out.contains("/src/etc/sub/other.conf") && !out.contains("/src/logs"),
        "{out}"
    );

    let target = env.path("restore");
    env.restore("latest", &target, &[]).ok();
    let diff = diff_trees(&src, &restored(&target, &src));
    assert!(
        diff.is_empty(),
        "restore differs from the source:\n{}",
        diff.join("\n")
    );

    env.check(false).ok();
    env.check(true).ok();
}

#[test]
fn snapshot_ids_latest_and_prefix() {
    let env = Env::new();
    env.keys();
    let src = env.path("src");
    sample_tree(&src);
    let first_state = env.path("first");
    copy_dir(&src, &first_state);
    let id1 = env.backup(&[&src]).ok().summary()["snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    fs::write(src.join("etc/app.conf"), b"listen = 9090\n").unwrap();
    fs::write(src.join("etc/new.conf"), b"new\n").unwrap();
    let id2 = env.backup(&[&src]).ok().summary()["snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(id1, id2);
    assert_eq!(env.snapshots().len(), 2);

    // A unique prefix of the first snapshot restores the first state.
    let t1 = env.path("t1");
    env.restore(&id1[..10], &t1, &[]).ok();
    let r1 = restored(&t1, &src);
    assert_eq!(
        fs::read(r1.join("etc/app.conf")).unwrap(),
        b"listen = 8080\nuser = app\n"
    );
    assert!(!r1.join("etc/new.conf").exists());
    // `latest` is the second.
    let t2 = env.path("t2");
    env.restore("latest", &t2, &[]).ok();
    let diff = diff_trees(&src, &restored(&t2, &src));
    assert!(diff.is_empty(), "{}", diff.join("\n"));
    // The full id works too.
    let t3 = env.path("t3");
    env.restore(&id2, &t3, &[]).ok();
    assert!(restored(&t3, &src).join("etc/new.conf").exists());

    let r = env.restore("ffffffffffff0000", &env.path("t4"), &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no snapshot matches"), "{}", r.stderr);
}

#[test]
fn restore_include_glob_restores_only_matches() {
    let env = Env::new();
    env.keys();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]).ok();
    let target = env.path("t");
    env.restore(
        "latest",
        &target,
        &["--include", "**/*.conf", "--parallel", "3"],
    )
    .ok();
    let root = restored(&target, &src);
    let files: Vec<String> = list_tree(&root)
        .into_iter()
        .map(|p| String::from_utf8_lossy(&p).into_owned())
        .filter(|p| root.join(p).symlink_metadata().is_ok_and(|m| !m.is_dir()))
        .collect();
    assert_eq!(
        files,
        ["etc/app.conf", "etc/empty.conf", "etc/sub/other.conf"]
    );
    assert_eq!(
        fs::read(root.join("etc/sub/other.conf")).unwrap(),
        b"[x]\nkey = value\n"
    );
}

#[test]
fn restore_parallel_out_of_range_is_refused_naming_it() {
    let env = Env::new();
    env.keys();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]).ok();
    for bad in ["0", "257", "many"] {
        let target = env.path(&format!("t{bad}"));
        let r = env.restore("latest", &target, &["--parallel", bad]);
        assert_eq!(r.code, 2, "--parallel {bad}: {}", r.stderr);
        assert!(r.stderr.contains("--parallel"), "{}", r.stderr);
        assert!(!target.exists(), "nothing restored with --parallel {bad}");
    }
    let target = env.path("one");
    env.restore("latest", &target, &["--parallel", "1"]).ok();
    assert!(diff_trees(&src, &restored(&target, &src)).is_empty());
}

#[test]
fn check_names_a_corrupted_pack() {
    let env = Env::new();
    env.keys();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]).ok();
    env.check(true).ok();
    let packs: Vec<_> = fs::read_dir(env.repo.join("packs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let pack = packs
        .iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::set_permissions(pack, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(pack, &bytes).unwrap();
    let r = env.check(true);
    assert_eq!(r.code, 1, "{r:?}");
    let name = pack.file_name().unwrap().to_str().unwrap();
    assert!(
        r.stderr.contains(name),
        "check does not name the pack {name}:\n{}",
        r.stderr
    );
    assert!(r.stderr.contains("error: check found"), "{}", r.stderr);
}

#[test]
fn put_key_cannot_read_the_repository() {
    let env = Env::new();
    env.keys();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]).ok();
    let target = env.path("t");
    for (cmd, rest) in [
        (
            "restore",
            vec![
                OsStr::new("latest"),
                OsStr::new("--target"),
                target.as_os_str(),
            ],
        ),
        ("snapshots", vec![]),
        ("ls", vec![OsStr::new("latest")]),
        ("check", vec![]),
    ] {
        let r = env.run(env.repo_args(cmd, &env.put, &rest));
        assert_eq!(r.code, 1, "{cmd}: {r:?}");
        assert!(
            r.stderr.starts_with("error: ")
                && r.stderr.contains("put-only key")
                && r.stderr.contains("master key"),
            "{cmd}: {}",
            r.stderr
        );
    }
    assert!(
        list_tree(&target).is_empty(),
        "restore with a put key wrote files"
    );

    // A master key of another repository is refused too.
    let other = Env::new();
    other.keys();
    let r = env.run(env.repo_args("snapshots", &other.master, &[]));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("wrong key"), "{}", r.stderr);
    // And another repository's put key cannot add to this one.
    let r = env.run(env.repo_args("backup", &other.put, &[src.as_os_str()]));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("wrong key"), "{}", r.stderr);
    assert_eq!(env.snapshots().len(), 1);
}

#[test]
fn malformed_and_missing_key_files_are_named() {
    let env = Env::new();
    env.keys();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let bad = env.path("bad.key");
    fs::write(
        &bad,
        b"-----BEGIN FERRY PUT KEY-----\nnot base64!!\n-----END FERRY PUT KEY-----\n",
    )
    .unwrap();
    let r = env.run(env.repo_args("backup", &bad, &[src.as_os_str()]));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("malformed key file") && r.stderr.contains("bad.key"),
        "{}",
        r.stderr
    );
    let garbage = env.path("garbage.key");
    fs::write(&garbage, [0xffu8, 0, 1, 2]).unwrap();
    let r = env.run(env.repo_args("snapshots", &garbage, &[]));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("malformed key file") && r.stderr.contains("garbage.key"),
        "{}",
        r.stderr
    );
    let missing = env.path("missing.key");
    let r = env.run(env.repo_args("snapshots", &missing, &[]));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("missing.key") && r.stderr.contains("No such file"),
        "{}",
        r.stderr
    );
    assert!(!env.repo.exists(), "a failed run created the repository");
}

#[test]
fn missing_repository_is_named() {
    let env = Env::new();
    env.keys();
    for (cmd, rest) in [
        ("snapshots", vec![]),
        ("check", vec![]),
        ("ls", vec![OsStr::new("latest")]),
    ] {
        let r = env.run(env.repo_args(cmd, &env.master, &rest));
        assert_eq!(r.code, 1, "{cmd}");
        assert!(
            r.stderr.contains("no Ferry repository at")
                && r.stderr.contains(env.repo.to_str().unwrap()),
            "{}",
            r.stderr
        );
    }
    assert!(!env.repo.exists(), "a read command created the repository");
    // A file where the repository should be.
    fs::write(&env.repo, b"x").unwrap();
    let r = env.run(env.repo_args("snapshots", &env.master, &[]));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not a directory"), "{}", r.stderr);
}

#[test]
fn repo_and_key_from_environment() {
    let env = Env::new();
    env.keys();
    let src = env.path("src");
    sample_tree(&src);
    let r: Run = env
        .cmd()
        .env("FERRY_REPO", &env.repo)
        .env("FERRY_KEY", &env.put)
        .args(["backup", "-q"])
        .arg(&src)
        .output()
        .unwrap()
        .into();
    let r = r.ok();
    assert!(r.stderr.is_empty(), "-q printed: {}", r.stderr);
    let r: Run = env
        .cmd()
        .env("FERRY_REPO", &env.repo)
        .env("FERRY_KEY", &env.master)
        .args(["snapshots", "--json"])
        .output()
        .unwrap()
        .into();
    assert_eq!(r.ok().json().as_array().map(Vec::len), Some(1));
    // Without either: a usage error naming the option.
    let r = env.run(["snapshots"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--repo"), "{}", r.stderr);
}

/// Honest unreadable files: as root everything is readable, so the backup runs as `nobody`
/// (setpriv, util-linux) over a tree it owns, with a file and a directory chmod 000: the
/// kernel really returns EACCES. As a non-root user, chmod 000 alone does it.
#[test]
fn unreadable_files_give_partial_exit_code_3() {
    let env = Env::new();
    env.keys();
    let src = env.path("src");
    sample_tree(&src);
    fs::write(src.join("etc/secret.conf"), b"unreadable\n").unwrap();
    fs::create_dir_all(src.join("locked")).unwrap();
    fs::write(src.join("locked/inside.txt"), b"unreadable too\n").unwrap();

    let root = unsafe { libc::geteuid() } == 0;
    if root {
        chown_tree(env.dir.path(), 65534, 65534);
    }
    fs::set_permissions(
        src.join("etc/secret.conf"),
        fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    fs::set_permissions(src.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();

    let args = env.repo_args("backup", &env.put, &[OsStr::new("--json"), src.as_os_str()]);
    let mut cmd = if root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", FERRY]);
        for v in ["FERRY_REPO", "FERRY_KEY", "FERRY_PASSPHRASE", "RUST_LOG"] {
            c.env_remove(v);
        }
        c.env("FERRY_CACHE_DIR", &env.cache)
            .env("HOME", env.dir.path());
        c
    } else {
        env.cmd()
    };
    let out = cmd
        .args(&args)
        .output()
        .expect("run ferry (as root this needs setpriv from util-linux)");
    let r = Run::from(out);
    assert_eq!(r.code, 3, "expected exit 3 (partial): {r:?}");
    let summary = r.summary();
    assert_eq!(summary["result"], "partial", "{summary}");
    assert_eq!(summary["partial"], true);
    let errors = summary["errors"].as_array().expect("errors list");
    let paths: Vec<&str> = errors.iter().filter_map(|e| e["path"].as_str()).collect();
    assert!(
        paths.iter().any(|p| p.ends_with("etc/secret.conf")),
        "{summary}"
    );
    assert!(paths.iter().any(|p| p.ends_with("locked")), "{summary}");
    assert!(
        errors.iter().all(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("ermission denied"))),
        "{summary}"
    );
    assert!(
        r.stderr.contains("secret.conf"),
        "the human summary lists the file: {}",
        r.stderr
    );

    // The readable rest is in the snapshot.
    let target = env.path("t");
    env.restore("latest", &target, &[]).ok();
    let got = restored(&target, &src);
    assert_eq!(
        fs::read(got.join("etc/app.conf")).unwrap(),
        b"listen = 8080\nuser = app\n"
    );
    assert!(!got.join("etc/secret.conf").exists());
    assert_eq!(
        fs::metadata(got.join("logs/big.bin")).unwrap().size(),
        3 * 1024 * 1024 + 17
    );
    // Clean up as root can: restore permissions so the tempdir can be removed.
    let _ = fs::set_permissions(src.join("locked"), fs::Permissions::from_mode(0o755));
}

fn chown_tree(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    if fs::symlink_metadata(p).unwrap().is_dir() {
        for e in fs::read_dir(p).unwrap().flatten() {
            chown_tree(&e.path(), uid, gid);
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn version_names_the_commit_and_the_build_profile() {
    let env = Env::new();
    let r = env.run(["--version"]).ok();
    let v = r.stdout_str();
    // `ferry 0.1.0 (commit 0123456789ab, debug build)`; "unknown" outside a git checkout.
    let rest = v
        .strip_prefix(&format!("ferry {} (commit ", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("{v}"));
    let (commit, profile) = rest.trim_end().split_once(", ").unwrap();
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(ferry_testkit::workspace_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8(o.stdout).unwrap().trim().to_string())
    };
    // The commit of this workspace's own checkout; "unknown" outside one (a tarball).
    let root = ferry_testkit::workspace_root().canonicalize().unwrap();
    let ours = git(&["rev-parse", "--show-toplevel"])
        .is_some_and(|t| Path::new(&t).canonicalize().ok() == Some(root.clone()));
    let expected = if ours {
        git(&["rev-parse", "--short=12", "HEAD"]).unwrap()
    } else {
        "unknown".to_string()
    };
    assert_eq!(commit, expected, "{v}");
    let built = if cfg!(debug_assertions) {
        "debug build)"
    } else {
        "release build)"
    };
    assert_eq!(profile, built, "{v}");
}

/// `ferry backup --repo … --json` (no cloud) writes the cloud run's JSON lines: status lines,
/// then one summary last with the run record's keys (result, started, finished, sizes) and
/// the snapshot's; a failed backup still ends with a summary saying why.
#[test]
fn direct_backup_json_writes_the_cloud_runs_json_lines() {
    let env = Env::new();
    env.keys();
    let src = env.path("src");
    sample_tree(&src);
    let r = env.backup(&[&src]).ok();
    let lines = r.json_lines();
    let collected: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["message_type"] == "status" && l["action"] == "collected")
        .collect();
    assert_eq!(collected.len(), 1, "{}", r.stdout_str());
    assert_eq!(collected[0]["files_done"], 9, "{}", collected[0]);
    assert_eq!(collected[0]["errors"], 0, "{}", collected[0]);
    assert!(collected[0]["seconds_elapsed"].is_u64());
    let s = r.summary();
    for k in [
        "started",
        "finished",
        "result",
        "error",
        "snapshot",
        "session",
        "files",
        "bytes",
        "bytes_read",
        "new_bytes",
        "usage",
        "snapshots",
        "partial",
        "duration_seconds",
        "stats",
        "errors",
        "short_id",
    ] {
        assert!(s.get(k).is_some(), "no {k:?} in the summary: {s}");
    }
    assert_eq!(s["result"], "ok", "{s}");
    assert_eq!(s["files"], 9, "{s}");
    assert_eq!(s["stats"]["files"], 9, "{s}");
    assert!(s["session"].is_null(), "{s}");
    assert_eq!(s["snapshots"][0]["snapshot"], s["snapshot"], "{s}");
    assert!(s["duration_seconds"].is_i64(), "{s}");
    // The human text stays on stderr.
    assert!(r.stderr.contains("saved"), "{}", r.stderr);

    // A backup that fails (the put key is not there) still ends with its summary.
    let missing = env.path("no-such.key");
    let mut rest: Vec<&OsStr> = vec![OsStr::new("--json")];
    rest.push(src.as_os_str());
    let r = env.run(env.repo_args("backup", &missing, &rest));
    assert_eq!(r.code, 1, "{r:?}");
    let s = r.summary();
    assert_eq!(s["result"], "failed", "{s}");
    assert!(
        s["error"]
            .as_str()
            .is_some_and(|e| e.contains("no-such.key")),
        "{s}"
    );
}

/// Parse `--json` output: JSON lines, status lines first, one summary last.
fn json_lines(r: &Run, action: &str) -> (Vec<serde_json::Value>, serde_json::Value) {
    let mut lines: Vec<serde_json::Value> = r
        .stdout_str()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let summary = lines.pop().expect("a summary line");
    assert_eq!(summary["message_type"], "summary", "{summary}");
    assert!(!lines.is_empty(), "a status line before the summary");
    for s in &lines {
        assert_eq!(s["message_type"], "status", "{s}");
        assert_eq!(s["action"], action, "{s}");
    }
    (lines, summary)
}

fn n(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Sum of the sizes of the regular files below `root`, and how many there are.
fn files_and_bytes(root: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    for p in list_tree(root) {
        let m = root
            .join(<OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&p))
            .symlink_metadata()
            .unwrap();
        if m.is_file() {
            files += 1;
            bytes += m.len();
        }
    }
    (files, bytes)
}

#[test]
fn restore_and_check_json_summaries_count_the_real_work() {
    let env = Env::new();
    env.keys();
    let src = env.path("src");
    // 40 incompressible files of 20-100 KiB (one blob each), in two directories, one pack.
    for i in 0..40u64 {
        let dir = src.join(if i % 2 == 0 { "logs" } else { "bin" });
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join(format!("f{i:02}")),
            noise(i + 7, (20 + 2 * i as usize) << 10),
        )
        .unwrap();
    }
    env.backup(&[&src]).ok();
    let repo_bytes = files_and_bytes(&env.repo).1;

    let target = env.path("t");
    let r = env.restore("latest", &target, &["--json"]).ok();
    let (status, s) = json_lines(&r, "restoring");
    let (files, bytes) = files_and_bytes(&restored(&target, &src));
    assert_eq!(files, 40);
    assert!(diff_trees(&src, &restored(&target, &src)).is_empty());
    // A whole snapshot: the first status line knows the totals.
    assert_eq!(n(&status[0]["total_files"]), files, "{}", status[0]);
    assert_eq!(n(&status[0]["total_bytes"]), bytes, "{}", status[0]);
    assert_eq!(n(&s["files"]), files, "{s}");
    assert_eq!(n(&s["bytes_written"]), bytes, "{s}");
    assert!(n(&s["dirs"]) >= 3, "{s}");
    assert!(s["duration_seconds"].as_f64().is_some(), "{s}");
    assert_eq!(s["snapshot"], env.snapshots()[0]["id"], "{s}");
    // The storage reads: config, index, snapshot, a request per level of trees and one for
    // the data. A reader of one blob per request makes at least one per file.
    let gets = n(&s["storage_reads"]["get_requests"]);
    assert!(
        gets > 0 && gets < files,
        "{gets} GETs for {files} files: {s}"
    );
    // Every byte restored came encrypted from storage (the data does not compress), and
    // the data was not fetched again and again: the ranges read around the data blobs may
    // take in the tree blobs a second time (2,518,634 bytes from a 2,425,372-byte repository
    // in one run), but a reader that fetched a blob per file, or the pack per file, would pass
    // the repository's size by far more than a tenth.
    let fetched = n(&s["storage_reads"]["bytes_fetched"]);
    assert!(
        fetched > bytes,
        "{fetched} bytes fetched for {bytes} written: {s}"
    );
    assert!(
        fetched <= repo_bytes + repo_bytes / 10,
        "{fetched} bytes fetched from a repository of {repo_bytes}: {s}"
    );

    // --include: only what matches, counted as such, with no totals (unknown up front).
    let part = env.path("part");
    let r = env
        .restore("latest", &part, &["--json", "--include", "**/logs/**"])
        .ok();
    let (status, s) = json_lines(&r, "restoring");
    let (pfiles, pbytes) = files_and_bytes(&restored(&part, &src));
    assert_eq!(pfiles, 20);
    assert!(status[0].get("total_files").is_none(), "{}", status[0]);
    assert_eq!(
        (n(&s["files"]), n(&s["bytes_written"])),
        (pfiles, pbytes),
        "{s}"
    );
    let pfetched = n(&s["storage_reads"]["bytes_fetched"]);
    assert!(
        pfetched > pbytes && pfetched <= fetched,
        "{pfetched} of {fetched}: {s}"
    );

    // check --read-data --json: every pack read whole, and counted.
    let r = env
        .run(env.repo_args(
            "check",
            &env.master,
            &[OsStr::new("--read-data"), OsStr::new("--json")],
        ))
        .ok();
    let (_, s) = json_lines(&r, "checking");
    let (packs, pack_bytes) = files_and_bytes(&env.repo.join("packs"));
    assert!(packs >= 1);
    assert_eq!(n(&s["packs_read"]), packs, "{s}");
    assert_eq!(s["problems"], serde_json::json!([]), "{s}");
    assert!(n(&s["storage_reads"]["get_requests"]) > packs, "{s}");
    assert!(n(&s["storage_reads"]["bytes_fetched"]) >= pack_bytes, "{s}");
}
