//! `ferry generate`: what a package ships beside the binary, made from the binary itself so it
//! never drifts from it: shell completions (clap_complete), one man page per subcommand
//! (clap_mangen) and the packaged systemd units (`ferry-run`'s `schedule::packaged_units`).
//! restic has the same command (`restic generate --bash-completion … --man …`).

use super::Outcome;
use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;
use std::path::{Path, PathBuf};

/// At least one output (a usage error, exit 2, names the three when none is given).
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = true)]
pub struct GenerateArgs {
    /// Write the bash, zsh and fish completions into DIR (`ferry.bash`, `_ferry`, `ferry.fish`).
    #[arg(long, value_name = "DIR")]
    pub completions: Option<PathBuf>,
    /// Write one man page per command and subcommand into DIR (`ferry.1`, `ferry-backup.1`, …).
    #[arg(long, value_name = "DIR")]
    pub man: Option<PathBuf>,
    /// Write the Debian package's systemd units into DIR (`ferry-backup.service` and `.timer`,
    /// run as the `ferry` system user with only CAP_DAC_READ_SEARCH).
    #[arg(long, value_name = "DIR")]
    pub units: Option<PathBuf>,
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

pub fn run(a: &GenerateArgs) -> anyhow::Result<Outcome> {
    if let Some(dir) = &a.completions {
        create_dir(dir)?;
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut cmd = crate::cli::Cli::command();
            let path =
                clap_complete::generate_to(shell, &mut cmd, "ferry", dir).with_context(|| {
                    format!("writing the {shell} completion into {}", dir.display())
                })?;
            println!("{}", path.display());
        }
    }
    if let Some(dir) = &a.man {
        create_dir(dir)?;
        let cmd = crate::cli::Cli::command();
        clap_mangen::generate_to(cmd, dir)
            .with_context(|| format!("writing the man pages into {}", dir.display()))?;
        println!("{}", dir.display());
    }
    if let Some(dir) = &a.units {
        create_dir(dir)?;
        for (name, text) in ferry_run::schedule::packaged_units() {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            println!("{}", path.display());
        }
    }
    Ok(Outcome::Ok)
}
