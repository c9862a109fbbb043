//! The pack writer: the [`Pipeline`] of compression workers (zstd) and the thread that seals
//! compressed blobs into packs (each blob encrypted on its own under the pack's key, then the
//! trailer), handing the bytes to the [`Uploader`].

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
use std::thread::JoinHandle;

/// One new blob for the pipeline: `data` is [`with_prefix`]ed, `raw_len` its plain length.
pub(super) struct Work {
    pub(super) id: BlobId,
    pub(super) kind: BlobKind,
    pub(super) raw_len: u32,
    pub(super) data: Vec<u8>,
}

struct Compressed {
    id: BlobId,
    kind: BlobKind,
    raw_len: u32,
    /// NONCE_LEN placeholder bytes, then flag | payload.
    record: Vec<u8>,
}

/// `NONCE_LEN + 1` reserved bytes (nonce, compression flag), then `data`, with room for the tag.
/// The threads behind a session: N compression workers, then one pack writer (which runs the
/// uploader and its committer). Channels are bounded, so memory stays at a few chunks.
/// Dropping a pipeline that was not shut down aborts it: committed packs stay, the open pack
/// is abandoned.
pub(super) struct Pipeline {
    work_tx: Option<Sender<Work>>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<Result<WriterStats>>>,
    abort: Arc<AtomicBool>,
}

/// What a [`Pipeline`] writes to and with.
pub(super) struct PipelineConfig {
    pub(super) storage: Arc<dyn Storage>,
    /// The repository's public key (each pack is sealed to it).
    pub(super) public: [u8; 32],
    /// Pack target size in bytes.
    pub(super) pack_size: usize,
    /// Compression worker threads (0 = number of CPUs).
    pub(super) workers: usize,
    pub(super) compression_level: i32,
    pub(super) cache: Arc<Mutex<Cache>>,
    pub(super) progress: Arc<dyn Progress>,
}

impl Pipeline {
    /// Spawn the workers and the pack writer.
    pub(super) fn start(cfg: PipelineConfig) -> Result<Pipeline> {
        let workers_n = if cfg.workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        } else {
            cfg.workers
        }
        .clamp(1, 64);
        let (work_tx, work_rx) = bounded::<Work>(workers_n + 1);
        let (write_tx, write_rx) = bounded::<Compressed>(workers_n + 1);
        let abort = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for i in 0..workers_n {
            let rx = work_rx.clone();
            let tx = write_tx.clone();
            let level = cfg.compression_level;
            let h = std::thread::Builder::new()
                .name(format!("ferry-compress-{i}"))
                .spawn(move || compress_worker(rx, tx, level))
                .map_err(|e| Error::Pipeline(format!("spawn worker: {e}")))?;
            workers.push(h);
        }
        drop(write_tx);
        let w = PackWriter {
            storage: cfg.storage,
            public: cfg.public,
            target: cfg.pack_size,
            cache: cfg.cache,
            progress: cfg.progress,
            abort: abort.clone(),
        };
        let writer = std::thread::Builder::new()
            .name("ferry-pack-writer".into())
            .spawn(move || w.run(write_rx))
            .map_err(|e| Error::Pipeline(format!("spawn pack writer: {e}")))?;
        Ok(Pipeline {
            work_tx: Some(work_tx),
            workers,
            writer: Some(writer),
            abort,
        })
    }

    /// Queue a new blob. If the pipeline has stopped, it is shut down and its error returned.
    pub(super) fn send(&mut self, work: Work) -> Result<()> {
        let tx = self
            .work_tx
            .as_ref()
            .ok_or_else(|| Error::Pipeline("session already closed".into()))?;
        if tx.send(work).is_err() {
            // The writer stopped: report its error.
            return Err(self
                .shutdown()
                .err()
                .unwrap_or_else(|| Error::Pipeline("pack writer stopped".into())));
        }
        Ok(())
    }

    /// Close the pipeline and wait for it; returns the writer's result.
    pub(super) fn shutdown(&mut self) -> Result<WriterStats> {
        self.work_tx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        match self.writer.take() {
            Some(h) => h
                .join()
                .map_err(|_| Error::Pipeline("pack writer panicked".into()))?,
            None => Err(Error::Pipeline("pipeline already shut down".into())),
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if self.writer.is_some() {
            self.abort.store(true, Ordering::SeqCst);
            let _ = self.shutdown();
        }
    }
}

pub(super) fn with_prefix(data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(NONCE_LEN + 1 + data.len() + crypto::TAG_LEN);
    v.resize(NONCE_LEN + 1, 0);
    v.extend_from_slice(data);
    v
}

fn compress_worker(rx: Receiver<Work>, tx: Sender<Compressed>, level: i32) {
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
struct PackWriter {
    storage: Arc<dyn Storage>,
    public: [u8; 32],
    target: usize,
    cache: Arc<Mutex<Cache>>,
    progress: Arc<dyn Progress>,
    abort: Arc<AtomicBool>,
}

struct OpenPack {
    size: usize,
    ephemeral: [u8; 32],
    key: crypto::SymKey,
    blobs: Vec<BlobEntry>,
}

impl PackWriter {
    fn run(self, rx: Receiver<Compressed>) -> Result<WriterStats> {
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
