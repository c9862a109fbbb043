//! The production sink: the backup bucket, through `ferry-s3` (write-once puts with
//! `If-None-Match: *` and `ChecksumSHA256`, so S3 itself rejects bytes that do not match).

use crate::{Sink, SinkError};
use ferry_repo::storage::PutOutcome;
use ferry_s3::S3Objects;
use std::path::Path;

/// Objects under `<bucket>/<site>/`, with a private current-thread runtime.
pub struct S3Sink {
    objects: S3Objects,
    rt: tokio::runtime::Runtime,
}

impl S3Sink {
    /// Credentials and endpoint from the standard AWS chain (the instance role on EC2).
    pub fn new(bucket: &str, site: &str, region: Option<&str>) -> Result<Self, SinkError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| SinkError::Runtime { error })?;
        let objects = rt.block_on(S3Objects::from_env(bucket, site, region));
        Ok(Self { objects, rt })
    }
}

impl Sink for S3Sink {
    fn put_file(
        &mut self,
        key: &str,
        spool: &Path,
        size: u64,
        sha256: &[u8; 32],
    ) -> Result<PutOutcome, SinkError> {
        self.rt
            .block_on(self.objects.put_file_if_absent(key, spool, size, sha256))
            .map_err(SinkError::from)
    }

    fn list_page(
        &mut self,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), SinkError> {
        self.rt
            .block_on(self.objects.list_page(prefix, continuation))
            .map_err(SinkError::from)
    }

    fn put_audit(&mut self, key: &str, bytes: Vec<u8>) -> Result<PutOutcome, SinkError> {
        self.rt
            .block_on(self.objects.put_bytes_if_absent(key, bytes))
            .map_err(SinkError::from)
    }

    fn etag(&mut self, key: &str) -> Result<Option<String>, SinkError> {
        self.rt
            .block_on(self.objects.etag(key))
            .map_err(SinkError::from)
    }

    fn describe(&self) -> String {
        self.objects.url()
    }
}
