//! The pack writer: compression workers (zstd) and the thread that seals compressed blobs
//! into packs (each blob encrypted on its own under the pack's key, then the trailer).

use super::uploader::{Up, Uploader, WriterStats};
use crate::cache::Cache;
use crate::crypto::{self, NONCE_LEN};
use crate::error::{Error, Result};
use crate::ids::{BlobId, BlobKind};
use crate::objects::{BlobEntry, PACK_INFO, TRAILER_AAD};
use crate::progress::Progress;
use crate::storage::Storage;
use crossbeam_channel::{Receiver, Sender, bounded};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub(super) struct Work {
    pub(super) id: BlobId,
    pub(super) kind: BlobKind,
    pub(super) raw_len: u32,
    pub(super) data: Vec<u8>,
}

pub(super) struct Compressed {
    id: BlobId,
    kind: BlobKind,
    raw_len: u32,
    /// NONCE_LEN placeholder bytes, then flag | payload.
    record: Vec<u8>,
}

/// `NONCE_LEN + 1` reserved bytes (nonce, compression flag), then `data`, with room for the tag.
pub(super) fn with_prefix(data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(NONCE_LEN + 1 + data.len() + crypto::TAG_LEN);
    v.resize(NONCE_LEN + 1, 0);
    v.extend_from_slice(data);
    v
}

pub(super) fn compress_worker(rx: Receiver<Work>, tx: Sender<Compressed>, level: i32) {
    let mut comp = zstd::bulk::Compressor::new(level).ok();
    for w in rx {
        let record = crypto::compress_in_place(comp.as_mut(), w.data, NONCE_LEN);
        if tx
            .send(Compressed {
                id: w.id,
                kind: w.kind,
                raw_len: w.raw_len,
                record,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Seals compressed blobs into packs (encryption under the current pack's key, offsets,
/// trailer); the [`Uploader`] thread streams the bytes to storage and names the pack.
pub(super) struct PackWriter {
    pub(super) storage: Arc<dyn Storage>,
    pub(super) public: [u8; 32],
    pub(super) target: usize,
    pub(super) cache: Arc<Mutex<Cache>>,
    pub(super) progress: Arc<dyn Progress>,
    pub(super) abort: Arc<AtomicBool>,
}

struct OpenPack {
    size: usize,
    ephemeral: [u8; 32],
    key: crypto::SymKey,
    blobs: Vec<BlobEntry>,
}

impl PackWriter {
    pub(super) fn run(self, rx: Receiver<Compressed>) -> Result<WriterStats> {
        let (up_tx, up_rx) = bounded::<Up>(4);
        let up = Uploader {
            storage: self.storage.clone(),
            cache: self.cache.clone(),
            progress: self.progress.clone(),
            abort: self.abort.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("ferry-pack-upload".into())
            .spawn(move || up.run(up_rx))
            .map_err(|e| Error::Pipeline(format!("spawn uploader: {e}")))?;
        let stored = self.seal_loop(rx, &up_tx);
        drop(up_tx);
        let up_result = handle
            .join()
            .map_err(|_| Error::Pipeline("pack uploader panicked".into()))?;
        let mut stats = up_result?;
        stats.stored_bytes = stored?;
        Ok(stats)
    }

    /// Returns the number of sealed bytes, or why it stopped.
    fn seal_loop(&self, rx: Receiver<Compressed>, up: &Sender<Up>) -> Result<u64> {
        let closed = || Error::Pipeline("pack uploader stopped".into());
        let mut stored = 0u64;
        let mut open: Option<OpenPack> = None;
        for c in rx {
            if self.abort.load(Ordering::Relaxed) {
                return Ok(stored);
            }
            let p = match open.as_mut() {
                Some(p) => p,
                None => {
                    let (ephemeral, key) = crypto::new_sender_key(&self.public, PACK_INFO);
                    up.send(Up::Begin(ephemeral)).map_err(|_| closed())?;
                    open.insert(OpenPack {
                        size: crate::format::HEADER_LEN + crypto::PUB_LEN,
                        ephemeral,
                        key,
                        blobs: Vec::new(),
                    })
                }
            };
            let record = crypto::seal_prefixed(&p.key, &c.id.0, c.record);
            let offset =
                u32::try_from(p.size).map_err(|_| Error::Pipeline("pack too large".into()))?;
            p.blobs.push(BlobEntry {
                id: c.id,
                kind: c.kind,
                offset,
                length: record.len() as u32,
                raw_length: c.raw_len,
            });
            p.size += record.len();
            stored += record.len() as u64;
            up.send(Up::Record(record)).map_err(|_| closed())?;
            if p.size >= self.target
                && let Some(full) = open.take()
            {
                self.finish_pack(full, up)?;
            }
        }
        if self.abort.load(Ordering::Relaxed) {
            return Ok(stored);
        }
        if let Some(p) = open.take() {
            self.finish_pack(p, up)?;
        }
        Ok(stored)
    }

    fn finish_pack(&self, p: OpenPack, up: &Sender<Up>) -> Result<()> {
        let trailer = crate::objects::PackTrailer { blobs: p.blobs }.to_bytes();
        let mut comp = zstd::bulk::Compressor::new(3).ok();
        let plain = crypto::compress_with(comp.as_mut(), &trailer, 0);
        let mut sealed = crypto::seal(&p.key, TRAILER_AAD, plain);
        let len = sealed.len() as u32;
        sealed.extend_from_slice(&len.to_le_bytes());
        let blobs = crate::objects::PackTrailer::parse(&trailer)?.blobs;
        up.send(Up::Finish {
            ephemeral: p.ephemeral,
            blobs,
            trailer: sealed,
        })
        .map_err(|_| Error::Pipeline("pack uploader stopped".into()))
    }
}
