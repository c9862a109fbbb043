//! The cloud run without the binary and without Lambda: a [`Cloud`] whose "jump box" is a
//! local directory (a real `LocalDir` repository as the upload target). What is checked is
//! the run's own contract: upload order (config, packs, indexes, the snapshot last), what the
//! spool keeps when the upload fails, ferry-clean exactly once per jump box (also when an
//! interrupt arrives mid-run), and the run records in `runs.jsonl`.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

use ferry_repo::format::ObjectKind;
use ferry_repo::storage::{LocalDir, PutOutcome, Storage, StorageError};
use ferry_repo::{MasterKey, NoProgress, Progress, Repository};
use ferry_run::{
    BackupPlan, Cancel, Cloud, CloudRun, Error, Event, FerryConfig, Gate, RunInput, RunProgress,
    Session,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The upload target: a local repository that notes the order it is given objects in.
struct LocalGate {
    dir: LocalDir,
    log: Arc<Mutex<Vec<ObjectKind>>>,
}

impl Storage for LocalGate {
    fn location(&self) -> String {
        self.dir.location()
    }
    fn put_if_absent(
        &self,
        kind: ObjectKind,
        name: &str,
        bytes: &[u8],
    ) -> Result<PutOutcome, StorageError> {
        self.log.lock().unwrap().push(kind);
        self.dir.put_if_absent(kind, name, bytes)
    }
    fn list(&self, kind: ObjectKind) -> Result<Vec<String>, StorageError> {
        self.dir.list(kind)
    }
    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, StorageError> {
        self.dir.get(kind, name)
    }
}

impl Gate for LocalGate {
    fn close(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// A cloud whose jump box is the directory `remote`.
struct LocalCloud {
    remote: PathBuf,
    /// The gate cannot be reached (as a box that never boots).
    unreachable: bool,
    /// Interrupt the run (from another thread) while the box exists.
    interrupt: Mutex<Option<Cancel>>,
    builds: Mutex<u32>,
    cleaned: Mutex<Vec<String>>,
    log: Arc<Mutex<Vec<ObjectKind>>>,
}

impl LocalCloud {
    fn new(remote: &Path) -> LocalCloud {
        LocalCloud {
            remote: remote.to_path_buf(),
            unreachable: false,
            interrupt: Mutex::new(None),
            builds: Mutex::new(0),
            cleaned: Mutex::new(Vec::new()),
            log: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl Cloud for LocalCloud {
    fn build_function(&self) -> &str {
        "local-build"
    }
    fn clean_function(&self) -> &str {
        "local-clean"
    }
    fn build(&self, site: &str, public_key: &str) -> Result<Session, Error> {
        assert!(public_key.starts_with("ssh-ed25519 "), "{public_key}");
        let mut n = self.builds.lock().unwrap();
        *n += 1;
        Ok(Session {
            session: format!("fs-local-{n}"),
            site: site.to_string(),
            host: "127.0.0.1".into(),
            port: 22,
            user: "ferry".into(),
            host_key: "ssh-ed25519 AAAAlocal".into(),
            expires: "2026-01-01T00:30:00Z".into(),
            private_key: None,
            client_public_key: public_key.to_string(),
        })
    }
    fn clean(&self, session: &str, _within: Duration) -> Result<(), Error> {
        self.cleaned.lock().unwrap().push(session.to_string());
        Ok(())
    }
    fn connect_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }
    fn connect(
        &self,
        session: &Session,
        _site: &str,
        identity: &Path,
        host_key: &Path,
    ) -> Result<Box<dyn Gate>, Error> {
        // The session's keys were written for ssh: the client key 0600, the pinned host key.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(identity).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(host_key).unwrap(),
            format!("{}\n", session.host_key)
        );
        if let Some(cancel) = self.interrupt.lock().unwrap().take() {
            std::thread::spawn(move || cancel.interrupt("SIGTERM", &Events::default()))
                .join()
                .unwrap();
        }
        if self.unreachable {
            return Err(Error::msg(format!(
                "connecting to the jump box of session {}: the box never answered",
                session.session
            )));
        }
        Ok(Box::new(LocalGate {
            dir: LocalDir::new(self.remote.clone()),
            log: self.log.clone(),
        }))
    }
}

#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl RunProgress for Events {
    fn event(&self, e: Event<'_>) {
        self.0.lock().unwrap().push(format!("{e:?}"));
    }
    fn collection(&self) -> Arc<dyn Progress> {
        Arc::new(NoProgress)
    }
    fn collection_done(&self) {}
}

struct Setup {
    _t: tempfile::TempDir,
    master: MasterKey,
    sources: ferry_collect::SourcesConfig,
    plan: BackupPlan,
    remote: PathBuf,
    cache: PathBuf,
}

fn setup() -> Setup {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a"), vec![7u8; 200_000]).unwrap();
    std::fs::write(src.join("b"), b"small").unwrap();
    let text = format!(
        "[sources]\n[sources.local]\nname = \"vm\"\npaths = [\"{}\"]\n",
        src.display()
    );
    let sources = FerryConfig::parse(&text, Path::new("t.toml"))
        .unwrap()
        .sources;
    let plan = BackupPlan {
        site: "home".into(),
        key: t.path().join("put.key"),
        spool: t.path().join("spool"),
        spool_max: 1 << 30,
        pack_size: None,
        host: Some("vm".into()),
    };
    Setup {
        master: MasterKey::generate(),
        sources,
        plan,
        remote: t.path().join("remote"),
        cache: t.path().join("cache"),
        _t: t,
    }
}

/// `run` with the setup's sources, cache and put key.
fn run_on(
    s: &Setup,
    run: &CloudRun,
    progress: &dyn RunProgress,
) -> Result<ferry_run::RunReport, Error> {
    let key = |_: &Path| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
        Ok(s.master.put_key())
    };
    let input = RunInput {
        sources: &s.sources,
        cache_dir: Some(s.cache.clone()),
        put_key: &key,
    };
    run.run(&input, progress)
}

fn run_once(s: &Setup, cloud: Arc<LocalCloud>) -> (CloudRun, Result<ferry_run::RunReport, Error>) {
    let run = CloudRun::open(s.plan.clone(), cloud).unwrap();
    let r = run_on(s, &run, &Events::default());
    (run, r)
}

fn runs(spool: &Path) -> Vec<serde_json::Value> {
    ferry_run::spool::read_runs(spool, 100).unwrap()
}

#[test]
fn a_failed_upload_keeps_the_spool_and_the_next_run_uploads_snapshot_last() {
    let s = setup();

    // The jump box never answers: the run fails, its box is removed once, nothing is lost.
    let mut failing = LocalCloud::new(&s.remote);
    failing.unreachable = true;
    let failing = Arc::new(failing);
    let (run, r) = run_once(&s, failing.clone());
    let e = r.unwrap_err();
    let chain = ferry_run::error_chain(&e);
    assert!(
        chain.starts_with(
            "uploading through session fs-local-1 (the spool keeps what was not uploaded): connecting"
        ),
        "{chain}"
    );
    assert_eq!(*failing.cleaned.lock().unwrap(), ["fs-local-1"]);
    let held = ferry_run::Spool::open(&s.plan.spool, 1 << 30).unwrap_err();
    assert!(
        ferry_run::error_chain(&held).contains("in use"),
        "the run still holds its spool"
    );
    drop(run);
    let spool = ferry_run::Spool::open(&s.plan.spool, 1 << 30).unwrap();
    let held = spool.held().unwrap();
    assert!(
        held.packs >= 1 && held.indexes == 1 && held.snapshots == 1,
        "{held:?}"
    );
    drop(spool);
    assert!(
        !s.remote.join("config").exists(),
        "nothing reached the bucket"
    );
    let record = runs(&s.plan.spool);
    assert_eq!(record.len(), 1);
    assert_eq!(record[0]["result"], "failed");
    assert_eq!(record[0]["usage"]["lambda_invocations"], 2);

    // The next run uploads the earlier snapshot and its own: config, packs, indexes, and
    // the snapshots last.
    let cloud = Arc::new(LocalCloud::new(&s.remote));
    let (run, r) = run_once(&s, cloud.clone());
    let report = r.unwrap();
    assert_eq!(report.resumed, held);
    assert_eq!(report.snapshots.len(), 2);
    assert_eq!(report.result(), "ok");
    assert_eq!(*cloud.cleaned.lock().unwrap(), ["fs-local-1"]);
    let log = cloud.log.lock().unwrap().clone();
    let rank = |k: &ObjectKind| match k {
        ObjectKind::Config => 0,
        ObjectKind::Pack => 1,
        ObjectKind::Index => 2,
        ObjectKind::Snapshot => 3,
        // The backup VM never writes the operator's kinds.
        ObjectKind::Trash | ObjectKind::Log => 99,
    };
    assert!(
        log.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
        "{log:?}"
    );
    assert_eq!(log.first(), Some(&ObjectKind::Config));
    assert_eq!(log[log.len() - 2..], [ObjectKind::Snapshot; 2]);
    assert_eq!(report.usage.uploaded_objects as usize, log.len());
    assert_eq!(report.usage.lambda_invocations, 2);
    assert!(run.spool_dir().join("uploaded").exists());
    drop(run);
    let record = runs(&s.plan.spool);
    assert_eq!(record.len(), 2);
    assert_eq!(record[1]["result"], "ok");
    assert_eq!(record[1]["session"], "fs-local-1");
    assert_eq!(record[1]["snapshot"], report.snapshots[1].id.as_str());

    // What arrived is a whole repository, readable with the master key.
    let repo = Repository::open(Arc::new(LocalDir::new(s.remote.clone()))).unwrap();
    let snaps = repo.reader(&s.master).unwrap().snapshots().unwrap();
    assert_eq!(snaps.len(), 2);
    assert!(snaps.iter().all(|x| x.snapshot.usage.is_some()));
}

#[test]
fn an_interrupt_while_the_box_exists_cleans_it_exactly_once() {
    let s = setup();
    let cloud = Arc::new(LocalCloud::new(&s.remote));
    let run = CloudRun::open(s.plan.clone(), cloud.clone()).unwrap();
    *cloud.interrupt.lock().unwrap() = Some(run.cancel());
    let events = Events::default();
    let e = run_on(&s, &run, &events).unwrap_err();
    assert!(e.is_interrupted(), "{e}");
    assert!(run.cancel().is_interrupted());
    // The interrupt removed the box; the run did not remove it a second time.
    assert_eq!(*cloud.cleaned.lock().unwrap(), ["fs-local-1"]);
    let events = events.0.lock().unwrap().clone();
    assert!(
        !events.iter().any(|e| e.starts_with("Cleaning")),
        "{events:?}"
    );
    // One record: the interrupt's; nothing was uploaded, the spool keeps it all.
    let record = runs(&s.plan.spool);
    assert_eq!(record.len(), 1, "{record:?}");
    assert_eq!(record[0]["result"], "interrupted");
    assert_eq!(
        record[0]["error"],
        "SIGTERM; jump box of session fs-local-1 removed"
    );
    assert!(cloud.log.lock().unwrap().is_empty());
    drop(run);
    let spool = ferry_run::Spool::open(&s.plan.spool, 1 << 30).unwrap();
    assert_eq!(spool.held().unwrap().snapshots, 1);
}

// ---- Operations around the run: metrics file, health pings, hooks, JSON lines ----

use ferry_run::config::{HooksPlan, OpsPlan, PingPlan};
use ferry_run::{JsonLines, Ops};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::Instant;

/// One request the loopback server saw: method, path, body.
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// Read one HTTP/1.1 request from `stream` and note it in `seen`; then answer 200 (or keep
/// the connection open without an answer, when `silent`). `Err` when the request could not
/// be read (a client that gave up, a TLS handshake it refused).
fn serve_one<S: Read + Write>(stream: &mut S, seen: &Seen, silent: bool) -> std::io::Result<()> {
    let mut r = BufReader::new(&mut *stream);
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    drop(r);
    seen.lock()
        .unwrap()
        .push((method, path, String::from_utf8(body).unwrap()));
    if !silent {
        stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")?;
        stream.flush()?;
    }
    Ok(())
}

/// A loopback HTTP server on its own thread: answers every request 200 (or never, when
/// `silent`: it reads the request and keeps the connection open). Returns its base URL
/// (`http://127.0.0.1:PORT/<uuid>`) and what it saw.
fn ping_server(silent: bool) -> (String, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in l.incoming().take(20) {
            let Ok(mut conn) = conn else { continue };
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            serve_one(&mut conn, &s, silent).unwrap();
            if silent {
                held.push(conn);
            }
        }
    });
    (
        format!("http://127.0.0.1:{port}/5bf6bd3e-secret-uuid"),
        seen,
    )
}

/// A certificate authority made for one test, and a server certificate for 127.0.0.1 that it
/// signed: (the CA's PEM, the server's chain and key).
fn test_ca() -> (
    String,
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Ferry test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let mut server = CertificateParams::new(Vec::<String>::new()).unwrap();
    server.subject_alt_names = vec![SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())];
    server
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let key = KeyPair::generate().unwrap();
    let cert = server.signed_by(&key, &ca_cert, &ca_key).unwrap();
    (
        ca_cert.pem(),
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
}

/// A loopback HTTPS server (rustls) presenting `chain`: like [`ping_server`], over TLS.
/// Connections whose handshake fails are dropped. Returns `https://127.0.0.1:PORT/<uuid>`,
/// what it saw, and how many TLS handshakes failed.
fn tls_ping_server(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> (String, Seen, Arc<Mutex<u32>>) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    );
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let refused = Arc::new(Mutex::new(0));
    let (s, f) = (seen.clone(), refused.clone());
    std::thread::spawn(move || {
        for conn in l.incoming().take(20) {
            let Ok(conn) = conn else { continue };
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut tls =
                rustls::StreamOwned::new(rustls::ServerConnection::new(cfg.clone()).unwrap(), conn);
            if serve_one(&mut tls, &s, false).is_err() {
                *f.lock().unwrap() += 1;
            } else {
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        }
    });
    (
        format!("https://127.0.0.1:{port}/5bf6bd3e-secret-uuid"),
        seen,
        refused,
    )
}

/// A hook script that writes its `FERRY_*` environment to `<dir>/<hook>.env`.
fn hook_script(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("hook.sh");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nenv | grep '^FERRY_' | sort > '{}'/\"$FERRY_HOOK.env\"\necho \"hook $FERRY_HOOK ran\" >&2\nexit \"${{1:-0}}\"\n",
            dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn hook_env(dir: &Path, hook: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(dir.join(format!("{hook}.env")))
        .unwrap_or_else(|e| panic!("{hook} did not run: {e}"));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A small checker of the text exposition format: every family has HELP and TYPE lines
/// before its samples, every sample is `name{labels} value` with a known family and a
/// number. Returns `name{labels}` (labels unescaped, as `k=v,…`) → value.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut helped = std::collections::BTreeSet::new();
    let mut typed = std::collections::BTreeSet::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(!help.is_empty(), "{line}");
            helped.insert(name.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap();
            assert_eq!(ty, "gauge", "{line}");
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            typed.insert(name.to_string());
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, String::new()),
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
                // k="v" pairs; v with \\, \" and \n escapes
                let mut labels = Vec::new();
                let mut chars = rest.chars().peekable();
                while chars.peek().is_some() {
                    let k: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    assert_eq!(chars.next(), Some('"'), "{line}");
                    let mut v = String::new();
                    loop {
                        match chars
                            .next()
                            .unwrap_or_else(|| panic!("unterminated: {line}"))
                        {
                            '\\' => match chars.next() {
                                Some('\\') => v.push('\\'),
                                Some('"') => v.push('"'),
                                Some('n') => v.push('\n'),
                                other => panic!("bad escape {other:?}: {line}"),
                            },
                            '"' => break,
                            c => v.push(c),
                        }
                    }
                    labels.push(format!("{k}={v}"));
                    if chars.peek() == Some(&',') {
                        chars.next();
                    }
                }
                (name, labels.join(","))
            }
        };
        assert!(
            name.starts_with("ferry_") && typed.contains(name),
            "sample without HELP/TYPE: {line}"
        );
        let key = if labels.is_empty() {
            name.to_string()
        } else {
            format!("{name}{{{labels}}}")
        };
        assert!(out.insert(key, value).is_none(), "duplicate series: {line}");
    }
    out
}

/// A `Write` into a shared buffer (the JSON lines of a run).
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn run_with_ops(
    s: &Setup,
    cloud: Arc<LocalCloud>,
    ops: OpsPlan,
    progress: &dyn RunProgress,
) -> Result<ferry_run::RunReport, Error> {
    let run = CloudRun::open_with(s.plan.clone(), cloud, Ops::new(ops, &s.plan.site)).unwrap();
    run_on(s, &run, progress)
}

fn ops_plan(dir: &Path, url: &str, timeout: u64, retries: u32) -> OpsPlan {
    let script = hook_script(dir).display().to_string();
    let hook = |code: &str| Some(vec![script.clone(), code.to_string()]);
    OpsPlan {
        metrics: Some(dir.join("ferry.prom")),
        ping: Some(PingPlan {
            url: url.to_string(),
            timeout: Duration::from_secs(timeout),
            retries,
            ca_file: None,
        }),
        hooks: HooksPlan {
            run_before: hook("0"),
            run_after: hook("0"),
            run_failed: hook("0"),
            run_finally: hook("0"),
            timeout: Duration::from_secs(10),
        },
    }
}

#[test]
fn a_successful_run_writes_metrics_pings_start_and_success_runs_its_hooks_and_streams_json() {
    let s = setup();
    let hooks = s._t.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    let (url, seen) = ping_server(false);
    let out = Buf::default();
    let sink = JsonLines::new(Box::new(out.clone()), Some(Arc::new(Events::default())));
    let report = run_with_ops(
        &s,
        Arc::new(LocalCloud::new(&s.remote)),
        ops_plan(&hooks, &url, 5, 1),
        &sink,
    )
    .unwrap();
    let snap = report.snapshots.last().unwrap();
    let record = runs(&s.plan.spool).pop().unwrap();
    assert_eq!(record["result"], "ok");
    assert!(record.get("warnings").is_none(), "{record}");

    // The pings: /start, then the plain URL with the run's record as the body.
    let seen = seen.lock().unwrap().clone();
    let path = url
        .trim_start_matches(|c| c != '/')
        .trim_start_matches("//");
    let path = &path[path.find('/').unwrap()..];
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (seen[0].0.as_str(), seen[0].1.as_str()),
        ("POST", &*format!("{path}/start"))
    );
    assert_eq!((seen[1].0.as_str(), seen[1].1.as_str()), ("POST", path));
    assert!(
        seen[1].2.starts_with("ferry backup of site home: ok\n"),
        "{}",
        seen[1].2
    );
    assert!(seen[1].2.contains(&snap.id), "{}", seen[1].2);

    // The hooks: before (no result yet), after and finally with the result; not failed.
    let before = hook_env(&hooks, "run-before");
    assert_eq!(before["FERRY_HOOK"], "run-before");
    assert_eq!(before["FERRY_SITE"], "home");
    assert!(!before.contains_key("FERRY_RESULT"), "{before:?}");
    for hook in ["run-after", "run-finally"] {
        let e = hook_env(&hooks, hook);
        assert_eq!(e["FERRY_HOOK"], hook);
        assert_eq!(e["FERRY_RESULT"], "success");
        assert_eq!(e["FERRY_STATUS"], "ok");
        assert_eq!(e["FERRY_SNAPSHOT"], snap.id);
        assert_eq!(
            e["FERRY_BYTES_READ"],
            snap.snapshot.stats.bytes_read.to_string()
        );
        assert_eq!(
            e["FERRY_BYTES_NEW"],
            snap.snapshot.stats.new_bytes.to_string()
        );
        assert_eq!(
            e["FERRY_BYTES_UPLOADED"],
            report.usage.uploaded_bytes.to_string()
        );
        assert_eq!(e["FERRY_FILES"], snap.snapshot.stats.files.to_string());
        assert!(!e.contains_key("FERRY_ERROR"), "{e:?}");
    }
    assert!(!hooks.join("run-failed.env").exists());

    // The metrics file: well-formed, and the figures are the run's.
    let m = parse_prometheus(&std::fs::read_to_string(hooks.join("ferry.prom")).unwrap());
    let finished = ferry_run::metrics::unix_seconds(record["finished"].as_str().unwrap()).unwrap();
    let st = &snap.snapshot.stats;
    let u = &report.usage;
    for (k, v) in [
        ("ferry_last_run_timestamp_seconds", finished as u64),
        ("ferry_last_success_timestamp_seconds", finished as u64),
        ("ferry_last_run_success", 1),
        ("ferry_last_run_partial", 0),
        ("ferry_last_run_files", st.files),
        ("ferry_last_run_read_bytes", st.bytes_read),
        ("ferry_last_run_new_bytes", st.new_bytes),
        ("ferry_last_run_uploaded_bytes", u.uploaded_bytes),
        ("ferry_last_run_uploaded_objects", u.uploaded_objects),
        ("ferry_last_run_s3_requests{type=put}", u.s3_put_requests),
        ("ferry_last_run_s3_requests{type=get}", u.s3_get_requests),
        ("ferry_last_run_lambda_invocations", 2),
        ("ferry_last_run_jump_box_seconds", u.instance_seconds),
        ("ferry_spool_waiting_bytes", 0),
        ("ferry_source_success{source=vm}", 1),
        ("ferry_source_read_bytes{source=vm}", st.bytes_read),
    ] {
        assert_eq!(m.get(k).copied(), Some(v as f64), "{k}: {m:?}");
    }
    assert!(u.uploaded_bytes > 0 && st.bytes_read == 200_005);

    // The JSON lines: every line an object, status lines, the summary last with the figures.
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let (last, status) = lines.split_last().unwrap();
    assert!(
        status.iter().all(|l| l["message_type"] == "status"),
        "{text}"
    );
    let actions: Vec<_> = status
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    for a in [
        "hook",
        "collecting",
        "collected",
        "building",
        "uploading",
        "cleaned",
    ] {
        assert!(actions.contains(&a), "{a} missing: {actions:?}");
    }
    assert_eq!(last["message_type"], "summary");
    assert_eq!(last["result"], "ok");
    assert_eq!(last["snapshot"], snap.id.as_str());
    assert_eq!(last["bytes_read"], st.bytes_read);
    assert_eq!(last["usage"]["uploaded_bytes"], u.uploaded_bytes);
    assert_eq!(last["snapshots"][0]["snapshot"], snap.id.as_str());
    assert!(last["duration_seconds"].is_u64(), "{last}");
}

#[test]
fn a_failing_run_before_skips_the_run_and_a_failed_upload_reports_failure_everywhere() {
    let s = setup();
    let hooks = s._t.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    let (url, seen) = ping_server(false);
    let script = hook_script(&hooks).display().to_string();

    // run-before exits 7: no jump box is asked for, the run fails naming the hook.
    let mut ops = ops_plan(&hooks, &url, 5, 0);
    ops.hooks.run_before = Some(vec![script.clone(), "7".into()]);
    let cloud = Arc::new(LocalCloud::new(&s.remote));
    let e = run_with_ops(&s, cloud.clone(), ops, &Events::default()).unwrap_err();
    assert_eq!(
        ferry_run::error_chain(&e),
        format!("the backup did not run: hook run-before ({script}) exited with status 7")
    );
    assert_eq!(*cloud.builds.lock().unwrap(), 0);
    let failed = hook_env(&hooks, "run-failed");
    assert_eq!(failed["FERRY_RESULT"], "failure");
    assert_eq!(failed["FERRY_STATUS"], "failed");
    assert!(
        failed["FERRY_ERROR"].contains("exited with status 7"),
        "{failed:?}"
    );
    assert_eq!(hook_env(&hooks, "run-finally")["FERRY_RESULT"], "failure");
    assert!(!hooks.join("run-after.env").exists());
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(
            seen[0].1.ends_with("/start") && seen[1].1.ends_with("/fail"),
            "{seen:?}"
        );
        assert!(seen[1].2.contains("exited with status 7"), "{}", seen[1].2);
    }
    let m = parse_prometheus(&std::fs::read_to_string(hooks.join("ferry.prom")).unwrap());
    assert_eq!(m["ferry_last_run_success"], 0.0);
    assert_eq!(m["ferry_last_success_timestamp_seconds"], 0.0);

    // The box never answers: collected, then failed; the record keeps the sources.
    let mut failing = LocalCloud::new(&s.remote);
    failing.unreachable = true;
    let e = run_with_ops(
        &s,
        Arc::new(failing),
        ops_plan(&hooks, &url, 5, 0),
        &Events::default(),
    )
    .unwrap_err();
    let failed = hook_env(&hooks, "run-failed");
    assert_eq!(failed["FERRY_ERROR"], ferry_run::error_chain(&e));
    let m = parse_prometheus(&std::fs::read_to_string(hooks.join("ferry.prom")).unwrap());
    assert_eq!(m["ferry_last_run_success"], 0.0);
    assert_eq!(m["ferry_last_run_lambda_invocations"], 2.0);
    assert_eq!(m["ferry_source_success{source=vm}"], 1.0);
    assert!(m["ferry_spool_waiting_bytes"] > 0.0, "{m:?}");
    assert_eq!(seen.lock().unwrap().len(), 4);
}

#[test]
fn a_ping_server_that_never_answers_costs_at_most_its_timeouts_and_the_backup_succeeds() {
    let s = setup();
    let hooks = s._t.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    let (url, seen) = ping_server(true);
    let t = Instant::now();
    let events = Events::default();
    let report = run_with_ops(
        &s,
        Arc::new(LocalCloud::new(&s.remote)),
        ops_plan(&hooks, &url, 1, 1),
        &events,
    )
    .unwrap();
    // Two pings × (1 s + 1 s backoff + 1 s), plus the run itself.
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert_eq!(report.result(), "ok");
    assert_eq!(seen.lock().unwrap().len(), 4, "two attempts per ping");
    let record = runs(&s.plan.spool).pop().unwrap();
    assert_eq!(record["result"], "ok");
    let warnings = record["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(
        warnings[0],
        format!(
            "the start ping to http://{}/… failed after 2 attempts: no answer within 1 s",
            url.split('/').nth(2).unwrap()
        )
    );
    assert!(
        warnings[1]
            .as_str()
            .unwrap()
            .starts_with("the success ping to ")
    );
    // The check's uuid (its secret) is in no warning.
    assert!(!record.to_string().contains("secret-uuid"));
    assert!(
        events
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.starts_with("Warning"))
            .count()
            == 2
    );
}

#[test]
fn source_names_are_escaped_as_label_values() {
    let st = ferry_run::spool::Status {
        runs: vec![serde_json::json!({
            "result": "partial", "started": "2026-01-01T00:00:00Z", "finished": "2026-01-01T00:01:40Z",
            "sources": [
                {"source": "a\"b\\c", "status": "partial", "content_bytes": 5, "new_bytes": 1, "errors": [{"path": "/x"}]},
                {"source": "plain", "status": "failed"},
            ],
        })],
        spool: "/s".into(),
        waiting_bytes: 9,
    };
    let text = ferry_run::metrics::render(&st);
    assert!(
        text.contains(r#"ferry_source_success{source="a\"b\\c"} 1"#),
        "{text}"
    );
    let m = parse_prometheus(&text);
    assert_eq!(m["ferry_source_success{source=a\"b\\c}"], 1.0);
    assert_eq!(m["ferry_source_unreadable_entries{source=a\"b\\c}"], 1.0);
    assert_eq!(m["ferry_source_success{source=plain}"], 0.0);
    assert_eq!(m["ferry_last_run_success"], 1.0);
    assert_eq!(m["ferry_last_run_partial"], 1.0);
    assert_eq!(m["ferry_last_run_duration_seconds"], 100.0);
    assert_eq!(m["ferry_spool_waiting_bytes"], 9.0);
}

/// HTTPS pings against a real TLS server on loopback (rustls, a certificate signed by a CA
/// made for the test and trusted through `[ping] ca_file`): /start, success and /fail arrive
/// with their bodies over TLS. A server whose certificate that CA did not sign fails every
/// ping's handshake, and the backup still succeeds with the failure as a warning.
#[test]
fn https_pings_reach_a_tls_server_whose_ca_is_trusted_and_a_wrong_certificate_never_fails_the_backup()
 {
    let s = setup();
    let hooks = s._t.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    let (ca_pem, chain, key) = test_ca();
    let ca_file = s._t.path().join("ping-ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let (url, seen, refused) = tls_ping_server(chain, key);
    let with_ca = |url: &str, retries| {
        let mut ops = ops_plan(&hooks, url, 5, retries);
        if let Some(p) = ops.ping.as_mut() {
            p.ca_file = Some(ca_file.clone());
        }
        ops
    };

    // A successful run: /start, then the plain URL with the record.
    let report = run_with_ops(
        &s,
        Arc::new(LocalCloud::new(&s.remote)),
        with_ca(&url, 0),
        &Events::default(),
    )
    .unwrap();
    let record = runs(&s.plan.spool).pop().unwrap();
    assert!(record.get("warnings").is_none(), "{record}");
    let path = "/5bf6bd3e-secret-uuid";
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(
            (seen[0].0.as_str(), seen[0].1.as_str()),
            ("POST", "/5bf6bd3e-secret-uuid/start")
        );
        assert_eq!(seen[0].2, "ferry backup of site home started");
        assert_eq!((seen[1].0.as_str(), seen[1].1.as_str()), ("POST", path));
        assert!(
            seen[1].2.starts_with("ferry backup of site home: ok\n"),
            "{}",
            seen[1].2
        );
        assert!(seen[1].2.contains(&report.snapshots.last().unwrap().id));
    }
    // A failed run (the box never answers): /fail with the error.
    let mut failing = LocalCloud::new(&s.remote);
    failing.unreachable = true;
    let e = run_with_ops(&s, Arc::new(failing), with_ca(&url, 0), &Events::default()).unwrap_err();
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert_eq!(seen[3].1, format!("{path}/fail"));
        assert!(
            seen[3].2.starts_with("ferry backup of site home: failed\n"),
            "{}",
            seen[3].2
        );
        assert!(
            seen[3].2.contains(&ferry_run::error_chain(&e)),
            "{}",
            seen[3].2
        );
    }
    assert_eq!(*refused.lock().unwrap(), 0);

    // Without the CA, the system's store does not know the test's CA: the certificate is
    // refused, nothing is posted, and the backup succeeds with the pings as warnings.
    let (other_url, other_seen, other_refused) = {
        let (_, chain, key) = test_ca();
        tls_ping_server(chain, key)
    };
    for (url, ops) in [
        (&url, ops_plan(&hooks, &url, 5, 0)),
        (&other_url, with_ca(&other_url, 1)),
    ] {
        let report = run_with_ops(
            &s,
            Arc::new(LocalCloud::new(&s.remote)),
            ops,
            &Events::default(),
        )
        .unwrap();
        assert_eq!(report.result(), "ok");
        let record = runs(&s.plan.spool).pop().unwrap();
        assert_eq!(record["result"], "ok");
        let warnings = record["warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 2, "{url}: {warnings:?}");
        for w in warnings {
            let w = w.as_str().unwrap();
            assert!(w.contains("https://127.0.0.1:"), "{w}");
            assert!(w.to_lowercase().contains("certificate"), "{w}");
            assert!(!w.contains("secret-uuid"), "the path is never shown: {w}");
        }
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        4,
        "nothing posted without the CA"
    );
    assert!(other_seen.lock().unwrap().is_empty());
    // Each ping's attempts were refused at the handshake (1 + 1, then 2 + 2 with a retry).
    assert_eq!(*refused.lock().unwrap(), 2);
    assert_eq!(*other_refused.lock().unwrap(), 4);

    // A ca_file that holds no certificate is refused when the config is read, naming it.
    let bad = s._t.path().join("not-a-ca.pem");
    std::fs::write(&bad, "not a certificate\n").unwrap();
    let e = ferry_run::config::PingSection {
        url: url.clone(),
        timeout: 5,
        retries: 0,
        ca_file: Some(bad),
    }
    .plan()
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("ping.ca_file")
            && e.contains("not-a-ca.pem")
            && e.contains("no PEM certificate"),
        "{e}"
    );
}
