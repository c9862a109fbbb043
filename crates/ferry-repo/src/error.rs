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
    MissingRepository { location: String },
    /// `init` on a location that already holds a different repository.
    #[error("a different Ferry repository already exists at {location}")]
    RepositoryExists { location: String },
    /// The key does not belong to this repository, or cannot decrypt it.
    #[error("wrong key: {0}")]
    WrongKey(String),
    /// A put-only key was given for an operation that needs to read the repository.
    #[error("this is a put-only key; {op} needs the master key")]
    PutOnlyKey { op: &'static str },
    /// A key file of the other kind was given.
    #[error("key file {path} holds a {found} key, but a {expected} key is needed here")]
    WrongKeyKind {
        path: String,
        found: &'static str,
        expected: &'static str,
    },
    /// The key file (or key bytes) cannot be parsed.
    #[error("malformed key file {path}: {message}")]
    MalformedKey { path: String, message: String },
    /// The passphrase does not open the key file.
    #[error("wrong passphrase for key file {path} (or the file is damaged)")]
    BadPassphrase { path: String },
    /// The key file is protected and no passphrase was available.
    #[error("key file {path} is protected by a passphrase, and none was given")]
    PassphraseRequired { path: String },
    /// `write_new` refuses to replace an existing key file.
    #[error("key file {path} already exists; refusing to overwrite it")]
    KeyFileExists { path: String },
    /// A repository object failed verification (name, header, decryption, parse, blob id).
    #[error("corrupt object {object}: {message}")]
    Corrupt { object: String, message: String },
    /// Bytes handed to a parser are not a valid encoding of `what`.
    #[error("malformed {what}: {message}")]
    Malformed { what: &'static str, message: String },
    /// The storage backend failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A local file operation failed.
    #[error("{op} {}: {}", path.display(), describe_io(source))]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Restore refused an entry that would land outside the target (or is otherwise unsafe).
    #[error("refusing to restore {path:?}: {reason}")]
    UnsafePath { path: String, reason: String },
    /// A path given to the backup session is not a valid repository path.
    #[error("invalid path {path:?} in backup: {reason}")]
    InvalidPath { path: String, reason: String },
    /// No snapshot matches.
    #[error("no snapshot matches {0:?}")]
    SnapshotNotFound(String),
    /// A prefix matches more than one snapshot.
    #[error("snapshot prefix {prefix:?} is ambiguous: it matches {count} snapshots")]
    AmbiguousSnapshot { prefix: String, count: usize },
    /// `ls`/`restore` path not in the snapshot.
    #[error("path {path:?} not found in snapshot {snapshot}")]
    PathNotFound { path: String, snapshot: String },
    /// A blob referenced by a tree is in no index.
    #[error("blob {blob} is not in any index (repository incomplete or damaged)")]
    MissingBlob { blob: String },
    /// A glob pattern given to restore is invalid.
    #[error("invalid include pattern {pattern:?}: {message}")]
    Glob { pattern: String, message: String },
    /// The local cache could not be read or written.
    #[error("local cache {}: {message}", path.display())]
    Cache { path: PathBuf, message: String },
    /// Invalid option (chunker parameters, pack size, …).
    #[error("invalid option: {0}")]
    InvalidOption(String),
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
