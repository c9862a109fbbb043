//! Object keys both sides of a bucket must agree on.
//!
//! State bucket: `sessions/<id>.json` (ferry-build writes, ferry-clean and the sweep read and
//! delete), `days/<YYYY-MM-DD>/<site>/<id>.<bytes>` (ferry-build's record of each session it
//! started that UTC day and the byte budget it claimed: its per-day limits count them; kept
//! after the session ends; both expire by the bucket's lifecycle rule), `artifacts/ferry-gate` and `artifacts/bootstrap.zip` (`ferry infra apply` uploads;
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

/// Prefix of ferry-build's day records in the state bucket.
pub const DAY_PREFIX: &str = "days/";

/// Days after which the state bucket's lifecycle rule expires an object under
/// [`STATE_PREFIX`] (`ferry infra` writes the rule). S3 rounds to the next midnight UTC, so a
/// state lives at least 48 h after its last write: far beyond a session (at most 12 h plus the
/// box's 5-minute backstop). Only dead sessions' states are ever old enough; they hold no slot,
/// and the sweep, which lists `sessions/` only when EC2 shows a resource, leaves them to S3.
/// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-expire-general-considerations.html>
pub const STATE_EXPIRY_DAYS: i32 = 2;

/// Days after which the lifecycle rule expires a day record under [`DAY_PREFIX`]: ferry-build
/// reads only today's, so a month of them stays as the operator's history of sessions.
pub const DAY_RECORD_EXPIRY_DAYS: i32 = 35;

/// The prefix of one UTC day's records: `days/<date>/` (`date` is `YYYY-MM-DD`).
pub fn day_prefix(date: &str) -> String {
    format!("{DAY_PREFIX}{date}/")
}

/// The day record of `session` of `site`, started on `date`, which claimed `bytes`:
/// `days/<date>/<site>/<session>.<bytes>`. The claim is in the key so that one LIST of the day
/// counts the sessions and sums each site's claims.
pub fn day_record(date: &str, site: &str, session: &str, bytes: u64) -> String {
    format!("{}{site}/{session}.{bytes}", day_prefix(date))
}

/// One day record, parsed from its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRecord<'a> {
    /// `YYYY-MM-DD`.
    pub date: &'a str,
    /// The session's site.
    pub site: &'a str,
    /// The session id.
    pub session: &'a str,
    /// The byte budget the session claimed.
    pub bytes: u64,
}

/// The day record a key names, if it is one ([`day_record`]'s layout).
pub fn parse_day_record(key: &str) -> Option<DayRecord<'_>> {
    let rest = key.strip_prefix(DAY_PREFIX)?;
    let (date, rest) = rest.split_once('/')?;
    let (site, name) = rest.split_once('/')?;
    let (session, bytes) = name.rsplit_once('.')?;
    let ok = |s: &str| !s.is_empty() && !s.contains('/');
    if !(ok(date) && ok(site) && ok(session) && bytes.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    Some(DayRecord {
        date,
        site,
        session,
        bytes: bytes.parse().ok()?,
    })
}

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

    #[test]
    fn day_records_round_trip() {
        let k = day_record("2026-12-02", "home.lan", "fs-20261202-050000-abcd", 4 << 30);
        assert_eq!(
            k,
            "days/2026-12-02/home.lan/fs-20261202-050000-abcd.4294967296"
        );
        assert!(k.starts_with(&day_prefix("2026-12-02")));
        assert_eq!(
            parse_day_record(&k),
            Some(DayRecord {
                date: "2026-12-02",
                site: "home.lan",
                session: "fs-20261202-050000-abcd",
                bytes: 4 << 30
            })
        );
        for bad in [
            "days/2026-12-02/home/fs-1",
            "days/2026-12-02/home/fs-1.x",
            "days/2026-12-02/home/.5",
            "days/2026-12-02/fs-1.5",
            "days/2026-12-02/a/b/fs-1.5",
            "sessions/fs-1.json",
        ] {
            assert_eq!(parse_day_record(bad), None, "{bad}");
        }
    }
}
