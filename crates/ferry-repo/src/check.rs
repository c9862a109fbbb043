//! `check`: verify every object and report each problem by object name.
//!
//! Without `read_data`: every index and snapshot object (name = SHA-256, decrypts, parses),
//! every tree reachable from a snapshot (present in an index, decrypts, id matches), every
//! data blob a tree references is listed by an index, every pack an index names exists.
//! With `read_data`: additionally every pack is read whole: name = SHA-256, trailer decrypts,
//! every blob decrypts and matches its id, and the trailer agrees with the indexes.

use crate::error::Result;
use crate::format::{self, ObjectKind};
use crate::ids::BlobId;
use crate::keys::MasterKey;
use crate::objects::{
    BlobEntry, IndexObject, NodeKind, Snapshot, Tree, open_blob, open_pack_trailer,
};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::storage::Storage;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// One problem (or warning), naming the object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// e.g. `packs/ab12…`, `index/…`, `snapshots/…`, `blob 3f…`.
    pub object: String,
    /// What is wrong, with where it was found (e.g. `missing (listed by index/…)`).
    pub message: String,
}

/// What `check` found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckReport {
    /// Missing or corrupt objects: the repository is damaged.
    pub problems: Vec<Problem>,
    /// Harmless findings (e.g. a pack no index covers yet, left by an interrupted backup).
    pub warnings: Vec<Problem>,
    /// Snapshot objects listed by storage (including unreadable ones).
    pub snapshots: u64,
    /// Index objects listed by storage (including unreadable ones).
    pub indexes: u64,
    /// Pack objects listed by storage.
    pub packs: u64,
    /// Distinct tree blobs reached from the snapshots.
    pub trees: u64,
    /// Distinct data blobs referenced by files in the reachable trees.
    pub data_blobs_referenced: u64,
    /// Blobs decrypted and verified (with `read_data`).
    pub blobs_verified: u64,
    /// Whether packs were read whole and every blob verified (`check --read-data`).
    pub read_data: bool,
}

impl CheckReport {
    /// True when there are no problems (warnings do not count).
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
    fn problem(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            object: object.into(),
            message: message.into(),
        });
    }

    /// Read a content-addressed object, recording a problem if it cannot be read (then `None`)
    /// or if its bytes do not hash to its name (the bytes are still returned, so the caller
    /// can report what else is wrong with them).
    fn read_object(
        &mut self,
        storage: &dyn Storage,
        kind: ObjectKind,
        name: &str,
    ) -> Option<Vec<u8>> {
        let object = kind.key(name);
        let bytes = match storage.get(kind, name) {
            Ok(b) => b,
            Err(e) => {
                self.problem(&object, format!("cannot read: {e}"));
                return None;
            }
        };
        if format::object_name(&bytes) != name {
            self.problem(
                &object,
                "content does not match its name (SHA-256 mismatch)",
            );
        }
        Some(bytes)
    }
}

struct Loc {
    pack: String,
    ephemeral: [u8; 32],
    entry: BlobEntry,
}

pub(crate) fn check(
    repo: &Repository,
    key: &MasterKey,
    read_data: bool,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    repo.config().check_key(key.as_put())?;
    let storage: &dyn Storage = repo.storage().as_ref();
    let mut rep = CheckReport {
        read_data,
        ..Default::default()
    };
    let packs: HashSet<String> = storage.list(ObjectKind::Pack)?.into_iter().collect();
    rep.packs = packs.len() as u64;

    // Indexes.
    let mut blobs: HashMap<BlobId, Loc> = HashMap::new();
    let mut indexed_packs: HashMap<String, Vec<BlobEntry>> = HashMap::new();
    for name in storage.list(ObjectKind::Index)? {
        let object = ObjectKind::Index.key(&name);
        progress.check_object(&object);
        rep.indexes += 1;
        let Some(bytes) = rep.read_object(storage, ObjectKind::Index, &name) else {
            continue;
        };
        let idx = match IndexObject::open(key, &bytes, &name) {
            Ok(i) => i,
            Err(e) => {
                rep.problem(&object, e.to_string());
                continue;
            }
        };
        for p in idx.packs {
            if !packs.contains(&p.pack) {
                rep.problem(
                    ObjectKind::Pack.key(&p.pack),
                    format!("missing (listed by {object})"),
                );
            }
            for b in &p.blobs {
                blobs.insert(
                    b.id,
                    Loc {
                        pack: p.pack.clone(),
                        ephemeral: p.ephemeral,
                        entry: *b,
                    },
                );
            }
            indexed_packs.entry(p.pack).or_default().extend(p.blobs);
        }
    }
    for p in &packs {
        if !indexed_packs.contains_key(p) {
            rep.warnings.push(Problem {
                object: ObjectKind::Pack.key(p),
                message: "not covered by any index (left by an interrupted backup: the next backup from the \
                          same cache indexes it; otherwise it is unused)"
                    .into(),
            });
        }
    }

    // Snapshots and the trees they reach.
    let mut seen_trees: HashSet<BlobId> = HashSet::new();
    let mut seen_data: HashSet<BlobId> = HashSet::new();
    for name in storage.list(ObjectKind::Snapshot)? {
        let object = ObjectKind::Snapshot.key(&name);
        progress.check_object(&object);
        rep.snapshots += 1;
        let Some(bytes) = rep.read_object(storage, ObjectKind::Snapshot, &name) else {
            continue;
        };
        let snap = match Snapshot::open(key, &bytes, &name) {
            Ok(s) => s,
            Err(e) => {
                rep.problem(&object, e.to_string());
                continue;
            }
        };
        let mut stack = vec![(snap.root, String::new())];
        while let Some((tid, path)) = stack.pop() {
            if !seen_trees.insert(tid) {
                continue;
            }
            rep.trees += 1;
            let Some(loc) = blobs.get(&tid) else {
                rep.problem(
                    format!("tree blob {tid}"),
                    format!("missing from every index (directory /{path} of {object})"),
                );
                continue;
            };
            let tree = match read_blob(storage, key, loc).and_then(|b| Tree::parse(&b)) {
                Ok(t) => t,
                Err(e) => {
                    rep.problem(
                        format!("tree blob {tid}"),
                        format!("{e} (directory /{path} of {object})"),
                    );
                    continue;
                }
            };
            for n in tree.nodes {
                let child = if path.is_empty() {
                    n.name_lossy()
                } else {
                    format!("{path}/{}", n.name_lossy())
                };
                match n.kind {
                    NodeKind::Dir { subtree } => stack.push((subtree, child)),
                    NodeKind::File { content } => {
                        for b in content {
                            if seen_data.insert(b) {
                                rep.data_blobs_referenced += 1;
                                if !blobs.contains_key(&b) {
                                    rep.problem(
                                        format!("data blob {b}"),
                                        format!(
                                            "missing from every index (file /{child} of {object})"
                                        ),
                                    );
                                }
                            }
                        }
                    }
                    NodeKind::Symlink { .. } => {}
                }
            }
        }
    }

    if read_data {
        let mut names: Vec<&String> = packs.iter().collect();
        names.sort();
        for name in names {
            let object = ObjectKind::Pack.key(name);
            progress.check_object(&object);
            let Some(bytes) = rep.read_object(storage, ObjectKind::Pack, name) else {
                continue;
            };
            let eph = match crate::objects::pack_ephemeral(&bytes, name) {
                Ok(e) => e,
                Err(e) => {
                    rep.problem(&object, e.to_string());
                    continue;
                }
            };
            // Prefer the index's view (what restore uses); fall back to the trailer.
            let trailer = open_pack_trailer(key, &bytes, name);
            let entries: Vec<BlobEntry> = match (&trailer, indexed_packs.get(name)) {
                (_, Some(ix)) => ix.clone(),
                (Ok(t), None) => t.blobs.clone(),
                (Err(_), None) => Vec::new(),
            };
            if let Err(e) = &trailer {
                rep.problem(&object, format!("trailer: {e}"));
            } else if let (Ok(t), Some(ix)) = (&trailer, indexed_packs.get(name)) {
                let a: HashSet<_> = t.blobs.iter().map(|b| (b.id, b.offset, b.length)).collect();
                let b: HashSet<_> = ix.iter().map(|b| (b.id, b.offset, b.length)).collect();
                if a != b {
                    rep.problem(
                        &object,
                        "trailer and index disagree about the blobs in this pack",
                    );
                }
            }
            let mut bad = 0usize;
            for e in &entries {
                let start = e.offset as usize;
                let end = start.saturating_add(e.length as usize);
                let res = if end > bytes.len() {
                    Err(crate::error::Error::corrupt(
                        &object,
                        format!("blob {} extends past the end of the pack", e.id),
                    ))
                } else {
                    open_blob(key, &eph, e, &bytes[start..end], name)
                };
                match res {
                    Ok(_) => rep.blobs_verified += 1,
                    Err(err) => {
                        bad += 1;
                        if bad <= 20 {
                            rep.problem(&object, format!("blob {}: {err}", e.id));
                        }
                    }
                }
            }
            if bad > 20 {
                rep.problem(
                    &object,
                    format!("{} more damaged blobs not listed", bad - 20),
                );
            }
        }
    }
    Ok(rep)
}

fn read_blob(storage: &dyn crate::storage::Storage, key: &MasterKey, loc: &Loc) -> Result<Vec<u8>> {
    let rec = storage.get_range(
        ObjectKind::Pack,
        &loc.pack,
        loc.entry.offset as u64,
        loc.entry.length as u64,
    )?;
    open_blob(key, &loc.ephemeral, &loc.entry, &rec, &loc.pack)
}
