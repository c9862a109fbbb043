//! The parallel pack reader that restore and `check --read-data` share.
//!
//! Restore plans which blobs it needs, [`coalesce`] turns them into few large byte ranges per
//! pack (neighbouring blobs merged when the gap between them is small, one range over the
//! whole needed span when most of it is needed), and [`run`] fetches the ranges with
//! [`FetchOptions::parallel`] worker threads. Every worker first takes the bytes it is about
//! to fetch from one budget ([`FetchOptions::max_in_flight`]) and gives them back only after
//! the range is decrypted and handed on, so memory stays bounded whatever the snapshot size:
//! at most the budget in fetched bytes (a single range larger than the budget — one blob or,
//! for `check`, one pack — waits until nothing else is in flight, then goes alone).
//!
//! [`Storage`](crate::storage::Storage) is synchronous and `Sync`; the workers call it from
//! their own threads, so any backend that can serve calls from several threads at once gets
//! that many requests in flight.

use crate::error::Result;
use crate::objects::BlobEntry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

/// Requests in flight by default: enough to hide S3's 20–50 ms first-byte latency behind
/// each other on a home link of 50–500 Mbit/s (eight 1 MiB ranges arrive in the time one
/// round trip plus the transfer take), without more connections than a home router and
/// two cores handle well. restic uses 5 connections for S3 by default.
pub const DEFAULT_PARALLEL: usize = 8;

/// Fetched bytes held at once by default (ranges being fetched, decrypted or written).
pub const DEFAULT_MAX_IN_FLIGHT: u64 = 64 * 1024 * 1024;

/// Two needed blobs of one pack closer than this are fetched in one request, the gap's
/// bytes thrown away: 1 MiB costs ~10 ms at 100 Mbit/s, less than a round trip to S3.
pub const MAX_GAP: u64 = 1024 * 1024;

/// The largest range one request asks for (a default pack is 32 MiB: one request each).
pub const MAX_REQUEST: u64 = 32 * 1024 * 1024;

/// How many requests run at once and how many fetched bytes may be held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchOptions {
    /// Worker threads, each with at most one request in flight (at least 1).
    pub parallel: usize,
    /// Fetched bytes held at once (at least one range is always allowed).
    pub max_in_flight: u64,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            parallel: DEFAULT_PARALLEL,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

impl FetchOptions {
    /// `parallel` and `max_in_flight`, where 0 means the default.
    pub fn new(parallel: usize, max_in_flight: u64) -> FetchOptions {
        let d = FetchOptions::default();
        FetchOptions {
            parallel: if parallel == 0 { d.parallel } else { parallel },
            max_in_flight: if max_in_flight == 0 {
                d.max_in_flight
            } else {
                max_in_flight
            },
        }
    }

    /// The largest range [`coalesce`] should build: [`MAX_REQUEST`], but never more than
    /// the budget, so that several requests can be in flight.
    pub fn max_request(&self) -> u64 {
        MAX_REQUEST.min((self.max_in_flight / 2).max(1))
    }
}

/// One request: `len` bytes at `start` of the pack numbered `pack` (the [`Reader`]'s pack
/// table), holding `blobs` (sorted by offset, each once).
///
/// [`Reader`]: crate::Reader
#[derive(Clone, Debug)]
pub(crate) struct PackRange {
    pub pack: u32,
    pub start: u64,
    pub len: u64,
    pub blobs: Vec<BlobEntry>,
}

/// The ranges to fetch the `blobs` of pack `pack` with: sorted by offset, a blob listed twice
/// fetched once; neighbours merged while the gap is at most [`MAX_GAP`] (any gap when the
/// needed bytes are at least half of the span from the first to the last, i.e. "most of the
/// pack": one request for it) and the range stays within `max_request` (a blob larger than
/// that is a range of its own).
pub(crate) fn coalesce(pack: u32, mut blobs: Vec<BlobEntry>, max_request: u64) -> Vec<PackRange> {
    blobs.sort_by_key(|b| (b.offset, b.id));
    blobs.dedup_by_key(|b| b.id);
    let (Some(first), Some(last)) = (blobs.first(), blobs.last()) else {
        return Vec::new();
    };
    let span = end_of(last).saturating_sub(u64::from(first.offset));
    let needed: u64 = blobs.iter().map(|b| u64::from(b.length)).sum();
    let max_gap = if needed.saturating_mul(2) >= span {
        u64::MAX
    } else {
        MAX_GAP
    };
    let mut out: Vec<PackRange> = Vec::new();
    for b in blobs {
        let (start, end) = (u64::from(b.offset), end_of(&b));
        if let Some(r) = out.last_mut() {
            let r_end = r.start + r.len;
            if start >= r_end && start - r_end <= max_gap && end - r.start <= max_request {
                r.len = end - r.start;
                r.blobs.push(b);
                continue;
            }
        }
        out.push(PackRange {
            pack,
            start,
            len: end - start,
            blobs: vec![b],
        });
    }
    out
}

fn end_of(b: &BlobEntry) -> u64 {
    u64::from(b.offset) + u64::from(b.length)
}

/// The byte budget shared by the workers.
struct Budget {
    used: Mutex<u64>,
    freed: Condvar,
    cap: u64,
}

/// Bytes taken from a [`Budget`], given back on drop (also when the work fails or panics).
struct Taken<'a> {
    budget: &'a Budget,
    n: u64,
}

impl Budget {
    /// Wait until `n` bytes fit (a request larger than the cap waits until nothing is in
    /// flight, then goes alone); `None` when `stop` was raised meanwhile.
    fn take(&self, n: u64, stop: &AtomicBool) -> Option<Taken<'_>> {
        let n = n.min(self.cap);
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while *used > 0 && *used + n > self.cap {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            used = self.freed.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        *used += n;
        Some(Taken { budget: self, n })
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().unwrap_or_else(|p| p.into_inner());
        *used -= self.n;
        self.budget.freed.notify_all();
    }
}

/// Run `work` on every job with `opts.parallel` threads, each job first taking `cost(job)`
/// bytes of the `opts.max_in_flight` budget until it returns. The results come back in the
/// jobs' order. The first error stops the jobs not yet started and is returned (the ones
/// running finish first).
pub(crate) fn run<J, R>(
    jobs: Vec<J>,
    opts: FetchOptions,
    cost: impl Fn(&J) -> u64 + Sync,
    work: impl Fn(J) -> Result<R> + Sync,
) -> Result<Vec<R>>
where
    J: Send,
    R: Send,
{
    let count = jobs.len();
    let queue = Mutex::new(jobs.into_iter().enumerate());
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..count).map(|_| None).collect());
    let first_error: Mutex<Option<(usize, crate::Error)>> = Mutex::new(None);
    let stop = AtomicBool::new(false);
    let budget = Budget {
        used: Mutex::new(0),
        freed: Condvar::new(),
        cap: opts.max_in_flight.max(1),
    };
    let worker = || {
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
            let Some((i, job)) = next else { return };
            let Some(taken) = budget.take(cost(&job), &stop) else {
                return;
            };
            let r = work(job);
            drop(taken);
            match r {
                Ok(r) => results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    budget.freed.notify_all();
                    let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
                    // Keep the error of the earliest job, so a run reports what a sequential
                    // one would have.
                    if first.as_ref().is_none_or(|(j, _)| i < *j) {
                        *first = Some((i, e));
                    }
                    return;
                }
            }
        }
    };
    let threads = opts.parallel.clamp(1, count.max(1));
    if threads == 1 {
        worker();
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(worker);
            }
        });
    }
    if let Some((_, e)) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.ok_or_else(|| {
                crate::Error::corrupt("parallel reader", format!("job {i} did not run"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

    use super::*;
    use crate::ids::{BlobId, BlobKind};
    use std::sync::atomic::AtomicU64;

    fn e(i: u8, offset: u32, length: u32) -> BlobEntry {
        BlobEntry {
            id: BlobId([i; 32]),
            kind: BlobKind::Data,
            offset,
            length,
            raw_length: length,
        }
    }

    #[test]
    fn neighbours_merge_far_blobs_do_not() {
        const M: u32 = 1 << 20;
        // Three blobs close together, one 10 MiB further on: two ranges.
        let r = coalesce(
            3,
            vec![
                e(4, 20 * M, M),
                e(1, 0, M),
                e(2, M + 100, M),
                e(3, 3 * M, M),
            ],
            32 << 20,
        );
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!((r[0].pack, r[0].start, r[0].len), (3, 0, 4 * u64::from(M)));
        assert_eq!(r[0].blobs.len(), 3);
        assert_eq!((r[1].start, r[1].len), (20 * u64::from(M), u64::from(M)));
        // Most of the span needed: one range over it, gaps and all.
        let r = coalesce(0, vec![e(1, 0, 3 * M), e(2, 5 * M, 3 * M)], 32 << 20);
        assert_eq!(r.len(), 1, "{r:?}");
        // A blob listed twice is fetched once; the request size bounds a range.
        let r = coalesce(
            0,
            vec![e(1, 0, M), e(1, 0, M), e(2, M, M), e(3, 2 * M, M)],
            2 << 20,
        );
        assert_eq!(r.iter().map(|r| r.blobs.len()).sum::<usize>(), 3);
        assert!(r.iter().all(|r| r.len <= 2 << 20), "{r:?}");
        assert!(coalesce(0, vec![], 1).is_empty());
    }

    #[test]
    fn budget_and_threads_are_respected_and_results_keep_order() {
        let now = AtomicU64::new(0);
        let peak_bytes = AtomicU64::new(0);
        let running = AtomicU64::new(0);
        let peak_running = AtomicU64::new(0);
        let jobs: Vec<u64> = (0..64).map(|i| 1 + (i % 7)).collect();
        let opts = FetchOptions {
            parallel: 4,
            max_in_flight: 10,
        };
        let out = run(
            jobs.clone(),
            opts,
            |j| *j,
            |j| {
                let b = now.fetch_add(j, Ordering::SeqCst) + j;
                peak_bytes.fetch_max(b, Ordering::SeqCst);
                let r = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak_running.fetch_max(r, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(2));
                running.fetch_sub(1, Ordering::SeqCst);
                now.fetch_sub(j, Ordering::SeqCst);
                Ok(j * 10)
            },
        )
        .unwrap();
        assert_eq!(out, jobs.iter().map(|j| j * 10).collect::<Vec<_>>());
        assert!(peak_bytes.load(Ordering::SeqCst) <= 10);
        assert!(peak_running.load(Ordering::SeqCst) <= 4);
        assert!(
            peak_running.load(Ordering::SeqCst) >= 2,
            "some jobs ran at once"
        );
    }

    #[test]
    fn the_first_error_stops_the_run() {
        let ran = AtomicU64::new(0);
        let err = run(
            (0..1000u64).collect(),
            FetchOptions {
                parallel: 3,
                max_in_flight: 1 << 20,
            },
            |_| 1,
            |j| {
                ran.fetch_add(1, Ordering::SeqCst);
                if j == 5 {
                    Err(crate::Error::corrupt("job 5", "broken"))
                } else {
                    // Each other job takes a moment, so that without the stop all 1000
                    // would run (≥ 0.3 s on 3 threads) whatever the scheduler does, and with
                    // it the run ends long before (a fixed bound on a count of trivial jobs
                    // failed on a loaded machine: the failing thread can be descheduled).
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    Ok(())
                }
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("job 5"), "{err}");
        assert!(ran.load(Ordering::SeqCst) < 1000, "the rest did not run");
        // An oversized job still runs (alone).
        let out = run(vec![5u64, 50, 5], FetchOptions::new(2, 10), |j| *j, Ok).unwrap();
        assert_eq!(out, vec![5, 50, 5]);
    }
}
