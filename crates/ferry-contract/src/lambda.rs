//! The ferry-build and ferry-clean payloads and answers, and the functions' names.
//!
//! Requests refuse unknown fields (a client asking for something the function does not do gets
//! an error naming the field). Answers accept unknown fields, so a newer function can add some.
//! Checks beyond the shape (a site name's rules, the key's algorithm, the TTL's limits) are the
//! function's (ferry-lambda `payload.rs`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// Suffix of the build function's name (`<installation>-build`).
pub const BUILD_SUFFIX: &str = "-build";
/// Suffix of the clean function's name (`<installation>-clean`).
pub const CLEAN_SUFFIX: &str = "-clean";

/// The build function of an installation.
pub fn build_function(installation: &str) -> String {
    format!("{installation}{BUILD_SUFFIX}")
}

/// The clean function of an installation.
pub fn clean_function(installation: &str) -> String {
    format!("{installation}{CLEAN_SUFFIX}")
}

/// The prefix of every session id ferry-build makes (`fs-YYYYMMDD-HHMMSS-<8 hex>`).
pub const SESSION_ID_PREFIX: &str = "fs-";

/// The longest session id accepted, in bytes.
pub const SESSION_ID_MAX_LEN: usize = 64;

/// Whether `s` has the form of a session id ferry-build makes: [`SESSION_ID_PREFIX`], then
/// lowercase ASCII letters, digits and `-`, at most [`SESSION_ID_MAX_LEN`] bytes in all. The one
/// rule for every side that receives an id: ferry-clean's payload and its sweep (a resource's
/// session tag), and the backup VM's spool note (ferry-build's answer, read back by the next
/// run). Such an id is safe in a file name, a tag value, a shell word and an S3 key.
pub fn is_session_id(s: &str) -> bool {
    s.starts_with(SESSION_ID_PREFIX)
        && s.len() <= SESSION_ID_MAX_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// ferry-build's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildRequest {
    /// The site (repository prefix in the backup bucket).
    pub site: String,
    /// The client's ed25519 public key (`ssh-ed25519 AAAA… [comment]`). When absent, ferry-build
    /// generates a key pair and returns the private half (the seeds' behaviour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Session length; default and maximum come from the function's configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_minutes: Option<u32>,
}

/// ferry-clean's input: exactly one of `session` and `sweep: true` (the function checks).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanRequest {
    /// Remove this session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Remove every expired or orphaned session (the six-hourly rule's input).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sweep: bool,
}

impl CleanRequest {
    /// Remove one session (the client after its upload; the jump box's expiry timer).
    pub fn session(id: &str) -> Self {
        CleanRequest {
            session: Some(id.to_string()),
            sweep: false,
        }
    }

    /// Sweep expired and orphaned sessions (the six-hourly EventBridge rule).
    pub fn sweep() -> Self {
        CleanRequest {
            session: None,
            sweep: true,
        }
    }

    /// The request as the JSON text Lambda receives.
    pub fn to_json(&self) -> String {
        // A struct of strings and a bool always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// ferry-build's answer.
#[derive(Clone, Serialize, Deserialize)]
pub struct BuildResponse {
    /// The session id (`fs-…`).
    pub session: String,
    /// The site the session writes to.
    pub site: String,
    /// The jump box's public address.
    pub host: String,
    /// The jump box's SSH port.
    pub port: u16,
    /// The user to log in as.
    pub user: String,
    /// The jump box's host public key (`ssh-ed25519 AAAA…`), to pin.
    pub host_key: String,
    /// RFC 3339 expiry; the gate refuses everything after it, the box cleans itself up then.
    pub expires: String,
    /// Only when the caller sent no public key: the generated client key (OpenSSH format).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_secret",
        deserialize_with = "de_secret"
    )]
    pub private_key: Option<Zeroizing<String>>,
    /// The public half of the client key that was installed.
    pub client_public_key: String,
}

fn ser_secret<S: Serializer>(v: &Option<Zeroizing<String>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(k) => s.serialize_str(k),
        None => s.serialize_none(),
    }
}

fn de_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Zeroizing<String>>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Zeroizing::new))
}

impl std::fmt::Debug for BuildResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildResponse")
            .field("session", &self.session)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("expires", &self.expires)
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// ferry-clean's answer for one session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanReport {
    /// The session.
    pub session: String,
    /// What was removed: `instance i-…`, `security-group sg-…`, `state sessions/….json`.
    pub removed: Vec<String>,
}

/// ferry-clean's answer to a sweep.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepReport {
    /// Sessions removed.
    pub sessions: Vec<CleanReport>,
    /// Sessions that were cleaned because their resources had no state object.
    pub orphans: Vec<String>,
    /// Unexpired sessions left alone.
    pub kept: Vec<String>,
    /// Whether the sweep listed the state bucket: only when EC2 shows a resource of this
    /// installation (an S3 LIST costs like a PUT; EC2's Describe calls are free).
    #[serde(default)]
    pub states_listed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_on_the_wire() {
        let b = BuildRequest {
            site: "home".into(),
            public_key: Some("ssh-ed25519 AAAA".into()),
            ttl_minutes: Some(30),
        };
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(
            v,
            json!({"site": "home", "public_key": "ssh-ed25519 AAAA", "ttl_minutes": 30})
        );
        assert_eq!(serde_json::from_value::<BuildRequest>(v).unwrap(), b);
        assert_eq!(
            CleanRequest::session("fs-1").to_json(),
            r#"{"session":"fs-1"}"#
        );
        assert_eq!(CleanRequest::sweep().to_json(), r#"{"sweep":true}"#);
        let e = serde_json::from_value::<CleanRequest>(json!({"session": "fs-1", "force": true}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `force`"), "{e}");
    }

    #[test]
    fn build_answer_round_trips_and_never_shows_the_key() {
        let r = BuildResponse {
            session: "fs-1".into(),
            site: "home".into(),
            host: "203.0.113.5".into(),
            port: 22,
            user: "ferry".into(),
            host_key: "ssh-ed25519 AAAAhost".into(),
            expires: "2026-12-02T05:30:00Z".into(),
            private_key: Some(Zeroizing::new("-----BEGIN OPENSSH PRIVATE KEY-----".into())),
            client_public_key: "ssh-ed25519 AAAAclient".into(),
        };
        let text = serde_json::to_string(&r).unwrap();
        let back: BuildResponse = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back.private_key.as_deref().map(|s| s.as_str()),
            r.private_key.as_deref().map(|s| s.as_str())
        );
        assert_eq!(back.host_key, r.host_key);
        assert!(!format!("{r:?}").contains("BEGIN"));
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["private_key"] = serde_json::Value::Null;
        v["added_later"] = json!(1);
        let back: BuildResponse = serde_json::from_value(v).unwrap();
        assert!(back.private_key.is_none());
        let no_key = BuildResponse {
            private_key: None,
            ..back
        };
        assert!(
            !serde_json::to_string(&no_key)
                .unwrap()
                .contains("private_key")
        );
    }

    #[test]
    fn session_ids_have_one_form() {
        for ok in [
            "fs-20261202-120000-0a1b2c3d",
            "fs-",
            "fs-1",
            &format!("fs-{}", "a".repeat(61)),
        ] {
            assert!(is_session_id(ok), "{ok:?}");
        }
        for bad in [
            "",
            "fs",
            "x; rm -rf /",
            "../../etc",
            "FS-1",
            "fs-A",
            "fs-a_b",
            "fs-a b",
            "fs-a/b",
            "fs-\u{e9}",
            "local-1",
            &format!("fs-{}", "a".repeat(62)),
        ] {
            assert!(!is_session_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn function_names() {
        assert_eq!(build_function("ferry"), "ferry-build");
        assert_eq!(clean_function("site2"), "site2-clean");
    }
}
