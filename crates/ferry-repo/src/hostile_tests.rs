//! Crafted, validly encrypted repository objects (issue 15): snapshots, trees, indexes and
//! packs that lie, sealed with the repository's key exactly as a hostile backup VM (which
//! holds the put key) could write them. For each, `restore`, `check`, `check --read-data`
//! and a prune plan (`prune --dry-run`) must fail or report with a message naming the object,
//! never panic, never hang (each case runs on its own thread with a deadline), and never
//! write outside the restore target (the target's parent and a symlink's outside directory
//! are compared before and after). docs/SECURITY.md ("Crafted repository objects") has the
//! table; run with `cargo test -p ferry-repo --lib hostile_tests -- --nocapture` to see it.
//!
//! A unit-test module, not `tests/`: crafting needs the engine's sealing functions and the
//! session's raw-blob hooks, which are crate-private.

use crate::backup::BackupSession;
use crate::check::ReadData;
use crate::crypto;
use crate::format::ObjectKind;
use crate::ids::{BlobId, BlobKind};
use crate::objects::{
    BlobEntry, IndexObject, Node, NodeKind, PACK_INFO, PackTrailer, TRAILER_AAD, Tree,
};
use crate::retention::prune::{PruneOptions, plan};
use crate::storage::{LocalDir, Storage};
use crate::{BackupOptions, MasterKey, NoProgress, Repository, RestoreOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// What each operation answered, as text.
#[derive(Debug)]
struct Outcome {
    restore: String,
    check: String,
    check_data: String,
    prune: String,
}

fn node(name: &[u8], kind: NodeKind, size: u64) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode: 0o644,
        mtime_ns: 0,
        uid: 0,
        gid: 0,
        size,
        inode: 0,
    }
}

fn data(s: &mut BackupSession, bytes: &[u8]) -> BlobId {
    s.store_raw_blob(BlobKind::Data, bytes.to_vec()).unwrap()
}

fn file(s: &mut BackupSession, name: &[u8], bytes: &[u8]) -> Node {
    let id = data(s, bytes);
    node(
        name,
        NodeKind::File { content: vec![id] },
        bytes.len() as u64,
    )
}

fn tree(s: &mut BackupSession, nodes: Vec<Node>) -> BlobId {
    s.store_raw_tree(&Tree { nodes }).unwrap()
}

fn dir(name: &[u8], subtree: BlobId) -> Node {
    node(name, NodeKind::Dir { subtree }, 0)
}

/// A crafted repository in `root/repo`: `build` stores blobs and returns the snapshot's root;
/// then `tamper` may rewrite stored objects (with the master key, as a key holder could).
struct Craft {
    build: Build,
    tamper: Tamper,
}

type Build = Box<dyn FnOnce(&mut BackupSession, &Path) -> BlobId + Send>;
type Tamper = Box<dyn FnOnce(&Repository, &MasterKey) + Send>;

fn craft(build: impl FnOnce(&mut BackupSession, &Path) -> BlobId + Send + 'static) -> Craft {
    Craft {
        build: Box::new(build),
        tamper: Box::new(|_, _| {}),
    }
}

impl Craft {
    fn tamper(mut self, t: impl FnOnce(&Repository, &MasterKey) + Send + 'static) -> Self {
        self.tamper = Box::new(t);
        self
    }
}

/// Entries of a directory (name → bytes or "dir"/"link"), for before/after comparisons.
fn listing(p: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let t = e.file_type().unwrap();
                    let what = if t.is_symlink() {
                        "link".to_string()
                    } else if t.is_dir() {
                        "dir".to_string()
                    } else {
                        format!("{:?}", std::fs::read(e.path()).unwrap_or_default())
                    };
                    (e.file_name().to_string_lossy().into_owned(), what)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn text<T>(r: crate::Result<T>, ok: impl FnOnce(T) -> String) -> String {
    match r {
        Ok(v) => ok(v),
        Err(e) => format!("error: {e}"),
    }
}

fn report(r: &crate::CheckReport) -> String {
    if r.problems.is_empty() {
        return "ok".into();
    }
    let p: Vec<String> = r
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.object, p.message))
        .collect();
    format!("problems: {}", p.join("; "))
}

/// Build, tamper, then restore / check / check --read-data / prune plan, on a thread with an
/// 8 MiB stack (the CLI's main thread) and a deadline. Asserts nothing was written outside
/// the target.
fn run(name: &'static str, c: Craft) -> Outcome {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(8 << 20)
        .spawn(move || {
            let root = tempfile::tempdir().unwrap();
            let outside = root.path().join("outside");
            let parent = root.path().join("parent");
            std::fs::create_dir_all(&outside).unwrap();
            std::fs::create_dir_all(&parent).unwrap();
            std::fs::write(parent.join("sibling"), b"keep me").unwrap();
            let key = MasterKey::generate();
            let s: Arc<dyn Storage> = Arc::new(LocalDir::new(root.path().join("repo")));
            let repo = Repository::init(s, &key.put_key()).unwrap();
            let opts = BackupOptions {
                cache_disabled: true,
                ..Default::default()
            };
            let mut session = repo
                .begin_backup(&key.put_key(), opts, Arc::new(NoProgress))
                .unwrap();
            let root_id = (c.build)(&mut session, &outside);
            let snap = session.finish_with_root(root_id).unwrap();
            (c.tamper)(&repo, &key);
            let (before_parent, before_outside) = (listing(&parent), listing(&outside));
            let target = parent.join("target");
            let restore = text(
                repo.reader(&key).and_then(|r| {
                    r.restore(&snap, &target, &RestoreOptions::default(), &NoProgress)
                }),
                |st| format!("ok ({} files, {} dirs)", st.files, st.dirs),
            );
            let mut after_parent = listing(&parent);
            after_parent.retain(|(n, _)| n != "target");
            assert_eq!(
                after_parent, before_parent,
                "{name}: wrote next to the target"
            );
            assert_eq!(listing(&outside), before_outside, "{name}: wrote outside");
            let check = text(repo.check(&key, ReadData::None, &NoProgress), |r| {
                report(&r)
            });
            let check_data = text(repo.check(&key, ReadData::All, &NoProgress), |r| report(&r));
            let prune = text(plan(&repo, &key, &PruneOptions::default()), |p| {
                if p.skipped.is_empty() {
                    "ok (plan made)".to_string()
                } else {
                    format!("skipped: {:?}", p.skipped)
                }
            });
            let _ = tx.send(Outcome {
                restore,
                check,
                check_data,
                prune,
            });
        })
        .unwrap();
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(o) => {
            eprintln!(
                "| {name} | {} | {} | {} | {} |",
                o.restore, o.check, o.check_data, o.prune
            );
            o
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{name}: hung (over 60 s)"),
        Err(_) => panic!("{name}: panicked (see above)"),
    }
}

fn assert_has(name: &str, what: &str, got: &str, want: &str) {
    assert!(
        got.contains(want),
        "{name}: {what} = {got:?} (wanted {want:?})"
    );
}

/// Replace every index with `f(index)` sealed to the repository's key.
fn rewrite_indexes(repo: &Repository, key: &MasterKey, f: impl Fn(&mut IndexObject)) {
    let st = repo.storage();
    for n in st.list(ObjectKind::Index).unwrap() {
        let mut idx = IndexObject::open(key, &st.get(ObjectKind::Index, &n).unwrap(), &n).unwrap();
        f(&mut idx);
        st.delete(ObjectKind::Index, &n).unwrap();
        put_index_bytes(st.as_ref(), key, &idx.to_bytes());
    }
}

fn put_index_bytes(st: &dyn Storage, key: &MasterKey, payload: &[u8]) {
    let obj = crypto::seal_object(ObjectKind::Index, key.as_put().public_key(), payload);
    st.put_if_absent(ObjectKind::Index, &crate::format::object_name(&obj), &obj)
        .unwrap();
}

/// The blob entries of every pack, by blob id.
fn entry_of(repo: &Repository, key: &MasterKey, id: BlobId) -> (String, BlobEntry) {
    let r = repo.reader(key).unwrap();
    let (pack, loc) = r.locate(&id).unwrap();
    (pack.to_string(), loc.entry)
}

#[test]
fn crafted_names_cannot_escape_the_target() {
    type Names = Vec<(&'static str, Vec<Vec<u8>>, &'static str)>;
    let cases: Names = vec![
        ("dotdot", vec![b"..".to_vec()], "\"..\""),
        ("slash", vec![b"a/b".to_vec()], "a/b"),
        (
            "absolute",
            vec![b"/etc/ferry-evil".to_vec()],
            "/etc/ferry-evil",
        ),
        ("empty", vec![b"".to_vec()], "empty name"),
        ("nul", vec![b"a\0b".to_vec()], "NUL"),
        (
            "duplicate",
            vec![b"x".to_vec(), b"x".to_vec()],
            "the same name appears twice",
        ),
    ];
    for (name, names, want) in cases {
        let o = run(
            name,
            craft(move |s, _| {
                let nodes = names.iter().map(|n| file(s, n, b"evil")).collect();
                tree(s, nodes)
            }),
        );
        assert_has(name, "restore", &o.restore, want);
        assert_has(name, "check", &o.check, want);
        assert_has(name, "prune", &o.prune, "ok");
    }
    // A symlink to the outside, then a directory by the same name with a file in it.
    let o = run(
        "symlink-then-dir",
        craft(|s, outside| {
            let inner = vec![file(s, b"evil", b"evil")];
            let inner = tree(s, inner);
            let target = outside.as_os_str().as_encoded_bytes().to_vec();
            tree(
                s,
                vec![
                    node(b"x", NodeKind::Symlink { target }, 0),
                    dir(b"x", inner),
                ],
            )
        }),
    );
    assert_has("symlink-then-dir", "restore", &o.restore, "x");
    assert_has("symlink-then-dir", "check", &o.check, "twice");
    // `sub/..` one level down.
    let o = run(
        "nested-dotdot",
        craft(|s, _| {
            let inner = vec![file(s, b"..", b"evil")];
            let inner = tree(s, inner);
            tree(s, vec![dir(b"sub", inner)])
        }),
    );
    assert_has("nested-dotdot", "restore", &o.restore, "sub/..");
    assert_has("nested-dotdot", "check", &o.check, "sub/..");
}

#[test]
fn crafted_blob_references_and_sizes_fail_naming_the_object() {
    // A file whose content is a tree blob.
    let o = run(
        "file-of-tree-blob",
        craft(|s, _| {
            let t = tree(s, vec![]);
            let n = node(b"f", NodeKind::File { content: vec![t] }, 1);
            tree(s, vec![n])
        }),
    );
    assert_has("file-of-tree-blob", "restore", &o.restore, "error");
    assert_has("file-of-tree-blob", "check", &o.check, "is a tree blob");
    // A directory whose subtree is a data blob.
    let o = run(
        "dir-of-data-blob",
        craft(|s, _| {
            let d = data(s, b"not a tree");
            tree(s, vec![dir(b"d", d)])
        }),
    );
    assert_has("dir-of-data-blob", "restore", &o.restore, "error");
    assert_has("dir-of-data-blob", "check", &o.check, "tree blob");
    assert_has("dir-of-data-blob", "prune", &o.prune, "tree blob");
    // The snapshot's root is a data blob.
    let o = run("root-is-data", craft(|s, _| data(s, b"plain data")));
    assert_has("root-is-data", "restore", &o.restore, "tree blob");
    assert_has("root-is-data", "check", &o.check, "tree blob");
    assert_has("root-is-data", "prune", &o.prune, "tree blob");
    // The tree's size differs from the content's.
    let o = run(
        "size-lie",
        craft(|s, _| {
            let mut n = file(s, b"f", b"four");
            n.size = 1 << 40;
            tree(s, vec![n])
        }),
    );
    assert_has(
        "size-lie",
        "restore",
        &o.restore,
        "the tree says 1099511627776",
    );
    assert_has("size-lie", "check", &o.check, "the tree says 1099511627776");
    // A size that overflows anything (u64::MAX) and a content list that repeats one blob.
    let o = run(
        "size-overflow",
        craft(|s, _| {
            let id = data(s, b"x");
            let n = node(
                b"f",
                NodeKind::File {
                    content: vec![id; 1000],
                },
                u64::MAX,
            );
            tree(s, vec![n])
        }),
    );
    assert_has("size-overflow", "restore", &o.restore, "the tree says");
    assert_has(
        "size-overflow",
        "check",
        &o.check,
        "the tree says 18446744073709551615",
    );
    assert_has(
        "size-overflow",
        "check",
        &o.check,
        "the tree says 18446744073709551615",
    );
    // A content blob in no index.
    let o = run(
        "missing-blob",
        craft(|s, _| {
            let n = node(
                b"f",
                NodeKind::File {
                    content: vec![BlobId([7; 32])],
                },
                1,
            );
            tree(s, vec![n])
        }),
    );
    assert_has("missing-blob", "restore", &o.restore, "0707");
    assert_has("missing-blob", "check", &o.check, "0707");
    assert_has("missing-blob", "prune", &o.prune, "0707");
    // A tree blob claiming 2^32-1 nodes in 5 bytes.
    let o = run(
        "huge-count-tree",
        craft(|s, _| {
            let t = s
                .store_raw_blob(BlobKind::Tree, vec![0xff, 0xff, 0xff, 0xff, 0x0f])
                .unwrap();
            tree(s, vec![dir(b"d", t)])
        }),
    );
    assert_has("huge-count-tree", "restore", &o.restore, "tree blob");
    assert_has("huge-count-tree", "check", &o.check, "tree blob");
    assert_has("huge-count-tree", "prune", &o.prune, "tree blob");
}

/// A chain of `levels` directories `d/d/…` below the root, ending in `bottom`.
fn chain(s: &mut BackupSession, levels: usize, bottom: BlobId) -> BlobId {
    let mut id = bottom;
    for _ in 0..levels {
        id = tree(s, vec![dir(b"d", id)]);
    }
    id
}

#[test]
fn directories_nested_past_the_limit_are_refused_without_exhausting_the_stack() {
    // Content addressing makes a tree that contains itself impossible to seal (its id is
    // the keyed hash of its bytes); the deepest a crafted snapshot can go is a long chain.
    let o = run(
        "deep-chain",
        craft(|s, _| {
            let empty = tree(s, vec![]);
            chain(s, 5000, empty)
        }),
    );
    let refused = format!("deeper than {} levels", crate::objects::MAX_TREE_DEPTH);
    assert_has("deep-chain", "restore", &o.restore, &refused);
    // check reports what restore refuses, naming the snapshot and the first tree too deep.
    assert_has("deep-chain", "check", &o.check, &refused);
    assert_has(
        "deep-chain",
        "check",
        &o.check,
        "nested 5000 levels below its root",
    );
    assert_has("deep-chain", "check", &o.check, "snapshots/");
    assert_has("deep-chain", "check --read-data", &o.check_data, &refused);
    assert_has("deep-chain", "prune", &o.prune, "ok");

    // Exactly at the limit: restore and check both accept it.
    let o = run(
        "chain-at-limit",
        craft(|s, _| {
            let empty = tree(s, vec![]);
            chain(s, crate::objects::MAX_TREE_DEPTH, empty)
        }),
    );
    assert_has("chain-at-limit", "restore", &o.restore, "ok");
    assert_has("chain-at-limit", "check", &o.check, "ok");

    // One level past it through a shared tree: `a` reaches a 4,090-level chain at once, `b`
    // through 7 more directories. check visits the shared chain once (from `a`), yet must
    // still see that `b` goes one level too deep.
    let o = run(
        "shared-chain",
        craft(|s, _| {
            let empty = tree(s, vec![]);
            let deep = chain(s, crate::objects::MAX_TREE_DEPTH - 6, empty);
            let longer = chain(s, 6, deep);
            tree(s, vec![dir(b"a", deep), dir(b"b", longer)])
        }),
    );
    assert_has("shared-chain", "restore", &o.restore, &refused);
    assert_has("shared-chain", "check", &o.check, &refused);
    assert_has("shared-chain", "check", &o.check, "nested 4097 levels");
}

#[test]
fn crafted_indexes_and_packs_fail_naming_the_object() {
    // The index claims the blob's record runs past the end of its pack.
    let o = run(
        "index-past-end",
        craft(|s, _| {
            let f = file(s, b"f", b"content");
            tree(s, vec![f])
        })
        .tamper(|repo, key| {
            rewrite_indexes(repo, key, |idx| {
                for p in &mut idx.packs {
                    for b in &mut p.blobs {
                        if b.kind == BlobKind::Data {
                            b.offset = 1 << 30;
                        }
                    }
                }
            })
        }),
    );
    assert_has("index-past-end", "restore", &o.restore, "packs/");
    assert_has(
        "index-past-end",
        "check --read-data",
        &o.check_data,
        "past the end",
    );
    // Overlapping records: every data blob is said to be at the tree's record.
    let o = run(
        "index-overlap",
        craft(|s, _| {
            let f = file(s, b"f", b"content");
            tree(s, vec![f])
        })
        .tamper(|repo, key| {
            rewrite_indexes(repo, key, |idx| {
                for p in &mut idx.packs {
                    let t = p.blobs.iter().find(|b| b.kind == BlobKind::Tree).copied();
                    for b in &mut p.blobs {
                        if let (BlobKind::Data, Some(t)) = (b.kind, t) {
                            b.offset = t.offset;
                            b.length = t.length;
                        }
                    }
                }
            })
        }),
    );
    assert_has("index-overlap", "restore", &o.restore, "decryption failed");
    assert_has(
        "index-overlap",
        "check --read-data",
        &o.check_data,
        "decryption failed",
    );
    // A cycle by index lie: the subdirectory's tree is said to be at the root tree's record.
    let o = run(
        "index-cycle",
        craft(|s, _| {
            let inner = tree(s, vec![]);
            tree(s, vec![dir(b"loop", inner)])
        })
        .tamper(|repo, key| {
            let r = repo.reader(key).unwrap();
            let snaps = r.snapshots().unwrap();
            let root = snaps[0].snapshot.root;
            let root_entry = entry_of(repo, key, root).1;
            rewrite_indexes(repo, key, move |idx| {
                for p in &mut idx.packs {
                    for b in &mut p.blobs {
                        if b.kind == BlobKind::Tree && b.id != root {
                            b.offset = root_entry.offset;
                            b.length = root_entry.length;
                            b.raw_length = root_entry.raw_length;
                        }
                    }
                }
            })
        }),
    );
    assert_has("index-cycle", "restore", &o.restore, "decryption failed");
    assert_has("index-cycle", "check", &o.check, "decryption failed");
    // An index claiming 2^32-1 packs in 5 bytes, and one naming a pack `../x`.
    for (name, payload) in [
        ("index-huge-count", vec![0xff, 0xff, 0xff, 0xff, 0x0f]),
        (
            "index-bad-pack-name",
            IndexObject {
                packs: vec![crate::objects::IndexPack {
                    pack: "../../etc/passwd".into(),
                    ephemeral: [0; 32],
                    blobs: vec![],
                }],
            }
            .to_bytes(),
        ),
    ] {
        let o = run(
            name,
            craft(|s, _| {
                let f = file(s, b"f", b"content");
                tree(s, vec![f])
            })
            .tamper(move |repo, key| put_index_bytes(repo.storage().as_ref(), key, &payload)),
        );
        // The good snapshot still restores; check names the bad index; prune skips it.
        assert_has(name, "restore", &o.restore, "ok");
        assert_has(name, "check", &o.check, "index/");
        assert_has(name, "prune", &o.prune, "index/");
    }
    // A pack whose trailer lies (re-sealed with every offset moved), renamed to its new hash
    // and the index pointed at it.
    let o = run(
        "trailer-lies",
        craft(|s, _| {
            let f = file(s, b"f", b"content");
            tree(s, vec![f])
        })
        .tamper(|repo, key| {
            let st = repo.storage();
            let old = st.list(ObjectKind::Pack).unwrap()[0].clone();
            let bytes = st.get(ObjectKind::Pack, &old).unwrap();
            let mut t = crate::objects::open_pack_trailer(key, &bytes, &old).unwrap();
            let eph = crate::objects::pack_ephemeral(&bytes, &old).unwrap();
            let n = bytes.len();
            let tlen = u32::from_le_bytes(bytes[n - 4..].try_into().unwrap()) as usize;
            let body = &bytes[..n - 4 - tlen];
            for b in &mut t.blobs {
                b.offset += 1;
            }
            let sym = crypto::recipient_key(key.secret(), &eph, PACK_INFO).unwrap();
            let plain = crypto::compress_with(None, &PackTrailer::to_bytes(&t), 0);
            let sealed = crypto::seal(&sym, TRAILER_AAD, plain);
            let mut new = body.to_vec();
            new.extend_from_slice(&sealed);
            new.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
            let name = crate::format::object_name(&new);
            st.put_if_absent(ObjectKind::Pack, &name, &new).unwrap();
            st.delete(ObjectKind::Pack, &old).unwrap();
            rewrite_indexes(repo, key, |idx| {
                for p in &mut idx.packs {
                    if p.pack == old {
                        p.pack = name.clone();
                    }
                }
            });
        }),
    );
    assert_has("trailer-lies", "restore", &o.restore, "ok");
    assert_has(
        "trailer-lies",
        "check --read-data",
        &o.check_data,
        "trailer",
    );
}
