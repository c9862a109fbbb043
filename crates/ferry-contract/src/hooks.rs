//! The environment a `[hooks]` command of the backup VM's config file runs with (ferry-run
//! sets these; the user's scripts read them). Each hook also inherits Ferry's environment.

/// Which hook runs: `run-before`, `run-after`, `run-failed` or `run-finally`.
pub const HOOK: &str = "FERRY_HOOK";
/// The repository site of the run (`[backup] site`).
pub const SITE: &str = "FERRY_SITE";
/// `success` (the run's result is `ok` or `partial`) or `failure`; unset for `run-before`.
pub const RESULT: &str = "FERRY_RESULT";
/// The run's result as `runs.jsonl` records it: `ok`, `partial`, `failed`, `interrupted`.
pub const STATUS: &str = "FERRY_STATUS";
/// The error (one line, the whole chain) when the run failed; unset otherwise.
pub const ERROR: &str = "FERRY_ERROR";
/// Id of the last snapshot the run uploaded; unset when it uploaded none.
pub const SNAPSHOT: &str = "FERRY_SNAPSHOT";
/// Files in that snapshot.
pub const FILES: &str = "FERRY_FILES";
/// Bytes of file content read from the sources.
pub const BYTES_READ: &str = "FERRY_BYTES_READ";
/// Bytes of new (not deduplicated) content.
pub const BYTES_NEW: &str = "FERRY_BYTES_NEW";
/// Bytes uploaded through the jump box.
pub const BYTES_UPLOADED: &str = "FERRY_BYTES_UPLOADED";
/// The run's duration in whole seconds.
pub const DURATION_SECONDS: &str = "FERRY_DURATION_SECONDS";
/// When the run started (RFC 3339).
pub const STARTED: &str = "FERRY_STARTED";

/// Every name above (a hook's environment has these and no other `FERRY_*` name Ferry sets).
pub const ALL: [&str; 12] = [
    HOOK,
    SITE,
    RESULT,
    STATUS,
    ERROR,
    SNAPSHOT,
    FILES,
    BYTES_READ,
    BYTES_NEW,
    BYTES_UPLOADED,
    DURATION_SECONDS,
    STARTED,
];
