//! One module per subcommand, each with its own arguments; each turns them into library
//! calls and prints. This module holds what they share: the global options, the repository
//! options, the outcome, and reading keys, config files and storage.

pub mod backup;
pub mod check;
pub mod cloud_backup;
pub mod forget;
pub mod generate;
pub mod key;
pub mod localcloud;
pub mod log;
pub mod ls;
pub mod prune;
pub mod restore;
pub mod schedule;
pub mod snapshots;
pub mod sources;
pub mod status;

use anyhow::Context;
use clap::Args;
use ferry_repo::keys::{self, AnyKey, MasterKey, Passphrase, PutKey};
use ferry_repo::storage::Storage;
use ferry_run::FerryConfig;
use std::path::{Path, PathBuf};

pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_PARTIAL: u8 = 3;

/// What a command finished with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The backup was written but some source files could not be read.
    Partial,
    /// The command ran and reported a failure itself (`ferry infra verify`: a case differs).
    Failed,
}

impl Outcome {
    /// `ferry infra`'s exit code: 0 is success, anything else a failure it has reported.
    pub fn of_infra(code: i32) -> Outcome {
        if code == 0 {
            Outcome::Ok
        } else {
            Outcome::Failed
        }
    }
}

impl From<Outcome> for std::process::ExitCode {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Ok => std::process::ExitCode::from(EXIT_OK),
            Outcome::Partial => std::process::ExitCode::from(EXIT_PARTIAL),
            Outcome::Failed => std::process::ExitCode::from(EXIT_ERROR),
        }
    }
}

#[derive(Debug, Args)]
pub struct Global {
    /// More log output (-v info, -vv debug, -vvv trace). Logs go to stderr.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors; no progress bar and no summary on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Local cache directory (default: the XDG cache directory). Safe to delete at any time.
    #[arg(long, env = "FERRY_CACHE_DIR", global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// Where the repository is and which key opens it.
#[derive(Debug, Args)]
pub struct RepoArgs {
    /// Repository: a directory, `gate+ssh://ferry@HOST:PORT/SITE` (upload through a jump
    /// box's gate) or `s3://BUCKET/SITE` (operator reads with admin credentials).
    #[arg(long, env = "FERRY_REPO", value_name = "REPO")]
    pub repo: String,
    /// Key file (the put key for backup, the master key for everything else).
    #[arg(long, env = "FERRY_KEY", value_name = "KEY")]
    pub key: PathBuf,
    /// SSH private key for remote repositories.
    #[arg(long, value_name = "KEY")]
    pub identity: Option<PathBuf>,
    /// Pinned SSH host key of the remote end, for remote repositories.
    #[arg(long, value_name = "HOSTKEY")]
    pub host_key: Option<PathBuf>,
}

impl RepoArgs {
    pub fn remote(&self) -> crate::storage::RemoteOptions {
        crate::storage::RemoteOptions {
            identity: self.identity.clone(),
            host_key: self.host_key.clone(),
        }
    }
}

/// Read a key file of either kind, asking for a passphrase only if it is protected.
pub fn read_any_key(path: &Path) -> anyhow::Result<AnyKey> {
    // The engine's callback can only return engine errors; keep ours aside and report it.
    let mut ours: Option<anyhow::Error> = None;
    let mut ask = || match crate::secret::for_existing_key(path) {
        Ok(p) => Ok(Some(Passphrase::new(p.as_str()))),
        Err(e) => {
            ours = Some(e);
            Ok(None)
        }
    };
    let r = keys::read_key_file(path, &mut ask);
    if let Some(e) = ours {
        return Err(e);
    }
    Ok(r?)
}

/// The master key from `--key`; a put key gets a clear "needs the master key" error.
pub fn master_key(repo: &RepoArgs, op: &'static str) -> anyhow::Result<MasterKey> {
    Ok(read_any_key(&repo.key)?.into_master(op)?)
}

/// The put key from `--key` (a master key works too: it contains the put key).
pub fn put_key(repo: &RepoArgs) -> anyhow::Result<PutKey> {
    Ok(read_any_key(&repo.key)?.put_key())
}

pub fn storage(repo: &RepoArgs) -> anyhow::Result<Box<dyn Storage>> {
    crate::storage::open_storage(&repo.repo, &repo.remote())
        .with_context(|| format!("opening repository {}", repo.repo))
}

/// [`storage`], its reads counted (the `--json` summaries of restore and check).
pub fn counted_storage(
    repo: &RepoArgs,
) -> anyhow::Result<std::sync::Arc<ferry_repo::storage::CountedStorage>> {
    Ok(std::sync::Arc::new(
        ferry_repo::storage::CountedStorage::new(std::sync::Arc::from(storage(repo)?)),
    ))
}

/// `--cache-dir`, else `$XDG_CACHE_HOME/ferry` (or `~/.cache/ferry`).
pub fn cache_dir(g: &Global) -> Option<PathBuf> {
    g.cache_dir.clone()
}

/// The config file at `path`; its LAN hosts' ssh logs debug lines with `-vv`.
pub fn load_config(path: &Path) -> anyhow::Result<FerryConfig> {
    let mut cfg = FerryConfig::load(path)?;
    cfg.sources.ssh_debug = crate::output::ssh_debug();
    Ok(cfg)
}

/// Warn, naming each, about index and snapshot objects the reader skipped as unreadable.
pub fn warn_skipped(reader: &ferry_repo::Reader) {
    for (object, why) in reader.skipped() {
        eprintln!("warning: skipped unreadable {object} (ferry check reports it): {why}");
    }
}
