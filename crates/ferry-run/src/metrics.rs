//! The runs as Prometheus metrics (text exposition format 0.0.4), for node_exporter's
//! textfile collector (`[metrics] textfile`, written after every run) and `ferry status
//! --prometheus` (the same text). Everything comes from the spool's run records
//! (`runs.jsonl`), so both always agree:
//!
//! - `ferry_last_run_*`: the last run (time, success, duration, bytes, cloud usage);
//! - `ferry_last_success_timestamp_seconds`: the last `ok` or `partial` run (0: none yet);
//! - `ferry_source_*{source="…"}`: each source of the last run that collected;
//! - `ferry_spool_waiting_bytes`: what the spool holds for the next run.

use crate::error::{Context, Error};
use crate::spool::Status;
use serde_json::Value;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// `s` as an RFC 3339 time, in Unix seconds.
pub fn unix_seconds(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// Whether a run record's result counts as a successful backup (`ok` or `partial`).
pub fn succeeded(record: &Value) -> bool {
    matches!(record["result"].as_str(), Some("ok" | "partial"))
}

/// A run record's duration in seconds (`finished` − `started`), if both are there.
pub fn duration_seconds(record: &Value) -> Option<i64> {
    let s = unix_seconds(record["started"].as_str()?)?;
    let f = unix_seconds(record["finished"].as_str()?)?;
    Some((f - s).max(0))
}

/// A label value escaped as the exposition format wants it (`\`, `"` and newlines).
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

struct Text(String);

impl Text {
    fn family(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} gauge");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape_label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
    fn one(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, help);
        self.sample(name, &[], value);
    }
}

/// The metrics of a spool's run records (`status` read with all its runs).
pub fn render(status: &Status) -> String {
    let mut t = Text(String::new());
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let time = |v: &Value| {
        v.as_str()
            .and_then(unix_seconds)
            .map_or(0, |s| u64::try_from(s).unwrap_or(0))
    };
    if let Some(last) = status.runs.last() {
        let u = &last["usage"];
        t.one(
            "ferry_last_run_timestamp_seconds",
            "When the last backup run finished (Unix time).",
            time(&last["finished"]),
        );
        t.one(
            "ferry_last_run_success",
            "1 if the last backup run succeeded (result ok or partial), 0 if it failed, was skipped or interrupted.",
            u64::from(succeeded(last)),
        );
        t.one(
            "ferry_last_run_partial",
            "1 if the last backup run could not read some source files (result partial).",
            u64::from(last["result"] == "partial"),
        );
        t.one(
            "ferry_last_run_duration_seconds",
            "How long the last backup run took.",
            duration_seconds(last).map_or(0, |d| d.unsigned_abs()),
        );
        t.one(
            "ferry_last_run_files",
            "Files in the last run's snapshot.",
            n(&last["files"]),
        );
        t.one(
            "ferry_last_run_read_bytes",
            "Bytes of file content the last run read from its sources.",
            n(&last["bytes_read"]),
        );
        t.one(
            "ferry_last_run_new_bytes",
            "Bytes of new (not deduplicated) content in the last run.",
            n(&last["new_bytes"]),
        );
        t.one(
            "ferry_last_run_uploaded_bytes",
            "Bytes the last run uploaded through the jump box.",
            n(&u["uploaded_bytes"]),
        );
        t.one(
            "ferry_last_run_uploaded_objects",
            "Objects the last run uploaded through the jump box.",
            n(&u["uploaded_objects"]),
        );
        t.family(
            "ferry_last_run_s3_requests",
            "S3 requests of the last run, by type (put and list by the gate, get by the jump box).",
        );
        for (ty, key) in [
            ("put", "s3_put_requests"),
            ("list", "s3_list_requests"),
            ("get", "s3_get_requests"),
        ] {
            t.sample("ferry_last_run_s3_requests", &[("type", ty)], n(&u[key]));
        }
        t.one(
            "ferry_last_run_lambda_invocations",
            "Lambda invocations of the last run (ferry-build, ferry-clean).",
            n(&u["lambda_invocations"]),
        );
        t.one(
            "ferry_last_run_jump_box_seconds",
            "Seconds the last run's jump box lived, as the client saw it.",
            n(&u["instance_seconds"]),
        );
    }
    let last_ok = status.runs.iter().rev().find(|r| succeeded(r));
    t.one(
        "ferry_last_success_timestamp_seconds",
        "When the last successful backup run finished (Unix time; 0: none recorded).",
        last_ok.map_or(0, |r| time(&r["finished"])),
    );
    t.one(
        "ferry_spool_waiting_bytes",
        "Bytes the spool holds that are not uploaded yet (the next run uploads them).",
        status.waiting_bytes,
    );
    let sources = status
        .runs
        .iter()
        .rev()
        .filter_map(|r| r["sources"].as_array())
        .find(|s| !s.is_empty());
    if let Some(sources) = sources {
        type Get = fn(&Value) -> u64;
        let families: [(&str, &str, Get); 4] = [
            (
                "ferry_source_success",
                "1 if the source was collected (ok or partial) in the last run that collected, 0 if it failed.",
                |s| u64::from(matches!(s["status"].as_str(), Some("ok" | "partial"))),
            ),
            (
                "ferry_source_unreadable_entries",
                "Entries of the source that could not be read in the last run that collected.",
                |s| s["errors"].as_array().map_or(0, |e| e.len() as u64),
            ),
            (
                "ferry_source_read_bytes",
                "Bytes of file content read from the source in the last run that collected.",
                |s| s["content_bytes"].as_u64().unwrap_or(0),
            ),
            (
                "ferry_source_new_bytes",
                "Bytes of new content from the source in the last run that collected.",
                |s| s["new_bytes"].as_u64().unwrap_or(0),
            ),
        ];
        for (name, help, get) in families {
            t.family(name, help);
            for s in sources {
                let label = s["source"].as_str().unwrap_or("");
                t.sample(name, &[("source", label)], get(s));
            }
        }
    }
    t.0
}

/// Write `text` to `path` as node_exporter documents: a temporary file in the same
/// directory, made readable by everyone (0644: node_exporter runs as its own user), then
/// renamed over `path`, so a scrape never sees half a file.
pub fn write_textfile(path: &Path, text: &str) -> Result<(), Error> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".ferry-metrics-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|_| tmp.as_file().sync_data())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting the mode of {}", tmp.path().display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming the metrics file into place at {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
    }

    #[test]
    fn the_file_appears_whole_and_readable_by_node_exporter() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ferry.prom");
        write_textfile(&p, "a 1\n").unwrap();
        write_textfile(&p, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a 2\n");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["ferry.prom"], "no temporary file is left");
        let e = write_textfile(&d.path().join("missing/ferry.prom"), "x").unwrap_err();
        assert!(crate::error_chain(&e).contains("missing"), "{e}");
    }
}
