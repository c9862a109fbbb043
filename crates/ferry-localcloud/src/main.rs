//! # ferry-localcloud — the embedded local cloud
//!
//! Runs Ferry's whole cloud side on this machine, on loopback, for a user without an AWS
//! account (and for the end-to-end tests): moto (AWS emulator, pinned 5.2.5, project venv), the
//! real `bootstrap` of the functions `ferry infra apply` creates (under the test kit's Lambda
//! runtime host, with the code taken from the state bucket), a jump box booted from the real
//! user data of every instance ferry-build launches, and optionally sample LAN hosts (real sshd).
//! `up` starts a daemon (`serve`) and writes `DIR/env` with the SDK-standard variables;
//! `down` stops it and everything it started, by PID; `status` says what runs.
//!
//! It owns only this tooling. It must never be a dependency of a product crate (ferry, bootstrap,
//! ferry-gate), and it never uses the AWS SDK (moto-side bookkeeping is boto3 in the venv) or
//! any network beyond 127.0.0.1. The product never learns it is emulated: everything reaches it
//! through `AWS_ENDPOINT_URL*` and an OpenSSH config (`FERRY_SSH_CONFIG`). See docs/LOCALCLOUD.md.

mod agent;
mod daemon;
mod state;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use state::*;

#[derive(Parser)]
#[command(
    name = "ferry-localcloud",
    about = "Ferry's cloud on this machine: moto, the real Lambda functions, jump boxes and sample LAN hosts on loopback"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the local cloud in DIR (a daemon), wait until it is ready, write DIR/env.
    Up {
        #[arg(long)]
        dir: PathBuf,
        /// Also start N sample LAN hosts (real sshd) and write DIR/sources.toml.
        #[arg(long, default_value_t = 0)]
        lan: usize,
        /// How long to wait for the daemon to be ready, in seconds.
        #[arg(long, default_value_t = 120)]
        wait: u64,
    },
    /// Stop the local cloud of DIR and everything it started; remove DIR/env.
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
    /// What runs in DIR: ports, functions, jump boxes, LAN hosts.
    Status {
        #[arg(long)]
        dir: PathBuf,
        /// Print the state as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The daemon itself (started by `up`).
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 0)]
        lan: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Up { dir, lan, wait } => up(&dir, lan, Duration::from_secs(wait)),
        Cmd::Down { dir } => down(&dir),
        Cmd::Status { dir, json } => status(&dir, json),
        Cmd::Serve { dir, lan } => {
            prepare_dir(&dir).and_then(|d| daemon::serve(&d, lan).map(|_| ExitCode::SUCCESS))
        }
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ferry-localcloud: {e}");
            ExitCode::FAILURE
        }
    }
}

fn log_tail(dir: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(dir.join(LOG_FILE)).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn up(dir: &Path, lan: usize, wait: Duration) -> Result<ExitCode, String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "the local cloud needs root: jump boxes run under unshare with their own \
                    mounts, and the sample LAN's read-only account is made with useradd"
                .into(),
        );
    }
    let in_path = |prog: &str| {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
            .unwrap_or(false)
    };
    if !in_path("nc") {
        return Err(
            "nc (netcat-openbsd) is missing: the jump boxes' ssh_config entries use \
                    `ProxyCommand nc 127.0.0.1 PORT`; install it (apt-get install netcat-openbsd, \
                    or scripts/install-deps.sh)"
                .into(),
        );
    }
    let dir = prepare_dir(dir)?;
    if let Some(pid) = running_daemon(&dir) {
        let since = read_state(&dir).map(|s| s.started).unwrap_or_default();
        return Err(format!(
            "a local cloud already runs in {} (pid {pid}, since {since}); \
             see `ferry-localcloud status --dir {0}`, or stop it first with \
             `ferry-localcloud down --dir {0}`",
            dir.display()
        ));
    }
    if let Some(pid) = read_pid(&dir) {
        println!("(removing a stale pid file: process {pid} is not this local cloud's daemon)");
    }
    for f in [PID_FILE, STATE_FILE, ENV_FILE] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(LOG_FILE))
        .map_err(|e| format!("{}: {e}", dir.join(LOG_FILE).display()))?;
    let mut cmd = Command::new(&exe);
    // The daemon configures every AWS client it starts itself; nothing of this shell's AWS
    // setup (a real profile, or the env of another local cloud) may leak into them.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(&k);
        }
    }
    cmd.arg("serve")
        .arg("--dir")
        .arg(&dir)
        .arg("--lan")
        .arg(lan.to_string())
        .stdin(Stdio::null())
        .stdout(logf.try_clone().map_err(|e| e.to_string())?)
        .stderr(logf);
    // SAFETY: setsid(2) is async-signal-safe; the daemon gets its own session, detached from
    // this terminal (a Ctrl-C here does not reach it).
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting {} serve: {e}", exe.display()))?;
    let pid = child.id();
    let start = Instant::now();
    let st = loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the daemon exited ({status}) before it was ready; {}:\n{}",
                dir.join(LOG_FILE).display(),
                log_tail(&dir, 30)
            ));
        }
        if let Some(st) = read_state(&dir)
            && st.pid == pid
            && st.ready
        {
            break st;
        }
        if start.elapsed() > wait {
            return Err(format!(
                "the daemon (pid {pid}) was not ready after {wait:?}; it keeps running — see \
                 {} or stop it with `ferry-localcloud down --dir {}`:\n{}",
                dir.join(LOG_FILE).display(),
                dir.display(),
                log_tail(&dir, 30)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // 0600: it holds the operator's (emulator) secret key.
    write_atomic(&dir.join(ENV_FILE), &render_env(&dir, &st), 0o600)?;
    println!(
        "Local cloud up in {} ({:.1} s), daemon pid {pid}:",
        dir.display(),
        start.elapsed().as_secs_f64()
    );
    print_state(&dir, &st);
    println!(
        "\nNext: `. {}/env`, then `ferry infra apply` creates the buckets, roles and the two \
         functions in moto; the daemon hosts the functions and boots a jump box for every \
         instance ferry-build launches.\nStop it all with `ferry-localcloud down --dir {}`.",
        dir.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn print_state(dir: &Path, st: &State) {
    println!(
        "  moto (S3, EC2, IAM, STS, Lambda and EventBridge bookkeeping): {} (pid {}), region {}",
        st.moto_endpoint, st.moto_pid, st.region
    );
    println!(
        "  Lambda endpoint: {} (Invoke runs the real code here; other Lambda calls go to moto)",
        st.lambda_endpoint
    );
    if st.functions.is_empty() {
        println!("  functions: none yet (the daemon hosts every `*-build` / `*-clean` function)");
    } else {
        println!("  functions:");
        for f in &st.functions {
            println!(
                "    {:<24} pid {:<7} code sha256 {}…  timeout {} s  loaded {}{}",
                f.name,
                f.pid.map(|p| p.to_string()).unwrap_or("-".into()),
                f.code_sha256.get(..12).unwrap_or(&f.code_sha256),
                f.timeout_secs,
                f.loaded,
                f.init_error
                    .as_ref()
                    .map(|e| format!("  INIT ERROR: {e}"))
                    .unwrap_or_default()
            );
        }
    }
    if st.boxes.is_empty() {
        println!("  jump boxes: none");
    } else {
        println!("  jump boxes:");
        for b in &st.boxes {
            let ip = b.public_ip.clone().unwrap_or("(no public IP)".into());
            match b.port {
                Some(p) => println!(
                    "    {}  {ip}:22 -> 127.0.0.1:{p}  session {}  pid {}  since {}  user data {}",
                    b.instance,
                    b.session,
                    b.pid.map(|p| p.to_string()).unwrap_or("-".into()),
                    b.since,
                    b.user_data
                ),
                None => println!(
                    "    {}  {ip}:22  session {}  booting since {}",
                    b.instance, b.session, b.since
                ),
            }
        }
    }
    if !st.lan.is_empty() {
        println!("  sample LAN hosts (user ferry-ro):");
        for h in &st.lan {
            println!(
                "    {:<8} 127.0.0.1:{:<5}  sshd pid {}  files under {}",
                h.name,
                h.port,
                h.pid.map(|p| p.to_string()).unwrap_or("-".into()),
                h.root
            );
        }
    }
    for s in &st.schedules {
        println!(
            "  schedule: rule {} {} -> {} {}; next {}{}",
            s.rule,
            s.schedule,
            s.function,
            s.input,
            s.next,
            s.last
                .as_ref()
                .map(|l| format!(", last {l}"))
                .unwrap_or_default()
        );
    }
    println!("  files:");
    for (f, what) in [
        (ENV_FILE, "source it"),
        (SSH_CONFIG, ferry_contract::env::SSH_CONFIG),
        (SOURCES_FILE, "sample LAN [sources]"),
        (LOG_FILE, "events"),
    ] {
        let p = dir.join(f);
        if p.exists() {
            println!("    {}  ({what})", p.display());
        }
    }
}

fn status(dir: &Path, json: bool) -> Result<ExitCode, String> {
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let Some(pid) = running_daemon(&dir) else {
        println!("no local cloud runs in {}", dir.display());
        return Ok(ExitCode::from(3));
    };
    let mut st = read_state(&dir).ok_or_else(|| {
        format!(
            "the daemon (pid {pid}) runs but {} is missing or unreadable",
            dir.join(STATE_FILE).display()
        )
    })?;
    // The secret key is in DIR/env (0600) for whoever sources it, never on a terminal.
    st.operator_secret = "<redacted>".into();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&st).map_err(|e| e.to_string())?
        );
    } else {
        println!(
            "local cloud in {}: running (pid {pid}, since {})",
            dir.display(),
            st.started
        );
        print_state(&dir, &st);
    }
    Ok(ExitCode::SUCCESS)
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a PID we identified (our daemon, or a recorded child whose start time
    // matches).
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

fn down(dir: &Path) -> Result<ExitCode, String> {
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let recorded = read_state(&dir).map(|s| s.children).unwrap_or_default();
    let start = Instant::now();
    match running_daemon(&dir) {
        None => println!("no local cloud runs in {}", dir.display()),
        Some(pid) => {
            println!("stopping the local cloud in {} (pid {pid})…", dir.display());
            signal(pid, libc::SIGTERM);
            // Bounded: boots in flight finish first (their own bound is 90 s).
            let limit = Duration::from_secs(150);
            while alive(pid) && start.elapsed() < limit {
                std::thread::sleep(Duration::from_millis(100));
            }
            if alive(pid) {
                println!("the daemon did not stop within {limit:?}: killing it (SIGKILL)");
                signal(pid, libc::SIGKILL);
                let t = Instant::now();
                while alive(pid) && t.elapsed() < Duration::from_secs(5) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
    // Whatever the daemon started and is still there (it was killed, or crashed): same PID and
    // same start time, so never a process that merely reused the number.
    let mut left = Vec::new();
    for c in &recorded {
        if alive(c.pid) && starttime(c.pid) == Some(c.starttime) {
            signal(c.pid, libc::SIGKILL);
            left.push(format!("{} (pid {})", c.what, c.pid));
        }
    }
    for f in [ENV_FILE, PID_FILE, STATE_FILE] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    if left.is_empty() {
        println!(
            "stopped in {:.1} s; nothing left running; removed {}",
            start.elapsed().as_secs_f64(),
            dir.join(ENV_FILE).display()
        );
    } else {
        println!("killed what was left behind: {}", left.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
