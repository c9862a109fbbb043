//! `ferry-localcloud serve`: the daemon. Starts moto (the test kit's, patched toward AWS: `ferry-testkit/py/moto/`), the
//! Lambda host and, with `--lan`, the sample LAN; then polls moto every 300 ms until SIGTERM:
//! functions to host, instances to boot as jump boxes, boxes that powered off, scheduled rules.
//! Every event goes to stdout (`localcloud.log`) in plain words. On SIGTERM it stops every
//! child by PID: boxes, functions, LAN sshds, the bookkeeping process, moto.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use ferry_testkit::jumpbox::{Jumpbox, JumpboxOptions};
use ferry_testkit::lambda_host::{FunctionSpec, LambdaHost};
use ferry_testkit::lanhost::Lan;
use ferry_testkit::{MOTO_REGION, Moto, MotoOptions};
use serde_json::{Value, json};

use crate::agent::Agent;
use crate::state::*;

/// The IAM user whose keys DIR/env gives the operator.
const OPERATOR_USER: &str = "localcloud-operator";
const POLL: Duration = Duration::from_millis(300);
const RULES_EVERY: Duration = Duration::from_secs(5);
/// How long an instance listed without an instance profile may wait for its association.
const PROFILE_GRACE: Duration = Duration::from_secs(10);
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// Where `ferry infra apply` puts the functions' code in the state bucket.
pub const CODE_KEY: &str = ferry_contract::keys::LAMBDA_ARTIFACT;

static TERM: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    TERM.store(true, Ordering::SeqCst);
}

fn log(msg: &str) {
    println!("{}  {msg}", now());
}

struct Loaded {
    fingerprint: String,
    code_sha256: String,
    loaded: String,
    timeout_secs: u64,
}

struct Failing {
    fingerprint: String,
    message: String,
    retry_at: Instant,
}

struct RunningBox {
    bx: Jumpbox,
    public_ip: Option<String>,
    session: String,
    since: String,
    /// When its sshd first answered; `None` once the user data has finished.
    user_data_since: Option<Instant>,
}

struct Booting {
    public_ip: Option<String>,
    session: String,
    since: String,
    started: Instant,
}

struct Schedule {
    rule: String,
    schedule: String,
    function: String,
    input: String,
    period: Duration,
    next: SystemTime,
    last: Option<String>,
}

type BootResult = (String, Result<Jumpbox, String>);

pub struct Daemon {
    dir: PathBuf,
    moto: Arc<Moto>,
    host: LambdaHost,
    agent: Agent,
    lan: Option<Lan>,
    started: String,
    functions: HashMap<String, Loaded>,
    failing: HashMap<String, Failing>,
    boxes: BTreeMap<String, RunningBox>,
    booting: BTreeMap<String, Booting>,
    /// Instances not to boot again (failed to boot, or powered off).
    done: HashSet<String>,
    /// Instances seen without an instance profile, and since when: moto's RunInstances creates
    /// the instance before it associates the profile, so a listing can catch it in between.
    no_profile_since: HashMap<String, Instant>,
    boot_tx: mpsc::Sender<BootResult>,
    boot_rx: mpsc::Receiver<BootResult>,
    boot_threads: Vec<JoinHandle<()>>,
    schedules: BTreeMap<(String, String), Schedule>,
    unsupported_schedules: HashSet<String>,
    last_rules: Option<Instant>,
    last_errors: HashMap<&'static str, String>,
    written_state: String,
    written_ssh: String,
    /// The operator's access key (id, secret) in moto.
    operator: (String, String),
    _lock: std::fs::File,
}

/// Take `DIR/localcloud.lock` for the daemon's life: a second daemon on the same directory
/// fails here.
fn take_lock(dir: &Path) -> Result<std::fs::File, String> {
    use std::os::fd::AsRawFd;
    let path = dir.join(LOCK_FILE);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: flock(2) on a descriptor we own.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(format!(
            "another local cloud holds {} (pid {}); stop it with `ferry-localcloud down --dir {}`",
            path.display(),
            read_pid(dir).map(|p| p.to_string()).unwrap_or("?".into()),
            dir.display()
        ));
    }
    Ok(f)
}

pub fn serve(dir: &Path, lan: usize) -> Result<(), String> {
    // SAFETY: installing async-signal-safe handlers (they only store to an atomic).
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_term as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let lock = take_lock(dir)?;
    write_atomic(
        &dir.join(PID_FILE),
        &format!("{}\n", std::process::id()),
        0o644,
    )?;
    log(&format!(
        "ferry-localcloud daemon (pid {}) starting in {}",
        std::process::id(),
        dir.display()
    ));
    let mut d = Daemon::start(dir, lan, lock)?;
    d.write_state(true);
    log("ready");
    while !TERM.load(Ordering::SeqCst) {
        d.poll();
        d.write_state(true);
        let t = Instant::now();
        while t.elapsed() < POLL && !TERM.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    log("SIGTERM: stopping everything");
    d.shutdown();
    let _ = std::fs::remove_file(dir.join(PID_FILE));
    log("stopped");
    Ok(())
}

impl Daemon {
    fn start(dir: &Path, lan_hosts: usize, lock: std::fs::File) -> Result<Daemon, String> {
        let moto = Moto::start_with(MotoOptions {
            log: Some(dir.join("moto.log")),
            ..MotoOptions::default()
        })
        .map_err(|e| format!("starting moto: {e}"))?;
        log(&format!(
            "moto started at {} (pid {}), IAM checks off; bucket policies are evaluated with \
             their Conditions; the S3 gateway endpoint (jump boxes' S3 traffic) is {} (see \
             docs/LOCALCLOUD.md)",
            moto.endpoint(),
            moto.pid(),
            moto.s3_gateway_endpoint().unwrap_or_default()
        ));
        let host = LambdaHost::empty(Some(dir.join("functions")))
            .map_err(|e| format!("starting the Lambda host: {e}"))?;
        // One AWS_ENDPOINT_URL_LAMBDA for the whole Lambda API: `ferry infra` creates and
        // inspects functions there (moto), `ferry backup` and the boxes invoke them (here).
        host.set_api_upstream(moto.port());
        log(&format!(
            "Lambda endpoint at {}: Invoke runs the real code here, every other Lambda call goes \
             to moto (functions are hosted as `ferry infra apply` creates them)",
            host.endpoint()
        ));
        let agent = Agent::new(&moto);
        let lan = if lan_hosts > 0 {
            let names = lan_names(lan_hosts);
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let lan = Lan::start(&refs).map_err(|e| format!("starting the sample LAN: {e}"))?;
            write_atomic(&dir.join(SOURCES_FILE), &sources_toml(&lan), 0o644)?;
            for h in &lan.hosts {
                log(&format!(
                    "sample LAN host {} at 127.0.0.1:{} (sshd pid {}, user {}), files under {}",
                    h.name,
                    h.port,
                    h.sshd().map(|s| s.pid()).unwrap_or(0),
                    lan.user,
                    h.root.display()
                ));
            }
            Some(lan)
        } else {
            None
        };
        let (boot_tx, boot_rx) = mpsc::channel();
        let mut d = Daemon {
            dir: dir.to_path_buf(),
            moto: Arc::new(moto),
            host,
            agent,
            lan,
            started: now(),
            functions: HashMap::new(),
            failing: HashMap::new(),
            boxes: BTreeMap::new(),
            booting: BTreeMap::new(),
            done: HashSet::new(),
            no_profile_since: HashMap::new(),
            boot_tx,
            boot_rx,
            boot_threads: Vec::new(),
            schedules: BTreeMap::new(),
            unsupported_schedules: HashSet::new(),
            last_rules: None,
            last_errors: HashMap::new(),
            written_state: String::new(),
            written_ssh: String::new(),
            operator: (String::new(), String::new()),
            _lock: lock,
        };
        d.write_ssh_config()?;
        // The bookkeeping process answers before we say ready.
        d.agent
            .call(json!({"op": "instances"}))
            .map_err(|e| format!("the bookkeeping process does not answer: {e}"))?;
        let op = d
            .agent
            .call(json!({"op": "operator", "name": OPERATOR_USER}))
            .map_err(|e| format!("creating the operator's IAM user: {e}"))?;
        d.operator = (
            op["id"].as_str().unwrap_or_default().to_string(),
            op["secret"].as_str().unwrap_or_default().to_string(),
        );
        log(&format!(
            "operator credentials: IAM user {OPERATOR_USER} (key {}) in DIR/env",
            d.operator.0
        ));
        Ok(d)
    }

    /// Log an error of a kind once until it changes (a poll loop must not flood the log).
    fn error_once(&mut self, kind: &'static str, msg: String) {
        if self.last_errors.get(kind) != Some(&msg) {
            log(&format!("error: {msg}"));
            self.last_errors.insert(kind, msg);
        }
    }

    fn poll(&mut self) {
        if !alive(self.moto.pid()) {
            log(&format!(
                "error: moto (pid {}) is gone; nothing works without it: stopping the local cloud \
                 (its output: {})",
                self.moto.pid(),
                self.dir.join("moto.log").display()
            ));
            TERM.store(true, Ordering::SeqCst);
            return;
        }
        self.sync_functions();
        self.sync_instances();
        self.collect_boots();
        self.check_boxes();
        if self.last_rules.is_none_or(|t| t.elapsed() >= RULES_EVERY) {
            self.last_rules = Some(Instant::now());
            self.sync_rules();
        }
        self.fire_schedules();
        if let Err(e) = self.write_ssh_config() {
            self.error_once("ssh_config", e);
        }
    }

    // ---- Lambda functions ----------------------------------------------------------------

    fn sync_functions(&mut self) {
        let list = match self.agent.call(json!({"op": "functions"})) {
            Ok(v) => {
                self.last_errors.remove("functions");
                v.as_array().cloned().unwrap_or_default()
            }
            Err(e) => return self.error_once("functions", format!("listing functions: {e}")),
        };
        let mut seen = HashSet::new();
        for f in &list {
            let Some(name) = f["name"].as_str() else {
                continue;
            };
            seen.insert(name.to_string());
            let fingerprint = f.to_string();
            // A process that exited (killed, crashed, timed out) is replaced by the host at the
            // next Invoke, as Lambda starts a new execution environment (ferry-testkit's
            // lambda_host); only new code or configuration reloads it here.
            if self
                .functions
                .get(name)
                .is_some_and(|l| l.fingerprint == fingerprint)
            {
                continue;
            }
            if let Some(fl) = self.failing.get(name)
                && fl.fingerprint == fingerprint
                && Instant::now() < fl.retry_at
            {
                continue;
            }
            match self.load_function(name, f) {
                Ok(loaded) => {
                    self.failing.remove(name);
                    let again = self.functions.contains_key(name);
                    log(&format!(
                        "function {} {name}: code sha256 {} from its state bucket's {CODE_KEY} \
                         (the code moto reports), timeout {} s, pid {}{}",
                        if again { "reloaded" } else { "loaded" },
                        short(&loaded.code_sha256),
                        loaded.timeout_secs,
                        self.host
                            .pid(name)
                            .map(|p| p.to_string())
                            .unwrap_or("-".into()),
                        match self.host.init_error(name) {
                            Some(e) => format!("; its init FAILED: {e}"),
                            None => String::new(),
                        }
                    ));
                    self.functions.insert(
                        name.to_string(),
                        Loaded {
                            fingerprint,
                            ..loaded
                        },
                    );
                }
                Err(message) => {
                    let again = self
                        .failing
                        .get(name)
                        .is_some_and(|fl| fl.message == message);
                    if !again {
                        log(&format!("function {name} not loaded: {message} (retrying)"));
                    }
                    self.failing.insert(
                        name.to_string(),
                        Failing {
                            fingerprint,
                            message,
                            retry_at: Instant::now() + Duration::from_secs(3),
                        },
                    );
                }
            }
        }
        let gone: Vec<String> = self
            .functions
            .keys()
            .filter(|n| !seen.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            self.host.remove(&name);
            self.functions.remove(&name);
            log(&format!(
                "function {name} was deleted in moto: stopped its process"
            ));
        }
        self.failing.retain(|n, _| seen.contains(n));
    }

    fn load_function(&mut self, name: &str, f: &Value) -> Result<Loaded, String> {
        let runtime = f["runtime"].as_str().unwrap_or_default();
        if !runtime.starts_with("provided") {
            return Err(format!(
                "runtime {runtime:?}: the local cloud hosts custom runtimes (provided.al2023) only"
            ));
        }
        let env: BTreeMap<String, String> = f["env"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let bucket = env.get(ferry_contract::env::STATE_BUCKET).ok_or(
            "its environment has no FERRY_STATE_BUCKET (the local cloud takes the code from \
             that bucket's artifacts/bootstrap.zip)",
        )?;
        let code_sha256 = f["code_sha256"].as_str().unwrap_or_default().to_string();
        let code = self.agent.call(json!({
            "op": "fetch_code", "bucket": bucket, "key": CODE_KEY,
            "code_sha256": code_sha256,
            "dest": self.dir.join("code").display().to_string(),
        }))?;
        let binary = PathBuf::from(code["path"].as_str().ok_or("fetch_code: no path")?);
        let role = f["role"].as_str().unwrap_or_default();
        let creds = self
            .agent
            .assume_role(role, &format!("ferry-localcloud-{name}"))
            .map_err(|e| format!("assuming its role {role}: {e}"))?;
        let mut fenv: Vec<(String, String)> = env.into_iter().collect();
        // The SDK-standard variables of a Lambda execution environment: the endpoint (moto),
        // the role's credentials, the region; and the Lambda endpoint for calls to Lambda.
        let ours = {
            let mut v = self.moto.env_with(&creds);
            v.push(("AWS_ENDPOINT_URL_LAMBDA".into(), self.host.endpoint()));
            v
        };
        fenv.retain(|(k, _)| !ours.iter().any(|(o, _)| o == k));
        fenv.extend(ours);
        let timeout_secs = f["timeout"].as_u64().unwrap_or(3).max(1);
        self.host
            .load(FunctionSpec {
                name: name.to_string(),
                binary,
                env: fenv,
                timeout: Duration::from_secs(timeout_secs),
            })
            .map_err(|e| e.to_string())?;
        Ok(Loaded {
            fingerprint: String::new(),
            code_sha256: code["sha256_hex"].as_str().unwrap_or_default().to_string(),
            loaded: now(),
            timeout_secs,
        })
    }

    // ---- jump boxes ----------------------------------------------------------------------

    fn sync_instances(&mut self) {
        let list = match self.agent.call(json!({"op": "instances"})) {
            Ok(v) => {
                self.last_errors.remove("instances");
                v.as_array().cloned().unwrap_or_default()
            }
            Err(e) => return self.error_once("instances", format!("listing instances: {e}")),
        };
        let mut live = HashSet::new();
        for i in &list {
            let (Some(id), Some(state)) = (i["id"].as_str(), i["state"].as_str()) else {
                continue;
            };
            if matches!(state, "pending" | "running") {
                live.insert(id.to_string());
                if !self.boxes.contains_key(id)
                    && !self.booting.contains_key(id)
                    && !self.done.contains(id)
                    && !self.profile_still_coming(id, i)
                {
                    self.start_boot(i);
                }
            } else if let Some(b) = self.boxes.remove(id) {
                log(&format!(
                    "instance {id} is {state} in moto: stopping its jump box (127.0.0.1:{})",
                    b.bx.port()
                ));
                drop(b);
                log(&format!("box stopped: {id}"));
            }
        }
        self.no_profile_since.retain(|id, _| live.contains(id));
        // Instances gone from moto altogether.
        let vanished: Vec<String> = self
            .boxes
            .keys()
            .filter(|k| !live.contains(*k))
            .cloned()
            .collect();
        for id in vanished {
            if let Some(b) = self.boxes.remove(&id) {
                drop(b);
                log(&format!("instance {id} is gone from moto: box stopped"));
            }
        }
        // A box still booting whose instance ended is dropped when its boot returns.
        self.booting.retain(|id, _| live.contains(id) || {
            log(&format!(
                "instance {id} ended in moto while its box was booting; the box stops when the boot returns"
            ));
            false
        });
    }

    /// True while an instance listed without an instance profile may still get the one its
    /// RunInstances named (moto associates it a moment after creating the instance; a loaded
    /// machine widens that moment): the box boots at a later poll. After
    /// [`PROFILE_GRACE`] without one, the instance boots as it is (and fails to, as on EC2).
    fn profile_still_coming(&mut self, id: &str, i: &Value) -> bool {
        if i["profile_arn"].as_str().is_some() {
            self.no_profile_since.remove(id);
            return false;
        }
        let since = *self
            .no_profile_since
            .entry(id.to_string())
            .or_insert_with(Instant::now);
        since.elapsed() < PROFILE_GRACE
    }

    fn start_boot(&mut self, i: &Value) {
        let id = i["id"].as_str().unwrap_or_default().to_string();
        let session = i["session"].as_str().unwrap_or_default().to_string();
        let public_ip = i["public_ip"].as_str().map(str::to_string);
        match &public_ip {
            Some(ip) => log(&format!(
                "instance {id} (session {session}, public IP {ip}) appeared in moto: booting its \
                 jump box from its user data"
            )),
            None => log(&format!(
                "instance {id} (session {session}) has NO public IP in moto: ferry-build answers \
                 the instance's public address, so no client can reach this box; booting it \
                 anyway, without an ssh_config entry"
            )),
        }
        let creds = match i["profile_arn"].as_str() {
            None => Err(
                "the instance has no instance profile (the box could not fetch the gate)"
                    .to_string(),
            ),
            Some(profile) => self
                .agent
                .call(json!({"op": "instance_role", "profile_arn": profile}))
                .and_then(|role| {
                    let role = role.as_str().unwrap_or_default().to_string();
                    self.agent.assume_role(&role, &id)
                }),
        };
        let creds = match creds {
            Ok(c) => c,
            Err(e) => {
                log(&format!(
                    "jump box for {id} not booted: {e}; powering the instance off (on EC2 the \
                     user data's failure trap does)"
                ));
                self.power_off(&id);
                self.done.insert(id);
                return;
            }
        };
        let mut aws_env = self.moto.env_with(&creds);
        aws_env.push(("AWS_ENDPOINT_URL_LAMBDA".into(), self.host.endpoint()));
        // The box's S3 requests take the route its subnet's route table gives them: through the
        // S3 gateway endpoint (aws:SourceVpce, the endpoint policy) when the table has one, and
        // as internet traffic otherwise (the test kit decides which, from moto's route tables).
        if let Some(s3) = self.moto.s3_gateway_endpoint() {
            aws_env.push(("AWS_ENDPOINT_URL_S3".into(), s3));
        }
        let moto = self.moto.clone();
        let tx = self.boot_tx.clone();
        let iid = id.clone();
        self.boot_threads.push(std::thread::spawn(move || {
            let r = ferry_testkit::jumpbox::user_data_from_moto(&moto, &iid, &[])
                .map_err(|e| format!("reading its user data: {e}"))
                .and_then(|user_data| {
                    // Until the AMI's sshd answers (with host keys of its own); the user data then
                    // runs while the box is already reachable, as on EC2.
                    Jumpbox::start(JumpboxOptions {
                        user_data,
                        aws_env,
                        boot_timeout: BOOT_TIMEOUT,
                        ..JumpboxOptions::default()
                    })
                    .map_err(|e| e.to_string())
                });
            let _ = tx.send((iid, r));
        }));
        self.booting.insert(
            id,
            Booting {
                public_ip,
                session,
                since: now(),
                started: Instant::now(),
            },
        );
    }

    fn collect_boots(&mut self) {
        while let Ok((id, r)) = self.boot_rx.try_recv() {
            let Some(b) = self.booting.remove(&id) else {
                if let Ok(bx) = r {
                    drop(bx);
                    log(&format!(
                        "box stopped: {id} (its instance ended while it booted)"
                    ));
                }
                continue;
            };
            match r {
                Ok(bx) => {
                    log(&format!(
                        "box up for instance {id} at 127.0.0.1:{} in {:.1} s (pid {}): the AMI's \
                         sshd answers with host keys of its own; the user data runs now{}",
                        bx.port(),
                        b.started.elapsed().as_secs_f64(),
                        bx.pid().unwrap_or(0),
                        match &b.public_ip {
                            Some(ip) => format!(
                                "; ssh_config: Host {ip} -> ProxyCommand nc 127.0.0.1 {}",
                                bx.port()
                            ),
                            None => String::new(),
                        }
                    ));
                    self.boxes.insert(
                        id,
                        RunningBox {
                            bx,
                            public_ip: b.public_ip,
                            session: b.session,
                            since: now(),
                            user_data_since: Some(Instant::now()),
                        },
                    );
                }
                Err(e) => {
                    log(&format!(
                        "jump box for instance {id} failed to boot; powering the instance off \
                         (the user data's failure trap powers the box off, and shutdown \
                         behaviour terminate ends the instance):\n{e}"
                    ));
                    self.power_off(&id);
                    self.done.insert(id);
                }
            }
        }
    }

    /// A box that powered itself off (its backstop timer, or its failure trap), or whose
    /// processes ended: EC2 then stops or terminates the instance (shutdown behaviour).
    fn check_boxes(&mut self) {
        // The user data: done, failed (its trap powers the box off; a script without one is
        // powered off here), or over its time.
        let mut failed = Vec::new();
        for (id, b) in self.boxes.iter_mut() {
            let Some(since) = b.user_data_since else {
                continue;
            };
            match b.bx.user_data_result() {
                Some(Ok(())) => {
                    b.user_data_since = None;
                    log(&format!(
                        "user data of instance {id} done in {:.1} s: sshd runs with the session's \
                         host key",
                        since.elapsed().as_secs_f64()
                    ));
                }
                Some(Err(e)) => {
                    log(&format!("user data of instance {id} failed:\n{e}"));
                    failed.push(id.clone());
                }
                None if since.elapsed() > BOOT_TIMEOUT => {
                    log(&format!(
                        "user data of instance {id} still running after {BOOT_TIMEOUT:?}:\n{}",
                        b.bx.logs()
                    ));
                    failed.push(id.clone());
                }
                None => {}
            }
        }
        for id in failed {
            if let Some(b) = self.boxes.remove(&id) {
                drop(b);
                log(&format!("box stopped: {id}"));
            }
            self.power_off(&id);
            self.done.insert(id);
        }
        let ended: Vec<String> = self
            .boxes
            .iter_mut()
            .filter_map(|(k, b)| {
                (b.bx.powered_off().is_some() || !b.bx.running()).then(|| k.clone())
            })
            .collect();
        for id in ended {
            let Some(b) = self.boxes.remove(&id) else {
                continue;
            };
            match b.bx.powered_off() {
                Some(at) => log(&format!("box of instance {id} powered itself off ({at})")),
                None => log(&format!("box of instance {id} ended on its own")),
            }
            drop(b);
            log(&format!("box stopped: {id}"));
            self.power_off(&id);
            self.done.insert(id);
        }
    }

    fn power_off(&mut self, id: &str) {
        match self.agent.call(json!({"op": "power_off", "instance": id})) {
            Ok(v) => log(&format!(
                "instance {id} {} in moto (its shutdown behaviour)",
                v.as_str().unwrap_or("?")
            )),
            Err(e) => log(&format!("error: powering off instance {id} in moto: {e}")),
        }
    }

    fn ssh_entries(&self) -> Vec<SshEntry> {
        let running = self.boxes.iter().filter_map(|(id, b)| {
            Some(SshEntry {
                public_ip: b.public_ip.clone()?,
                instance: id.clone(),
                session: b.session.clone(),
                port: Some(b.bx.port()),
            })
        });
        let booting = self.booting.iter().filter_map(|(id, b)| {
            Some(SshEntry {
                public_ip: b.public_ip.clone()?,
                instance: id.clone(),
                session: b.session.clone(),
                port: None,
            })
        });
        running.chain(booting).collect()
    }

    fn write_ssh_config(&mut self) -> Result<(), String> {
        let text = render_ssh_config(&self.dir, &self.ssh_entries());
        if text != self.written_ssh {
            write_atomic(&self.dir.join(SSH_CONFIG), &text, 0o644)?;
            self.written_ssh = text;
        }
        Ok(())
    }

    // ---- scheduled rules -----------------------------------------------------------------

    fn sync_rules(&mut self) {
        let rules = match self.agent.call(json!({"op": "rules"})) {
            Ok(v) => {
                self.last_errors.remove("rules");
                v.as_array().cloned().unwrap_or_default()
            }
            Err(e) => return self.error_once("rules", format!("listing EventBridge rules: {e}")),
        };
        let mut seen = HashSet::new();
        for r in &rules {
            let name = r["name"].as_str().unwrap_or_default().to_string();
            let schedule = r["schedule"].as_str().unwrap_or_default().to_string();
            if r["state"].as_str() != Some("ENABLED") {
                continue;
            }
            for t in r["targets"].as_array().into_iter().flatten() {
                let arn = t["arn"].as_str().unwrap_or_default();
                let Some(function) = function_of_arn(arn) else {
                    continue;
                };
                if !self.functions.contains_key(&function) {
                    continue;
                }
                let key = (name.clone(), function.clone());
                seen.insert(key.clone());
                let input = t["input"].as_str().unwrap_or("{}").to_string();
                let Some(period) = parse_rate(&schedule) else {
                    if self
                        .unsupported_schedules
                        .insert(format!("{name} {schedule}"))
                    {
                        log(&format!(
                            "rule {name} ({schedule}) -> {function}: only rate(...) schedules are \
                             run by the local cloud; this one is not"
                        ));
                    }
                    continue;
                };
                let changed = self
                    .schedules
                    .get(&key)
                    .is_none_or(|s| s.schedule != schedule || s.input != input);
                if changed {
                    let next = SystemTime::now() + period;
                    log(&format!(
                        "rule {name} ({schedule}) -> {function} with {input}: first run at {}",
                        at(next)
                    ));
                    self.schedules.insert(
                        key,
                        Schedule {
                            rule: name.clone(),
                            schedule: schedule.clone(),
                            function,
                            input,
                            period,
                            next,
                            last: None,
                        },
                    );
                }
            }
        }
        self.schedules.retain(|k, s| {
            seen.contains(k) || {
                log(&format!(
                    "rule {} -> {}: no longer scheduled",
                    s.rule, s.function
                ));
                false
            }
        });
    }

    fn fire_schedules(&mut self) {
        let now_t = SystemTime::now();
        for s in self.schedules.values_mut() {
            if now_t < s.next {
                continue;
            }
            s.next = now_t + s.period;
            s.last = Some(now());
            match self.host.invoke_event(&s.function, s.input.as_bytes()) {
                Ok(()) => log(&format!(
                    "rule {} ({}): invoked {} asynchronously with {}; next at {}",
                    s.rule,
                    s.schedule,
                    s.function,
                    s.input,
                    at(s.next)
                )),
                Err(e) => log(&format!("error: rule {}: {e}", s.rule)),
            }
        }
    }

    // ---- state ---------------------------------------------------------------------------

    fn state(&self, ready: bool) -> State {
        let mut children = Vec::new();
        let mut child = |pid: Option<u32>, what: String| {
            if let Some(pid) = pid
                && let Some(st) = starttime(pid)
            {
                children.push(ChildState {
                    pid,
                    starttime: st,
                    what,
                });
            }
        };
        child(Some(self.moto.pid()), "moto".into());
        child(self.agent.pid(), "bookkeeping (python)".into());
        let mut functions: Vec<FunctionState> = self
            .functions
            .iter()
            .map(|(name, l)| FunctionState {
                name: name.clone(),
                code_sha256: l.code_sha256.clone(),
                pid: self.host.pid(name),
                loaded: l.loaded.clone(),
                timeout_secs: l.timeout_secs,
                init_error: self.host.init_error(name),
            })
            .collect();
        functions.sort_by(|a, b| a.name.cmp(&b.name));
        for f in &functions {
            child(f.pid, format!("function {}", f.name));
        }
        let mut boxes = Vec::new();
        for (id, b) in &self.boxes {
            child(b.bx.pid(), format!("jump box {id}"));
            boxes.push(BoxState {
                instance: id.clone(),
                session: b.session.clone(),
                public_ip: b.public_ip.clone(),
                status: "running".into(),
                user_data: if b.user_data_since.is_some() {
                    "running".into()
                } else {
                    "done".into()
                },
                port: Some(b.bx.port()),
                pid: b.bx.pid(),
                since: b.since.clone(),
            });
        }
        for (id, b) in &self.booting {
            boxes.push(BoxState {
                instance: id.clone(),
                session: b.session.clone(),
                public_ip: b.public_ip.clone(),
                status: "booting".into(),
                user_data: String::new(),
                port: None,
                pid: None,
                since: b.since.clone(),
            });
        }
        let mut lan = Vec::new();
        if let Some(l) = &self.lan {
            for h in &l.hosts {
                let pid = h.sshd().map(|s| s.pid());
                child(pid, format!("LAN host {} sshd", h.name));
                lan.push(LanState {
                    name: h.name.clone(),
                    port: h.port,
                    pid,
                    root: h.root.display().to_string(),
                });
            }
        }
        State {
            pid: std::process::id(),
            started: self.started.clone(),
            ready,
            moto_endpoint: self.moto.endpoint(),
            moto_pid: self.moto.pid(),
            lambda_endpoint: self.host.endpoint(),
            region: MOTO_REGION.into(),
            functions,
            boxes,
            lan,
            operator_key_id: self.operator.0.clone(),
            operator_secret: self.operator.1.clone(),
            schedules: self
                .schedules
                .values()
                .map(|s| ScheduleState {
                    rule: s.rule.clone(),
                    schedule: s.schedule.clone(),
                    function: s.function.clone(),
                    input: s.input.clone(),
                    next: at(s.next),
                    last: s.last.clone(),
                })
                .collect(),
            children,
        }
    }

    fn write_state(&mut self, ready: bool) {
        let text = serde_json::to_string_pretty(&self.state(ready)).unwrap_or_default();
        if text != self.written_state {
            // 0600: it holds the operator's (emulator) secret key.
            match write_atomic(&self.dir.join(STATE_FILE), &text, 0o600) {
                Ok(()) => self.written_state = text,
                Err(e) => self.error_once("state", e),
            }
        }
    }

    // ---- shutdown ------------------------------------------------------------------------

    fn shutdown(mut self) {
        self.write_state(false);
        // Boots in flight finish (bounded by their own timeouts) so that their boxes are
        // stopped here, not orphaned.
        let threads = std::mem::take(&mut self.boot_threads);
        if threads.iter().any(|t| !t.is_finished()) {
            log("waiting for jump boxes still booting");
        }
        for t in threads {
            let _ = t.join();
        }
        while let Ok((id, r)) = self.boot_rx.try_recv() {
            if let Ok(bx) = r {
                drop(bx);
                log(&format!("box stopped: {id} (booted during shutdown)"));
            }
        }
        for (id, b) in std::mem::take(&mut self.boxes) {
            drop(b);
            log(&format!("box stopped: {id}"));
        }
        self.booting.clear();
        let _ = self.write_ssh_config();
        for name in self.host.functions() {
            self.host.remove(&name);
            log(&format!("function {name} stopped"));
        }
        if let Some(lan) = self.lan.take() {
            let n = lan.hosts.len();
            drop(lan);
            log(&format!("{n} sample LAN hosts stopped"));
        }
        let Daemon {
            moto, host, agent, ..
        } = self;
        drop(host);
        drop(agent);
        log("bookkeeping process stopped");
        let pid = moto.pid();
        drop(moto);
        log(&format!("moto stopped (pid {pid})"));
    }
}

fn short(hex: &str) -> &str {
    hex.get(..12).unwrap_or(hex)
}

fn lan_names(n: usize) -> Vec<String> {
    const NAMES: [&str; 5] = ["web", "db", "nas", "router", "printer"];
    (0..n)
        .map(|i| {
            NAMES
                .get(i)
                .map(|s| s.to_string())
                .unwrap_or_else(|| format!("host{}", i + 1))
        })
        .collect()
}

fn sources_toml(lan: &Lan) -> String {
    let mut s = String::from(
        "# Written by ferry-localcloud: the sample LAN hosts (real sshd on loopback, read-only\n\
         # user). Each host's files live under the directory named in its `paths`; those paths are\n\
         # absolute, so after a restore, <target><path> must equal <path> file by file (the\n\
         # contents are deterministic: ferry_testkit::lanhost::sample_files).\n",
    );
    for h in &lan.hosts {
        s.push_str(&format!(
            "# host {}: files under {}\n",
            h.name,
            h.root.display()
        ));
    }
    s.push('\n');
    s.push_str(&lan.sources_toml(4));
    s
}

/// `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]` → NAME.
fn function_of_arn(arn: &str) -> Option<String> {
    let rest = arn.split(":function:").nth(1)?;
    Some(rest.split(':').next()?.to_string())
}

/// `rate(N unit)` → period. EventBridge: minute(s), hour(s), day(s); N ≥ 1.
pub fn parse_rate(expr: &str) -> Option<Duration> {
    let inner = expr.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let mut it = inner.split_whitespace();
    let n: u64 = it.next()?.parse().ok().filter(|n| *n >= 1)?;
    let unit = match it.next()? {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86400,
        _ => return None,
    };
    if it.next().is_some() {
        return None;
    }
    Some(Duration::from_secs(n * unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_others_do_not() {
        assert_eq!(parse_rate("rate(1 hour)"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_rate("rate(5 minutes)"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            parse_rate("rate(2 days)"),
            Some(Duration::from_secs(172800))
        );
        assert_eq!(parse_rate("rate(0 hours)"), None);
        assert_eq!(parse_rate("cron(0 * * * ? *)"), None);
        assert_eq!(parse_rate("rate(1 fortnight)"), None);
    }

    #[test]
    fn function_names_come_from_arns() {
        assert_eq!(
            function_of_arn("arn:aws:lambda:us-east-1:123456789012:function:ferry-clean")
                .as_deref(),
            Some("ferry-clean")
        );
        assert_eq!(
            function_of_arn("arn:aws:lambda:us-east-1:1:function:f:$LATEST").as_deref(),
            Some("f")
        );
        assert_eq!(function_of_arn("arn:aws:sqs:us-east-1:1:q"), None);
    }
}
