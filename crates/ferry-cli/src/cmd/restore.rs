//! `ferry restore --repo DIR --key MASTER_KEY SNAPSHOT --target DIR [--include GLOB] [--parallel N] [--json]`

use super::{Global, Outcome, RepoArgs};
use crate::output::{Bar, human, interactive};
use ferry_repo::progress::Progress;
use ferry_repo::{Repository, RestoreOptions};
use ferry_run::RestoreLines;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// A full snapshot id, a unique prefix, or `latest`.
    pub snapshot: String,
    /// Directory to restore into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub target: PathBuf,
    /// Restore only paths matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Requests to the repository in flight at once (1-256). The default, 8, hides S3's
    /// 20-50 ms latency on a home link; raise it on a fast link to far storage.
    #[arg(long, value_name = "N", default_value_t = ferry_repo::fetch::DEFAULT_PARALLEL as u16,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallel: u16,
    /// JSON lines on stdout (restic's convention): "status" lines with files and bytes done
    /// (and, restoring a whole snapshot, the totals and seconds remaining), then one
    /// "summary" with what was restored, the duration and the storage reads made
    /// (`storage_reads`: `get_requests`, which are S3 GETs on s3://, and `bytes_fetched`).
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &Global, a: &RestoreArgs) -> anyhow::Result<Outcome> {
    large_buffers_from_the_system();
    let key = super::master_key(&a.repo, "restore")?;
    let storage = super::counted_storage(&a.repo)?;
    let repo = Repository::open(storage.clone())?;
    let reader = repo.reader(&key)?;
    let snap = reader.resolve_snapshot(&a.snapshot)?;
    super::warn_skipped(&reader);
    let opts = RestoreOptions {
        include: a.include.clone(),
        parallel: usize::from(a.parallel),
        ..RestoreOptions::default()
    };
    // The whole snapshot's size is known from its stats; an --include restore's is not.
    let stats = &snap.snapshot.stats;
    let total = a.include.is_empty().then_some((stats.files, stats.bytes));
    let show = interactive(g.quiet);
    let bar = Arc::new(Bar::new(show, total.map(|t| t.1)).with_total_files(total.map(|t| t.0)));
    let lines = a
        .json
        .then(|| RestoreLines::new(Box::new(std::io::stdout()), total, Some(bar.clone())));
    let progress: &dyn Progress = match &lines {
        Some(l) => l,
        None => &*bar,
    };
    let result = reader.restore(&snap, &a.target, &opts, progress);
    bar.finish();
    let st = result?;
    if let Some(l) = &lines {
        l.summary(&snap.id, &st, storage.reads());
    }
    if !g.quiet {
        eprintln!(
            "restored snapshot {} into {}: {} files, {} dirs, {} symlinks, {}",
            snap.short_id(),
            a.target.display(),
            st.files,
            st.dirs,
            st.symlinks,
            human(st.bytes)
        );
    }
    Ok(Outcome::Ok)
}

/// glibc serves a large allocation with its own mapping, but each time one is freed it raises
/// that threshold to the freed size (up to 32 MiB). From then on restore's fetched ranges (up
/// to 32 MiB, from eight threads) came from per-thread arenas that keep what is freed: a
/// 513 MiB restore peaked at 155–218 MiB for a reader that holds at most about 90 MiB. A
/// fixed threshold keeps buffers over 8 MiB in their own mappings, given back when freed: the
/// same restore peaks at 86–91 MiB and is no slower (docs/BENCHMARKS.md). Only restore does
/// this: backup and `check` reuse their large buffers well from the arenas, and pay for fresh
/// mappings in page faults (`check --read-data` ~10 % slower when measured).
fn large_buffers_from_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator (it takes glibc's own lock); a value it refused
    // would leave glibc's default in place, which is why its answer is not needed.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
    }
}
