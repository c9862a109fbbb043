//! Primitives: X25519 + HKDF-SHA256 key agreement, XChaCha20-Poly1305, the compression
//! flag byte, keyed BLAKE3 blob ids, and sealed single objects (index, snapshot).
//!
//! Sealed object layout: `header(kind) | ephemeral X25519 public (32) | nonce (24) | ciphertext`.
//! The symmetric key is `HKDF-SHA256(salt = eph_pub || recipient_pub, ikm = X25519(eph, recipient),
//! info = "ferry v1 <kind>")`. The AAD is the 6-byte header. The plaintext starts with a
//! compression flag byte (0 raw, 1 zstd).

use crate::error::{Error, Result};
use crate::format::{self, HEADER_LEN, ObjectKind};
use crate::ids::BlobId;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

pub(crate) const NONCE_LEN: usize = 24;
pub(crate) const TAG_LEN: usize = 16;
pub(crate) const PUB_LEN: usize = 32;

/// Compression flag: the rest is stored raw.
pub(crate) const FLAG_RAW: u8 = 0;
/// Compression flag: the rest is a zstd frame.
pub(crate) const FLAG_ZSTD: u8 = 1;

/// A 256-bit symmetric key (zeroized on drop).
pub(crate) type SymKey = Zeroizing<[u8; 32]>;

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

/// Derive the symmetric key for (ephemeral public, recipient public, shared secret).
fn hkdf_key(shared: &[u8; 32], eph_pub: &[u8; 32], recipient: &[u8; 32], info: &[u8]) -> SymKey {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(eph_pub);
    salt[32..].copy_from_slice(recipient);
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&salt), shared);
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hk.expand(info, out.as_mut());
    out
}

/// Sender side: a fresh ephemeral key pair and the symmetric key it shares with `recipient`.
pub(crate) fn new_sender_key(recipient: &[u8; 32], info: &[u8]) -> ([u8; 32], SymKey) {
    let eph = StaticSecret::random_from_rng(OsRng);
    let eph_pub = PublicKey::from(&eph).to_bytes();
    let shared = eph.diffie_hellman(&PublicKey::from(*recipient));
    let key = hkdf_key(shared.as_bytes(), &eph_pub, recipient, info);
    (eph_pub, key)
}

/// Recipient side: the symmetric key for an object whose ephemeral public key is `eph_pub`.
/// `None` if the ephemeral key is a low-order point (never produced by Ferry).
pub(crate) fn recipient_key(
    secret: &StaticSecret,
    eph_pub: &[u8; 32],
    info: &[u8],
) -> Option<SymKey> {
    let shared = secret.diffie_hellman(&PublicKey::from(*eph_pub));
    if !shared.was_contributory() {
        return None;
    }
    let recipient = PublicKey::from(secret).to_bytes();
    Some(hkdf_key(shared.as_bytes(), eph_pub, &recipient, info))
}

/// Encrypt `plaintext` and prepend a random nonce: returns `nonce | ciphertext | tag`.
pub(crate) fn seal(key: &SymKey, aad: &[u8], plaintext: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.resize(NONCE_LEN, 0);
    out.extend_from_slice(&plaintext);
    drop(plaintext);
    seal_prefixed(key, aad, out)
}

/// Encrypt a record that already has `NONCE_LEN` placeholder bytes in front, in place:
/// returns `nonce | ciphertext | tag` without copying the payload.
pub(crate) fn seal_prefixed(key: &SymKey, aad: &[u8], mut record: Vec<u8>) -> Vec<u8> {
    let nonce: [u8; NONCE_LEN] = random_bytes();
    record[..NONCE_LEN].copy_from_slice(&nonce);
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    // Encryption of an in-memory buffer cannot fail (length limits are far above ours).
    if let Ok(tag) =
        cipher.encrypt_in_place_detached(XNonce::from_slice(&nonce), aad, &mut record[NONCE_LEN..])
    {
        record.extend_from_slice(&tag);
    }
    record
}

/// Decrypt `nonce | ciphertext | tag`. `None` if too short or authentication fails.
pub(crate) fn open(key: &SymKey, aad: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, rest) = data.split_at(NONCE_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let mut buf = ct.to_vec();
    cipher
        .decrypt_in_place_detached(XNonce::from_slice(nonce), aad, &mut buf, tag.into())
        .ok()?;
    Some(buf)
}

/// Keyed BLAKE3 of `data`.
pub(crate) fn blob_id(hash_key: &[u8; 32], data: &[u8]) -> BlobId {
    BlobId(*blake3::keyed_hash(hash_key, data).as_bytes())
}

/// Turn `buf` = `prefix` reserved bytes, one flag byte, then the data, into the record
/// plaintext: zstd-compressed if that makes it smaller, else the data raw (no copy).
pub(crate) fn compress_in_place(
    compressor: Option<&mut zstd::bulk::Compressor<'static>>,
    mut buf: Vec<u8>,
    prefix: usize,
) -> Vec<u8> {
    let data_len = buf.len().saturating_sub(prefix + 1);
    if let Some(c) = compressor
        && data_len > 0
        && !looks_incompressible(c, &buf[prefix + 1..])
    {
        let bound = zstd::zstd_safe::compress_bound(data_len);
        let mut out: Vec<u8> = Vec::with_capacity(prefix + 1 + bound + TAG_LEN);
        out.resize(prefix + 1, 0);
        let mut cur = std::io::Cursor::new(&mut out);
        cur.set_position((prefix + 1) as u64);
        if let Ok(n) = c.compress_to_buffer(&buf[prefix + 1..], &mut cur)
            && n < data_len
        {
            out.truncate(prefix + 1 + n);
            out[prefix] = FLAG_ZSTD;
            return out;
        }
    }
    buf[prefix] = FLAG_RAW;
    buf
}

/// For large inputs, compress a 64 KiB sample from the middle first: if even that does not
/// shrink by 2 %, the data (media, archives, encrypted files) is stored raw without
/// spending a full zstd pass on it.
fn looks_incompressible(c: &mut zstd::bulk::Compressor<'static>, data: &[u8]) -> bool {
    const SAMPLE: usize = 64 * 1024;
    if data.len() < 4 * SAMPLE {
        return false;
    }
    let mid = data.len() / 2 - SAMPLE / 2;
    match c.compress(&data[mid..mid + SAMPLE]) {
        Ok(z) => z.len() * 100 > SAMPLE * 98,
        Err(_) => false,
    }
}

/// `flag | payload`: zstd at `level` if that makes it smaller, else raw.
pub(crate) fn compress_with(
    compressor: Option<&mut zstd::bulk::Compressor<'static>>,
    data: &[u8],
    prefix: usize,
) -> Vec<u8> {
    if let Some(c) = compressor
        && let Ok(z) = c.compress(data)
        && z.len() < data.len()
    {
        let mut out = Vec::with_capacity(prefix + 1 + z.len() + TAG_LEN);
        out.resize(prefix, 0);
        out.push(FLAG_ZSTD);
        out.extend_from_slice(&z);
        return out;
    }
    let mut out = Vec::with_capacity(prefix + 1 + data.len() + TAG_LEN);
    out.resize(prefix, 0);
    out.push(FLAG_RAW);
    out.extend_from_slice(data);
    out
}

/// Undo [`compress_with`], refusing output larger than `limit` bytes.
pub(crate) fn decompress(payload: &[u8], limit: usize) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let Some((&flag, rest)) = payload.split_first() else {
        return Err("empty payload (no compression flag)".into());
    };
    match flag {
        FLAG_RAW => {
            if rest.len() > limit {
                return Err(format!(
                    "payload of {} bytes exceeds limit {limit}",
                    rest.len()
                ));
            }
            Ok(rest.to_vec())
        }
        FLAG_ZSTD => {
            let dec =
                zstd::stream::read::Decoder::with_buffer(rest).map_err(|e| format!("zstd: {e}"))?;
            let mut out = Vec::new();
            dec.take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("zstd: {e}"))?;
            if out.len() > limit {
                return Err(format!("decompressed payload exceeds limit {limit}"));
            }
            Ok(out)
        }
        other => Err(format!("unknown compression flag {other}")),
    }
}

fn object_info(kind: ObjectKind) -> Vec<u8> {
    format!("ferry v1 {}", kind.as_str()).into_bytes()
}

/// Encrypt `payload` (compressed with zstd level 3 when that helps) to `recipient` as a
/// complete object of `kind`. Returns the object bytes; its name is `format::object_name`.
pub(crate) fn seal_object(kind: ObjectKind, recipient: &[u8; 32], payload: &[u8]) -> Vec<u8> {
    let mut comp = zstd::bulk::Compressor::new(3).ok();
    let plaintext = compress_with(comp.as_mut(), payload, 0);
    let (eph_pub, key) = new_sender_key(recipient, &object_info(kind));
    let header = format::header(kind);
    let sealed = seal(&key, &header, plaintext);
    let mut out = Vec::with_capacity(HEADER_LEN + PUB_LEN + sealed.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&eph_pub);
    out.extend_from_slice(&sealed);
    out
}

/// Largest plaintext of a sealed object (index, snapshot) this build accepts.
pub(crate) const MAX_OBJECT_PLAINTEXT: usize = 1 << 30;

/// Decrypt a sealed object of `kind`. `object` names it in errors (e.g. `index/ab12…`).
pub(crate) fn open_object(
    kind: ObjectKind,
    secret: &StaticSecret,
    bytes: &[u8],
    object: &str,
) -> Result<Vec<u8>> {
    format::check_header(bytes, kind).map_err(|e| Error::corrupt(object, e.to_string()))?;
    let rest = &bytes[HEADER_LEN..];
    if rest.len() < PUB_LEN + NONCE_LEN + TAG_LEN {
        return Err(Error::corrupt(object, "too short for an encrypted object"));
    }
    let mut eph = [0u8; 32];
    eph.copy_from_slice(&rest[..PUB_LEN]);
    let key = recipient_key(secret, &eph, &object_info(kind))
        .ok_or_else(|| Error::corrupt(object, "invalid ephemeral public key"))?;
    let plain = open(&key, &bytes[..HEADER_LEN], &rest[PUB_LEN..]).ok_or_else(|| {
        Error::corrupt(
            object,
            "decryption failed (damaged, or encrypted to a different key)",
        )
    })?;
    decompress(&plain, MAX_OBJECT_PLAINTEXT).map_err(|m| Error::corrupt(object, m))
}
