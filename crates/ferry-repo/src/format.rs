//! The on-storage header shared by every repository object, and the object kinds.
//!
//! Every object Ferry writes starts with [`MAGIC`], then [`FORMAT_VERSION`], then the
//! kind byte. The gate uses [`check_header`] to refuse anything that is not a Ferry object
//! (plaintext such as a tar file) before it reaches S3.

use std::fmt;

/// First four bytes of every repository object.
pub const MAGIC: &[u8; 4] = b"FRRY";
/// Version of the object format this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Length of the common header: magic, version, kind.
pub const HEADER_LEN: usize = 6;

/// The kinds of object a repository holds. Each lives under its own prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// `config`: the repository's public parameters (one object, named `config`).
    Config,
    /// `packs/<sha256>`: encrypted, compressed blobs.
    Pack,
    /// `index/<sha256>`: which blob lives in which pack (encrypted).
    Index,
    /// `snapshots/<sha256>`: one backup run (encrypted).
    Snapshot,
    /// `trash/<sha256>`: a pack a prune took out of `packs/` (byte for byte the same object,
    /// pack header), deleted by a later prune once unused for the grace period
    /// (docs/RETENTION.md). Written and deleted by the operator only: not in [`ALL`], so the
    /// gate never parses, accepts or lists it.
    ///
    /// [`ALL`]: ObjectKind::ALL
    Trash,
    /// `log/<sha256>`: the record of one forget or prune (encrypted). Operator only, like
    /// [`Trash`](ObjectKind::Trash).
    Log,
}

impl ObjectKind {
    /// Every kind a backup writes, in header-code order (`config`, `pack`, `index`,
    /// `snapshot`): what the gate accepts. The operator's [`Trash`](ObjectKind::Trash) and
    /// [`Log`](ObjectKind::Log) are not among them.
    pub const ALL: [ObjectKind; 4] = [
        ObjectKind::Config,
        ObjectKind::Pack,
        ObjectKind::Index,
        ObjectKind::Snapshot,
    ];

    /// The byte written after the version in the object header.
    pub fn code(self) -> u8 {
        match self {
            ObjectKind::Config => 1,
            ObjectKind::Pack => 2,
            ObjectKind::Index => 3,
            ObjectKind::Snapshot => 4,
            // A trashed pack is the pack object itself, moved.
            ObjectKind::Trash => 2,
            ObjectKind::Log => 5,
        }
    }

    /// The kind whose header byte is `code`; `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    /// The storage prefix (directory) of this kind; `config` is a single object at the root.
    pub fn dir(self) -> &'static str {
        match self {
            ObjectKind::Config => "",
            ObjectKind::Pack => "packs",
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshots",
            ObjectKind::Trash => "trash",
            ObjectKind::Log => "log",
        }
    }

    /// The name used on the wire and in the CLI (`config`, `pack`, `index`, `snapshot`).
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Config => "config",
            ObjectKind::Pack => "pack",
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshot",
            ObjectKind::Trash => "trash",
            ObjectKind::Log => "log",
        }
    }

    /// The backup kind named `s` as in [`as_str`](Self::as_str) (exact, lowercase), among
    /// [`ALL`](Self::ALL) only; `None` otherwise (also for `trash` and `log`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The object key relative to the repository root (`packs/<name>`, or `config`).
    pub fn key(self, name: &str) -> String {
        match self {
            ObjectKind::Config => "config".to_string(),
            _ => format!("{}/{}", self.dir(), name),
        }
    }

    /// Whether objects of this kind are named by the SHA-256 of their bytes.
    pub fn content_addressed(self) -> bool {
        !matches!(self, ObjectKind::Config)
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name the `config` object always has.
pub const CONFIG_NAME: &str = "config";

/// Why an object's leading bytes are not a Ferry object of the expected kind.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    /// The object is shorter than [`HEADER_LEN`]; holds its length in bytes.
    #[error("object is {0} bytes long, shorter than the {HEADER_LEN}-byte Ferry header")]
    TooShort(usize),
    #[error("object does not start with the Ferry magic \"FRRY\" (not a Ferry repository object)")]
    /// The first four bytes are not [`MAGIC`] (e.g. plaintext uploaded by mistake).
    BadMagic,
    #[error("object has format version {found}, this build reads version {FORMAT_VERSION}")]
    /// The version byte is not [`FORMAT_VERSION`].
    UnsupportedVersion {
        /// The version byte found in the object.
        found: u8,
    },
    #[error("object header says kind code {found}, expected {expected}")]
    /// A valid Ferry header, but for another kind than the one being read or stored.
    WrongKind {
        /// The kind byte found (possibly not a known [`ObjectKind::code`]).
        found: u8,
        /// The kind the caller asked for.
        expected: ObjectKind,
    },
}

/// The header bytes for an object of `kind`.
pub fn header(kind: ObjectKind) -> [u8; HEADER_LEN] {
    let m = MAGIC;
    [m[0], m[1], m[2], m[3], FORMAT_VERSION, kind.code()]
}

/// Check that `bytes` start like a Ferry object of `kind` (magic, version, kind).
pub fn check_header(bytes: &[u8], kind: ObjectKind) -> Result<(), HeaderError> {
    if bytes.len() < HEADER_LEN {
        return Err(HeaderError::TooShort(bytes.len()));
    }
    if &bytes[..4] != MAGIC {
        return Err(HeaderError::BadMagic);
    }
    if bytes[4] != FORMAT_VERSION {
        return Err(HeaderError::UnsupportedVersion { found: bytes[4] });
    }
    if bytes[5] != kind.code() {
        return Err(HeaderError::WrongKind {
            found: bytes[5],
            expected: kind,
        });
    }
    Ok(())
}

/// Whether `name` is a lowercase hex SHA-256 (64 characters).
pub fn is_sha256_hex(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Lowercase hex SHA-256 of `bytes`: the name of a content-addressed object.
pub fn object_name(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_refusals() {
        for k in ObjectKind::ALL {
            let mut obj = header(k).to_vec();
            obj.extend_from_slice(b"payload");
            assert_eq!(check_header(&obj, k), Ok(()));
            assert_eq!(ObjectKind::from_code(k.code()), Some(k));
            assert_eq!(ObjectKind::parse(k.as_str()), Some(k));
        }
        // The operator's kinds are never parsed from the wire.
        assert_eq!(ObjectKind::parse("trash"), None);
        assert_eq!(ObjectKind::parse("log"), None);
        assert_eq!(ObjectKind::from_code(5), None);
        let mut pack = header(ObjectKind::Pack).to_vec();
        pack.extend_from_slice(b"x");
        assert_eq!(check_header(&pack, ObjectKind::Trash), Ok(()));
        assert_eq!(
            check_header(b"FRR", ObjectKind::Pack),
            Err(HeaderError::TooShort(3))
        );
        assert_eq!(
            check_header(b"ustar\0\0\0", ObjectKind::Pack),
            Err(HeaderError::BadMagic)
        );
        let idx = header(ObjectKind::Index);
        assert!(matches!(
            check_header(&idx, ObjectKind::Pack),
            Err(HeaderError::WrongKind { .. })
        ));
        let mut v2 = header(ObjectKind::Pack);
        v2[4] = 2;
        assert_eq!(
            check_header(&v2, ObjectKind::Pack),
            Err(HeaderError::UnsupportedVersion { found: 2 })
        );
    }

    #[test]
    fn sha256_names() {
        assert!(is_sha256_hex(&object_name(b"x")));
        assert!(!is_sha256_hex("ABCD"));
        assert!(!is_sha256_hex(&"A".repeat(64)));
        assert!(!is_sha256_hex(&"../".repeat(21)));
    }
}
