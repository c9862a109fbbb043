//! # ferry-repo — the repository engine
//!
//! Owns everything about a Ferry repository: keys (master and put-only), content-defined
//! chunking, keyed blob ids, compression, public-key encryption, packs, indexes, trees,
//! snapshots, the local cache, backup, restore and check.
//!
//! Must never depend on AWS or SSH crates: storage is reached only through the
//! [`storage::Storage`] trait, and progress only through a trait, so the same engine runs
//! on the backup VM, in tests against a local directory, and for the operator's restore.

pub mod format;
pub mod storage;
