//! `ferry localcloud ARGS…`: hand over to `ferry-localcloud` (next to this executable, else
//! on `PATH`).

use super::Outcome;
use anyhow::Context;
use std::path::PathBuf;

// (no doc comment: the subcommand's help is the variant's in cli.rs)
#[derive(Debug, clap::Args)]
pub struct LocalcloudArgs {
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<std::ffi::OsString>,
}

pub fn run(a: &LocalcloudArgs) -> anyhow::Result<Outcome> {
    use std::os::unix::process::CommandExt;
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("ferry-localcloud")))
        .filter(|p| p.is_file());
    let program = sibling.unwrap_or_else(|| PathBuf::from("ferry-localcloud"));
    let err = std::process::Command::new(&program).args(&a.args).exec();
    Err(err).with_context(|| {
        format!(
            "running {} (build it with `cargo build -p ferry-localcloud`)",
            program.display()
        )
    })
}
