//! The tree builder: the directory structure a run records, stored bottom-up as tree blobs.

use super::BackupSession;
use super::meta::EntryMeta;
use super::packer::with_prefix;
use super::paths::RepoPath;
use crate::crypto;
use crate::error::{Error, Result};
use crate::ids::{BlobId, BlobKind};
use crate::objects::{Node, NodeKind, Tree};
use std::collections::BTreeMap;

pub(super) enum Child {
    Dir(DirBuild),
    Leaf(Node),
}

#[derive(Default)]
pub(super) struct DirBuild {
    pub(super) meta: Option<EntryMeta>,
    children: BTreeMap<Vec<u8>, Child>,
}

/// Default metadata of a directory a collector never described (implicit parent).
const IMPLICIT_DIR: EntryMeta = EntryMeta {
    mode: 0o755,
    mtime_ns: 0,
    uid: 0,
    gid: 0,
    size: 0,
    inode: 0,
};

impl BackupSession {
    pub(super) fn dir_mut(&mut self, path: &[Vec<u8>]) -> Result<&mut DirBuild> {
        let mut d = &mut self.root;
        for (i, c) in path.iter().enumerate() {
            let child = d
                .children
                .entry(c.clone())
                .or_insert_with(|| Child::Dir(DirBuild::default()));
            if let Child::Leaf(_) = child {
                // A file or symlink was recorded at a parent path; a directory replaces it.
                tracing::warn!(path = %String::from_utf8_lossy(&path[..=i].join(&b'/')), "replacing a non-directory by a directory");
                *child = Child::Dir(DirBuild::default());
            }
            let Child::Dir(dd) = child else {
                unreachable!()
            };
            d = dd;
        }
        Ok(d)
    }

    pub(super) fn insert_leaf(&mut self, path: &RepoPath, node: Node) -> Result<()> {
        let comps = path.components();
        let Some((name, parent)) = comps.split_last() else {
            return Err(Error::InvalidPath {
                path: String::new(),
                reason: "a file or symlink cannot be the snapshot root".into(),
            });
        };
        let name = name.clone();
        let d = self.dir_mut(parent)?;
        d.children.insert(name, Child::Leaf(node));
        Ok(())
    }

    pub(super) fn store_tree(&mut self, dir: DirBuild) -> Result<BlobId> {
        let mut nodes = Vec::with_capacity(dir.children.len());
        for (name, child) in dir.children {
            match child {
                Child::Leaf(n) => nodes.push(n),
                Child::Dir(d) => {
                    let meta = d.meta.unwrap_or(IMPLICIT_DIR);
                    let subtree = self.store_tree(d)?;
                    let mut m = meta;
                    m.size = 0;
                    nodes.push(m.node(name, NodeKind::Dir { subtree }));
                }
            }
        }
        let bytes = Tree { nodes }.to_bytes();
        let id = crypto::blob_id(self.key.hash_key(), &bytes);
        if self.known.insert(id) {
            self.submit(id, BlobKind::Tree, with_prefix(&bytes))?;
        } else {
            self.stats.dedup_blobs += 1;
        }
        Ok(id)
    }
}
