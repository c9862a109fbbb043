//! Content-defined chunking: a streaming FastCDC v2020 [`Chunker`] keyed from the put key.

use crate::keys::PutKey;
use std::io::Read;

/// Streaming FastCDC (v2020, level 1) over a reusable buffer, with the gear table keyed
/// from the put key's hash key.
pub(super) struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl Chunker {
    pub(super) fn new(key: &PutKey) -> Chunker {
        use fastcdc::v2020::{MASKS, Normalization, get_gear_with_seed, logarithm2};
        let p = key.chunker();
        let bits = logarithm2(p.avg_size);
        let norm = Normalization::Level1.bits();
        let (gear, gear_ls) = get_gear_with_seed(key.chunker_seed());
        Chunker {
            min: p.min_size as usize,
            avg: p.avg_size as usize,
            max: p.max_size as usize,
            mask_s: MASKS[(bits + norm) as usize],
            mask_l: MASKS[(bits - norm) as usize],
            gear,
            gear_ls,
            buf: Vec::new(),
            start: 0,
            end: 0,
            eof: false,
        }
    }

    pub(super) fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.eof = false;
    }

    /// The next chunk, or `None` at end of input.
    pub(super) fn next(&mut self, r: &mut dyn Read) -> std::io::Result<Option<&[u8]>> {
        if self.end - self.start < self.max && !self.eof {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let want = 2 * self.max;
            if self.buf.len() < want {
                // Grow lazily: small files never touch more than they need.
                let grow = (self.end + self.max).min(want);
                if self.buf.len() < grow {
                    self.buf.resize(grow, 0);
                }
            }
            while self.end < self.max && !self.eof {
                if self.end == self.buf.len() {
                    let n = (self.buf.len() * 2).clamp(64 * 1024, 2 * self.max);
                    self.buf.resize(n, 0);
                }
                match r.read(&mut self.buf[self.end..]) {
                    Ok(0) => self.eof = true,
                    Ok(n) => self.end += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let avail = self.end - self.start;
        if avail == 0 {
            return Ok(None);
        }
        let (_, cut) = fastcdc::v2020::cut_gear(
            &self.buf[self.start..self.end],
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear,
            &self.gear_ls,
        );
        let cut = cut.clamp(1, avail);
        let s = self.start;
        self.start += cut;
        Ok(Some(&self.buf[s..s + cut]))
    }
}
