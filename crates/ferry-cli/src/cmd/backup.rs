//! `ferry backup --repo DIR --key PUT_KEY [--json] SOURCE...`

use crate::cli::{BackupArgs, Global, Outcome};
use crate::output::{Bar, interactive};
use anyhow::Context;
use ferry_repo::backup::local::backup_paths;
use ferry_repo::{BackupOptions, Repository, SnapshotInfo};
use std::sync::Arc;

pub fn run(g: &Global, a: &BackupArgs) -> anyhow::Result<Outcome> {
    let r = a.repo_args()?;
    let key = super::put_key(&r)?;
    let storage = super::storage(&r)?;
    let repo = Repository::open_or_init(Arc::from(storage), &key)?;
    let mut opts = BackupOptions {
        cache_dir: super::cache_dir(g),
        ..BackupOptions::default()
    };
    if let Some(size) = a.pack_size {
        opts.pack_size = usize::try_from(size).context("--pack-size is too large")?;
    }
    let show = interactive(g.quiet);
    // The ETA needs a total: a quick metadata-only walk, done only when a bar is shown.
    let total = show.then(|| a.sources.iter().map(|s| tree_size(s, 0)).sum());
    let bar = Arc::new(Bar::new(show, total));
    let result = backup_paths(&repo, &key, &a.sources, opts, bar.clone());
    bar.finish();
    let snap = result?;
    let partial = snap.snapshot.is_partial();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary_json(&snap))?);
    }
    if !g.quiet {
        print_summary(&snap);
    }
    Ok(if partial {
        Outcome::Partial
    } else {
        Outcome::Ok
    })
}

/// The `--json` summary: the snapshot's id and metadata, its statistics, and every entry
/// that could not be read.
fn summary_json(snap: &SnapshotInfo) -> serde_json::Value {
    let s = &snap.snapshot;
    serde_json::json!({
        "snapshot": snap.id,
        "short_id": snap.short_id(),
        "time": s.time,
        "host": s.host,
        "paths": s.paths,
        "partial": s.is_partial(),
        "stats": s.stats,
        "sources": s.sources,
        "errors": s.errors,
    })
}

fn print_summary(snap: &SnapshotInfo) {
    let s = &snap.snapshot;
    let st = &s.stats;
    eprintln!(
        "snapshot {} saved: {} files ({} unchanged), {} dirs, {} symlinks, {} in total; \
         read {}, stored {} new in {} blobs ({} after compression), {} packs, {:.1} s",
        snap.short_id(),
        st.files,
        st.unchanged_files,
        st.dirs,
        st.symlinks,
        human(st.bytes),
        human(st.bytes_read),
        human(st.new_bytes),
        st.new_blobs,
        human(st.stored_bytes),
        st.packs,
        st.duration_ms as f64 / 1000.0
    );
    if s.is_partial() {
        eprintln!(
            "partial backup: {} entries could not be read:",
            s.errors.len().max(st.errors as usize)
        );
        for e in &s.errors {
            eprintln!("  {}: {}", e.path, e.message);
        }
    }
}

/// `1 pack`, `2 packs`: `noun` takes an `s` in the plural.
pub(crate) fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

pub(crate) fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Bytes of regular files under `p` (not following symlinks; unreadable parts count 0).
fn tree_size(p: &std::path::Path, depth: usize) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if m.is_file() {
        return m.len();
    }
    if !m.is_dir() || depth > 256 {
        return 0;
    }
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten().map(|e| tree_size(&e.path(), depth + 1)).sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_take_the_plural_except_for_one() {
        assert_eq!(super::count(1, "pack"), "1 pack");
        assert_eq!(super::count(0, "pack"), "0 packs");
        assert_eq!(super::count(3, "index object"), "3 index objects");
    }
}
