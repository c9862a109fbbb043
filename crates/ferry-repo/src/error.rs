//! The one error type of the engine. Every variant names what it is about (a file, an
//! object, a key file) and what is wrong; none ever contains key material.

use crate::storage::StorageError;
use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `config` object: not a Ferry repository (or not initialised yet).
    #[error("no Ferry repository at {location}: the `config` object is missing")]
    MissingRepository {
        /// The storage location searched ([`Storage::location`](crate::storage::Storage::location)).
        location: String,
    },
    /// `init` on a location that already holds a different repository.
    #[error("a different Ferry repository already exists at {location}")]
    RepositoryExists {
        /// The storage location of the existing repository.
        location: String,
    },
    /// The key does not belong to this repository, or cannot decrypt it.
    #[error("wrong key: {0}")]
    WrongKey(String),
    /// A put-only key was given for an operation that needs to read the repository.
    #[error("this is a put-only key; {op} needs the master key")]
    PutOnlyKey {
        /// The refused operation, as shown to the user (e.g. "restore").
        op: &'static str,
    },
    /// A key file of the other kind was given.
    #[error("key file {path} holds a {found} key, but a {expected} key is needed here")]
    WrongKeyKind {
        /// The key file, as displayed.
        path: String,
        /// Kind the file holds: "master" or "put".
        found: &'static str,
        /// Kind the operation needs: "master" or "put".
        expected: &'static str,
    },
    /// The key file (or key bytes) cannot be parsed.
    #[error("malformed key file {path}: {message}")]
    MalformedKey {
        /// The key file, as displayed (`<key bytes>` when parsed from memory).
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The passphrase does not open the key file.
    #[error("wrong passphrase for key file {path} (or the file is damaged)")]
    BadPassphrase {
        /// The key file, as displayed.
        path: String,
    },
    /// The key file is protected and no passphrase was available.
    #[error("key file {path} is protected by a passphrase, and none was given")]
    PassphraseRequired {
        /// The key file, as displayed.
        path: String,
    },
    /// `write_new` refuses to replace an existing key file.
    #[error("key file {path} already exists; refusing to overwrite it")]
    KeyFileExists {
        /// The existing key file, as displayed.
        path: String,
    },
    /// A repository object failed verification (name, header, decryption, parse, blob id).
    #[error("corrupt object {object}: {message}")]
    Corrupt {
        /// The object's storage key (`config`, `packs/<name>`, …) or a description such
        /// as `tree blob <id>`.
        object: String,
        /// Which check failed.
        message: String,
    },
    /// Bytes handed to a parser are not a valid encoding of `what`.
    #[error("malformed {what}: {message}")]
    Malformed {
        /// The kind of encoding expected ("tree", "snapshot", "index", "pack trailer", …).
        what: &'static str,
        /// Why the bytes were rejected (usually the decoder's error).
        message: String,
    },
    /// The storage backend failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A local file operation failed.
    #[error("{op} {}: {}", path.display(), describe_io(source))]
    Io {
        /// The operation that failed, as a verb phrase shown before the path
        /// (e.g. "open cache lock").
        op: &'static str,
        /// The local file or directory operated on.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },
    /// Restore refused an entry that would land outside the target (or is otherwise unsafe).
    #[error("refusing to restore {path:?}: {reason}")]
    UnsafePath {
        /// The entry's path in the snapshot (lossy UTF-8).
        path: String,
        /// Why it was refused (e.g. "name contains NUL").
        reason: String,
    },
    /// A path given to the backup session is not a valid repository path.
    #[error("invalid path {path:?} in backup: {reason}")]
    InvalidPath {
        /// The path as given (lossy UTF-8).
        path: String,
        /// Why it is not a valid repository path.
        reason: String,
    },
    /// No snapshot matches.
    /// Holds the id or prefix as given, or `latest (the repository has no snapshots)`.
    #[error("no snapshot matches {0:?}")]
    SnapshotNotFound(String),
    /// A prefix matches more than one snapshot.
    #[error("snapshot prefix {prefix:?} is ambiguous: it matches {count} snapshots")]
    AmbiguousSnapshot {
        /// The snapshot id prefix as given.
        prefix: String,
        /// How many snapshots it matches (at least 2).
        count: usize,
    },
    /// `ls`/`restore` path not in the snapshot.
    #[error("path {path:?} not found in snapshot {snapshot}")]
    PathNotFound {
        /// The slash-separated path looked up (lossy UTF-8).
        path: String,
        /// Short id of the snapshot searched.
        snapshot: String,
    },
    /// A blob referenced by a tree is in no index.
    #[error("blob {blob} is not in any index (repository incomplete or damaged)")]
    MissingBlob {
        /// The missing blob id, lowercase hex.
        blob: String,
    },
    /// A glob pattern given to restore is invalid.
    #[error("invalid include pattern {pattern:?}: {message}")]
    Glob {
        /// The pattern as given.
        pattern: String,
        /// The glob parser's complaint.
        message: String,
    },
    /// The local cache could not be read or written.
    #[error("local cache {}: {message}", path.display())]
    Cache {
        /// The cache directory (or file in it).
        path: PathBuf,
        /// What went wrong (e.g. in use by another process).
        message: String,
    },
    /// Invalid option (chunker parameters, pack size, …).
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// Packs this backup's cache relied on were removed (moved to `trash/` by a prune) while
    /// it ran: its snapshot is not written. The cache has forgotten them; the next run stores
    /// those blobs again (docs/RETENTION.md).
    #[error(
        "{count} pack(s) this backup reused were removed by a prune while it ran (first: {first}); no snapshot was written, the cache has forgotten them: run the backup again"
    )]
    PrunedDuringBackup {
        /// How many reused packs are gone.
        count: usize,
        /// One of them, as `packs/<name>`.
        first: String,
    },
    /// Forget or prune refused: what would be unsafe, and why.
    #[error("{op} refused: {message}")]
    Retention {
        /// `forget` or `prune`.
        op: &'static str,
        /// Why, naming the objects concerned.
        message: String,
    },
    /// A pipeline thread failed unexpectedly.
    #[error("backup pipeline failed: {0}")]
    Pipeline(String),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(object: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Corrupt {
            object: object.into(),
            message: message.into(),
        }
    }

    pub(crate) fn malformed(what: &'static str, message: impl Into<String>) -> Self {
        Error::Malformed {
            what,
            message: message.into(),
        }
    }

    /// Whether this error is (or wraps) "no space left on device".
    pub fn is_disk_full(&self) -> bool {
        self.io_error()
            .is_some_and(|e| e.raw_os_error() == Some(libc::ENOSPC))
    }

    /// Whether this error is (or wraps) a permission failure.
    pub fn is_permission_denied(&self) -> bool {
        self.io_error()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    }

    fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Storage(StorageError::Io { source, .. }) => Some(source),
            _ => None,
        }
    }
}

/// What a file type is, for messages refusing a file that is not a regular one.
pub(crate) fn file_type_name(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_symlink() {
        "symbolic link"
    } else if ft.is_file() {
        "regular file"
    } else {
        "special file"
    }
}

/// Render an I/O error with the errno name for the cases users most need to recognise.
pub fn describe_io(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => format!("disk full (ENOSPC): {e}"),
        Some(libc::EDQUOT) => format!("disk quota exceeded (EDQUOT): {e}"),
        Some(libc::EACCES) | Some(libc::EPERM) => format!("permission denied: {e}"),
        Some(libc::EROFS) => format!("read-only file system (EROFS): {e}"),
        _ => e.to_string(),
    }
}
