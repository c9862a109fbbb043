//! The top-level parser (clap derive) and the dispatch to one `cmd/*` module per subcommand,
//! each of which owns its own arguments. The command forms are fixed by issue 2.

use crate::cmd::{
    Global, Outcome, backup, check, cloud_backup, forget, generate, key, localcloud, log, ls,
    prune, restore, schedule, snapshots, sources, status,
};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version = concat!(
        env!("CARGO_PKG_VERSION"),
        " (commit ",
        env!("FERRY_GIT_COMMIT"),
        ", ",
        env!("FERRY_BUILD_PROFILE"),
        " build)"
    ),
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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make and inspect keys.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Back up SOURCE paths into the repository (needs only the put key).
    Backup(backup::BackupArgs),
    /// List the snapshots in the repository (master key).
    Snapshots(snapshots::SnapshotsArgs),
    /// List the contents of a snapshot (master key).
    Ls(ls::LsArgs),
    /// Restore a snapshot into a directory (master key).
    Restore(restore::RestoreArgs),
    /// Verify the repository (master key); --read-data also decrypts every pack,
    /// --read-data-subset a part of them.
    Check(check::CheckArgs),
    /// Remove snapshots by a retention policy or by id (master key, operator's storage).
    Forget(forget::ForgetArgs),
    /// Delete what no snapshot needs, in two phases (master key, operator's storage).
    Prune(prune::PruneArgs),
    /// The record of every forget and prune, oldest first (master key).
    Log(log::LogArgs),
    /// Check the configured sources (LAN hosts, local paths) without backing up.
    #[command(subcommand)]
    Sources(sources::SourcesCommand),
    /// Permanent AWS infrastructure: plan, apply, destroy, show (operator).
    Infra(ferry_cloud::InfraArgs),
    /// The last backup runs: when, result, sizes, cloud usage.
    Status(status::StatusArgs),
    /// Run `ferry backup` on a schedule (systemd timer).
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// The embedded local cloud, to try Ferry without an AWS account: `up --dir DIR
    /// [--lan N]`, `status`, `down` (runs `ferry-localcloud`, installed next to `ferry`).
    #[command(disable_help_flag = true)]
    Localcloud(localcloud::LocalcloudArgs),
    /// Write shell completions, man pages and the packaged systemd units (for packagers:
    /// scripts/package-deb.sh).
    Generate(generate::GenerateArgs),
}

/// Run the command.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let g = cli.global;
    match cli.command {
        Command::Key(c) => key::run(&c),
        Command::Backup(a) => match (&a.config, &a.repo) {
            (Some(c), None) => cloud_backup::run(&g, &a, c),
            (Some(c), Some(_)) => sources::backup(&g, &a, c),
            (None, _) => backup::run(&g, &a),
        },
        Command::Status(a) => status::run(&g, &a),
        Command::Schedule(c) => schedule::run(&g, &c),
        Command::Localcloud(a) => localcloud::run(&a),
        Command::Sources(c) => sources::run(&g, &c),
        // `verify` returns 1 after printing which cases differ: that is the process's exit code.
        Command::Infra(a) => Ok(Outcome::of_infra(ferry_cloud::infra_main(
            a,
            &mut std::io::stdout(),
        )?)),
        Command::Snapshots(a) => snapshots::run(&g, &a),
        Command::Ls(a) => ls::run(&g, &a),
        Command::Restore(a) => restore::run(&g, &a),
        Command::Check(a) => check::run(&g, &a),
        Command::Forget(a) => forget::run(&g, &a),
        Command::Prune(a) => prune::run(&g, &a),
        Command::Log(a) => log::run(&g, &a),
        Command::Generate(a) => generate::run(&a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infra_failures_are_the_exit_code() {
        assert_eq!(Outcome::of_infra(0), Outcome::Ok);
        assert_eq!(Outcome::of_infra(1), Outcome::Failed);
        assert_eq!(
            std::process::ExitCode::from(Outcome::of_infra(1)),
            std::process::ExitCode::from(crate::cmd::EXIT_ERROR)
        );
    }
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
