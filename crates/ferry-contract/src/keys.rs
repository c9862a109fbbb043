//! Object keys both sides of a bucket must agree on.
//!
//! State bucket: `sessions/<id>.json` (ferry-build writes, ferry-clean and the sweep read and
//! delete), `artifacts/ferry-gate` and `artifacts/bootstrap.zip` (`ferry infra apply` uploads;
//! the jump box and Lambda read them; the local cloud reads the Lambda code from there).
//! Backup bucket: `<site>/audit/…` (the gate's session records).

/// Prefix of the session state objects in the state bucket.
pub const STATE_PREFIX: &str = "sessions/";
/// Prefix of the artifacts in the state bucket.
pub const ARTIFACTS_PREFIX: &str = "artifacts/";
/// Key of the raw `ferry-gate` binary in the state bucket: the jump box downloads it and checks
/// its SHA-256 against [`crate::env::GATE_SHA256`]. Also the default of [`crate::env::GATE_KEY`].
pub const GATE_ARTIFACT: &str = "artifacts/ferry-gate";
/// Key of the Lambda code in the state bucket: a zip with one entry `bootstrap` (mode 0755).
pub const LAMBDA_ARTIFACT: &str = "artifacts/bootstrap.zip";
/// Prefix (inside the site) of the gate's audit records in the backup bucket.
pub const AUDIT_PREFIX: &str = "audit/";

/// The state object of `session`: `sessions/<session>.json`.
pub fn session_state(session: &str) -> String {
    format!("{STATE_PREFIX}{session}.json")
}

/// The session id of a state object's key, if `key` is one (`sessions/<id>.json`).
pub fn session_of_state(key: &str) -> Option<&str> {
    key.strip_prefix(STATE_PREFIX)?
        .strip_suffix(".json")
        .filter(|s| !s.is_empty() && !s.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_keys_round_trip() {
        let k = session_state("fs-20261202-050000-abcd");
        assert_eq!(k, "sessions/fs-20261202-050000-abcd.json");
        assert_eq!(session_of_state(&k), Some("fs-20261202-050000-abcd"));
        assert_eq!(session_of_state("sessions/.json"), None);
        assert_eq!(session_of_state("sessions/a/b.json"), None);
        assert_eq!(session_of_state("artifacts/ferry-gate"), None);
        assert!(GATE_ARTIFACT.starts_with(ARTIFACTS_PREFIX));
        assert!(LAMBDA_ARTIFACT.starts_with(ARTIFACTS_PREFIX));
    }
}
