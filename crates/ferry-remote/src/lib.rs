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
//! Every value handed to `ssh` (paths of the identity, the pinned known-hosts file and the
//! ssh_config; user and host) goes through [`ferry_ssh`], so each means exactly one thing to
//! ssh or is refused naming it. A box that is still booting (sshd up with the AMI's own host
//! keys, the session's key not installed yet) is retried until [`GateOptions::retry_budget`].
//!
//! Must never depend on AWS crates or an SSH library (the whole workspace uses `ssh`).

use ferry_proto::{Frame, FrameReader, PROTOCOL_VERSION, write_frame};
use ferry_repo::format::ObjectKind;
use ferry_repo::storage::{PutOutcome, Storage, StorageError};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes per DATA frame the client sends.
const CHUNK: usize = 512 * 1024;
/// Bytes the client buffers for small frames (DATA payloads bypass the buffer).
const WRITE_BUF: usize = 64 * 1024;
/// Most stderr bytes of `ssh` kept for messages.
const STDERR_CAP: usize = 16 * 1024;
/// Most LIST pages followed (1000 names each): a bound, not a limit anyone should reach.
const MAX_LIST_PAGES: usize = 100_000;

/// A parsed `gate+ssh://USER@HOST:PORT/SITE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateUrl {
    pub user: String,
    pub host: String,
    pub port: u16,
    pub site: String,
}

impl GateUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("gate+ssh://")
            .ok_or_else(|| format!("{url:?} is not a gate+ssh://USER@HOST:PORT/SITE location"))?;
        let (authority, site) = rest
            .split_once('/')
            .ok_or_else(|| format!("{url:?}: missing /SITE after the host"))?;
        let site = site.trim_end_matches('/');
        if site.is_empty()
            || site.starts_with('/')
            || site
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(format!("{url:?}: {site:?} is not a valid site prefix"));
        }
        let (user, hostport) = authority.split_once('@').unwrap_or(("ferry", authority));
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, p) = h
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: unclosed '[' in the host"))?;
            (h, p.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port = match port {
            None => 22,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{url:?}: port {p:?} is not a valid port"))?,
        };
        let ok = |s: &str| {
            !s.is_empty()
                && !s.starts_with('-')
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
        };
        if !ok(host) {
            return Err(format!(
                "{url:?}: {host:?} is not a valid host name or address"
            ));
        }
        if !ok(user) || user.contains(':') {
            return Err(format!("{url:?}: {user:?} is not a valid user name"));
        }
        Ok(Self {
            user: user.into(),
            host: host.into(),
            port,
            site: site.into(),
        })
    }

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
    pub objects: usize,
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
}

impl GateOptions {
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
        }
    }
}

/// The pinned host key read from `--host-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedKey {
    pub key_type: String,
    pub base64: String,
}

impl PinnedKey {
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read host key file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("host key file {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or("no public key in it")?;
        let mut parts = line.split_whitespace();
        let key_type = parts.next().unwrap_or_default();
        let b64 = parts
            .next()
            .ok_or("expected \"TYPE BASE64\" (an OpenSSH public key line)")?;
        const TYPES: [&str; 5] = [
            "ssh-ed25519",
            "ecdsa-sha2-nistp256",
            "ecdsa-sha2-nistp384",
            "ecdsa-sha2-nistp521",
            "ssh-rsa",
        ];
        if !TYPES.contains(&key_type) {
            return Err(format!(
                "unsupported or invalid key type {key_type:?} (expected one of {})",
                TYPES.join(", ")
            ));
        }
        if b64.len() < 16
            || !b64
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        {
            return Err("the key is not base64".to_string());
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
    pub max_object_size: u64,
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
    child: Child,
    reader: FrameReader<ChildStdout>,
    writer: Option<BufWriter<ChildStdin>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_thread: Option<JoinHandle<()>>,
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

fn backend(location: &str, message: String) -> StorageError {
    StorageError::Backend {
        location: location.to_string(),
        message,
    }
}

enum Attempt {
    Ok(Box<Conn>, GateLimits, String),
    Retry(String),
    Fatal(String),
}

/// ssh's arguments for every attempt. Each path, the user and the host go through
/// [`ferry_ssh`] so that ssh reads exactly them (a path with a space would otherwise be two
/// known-hosts files, the first of which anyone who can write it controls), or are refused
/// here naming them.
fn ssh_args(
    gate: &GateUrl,
    opts: &GateOptions,
    key: &PinnedKey,
    known_hosts: &Path,
) -> Result<Vec<OsString>, String> {
    let config = match &opts.ssh_config {
        Some(p) => {
            ferry_ssh::config_file_arg(p).map_err(|e| format!("the ssh_config file: {e}"))?
        }
        None => OsString::from("/dev/null"),
    };
    let mut a: Vec<OsString> = vec!["-F".into(), config, "-T".into(), "-x".into(), "-a".into()];
    let mut o = |v: OsString| {
        a.push("-o".into());
        a.push(v);
    };
    for v in [
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
        "ClearAllForwardings=yes",
        "ConnectTimeout=10",
        "ServerAliveInterval=15",
        "ServerAliveCountMax=4",
    ] {
        o(v.into());
    }
    o(format!("HostKeyAlgorithms={}", key.algorithms()).into());
    o(format!("LogLevel={}", ferry_ssh::log_level(opts.ssh_debug)).into());
    o(ferry_ssh::path_option("UserKnownHostsFile", known_hosts)
        .map_err(|e| format!("the pinned known-hosts file Ferry writes under TMPDIR: {e}"))?);
    // `-o IdentityFile=` rather than `-i`: ssh %-expands both, only this one can be quoted.
    o(ferry_ssh::path_option("IdentityFile", &opts.identity)
        .map_err(|e| format!("the SSH identity: {e}"))?);
    let user = ferry_ssh::user_arg(&gate.user).map_err(|e| e.to_string())?;
    let host = ferry_ssh::host_arg(&gate.host).map_err(|e| e.to_string())?;
    a.extend([
        "-p".into(),
        gate.port.to_string().into(),
        "-l".into(),
        user.into(),
        "--".into(),
        host.into(),
    ]);
    Ok(a)
}

/// Read ssh's stderr line by line: debug lines (`ferry -vv`) go to the log at debug level,
/// the rest is kept (up to [`STDERR_CAP`] bytes) for error messages.
fn spawn_stderr_reader(
    err: std::process::ChildStderr,
    sink: Arc<Mutex<Vec<u8>>>,
    host: String,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(err);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            if ferry_ssh::is_debug_line(&text) {
                tracing::debug!("ssh {host}: {}", text.trim_end());
                continue;
            }
            let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
            let room = STDERR_CAP.saturating_sub(s.len());
            s.extend_from_slice(&line[..line.len().min(room)]);
        }
    })
}

impl GateStorage {
    /// Connect (retrying, within [`GateOptions::retry_budget`], connection failures and a
    /// box that does not present the pinned key or refuses ours yet) and say HELLO.
    pub fn connect(url: &str, opts: &GateOptions) -> Result<Self, StorageError> {
        let gate = GateUrl::parse(url).map_err(|m| backend(url, m))?;
        let location = gate.to_url();
        let key = PinnedKey::read(&opts.host_key).map_err(|m| backend(&location, m))?;
        if !opts.identity.is_file() {
            return Err(backend(
                &location,
                format!(
                    "SSH identity {} is not a readable file",
                    opts.identity.display()
                ),
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("ferry-ssh-")
            .tempdir()
            .map_err(|e| {
                backend(
                    &location,
                    format!("cannot create a private temp dir for known_hosts: {e}"),
                )
            })?;
        let kh = dir.path().join("known_hosts");
        std::fs::write(&kh, key.known_hosts_line(&gate.host, gate.port))
            .map_err(|e| backend(&location, format!("cannot write {}: {e}", kh.display())))?;
        let args = ssh_args(&gate, opts, &key, &kh).map_err(|m| backend(&location, m))?;
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
            match Self::attempt(&gate, opts, &args, &key) {
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
                Attempt::Fatal(m) => return Err(backend(&location, m)),
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
            format!(
                "cannot connect to {host} (gave up after retries: {tried} attempt(s) in {:.1} s of the {} s allowed); last cause: {last}",
                started.elapsed().as_secs_f64(),
                opts.retry_budget.as_secs()
            ),
        ))
    }

    fn attempt(gate: &GateUrl, opts: &GateOptions, args: &[OsString], key: &PinnedKey) -> Attempt {
        let mut cmd = Command::new(&opts.ssh_program);
        cmd.args(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Attempt::Fatal(format!("cannot run {}: {e}", opts.ssh_program.display()));
            }
        };
        let (Some(stdin), Some(stdout), Some(err)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Attempt::Fatal("ssh started without its pipes".to_string());
        };
        let host = format!("{}:{}", gate.host, gate.port);
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_thread = spawn_stderr_reader(err, stderr.clone(), host.clone());
        let mut conn = Conn {
            child,
            reader: FrameReader::new(stdout),
            writer: Some(BufWriter::with_capacity(WRITE_BUF, stdin)),
            stderr,
            stderr_thread: Some(stderr_thread),
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
                .map_err(|e| e.to_string()),
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
        let msgs: Vec<String> = [settled.err(), refused, bye.err()]
            .into_iter()
            .flatten()
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

    fn err(&self, m: String) -> StorageError {
        backend(&self.location(), m)
    }
}

impl Conn {
    fn send(&mut self, f: &Frame<'_>) -> Result<(), String> {
        let w = self
            .writer
            .as_mut()
            .ok_or("the connection to the gate is closed")?;
        write_frame(w, f).map_err(|e| format!("sending {} to the gate: {e}", f.type_name()))
    }

    fn flush(&mut self) -> Result<(), String> {
        let w = self
            .writer
            .as_mut()
            .ok_or("the connection to the gate is closed")?;
        w.flush().map_err(|e| format!("sending to the gate: {e}"))
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// Close stdin, wait for ssh, collect its stderr.
    fn finish_failed(&mut self) -> (Option<i32>, String) {
        self.writer = None;
        let status = wait_bounded(&mut self.child, Duration::from_secs(15));
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        self.closed = true;
        (status, self.stderr_text())
    }

    fn shutdown(&mut self) {
        let _ = self.finish_failed();
    }

    /// Mark the connection unusable and describe why, with ssh's/the gate's stderr, the
    /// packs sent but never confirmed and the refusals not reported yet.
    fn lost(&mut self, what: String) -> String {
        let (status, text) = self.finish_failed();
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
        msg
    }

    /// A write to the gate failed: read the answers that still arrive (the gate may have
    /// confirmed packs before it went away; at most one frame per unanswered pack, and ssh
    /// has closed its end), then give up.
    fn lost_writing(&mut self, what: String) -> String {
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
            return self.broken.clone().unwrap_or_default();
        }
        self.lost(what)
    }

    /// Match one answer to the oldest unanswered pack (answers come in order).
    fn settle(&mut self, f: Frame<'static>) -> Result<(), String> {
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
    fn settle_one(&mut self) -> Result<(), String> {
        let due = self
            .unanswered
            .front()
            .map_or_else(String::new, |s| s.what.clone());
        let f = self.read(&format!("the answer for {due}"))?;
        self.settle(f)
    }

    /// Read every outstanding answer (refusals are kept for [`Conn::take_refused`]).
    fn settle_all(&mut self) -> Result<(), String> {
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
    fn send_object(&mut self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<(), String> {
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

    fn check(&self) -> Result<(), String> {
        match &self.broken {
            Some(m) => Err(format!("the connection to the gate was lost earlier: {m}")),
            None if self.closed => Err("the connection to the gate is closed".to_string()),
            None => Ok(()),
        }
    }

    fn read(&mut self, waiting_for: &str) -> Result<Frame<'static>, String> {
        match self.reader.read() {
            Ok(Some(f)) => Ok(owned(f)),
            Ok(None) => Err(self.lost(format!(
                "the gate closed the connection while we waited for {waiting_for}"
            ))),
            Err(e) => Err(self.lost(format!("reading {waiting_for} from the gate: {e}"))),
        }
    }

    fn bye(&mut self) -> Result<(), String> {
        if self.closed || self.broken.is_some() {
            return Ok(());
        }
        self.send(&Frame::Bye)?;
        self.flush()?;
        let r = self.read("BYE_OK");
        self.shutdown();
        match r {
            Ok(Frame::ByeOk) => Ok(()),
            Ok(other) => Err(format!("the gate answered BYE with {other:?}")),
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

/// Wait for `child` at most `limit`, then kill it.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return s.code(),
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                return child.wait().ok().and_then(|s| s.code());
            }
        }
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
        let not_sent = |m: String| self.err(format!("{m} ({what} was not sent)"));
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
                return Err(not_sent(m));
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
            return Err(not_sent(m));
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
