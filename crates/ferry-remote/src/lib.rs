//! # ferry-remote — the gate-over-SSH storage backend
//!
//! Owns the client side of the gate protocol over the system OpenSSH client:
//! [`GateStorage`] implements [`Storage`] for `gate+ssh://USER@HOST:PORT/SITE` by running
//! `ssh` (batch mode, the host key pinned from a file, no agent, no forwarding) with its
//! stdin/stdout piped to the [`ferry_proto`] protocol. Puts and lists only: the gate is
//! write-only by design.
//!
//! Packs are pipelined (protocol version 2): a pack's PUT, DATA… and END go out without
//! waiting for the gate's answer, within a bounded [`Window`]; answers come back in order
//! and are matched first-in first-out. So `put_if_absent` of a pack returns `Stored` once
//! the pack is *sent*; the gate's verdict arrives later, and a refusal or a lost connection
//! surfaces at the next put, at [`Storage::barrier`], or at [`GateStorage::close`] — naming
//! the objects. Every other kind (`config`, `index`, `snapshot`) is a barrier: it is sent
//! only after every earlier pack was answered STORED or ALREADY_PRESENT, and its own answer
//! is awaited. The engine writes packs, then indexes, then the snapshot, so nothing that
//! refers to a pack reaches the gate before the pack is confirmed.
//!
//! ssh is run as every ssh in Ferry is: [`ferry_ssh::SshCommand`]'s command line (the gate
//! adds only `HostKeyAlgorithms` from the pinned key) and [`ferry_ssh::SshChild`] (stderr
//! capped, waited for at most 15 s after the connection ends, then killed). Every value handed
//! to `ssh` (paths of the identity, the pinned known-hosts file and the ssh_config; user and
//! host) means exactly one thing to ssh or is refused naming it ([`GateError::SshArg`]). A
//! box that is still booting (sshd up with the AMI's own host keys, the session's key not
//! installed yet) is retried until [`GateOptions::retry_budget`]. Errors are typed
//! ([`UrlError`], [`KeyError`], [`GateError`]) and reach the engine as
//! [`StorageError::Backend`] for the gate's location, naming the objects concerned.
//!
//! Must never depend on AWS crates or an SSH library (the whole workspace uses `ssh`).

use ferry_proto::{Frame, FrameReader, PROTOCOL_VERSION, write_frame};
use ferry_repo::format::ObjectKind;
use ferry_repo::storage::{PutOutcome, Storage, StorageError};
pub use ferry_ssh::Keepalive;
use ferry_ssh::{SshChild, SshCommand};
use std::collections::VecDeque;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bytes per DATA frame the client sends.
const CHUNK: usize = 512 * 1024;
/// Bytes the client buffers for small frames (DATA payloads bypass the buffer).
const WRITE_BUF: usize = 64 * 1024;
/// Most LIST pages followed (1000 names each): a bound, not a limit anyone should reach.
const MAX_LIST_PAGES: usize = 100_000;

/// Why a `gate+ssh://` location is not valid (each names the location).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The location does not start with `gate+ssh://`.
    #[error("{url:?} is not a gate+ssh://USER@HOST:PORT/SITE location")]
    NotGateSsh {
        /// The location as given.
        url: String,
    },
    /// No `/` after the host, so no site prefix.
    #[error("{url:?}: missing /SITE after the host")]
    MissingSite {
        /// The location as given.
        url: String,
    },
    /// The site is empty, starts with `/`, or has an empty, `.` or `..` segment.
    #[error("{url:?}: {site:?} is not a valid site prefix")]
    BadSite {
        /// The location as given.
        url: String,
        /// The site part, trailing slashes removed.
        site: String,
    },
    /// An IPv6 host opened with `[` has no closing `]`.
    #[error("{url:?}: unclosed '[' in the host")]
    UnclosedBracket {
        /// The location as given.
        url: String,
    },
    /// The port is not a number from 1 to 65535.
    #[error("{url:?}: port {port:?} is not a valid port")]
    BadPort {
        /// The location as given.
        url: String,
        /// The port as written after the `:`.
        port: String,
    },
    /// The host is empty, starts with `-`, or has characters other than letters, digits,
    /// `-`, `.`, `_` and `:`.
    #[error("{url:?}: {host:?} is not a valid host name or address")]
    BadHost {
        /// The location as given.
        url: String,
        /// The host as written (without brackets).
        host: String,
    },
    /// The user is empty, starts with `-`, has a `:` or characters other than letters,
    /// digits, `-`, `.` and `_`.
    #[error("{url:?}: {user:?} is not a valid user name")]
    BadUser {
        /// The location as given.
        url: String,
        /// The user as written before the `@`.
        user: String,
    },
}

/// Why a pinned host key (an OpenSSH public key line) is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text has only blank and `#` comment lines.
    #[error("no public key in it")]
    NoKey,
    /// The first key line has a single word, so no base64 key after the type.
    #[error("expected \"TYPE BASE64\" (an OpenSSH public key line)")]
    NotKeyLine,
    /// The key type is not one of the supported ed25519, ECDSA (nistp256/384/521) or RSA types.
    #[error("unsupported or invalid key type {key_type:?} (expected one of {expected})")]
    UnsupportedType {
        /// The first word of the key line.
        key_type: String,
        /// The supported key types, comma-separated, for the message.
        expected: String,
    },
    /// The key is shorter than 16 characters or has characters outside the base64 alphabet.
    #[error("the key is not base64")]
    NotBase64,
}

/// What goes wrong before a connection to the gate exists (each names its file, host or
/// location); the storage methods report as [`StorageError::Backend`] with this text.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The `gate+ssh://` location is not valid.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The pinned host key file (`--host-key`) could not be read.
    #[error("cannot read host key file {}: {source}", path.display())]
    HostKeyRead {
        /// The host key file, as given in [`GateOptions::host_key`].
        path: PathBuf,
        /// Why reading it failed.
        source: std::io::Error,
    },
    /// The pinned host key file holds no usable OpenSSH public key line.
    #[error("host key file {}: {source}", path.display())]
    HostKey {
        /// The host key file, as given in [`GateOptions::host_key`].
        path: PathBuf,
        /// What is wrong with its key line.
        source: KeyError,
    },
    /// The SSH private key ([`GateOptions::identity`], this path) is not an existing file.
    #[error("SSH identity {} is not a readable file", .0.display())]
    Identity(PathBuf),
    /// The private temp dir that holds the pinned `known_hosts` could not be created (under
    /// TMPDIR); the error is why.
    #[error("cannot create a private temp dir for known_hosts: {0}")]
    TempDir(std::io::Error),
    /// The pinned `known_hosts` file could not be written in the private temp dir.
    #[error("cannot write {}: {source}", path.display())]
    KnownHosts {
        /// The `known_hosts` file Ferry writes.
        path: PathBuf,
        /// Why writing it failed.
        source: std::io::Error,
    },
    /// A path, user or host ssh could not read as itself; `context` says which one.
    #[error("{context}{source}")]
    SshArg {
        /// Which file it is, as a message prefix ending in `": "`; empty for the user, the
        /// host and the rest, which the source's `what` names.
        context: &'static str,
        /// The value ssh would not read as itself, and why.
        source: ferry_ssh::SshArgError,
    },
    /// Every attempt failed in a retryable way (unreachable, host key not the pinned one,
    /// our key refused) until [`GateOptions::attempts`] or the retry budget ran out.
    #[error(
        "cannot connect to {host} (gave up after retries: {tried} attempt(s) in {secs:.1} s of the {budget} s allowed); last cause: {last}"
    )]
    GaveUp {
        /// The gate as `HOST:PORT`.
        host: String,
        /// Connection attempts made (at least 1).
        tried: u32,
        /// Seconds spent from the first attempt to giving up.
        secs: f64,
        /// The retry budget ([`GateOptions::retry_budget`]), in whole seconds.
        budget: u64,
        /// Why the last attempt failed (with ssh's stderr).
        last: String,
    },
    /// A failure not worth retrying: the ssh command line was refused (a [`GateError::SshArg`]
    /// text), ssh could not be started, or the gate refused the session (ERROR to HELLO),
    /// answered HELLO with another frame or protocol version, or ended the session before
    /// answering. The text says which.
    #[error("{0}")]
    Connection(String),
}

impl GateError {
    fn ssh_arg(source: ferry_ssh::SshArgError) -> Self {
        let context = match source.what.as_str() {
            "UserKnownHostsFile" => "the pinned known-hosts file Ferry writes under TMPDIR: ",
            "IdentityFile" => "the SSH identity: ",
            "-F" => "the ssh_config file: ",
            _ => "",
        };
        GateError::SshArg { context, source }
    }
}

/// What goes wrong on an open connection (the text names the objects concerned); reported
/// as [`StorageError::Backend`] for the gate's location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ConnError {
    #[error("the connection to the gate is closed")]
    Closed,
    #[error("the connection to the gate was lost earlier: {0}")]
    LostEarlier(String),
    #[error("sending {frame} to the gate: {message}")]
    Send {
        frame: &'static str,
        message: String,
    },
    #[error("sending to the gate: {0}")]
    Flush(String),
    /// The connection is unusable: what happened, ssh's stderr, the unconfirmed objects.
    #[error("{0}")]
    Lost(String),
    #[error("reading from the gate: {0}")]
    Read(String),
    /// The gate refused pipelined packs (each named, with the gate's reason).
    #[error("{0}")]
    Refused(String),
    #[error("the gate answered BYE with {0}")]
    Bye(String),
}

/// A parsed `gate+ssh://USER@HOST:PORT/SITE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateUrl {
    /// SSH user on the jump box (`ferry` when the location has no `USER@`).
    pub user: String,
    /// Host name or IP address, without the brackets of an IPv6 address.
    pub host: String,
    /// SSH port, 1–65535 (22 when the location has none).
    pub port: u16,
    /// Site prefix in the bucket, without leading or trailing `/` (sent in HELLO).
    pub site: String,
}

impl GateUrl {
    /// Parse and check `gate+ssh://[USER@]HOST[:PORT]/SITE` (IPv6 hosts in `[…]`).
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let u = || url.to_string();
        let rest = url
            .strip_prefix("gate+ssh://")
            .ok_or_else(|| UrlError::NotGateSsh { url: u() })?;
        let (authority, site) = rest
            .split_once('/')
            .ok_or_else(|| UrlError::MissingSite { url: u() })?;
        let site = site.trim_end_matches('/');
        if site.is_empty()
            || site.starts_with('/')
            || site
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(UrlError::BadSite {
                url: u(),
                site: site.to_string(),
            });
        }
        let (user, hostport) = authority.split_once('@').unwrap_or(("ferry", authority));
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, p) = h
                .split_once(']')
                .ok_or_else(|| UrlError::UnclosedBracket { url: u() })?;
            (h, p.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port = match port {
            None => 22,
            Some(p) => {
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| UrlError::BadPort {
                        url: u(),
                        port: p.to_string(),
                    })?
            }
        };
        let ok = |s: &str| {
            !s.is_empty()
                && !s.starts_with('-')
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
        };
        if !ok(host) {
            return Err(UrlError::BadHost {
                url: u(),
                host: host.to_string(),
            });
        }
        if !ok(user) || user.contains(':') {
            return Err(UrlError::BadUser {
                url: u(),
                user: user.to_string(),
            });
        }
        Ok(Self {
            user: user.into(),
            host: host.into(),
            port,
            site: site.into(),
        })
    }

    /// The canonical location, with user and port always written: the location named in
    /// [`StorageError::Backend`] once the URL has parsed.
    pub fn to_url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "gate+ssh://{}@{}:{}/{}",
            self.user, host, self.port, self.site
        )
    }
}

/// How many pipelined packs may be unanswered. A new pack is sent only while fewer than
/// `objects` packs **and** fewer than `bytes` bytes are unanswered; otherwise the client
/// first reads answers. So at most `objects` packs, and at most `bytes` plus one pack, are
/// ever unanswered. `objects: 1` is the unpipelined behaviour (one pack in flight at a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Most packs unanswered at once (0 is taken as 1).
    pub objects: usize,
    /// Most bytes of pack data unanswered before the next pack is sent.
    pub bytes: u64,
}

impl Default for Window {
    /// 4 packs / 64 MiB: two 32 MiB packs in flight keep the SSH channel busy while the
    /// gate commits the previous one; more buys nothing and delays error reports.
    fn default() -> Self {
        Self {
            objects: 4,
            bytes: 64 << 20,
        }
    }
}

/// How to reach the gate.
#[derive(Debug, Clone)]
pub struct GateOptions {
    /// The SSH private key (`--identity`).
    pub identity: PathBuf,
    /// File with the gate host's public key, `TYPE BASE64 [comment]` (`--host-key`).
    pub host_key: PathBuf,
    /// Session id to present; `None` = whatever session the gate serves.
    pub session: Option<String>,
    /// The ssh program (default `ssh` from PATH).
    pub ssh_program: PathBuf,
    /// An OpenSSH client config file (`ssh -F`), e.g. to reach jump boxes through a proxy;
    /// `None` = no config file at all. The options Ferry sets on the command line (host key
    /// pinning, no agent, no forwarding) override the file's.
    pub ssh_config: Option<PathBuf>,
    /// Connection attempts (≥ 1). Retried: connection failures, and — because a booting
    /// jump box answers with its AMI's own host keys and without the session's key before
    /// its user data has run — a host key that is not the pinned one and a refused key.
    /// Never retried: a gate that answers and refuses the session.
    pub attempts: u32,
    /// First backoff delay; doubles per attempt up to [`max_backoff`](Self::max_backoff).
    pub backoff: Duration,
    /// Longest delay between two attempts.
    pub max_backoff: Duration,
    /// Upper bound on the total time spent retrying (`[cloud] connect_timeout`).
    pub retry_budget: Duration,
    /// The pipelining window for packs.
    pub window: Window,
    /// Run ssh at `LogLevel=DEBUG1` (what `ssh -v` prints) and trace its stderr lines at
    /// debug level (`ferry -vv`). ssh's debug output has fingerprints, never key material.
    pub ssh_debug: bool,
    /// ssh's keepalives: a connection that stalls mid-upload (no FIN, no RST) is given up
    /// within [`Keepalive::detects_within`] and reported as stalled.
    pub keepalive: Keepalive,
}

impl GateOptions {
    /// Options with the given identity and pinned host key file, and the defaults: no session
    /// id, `ssh` from PATH, no ssh_config, 5 attempts with 0.5 s backoff doubling up to 5 s
    /// within 30 s, the default [`Window`], no ssh debug output, keepalives 15 s × 4.
    pub fn new(identity: impl Into<PathBuf>, host_key: impl Into<PathBuf>) -> Self {
        Self {
            identity: identity.into(),
            host_key: host_key.into(),
            session: None,
            ssh_program: PathBuf::from("ssh"),
            ssh_config: None,
            attempts: 5,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
            retry_budget: Duration::from_secs(30),
            window: Window::default(),
            ssh_debug: false,
            keepalive: Keepalive::default(),
        }
    }
}

/// The pinned host key read from `--host-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedKey {
    /// The key type, one of the supported ones (e.g. `ssh-ed25519`).
    pub key_type: String,
    /// The public key blob in base64, as in the file.
    pub base64: String,
}

impl PinnedKey {
    /// Read and parse the host key file at `path`; errors name the file.
    pub fn read(path: &Path) -> Result<Self, GateError> {
        let text = std::fs::read_to_string(path).map_err(|source| GateError::HostKeyRead {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|source| GateError::HostKey {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Parse the first non-blank, non-`#` line of `text` as `TYPE BASE64 [comment]`.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or(KeyError::NoKey)?;
        let mut parts = line.split_whitespace();
        let key_type = parts.next().unwrap_or_default();
        let b64 = parts.next().ok_or(KeyError::NotKeyLine)?;
        const TYPES: [&str; 5] = [
            "ssh-ed25519",
            "ecdsa-sha2-nistp256",
            "ecdsa-sha2-nistp384",
            "ecdsa-sha2-nistp521",
            "ssh-rsa",
        ];
        if !TYPES.contains(&key_type) {
            return Err(KeyError::UnsupportedType {
                key_type: key_type.to_string(),
                expected: TYPES.join(", "),
            });
        }
        if b64.len() < 16
            || !b64
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        {
            return Err(KeyError::NotBase64);
        }
        Ok(Self {
            key_type: key_type.into(),
            base64: b64.into(),
        })
    }

    /// The `HostKeyAlgorithms` that present this key.
    fn algorithms(&self) -> &str {
        if self.key_type == "ssh-rsa" {
            "rsa-sha2-512,rsa-sha2-256"
        } else {
            &self.key_type
        }
    }

    /// OpenSSH's `SHA256:…` fingerprint (what ssh's own logs print for the key it got).
    pub fn fingerprint(&self) -> String {
        ferry_ssh::fingerprint(&self.base64).unwrap_or_else(|| "(not base64)".to_string())
    }

    /// The known_hosts line for `host:port`.
    pub fn known_hosts_line(&self, host: &str, port: u16) -> String {
        let h = if port == 22 {
            host.to_string()
        } else {
            format!("[{host}]:{port}")
        };
        format!("{h} {} {}\n", self.key_type, self.base64)
    }
}

/// The gate's limits from HELLO_OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateLimits {
    /// Largest object the gate accepts, in bytes.
    pub max_object_size: u64,
    /// Most bytes the gate accepts in the whole session (all objects together).
    pub max_session_bytes: u64,
}

/// A pack sent whose answer has not been read yet.
struct Sent {
    /// `packs/<name>`, for messages.
    what: String,
    name: String,
    size: u64,
}

struct Conn {
    ssh: SshChild,
    reader: FrameReader<ChildStdout>,
    writer: Option<BufWriter<ChildStdin>>,
    /// Set after a protocol error or lost connection: nothing more can be sent.
    broken: Option<String>,
    closed: bool,
    /// Pipelined packs in the order sent (= the order of the gate's answers).
    unanswered: VecDeque<Sent>,
    unanswered_bytes: u64,
    /// Refusals of pipelined packs read but not reported to the caller yet.
    refused: Vec<String>,
}

/// A repository reached through `ferry-gate` over SSH. Write-only: put and list.
pub struct GateStorage {
    url: GateUrl,
    conn: Mutex<Conn>,
    limits: GateLimits,
    window: Window,
    session: String,
    /// The `config` this client put (or found identical) in this session: the gate is
    /// write-only, so this is the only `config` the client can "read".
    config: Mutex<Option<Vec<u8>>>,
    // Holds the known_hosts file for the life of the connection.
    _dir: tempfile::TempDir,
}

fn backend(location: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Backend {
        location: location.to_string(),
        message: e.to_string(),
    }
}

enum Attempt {
    Ok(Box<Conn>, GateLimits, String),
    Retry(String),
    Fatal(String),
}

/// The ssh command line for every attempt ([`ferry_ssh::SshCommand`]: the same defaults as
/// every other ssh Ferry runs, plus `HostKeyAlgorithms` from the pinned key). Each path, the
/// user and the host go through [`ferry_ssh`] so that ssh reads exactly them (a path with a
/// space would otherwise be two known-hosts files, the first of which anyone who can write it
/// controls), or are refused here naming them.
fn ssh_command(
    gate: &GateUrl,
    opts: &GateOptions,
    key: &PinnedKey,
    known_hosts: &Path,
) -> Result<Command, GateError> {
    SshCommand::new(
        &gate.user,
        &gate.host,
        gate.port,
        &opts.identity,
        known_hosts,
    )
    .program(&opts.ssh_program)
    .config_file(opts.ssh_config.clone())
    .host_key_algorithms(key.algorithms())
    .keepalive(opts.keepalive)
    .debug(opts.ssh_debug)
    .command()
    .map_err(GateError::ssh_arg)
}

impl GateStorage {
    /// Connect (retrying, within [`GateOptions::retry_budget`], connection failures and a
    /// box that does not present the pinned key or refuses ours yet) and say HELLO.
    pub fn connect(url: &str, opts: &GateOptions) -> Result<Self, StorageError> {
        let gate = GateUrl::parse(url).map_err(|e| backend(url, e))?;
        let location = gate.to_url();
        let key = PinnedKey::read(&opts.host_key).map_err(|e| backend(&location, e))?;
        if !opts.identity.is_file() {
            return Err(backend(
                &location,
                GateError::Identity(opts.identity.clone()),
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("ferry-ssh-")
            .tempdir()
            .map_err(|e| backend(&location, GateError::TempDir(e)))?;
        let kh = dir.path().join("known_hosts");
        std::fs::write(&kh, key.known_hosts_line(&gate.host, gate.port)).map_err(|source| {
            backend(
                &location,
                GateError::KnownHosts {
                    path: kh.clone(),
                    source,
                },
            )
        })?;
        // Refused values are refused here, once, naming them (never retried).
        ssh_command(&gate, opts, &key, &kh).map_err(|e| backend(&location, e))?;
        let host = format!("{}:{}", gate.host, gate.port);
        let fp = key.fingerprint();
        let started = Instant::now();
        let attempts = opts.attempts.max(1);
        let mut delay = opts.backoff;
        let mut last = String::new();
        let mut tried = 0;
        for attempt in 1..=attempts {
            tried = attempt;
            tracing::info!(
                "gate {host}: connection attempt {attempt} as {} (pinned host key {} {fp}; trying for up to {} s)",
                gate.user,
                key.key_type,
                opts.retry_budget.as_secs()
            );
            match Self::attempt(&gate, opts, &kh, &key) {
                Attempt::Ok(conn, limits, session) => {
                    tracing::info!("gate {host}: connected, session {session}");
                    return Ok(Self {
                        url: gate,
                        conn: Mutex::new(*conn),
                        limits,
                        window: Window {
                            objects: opts.window.objects.max(1),
                            bytes: opts.window.bytes,
                        },
                        session,
                        config: Mutex::new(None),
                        _dir: dir,
                    });
                }
                Attempt::Fatal(m) => return Err(backend(&location, GateError::Connection(m))),
                Attempt::Retry(m) => last = m,
            }
            let pause = delay.min(opts.max_backoff);
            if attempt == attempts || started.elapsed() + pause > opts.retry_budget {
                break;
            }
            tracing::info!(
                "gate {host}: attempt {attempt} failed, retrying in {:.1} s: {last}",
                pause.as_secs_f64()
            );
            std::thread::sleep(pause);
            delay = delay.saturating_mul(2);
        }
        Err(backend(
            &location,
            GateError::GaveUp {
                host,
                tried,
                secs: started.elapsed().as_secs_f64(),
                budget: opts.retry_budget.as_secs(),
                last,
            },
        ))
    }

    fn attempt(gate: &GateUrl, opts: &GateOptions, known_hosts: &Path, key: &PinnedKey) -> Attempt {
        let host = format!("{}:{}", gate.host, gate.port);
        let cmd = match ssh_command(gate, opts, key, known_hosts) {
            Ok(c) => c,
            Err(e) => return Attempt::Fatal(e.to_string()),
        };
        let mut ssh = match SshChild::spawn(cmd, &host) {
            Ok(c) => c,
            Err(e) => return Attempt::Fatal(e.to_string()),
        };
        let (Some(stdin), Some(stdout)) = (ssh.take_stdin(), ssh.take_stdout()) else {
            ssh.kill();
            return Attempt::Fatal("ssh started without its pipes".to_string());
        };
        let mut conn = Conn {
            ssh,
            reader: FrameReader::new(stdout),
            writer: Some(BufWriter::with_capacity(WRITE_BUF, stdin)),
            broken: None,
            closed: false,
            unanswered: VecDeque::new(),
            unanswered_bytes: 0,
            refused: Vec::new(),
        };
        // ssh holds stdin until the session is open (after the host key and our key were
        // accepted), so HELLO never reaches a host that did not present the pinned key.
        let hello = Frame::Hello {
            version: PROTOCOL_VERSION,
            session: opts.session.clone().unwrap_or_default(),
            site: gate.site.clone(),
        };
        let sent = conn.send(&hello).and_then(|_| conn.flush());
        let reply = match sent {
            Ok(()) => conn
                .reader
                .read()
                .map(|f| f.map(owned))
                .map_err(|e| ConnError::Read(e.to_string())),
            Err(e) => Err(e),
        };
        match reply {
            Ok(Some(Frame::HelloOk {
                version,
                session,
                max_object_size,
                max_session_bytes,
            })) if version == PROTOCOL_VERSION => Attempt::Ok(
                Box::new(conn),
                GateLimits {
                    max_object_size,
                    max_session_bytes,
                },
                session,
            ),
            Ok(Some(Frame::Error { message })) => {
                conn.shutdown();
                Attempt::Fatal(format!("the gate refused the session: {message}"))
            }
            Ok(Some(other)) => {
                conn.shutdown();
                Attempt::Fatal(format!("the gate answered HELLO with {other:?}"))
            }
            Ok(None) | Err(_) => {
                let (status, text) = conn.finish_failed();
                let text = text.trim();
                // Both refusals below are retried until the budget runs out: on EC2 sshd
                // starts with the AMI's own host keys, and without the session's key,
                // before cloud-init runs the user data (which installs both). Retrying is
                // safe: with StrictHostKeyChecking=yes ssh verifies the host key during the
                // key exchange and aborts before user authentication, so a host that does
                // not present the pinned key never sees our public key, a signature or a
                // byte of stdin; a host that refuses our key has already proved it holds
                // the pinned host key.
                if text.contains("Host key verification failed")
                    || text.contains("HOST IDENTIFICATION HAS CHANGED")
                    || text.contains("host key is known")
                    || text.contains("no matching host key type")
                    || text.contains("host key") && text.contains("differs")
                {
                    Attempt::Retry(format!(
                        "host key for {host} does not match the pinned key in {} ({} {}): the pinned key was not presented (a jump box still booting presents its AMI's own keys) (ssh: {text})",
                        opts.host_key.display(),
                        key.key_type,
                        key.fingerprint(),
                    ))
                } else if text.contains("Permission denied") {
                    Attempt::Retry(format!(
                        "{}@{host} refused the key {} (a jump box still booting has not installed the session's key yet) (ssh: {text})",
                        gate.user,
                        opts.identity.display(),
                    ))
                } else if status == Some(255) {
                    Attempt::Retry(format!("ssh: {text}"))
                } else {
                    Attempt::Fatal(format!(
                        "the gate at {host} ended the session before answering HELLO (exit status {}): {text}",
                        status.map_or("unknown".to_string(), |s| s.to_string()),
                    ))
                }
            }
        }
    }

    /// The limits the gate announced.
    pub fn limits(&self) -> GateLimits {
        self.limits
    }

    /// The session the gate serves.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// Pipelined packs sent and not answered yet: (count, bytes).
    pub fn unanswered(&self) -> (usize, u64) {
        let c = self.lock();
        (c.unanswered.len(), c.unanswered_bytes)
    }

    /// Wait for every answer, end the session cleanly (BYE) and wait for ssh. Also done on
    /// drop, best effort. An error names every pack the gate refused (and not reported
    /// yet) or did not confirm.
    pub fn close(&self) -> Result<(), StorageError> {
        let mut c = self.lock();
        let settled = c.settle_all();
        let bye = c.bye();
        let refused = c.take_refused();
        let msgs: Vec<String> = [settled.err(), refused.map(ConnError::Refused), bye.err()]
            .into_iter()
            .flatten()
            .map(|e| e.to_string())
            .collect();
        if msgs.is_empty() {
            Ok(())
        } else {
            Err(self.err(msgs.join("; ")))
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, m: impl std::fmt::Display) -> StorageError {
        backend(&self.location(), m)
    }
}

impl Conn {
    fn send(&mut self, f: &Frame<'_>) -> Result<(), ConnError> {
        let w = self.writer.as_mut().ok_or(ConnError::Closed)?;
        write_frame(w, f).map_err(|e| ConnError::Send {
            frame: f.type_name(),
            message: e.to_string(),
        })
    }

    fn flush(&mut self) -> Result<(), ConnError> {
        let w = self.writer.as_mut().ok_or(ConnError::Closed)?;
        w.flush().map_err(|e| ConnError::Flush(e.to_string()))
    }

    /// Close stdin, wait for ssh (at most 15 s, then kill it), collect its stderr.
    fn finish_failed(&mut self) -> (Option<i32>, String) {
        self.writer = None;
        let f = self.ssh.wait_within(Duration::from_secs(15));
        self.closed = true;
        (f.code(), f.stderr)
    }

    fn shutdown(&mut self) {
        let _ = self.finish_failed();
    }

    /// Mark the connection unusable and describe why, with ssh's/the gate's stderr, the
    /// packs sent but never confirmed and the refusals not reported yet.
    fn lost(&mut self, what: String) -> ConnError {
        let (status, text) = self.finish_failed();
        // ssh's words when its keepalives went unanswered ("Timeout, server HOST not
        // responding."): say what that means for the upload.
        let what = if text.contains("not responding") {
            format!(
                "{}: nothing came back from the jump box and ssh's keepalives went unanswered",
                what.replace(
                    "the gate closed the connection",
                    "the connection to the gate stalled"
                )
            )
        } else {
            what
        };
        let mut msg = if text.trim().is_empty() {
            format!(
                "{what} (ssh exit status {})",
                status.map_or("unknown".into(), |s| s.to_string())
            )
        } else {
            format!("{what}: {}", text.trim())
        };
        if !self.unanswered.is_empty() {
            let names: Vec<&str> = self.unanswered.iter().map(|s| s.what.as_str()).collect();
            msg.push_str(&format!(
                "; not confirmed by the gate, so not known to be stored: {}",
                names.join(", ")
            ));
            self.unanswered.clear();
            self.unanswered_bytes = 0;
        }
        if let Some(r) = self.take_refused() {
            msg.push_str("; ");
            msg.push_str(&r);
        }
        self.broken = Some(msg.clone());
        ConnError::Lost(msg)
    }

    /// A write to the gate failed: read the answers that still arrive (the gate may have
    /// confirmed packs before it went away; at most one frame per unanswered pack, and ssh
    /// has closed its end), then give up.
    fn lost_writing(&mut self, what: String) -> ConnError {
        self.writer = None;
        while !self.unanswered.is_empty() {
            match self.reader.read() {
                Ok(Some(f)) => {
                    let f = owned(f);
                    if self.settle(f).is_err() {
                        break;
                    }
                }
                _ => break,
            }
        }
        if self.broken.is_some() {
            // `settle` found the stream out of step and described it already.
            return ConnError::Lost(self.broken.clone().unwrap_or_default());
        }
        self.lost(what)
    }

    /// Match one answer to the oldest unanswered pack (answers come in order).
    fn settle(&mut self, f: Frame<'static>) -> Result<(), ConnError> {
        let Some(due) = self.unanswered.front().map(|s| s.what.clone()) else {
            return Err(self.lost(format!("the gate sent {f:?} when no answer was due")));
        };
        let (name, refusal) = match f {
            Frame::Stored { name } | Frame::AlreadyPresent { name } => (name, None),
            Frame::Refused { name, reason } => (name, Some(reason)),
            Frame::Error { message } => {
                return Err(self.lost(format!(
                    "gate error while the answer for {due} was due: {message}"
                )));
            }
            other => {
                return Err(self.lost(format!("the gate answered {due} with {other:?}")));
            }
        };
        if self.unanswered.front().is_none_or(|s| s.name != name) {
            return Err(self.lost(format!(
                "the gate answered for {name:?} while the answer for {due} was due (out of step)"
            )));
        }
        if let Some(s) = self.unanswered.pop_front() {
            self.unanswered_bytes -= s.size;
            if let Some(r) = refusal {
                self.refused
                    .push(format!("the gate refused {}: {r}", s.what));
            }
        }
        Ok(())
    }

    /// Read and match the oldest unanswered pack's answer.
    fn settle_one(&mut self) -> Result<(), ConnError> {
        let due = self
            .unanswered
            .front()
            .map_or_else(String::new, |s| s.what.clone());
        let f = self.read(&format!("the answer for {due}"))?;
        self.settle(f)
    }

    /// Read every outstanding answer (refusals are kept for [`Conn::take_refused`]).
    fn settle_all(&mut self) -> Result<(), ConnError> {
        while !self.unanswered.is_empty() {
            self.settle_one()?;
        }
        Ok(())
    }

    /// The refusals read but not reported yet, as one message (and forget them).
    fn take_refused(&mut self) -> Option<String> {
        if self.refused.is_empty() {
            return None;
        }
        let m = self.refused.join("; ");
        self.refused.clear();
        Some(m)
    }

    /// PUT, DATA… and END of one object, flushed (no answer awaited).
    fn send_object(&mut self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<(), ConnError> {
        self.send(&Frame::Put {
            kind: kind.as_str().to_string(),
            name: name.to_string(),
            size: bytes.len() as u64,
        })?;
        for chunk in bytes.chunks(CHUNK) {
            self.send(&Frame::Data(chunk))?;
        }
        self.send(&Frame::End)?;
        self.flush()
    }

    fn check(&self) -> Result<(), ConnError> {
        match &self.broken {
            Some(m) => Err(ConnError::LostEarlier(m.clone())),
            None if self.closed => Err(ConnError::Closed),
            None => Ok(()),
        }
    }

    fn read(&mut self, waiting_for: &str) -> Result<Frame<'static>, ConnError> {
        match self.reader.read() {
            Ok(Some(f)) => Ok(owned(f)),
            Ok(None) => Err(self.lost(format!(
                "the gate closed the connection while we waited for {waiting_for}"
            ))),
            Err(e) => Err(self.lost(format!("reading {waiting_for} from the gate: {e}"))),
        }
    }

    fn bye(&mut self) -> Result<(), ConnError> {
        if self.closed || self.broken.is_some() {
            return Ok(());
        }
        self.send(&Frame::Bye)?;
        self.flush()?;
        let r = self.read("BYE_OK");
        self.shutdown();
        match r {
            Ok(Frame::ByeOk) => Ok(()),
            Ok(other) => Err(ConnError::Bye(format!("{other:?}"))),
            Err(e) => Err(e),
        }
    }
}

/// Copy a borrowed frame (DATA never comes from the gate).
fn owned(f: Frame<'_>) -> Frame<'static> {
    match f {
        Frame::Data(_) => Frame::Error {
            message: "unexpected DATA frame from the gate".into(),
        },
        Frame::Hello {
            version,
            session,
            site,
        } => Frame::Hello {
            version,
            session,
            site,
        },
        Frame::Put { kind, name, size } => Frame::Put { kind, name, size },
        Frame::End => Frame::End,
        Frame::List { kind, continuation } => Frame::List { kind, continuation },
        Frame::Bye => Frame::Bye,
        Frame::HelloOk {
            version,
            session,
            max_object_size,
            max_session_bytes,
        } => Frame::HelloOk {
            version,
            session,
            max_object_size,
            max_session_bytes,
        },
        Frame::Stored { name } => Frame::Stored { name },
        Frame::AlreadyPresent { name } => Frame::AlreadyPresent { name },
        Frame::Refused { name, reason } => Frame::Refused { name, reason },
        Frame::Names {
            names,
            continuation,
        } => Frame::Names {
            names,
            continuation,
        },
        Frame::ByeOk => Frame::ByeOk,
        Frame::Error { message } => Frame::Error { message },
    }
}

impl Storage for GateStorage {
    fn location(&self) -> String {
        self.url.to_url()
    }

    fn put_if_absent(
        &self,
        kind: ObjectKind,
        name: &str,
        bytes: &[u8],
    ) -> Result<PutOutcome, StorageError> {
        let what = kind.key(name);
        if bytes.len() as u64 > self.limits.max_object_size {
            return Err(self.err(format!(
                "{what} is {} bytes, more than the gate's object limit of {} bytes",
                bytes.len(),
                self.limits.max_object_size
            )));
        }
        let not_sent = |m: ConnError| self.err(format!("{m} ({what} was not sent)"));
        let mut c = self.lock();
        c.check().map_err(not_sent)?;
        if kind == ObjectKind::Pack {
            // Pipelined: make room in the window, report earlier refusals, send, return.
            while !c.unanswered.is_empty()
                && (c.unanswered.len() >= self.window.objects
                    || c.unanswered_bytes >= self.window.bytes)
            {
                c.settle_one().map_err(not_sent)?;
            }
            if let Some(m) = c.take_refused() {
                return Err(not_sent(ConnError::Refused(m)));
            }
            c.unanswered.push_back(Sent {
                what: what.clone(),
                name: name.to_string(),
                size: bytes.len() as u64,
            });
            c.unanswered_bytes += bytes.len() as u64;
            if let Err(m) = c.send_object(kind, name, bytes) {
                let m = c.lost_writing(format!("sending {what}: {m}"));
                return Err(self.err(m));
            }
            // Provisional: the verdict is read later (next put, barrier, list or close).
            return Ok(PutOutcome::Stored);
        }
        // Barrier: everything that may refer to packs goes only after they are confirmed.
        c.settle_all().map_err(not_sent)?;
        if let Some(m) = c.take_refused() {
            return Err(not_sent(ConnError::Refused(m)));
        }
        if let Err(m) = c.send_object(kind, name, bytes) {
            let m = c.lost_writing(format!("sending {what}: {m}"));
            return Err(self.err(m));
        }
        let answer = c
            .read(&format!("the answer for {what}"))
            .map_err(|m| self.err(m))?;
        let (outcome, answered) = match answer {
            Frame::Stored { name } => (PutOutcome::Stored, name),
            Frame::AlreadyPresent { name } => (PutOutcome::AlreadyPresent, name),
            Frame::Refused { reason, .. } => {
                return Err(self.err(format!("the gate refused {what}: {reason}")));
            }
            Frame::Error { message } => {
                let m = c.lost(format!("gate error for {what}: {message}"));
                return Err(self.err(m));
            }
            other => {
                let m = c.lost(format!("the gate answered {what} with {other:?}"));
                return Err(self.err(m));
            }
        };
        if answered != name {
            let m = c.lost(format!(
                "the gate answered for {answered:?} while the answer for {what} was due (out of step)"
            ));
            return Err(self.err(m));
        }
        if kind == ObjectKind::Config {
            // The gate answers ALREADY_PRESENT for config only if the stored one is identical.
            *self.config.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes.to_vec());
        }
        Ok(outcome)
    }

    fn barrier(&self) -> Result<(), StorageError> {
        let mut c = self.lock();
        if c.closed && c.broken.is_none() {
            return Ok(());
        }
        c.check().map_err(|m| self.err(m))?;
        c.settle_all().map_err(|m| self.err(m))?;
        match c.take_refused() {
            Some(m) => Err(self.err(m)),
            None => Ok(()),
        }
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<String>, StorageError> {
        let mut c = self.lock();
        c.check().map_err(|m| self.err(m))?;
        // Answers come in order: read the pipelined packs' first (refusals stay pending
        // for the next put, barrier or close).
        c.settle_all().map_err(|m| self.err(m))?;
        let mut names = Vec::new();
        let mut continuation = String::new();
        for _ in 0..MAX_LIST_PAGES {
            let req = Frame::List {
                kind: kind.as_str().to_string(),
                continuation: std::mem::take(&mut continuation),
            };
            c.send(&req)
                .and_then(|_| c.flush())
                .map_err(|m| self.err(m))?;
            match c.read("NAMES").map_err(|m| self.err(m))? {
                Frame::Names {
                    names: page,
                    continuation: next,
                } => {
                    names.extend(page);
                    if next.is_empty() {
                        names.sort();
                        names.dedup();
                        return Ok(names);
                    }
                    continuation = next;
                }
                Frame::Error { message } => {
                    let m = c.lost(format!("gate error listing {kind}: {message}"));
                    return Err(self.err(m));
                }
                other => {
                    let m = c.lost(format!("the gate answered LIST {kind} with {other:?}"));
                    return Err(self.err(m));
                }
            }
        }
        Err(self.err(format!("listing {kind}: more than {MAX_LIST_PAGES} pages")))
    }

    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, StorageError> {
        if kind == ObjectKind::Config {
            // Not yet put in this session: report it missing, so the engine offers its own
            // config (write-once; the gate refuses a different one and accepts the same).
            return match self
                .config
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
            {
                Some(b) => Ok(b.clone()),
                None => Err(StorageError::NotFound {
                    location: self.location(),
                    key: kind.key(name),
                }),
            };
        }
        Err(self.err(format!(
            "cannot read {}: the gate is write-only (restore reads the bucket with the operator's credentials: --repo s3://BUCKET/{})",
            kind.key(name),
            self.url.site
        )))
    }
}

impl Drop for GateStorage {
    fn drop(&mut self) {
        let c = self.conn.get_mut().unwrap_or_else(|p| p.into_inner());
        if c.settle_all().is_err() || c.bye().is_err() {
            c.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = GateUrl::parse("gate+ssh://ferry@10.0.1.5:2222/home").unwrap();
        assert_eq!(
            u,
            GateUrl {
                user: "ferry".into(),
                host: "10.0.1.5".into(),
                port: 2222,
                site: "home".into()
            }
        );
        assert_eq!(u.to_url(), "gate+ssh://ferry@10.0.1.5:2222/home");
        let u = GateUrl::parse("gate+ssh://jump.example.org/office/a").unwrap();
        assert_eq!(
            (u.user.as_str(), u.port, u.site.as_str()),
            ("ferry", 22, "office/a")
        );
        let u = GateUrl::parse("gate+ssh://x@[::1]:22/s").unwrap();
        assert_eq!(u.host, "::1");
        for bad in [
            "ssh://h/s",
            "gate+ssh://h",
            "gate+ssh://h/",
            "gate+ssh://-oProxyCommand=x/s",
            "gate+ssh://h:0/s",
            "gate+ssh://h:99999/s",
            "gate+ssh://h/../s",
            "gate+ssh://u;rm@h/s",
        ] {
            assert!(GateUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pinned_keys() {
        let k = PinnedKey::parse("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBkR host\n").unwrap();
        assert_eq!(
            k.known_hosts_line("127.0.0.1", 2200),
            "[127.0.0.1]:2200 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBkR\n"
        );
        assert_eq!(
            k.known_hosts_line("h", 22),
            "h ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBkR\n"
        );
        assert!(PinnedKey::parse("").is_err());
        assert!(PinnedKey::parse("ssh-dss AAAAB3NzaC1kc3MAAACBAP").is_err());
        assert!(PinnedKey::parse("ssh-ed25519 not$base64!!!!!!!!!").is_err());
        assert!(PinnedKey::parse("-----BEGIN OPENSSH PRIVATE KEY-----").is_err());
    }
}
