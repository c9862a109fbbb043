//! Session logic against an in-memory sink, driven by real encoded frames.

use super::*;
use ferry_proto::{FrameReader, encode};
use ferry_repo::format::object_name;
use ferry_repo::storage::conformance::object as obj;

fn settings(expires: &str) -> Settings {
    Settings::new(
        GateConfig {
            bucket: "b".into(),
            site: "home".into(),
            region: None,
            session: "s1".into(),
            expires: expires.into(),
            max_object_size: 1000,
            max_session_bytes: 1500,
            allowed_kinds: vec!["config".into(), "pack".into(), "index".into()],
            spool_dir: None,
            s3_attempt_timeout_secs: None,
        },
        "test",
    )
    .unwrap()
}

const FUTURE: &str = "2999-01-01T00:00:00Z";

fn hello() -> Vec<u8> {
    encode(&Frame::Hello {
        version: PROTOCOL_VERSION,
        session: "s1".into(),
        site: "home".into(),
    })
    .unwrap()
}

fn put(kind: &str, name: &str, size: u64, bytes: &[u8]) -> Vec<u8> {
    let mut v = encode(&Frame::Put {
        kind: kind.into(),
        name: name.into(),
        size,
    })
    .unwrap();
    for c in bytes.chunks(7) {
        v.extend(encode(&Frame::Data(c)).unwrap());
    }
    v.extend(encode(&Frame::End).unwrap());
    v
}

/// Run a session on `input`; returns the end, the gate's reply frames (debug-printed) and
/// the objects the sink holds afterwards.
fn run(settings: &Settings, input: Vec<u8>, sink: MemSink) -> (End, Vec<String>, Objects) {
    let shared = Shared::new(Box::new(sink.clone()), None);
    let mut out = Vec::new();
    let clock = OffsetDateTime::now_utc;
    let end = Session::new(&input[..], &mut out, settings, shared, &clock).run();
    let mut replies = Vec::new();
    let mut r = FrameReader::new(&out[..]);
    while let Ok(Some(f)) = r.read() {
        replies.push(format!("{f:?}"));
    }
    (end, replies, Objects(sink.snapshot()))
}

struct Objects(std::collections::BTreeMap<String, Vec<u8>>);

impl std::ops::Deref for Objects {
    type Target = std::collections::BTreeMap<String, Vec<u8>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

#[test]
fn stores_good_objects_and_answers_already_present() {
    let s = settings(FUTURE);
    let (name, bytes) = obj(ObjectKind::Pack, b"hello pack");
    let (_, cfg) = obj(ObjectKind::Config, b"params");
    let mut input = hello();
    input.extend(put("pack", &name, bytes.len() as u64, &bytes));
    input.extend(put("pack", &name, bytes.len() as u64, &bytes));
    input.extend(put("config", "config", cfg.len() as u64, &cfg));
    input.extend(
        encode(&Frame::List {
            kind: "pack".into(),
            continuation: String::new(),
        })
        .unwrap(),
    );
    input.extend(encode(&Frame::Bye).unwrap());
    let (end, replies, sink) = run(&s, input, MemSink::default());
    assert_eq!(end, End::Bye);
    assert_eq!(
        replies,
        vec![
            "HelloOk { version: 2, session: \"s1\", max_object_size: 1000, max_session_bytes: 1500 }".to_string(),
            format!("Stored {{ name: {name:?} }}"),
            format!("AlreadyPresent {{ name: {name:?} }}"),
            "Stored { name: \"config\" }".into(),
            "Names { count: 1, continuation: \"\" }".into(),
            "ByeOk".into(),
        ]
    );
    assert!(sink.contains_key(&format!("packs/{name}")));
    assert!(sink.contains_key("config"));
    assert!(
        sink.keys()
            .any(|k| k.starts_with("audit/s1-") && k.ends_with(".jsonl"))
    );
}

/// One PUT that must be refused with `want` in the reason; the session goes on to BYE.
/// Empty `bytes` = `size` filler bytes (the client sends them without waiting: version 2).
fn refused(kind: &str, name: &str, size: u64, bytes: &[u8], want: &str) {
    let s = settings(FUTURE);
    let mut input = hello();
    if bytes.is_empty() {
        input.extend(put(kind, name, size, &vec![b'x'; size as usize]));
    } else {
        input.extend(put(kind, name, size, bytes));
    }
    input.extend(encode(&Frame::Bye).unwrap());
    let (end, replies, sink) = run(&s, input, MemSink::default());
    let refusal = replies
        .iter()
        .find(|r| r.starts_with("Refused"))
        .unwrap_or_else(|| panic!("no refusal: {replies:?}"));
    assert!(refusal.contains(want), "{refusal} (wanted {want})");
    assert_eq!(end, End::Bye, "{replies:?}");
    // Exactly one answer for the object, then BYE_OK: the stream stayed in step.
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert_eq!(replies[2], "ByeOk");
    assert!(
        sink.keys().all(|k| k.starts_with("audit/")),
        "{:?}",
        sink.keys()
    );
}

#[test]
fn refusals() {
    let (name, bytes) = obj(ObjectKind::Pack, b"pack bytes");
    let n = bytes.len() as u64;
    // Refused before any byte is sent.
    refused(
        "pack",
        &"A".repeat(64),
        n,
        &[],
        "not a lowercase hex SHA-256",
    );
    refused(
        "pack",
        "../../etc/passwd",
        n,
        &[],
        "not a lowercase hex SHA-256",
    );
    refused("snapshot", &name, n, &[], "not allowed in this session");
    refused("tarball", &name, n, &[], "unknown object kind");
    refused(
        "pack",
        &name,
        1001,
        &[],
        "exceeds the session's object limit",
    );
    refused(
        "pack",
        &name,
        3,
        &[],
        "smaller than the 6-byte Ferry header",
    );
    refused("config", "notconfig", n, &[], "must be named");
    // Refused after the bytes were checked.
    refused("pack", &object_name(b"other"), n, &bytes, "not to its name");
    refused("index", &name, n, &bytes, "not a Ferry index object");
    let tar = b"ustar\0\0\0plaintext".to_vec();
    refused(
        "pack",
        &object_name(&tar),
        tar.len() as u64,
        &tar,
        "Ferry magic",
    );
    refused("pack", &name, n + 5, &bytes, "truncated: END after");
}

#[test]
fn session_byte_limit() {
    let s = settings(FUTURE);
    let (n1, b1) = obj(ObjectKind::Pack, &[1u8; 900]);
    let (n2, b2) = obj(ObjectKind::Pack, &[2u8; 900]);
    let mut input = hello();
    input.extend(put("pack", &n1, b1.len() as u64, &b1));
    input.extend(put("pack", &n2, b2.len() as u64, &b2));
    input.extend(encode(&Frame::Bye).unwrap());
    let (_, replies, _) = run(&s, input, MemSink::default());
    assert!(replies[1].starts_with("Stored"), "{replies:?}");
    assert!(
        replies[2].contains("would exceed the session's limit"),
        "{replies:?}"
    );
}

#[test]
fn expired_session_refuses_hello() {
    let s = settings("2001-01-01T00:00:00Z");
    let (end, replies, _) = run(&s, hello(), MemSink::default());
    assert!(matches!(end, End::Error(ref m) if m.contains("expired")));
    assert!(replies[0].contains("expired"), "{replies:?}");
}

#[test]
fn protocol_violations_end_the_session_with_error() {
    let s = settings(FUTURE);
    let (name, bytes) = obj(ObjectKind::Pack, b"pack bytes");
    // Not HELLO first.
    let (end, replies, _) = run(&s, encode(&Frame::Bye).unwrap(), MemSink::default());
    assert!(matches!(end, End::Error(_)) && replies[0].contains("expected HELLO"));
    // Wrong site / version.
    let h = encode(&Frame::Hello {
        version: PROTOCOL_VERSION,
        session: String::new(),
        site: "other".into(),
    })
    .unwrap();
    let (_, replies, _) = run(&s, h, MemSink::default());
    assert!(
        replies[0].contains("is not this session's site"),
        "{replies:?}"
    );
    let h = encode(&Frame::Hello {
        version: 9,
        session: String::new(),
        site: "home".into(),
    })
    .unwrap();
    let (_, replies, _) = run(&s, h, MemSink::default());
    assert!(replies[0].contains("protocol version 9"), "{replies:?}");
    // A version 1 client (READY before the bytes) is told which version the gate speaks.
    let h = encode(&Frame::Hello {
        version: 1,
        session: String::new(),
        site: "home".into(),
    })
    .unwrap();
    let (_, replies, _) = run(&s, h, MemSink::default());
    assert!(replies[0].contains("this gate speaks 2"), "{replies:?}");
    // DATA beyond the announced size.
    let mut input = hello();
    input.extend(put("pack", &name, 4 + HEADER_LEN as u64, &bytes));
    let (end, replies, sink) = run(&s, input, MemSink::default());
    assert!(
        matches!(end, End::Error(ref m) if m.contains("exceeds the announced size")),
        "{replies:?}"
    );
    assert!(!sink.contains_key(&format!("packs/{name}")));
    // Stream cut in the middle of the object: nothing stored, non-zero end.
    let mut input = hello();
    let full = put("pack", &name, bytes.len() as u64, &bytes);
    input.extend(&full[..full.len() - 12]);
    let (end, _, sink) = run(&s, input, MemSink::default());
    assert!(
        matches!(end, End::Error(ref m) if m.contains("truncated") || m.contains("middle of a frame")),
        "{end:?}"
    );
    assert_eq!(end.exit_code(), 1);
    assert!(!sink.contains_key(&format!("packs/{name}")));
    // Garbage frame.
    let mut input = hello();
    input.extend([0, 0, 0, 1, 0x42]);
    let (end, replies, _) = run(&s, input, MemSink::default());
    assert!(
        matches!(end, End::Error(_)) && replies.last().unwrap().contains("unknown frame type 0x42")
    );
    // Disconnect without BYE is not a clean end.
    let (end, _, _) = run(&s, hello(), MemSink::default());
    assert_eq!(end, End::Disconnected);
    assert_eq!(end.exit_code(), 1);
}

#[test]
fn audit_record_has_one_line_per_object() {
    let s = settings(FUTURE);
    let (name, bytes) = obj(ObjectKind::Pack, b"x");
    let mut input = hello();
    input.extend(put("pack", &name, bytes.len() as u64, &bytes));
    input.extend(put("pack", &"0".repeat(64), bytes.len() as u64, &bytes));
    input.extend(encode(&Frame::Bye).unwrap());
    let shared = Shared::new(Box::new(MemSink::default()), None);
    let clock = OffsetDateTime::now_utc;
    let mut out = Vec::new();
    assert_eq!(
        Session::new(&input[..], &mut out, &s, shared.clone(), &clock).run(),
        End::Bye
    );
    let g = lock(&shared);
    let lines: Vec<serde_json::Value> = g
        .lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let puts: Vec<_> = lines.iter().filter(|l| l["event"] == "put").collect();
    assert_eq!(puts.len(), 2);
    assert_eq!(puts[0]["outcome"], "stored");
    assert_eq!(puts[1]["outcome"], "refused");
    assert_eq!(lines.last().unwrap()["event"], "end");
    assert_eq!(lines.last().unwrap()["outcome"], "bye");
}

#[test]
fn a_different_config_is_refused_the_same_is_already_present() {
    let s = settings(FUTURE);
    let (_, c1) = obj(ObjectKind::Config, b"repo one");
    let (_, c2) = obj(ObjectKind::Config, b"repo two");
    let mut input = hello();
    input.extend(put("config", "config", c1.len() as u64, &c1));
    input.extend(put("config", "config", c1.len() as u64, &c1));
    input.extend(put("config", "config", c2.len() as u64, &c2));
    input.extend(encode(&Frame::Bye).unwrap());
    let (end, replies, sink) = run(&s, input, MemSink::default());
    assert_eq!(end, End::Bye);
    assert!(replies[1].starts_with("Stored"), "{replies:?}");
    assert!(replies[2].starts_with("AlreadyPresent"), "{replies:?}");
    assert!(
        replies[3].contains("a different config already exists"),
        "{replies:?}"
    );
    assert_eq!(sink.get("config").unwrap(), &c1);
}

#[test]
fn pipelined_objects_are_answered_in_order_and_a_refusal_keeps_the_stream_in_step() {
    let s = settings(FUTURE);
    let (a, ab) = obj(ObjectKind::Pack, b"first");
    let (c, cb) = obj(ObjectKind::Pack, b"third");
    let (d, db) = obj(ObjectKind::Index, b"fourth");
    let bad = "B".repeat(64);
    // Everything sent at once, as a pipelining client does: the second object is refused
    // at PUT (bad name) but its DATA/END still follow and must be skipped, not parsed as
    // requests.
    let mut input = hello();
    input.extend(put("pack", &a, ab.len() as u64, &ab));
    input.extend(put("pack", &bad, 600, &[0x02; 600]));
    input.extend(put("pack", &c, cb.len() as u64, &cb));
    input.extend(put("index", &d, db.len() as u64, &db));
    input.extend(encode(&Frame::Bye).unwrap());
    let clock = OffsetDateTime::now_utc;
    let mut out = Vec::new();
    let sink = MemSink::default();
    let shared2 = Shared::new(Box::new(sink.clone()), None);
    assert_eq!(
        Session::new(&input[..], &mut out, &s, shared2.clone(), &clock).run(),
        End::Bye
    );
    let mut replies = Vec::new();
    let mut r = FrameReader::new(&out[..]);
    while let Ok(Some(f)) = r.read() {
        replies.push(format!("{f:?}"));
    }
    assert_eq!(replies.len(), 6, "{replies:?}");
    assert_eq!(replies[1], format!("Stored {{ name: {a:?} }}"));
    assert!(
        replies[2].starts_with(&format!("Refused {{ name: {bad:?}"))
            && replies[2].contains("not a lowercase hex SHA-256"),
        "{replies:?}"
    );
    assert_eq!(replies[3], format!("Stored {{ name: {c:?} }}"));
    assert_eq!(replies[4], format!("Stored {{ name: {d:?} }}"));
    assert_eq!(replies[5], "ByeOk");
    let objects = sink.snapshot();
    assert!(objects.contains_key(&format!("packs/{a}")));
    assert!(objects.contains_key(&format!("packs/{c}")));
    assert!(objects.contains_key(&format!("index/{d}")));
    // The refused object's bytes were dropped, not counted against the session.
    assert_eq!(
        objects.keys().filter(|k| k.starts_with("packs/")).count(),
        2
    );
    // The audit trail has one line per object, in the order sent.
    let g = lock(&shared2);
    let puts: Vec<(String, String)> = g
        .lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["event"] == "put")
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        puts,
        vec![
            (a, "stored".to_string()),
            (bad, "refused".to_string()),
            (c, "stored".to_string()),
            (d, "stored".to_string()),
        ]
    );
}

#[test]
fn a_refused_objects_bytes_are_still_checked_for_framing() {
    let s = settings(FUTURE);
    let bad = "B".repeat(64);
    // More DATA than the refused PUT announced: a protocol error, not a silent skip.
    let mut input = hello();
    input.extend(
        encode(&Frame::Put {
            kind: "pack".into(),
            name: bad.clone(),
            size: 10,
        })
        .unwrap(),
    );
    input.extend(encode(&Frame::Data(&[0u8; 11])).unwrap());
    input.extend(encode(&Frame::End).unwrap());
    let (end, replies, _) = run(&s, input, MemSink::default());
    assert!(
        matches!(end, End::Error(ref m) if m.contains("exceeds the announced size")),
        "{end:?} {replies:?}"
    );
    // A request in the middle of a refused object's bytes: a protocol error.
    let mut input = hello();
    input.extend(
        encode(&Frame::Put {
            kind: "pack".into(),
            name: bad.clone(),
            size: 10,
        })
        .unwrap(),
    );
    input.extend(encode(&Frame::Bye).unwrap());
    let (end, replies, _) = run(&s, input, MemSink::default());
    assert!(
        matches!(end, End::Error(ref m) if m.contains("unexpected BYE frame while receiving")),
        "{end:?} {replies:?}"
    );
    // The stream ends inside a refused object: truncated, recorded, exit 1.
    let mut input = hello();
    input.extend(
        encode(&Frame::Put {
            kind: "pack".into(),
            name: bad,
            size: 10,
        })
        .unwrap(),
    );
    let (end, _, _) = run(&s, input, MemSink::default());
    assert!(
        matches!(end, End::Error(ref m) if m.contains("truncated")),
        "{end:?}"
    );
}

#[test]
fn thousands_of_refused_requests_cannot_grow_the_audit_record_without_bound() {
    // 3,000 refused PUTs with 4,000-byte names: ~12 MiB of audit lines if all were kept.
    let s = settings(FUTURE);
    let mut input = hello();
    let long = "x".repeat(4000);
    for _ in 0..3000 {
        input.extend(put("pack", &long, 10, &[0u8; 10]));
    }
    input.extend(encode(&Frame::Bye).unwrap());
    let shared = Shared::new(Box::new(MemSink::default()), None);
    let clock = OffsetDateTime::now_utc;
    let mut out = Vec::new();
    assert_eq!(
        Session::new(&input[..], &mut out, &s, shared.clone(), &clock).run(),
        End::Bye
    );
    let g = lock(&shared);
    let held: usize = g.lines.iter().map(|l| l.len() + 1).sum();
    assert!(
        held <= AUDIT_RECORD_MAX + 4096,
        "{held} bytes of audit lines held"
    );
    assert!(g.dropped_lines > 1000, "{} dropped", g.dropped_lines);
    let end: serde_json::Value = serde_json::from_str(g.lines.last().unwrap()).unwrap();
    assert_eq!(end["event"], "end");
    let reason = end["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("{} audit lines", g.dropped_lines)) && reason.contains("journal"),
        "{reason}"
    );
    // Every refusal was still answered.
    let mut r = FrameReader::new(&out[..]);
    let mut refused = 0;
    while let Ok(Some(f)) = r.read() {
        if matches!(f, Frame::Refused { .. }) {
            refused += 1;
        }
    }
    assert_eq!(refused, 3000);
}

#[test]
fn list_of_a_kind_the_session_does_not_allow_is_refused() {
    // These settings allow config, pack and index, not snapshot.
    let s = settings(FUTURE);
    let mut input = hello();
    input.extend(
        encode(&Frame::List {
            kind: "snapshot".into(),
            continuation: String::new(),
        })
        .unwrap(),
    );
    let (end, replies, _) = run(&s, input, MemSink::default());
    assert!(
        matches!(end, End::Error(ref m) if m.contains("LIST of object kind snapshot is not allowed")),
        "{end:?}"
    );
    assert!(
        replies.last().is_some_and(|r| r.contains("not allowed")),
        "{replies:?}"
    );
    // An allowed kind is listed.
    let mut input = hello();
    input.extend(
        encode(&Frame::List {
            kind: "pack".into(),
            continuation: String::new(),
        })
        .unwrap(),
    );
    input.extend(encode(&Frame::Bye).unwrap());
    let (end, replies, _) = run(&s, input, MemSink::default());
    assert_eq!(end, End::Bye, "{replies:?}");
    assert!(
        replies.iter().any(|r| r.starts_with("Names")),
        "{replies:?}"
    );
}

/// A sink whose audit put stores the record and then answers "already present", as a put
/// whose first attempt was stored and whose retry got S3's 412.
struct RetriedAudit(MemSink);

impl Sink for RetriedAudit {
    fn put_file(
        &mut self,
        key: &str,
        spool: &Path,
        size: u64,
        sha256: &[u8; 32],
    ) -> Result<PutOutcome, SinkError> {
        self.0.put_file(key, spool, size, sha256)
    }
    fn list_page(
        &mut self,
        prefix: &str,
        c: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), SinkError> {
        self.0.list_page(prefix, c)
    }
    fn put_audit(&mut self, key: &str, bytes: Vec<u8>) -> Result<PutOutcome, SinkError> {
        self.0.put_audit(key, bytes)?;
        Ok(PutOutcome::AlreadyPresent)
    }
    fn etag(&mut self, key: &str) -> Result<Option<String>, SinkError> {
        self.0.etag(key)
    }
    fn describe(&self) -> String {
        "retried".to_string()
    }
}

#[test]
fn an_audit_record_already_there_counts_only_if_it_is_ours() {
    let s = settings(FUTURE);
    // Our own earlier attempt stored it: the same bytes (ETag), so the record is stored.
    let mem = MemSink::default();
    let shared = Shared::new(Box::new(RetriedAudit(mem.clone())), None);
    lock(&shared).finish(&s, "bye", None).unwrap();
    assert_eq!(mem.snapshot().len(), 1);
    // Another record at the key: refused as "already exists".
    struct Taken(MemSink);
    impl Sink for Taken {
        fn put_file(
            &mut self,
            _: &str,
            _: &Path,
            _: u64,
            _: &[u8; 32],
        ) -> Result<PutOutcome, SinkError> {
            Ok(PutOutcome::Stored)
        }
        fn list_page(
            &mut self,
            _: &str,
            _: Option<String>,
        ) -> Result<(Vec<String>, Option<String>), SinkError> {
            Ok((Vec::new(), None))
        }
        fn put_audit(&mut self, key: &str, _: Vec<u8>) -> Result<PutOutcome, SinkError> {
            self.0.put_audit(key, b"someone else's".to_vec())?;
            Ok(PutOutcome::AlreadyPresent)
        }
        fn etag(&mut self, key: &str) -> Result<Option<String>, SinkError> {
            self.0.etag(key)
        }
        fn describe(&self) -> String {
            "taken".to_string()
        }
    }
    let shared = Shared::new(Box::new(Taken(MemSink::default())), None);
    let e = lock(&shared).finish(&s, "bye", None).unwrap_err();
    assert!(matches!(e, AuditError::Exists { .. }), "{e}");
}

/// A sink that lists `packs/` two keys a page, with tokens of its own (`sink-<offset>`), and
/// records every token it is asked to continue from.
#[derive(Clone, Default)]
struct PagingSink {
    keys: Vec<String>,
    asked: Arc<Mutex<Vec<Option<String>>>>,
}

impl Sink for PagingSink {
    fn put_file(
        &mut self,
        _: &str,
        _: &Path,
        _: u64,
        _: &[u8; 32],
    ) -> Result<PutOutcome, SinkError> {
        Ok(PutOutcome::Stored)
    }
    fn list_page(
        &mut self,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), SinkError> {
        self.asked.lock().unwrap().push(continuation.clone());
        let from: usize = continuation
            .and_then(|t| t.strip_prefix("sink-")?.parse().ok())
            .unwrap_or(0);
        let all: Vec<String> = self
            .keys
            .iter()
            .filter_map(|k| k.strip_prefix(prefix))
            .map(str::to_string)
            .collect();
        let page = all.iter().skip(from).take(2).cloned().collect();
        let next = (from + 2 < all.len()).then(|| format!("sink-{}", from + 2));
        Ok((page, next))
    }
    fn put_audit(&mut self, _: &str, _: Vec<u8>) -> Result<PutOutcome, SinkError> {
        Ok(PutOutcome::Stored)
    }
    fn etag(&mut self, _: &str) -> Result<Option<String>, SinkError> {
        Ok(None)
    }
    fn describe(&self) -> String {
        "paging".to_string()
    }
}

fn list(kind: &str, continuation: &str) -> Vec<u8> {
    encode(&Frame::List {
        kind: kind.into(),
        continuation: continuation.into(),
    })
    .unwrap()
}

/// One answer of the gate, owned.
#[derive(Debug, Clone)]
enum Got {
    Names(Vec<String>, String),
    Error(String),
    Other(String),
}

/// A session over `sink` on a thread, spoken to through a socket pair: HELLO sent, its
/// answer read. Drop the client (or send BYE) to end it; `end` joins the thread.
struct Live {
    to: std::os::unix::net::UnixStream,
    from: FrameReader<std::os::unix::net::UnixStream>,
    thread: std::thread::JoinHandle<End>,
}

impl Live {
    fn start(sink: PagingSink) -> Self {
        let (client, gate) = std::os::unix::net::UnixStream::pair().unwrap();
        // The gate answers each request at once (it never waits on this sink): a bounded wait.
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let gate_out = gate.try_clone().unwrap();
        let thread = std::thread::spawn(move || {
            let s = settings(FUTURE);
            let shared = Shared::new(Box::new(sink), None);
            let clock = OffsetDateTime::now_utc;
            Session::new(gate, gate_out, &s, shared, &clock).run()
        });
        let mut live = Self {
            from: FrameReader::new(client.try_clone().unwrap()),
            to: client,
            thread,
        };
        live.to.write_all(&hello()).unwrap();
        assert!(matches!(live.next(), Some(Got::Other(h)) if h.starts_with("HelloOk")));
        live
    }

    fn next(&mut self) -> Option<Got> {
        match self.from.read() {
            Ok(Some(Frame::Names {
                names,
                continuation,
            })) => Some(Got::Names(names, continuation)),
            Ok(Some(Frame::Error { message })) => Some(Got::Error(message)),
            Ok(Some(other)) => Some(Got::Other(format!("{other:?}"))),
            _ => None,
        }
    }

    fn list(&mut self, kind: &str, continuation: &str) -> Option<Got> {
        self.to.write_all(&list(kind, continuation)).unwrap();
        self.next()
    }

    fn end(self) -> End {
        let _ = self.to.shutdown(std::net::Shutdown::Both);
        self.thread.join().unwrap()
    }
}

#[test]
fn list_pages_continue_only_from_tokens_the_session_issued_for_that_kind() {
    let names: Vec<String> = (0..5u8).map(|i| hex::encode([i; 32])).collect();
    let sink = PagingSink {
        keys: names.iter().map(|n| format!("packs/{n}")).collect(),
        asked: Arc::default(),
    };
    // The whole listing, page by page, through the gate's tokens.
    let mut g = Live::start(sink.clone());
    let mut listed = Vec::new();
    let mut tokens = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let Some(Got::Names(page, next)) = g.list("pack", &token) else {
            panic!("no NAMES after {tokens:?}")
        };
        listed.extend(page);
        if next.is_empty() {
            break;
        }
        assert!(
            !next.starts_with("sink-"),
            "the sink's token left the gate: {next}"
        );
        tokens.push(next.clone());
        token = next;
    }
    assert_eq!(listed, names);
    assert_eq!(tokens.len(), 2);
    // A token may be sent again (a page asked twice).
    assert!(matches!(g.list("pack", &tokens[0]), Some(Got::Names(p, _)) if p == names[2..4]));
    // A token issued for packs does not continue a listing of indexes.
    match g.list("index", &tokens[0]) {
        Some(Got::Error(m)) => assert!(m.contains("continues a listing of pack, not index"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(g.end(), End::Error(_)));
    let asked_before = sink.asked.lock().unwrap().len();

    // Forged tokens: the sink's own, another site's key, one from another session, junk,
    // and this session's own token before it was issued.
    for forged in [
        "sink-2".to_string(),
        format!("other/packs/{}", names[0]),
        tokens[0].replace("s1", "s0"),
        "x".repeat(4000),
        tokens[0].clone(),
    ] {
        let mut g = Live::start(sink.clone());
        let m = match g.list("pack", &forged) {
            Some(Got::Error(m)) => m,
            other => panic!("{forged:?}: {other:?}"),
        };
        assert!(m.contains("was not issued by this session"), "{m}");
        assert!(m.len() < 300, "a short refusal: {m}");
        assert!(matches!(g.end(), End::Error(e) if e == m));
    }
    // None of the refused tokens reached the sink.
    let asked = sink.asked.lock().unwrap();
    assert_eq!(asked.len(), asked_before, "{asked:?}");
}

#[test]
fn a_session_honours_only_its_last_list_tokens() {
    let sink = PagingSink {
        keys: (0..100u8)
            .map(|i| format!("packs/{}", hex::encode([i; 32])))
            .collect(),
        asked: Arc::default(),
    };
    // LIST_TOKENS_KEPT + 1 first pages: the first token has been forgotten, the last is kept.
    let mut g = Live::start(sink);
    let tokens: Vec<String> = (0..=LIST_TOKENS_KEPT)
        .map(|_| match g.list("pack", "") {
            Some(Got::Names(_, t)) => t,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(matches!(
        g.list("pack", &tokens[LIST_TOKENS_KEPT]),
        Some(Got::Names(..))
    ));
    match g.list("pack", &tokens[0]) {
        Some(Got::Error(m)) => assert!(m.contains("no longer among its last 16"), "{m}"),
        other => panic!("{other:?}"),
    }
    g.end();
}
