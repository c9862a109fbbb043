//! `ferry backup --config FILE` and `ferry sources check --config FILE` against real OpenSSH
//! servers on loopback (ferry-testkit's sample LAN hosts): a local source plus two hosts, one
//! with a root-only file, one down. The restore of each source must equal its files.
//! Needs root (the testkit creates the read-only account and root-only files).

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;

use common::*;
use ferry_testkit::lanhost::Lan;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The unreadable file on "db" (relative to the host root).
const SECRET: &str = "var/log/secret.log";

/// Hosts "db" (up, with [`SECRET`] unreadable) and "nas" (down), plus a local sample tree.
struct Setup {
    env: Env,
    lan: Lan,
    local: PathBuf,
    config: PathBuf,
}

fn setup() -> Setup {
    let env = Env::new();
    env.keys();
    let mut lan = Lan::start(&["db", "nas"]).expect("start sample LAN hosts");
    lan.host("db")
        .write_unreadable(SECRET, b"root only\n")
        .expect("write root-only file");
    lan.host_mut("nas").stop();
    let local = env.path("vm-files");
    sample_tree(&local);
    let toml = format!(
        "{}\n[sources.local]\nname = \"vm\"\npaths = [{:?}]\n",
        lan.sources_toml(2),
        local.display().to_string()
    );
    let config = env.path("ferry.toml");
    std::fs::write(&config, toml).expect("write config");
    Setup {
        env,
        lan,
        local,
        config,
    }
}

fn source<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .find(|s| s["source"] == name)
        .unwrap_or_else(|| panic!("no source {name} in {v}"))
}

/// Where a restore puts `path` of source `name`: `/<source name>/<path>`.
fn restored_source(target: &Path, name: &str, path: &Path) -> PathBuf {
    restored(&target.join(name), path)
}

#[test]
fn backup_config_partial_with_down_host_and_unreadable_file_then_restore() {
    let s = setup();
    let env = &s.env;
    let r = env.run(env.repo_args(
        "backup",
        &env.put,
        &[
            OsStr::new("--config"),
            s.config.as_os_str(),
            OsStr::new("--json"),
        ],
    ));
    assert_eq!(
        r.code,
        3,
        "backup should be partial: stderr:\n{}\nstdout:\n{}",
        r.stderr,
        r.stdout_str()
    );
    let j = r.summary();
    assert_eq!(j["partial"], true, "{j}");
    assert_eq!(j["result"], "partial", "{j}");
    let sources = &j["sources"];

    let nas = source(sources, "nas");
    assert_eq!(nas["status"], "failed", "{nas}");
    let reason = nas["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("unreachable"), "{nas}");

    let db = source(sources, "db");
    assert_eq!(db["status"], "partial", "{db}");
    let errors = db["errors"].as_array().expect("db errors");
    let secret = s.lan.host("db").root.join(SECRET);
    assert_eq!(errors.len(), 1, "{db}");
    assert_eq!(errors[0]["path"], secret.display().to_string(), "{db}");
    let msg = errors[0]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("Permission denied"), "{db}");
    assert!(db["files_read"].as_u64().unwrap_or(0) >= 7, "{db}");

    let vm = source(sources, "vm");
    assert_eq!(vm["status"], "ok", "{vm}");
    assert_eq!(vm["errors"].as_array().map(Vec::len), Some(0), "{vm}");

    // Restore with the master key: each source's tree equals its files.
    let snap = j["snapshot"].as_str().expect("snapshot id");
    let target = env.path("restore");
    env.restore(snap, &target, &[]).ok();
    let diff = diff_trees(&s.local, &restored_source(&target, "vm", &s.local));
    assert!(
        diff.is_empty(),
        "local source differs:\n{}",
        diff.join("\n")
    );

    let host = s.lan.host("db");
    for p in host.paths() {
        let copy = restored_source(&target, "db", &p);
        let diff = diff_trees(&p, &copy);
        // Everything readable is there, exactly; the root-only file is not.
        let (missing, other): (Vec<_>, Vec<_>) = diff.iter().partition(|d| {
            secret
                .strip_prefix(&p)
                .is_ok_and(|rel| d.starts_with(&format!("{}: missing in restore", rel.display())))
        });
        assert!(
            other.is_empty(),
            "db:{} differs:\n{}",
            p.display(),
            diff.join("\n")
        );
        assert_eq!(
            missing.len(),
            usize::from(secret.starts_with(&p)),
            "{diff:?}"
        );
    }
    assert!(!target.join("nas").exists(), "nothing restored for nas");
    assert!(!restored_source(&target, "db", &secret).exists());
    env.check(true).ok();
}

#[test]
fn sources_check_reports_the_down_host() {
    let s = setup();
    let env = &s.env;
    let r = env.run([
        OsStr::new("sources"),
        OsStr::new("check"),
        OsStr::new("--config"),
        s.config.as_os_str(),
        OsStr::new("--json"),
    ]);
    assert_eq!(
        r.code,
        3,
        "check should fail for nas: stderr:\n{}\nstdout:\n{}",
        r.stderr,
        r.stdout_str()
    );
    let j = r.json();
    let nas = source(&j, "nas");
    assert_eq!(nas["ok"], false, "{nas}");
    assert_eq!(nas["connection"]["ok"], false, "{nas}");
    let m = nas["connection"]["message"].as_str().unwrap_or_default();
    assert!(m.contains("unreachable"), "{nas}");
    let db = source(&j, "db");
    assert_eq!(db["connection"]["ok"], true, "{db}");
    let states: Vec<_> = db["paths"]
        .as_array()
        .expect("db paths")
        .iter()
        .map(|p| p["state"].clone())
        .collect();
    assert_eq!(states, vec!["ok", "ok"], "{db}");
    assert_eq!(source(&j, "vm")["ok"], true, "{j}");
    // Nothing was backed up.
    assert!(!env.repo.exists());
}

#[test]
fn bad_config_is_refused_naming_the_field() {
    let s = setup();
    let env = &s.env;
    let good = std::fs::read_to_string(&s.config).expect("read config");
    let port = format!("port = {}", s.lan.host("db").port);
    assert!(good.contains(&port));
    // (config text, what stderr must contain besides the file name for parse errors)
    let cases: [(String, &[&str]); 3] = [
        (
            good.replacen(&port, &format!("{port}\nprot = 1"), 1),
            &["bad0.toml", "prot = 1", "unknown field `prot`"],
        ),
        (
            good.replacen(&port, "port = 0", 1),
            &["sources.host \"db\".port", "between 1 and 65535"],
        ),
        (
            good.replacen(&port, "port = 70000", 1),
            &["bad2.toml", "port = 70000", "`70000`, expected u16"],
        ),
    ];
    for (i, (text, wants)) in cases.iter().enumerate() {
        let cfg = env.path(&format!("bad{i}.toml"));
        std::fs::write(&cfg, text).expect("write config");
        let runs = [
            env.run(env.repo_args(
                "backup",
                &env.put,
                &[OsStr::new("--config"), cfg.as_os_str()],
            )),
            env.run([
                OsStr::new("sources"),
                OsStr::new("check"),
                OsStr::new("--config"),
                cfg.as_os_str(),
            ]),
        ];
        for r in runs {
            assert_eq!(r.code, 1, "case {i}: {r:?}");
            for want in *wants {
                assert!(r.stderr.contains(want), "case {i}: want {want:?} in {r:?}");
            }
            assert!(r.stdout.is_empty(), "case {i}: {r:?}");
        }
    }
    // The refused backups never created the repository.
    assert!(!env.repo.exists());
}
