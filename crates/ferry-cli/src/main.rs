//! # ferry — the backup VM's and the operator's command line
//!
//! Thin on purpose: parses arguments, opens storage (only through [`storage::open_storage`]),
//! reads keys and passphrases, shows progress, and calls the repository engine
//! (`ferry-repo`). It owns no repository logic. It must never grow its own copy of the
//! engine's formats, and it reaches storage only through the `Storage` trait.
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
