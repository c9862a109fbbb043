//! The cloud layer's one error type. Every variant names what failed — the AWS call and the
//! resource, the config file and field, the artifact, the local file — so a caller can tell an
//! AWS failure from a resource Ferry refuses to touch, a limit, or a bad config, and the
//! binary (anyhow) prints the chain: the call, then the SDK's error and its causes. Secrets
//! (the backup user's key) are never part of an error.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::policy::InputError;

/// Any error as a `source` (the AWS SDK's, whatever service it comes from).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `ferry infra` and its documents.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An AWS API call failed: `call` is `service:Operation` (`iam:GetRole`), `resource` names
    /// what it was about (`ferry-lambda`, `on ferry-vpc (vpc-…)`); the SDK's error is the source.
    #[error("{call} {resource}")]
    Aws {
        /// The failed call, `service:Operation` (`iam:GetRole`).
        call: &'static str,
        /// What the call was about: a resource name, id or key (`ferry-lambda`).
        resource: String,
        /// The SDK's error for the call.
        #[source]
        source: BoxError,
    },
    /// An AWS call answered, but refused part of the request (`events:PutTargets`).
    #[error("{call} {resource} failed: {why}")]
    AwsRefused {
        /// The call that answered with a refusal, `service:Operation` (`events:PutTargets`).
        call: &'static str,
        /// What the call was about (`<rule> -> <function ARN>` for `events:PutTargets`).
        resource: String,
        /// The refusal as AWS reported it (error code and message of the failed entry).
        why: String,
    },
    /// An AWS answer lacks what it must hold (`CreateVpc returned no id`).
    #[error("{what}")]
    Incomplete {
        /// The call and the missing part of its answer (`CreateVpc returned no id`).
        what: String,
    },
    /// A resource with Ferry's name exists but is not this installation's (untagged, another
    /// prefix, someone else's bucket): Ferry neither adopts nor deletes it.
    #[error("{resource} {why}")]
    NotOurs {
        /// Kind and name or id of the resource found (`bucket my-backups`).
        resource: String,
        /// Why it is not this installation's (missing `ferry:installation` tag, other prefix, …).
        why: String,
    },
    /// A resource differs from the config in a way that cannot be changed in place.
    #[error("{resource} {why}")]
    Immutable {
        /// Kind and name or id of the resource that differs.
        resource: String,
        /// What differs from the config and why it cannot be changed in place.
        why: String,
    },
    /// A resource is not in a state to go on with (a failed or pending function, instances
    /// still running, a log group that appeared meanwhile); running apply again may help.
    #[error("{resource} {why}")]
    NotReady {
        /// Kind and name or id of the resource.
        resource: String,
        /// The state it is in and what it waits for.
        why: String,
    },
    /// Something the installation needs does not exist.
    #[error("{what}")]
    NotFound {
        /// What is missing (and what to run first, where that helps).
        what: String,
    },
    /// A limit of AWS or of Ferry would be exceeded (Lambda's package size, NACL rules, pages).
    #[error("{what}")]
    LimitExceeded {
        /// What would exceed which limit (the resource, its size or count, the limit).
        what: String,
    },
    /// The jump box's instance type is not offered where ferry-build would launch it.
    #[error("{problem}")]
    NotOffered {
        /// The configured `jumpbox.instance_type` (`t3.micro`).
        instance_type: String,
        /// The availability zone of the private subnet, where the jump box would run.
        zone: String,
        /// The full message: what is not offered and what to configure instead.
        problem: String,
    },
    /// The caller cannot be made the operator the bucket policies name.
    #[error("{why}")]
    Operator {
        /// ARN of the identity running `ferry infra` (from `sts:GetCallerIdentity`).
        caller: String,
        /// Why its IAM ARN could not be derived, and what to put in `operator_arns` instead.
        why: String,
    },
    /// Ferry refuses to go on without the operator's say (a non-empty backup bucket, an
    /// existing credentials file, a bucket name that does not match).
    #[error("{why}")]
    Refused {
        /// What Ferry will not do without the operator, and why.
        why: String,
    },
    /// An artifact (`bootstrap`, `ferry-gate`) is missing.
    #[error(
        "artifact {} not found (build it with scripts/build-al2023.sh, then pass --artifacts DIR or set {env})",
        path.display()
    )]
    ArtifactMissing {
        /// Where the artifact was looked for (the artifacts directory joined with its name).
        path: PathBuf,
        /// Name of the environment variable that sets the artifacts directory.
        env: &'static str,
        /// The error of reading the file's metadata.
        #[source]
        source: std::io::Error,
    },
    /// An artifact is not what it must be (a regular file, an ELF executable).
    #[error("artifact {} {why}", path.display())]
    ArtifactInvalid {
        /// The artifact's path as it was opened.
        path: PathBuf,
        /// What it is instead (not a regular file, not an ELF executable, too large, …).
        why: String,
    },
    /// Zipping `bootstrap` failed at `step`.
    #[error("{step}")]
    Zip {
        /// The step of building the archive that failed (starting the entry, writing, finishing).
        step: &'static str,
        /// The zip library's or the writer's error.
        #[source]
        source: BoxError,
    },
    /// A local file could not be read, created or written.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done, as a verb (`reading`, `writing`, `creating`).
        action: &'static str,
        /// The local file concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The running executable (whose directory holds the default artifacts) is unknown.
    #[error("locating the running executable")]
    CurrentExe {
        /// The error of `std::env::current_exe`.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime could not start.
    #[error("starting the async runtime")]
    Runtime {
        /// The error of building the Tokio runtime.
        #[source]
        source: std::io::Error,
    },
    /// An SDK request value could not be built.
    #[error("building {what}")]
    Build {
        /// The value being built (`an IAM tag`).
        what: &'static str,
        /// The SDK builder's error (a required field left unset).
        #[source]
        source: BoxError,
    },
    /// A policy document read from the account is not JSON.
    #[error("{what}: not a JSON policy document")]
    PolicyJson {
        /// Which document (the resource and the call that returned it).
        what: String,
        /// The JSON parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The infra config file could not be read.
    #[error("reading infra config {}", path.display())]
    ConfigRead {
        /// The config file's path as given (`--config`).
        path: PathBuf,
        /// The error of reading the file.
        #[source]
        source: std::io::Error,
    },
    /// The infra config is not TOML, or not the config's fields.
    #[error("malformed TOML: {message}")]
    ConfigToml {
        /// The TOML parser's message (without the source excerpt): syntax error, unknown or
        /// missing field.
        message: String,
    },
    /// The infra config holds a value that is refused (names the field).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A problem in the infra config file at `path`.
    #[error("infra config {}", path.display())]
    ConfigFile {
        /// The config file's path as given.
        path: PathBuf,
        /// The problem: [`Error::ConfigToml`] or [`Error::Config`].
        #[source]
        source: Box<Error>,
    },
    /// An ID from the account is not usable in a policy document.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A document could not be serialized.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The report could not be written to the caller's writer.
    #[error(transparent)]
    Output(#[from] std::io::Error),
    /// `source` happened while doing `context` (`apply needs both artifacts in DIR`).
    #[error("{context}")]
    Context {
        /// What was being done when `source` happened, in the operator's words.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// An AWS call that failed.
    pub fn aws(
        call: &'static str,
        resource: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Aws {
            call,
            resource: resource.into(),
            source: Box::new(source),
        }
    }

    /// An AWS answer missing `what`.
    pub fn incomplete(what: impl Into<String>) -> Error {
        Error::Incomplete { what: what.into() }
    }

    /// This error, as the cause of `context`.
    pub fn context(self, context: impl Into<String>) -> Error {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The error and its causes on one line, `error: cause: cause` (as anyhow's `{:#}` prints it).
pub fn report(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// `.aws("iam:GetRole", || name)` on an SDK call's result: the failure names the call and the
/// resource.
pub(crate) trait AwsContext<T> {
    fn aws<R: Into<String>>(self, call: &'static str, resource: impl FnOnce() -> R) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> AwsContext<T> for Result<T, E> {
    fn aws<R: Into<String>>(self, call: &'static str, resource: impl FnOnce() -> R) -> Result<T> {
        self.map_err(|e| Error::aws(call, resource(), e))
    }
}

/// `.missing(|| "CreateVpc returned no id")` on a field of an AWS answer.
pub(crate) trait Missing<T> {
    fn missing<W: Into<String>>(self, what: impl FnOnce() -> W) -> Result<T>;
}

impl<T> Missing<T> for Option<T> {
    fn missing<W: Into<String>>(self, what: impl FnOnce() -> W) -> Result<T> {
        self.ok_or_else(|| Error::incomplete(what()))
    }
}

/// `.io("writing", path)` on a local file operation.
pub(crate) trait IoContext<T> {
    fn io(self, action: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io(self, action: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(action, path, e))
    }
}

/// `.build("an IAM tag")` on an SDK builder's result.
pub(crate) trait BuildContext<T> {
    fn build_ctx(self, what: &'static str) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> BuildContext<T> for Result<T, E> {
    fn build_ctx(self, what: &'static str) -> Result<T> {
        self.map_err(|e| Error::Build {
            what,
            source: Box::new(e),
        })
    }
}
