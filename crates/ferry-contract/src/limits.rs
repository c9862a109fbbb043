//! Defaults and bounds of ferry-build's limits and jump-box settings, shared by the function
//! (its defaults when a variable is unset) and `ferry infra` (its config's defaults, bounds and
//! the worst-case bill `ferry infra plan` prints). What each limit means: docs/LAMBDA.md.

/// `FERRY_GATE_MAX_SESSION_BYTES`: most bytes one session's gate accepts (1 GiB): five times a
/// daily change of 200 MiB (docs/COST.md), and small enough that a site's day
/// ([`DEFAULT_SITE_BYTES_PER_DAY`]) holds four sessions — each session is granted its whole
/// limit up front, so a site budget no larger than one session would refuse every retry.
pub const DEFAULT_GATE_MAX_SESSION_BYTES: u64 = 1 << 30;
/// `FERRY_GATE_MAX_OBJECT_BYTES`: the largest object the gate accepts (256 MiB).
pub const DEFAULT_GATE_MAX_OBJECT_BYTES: u64 = 256 << 20;
/// `FERRY_MAX_SESSIONS`: concurrent unexpired sessions, all sites together. One site needs
/// one; an installation of several sites sets `jumpbox.max_sessions` to its number of sites,
/// so that sites whose daily runs overlap are never refused (docs/RELIABILITY.md, "Load").
pub const DEFAULT_MAX_SESSIONS: u32 = 1;
/// Most concurrent sessions any installation may configure.
pub const MAX_SESSIONS_LIMIT: u32 = 100;
/// `FERRY_SHUTDOWN_GRACE_MINUTES`: the jump box powers itself off this long after expiry.
pub const DEFAULT_SHUTDOWN_GRACE_MINUTES: u32 = 5;
/// `FERRY_SESSIONS_PER_DAY`: sessions per UTC day, per installation. A daily backup needs one;
/// four leave room for a retry after a failed run and two manual runs.
pub const DEFAULT_SESSIONS_PER_DAY: u32 = 4;
/// `FERRY_SITE_BYTES_PER_DAY`: bytes granted to one site's sessions per UTC day (4 GiB): four
/// full sessions, so the daily run plus retries and manual runs; a first backup larger than a
/// session continues from the spool in the next runs (4 GiB a day).
pub const DEFAULT_SITE_BYTES_PER_DAY: u64 = 4 << 30;
/// Most sessions per day any installation may configure.
pub const SESSIONS_PER_DAY_LIMIT: u32 = 48;
/// Smallest byte budget ferry-build grants a session (the gate's smallest session limit): a
/// site with less left of its day is refused.
pub const MIN_SESSION_BYTES: u64 = 1 << 20;

/// `FERRY_MAX_SESSION_MINUTES`: the longest session ferry-build grants (the config's
/// `jumpbox.max_session_minutes`).
pub const DEFAULT_MAX_SESSION_MINUTES: u32 = 60;
/// Longest session any installation may configure: the jump box must not outlive a working
/// day.
pub const MAX_SESSION_MINUTES_LIMIT: u32 = 720;
/// `FERRY_INSTANCE_TYPE`: the jump box's instance type (free-tier eligible).
pub const DEFAULT_INSTANCE_TYPE: &str = "t3.micro";

// A session's state outlives the session by far. S3 counts whole days from the object's
// creation, rounded to the next midnight UTC: at least `STATE_EXPIRY_DAYS` × 24 h after the
// state's last write (`ready`, in a session's first minutes). Checked at compile time against
// the longest session and the box's shutdown backstop, with a factor 2 to spare; day records
// are read only on their own day.
const _: () = assert!(
    crate::keys::STATE_EXPIRY_DAYS as i64 * 24 * 60
        >= 2 * (MAX_SESSION_MINUTES_LIMIT as i64 + DEFAULT_SHUTDOWN_GRACE_MINUTES as i64)
);
const _: () = assert!(crate::keys::DAY_RECORD_EXPIRY_DAYS >= 2);
