//! Running commands on a LAN host through the system OpenSSH client.
//!
//! The command line is [`ferry_ssh::SshCommand`]'s, the same as the gate connection's:
//! `BatchMode=yes` (never a prompt), `StrictHostKeyChecking=yes` against the source's own
//! known-hosts file only (no global file, no user config: `-F none`), only the configured
//! identity (no agent), no forwarding; the identity and known-hosts paths, the user and the
//! address go through [`ferry_ssh`], so ssh reads exactly them (a known-hosts path with a
//! space is not two files) or they are refused naming them. ssh runs as a
//! [`ferry_ssh::SshChild`]; its stderr is classified into a clear [`SshFailure`]. With
//! [`SshTarget::ssh_debug`] ssh logs at `DEBUG1` and its debug lines are traced (`ferry -vv`).
//!
//! What LAN hosts add to the shared command line: throughput — the AES-GCM ciphers go first
//! ([`ferry_ssh::SshCommand::prefer_aes_gcm`]; every other cipher of OpenSSH's default set
//! stays offered, so a host that lacks them still connects) — and the source's own
//! `connect_timeout`.

use crate::config::HostSource;
use ferry_ssh::{SshChild, SshCommand};
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// How to reach one host.
#[derive(Clone)]
pub struct SshTarget {
    /// The source's name from the config; names the host in traces and ssh's messages.
    pub name: String,
    /// Host name or IP address ssh connects to (validated by the config: no leading `-`).
    pub address: String,
    /// SSH port on the host.
    pub port: u16,
    /// Login user on the host.
    pub user: String,
    /// Private key file, passed to ssh as its only identity (Ferry never reads it).
    pub identity: PathBuf,
    /// The known-hosts file that pins the host's key; the only one ssh consults.
    pub known_hosts: PathBuf,
    /// Seconds ssh waits for the connection (`ConnectTimeout`), from `sources.connect_timeout`.
    pub connect_timeout: u32,
    /// The ssh program (default `ssh`); tests and benchmarks never change it.
    pub program: OsString,
    /// Run ssh at `LogLevel=DEBUG1` (`ssh -v`) so that its debug lines reach the log.
    pub ssh_debug: bool,
}

impl fmt::Debug for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}:{} ({})",
            self.user, self.address, self.port, self.name
        )
    }
}

impl SshTarget {
    /// The target of a `[[sources.host]]`, with the run's `connect_timeout` (seconds), the
    /// `ssh` program and ssh debug off.
    pub fn from_config(h: &HostSource, connect_timeout: u32) -> Self {
        SshTarget {
            name: h.name.clone(),
            address: h.address.clone(),
            port: h.port,
            user: h.user.clone(),
            identity: h.identity.clone(),
            known_hosts: h.known_hosts.clone(),
            connect_timeout,
            program: OsString::from("ssh"),
            ssh_debug: false,
        }
    }

    /// `user@address:port`, for messages.
    pub fn display(&self) -> String {
        format!("{}@{}:{}", self.user, self.address, self.port)
    }

    /// The ssh command line that runs `remote_command` (already quoted for a POSIX shell).
    pub fn ssh(&self, remote_command: &str) -> SshCommand {
        SshCommand::new(
            &self.user,
            &self.address,
            self.port,
            &self.identity,
            &self.known_hosts,
        )
        .program(&self.program)
        .connect_timeout(self.connect_timeout)
        .prefer_aes_gcm()
        .debug(self.ssh_debug)
        .remote_command(remote_command)
    }

    /// The ssh command that runs `remote_command`, or a [`SshFailure::Config`] naming the
    /// path, user or address ssh could not read as itself.
    pub fn command(&self, remote_command: &str) -> Result<Command, SshFailure> {
        let c = self
            .ssh(remote_command)
            .command()
            .map_err(|e| SshFailure::Config(e.to_string()))?;
        tracing::info!(
            "host {}: connecting to {} (host key pinned by {}, identity {})",
            self.name,
            self.display(),
            self.known_hosts.display(),
            self.identity.display()
        );
        Ok(c)
    }

    /// Start ssh running `remote_command` with `stdin` (stdout piped, stderr read into the
    /// last `stderr_cap` bytes); its debug lines are traced under the source's name.
    pub fn spawn(
        &self,
        remote_command: &str,
        stdin: Stdio,
        stderr_cap: usize,
    ) -> Result<SshChild, SshFailure> {
        let c = self.command(remote_command)?;
        SshChild::spawn_with(c, &self.name, stdin, stderr_cap)
            .map_err(|e| SshFailure::Config(e.to_string()))
    }

    /// Check locally what ssh would otherwise fail on with a less clear message.
    pub fn preflight(&self) -> Result<(), SshFailure> {
        for (what, p) in [
            ("identity file", &self.identity),
            ("known-hosts file", &self.known_hosts),
        ] {
            if let Err(e) = std::fs::metadata(p) {
                return Err(SshFailure::Config(format!("{what} {}: {e}", p.display())));
            }
        }
        Ok(())
    }
}

/// Why a connection failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshFailure {
    /// The host presented a key that differs from the pinned one.
    HostKeyChanged(String),
    /// No key for this host in the known-hosts file.
    HostKeyUnknown(String),
    /// Could not reach the host (refused, timed out, no route, name not resolved).
    Unreachable(String),
    /// The host refused our key.
    AuthFailed(String),
    /// A local problem (missing identity or known-hosts file, bad key file permissions).
    Config(String),
    /// Anything else ssh reported (exit status 255).
    Other(String),
}

impl SshFailure {
    /// A short fixed label of the variant (`host key changed`, `unreachable`, …), without
    /// ssh's message.
    pub fn kind(&self) -> &'static str {
        match self {
            SshFailure::HostKeyChanged(_) => "host key changed",
            SshFailure::HostKeyUnknown(_) => "host key unknown",
            SshFailure::Unreachable(_) => "unreachable",
            SshFailure::AuthFailed(_) => "authentication failed",
            SshFailure::Config(_) => "configuration",
            SshFailure::Other(_) => "ssh error",
        }
    }
}

impl fmt::Display for SshFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SshFailure::HostKeyChanged(d) => write!(
                f,
                "host key verification failed: the host's key CHANGED since it was pinned (possible man-in-the-middle, or the host was reinstalled; if expected, update the known-hosts file): {d}"
            ),
            SshFailure::HostKeyUnknown(d) => write!(
                f,
                "host key verification failed: no pinned key for this host in the known-hosts file (add it; Ferry never trusts on first use): {d}"
            ),
            SshFailure::Unreachable(d) => write!(f, "host unreachable: {d}"),
            SshFailure::AuthFailed(d) => {
                write!(
                    f,
                    "authentication failed (is our public key in the user's authorized_keys?): {d}"
                )
            }
            SshFailure::Config(d) => write!(f, "{d}"),
            SshFailure::Other(d) => write!(f, "ssh failed: {d}"),
        }
    }
}

impl std::error::Error for SshFailure {}

/// Classify ssh's stderr after it exited with status 255 (or failed before running the command).
pub fn classify(stderr: &str) -> SshFailure {
    let summary = summarise(stderr);
    let s = &ferry_ssh::without_debug(stderr);
    if s.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || s.contains("Host key for") && s.contains("has changed")
    {
        SshFailure::HostKeyChanged(summary)
    } else if s.contains("Host key verification failed")
        || s.contains("No ") && s.contains("host key is known for")
    {
        SshFailure::HostKeyUnknown(summary)
    } else if s.contains("UNPROTECTED PRIVATE KEY FILE")
        || s.contains("Load key") && s.contains("No such file")
        || s.contains("bad permissions")
    {
        SshFailure::Config(summary)
    } else if s.contains("Permission denied (") || s.contains("Too many authentication failures") {
        SshFailure::AuthFailed(summary)
    } else if [
        "Connection refused",
        "Connection timed out",
        "timed out",
        "No route to host",
        "Network is unreachable",
        "Could not resolve hostname",
        "Name or service not known",
        "Connection reset",
        "Connection closed by",
        "kex_exchange_identification",
    ]
    .iter()
    .any(|p| s.contains(p))
    {
        SshFailure::Unreachable(summary)
    } else {
        SshFailure::Other(summary)
    }
}

/// The meaningful lines of ssh's stderr, joined, without the warning banner art.
pub fn summarise(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('@') && !ferry_ssh::is_debug_line(l))
        .take(6)
        .collect();
    if lines.is_empty() {
        "(no message)".into()
    } else {
        lines.join(" | ")
    }
}

/// Quote bytes as one word for a POSIX shell: `'...'`, with `'` written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        for w in [
            "plain",
            "/var/log/it's here",
            "a b\tc\nd",
            "$(touch /tmp/ferry-pwned)`x`;|&",
            "'",
            "",
            "*?[",
        ] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(w)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), w);
        }
    }

    #[test]
    fn classification() {
        let changed = "@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@\nIT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\nHost key verification failed.\n";
        assert!(matches!(classify(changed), SshFailure::HostKeyChanged(_)));
        let unknown = "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\nHost key verification failed.\n";
        assert!(matches!(classify(unknown), SshFailure::HostKeyUnknown(_)));
        let refused = "ssh: connect to host 127.0.0.1 port 1: Connection refused\n";
        assert!(matches!(classify(refused), SshFailure::Unreachable(_)));
        let denied = "u@127.0.0.1: Permission denied (publickey).\n";
        assert!(matches!(classify(denied), SshFailure::AuthFailed(_)));
        assert!(matches!(classify("weird"), SshFailure::Other(_)));
    }
}
