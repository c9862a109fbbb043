//! A small Lambda host: runs the real `bootstrap` binary under the Lambda runtime API and
//! serves the Lambda Invoke API in front of it, on loopback.
//!
//! Why not moto: moto's Lambda `Invoke` never runs the function's code (it echoes or runs a
//! Docker image), so the product's real binary would never execute. This host does what the
//! Lambda service does for a custom runtime (`provided.al2023`):
//! - per function, a runtime API on its own free loopback port
//!   (`GET /2018-06-01/runtime/invocation/next`, `POST …/invocation/{id}/response`,
//!   `POST …/invocation/{id}/error`, `POST /2018-06-01/runtime/init/error`), and the binary
//!   started as a child with `AWS_LAMBDA_RUNTIME_API=127.0.0.1:PORT`, the standard
//!   `AWS_LAMBDA_*` variables and the environment the test gives (nothing else is inherited
//!   but `PATH`);
//! - one Invoke endpoint (`POST /2015-03-31/functions/{name}/invocations`, as `aws-sdk-lambda`'s
//!   `invoke()` sends it when its endpoint URL points here): `RequestResponse` waits for the
//!   function's answer (200, with `X-Amz-Function-Error: Unhandled` for a function error, as
//!   Lambda does), `Event` queues and answers 202, `DryRun` answers 204; an unknown function is
//!   a 404 `ResourceNotFoundException`. Every other Lambda API request (CreateFunction,
//!   ListFunctions, …) is a 404 `UnknownOperationException`, or, after
//!   [`LambdaHost::set_api_upstream`], passed through to moto unchanged.
//!
//! An invocation that outlives the function's timeout is answered `Sandbox.Timedout` and its
//! process is killed; a process that exits (killed, crashed) fails what it held with
//! `Runtime.ExitError`, and the next Invoke starts a new one (a cold init): Lambda resets the
//! execution environment after a crash or a timeout in the invoke phase
//! (<https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html>, "Failures
//! during the invoke phase"). A process whose init failed stays failed.
//!
//! Gaps, on purpose: request signatures are not checked (who may invoke is proven by the policy
//! evaluator, not here); one invocation at a time per function (one runtime process, as one
//! Lambda execution environment); the timeout of an `Event` (asynchronous) invocation is not
//! enforced.
//!
//! Faults, off until a test asks (AWS's worst days, not its steady state): a JSON rule file
//! [`INVOKE_FAULTS_FILE`] in the host's log directory, read again when it changes, makes
//! Invoke answer as Lambda does when it throttles (429 `TooManyRequestsException`) or fails
//! itself (500 `ServiceException`) before the function runs
//! (<https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html#API_Invoke_Errors>):
//! `{"rules": [{"function": "ferry-build", "answer": "throttle" | "service_error",
//! "first": N}]}` (`first` absent: every matching call). [`write_invoke_faults`] writes it.
//!
//! Every child's stdout and stderr go to a log file ([`LambdaHost::log`]), which tests search.
//! [`LambdaHost::init_duration`] is the time from spawning the process to its first `next`
//! request (Lambda's cold init).
//!
//! Functions can be added or replaced while the host runs ([`LambdaHost::empty`],
//! [`LambdaHost::load`], [`LambdaHost::remove`]): the Invoke endpoint keeps its port. A
//! replacement is started and initialised first; then invocations go to it, queued ones move to
//! it, and the old process finishes what it is running (bounded by its timeout) before it is
//! stopped — like an update of a Lambda function.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{KitError, Proc};

/// One function to host.
#[derive(Clone)]
pub struct FunctionSpec {
    /// The function name (`ferry-build`), as callers name it.
    pub name: String,
    /// The `bootstrap` executable.
    pub binary: PathBuf,
    /// The function's environment (its configuration and AWS endpoint/credentials).
    pub env: Vec<(String, String)>,
    /// The function's timeout.
    pub timeout: Duration,
}

impl std::fmt::Debug for FunctionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The environment may hold credentials: names only.
        let keys: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("FunctionSpec")
            .field("name", &self.name)
            .field("binary", &self.binary)
            .field("env", &keys)
            .finish()
    }
}

enum Outcome {
    Response(Vec<u8>),
    /// The error's JSON body.
    Error(Vec<u8>),
}

struct Invocation {
    id: String,
    payload: Vec<u8>,
    deadline_ms: u64,
    reply: Option<mpsc::Sender<Outcome>>,
}

struct Function {
    spec: FunctionSpec,
    queue: Mutex<VecDeque<Invocation>>,
    ready: Condvar,
    pending: Mutex<HashMap<String, Option<mpsc::Sender<Outcome>>>>,
    init_error: Mutex<Option<String>>,
    exited: AtomicBool,
    spawned: Mutex<Option<Instant>>,
    first_next: Mutex<Option<Instant>>,
    runtime_port: u16,
    log: PathBuf,
    proc: Mutex<Option<Proc>>,
    /// Replaced or removed: hands out no more invocations; its runtime API listener ends once
    /// its process is stopped (an invocation in flight still posts its answer).
    retired: AtomicBool,
    /// Held while a new process replaces one that exited (one at a time).
    revive: Mutex<()>,
    /// Held while a process's death is recorded (what it held fails, then `exited` shows) and
    /// while `revive` checks `exited` and starts the next process: an Invoke that follows the
    /// answer `Runtime.ExitError` or `Sandbox.Timedout` always finds `exited` set, and a death
    /// is never recorded against the process that replaced it.
    death: Mutex<()>,
}

/// The rule file of Invoke faults, in the host's log directory (see the module header).
pub const INVOKE_FAULTS_FILE: &str = "invoke-faults.json";

/// How a faulty Invoke answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvokeAnswer {
    /// 429 `TooManyRequestsException` (Reason `ConcurrentInvocationLimitExceeded`): the
    /// account's or the function's concurrency is used up; the function did not run.
    Throttle,
    /// 500 `ServiceException`: the Lambda service failed; the function did not run.
    ServiceError,
}

/// One Invoke fault rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvokeFault {
    /// The function name it applies to.
    pub function: String,
    /// The answer.
    pub answer: InvokeAnswer,
    /// Only the first N matching calls (`None`: all).
    pub first: Option<u32>,
}

/// Write the Invoke fault rules for the host whose log directory is `dir` (atomically; an
/// empty list turns faults off).
pub fn write_invoke_faults(dir: &Path, rules: &[InvokeFault]) -> Result<(), KitError> {
    let rules: Vec<serde_json::Value> = rules
        .iter()
        .map(|r| {
            serde_json::json!({
                "function": r.function,
                "answer": match r.answer {
                    InvokeAnswer::Throttle => "throttle",
                    InvokeAnswer::ServiceError => "service_error",
                },
                "first": r.first,
            })
        })
        .collect();
    let text = serde_json::json!({ "rules": rules }).to_string();
    let path = dir.join(INVOKE_FAULTS_FILE);
    let tmp = dir.join(format!(".{INVOKE_FAULTS_FILE}.tmp"));
    std::fs::write(&tmp, text).map_err(KitError::io("writing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(KitError::io("writing", &path))
}

/// The rules in force and how often each matched (reset when the file changes).
#[derive(Default)]
struct FaultState {
    stamp: Option<(u64, i64, u64)>,
    rules: Vec<(InvokeFault, u32)>,
}

impl FaultState {
    /// Re-read `path` if it changed; then the answer for a call of `function`, if a rule
    /// fires, with the rule's index and match count.
    fn judge(&mut self, path: &Path, function: &str) -> Option<(InvokeAnswer, usize, u32)> {
        use std::os::unix::fs::MetadataExt;
        let stamp = std::fs::metadata(path).ok().map(|m| {
            (
                m.ino(),
                m.mtime_nsec() + m.mtime() * 1_000_000_000,
                m.size(),
            )
        });
        if stamp != self.stamp {
            self.stamp = stamp;
            self.rules = stamp
                .and_then(|_| std::fs::read(path).ok())
                .map(|b| parse_faults(&b))
                .unwrap_or_default()
                .into_iter()
                .map(|r| (r, 0))
                .collect();
        }
        let (i, (rule, n)) = self
            .rules
            .iter_mut()
            .enumerate()
            .find(|(_, (r, _))| r.function == function)?;
        *n += 1;
        if rule.first.is_some_and(|f| *n > f) {
            return None;
        }
        Some((rule.answer, i, *n))
    }
}

/// The rules of a fault file; a rule the kit cannot read is a 500 for every call, so that a
/// broken file fails loudly rather than silently passing.
fn parse_faults(bytes: &[u8]) -> Vec<InvokeFault> {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for r in doc["rules"].as_array().into_iter().flatten() {
        let answer = match r["answer"].as_str() {
            Some("throttle") => InvokeAnswer::Throttle,
            _ => InvokeAnswer::ServiceError,
        };
        out.push(InvokeFault {
            function: r["function"].as_str().unwrap_or_default().to_string(),
            answer,
            first: r["first"]
                .as_u64()
                .map(|n| n.min(u64::from(u32::MAX)) as u32),
        });
    }
    out
}

struct Shared {
    stop: AtomicBool,
    seq: AtomicU64,
    /// The Invoke fault rule file and the rules read from it.
    faults_file: PathBuf,
    faults: Mutex<FaultState>,
    functions: RwLock<HashMap<String, Arc<Function>>>,
    /// Loopback port every non-Invoke Lambda API request is passed to (0: none).
    upstream: AtomicU16,
}

impl Shared {
    fn get(&self, name: &str) -> Option<Arc<Function>> {
        self.functions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }
    fn all(&self) -> Vec<Arc<Function>> {
        self.functions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// The running host. Dropping it stops the functions (by PID) and the listeners.
pub struct LambdaHost {
    shared: Arc<Shared>,
    invoke_port: u16,
    log_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Wait (bounded) until the function's process asked for its first invocation, reported an
/// init error, or exited.
fn wait_init(f: &Function) -> Result<(), KitError> {
    crate::wait_until(
        &format!("{} init", f.spec.name),
        Duration::from_secs(20),
        || {
            lock(&f.first_next).is_some()
                || lock(&f.init_error).is_some()
                || f.exited.load(Ordering::SeqCst)
        },
    )
    .map_err(|e| e.with_log(std::fs::read_to_string(&f.log).unwrap_or_default()))
}

/// Fail everything queued or pending on `f` with a `Runtime.ExitError` saying `why`.
fn fail_all(f: &Function, why: &str) {
    let body = serde_json::json!({"errorType": "Runtime.ExitError", "errorMessage": why})
        .to_string()
        .into_bytes();
    for (_, tx) in lock(&f.pending).drain() {
        if let Some(tx) = tx {
            let _ = tx.send(Outcome::Error(body.clone()));
        }
    }
    for inv in lock(&f.queue).drain(..) {
        if let Some(tx) = inv.reply {
            let _ = tx.send(Outcome::Error(body.clone()));
        }
    }
}

impl LambdaHost {
    /// Start every function's runtime API and process, and the Invoke endpoint. Returns once
    /// every process has asked for its first invocation (or reported an init error, or exited).
    pub fn start(functions: Vec<FunctionSpec>) -> Result<Self, KitError> {
        let host = Self::empty(None)?;
        let mut started = Vec::new();
        for spec in functions {
            let f = host.prepare(spec)?;
            if let Some(old) = host.insert(&f) {
                retire(&old, "a function of the same name was given twice");
            }
            started.push(f);
        }
        for f in &started {
            wait_init(f)?;
        }
        Ok(host)
    }

    /// Start only the Invoke endpoint (no function yet; add them with [`LambdaHost::load`]).
    /// Function logs go to `log_dir/<name>.log` (appended), or to a private temp dir.
    pub fn empty(log_dir: Option<PathBuf>) -> Result<Self, KitError> {
        let (dir, log_dir) = match log_dir {
            Some(d) => {
                std::fs::create_dir_all(&d).map_err(KitError::io("creating", &d))?;
                (None, d)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("ferry-lambda-host-")
                    .tempdir()
                    .map_err(KitError::temp_dir)?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let invoke =
            TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr().map(|a| (l, a.port())));
        let (invoke, invoke_port) = invoke.map_err(KitError::listen("Lambda Invoke API"))?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            seq: AtomicU64::new(1),
            functions: RwLock::new(HashMap::new()),
            upstream: AtomicU16::new(0),
            faults_file: log_dir.join(INVOKE_FAULTS_FILE),
            faults: Mutex::new(FaultState::default()),
        });
        let sh = shared.clone();
        std::thread::spawn(move || accept_loop(invoke, sh, None));
        Ok(LambdaHost {
            shared,
            invoke_port,
            log_dir,
            _dir: dir,
        })
    }

    /// Listener and process for `spec` (not yet in the table).
    fn prepare(&self, spec: FunctionSpec) -> Result<Arc<Function>, KitError> {
        if !spec.binary.is_file() {
            return Err(KitError::NotAFile {
                function: spec.name,
                binary: spec.binary,
            });
        }
        let (l, port) = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr().map(|a| (l, a.port())))
            .map_err(KitError::listen(format!("runtime API of {}", spec.name)))?;
        let f = Arc::new(Function {
            log: self.log_dir.join(format!("{}.log", spec.name)),
            spec,
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            pending: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
            exited: AtomicBool::new(false),
            spawned: Mutex::new(None),
            first_next: Mutex::new(None),
            runtime_port: port,
            proc: Mutex::new(None),
            retired: AtomicBool::new(false),
            revive: Mutex::new(()),
            death: Mutex::new(()),
        });
        let shared = self.shared.clone();
        let lf = f.clone();
        std::thread::spawn(move || accept_loop(l, shared, Some(lf)));
        if let Err(e) = spawn_function(&f) {
            retire(&f, "the function could not start");
            return Err(e);
        }
        Ok(f)
    }

    /// Put `f` in the table; returns the function it replaces.
    fn insert(&self, f: &Arc<Function>) -> Option<Arc<Function>> {
        self.shared
            .functions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(f.spec.name.clone(), f.clone())
    }

    /// Add a function, or replace the one of that name (new code or configuration), while the
    /// host runs. The new process is started and initialised (bounded) before invocations go
    /// to it; queued invocations move to it; what the old process is running finishes (bounded
    /// by its timeout), then it is stopped by PID. An init error is not an error here
    /// ([`LambdaHost::init_error`]): invocations then fail as Lambda's would.
    pub fn load(&self, spec: FunctionSpec) -> Result<(), KitError> {
        let f = self.prepare(spec)?;
        if let Err(e) = wait_init(&f) {
            retire(&f, "the function did not initialise");
            return Err(e);
        }
        if let Some(old) = self.insert(&f) {
            // Hand queued invocations to the new process, then let the old one finish in the
            // background.
            let moved: Vec<Invocation> = {
                let mut q = lock(&old.queue);
                old.retired.store(true, Ordering::SeqCst);
                q.drain(..).collect()
            };
            if !moved.is_empty() {
                lock(&f.queue).extend(moved);
                f.ready.notify_all();
            }
            std::thread::spawn(move || {
                let limit = old.spec.timeout + Duration::from_secs(2);
                let _ = crate::wait_until("in-flight invocations", limit, || {
                    lock(&old.pending).is_empty()
                });
                retire(&old, "the function was replaced during the invocation");
            });
        }
        Ok(())
    }

    /// Stop and forget a function; returns whether it was hosted.
    pub fn remove(&self, name: &str) -> bool {
        let old = self
            .shared
            .functions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        match old {
            Some(f) => {
                retire(&f, "the function was deleted");
                true
            }
            None => false,
        }
    }

    /// Pass every Lambda API request other than Invoke (CreateFunction, GetFunction,
    /// ListFunctions, …) to the server on `127.0.0.1:port` (moto), so that one
    /// `AWS_ENDPOINT_URL_LAMBDA` serves a whole client: the control plane from moto, Invoke from
    /// the real code here. Without it such requests get a 404 `UnknownOperationException`.
    pub fn set_api_upstream(&self, port: u16) {
        self.shared.upstream.store(port, Ordering::SeqCst);
    }

    /// Names of the hosted functions, sorted.
    pub fn functions(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .shared
            .all()
            .iter()
            .map(|f| f.spec.name.clone())
            .collect();
        v.sort();
        v
    }

    /// Queue an asynchronous (`Event`) invocation, as a scheduled rule does.
    pub fn invoke_event(&self, name: &str, payload: &[u8]) -> Result<(), KitError> {
        let f = self.shared.get(name).ok_or_else(|| KitError::NotHosted {
            function: name.to_string(),
        })?;
        // A process that exited is replaced first (an init failure stays: the event then waits).
        let _ = revive(&f);
        let id = next_request_id(&self.shared);
        let deadline_ms = now_ms() + f.spec.timeout.as_millis() as u64;
        enqueue(
            &self.shared,
            f,
            Invocation {
                id,
                payload: payload.to_vec(),
                deadline_ms,
                reply: None,
            },
        );
        Ok(())
    }

    /// The Invoke endpoint (`http://127.0.0.1:PORT`), for `aws-sdk-lambda`'s endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.invoke_port)
    }

    /// The function's stdout+stderr so far (every process of that name, appended).
    pub fn log(&self, function: &str) -> String {
        self.shared
            .get(function)
            .map(|f| std::fs::read_to_string(&f.log).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Where the function's log is written.
    pub fn log_path(&self, function: &str) -> PathBuf {
        self.log_dir.join(format!("{function}.log"))
    }

    /// Process start → first `next` request (cold init), if it got that far.
    pub fn init_duration(&self, function: &str) -> Option<Duration> {
        let f = self.shared.get(function)?;
        let s = (*lock(&f.spawned))?;
        let n = (*lock(&f.first_next))?;
        Some(n.saturating_duration_since(s))
    }

    /// The init error the function reported through `/runtime/init/error`, if any.
    pub fn init_error(&self, function: &str) -> Option<String> {
        self.shared
            .get(function)
            .and_then(|f| lock(&f.init_error).clone())
    }

    /// Whether the function's last process has exited (the next invocation starts a new one,
    /// unless its init failed).
    pub fn exited(&self, function: &str) -> bool {
        self.shared
            .get(function)
            .is_some_and(|f| f.exited.load(Ordering::SeqCst))
    }

    /// The PID of the function's process.
    pub fn pid(&self, function: &str) -> Option<u32> {
        self.shared
            .get(function)
            .and_then(|f| lock(&f.proc).as_ref().map(|p| p.pid()))
    }
}

impl Drop for LambdaHost {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let all: Vec<Arc<Function>> = self
            .shared
            .functions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, f)| f)
            .collect();
        for f in &all {
            retire(f, "the Lambda host stopped");
        }
        // Wake the Invoke accept loop so it sees the stop flag.
        let _ = TcpStream::connect(("127.0.0.1", self.invoke_port));
    }
}

/// Stop a function for good: no more invocations, its process stopped by PID, what it still
/// had failed with `why`, its runtime API listener ended.
fn retire(f: &Function, why: &str) {
    {
        let _q = lock(&f.queue);
        f.retired.store(true, Ordering::SeqCst);
    }
    f.ready.notify_all();
    lock(&f.proc).take();
    fail_all(f, why);
    let _ = TcpStream::connect(("127.0.0.1", f.runtime_port));
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn next_request_id(shared: &Shared) -> String {
    format!(
        "{:08x}-0000-4000-8000-{:012x}",
        std::process::id(),
        shared.seq.fetch_add(1, Ordering::SeqCst)
    )
}

/// Queue `inv` on the function of that name. A function retired meanwhile (replaced while the
/// request was read) passes it to its successor; with none, it fails as a function error.
fn enqueue(shared: &Shared, mut f: Arc<Function>, inv: Invocation) {
    let mut inv = Some(inv);
    for _ in 0..8 {
        {
            let mut q = lock(&f.queue);
            if !f.retired.load(Ordering::SeqCst) {
                if let Some(i) = inv.take() {
                    q.push_back(i);
                }
                drop(q);
                f.ready.notify_all();
                return;
            }
        }
        match shared.get(&f.spec.name) {
            Some(next) if !Arc::ptr_eq(&next, &f) => f = next,
            _ => break,
        }
    }
    if let Some(Invocation {
        reply: Some(tx), ..
    }) = inv
    {
        let body = serde_json::json!({"errorType": "Runtime.ExitError", "errorMessage": "the function was removed"});
        let _ = tx.send(Outcome::Error(body.to_string().into_bytes()));
    }
}

fn spawn_function(f: &Arc<Function>) -> Result<(), KitError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&f.log)
        .map_err(KitError::io("opening", &f.log))?;
    let mut cmd = Command::new(&f.spec.binary);
    cmd.env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        )
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("127.0.0.1:{}", f.runtime_port),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", &f.spec.name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", f.spec.name),
        )
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
        .env(
            "LAMBDA_TASK_ROOT",
            f.spec.binary.parent().unwrap_or(Path::new("/")),
        )
        .envs(f.spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(
            log.try_clone()
                .map_err(KitError::io("duplicating the handle of", &f.log))?,
        )
        .stderr(log);
    *lock(&f.spawned) = Some(Instant::now());
    let child = cmd
        .spawn()
        .map_err(KitError::spawn(f.spec.binary.display()))?;
    let pid = child.id();
    *lock(&f.proc) = Some(Proc {
        child,
        name: f.spec.name.clone(),
    });
    // Watch for the process exiting: fail what is pending instead of waiting for a timeout.
    let w = f.clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let _death = lock(&w.death);
            let mut g = lock(&w.proc);
            let Some(p) = g.as_mut() else { return };
            if p.pid() != pid {
                return; // replaced: the new process has its own watcher
            }
            if !p.running() {
                drop(g);
                record_death(&w);
                return;
            }
        }
    });
    Ok(())
}

/// The process of `f` has exited: what it held fails, then `exited` shows (a new process may
/// start). The caller holds `f.death`.
fn record_death(f: &Function) {
    let why = lock(&f.init_error)
        .clone()
        .unwrap_or_else(|| "the runtime process exited".into());
    fail_all(f, &why);
    f.exited.store(true, Ordering::SeqCst);
}

/// A line of the kit's own in the function's log (beside the function's output).
fn note(f: &Function, line: &str) {
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&f.log)
        .and_then(|mut l| writeln!(l, "{line}"));
}

/// A new process for `f` if its last one exited (not at init): Lambda's reset after a crash or
/// a timeout (see the module header). Waits (bounded) for its init.
fn revive(f: &Arc<Function>) -> Result<(), String> {
    let _one = lock(&f.revive);
    if !{
        let _death = lock(&f.death);
        f.exited.load(Ordering::SeqCst)
    } {
        return Ok(());
    }
    if f.retired.load(Ordering::SeqCst) {
        return Err("the function was removed".into());
    }
    if let Some(e) = lock(&f.init_error).clone() {
        return Err(e);
    }
    {
        let _death = lock(&f.death);
        *lock(&f.first_next) = None;
        f.exited.store(false, Ordering::SeqCst);
        note(
            f,
            &format!(
                "ferry-testkit lambda: {}'s last process exited; a new one starts (cold init)",
                f.spec.name
            ),
        );
        spawn_function(f).map_err(|e| e.to_string())?;
    }
    wait_init(f).map_err(|e| e.to_string())?;
    if f.exited.load(Ordering::SeqCst) {
        return Err(lock(&f.init_error)
            .clone()
            .unwrap_or_else(|| "the runtime process exited at init".into()));
    }
    Ok(())
}

fn accept_loop(l: TcpListener, shared: Arc<Shared>, f: Option<Arc<Function>>) {
    for conn in l.incoming() {
        // A replaced function keeps its runtime API until its process is stopped: the
        // invocation it is running still posts its answer here.
        if shared.stop.load(Ordering::SeqCst)
            || f.as_ref()
                .is_some_and(|f| f.retired.load(Ordering::SeqCst) && lock(&f.proc).is_none())
        {
            return;
        }
        let Ok(conn) = conn else { continue };
        let shared = shared.clone();
        let f = f.clone();
        std::thread::spawn(move || serve_conn(conn, shared, f));
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request to the host could not be read (answered with a 400 carrying this text).
#[derive(Debug, thiserror::Error)]
enum BadRequest {
    /// The connection failed while reading the request (or writing `100 Continue`).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The request is not HTTP/1.1 as this host reads it.
    #[error("{0}")]
    Malformed(&'static str),
}

/// Read one HTTP/1.1 request (Content-Length or chunked body). `Ok(None)` on a clean EOF.
fn read_request(
    r: &mut BufReader<TcpStream>,
    stop: &AtomicBool,
) -> Result<Option<Request>, BadRequest> {
    use BadRequest::Malformed;
    let mut line = String::new();
    loop {
        match r.read_line(&mut line) {
            Ok(0) => return Ok(None),
            Ok(_) => break,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::SeqCst) {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts
        .next()
        .ok_or(Malformed("empty request line"))?
        .to_string();
    let path = parts.next().ok_or(Malformed("no path"))?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(Malformed("EOF in headers"));
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        if headers.len() > 200 {
            return Err(Malformed("too many headers"));
        }
    }
    let mut req = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        r.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    // Lambda's own request limit for a direct zip upload (50 MB zipped, base64 in JSON).
    const MAX: usize = 128 << 20;
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| Malformed("bad chunk size"))?;
            if req.body.len() + n > MAX {
                return Err(Malformed("body too large"));
            }
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                // Trailers end with an empty line; "0\r\n\r\n" has been consumed fully.
                break;
            }
            req.body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = req
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        if n > MAX {
            return Err(Malformed("body too large"));
        }
        req.body = vec![0u8; n];
        r.read_exact(&mut req.body)?;
    }
    Ok(Some(req))
}

fn respond(
    w: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

fn serve_conn(conn: TcpStream, shared: Arc<Shared>, f: Option<Arc<Function>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
    let Ok(mut w) = conn.try_clone() else { return };
    let mut r = BufReader::new(conn);
    while !shared.stop.load(Ordering::SeqCst) {
        let req = match read_request(&mut r, &shared.stop) {
            Ok(Some(q)) => q,
            Ok(None) => return,
            Err(e) => {
                let _ = respond(&mut w, 400, &[], e.to_string().as_bytes());
                return;
            }
        };
        let ok = match &f {
            Some(f) => runtime_api(&mut w, &req, f, &shared),
            None => invoke_api(&mut w, &req, &shared),
        };
        if ok.is_err()
            || req
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            return;
        }
    }
}

fn json_headers() -> Vec<(&'static str, String)> {
    vec![("Content-Type", "application/json".into())]
}

/// The runtime API of one function.
fn runtime_api(
    w: &mut TcpStream,
    req: &Request,
    f: &Arc<Function>,
    shared: &Shared,
) -> std::io::Result<()> {
    const BASE: &str = "/2018-06-01/runtime";
    let accepted = br#"{"status":"OK"}"#;
    if req.method == "GET" && req.path == format!("{BASE}/invocation/next") {
        lock(&f.first_next).get_or_insert_with(Instant::now);
        let mut q = lock(&f.queue);
        let inv = loop {
            if let Some(inv) = q.pop_front() {
                break inv;
            }
            if shared.stop.load(Ordering::SeqCst) || f.retired.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("stopping"));
            }
            q = f
                .ready
                .wait_timeout(q, Duration::from_millis(200))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        };
        drop(q);
        lock(&f.pending).insert(inv.id.clone(), inv.reply);
        let arn = format!(
            "arn:aws:lambda:us-east-1:123456789012:function:{}",
            f.spec.name
        );
        return respond(
            w,
            200,
            &[
                ("Content-Type", "application/json".into()),
                ("Lambda-Runtime-Aws-Request-Id", inv.id.clone()),
                ("Lambda-Runtime-Deadline-Ms", inv.deadline_ms.to_string()),
                ("Lambda-Runtime-Invoked-Function-Arn", arn),
                (
                    "Lambda-Runtime-Trace-Id",
                    format!("Root=1-00000000-{:024x}", shared.seq.load(Ordering::SeqCst)),
                ),
            ],
            &inv.payload,
        );
    }
    if req.method == "POST" && req.path == format!("{BASE}/init/error") {
        let msg = String::from_utf8_lossy(&req.body).into_owned();
        *lock(&f.init_error) = Some(msg);
        return respond(w, 202, &json_headers(), accepted);
    }
    if req.method == "POST"
        && let Some(rest) = req.path.strip_prefix(&format!("{BASE}/invocation/"))
        && let Some((id, what)) = rest.split_once('/')
    {
        let tx = lock(&f.pending).remove(id);
        let Some(tx) = tx else {
            return respond(
                w,
                400,
                &json_headers(),
                br#"{"errorType":"InvalidRequestID","errorMessage":"unknown request id"}"#,
            );
        };
        let outcome = match what {
            "response" => Outcome::Response(req.body.clone()),
            "error" => Outcome::Error(req.body.clone()),
            _ => return respond(w, 404, &[], b"not found"),
        };
        if let Some(tx) = tx {
            let _ = tx.send(outcome);
        }
        return respond(w, 202, &json_headers(), accepted);
    }
    respond(w, 404, &[], b"not found")
}

fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&crate::percent_decode(s)).into_owned()
}

/// Pass `req` to 127.0.0.1:`port` and its answer back, byte for byte; the connection then
/// closes (the answer may be delimited by the upstream closing).
fn forward(w: &mut TcpStream, req: &Request, port: u16) -> std::io::Result<()> {
    let mut up = match TcpStream::connect(("127.0.0.1", port)) {
        Ok(s) => s,
        Err(e) => {
            let _ = respond(
                w,
                502,
                &[("x-amzn-ErrorType", "ServiceException".into())],
                format!("{{\"message\":\"the Lambda API upstream 127.0.0.1:{port}: {e}\"}}")
                    .as_bytes(),
            );
            return Err(e);
        }
    };
    up.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.path);
    for (k, v) in &req.headers {
        let k_l = k.to_ascii_lowercase();
        if matches!(
            k_l.as_str(),
            "connection" | "content-length" | "transfer-encoding" | "expect" | "keep-alive"
        ) {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        req.body.len()
    ));
    up.write_all(head.as_bytes())?;
    up.write_all(&req.body)?;
    up.flush()?;
    std::io::copy(&mut up, w)?;
    w.flush()?;
    // The client learns the end of the answer from its framing or from this close.
    Err(std::io::Error::other("forwarded; closing"))
}

/// The Lambda Invoke API.
fn invoke_api(w: &mut TcpStream, req: &Request, shared: &Shared) -> std::io::Result<()> {
    let path = req.path.split('?').next().unwrap_or("");
    let name = path
        .strip_prefix("/2015-03-31/functions/")
        .and_then(|r| r.strip_suffix("/invocations"))
        .map(percent_decode);
    let (Some(name), "POST") = (name, req.method.as_str()) else {
        let upstream = shared.upstream.load(Ordering::SeqCst);
        if upstream != 0 {
            return forward(w, req, upstream);
        }
        return respond(
            w,
            404,
            &[("x-amzn-ErrorType", "UnknownOperationException".into())],
            br#"{"message":"not an Invoke request"}"#,
        );
    };
    // A full ARN names the function in its last segment.
    let short = name.rsplit(':').next().unwrap_or(&name).to_string();
    let Some(f) = shared.get(&short).or_else(|| shared.get(&name)) else {
        let body =
            serde_json::json!({"Type": "User", "message": format!("Function not found: {name}")})
                .to_string();
        return respond(
            w,
            404,
            &[
                ("x-amzn-ErrorType", "ResourceNotFoundException".into()),
                ("Content-Type", "application/json".into()),
            ],
            body.as_bytes(),
        );
    };
    let fault = lock(&shared.faults).judge(&shared.faults_file, &f.spec.name);
    if let Some((answer, rule, n)) = fault {
        let (status, code, body) = match answer {
            InvokeAnswer::Throttle => (
                429,
                "TooManyRequestsException",
                serde_json::json!({"Reason": "ConcurrentInvocationLimitExceeded", "Type": "User",
                                   "message": "Rate Exceeded."}),
            ),
            InvokeAnswer::ServiceError => (
                500,
                "ServiceException",
                serde_json::json!({"Type": "Service",
                                   "message": "The AWS Lambda service encountered an internal error."}),
            ),
        };
        note(
            &f,
            &format!(
                "ferry-testkit lambda fault: {status} {code} to {} (rule {rule}, match {n})",
                f.spec.name
            ),
        );
        return respond(
            w,
            status,
            &[
                ("x-amzn-ErrorType", code.into()),
                ("Content-Type", "application/json".into()),
            ],
            body.to_string().as_bytes(),
        );
    }
    let kind = req
        .header("x-amz-invocation-type")
        .unwrap_or("RequestResponse")
        .to_string();
    if kind == "DryRun" {
        return respond(w, 204, &[], b"");
    }
    let id = next_request_id(shared);
    let deadline_ms = now_ms() + f.spec.timeout.as_millis() as u64;
    let payload = if req.body.is_empty() {
        b"{}".to_vec()
    } else {
        req.body.clone()
    };
    let function_error = |w: &mut TcpStream, body: Vec<u8>| {
        respond(
            w,
            200,
            &[
                ("X-Amz-Function-Error", "Unhandled".into()),
                ("X-Amz-Executed-Version", "$LATEST".into()),
                ("Content-Type", "application/json".into()),
            ],
            &body,
        )
    };
    if let Err(why) = revive(&f) {
        return function_error(
            w,
            serde_json::json!({"errorType": "Runtime.ExitError", "errorMessage": why})
                .to_string()
                .into_bytes(),
        );
    }
    let timeout = f.spec.timeout;
    if kind == "Event" {
        enqueue(
            shared,
            f,
            Invocation {
                id,
                payload,
                deadline_ms,
                reply: None,
            },
        );
        return respond(w, 202, &[], b"");
    }
    let (tx, rx) = mpsc::channel();
    enqueue(
        shared,
        f.clone(),
        Invocation {
            id: id.clone(),
            payload,
            deadline_ms,
            reply: Some(tx),
        },
    );
    match rx.recv_timeout(timeout + Duration::from_secs(2)) {
        Ok(Outcome::Response(body)) => respond(
            w,
            200,
            &[
                ("X-Amz-Executed-Version", "$LATEST".into()),
                ("Content-Type", "application/json".into()),
                ("x-amzn-RequestId", id),
            ],
            &body,
        ),
        Ok(Outcome::Error(body)) => function_error(w, body),
        Err(_) => {
            lock(&f.pending).remove(&id);
            // Lambda stops the timed-out runtime; the next invocation starts a new one. The
            // death is recorded before the answer goes out, so that next Invoke sees it.
            {
                let _death = lock(&f.death);
                if let Some(p) = lock(&f.proc).as_mut() {
                    p.kill();
                    let _ = crate::wait_until(
                        "the timed-out runtime exit",
                        Duration::from_secs(5),
                        || !p.running(),
                    );
                }
                record_death(&f);
            }
            let secs = f.spec.timeout.as_secs();
            function_error(
                w,
                serde_json::json!({"errorType": "Sandbox.Timedout", "errorMessage": format!("Task timed out after {secs} seconds")})
                    .to_string()
                    .into_bytes(),
            )
        }
    }
}
