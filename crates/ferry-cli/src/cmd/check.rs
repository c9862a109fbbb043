//! `ferry check --repo DIR --key MASTER_KEY [--read-data]`

use super::{Global, Outcome, RepoArgs};
use crate::output::{Bar, interactive};
use anyhow::bail;
use ferry_repo::Repository;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Also read, decrypt and verify every pack.
    #[arg(long)]
    pub read_data: bool,
    /// Print a machine-readable report on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &Global, a: &CheckArgs) -> anyhow::Result<Outcome> {
    let key = super::master_key(&a.repo, "check")?;
    let repo = Repository::open(Arc::from(super::storage(&a.repo)?))?;
    let bar = Bar::new(interactive(g.quiet), None);
    let result = repo.check(&key, a.read_data, &bar);
    bar.finish();
    let report = result?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
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
                format!(", {} blobs read and verified", report.blobs_verified)
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
