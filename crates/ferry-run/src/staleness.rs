//! `ferry status --max-age AGE`: is the last successful run recent enough, and did the last
//! run succeed? For cron and Nagios-style checks: one line, OK or why not. The clock is
//! the caller's (`now`), so tests need not wait.

use crate::metrics::{succeeded, unix_seconds};
use ferry_repo::retention::policy::KeepWithin;
use serde_json::Value;
use time::UtcDateTime;

/// `Ok(one line)` when the last run succeeded (`ok` or `partial`) and finished less than
/// `max_age` before `now`; else `Err(why)`: no run at all, no successful run, the last run
/// failed (with its error), or the last success is older than `max_age`.
pub fn check(runs: &[Value], max_age: &KeepWithin, now: UtcDateTime) -> Result<String, String> {
    let at = |r: &Value| {
        r["finished"]
            .as_str()
            .unwrap_or("an unknown time")
            .to_string()
    };
    let Some(last) = runs.last() else {
        return Err("no backup run recorded yet".into());
    };
    let last_ok = runs.iter().rev().find(|r| succeeded(r));
    if !succeeded(last) {
        let result = last["result"].as_str().unwrap_or("unknown");
        let error = last["error"]
            .as_str()
            .and_then(|e| e.lines().next())
            .unwrap_or("no error recorded");
        let since = match last_ok {
            Some(ok) => format!("last success at {}", at(ok)),
            None => "no successful run recorded".into(),
        };
        return Err(format!(
            "last run {result} at {}: {error} ({since})",
            at(last)
        ));
    }
    let finished = last["finished"].as_str().and_then(unix_seconds);
    let Some(finished) = finished else {
        return Err(format!(
            "the last run's record has no readable finish time ({:?})",
            last["finished"]
        ));
    };
    let cutoff_s = max_age
        .cutoff_ns(now)
        .map_or(i64::MIN, |ns| (ns / 1_000_000_000) as i64);
    let ago = now.unix_timestamp() - finished;
    if finished < cutoff_s {
        return Err(format!(
            "last success at {} ({} ago), older than {max_age}",
            at(last),
            age(ago)
        ));
    }
    let snapshot = last["snapshot"]
        .as_str()
        .map(|s| format!(", snapshot {}", s.get(..8).unwrap_or(s)))
        .unwrap_or_default();
    Ok(format!(
        "OK: last run {} at {} ({} ago){snapshot}",
        last["result"].as_str().unwrap_or("ok"),
        at(last),
        age(ago)
    ))
}

/// `3d 4h`, `5h 12m`, `42s`.
fn age(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m) = (s / 86400, s % 86400 / 3600, s % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(result: &str, finished: &str) -> Value {
        json!({"result": result, "finished": finished, "error": if result == "ok" { Value::Null } else { json!("the box never answered\nmore") }, "snapshot": "0123456789abcdef"})
    }

    fn now() -> UtcDateTime {
        UtcDateTime::from_unix_timestamp(unix_seconds("2026-03-10T12:00:00Z").unwrap()).unwrap()
    }

    #[test]
    fn each_reason_is_said() {
        let max: KeepWithin = "36h".parse().unwrap();
        assert_eq!(
            check(&[], &max, now()).unwrap_err(),
            "no backup run recorded yet"
        );
        assert_eq!(
            check(&[rec("failed", "2026-03-10T11:00:00Z")], &max, now()).unwrap_err(),
            "last run failed at 2026-03-10T11:00:00Z: the box never answered (no successful run recorded)"
        );
        let runs = [
            rec("ok", "2026-03-09T01:00:00Z"),
            rec("interrupted", "2026-03-10T11:00:00Z"),
        ];
        assert_eq!(
            check(&runs, &max, now()).unwrap_err(),
            "last run interrupted at 2026-03-10T11:00:00Z: the box never answered (last success at 2026-03-09T01:00:00Z)"
        );
        // 36 h and 1 s ago: stale; 35 h 59 m ago: fine.
        assert_eq!(
            check(&[rec("ok", "2026-03-08T23:59:59Z")], &max, now()).unwrap_err(),
            "last success at 2026-03-08T23:59:59Z (1d 12h ago), older than 36h"
        );
        assert_eq!(
            check(&[rec("partial", "2026-03-09T00:01:00Z")], &max, now()).unwrap(),
            "OK: last run partial at 2026-03-09T00:01:00Z (1d 11h ago), snapshot 01234567"
        );
        let two_days: KeepWithin = "2d".parse().unwrap();
        assert!(check(&[rec("ok", "2026-03-08T23:59:59Z")], &two_days, now()).is_ok());
    }
}
