//! The crate's one error type. Every error says what it was doing (which file, object,
//! session or function) in a context layer; the cause stays reachable through `source()`, so
//! `{:#}` in the binary (anyhow) prints the whole chain as one line.

use ferry_repo::storage::StorageError;
use std::fmt::Display;

/// Everything that can go wrong in a cloud run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// What was being done, and why it failed (the cause is the source).
    #[error("{what}")]
    Context {
        /// What was being done ("reading the put key /etc/ferry/put.key"); the displayed text.
        what: String,
        /// The error it failed with.
        #[source]
        source: Box<Error>,
    },
    /// A refusal or failure that is its own explanation.
    #[error("{0}")]
    Message(String),
    /// A Lambda function ran and failed: Invoke answered with `X-Amz-Function-Error` and the
    /// function's error object (`errorType`, `errorMessage`).
    #[error("{function} failed ({kind}): {error_type}: {message}")]
    FunctionFailed {
        /// The function's name.
        function: String,
        /// `X-Amz-Function-Error` (`Unhandled`, or `Handled`).
        kind: String,
        /// The error object's `errorType` (`Ferry.SessionLimit`, `Sandbox.Timedout`, …).
        error_type: String,
        /// Its `errorMessage`.
        message: String,
    },
    /// A file or process I/O error without context of its own.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The spool or the gate storage failed (put, list, get).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The repository engine failed (packing, snapshot, format).
    #[error(transparent)]
    Repo(#[from] ferry_repo::Error),
    /// Encoding or decoding JSON (a function's request or answer, a pending snapshot).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The config file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The `[sources]` section is invalid, as `ferry-collect` checks it.
    #[error(transparent)]
    Sources(#[from] ferry_collect::ConfigError),
    /// Collecting the sources failed.
    #[error(transparent)]
    Collect(#[from] ferry_collect::BackupError),
    /// Generating or encoding the session's SSH client key ([`crate::lambda::session_key`]).
    #[error(transparent)]
    SshKey(#[from] ssh_key::Error),
    /// An error from the caller (e.g. reading the put key), kept with its chain.
    #[error(transparent)]
    Caller(Box<dyn std::error::Error + Send + Sync>),
    /// A function did not answer in time.
    #[error("{function} did not answer within {secs} s")]
    Timeout {
        /// Name of the Lambda function called.
        function: String,
        /// How long it was given, in seconds.
        secs: u64,
    },
    /// The run was stopped by its cancellation handle.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// A message error.
    pub fn msg(m: impl Display) -> Error {
        Error::Message(m.to_string())
    }

    /// This error with `what` as its context.
    pub fn context(self, what: impl Display) -> Error {
        Error::Context {
            what: what.to_string(),
            source: Box::new(self),
        }
    }

    /// Whether the run ended because it was cancelled.
    pub fn is_interrupted(&self) -> bool {
        match self {
            Error::Interrupted => true,
            Error::Context { source, .. } => source.is_interrupted(),
            _ => false,
        }
    }
}

/// `context`/`with_context` for results whose error converts into [`Error`].
pub(crate) trait Context<T> {
    fn context(self, what: impl Display) -> Result<T, Error>;
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T, Error>;
}

impl<T, E: Into<Error>> Context<T> for Result<T, E> {
    fn context(self, what: impl Display) -> Result<T, Error> {
        self.map_err(|e| e.into().context(what))
    }
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T, Error> {
        self.map_err(|e| e.into().context(what()))
    }
}

/// `e` and each of its causes, joined with ": " (what anyhow's `{:#}` prints).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        // A message that already shows its cause (`"…: {source}"`) does not repeat it.
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

macro_rules! bail {
    ($($t:tt)*) => {
        return Err($crate::error::Error::msg(format!($($t)*)))
    };
}
pub(crate) use bail;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_reads_like_anyhow() {
        let io = std::io::Error::other("disk on fire");
        let e = Error::from(io)
            .context("writing /s/x")
            .context("saving the spool");
        assert_eq!(
            error_chain(&e),
            "saving the spool: writing /s/x: disk on fire"
        );
        assert!(!e.is_interrupted());
        assert!(Error::Interrupted.context("uploading").is_interrupted());
    }
}
