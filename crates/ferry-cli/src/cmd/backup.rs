//! `ferry backup --repo DIR --key PUT_KEY [--json] SOURCE...`

use super::{Global, Outcome, RepoArgs};
use crate::output::{Bar, human, interactive};
use anyhow::Context;
use ferry_repo::backup::local::backup_paths;
use ferry_repo::{BackupOptions, Repository, SnapshotInfo};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "With --config FILE and no --repo, the run goes through the cloud as the \
    file's [backup] and [cloud] sections say: collect and pack into the spool, ask ferry-build \
    for a jump box, upload through its gate, ask ferry-clean to remove it. An interrupted run \
    is resumed by the next one."
)]
pub struct BackupArgs {
    /// Repository to write to directly (see `ferry snapshots --help`); not needed when the
    /// config file has [backup] and [cloud] sections.
    #[arg(long, env = "FERRY_REPO", value_name = "REPO")]
    pub repo: Option<String>,
    /// Put key file (for --repo; the cloud run takes it from [backup] key).
    #[arg(long, env = "FERRY_KEY", value_name = "KEY")]
    pub key: Option<PathBuf>,
    /// SSH private key for remote repositories.
    #[arg(long, value_name = "KEY")]
    pub identity: Option<PathBuf>,
    /// Pinned SSH host key of the remote end, for remote repositories.
    #[arg(long, value_name = "HOSTKEY")]
    pub host_key: Option<PathBuf>,
    /// Machine-readable output on stdout: JSON lines (status lines, then the summary object
    /// last; human text on stderr), the same for a direct and a cloud run.
    #[arg(long)]
    pub json: bool,
    /// Target pack size, e.g. 32MiB, 512KiB, or bytes.
    #[arg(long, value_name = "SIZE", value_parser = ferry_repo::units::parse_size)]
    pub pack_size: Option<u64>,
    /// Back up the sources of this config file (local paths and LAN hosts over SSH).
    #[arg(long, value_name = "FILE", conflicts_with = "sources")]
    pub config: Option<PathBuf>,
    /// Files and directories to back up.
    #[arg(required_unless_present = "config", value_name = "SOURCE")]
    pub sources: Vec<PathBuf>,
}

impl BackupArgs {
    /// The direct-repository arguments; `--repo` and `--key` are required here.
    pub fn repo_args(&self) -> anyhow::Result<RepoArgs> {
        let (Some(repo), Some(key)) = (self.repo.clone(), self.key.clone()) else {
            anyhow::bail!(
                "--repo and --key are required (or --config FILE with [backup] and [cloud] \
                 sections, to back up through the cloud)"
            );
        };
        Ok(RepoArgs {
            repo,
            key,
            identity: self.identity.clone(),
            host_key: self.host_key.clone(),
        })
    }
}

pub fn run(g: &Global, a: &BackupArgs) -> anyhow::Result<Outcome> {
    // --json: the cloud run's JSON lines (status lines, the summary last), also on failure.
    let direct = a
        .json
        .then(|| ferry_run::DirectRun::start(Box::new(std::io::stdout())));
    let r = backup(g, a, direct.as_ref());
    if let (Some(d), Err(e)) = (&direct, &r) {
        d.finish(Err(format!("{e:#}")));
    }
    r
}

fn backup(
    g: &Global,
    a: &BackupArgs,
    direct: Option<&ferry_run::DirectRun>,
) -> anyhow::Result<Outcome> {
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
    let total = show.then(|| ferry_repo::backup::local::file_bytes(&a.sources));
    let bar = Arc::new(Bar::new(show, total));
    let progress: Arc<dyn ferry_repo::Progress> = match direct {
        Some(d) => d.progress(Some(bar.clone() as Arc<dyn ferry_repo::Progress>)),
        None => bar.clone(),
    };
    let result = backup_paths(&repo, &key, &a.sources, opts, progress);
    bar.finish();
    let snap = result?;
    let partial = snap.snapshot.is_partial();
    if let Some(d) = direct {
        d.finish(Ok((&snap, None)));
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
