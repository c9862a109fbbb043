//! The gate's session config (`gate.toml`) and where things live on the jump box.
//!
//! ferry-build writes the file into the jump box's user data with [`GateConfig::to_toml`];
//! `ferry-gate serve --config` reads it with [`GateConfig::from_toml`] (unknown keys refused),
//! then checks the values (ferry-gate's `Settings`).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the gate binary is installed on the jump box.
pub const GATE_PATH: &str = "/usr/local/bin/ferry-gate";
/// Where the session's gate config is written on the jump box.
pub const GATE_CONFIG: &str = "/etc/ferry/gate.toml";
/// The jump box's `authorized_keys` (one line: the client key, forced to the gate).
pub const AUTHORIZED_KEYS: &str = "/etc/ferry/authorized_keys";
/// The gate's spool on the jump box (on disk, owned by the `ferry` user; not `/tmp`, a small
/// tmpfs on AL2023).
pub const GATE_SPOOL: &str = "/var/lib/ferry/spool";
/// The user the client logs in as on the jump box.
pub const JUMPBOX_USER: &str = "ferry";

/// Object kinds a normal backup session may put.
pub const BACKUP_KINDS: [&str; 4] = ["config", "pack", "index", "snapshot"];

/// The session's settings, read from the TOML file given to `serve --config`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// Backup bucket.
    pub bucket: String,
    /// Site prefix inside the bucket (the repository root).
    pub site: String,
    /// Region; the standard AWS chain decides when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Session id (names the audit record; a client HELLO naming another session is refused).
    pub session: String,
    /// RFC 3339 time after which everything is refused.
    pub expires: String,
    /// Largest object accepted, bytes.
    pub max_object_size: u64,
    /// Most bytes accepted in the whole session.
    pub max_session_bytes: u64,
    /// Object kinds this session may put (`config`, `pack`, `index`, `snapshot`).
    pub allowed_kinds: Vec<String>,
    /// Where objects are spooled before upload (default: the system temp dir).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_dir: Option<PathBuf>,
    /// Seconds one S3 request attempt may take, beyond the upload time of its body at 1 MiB/s
    /// (default [`S3_ATTEMPT_TIMEOUT_SECS`]; the gate's retry policy is in docs/JUMPBOX.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_attempt_timeout_secs: Option<u64>,
}

/// The gate's default for [`GateConfig::s3_attempt_timeout_secs`].
pub const S3_ATTEMPT_TIMEOUT_SECS: u64 = 30;

impl GateConfig {
    /// The file's text.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }

    /// Parse the file's text; unknown keys and missing required keys are errors naming the key.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> GateConfig {
        GateConfig {
            bucket: "ferry-backup".into(),
            site: "home".into(),
            region: Some("eu-west-1".into()),
            session: "fs-20261202-050000-abcd".into(),
            expires: "2026-12-02T05:30:00Z".into(),
            max_object_size: 256 << 20,
            max_session_bytes: 8 << 30,
            allowed_kinds: BACKUP_KINDS.iter().map(|k| k.to_string()).collect(),
            spool_dir: Some(GATE_SPOOL.into()),
            s3_attempt_timeout_secs: None,
        }
    }

    #[test]
    fn written_and_read_with_the_same_type() {
        let c = sample();
        let text = c.to_toml().unwrap();
        assert_eq!(GateConfig::from_toml(&text).unwrap(), c);
        // Quotes, backslashes, newlines and `#` in values survive (the serializer escapes them).
        let mut odd = sample();
        odd.site = "a\"b\\c\nd # e".into();
        odd.s3_attempt_timeout_secs = Some(5);
        assert_eq!(GateConfig::from_toml(&odd.to_toml().unwrap()).unwrap(), odd);
        let mut none = sample();
        none.region = None;
        none.spool_dir = None;
        assert_eq!(
            GateConfig::from_toml(&none.to_toml().unwrap()).unwrap(),
            none
        );
    }

    #[test]
    fn unknown_and_missing_keys_are_named() {
        let text = format!("{}extra = 1\n", sample().to_toml().unwrap());
        let e = GateConfig::from_toml(&text).unwrap_err().to_string();
        assert!(e.contains("unknown field `extra`"), "{e}");
        let e = GateConfig::from_toml("bucket = \"b\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field"), "{e}");
    }
}
