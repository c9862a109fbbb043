//! Collection from real OpenSSH servers on loopback (ferry-testkit's sample LAN hosts), into a
//! real repository, restored with the master key and compared with the hosts' files.
//! Needs root (creates the read-only account, makes root-only files).

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

use ferry_collect::{CollectReport, ConfigFile, SourceReport, SourceStatus, SourcesConfig};
use ferry_repo::storage::LocalDir;
use ferry_repo::{BackupOptions, MasterKey, NoProgress, Repository, RestoreOptions, SnapshotInfo};
use ferry_testkit::lanhost::{Lan, LanHost};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct Repo {
    _dir: tempfile::TempDir,
    repo: Repository,
    master: MasterKey,
    cache: PathBuf,
}

fn repo() -> Repo {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate();
    let storage = Arc::new(LocalDir::new(dir.path().join("repo")));
    let repo = Repository::init(storage, &master.put_key()).unwrap();
    let cache = dir.path().join("cache");
    Repo {
        _dir: dir,
        repo,
        master,
        cache,
    }
}

fn backup(r: &Repo, cfg: &SourcesConfig) -> (SnapshotInfo, CollectReport) {
    let opts = BackupOptions {
        cache_dir: Some(r.cache.clone()),
        pack_size: 1 << 20,
        ..BackupOptions::default()
    };
    ferry_collect::backup(
        &r.repo,
        &r.master.put_key(),
        cfg,
        opts,
        Arc::new(NoProgress),
    )
    .unwrap()
}

fn restore(r: &Repo, info: &SnapshotInfo) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let reader = r.repo.reader(&r.master).unwrap();
    let snap = reader.load_snapshot(&info.id).unwrap();
    reader
        .restore(&snap, out.path(), &RestoreOptions::default(), &NoProgress)
        .unwrap();
    out
}

fn parse(toml: &str) -> SourcesConfig {
    ConfigFile::parse(toml, Path::new("test.toml")).unwrap()
}

fn source<'a>(rep: &'a CollectReport, name: &str) -> &'a SourceReport {
    rep.sources.iter().find(|s| s.name == name).unwrap()
}

#[derive(Debug, PartialEq, Eq)]
enum Node {
    File { mode: u32, content: Vec<u8> },
    Dir { mode: u32 },
    Link(PathBuf),
}

/// Everything below `root` (relative paths), by kind, content and permission bits.
fn tree(root: &Path) -> BTreeMap<PathBuf, Node> {
    fn walk(base: &Path, p: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        let md = std::fs::symlink_metadata(p).unwrap();
        let rel = p.strip_prefix(base).unwrap().to_path_buf();
        let mode = md.mode() & 0o7777;
        if md.file_type().is_symlink() {
            out.insert(rel, Node::Link(std::fs::read_link(p).unwrap()));
        } else if md.is_dir() {
            out.insert(rel, Node::Dir { mode });
            for e in std::fs::read_dir(p).unwrap() {
                walk(base, &e.unwrap().path(), out);
            }
        } else {
            out.insert(
                rel,
                Node::File {
                    mode,
                    content: std::fs::read(p).unwrap(),
                },
            );
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The restored copy of `host`'s configured paths equals the files on the host, except
/// `missing` (paths relative to the host root that must be absent from the restore).
fn assert_restored_equals(restored: &Path, host: &LanHost, missing: &[&str]) {
    for p in host.paths() {
        let mut want = tree(&p);
        for m in missing {
            let rel = host.root.join(m);
            if let Ok(r) = rel.strip_prefix(&p) {
                assert!(want.remove(r).is_some(), "{m} should exist on the host");
            }
        }
        let copy = restored.join(&host.name).join(p.strip_prefix("/").unwrap());
        let got = tree(&copy);
        assert_eq!(
            got.len(),
            want.len(),
            "entries of {} restored from {}",
            p.display(),
            host.name
        );
        for (k, v) in &want {
            assert_eq!(
                got.get(k),
                Some(v),
                "{}: {} differs",
                host.name,
                k.display()
            );
        }
    }
}

#[test]
fn three_hosts_one_down_one_with_unreadable_files() {
    let mut lan = Lan::start(&["web", "db", "nas"]).unwrap();
    lan.host("db")
        .write_unreadable("var/log/secret.log", b"root only\n")
        .unwrap();
    lan.host("db")
        .write_unreadable("etc/shadow-like", b"x\n")
        .unwrap();
    // Names that need care on the remote shell, in tar's file list and in tar headers
    // (longer than the 100 bytes of a plain ustar name).
    let web = lan.host("web");
    web.write_file(
        "var/log/odd dir/it's a \"quoted\" $(name)\nwith newline.log",
        b"odd\n",
    )
    .unwrap();
    let long = format!("var/log/{}/{}.log", "d".repeat(120), "f".repeat(140));
    web.write_file(&long, &b"long name\n".repeat(1000)).unwrap();
    web.write_file("var/log/-starts-with-dash", b"dash\n")
        .unwrap();
    std::fs::hard_link(
        web.root.join("var/log/app.log"),
        web.root.join("var/log/app.hardlink"),
    )
    .unwrap();
    lan.host_mut("nas").stop();
    let r = repo();
    let cfg = parse(&lan.sources_toml(3));
    let (info, rep) = backup(&r, &cfg);

    assert!(rep.is_partial());
    let web = source(&rep, "web");
    assert_eq!(web.status, SourceStatus::Ok, "{}", rep.summary());
    assert!(
        web.files_read >= 11 && web.errors.is_empty(),
        "{}",
        rep.summary()
    );
    let db = source(&rep, "db");
    assert_eq!(db.status, SourceStatus::Partial, "{}", rep.summary());
    let mut errs: Vec<_> = db
        .errors
        .iter()
        .map(|(p, m)| (p.clone(), m.clone()))
        .collect();
    errs.sort();
    assert_eq!(errs.len(), 2, "{errs:?}");
    for (p, m) in &errs {
        assert!(p.starts_with(&lan.host("db").root), "{p:?}");
        assert!(m.contains("Permission denied"), "{m}");
    }
    let nas = source(&rep, "nas");
    match &nas.status {
        SourceStatus::Failed(m) => {
            assert!(m.contains("unreachable") && m.contains("refused"), "{m}")
        }
        s => panic!("nas should have failed: {s:?}"),
    }
    assert!(rep.summary().contains("FAILED"));

    // The snapshot records each source's status and the errors.
    let statuses: BTreeMap<_, _> = info
        .snapshot
        .sources
        .iter()
        .map(|s| (s.source.as_str(), s.status.as_str()))
        .collect();
    assert_eq!(statuses.get("web"), Some(&"ok"));
    assert_eq!(statuses.get("db"), Some(&"partial"));
    assert_eq!(statuses.get("nas"), Some(&"failed"));
    assert!(
        info.snapshot
            .errors
            .iter()
            .any(|e| e.source == "db" && e.path.ends_with("var/log/secret.log"))
    );
    assert!(info.snapshot.errors.iter().any(|e| e.source == "nas"));

    let out = restore(&r, &info);
    assert_restored_equals(out.path(), lan.host("web"), &[]);
    assert_restored_equals(
        out.path(),
        lan.host("db"),
        &["var/log/secret.log", "etc/shadow-like"],
    );
    assert!(!out.path().join("nas").exists());
}

#[test]
fn log_rotation_transfers_only_new_content() {
    let lan = Lan::start(&["app"]).unwrap();
    let h = lan.host("app");
    let r = repo();
    let cfg = parse(&lan.sources_toml(1));
    let (_, rep1) = backup(&r, &cfg);
    let s1 = source(&rep1, "app");
    assert_eq!(s1.status, SourceStatus::Ok, "{}", rep1.summary());
    let all: u64 = ferry_testkit::lanhost::sample_files("app")
        .iter()
        .map(|(_, c)| c.len() as u64)
        .sum();
    assert_eq!(s1.content_bytes, all);
    assert!(s1.transfer_bytes >= all);

    // Rotate: app.log.1 -> app.log.2, app.log -> app.log.1, a new app.log, one new file.
    let log = h.root.join("var/log");
    std::fs::rename(log.join("app.log.1"), log.join("app.log.2")).unwrap();
    std::fs::rename(log.join("app.log"), log.join("app.log.1")).unwrap();
    let new_log = b"2026-11-24 00:00:00 app started again\n".repeat(50);
    h.write_file("var/log/app.log", &new_log).unwrap();
    let new_file = b"brand new\n".repeat(300);
    h.write_file("var/log/nginx/error.log", &new_file).unwrap();

    let (info2, rep2) = backup(&r, &cfg);
    let s2 = source(&rep2, "app");
    assert_eq!(s2.status, SourceStatus::Ok, "{}", rep2.summary());
    let new_bytes = (new_log.len() + new_file.len()) as u64;
    assert_eq!(s2.files_read, 2, "{}", rep2.summary());
    assert_eq!(s2.content_bytes, new_bytes);
    // The tar stream carries the two new files plus headers and tar's 10 KiB record padding.
    assert!(
        s2.transfer_bytes < new_bytes + 16 * 1024,
        "transferred {} bytes for {new_bytes} bytes of new content",
        s2.transfer_bytes
    );
    assert!(s2.files_unchanged >= 6, "{}", rep2.summary());
    let out = restore(&r, &info2);
    assert_restored_equals(out.path(), h, &[]);
}

#[test]
fn changed_host_key_fails_that_host_only() {
    let mut lan = Lan::start(&["good", "moved"]).unwrap();
    lan.host_mut("moved").change_host_key().unwrap();
    let cfg = parse(&lan.sources_toml(2));
    let r = repo();
    let (info, rep) = backup(&r, &cfg);
    assert_eq!(
        source(&rep, "good").status,
        SourceStatus::Ok,
        "{}",
        rep.summary()
    );
    match &source(&rep, "moved").status {
        SourceStatus::Failed(m) => assert!(m.contains("CHANGED"), "{m}"),
        s => panic!("moved should have failed: {s:?}"),
    }
    assert_eq!(source(&rep, "moved").files_read, 0);
    let out = restore(&r, &info);
    assert_restored_equals(out.path(), lan.host("good"), &[]);
    assert!(!out.path().join("moved").exists());

    // `sources check` sees the same, without backing up.
    let jobs = ferry_collect::jobs_of(&cfg).unwrap();
    let checks = ferry_collect::check(&jobs, 2);
    assert!(checks[0].ok(), "{:?}", checks[0]);
    let e = checks[1].connection.as_ref().unwrap_err().to_string();
    assert!(e.contains("CHANGED"), "{e}");
}

#[test]
fn sources_check_reports_connection_key_and_paths() {
    let mut lan = Lan::start(&["ok", "down", "stranger"]).unwrap();
    lan.host_mut("down").stop();
    // A host whose key was never pinned: an empty known-hosts file.
    std::fs::write(&lan.host("stranger").known_hosts, b"").unwrap();
    let missing = lan.host("ok").root.join("srv/none");
    let secret = lan.host("ok").write_unreadable("etc/secret", b"s").unwrap();
    let mut toml = lan.sources_toml(3);
    let ok_paths = format!(
        "{:?}, {:?}",
        lan.host("ok").root.join("etc").display().to_string(),
        missing.display().to_string()
    );
    let first = toml.find("paths = [").unwrap();
    let end = first + toml[first..].find('\n').unwrap();
    toml.replace_range(
        first..end,
        &format!("paths = [{ok_paths}, {:?}]", secret.display().to_string()),
    );
    let cfg = parse(&toml);
    let checks = ferry_collect::check(&ferry_collect::jobs_of(&cfg).unwrap(), 3);
    let ok = &checks[0];
    assert!(ok.connection.as_ref().unwrap().contains("GNU"), "{ok:?}");
    let states: Vec<&str> = ok.paths.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(states, vec!["ok", "missing", "unreadable"]);
    assert!(!ok.ok());
    assert!(
        checks[1]
            .connection
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("unreachable"),
        "{:?}",
        checks[1]
    );
    let e = checks[2].connection.as_ref().unwrap_err().to_string();
    assert!(e.contains("no pinned key"), "{e}");
}

#[test]
fn excludes_size_cap_and_local_source() {
    let lan = Lan::start(&["h"]).unwrap();
    let h = lan.host("h");
    let local = tempfile::tempdir().unwrap();
    std::fs::create_dir(local.path().join("conf")).unwrap();
    std::fs::write(local.path().join("conf/a.conf"), b"a=1\n").unwrap();
    std::fs::write(local.path().join("conf/skip.tmp"), b"tmp").unwrap();
    std::fs::set_permissions(
        local.path().join("conf/a.conf"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let toml = format!(
        "{}exclude = [\"*.1\", \"**/nginx\"]\nmax_file_size = \"40KiB\"\n\n[sources.local]\nname = \"vm\"\npaths = [{:?}]\nexclude = [\"*.tmp\"]\n",
        lan.sources_toml(2),
        local.path().join("conf").display().to_string()
    );
    let cfg = parse(&toml);
    let r = repo();
    let (info, rep) = backup(&r, &cfg);
    assert!(!rep.is_partial(), "{}", rep.summary());
    let hs = source(&rep, "h");
    let skipped: Vec<String> = hs
        .skipped
        .iter()
        .map(|(p, _)| p.strip_prefix(&h.root).unwrap().display().to_string())
        .collect();
    // syslog is ~ 100 KiB: over the cap; app.log (~ 28 KiB) is under it.
    assert_eq!(
        skipped,
        vec!["var/log/app.log.1", "var/log/nginx", "var/log/syslog"]
    );
    let out = restore(&r, &info);
    let logs = out
        .path()
        .join("h")
        .join(h.root.strip_prefix("/").unwrap())
        .join("var/log");
    assert!(logs.join("app.log").is_file());
    assert!(
        !logs.join("app.log.1").exists()
            && !logs.join("nginx").exists()
            && !logs.join("syslog").exists()
    );
    let vm = out
        .path()
        .join("vm")
        .join(local.path().strip_prefix("/").unwrap())
        .join("conf");
    assert_eq!(std::fs::read(vm.join("a.conf")).unwrap(), b"a=1\n");
    assert_eq!(
        std::fs::metadata(vm.join("a.conf")).unwrap().mode() & 0o777,
        0o640
    );
    assert!(!vm.join("skip.tmp").exists());
    assert_eq!(source(&rep, "vm").wire_bytes, 0);
}

/// A host that is down for one run keeps its file records: when it is back, its unchanged
/// files are not transferred again, and its new bytes are attributed to it alone.
#[test]
fn a_host_down_for_one_run_is_not_read_again_when_it_is_back() {
    let lan = Lan::start(&["up", "flaky"]).unwrap();
    let r = repo();
    let toml = lan.sources_toml(2);
    let (_, first) = backup(&r, &parse(&toml));
    let flaky_files = source(&first, "flaky").files_read;
    assert!(flaky_files >= 5, "{}", first.summary());
    assert!(source(&first, "flaky").new_bytes > 0, "{}", first.summary());

    // The same config, but flaky's port points nowhere (a closed loopback port): it is down.
    let port = lan.host("flaky").port;
    let closed = ferry_testkit::free_port();
    let down = toml.replace(&format!("port = {port}\n"), &format!("port = {closed}\n"));
    assert_ne!(down, toml);
    let (_, second) = backup(&r, &parse(&down));
    assert!(matches!(
        source(&second, "flaky").status,
        SourceStatus::Failed(_)
    ));
    assert_eq!(source(&second, "up").files_read, 0, "{}", second.summary());

    // Back up: nothing of flaky is read again.
    let (info, third) = backup(&r, &parse(&toml));
    let flaky = source(&third, "flaky");
    assert_eq!(flaky.status, SourceStatus::Ok, "{}", third.summary());
    assert_eq!(flaky.files_read, 0, "{}", third.summary());
    assert_eq!(flaky.files_unchanged, flaky_files, "{}", third.summary());
    assert_eq!(flaky.new_bytes, 0, "{}", third.summary());
    let out = restore(&r, &info);
    assert_restored_equals(out.path(), lan.host("flaky"), &[]);
}

/// A directory of symlinks named `tools` (name → target), readable by the read-only account,
/// for a host `PATH` whose tools differ from this machine's.
fn tool_dir(base: &Path, name: &str, tools: &[(&str, &str)]) -> PathBuf {
    let d = base.join(name);
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (tool, target) in tools {
        std::os::unix::fs::symlink(target, d.join(tool)).unwrap();
    }
    d
}

#[test]
fn hosts_without_gnu_find_fail_with_a_clear_message() {
    // busybox (installed by scripts/install-deps.sh) is a real find without -printf, as on
    // Alpine or OpenWrt hosts.
    let busybox = Path::new("/usr/bin/busybox");
    assert!(
        busybox.exists(),
        "busybox missing: run scripts/install-deps.sh"
    );
    let mut lan = Lan::start(&["nofind", "busybox", "fine", "odd"]).unwrap();
    // A GNU host whose tar cannot read a file named like the option: one path error, not
    // a host "without -printf".
    let odd = lan
        .host("odd")
        .write_unreadable("var/log/-printf.log", b"root only\n")
        .unwrap();
    let no_find = tool_dir(&lan.base, "bin-no-find", &[("tar", "/usr/bin/tar")]);
    let bb = tool_dir(
        &lan.base,
        "bin-busybox",
        &[("find", "/usr/bin/busybox"), ("tar", "/usr/bin/tar")],
    );
    lan.host_mut("nofind")
        .restart_with_env(&[("PATH", no_find.to_str().unwrap())])
        .unwrap();
    lan.host_mut("busybox")
        .restart_with_env(&[("PATH", bb.to_str().unwrap())])
        .unwrap();
    let cfg = parse(&lan.sources_toml(4));
    let r = repo();
    let (info, rep) = backup(&r, &cfg);
    assert!(rep.is_partial());
    let o = source(&rep, "odd");
    assert_eq!(o.status, SourceStatus::Partial, "{}", rep.summary());
    assert_eq!(o.errors.len(), 1, "{}", rep.summary());
    assert_eq!(o.errors[0].0, odd);
    assert!(
        o.errors[0].1.contains("Permission denied"),
        "{:?}",
        o.errors
    );
    match &source(&rep, "nofind").status {
        SourceStatus::Failed(m) => assert!(m.contains("no `find` command"), "{m}"),
        s => panic!("nofind should have failed: {s:?}"),
    }
    match &source(&rep, "busybox").status {
        SourceStatus::Failed(m) => {
            assert!(m.contains("does not support -printf"), "{m}")
        }
        s => panic!("busybox should have failed: {s:?}"),
    }
    assert_eq!(source(&rep, "fine").status, SourceStatus::Ok);
    let out = restore(&r, &info);
    assert_restored_equals(out.path(), lan.host("fine"), &[]);
}

#[test]
fn one_ssh_login_per_host_and_run() {
    let lan = Lan::start(&["h"]).unwrap();
    let cfg = parse(&lan.sources_toml(1));
    let r = repo();
    let logins = || {
        lan.host("h")
            .sshd()
            .unwrap()
            .log()
            .matches("Accepted publickey")
            .count()
    };
    let (_, rep) = backup(&r, &cfg);
    assert_eq!(source(&rep, "h").status, SourceStatus::Ok);
    assert!(source(&rep, "h").files_read > 0);
    assert_eq!(logins(), 1, "{}", lan.host("h").sshd().unwrap().log());
    // Nothing changed: the listing alone, still in one session (its tar gets no names).
    let (_, rep) = backup(&r, &cfg);
    let s = source(&rep, "h");
    assert_eq!(s.status, SourceStatus::Ok, "{}", rep.summary());
    assert_eq!(s.files_read, 0);
    assert!(s.files_unchanged > 0);
    assert_eq!(logins(), 2);
}
