//! # ferry-proto — the client ⇄ gate wire protocol
//!
//! Owns frame encoding/decoding and the message types spoken between the backup VM
//! (`ferry-remote`) and `ferry-gate serve` on the jump box, over the SSH channel's
//! stdin/stdout. The byte layout is documented in `docs/PROTOCOL.md`.
//!
//! This crate is pure encode/decode over [`std::io::Read`]/[`std::io::Write`]: no I/O policy
//! (timeouts, retries), no checks that belong to the gate (kinds, names, limits).
//! Must never depend on AWS, SSH or the repository engine.
//!
//! ## Frames
//! `u32` big-endian length `L` (1 ≤ L ≤ [`MAX_FRAME`]), then `L` bytes: one type byte and
//! `L - 1` bytes of payload. Strings are a `u16` big-endian length and UTF-8 bytes
//! (≤ [`MAX_STRING`]); integers are big-endian. A decoder refuses oversized, empty,
//! unknown, truncated and malformed frames with a [`ProtoError`] naming the problem.

use std::fmt;
use std::io::{self, Read, Write};

/// Version spoken by this build. A HELLO with another version is refused.
///
/// Version 2 pipelines puts: the client sends PUT, DATA… and END without waiting, and the
/// gate answers every object exactly once, after its END, in order (version 1 had a READY
/// answer to each PUT before its bytes).
pub const PROTOCOL_VERSION: u16 = 2;
/// Largest value of a frame's length field (type byte + payload), 1 MiB.
pub const MAX_FRAME: usize = 1 << 20;
/// Largest payload of a DATA frame.
pub const MAX_DATA: usize = MAX_FRAME - 1;
/// Largest string (bytes) in any frame.
pub const MAX_STRING: usize = 4096;
/// Most names in one NAMES frame (S3 lists at most 1000 keys per page).
pub const MAX_NAMES: usize = 1000;

/// Frame type bytes. Client → gate below 0x80, gate → client from 0x80.
pub mod ty {
    /// Client opens the session: version, session id, site ([`Frame::Hello`]).
    pub const HELLO: u8 = 0x01;
    /// Client announces one object: kind, name, size ([`Frame::Put`]).
    pub const PUT: u8 = 0x02;
    /// Client sends a piece of the announced object's bytes ([`Frame::Data`]).
    pub const DATA: u8 = 0x03;
    /// Client marks the announced object's bytes complete ([`Frame::End`]).
    pub const END: u8 = 0x04;
    /// Client asks for one page of names under a kind ([`Frame::List`]).
    pub const LIST: u8 = 0x05;
    /// Client ends the session cleanly ([`Frame::Bye`]).
    pub const BYE: u8 = 0x06;
    /// Gate accepts the session and tells its limits ([`Frame::HelloOk`]).
    pub const HELLO_OK: u8 = 0x81;
    // 0x82 was READY in version 1; not used since version 2 (decodes as an unknown type).
    /// Gate stored the object ([`Frame::Stored`]).
    pub const STORED: u8 = 0x83;
    /// Gate found the object already there and left it unchanged ([`Frame::AlreadyPresent`]).
    pub const ALREADY_PRESENT: u8 = 0x84;
    /// Gate refused one object; the session goes on ([`Frame::Refused`]).
    pub const REFUSED: u8 = 0x85;
    /// Gate answers a LIST with one page of names ([`Frame::Names`]).
    pub const NAMES: u8 = 0x86;
    /// Gate acknowledges BYE, then closes ([`Frame::ByeOk`]).
    pub const BYE_OK: u8 = 0x87;
    /// Either side reports a fatal protocol error, then closes ([`Frame::Error`]).
    pub const ERROR: u8 = 0xEE;
}

/// One decoded frame. `Data` borrows the reader's buffer (no copy per frame).
#[derive(Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Client opens the session.
    Hello {
        /// Protocol version the client speaks; the gate refuses any but [`PROTOCOL_VERSION`].
        version: u16,
        /// The session id the client was given; empty = "whatever session this gate serves".
        session: String,
        /// The repository's site prefix.
        site: String,
    },
    /// Client announces one object; DATA frames totalling `size` bytes and END follow
    /// straight away (no answer is awaited in between).
    Put {
        /// Object kind: `config`, `pack`, `index` or `snapshot` (the gate checks it).
        kind: String,
        /// Object name: lowercase hex SHA-256 of the bytes (`config` for the config object).
        name: String,
        /// Exact number of bytes the following DATA frames carry.
        size: u64,
    },
    /// A piece of the announced object's bytes (1..=[`MAX_DATA`] bytes).
    Data(&'a [u8]),
    /// The object's bytes are complete.
    End,
    /// Client asks for the names under a kind; `continuation` empty = first page.
    List {
        /// Object kind whose names are listed (`pack`, `index`, ...).
        kind: String,
        /// Opaque token from the previous NAMES page; empty = first page.
        continuation: String,
    },
    /// Client ends the session cleanly.
    Bye,
    /// Gate accepts the session and tells its limits.
    HelloOk {
        /// Protocol version the gate speaks ([`PROTOCOL_VERSION`]).
        version: u16,
        /// Id of the session the gate serves (also named in its audit log).
        session: String,
        /// Largest object the gate accepts, in bytes; a bigger PUT is refused.
        max_object_size: u64,
        /// Most object bytes (sum of PUT sizes) the gate accepts in this session.
        max_session_bytes: u64,
    },
    /// Gate stored the object.
    Stored {
        /// Name of the object stored, as sent in its PUT (checked by the client).
        name: String,
    },
    /// An object by that name was already there; nothing changed.
    AlreadyPresent {
        /// Name of the object that was already there, as sent in its PUT.
        name: String,
    },
    /// Gate refused this object (the session goes on).
    Refused {
        /// Name of the refused object, as sent in its PUT.
        name: String,
        /// Human-readable reason (wrong kind, bad name, over a limit, hash mismatch, ...).
        reason: String,
    },
    /// One page of names; `continuation` empty = last page.
    Names {
        /// Object names of this page, at most [`MAX_NAMES`].
        names: Vec<String>,
        /// Token to send in the next LIST; empty = this is the last page.
        continuation: String,
    },
    /// Gate acknowledges BYE; it closes afterwards.
    ByeOk,
    /// Fatal protocol error; the sender closes afterwards.
    Error {
        /// What went wrong, cut to [`MAX_STRING`] bytes.
        message: String,
    },
}

impl Frame<'_> {
    /// The frame's type byte.
    pub fn type_byte(&self) -> u8 {
        match self {
            Frame::Hello { .. } => ty::HELLO,
            Frame::Put { .. } => ty::PUT,
            Frame::Data(_) => ty::DATA,
            Frame::End => ty::END,
            Frame::List { .. } => ty::LIST,
            Frame::Bye => ty::BYE,
            Frame::HelloOk { .. } => ty::HELLO_OK,
            Frame::Stored { .. } => ty::STORED,
            Frame::AlreadyPresent { .. } => ty::ALREADY_PRESENT,
            Frame::Refused { .. } => ty::REFUSED,
            Frame::Names { .. } => ty::NAMES,
            Frame::ByeOk => ty::BYE_OK,
            Frame::Error { .. } => ty::ERROR,
        }
    }

    /// A short name for messages ("HELLO", "DATA", ...).
    pub fn type_name(&self) -> &'static str {
        type_name(self.type_byte())
    }
}

/// The name of a frame type byte, for messages.
pub fn type_name(t: u8) -> &'static str {
    match t {
        ty::HELLO => "HELLO",
        ty::PUT => "PUT",
        ty::DATA => "DATA",
        ty::END => "END",
        ty::LIST => "LIST",
        ty::BYE => "BYE",
        ty::HELLO_OK => "HELLO_OK",
        ty::STORED => "STORED",
        ty::ALREADY_PRESENT => "ALREADY_PRESENT",
        ty::REFUSED => "REFUSED",
        ty::NAMES => "NAMES",
        ty::BYE_OK => "BYE_OK",
        ty::ERROR => "ERROR",
        _ => "unknown",
    }
}

impl fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Never dump object bytes into logs.
            Frame::Data(d) => write!(f, "Data({} bytes)", d.len()),
            Frame::Hello {
                version,
                session,
                site,
            } => f
                .debug_struct("Hello")
                .field("version", version)
                .field("session", session)
                .field("site", site)
                .finish(),
            Frame::Put { kind, name, size } => f
                .debug_struct("Put")
                .field("kind", kind)
                .field("name", name)
                .field("size", size)
                .finish(),
            Frame::End => f.write_str("End"),
            Frame::List { kind, continuation } => f
                .debug_struct("List")
                .field("kind", kind)
                .field("continuation", continuation)
                .finish(),
            Frame::Bye => f.write_str("Bye"),
            Frame::HelloOk {
                version,
                session,
                max_object_size,
                max_session_bytes,
            } => f
                .debug_struct("HelloOk")
                .field("version", version)
                .field("session", session)
                .field("max_object_size", max_object_size)
                .field("max_session_bytes", max_session_bytes)
                .finish(),
            Frame::Stored { name } => f.debug_struct("Stored").field("name", name).finish(),
            Frame::AlreadyPresent { name } => f
                .debug_struct("AlreadyPresent")
                .field("name", name)
                .finish(),
            Frame::Refused { name, reason } => f
                .debug_struct("Refused")
                .field("name", name)
                .field("reason", reason)
                .finish(),
            Frame::Names {
                names,
                continuation,
            } => f
                .debug_struct("Names")
                .field("count", &names.len())
                .field("continuation", continuation)
                .finish(),
            Frame::ByeOk => f.write_str("ByeOk"),
            Frame::Error { message } => f.debug_struct("Error").field("message", message).finish(),
        }
    }
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// Reading or writing the underlying stream failed.
    #[error("i/o error on the protocol stream: {0}")]
    Io(#[from] io::Error),
    /// End of stream inside a frame (not at a frame boundary).
    #[error("stream ended in the middle of a frame ({context})")]
    Truncated {
        /// Which part was cut short: "length field" or "frame body".
        context: &'static str,
    },
    /// The length field is larger than [`MAX_FRAME`]; the body is not read.
    #[error("frame length {len} exceeds the maximum of {MAX_FRAME} bytes")]
    Oversized {
        /// The length field's value, in bytes.
        len: u64,
    },
    /// The length field is 0: not even a type byte.
    #[error("frame length 0 (every frame has at least a type byte)")]
    Empty,
    /// The type byte is none of [`ty`] (including 0x82, READY of version 1).
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    /// The payload does not fit the frame type (short, trailing bytes, bad UTF-8, too long).
    #[error("malformed {frame} frame: {reason}")]
    Malformed {
        /// Name of the frame type, as [`type_name`] gives it.
        frame: &'static str,
        /// What is wrong with the payload.
        reason: String,
    },
}

/// Reads frames from a byte stream, reusing one buffer.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    /// Reads frames from `inner`, which must be at a frame boundary.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: Vec::new(),
        }
    }

    /// The underlying stream; reading from it directly desynchronises the frames.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Gives the underlying stream back.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The next frame, or `None` on a clean end of stream at a frame boundary.
    pub fn read(&mut self) -> Result<Option<Frame<'_>>, ProtoError> {
        let mut len = [0u8; 4];
        match read_full(&mut self.inner, &mut len)? {
            0 => return Ok(None),
            4 => {}
            _ => {
                return Err(ProtoError::Truncated {
                    context: "length field",
                });
            }
        }
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            return Err(ProtoError::Empty);
        }
        if len > MAX_FRAME {
            return Err(ProtoError::Oversized { len: len as u64 });
        }
        self.buf.resize(len, 0);
        if read_full(&mut self.inner, &mut self.buf)? != len {
            return Err(ProtoError::Truncated {
                context: "frame body",
            });
        }
        decode(&self.buf).map(Some)
    }
}

/// Read until `buf` is full or EOF; returns how many bytes were read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Decode one frame body (type byte + payload; the length prefix already removed).
pub fn decode(body: &[u8]) -> Result<Frame<'_>, ProtoError> {
    let (&t, payload) = body.split_first().ok_or(ProtoError::Empty)?;
    let name = type_name(t);
    let mut c = Cursor {
        b: payload,
        frame: name,
    };
    let frame = match t {
        ty::HELLO => Frame::Hello {
            version: c.u16()?,
            session: c.string()?,
            site: c.string()?,
        },
        ty::PUT => Frame::Put {
            kind: c.string()?,
            name: c.string()?,
            size: c.u64()?,
        },
        ty::DATA => {
            if payload.is_empty() {
                return Err(c.bad("empty DATA frame"));
            }
            c.b = &[];
            Frame::Data(payload)
        }
        ty::END => Frame::End,
        ty::LIST => Frame::List {
            kind: c.string()?,
            continuation: c.string()?,
        },
        ty::BYE => Frame::Bye,
        ty::HELLO_OK => Frame::HelloOk {
            version: c.u16()?,
            session: c.string()?,
            max_object_size: c.u64()?,
            max_session_bytes: c.u64()?,
        },
        ty::STORED => Frame::Stored { name: c.string()? },
        ty::ALREADY_PRESENT => Frame::AlreadyPresent { name: c.string()? },
        ty::REFUSED => Frame::Refused {
            name: c.string()?,
            reason: c.string()?,
        },
        ty::NAMES => {
            let continuation = c.string()?;
            let count = c.u32()? as usize;
            if count > MAX_NAMES {
                return Err(c.bad(&format!("{count} names, more than {MAX_NAMES}")));
            }
            let mut names = Vec::with_capacity(count);
            for _ in 0..count {
                names.push(c.string()?);
            }
            Frame::Names {
                names,
                continuation,
            }
        }
        ty::BYE_OK => Frame::ByeOk,
        ty::ERROR => Frame::Error {
            message: c.string()?,
        },
        other => return Err(ProtoError::UnknownType(other)),
    };
    if !c.b.is_empty() {
        return Err(c.bad(&format!("{} unexpected trailing bytes", c.b.len())));
    }
    Ok(frame)
}

struct Cursor<'a> {
    b: &'a [u8],
    frame: &'static str,
}

impl<'a> Cursor<'a> {
    fn bad(&self, reason: &str) -> ProtoError {
        ProtoError::Malformed {
            frame: self.frame,
            reason: reason.to_string(),
        }
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ProtoError> {
        if self.b.len() < n {
            return Err(self.bad(&format!("payload too short for {what}")));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u16(&mut self) -> Result<u16, ProtoError> {
        let b = self.take(2, "a u16")?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, ProtoError> {
        let b = self.take(4, "a u32")?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, ProtoError> {
        let b = self.take(8, "a u64")?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn string(&mut self) -> Result<String, ProtoError> {
        let len = self.u16()? as usize;
        if len > MAX_STRING {
            return Err(self.bad(&format!("string of {len} bytes, more than {MAX_STRING}")));
        }
        let b = self.take(len, "a string")?;
        String::from_utf8(b.to_vec()).map_err(|_| self.bad("string is not UTF-8"))
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) -> io::Result<()> {
    if s.len() > MAX_STRING {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "string of {} bytes exceeds the protocol maximum of {MAX_STRING}",
                s.len()
            ),
        ));
    }
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Encode `frame` (length prefix included) into a new buffer. DATA frames are better
/// written with [`write_frame`], which does not copy the bytes.
pub fn encode(frame: &Frame<'_>) -> io::Result<Vec<u8>> {
    let mut out = vec![0, 0, 0, 0, frame.type_byte()];
    match frame {
        Frame::Hello {
            version,
            session,
            site,
        } => {
            out.extend_from_slice(&version.to_be_bytes());
            put_str(&mut out, session)?;
            put_str(&mut out, site)?;
        }
        Frame::Put { kind, name, size } => {
            put_str(&mut out, kind)?;
            put_str(&mut out, name)?;
            out.extend_from_slice(&size.to_be_bytes());
        }
        Frame::Data(d) => {
            if d.is_empty() || d.len() > MAX_DATA {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("DATA frame of {} bytes (must be 1..={MAX_DATA})", d.len()),
                ));
            }
            out.extend_from_slice(d);
        }
        Frame::End | Frame::Bye | Frame::ByeOk => {}
        Frame::List { kind, continuation } => {
            put_str(&mut out, kind)?;
            put_str(&mut out, continuation)?;
        }
        Frame::HelloOk {
            version,
            session,
            max_object_size,
            max_session_bytes,
        } => {
            out.extend_from_slice(&version.to_be_bytes());
            put_str(&mut out, session)?;
            out.extend_from_slice(&max_object_size.to_be_bytes());
            out.extend_from_slice(&max_session_bytes.to_be_bytes());
        }
        Frame::Stored { name } | Frame::AlreadyPresent { name } => put_str(&mut out, name)?,
        Frame::Refused { name, reason } => {
            put_str(&mut out, name)?;
            put_str(&mut out, &truncate(reason))?;
        }
        Frame::Names {
            names,
            continuation,
        } => {
            if names.len() > MAX_NAMES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} names in one NAMES frame (max {MAX_NAMES})", names.len()),
                ));
            }
            put_str(&mut out, continuation)?;
            out.extend_from_slice(&(names.len() as u32).to_be_bytes());
            for n in names {
                put_str(&mut out, n)?;
            }
        }
        Frame::Error { message } => put_str(&mut out, &truncate(message))?,
    }
    let len = out.len() - 4;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} frame of {len} bytes exceeds {MAX_FRAME}",
                frame.type_name()
            ),
        ));
    }
    out[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Messages and reasons are cut to [`MAX_STRING`] bytes (on a char boundary).
fn truncate(s: &str) -> String {
    if s.len() <= MAX_STRING {
        return s.to_string();
    }
    let mut end = MAX_STRING;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Write one frame. Does not flush.
pub fn write_frame<W: Write>(w: &mut W, frame: &Frame<'_>) -> io::Result<()> {
    if let Frame::Data(d) = frame {
        if d.is_empty() || d.len() > MAX_DATA {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("DATA frame of {} bytes (must be 1..={MAX_DATA})", d.len()),
            ));
        }
        let len = (d.len() + 1) as u32;
        let mut head = [0u8; 5];
        head[..4].copy_from_slice(&len.to_be_bytes());
        head[4] = ty::DATA;
        w.write_all(&head)?;
        return w.write_all(d);
    }
    w.write_all(&encode(frame)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(f: Frame<'_>) {
        let bytes = encode(&f).unwrap();
        let mut via_writer = Vec::new();
        write_frame(&mut via_writer, &f).unwrap();
        assert_eq!(bytes, via_writer);
        let mut r = FrameReader::new(&bytes[..]);
        assert_eq!(r.read().unwrap().unwrap(), f);
        assert!(r.read().unwrap().is_none());
    }

    #[test]
    fn every_frame_roundtrips() {
        let big = vec![7u8; MAX_DATA];
        for f in [
            Frame::Hello {
                version: 1,
                session: "s-1".into(),
                site: "home".into(),
            },
            Frame::Put {
                kind: "pack".into(),
                name: "ab".repeat(32),
                size: u64::MAX,
            },
            Frame::Data(b"x"),
            Frame::Data(&big),
            Frame::End,
            Frame::List {
                kind: "index".into(),
                continuation: "tok".into(),
            },
            Frame::Bye,
            Frame::HelloOk {
                version: 1,
                session: "s".into(),
                max_object_size: 5,
                max_session_bytes: 6,
            },
            Frame::Stored { name: "n".into() },
            Frame::AlreadyPresent { name: "n".into() },
            Frame::Refused {
                name: "n".into(),
                reason: "why".into(),
            },
            Frame::Names {
                names: vec!["a".into(), "b".into()],
                continuation: String::new(),
            },
            Frame::ByeOk,
            Frame::Error {
                message: "bad".into(),
            },
        ] {
            roundtrip(f);
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let b = encode(&Frame::Put {
            kind: "pack".into(),
            name: "n".into(),
            size: 258,
        })
        .unwrap();
        assert_eq!(
            b,
            [
                0, 0, 0, 18, 0x02, 0, 4, b'p', b'a', b'c', b'k', 0, 1, b'n', 0, 0, 0, 0, 0, 0, 1, 2
            ]
        );
    }

    #[test]
    fn refuses_bad_frames() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0, 0], "length field"),
            (vec![0, 0, 0, 0], "length 0"),
            (
                ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec(),
                "exceeds the maximum",
            ),
            (vec![0, 0, 0, 5, ty::END], "middle of a frame"),
            (vec![0, 0, 0, 1, 0x55], "unknown frame type 0x55"),
            (vec![0, 0, 0, 1, 0x82], "unknown frame type 0x82"),
            (vec![0, 0, 0, 1, ty::DATA], "empty DATA"),
            (vec![0, 0, 0, 2, ty::END, 0], "trailing bytes"),
            (vec![0, 0, 0, 3, ty::STORED, 0, 5], "too short"),
            (vec![0, 0, 0, 4, ty::STORED, 0, 1, 0xff], "not UTF-8"),
            (vec![0, 0, 0, 3, ty::ERROR, 0xff, 0xff], "more than 4096"),
            (
                vec![0, 0, 0, 7, ty::NAMES, 0, 0, 0, 0, 0x10, 0],
                "more than 1000",
            ),
        ];
        for (bytes, want) in cases {
            let mut r = FrameReader::new(&bytes[..]);
            let err = r.read().unwrap_err().to_string();
            assert!(err.contains(want), "{bytes:?}: {err} (wanted {want})");
        }
    }

    #[test]
    fn encoder_refuses_what_the_decoder_would() {
        assert!(encode(&Frame::Data(&[])).is_err());
        let too_big = vec![0u8; MAX_DATA + 1];
        assert!(write_frame(&mut Vec::new(), &Frame::Data(&too_big)).is_err());
        assert!(
            encode(&Frame::Stored {
                name: "x".repeat(MAX_STRING + 1)
            })
            .is_err()
        );
        // Long messages are cut, not refused: an error must always be sendable.
        let e = encode(&Frame::Error {
            message: "é".repeat(MAX_STRING),
        })
        .unwrap();
        assert!(e.len() <= 4 + 1 + 2 + MAX_STRING);
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let mut r = FrameReader::new(&bytes[..]);
            for _ in 0..64 {
                match r.read() {
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
        }
    }
}
