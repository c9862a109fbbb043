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

/// The exit code of a command whose reader went away (128 + SIGPIPE, as a shell reports it).
const EXIT_BROKEN_PIPE: i32 = 141;

fn main() -> ExitCode {
    quiet_on_broken_stdout();
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

/// `ferry status | head -1`: when the reader of stdout goes away, `println!` panics ("failed
/// printing to stdout: Broken pipe"). End quietly with 141 instead, as a tool killed by SIGPIPE
/// would. SIGPIPE itself stays ignored (Rust's default): the upload writes to ssh's stdin, and
/// a gate that hangs up must be an error the run reports and the spool survives, not a signal.
fn quiet_on_broken_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(EXIT_BROKEN_PIPE);
        }
        default(info);
    }));
}
