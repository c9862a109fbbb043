//! The one `ssh` command line Ferry runs (the gate connection, LAN hosts, the test kit).
//!
//! [`SshCommand`] writes every option out, whatever ssh_config or agent the machine has:
//! `-F FILE` or `-F none`; `-T -x -a` (no tty, no X11, no agent forwarding); `BatchMode=yes`;
//! `StrictHostKeyChecking=yes` against the one known-hosts file given (no global file, no
//! `KnownHostsCommand`, no DNS, no `CheckHostIP`, no `UpdateHostKeys`); the one identity
//! given with `IdentitiesOnly=yes` and `IdentityAgent=none` (and `SSH_AUTH_SOCK` removed
//! from ssh's environment); no password or keyboard-interactive login; `ForwardAgent=no`,
//! `ClearAllForwardings=yes`; `Compression=no`; `ConnectTimeout` (10 s unless set),
//! `ServerAliveInterval`/`ServerAliveCountMax` (15 s × 4 unless set: [`Keepalive`]);
//! `LogLevel` `INFO` (or `DEBUG1`);
//! `-p PORT -l USER -- HOST [COMMAND]`. Every path, the user and the host go through this
//! crate's value rules ([`path_option`], [`config_file_arg`], [`user_arg`], [`host_arg`]).
//!
//! What one caller needs and another does not is a method, never a silent difference:
//! [`SshCommand::prefer_aes_gcm`] (LAN hosts, for throughput), [`SshCommand::host_key_algorithms`]
//! (the gate, from its pinned key), [`SshCommand::allow_command_line_forwarding`] (tests that
//! check a server refuses forwarding).

use crate::{SshArgError, config_file_arg, host_arg, log_level, path_option, refuse, user_arg};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Cipher preference of [`SshCommand::prefer_aes_gcm`]: OpenSSH's default set with AES-GCM
/// first (`^` puts the list at the head of the defaults). With AES-NI, aes128-gcm costs the
/// client and the host's sshd less CPU per byte than chacha20-poly1305@openssh.com, whose
/// Poly1305 is OpenSSH's portable code; docs/BENCHMARKS.md has the measurement. Both are
/// AEAD ciphers OpenSSH recommends, and every default cipher stays offered.
pub const AES_GCM_FIRST: &str = "^aes128-gcm@openssh.com,aes256-gcm@openssh.com";

/// Seconds ssh waits for the TCP connection and the server's banner unless set otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: u32 = 10;

/// The options every command carries, in this order (`-o` each).
const FIXED: &[&str] = &[
    "BatchMode=yes",
    "StrictHostKeyChecking=yes",
    "GlobalKnownHostsFile=/dev/null",
    // Only the pinned file decides, whatever an ssh_config (-F) says.
    "KnownHostsCommand=none",
    "VerifyHostKeyDNS=no",
    "CheckHostIP=no",
    "UpdateHostKeys=no",
    "IdentitiesOnly=yes",
    "IdentityAgent=none",
    "PasswordAuthentication=no",
    "KbdInteractiveAuthentication=no",
    "ForwardAgent=no",
    // Content is mostly compressed by Ferry already; zlib in ssh would cost both ends CPU
    // (it is OpenSSH's default too; said here so no config file can change it).
    "Compression=no",
];

/// ssh's keepalives (`ServerAliveInterval`, `ServerAliveCountMax`): when the server has sent
/// nothing for `interval` seconds, ssh asks for an answer through the encrypted channel; after
/// `count` unanswered asks it gives up with "Timeout, server … not responding" and exit status
/// 255. A connection that stalls without a FIN or RST (a link down, a NAT that dropped the
/// flow, a box frozen) is noticed within about `interval × (count + 1)` seconds, whether ssh
/// is waiting to read or cannot write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Seconds of silence before ssh asks (≥ 1).
    pub interval: u32,
    /// Unanswered asks before ssh gives up (≥ 1).
    pub count: u32,
}

impl Keepalive {
    /// A stalled connection is noticed after at most this long.
    pub fn detects_within(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.interval) * (u64::from(self.count) + 1))
    }
}

impl Default for Keepalive {
    /// 15 s × 4: a stall is noticed within about 75 s, and an idle moment of a slow upload
    /// (the gate waiting on S3, ≤ 6 attempts) does not trip it, since the server's sshd
    /// answers the ask itself.
    fn default() -> Self {
        Self {
            interval: 15,
            count: 4,
        }
    }
}

/// One `ssh` invocation, every option explicit. Build it, then take [`args`](Self::args) or
/// a ready [`Command`](Self::command); stdio is left to the caller (see [`crate::SshChild`]).
#[derive(Clone)]
pub struct SshCommand {
    program: OsString,
    user: String,
    host: String,
    port: u16,
    identity: PathBuf,
    known_hosts: PathBuf,
    config: Option<PathBuf>,
    connect_timeout: u32,
    keepalive: Keepalive,
    host_key_algorithms: Option<String>,
    ciphers: Option<&'static str>,
    clear_forwardings: bool,
    debug: bool,
    remote_command: Option<String>,
}

impl fmt::Debug for SshCommand {
    /// `user@host:port (identity …, known hosts …)`: paths and names, never key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (identity {}, known hosts {})",
            self.destination(),
            self.identity.display(),
            self.known_hosts.display()
        )
    }
}

impl SshCommand {
    /// `ssh` to `user@host:port`, logging in with the private key at `identity` only and
    /// accepting only a host key listed in `known_hosts`.
    pub fn new(
        user: impl Into<String>,
        host: impl Into<String>,
        port: u16,
        identity: impl Into<PathBuf>,
        known_hosts: impl Into<PathBuf>,
    ) -> Self {
        Self {
            program: OsString::from("ssh"),
            user: user.into(),
            host: host.into(),
            port,
            identity: identity.into(),
            known_hosts: known_hosts.into(),
            config: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            keepalive: Keepalive::default(),
            host_key_algorithms: None,
            ciphers: None,
            clear_forwardings: true,
            debug: false,
            remote_command: None,
        }
    }

    /// The ssh program (default `ssh` from `PATH`).
    pub fn program(mut self, program: impl Into<OsString>) -> Self {
        self.program = program.into();
        self
    }

    /// An OpenSSH client config file for `-F` (e.g. a ProxyCommand to reach the host);
    /// `None` (the default) is `-F none`: no user or system config at all. The options on
    /// the command line win over the file's.
    pub fn config_file(mut self, config: Option<PathBuf>) -> Self {
        self.config = config;
        self
    }

    /// `ConnectTimeout` in seconds (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, seconds: u32) -> Self {
        self.connect_timeout = seconds;
        self
    }

    /// `ServerAliveInterval` and `ServerAliveCountMax` (default [`Keepalive::default`]); a
    /// zero is raised to 1 (0 would turn keepalives off).
    pub fn keepalive(mut self, keepalive: Keepalive) -> Self {
        self.keepalive = Keepalive {
            interval: keepalive.interval.max(1),
            count: keepalive.count.max(1),
        };
        self
    }

    /// `HostKeyAlgorithms`: only the algorithms that present the pinned key (the gate).
    pub fn host_key_algorithms(mut self, list: impl Into<String>) -> Self {
        self.host_key_algorithms = Some(list.into());
        self
    }

    /// `Ciphers=`[`AES_GCM_FIRST`]: AES-GCM preferred for throughput (LAN hosts).
    pub fn prefer_aes_gcm(mut self) -> Self {
        self.ciphers = Some(AES_GCM_FIRST);
        self
    }

    /// Leave out `ClearAllForwardings=yes`, so that `-W`/`-R` added after the destination
    /// reach the server: only for tests that check a server refuses forwarding.
    pub fn allow_command_line_forwarding(mut self) -> Self {
        self.clear_forwardings = false;
        self
    }

    /// `LogLevel=DEBUG1` (what `ssh -v` prints) instead of `INFO`.
    pub fn debug(mut self, debug: bool) -> Self {
        self.debug = debug;
        self
    }

    /// The command for the remote shell (already quoted for a POSIX shell); without one,
    /// the server's forced command or login shell runs.
    pub fn remote_command(mut self, command: impl Into<String>) -> Self {
        self.remote_command = Some(command.into());
        self
    }

    /// `user@host:port`, for messages and logs.
    pub fn destination(&self) -> String {
        if self.host.contains(':') {
            format!("{}@[{}]:{}", self.user, self.host, self.port)
        } else {
            format!("{}@{}:{}", self.user, self.host, self.port)
        }
    }

    /// The arguments after the program name, or the first value ssh could not read as
    /// itself.
    pub fn args(&self) -> Result<Vec<OsString>, SshArgError> {
        let config = match &self.config {
            Some(p) => config_file_arg(p)?,
            None => OsString::from("none"),
        };
        let known_hosts = path_option("UserKnownHostsFile", &self.known_hosts)?;
        // `-o IdentityFile=` rather than `-i`: ssh %-expands both, only this one can be quoted.
        let identity = path_option("IdentityFile", &self.identity)?;
        let user = user_arg(&self.user)?;
        let host = host_arg(&self.host)?;
        let mut a: Vec<OsString> = vec!["-F".into(), config, "-T".into(), "-x".into(), "-a".into()];
        let mut o = |v: OsString| {
            a.push("-o".into());
            a.push(v);
        };
        for v in FIXED {
            o((*v).into());
        }
        if self.clear_forwardings {
            o("ClearAllForwardings=yes".into());
        }
        o(format!("ConnectTimeout={}", self.connect_timeout).into());
        o(format!("ServerAliveInterval={}", self.keepalive.interval).into());
        o(format!("ServerAliveCountMax={}", self.keepalive.count).into());
        if let Some(algs) = &self.host_key_algorithms {
            o(format!("HostKeyAlgorithms={}", list_arg("HostKeyAlgorithms", algs)?).into());
        }
        if let Some(c) = self.ciphers {
            o(format!("Ciphers={c}").into());
        }
        o(format!("LogLevel={}", log_level(self.debug)).into());
        o(known_hosts);
        o(identity);
        a.extend([
            "-p".into(),
            self.port.to_string().into(),
            "-l".into(),
            user.into(),
            "--".into(),
            host.into(),
        ]);
        if let Some(c) = &self.remote_command {
            // After `--` ssh reads no more options (checked with `ssh -G`), but without it
            // OpenSSH reads options again after the destination: a command starting with `-`
            // is refused so that no change to this line can turn it into one.
            if c.starts_with('-') {
                return Err(refuse(
                    "remote command",
                    c.as_bytes(),
                    "it starts with '-' (ssh would read an option)",
                ));
            }
            a.push(c.into());
        }
        Ok(a)
    }

    /// The [`Command`]: the program, [`args`](Self::args), and no `SSH_AUTH_SOCK` in its
    /// environment (no agent, whatever a config file or ProxyCommand would do).
    pub fn command(&self) -> Result<Command, SshArgError> {
        let mut c = Command::new(&self.program);
        c.args(self.args()?);
        c.env_remove("SSH_AUTH_SOCK");
        Ok(c)
    }

    /// The identity file given.
    pub fn identity(&self) -> &Path {
        &self.identity
    }

    /// The known-hosts file given.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }
}

/// A comma-separated algorithm list (`A-Z a-z 0-9 . @ - + ^ ,`), not starting with `-`.
fn list_arg<'a>(what: &str, v: &'a str) -> Result<&'a str, SshArgError> {
    if v.is_empty() || v.starts_with('-') {
        return Err(refuse(what, v.as_bytes(), "it is empty or starts with '-'"));
    }
    if !v
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b".@-+^,".contains(&c))
    {
        return Err(refuse(
            what,
            v.as_bytes(),
            "only A-Z a-z 0-9 . @ - + ^ , are allowed",
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(a: &[OsString]) -> Vec<String> {
        a.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    /// The options every command has, as `-o` pairs.
    fn fixed_pairs() -> Vec<String> {
        FIXED
            .iter()
            .flat_map(|v| ["-o".to_string(), (*v).to_string()])
            .collect()
    }

    #[test]
    fn a_full_gate_command() {
        let c = SshCommand::new(
            "ferry",
            "10.0.1.5",
            2222,
            "/home/u/.ferry/id_gate",
            "/tmp/ferry-ssh-x/known_hosts",
        )
        .config_file(Some(PathBuf::from("/home/u/local cloud/ssh_config")))
        .host_key_algorithms("ssh-ed25519");
        let mut want: Vec<String> = ["-F", "/home/u/local cloud/ssh_config", "-T", "-x", "-a"]
            .map(String::from)
            .to_vec();
        want.extend(fixed_pairs());
        want.extend(
            [
                "-o",
                "ClearAllForwardings=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "ServerAliveInterval=15",
                "-o",
                "ServerAliveCountMax=4",
                "-o",
                "HostKeyAlgorithms=ssh-ed25519",
                "-o",
                "LogLevel=INFO",
                "-o",
                "UserKnownHostsFile=\"/tmp/ferry-ssh-x/known_hosts\"",
                "-o",
                "IdentityFile=\"/home/u/.ferry/id_gate\"",
                "-p",
                "2222",
                "-l",
                "ferry",
                "--",
                "10.0.1.5",
            ]
            .map(String::from),
        );
        assert_eq!(strs(&c.args().unwrap()), want);
        assert_eq!(c.destination(), "ferry@10.0.1.5:2222");
    }

    #[test]
    fn a_full_lan_host_command() {
        let c = SshCommand::new(
            "backup-ro",
            "::1",
            22,
            "/etc/ferry/id 100%",
            "/etc/ferry/known hosts",
        )
        .connect_timeout(7)
        .prefer_aes_gcm()
        .debug(true)
        .remote_command("LC_ALL=C; export LC_ALL; exec tar -cf - -T -");
        let mut want: Vec<String> = ["-F", "none", "-T", "-x", "-a"].map(String::from).to_vec();
        want.extend(fixed_pairs());
        want.extend(
            [
                "-o",
                "ClearAllForwardings=yes",
                "-o",
                "ConnectTimeout=7",
                "-o",
                "ServerAliveInterval=15",
                "-o",
                "ServerAliveCountMax=4",
                "-o",
                "Ciphers=^aes128-gcm@openssh.com,aes256-gcm@openssh.com",
                "-o",
                "LogLevel=DEBUG1",
                "-o",
                "UserKnownHostsFile=\"/etc/ferry/known hosts\"",
                "-o",
                "IdentityFile=\"/etc/ferry/id 100%%\"",
                "-p",
                "22",
                "-l",
                "backup-ro",
                "--",
                "::1",
                "LC_ALL=C; export LC_ALL; exec tar -cf - -T -",
            ]
            .map(String::from),
        );
        assert_eq!(strs(&c.args().unwrap()), want);
        assert_eq!(c.destination(), "backup-ro@[::1]:22");
        let cmd = c.command().unwrap();
        assert!(
            cmd.get_envs()
                .any(|(k, v)| k == "SSH_AUTH_SOCK" && v.is_none())
        );
    }

    #[test]
    fn keepalives_are_set_and_never_turned_off() {
        let c = SshCommand::new("u", "h", 22, "/i", "/k").keepalive(Keepalive {
            interval: 2,
            count: 0,
        });
        let a = strs(&c.args().unwrap());
        assert!(a.contains(&"ServerAliveInterval=2".to_string()), "{a:?}");
        assert!(a.contains(&"ServerAliveCountMax=1".to_string()), "{a:?}");
        assert!(!a.iter().any(|v| v.starts_with("ServerAliveInterval=15")));
        let d = Keepalive::default();
        assert_eq!(d.detects_within(), std::time::Duration::from_secs(75));
    }

    #[test]
    fn forwarding_is_cleared_unless_a_test_asks() {
        let c = SshCommand::new("u", "h", 22, "/i", "/k");
        let a = strs(&c.args().unwrap());
        assert!(a.contains(&"ClearAllForwardings=yes".to_string()));
        let a = strs(&c.allow_command_line_forwarding().args().unwrap());
        assert!(!a.contains(&"ClearAllForwardings=yes".to_string()));
        assert!(a.contains(&"-a".to_string()) && a.contains(&"-x".to_string()));
    }

    #[test]
    fn bad_values_are_refused_naming_them() {
        let base = || SshCommand::new("u", "h", 22, "/i", "/k");
        for (c, what) in [
            (SshCommand::new("-oX=y", "h", 22, "/i", "/k"), "user name"),
            (SshCommand::new("u", "h;x", 22, "/i", "/k"), "host name"),
            (SshCommand::new("u", "h", 22, "/a\nb", "/k"), "IdentityFile"),
            (
                SshCommand::new("u", "h", 22, "/i", "/${X}"),
                "UserKnownHostsFile",
            ),
            (base().config_file(Some(PathBuf::new())), "-F"),
            (base().host_key_algorithms("a b"), "HostKeyAlgorithms"),
            (base().remote_command("-oProxyCommand=x"), "remote command"),
        ] {
            let e = c.args().unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        }
    }
}
