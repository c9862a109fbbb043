//! `ferry backup --config FILE --json`: the run's progress as JSON lines (restic's
//! convention). Every line is one object: `"message_type": "status"` lines while the run
//! goes (an `action` naming the step, `seconds_elapsed`, and the step's figures; during
//! collection at most one a second with `files_done`, `bytes_done`, `errors`), then one
//! `"message_type": "summary"` object last: the run's record (result, error, snapshot,
//! sizes, sources, cloud usage, warnings) with `duration_seconds`, plus, for a run that
//! uploaded, its snapshots, session and what it resumed.
//!
//! `ferry backup --repo REPO --json` (straight into a repository, no cloud) writes the same
//! lines through [`DirectRun`]: `collecting` status lines, `collected`, then the summary built
//! by the same [`RunReport`] functions as a cloud run's (no session, no usage), plus the
//! snapshot's own fields (`short_id`, `host`, `paths`, `stats`, `errors`).

use crate::report::RunReport;
use crate::run::{Event, RunProgress};
use ferry_collect::CollectReport;
use ferry_repo::SnapshotInfo;
use ferry_repo::progress::Progress;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Writes JSON lines to `out` and forwards everything to an `inner` sink (the human text on
/// stderr), if any.
pub struct JsonLines {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    started: Instant,
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
    /// Milliseconds since start of the last collecting line.
    last_ms: AtomicU64,
}

fn write_line(out: &Mutex<Box<dyn Write + Send>>, v: &Value) {
    let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
    // stdout closed (a reader that went away): the run goes on, the lines are lost.
    let _ = serde_json::to_writer(&mut *o, v)
        .map_err(std::io::Error::from)
        .and_then(|_| o.write_all(b"\n"))
        .and_then(|_| o.flush());
}

impl JsonLines {
    /// JSON lines to `out`, everything also to `inner`.
    pub fn new(out: Box<dyn Write + Send>, inner: Option<Arc<dyn RunProgress>>) -> JsonLines {
        JsonLines {
            out: Arc::new(Mutex::new(out)),
            started: Instant::now(),
            inner,
            counts: Arc::new(Counts::default()),
        }
    }

    /// The engine's progress during collection: `collecting` status lines, everything also
    /// to `inner`.
    fn collecting(&self, inner: Option<Arc<dyn Progress>>) -> Arc<dyn Progress> {
        Arc::new(Collecting {
            out: self.out.clone(),
            started: self.started,
            counts: self.counts.clone(),
            inner,
        })
    }

    fn status(&self, action: &str, mut fields: Value) {
        fields["message_type"] = json!("status");
        fields["action"] = json!(action);
        fields["seconds_elapsed"] = json!(self.started.elapsed().as_secs());
        write_line(&self.out, &fields);
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
        let c = &self.counts;
        self.status(
            "collected",
            json!({
                "files_done": c.files.load(Ordering::Relaxed),
                "bytes_done": c.bytes.load(Ordering::Relaxed),
                "errors": c.errors.load(Ordering::Relaxed),
            }),
        );
        if let Some(i) = &self.inner {
            i.collection_done();
        }
    }

    fn finished(&self, summary: &Value) {
        let mut s = summary.clone();
        s["message_type"] = json!("summary");
        s["duration_seconds"] = json!(crate::metrics::duration_seconds(summary));
        write_line(&self.out, &s);
        if let Some(i) = &self.inner {
            i.finished(summary);
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

/// The engine's progress during collection: counts, a status line at most every second.
struct Collecting {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    started: Instant,
    counts: Arc<Counts>,
    inner: Option<Arc<dyn Progress>>,
}

impl Collecting {
    fn tick(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.counts.last_ms.load(Ordering::Relaxed);
        if now < last + Duration::from_secs(1).as_millis() as u64
            || self
                .counts
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let c = &self.counts;
        write_line(
            &self.out,
            &json!({
                "message_type": "status",
                "action": "collecting",
                "seconds_elapsed": now / 1000,
                "files_done": c.files.load(Ordering::Relaxed),
                "bytes_done": c.bytes.load(Ordering::Relaxed),
                "errors": c.errors.load(Ordering::Relaxed),
            }),
        );
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
