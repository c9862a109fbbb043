//! Everything about output in one place: logs (tracing, to stderr), the progress bar
//! (indicatif, only on a terminal), and the formatting helpers (sizes, counts, times).

use ferry_repo::progress::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// `1.5 KiB`, `2 packs`: the same words the cloud run uses in its own messages.
pub use ferry_run::format::{count, human};

/// `-q`: errors only; default: warnings; `-v` info, `-vv` debug, `-vvv` trace.
/// `RUST_LOG` overrides.
pub fn init_tracing(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Whether ssh should log its own debug lines (`LogLevel=DEBUG1`, as `ssh -v`) into ours:
/// when debug logging is on (`-vv`, or `RUST_LOG=debug`). The gate connection and LAN hosts
/// take it as an option; they never look at the command line.
pub fn ssh_debug() -> bool {
    tracing::enabled!(tracing::Level::DEBUG)
}

/// Whether human-oriented output (progress, summaries on stderr) should be drawn.
pub fn interactive(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// Progress for backup and restore: a bar with files, bytes, rate and ETA on a terminal,
/// nothing otherwise. Unreadable entries are logged as warnings as they happen.
pub struct Bar {
    bar: Option<ProgressBar>,
    files: AtomicU64,
    total_files: Option<u64>,
}

impl Bar {
    /// `total_bytes`: the expected amount of data, when known (for the ETA).
    pub fn new(show: bool, total_bytes: Option<u64>) -> Self {
        let bar = show.then(|| {
            let b = ProgressBar::with_draw_target(total_bytes, ProgressDrawTarget::stderr());
            let style = if total_bytes.is_some() {
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}"
            } else {
                "{spinner} [{elapsed_precise}] {bytes} {binary_bytes_per_sec} {msg}"
            };
            b.set_style(ProgressStyle::with_template(style).unwrap_or_else(|_| ProgressStyle::default_bar()));
            b.enable_steady_tick(std::time::Duration::from_millis(200));
            b
        });
        Bar {
            bar,
            files: AtomicU64::new(0),
            total_files: None,
        }
    }

    /// Show the files done as "n/total files" when the total is known.
    pub fn with_total_files(mut self, total: Option<u64>) -> Self {
        self.total_files = total;
        self
    }

    fn file(&self) {
        let n = self.files.fetch_add(1, Relaxed) + 1;
        if let Some(b) = &self.bar {
            match self.total_files {
                Some(t) => b.set_message(format!("{n}/{t} files")),
                None => b.set_message(format!("{n} files")),
            }
        }
    }

    fn bytes(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// Remove the bar from the terminal.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn file_started(&self, _path: &[u8], _size: u64) {
        self.file();
    }
    fn file_unchanged(&self, _path: &[u8], size: u64) {
        self.file();
        self.bytes(size);
    }
    fn bytes_read(&self, n: u64) {
        self.bytes(n);
    }
    fn error(&self, path: &[u8], message: &str) {
        let p = String::from_utf8_lossy(path).into_owned();
        if let Some(b) = &self.bar {
            b.suspend(|| tracing::warn!("{p}: {message}"));
        } else {
            tracing::warn!("{p}: {message}");
        }
    }
    fn restore_file(&self, _path: &[u8], _size: u64) {
        self.file();
    }
    fn restore_bytes(&self, n: u64) {
        self.bytes(n);
    }
    fn check_object(&self, object: &str) {
        if let Some(b) = &self.bar {
            b.set_message(object.to_string());
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for seconds since the epoch (civil-from-days, H. Hinnant).
pub fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_748_779_200), "2025-06-01 12:00:00");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(super::utc(-1), "1969-12-31 23:59:59");
    }
}
