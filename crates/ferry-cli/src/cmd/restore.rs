//! `ferry restore --repo DIR --key MASTER_KEY SNAPSHOT --target DIR [--include GLOB]`

use crate::cli::{Global, Outcome, RestoreArgs};
use crate::output::{Bar, interactive};
use ferry_repo::{Repository, RestoreOptions};
use std::sync::Arc;

pub fn run(g: &Global, a: &RestoreArgs) -> anyhow::Result<Outcome> {
    let key = super::master_key(&a.repo, "restore")?;
    let repo = Repository::open(Arc::from(super::storage(&a.repo)?))?;
    let reader = repo.reader(&key)?;
    let snap = reader.resolve_snapshot(&a.snapshot)?;
    let opts = RestoreOptions {
        include: a.include.clone(),
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
            super::backup::human(st.bytes)
        );
    }
    Ok(Outcome::Ok)
}
