//! Argument definitions (clap derive). The command forms are fixed by issue 2.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_PARTIAL: u8 = 3;

/// What a command finished with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The backup was written but some source files could not be read.
    Partial,
}

impl From<Outcome> for std::process::ExitCode {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Ok => std::process::ExitCode::from(EXIT_OK),
            Outcome::Partial => std::process::ExitCode::from(EXIT_PARTIAL),
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Encrypted, deduplicating backups that the backed-up machines cannot read or delete.",
    after_help = "Exit codes: 0 ok, 1 error, 2 usage error, 3 partial backup (some source files \
                  unreadable; listed in the summary)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make and inspect keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Back up SOURCE paths into the repository (needs only the put key).
    Backup(BackupArgs),
    /// List the snapshots in the repository (master key).
    Snapshots(SnapshotsArgs),
    /// List the contents of a snapshot (master key).
    Ls(LsArgs),
    /// Restore a snapshot into a directory (master key).
    Restore(RestoreArgs),
    /// Verify the repository (master key); --read-data also decrypts every pack.
    Check(CheckArgs),
    /// Check the configured sources (LAN hosts, local paths) without backing up.
    #[command(subcommand)]
    Sources(crate::cmd::sources::SourcesCommand),
    /// Permanent AWS infrastructure: plan, apply, destroy, show (operator).
    Infra(ferry_cloud::InfraArgs),
    /// The last backup runs: when, result, sizes, cloud usage.
    Status(StatusArgs),
    /// Run `ferry backup` on a schedule (systemd timer).
    #[command(subcommand)]
    Schedule(crate::cmd::schedule::ScheduleCommand),
    /// The embedded local cloud, to try Ferry without an AWS account: `up --dir DIR
    /// [--lan N]`, `status`, `down` (runs `ferry-localcloud`, installed next to `ferry`).
    #[command(disable_help_flag = true)]
    Localcloud {
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new master key and the put key derived from it.
    ///
    /// The master key is protected by a passphrase taken from FERRY_PASSPHRASE, or asked
    /// for on a terminal; an empty passphrase means none.
    Init(KeyInitArgs),
}

#[derive(Debug, Args)]
pub struct KeyInitArgs {
    /// Where to write the master key (must not exist; written 0600).
    #[arg(long, value_name = "MASTER_KEY")]
    pub master: PathBuf,
    /// Where to write the put-only key (must not exist; written 0600).
    #[arg(long, value_name = "PUT_KEY")]
    pub put: PathBuf,
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

#[derive(Debug, Args)]
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
    /// Print a machine-readable summary on stdout.
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

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The config file whose spool keeps the run records.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// How many runs to show.
    #[arg(long, short = 'n', default_value_t = 10)]
    pub last: usize,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Print a JSON array of snapshots on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// A full snapshot id, a unique prefix, or `latest`.
    pub snapshot: String,
    /// Only this path (and below) inside the snapshot.
    pub path: Option<PathBuf>,
}

#[derive(Debug, Args)]
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
}

#[derive(Debug, Args)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
