//! `ferry backup` through the local cloud, killed with SIGTERM during collection, during
//! provisioning (while ferry-build runs) and during the upload: after each, no instance of
//! the installation remains running and no session state is left. Then killed with SIGKILL
//! during the upload (no cleanup code runs: its jump box, security group and session state
//! stay). The next run removes the box the killed run left (the spool noted its session),
//! resumes what the spool holds and completes a snapshot that restores byte for byte.
//! Beside it, Lambda's bad days: ferry-build throttled, ferry-clean failing, ferry-build's
//! handler killed mid-build, and ferry-clean's handler killed mid-clean.
//!
//! Real parts only: `ferry-localcloud` (moto, the Lambda host running the deployed
//! `bootstrap`, jump boxes booted from their real user data, a sample LAN host with real sshd),
//! `ferry infra apply` creating the infrastructure, and the real `ferry` binary. Needs root,
//! the project venv and `nc` (scripts/install-deps.sh), and the binaries `ferry`, `bootstrap`,
//! `ferry-gate` in this test's target directory (`cargo test --workspace` builds them).

mod common;

use common::{BACKUP_BUCKET, Cloud};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Start `ferry backup`, send `signal` as soon as stderr shows `marker` (plus `delay`), and
/// return (exit code, everything it printed).
fn kill_at(
    cloud: &Cloud,
    config: &Path,
    marker: &str,
    delay: Duration,
    signal: i32,
) -> (i32, String) {
    let mut child: Child = cloud
        .ferry(false)
        .args(["backup", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry backup");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut out = String::new();
    let start = Instant::now();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120).saturating_sub(start.elapsed()))
            .unwrap_or_else(|_| panic!("no {marker:?} within 120 s:\n{out}"));
        out.push_str(&line);
        out.push('\n');
        if line.contains(marker) {
            break;
        }
    }
    std::thread::sleep(delay);
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "ferry did not exit after signal {signal}:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for line in rx.iter() {
        out.push_str(&line);
        out.push('\n');
    }
    let _ = reader.join();
    (status.code().unwrap_or(-1), out)
}

/// Run `ferry backup` (its output captured) and SIGKILL `function`'s process (the local
/// cloud's Lambda host runs it) as soon as that function's log, past what it held before,
/// shows `marker` (polled every 10 ms, for at most `within`). Returns the run's output and
/// that function's log from the start of the run.
fn backup_killing_function_at(
    cloud: &Cloud,
    config: &str,
    function: &str,
    marker: &str,
    within: Duration,
) -> (std::process::Output, String) {
    let path = cloud
        .path("cloud/functions")
        .join(format!("{function}.log"));
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    let before = read().len();
    let since = |log: &str| log.get(before.min(log.len())..).unwrap_or("").to_string();
    let child = cloud
        .ferry(false)
        .args(["backup", "--config", config])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry backup");
    let started = Instant::now();
    while !since(&read()).contains(marker) {
        assert!(
            started.elapsed() < within,
            "{function} never logged {marker:?}:\n{}",
            since(&read())
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (build, clean) = cloud.function_pids().expect("the functions' processes");
    let pid = if function == "ferry-build" {
        build
    } else {
        clean
    };
    // SAFETY: kill(2) of a process of the local cloud's Lambda host (its child).
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let out = child.wait_with_output().expect("ferry backup");
    (out, since(&read()))
}

/// A local cloud with the infrastructure applied, keys, and a config backing up the sample
/// LAN host, to which a `big_mib` MiB incompressible file was added.
struct Setup {
    cloud: Cloud,
    config: PathBuf,
    master: PathBuf,
    sources: String,
    host_root: PathBuf,
    big: Vec<u8>,
}

fn setup(big_mib: usize) -> Setup {
    let cloud = Cloud::up(1);
    // The operator creates the infrastructure; the functions are deployed from these binaries.
    let creds = cloud.apply("");
    let (master, put) = cloud.keys("home");
    let cdir = cloud.path("cloud");

    // The sample host gets a big incompressible file, so collection and upload take time.
    let sources = std::fs::read_to_string(cdir.join("sources.toml")).expect("sources.toml");
    let host_root = sources
        .lines()
        .find_map(|l| {
            l.split_once(": files under ")
                .map(|(_, p)| PathBuf::from(p.trim()))
        })
        .expect("the host's directory in sources.toml");
    let big = common::noise(0, big_mib << 20);
    let big_path = host_root.join("var/log/big.bin");
    std::fs::write(&big_path, &big).expect("big file");
    let config = cloud.path("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "{sources}\n{}\n\
             [metrics]\ntextfile = {:?}\n\n\
             [hooks]\nrun-finally = [\"sh\", \"-c\", \"echo $FERRY_HOOK $FERRY_STATUS >> \\\"$0\\\"\", {:?}]\n",
            cloud.backup_sections(
                "home",
                &put,
                &cloud.path("spool"),
                &creds,
                "pack_size = \"16MiB\"\n"
            ),
            cloud.path("ferry.prom").display().to_string(),
            cloud.path("finally.log").display().to_string(),
        ),
    )
    .expect("ferry.toml");

    Setup {
        cloud,
        config,
        master,
        sources,
        host_root,
        big,
    }
}

#[test]
fn sigterm_during_collection_provisioning_and_upload_leaves_nothing_and_the_next_run_completes() {
    let st = setup(160);
    let (cloud, config) = (&st.cloud, &st.config);
    // 1. During collection: nothing exists in the cloud yet; the process just stops. Killed
    // right at "Collecting": the collection begins with an SSH login (≥ 0.1 s) before any
    // file, so the signal lands inside it however fast the rest is (a fixed 700 ms delay
    // stopped landing there once one session per host and AES-GCM made it faster).
    let (code, out) = kill_at(cloud, config, "Collecting", Duration::ZERO, libc::SIGTERM);
    assert_eq!(code, 128 + libc::SIGTERM, "{out}");
    assert!(
        !out.contains("Asking ferry-build"),
        "killed too late:\n{out}"
    );
    assert_eq!(cloud.leftovers(), (0, 0, 0), "{out}");

    // 2. During provisioning: the handler waits for ferry-build's answer, then removes the box.
    let (code, out) = kill_at(
        cloud,
        config,
        "Asking ferry-build",
        Duration::ZERO,
        libc::SIGTERM,
    );
    assert_eq!(code, 128 + libc::SIGTERM, "{out}\n{}", cloud.log());
    assert!(out.contains("waiting for ferry-build"), "{out}");
    assert!(out.contains("removed"), "{out}\n{}", cloud.log());
    assert_eq!(cloud.leftovers(), (0, 0, 0), "{out}\n{}", cloud.log());

    // 3. During the upload.
    let (code, out) = kill_at(
        cloud,
        config,
        "Uploading",
        Duration::from_millis(300),
        libc::SIGTERM,
    );
    assert_eq!(code, 128 + libc::SIGTERM, "{out}\n{}", cloud.log());
    assert!(out.contains("removed"), "{out}\n{}", cloud.log());
    assert_eq!(cloud.leftovers(), (0, 0, 0), "{out}\n{}", cloud.log());

    // Each interrupted run ran its run-finally hook and wrote the metrics file.
    let prom = || std::fs::read_to_string(cloud.path("ferry.prom")).expect("ferry.prom");
    assert!(
        prom().contains("\nferry_last_run_success 0\n"),
        "{}",
        prom()
    );

    // 4. SIGKILL during the upload: no cleanup runs, the box, its group and its session
    // state stay (they would hold the installation's one session slot until the box
    // expires, refusing every run until then).
    let (code, out) = kill_at(
        cloud,
        config,
        "Uploading",
        Duration::from_millis(300),
        libc::SIGKILL,
    );
    assert_eq!(code, -1, "killed by a signal: {out}");
    let session = out
        .split("(session ")
        .nth(1)
        .and_then(|t| t.split(',').next())
        .unwrap_or_else(|| panic!("no session in: {out}"))
        .to_string();
    assert_eq!(cloud.leftovers(), (1, 1, 1), "{out}\n{}", cloud.log());

    // 5. The next run removes the box the killed run left, then resumes what the spool
    // holds and completes; with --json, stdout is JSON lines only (status lines, the
    // summary last) and the human text is on stderr.
    let o = cloud
        .ferry(false)
        .args([
            "backup",
            "--json",
            "--config",
            config.to_str().expect("utf-8"),
        ])
        .output()
        .expect("ferry backup --json");
    let (stdout, out) = (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    );
    assert!(o.status.success(), "{out}\n{}", cloud.log());
    assert!(
        out.contains(&format!(
            "ended without removing its jump box (session {session})"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("jump box of session {session} removed")),
        "{out}"
    );
    assert!(out.contains("The spool still holds"), "{out}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let (summary, status_lines) = lines.split_last().expect("JSON lines");
    assert!(
        status_lines.iter().all(|l| l["message_type"] == "status"),
        "{stdout}"
    );
    assert_eq!(summary["message_type"], "summary", "{stdout}");
    assert_eq!(summary["result"], "ok", "{summary}");
    assert!(
        summary["usage"]["uploaded_bytes"].as_u64() > Some(0),
        "{summary}"
    );
    // ferry-clean for the box the killed run left, ferry-build, ferry-clean.
    assert_eq!(summary["usage"]["lambda_invocations"], 3, "{summary}");
    let hooks = std::fs::read_to_string(cloud.path("finally.log")).expect("finally.log");
    assert_eq!(
        hooks,
        "run-finally interrupted\nrun-finally interrupted\nrun-finally interrupted\nrun-finally ok\n"
    );
    // The metrics file is what `ferry status --prometheus` prints, and says the run's figures.
    let printed = cloud.ok(
        false,
        &[
            "status",
            "--prometheus",
            "--config",
            config.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(printed, prom());
    let uploaded = format!(
        "\nferry_last_run_uploaded_bytes {}\n",
        summary["usage"]["uploaded_bytes"]
    );
    assert!(
        prom().contains("\nferry_last_run_success 1\n") && prom().contains(&uploaded),
        "{}",
        prom()
    );
    assert_eq!(cloud.leftovers(), (0, 0, 0), "{out}\n{}", cloud.log());
    let status = cloud.ok(
        false,
        &["status", "--config", config.to_str().expect("utf-8")],
    );
    assert_eq!(status.matches("interrupted").count(), 3, "{status}");

    restores_latest(&st);
}

/// The latest snapshot restores byte for byte (read back from S3 with the master key), and
/// `check --read-data` passes.
/// The next run has ferry-clean remove the session a run before it left (the spool noted
/// it), then completes: nothing is left in the cloud, and the latest snapshot restores.
fn next_run_removes_the_left_box_and_completes(st: &Setup) {
    let (cloud, config) = (&st.cloud, st.config.to_str().expect("utf-8"));
    let out = cloud.ok(false, &["backup", "--config", config]);
    assert!(
        out.contains("ended without removing its jump box (session "),
        "{out}"
    );
    assert_eq!(cloud.leftovers(), (0, 0, 0), "{out}\n{}", cloud.log());
    restores_latest(st);
}

fn restores_latest(st: &Setup) {
    let Setup {
        cloud,
        master,
        sources,
        host_root,
        big,
        ..
    } = st;
    // The latest snapshot restores byte for byte (read back from S3 with the master key).
    let target = cloud.path("restore");
    let repo = &format!("s3://{BACKUP_BUCKET}/home");
    cloud.ok(
        true,
        &[
            "restore",
            "--repo",
            repo,
            "--key",
            master.to_str().expect("utf-8"),
            "latest",
            "--target",
            target.to_str().expect("utf-8"),
        ],
    );
    let name = sources
        .lines()
        .find_map(|l| l.strip_prefix("name = "))
        .map(|n| n.trim_matches('"').to_string())
        .expect("host name");
    let restored_root = target
        .join(&name)
        .join(host_root.strip_prefix("/").expect("abs"));
    let got = std::fs::read(restored_root.join("var/log/big.bin")).expect("restored big file");
    assert!(got == *big, "the big file differs after restore");
    for (rel, content) in ferry_testkit::lanhost::sample_files(&name) {
        let got = std::fs::read(restored_root.join(&rel)).expect("restored sample file");
        assert!(got == content, "{rel} differs after restore");
    }
    cloud.ok(
        true,
        &[
            "check",
            "--repo",
            repo,
            "--key",
            master.to_str().expect("utf-8"),
            "--read-data",
        ],
    );
}

/// Lambda's bad days (the kit's Lambda host answers Invoke as Lambda does when it throttles
/// or fails, before the function runs): ferry-build throttled twice is retried by the SDK and
/// the run completes; throttled every time, the run fails naming it and nothing is left in
/// the cloud; ferry-clean failing every time leaves the box, the run says so, and the next
/// run removes it first (the spool noted the session) and completes.
#[test]
fn lambda_throttled_or_failing_loses_nothing_and_leaves_nothing() {
    let st = setup(8);
    let (cloud, config) = (&st.cloud, st.config.to_str().expect("utf-8"));
    let functions = cloud.path("cloud/functions");
    let fault = |function: &str, answer, first| ferry_testkit::lambda_host::InvokeFault {
        function: function.into(),
        answer,
        first,
    };
    use ferry_testkit::lambda_host::{InvokeAnswer, write_invoke_faults};
    let (build, clean) = ("ferry-build", "ferry-clean");
    // The local cloud hosts the functions a moment after `infra apply` created them (it
    // polls moto); wait for both (bounded) so that a fault, not a missing function, answers.
    let started = Instant::now();
    while !(cloud.log().contains(&format!("function loaded {build}:"))
        && cloud.log().contains(&format!("function loaded {clean}:")))
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "functions not loaded:\n{}",
            cloud.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // 1. ferry-build throttled twice: the SDK's standard retry (3 attempts, backoff) gets it.
    write_invoke_faults(&functions, &[fault(build, InvokeAnswer::Throttle, Some(2))])
        .expect("faults");
    let out = cloud.ok(false, &["backup", "--config", config]);
    let log = std::fs::read_to_string(functions.join(format!("{build}.log"))).unwrap_or_default();
    assert_eq!(
        log.matches("429 TooManyRequestsException").count(),
        2,
        "{log}"
    );
    assert_eq!(cloud.leftovers(), (0, 0, 0), "{out}\n{}", cloud.log());

    // 2. Throttled every time: the run fails naming it; the spool keeps the run; nothing
    // was created in the cloud.
    std::fs::write(st.host_root.join("var/log/new.log"), "one more line\n").expect("write");
    write_invoke_faults(&functions, &[fault(build, InvokeAnswer::Throttle, None)]).expect("faults");
    let o = cloud
        .ferry(false)
        .args(["backup", "--config", config])
        .output()
        .expect("ferry");
    let text = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{text}");
    for want in ["TooManyRequestsException", "no jump box; the spool keeps"] {
        assert!(text.contains(want), "{want:?} not in: {text}");
    }
    assert_eq!(cloud.leftovers(), (0, 0, 0), "{text}\n{}", cloud.log());

    // 3. ferry-clean failing every time: the upload completes, the box stays, the run says
    // who will remove it.
    write_invoke_faults(
        &functions,
        &[fault(clean, InvokeAnswer::ServiceError, None)],
    )
    .expect("faults");
    let o = cloud
        .ferry(false)
        .args(["backup", "--config", config])
        .output()
        .expect("ferry");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!("ferry-clean failing: exit {:?}: {text}", o.status.code());
    for want in [
        "ServiceException",
        "could not remove the jump box of session",
    ] {
        assert!(text.contains(want), "{want:?} not in: {text}");
    }
    assert_eq!(cloud.leftovers(), (1, 1, 1), "{text}\n{}", cloud.log());

    // 4. Lambda well again: the next run removes that box first, then completes.
    write_invoke_faults(&functions, &[]).expect("faults");
    next_run_removes_the_left_box_and_completes(&st);
}

/// The Lambda handler killed (SIGKILL: no cleanup code runs, as when Lambda stops a handler at
/// its timeout) while ferry-build provisions: the run fails naming it and the spool keeps the
/// run; the half-built session (its instance, group and state) holds no session slot once
/// that invocation is over (its `build_deadline` passed), so the next run completes at once
/// with `max_sessions` 1, and ferry-clean's sweep removes the half-built session long before
/// it expires.
#[test]
fn ferry_build_killed_mid_build_blocks_nothing_and_the_sweep_removes_it() {
    let st = setup(2);
    let (cloud, config) = (&st.cloud, st.config.to_str().expect("utf-8"));
    let functions = cloud.path("cloud/functions");
    // ferry-build's timeout down to 30 s (the operator's UpdateFunctionConfiguration), so its
    // invocation, and the abandoned build's slot, end within the test.
    let timeout = cloud.py(
        "import boto3, json, sys\n\
         lam = boto3.client('lambda')\n\
         lam.update_function_configuration(FunctionName='ferry-build', Timeout=30)\n\
         print(json.dumps(lam.get_function_configuration(FunctionName='ferry-build')['Timeout']))",
        &[],
        None,
    );
    assert_eq!(timeout, 30);
    let started = Instant::now();
    while !(cloud
        .log()
        .lines()
        .any(|l| l.contains("ferry-build: code sha256") && l.contains("timeout 30 s"))
        && cloud.function_pids().is_some())
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "ferry-build not reloaded with its new timeout:\n{}",
            cloud.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let build_log =
        || std::fs::read_to_string(functions.join("ferry-build.log")).unwrap_or_default();

    // SIGKILL the handler once it has launched the instance. Its state still says `intent` and
    // names no resource: only the tags find them.
    let (out, _) = backup_killing_function_at(
        cloud,
        config,
        "ferry-build",
        "instance launched",
        Duration::from_secs(120),
    );
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    for want in ["Runtime.ExitError", "no jump box; the spool keeps"] {
        assert!(text.contains(want), "{want:?} not in: {text}");
    }
    // What the killed build made stays: its instance, group and state (a new instance shows
    // in DescribeInstances only after EC2's propagation delay, the kit's eventual consistency).
    let started = Instant::now();
    while cloud.leftovers() != (1, 1, 1) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{:?}: {text}\n{}",
            cloud.leftovers(),
            cloud.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let deadline = cloud.py(
        "import boto3, json, sys\n\
         s3 = boto3.client('s3')\n\
         keys = [o['Key'] for o in s3.list_objects_v2(Bucket=sys.argv[1], Prefix='sessions/')['Contents']]\n\
         st = json.loads(s3.get_object(Bucket=sys.argv[1], Key=keys[0])['Body'].read())\n\
         print(json.dumps([st['phase'], st['build_deadline'], st['session']]))",
        &[common::STATE_BUCKET],
        None,
    );
    assert_eq!(deadline[0], "intent", "{deadline}");
    let abandoned = deadline[2].as_str().expect("session").to_string();

    // Once that invocation is over (30 s, plus the 15 s margin), the build is abandoned: the
    // next run is not refused. Wait for it (bounded: the timeout and the margin).
    let end = time::OffsetDateTime::parse(
        deadline[1].as_str().expect("build_deadline"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("build_deadline is RFC 3339")
        + time::Duration::seconds(16);
    let wait = (end - time::OffsetDateTime::now_utc()).max(time::Duration::ZERO);
    assert!(wait < time::Duration::seconds(50), "{deadline}");
    std::thread::sleep(Duration::from_secs_f64(wait.as_seconds_f64()));
    let out = cloud.ok(false, &["backup", "--config", config]);
    assert!(
        build_log().contains("abandoned build not counted"),
        "{out}\n{}",
        build_log()
    );
    // The abandoned build is still there (its own timer, or the sweep, removes it).
    assert_eq!(cloud.leftovers(), (1, 1, 1), "{out}\n{}", cloud.log());
    let r = cloud.invoke("ferry-clean", &serde_json::json!({"sweep": true}), None);
    assert!(r["error"].is_null(), "{r}");
    let cleaned: Vec<&str> = r["payload"]["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter_map(|s| s["session"].as_str())
        .collect();
    assert_eq!(cleaned, vec![abandoned.as_str()], "{r}");
    assert_eq!(cloud.leftovers(), (0, 0, 0), "{r}\n{}", cloud.log());
    restores_latest(&st);
}

/// The ferry-clean handler killed (SIGKILL: no cleanup code runs) while it removes the run's
/// jump box: it has asked EC2 to terminate the instance and waits for `terminated` (the kit's
/// EC2 keeps a terminated instance `shutting-down` for 2 s, and refuses to delete its group
/// until then, as EC2 does). The upload is complete; the run fails saying who removes the rest;
/// the group and the session state stay. The next run has ferry-clean remove that session
/// first (the spool noted it), then completes; nothing is left; the latest snapshot restores
/// byte for byte.
#[test]
fn ferry_clean_killed_mid_clean_leaves_the_rest_to_the_next_run() {
    let st = setup(2);
    let (cloud, config) = (&st.cloud, st.config.to_str().expect("utf-8"));
    let started = Instant::now();
    while cloud.function_pids().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "functions not loaded:\n{}",
            cloud.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (out, log) = backup_killing_function_at(
        cloud,
        config,
        "ferry-clean",
        "instances terminating",
        Duration::from_secs(240),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !log.contains("clean done"),
        "the kill came after ferry-clean had finished:\n{log}"
    );
    assert!(!out.status.success(), "{text}");
    for want in [
        "Runtime.ExitError",
        "could not remove the jump box of session",
    ] {
        assert!(text.contains(want), "{want:?} not in: {text}");
    }
    // The instance is on its way out; its group and the session state stay.
    let left = cloud.leftovers();
    assert_eq!(
        (left.1, left.2),
        (1, 1),
        "{left:?}: {text}\n{}",
        cloud.log()
    );

    // The next run has ferry-clean remove that session first, then completes.
    next_run_removes_the_left_box_and_completes(&st);
}
