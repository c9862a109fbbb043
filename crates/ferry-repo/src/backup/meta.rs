//! File metadata as a collector sees it ([`EntryMeta`]) and how it becomes a tree [`Node`].

use crate::objects::{Node, NodeKind};

/// Metadata of one entry, as a collector sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryMeta {
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Owner's user id.
    pub uid: u32,
    /// Owner's group id.
    pub gid: u32,
    /// Size in bytes as listed (for a file the snapshot records the bytes actually read).
    pub size: u64,
    /// Inode number (with size and mtime, how an unchanged file is recognised).
    pub inode: u64,
}

impl EntryMeta {
    /// From `lstat`/`stat` metadata.
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
