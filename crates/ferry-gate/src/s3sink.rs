//! The production sink: the backup bucket, through `ferry-s3` (write-once puts with
//! `If-None-Match: *` and `ChecksumSHA256`, so S3 itself rejects bytes that do not match).
//!
//! Retries and timeouts ([`patience`]): a session has minutes, not hours, so every S3 call
//! is bounded. The SDK's standard retry mode with [`S3_ATTEMPTS`] attempts (the SDK's default
//! is 3), backoff with jitter up to 1 s, 2 s, 4 s, then [`S3_MAX_BACKOFF`] — about 17 s at
//! most in all, so a burst of 503 SlowDown or 500 InternalError rides through
//! (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/ErrorBestPractices.html>,
//! <https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html>). Each attempt
//! may take `s3_attempt_timeout_secs` (gate.toml, default 30 s) plus its body's upload time at
//! [`S3_MIN_RATE`]; the SDK itself has no such timeout
//! (<https://docs.aws.amazon.com/sdk-for-rust/latest/dg/timeouts.html>), so a stalled S3
//! would otherwise hold the session — and its expiry watchdog, which waits for the put in
//! flight — forever. A put that still fails is REFUSED to the client with S3's error and the
//! attempts made; the client keeps it in its spool.

use crate::{GateConfig, Sink, SinkError};
use ferry_repo::storage::PutOutcome;
use ferry_s3::{Patience, S3Error, S3Objects};
use std::path::Path;
use std::time::Duration;

/// Attempts per S3 request, the first included.
pub const S3_ATTEMPTS: u32 = 6;
/// The longest wait between two attempts.
pub const S3_MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The slowest upload rate an attempt is given time for (1 MiB/s).
pub const S3_MIN_RATE: u64 = 1 << 20;

/// The gate's retry and timeout policy for the session's config.
pub fn patience(config: &GateConfig) -> Patience {
    let secs = config
        .s3_attempt_timeout_secs
        .unwrap_or(ferry_contract::gate::S3_ATTEMPT_TIMEOUT_SECS)
        .max(1);
    Patience {
        max_attempts: S3_ATTEMPTS,
        initial_backoff: Duration::from_secs(1),
        max_backoff: S3_MAX_BACKOFF,
        attempt_timeout: Duration::from_secs(secs),
        min_rate: S3_MIN_RATE,
    }
}

/// Objects under `<bucket>/<site>/`, with a private current-thread runtime.
pub struct S3Sink {
    objects: S3Objects,
    rt: tokio::runtime::Runtime,
    last_attempts: Option<u32>,
}

impl S3Sink {
    /// Credentials and endpoint from the standard AWS chain (the instance role on EC2); the
    /// bucket, site, region and retry policy ([`patience`]) from the session's config.
    pub fn new(config: &GateConfig) -> Result<Self, SinkError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| SinkError::Runtime { error })?;
        let objects = rt.block_on(S3Objects::from_env_with(
            &config.bucket,
            &config.site,
            config.region.as_deref(),
            patience(config),
        ));
        Ok(Self {
            objects,
            rt,
            last_attempts: None,
        })
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
        let res = self
            .rt
            .block_on(self.objects.put_file_counted(key, spool, size, sha256));
        self.last_attempts = match &res {
            Ok((_, n)) => Some(*n),
            Err(S3Error::Call { attempts, .. }) => *attempts,
            Err(_) => None,
        };
        res.map(|(outcome, _)| outcome).map_err(SinkError::from)
    }

    fn last_attempts(&self) -> Option<u32> {
        self.last_attempts
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_persistent_failure_fails_a_put_within_a_bounded_time() {
        let mut c = GateConfig::from_toml(
            "bucket = \"b\"\nsite = \"s\"\nsession = \"x\"\nexpires = \"2999-01-01T00:00:00Z\"\n\
             max_object_size = 67108864\nmax_session_bytes = 1\nallowed_kinds = []\n",
        )
        .unwrap();
        let p = patience(&c);
        assert_eq!(p.max_attempts, 6);
        // A 64 MiB pack: 30 s + 64 s per attempt; six of them and five backoffs of at most 5 s.
        assert_eq!(p.attempt_timeout_for(64 << 20), Duration::from_secs(94));
        assert_eq!(
            p.operation_timeout_for(64 << 20),
            Duration::from_secs(6 * 94 + 25)
        );
        c.s3_attempt_timeout_secs = Some(2);
        assert_eq!(
            patience(&c).operation_timeout_for(0),
            Duration::from_secs(37)
        );
    }
}
