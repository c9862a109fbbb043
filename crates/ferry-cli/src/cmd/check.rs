//! `ferry check --repo DIR --key MASTER_KEY [--read-data] [--read-data-subset SUBSET] [--parallel N] [--json]`

use super::{Global, Outcome, RepoArgs};
use crate::output::{Bar, interactive};
use anyhow::bail;
use ferry_repo::progress::Progress;
use ferry_repo::{DataSubset, ReadData, Repository};
use ferry_run::CheckLines;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Also read, decrypt and verify every pack.
    #[arg(long)]
    pub read_data: bool,
    /// Read, decrypt and verify only a subset of the packs: `n/t` reads group n of t (by the
    /// first byte of each pack's name; 1/t … t/t on t runs read every pack once, t ≤ 256),
    /// `p%` a random p percent of the packs (e.g. 2.5%), a size (e.g. 500M, 2G) random packs
    /// until their sizes add up to it. With --read-data every pack is read.
    #[arg(long, value_name = "SUBSET")]
    pub read_data_subset: Option<DataSubset>,
    /// Packs read at once by --read-data / --read-data-subset (1-256).
    #[arg(long, value_name = "N", default_value_t = ferry_repo::fetch::DEFAULT_PARALLEL as u16,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallel: u16,
    /// JSON lines on stdout (restic's convention): "status" lines with the objects checked,
    /// then one "summary": the report (problems, warnings, counts, packs read), the duration
    /// and the storage reads made (`storage_reads`: `get_requests`, which are S3 GETs on
    /// s3://, and `bytes_fetched`).
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &Global, a: &CheckArgs) -> anyhow::Result<Outcome> {
    let key = super::master_key(&a.repo, "check")?;
    let storage = super::counted_storage(&a.repo)?;
    let repo = Repository::open(storage.clone())?;
    let bar = Arc::new(Bar::new(interactive(g.quiet), None));
    let lines = a
        .json
        .then(|| CheckLines::new(Box::new(std::io::stdout()), Some(bar.clone())));
    let progress: &dyn Progress = match &lines {
        Some(l) => l,
        None => &*bar,
    };
    let read = match (a.read_data, a.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(subset)) => ReadData::Subset(subset),
        (false, None) => ReadData::None,
    };
    let fetch = ferry_repo::fetch::FetchOptions::new(usize::from(a.parallel), 0);
    let result = repo.check_with(&key, read, fetch, progress);
    bar.finish();
    let report = result?;
    if let Some(l) = &lines {
        l.summary(&report, storage.reads());
    }
    if !g.quiet || !report.is_ok() {
        for p in &report.problems {
            eprintln!("problem: {}: {}", p.object, p.message);
        }
    }
    if !g.quiet {
        for w in &report.warnings {
            eprintln!("warning: {}: {}", w.object, w.message);
        }
        eprintln!(
            "checked {} snapshots, {} indexes, {} packs, {} trees, {} data blobs referenced{}",
            report.snapshots,
            report.indexes,
            report.packs,
            report.trees,
            report.data_blobs_referenced,
            if report.read_data {
                let subset = match &report.read_data_subset {
                    Some(s) => format!(" (subset {s})"),
                    None => String::new(),
                };
                format!(
                    ", read {} of {} packs{subset}, {} blobs read and verified",
                    report.packs_read, report.packs, report.blobs_verified
                )
            } else {
                String::new()
            }
        );
    }
    if !report.is_ok() {
        bail!(
            "check found {} problem(s) in repository {}",
            report.problems.len(),
            repo.storage().location()
        );
    }
    if !g.quiet {
        eprintln!("no problems found");
    }
    Ok(Outcome::Ok)
}
