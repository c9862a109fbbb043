//! The production sink: the backup bucket, through `ferry-s3` (write-once puts with
//! `If-None-Match: *` and `ChecksumSHA256`, so S3 itself rejects bytes that do not match).

use crate::Sink;
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
    pub fn new(bucket: &str, site: &str, region: Option<&str>) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
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
    ) -> Result<PutOutcome, String> {
        self.rt
            .block_on(self.objects.put_file_if_absent(key, spool, size, sha256))
            .map_err(|e| e.message)
    }

    fn list_page(
        &mut self,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), String> {
        self.rt
            .block_on(self.objects.list_page(prefix, continuation))
            .map_err(|e| e.message)
    }

    fn put_audit(&mut self, key: &str, bytes: Vec<u8>) -> Result<PutOutcome, String> {
        self.rt
            .block_on(self.objects.put_bytes_if_absent(key, bytes))
            .map_err(|e| e.message)
    }

    fn etag(&mut self, key: &str) -> Result<Option<String>, String> {
        self.rt
            .block_on(self.objects.etag(key))
            .map_err(|e| e.message)
    }

    fn describe(&self) -> String {
        self.objects.url()
    }
}
