//! Master and put keys (bupstash-style) and their armored, optionally passphrase-protected
//! key files.
//!
//! * [`PutKey`]: repository id, X25519 **public** key, the keyed-hash key for blob ids, and the
//!   chunker parameters. It can write backups but decrypt nothing.
//! * [`MasterKey`]: everything in the put key plus the X25519 secret. Restore, ls, check.
//!
//! Key file: `-----BEGIN FERRY MASTER KEY-----` / `PUT KEY`, base64 (64-column lines) of a
//! postcard `KeyFileWire { version, kind, protection, body }`, `-----END … -----`. With a
//! passphrase the body is XChaCha20-Poly1305-encrypted under an argon2id-derived key
//! (parameters and salt stored in the file; AAD = the kind's armor label).
//!
//! Secrets are zeroized on drop and never shown by `Debug`.

use crate::crypto::{self, NONCE_LEN, SymKey};
use crate::error::{Error, Result};
use crate::ids::{ChunkerParams, RepoId};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

/// A passphrase; zeroized on drop, never printed.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wrap a passphrase as typed or read (not trimmed; an empty one means "no protection").
    pub fn new(s: impl Into<String>) -> Self {
        Passphrase(Zeroizing::new(s.into()))
    }
    /// The passphrase text, for key derivation only; never log or display it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// True for `""`: writing a key file with an empty passphrase leaves it unprotected.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// Which kind of key a key file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// A [`MasterKey`] (armor label `FERRY MASTER KEY`): can read and write.
    Master,
    /// A [`PutKey`] (armor label `FERRY PUT KEY`): can only write backups.
    Put,
}

impl KeyKind {
    /// `"master"` or `"put"`, as used in messages and [`Error::WrongKeyKind`].
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Master => "master",
            KeyKind::Put => "put",
        }
    }
    fn label(self) -> &'static str {
        match self {
            KeyKind::Master => "FERRY MASTER KEY",
            KeyKind::Put => "FERRY PUT KEY",
        }
    }
    fn code(self) -> u8 {
        match self {
            KeyKind::Master => 1,
            KeyKind::Put => 2,
        }
    }
}

/// The put-only key: can write backups, cannot read them.
#[derive(Clone)]
pub struct PutKey {
    repo_id: RepoId,
    public: [u8; 32],
    hash_key: Zeroizing<[u8; 32]>,
    chunker: ChunkerParams,
}

impl fmt::Debug for PutKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutKey")
            .field("repo_id", &self.repo_id)
            .field("public", &hex::encode(self.public))
            .field("hash_key", &"<redacted>")
            .field("chunker", &self.chunker)
            .finish()
    }
}

impl PutKey {
    /// The id of the repository this key belongs to (checked against its `config`).
    pub fn repo_id(&self) -> RepoId {
        self.repo_id
    }
    /// The repository's X25519 public key (everything is encrypted to it).
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }
    /// The repository's chunker parameters (fixed when the master key was generated).
    pub fn chunker(&self) -> ChunkerParams {
        self.chunker
    }
    pub(crate) fn hash_key(&self) -> &[u8; 32] {
        &self.hash_key
    }
    /// Seed for the FastCDC gear table, derived from the hash key so chunk boundaries do
    /// not reveal content to someone without the key.
    pub(crate) fn chunker_seed(&self) -> u64 {
        let k = blake3::derive_key("ferry v1 chunker seed", self.hash_key.as_ref());
        u64::from_le_bytes([k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]])
    }

    /// The armored key file text.
    pub fn to_armored(&self, passphrase: Option<&Passphrase>) -> Result<Zeroizing<String>> {
        armor(KeyKind::Put, &self.body(None), passphrase)
    }

    /// Write a new put key file (mode 0600); fails if `path` exists.
    pub fn write_new(&self, path: &Path, passphrase: Option<&Passphrase>) -> Result<()> {
        write_new_file(path, &self.to_armored(passphrase)?)
    }

    /// Read a put key file. A master key file is refused with [`Error::WrongKeyKind`]
    /// (use [`read_key_file`] to accept either).
    pub fn read(
        path: &Path,
        passphrase: &mut dyn FnMut() -> Result<Option<Passphrase>>,
    ) -> Result<PutKey> {
        match read_key_file(path, passphrase)? {
            AnyKey::Put(k) => Ok(k),
            AnyKey::Master(_) => Err(Error::WrongKeyKind {
                path: path.display().to_string(),
                found: "master",
                expected: "put",
            }),
        }
    }

    fn body(&self, secret: Option<&StaticSecret>) -> Zeroizing<Vec<u8>> {
        let mut b = KeyBody {
            repo_id: self.repo_id.0,
            public: self.public,
            hash_key: *self.hash_key,
            chunker: self.chunker,
            secret: secret.map(|s| s.to_bytes()),
        };
        let out = postcard::to_allocvec(&b).unwrap_or_default();
        b.zeroize_secrets();
        Zeroizing::new(out)
    }
}

/// The master key: the put key plus the X25519 secret.
#[derive(Clone)]
pub struct MasterKey {
    put: PutKey,
    secret: StaticSecret,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("put", &self.put)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl MasterKey {
    /// A new repository identity with default chunker parameters.
    pub fn generate() -> MasterKey {
        Self::generate_with(ChunkerParams::default()).expect("default chunker params are valid")
    }

    /// A new repository identity with the given chunker parameters.
    pub fn generate_with(chunker: ChunkerParams) -> Result<MasterKey> {
        chunker.validate()?;
        Ok(Self::from_parts(
            crypto::random_bytes(),
            crypto::random_bytes(),
            crypto::random_bytes(),
            chunker,
        ))
    }

    /// A deterministic key from a 32-byte seed. For tests and fuzz targets only: never use
    /// a predictable seed for a real repository.
    pub fn from_seed(seed: &[u8; 32]) -> MasterKey {
        let d = |ctx: &str| blake3::derive_key(ctx, seed);
        let id = d("ferry v1 test repo id");
        let mut repo_id = [0u8; 16];
        repo_id.copy_from_slice(&id[..16]);
        Self::from_parts(
            repo_id,
            d("ferry v1 test secret"),
            d("ferry v1 test hash key"),
            ChunkerParams::default(),
        )
    }

    fn from_parts(
        repo_id: [u8; 16],
        secret: [u8; 32],
        hash_key: [u8; 32],
        chunker: ChunkerParams,
    ) -> MasterKey {
        let secret = StaticSecret::from(secret);
        let public = PublicKey::from(&secret).to_bytes();
        MasterKey {
            put: PutKey {
                repo_id: RepoId(repo_id),
                public,
                hash_key: Zeroizing::new(hash_key),
                chunker,
            },
            secret,
        }
    }

    /// The put key derived from this master key.
    pub fn put_key(&self) -> PutKey {
        self.put.clone()
    }

    /// Borrow the embedded put key.
    pub fn as_put(&self) -> &PutKey {
        &self.put
    }

    /// The id of the repository this key belongs to (same as its put key's).
    pub fn repo_id(&self) -> RepoId {
        self.put.repo_id
    }

    pub(crate) fn secret(&self) -> &StaticSecret {
        &self.secret
    }

    /// The armored key file text.
    pub fn to_armored(&self, passphrase: Option<&Passphrase>) -> Result<Zeroizing<String>> {
        armor(
            KeyKind::Master,
            &self.put.body(Some(&self.secret)),
            passphrase,
        )
    }

    /// Write a new master key file (mode 0600); fails if `path` exists.
    pub fn write_new(&self, path: &Path, passphrase: Option<&Passphrase>) -> Result<()> {
        write_new_file(path, &self.to_armored(passphrase)?)
    }

    /// Read a master key file. A put key file is refused with [`Error::PutOnlyKey`].
    /// `passphrase` is called only if the file is protected.
    pub fn read(
        path: &Path,
        passphrase: &mut dyn FnMut() -> Result<Option<Passphrase>>,
    ) -> Result<MasterKey> {
        read_key_file(path, passphrase)?.into_master("this operation")
    }
}

/// Either kind of key, as read from a key file.
#[derive(Debug, Clone)]
pub enum AnyKey {
    /// The file held a master key.
    Master(MasterKey),
    /// The file held a put key.
    Put(PutKey),
}

impl AnyKey {
    /// Which kind of key this is.
    pub fn kind(&self) -> KeyKind {
        match self {
            AnyKey::Master(_) => KeyKind::Master,
            AnyKey::Put(_) => KeyKind::Put,
        }
    }
    /// The put key (a master key contains one).
    pub fn put_key(&self) -> PutKey {
        match self {
            AnyKey::Master(m) => m.put_key(),
            AnyKey::Put(p) => p.clone(),
        }
    }
    /// The master key, or [`Error::PutOnlyKey`] naming `op` (e.g. "restore").
    pub fn into_master(self, op: &'static str) -> Result<MasterKey> {
        match self {
            AnyKey::Master(m) => Ok(m),
            AnyKey::Put(_) => Err(Error::PutOnlyKey { op }),
        }
    }
}

/// Argon2id parameters and the encryption nonce of a protected key file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Protection {
    /// Argon2id memory cost in KiB (written as 64 MiB; more than 1 GiB is refused on read).
    pub m_cost_kib: u32,
    /// Argon2id passes (written as 3; 1..=16 accepted).
    pub t_cost: u32,
    /// Argon2id lanes (written as 1; 1..=16 accepted).
    pub p_cost: u32,
    /// Random argon2id salt, fresh for every file written.
    pub salt: [u8; 16],
    /// Random XChaCha20-Poly1305 nonce of the encrypted body.
    pub nonce: [u8; 24],
}

/// Default argon2id cost: 64 MiB, 3 passes, 1 lane.
const ARGON_M_KIB: u32 = 64 * 1024;
const ARGON_T: u32 = 3;
const ARGON_P: u32 = 1;

#[derive(Serialize, Deserialize)]
struct KeyFileWire {
    version: u8,
    kind: u8,
    protection: Option<Protection>,
    body: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct KeyBody {
    repo_id: [u8; 16],
    public: [u8; 32],
    hash_key: [u8; 32],
    chunker: ChunkerParams,
    secret: Option<[u8; 32]>,
}

impl KeyBody {
    fn zeroize_secrets(&mut self) {
        self.hash_key.zeroize();
        if let Some(s) = self.secret.as_mut() {
            s.zeroize();
        }
    }
}

/// A parsed key file (possibly still passphrase-protected).
pub struct KeyFile {
    kind: KeyKind,
    protection: Option<Protection>,
    body: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFile")
            .field("kind", &self.kind)
            .field("protected", &self.protection.is_some())
            .finish_non_exhaustive()
    }
}

/// Largest key file accepted (real ones are well under 1 KiB).
const MAX_KEY_FILE: usize = 64 * 1024;

/// Parse key file bytes (armored text). Never panics; does not run argon2.
pub fn parse(bytes: &[u8]) -> Result<KeyFile> {
    parse_named(bytes, "<key bytes>")
}

fn malformed(path: &str, message: impl Into<String>) -> Error {
    Error::MalformedKey {
        path: path.to_string(),
        message: message.into(),
    }
}

fn parse_named(bytes: &[u8], path: &str) -> Result<KeyFile> {
    if bytes.len() > MAX_KEY_FILE {
        return Err(malformed(
            path,
            format!("{} bytes is too large for a key file", bytes.len()),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| malformed(path, "not UTF-8 text"))?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().ok_or_else(|| malformed(path, "empty file"))?;
    let kind = if first == "-----BEGIN FERRY MASTER KEY-----" {
        KeyKind::Master
    } else if first == "-----BEGIN FERRY PUT KEY-----" {
        KeyKind::Put
    } else {
        return Err(malformed(
            path,
            "does not start with \"-----BEGIN FERRY MASTER KEY-----\" or \"-----BEGIN FERRY PUT KEY-----\"",
        ));
    };
    let end = format!("-----END {}-----", kind.label());
    let mut b64 = Zeroizing::new(String::new());
    let mut ended = false;
    for line in lines.by_ref() {
        if line == end {
            ended = true;
            break;
        }
        b64.push_str(line);
    }
    if !ended {
        return Err(malformed(path, format!("missing \"{end}\" line")));
    }
    if lines.next().is_some() {
        return Err(malformed(path, "unexpected text after the END line"));
    }
    let raw = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| malformed(path, format!("invalid base64: {e}")))?,
    );
    let wire: KeyFileWire = postcard::from_bytes(&raw)
        .map_err(|e| malformed(path, format!("invalid key encoding: {e}")))?;
    if wire.version != 1 {
        return Err(malformed(
            path,
            format!("unsupported key file version {}", wire.version),
        ));
    }
    if wire.kind != kind.code() {
        return Err(malformed(path, "armor label and encoded key kind disagree"));
    }
    if let Some(p) = &wire.protection
        && !(8..=1024 * 1024).contains(&p.m_cost_kib)
            | !(1..=16).contains(&p.t_cost)
            | !(1..=16).contains(&p.p_cost)
    {
        return Err(malformed(path, "passphrase parameters out of range"));
    }
    Ok(KeyFile {
        kind,
        protection: wire.protection,
        body: Zeroizing::new(wire.body),
    })
}

impl KeyFile {
    /// The kind named by the armor and the encoded header (readable without a passphrase).
    pub fn kind(&self) -> KeyKind {
        self.kind
    }
    /// Whether the body is passphrase-encrypted ([`unlock`](Self::unlock) then needs one).
    pub fn is_protected(&self) -> bool {
        self.protection.is_some()
    }

    /// Decrypt (if protected) and decode the key. `path` is used in error messages.
    /// With a passphrase this runs argon2id with the file's parameters (at most 1 GiB,
    /// 16 passes, 16 lanes: `parse` refuses more).
    pub fn unlock(&self, passphrase: Option<&Passphrase>, path: &str) -> Result<AnyKey> {
        let body = match (&self.protection, passphrase) {
            (None, _) => self.body.clone(),
            (Some(_), None) => {
                return Err(Error::PassphraseRequired {
                    path: path.to_string(),
                });
            }
            (Some(p), Some(pass)) => {
                let key = argon_key(pass, p)?;
                let cipher = XChaCha20Poly1305::new(key.as_ref().into());
                let plain = cipher
                    .decrypt(
                        XNonce::from_slice(&p.nonce),
                        Payload {
                            msg: &self.body,
                            aad: self.kind.label().as_bytes(),
                        },
                    )
                    .map_err(|_| Error::BadPassphrase {
                        path: path.to_string(),
                    })?;
                Zeroizing::new(plain)
            }
        };
        let mut kb: KeyBody = postcard::from_bytes(&body)
            .map_err(|e| malformed(path, format!("invalid key body: {e}")))?;
        let result = decode_body(&kb, self.kind, path);
        kb.zeroize_secrets();
        result
    }
}

fn decode_body(kb: &KeyBody, kind: KeyKind, path: &str) -> Result<AnyKey> {
    kb.chunker
        .validate()
        .map_err(|e| malformed(path, e.to_string()))?;
    let put = PutKey {
        repo_id: RepoId(kb.repo_id),
        public: kb.public,
        hash_key: Zeroizing::new(kb.hash_key),
        chunker: kb.chunker,
    };
    match (kind, kb.secret) {
        (KeyKind::Put, None) => Ok(AnyKey::Put(put)),
        (KeyKind::Master, Some(s)) => {
            let secret = StaticSecret::from(s);
            if PublicKey::from(&secret).to_bytes() != put.public {
                return Err(malformed(path, "secret and public key do not match"));
            }
            Ok(AnyKey::Master(MasterKey { put, secret }))
        }
        (KeyKind::Put, Some(_)) => Err(malformed(
            path,
            "a put key file must not contain a secret key",
        )),
        (KeyKind::Master, None) => Err(malformed(path, "master key file has no secret key")),
    }
}

fn argon_key(pass: &Passphrase, p: &Protection) -> Result<SymKey> {
    let params = argon2::Params::new(p.m_cost_kib, p.t_cost, p.p_cost, Some(32))
        .map_err(|e| Error::InvalidOption(format!("argon2 parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(pass.as_str().as_bytes(), &p.salt, out.as_mut())
        .map_err(|e| Error::InvalidOption(format!("argon2: {e}")))?;
    Ok(out)
}

fn armor(kind: KeyKind, body: &[u8], passphrase: Option<&Passphrase>) -> Result<Zeroizing<String>> {
    let (protection, body) = match passphrase.filter(|p| !p.is_empty()) {
        None => (None, body.to_vec()),
        Some(pass) => {
            let p = Protection {
                m_cost_kib: ARGON_M_KIB,
                t_cost: ARGON_T,
                p_cost: ARGON_P,
                salt: crypto::random_bytes(),
                nonce: crypto::random_bytes::<NONCE_LEN>(),
            };
            let key = argon_key(pass, &p)?;
            let cipher = XChaCha20Poly1305::new(key.as_ref().into());
            let ct = cipher
                .encrypt(
                    XNonce::from_slice(&p.nonce),
                    Payload {
                        msg: body,
                        aad: kind.label().as_bytes(),
                    },
                )
                .map_err(|_| Error::InvalidOption("key encryption failed".into()))?;
            (Some(p), ct)
        }
    };
    let wire = KeyFileWire {
        version: 1,
        kind: kind.code(),
        protection,
        body,
    };
    let mut raw = Zeroizing::new(
        postcard::to_allocvec(&wire).map_err(|e| Error::InvalidOption(e.to_string()))?,
    );
    let mut wire = wire;
    wire.body.zeroize();
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(raw.as_slice()));
    raw.zeroize();
    let mut out = Zeroizing::new(String::new());
    out.push_str(&format!("-----BEGIN {}-----\n", kind.label()));
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {}-----\n", kind.label()));
    Ok(out)
}

fn write_new_file(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::KeyFileExists {
                path: path.display().to_string(),
            });
        }
        Err(e) => return Err(Error::io("create key file", path, e)),
    };
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io("write key file", path, e))
}

/// The largest key file read: one is a few hundred bytes (a passphrase-protected master key
/// under 1 KiB), so anything near this is not a key file.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The bytes of the key file at `path`, refusing (as [`Error::MalformedKey`], naming the path
/// and what it is) anything that is not a regular file — a FIFO, `/dev/zero`, a directory —
/// or is larger than [`MAX_KEY_FILE_BYTES`], before reading more than that bound. The open
/// never blocks (`O_NONBLOCK`: a FIFO would otherwise wait for a writer).
fn read_key_bytes(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    use crate::files::{BoundedReadError, read_bounded};
    // `read_bounded` allocates once and never grows the buffer: no copy of the key is left
    // behind unzeroed.
    read_bounded(path, MAX_KEY_FILE_BYTES)
        .map(Zeroizing::new)
        .map_err(|e| match e {
            BoundedReadError::Io(e) => Error::io("read key file", path, e),
            BoundedReadError::NotRegular { what } => Error::MalformedKey {
                path: path.display().to_string(),
                message: format!("it is a {what}, not a regular file"),
            },
            BoundedReadError::TooBig { size, .. } => Error::MalformedKey {
                path: path.display().to_string(),
                message: format!(
                    "it is {size} bytes; a key file is a few hundred bytes (at most {MAX_KEY_FILE_BYTES} accepted)"
                ),
            },
        })
}

/// Read a key file of either kind. `passphrase` is called only if the file is protected;
/// returning `Ok(None)` there yields [`Error::PassphraseRequired`]. A path that is not a
/// regular file, or a file larger than [`MAX_KEY_FILE_BYTES`], is refused
/// ([`Error::MalformedKey`]) without being read whole.
pub fn read_key_file(
    path: &Path,
    passphrase: &mut dyn FnMut() -> Result<Option<Passphrase>>,
) -> Result<AnyKey> {
    let bytes = read_key_bytes(path)?;
    let name = path.display().to_string();
    let kf = parse_named(&bytes, &name)?;
    if kf.is_protected() {
        let pass = passphrase()?;
        kf.unlock(pass.as_ref(), &name)
    } else {
        kf.unlock(None, &name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armored_roundtrip_and_kinds() {
        let m = MasterKey::generate();
        let text = m.to_armored(None).unwrap();
        assert!(text.starts_with("-----BEGIN FERRY MASTER KEY-----\n"));
        let k = parse(text.as_bytes()).unwrap().unlock(None, "t").unwrap();
        let AnyKey::Master(m2) = k else {
            panic!("kind")
        };
        assert_eq!(m2.secret().to_bytes(), m.secret().to_bytes());
        assert_eq!(*m2.as_put().hash_key(), *m.as_put().hash_key());
        let p = m.put_key().to_armored(None).unwrap();
        let k = parse(p.as_bytes()).unwrap().unlock(None, "t").unwrap();
        assert_eq!(k.kind(), KeyKind::Put);
        let err = k.into_master("restore").unwrap_err().to_string();
        assert_eq!(err, "this is a put-only key; restore needs the master key");
    }

    #[test]
    fn debug_redacts_secrets() {
        let m = MasterKey::from_seed(&[7; 32]);
        let dbg = format!("{m:?} {:?} {:?}", m.put_key(), Passphrase::new("hunter2"));
        assert!(!dbg.contains(&hex::encode(m.secret().to_bytes())));
        assert!(!dbg.contains(&hex::encode(m.as_put().hash_key())));
        assert!(!dbg.contains("hunter2"));
        assert!(dbg.contains("<redacted>"));
    }

    #[test]
    fn passphrase_protection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let m = MasterKey::generate();
        m.write_new(&path, Some(&Passphrase::new("correct horse")))
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let err = m.write_new(&path, None).unwrap_err();
        assert!(matches!(err, Error::KeyFileExists { .. }), "{err}");
        let err = MasterKey::read(&path, &mut || Ok(Some(Passphrase::new("wrong")))).unwrap_err();
        assert!(matches!(err, Error::BadPassphrase { .. }), "{err}");
        assert!(err.to_string().contains("master.key"));
        let err = MasterKey::read(&path, &mut || Ok(None)).unwrap_err();
        assert!(matches!(err, Error::PassphraseRequired { .. }), "{err}");
        let m2 =
            MasterKey::read(&path, &mut || Ok(Some(Passphrase::new("correct horse")))).unwrap();
        assert_eq!(m2.repo_id(), m.repo_id());
        // A put key file is refused where a master key is needed, and vice versa.
        let put_path = dir.path().join("put.key");
        m.put_key().write_new(&put_path, None).unwrap();
        let err = MasterKey::read(&put_path, &mut || Ok(None)).unwrap_err();
        assert!(matches!(err, Error::PutOnlyKey { .. }), "{err}");
        let err =
            PutKey::read(&path, &mut || Ok(Some(Passphrase::new("correct horse")))).unwrap_err();
        assert!(matches!(err, Error::WrongKeyKind { .. }), "{err}");
    }

    /// Run `f` on another thread; fail (instead of hanging) if it takes over 10 s.
    fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("reading the key file did not finish within 10 s")
    }

    #[test]
    fn key_files_that_are_not_small_regular_files_are_refused_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.key");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let big = dir.path().join("big.key");
        std::fs::write(&big, vec![b'A'; 1 << 20]).unwrap();
        let subdir = dir.path().join("a-directory");
        std::fs::create_dir(&subdir).unwrap();
        for (path, reason) in [
            (
                std::path::PathBuf::from("/dev/zero"),
                "is a character device, not a regular file",
            ),
            (subdir, "is a directory, not a regular file"),
            (fifo, "is a FIFO, not a regular file"),
            (big, "is 1048576 bytes"),
        ] {
            let p = path.clone();
            let err = within_10s(move || {
                read_key_file(&p, &mut || panic!("no passphrase is asked")).map(|_| ())
            })
            .unwrap_err();
            assert!(matches!(err, Error::MalformedKey { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(reason), "{msg}");
        }
        // A key file at the bound's edge is still read (and refused only as not a key).
        let edge = dir.path().join("edge.key");
        std::fs::write(&edge, vec![b'A'; MAX_KEY_FILE_BYTES as usize]).unwrap();
        let err = read_key_file(&edge, &mut || Ok(None)).unwrap_err();
        assert!(matches!(err, Error::MalformedKey { .. }), "{err}");
        assert!(!err.to_string().contains("bytes;"), "{err}");
        // A normal key file still works.
        let good = dir.path().join("good.key");
        let m = MasterKey::generate();
        m.write_new(&good, None).unwrap();
        let back = MasterKey::read(&good, &mut || Ok(None)).unwrap();
        assert_eq!(back.repo_id(), m.repo_id());
    }

    #[test]
    fn malformed_inputs_are_errors() {
        for bad in [
            &b""[..],
            b"hello",
            b"-----BEGIN FERRY PUT KEY-----\n!!!\n-----END FERRY PUT KEY-----\n",
            b"-----BEGIN FERRY PUT KEY-----\nAAAA\n",
            b"-----BEGIN FERRY PUT KEY-----\nAAAA\n-----END FERRY PUT KEY-----\n",
            b"\xff\xfe",
        ] {
            let err = parse(bad).and_then(|k| k.unlock(None, "x")).unwrap_err();
            assert!(matches!(err, Error::MalformedKey { .. }), "{err}");
        }
        // Master armor around a put body is refused.
        let p = MasterKey::generate().put_key().to_armored(None).unwrap();
        let swapped = p.replace("PUT KEY", "MASTER KEY");
        assert!(matches!(
            parse(swapped.as_bytes()),
            Err(Error::MalformedKey { .. })
        ));
    }
}
