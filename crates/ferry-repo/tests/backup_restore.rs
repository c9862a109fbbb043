//! Backup → restore round trips, dedup, cache behaviour, interrupted runs, keys, check.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;
use common::*;
use ferry_repo::progress::Counters;
use ferry_repo::*;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

fn sample_tree(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root.join("etc/deep/a/b/c/d/e/f/g/h")).unwrap();
    std::fs::write(root.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    std::fs::write(root.join("etc/empty"), b"").unwrap();
    std::fs::write(root.join("etc/deep/a/b/c/d/e/f/g/h/leaf"), b"deep").unwrap();
    let mut log = Vec::new();
    for i in 0..60_000 {
        log.extend_from_slice(
            format!(
                "2026-11-23 05:00:{:02} host sshd[{}]: accepted key\n",
                i % 60,
                i
            )
            .as_bytes(),
        );
    }
    std::fs::write(root.join("syslog"), &log).unwrap();
    std::fs::write(root.join("random.bin"), noise(1, 3 * 1024 * 1024 + 17)).unwrap();
    let bad = std::ffi::OsStr::from_bytes(b"caf\xe9-\xff.conf");
    std::fs::write(root.join(bad), b"latin-1 name").unwrap();
    std::os::unix::fs::symlink("hosts", root.join("etc/link")).unwrap();
    std::os::unix::fs::symlink(
        std::ffi::OsStr::from_bytes(b"/nowhere/\xfe"),
        root.join("dangling"),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("etc/hosts"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("random.bin"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    set_mtime(&root.join("etc/hosts"), 1_600_000_000, 123_456_789);
    set_mtime(&root.join("etc/link"), 1_500_000_000, 5);
    set_mtime(&root.join("etc/deep"), 1_400_000_000, 0);
}

#[test]
fn roundtrip_with_metadata_ls_and_resolution() {
    let env = Env::new();
    let src = env.dir.path().join("src");
    sample_tree(&src);
    let snap = env.backup(std::slice::from_ref(&src));
    assert_eq!(snap.snapshot.stats.files, 6);
    assert_eq!(snap.snapshot.sources[0].status, "ok");
    let target = env.dir.path().join("restore");
    let st = env.restore(&snap, &target);
    assert_eq!(st.files, 6);
    assert_same_tree(&src, &restored_path(&target, &src));

    let r = env.reader();
    let list = r.snapshots().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(r.resolve_snapshot("latest").unwrap().id, snap.id);
    assert_eq!(r.resolve_snapshot(&snap.id[..7]).unwrap().id, snap.id);
    assert!(matches!(
        r.resolve_snapshot("ffffffffffff0"),
        Err(Error::SnapshotNotFound(_)) | Ok(_)
    ));
    assert!(matches!(
        r.resolve_snapshot("xyz"),
        Err(Error::SnapshotNotFound(_))
    ));
    // The same among snapshots already read (`forget ID…`), with no request per id.
    use ferry_repo::repo::resolve_among;
    assert_eq!(resolve_among(&list, "latest").unwrap().id, snap.id);
    assert_eq!(resolve_among(&list, &snap.id[..7]).unwrap().id, snap.id);
    assert_eq!(
        resolve_among(&list, &snap.id.to_uppercase()).unwrap().id,
        snap.id
    );
    let other = if snap.id.starts_with('0') { "1" } else { "0" };
    for bad in [other, "xyz", ""] {
        assert!(
            matches!(resolve_among(&list, bad), Err(Error::SnapshotNotFound(_))),
            "{bad:?}"
        );
    }
    assert!(matches!(
        resolve_among(&[], "latest"),
        Err(Error::SnapshotNotFound(_))
    ));
    let json = serde_json::to_value(&list).unwrap();
    assert_eq!(json[0]["id"], snap.id.as_str());
    assert_eq!(json[0]["host"], "testhost");

    // ls of a sub path lists it and what is below.
    let rel = restored_path(Path::new("/"), &src.join("etc"));
    let rel = rel
        .strip_prefix("/")
        .unwrap()
        .as_os_str()
        .as_bytes()
        .to_vec();
    let entries = r.ls(&snap, Some(&rel)).unwrap();
    let names: Vec<String> = entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect();
    assert!(names.iter().any(|n| n.ends_with("etc/hosts")), "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.ends_with("etc/deep/a/b/c/d/e/f/g/h/leaf")),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.ends_with("syslog")));
    let err = r.ls(&snap, Some(b"no/such/path")).unwrap_err();
    assert!(err.to_string().contains("no/such/path"), "{err}");

    // Include globs restore a subset.
    let t2 = env.dir.path().join("restore2");
    let opts = RestoreOptions {
        include: vec!["**/etc/hosts".into()],
        ..Default::default()
    };
    let st = r.restore(&snap, &t2, &opts, &NoProgress).unwrap();
    assert_eq!(st.files, 1);
    assert!(restored_path(&t2, &src.join("etc/hosts")).exists());
    assert!(!restored_path(&t2, &src.join("syslog")).exists());

    let rep = env
        .repo
        .check(&env.key, ReadData::All, &NoProgress)
        .unwrap();
    assert!(rep.is_ok(), "{:?}", rep.problems);
    assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
    assert!(rep.blobs_verified > 0);
}

#[test]
fn relative_sources_keep_absolute_layout() {
    let env = Env::new();
    let src = env.dir.path().join("rel");
    std::fs::create_dir_all(src.join("x")).unwrap();
    std::fs::write(src.join("x/f"), b"hi").unwrap();
    // A relative source with `..` and `.` in it.
    let cwd = std::env::current_dir().unwrap();
    let rel = pathdiff(&src.join("x"), &cwd);
    let snap = env.backup(std::slice::from_ref(&rel));
    let target = env.dir.path().join("out");
    env.restore(&snap, &target);
    assert_eq!(
        std::fs::read(restored_path(&target, &src.join("x/f"))).unwrap(),
        b"hi"
    );
    assert_eq!(
        snap.snapshot.paths,
        vec![
            ferry_repo::backup::absolute_clean(&rel)
                .unwrap()
                .display()
                .to_string()
        ]
    );
}

fn pathdiff(p: &Path, base: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for _ in base.components().skip(1) {
        out.push("..");
    }
    out.push(".");
    out.push(p.strip_prefix("/").unwrap());
    out
}

#[test]
fn second_backup_is_deduplicated_and_unchanged_files_are_not_read() {
    let env = Env::new();
    let src = env.dir.path().join("src");
    sample_tree(&src);
    let first = env.backup(std::slice::from_ref(&src));
    let packs = env.count("packs");
    assert!(packs >= 1);
    let c = Arc::new(Counters::default());
    let second = env.backup_with(std::slice::from_ref(&src), env.opts(), c.clone());
    assert_eq!(c.bytes_read.load(Relaxed), 0, "no file content read");
    assert_eq!(c.files_unchanged.load(Relaxed), 6);
    assert_eq!(c.files_started.load(Relaxed), 0);
    if second.snapshot.root == first.snapshot.root {
        assert_eq!(
            env.count("packs"),
            packs,
            "an unchanged re-run writes no pack"
        );
        assert_eq!(second.snapshot.stats.new_blobs, 0);
    } else {
        // Another process touched an ancestor directory (e.g. /tmp): only the trees on the
        // path to it are new, never file data.
        let depth = src.components().count() as u64;
        assert!(
            second.snapshot.stats.new_blobs <= depth,
            "{:?}",
            second.snapshot.stats
        );
        assert!(
            second.snapshot.stats.new_bytes < 64 * 1024,
            "{:?}",
            second.snapshot.stats
        );
    }

    // Touch one file: only it is read; a copy of known content is deduplicated.
    std::fs::write(src.join("etc/hosts"), b"10.0.0.1 other\n").unwrap();
    std::fs::copy(src.join("random.bin"), src.join("copy.bin")).unwrap();
    let c = Arc::new(Counters::default());
    let third = env.backup_with(std::slice::from_ref(&src), env.opts(), c.clone());
    assert_eq!(c.files_started.load(Relaxed), 2);
    assert_eq!(c.files_unchanged.load(Relaxed), 5);
    assert!(c.blobs_deduplicated.load(Relaxed) >= 1);
    let target = env.dir.path().join("restore");
    env.restore(&third, &target);
    assert_same_tree(&src, &restored_path(&target, &src));

    // Without the cache everything is read again, and dedup is lost (one full upload) but
    // the backup is still complete.
    std::fs::remove_dir_all(env.cache_dir()).unwrap();
    let c = Arc::new(Counters::default());
    let fourth = env.backup_with(std::slice::from_ref(&src), env.opts(), c.clone());
    assert_eq!(c.files_unchanged.load(Relaxed), 0);
    assert!(c.bytes_read.load(Relaxed) > 3 * 1024 * 1024);
    let target = env.dir.path().join("restore4");
    env.restore(&fourth, &target);
    assert_same_tree(&src, &restored_path(&target, &src));
    let rep = env
        .repo
        .check(&env.key, ReadData::None, &NoProgress)
        .unwrap();
    assert!(rep.is_ok(), "{:?}", rep.problems);
}

#[test]
fn cache_forgets_packs_the_repository_lost() {
    let env = Env::new();
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), noise(7, 100_000)).unwrap();
    env.backup(std::slice::from_ref(&src));
    // Someone pruned everything: the cache must not claim those blobs exist.
    for sub in ["packs", "index", "snapshots"] {
        std::fs::remove_dir_all(env.repo_dir().join(sub)).unwrap();
    }
    let snap = env.backup(std::slice::from_ref(&src));
    let target = env.dir.path().join("out");
    env.restore(&snap, &target);
    assert_same_tree(&src, &restored_path(&target, &src));
}

#[test]
fn interrupted_backup_leaves_no_snapshot_and_next_run_completes() {
    let env = Env::new();
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..6u64 {
        std::fs::write(
            src.join(format!("big{i}")),
            noise(100 + i, 1024 * 1024 + 1000),
        )
        .unwrap();
    }
    let mut opts = env.opts();
    opts.pack_size = 1024 * 1024;
    {
        let mut s = env
            .repo
            .begin_backup(&env.key.put_key(), opts.clone(), Arc::new(NoProgress))
            .unwrap();
        for i in 0..4u64 {
            let p = src.join(format!("big{i}"));
            let meta = EntryMeta::from_std(&std::fs::metadata(&p).unwrap());
            s.add_file(
                &RepoPath::from_local(&p).unwrap(),
                &meta,
                &mut std::fs::File::open(&p).unwrap(),
            )
            .unwrap();
        }
        // Wait (bounded) until the writer has committed some packs, then "crash"
        // (drop without finish: the open pack is abandoned).
        for _ in 0..200 {
            if env.count("packs") >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    assert_eq!(env.count("snapshots"), 0);
    assert_eq!(env.count("index"), 0);
    let committed = env.count("packs");
    assert!(
        committed >= 1,
        "some packs were committed before the interruption"
    );
    let rep = env
        .repo
        .check(&env.key, ReadData::All, &NoProgress)
        .unwrap();
    assert!(
        rep.is_ok(),
        "an interrupted run leaves a valid repository: {:?}",
        rep.problems
    );

    let c = Arc::new(Counters::default());
    let snap = env.backup_with(std::slice::from_ref(&src), opts, c.clone());
    assert!(
        c.blobs_deduplicated.load(Relaxed) >= committed as u64,
        "committed packs are not uploaded again"
    );
    let target = env.dir.path().join("out");
    env.restore(&snap, &target);
    assert_same_tree(&src, &restored_path(&target, &src));
    let rep = env
        .repo
        .check(&env.key, ReadData::All, &NoProgress)
        .unwrap();
    assert!(rep.is_ok(), "{:?}", rep.problems);
    assert!(
        rep.warnings.is_empty(),
        "the next run indexed the earlier packs: {:?}",
        rep.warnings
    );
}

#[test]
fn put_key_and_foreign_key_cannot_restore() {
    let env = Env::new();
    let dir = env.dir.path();
    env.key
        .put_key()
        .write_new(&dir.join("put.key"), None)
        .unwrap();
    let any = keys::read_key_file(&dir.join("put.key"), &mut || Ok(None)).unwrap();
    let err = any.into_master("restore").unwrap_err();
    assert_eq!(
        err.to_string(),
        "this is a put-only key; restore needs the master key"
    );

    let other = MasterKey::generate();
    let err = env.repo.reader(&other).unwrap_err();
    assert!(matches!(err, Error::WrongKey(_)), "{err}");
    assert!(
        err.to_string().contains(&env.key.repo_id().to_hex()),
        "{err}"
    );
    let err = env
        .repo
        .begin_backup(&other.put_key(), env.opts(), Arc::new(NoProgress))
        .unwrap_err();
    assert!(matches!(err, Error::WrongKey(_)), "{err}");
}

#[test]
fn missing_repository_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let s: Arc<dyn storage::Storage> = Arc::new(storage::LocalDir::new(dir.path().join("nothing")));
    let err = Repository::open(s).unwrap_err();
    assert!(matches!(err, Error::MissingRepository { .. }));
    assert!(err.to_string().contains("nothing"), "{err}");
}

#[test]
fn flipped_byte_in_a_pack_is_found_and_named() {
    let env = Env::new();
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("data"), noise(3, 200_000)).unwrap();
    env.backup(std::slice::from_ref(&src));
    let pack_dir = env.repo_dir().join("packs");
    let pack = std::fs::read_dir(&pack_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let name = pack.file_name().unwrap().to_str().unwrap().to_string();
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(&pack, &bytes).unwrap();
    let rep = env
        .repo
        .check(&env.key, ReadData::All, &NoProgress)
        .unwrap();
    assert!(!rep.is_ok());
    let named: Vec<_> = rep
        .problems
        .iter()
        .filter(|p| p.object == format!("packs/{name}"))
        .collect();
    assert!(!named.is_empty(), "{:?}", rep.problems);
    assert!(
        named.iter().any(|p| p.message.contains("SHA-256")),
        "{named:?}"
    );
    assert!(
        named
            .iter()
            .any(|p| p.message.contains("decryption failed")),
        "{named:?}"
    );
    // Restore of the damaged blob fails with the pack named, never silently.
    let r = env.reader();
    let snap = r.resolve_snapshot("latest").unwrap();
    let err = r
        .restore(
            &snap,
            &env.dir.path().join("out"),
            &RestoreOptions::default(),
            &NoProgress,
        )
        .unwrap_err();
    assert!(err.to_string().contains(&name), "{err}");
}

#[test]
fn missing_pack_is_reported() {
    let env = Env::new();
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("data"), b"x").unwrap();
    env.backup(std::slice::from_ref(&src));
    let pack = std::fs::read_dir(env.repo_dir().join("packs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&pack).unwrap();
    let rep = env
        .repo
        .check(&env.key, ReadData::None, &NoProgress)
        .unwrap();
    let name = pack.file_name().unwrap().to_str().unwrap();
    assert!(
        rep.problems
            .iter()
            .any(|p| p.object == format!("packs/{name}") && p.message.contains("missing")),
        "{:?}",
        rep.problems
    );
}

#[test]
fn restore_refuses_a_symlink_planted_in_the_target() {
    let env = Env::new();
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/f"), b"payload").unwrap();
    let snap = env.backup(std::slice::from_ref(&src));
    let target = env.dir.path().join("target");
    let outside = env.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let d = restored_path(&target, &src.join("d"));
    std::fs::create_dir_all(d.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&outside, &d).unwrap();
    let err = env
        .reader()
        .restore(&snap, &target, &RestoreOptions::default(), &NoProgress)
        .unwrap_err();
    assert!(matches!(err, Error::UnsafePath { .. }), "{err}");
    assert!(err.to_string().contains("/d"), "{err}");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written through the symlink"
    );
}

#[test]
fn unreadable_source_is_recorded_not_fatal() {
    let env = Env::new();
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("ok"), b"fine").unwrap();
    let missing = env.dir.path().join("does-not-exist");
    let snap = env.backup(&[src.clone(), missing.clone()]);
    assert!(snap.snapshot.is_partial());
    assert_eq!(snap.snapshot.sources[1].status, "failed");
    assert!(
        snap.snapshot.errors[0].message.contains("No such file"),
        "{:?}",
        snap.snapshot.errors
    );
}

#[test]
fn shifted_content_is_deduplicated_by_cdc() {
    let env = Env::new();
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let data = noise(11, 6 * 1024 * 1024);
    std::fs::write(src.join("a"), &data).unwrap();
    let first = env.backup(std::slice::from_ref(&src));
    let mut shifted = b"a few inserted bytes".to_vec();
    shifted.extend_from_slice(&data);
    std::fs::write(src.join("b"), &shifted).unwrap();
    let second = env.backup(std::slice::from_ref(&src));
    let blobs_a = first.snapshot.stats.new_blobs;
    assert!(
        blobs_a >= 3,
        "6 MiB should be several chunks: {:?}",
        first.snapshot.stats
    );
    // Only the chunk around the insertion is new: CDC finds a's later cut points again in b.
    // The chunker's gear table is keyed per repository, so chunk sizes differ from run to run;
    // bound the new bytes by a's own first chunk (+ the insertion and the changed tree blobs),
    // not by a fixed number.
    assert!(
        second.snapshot.stats.dedup_blobs >= 2,
        "{:?}",
        second.snapshot.stats
    );
    let reader = env.repo.reader(&env.key).unwrap();
    let a = reader
        .ls(&first, None)
        .unwrap()
        .into_iter()
        .find(|e| e.path.ends_with(b"/src/a"))
        .expect("a in the first snapshot");
    let NodeKind::File { content } = &a.node.kind else {
        panic!("a is not a file: {:?}", a.node)
    };
    let first_chunk = reader.read_blob(&content[0]).unwrap().len() as u64;
    assert!(
        first_chunk < data.len() as u64,
        "a is one chunk: {first_chunk}"
    );
    assert!(
        second.snapshot.stats.new_bytes <= first_chunk + 20 + 64 * 1024,
        "first chunk of a is {first_chunk} bytes; {:?}",
        second.snapshot.stats
    );
}

/// Junk that a hostile backup VM can get past the gate (a valid Ferry header, named by its
/// SHA-256, garbage inside) in `index/` and `snapshots/` does not block listing or restoring
/// the good snapshots: readers skip it naming it, and check reports it.
#[test]
fn junk_index_and_snapshot_objects_are_skipped_and_reported() {
    use ferry_repo::format::{ObjectKind, header, object_name};
    let env = Env::new();
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), noise(3, 300_000)).unwrap();
    env.backup(std::slice::from_ref(&src));
    let storage = env.repo.storage().clone();
    let mut junk_names = Vec::new();
    for kind in [ObjectKind::Index, ObjectKind::Snapshot] {
        let mut bytes = header(kind).to_vec();
        bytes.extend_from_slice(&[0x5a; 200]);
        let name = object_name(&bytes);
        storage.put_if_absent(kind, &name, &bytes).unwrap();
        junk_names.push(kind.key(&name));
    }
    let reader = env.reader();
    let snaps = reader.snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    let skipped: Vec<String> = reader.skipped().into_iter().map(|(o, _)| o).collect();
    assert_eq!(skipped, junk_names);
    let latest = reader.resolve_snapshot("latest").unwrap();
    let target = env.dir.path().join("out");
    env.restore(&latest, &target);
    assert_same_tree(&src, &restored_path(&target, &src));
    let report = env
        .repo
        .check(&env.key, ReadData::All, &NoProgress)
        .unwrap();
    for j in &junk_names {
        assert!(
            report.problems.iter().any(|p| &p.object == j),
            "check does not report {j}: {:?}",
            report.problems
        );
    }
}

/// Run `f` on another thread; fail (instead of hanging the test run) if it takes over 10 s.
fn within_10s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{what} did not finish within 10 s ({e}): blocked on a FIFO?"))
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o644) },
        0,
        "mkfifo {}",
        path.display()
    );
}

#[test]
fn fifos_named_like_objects_block_neither_restore_nor_check() {
    use ferry_repo::format::{ObjectKind, object_name};
    use ferry_repo::storage::StorageError;
    let env = Env::new();
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), noise(4, 300_000)).unwrap();
    std::fs::write(src.join("b"), b"small").unwrap();
    env.backup(std::slice::from_ref(&src));
    // A FIFO under a new SHA-256 name in packs/, index/ and snapshots/.
    let mut fifos = Vec::new();
    for (i, kind) in [ObjectKind::Pack, ObjectKind::Index, ObjectKind::Snapshot]
        .into_iter()
        .enumerate()
    {
        let name = object_name(format!("fifo {i}").as_bytes());
        mkfifo(&env.repo_dir().join(kind.key(&name)));
        fifos.push((kind, name));
    }
    let storage = env.repo.storage().clone();
    // The storage refuses each one by name, without blocking (get and get_range).
    for (kind, name) in fifos.clone() {
        let object = kind.key(&name);
        let s = storage.clone();
        let (whole, range) = within_10s("get of a FIFO", move || {
            (s.get(kind, &name), s.get_range(kind, &name, 0, 10))
        });
        for r in [whole, range] {
            let err = r.unwrap_err();
            assert!(err.is_not_regular_file(), "{err}");
            assert!(matches!(err, StorageError::NotRegularFile { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(&object), "{msg}");
            assert!(msg.contains("is a FIFO, not a regular file"), "{msg}");
        }
    }
    // Listing still shows them (the names are valid); readers skip the index and snapshot.
    let (repo, key) = (env.repo.clone(), env.key.clone());
    let (snaps, skipped) = within_10s("reader and snapshots", move || {
        let reader = repo.reader(&key).unwrap();
        let snaps = reader.snapshots().unwrap();
        (snaps, reader.skipped())
    });
    assert_eq!(snaps.len(), 1);
    let skipped_keys: Vec<String> = skipped.iter().map(|(o, _)| o.clone()).collect();
    assert_eq!(
        skipped_keys,
        vec![
            ObjectKind::Index.key(&fifos[1].1),
            ObjectKind::Snapshot.key(&fifos[2].1)
        ]
    );
    for (_, why) in &skipped {
        assert!(why.contains("is a FIFO, not a regular file"), "{why}");
    }
    // Restore of the latest snapshot (which needs none of them), byte for byte.
    let target = env.dir.path().join("out");
    let (repo, key, t) = (env.repo.clone(), env.key.clone(), target.clone());
    within_10s("restore latest", move || {
        let reader = repo.reader(&key).unwrap();
        let latest = reader.resolve_snapshot("latest").unwrap();
        reader
            .restore(&latest, &t, &RestoreOptions::default(), &NoProgress)
            .unwrap();
    });
    assert_same_tree(&src, &restored_path(&target, &src));
    // Check reads everything and reports each FIFO as a problem naming it.
    let (repo, key) = (env.repo.clone(), env.key.clone());
    let report = within_10s("check --read-data", move || {
        repo.check(&key, ReadData::All, &NoProgress).unwrap()
    });
    for (kind, name) in &fifos {
        let object = kind.key(name);
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.object == object && p.message.contains("is a FIFO, not a regular file")),
            "check does not report {object}: {:?}",
            report.problems
        );
    }
    assert_eq!(report.problems.len(), 3, "{:?}", report.problems);
}
