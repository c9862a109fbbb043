//! # ferry-testkit — the local cloud for tests and the demo
//!
//! Starts real parts on free loopback ports and stops them by PID when dropped:
//! - [`Moto`]: the pinned moto server from the project venv (`<workspace>/.venv/bin/moto_server`,
//!   created by `scripts/install-deps.sh`), with [`Moto::env`] giving the standard AWS
//!   variables (endpoint, dummy credentials, region) for a child process, and
//!   [`Moto::jumpbox_setup`] creating a bucket, an admin user and the jump-box role, turning
//!   on moto's IAM checks and returning credentials from STS AssumeRole; [`Moto::start_with`]
//!   starts it patched toward AWS (`py/moto/`, [`MOTO_PATCHES`]), plain, or logging to a given file.
//! - [`Sshd`]: Debian's real `/usr/sbin/sshd -D` with a generated config, its own host key and
//!   an `authorized_keys` file the test writes; [`keygen`] makes client keys;
//!   [`Sshd::ssh_command`] is the product's own ssh command line (`ferry_ssh::SshCommand`).
//!
//! Also: [`lambda_host`] (the real `bootstrap` under the Lambda runtime API, functions added or
//! replaced at run time), [`jumpbox`] (boxes booted from their real user data), [`lanhost`]
//! (sample LAN hosts), [`hostile`] (a backup VM speaking the gate's protocol wrongly on
//! purpose, and its tricks).
//!
//! Product crates must never depend on it except as a dev-dependency (the local-cloud tooling,
//! `ferry-localcloud`, is its one normal dependent). It never uses the
//! network beyond 127.0.0.1, and every wait is bounded.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod error;
pub use error::KitError;

/// Whether an SSH server answers on `127.0.0.1:port` (its banner starts `SSH-2.0-`, within 2 s).
pub(crate) fn answers_ssh(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port))
        .and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut b = [0u8; 8];
            s.read_exact(&mut b)?;
            Ok(&b == b"SSH-2.0-")
        })
        .unwrap_or(false)
}

/// The workspace root: the nearest directory at or above the working directory that holds
/// this workspace (its `crates/ferry-testkit/Cargo.toml`), else two levels above where this
/// crate was compiled. The working directory comes first because the compiled-in path goes
/// stale: cargo does not rebuild a crate whose checkout moved (two clones sharing one
/// `CARGO_TARGET_DIR`, as CI's clean clone and the developer's do), so a binary built in one
/// clone would look for `.venv` in the other. Test binaries run in their package's directory
/// and the scripts run from the workspace root, so the walk finds the right clone.
pub fn workspace_root() -> PathBuf {
    let is_root = |d: &Path| d.join("crates/ferry-testkit/Cargo.toml").is_file();
    if let Ok(cwd) = std::env::current_dir()
        && let Some(root) = cwd.ancestors().find(|d| is_root(d))
    {
        return root.to_path_buf();
    }
    let compiled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    compiled.canonicalize().unwrap_or(compiled)
}

/// The ports [`free_port`] hands out: below Linux's default ephemeral range (32768–60999,
/// `net.ipv4.ip_local_port_range`), so that no outgoing connection of a parallel suite (the
/// SDK's, ssh's, moto's own) takes a port between the pick and the server's bind. A port from
/// `bind(…:0)` is an ephemeral one, and CI once lost that race ("Port … is in use").
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

/// A loopback port that was free a moment ago, never the same one twice in a process. The
/// start is spread by the process id and the clock, so parallel test processes walk the
/// range from different places; a server that still loses a race is restarted on another
/// port by its starter ([`Moto::start_with`], [`Sshd::start`]).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(PORT_RANGE.end - PORT_RANGE.start);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seed = std::process::id().wrapping_mul(2_654_435_761) ^ nanos;
    let _ = NEXT.compare_exchange(0, seed % span + 1, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = PORT_RANGE.start + u16::try_from(n % span).unwrap_or(0);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a loopback port for a test server")
}

/// How many times a starter tries a server whose port was taken between the pick and its bind.
const PORT_TRIES: usize = 4;

/// Run `start` again while it fails because another program took the port it picked ("Address
/// already in use" in the server's output), at most [`PORT_TRIES`] times in all; each try
/// picks new ports.
pub(crate) fn retry_taken_port<T>(
    mut start: impl FnMut() -> Result<T, KitError>,
) -> Result<T, KitError> {
    let mut tries = 1;
    loop {
        match start() {
            Err(e) if tries < PORT_TRIES && e.port_taken() => tries += 1,
            other => return other,
        }
    }
}

/// Wait (bounded) until `check` is true.
pub fn wait_until(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> bool,
) -> Result<(), KitError> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(KitError::Timeout {
        what: what.to_string(),
        limit,
        log: String::new(),
    })
}

/// A child process killed (by its PID) and reaped on drop.
pub struct Proc {
    child: Child,
    name: String,
}

impl Proc {
    /// The child's process id (the one signalled on drop; it may be reused once reaped).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    /// SIGKILL it now (no cleanup code runs); it is reaped on drop.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on the PID of our own child, which has not been reaped yet.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            }
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            eprintln!("testkit: {} did not stop on SIGTERM; killed", self.name);
        }
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 request to 127.0.0.1:`port`; returns (status, body).
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> Result<(u16, String), KitError> {
    let fail = |step| move |source| KitError::Http { port, step, source };
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(fail("connecting"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(body))
        .map_err(fail("sending"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(fail("reading"))?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| KitError::NotHttp {
            port,
            start: format!("{text:.80}"),
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Static AWS credentials.
#[derive(Clone)]
pub struct Creds {
    /// Access key id (`AWS_ACCESS_KEY_ID`); the only part `Debug` shows.
    pub access_key_id: String,
    /// Secret access key (`AWS_SECRET_ACCESS_KEY`); hidden by `Debug`.
    pub secret_access_key: String,
    /// Session token (`AWS_SESSION_TOKEN`) of temporary credentials from STS; `None` for an
    /// IAM user's long-lived keys.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Creds({}, <secret>)", self.access_key_id)
    }
}

/// Credentials made by [`Moto::jumpbox_setup`].
#[derive(Debug, Clone)]
pub struct JumpboxCreds {
    /// An IAM user allowed everything (the operator).
    pub admin: Creds,
    /// Temporary credentials of the jump-box role, from STS AssumeRole.
    pub jumpbox: Creds,
    /// ARN of the jump-box role (`ferry-jumpbox`) that `jumpbox` was assumed from.
    pub role_arn: String,
}

/// A moto server on a free loopback port.
pub struct Moto {
    proc: Proc,
    port: u16,
    /// The S3 gateway endpoint's port (patched moto only): see [`Moto::s3_gateway_endpoint`].
    gateway_port: Option<u16>,
    log: PathBuf,
    /// The rule file of `py/moto/unkind_s3_faults.py` (absent: no faults).
    faults_file: PathBuf,
    /// The clock file of `py/moto/lifecycle.py` (absent: the real time).
    clock_file: PathBuf,
    _dir: tempfile::TempDir,
}

/// The region every moto client is pointed at (`AWS_REGION` and `AWS_DEFAULT_REGION` in
/// [`Moto::env`]).
pub const MOTO_REGION: &str = "us-east-1";

/// The test kit's moto launcher and its patches (`py/moto/`), one module per AWS behaviour
/// that moto 5.2.5 does not reproduce. Written into the server's private directory and run
/// with the venv's python, so every test and the local cloud get the same unkind moto.
pub const MOTO_PATCHES: &[(&str, &str)] = &[
    ("launcher.py", include_str!("../py/moto/launcher.py")),
    ("kitlog.py", include_str!("../py/moto/kitlog.py")),
    ("unkind_s3.py", include_str!("../py/moto/unkind_s3.py")),
    (
        "unkind_s3_checksum.py",
        include_str!("../py/moto/unkind_s3_checksum.py"),
    ),
    (
        "atomic_conditional_put.py",
        include_str!("../py/moto/atomic_conditional_put.py"),
    ),
    ("unkind_ec2.py", include_str!("../py/moto/unkind_ec2.py")),
    (
        "idempotent_terminate.py",
        include_str!("../py/moto/idempotent_terminate.py"),
    ),
    (
        "unkind_lambda.py",
        include_str!("../py/moto/unkind_lambda.py"),
    ),
    ("object_lock.py", include_str!("../py/moto/object_lock.py")),
    (
        "unkind_s3_faults.py",
        include_str!("../py/moto/unkind_s3_faults.py"),
    ),
    ("lifecycle.py", include_str!("../py/moto/lifecycle.py")),
];

/// Replace the JSON file `path` that one of moto's patches reads while it runs, atomically:
/// written beside it, then renamed over it, so moto never reads half a file.
fn replace_file(path: &Path, doc: &serde_json::Value) -> Result<(), KitError> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, doc.to_string()).map_err(KitError::io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(KitError::io("renaming", &tmp))
}

/// What a faulty S3 answers ([`S3Fault::answer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3FaultAnswer {
    /// moto's own answer (only the delay applies).
    Normal,
    /// 500 `InternalError`.
    InternalError,
    /// 503 `SlowDown`.
    SlowDown,
}

/// One rule of the kit's S3 faults (`py/moto/unkind_s3_faults.py`), set with
/// [`Moto::set_s3_faults`]: object requests with `method` whose key (without the bucket)
/// matches the regex `key` get `answer`, after `delay` — for the first `first` matching
/// requests, or each with `probability` (from a generator seeded with `seed`), or all.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Fault {
    /// HTTP method (`PUT`, `GET`, …); empty: any.
    pub method: String,
    /// Python regex searched in the object key, e.g. `^home/packs/`; empty: any key.
    pub key: String,
    /// What to answer.
    pub answer: S3FaultAnswer,
    /// Only the first N matching requests (`None`: see `probability`).
    pub first: Option<u32>,
    /// Count `first` per object key (each key's first N requests) instead of over all keys.
    pub per_key: bool,
    /// With `first` unset: each matching request with this probability (`None`: all).
    pub probability: Option<f64>,
    /// Seed of the rule's random generator (used with `probability`).
    pub seed: u64,
    /// Hold the answer this long.
    pub delay: Duration,
    /// Hold the answer after moto has handled the request (the object is stored, the answer
    /// is late), instead of before.
    pub delay_after: bool,
}

impl S3Fault {
    /// `answer` to every `method` request whose key matches `key` (add `first`, a
    /// probability or a delay with the fields).
    pub fn new(method: &str, key: &str, answer: S3FaultAnswer) -> S3Fault {
        S3Fault {
            method: method.to_string(),
            key: key.to_string(),
            answer,
            first: None,
            per_key: false,
            probability: None,
            seed: 0,
            delay: Duration::ZERO,
            delay_after: false,
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "seed": self.seed,
            "delay_ms": self.delay.as_millis() as u64,
            "delay_after": self.delay_after,
        });
        if !self.method.is_empty() {
            v["method"] = self.method.clone().into();
        }
        if !self.key.is_empty() {
            v["key"] = self.key.clone().into();
        }
        match self.answer {
            S3FaultAnswer::Normal => {}
            S3FaultAnswer::InternalError => v["status"] = 500.into(),
            S3FaultAnswer::SlowDown => v["status"] = 503.into(),
        }
        if let Some(n) = self.first {
            v["first"] = n.into();
            v["per_key"] = self.per_key.into();
        }
        if let Some(p) = self.probability {
            v["probability"] = p.into();
        }
        v
    }
}

/// How to start moto.
#[derive(Debug, Clone, Default)]
pub struct MotoOptions {
    /// Plain `moto_server`, without the test kit's patches: only for the tests that show a gap
    /// still exists in moto itself (they fail once moto fixes it; then drop the patch).
    pub plain: bool,
    /// Extra environment for moto: the patches' knobs (`FERRY_UNKIND_*`, each module's header
    /// names its own and its AWS-like default).
    pub env: Vec<(String, String)>,
    /// Append moto's output here instead of a private temp file.
    pub log: Option<PathBuf>,
}

impl MotoOptions {
    /// The test kit's moto with these knobs (`FERRY_UNKIND_*`) set.
    pub fn with_env(env: &[(&str, &str)]) -> MotoOptions {
        MotoOptions {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }
}

/// Decodes `%XX` escapes (URL encoding as IAM returns policy documents, or a query string);
/// anything else, including a `%` not followed by two hex digits, is kept as it is.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

impl Moto {
    /// The venv directory (`<workspace>/.venv`).
    pub fn venv() -> PathBuf {
        workspace_root().join(".venv")
    }

    /// Start the test kit's moto (patched to behave as AWS documents, `py/moto/`) from the
    /// project venv; waits until it answers HTTP.
    pub fn start() -> Result<Self, KitError> {
        Self::start_with(MotoOptions::default())
    }

    /// Start moto as `opts` says (patched or plain, knobs, a log file); waits until it answers HTTP.
    /// A port taken by another program between the pick and moto's bind ("Address already in
    /// use") starts moto again on new ports, at most [`PORT_TRIES`] times.
    pub fn start_with(opts: MotoOptions) -> Result<Self, KitError> {
        Self::start_picking(&opts, &mut free_port)
    }

    fn start_picking(opts: &MotoOptions, pick: &mut dyn FnMut() -> u16) -> Result<Self, KitError> {
        retry_taken_port(|| Self::start_once(opts, pick))
    }

    fn start_once(opts: &MotoOptions, pick: &mut dyn FnMut() -> u16) -> Result<Self, KitError> {
        let bin = Self::venv().join("bin/moto_server");
        if !bin.is_file() {
            return Err(KitError::Missing {
                path: bin,
                hint: "run scripts/install-deps.sh",
            });
        }
        let dir = tempfile::tempdir().map_err(KitError::temp_dir)?;
        let log = opts
            .log
            .clone()
            .unwrap_or_else(|| dir.path().join("moto.log"));
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(KitError::io("opening", &log))?;
        let port = pick();
        let gateway_port = (!opts.plain).then(pick);
        let mut cmd = if opts.plain {
            Command::new(&bin)
        } else {
            let py = dir.path().join("py");
            std::fs::create_dir_all(&py).map_err(KitError::io("creating", &py))?;
            for (name, text) in MOTO_PATCHES {
                std::fs::write(py.join(name), text)
                    .map_err(KitError::io("writing", py.join(name)))?;
            }
            let mut c = Command::new(Self::venv().join("bin/python3"));
            c.arg(py.join("launcher.py"));
            c
        };
        if let Some(g) = gateway_port {
            cmd.env("FERRY_UNKIND_S3_GATEWAY_PORT", g.to_string());
        }
        let faults_file = dir.path().join("s3_faults.json");
        cmd.env("FERRY_UNKIND_S3_FAULTS_FILE", &faults_file);
        let clock_file = dir.path().join("lifecycle_clock.json");
        cmd.env("FERRY_LIFECYCLE_CLOCK_FILE", &clock_file);
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
        let child = cmd
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(
                logf.try_clone()
                    .map_err(KitError::io("duplicating the handle of", &log))?,
            )
            .stderr(logf)
            .spawn()
            .map_err(KitError::spawn(bin.display()))?;
        let mut proc = Proc {
            child,
            name: "moto_server".into(),
        };
        wait_until("moto_server", Duration::from_secs(30), || {
            !proc.running()
                || (http(port, "GET", "/moto-api/", b"").is_ok()
                    && gateway_port.is_none_or(|g| http(g, "GET", "/moto-api/", b"").is_ok()))
        })?;
        if !proc.running() {
            return Err(KitError::Exited {
                program: "moto",
                output: std::fs::read_to_string(&log).unwrap_or_default(),
                log,
            });
        }
        Ok(Self {
            proc,
            port,
            gateway_port,
            log,
            faults_file,
            clock_file,
            _dir: dir,
        })
    }

    /// Run S3's lifecycle rules (`py/moto/lifecycle.py`) as if it were `at` (a time before
    /// the real one counts as the real one): at its next S3 request moto removes every object
    /// that an enabled Expiration rule makes due by then, as S3 would at the earliest. Objects'
    /// ages count from their real creation. The file is replaced atomically.
    pub fn set_lifecycle_clock(&self, at: std::time::SystemTime) -> Result<(), KitError> {
        let secs = at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        replace_file(&self.clock_file, &serde_json::json!({ "now": secs }))
    }

    /// The objects the kit's lifecycle removed so far, as `s3://BUCKET/KEY`, from moto's log.
    pub fn lifecycle_expired(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| l.strip_prefix("ferry-testkit lifecycle: expired "))
            .filter_map(|l| l.split(' ').next())
            .map(str::to_string)
            .collect()
    }

    /// Replace the kit's S3 fault rules (`py/moto/unkind_s3_faults.py`; an empty slice turns
    /// faults off). moto reads the new rules at its next object request; the rule counters
    /// start again. The file is replaced atomically (written beside it, then renamed).
    pub fn set_s3_faults(&self, rules: &[S3Fault]) -> Result<(), KitError> {
        let doc = serde_json::json!({
            "rules": rules.iter().map(S3Fault::to_json).collect::<Vec<_>>(),
        });
        replace_file(&self.faults_file, &doc)
    }

    /// The faults moto injected so far: its log lines from `unkind_s3_faults` that answered
    /// an error or held an answer.
    pub fn s3_faults_injected(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.starts_with("ferry-testkit unkind_s3_faults: "))
            .filter(|l| l.contains(" (rule "))
            .map(str::to_string)
            .collect()
    }

    /// moto's HTTP port on 127.0.0.1 (every AWS service on one port).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The S3 gateway endpoint of the test kit's moto (`py/moto/unkind_s3.py`): the same moto on
    /// a second loopback port, where S3 requests from an instance (a role session named after
    /// its instance id, as EC2 names them) whose subnet's route table has an S3 gateway endpoint
    /// carry `aws:SourceVpce` and pass the endpoint's policy. A jump box's S3 traffic goes here
    /// (`AWS_ENDPOINT_URL_S3`), as its route table sends it through the endpoint on AWS. `None`
    /// for plain moto.
    pub fn s3_gateway_endpoint(&self) -> Option<String> {
        self.gateway_port.map(|g| format!("http://127.0.0.1:{g}"))
    }

    /// moto's process id (the python launcher's, when patched), stopped when `self` drops.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// `http://127.0.0.1:PORT`: the endpoint for every AWS service (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// moto's own log (requests, errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Standard AWS variables for a child process: endpoint, dummy credentials, region, and
    /// no shared config/credential files or instance metadata lookups.
    pub fn env(&self) -> Vec<(String, String)> {
        self.env_with(&Creds {
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
            session_token: None,
        })
    }

    /// Like [`Moto::env`] with the given credentials.
    pub fn env_with(&self, c: &Creds) -> Vec<(String, String)> {
        let mut v = vec![
            ("AWS_ENDPOINT_URL".to_string(), self.endpoint()),
            ("AWS_ACCESS_KEY_ID".into(), c.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), c.secret_access_key.clone()),
            ("AWS_REGION".into(), MOTO_REGION.into()),
            ("AWS_DEFAULT_REGION".into(), MOTO_REGION.into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ("AWS_CONFIG_FILE".into(), "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE".into(), "/dev/null".into()),
        ];
        if let Some(t) = &c.session_token {
            v.push(("AWS_SESSION_TOKEN".into(), t.clone()));
        }
        v
    }

    /// Run a Python snippet with the venv's python (boto3 available) and this moto's env
    /// (plus `extra`); returns stdout. For test setup only.
    pub fn python(
        &self,
        script: &str,
        args: &[&str],
        extra: &[(String, String)],
    ) -> Result<String, KitError> {
        let py = Self::venv().join("bin/python3");
        let mut cmd = Command::new(&py);
        cmd.arg("-c").arg(script).args(args);
        cmd.env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE");
        for (k, v) in self.env().into_iter().chain(extra.iter().cloned()) {
            cmd.env(k, v);
        }
        let out = cmd.output().map_err(KitError::spawn(py.display()))?;
        if !out.status.success() {
            return Err(KitError::failed("python setup", &out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Turn on moto's IAM checks: every later request must be signed with credentials moto
    /// knows (an IAM user's keys or an assumed role's) and be allowed by their policies.
    /// moto 5.2.5: `POST /moto-api/reset-auth` with the number of requests still exempt
    /// (the same setting as the server's `INITIAL_NO_AUTH_ACTION_COUNT`), here 0.
    pub fn enable_iam_checks(&self) -> Result<(), KitError> {
        match http(self.port, "POST", "/moto-api/reset-auth", b"0")? {
            (200, _) => Ok(()),
            (status, body) => Err(KitError::HttpStatus {
                what: "moto reset-auth",
                status,
                body,
            }),
        }
    }

    /// Create `bucket`, an admin IAM user and the jump-box role (s3:PutObject on
    /// `bucket/*`, s3:ListBucket on `bucket`; nothing else), then turn on IAM checks and
    /// assume the role with the admin's keys. See `py/jumpbox_setup.py`.
    pub fn jumpbox_setup(&self, bucket: &str) -> Result<JumpboxCreds, KitError> {
        let out = self.python(
            include_str!("../py/jumpbox_setup.py"),
            &[bucket, &self.port.to_string()],
            &[],
        )?;
        let v: serde_json::Value = match serde_json::from_str(out.trim()) {
            Ok(v) => v,
            Err(source) => {
                return Err(KitError::SetupOutput {
                    what: "jumpbox_setup.py",
                    output: out,
                    source,
                });
            }
        };
        let creds = |o: &serde_json::Value| Creds {
            access_key_id: o["AccessKeyId"].as_str().unwrap_or_default().to_string(),
            secret_access_key: o["SecretAccessKey"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            session_token: o["SessionToken"].as_str().map(str::to_string),
        };
        Ok(JumpboxCreds {
            admin: creds(&v["admin"]),
            jumpbox: creds(&v["jumpbox"]),
            role_arn: v["role_arn"].as_str().unwrap_or_default().to_string(),
        })
    }
}

/// Make an ed25519 key pair at `path` (no passphrase); returns the public key line.
pub fn keygen(path: &Path) -> Result<String, KitError> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ferry-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(KitError::spawn("ssh-keygen"))?;
    if !out.status.success() {
        return Err(KitError::failed(
            format!("ssh-keygen -f {}", path.display()),
            &out,
        ));
    }
    let public = path.with_extension("pub");
    std::fs::read_to_string(&public).map_err(KitError::io("reading", &public))
}

/// How to run a test sshd.
#[derive(Debug, Clone)]
pub struct SshdOptions {
    /// The only user allowed (`AllowUsers`). Default `root`: tests run as root in a sandbox,
    /// and sshd can only switch to another user when run as root anyway; using root avoids
    /// creating system users on the developer's machine. The forced command, not the user,
    /// is what confines the key.
    pub user: String,
    /// The `authorized_keys` contents.
    pub authorized_keys: String,
    /// `SetEnv` pairs for every session (how tests hand the gate its AWS endpoint and
    /// credentials; on EC2 the instance role does that).
    pub set_env: Vec<(String, String)>,
    /// Extra `sshd_config` lines.
    pub extra_config: String,
}

impl Default for SshdOptions {
    fn default() -> Self {
        Self {
            user: "root".into(),
            authorized_keys: String::new(),
            set_env: Vec::new(),
            extra_config: String::new(),
        }
    }
}

/// A real OpenSSH sshd on 127.0.0.1.
pub struct Sshd {
    proc: Proc,
    port: u16,
    dir: tempfile::TempDir,
}

impl Sshd {
    /// Start `/usr/sbin/sshd -D -e -f <generated config>` and wait for its banner.
    ///
    /// Sandbox notes: Debian's sshd refuses to start without its privilege-separation
    /// directory `/run/sshd`, which only the init script creates, so it is created here if
    /// missing; `StrictModes no` because the files live in a temp dir; `UsePAM no` so no
    /// PAM stack is needed; password and keyboard-interactive logins are off.
    /// A port taken by another program between the pick and sshd's bind ("Address already in
    /// use") starts sshd again on a new port, at most [`PORT_TRIES`] times.
    pub fn start(opts: SshdOptions) -> Result<Self, KitError> {
        Self::start_picking(&opts, &mut free_port)
    }

    fn start_picking(opts: &SshdOptions, pick: &mut dyn FnMut() -> u16) -> Result<Self, KitError> {
        retry_taken_port(|| Self::start_once(opts, pick))
    }

    fn start_once(opts: &SshdOptions, pick: &mut dyn FnMut() -> u16) -> Result<Self, KitError> {
        let sshd = Path::new("/usr/sbin/sshd");
        if !sshd.is_file() {
            return Err(KitError::Missing {
                path: sshd.to_path_buf(),
                hint: "run scripts/install-deps.sh (openssh-server)",
            });
        }
        if !Path::new("/run/sshd").is_dir() {
            std::fs::create_dir_all("/run/sshd").map_err(KitError::io("creating", "/run/sshd"))?;
        }
        let dir = tempfile::Builder::new()
            .prefix("ferry-sshd-")
            .tempdir()
            .map_err(KitError::temp_dir)?;
        let d = dir.path();
        let host_key = d.join("ssh_host_ed25519_key");
        keygen(&host_key)?;
        std::fs::write(d.join("authorized_keys"), &opts.authorized_keys)
            .map_err(KitError::io("writing", d.join("authorized_keys")))?;
        let port = pick();
        let mut conf = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {pid}\nAuthorizedKeysFile {ak}\n\
             PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\nAllowUsers {user}\nStrictModes no\nUsePAM no\n\
             PrintMotd no\nLogLevel VERBOSE\nSubsystem sftp /usr/lib/openssh/sftp-server\n",
            hk = host_key.display(),
            pid = d.join("sshd.pid").display(),
            ak = d.join("authorized_keys").display(),
            user = opts.user,
        );
        if !opts.set_env.is_empty() {
            conf.push_str("SetEnv");
            for (k, v) in &opts.set_env {
                conf.push_str(&format!(" \"{k}={v}\""));
            }
            conf.push('\n');
        }
        conf.push_str(&opts.extra_config);
        let conf_path = d.join("sshd_config");
        std::fs::write(&conf_path, conf).map_err(KitError::io("writing", &conf_path))?;
        let check = Command::new(sshd)
            .arg("-t")
            .arg("-f")
            .arg(&conf_path)
            .output()
            .map_err(KitError::spawn("sshd -t"))?;
        if !check.status.success() {
            return Err(KitError::failed(
                format!("sshd -t -f {}", conf_path.display()),
                &check,
            ));
        }
        let log_path = d.join("sshd.log");
        let log = std::fs::File::create(&log_path).map_err(KitError::io("creating", &log_path))?;
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(KitError::io("duplicating the handle of", &log_path))?,
            )
            .stderr(log)
            .spawn()
            .map_err(KitError::spawn(sshd.display()))?;
        let mut proc = Proc {
            child,
            name: "sshd".into(),
        };
        let mut ended = false;
        wait_until("sshd", Duration::from_secs(20), || {
            ended = !proc.running();
            ended || answers_ssh(port)
        })
        .map_err(|e| e.with_log(std::fs::read_to_string(&log_path).unwrap_or_default()))?;
        if ended {
            return Err(KitError::Exited {
                program: "sshd",
                output: std::fs::read_to_string(&log_path).unwrap_or_default(),
                log: log_path,
            });
        }
        Ok(Self { proc, port, dir })
    }

    /// The loopback port sshd listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// sshd's process id (the listener started with `-D`), stopped when `self` drops.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The host's public key file (`ssh-ed25519 AAAA… comment`), for `--host-key`.
    pub fn host_key_pub(&self) -> PathBuf {
        self.dir.path().join("ssh_host_ed25519_key.pub")
    }

    /// Replace the `authorized_keys` contents (read by sshd on every login).
    pub fn set_authorized_keys(&self, text: &str) -> Result<(), KitError> {
        let path = self.dir.path().join("authorized_keys");
        std::fs::write(&path, text).map_err(KitError::io("writing", &path))
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// A scratch directory that lives as long as the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Base `ssh` command for this server with `key`: [`ferry_ssh::SshCommand`]'s command
    /// line (batch mode, the host key pinned in `known_hosts` beside the server, no agent, no
    /// config file), ending with `-- 127.0.0.1`, so that what a test appends is the remote
    /// command.
    pub fn ssh_command(&self, user: &str, key: &Path) -> Command {
        self.ssh_command_with(user, key, &[])
    }

    /// [`ssh_command`](Self::ssh_command) with more ssh options (`-tt`, `-W HOST:PORT`,
    /// `-R …`) before the destination, for tests that check the server refuses them;
    /// command-line forwarding is not cleared here, so that `-W`/`-R` reach the server.
    pub fn ssh_command_with(&self, user: &str, key: &Path, options: &[&str]) -> Command {
        let kh = self.dir.path().join("known_hosts");
        let pubkey = std::fs::read_to_string(self.host_key_pub()).unwrap_or_default();
        let mut parts = pubkey.split_whitespace();
        let line = format!(
            "[127.0.0.1]:{} {} {}\n",
            self.port,
            parts.next().unwrap_or(""),
            parts.next().unwrap_or("")
        );
        let _ = std::fs::write(&kh, line);
        let ssh = ferry_ssh::SshCommand::new(user, "127.0.0.1", self.port, key, &kh)
            .allow_command_line_forwarding();
        match ssh.args() {
            Ok(mut args) => {
                // Without a remote command the builder ends with `-- 127.0.0.1`; ssh reads
                // options only before the `--`.
                let at = args.len().saturating_sub(2);
                debug_assert_eq!(args.get(at).map(|a| a.to_string_lossy()), Some("--".into()));
                args.splice(at..at, options.iter().map(std::ffi::OsString::from));
                let mut c = Command::new("ssh");
                c.args(args).env_remove("SSH_AUTH_SOCK");
                c
            }
            // A test's own scratch paths: ssh could not read one as itself. Run something
            // that fails saying so, rather than a different file.
            Err(e) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg("echo \"$0\" >&2; exit 255")
                    .arg(e.to_string());
                c
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every module in `py/moto/` is written beside the launcher (a module left out fails
    /// moto's start with an import error in every test).
    #[test]
    fn every_moto_module_is_shipped() {
        let dir = workspace_root().join("crates/ferry-testkit/py/moto");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".py"))
            .collect();
        let mut shipped: Vec<String> = MOTO_PATCHES.iter().map(|(n, _)| n.to_string()).collect();
        on_disk.sort();
        shipped.sort();
        assert_eq!(on_disk, shipped);
    }

    #[test]
    fn free_ports_are_below_the_ephemeral_range_distinct_and_free() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            ports.len(),
            "a port handed out twice: {ports:?}"
        );
        for p in ports {
            assert!(PORT_RANGE.contains(&p), "{p} outside {PORT_RANGE:?}");
            TcpListener::bind(("127.0.0.1", p)).unwrap();
        }
    }

    /// A picker that hands out `taken` (held by a listener of the test's own) first, as when
    /// another program binds the port between the pick and the server's bind (CI lost that
    /// race once), then fresh ports.
    fn first_taken(taken: u16) -> impl FnMut() -> u16 {
        let mut first = true;
        move || {
            if std::mem::take(&mut first) {
                taken
            } else {
                free_port()
            }
        }
    }

    #[test]
    fn moto_whose_ports_were_taken_starts_again_on_others() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = held.local_addr().unwrap().port();
        let once = Moto::start_once(&MotoOptions::default(), &mut first_taken(taken));
        match once {
            Err(KitError::Exited { output, .. }) => assert!(output.contains("in use"), "{output}"),
            Err(e) => panic!("not the port error the retry looks for: {e}"),
            Ok(_) => panic!("moto started on a taken port"),
        }
        let m = Moto::start_picking(&MotoOptions::default(), &mut first_taken(taken)).unwrap();
        assert_ne!(m.port(), taken);
        assert_ne!(
            m.s3_gateway_endpoint(),
            Some(format!("http://127.0.0.1:{taken}"))
        );
        assert_eq!(http(m.port(), "GET", "/moto-api/", b"").unwrap().0, 200);
    }

    #[test]
    fn sshd_whose_port_was_taken_starts_again_on_another() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = held.local_addr().unwrap().port();
        let once = Sshd::start_once(&SshdOptions::default(), &mut first_taken(taken));
        match once {
            Err(KitError::Exited { output, .. }) => assert!(output.contains("in use"), "{output}"),
            Err(e) => panic!("not the port error the retry looks for: {e}"),
            Ok(_) => panic!("sshd started on a taken port"),
        }
        let s = Sshd::start_picking(&SshdOptions::default(), &mut first_taken(taken)).unwrap();
        assert_ne!(s.port(), taken);
        assert!(answers_ssh(s.port()));
    }

    #[test]
    fn moto_starts_answers_and_stops() {
        let m = Moto::start().unwrap();
        let pid = m.pid();
        assert_eq!(http(m.port(), "GET", "/moto-api/", b"").unwrap().0, 200);
        let port = m.port();
        drop(m);
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "moto {pid} still listening"
        );
    }

    #[test]
    fn sshd_runs_commands_for_the_authorized_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id");
        let other = dir.path().join("other");
        let pubkey = keygen(&key).unwrap();
        keygen(&other).unwrap();
        let s = Sshd::start(SshdOptions {
            authorized_keys: pubkey,
            ..Default::default()
        })
        .unwrap();
        let out = s
            .ssh_command("root", &key)
            .arg("echo hello-from-sshd")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "hello-from-sshd",
            "{}",
            s.log()
        );
        let out = s.ssh_command("root", &other).arg("true").output().unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    }
}
pub mod hostile;
pub mod jumpbox;
pub mod lambda_host;
pub mod lanhost;
pub mod proxy;
pub use proxy::{FaultPlan, FaultProxy, NetFault};
