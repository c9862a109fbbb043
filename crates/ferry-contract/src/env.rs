//! Environment variables one Ferry part sets and another reads.
//!
//! The Lambda functions' configuration: `ferry infra apply` (ferry-cloud) sets these on both
//! functions, `bootstrap` (ferry-lambda) reads them at init. What each means, its default and
//! its limits are documented once, in ferry-lambda's `config.rs` and docs/LAMBDA.md.

/// `build` or `clean`; when unset, the suffix of the function's name decides.
pub const HANDLER: &str = "FERRY_HANDLER";
/// The installation prefix; the value of the [`crate::tags::INSTALLATION`] tag.
pub const INSTALLATION: &str = "FERRY_INSTALLATION";
/// Bucket of the session state objects and the artifacts.
pub const STATE_BUCKET: &str = "FERRY_STATE_BUCKET";
/// Bucket the gate writes backups to.
pub const BACKUP_BUCKET: &str = "FERRY_BACKUP_BUCKET";
/// The jump box's public subnet.
pub const SUBNET_ID: &str = "FERRY_SUBNET_ID";
/// Name of the jump box's instance profile.
pub const INSTANCE_PROFILE: &str = "FERRY_INSTANCE_PROFILE";
/// Comma-separated IPv4 CIDRs allowed to reach the jump box's port 22.
pub const ALLOWED_SSH_CIDRS: &str = "FERRY_ALLOWED_SSH_CIDRS";
/// SHA-256 (hex) of the `ferry-gate` artifact the jump box must verify.
pub const GATE_SHA256: &str = "FERRY_GATE_SHA256";
/// Key of the gate artifact in the state bucket (default [`crate::keys::GATE_ARTIFACT`]).
pub const GATE_KEY: &str = "FERRY_GATE_KEY";
/// Function the jump box's expiry timer invokes (default `<installation>-clean`).
pub const CLEAN_FUNCTION: &str = "FERRY_CLEAN_FUNCTION";
/// AMI to launch (default: the newest Amazon Linux 2023 image).
pub const AMI_ID: &str = "FERRY_AMI_ID";
/// The jump box's instance type.
pub const INSTANCE_TYPE: &str = "FERRY_INSTANCE_TYPE";
/// Longest session a caller may ask for, minutes.
pub const MAX_SESSION_MINUTES: &str = "FERRY_MAX_SESSION_MINUTES";
/// Session length when the caller gives none, minutes.
pub const DEFAULT_SESSION_MINUTES: &str = "FERRY_DEFAULT_SESSION_MINUTES";
/// Concurrent unexpired sessions allowed.
pub const MAX_SESSIONS: &str = "FERRY_MAX_SESSIONS";
/// Backstop power-off this long after expiry, minutes.
pub const SHUTDOWN_GRACE_MINUTES: &str = "FERRY_SHUTDOWN_GRACE_MINUTES";
/// The gate's limit per object, bytes.
pub const GATE_MAX_OBJECT_BYTES: &str = "FERRY_GATE_MAX_OBJECT_BYTES";
/// The gate's limit per session, bytes.
pub const GATE_MAX_SESSION_BYTES: &str = "FERRY_GATE_MAX_SESSION_BYTES";
/// How long after a session starts EC2's NotFound answers are taken as not yet propagated.
pub const PROPAGATION_SECONDS: &str = "FERRY_PROPAGATION_SECONDS";
/// Sessions ferry-build starts per UTC day, whatever their site (default
/// [`crate::limits::DEFAULT_SESSIONS_PER_DAY`]).
pub const SESSIONS_PER_DAY: &str = "FERRY_SESSIONS_PER_DAY";
/// Bytes ferry-build grants one site's sessions per UTC day, in total (default
/// [`crate::limits::DEFAULT_SITE_BYTES_PER_DAY`]).
pub const SITE_BYTES_PER_DAY: &str = "FERRY_SITE_BYTES_PER_DAY";

/// Every variable of the functions' configuration, in the order of the documentation table.
pub const LAMBDA: &[&str] = &[
    HANDLER,
    INSTALLATION,
    STATE_BUCKET,
    BACKUP_BUCKET,
    SUBNET_ID,
    INSTANCE_PROFILE,
    ALLOWED_SSH_CIDRS,
    GATE_SHA256,
    GATE_KEY,
    CLEAN_FUNCTION,
    AMI_ID,
    INSTANCE_TYPE,
    MAX_SESSION_MINUTES,
    DEFAULT_SESSION_MINUTES,
    MAX_SESSIONS,
    SHUTDOWN_GRACE_MINUTES,
    GATE_MAX_OBJECT_BYTES,
    GATE_MAX_SESSION_BYTES,
    PROPAGATION_SECONDS,
    SESSIONS_PER_DAY,
    SITE_BYTES_PER_DAY,
];

/// An OpenSSH client config file for every `ssh` the `ferry` client runs (the local cloud writes
/// it into its `env` file; the `[cloud] ssh_config` key of the config file wins over it).
pub const SSH_CONFIG: &str = "FERRY_SSH_CONFIG";
