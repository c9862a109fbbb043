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
    answer = json.dumps({"version": os.environ["VERSION"], "pid": os.getpid()}).encode()
    urllib.request.urlopen(urllib.request.Request(api + "/invocation/%s/response" % rid, data=answer, method="POST"), timeout=30).read()
"#;

fn spec(dir: &Path, version: &str) -> FunctionSpec {
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
        timeout: Duration::from_secs(20),
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
        !Path::new(&format!("/proc/{old_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{old_pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
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
