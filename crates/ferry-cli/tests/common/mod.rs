//! Shared helpers for the CLI tests: run the real `ferry` binary, build sample trees,
//! compare a restore with its source (bytes, mode, mtime, symlink targets, names as bytes).

#![allow(dead_code)] // each test binary uses a different subset

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// A scratch area: keys, a repository, a cache, and room for trees and restores.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub master: PathBuf,
    pub put: PathBuf,
    pub repo: PathBuf,
    pub cache: PathBuf,
}

/// What a `ferry` run produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout_str(),
                self.stderr
            )
        })
    }
    /// Every line of stdout as JSON (`backup --json` writes JSON lines): each must be an
    /// object with a `message_type`.
    #[track_caller]
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        let lines: Vec<serde_json::Value> = self
            .stdout_str()
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!(
                        "stdout line is not JSON ({e}): {l}\nstderr: {}",
                        self.stderr
                    )
                })
            })
            .collect();
        for l in &lines {
            assert!(l["message_type"].is_string(), "no message_type: {l}");
        }
        lines
    }
    /// The summary of `backup --json`: its last JSON line, which must be the only summary.
    #[track_caller]
    pub fn summary(&self) -> serde_json::Value {
        let lines = self.json_lines();
        let last = lines.last().cloned().unwrap_or_default();
        assert_eq!(last["message_type"], "summary", "{}", self.stdout_str());
        let n = lines
            .iter()
            .filter(|l| l["message_type"] == "summary")
            .count();
        assert_eq!(n, 1, "{}", self.stdout_str());
        last
    }
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code,
            0,
            "ferry failed: stderr:\n{}\nstdout:\n{}",
            self.stderr,
            self.stdout_str()
        );
        self
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: o.stdout,
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("ferry-cli-test")
            .tempdir()
            .expect("tempdir");
        let p = dir.path().to_path_buf();
        Env {
            master: p.join("master.key"),
            put: p.join("put.key"),
            repo: p.join("repo"),
            cache: p.join("cache"),
            dir,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A `ferry` command with a clean environment (no FERRY_* from the caller) and this
    /// env's cache directory.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(FERRY);
        for v in [
            "FERRY_REPO",
            "FERRY_KEY",
            "FERRY_PASSPHRASE",
            "FERRY_CACHE_DIR",
            "RUST_LOG",
        ] {
            c.env_remove(v);
        }
        c.env("FERRY_CACHE_DIR", &self.cache);
        c.stdin(std::process::Stdio::null());
        c
    }

    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd().args(args).output().expect("run ferry").into()
    }

    /// `ferry key init` without a passphrase.
    pub fn keys(&self) {
        self.cmd()
            .env("FERRY_PASSPHRASE", "")
            .args(["key", "init", "--master"])
            .arg(&self.master)
            .arg("--put")
            .arg(&self.put)
            .output()
            .map(Run::from)
            .expect("key init")
            .ok();
    }

    /// `[cmd, --repo, REPO, --key, KEY]` + rest.
    pub fn repo_args(&self, cmd: &str, key: &Path, rest: &[&OsStr]) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![
            cmd.into(),
            "--repo".into(),
            self.repo.clone().into(),
            "--key".into(),
            key.into(),
        ];
        v.extend(rest.iter().map(|s| s.to_os_string()));
        v
    }

    pub fn backup(&self, sources: &[&Path]) -> Run {
        let mut rest: Vec<&OsStr> = vec![OsStr::new("--json")];
        rest.extend(sources.iter().map(|p| p.as_os_str()));
        self.run(self.repo_args("backup", &self.put, &rest))
    }

    pub fn snapshots(&self) -> Vec<serde_json::Value> {
        let r = self
            .run(self.repo_args("snapshots", &self.master, &[OsStr::new("--json")]))
            .ok();
        r.json()
            .as_array()
            .cloned()
            .expect("snapshots --json is an array")
    }

    pub fn restore(&self, snapshot: &str, target: &Path, extra: &[&str]) -> Run {
        let mut rest: Vec<&OsStr> = vec![
            OsStr::new(snapshot),
            OsStr::new("--target"),
            target.as_os_str(),
        ];
        rest.extend(extra.iter().map(OsStr::new));
        self.run(self.repo_args("restore", &self.master, &rest))
    }

    pub fn check(&self, read_data: bool) -> Run {
        let rest: Vec<&OsStr> = if read_data {
            vec![OsStr::new("--read-data")]
        } else {
            vec![]
        };
        self.run(self.repo_args("check", &self.master, &rest))
    }
}

/// Where a restore puts the local source `src` (Ferry keeps the absolute path layout).
pub fn restored(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").expect("absolute source"))
}

pub fn set_mtime(p: &Path, secs: u64, nanos: u32) {
    let t = UNIX_EPOCH + Duration::new(secs, nanos);
    let f = fs::File::open(p).expect("open for mtime");
    f.set_times(
        fs::FileTimes::new()
            .set_modified(t)
            .set_accessed(SystemTime::now()),
    )
    .expect("set mtime");
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Deterministic pseudo-random bytes (xorshift64*), incompressible.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Repetitive log text.
pub fn log_text(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 100);
    let mut i = seed;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "2026-01-01T00:{:02}:{:02}Z host{} sshd[{}]: session opened for user u{}\n",
                i / 60 % 60,
                i % 60,
                i % 7,
                1000 + i % 97,
                i % 13
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

/// A sample tree: config files, logs, a multi-chunk binary, an empty file, an executable,
/// symlinks (one dangling), a non-UTF-8 name, a deep path, distinct modes and mtimes.
pub fn sample_tree(root: &Path) {
    let w = |rel: &str, data: &[u8], mode: u32, mtime: u64| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, data).expect("write");
        chmod(&p, mode);
        set_mtime(&p, mtime, 123_456_789);
    };
    w(
        "etc/app.conf",
        b"listen = 8080\nuser = app\n",
        0o640,
        1_700_000_000,
    );
    w(
        "etc/sub/other.conf",
        b"[x]\nkey = value\n",
        0o600,
        1_700_000_100,
    );
    w("etc/empty.conf", b"", 0o644, 1_700_000_200);
    w("logs/app.log", &log_text(1, 300_000), 0o644, 1_700_000_300);
    w(
        "logs/big.bin",
        &noise(2, 3 * 1024 * 1024 + 17),
        0o644,
        1_700_000_400,
    );
    w("bin/run.sh", b"#!/bin/sh\necho hi\n", 0o755, 1_700_000_500);
    w("a/b/c/d/e/f/g/deep.txt", b"deep\n", 0o644, 1_700_000_600);
    let odd = root.join(OsStr::from_bytes(b"caf\xe9-\xff.txt"));
    fs::write(&odd, b"latin-1 name\n").expect("write odd name");
    set_mtime(&odd, 1_700_000_700, 0);
    symlink("etc/app.conf", root.join("link-to-conf")).expect("symlink");
    symlink("does/not/exist", root.join("dangling")).expect("symlink");
    fs::create_dir_all(root.join("private")).expect("mkdir");
    fs::write(root.join("private/key.txt"), b"not really a key\n").expect("write");
    chmod(&root.join("private"), 0o700);
    // Directory mtimes last (writing children changes them).
    for (d, t) in [
        ("etc/sub", 1_600_000_001),
        ("etc", 1_600_000_002),
        ("a/b/c", 1_600_000_003),
        ("private", 1_600_000_004),
    ] {
        set_mtime(&root.join(d), t, 5);
    }
}

/// Every difference between `a` and `b` (recursive): names (as bytes), types, permission
/// bits, file bytes, file and directory mtimes (ns), symlink targets. Empty = equal.
pub fn diff_trees(a: &Path, b: &Path) -> Vec<String> {
    let mut out = Vec::new();
    diff_entry(a, b, Path::new(""), &mut out);
    out
}

fn diff_entry(a: &Path, b: &Path, rel: &Path, out: &mut Vec<String>) {
    let (ma, mb) = match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Ok(_), Err(e)) => return out.push(format!("{}: missing in restore ({e})", rel.display())),
        (Err(e), _) => return out.push(format!("{}: unreadable in source ({e})", rel.display())),
    };
    let (ta, tb) = (ma.file_type(), mb.file_type());
    if (ta.is_file(), ta.is_dir(), ta.is_symlink()) != (tb.is_file(), tb.is_dir(), tb.is_symlink())
    {
        return out.push(format!("{}: type differs", rel.display()));
    }
    if ta.is_symlink() {
        let (la, lb) = (fs::read_link(a).ok(), fs::read_link(b).ok());
        if la != lb {
            out.push(format!(
                "{}: symlink target {la:?} vs {lb:?}",
                rel.display()
            ));
        }
        return;
    }
    if ma.mode() & 0o7777 != mb.mode() & 0o7777 {
        out.push(format!(
            "{}: mode {:o} vs {:o}",
            rel.display(),
            ma.mode() & 0o7777,
            mb.mode() & 0o7777
        ));
    }
    if (ma.mtime(), ma.mtime_nsec()) != (mb.mtime(), mb.mtime_nsec()) {
        out.push(format!(
            "{}: mtime {}.{:09} vs {}.{:09}",
            rel.display(),
            ma.mtime(),
            ma.mtime_nsec(),
            mb.mtime(),
            mb.mtime_nsec()
        ));
    }
    if ta.is_file() {
        if fs::read(a).ok() != fs::read(b).ok() {
            out.push(format!("{}: content differs", rel.display()));
        }
        return;
    }
    if ta.is_dir() {
        let names = |p: &Path| -> Vec<OsString> {
            let mut v: Vec<OsString> = fs::read_dir(p)
                .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            v.sort();
            v
        };
        let (na, nb) = (names(a), names(b));
        for n in &nb {
            if !na.contains(n) {
                out.push(format!("{}: extra entry in restore", rel.join(n).display()));
            }
        }
        for n in na {
            diff_entry(&a.join(&n), &b.join(&n), &rel.join(&n), out);
        }
    }
}

/// All names under `root` (relative, as bytes), sorted.
pub fn list_tree(root: &Path) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    fn walk(dir: &Path, rel: &Path, v: &mut Vec<Vec<u8>>) {
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                let r = rel.join(e.file_name());
                v.push(r.clone().into_os_string().into_vec());
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    walk(&e.path(), &r, v);
                }
            }
        }
    }
    walk(root, Path::new(""), &mut v);
    v.sort();
    v
}
