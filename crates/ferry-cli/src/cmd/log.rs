//! `ferry log --repo REPO --key MASTER_KEY [--json]`: the record of every forget and prune
//! (`log/` objects), oldest first.

use super::{Global, Outcome, RepoArgs};
use crate::output::human;
use ferry_repo::Repository;
use ferry_repo::retention::log::{self, LogEvent};
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct LogArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Print the records as a JSON array on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_g: &Global, a: &LogArgs) -> anyhow::Result<Outcome> {
    let key = super::master_key(&a.repo, "reading the log")?;
    let repo = Repository::open(Arc::from(super::storage(&a.repo)?))?;
    let (records, bad) = log::read_all(repo.storage().as_ref(), &key)?;
    for (object, why) in &bad {
        eprintln!("warning: skipped unreadable {object}: {why}");
    }
    if a.json {
        let v: Vec<_> = records
            .iter()
            .map(|(name, r)| serde_json::json!({ "id": name, "record": r }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(Outcome::Ok);
    }
    for (name, r) in &records {
        let when: String = r
            .time
            .chars()
            .take(19)
            .collect::<String>()
            .replace('T', " ");
        let short = name.get(..8).unwrap_or(name);
        match &r.event {
            LogEvent::Forget {
                policy,
                removed,
                kept,
            } => {
                println!(
                    "{when}  {short}  forget  on {}: {} removed, {kept} kept ({policy})",
                    r.host,
                    removed.len()
                );
                for s in removed {
                    println!(
                        "    {}  {}  {}  {}",
                        s.id.get(..8).unwrap_or(&s.id),
                        s.time
                            .chars()
                            .take(19)
                            .collect::<String>()
                            .replace('T', " "),
                        s.host,
                        s.paths.join(" ")
                    );
                }
            }
            LogEvent::Prune(p) => println!(
                "{when}  {short}  prune   on {}: {} moved to trash, {} moved back, {} deleted ({}), {} written, {} waiting",
                r.host,
                p.trashed.len(),
                p.rescued.len(),
                p.deleted.len(),
                human(p.deleted_bytes),
                p.written_packs.len(),
                p.trash.len()
            ),
        }
    }
    println!("{} records", records.len());
    Ok(Outcome::Ok)
}
