//! # ferry-repo — the repository engine
//!
//! Owns everything about a Ferry repository: keys (master and put-only), content-defined
//! chunking, keyed blob ids, compression, public-key encryption, packs, indexes, trees,
//! snapshots, the local cache, backup, restore and check.
//!
//! Must never depend on AWS or SSH crates: storage is reached only through the
//! [`storage::Storage`] trait, and progress only through a trait, so the same engine runs
//! on the backup VM, in tests against a local directory, and for the operator's restore.
//!
//! ## API overview
//!
//! * Keys ([`keys`]): [`MasterKey::generate`], [`MasterKey::put_key`], `write_new(path,
//!   Option<&Passphrase>)` (0600, refuses to overwrite), [`MasterKey::read`] / [`PutKey::read`] /
//!   [`keys::read_key_file`] (→ [`AnyKey`]; [`AnyKey::into_master`] gives the "put-only key"
//!   error), [`keys::parse`] (fuzzable, no argon2).
//! * Repository ([`repo`]): [`Repository::init`] / [`Repository::open`] /
//!   [`Repository::open_or_init`] over an `Arc<dyn Storage>` (e.g. [`storage::LocalDir`]).
//! * Backup ([`backup`]): [`Repository::begin_backup`] → [`BackupSession`] with
//!   `add_dir` / `add_symlink` / `add_file(path, meta, &mut dyn Read)` / `is_unchanged` +
//!   `add_unchanged_file` / `record_error` / `finish() -> SnapshotInfo`. Paths are
//!   [`RepoPath`]s (raw components). The module has one file per job: `paths`, `meta`,
//!   `tree` (tree builder), `chunker`, `packer` (compression workers, pack writer), `uploader`,
//!   `local`. Local sources: [`backup::local::backup_paths`]; the one local-filesystem walker,
//!   also used by ferry-collect's local source, is [`backup::local::walk`] with a
//!   [`backup::local::Visit`]or.
//! * Read side (master key): [`Repository::reader`] → [`Reader`]: `snapshots()`,
//!   `resolve_snapshot("latest" | prefix | id)`, `ls`, `restore(snapshot, target,
//!   &RestoreOptions { include globs, parallel, .. }, progress)`, `read_blob`, `read_tree`,
//!   `fetch_blobs` (the parallel pack reader, [`fetch`]).
//! * [`Repository::check`]`(key, ReadData, progress) -> CheckReport` (every problem named);
//!   [`ReadData`] is `None`, `All` or a `Subset(`[`DataSubset`]`)` (`n/t`, `p%`, a size).
//! * Retention ([`retention`], operator only): [`retention::policy::apply`]`(snapshots,
//!   &KeepPolicy, &GroupBy) -> Vec<GroupPlan>` (restic's `forget` policy, UTC buckets);
//!   [`retention::forget::forget`] (record first, then delete snapshots);
//!   [`retention::prune::plan`] / [`retention::prune::execute`] (two-phase: unused packs go to
//!   `trash/`, deleted by a later prune after the grace period; docs/RETENTION.md);
//!   [`retention::log`] (the `log/` records of both).
//! * Storage ([`storage`]): the [`storage::Storage`] trait (write-once puts, streaming
//!   `begin_put`, `barrier`, ranged gets); [`storage::LocalDir`]; [`storage::MemStorage`], the
//!   in-memory backend for unit tests in any crate (a put log, call counts, fault knobs);
//!   [`storage::CountedStorage`], any backend with its reads counted ([`storage::StorageReads`]:
//!   the storage requests of restore's and check's `--json` summaries). The
//!   conformance suite every backend runs is `storage::conformance` (cargo feature
//!   `conformance`, enabled only from dev-dependencies; docs/ARCHITECTURE.md).
//! * Progress: the [`Progress`] trait; [`NoProgress`], [`progress::Counters`].
//! * Errors: one [`Error`] enum (with `is_disk_full`, `is_permission_denied`).
//! * Fuzzable parsers (never panic, bounded allocation): [`keys::parse`], [`RepoConfig::parse`],
//!   [`objects::PackTrailer::parse`], [`objects::IndexObject::parse`], [`objects::Tree::parse`],
//!   [`objects::Snapshot::parse`], and for whole encrypted objects
//!   [`objects::IndexObject::open`], [`objects::Snapshot::open`],
//!   [`objects::open_pack_trailer`] (use [`MasterKey::from_seed`] for a fixed key).
//!
//! ## Pipeline and storage
//!
//! Backup: the caller's thread reads, chunks and hashes; N worker threads compress; one
//! thread seals blobs into packs; one streams pack bytes to storage
//! ([`storage::Storage::begin_put`], falling back to buffering + `put_if_absent`) and names
//! them; one commits (fsync + link) and records them in the [`cache`]. All channels are
//! bounded, so memory stays at a few chunks (≈ 50 MiB peak for a 1 GiB backup).
//! Restore and `check --read-data` read packs with the parallel pack reader ([`fetch`]): the
//! blobs needed, coalesced into few large [`storage::Storage::get_range`] requests per pack,
//! N threads, a cap on fetched bytes held; restore writes each blob at its offsets (`pwrite`).
//!
//! ## Format summary
//!
//! Every object starts with [`format::header`]. `config` = header + JSON of public
//! parameters. Packs, indexes and snapshots are named by the SHA-256 of their bytes and
//! encrypted to the repository's X25519 public key with a fresh ephemeral key per object
//! (HKDF-SHA256, XChaCha20-Poly1305); see [`crypto`] and [`objects`]. Blob ids are keyed
//! BLAKE3. Chunking: FastCDC v2020, min 512 KiB / avg 1 MiB / max 8 MiB (gear table seeded
//! from the hash key). zstd level 3, stored raw when it does not shrink. Packs target 32 MiB.

pub mod backup;
pub mod cache;
pub mod check;
pub mod crypto;
pub mod error;
pub mod fetch;
pub mod files;
pub mod format;
pub mod ids;
pub mod keys;
pub mod lockfile;
pub mod objects;
pub mod progress;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod storage;
pub mod units;

#[cfg(test)]
mod hostile_tests;

pub use backup::{BackupOptions, BackupSession, EntryMeta, RepoPath, UnchangedFile};
pub use check::{CheckReport, DataSubset, Problem, ReadData};
pub use error::{Error, Result};
pub use ids::{BlobId, BlobKind, ChunkerParams, RepoId};
pub use keys::{AnyKey, KeyKind, MasterKey, Passphrase, PutKey};
pub use objects::{
    Node, NodeKind, RepoConfig, RunUsage, Snapshot, SnapshotInfo, SnapshotStats, Tree,
};
pub use progress::{NoProgress, Progress};
pub use repo::{LsEntry, Reader, Repository};
pub use restore::{RestoreOptions, RestoreStats};
