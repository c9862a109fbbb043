//! `ferry restore --repo DIR --key MASTER_KEY SNAPSHOT --target DIR [--include GLOB] [--parallel N]`

use super::{Global, Outcome, RepoArgs};
use crate::output::{Bar, human, interactive};
use ferry_repo::{Repository, RestoreOptions};
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
}

pub fn run(g: &Global, a: &RestoreArgs) -> anyhow::Result<Outcome> {
    let key = super::master_key(&a.repo, "restore")?;
    let repo = Repository::open(Arc::from(super::storage(&a.repo)?))?;
    let reader = repo.reader(&key)?;
    let snap = reader.resolve_snapshot(&a.snapshot)?;
    super::warn_skipped(&reader);
    let opts = RestoreOptions {
        include: a.include.clone(),
        parallel: usize::from(a.parallel),
        ..RestoreOptions::default()
    };
    let show = interactive(g.quiet);
    let bar = Bar::new(show, show.then_some(snap.snapshot.stats.bytes));
    let result = reader.restore(&snap, &a.target, &opts, &bar);
    bar.finish();
    let st = result?;
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
