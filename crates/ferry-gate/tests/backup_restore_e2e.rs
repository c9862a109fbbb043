//! End to end with the real binaries: `ferry backup` through a real sshd whose forced command
//! is `ferry-gate serve` (jump-box role credentials from moto STS, moto IAM checks on) into
//! moto S3, then `ferry restore` with the master key straight from S3 (admin credentials).
//!
//! Needs the `ferry` binary next to `ferry-gate` (both are built by `cargo test --workspace`;
//! alone: `cargo build -p ferry-cli` first).

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

use ferry_testkit::{Moto, Sshd, SshdOptions, keygen};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ferry_bin() -> PathBuf {
    let gate = Path::new(env!("CARGO_BIN_EXE_ferry-gate"));
    let ferry = gate.with_file_name("ferry");
    assert!(
        ferry.is_file(),
        "{} missing: build it with `cargo build -p ferry-cli`",
        ferry.display()
    );
    ferry
}

fn ok(what: &str, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn write_tree(root: &Path) {
    std::fs::create_dir_all(root.join("etc/app")).unwrap();
    std::fs::write(root.join("etc/app/app.conf"), "listen = 0.0.0.0:8080\n").unwrap();
    std::fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    // Incompressible and bigger than one DATA frame.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let big: Vec<u8> = (0..3_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(root.join("var.log"), big).unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
}

fn diff(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .arg("-r")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restore differs:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn backup_through_the_gate_then_restore_from_s3() {
    let ferry = ferry_bin();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let moto = Moto::start().unwrap();
    let creds = moto.jumpbox_setup("ferry-backup").unwrap();

    // Gate session config and the forced-command key line (docs/JUMPBOX.md).
    let cfg = d.join("gate.toml");
    std::fs::write(
        &cfg,
        "bucket = \"ferry-backup\"\nsite = \"home\"\nsession = \"s-e2e\"\nexpires = \"2999-01-01T00:00:00Z\"\n\
         max_object_size = 67108864\nmax_session_bytes = 1073741824\n\
         allowed_kinds = [\"config\", \"pack\", \"index\", \"snapshot\"]\n",
    )
    .unwrap();
    let id = d.join("id_gate");
    let pubkey = keygen(&id).unwrap();
    let gate = env!("CARGO_BIN_EXE_ferry-gate");
    let sshd = Sshd::start(SshdOptions {
        authorized_keys: format!(
            "restrict,command=\"{gate} serve --config {}\" {pubkey}",
            cfg.display()
        ),
        set_env: moto.env_with(&creds.jumpbox),
        ..Default::default()
    })
    .unwrap();

    let src = d.join("src");
    write_tree(&src);
    let (master, put) = (d.join("master.key"), d.join("put.key"));
    let base = || {
        let mut c = Command::new(&ferry);
        c.env("FERRY_PASSPHRASE", "")
            .env("FERRY_CACHE_DIR", d.join("cache"));
        c.env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY");
        c
    };
    ok(
        "key init",
        base()
            .args(["key", "init", "--master"])
            .arg(&master)
            .arg("--put")
            .arg(&put)
            .output()
            .unwrap(),
    );

    // The backup VM: put key only, no AWS credentials at all.
    let url = format!("gate+ssh://root@127.0.0.1:{}/home", sshd.port());
    let backup = || {
        base()
            .args(["backup", "-q", "--repo", &url, "--key"])
            .arg(&put)
            .arg("--identity")
            .arg(&id)
            .arg("--host-key")
            .arg(sshd.host_key_pub())
            .arg(&src)
            .output()
            .unwrap()
    };
    ok("backup through the gate", backup());
    // A second run uploads only what changed (a new snapshot), via LIST and ALREADY_PRESENT.
    std::fs::write(src.join("etc/hosts"), "127.0.0.1 localhost\n10.0.0.2 nas\n").unwrap();
    ok("second backup", backup());

    // The operator: master key and admin credentials, straight from S3.
    let target = d.join("restored");
    let mut restore = base();
    for (k, v) in moto.env_with(&creds.admin) {
        restore.env(k, v);
    }
    ok(
        "restore from s3",
        restore
            .args(["restore", "--repo", "s3://ferry-backup/home", "--key"])
            .arg(&master)
            .arg("latest")
            .arg("--target")
            .arg(&target)
            .output()
            .unwrap(),
    );
    // The engine restores the source under its own path inside the target; find the copy.
    let restored = find_dir_named(&target, "src")
        .unwrap_or_else(|| panic!("no src/ under {}", target.display()));
    diff(&src, &restored);

    // The put key can't read it back, and the gate can't serve reads.
    let mut snap = base();
    let out = snap
        .args(["snapshots", "--repo", &url, "--key"])
        .arg(&master)
        .arg("--identity")
        .arg(&id)
        .arg("--host-key")
        .arg(sshd.host_key_pub())
        .output()
        .unwrap();
    assert!(!out.status.success());
}

fn find_dir_named(root: &Path, name: &str) -> Option<PathBuf> {
    let mut stack = vec![root.to_path_buf()];
    let mut seen = 0;
    while let Some(p) = stack.pop() {
        seen += 1;
        if seen > 10_000 {
            return None;
        }
        if p.file_name().is_some_and(|n| n == name) && p.is_dir() && p.join("etc/hosts").is_file() {
            return Some(p);
        }
        if let Ok(rd) = std::fs::read_dir(&p) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                }
            }
        }
    }
    None
}
