#![allow(dead_code)]
//! Shared helpers for the engine's integration tests.

use ferry_repo::backup::local::backup_paths;
use ferry_repo::storage::LocalDir;
use ferry_repo::*;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub key: MasterKey,
    pub repo: Repository,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        let storage: Arc<dyn storage::Storage> = Arc::new(LocalDir::new(dir.path().join("repo")));
        let repo = Repository::init(storage, &key.put_key()).unwrap();
        Env { dir, key, repo }
    }

    pub fn repo_dir(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    pub fn opts(&self) -> BackupOptions {
        BackupOptions {
            cache_dir: Some(self.cache_dir()),
            host: Some("testhost".into()),
            ..Default::default()
        }
    }

    pub fn backup(&self, sources: &[PathBuf]) -> SnapshotInfo {
        self.backup_with(sources, self.opts(), Arc::new(NoProgress))
    }

    pub fn backup_with(
        &self,
        sources: &[PathBuf],
        opts: BackupOptions,
        p: Arc<dyn Progress>,
    ) -> SnapshotInfo {
        backup_paths(&self.repo, &self.key.put_key(), sources, opts, p).unwrap()
    }

    pub fn reader(&self) -> Reader {
        self.repo.reader(&self.key).unwrap()
    }

    /// Committed objects under `sub` (names that are a SHA-256; in-flight `.tmp-*` files of a
    /// running backup are not objects yet).
    pub fn count(&self, sub: &str) -> usize {
        std::fs::read_dir(self.repo_dir().join(sub))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| {
                        e.file_name()
                            .to_str()
                            .is_some_and(ferry_repo::format::is_sha256_hex)
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    pub fn restore(&self, snap: &SnapshotInfo, target: &Path) -> RestoreStats {
        self.reader()
            .restore(snap, target, &RestoreOptions::default(), &NoProgress)
            .unwrap()
    }
}

/// Where `src` (absolute) lands under `target`.
pub fn restored_path(target: &Path, src: &Path) -> PathBuf {
    let src = ferry_repo::backup::absolute_clean(src).unwrap();
    target.join(src.strip_prefix("/").unwrap())
}

/// Compare two trees byte for byte with metadata (type, mode, mtime ns, content, link target).
pub fn assert_same_tree(a: &Path, b: &Path) {
    let ma = std::fs::symlink_metadata(a).unwrap_or_else(|e| panic!("{}: {e}", a.display()));
    let mb =
        std::fs::symlink_metadata(b).unwrap_or_else(|e| panic!("restored {}: {e}", b.display()));
    assert_eq!(ma.file_type(), mb.file_type(), "type of {}", a.display());
    if !ma.file_type().is_symlink() {
        assert_eq!(
            ma.mode() & 0o7777,
            mb.mode() & 0o7777,
            "mode of {}",
            a.display()
        );
    }
    assert_eq!(
        (ma.mtime(), ma.mtime_nsec()),
        (mb.mtime(), mb.mtime_nsec()),
        "mtime of {}",
        a.display()
    );
    assert_eq!(
        (ma.uid(), ma.gid()),
        (mb.uid(), mb.gid()),
        "owner of {}",
        a.display()
    );
    if ma.file_type().is_symlink() {
        assert_eq!(
            std::fs::read_link(a).unwrap(),
            std::fs::read_link(b).unwrap()
        );
    } else if ma.is_file() {
        assert_eq!(ma.len(), mb.len(), "size of {}", a.display());
        let (da, db) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
        assert!(da == db, "content of {} differs", a.display());
    } else if ma.is_dir() {
        let names = |p: &Path| {
            let mut v: Vec<Vec<u8>> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name().as_bytes().to_vec())
                .collect();
            v.sort();
            v
        };
        let na = names(a);
        assert_eq!(na, names(b), "entries of {}", a.display());
        for n in na {
            let n = std::ffi::OsStr::from_bytes(&n);
            assert_same_tree(&a.join(n), &b.join(n));
        }
    }
}

/// Deterministic pseudo-random bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn set_mtime(p: &Path, secs: i64, nsec: i64) {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let ts = [libc::timespec {
        tv_sec: secs,
        tv_nsec: nsec,
    }; 2];
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0);
}
