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

/// Decrypt `nonce | ciphertext | tag` where it lies: the plaintext is the returned part of
/// `data` (restore decrypts each blob inside its fetched range, with no copy). `None` if too
/// short or authentication fails; `data` is then left undefined.
pub(crate) fn open_in_place<'a>(key: &SymKey, aad: &[u8], data: &'a mut [u8]) -> Option<&'a [u8]> {
    if data.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, rest) = data.split_at_mut(NONCE_LEN);
    let (ct, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    cipher
        .decrypt_in_place_detached(XNonce::from_slice(nonce), aad, ct, (&*tag).into())
        .ok()?;
    Some(ct)
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

/// Undo [`compress_with`] without allocating: a raw payload is answered as the slice of
/// `payload` it is, a zstd frame is decompressed into `out` (its old content dropped) with
/// `dctx`; both reused across calls, so restore's workers spend no allocation on a blob
/// (without a context, which only a failed allocation leaves, the frame is streamed).
/// Output larger than `limit` bytes is refused, as [`decompress`] does. A frame that states
/// its size (Ferry's always do) is decompressed in one call into exactly that much room; one
/// that does not is streamed.
pub(crate) fn decompress_into<'a>(
    payload: &'a [u8],
    limit: usize,
    dctx: Option<&mut zstd::bulk::Decompressor<'static>>,
    out: &'a mut Vec<u8>,
) -> std::result::Result<&'a [u8], String> {
    out.clear();
    let stated = match payload.split_first() {
        Some((&FLAG_RAW, rest)) if rest.len() <= limit => return Ok(rest),
        Some((&FLAG_ZSTD, rest)) => zstd::zstd_safe::get_frame_content_size(rest)
            .ok()
            .flatten()
            .and_then(|n| usize::try_from(n).ok())
            .map(|n| (n, rest)),
        _ => None,
    };
    match (stated, dctx) {
        (Some((n, _)), _) if n > limit => {
            Err(format!("decompressed payload exceeds limit {limit}"))
        }
        (Some((n, rest)), Some(dctx)) => {
            out.reserve(n);
            dctx.decompress_to_buffer(rest, out)
                .map_err(|e| format!("zstd: {e}"))?;
            Ok(out)
        }
        // Everything else (a frame of unstated size, an oversized raw payload, an unknown
        // flag) takes the general path, which also words the errors.
        _ => {
            *out = decompress(payload, limit)?;
            Ok(out)
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

    use super::*;

    fn log_text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| {
                format!(
                    "2026-12-03T19:{:02}:00Z host{} sshd: session {i} opened\n",
                    i % 60,
                    i % 7
                )
            })
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn decompress_into_answers_what_decompress_does_reusing_its_buffer() {
        let mut dctx = zstd::bulk::Decompressor::new().unwrap();
        let mut out = Vec::new();
        let text = log_text(20_000);
        let mut comp = zstd::bulk::Compressor::new(3).unwrap();
        // Ferry's own frames state their size: decompressed in one call.
        let framed = compress_with(Some(&mut comp), &text, 0);
        assert_eq!(framed[0], FLAG_ZSTD);
        assert!(
            zstd::zstd_safe::get_frame_content_size(&framed[1..])
                .unwrap()
                .is_some()
        );
        let got = decompress_into(&framed, text.len(), Some(&mut dctx), &mut out).unwrap();
        assert_eq!(got, &text[..]);
        // A frame of unstated size (a streaming encoder's) takes the streaming path.
        let mut streamed = vec![FLAG_ZSTD];
        let mut enc = zstd::stream::write::Encoder::new(&mut streamed, 3).unwrap();
        std::io::Write::write_all(&mut enc, &text[..5000]).unwrap();
        enc.finish().unwrap();
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&streamed[1..]).unwrap(),
            None
        );
        let got = decompress_into(&streamed, text.len(), Some(&mut dctx), &mut out).unwrap();
        assert_eq!(got, &text[..5000], "the buffer's earlier content is gone");
        // A raw payload is answered as itself, without a copy.
        let raw = compress_with(None, b"abc", 0);
        let got = decompress_into(&raw, 3, Some(&mut dctx), &mut out).unwrap();
        assert_eq!(got, b"abc");
        assert!(std::ptr::eq(got.as_ptr(), raw[1..].as_ptr()));
        // The same refusals as decompress, worded the same.
        for (payload, limit) in [
            (framed.clone(), text.len() - 1),
            (streamed.clone(), 4999),
            (raw.clone(), 2),
            (vec![7, 1, 2], 10),
            (vec![], 10),
        ] {
            let want = decompress(&payload, limit).unwrap_err();
            for d in [Some(&mut dctx), None] {
                let got = decompress_into(&payload, limit, d, &mut out).unwrap_err();
                assert_eq!(got, want, "payload {:?}…", &payload[..payload.len().min(4)]);
            }
        }
        // A frame that states less than it holds is refused by zstd, not written past.
        let mut lying = framed.clone();
        let stated = zstd::zstd_safe::get_frame_content_size(&lying[1..])
            .unwrap()
            .unwrap();
        let at = lying[1..]
            .windows(4)
            .position(|w| u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]])) == stated)
            .unwrap();
        lying[1 + at..1 + at + 4].copy_from_slice(&100u32.to_le_bytes());
        assert!(decompress_into(&lying, text.len(), Some(&mut dctx), &mut out).is_err());
        // Without a context every frame is streamed, to the same answer.
        let got = decompress_into(&framed, text.len(), None, &mut out).unwrap();
        assert_eq!(got, &text[..]);
    }

    #[test]
    fn open_in_place_opens_what_seal_sealed_and_nothing_else() {
        let key: SymKey = Zeroizing::new([9u8; 32]);
        let sealed = seal(&key, b"aad", b"hello blob".to_vec());
        let mut buf = sealed.clone();
        assert_eq!(
            open_in_place(&key, b"aad", &mut buf).unwrap(),
            b"hello blob"
        );
        assert_eq!(open(&key, b"aad", &sealed).unwrap(), b"hello blob");
        let mut buf = sealed.clone();
        assert!(open_in_place(&key, b"other aad", &mut buf).is_none());
        let mut buf = sealed.clone();
        let last = buf.len() - 1;
        buf[last] ^= 1;
        assert!(open_in_place(&key, b"aad", &mut buf).is_none());
        assert!(open_in_place(&key, b"aad", &mut [0u8; NONCE_LEN + TAG_LEN - 1]).is_none());
    }
}
