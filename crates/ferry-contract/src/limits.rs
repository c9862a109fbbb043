//! Defaults of ferry-build's limits, shared by the function (its defaults when a variable is
//! unset) and `ferry infra` (its config's defaults and the worst-case bill `ferry infra plan`
//! prints). What each limit means: docs/LAMBDA.md.

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
