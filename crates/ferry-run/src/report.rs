//! What a run did ([`RunReport`]), and its record in the spool's `runs.jsonl` (what
//! `ferry status` reads).

use crate::lambda::Session;
use crate::spool::Held;
use ferry_collect::{CollectReport, SourceStatus};
use ferry_repo::{RunUsage, SnapshotInfo};
use serde_json::json;

/// What a run did.
#[derive(Debug)]
pub struct RunReport {
    /// The collection's report; `None` when collection failed as a whole.
    pub report: Option<CollectReport>,
    /// Collection failed (e.g. the spool is full): the run still uploaded what it held.
    pub collect_error: Option<String>,
    /// What the spool held from earlier runs when this one started.
    pub resumed: Held,
    /// The snapshots uploaded (an earlier run's first, this run's last).
    pub snapshots: Vec<SnapshotInfo>,
    /// The jump box's session.
    pub session: Option<Session>,
    /// Some source files or sources could not be read (exit code 3).
    pub partial: bool,
    /// The upload succeeded but removing the jump box failed (a sentence for the user).
    pub clean_error: Option<String>,
    /// The run's cloud usage.
    pub usage: RunUsage,
}

impl RunReport {
    /// `ok`, `partial` or `failed` (as `runs.jsonl` records it).
    pub fn result(&self) -> &'static str {
        if self.clean_error.is_some() || self.collect_error.is_some() {
            "failed"
        } else if self.partial {
            "partial"
        } else {
            "ok"
        }
    }

    /// The `ferry backup --config FILE --json` summary: the snapshots uploaded, each source,
    /// what was resumed, the jump box's session, the cloud usage and any errors.
    pub fn summary_json(&self) -> serde_json::Value {
        json!({
            "snapshots": self.snapshots.iter().map(|s| json!({
                "snapshot": s.id, "time": s.snapshot.time, "partial": s.snapshot.is_partial(),
                "stats": s.snapshot.stats,
            })).collect::<Vec<_>>(),
            "partial": self.partial,
            "collect_error": self.collect_error,
            "sources": self.report.as_ref().map(run_sources_json).unwrap_or_default(),
            "resumed": {"packs": self.resumed.packs, "indexes": self.resumed.indexes,
                        "snapshots": self.resumed.snapshots, "bytes": self.resumed.bytes},
            "session": self.session.as_ref().map(|s| json!({"session": s.session, "host": s.host, "expires": s.expires})),
            "usage": self.usage,
            "clean_error": self.clean_error,
        })
    }

    /// The run's line in `runs.jsonl`.
    pub(crate) fn record(&self, started: &str, finished: &str) -> serde_json::Value {
        let last = self.snapshots.last();
        json!({
            "started": started,
            "finished": finished,
            "result": self.result(),
            "error": self.collect_error.clone().or_else(|| self.clean_error.clone()),
            "snapshot": last.map(|s| s.id.clone()),
            "session": self.session.as_ref().map(|s| s.session.clone()),
            "files": last.map(|s| s.snapshot.stats.files),
            "bytes": last.map(|s| s.snapshot.stats.bytes),
            "bytes_read": last.map(|s| s.snapshot.stats.bytes_read),
            "new_bytes": last.map(|s| s.snapshot.stats.new_bytes),
            "sources": self.report.as_ref().map(run_sources_json).unwrap_or_default(),
            "usage": self.usage,
        })
    }
}

/// Each source of a collection, as JSON (`--json` summaries and run records).
pub fn sources_json(r: &CollectReport) -> Vec<serde_json::Value> {
    r
        .sources
        .iter()
        .map(|s| {
            let (status, reason) = match &s.status {
                SourceStatus::Ok => ("ok", None),
                SourceStatus::Partial => ("partial", None),
                SourceStatus::Failed(m) => ("failed", Some(m.clone())),
            };
            json!({
                "source": s.name,
                "origin": s.origin,
                "status": status,
                "reason": reason,
                "entries": s.entries,
                "files_read": s.files_read,
                "files_unchanged": s.files_unchanged,
                "content_bytes": s.content_bytes,
                "wire_bytes": s.wire_bytes,
                "skipped": s.skipped.iter().map(|(p, why)| json!({"path": p.display().to_string(), "why": format!("{why:?}")})).collect::<Vec<_>>(),
                "errors": s.errors.iter().map(|(p, m)| json!({"path": p.display().to_string(), "message": m})).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// [`sources_json`] with what a cloud run adds: each source's new bytes and dedup ratio.
pub fn run_sources_json(report: &CollectReport) -> Vec<serde_json::Value> {
    let mut v = sources_json(report);
    for (j, s) in v.iter_mut().zip(&report.sources) {
        j["new_bytes"] = json!(s.new_bytes);
        j["dedup_ratio"] = json!(dedup_ratio(s.content_bytes, s.new_bytes));
    }
    v
}

/// The share of the bytes read that was already stored (0.0–1.0).
pub fn dedup_ratio(read: u64, new: u64) -> f64 {
    if read == 0 {
        return 1.0;
    }
    let r = 1.0 - (new as f64 / read as f64);
    (r.clamp(0.0, 1.0) * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use ferry_collect::CheckReport;
    use serde_json::json;
    use std::path::PathBuf;

    /// `ferry sources check --json` prints what the CLI built with `json!` before.
    #[test]
    fn check_report_json_is_unchanged() {
        let old = |r: &CheckReport| {
            json!({
                "source": r.name,
                "origin": r.origin,
                "ok": r.ok(),
                "connection": match &r.connection { Ok(m) => json!({"ok": true, "message": m}), Err(m) => json!({"ok": false, "message": m.to_string()}) },
                "paths": r.paths.iter().map(|(p, s)| json!({"path": p.display().to_string(), "state": s})).collect::<Vec<_>>(),
            })
        };
        let ok = CheckReport {
            name: "nas".into(),
            origin: "backup@10.0.0.2:22".into(),
            connection: Ok("find 4.9, tar 1.35".into()),
            paths: vec![
                (PathBuf::from("/srv/a"), "ok".into()),
                (PathBuf::from("/srv/b"), "missing".into()),
            ],
        };
        let failed = CheckReport {
            connection: Err(ferry_collect::CheckError::MissingTools {
                missing: vec!["no GNU tar".into()],
            }),
            paths: Vec::new(),
            ..ok.clone()
        };
        let reports = vec![ok, failed];
        let before: Vec<_> = reports.iter().map(old).collect();
        assert_eq!(
            serde_json::to_string_pretty(&reports).unwrap(),
            serde_json::to_string_pretty(&before).unwrap()
        );
    }

    /// `ferry status --json` prints what the CLI built with `json!` before.
    #[test]
    fn status_json_is_unchanged() {
        let st = crate::spool::Status {
            runs: vec![
                json!({"result": "ok", "bytes": 3}),
                json!({"result": "failed"}),
            ],
            spool: "/var/spool/ferry".into(),
            waiting_bytes: 42,
        };
        let before = json!({
            "spool": st.spool,
            "waiting_bytes": st.waiting_bytes,
            "runs": st.runs,
        });
        assert_eq!(
            serde_json::to_string_pretty(&st).unwrap(),
            serde_json::to_string_pretty(&before).unwrap()
        );
    }
}
