//! File metadata as a collector sees it ([`EntryMeta`]) and how it becomes a tree [`Node`].

use crate::objects::{Node, NodeKind};

/// Metadata of one entry, as a collector sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryMeta {
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub mtime_ns: i64,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub inode: u64,
}

impl EntryMeta {
    pub fn from_std(m: &std::fs::Metadata) -> EntryMeta {
        use std::os::unix::fs::MetadataExt;
        EntryMeta {
            mode: m.mode() & 0o7777,
            mtime_ns: m
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.mtime_nsec()),
            uid: m.uid(),
            gid: m.gid(),
            size: m.len(),
            inode: m.ino(),
        }
    }

    pub(super) fn node(&self, name: Vec<u8>, kind: NodeKind) -> Node {
        Node {
            name,
            kind,
            mode: self.mode,
            mtime_ns: self.mtime_ns,
            uid: self.uid,
            gid: self.gid,
            size: self.size,
            inode: self.inode,
        }
    }
}
