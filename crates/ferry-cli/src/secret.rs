//! Passphrases: from `FERRY_PASSPHRASE`, else a prompt on a terminal, else none.
//! A passphrase is never logged or printed, and is wiped from memory when dropped.

use anyhow::{Context, bail};
use std::io::IsTerminal;
use zeroize::Zeroizing;

pub const ENV: &str = "FERRY_PASSPHRASE";

fn from_env() -> anyhow::Result<Option<Zeroizing<String>>> {
    match std::env::var(ENV) {
        Ok(v) => Ok(Some(Zeroizing::new(v))),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => bail!("{ENV} is not valid UTF-8"),
    }
}

fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// The passphrase for a new master key. `None` (no protection) when it is empty, or when
/// there is neither `FERRY_PASSPHRASE` nor a terminal to ask on.
pub fn for_new_key() -> anyhow::Result<Option<Zeroizing<String>>> {
    let p = match from_env()? {
        Some(p) => p,
        None if interactive() => {
            let a = Zeroizing::new(
                rpassword::prompt_password("Passphrase for the master key (empty = none): ")
                    .context("reading the passphrase from the terminal")?,
            );
            if !a.is_empty() {
                let b = Zeroizing::new(
                    rpassword::prompt_password("Repeat the passphrase: ")
                        .context("reading the passphrase from the terminal")?,
                );
                if *a != *b {
                    bail!("the two passphrases differ; nothing was written");
                }
            }
            a
        }
        None => {
            tracing::info!("no {ENV} and no terminal: the master key gets no passphrase");
            return Ok(None);
        }
    };
    Ok(if p.is_empty() { None } else { Some(p) })
}

/// The passphrase to open the protected key file `what` (named in the prompt).
pub fn for_existing_key(what: &std::path::Path) -> anyhow::Result<Zeroizing<String>> {
    if let Some(p) = from_env()? {
        return Ok(p);
    }
    if interactive() {
        return Ok(Zeroizing::new(
            rpassword::prompt_password(format!("Passphrase for {}: ", what.display()))
                .context("reading the passphrase from the terminal")?,
        ));
    }
    bail!(
        "key file {} is protected by a passphrase: set {ENV} or run on a terminal",
        what.display()
    )
}
