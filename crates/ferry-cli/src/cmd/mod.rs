//! One module per subcommand. Each turns its arguments into engine calls and prints.

mod backup;
mod check;
mod cloud_backup;
mod key;
mod ls;
mod restore;
pub(crate) mod schedule;
mod snapshots;
pub(crate) mod sources;
mod status;

use crate::cli::{Cli, Command, KeyCommand, Outcome, RepoArgs};
use anyhow::Context;
use ferry_repo::keys::{self, AnyKey, MasterKey, Passphrase, PutKey};
use ferry_repo::storage::Storage;
use std::path::PathBuf;

pub(crate) use backup::{count, human};

pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let g = cli.global;
    match cli.command {
        Command::Key(KeyCommand::Init(a)) => key::init(&a),
        Command::Backup(a) => match (&a.config, &a.repo) {
            (Some(c), None) => cloud_backup::run(&g, &a, c),
            (Some(c), Some(_)) => sources::backup(&g, &a, c),
            (None, _) => backup::run(&g, &a),
        },
        Command::Status(a) => status::run(&g, &a),
        Command::Schedule(c) => schedule::run(&g, &c),
        Command::Localcloud { args } => localcloud(&args),
        Command::Sources(c) => sources::run(&g, &c),
        Command::Infra(a) => {
            Ok(ferry_cloud::infra_main(a, &mut std::io::stdout()).map(|_| Outcome::Ok)?)
        }
        Command::Snapshots(a) => snapshots::run(&g, &a),
        Command::Ls(a) => ls::run(&g, &a),
        Command::Restore(a) => restore::run(&g, &a),
        Command::Check(a) => check::run(&g, &a),
    }
}

/// Read a key file of either kind, asking for a passphrase only if it is protected.
fn read_any_key(path: &std::path::Path) -> anyhow::Result<AnyKey> {
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
pub(crate) fn master_key(repo: &RepoArgs, op: &'static str) -> anyhow::Result<MasterKey> {
    Ok(read_any_key(&repo.key)?.into_master(op)?)
}

/// The put key from `--key` (a master key works too: it contains the put key).
pub(crate) fn put_key(repo: &RepoArgs) -> anyhow::Result<PutKey> {
    Ok(read_any_key(&repo.key)?.put_key())
}

pub(crate) fn storage(repo: &RepoArgs) -> anyhow::Result<Box<dyn Storage>> {
    crate::storage::open_storage(&repo.repo, &repo.remote())
        .with_context(|| format!("opening repository {}", repo.repo))
}

/// `--cache-dir`, else `$XDG_CACHE_HOME/ferry` (or `~/.cache/ferry`).
pub(crate) fn cache_dir(g: &crate::cli::Global) -> Option<PathBuf> {
    g.cache_dir.clone()
}

/// `ferry localcloud ARGS…`: hand over to `ferry-localcloud` (next to this executable, else
/// on `PATH`).
fn localcloud(args: &[std::ffi::OsString]) -> anyhow::Result<Outcome> {
    use std::os::unix::process::CommandExt;
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("ferry-localcloud")))
        .filter(|p| p.is_file());
    let program = sibling.unwrap_or_else(|| PathBuf::from("ferry-localcloud"));
    let err = std::process::Command::new(&program).args(args).exec();
    Err(err).with_context(|| {
        format!(
            "running {} (build it with `cargo build -p ferry-localcloud`)",
            program.display()
        )
    })
}
