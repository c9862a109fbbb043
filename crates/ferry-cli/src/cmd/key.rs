//! `ferry key init --master MASTER_KEY --put PUT_KEY`

use super::Outcome;
use anyhow::{Context, bail};
use ferry_repo::keys::{MasterKey, Passphrase};
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Write a new master key and the put key derived from it.
    ///
    /// The master key is protected by a passphrase taken from FERRY_PASSPHRASE, or asked
    /// for on a terminal; an empty passphrase means none.
    Init(KeyInitArgs),
}

#[derive(Debug, clap::Args)]
pub struct KeyInitArgs {
    /// Where to write the master key (must not exist; written 0600).
    #[arg(long, value_name = "MASTER_KEY")]
    pub master: PathBuf,
    /// Where to write the put-only key (must not exist; written 0600).
    #[arg(long, value_name = "PUT_KEY")]
    pub put: PathBuf,
}

pub fn run(c: &KeyCommand) -> anyhow::Result<Outcome> {
    match c {
        KeyCommand::Init(a) => init(a),
    }
}

fn init(a: &KeyInitArgs) -> anyhow::Result<Outcome> {
    if a.master == a.put {
        bail!(
            "--master and --put name the same file {}",
            a.master.display()
        );
    }
    // Refuse before asking for a passphrase or writing anything.
    for p in [&a.master, &a.put] {
        if p.symlink_metadata().is_ok() {
            bail!(
                "key file {} already exists; refusing to overwrite it",
                p.display()
            );
        }
    }
    let pass = crate::secret::for_new_key()?.map(|p| Passphrase::new(p.as_str()));
    let master = MasterKey::generate();
    master
        .write_new(&a.master, pass.as_ref())
        .with_context(|| format!("writing the master key {}", a.master.display()))?;
    // The put key is never passphrase-protected: the backup VM runs unattended.
    if let Err(e) = master.put_key().write_new(&a.put, None) {
        // Do not leave a master key without its put key behind.
        let _ = std::fs::remove_file(&a.master);
        return Err(e).with_context(|| format!("writing the put key {}", a.put.display()));
    }
    eprintln!(
        "Wrote the master key {} ({}) and the put key {}.\n\
         Keep the master key offline: it is the only way to restore. \
         The put key can write backups but never read them.",
        a.master.display(),
        if pass.is_some() {
            "passphrase-protected"
        } else {
            "no passphrase"
        },
        a.put.display()
    );
    tracing::info!(repo_id = %master.repo_id(), "new repository keys");
    Ok(Outcome::Ok)
}
