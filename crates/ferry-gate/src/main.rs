//! # ferry-gate — the jump-box gate binary
//!
//! `ferry-gate serve --config FILE [--sink s3|null]`: run as the OpenSSH forced command of the
//! backup VM's key, speak the Ferry protocol on stdin/stdout, put checked objects into the
//! backup bucket. See the library docs and `docs/PROTOCOL.md`, `docs/JUMPBOX.md`.
//!
//! Exit codes: 0 after a clean BYE; 1 protocol error, truncated stream or disconnect without
//! BYE; 2 bad command line or config; 3 the session expired while connected.

use clap::{Parser, Subcommand, ValueEnum};
use ferry_gate::{NullSink, Session, Settings, Shared, Sink, lock};
use std::path::PathBuf;
use std::process::ExitCode;
use time::OffsetDateTime;

#[derive(Parser)]
#[command(name = "ferry-gate", version, about = "Ferry's jump-box gate")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve one session on stdin/stdout (the SSH forced command).
    Serve {
        /// The session's TOML config (bucket, site, limits, kinds, expiry).
        #[arg(long)]
        config: PathBuf,
        /// Where accepted objects go: the S3 bucket, or nowhere (benchmarks).
        #[arg(long, value_enum, default_value_t = SinkKind::S3)]
        sink: SinkKind,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SinkKind {
    S3,
    Null,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Cmd::Serve { config, sink } = cli.cmd;
    let text = match std::fs::read_to_string(&config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ferry-gate: cannot read config {}: {e}", config.display());
            return ExitCode::from(2);
        }
    };
    let settings = match Settings::from_toml(&text, &config.display().to_string()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ferry-gate: {e}");
            return ExitCode::from(2);
        }
    };
    let sink: Box<dyn Sink> = match sink {
        SinkKind::Null => Box::new(NullSink),
        SinkKind::S3 => match ferry_gate::s3sink::S3Sink::new(&settings.config) {
            Ok(s) => Box::new(s),
            Err(e) => {
                eprintln!("ferry-gate: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let shared = Shared::new(sink, Some(Box::new(|line: &str| eprintln!("{line}"))));

    // Expiry watchdog: at the expiry time, end the session (after any upload in flight),
    // put the audit record and exit, whatever the client is doing. A session already expired
    // at start is refused by the session itself (its HELLO gets a clear ERROR).
    if settings.expires > OffsetDateTime::now_utc() {
        let shared = shared.clone();
        let settings = settings.clone();
        std::thread::spawn(move || {
            loop {
                let left = settings.expires - OffsetDateTime::now_utc();
                if left <= time::Duration::ZERO {
                    break;
                }
                let step = left.min(time::Duration::seconds(60));
                std::thread::sleep(std::time::Duration::from_millis(
                    step.whole_milliseconds().max(1) as u64,
                ));
            }
            let mut g = lock(&shared);
            if g.finished {
                return;
            }
            let reason = format!(
                "session {} expired at {}",
                settings.config.session, settings.config.expires
            );
            if let Err(e) = g.finish(&settings, "expired", Some(reason)) {
                eprintln!("ferry-gate: {e}");
            }
            // An object being received is abandoned: its spool file would outlive the
            // process (exit runs no destructor).
            if let Some(p) = g.spool_file.take() {
                let _ = std::fs::remove_file(p);
            }
            std::process::exit(3);
        });
    }

    let clock = OffsetDateTime::now_utc;
    widen_stdin_pipe();
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    let end = Session::new(stdin, stdout, &settings, shared, &clock).run();
    if let ferry_gate::End::Error(m) = &end {
        eprintln!("ferry-gate: {m}");
    }
    ExitCode::from(end.exit_code() as u8)
}

/// Ask for a 1 MiB pipe buffer on stdin (sshd writes the client's bytes into it): fewer
/// wake-ups of sshd and the gate per megabyte. Best effort: not a pipe, or over the
/// system's `fs.pipe-max-size`, leaves it as it is.
fn widen_stdin_pipe() {
    // SAFETY: fcntl on fd 0 with an integer argument; no memory is passed.
    unsafe {
        libc::fcntl(0, libc::F_SETPIPE_SZ, 1 << 20);
    }
}
