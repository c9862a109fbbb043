//! The Lambda host while it runs: functions added, replaced (a running invocation finishes on
//! the old process, the next goes to the new one, the Invoke port stays), removed; other Lambda
//! API calls passed through to an upstream. The function here is a small python runtime that
//! speaks the real runtime API (the real `bootstrap` is exercised by ferry-lambda's tests).

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use ferry_testkit::http;
use ferry_testkit::lambda_host::{FunctionSpec, LambdaHost};

/// A minimal custom runtime (the venv's python, standard library only).
const RUNTIME: &str = r#"
import json, os, time, urllib.request
api = "http://%s/2018-06-01/runtime" % os.environ["AWS_LAMBDA_RUNTIME_API"]
for _ in range(1000):
    with urllib.request.urlopen(api + "/invocation/next", timeout=600) as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        body = r.read()
    if b"slow" in body:
        time.sleep(2)
    if b"hang" in body:
        time.sleep(60)
    answer = json.dumps({"version": os.environ["VERSION"], "pid": os.getpid()}).encode()
    urllib.request.urlopen(urllib.request.Request(api + "/invocation/%s/response" % rid, data=answer, method="POST"), timeout=30).read()
"#;

fn spec(dir: &Path, version: &str) -> FunctionSpec {
    spec_with_timeout(dir, version, Duration::from_secs(20))
}

fn spec_with_timeout(dir: &Path, version: &str, timeout: Duration) -> FunctionSpec {
    let bin = dir.join("runtime.py");
    if !bin.exists() {
        let py = ferry_testkit::Moto::venv().join("bin/python3");
        std::fs::write(&bin, format!("#!{}\n{RUNTIME}", py.display())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    FunctionSpec {
        name: "demo-build".into(),
        binary: bin,
        env: vec![("VERSION".into(), version.into())],
        timeout,
    }
}

fn invoke(port: u16, payload: &str) -> (u16, serde_json::Value) {
    let (status, body) = http(
        port,
        "POST",
        "/2015-03-31/functions/demo-build/invocations",
        payload.as_bytes(),
    )
    .unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
    )
}

fn port_of(endpoint: &str) -> u16 {
    endpoint.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn functions_are_added_replaced_and_removed_on_the_same_invoke_port() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let host = LambdaHost::empty(Some(logs.clone())).unwrap();
    let port = port_of(&host.endpoint());
    assert_eq!(invoke(port, "{}").0, 404, "nothing hosted yet");

    host.load(spec(dir.path(), "v1")).unwrap();
    assert_eq!(host.functions(), vec!["demo-build".to_string()]);
    let (status, v1) = invoke(port, "{}");
    assert_eq!((status, v1["version"].as_str()), (200, Some("v1")), "{v1}");
    let old_pid = host.pid("demo-build").unwrap();

    // Replace while an invocation runs on the old process: it finishes there; the next
    // invocation is served by the new process; the old one is then stopped.
    let slow = std::thread::spawn(move || invoke(port, r#"{"slow": true}"#));
    std::thread::sleep(Duration::from_millis(500));
    host.load(spec(dir.path(), "v2")).unwrap();
    let new_pid = host.pid("demo-build").unwrap();
    assert_ne!(new_pid, old_pid);
    let (status, v2) = invoke(port, "{}");
    assert_eq!((status, v2["version"].as_str()), (200, Some("v2")), "{v2}");
    let (status, finished) = slow.join().unwrap();
    assert_eq!(
        (
            status,
            finished["version"].as_str(),
            finished["pid"].as_u64()
        ),
        (200, Some("v1"), Some(old_pid as u64)),
        "{finished}"
    );
    ferry_testkit::wait_until("old process gone", Duration::from_secs(10), || {
        gone(old_pid)
    })
    .unwrap();
    assert_eq!(host.endpoint(), format!("http://127.0.0.1:{port}"));
    assert!(logs.join("demo-build.log").is_file());

    // An asynchronous invocation is queued and run.
    host.invoke_event("demo-build", b"{}").unwrap();
    assert!(host.invoke_event("nope", b"{}").is_err());

    assert!(host.remove("demo-build"));
    assert!(!host.remove("demo-build"));
    assert_eq!(invoke(port, "{}").0, 404);
}

fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
        || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// As Lambda resets an execution environment after a timeout or a crash in the invoke phase
/// (<https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html>): an
/// invocation past the timeout is answered `Sandbox.Timedout` and its process is killed (it does
/// not run on after the answer); a killed process fails its invocation with
/// `Runtime.ExitError`; either way the next invocation runs in a new process.
#[test]
fn a_timed_out_or_killed_runtime_is_stopped_and_the_next_invoke_starts_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let host = LambdaHost::empty(Some(dir.path().join("logs"))).unwrap();
    let port = port_of(&host.endpoint());
    host.load(spec_with_timeout(dir.path(), "v1", Duration::from_secs(1)))
        .unwrap();

    // Timeout: the answer, then the process is gone.
    let first = host.pid("demo-build").unwrap();
    let (status, v) = invoke(port, r#"{"hang": true}"#);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["errorType"], "Sandbox.Timedout", "{v}");
    ferry_testkit::wait_until(
        "the timed-out process stopped",
        Duration::from_secs(10),
        || gone(first),
    )
    .unwrap();
    // The next invocation: a new process (a cold init), which answers.
    let (status, v) = invoke(port, "{}");
    assert_eq!((status, v["version"].as_str()), (200, Some("v1")), "{v}");
    let second = v["pid"].as_u64().unwrap();
    assert_ne!(second, u64::from(first));

    // SIGKILL mid-invocation: that invocation fails as Runtime.ExitError, the next runs anew.
    host.load(spec_with_timeout(dir.path(), "v2", Duration::from_secs(30)))
        .unwrap();
    let victim = host.pid("demo-build").unwrap();
    let hung = std::thread::spawn(move || invoke(port, r#"{"hang": true}"#));
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) of the function's process, a child of this test's host.
    unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) };
    let (status, v) = hung.join().unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["errorType"], "Runtime.ExitError", "{v}");
    let (status, v) = invoke(port, "{}");
    assert_eq!((status, v["version"].as_str()), (200, Some("v2")), "{v}");
    assert_ne!(v["pid"].as_u64().unwrap(), u64::from(victim));
    assert!(
        host.log("demo-build")
            .contains("a new one starts (cold init)")
    );
}

#[test]
fn other_lambda_calls_go_to_the_upstream() {
    let host = LambdaHost::empty(None).unwrap();
    let port = port_of(&host.endpoint());
    // Without an upstream: not an Invoke request.
    assert_eq!(
        http(port, "GET", "/2015-03-31/functions/", b"").unwrap().0,
        404
    );
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_port = upstream.local_addr().unwrap().port();
    let seen = std::thread::spawn(move || {
        let (mut c, _) = upstream.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = c.read(&mut buf).unwrap();
        let body = br#"{"Functions": []}"#;
        c.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        c.write_all(body).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    host.set_api_upstream(up_port);
    let (status, body) = http(port, "GET", "/2015-03-31/functions/?MaxItems=5", b"").unwrap();
    assert_eq!((status, body.as_str()), (200, r#"{"Functions": []}"#));
    let request = seen.join().unwrap();
    assert!(
        request.starts_with("GET /2015-03-31/functions/?MaxItems=5 HTTP/1.1\r\n"),
        "{request}"
    );
}
