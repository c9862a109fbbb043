//! `ferry snapshots --repo DIR --key MASTER_KEY [--json]`

use super::{Global, Outcome, RepoArgs};
use crate::output::human;
use ferry_repo::Repository;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Print a JSON array of snapshots on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_g: &Global, a: &SnapshotsArgs) -> anyhow::Result<Outcome> {
    let key = super::master_key(&a.repo, "listing snapshots")?;
    let repo = Repository::open(Arc::from(super::storage(&a.repo)?))?;
    let reader = repo.reader(&key)?;
    // Oldest first (the reader sorts by time, then id).
    let snaps = reader.snapshots()?;
    super::warn_skipped(&reader);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&snaps)?);
        return Ok(Outcome::Ok);
    }
    println!(
        "{:<8}  {:<20}  {:<16}  {:>8}  {:>10}  paths",
        "id", "time", "host", "files", "size"
    );
    for s in &snaps {
        let sn = &s.snapshot;
        let time: String = sn
            .time
            .chars()
            .take(19)
            .collect::<String>()
            .replace('T', " ");
        println!(
            "{:<8}  {:<20}  {:<16}  {:>8}  {:>10}  {}{}",
            s.short_id(),
            time,
            sn.host,
            sn.stats.files,
            human(sn.stats.bytes),
            sn.paths.join(" "),
            if sn.is_partial() { "  (partial)" } else { "" }
        );
    }
    println!("{} snapshots", snaps.len());
    Ok(Outcome::Ok)
}
