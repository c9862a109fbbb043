//! The gate library's errors: a bad session config, a sink that failed, an audit record that
//! could not be stored. Their messages are the ones the gate logs and sends to the client.
//! Where a message already spells out the underlying error (the way the journal and the
//! protocol show it), that error is kept as a field rather than a `source`, so a chain
//! printer does not print it twice.

use std::path::PathBuf;

/// A session config the gate refuses; every message names the config's origin (its file).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML, or not the gate's fields.
    #[error("gate config {origin}: {error}")]
    Toml {
        origin: String,
        error: toml::de::Error,
    },
    /// `expires` is not an RFC 3339 time.
    #[error("gate config {origin}: expires {value:?} is not an RFC 3339 time: {error}")]
    Expires {
        origin: String,
        value: String,
        error: time::error::Parse,
    },
    /// `allowed_kinds` names something that is not an object kind.
    #[error(
        "gate config {origin}: allowed_kinds has {kind:?}, not one of config, pack, index, snapshot"
    )]
    Kind { origin: String, kind: String },
    /// `site` is empty, absolute, has `..` or a trailing slash.
    #[error("gate config {origin}: site {site:?} is not a valid prefix")]
    Site { origin: String, site: String },
    /// `session` is empty or has characters other than letters, digits, `-`, `_`.
    #[error(
        "gate config {origin}: session {session:?} must be non-empty letters, digits, '-' or '_'"
    )]
    Session { origin: String, session: String },
    /// `bucket` is empty.
    #[error("gate config {origin}: bucket is empty")]
    Bucket { origin: String },
}

/// A [`Sink`](crate::Sink) operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The backup bucket (the S3 sink).
    #[cfg(feature = "s3")]
    #[error(transparent)]
    S3(#[from] ferry_s3::S3Error),
    /// The spooled object could not be read back (the in-memory sink).
    #[error("read spool {}: {error}", path.display())]
    Spool {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The sink could not be set up (the S3 sink's async runtime).
    #[error("cannot start the async runtime: {error}")]
    Runtime { error: std::io::Error },
}

/// The session's audit record could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// An object is already at the record's key (records are write-once).
    #[error("audit record {key} already exists")]
    Exists { key: String },
    /// The sink refused or failed the put.
    #[error("storing audit record {key} in {sink}: {error}")]
    Store {
        key: String,
        sink: String,
        error: Box<SinkError>,
    },
}
