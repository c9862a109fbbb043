//! `--json`: progress as JSON lines (restic's convention), for the cloud run of `ferry backup
//! --config FILE`, for `ferry restore` and for `ferry check`. Every line is one object:
//! `"message_type": "status"` lines while the command goes (an `action` naming the step,
//! `seconds_elapsed`, and the step's figures; while files are read or written at most one a
//! second), then one `"message_type": "summary"` object last, with `duration_seconds`.
//!
//! - Backup ([`JsonLines`]): status lines per step of the run, during collection with
//!   `files_done`, `bytes_done`, `errors`; the summary is the run's record (result, error,
//!   snapshot, sizes, sources, cloud usage, warnings), plus, for a run that uploaded, its
//!   snapshots, session and what it resumed.
//! - Restore ([`RestoreLines`]): `"action": "restoring"` lines with `files_done`, `bytes_done`
//!   and, for a whole snapshot, `total_files`, `total_bytes`, `seconds_remaining`; the summary
//!   has the snapshot, `files`, `dirs`, `symlinks`, `bytes_written` and `storage_reads`.
//! - Check ([`CheckLines`]): `"action": "checking"` lines with `objects_done`; the summary is
//!   the check's report with `storage_reads`.
//!
//! `storage_reads` ([`StorageReads`]) is what the command read from the repository's storage:
//! `get_requests` (`GetObject` requests on `s3://`, file reads on a local directory) and
//! `bytes_fetched`.
//!
//! `ferry backup --repo REPO --json` (straight into a repository, no cloud) writes the backup's
//! lines through [`DirectRun`]: `collecting` status lines, `collected`, then the summary built
//! by the same [`RunReport`] functions as a cloud run's (no session, no usage), plus the
//! snapshot's own fields (`short_id`, `host`, `paths`, `stats`, `errors`).

use crate::report::RunReport;
use crate::run::{Event, RunProgress};
use ferry_collect::CollectReport;
use ferry_repo::SnapshotInfo;
use ferry_repo::progress::Progress;
use ferry_repo::storage::StorageReads;
use ferry_repo::{CheckReport, RestoreStats};
use serde_json::{Value, json};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The writer every command's JSON lines go through: one object a line, the convention's
/// fields added here and nowhere else.
pub struct Lines {
    out: Mutex<Box<dyn Write + Send>>,
    started: Instant,
    /// Milliseconds since start of the last throttled status line.
    last_ms: AtomicU64,
}

impl std::fmt::Debug for Lines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lines").finish_non_exhaustive()
    }
}

impl Lines {
    /// Lines to `out`; `seconds_elapsed` and `duration_seconds` count from now.
    pub fn new(out: Box<dyn Write + Send>) -> Lines {
        Lines {
            out: Mutex::new(out),
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn write(&self, v: &Value) {
        let mut o = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // stdout closed (a reader that went away): the command goes on, the lines are lost.
        let _ = serde_json::to_writer(&mut *o, v)
            .map_err(std::io::Error::from)
            .and_then(|_| o.write_all(b"\n"))
            .and_then(|_| o.flush());
    }

    /// A `"message_type": "status"` line: `fields` (an object) with `action` and
    /// `seconds_elapsed`.
    pub fn status(&self, action: &str, mut fields: Value) {
        fields["message_type"] = json!("status");
        fields["action"] = json!(action);
        fields["seconds_elapsed"] = json!(self.started.elapsed().as_secs());
        self.write(&fields);
    }

    /// [`status`](Self::status), but at most one a second (the others are dropped); `fields`
    /// is called only for a line that is written.
    pub fn status_throttled(&self, action: &str, fields: impl FnOnce() -> Value) {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_ms.load(Ordering::Relaxed);
        if now < last + Duration::from_secs(1).as_millis() as u64
            || self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.status(action, fields());
    }

    /// The `"message_type": "summary"` line: `fields` (an object) with `duration_seconds`
    /// (the seconds since [`new`](Self::new)), unless `fields` has it already.
    pub fn summary(&self, mut fields: Value) {
        fields["message_type"] = json!("summary");
        if fields.get("duration_seconds").is_none() {
            fields["duration_seconds"] = json!(self.seconds());
        }
        self.write(&fields);
    }

    /// Seconds since [`new`](Self::new), to the millisecond.
    pub fn seconds(&self) -> f64 {
        (self.started.elapsed().as_millis() as f64) / 1000.0
    }
}

/// The cloud run's JSON lines: writes them to `out` and forwards everything to an `inner`
/// sink (the human text on stderr), if any.
pub struct JsonLines {
    lines: Arc<Lines>,
    inner: Option<Arc<dyn RunProgress>>,
    counts: Arc<Counts>,
}

impl std::fmt::Debug for JsonLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLines").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Counts {
    files: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
}

impl Counts {
    fn collected(&self) -> Value {
        json!({
            "files_done": self.files.load(Ordering::Relaxed),
            "bytes_done": self.bytes.load(Ordering::Relaxed),
            "errors": self.errors.load(Ordering::Relaxed),
        })
    }
}

impl JsonLines {
    /// JSON lines to `out`, everything also to `inner`.
    pub fn new(out: Box<dyn Write + Send>, inner: Option<Arc<dyn RunProgress>>) -> JsonLines {
        JsonLines {
            lines: Arc::new(Lines::new(out)),
            inner,
            counts: Arc::new(Counts::default()),
        }
    }

    /// The engine's progress during collection: `collecting` status lines, everything also
    /// to `inner`.
    fn collecting(&self, inner: Option<Arc<dyn Progress>>) -> Arc<dyn Progress> {
        Arc::new(Collecting {
            lines: self.lines.clone(),
            counts: self.counts.clone(),
            inner,
        })
    }

    fn status(&self, action: &str, fields: Value) {
        self.lines.status(action, fields);
    }
}

fn held(h: &crate::spool::Held) -> Value {
    json!({"packs": h.packs, "indexes": h.indexes, "snapshots": h.snapshots, "bytes": h.bytes})
}

impl RunProgress for JsonLines {
    fn event(&self, e: Event<'_>) {
        let (action, fields) = match &e {
            Event::Resuming(h) => ("resuming", json!({"held": held(h)})),
            Event::Collecting { sources, spool } => (
                "collecting",
                json!({"sources": sources, "spool": spool.display().to_string()}),
            ),
            Event::CollectFailed(m) => ("collect_failed", json!({"error": m})),
            Event::Building { function, site } => {
                ("building", json!({"function": function, "site": site}))
            }
            Event::Launched(s) => (
                "launched",
                json!({"session": s.session, "host": s.host, "port": s.port, "expires": s.expires}),
            ),
            Event::Connecting { timeout } => {
                ("connecting", json!({"timeout_seconds": timeout.as_secs()}))
            }
            Event::Uploading(h) => ("uploading", json!({"held": held(h)})),
            Event::Repacking {
                stale,
                missing_packs,
            } => (
                "repacking",
                json!({"stale_snapshots": stale, "missing_packs": missing_packs}),
            ),
            Event::Cleaning { function } => ("cleaning", json!({"function": function})),
            Event::Cleaned(m) => ("cleaned", json!({"message": m})),
            Event::LeftBehind(session) => ("left_behind", json!({"session": session})),
            Event::LeftBehindNote(m) => ("left_behind_note", json!({"message": m})),
            Event::Stopping { signal } => ("stopping", json!({"signal": signal})),
            Event::WaitingForBuild => ("waiting_for_build", json!({})),
            Event::StopNote(m) => ("stop_note", json!({"message": m})),
            Event::Stopped => ("stopped", json!({})),
            Event::Hook { hook, program } => ("hook", json!({"hook": hook, "program": program})),
            Event::Warning(m) => ("warning", json!({"message": m})),
        };
        self.status(action, fields);
        if let Some(i) = &self.inner {
            i.event(e);
        }
    }

    fn collection(&self) -> Arc<dyn Progress> {
        self.collecting(self.inner.as_ref().map(|i| i.collection()))
    }

    fn collection_done(&self) {
        self.status("collected", self.counts.collected());
        if let Some(i) = &self.inner {
            i.collection_done();
        }
    }

    fn finished(&self, summary: &Value) {
        let mut s = summary.clone();
        // The run's own figures: from its record's start to its end.
        s["duration_seconds"] = json!(crate::metrics::duration_seconds(summary));
        self.lines.summary(s);
        if let Some(i) = &self.inner {
            i.finished(summary);
        }
    }
}

/// The engine's progress during collection: counts, a status line at most every second.
struct Collecting {
    lines: Arc<Lines>,
    counts: Arc<Counts>,
    inner: Option<Arc<dyn Progress>>,
}

impl Collecting {
    fn tick(&self) {
        self.lines
            .status_throttled("collecting", || self.counts.collected());
    }
}

impl Progress for Collecting {
    fn file_started(&self, path: &[u8], size: u64) {
        self.counts.files.fetch_add(1, Ordering::Relaxed);
        self.tick();
        if let Some(i) = &self.inner {
            i.file_started(path, size);
        }
    }
    fn file_unchanged(&self, path: &[u8], size: u64) {
        self.counts.files.fetch_add(1, Ordering::Relaxed);
        self.tick();
        if let Some(i) = &self.inner {
            i.file_unchanged(path, size);
        }
    }
    fn entry_recorded(&self, path: &[u8]) {
        if let Some(i) = &self.inner {
            i.entry_recorded(path);
        }
    }
    fn bytes_read(&self, n: u64) {
        self.counts.bytes.fetch_add(n, Ordering::Relaxed);
        if let Some(i) = &self.inner {
            i.bytes_read(n);
        }
    }
    fn blob_stored(&self, raw: u64) {
        if let Some(i) = &self.inner {
            i.blob_stored(raw);
        }
    }
    fn blob_deduplicated(&self, raw: u64) {
        if let Some(i) = &self.inner {
            i.blob_deduplicated(raw);
        }
    }
    fn pack_written(&self, name: &str, bytes: u64) {
        if let Some(i) = &self.inner {
            i.pack_written(name, bytes);
        }
    }
    fn error(&self, path: &[u8], message: &str) {
        self.counts.errors.fetch_add(1, Ordering::Relaxed);
        if let Some(i) = &self.inner {
            i.error(path, message);
        }
    }
}

/// A run's summary: its record (what `runs.jsonl` keeps) with `extra`'s keys added where the
/// record has none.
pub(crate) fn merge_summary(mut record: Value, extra: Option<Value>) -> Value {
    if let (Some(obj), Some(Value::Object(extra))) = (record.as_object_mut(), extra) {
        for (k, v) in extra {
            obj.entry(k).or_insert(v);
        }
    }
    record
}

/// `ferry backup --repo REPO --json`: a backup written straight into a repository reports in
/// the same JSON lines as a cloud run.
pub struct DirectRun {
    lines: JsonLines,
    started: String,
}

impl std::fmt::Debug for DirectRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectRun")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl DirectRun {
    /// A run starting now, writing its lines to `out`.
    pub fn start(out: Box<dyn Write + Send>) -> DirectRun {
        DirectRun {
            lines: JsonLines::new(out, None),
            started: crate::run::now_rfc3339(),
        }
    }

    /// The engine's progress for the backup: `collecting` lines, everything also to `inner`
    /// (the terminal's progress bar).
    pub fn progress(&self, inner: Option<Arc<dyn Progress>>) -> Arc<dyn Progress> {
        self.lines.collecting(inner)
    }

    /// The backup ended: the `collected` line and the summary with `result` `ok` or
    /// `partial` and the snapshot, or only the summary with `result` `failed` and the error.
    pub fn finish(&self, outcome: Result<(&SnapshotInfo, Option<&CollectReport>), String>) {
        let finished = crate::run::now_rfc3339();
        let summary = match outcome {
            Ok((snap, report)) => {
                self.lines.collection_done();
                let r = RunReport {
                    report: report.cloned(),
                    collect_error: None,
                    resumed: Default::default(),
                    snapshots: vec![snap.clone()],
                    session: None,
                    partial: snap.snapshot.is_partial()
                        || report.is_some_and(CollectReport::is_partial),
                    clean_error: None,
                    usage: Default::default(),
                };
                let mut record = r.record(&self.started, &finished);
                if report.is_none() {
                    // No collection report (paths given on the command line): the snapshot's
                    // own per-source lines, as the old summary had them.
                    if let Some(o) = record.as_object_mut() {
                        o.remove("sources");
                    }
                }
                let summary = merge_summary(record, Some(snap.summary_json()));
                let mut summary = merge_summary(summary, Some(r.summary_json()));
                // Partial when the snapshot is, or when a source failed as a whole.
                summary["partial"] = json!(r.partial);
                summary
            }
            Err(error) => json!({
                "started": self.started,
                "finished": finished,
                "result": "failed",
                "error": error,
            }),
        };
        self.lines.finished(&summary);
    }
}

/// `ferry restore --json`: a Progress for the restore that writes `"restoring"` status lines
/// (at most one a second) and forwards everything to `inner` (the human bar), then
/// [`summary`](Self::summary).
pub struct RestoreLines {
    lines: Lines,
    /// (files, bytes) of the whole snapshot: known for a full restore, not for `--include`.
    total: Option<(u64, u64)>,
    files: AtomicU64,
    bytes: AtomicU64,
    inner: Option<Arc<dyn Progress>>,
}

impl std::fmt::Debug for RestoreLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreLines").finish_non_exhaustive()
    }
}

impl RestoreLines {
    /// Lines to `out` for a restore of `total` (files, bytes) when known; writes the first
    /// status line.
    pub fn new(
        out: Box<dyn Write + Send>,
        total: Option<(u64, u64)>,
        inner: Option<Arc<dyn Progress>>,
    ) -> RestoreLines {
        let r = RestoreLines {
            lines: Lines::new(out),
            total,
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            inner,
        };
        r.lines.status("restoring", r.figures());
        r
    }

    /// What a status line says: done so far, and with a total the total and the seconds left
    /// at the rate so far (once anything is written).
    fn figures(&self) -> Value {
        let files = self.files.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        let mut v = json!({"files_done": files, "bytes_done": bytes});
        if let Some((total_files, total_bytes)) = self.total {
            v["total_files"] = json!(total_files);
            v["total_bytes"] = json!(total_bytes);
            let secs = self.lines.seconds();
            if bytes > 0 {
                let left = total_bytes.saturating_sub(bytes) as f64 * secs / bytes as f64;
                v["seconds_remaining"] = json!(left.round() as u64);
            }
        }
        v
    }

    /// The summary line: the `snapshot` restored (its id), what was restored (`files`,
    /// `dirs`, `symlinks`, `bytes_written`), `duration_seconds` and the `storage_reads`.
    pub fn summary(&self, snapshot: &str, stats: &RestoreStats, reads: StorageReads) {
        self.lines.summary(json!({
            "snapshot": snapshot,
            "files": stats.files,
            "dirs": stats.dirs,
            "symlinks": stats.symlinks,
            "bytes_written": stats.bytes,
            "storage_reads": reads,
        }));
    }
}

impl Progress for RestoreLines {
    fn restore_file(&self, path: &[u8], size: u64) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.lines.status_throttled("restoring", || self.figures());
        if let Some(i) = &self.inner {
            i.restore_file(path, size);
        }
    }
    fn restore_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.lines.status_throttled("restoring", || self.figures());
        if let Some(i) = &self.inner {
            i.restore_bytes(n);
        }
    }
}

/// `ferry check --json`: a Progress for the check that writes `"checking"` status lines (at
/// most one a second, `objects_done`) and forwards everything to `inner`, then
/// [`summary`](Self::summary).
pub struct CheckLines {
    lines: Lines,
    objects: AtomicU64,
    inner: Option<Arc<dyn Progress>>,
}

impl std::fmt::Debug for CheckLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckLines").finish_non_exhaustive()
    }
}

impl CheckLines {
    /// Lines to `out`; writes the first status line.
    pub fn new(out: Box<dyn Write + Send>, inner: Option<Arc<dyn Progress>>) -> CheckLines {
        let c = CheckLines {
            lines: Lines::new(out),
            objects: AtomicU64::new(0),
            inner,
        };
        c.lines.status("checking", json!({"objects_done": 0}));
        c
    }

    /// The summary line: the check's report (problems, warnings, counts, what was read),
    /// `duration_seconds` and the `storage_reads`.
    pub fn summary(&self, report: &CheckReport, reads: StorageReads) {
        let mut v =
            serde_json::to_value(report).unwrap_or_else(|e| json!({"error": e.to_string()}));
        v["storage_reads"] = json!(reads);
        self.lines.summary(v);
    }
}

impl Progress for CheckLines {
    fn check_object(&self, object: &str) {
        let n = self.objects.fetch_add(1, Ordering::Relaxed) + 1;
        self.lines
            .status_throttled("checking", || json!({"objects_done": n}));
        if let Some(i) = &self.inner {
            i.check_object(object);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

    use super::*;

    /// A `Write` whose bytes stay readable after it was boxed away.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Buf {
        fn lines(&self) -> Vec<Value> {
            let b = self.0.lock().unwrap();
            String::from_utf8_lossy(&b)
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }
    }

    #[test]
    fn restore_lines_count_what_they_are_told_and_end_with_the_summary() {
        let buf = Buf::default();
        let counters = Arc::new(ferry_repo::progress::Counters::default());
        let r = RestoreLines::new(
            Box::new(buf.clone()),
            Some((3, 300)),
            Some(counters.clone()),
        );
        r.restore_bytes(100);
        r.restore_file(b"a", 100);
        r.restore_bytes(200);
        r.restore_file(b"b", 200);
        let snap = "ab".repeat(32);
        let stats = RestoreStats {
            files: 2,
            dirs: 1,
            symlinks: 0,
            bytes: 300,
        };
        r.summary(
            &snap,
            &stats,
            StorageReads {
                get_requests: 4,
                bytes_fetched: 320,
            },
        );
        let lines = buf.lines();
        // The first status line at once; the others within the second are dropped.
        assert_eq!(lines.len(), 2, "{lines:?}");
        let first = &lines[0];
        assert_eq!(first["message_type"], "status");
        assert_eq!(first["action"], "restoring");
        assert_eq!(first["total_files"], 3);
        assert_eq!(first["bytes_done"], 0);
        let s = &lines[1];
        assert_eq!(s["message_type"], "summary");
        assert_eq!(s["snapshot"], snap);
        assert_eq!(s["files"], 2);
        assert_eq!(s["bytes_written"], 300);
        assert_eq!(s["storage_reads"]["get_requests"], 4);
        assert_eq!(s["storage_reads"]["bytes_fetched"], 320);
        assert!(s["duration_seconds"].as_f64().unwrap() >= 0.0);
        // Everything reached the inner sink.
        let c = &counters;
        use ferry_repo::progress::Counters;
        assert_eq!(Counters::get(&c.restored_files), 2);
        assert_eq!(Counters::get(&c.restored_bytes), 300);
        // With a total and bytes written, a status line gives the seconds left.
        let f = r.figures();
        assert_eq!(f["files_done"], 2);
        assert!(f["seconds_remaining"].is_u64(), "{f}");
    }

    #[test]
    fn check_lines_end_with_the_report_and_the_reads() {
        let buf = Buf::default();
        let c = CheckLines::new(Box::new(buf.clone()), None);
        c.check_object("packs/x");
        let report = CheckReport {
            packs: 2,
            packs_read: 2,
            read_data: true,
            ..Default::default()
        };
        c.summary(
            &report,
            StorageReads {
                get_requests: 5,
                bytes_fetched: 10,
            },
        );
        let lines = buf.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["action"], "checking");
        let s = &lines[1];
        assert_eq!(s["message_type"], "summary");
        assert_eq!(s["packs_read"], 2);
        assert_eq!(s["problems"], json!([]));
        assert_eq!(s["storage_reads"]["get_requests"], 5);
    }
}
