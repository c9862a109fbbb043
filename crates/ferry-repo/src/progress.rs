//! Progress reporting behind a trait, so the engine never prints. The CLI implements it
//! with indicatif; [`NoProgress`] ignores everything; [`Counters`] counts (tests, summaries).
//!
//! Methods may be called from several threads at once (the pack writer reports packs).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Callbacks for backup, restore and check. Every method has a no-op default.
pub trait Progress: Send + Sync {
    /// Backup: a file is about to be read (`size` from its metadata).
    fn file_started(&self, _path: &[u8], _size: u64) {}
    /// Backup: a file was skipped because the cache shows it unchanged.
    fn file_unchanged(&self, _path: &[u8], _size: u64) {}
    /// Backup: a directory or symlink was recorded.
    fn entry_recorded(&self, _path: &[u8]) {}
    /// Backup: `n` bytes of file content were read.
    fn bytes_read(&self, _n: u64) {}
    /// Backup: a new blob was queued for storing (`raw` plaintext bytes).
    fn blob_stored(&self, _raw: u64) {}
    /// Backup: a blob was already known (dedup).
    fn blob_deduplicated(&self, _raw: u64) {}
    /// Backup: a pack was committed to storage.
    fn pack_written(&self, _name: &str, _bytes: u64) {}
    /// Backup: an entry could not be read; the backup goes on.
    fn error(&self, _path: &[u8], _message: &str) {}
    /// Restore: a file was restored completely (content and metadata; `size` bytes).
    fn restore_file(&self, _path: &[u8], _size: u64) {}
    /// Restore: `n` bytes of file content were written (a file's blobs arrive in any order
    /// and before [`restore_file`](Self::restore_file) names it).
    fn restore_bytes(&self, _n: u64) {}
    /// Check: an object is being verified.
    fn check_object(&self, _object: &str) {}
}

/// Ignores all progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// Counts everything (thread-safe). Useful for tests and summaries.
#[derive(Debug, Default)]
pub struct Counters {
    /// Files about to be read ([`Progress::file_started`] calls).
    pub files_started: AtomicU64,
    /// Files skipped as unchanged ([`Progress::file_unchanged`] calls).
    pub files_unchanged: AtomicU64,
    /// Directories and symlinks recorded ([`Progress::entry_recorded`] calls).
    pub entries: AtomicU64,
    /// Total file content bytes read (sum of [`Progress::bytes_read`]).
    pub bytes_read: AtomicU64,
    /// New blobs queued for storing (count, not bytes).
    pub blobs_stored: AtomicU64,
    /// Blobs found already known (count, not bytes).
    pub blobs_deduplicated: AtomicU64,
    /// Packs committed to storage.
    pub packs_written: AtomicU64,
    /// Entries that could not be read ([`Progress::error`] calls).
    pub errors: AtomicU64,
    /// Files restored ([`Progress::restore_file`] calls).
    pub restored_files: AtomicU64,
    /// Total bytes written by restore (sum of [`Progress::restore_bytes`]).
    pub restored_bytes: AtomicU64,
    /// Objects verified by check ([`Progress::check_object`] calls).
    pub checked_objects: AtomicU64,
}

impl Counters {
    /// Read one counter, e.g. `Counters::get(&c.files_started)` (relaxed load).
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }
}

impl Progress for Counters {
    fn file_started(&self, _: &[u8], _: u64) {
        self.files_started.fetch_add(1, Relaxed);
    }
    fn file_unchanged(&self, _: &[u8], _: u64) {
        self.files_unchanged.fetch_add(1, Relaxed);
    }
    fn entry_recorded(&self, _: &[u8]) {
        self.entries.fetch_add(1, Relaxed);
    }
    fn bytes_read(&self, n: u64) {
        self.bytes_read.fetch_add(n, Relaxed);
    }
    fn blob_stored(&self, _: u64) {
        self.blobs_stored.fetch_add(1, Relaxed);
    }
    fn blob_deduplicated(&self, _: u64) {
        self.blobs_deduplicated.fetch_add(1, Relaxed);
    }
    fn pack_written(&self, _: &str, _: u64) {
        self.packs_written.fetch_add(1, Relaxed);
    }
    fn error(&self, _: &[u8], _: &str) {
        self.errors.fetch_add(1, Relaxed);
    }
    fn restore_file(&self, _: &[u8], _: u64) {
        self.restored_files.fetch_add(1, Relaxed);
    }
    fn restore_bytes(&self, n: u64) {
        self.restored_bytes.fetch_add(n, Relaxed);
    }
    fn check_object(&self, _: &str) {
        self.checked_objects.fetch_add(1, Relaxed);
    }
}
