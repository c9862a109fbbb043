//! # ferry — the backup VM's and the operator's command line
//!
//! Arguments and printing only: `cli.rs` parses and dispatches, each `cmd/*.rs` owns one
//! subcommand's arguments and turns them into library calls, `output.rs` holds every
//! formatting helper, the progress bar and the logs. Storage is opened only through
//! [`storage::open_storage`]; keys and passphrases are read here. The logic lives in the
//! libraries: the repository engine (`ferry-repo`), collection (`ferry-collect`), the cloud
//! run (`ferry-run`: spool, Lambda, upload, cleanup — this binary only installs its
//! SIGINT/SIGTERM handler and prints its report), the infrastructure (`ferry-cloud`). It must
//! never grow its own copy of the engine's formats or of the run, and it reaches storage only
//! through the `Storage` trait.
//!
//! Module graph (no cycles): `main` → `cli` → `cmd::*` → `cmd` (shared options), `output`,
//! `storage`, `secret`.
//!
//! Exit codes: 0 success · 1 error · 2 usage error (from the argument parser) ·
//! 3 partial backup (some source files could not be read; they are listed in the summary).

mod cli;
mod cmd;
mod output;
mod secret;
mod storage;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    output::init_tracing(cli.global.verbose, cli.global.quiet);
    match cli::run(cli) {
        Ok(code) => code.into(),
        Err(e) => {
            // `{:#}` prints the whole context chain: "reading key file k: not a Ferry key file".
            eprintln!("error: {e:#}");
            ExitCode::from(cmd::EXIT_ERROR)
        }
    }
}
