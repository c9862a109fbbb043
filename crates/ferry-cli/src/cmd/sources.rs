//! `ferry sources check --config FILE` and `ferry backup --config FILE`: the sources of a
//! config file (the backup VM's own paths and LAN hosts reached over SSH), collected by
//! `ferry-collect` into one snapshot.

use super::backup::BackupArgs;
use super::{Global, Outcome};
use anyhow::Context;
use ferry_collect::CheckReport;
use ferry_repo::{BackupOptions, Repository};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, clap::Subcommand)]
pub enum SourcesCommand {
    /// Test each source's connection, host key and paths without backing anything up.
    ///
    /// Exit code 0 when every source is reachable with a matching host key and every
    /// path is readable, 3 otherwise.
    Check(SourcesCheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct SourcesCheckArgs {
    /// Config file with a [sources] section.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Print a JSON report on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &Global, cmd: &SourcesCommand) -> anyhow::Result<Outcome> {
    match cmd {
        SourcesCommand::Check(a) => check(g, a),
    }
}

fn check(g: &Global, a: &SourcesCheckArgs) -> anyhow::Result<Outcome> {
    let cfg = super::load_config(&a.config)?.sources;
    let jobs = ferry_collect::jobs_of(&cfg)?;
    let reports = ferry_collect::check(&jobs, cfg.parallel);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else if !g.quiet {
        for r in &reports {
            match &r.connection {
                Ok(m) => println!("{:<16} {:<28} ok: {m}", r.name, r.origin),
                Err(m) => println!("{:<16} {:<28} FAILED: {m}", r.name, r.origin),
            }
            for (p, s) in &r.paths {
                println!("  {:<10} {}", s, p.display());
            }
        }
    }
    Ok(if reports.iter().all(CheckReport::ok) {
        Outcome::Ok
    } else {
        Outcome::Partial
    })
}

/// `ferry backup --config FILE`: every source of the file into one snapshot.
pub fn backup(g: &Global, a: &BackupArgs, config: &Path) -> anyhow::Result<Outcome> {
    // --json: the cloud run's JSON lines (status lines, the summary last), also on failure.
    let direct = a
        .json
        .then(|| ferry_run::DirectRun::start(Box::new(std::io::stdout())));
    let r = backup_sources(g, a, config, direct.as_ref());
    if let (Some(d), Err(e)) = (&direct, &r) {
        d.finish(Err(format!("{e:#}")));
    }
    r
}

fn backup_sources(
    g: &Global,
    a: &BackupArgs,
    config: &Path,
    direct: Option<&ferry_run::DirectRun>,
) -> anyhow::Result<Outcome> {
    let cfg = super::load_config(config)?.sources;
    let r = a.repo_args()?;
    let key = super::put_key(&r)?;
    let storage: Arc<dyn ferry_repo::storage::Storage> = Arc::from(super::storage(&r)?);
    let repo = Repository::open_or_init(storage, &key)
        .with_context(|| format!("opening repository {}", r.repo))?;
    let mut opts = BackupOptions {
        cache_dir: super::cache_dir(g),
        ..BackupOptions::default()
    };
    if let Some(p) = a.pack_size {
        opts.pack_size = usize::try_from(p).context("pack size too large")?;
    }
    let bar = Arc::new(crate::output::Bar::new(
        crate::output::interactive(g.quiet),
        None,
    ));
    let progress: Arc<dyn ferry_repo::Progress> = match direct {
        Some(d) => d.progress(Some(bar.clone() as Arc<dyn ferry_repo::Progress>)),
        None => bar.clone(),
    };
    let r = ferry_collect::backup(&repo, &key, &cfg, opts, progress);
    bar.finish();
    let (info, report) = r?;
    if let Some(d) = direct {
        d.finish(Ok((&info, Some(&report))));
    } else if !g.quiet {
        eprintln!("snapshot {}", info.id);
        eprint!("{}", report.summary());
    }
    Ok(if report.is_partial() {
        Outcome::Partial
    } else {
        Outcome::Ok
    })
}
