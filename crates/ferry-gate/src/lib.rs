//! # ferry-gate — the jump-box gate
//!
//! Owns `ferry-gate serve`: the only thing the backup VM's SSH key can run on the jump box
//! (OpenSSH forced command). It speaks the [`ferry_proto`] protocol on stdin/stdout, checks
//! every object (kind, name, size, Ferry header, SHA-256 of the bytes == name), spools it to a
//! temporary file while hashing (never the whole object in RAM), and only then hands it to a
//! [`Sink`] — S3 with `If-None-Match: *` and `ChecksumSHA256` in production, nothing with
//! `--sink null` (benchmarks). Every accepted or refused object gets one JSON audit line in the
//! [`Journal`] (the binary's stderr; the library never prints), and the whole session record is
//! put write-once under `<site>/audit/` at the end. Errors are typed ([`ConfigError`],
//! [`SinkError`], [`AuditError`]); what the client is told stays a protocol message.
//! Requests are handled strictly in order and answered once each, in order, so a client may
//! pipeline them (protocol version 2); an object refused at PUT still has its DATA/END read
//! and dropped before its one REFUSED, so the stream stays in step. LIST continuation tokens
//! are the gate's own, bound to the session and the kind listed: S3's token never leaves the
//! gate, and any other token is refused before S3 is asked.
//!
//! This library is the session logic (sync, sink-agnostic, fuzzable); the binary adds the
//! CLI, the S3 sink (feature `s3`) and the expiry watchdog. Must never depend on SSH crates,
//! the CLI or the repository engine beyond `ferry_repo::format`.

use ferry_proto::{Frame, FrameReader, PROTOCOL_VERSION, write_frame};
use ferry_repo::format::{CONFIG_NAME, HEADER_LEN, ObjectKind, check_header, is_sha256_hex};
use ferry_repo::storage::PutOutcome;
use serde::Serialize;
use sha2::Digest as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

mod error;
#[cfg(feature = "s3")]
pub mod s3sink;

pub use error::{AuditError, ConfigError, SinkError};

/// The session's settings, read from the TOML file given to `serve --config` (the type is the
/// contract with ferry-build, which writes the file).
pub use ferry_contract::gate::GateConfig;

/// A config checked and parsed.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The parsed file as written; `site`, `session` and `bucket` are known valid.
    pub config: GateConfig,
    /// `config.expires` parsed: the session refuses every request from this instant on.
    pub expires: OffsetDateTime,
    /// `config.allowed_kinds` parsed; a PUT of any other kind is refused.
    pub kinds: Vec<ObjectKind>,
}

impl Settings {
    /// Parse the TOML text of a gate config and check it; `origin` (the file's path) names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config = GateConfig::from_toml(text).map_err(|error| ConfigError::Toml {
            origin: origin.to_string(),
            error,
        })?;
        Self::new(config, origin)
    }

    /// Check an already parsed config (expiry time, kinds, site, session, bucket); `origin` names it in errors.
    pub fn new(config: GateConfig, origin: &str) -> Result<Self, ConfigError> {
        let origin = origin.to_string();
        let expires = OffsetDateTime::parse(&config.expires, &Rfc3339).map_err(|error| {
            ConfigError::Expires {
                origin: origin.clone(),
                value: config.expires.clone(),
                error,
            }
        })?;
        let mut kinds = Vec::new();
        for k in &config.allowed_kinds {
            kinds.push(ObjectKind::parse(k).ok_or_else(|| ConfigError::Kind {
                origin: origin.clone(),
                kind: k.clone(),
            })?);
        }
        if config.site.is_empty()
            || config.site.contains("..")
            || config.site.starts_with('/')
            || config.site.ends_with('/')
        {
            return Err(ConfigError::Site {
                origin,
                site: config.site,
            });
        }
        if config.session.is_empty()
            || !config
                .session
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ConfigError::Session {
                origin,
                session: config.session,
            });
        }
        if config.bucket.is_empty() {
            return Err(ConfigError::Bucket { origin });
        }
        Ok(Self {
            config,
            expires,
            kinds,
        })
    }
}

/// Where accepted objects go. Keys are relative to the site prefix (`packs/<name>`).
pub trait Sink: Send {
    /// Write-once put of the spooled file whose SHA-256 is `sha256`.
    fn put_file(
        &mut self,
        key: &str,
        spool: &Path,
        size: u64,
        sha256: &[u8; 32],
    ) -> Result<PutOutcome, SinkError>;
    /// One page of keys under `prefix` (relative to it) and the next page's token.
    fn list_page(
        &mut self,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), SinkError>;
    /// Write-once put of the session's audit record.
    fn put_audit(&mut self, key: &str, bytes: Vec<u8>) -> Result<PutOutcome, SinkError>;
    /// The ETag (hex MD5 for single-part SSE-S3 objects) of the object at `key`, if any —
    /// how the gate tells whether an existing `config` is the one offered, without reading.
    fn etag(&mut self, key: &str) -> Result<Option<String>, SinkError>;
    /// The requests the last [`put_file`](Sink::put_file) made, retries included, when the
    /// sink counts them (the S3 sink does; it goes into the put's audit line).
    fn last_attempts(&self) -> Option<u32> {
        None
    }
    /// Where this sink writes, for messages.
    fn describe(&self) -> String;
}

/// Accepts everything and keeps nothing (`--sink null`, for the benchmark).
#[derive(Debug, Default)]
pub struct NullSink;

impl Sink for NullSink {
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
    fn put_audit(&mut self, _: &str, _: Vec<u8>) -> Result<PutOutcome, SinkError> {
        Ok(PutOutcome::Stored)
    }
    fn etag(&mut self, _: &str) -> Result<Option<String>, SinkError> {
        Ok(None)
    }
    fn describe(&self) -> String {
        "null sink".to_string()
    }
}

/// An in-memory write-once sink, for unit tests and fuzzing. Clones share the objects.
#[derive(Debug, Default, Clone)]
pub struct MemSink {
    /// Stored objects by key (relative to the site); shared by every clone.
    pub objects: Arc<Mutex<std::collections::BTreeMap<String, Vec<u8>>>>,
}

impl MemSink {
    /// A copy of the stored objects.
    pub fn snapshot(&self) -> std::collections::BTreeMap<String, Vec<u8>> {
        self.objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn insert(
        &self,
        key: &str,
        bytes: impl FnOnce() -> Result<Vec<u8>, SinkError>,
    ) -> Result<PutOutcome, SinkError> {
        let mut m = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        if m.contains_key(key) {
            return Ok(PutOutcome::AlreadyPresent);
        }
        m.insert(key.to_string(), bytes()?);
        Ok(PutOutcome::Stored)
    }
}

impl Sink for MemSink {
    fn put_file(
        &mut self,
        key: &str,
        spool: &Path,
        _: u64,
        _: &[u8; 32],
    ) -> Result<PutOutcome, SinkError> {
        self.insert(key, || {
            std::fs::read(spool).map_err(|error| SinkError::Spool {
                path: spool.to_path_buf(),
                error,
            })
        })
    }
    fn list_page(
        &mut self,
        prefix: &str,
        _: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), SinkError> {
        let m = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        Ok((
            m.keys()
                .filter_map(|k| k.strip_prefix(prefix))
                .map(str::to_string)
                .collect(),
            None,
        ))
    }
    fn put_audit(&mut self, key: &str, bytes: Vec<u8>) -> Result<PutOutcome, SinkError> {
        self.insert(key, || Ok(bytes))
    }
    fn etag(&mut self, key: &str) -> Result<Option<String>, SinkError> {
        use md5::Digest as _;
        let m = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        Ok(m.get(key).map(|b| hex::encode(md5::Md5::digest(b))))
    }
    fn describe(&self) -> String {
        "memory".to_string()
    }
}

/// One audit line.
#[derive(Debug, Clone, Serialize)]
pub struct AuditLine {
    /// When the event happened: RFC 3339, UTC (the session's clock).
    pub ts: String,
    /// The session id from the gate config.
    pub session: String,
    /// The site prefix from the gate config.
    pub site: String,
    /// `hello`, `put`, `list`, `end`
    pub event: &'static str,
    /// Object kind as the client sent it (`put` and `list` events only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Object name as the client sent it (`put` events only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Size the client announced for the object, in bytes (`put` events only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `stored`, `already_present`, `refused`, `ok`, `error`, ...
    pub outcome: String,
    /// Why the event was refused or failed, or why the session ended; absent on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Requests the sink made for this object, retries included (`put` events the sink
    /// counted; more than 1 means S3 was retried).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

/// Where the gate's log lines go as they happen: each audit line, and the complaint when the
/// audit record cannot be stored. The binary writes them to stderr (the journal on the jump
/// box); the library itself never prints.
pub type Journal = Box<dyn FnMut(&str) + Send>;

/// The most bytes of audit lines one session's record holds (4 MiB); beyond, lines go only to
/// the journal and the record's end line says how many were left out.
pub const AUDIT_RECORD_MAX: usize = 4 * 1024 * 1024;

/// State shared by the session loop and the expiry watchdog: the sink and the audit trail.
/// The session loop holds the lock only while committing (sink call + audit line), so the
/// watchdog never ends the session in the middle of an upload.
pub struct Shared {
    /// Where accepted objects go, and where the audit record is put at the end.
    pub sink: Box<dyn Sink>,
    /// The session's audit lines so far, as JSON, joined into the audit record: at most
    /// [`AUDIT_RECORD_MAX`] bytes of them (every line still goes to the journal).
    pub lines: Vec<String>,
    /// Bytes held in `lines`.
    pub lines_bytes: usize,
    /// Lines not kept in `lines` because the record was full (a client sending thousands of
    /// refused requests must not exhaust the box's memory).
    pub dropped_lines: u64,
    /// The spool file of the object being received, if any: the expiry watchdog removes it
    /// before the process exits (a drop would not run).
    pub spool_file: Option<std::path::PathBuf>,
    /// Set by [`Shared::finish`]: the record is stored (or failed) and no more objects are committed.
    pub finished: bool,
    /// Where log lines also go (`None`: only into the audit record).
    pub journal: Option<Journal>,
}

/// The [`Shared`] state, as the session loop and the expiry watchdog each hold it.
pub type SharedGate = Arc<Mutex<Shared>>;

/// Lock the shared state (a poisoned lock still holds usable data).
pub fn lock(shared: &SharedGate) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Fresh shared state for one session: no audit lines yet, not finished.
    pub fn new(sink: Box<dyn Sink>, journal: Option<Journal>) -> SharedGate {
        Arc::new(Mutex::new(Self {
            sink,
            lines: Vec::new(),
            lines_bytes: 0,
            dropped_lines: 0,
            spool_file: None,
            finished: false,
            journal,
        }))
    }

    /// Hand `text` to the journal, if there is one.
    pub fn log(&mut self, text: &str) {
        if let Some(j) = self.journal.as_mut() {
            j(text);
        }
    }

    fn record(&mut self, line: AuditLine) {
        let end = line.event == "end";
        let text =
            serde_json::to_string(&line).unwrap_or_else(|e| format!("{{\"audit_error\":\"{e}\"}}"));
        self.log(&text);
        if end || self.lines_bytes + text.len() < AUDIT_RECORD_MAX {
            self.lines_bytes += text.len() + 1;
            self.lines.push(text);
        } else {
            self.dropped_lines += 1;
        }
    }

    /// Record the end of the session and put the audit record (once).
    pub fn finish(
        &mut self,
        settings: &Settings,
        outcome: &str,
        reason: Option<String>,
    ) -> Result<(), AuditError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let now = OffsetDateTime::now_utc();
        let reason = match (self.dropped_lines, reason) {
            (0, r) => r,
            (n, r) => Some(format!(
                "{}{n} audit lines beyond {AUDIT_RECORD_MAX} bytes are not in this record (the jump box's journal has every line)",
                r.map(|r| format!("{r}; ")).unwrap_or_default()
            )),
        };
        self.record(AuditLine {
            ts: rfc3339(now),
            session: settings.config.session.clone(),
            site: settings.config.site.clone(),
            event: "end",
            kind: None,
            name: None,
            size: None,
            outcome: outcome.to_string(),
            reason,
            attempts: None,
        });
        let key = format!(
            "{}{}-{:04}{:02}{:02}T{:02}{:02}{:02}.{:09}Z.jsonl",
            ferry_contract::keys::AUDIT_PREFIX,
            settings.config.session,
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.nanosecond()
        );
        let mut body = self.lines.join("\n");
        body.push('\n');
        let ours = hex::encode(<md5::Md5 as md5::Digest>::digest(body.as_bytes()));
        match self.sink.put_audit(&key, body.into_bytes()) {
            Ok(PutOutcome::Stored) => Ok(()),
            // A retried put whose earlier attempt was stored (its answer lost) gets 412: the
            // record there is ours if it has our bytes (its ETag is their MD5).
            Ok(PutOutcome::AlreadyPresent) if self.sink.etag(&key).ok().flatten() == Some(ours) => {
                Ok(())
            }
            Ok(PutOutcome::AlreadyPresent) => Err(AuditError::Exists { key }),
            Err(error) => Err(AuditError::Store {
                sink: self.sink.describe(),
                key,
                error: Box::new(error),
            }),
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// BYE / BYE_OK.
    Bye,
    /// The client went away between requests without BYE.
    Disconnected,
    /// A protocol error or truncated stream; the message was sent as ERROR if possible.
    Error(String),
}

impl End {
    /// The process exit code for this end: 0 after BYE, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            End::Bye => 0,
            End::Disconnected | End::Error(_) => 1,
        }
    }
}

/// The clock, injectable for tests.
pub type Clock = dyn Fn() -> OffsetDateTime;

/// One client session over `input`/`output`.
pub struct Session<'a, R, W> {
    reader: FrameReader<R>,
    out: W,
    settings: &'a Settings,
    shared: SharedGate,
    clock: &'a Clock,
    session_bytes: u64,
    spool_dir: PathBuf,
    /// The LIST continuation tokens this session issued, newest last (at most
    /// [`LIST_TOKENS_KEPT`]), each with the sink's own token it stands for.
    list_tokens: std::collections::VecDeque<IssuedToken>,
    /// How many continuation tokens this session has issued (names the next one).
    tokens_issued: u64,
}

/// How many of the newest LIST continuation tokens a session honours. A client pages one
/// listing at a time, so it needs only its last token; a few more cost nothing, and the
/// bound keeps a client that never finishes a listing from growing the gate's memory.
pub const LIST_TOKENS_KEPT: usize = 16;

/// A LIST continuation token the gate gave the client: the only tokens it accepts back.
/// The sink's (S3's) own token never leaves the gate, so a client cannot forge one.
struct IssuedToken {
    /// What the client got in NAMES and must send back in LIST.
    token: String,
    /// The kind that was being listed: the token continues only that listing.
    kind: ObjectKind,
    /// The sink's continuation token for the next page.
    sink: String,
}

enum Step {
    Continue,
    Done(End),
}

impl<'a, R: Read, W: Write> Session<'a, R, W> {
    /// A session reading requests from `input` and answering on `out`; objects are spooled in the config's `spool_dir` (default: the system temp dir).
    pub fn new(
        input: R,
        out: W,
        settings: &'a Settings,
        shared: SharedGate,
        clock: &'a Clock,
    ) -> Self {
        let spool_dir = settings
            .config
            .spool_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        Self {
            reader: FrameReader::new(input),
            out,
            settings,
            shared,
            clock,
            session_bytes: 0,
            spool_dir,
            list_tokens: std::collections::VecDeque::new(),
            tokens_issued: 0,
        }
    }

    fn line(
        &self,
        event: &'static str,
        kind: Option<&str>,
        name: Option<&str>,
        size: Option<u64>,
        outcome: &str,
        reason: Option<String>,
    ) -> AuditLine {
        AuditLine {
            ts: rfc3339((self.clock)()),
            session: self.settings.config.session.clone(),
            site: self.settings.config.site.clone(),
            event,
            kind: kind.map(str::to_string),
            name: name.map(str::to_string),
            size,
            outcome: outcome.to_string(),
            reason,
            attempts: None,
        }
    }

    fn audit(&self, line: AuditLine) {
        lock(&self.shared).record(line);
    }

    fn send(&mut self, f: &Frame<'_>) -> Result<(), String> {
        write_frame(&mut self.out, f)
            .and_then(|_| self.out.flush())
            .map_err(|e| format!("writing {} to the client: {e}", f.type_name()))
    }

    /// Send ERROR (best effort) and end with that error.
    fn fail(&mut self, message: String) -> End {
        let _ = self.send(&Frame::Error {
            message: message.clone(),
        });
        End::Error(message)
    }

    fn expired(&self) -> bool {
        (self.clock)() >= self.settings.expires
    }

    /// Serve until BYE, disconnect or error, then put the audit record.
    pub fn run(mut self) -> End {
        let end = self.serve();
        let (outcome, reason) = match &end {
            End::Bye => ("bye", None),
            End::Disconnected => (
                "disconnected",
                Some("client closed the stream without BYE".to_string()),
            ),
            End::Error(m) => ("error", Some(m.clone())),
        };
        let mut shared = lock(&self.shared);
        if let Err(e) = shared.finish(self.settings, outcome, reason) {
            shared.log(&format!("ferry-gate: {e}"));
            if end == End::Bye {
                return End::Error(e.to_string());
            }
        }
        end
    }

    fn serve(&mut self) -> End {
        // HELLO first.
        let hello = match self.reader.read() {
            Ok(Some(Frame::Hello {
                version,
                session,
                site,
            })) => (version, session, site),
            Ok(Some(other)) => {
                let m = format!(
                    "expected HELLO as the first frame, got {}",
                    other.type_name()
                );
                return self.fail(m);
            }
            Ok(None) => return End::Disconnected,
            Err(e) => return self.fail(format!("reading HELLO: {e}")),
        };
        let (version, session, site) = hello;
        let cfg = &self.settings.config;
        let refusal = if version != PROTOCOL_VERSION {
            Some(format!(
                "protocol version {version} is not supported (this gate speaks {PROTOCOL_VERSION})"
            ))
        } else if site != cfg.site {
            Some(format!(
                "site {site:?} is not this session's site {:?}",
                cfg.site
            ))
        } else if !session.is_empty() && session != cfg.session {
            Some(format!(
                "session {session:?} is not this gate's session {:?}",
                cfg.session
            ))
        } else if self.expired() {
            Some(format!(
                "session {} expired at {}",
                cfg.session, cfg.expires
            ))
        } else {
            None
        };
        if let Some(r) = refusal {
            self.audit(self.line("hello", None, None, None, "refused", Some(r.clone())));
            return self.fail(r);
        }
        self.audit(self.line("hello", None, None, None, "ok", None));
        let ok = Frame::HelloOk {
            version: PROTOCOL_VERSION,
            session: cfg.session.clone(),
            max_object_size: cfg.max_object_size,
            max_session_bytes: cfg.max_session_bytes,
        };
        if let Err(e) = self.send(&ok) {
            return End::Error(e);
        }
        loop {
            let step = match self.reader.read() {
                Ok(None) => return End::Disconnected,
                Err(e) => return self.fail(format!("reading request: {e}")),
                Ok(Some(Frame::Bye)) => {
                    let _ = self.send(&Frame::ByeOk);
                    return End::Bye;
                }
                Ok(Some(Frame::Put { kind, name, size })) => self.put(kind, name, size),
                Ok(Some(Frame::List { kind, continuation })) => self.list(kind, continuation),
                Ok(Some(other)) => {
                    let m = format!(
                        "unexpected {} frame (expected PUT, LIST or BYE)",
                        other.type_name()
                    );
                    Step::Done(self.fail(m))
                }
            };
            if let Step::Done(end) = step {
                return end;
            }
        }
    }

    /// Reasons to refuse a PUT before any byte is sent.
    fn precheck(&self, kind: &str, name: &str, size: u64) -> Result<ObjectKind, String> {
        if self.expired() {
            return Err(format!(
                "session {} expired at {}",
                self.settings.config.session, self.settings.config.expires
            ));
        }
        let k = ObjectKind::parse(kind)
            .ok_or_else(|| format!("unknown object kind {}", shown(kind)))?;
        if !self.settings.kinds.contains(&k) {
            return Err(format!("object kind {kind} is not allowed in this session"));
        }
        if k == ObjectKind::Config {
            if name != CONFIG_NAME {
                return Err(format!(
                    "the config object must be named \"config\", not {}",
                    shown(name)
                ));
            }
        } else if !is_sha256_hex(name) {
            return Err(format!(
                "name {} is not a lowercase hex SHA-256",
                shown(name)
            ));
        }
        if size < HEADER_LEN as u64 {
            return Err(format!(
                "size {size} is smaller than the {HEADER_LEN}-byte Ferry header"
            ));
        }
        if size > self.settings.config.max_object_size {
            return Err(format!(
                "size {size} exceeds the session's object limit of {} bytes",
                self.settings.config.max_object_size
            ));
        }
        let total = self.session_bytes.saturating_add(size);
        if total > self.settings.config.max_session_bytes {
            return Err(format!(
                "{size} more bytes would exceed the session's limit of {} bytes ({} already accepted)",
                self.settings.config.max_session_bytes, self.session_bytes
            ));
        }
        Ok(k)
    }

    fn refuse(&mut self, kind: &str, name: &str, size: u64, reason: String) -> Step {
        self.audit(self.line(
            "put",
            Some(kind),
            Some(name),
            Some(size),
            "refused",
            Some(reason.clone()),
        ));
        match self.send(&Frame::Refused {
            name: name.to_string(),
            reason,
        }) {
            Ok(()) => Step::Continue,
            Err(e) => Step::Done(End::Error(e)),
        }
    }

    fn put(&mut self, kind: String, name: String, size: u64) -> Step {
        // The client sends PUT, DATA… and END without waiting (protocol version 2), so an
        // object refused here still has its bytes read (and dropped) before the one answer.
        let checked = self.precheck(&kind, &name, size).and_then(|k| {
            tempfile::Builder::new()
                .prefix("ferry-gate-spool-")
                .tempfile_in(&self.spool_dir)
                .map(|f| (k, f))
                .map_err(|e| {
                    format!(
                        "cannot create a spool file in {}: {e}",
                        self.spool_dir.display()
                    )
                })
        });
        if let Ok((_, f)) = &checked {
            lock(&self.shared).spool_file = Some(f.path().to_path_buf());
        }
        let (k, spool) = match checked {
            Ok(x) => x,
            Err(reason) => {
                return match self.receive(&kind, &name, size, None) {
                    Ok(_) => self.refuse(&kind, &name, size, reason),
                    Err(step) => step,
                };
            }
        };
        self.session_bytes += size;
        let mut rx = Incoming {
            hasher: sha2::Sha256::new(),
            // Only the (small) config object needs its MD5: see the ALREADY_PRESENT check.
            md5: (k == ObjectKind::Config).then(<md5::Md5 as md5::Digest>::new),
            head: Vec::with_capacity(HEADER_LEN),
            spool,
            spool_error: None,
        };
        let received = match self.receive(&kind, &name, size, Some(&mut rx)) {
            Ok(n) => n,
            Err(step) => return step,
        };
        let Incoming {
            hasher,
            md5,
            head,
            spool,
            spool_error,
        } = rx;
        if received != size {
            let r = format!("truncated: END after {received} of the announced {size} bytes");
            return self.refuse(&kind, &name, size, r);
        }
        if let Err(e) = check_header(&head, k) {
            return self.refuse(
                &kind,
                &name,
                size,
                format!("not a Ferry {kind} object: {e}"),
            );
        }
        let digest: [u8; 32] = hasher.finalize().into();
        if k.content_addressed() {
            let actual = hex::encode(digest);
            if actual != name {
                return self.refuse(
                    &kind,
                    &name,
                    size,
                    format!("content hashes to {actual}, not to its name"),
                );
            }
        }
        if let Some(e) = spool_error {
            return self.refuse(&kind, &name, size, e);
        }
        // No fsync: the spool is a scratch copy deleted right after the upload; a crash loses
        // it together with the session, and nothing is committed until S3 answers.
        // Commit under the lock, so an expiry watchdog cannot cut the audit trail short.
        let key = k.key(&name);
        let reply = {
            let mut g = lock(&self.shared);
            let mut attempts = None;
            let res = if g.finished {
                Err("session already ended".to_string())
            } else if self.expired() {
                Err(format!(
                    "session {} expired at {}",
                    self.settings.config.session, self.settings.config.expires
                ))
            } else {
                let res = g
                    .sink
                    .put_file(&key, spool.path(), size, &digest)
                    .map_err(|e| format!("storage error: {e}"));
                attempts = g.sink.last_attempts();
                match (res, md5) {
                    // `config` is not named by its hash: "already present" must mean "the
                    // same config", or the client would back up into another repository.
                    (Ok(PutOutcome::AlreadyPresent), Some(m)) => {
                        let ours = hex::encode(md5::Digest::finalize(m));
                        match g.sink.etag(&key) {
                            Ok(Some(t)) if t == ours => Ok(PutOutcome::AlreadyPresent),
                            Ok(_) => Err(format!(
                                "a different config already exists at site {:?} (another repository or another key); nothing was changed",
                                self.settings.config.site
                            )),
                            Err(e) => {
                                Err(format!("storage error: checking the existing config: {e}"))
                            }
                        }
                    }
                    (res, _) => res,
                }
            };
            let (outcome, reason) = match &res {
                Ok(PutOutcome::Stored) => ("stored", None),
                Ok(PutOutcome::AlreadyPresent) => ("already_present", None),
                Err(r) => ("refused", Some(r.clone())),
            };
            let mut line = self.line("put", Some(&kind), Some(&name), Some(size), outcome, reason);
            line.attempts = attempts;
            g.record(line);
            match res {
                Ok(PutOutcome::Stored) => Frame::Stored { name },
                Ok(PutOutcome::AlreadyPresent) => Frame::AlreadyPresent { name },
                Err(reason) => Frame::Refused { name, reason },
            }
        };
        match self.send(&reply) {
            Ok(()) => Step::Continue,
            Err(e) => Step::Done(End::Error(e)),
        }
    }

    /// Read one object's DATA frames up to its END: hashed and spooled into `rx`, or
    /// dropped when `rx` is `None` (an object refused at PUT). Returns the byte count; a
    /// protocol violation or a cut stream ends the session (`Err`) with the object on record.
    fn receive(
        &mut self,
        kind: &str,
        name: &str,
        size: u64,
        mut rx: Option<&mut Incoming>,
    ) -> Result<u64, Step> {
        let mut received: u64 = 0;
        loop {
            let m = match self.reader.read() {
                Ok(Some(Frame::Data(d))) => {
                    if received + d.len() as u64 > size {
                        format!(
                            "object {kind}/{name}: DATA exceeds the announced size of {size} bytes"
                        )
                    } else {
                        received += d.len() as u64;
                        if let Some(rx) = rx.as_deref_mut() {
                            rx.update(d);
                        }
                        continue;
                    }
                }
                Ok(Some(Frame::End)) => return Ok(received),
                Ok(Some(other)) => format!(
                    "object {kind}/{name}: unexpected {} frame while receiving its bytes (expected DATA or END)",
                    other.type_name()
                ),
                Ok(None) => {
                    let m = format!(
                        "object {kind}/{name}: stream ended after {received} of {size} bytes (truncated)"
                    );
                    self.audit(self.line(
                        "put",
                        Some(kind),
                        Some(name),
                        Some(size),
                        "refused",
                        Some(m.clone()),
                    ));
                    return Err(Step::Done(End::Error(m)));
                }
                Err(e) => format!("object {kind}/{name}: {e}"),
            };
            self.audit(self.line(
                "put",
                Some(kind),
                Some(name),
                Some(size),
                "refused",
                Some(m.clone()),
            ));
            return Err(Step::Done(self.fail(m)));
        }
    }

    fn list(&mut self, kind: String, continuation: String) -> Step {
        let Some(k) = ObjectKind::parse(&kind) else {
            let m = format!("LIST of unknown object kind {kind:?}");
            return Step::Done(self.fail(m));
        };
        if self.expired() {
            let m = format!(
                "session {} expired at {}",
                self.settings.config.session, self.settings.config.expires
            );
            return Step::Done(self.fail(m));
        }
        if !self.settings.kinds.contains(&k) {
            let m = format!("LIST of object kind {kind} is not allowed in this session");
            self.audit(self.line("list", Some(&kind), None, None, "refused", Some(m.clone())));
            return Step::Done(self.fail(m));
        }
        // Only a token this session issued for this kind continues a listing; the sink's own
        // token stays in the gate (a forged one would reach S3 and come back as its error).
        let sink_token = if continuation.is_empty() {
            None
        } else {
            match self.list_tokens.iter().find(|t| t.token == continuation) {
                Some(t) if t.kind == k => Some(t.sink.clone()),
                found => {
                    let m = format!(
                        "LIST {kind}: continuation token {} {}",
                        shown(&continuation),
                        match found {
                            Some(t) =>
                                format!("continues a listing of {}, not {kind}", t.kind.as_str()),
                            None => format!(
                                "was not issued by this session (or is no longer among its last {LIST_TOKENS_KEPT})"
                            ),
                        }
                    );
                    self.audit(self.line(
                        "list",
                        Some(&kind),
                        None,
                        None,
                        "refused",
                        Some(m.clone()),
                    ));
                    return Step::Done(self.fail(m));
                }
            }
        };
        let prefix = kind_prefix(k);
        let page = lock(&self.shared).sink.list_page(&prefix, sink_token);
        match page {
            Ok((keys, next)) => {
                let names = filter_names(k, keys);
                let next = match next {
                    Some(sink) => self.issue_token(k, sink),
                    None => String::new(),
                };
                match self.send(&Frame::Names {
                    names,
                    continuation: next,
                }) {
                    Ok(()) => Step::Continue,
                    Err(e) => Step::Done(End::Error(e)),
                }
            }
            Err(e) => {
                let m = format!("listing {kind}: {e}");
                self.audit(self.line("list", Some(&kind), None, None, "error", Some(m.clone())));
                Step::Done(self.fail(m))
            }
        }
    }

    /// A fresh continuation token standing for the sink's `sink` token (kept among the
    /// session's last [`LIST_TOKENS_KEPT`]).
    fn issue_token(&mut self, kind: ObjectKind, sink: String) -> String {
        self.tokens_issued += 1;
        let token = format!("{}-{}", self.settings.config.session, self.tokens_issued);
        if self.list_tokens.len() >= LIST_TOKENS_KEPT {
            self.list_tokens.pop_front();
        }
        self.list_tokens.push_back(IssuedToken {
            token: token.clone(),
            kind,
            sink,
        });
        token
    }
}

/// An accepted object being received: hashed, its header kept, spooled to a temp file.
struct Incoming {
    hasher: sha2::Sha256,
    md5: Option<md5::Md5>,
    head: Vec<u8>,
    spool: tempfile::NamedTempFile,
    spool_error: Option<String>,
}

impl Incoming {
    fn update(&mut self, d: &[u8]) {
        self.hasher.update(d);
        if let Some(m) = self.md5.as_mut() {
            md5::Digest::update(m, d);
        }
        if self.head.len() < HEADER_LEN {
            let n = (HEADER_LEN - self.head.len()).min(d.len());
            self.head.extend_from_slice(&d[..n]);
        }
        if self.spool_error.is_none()
            && let Err(e) = self.spool.as_file_mut().write_all(d)
        {
            self.spool_error = Some(format!(
                "writing spool file {}: {e}",
                self.spool.path().display()
            ));
        }
    }
}

/// A client's string quoted for a refusal reason, cut after 100 characters (a reason is
/// sent in one protocol string of at most 4,096 bytes: a name that long would push the
/// reason itself out of the answer).
fn shown(s: &str) -> String {
    match s.char_indices().nth(100) {
        None => format!("{s:?}"),
        Some((i, _)) => format!("{:?}… ({} bytes)", &s[..i], s.len()),
    }
}

/// The listing prefix of `kind` relative to the site (`packs/`; config: `config`).
pub fn kind_prefix(kind: ObjectKind) -> String {
    match kind {
        ObjectKind::Config => CONFIG_NAME.to_string(),
        k => format!("{}/", k.dir()),
    }
}

/// Names of `kind` among keys listed under [`kind_prefix`]; foreign keys are dropped.
pub fn filter_names(kind: ObjectKind, keys: Vec<String>) -> Vec<String> {
    keys.into_iter()
        .filter_map(|k| match kind {
            ObjectKind::Config => k.is_empty().then(|| CONFIG_NAME.to_string()),
            _ => is_sha256_hex(&k).then_some(k),
        })
        .take(ferry_proto::MAX_NAMES)
        .collect()
}

#[cfg(test)]
mod tests;
