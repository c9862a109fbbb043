//! The tree builder: the directory structure a run records ([`TreeBuilder`]), stored
//! bottom-up as tree blobs when the run finishes.

use super::meta::EntryMeta;
use super::paths::RepoPath;
use crate::error::{Error, Result};
use crate::ids::BlobId;
use crate::objects::{Node, NodeKind, Tree};
use std::collections::BTreeMap;

enum Child {
    Dir(DirBuild),
    Leaf(Node),
}

#[derive(Default)]
struct DirBuild {
    meta: Option<EntryMeta>,
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

/// The snapshot's directories and leaves so far, keyed by raw name (so each tree is sorted).
/// Parents a collector never described get [`IMPLICIT_DIR`] metadata.
#[derive(Default)]
pub(super) struct TreeBuilder {
    root: DirBuild,
}

impl TreeBuilder {
    fn dir_mut(&mut self, path: &[Vec<u8>]) -> &mut DirBuild {
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
        d
    }

    /// Record a directory's metadata (creating it and its parents if needed).
    pub(super) fn set_dir_meta(&mut self, path: &RepoPath, meta: EntryMeta) {
        self.dir_mut(path.components()).meta = Some(meta);
    }

    /// Record a file or symlink node at `path` (not the root).
    pub(super) fn insert_leaf(&mut self, path: &RepoPath, node: Node) -> Result<()> {
        let comps = path.components();
        let Some((name, parent)) = comps.split_last() else {
            return Err(Error::InvalidPath {
                path: String::new(),
                reason: "a file or symlink cannot be the snapshot root".into(),
            });
        };
        let name = name.clone();
        let d = self.dir_mut(parent);
        d.children.insert(name, Child::Leaf(node));
        Ok(())
    }

    /// Serialise every tree, children before parents, handing each tree's bytes to `put`
    /// (which stores the blob and returns its id); returns the root tree's id.
    pub(super) fn store(self, put: &mut dyn FnMut(&[u8]) -> Result<BlobId>) -> Result<BlobId> {
        store_dir(self.root, put)
    }
}

fn store_dir(dir: DirBuild, put: &mut dyn FnMut(&[u8]) -> Result<BlobId>) -> Result<BlobId> {
    let mut nodes = Vec::with_capacity(dir.children.len());
    for (name, child) in dir.children {
        match child {
            Child::Leaf(n) => nodes.push(n),
            Child::Dir(d) => {
                let meta = d.meta.unwrap_or(IMPLICIT_DIR);
                let subtree = store_dir(d, put)?;
                let mut m = meta;
                m.size = 0;
                nodes.push(m.node(name, NodeKind::Dir { subtree }));
            }
        }
    }
    put(&Tree { nodes }.to_bytes())
}
