//! Running `ssh` as a child process: its stderr read on a thread into a capped buffer, its
//! exit status and stderr given back together for error messages, and the process killed
//! and reaped when it is not waited for (on drop, or past a time limit).
//!
//! The stderr buffer keeps the **last** [`STDERR_CAP`] bytes (64 KiB) unless the caller sets
//! another cap: ssh says why it failed at the end. When earlier bytes were dropped, the text
//! starts with a line saying how many. ssh's own debug lines (`debug1: …`, present only with
//! `LogLevel=DEBUG1`, `ferry -vv`) are traced at debug level as they arrive and not kept.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes of a child's stderr kept by default: the last 64 KiB.
pub const STDERR_CAP: usize = 64 * 1024;

/// `ssh` could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot run {program} for {host}: {source}")]
pub struct SpawnError {
    /// The program (`ssh`, or the configured one).
    pub program: String,
    /// Whom it was to reach, as the caller names it (`user@host:port` for the gate, the source's
    /// name for a LAN host).
    pub host: String,
    /// Why the spawn failed: the OS error from [`Command::spawn`] (e.g. program not found),
    /// or an `Other` error when the child came up without its stderr pipe.
    #[source]
    pub source: std::io::Error,
}

/// How a child ended: its exit status (`None`: unknown, e.g. it could not be waited for)
/// and what it wrote on stderr (debug lines left out, capped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Whom ssh was reaching, as the caller names it (`user@host:port` for the gate, the
    /// source's name for a LAN host), for messages.
    pub host: String,
    /// The exit status; `None` when waiting for the child failed.
    pub status: Option<ExitStatus>,
    /// The child's stderr, lossily decoded as UTF-8: the last bytes up to the cap, ssh
    /// `debug…` lines left out, led by an `[N earlier bytes of stderr not kept]` line when
    /// bytes were dropped. Empty if nothing was written.
    pub stderr: String,
}

impl Finished {
    /// The exit code (`None` if killed by a signal or unknown).
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// Exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// `ssh to HOST exited with status N: STDERR` (or `… (no message)`), for errors.
    pub fn describe(&self) -> String {
        let status = match (self.code(), self.status) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(_)) => "was killed by a signal".to_string(),
            (None, None) => "ended with an unknown status".to_string(),
        };
        let text = self.stderr.trim();
        if text.is_empty() {
            format!("ssh to {} {status} (no message)", self.host)
        } else {
            format!("ssh to {} {status}: {text}", self.host)
        }
    }
}

/// A running `ssh` (or any child whose stderr is read the same way). Take its pipes with
/// [`take_stdin`](Self::take_stdin) / [`take_stdout`](Self::take_stdout); end it with
/// [`wait`](Self::wait), [`wait_within`](Self::wait_within) or [`kill`](Self::kill) (each
/// may be called again and returns the same result). Dropped before that, it is killed and
/// reaped.
pub struct SshChild {
    child: Child,
    host: String,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    done: Option<Finished>,
}

impl SshChild {
    /// Start `cmd` with stdin and stdout piped, stderr read into the last [`STDERR_CAP`]
    /// bytes; `host` names it in traces and messages.
    pub fn spawn(cmd: Command, host: &str) -> Result<Self, SpawnError> {
        Self::spawn_with(cmd, host, Stdio::piped(), STDERR_CAP)
    }

    /// [`spawn`](Self::spawn) with another stdin (e.g. [`Stdio::null`]) and stderr cap.
    pub fn spawn_with(
        mut cmd: Command,
        host: &str,
        stdin: Stdio,
        stderr_cap: usize,
    ) -> Result<Self, SpawnError> {
        let program = cmd_program(&cmd);
        let failed = |source| SpawnError {
            program: program.clone(),
            host: host.to_string(),
            source,
        };
        let mut child = cmd
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(failed)?;
        let Some(err) = child.stderr.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(std::io::Error::other(
                "started without its stderr pipe",
            )));
        };
        let stderr = Some(read_stderr(err, stderr_cap, host.to_string()));
        Ok(Self {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            child,
            host: host.to_string(),
            stderr,
            done: None,
        })
    }

    /// The child's stdin (`None` if not piped or already taken).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// The child's stdout (`None` if already taken).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Close stdin (if not taken), wait for the child however long it takes, collect stderr.
    pub fn wait(&mut self) -> Finished {
        self.stdin = None;
        let status = self.child.wait().ok();
        self.finish(status)
    }

    /// Close stdin (if not taken) and wait at most `limit`; then kill and reap the child.
    pub fn wait_within(&mut self, limit: Duration) -> Finished {
        if let Some(d) = &self.done {
            return d.clone();
        }
        self.stdin = None;
        let start = Instant::now();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if start.elapsed() < limit => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    break self.child.wait().ok();
                }
            }
        };
        self.finish(status)
    }

    /// Kill the child (if it still runs), reap it, collect stderr.
    pub fn kill(&mut self) -> Finished {
        if let Some(d) = &self.done {
            return d.clone();
        }
        self.stdin = None;
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        self.finish(status)
    }

    fn finish(&mut self, status: Option<ExitStatus>) -> Finished {
        if let Some(d) = &self.done {
            return d.clone();
        }
        self.stdout = None;
        let stderr = self
            .stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        let d = Finished {
            host: self.host.clone(),
            status,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        };
        self.done = Some(d.clone());
        d
    }
}

impl Drop for SshChild {
    fn drop(&mut self) {
        if self.done.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            // The stderr thread ends at EOF; it is not joined here, so a grandchild that
            // still holds the pipe (a ProxyCommand) cannot hold up the drop.
        }
    }
}

fn cmd_program(cmd: &Command) -> String {
    cmd.get_program().to_string_lossy().into_owned()
}

/// Read `r` line by line on a thread, keeping the last `cap` bytes of the lines that are
/// not ssh debug lines (those are traced for `host`).
fn read_stderr<R: std::io::Read + Send + 'static>(
    r: R,
    cap: usize,
    host: String,
) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut r = BufReader::with_capacity(8192, r);
        let mut kept: Vec<u8> = Vec::new();
        let mut dropped: u64 = 0;
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            if crate::is_debug_line(&text) {
                tracing::debug!("ssh {host}: {}", text.trim_end());
                continue;
            }
            kept.extend_from_slice(&line);
            // Trim in batches (amortised): at most 2 × cap held while reading.
            if kept.len() > cap.saturating_mul(2) {
                dropped += trim_front(&mut kept, cap);
            }
        }
        if kept.len() > cap {
            dropped += trim_front(&mut kept, cap);
        }
        if dropped > 0 {
            let mut out = format!("[{dropped} earlier bytes of stderr not kept]\n").into_bytes();
            out.extend_from_slice(&kept);
            out
        } else {
            kept
        }
    })
}

/// Drop bytes from the front so that at most `cap` remain, starting at a line if one starts
/// in the kept part; returns how many were dropped.
fn trim_front(kept: &mut Vec<u8>, cap: usize) -> u64 {
    let mut cut = kept.len().saturating_sub(cap);
    if let Some(nl) = kept[cut..].iter().position(|&c| c == b'\n')
        && cut + nl + 1 < kept.len()
    {
        cut += nl + 1;
    }
    kept.drain(..cut);
    cut as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn stderr_keeps_the_last_bytes_up_to_the_cap() {
        // 5000 numbered lines (about 49 KB) against a 4 KiB cap; debug lines never kept.
        let mut c = SshChild::spawn_with(
            sh("i=0; while [ $i -lt 5000 ]; do echo \"line $i of the noise\" >&2; echo \"debug1: x $i\" >&2; i=$((i+1)); done; echo 'the reason at the end' >&2; exit 3"),
            "u@h:22",
            Stdio::null(),
            4096,
        )
        .unwrap();
        let f = c.wait();
        assert_eq!(f.code(), Some(3));
        assert!(
            f.stderr.ends_with("the reason at the end\n"),
            "{}",
            f.stderr
        );
        assert!(!f.stderr.contains("debug1:"));
        assert!(!f.stderr.contains("line 0 of"));
        let first = f.stderr.lines().next().unwrap();
        assert!(
            first.starts_with('[') && first.ends_with("earlier bytes of stderr not kept]"),
            "{first}"
        );
        // What is kept after that line is whole lines, within the cap.
        let body = &f.stderr[first.len() + 1..];
        assert!(body.len() <= 4096, "{}", body.len());
        assert!(body.starts_with("line "), "{body}");
        assert!(
            f.describe()
                .starts_with("ssh to u@h:22 exited with status 3: [")
        );
        // Under the cap: everything, no marker.
        let mut c = SshChild::spawn(sh("echo oops >&2; exit 255"), "h").unwrap();
        let f = c.wait();
        assert_eq!((f.code(), f.stderr.as_str()), (Some(255), "oops\n"));
        assert_eq!(f.describe(), "ssh to h exited with status 255: oops");
        assert_eq!(c.wait(), f, "waiting again gives the same result");
    }

    fn alive(pid: u32) -> bool {
        // Reaped processes are gone from /proc (a zombie would still be listed).
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn a_dropped_child_is_killed_and_reaped() {
        let c = SshChild::spawn(sh("exec sleep 600"), "h").unwrap();
        let pid = c.id();
        assert!(alive(pid));
        drop(c);
        assert!(!alive(pid), "pid {pid} still there after drop");
    }

    #[test]
    fn a_child_past_its_limit_is_killed() {
        let mut c = SshChild::spawn(sh("echo started >&2; exec sleep 600"), "h").unwrap();
        let pid = c.id();
        let t = Instant::now();
        let f = c.wait_within(Duration::from_millis(300));
        assert!(t.elapsed() < Duration::from_secs(10));
        assert_eq!(f.code(), None, "killed by a signal");
        assert_eq!(f.stderr, "started\n");
        assert!(f.describe().contains("killed by a signal"));
        assert!(!alive(pid));
        // kill() of a running child, and stdout still readable before that.
        let mut c = SshChild::spawn(sh("echo out; exec sleep 600"), "h").unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(c.take_stdout().unwrap(), 4),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, "out\n");
        assert!(!c.kill().success());
    }

    #[test]
    fn a_missing_program_names_it_and_the_host() {
        let e = SshChild::spawn(Command::new("/nonexistent/ssh"), "u@h:22")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("/nonexistent/ssh") && e.contains("u@h:22"),
            "{e}"
        );
    }
}
