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
        /// Where the config came from (its file path), for the message.
        origin: String,
        /// What the TOML parser rejected (unknown field, wrong type, bad syntax).
        error: toml::de::Error,
    },
    /// `expires` is not an RFC 3339 time.
    #[error("gate config {origin}: expires {value:?} is not an RFC 3339 time: {error}")]
    Expires {
        /// Where the config came from (its file path), for the message.
        origin: String,
        /// The `expires` value as written.
        value: String,
        /// Where the RFC 3339 parse failed.
        error: time::error::Parse,
    },
    /// `allowed_kinds` names something that is not an object kind.
    #[error(
        "gate config {origin}: allowed_kinds has {kind:?}, not one of config, pack, index, snapshot"
    )]
    Kind {
        /// Where the config came from (its file path), for the message.
        origin: String,
        /// The `allowed_kinds` entry as written.
        kind: String,
    },
    /// `site` is empty, absolute, has `..` or a trailing slash.
    #[error("gate config {origin}: site {site:?} is not a valid prefix")]
    Site {
        /// Where the config came from (its file path), for the message.
        origin: String,
        /// The `site` value as written.
        site: String,
    },
    /// `session` is empty or has characters other than letters, digits, `-`, `_`.
    #[error(
        "gate config {origin}: session {session:?} must be non-empty letters, digits, '-' or '_'"
    )]
    Session {
        /// Where the config came from (its file path), for the message.
        origin: String,
        /// The `session` value as written.
        session: String,
    },
    /// `bucket` is empty.
    #[error("gate config {origin}: bucket is empty")]
    Bucket {
        /// Where the config came from (its file path), for the message.
        origin: String,
    },
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
        /// The spool file that could not be read.
        path: PathBuf,
        /// Why reading the spool file failed.
        error: std::io::Error,
    },
    /// The sink could not be set up (the S3 sink's async runtime).
    #[error("cannot start the async runtime: {error}")]
    Runtime {
        /// Why the tokio runtime could not be built.
        error: std::io::Error,
    },
}

/// The session's audit record could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// An object is already at the record's key (records are write-once).
    #[error("audit record {key} already exists")]
    Exists {
        /// The audit record's key, relative to the site (`audit/<session>-<time>.jsonl`).
        key: String,
    },
    /// The sink refused or failed the put.
    #[error("storing audit record {key} in {sink}: {error}")]
    Store {
        /// The audit record's key, relative to the site (`audit/<session>-<time>.jsonl`).
        key: String,
        /// The sink's [`Sink::describe`](crate::Sink::describe) text, e.g. its bucket URL.
        sink: String,
        /// Why the sink's put failed.
        error: Box<SinkError>,
    },
}
