//! A hostile backup VM: a client that speaks the gate's protocol ([`ferry_proto`]) wrongly on
//! purpose, and the catalogue of its tricks ([`tricks`]).
//!
//! [`Hostile`] writes frames or raw bytes (lengths that lie, truncated frames, unknown types)
//! to a gate's stdin and reads its answers on a thread, so a test never blocks on a gate that
//! stops answering (every wait is bounded) and a gate is never blocked on a full stdout pipe.
//! Each [`Trick`] is a whole byte stream (HELLO included) with the answer the gate must give;
//! `crates/ferry-gate/tests/hostile_client.rs` runs each against the real `ferry-gate serve`
//! and checks that S3 is unchanged. docs/SECURITY.md ("Hostile backup VM") lists them.

use ferry_proto::{Frame, FrameReader, MAX_FRAME, MAX_STRING, PROTOCOL_VERSION, encode, ty};
use std::io::{self, Read, Write};
use std::sync::mpsc;
use std::time::Duration;

/// One answer read from the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A frame, as its `Debug` text (`Refused { name: .., reason: ".." }`, `Error { .. }`);
    /// a page of names as `Names { count: .., continuation: "..", names: [..] }`.
    Frame(String),
    /// The gate's stdout could not be decoded (the message).
    Garbled(String),
    /// The gate closed its stdout.
    Closed,
    /// Nothing arrived within the wait.
    Silent,
}

impl Reply {
    /// The text of the answer, for assertions and messages.
    pub fn text(&self) -> String {
        match self {
            Reply::Frame(t) => t.clone(),
            Reply::Garbled(e) => format!("garbled: {e}"),
            Reply::Closed => "closed".to_string(),
            Reply::Silent => "silent".to_string(),
        }
    }
}

/// A client speaking to a gate's stdin (`W`) and reading its stdout on a thread.
pub struct Hostile<W: Write> {
    out: Option<W>,
    replies: mpsc::Receiver<Reply>,
}

impl<W: Write> Hostile<W> {
    /// A client writing to `out` (the gate's stdin) and reading answers from `input`.
    pub fn new<R: Read + Send + 'static>(out: W, input: R) -> Self {
        let (tx, replies) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = FrameReader::new(input);
            loop {
                let reply = match r.read() {
                    // A page of names with the names (the frame's Debug gives only their
                    // count), so a test can see what a LIST answered.
                    Ok(Some(Frame::Names {
                        names,
                        continuation,
                    })) => Reply::Frame(format!(
                        "Names {{ count: {}, continuation: {continuation:?}, names: {names:?} }}",
                        names.len()
                    )),
                    Ok(Some(f)) => Reply::Frame(format!("{f:?}")),
                    Ok(None) => Reply::Closed,
                    Err(e) => Reply::Garbled(e.to_string()),
                };
                let last = !matches!(reply, Reply::Frame(_));
                if tx.send(reply).is_err() || last {
                    return;
                }
            }
        });
        Self {
            out: Some(out),
            replies,
        }
    }

    /// Write `bytes` as they are and flush (an error once the gate has gone: EPIPE).
    pub fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let w = self
            .out
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "closed by the test"))?;
        w.write_all(bytes)?;
        w.flush()
    }

    /// Write one well-formed frame.
    pub fn send(&mut self, f: &Frame<'_>) -> io::Result<()> {
        self.raw(&encode(f)?)
    }

    /// Close the gate's stdin (end of stream).
    pub fn close(&mut self) {
        self.out = None;
    }

    /// The next answer, waiting at most `within`.
    pub fn reply(&self, within: Duration) -> Reply {
        match self.replies.recv_timeout(within) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => Reply::Silent,
            Err(mpsc::RecvTimeoutError::Disconnected) => Reply::Closed,
        }
    }

    /// Every answer until the gate closes its stdout (or `within` passes: then the last is
    /// [`Reply::Silent`]).
    pub fn replies_until_closed(&self, within: Duration) -> Vec<Reply> {
        let end = std::time::Instant::now() + within;
        let mut all = Vec::new();
        loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            let r = self.reply(left);
            let done = !matches!(r, Reply::Frame(_));
            all.push(r);
            if done {
                return all;
            }
        }
    }
}

/// One frame's bytes with its length field as given, true or not.
pub fn frame_with_length(len: u32, body: &[u8]) -> Vec<u8> {
    let mut v = len.to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// A frame's bytes built by hand (`type`, payload) with a true length: for payloads the
/// encoder refuses to build (strings past [`MAX_STRING`], bad UTF-8).
pub fn hand_frame(t: u8, payload: &[u8]) -> Vec<u8> {
    frame_with_length(payload.len() as u32 + 1, &[&[t], payload].concat())
}

/// A protocol string (u16 length + bytes), any bytes and any length up to 65,535.
pub fn hand_string(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

fn enc(f: &Frame<'_>) -> Vec<u8> {
    // Frames the encoder accepts by construction (short strings, DATA ≤ MAX_DATA).
    encode(f).unwrap_or_default()
}

/// HELLO for `session` (empty: "this gate's session") at `site`.
pub fn hello(session: &str, site: &str) -> Vec<u8> {
    enc(&Frame::Hello {
        version: PROTOCOL_VERSION,
        session: session.to_string(),
        site: site.to_string(),
    })
}

/// PUT of `kind`/`name` announcing `size`, then `bytes` in DATA frames and END.
pub fn put(kind: &str, name: &str, size: u64, bytes: &[u8]) -> Vec<u8> {
    let mut v = enc(&Frame::Put {
        kind: kind.to_string(),
        name: name.to_string(),
        size,
    });
    for c in bytes.chunks(ferry_proto::MAX_DATA) {
        v.extend(enc(&Frame::Data(c)));
    }
    v.extend(enc(&Frame::End));
    v
}

/// LIST of `kind` from `continuation`.
pub fn list(kind: &str, continuation: &str) -> Vec<u8> {
    enc(&Frame::List {
        kind: kind.to_string(),
        continuation: continuation.to_string(),
    })
}

/// What the gate already holds and may be offered: the objects the tricks are built from.
#[derive(Debug, Clone)]
pub struct Known {
    /// The site the gate serves.
    pub site: String,
    /// Another site in the same bucket (the one a trick tries to reach).
    pub other_site: String,
    /// The gate's session id.
    pub session: String,
    /// A pack already stored at the site: (name, bytes).
    pub existing: (String, Vec<u8>),
    /// A valid pack not stored anywhere (a well-formed Ferry pack named by its SHA-256).
    pub fresh: (String, Vec<u8>),
    /// A valid `config` object (its kind is not allowed in the hostile sessions).
    pub config: Vec<u8>,
}

/// One trick: the whole stream a hostile client sends and what the gate must answer.
#[derive(Debug, Clone)]
pub struct Trick {
    /// Short name (the row of the table in docs/SECURITY.md).
    pub name: &'static str,
    /// What the client tries.
    pub tries: String,
    /// The bytes sent, HELLO included when the trick needs it.
    pub bytes: Vec<u8>,
    /// The client closes its side right after `bytes` (a truncated stream); otherwise it
    /// sends BYE when the session is meant to go on.
    pub then_close: bool,
    /// Text the gate's answer must contain.
    pub answer: &'static str,
    /// The answer is an ERROR (or the end of the stream) and the session is over; otherwise
    /// it is one REFUSED and the session goes on to BYE.
    pub ends_session: bool,
}

/// Every trick of the hostile backup VM against a gate serving `k.site` whose allowed kinds
/// are `pack`, `index` and `snapshot` (not `config`).
pub fn tricks(k: &Known) -> Vec<Trick> {
    let h = hello("", &k.site);
    let (ename, ebytes) = (&k.existing.0, &k.existing.1);
    let (fname, fbytes) = (&k.fresh.0, &k.fresh.1);
    let n = fbytes.len() as u64;
    let after_hello = |rest: Vec<u8>| [h.clone(), rest].concat();
    let refused = |name, tries: String, bytes, answer| Trick {
        name,
        tries,
        bytes,
        then_close: false,
        answer,
        ends_session: false,
    };
    let fatal = |name, tries: String, bytes, answer| Trick {
        name,
        tries,
        bytes,
        then_close: false,
        answer,
        ends_session: true,
    };
    let not_hex = "is not a lowercase hex SHA-256";
    let bad_name = |name: &'static str, tries: &str, obj_name: String| {
        refused(
            name,
            tries.to_string(),
            after_hello(put("pack", &obj_name, n, fbytes)),
            not_hex,
        )
    };
    // A PUT frame whose name field is `name` bytes as given (past MAX_STRING, not UTF-8).
    let put_hand = |name: &[u8]| {
        let mut p = hand_string(b"pack");
        p.extend(hand_string(name));
        p.extend(n.to_be_bytes());
        hand_frame(ty::PUT, &p)
    };
    let put_frame = enc(&Frame::Put {
        kind: "pack".into(),
        name: fname.clone(),
        size: n,
    });
    let half = &fbytes[..fbytes.len() / 2];
    vec![
        // --- overwrite, names, prefixes, kinds
        refused(
            "overwrite",
            "other bytes under an existing pack's name".into(),
            after_hello(put("pack", ename, n, fbytes)),
            "not to its name",
        ),
        refused(
            "replay",
            "the existing pack again, same name and bytes".into(),
            after_hello(put("pack", ename, ebytes.len() as u64, ebytes)),
            "AlreadyPresent",
        ),
        bad_name(
            "name-not-hash",
            "a valid pack under a name that is not its SHA-256",
            other_hex(fname),
        )
        .answer_is("not to its name"),
        bad_name(
            "dotdot",
            "name `../<other site>/packs/<sha>`",
            format!("../{}/packs/{fname}", k.other_site),
        ),
        bad_name(
            "slash",
            "name `<32 hex>/<32 hex>`",
            format!("{}/{}", &fname[..32], &fname[32..]),
        ),
        bad_name(
            "percent-2f",
            "name `..%2F<other site>%2Fpacks%2F<sha>`",
            format!("..%2F{}%2Fpacks%2F{fname}", k.other_site),
        ),
        bad_name("nul", "name `<sha>\\0`", format!("{fname}\0")),
        bad_name("empty-name", "an empty name", String::new()),
        bad_name("uppercase", "the SHA-256 in upper case", fname.to_uppercase()),
        bad_name(
            "absolute",
            "name `/<other site>/packs/<sha>`",
            format!("/{}/packs/{fname}", k.other_site),
        ),
        bad_name(
            "long-name",
            "a 4,096-byte name (the protocol's longest string)",
            "a".repeat(MAX_STRING),
        ),
        fatal(
            "too-long-name",
            format!("a {}-byte name (past the protocol's longest string)", MAX_STRING + 1),
            after_hello(put_hand(&vec![b'a'; MAX_STRING + 1])),
            "more than 4096",
        ),
        fatal(
            "not-utf8-name",
            "a name that is not UTF-8".into(),
            after_hello(put_hand(b"\xff\xfe../config")),
            "not UTF-8",
        ),
        refused(
            "kind-other-site",
            "kind `../<other site>/packs`".into(),
            after_hello(put(&format!("../{}/packs", k.other_site), fname, n, fbytes)),
            "unknown object kind",
        ),
        refused(
            "kind-config",
            "kind `config` (not in allowed_kinds): replace the repository's config".into(),
            after_hello(put("config", "config", k.config.len() as u64, &k.config)),
            "not allowed in this session",
        ),
        refused(
            "kind-audit",
            "kind `audit`: write into the audit records".into(),
            after_hello(put("audit", fname, n, fbytes)),
            "unknown object kind",
        ),
        refused(
            "kind-keys",
            "kind `keys`".into(),
            after_hello(put("keys", fname, n, fbytes)),
            "unknown object kind",
        ),
        fatal(
            "list-config",
            "LIST of `config` (not in allowed_kinds)".into(),
            after_hello(list("config", "")),
            "not allowed in this session",
        ),
        fatal(
            "list-audit",
            "LIST of `audit`: read the audit records' names".into(),
            after_hello(list("audit", "")),
            "LIST of unknown object kind",
        ),
        fatal(
            "list-forged-token",
            "LIST `pack` continuing from a token the gate never issued (the other site's pack key)"
                .into(),
            after_hello(list(
                "pack",
                &format!("{}/packs/{}", k.other_site, other_hex(ename)),
            )),
            "was not issued by this session",
        ),
        fatal(
            "list-junk-token",
            format!("LIST `pack` with a {}-byte junk continuation token", MAX_STRING),
            after_hello(list("pack", &"A".repeat(MAX_STRING))),
            "was not issued by this session",
        ),
        // --- verbs the protocol does not have
        fatal(
            "get",
            "a GET-like request (type 0x07 with a kind and name)".into(),
            after_hello(hand_frame(
                0x07,
                &[hand_string(b"pack"), hand_string(ename.as_bytes())].concat(),
            )),
            "unknown frame type 0x07",
        ),
        fatal(
            "delete",
            "a DELETE-like request (type 0x08 with a kind and name)".into(),
            after_hello(hand_frame(
                0x08,
                &[hand_string(b"pack"), hand_string(ename.as_bytes())].concat(),
            )),
            "unknown frame type 0x08",
        ),
        fatal(
            "gate-frame",
            "a gate-to-client frame (STORED) sent by the client".into(),
            after_hello(enc(&Frame::Stored {
                name: ename.clone(),
            })),
            "unexpected STORED frame",
        ),
        fatal(
            "data-first",
            "DATA with no PUT before it".into(),
            after_hello(enc(&Frame::Data(fbytes))),
            "unexpected DATA frame",
        ),
        // --- HELLO
        fatal(
            "wrong-session",
            "HELLO naming another session id".into(),
            hello("s-somebody-else", &k.site),
            "is not this gate's session",
        ),
        fatal(
            "other-site",
            "HELLO naming the other site".into(),
            hello(&k.session, &k.other_site),
            "is not this session's site",
        ),
        fatal(
            "hello-twice",
            "a second HELLO (for the other site) inside the session".into(),
            after_hello(hello("", &k.other_site)),
            "unexpected HELLO frame",
        ),
        fatal(
            "put-first",
            "PUT before HELLO".into(),
            put("pack", fname, n, fbytes),
            "expected HELLO as the first frame",
        ),
        // --- framing: lengths and truncation
        fatal(
            "huge-length-in-object",
            "a length field of 4 GiB in the middle of an object's DATA".into(),
            after_hello([put_frame.clone(), vec![0xff, 0xff, 0xff, 0xff, ty::DATA]].concat()),
            "exceeds the maximum",
        ),
        fatal(
            "frame-over-max",
            format!("a DATA frame of {} bytes (one past MAX_FRAME)", MAX_FRAME + 1),
            after_hello(
                [
                    enc(&Frame::Put {
                        kind: "pack".into(),
                        name: fname.clone(),
                        size: 4 << 20,
                    }),
                    frame_with_length(MAX_FRAME as u32 + 1, &[ty::DATA]),
                    vec![0u8; MAX_FRAME],
                ]
                .concat(),
            ),
            "exceeds the maximum",
        ),
        fatal(
            "empty-data",
            "a DATA frame with no bytes".into(),
            after_hello([put_frame.clone(), frame_with_length(1, &[ty::DATA])].concat()),
            "empty DATA frame",
        ),
        fatal(
            "length-too-long",
            "a PUT whose length field claims 10 bytes more than it has (it swallows the next frame)"
                .into(),
            after_hello({
                let mut p = put_frame.clone();
                let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) + 10;
                p[..4].copy_from_slice(&len.to_be_bytes());
                [p, put("pack", fname, n, fbytes)[put_frame.len()..].to_vec()].concat()
            }),
            "malformed PUT frame",
        ),
        fatal(
            "length-too-short",
            "a PUT whose length field is 4 bytes short (its size is cut)".into(),
            after_hello({
                let mut p = put_frame.clone();
                let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) - 4;
                p[..4].copy_from_slice(&len.to_be_bytes());
                p
            }),
            "malformed PUT frame",
        ),
        fatal(
            "data-past-size",
            "an object announced at 10 bytes and sent whole".into(),
            after_hello(put("pack", fname, 10, fbytes)),
            "DATA exceeds the announced size of 10 bytes",
        ),
        Trick {
            name: "truncated-length",
            tries: "the stream ends inside a frame's length field".into(),
            bytes: after_hello(vec![0, 0]),
            then_close: true,
            answer: "middle of a frame (length field)",
            ends_session: true,
        },
        Trick {
            name: "truncated-body",
            tries: "the stream ends inside a frame's body".into(),
            bytes: after_hello(put_frame[..put_frame.len() - 3].to_vec()),
            then_close: true,
            answer: "middle of a frame (frame body)",
            ends_session: true,
        },
        Trick {
            name: "truncated-object",
            tries: "the stream ends after half of an object's bytes".into(),
            bytes: after_hello([put_frame.clone(), enc(&Frame::Data(half))].concat()),
            then_close: true,
            answer: "closed",
            ends_session: true,
        },
        fatal(
            "interleaved",
            "a second PUT in the middle of the first object's bytes".into(),
            after_hello(
                [
                    put_frame.clone(),
                    enc(&Frame::Data(half)),
                    put("pack", ename, ebytes.len() as u64, ebytes),
                ]
                .concat(),
            ),
            "unexpected PUT frame while receiving its bytes",
        ),
        refused(
            "size-u64-max",
            "PUT announcing 2^64-1 bytes, then a few bytes and END".into(),
            after_hello(put("pack", fname, u64::MAX, fbytes)),
            "exceeds the session's object limit",
        ),
    ]
}

impl Trick {
    fn answer_is(mut self, answer: &'static str) -> Self {
        self.answer = answer;
        self
    }
}

/// A lowercase hex SHA-256-shaped name that is not `name` (its last digit changed).
fn other_hex(name: &str) -> String {
    let mut s = name.to_string();
    let last = if s.ends_with('0') { '1' } else { '0' };
    s.pop();
    s.push(last);
    s
}
