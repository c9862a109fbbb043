//! Where collected entries go: the repository engine's snapshot builder, behind a small trait
//! so that the collector's logic (listing, filtering, streaming, error handling) does not
//! depend on the builder's exact signatures.

use crate::listing::Entry;
use std::io::Read;
use std::path::Path;

/// A failure while adding a file.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Reading the file's content failed (the host's stream broke, the local file vanished…):
    /// this file (and for a broken stream, the rest of that host) is lost, others go on.
    #[error("reading the file: {0}")]
    Source(#[source] std::io::Error),
    /// The engine itself failed (storage full, repository error): the whole backup stops.
    #[error("{0}")]
    Engine(String),
}

/// The snapshot being written. Paths are snapshot paths (`/<source>/<remote path>`); the
/// metadata is the host's.
pub trait Sink: Send {
    /// Add a directory at `path` with the host's metadata (no content).
    fn add_dir(&mut self, path: &Path, meta: &Entry) -> Result<(), SinkError>;
    /// Add a symlink at `path`; its target is `meta.target`, stored as is (not followed).
    fn add_symlink(&mut self, path: &Path, meta: &Entry) -> Result<(), SinkError>;
    /// If the previous run of this source saw a file at `previous` (usually `path` itself;
    /// a sibling for a rotated log) with this size, mtime and inode, add it at `path` with
    /// the old content and return true: the collector then does not transfer it.
    fn reuse_unchanged(
        &mut self,
        path: &Path,
        previous: &Path,
        meta: &Entry,
    ) -> Result<bool, SinkError>;
    /// Add a file whose content is read from `reader` (exactly `meta.size` bytes).
    fn add_file(
        &mut self,
        path: &Path,
        meta: &Entry,
        reader: &mut dyn Read,
    ) -> Result<(), SinkError>;
    /// Register a source (shown with its status in the snapshot).
    fn add_source(&mut self, source: &str);
    /// Record a per-path problem (`remote` is the path on the host); the snapshot is partial.
    fn record_error(&mut self, source: &str, remote: &Path, message: &str);
    /// Record that a whole source failed.
    fn source_failed(&mut self, source: &str, message: &str);
    /// Content bytes the repository did not have yet, stored so far by this run (so the
    /// collector can attribute new bytes to the source whose file it just added).
    fn new_bytes(&self) -> u64 {
        0
    }
}

/// A reader that yields exactly `expected` bytes from `inner`, turning an early end into
/// an error (a truncated stream must never be stored as a short file), and remembering
/// whether an error came from the source (so it is not mistaken for an engine failure).
pub struct ExactReader<R> {
    inner: R,
    remaining: u64,
    /// Kind of the last error this reader returned (an early end is `UnexpectedEof`;
    /// `Interrupted` is not kept); `None` while every read succeeded. Lets the caller tell
    /// a source failure from an engine one when the engine reports an error.
    pub source_error: Option<std::io::ErrorKind>,
}

impl<R: Read> ExactReader<R> {
    /// Read `expected` bytes from `inner`, then report end of file (any further bytes of
    /// `inner` are left unread).
    pub fn new(inner: R, expected: u64) -> Self {
        ExactReader {
            inner,
            remaining: expected,
            source_error: None,
        }
    }
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        match self.inner.read(&mut buf[..want]) {
            Ok(0) => {
                let e = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "stream ended {} bytes before the end of the file",
                        self.remaining
                    ),
                );
                self.source_error = Some(e.kind());
                Err(e)
            }
            Ok(n) => {
                self.remaining -= n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.source_error = Some(e.kind());
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_reader_refuses_a_short_stream() {
        let mut r = ExactReader::new(&b"hello"[..], 8);
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        assert_eq!(r.source_error, Some(std::io::ErrorKind::UnexpectedEof));

        let mut r = ExactReader::new(&b"hello world"[..], 5);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"hello");
        assert_eq!(r.source_error, None);
    }
}
