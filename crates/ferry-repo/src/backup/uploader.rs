//! The uploader: streams each pack's bytes to storage as they are sealed, names the pack by
//! the SHA-256 of its bytes, and a committer thread makes it durable and records it in the
//! cache.

use crate::cache::{Cache, lock};
use crate::error::{Error, Result};
use crate::format::{self, ObjectKind};
use crate::objects::{BlobEntry, IndexPack};
use crate::progress::Progress;
use crate::storage::Storage;
use crossbeam_channel::{Receiver, Sender, bounded};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub(super) struct WriterStats {
    pub(super) packs: u64,
    pub(super) stored_bytes: u64,
}

pub(super) enum Up {
    Begin([u8; 32]),
    Record(Vec<u8>),
    Finish {
        ephemeral: [u8; 32],
        blobs: Vec<BlobEntry>,
        trailer: Vec<u8>,
    },
}

/// Streams pack bytes to storage, computes the SHA-256 name, commits, records in the cache.
pub(super) struct Uploader {
    pub(super) storage: Arc<dyn Storage>,
    pub(super) cache: Arc<Mutex<Cache>>,
    pub(super) progress: Arc<dyn Progress>,
    pub(super) abort: Arc<AtomicBool>,
}

enum Sink {
    Stream(Box<dyn crate::storage::PendingPut>),
    Buffer(Vec<u8>),
}

impl Sink {
    fn write(&mut self, b: &[u8]) -> Result<()> {
        match self {
            Sink::Stream(p) => p.write(b).map_err(Error::from),
            Sink::Buffer(v) => {
                v.extend_from_slice(b);
                Ok(())
            }
        }
    }
}

struct Commit {
    sink: Sink,
    name: String,
    size: u64,
    ephemeral: [u8; 32],
    blobs: Vec<BlobEntry>,
}

impl Uploader {
    /// Writes pack bytes as they come; a committer thread makes each finished pack durable
    /// (fsync, link under its name) and records it in the cache, so the next pack is written
    /// while the previous one is synced.
    pub(super) fn run(self, rx: Receiver<Up>) -> Result<WriterStats> {
        let (ctx, crx) = bounded::<Commit>(1);
        let committer = {
            let storage = self.storage.clone();
            let cache = self.cache.clone();
            let progress = self.progress.clone();
            let abort = self.abort.clone();
            std::thread::Builder::new()
                .name("ferry-pack-commit".into())
                .spawn(move || commit_loop(crx, storage, cache, progress, abort))
                .map_err(|e| Error::Pipeline(format!("spawn committer: {e}")))?
        };
        let res = self.upload_loop(rx, &ctx);
        drop(ctx);
        let stats = committer
            .join()
            .map_err(|_| Error::Pipeline("pack committer panicked".into()))??;
        res?;
        Ok(stats)
    }

    fn upload_loop(&self, rx: Receiver<Up>, commits: &Sender<Commit>) -> Result<()> {
        use sha2::Digest;
        let mut cur: Option<(Sink, sha2::Sha256, u64)> = None;
        for msg in rx {
            match msg {
                Up::Begin(eph) => {
                    let mut sink = match self.storage.begin_put(ObjectKind::Pack) {
                        Some(r) => Sink::Stream(r?),
                        None => Sink::Buffer(Vec::new()),
                    };
                    let mut h = sha2::Sha256::new();
                    let header = format::header(ObjectKind::Pack);
                    sink.write(&header)?;
                    sink.write(&eph)?;
                    h.update(header);
                    h.update(eph);
                    cur = Some((sink, h, (header.len() + eph.len()) as u64));
                }
                Up::Record(r) => {
                    if let Some((sink, h, n)) = cur.as_mut() {
                        sink.write(&r)?;
                        h.update(&r);
                        *n += r.len() as u64;
                    }
                }
                Up::Finish {
                    ephemeral,
                    blobs,
                    trailer,
                } => {
                    let Some((mut sink, mut h, n)) = cur.take() else {
                        continue;
                    };
                    sink.write(&trailer)?;
                    h.update(&trailer);
                    let c = Commit {
                        sink,
                        name: hex::encode(h.finalize()),
                        size: n + trailer.len() as u64,
                        ephemeral,
                        blobs,
                    };
                    if commits.send(c).is_err() {
                        return Err(Error::Pipeline("pack committer stopped".into()));
                    }
                }
            }
        }
        Ok(())
    }
}

fn commit_loop(
    rx: Receiver<Commit>,
    storage: Arc<dyn Storage>,
    cache: Arc<Mutex<Cache>>,
    progress: Arc<dyn Progress>,
    abort: Arc<AtomicBool>,
) -> Result<WriterStats> {
    let mut stats = WriterStats::default();
    for c in rx {
        if abort.load(Ordering::Relaxed) {
            return Ok(stats);
        }
        match c.sink {
            Sink::Stream(p) => p.commit(&c.name)?,
            Sink::Buffer(v) => storage.put_if_absent(ObjectKind::Pack, &c.name, &v)?,
        };
        lock(&cache).record_pack(&IndexPack {
            pack: c.name.clone(),
            ephemeral: c.ephemeral,
            blobs: c.blobs,
        })?;
        stats.packs += 1;
        progress.pack_written(&c.name, c.size);
    }
    Ok(stats)
}
