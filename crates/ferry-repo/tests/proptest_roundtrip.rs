//! Property test: random trees (empty, large, sparse files, symlinks, non-UTF-8 names, deep
//! paths, many small files) round-trip byte for byte with metadata.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;
use common::*;
use proptest::prelude::*;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[derive(Debug, Clone)]
enum Content {
    Empty,
    Small(u64, usize),
    Large(u64),
    Sparse(u64),
}

#[derive(Debug, Clone)]
enum Entry {
    File(Content, u32),
    Link(Vec<u8>),
    Dir,
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[a-z]{1,6}".prop_map(|s| s.into_bytes()),
        // Non-UTF-8 and odd bytes (no '/' and no NUL).
        proptest::collection::vec(prop_oneof![1u8..=46, 48u8..=255], 1..8),
    ]
    .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        6 => (any::<u64>(), 0usize..3000, prop_oneof![Just(0o644u32), Just(0o600), Just(0o755), Just(0o4711)])
            .prop_map(|(s, n, m)| Entry::File(Content::Small(s, n), m)),
        1 => Just(Entry::File(Content::Empty, 0o644)),
        1 => any::<u64>().prop_map(|s| Entry::File(Content::Large(s), 0o640)),
        1 => any::<u64>().prop_map(|s| Entry::File(Content::Sparse(s), 0o600)),
        2 => proptest::collection::vec(1u8..=255, 1..40).prop_map(Entry::Link),
        2 => Just(Entry::Dir),
    ]
}

fn build(root: &Path, items: &[(Vec<Vec<u8>>, Entry, i64)]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root).unwrap();
    for (comps, e, mtime) in items {
        let mut p = root.to_path_buf();
        for (i, c) in comps.iter().enumerate() {
            p.push(std::ffi::OsStr::from_bytes(c));
            if i + 1 < comps.len() && !p.is_dir() {
                if std::fs::symlink_metadata(&p).is_ok() {
                    break;
                }
                std::fs::create_dir(&p).unwrap();
            }
        }
        if std::fs::symlink_metadata(&p).is_ok() || !p.parent().unwrap().is_dir() {
            continue;
        }
        match e {
            Entry::Dir => std::fs::create_dir(&p).unwrap(),
            Entry::Link(t) => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(t), &p).unwrap()
            }
            Entry::File(c, mode) => {
                match c {
                    Content::Empty => std::fs::write(&p, b"").unwrap(),
                    Content::Small(s, n) => std::fs::write(&p, noise(*s, *n)).unwrap(),
                    Content::Large(s) => {
                        std::fs::write(&p, noise(*s, 1_600_000 + (*s % 5000) as usize)).unwrap()
                    }
                    Content::Sparse(s) => {
                        use std::io::{Seek, SeekFrom, Write};
                        let mut f = std::fs::File::create(&p).unwrap();
                        f.write_all(&noise(*s, 100)).unwrap();
                        f.seek(SeekFrom::Start(2_500_000)).unwrap();
                        f.write_all(b"tail").unwrap();
                        f.set_len(3_000_000).unwrap();
                    }
                }
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
            }
        }
        set_mtime(&p, 1_000_000_000 + *mtime, (*mtime % 1_000_000_000).abs());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5, .. ProptestConfig::default() })]

    #[test]
    fn random_trees_round_trip(
        items in proptest::collection::vec(
            (proptest::collection::vec(name(), 1..12), entry(), 0i64..2_000_000_000),
            1..60,
        )
    ) {
        let env = Env::new();
        let src = env.dir.path().join("src");
        build(&src, &items);
        // Directory mtimes last (creating children changed them).
        set_mtime(&src, 1_234_567_890, 42);
        let snap = env.backup(std::slice::from_ref(&src));
        let target = env.dir.path().join("restore");
        env.restore(&snap, &target);
        assert_same_tree(&src, &restored_path(&target, &src));
    }
}

#[test]
fn many_small_files_and_deep_paths() {
    let env = Env::new();
    let src = env.dir.path().join("src");
    let mut deep = src.join("deep");
    for i in 0..120 {
        deep.push(format!("d{i}"));
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("bottom"), b"bottom").unwrap();
    std::fs::create_dir_all(src.join("many")).unwrap();
    for i in 0..1000 {
        std::fs::write(src.join(format!("many/f{i:05}")), format!("file {i}\n")).unwrap();
    }
    let snap = env.backup(std::slice::from_ref(&src));
    assert_eq!(snap.snapshot.stats.files, 1001);
    let target = env.dir.path().join("restore");
    env.restore(&snap, &target);
    assert_same_tree(&src, &restored_path(&target, &src));
}
