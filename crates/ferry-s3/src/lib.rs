//! # ferry-s3 — Ferry repositories in Amazon S3
//!
//! Owns the S3 side of repository storage: write-once puts (`PutObject` with
//! `If-None-Match: *` and the object's `ChecksumSHA256`, a 412 meaning "already present"),
//! paginated `ListObjectsV2`, and `GetObject`. [`S3Objects`] is the async core the gate
//! uses; [`S3Storage`] is a blocking [`Storage`] for the CLI (the operator's
//! `ferry restore --repo s3://bucket/site`), owning its own small tokio runtime.
//!
//! Endpoints and credentials come only from the AWS SDK's standard configuration
//! (`AWS_ENDPOINT_URL`, profiles, the instance role): nothing here knows about emulators.
//! A caller with a deadline (the gate) gives a [`Patience`]: the SDK's standard retry mode
//! with its own attempts and backoff, and a timeout per attempt and per call, so a failing
//! or stalled S3 fails the call within a known time; puts count their attempts.
//! Must never depend on SSH crates, the gate or the CLI.

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, ByteStreamError};
use base64::Engine as _;
use ferry_repo::format::{ObjectKind, is_sha256_hex};
use ferry_repo::storage::{PutOutcome, Storage, StorageError, VersionSweep};
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A failed S3 call or upload, naming the operation, the bucket and the key.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// S3 answered with an error, or could not be reached. `code` is S3's error code when it
    /// answered; `detail` is the SDK's whole report (error, causes and metadata).
    #[error("S3 {operation} s3://{bucket}/{key}: {detail}{}", attempts_note(*.attempts))]
    Call {
        /// The S3 API call: `PutObject`, `ListObjectsV2` or `GetObject`.
        operation: &'static str,
        /// Bucket the call was made on.
        bucket: String,
        /// Full object key (prefix included), or the listed prefix for `ListObjectsV2`.
        key: String,
        /// S3's error code (e.g. `NoSuchKey`); `None` when S3 gave none (no answer, I/O).
        code: Option<String>,
        /// The SDK's full report: error, causes and metadata.
        detail: String,
        /// HTTP attempts made (retries included), where counted (puts); `None` elsewhere.
        attempts: Option<u32>,
    },
    /// An object larger than S3's API can describe.
    #[error("s3://{bucket}/{key}: size {size} too large")]
    TooLarge {
        /// Bucket the object was to be put in.
        bucket: String,
        /// Full object key (prefix included).
        key: String,
        /// The object's size in bytes (does not fit S3's `i64` content length).
        size: u64,
    },
    /// The spooled file to upload could not be opened.
    #[error("reading spool file {} for s3://{bucket}/{key}: {error}", path.display())]
    Spool {
        /// Local spool file holding the object's bytes.
        path: PathBuf,
        /// Bucket the object was to be put in.
        bucket: String,
        /// Full object key (prefix included).
        key: String,
        /// Why the SDK could not open the file as a body.
        error: ByteStreamError,
    },
    /// A GetObject answer's body could not be read to its end.
    #[error("S3 GetObject s3://{bucket}/{key}: reading body: {error}")]
    Body {
        /// Bucket the object was read from.
        bucket: String,
        /// Full object key (prefix included).
        key: String,
        /// The read error on the body stream.
        error: ByteStreamError,
    },
}

impl S3Error {
    /// Whether S3 said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, S3Error::Call { code: Some(c), .. } if c == "NoSuchKey" || c == "NotFound")
    }
}

fn attempts_note(attempts: Option<u32>) -> String {
    match attempts {
        Some(n) if n > 1 => format!(" (gave up after {n} attempts)"),
        _ => String::new(),
    }
}

fn s3_err<E, R>(operation: &'static str, bucket: &str, key: &str, e: &SdkError<E, R>) -> S3Error
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    S3Error::Call {
        operation,
        bucket: bucket.to_string(),
        key: key.to_string(),
        code: e
            .as_service_error()
            .and_then(|s| s.code())
            .map(str::to_string),
        detail: sdk_detail(e),
        attempts: None,
    }
}

/// `Code: message (request id …)` when S3 answered with an error; the SDK's error chain for
/// anything else (timeouts, connection failures). Never the raw response: its dump buries the
/// code in a page of headers.
fn sdk_detail<E, R>(e: &SdkError<E, R>) -> String
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error().map(|s| (s.code(), s.message())) {
        Some((Some(code), message)) => {
            let mut d = code.to_string();
            if let Some(m) = message {
                d.push_str(&format!(": {m}"));
            }
            if let Some(id) = e
                .as_service_error()
                .and_then(|s| s.meta().extra("aws_request_id"))
            {
                d.push_str(&format!(" (request id {id})"));
            }
            d
        }
        _ => DisplayErrorContext(e).to_string(),
    }
}

/// How hard one S3 call tries, for a caller with a deadline: the SDK's standard retry mode
/// (exponential backoff with jitter: the n-th retry waits a random time up to
/// `min(initial_backoff × 2^(n-1), max_backoff)`;
/// <https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html>,
/// <https://docs.aws.amazon.com/sdk-for-rust/latest/dg/retries.html>) with `max_attempts`,
/// and a timeout per attempt and per call (the SDK has none by default, only a 3.1 s
/// connect timeout: <https://docs.aws.amazon.com/sdk-for-rust/latest/dg/timeouts.html>).
/// An upload's attempt gets `attempt_timeout` plus its size at `min_rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    /// Attempts per call, the first included (at least 1).
    pub max_attempts: u32,
    /// The backoff scale (the first retry waits up to this).
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// The longest one attempt may take, beyond the upload time at `min_rate`.
    pub attempt_timeout: Duration,
    /// The slowest upload rate an attempt is given time for, bytes per second (at least 1).
    pub min_rate: u64,
}

impl Patience {
    /// The time one attempt of a call sending `size` bytes may take.
    pub fn attempt_timeout_for(&self, size: u64) -> Duration {
        self.attempt_timeout + Duration::from_secs(size / self.min_rate.max(1))
    }

    /// The most a call sending `size` bytes may take, every attempt and backoff included.
    pub fn operation_timeout_for(&self, size: u64) -> Duration {
        let n = self.max_attempts.max(1);
        self.attempt_timeout_for(size) * n + self.max_backoff * (n - 1)
    }

    fn retry_config(&self) -> aws_sdk_s3::config::retry::RetryConfig {
        aws_sdk_s3::config::retry::RetryConfig::standard()
            .with_max_attempts(self.max_attempts.max(1))
            .with_initial_backoff(self.initial_backoff)
            .with_max_backoff(self.max_backoff)
    }

    fn timeout_config(&self, size: u64) -> aws_sdk_s3::config::timeout::TimeoutConfig {
        aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            // The SDK's own default, kept when the other two are set.
            .connect_timeout(Duration::from_millis(3100))
            .operation_attempt_timeout(self.attempt_timeout_for(size))
            .operation_timeout(self.operation_timeout_for(size))
            .build()
    }
}

/// Counts the HTTP attempts of one call (the SDK calls `read_before_attempt` once per attempt).
#[derive(Debug, Clone, Default)]
struct AttemptCounter(Arc<AtomicU32>);

impl aws_sdk_s3::config::Intercept for AttemptCounter {
    fn name(&self) -> &'static str {
        "ferry-s3 attempt counter"
    }

    fn read_before_attempt(
        &self,
        _: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_s3::config::RuntimeComponents,
        _: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn http_status<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// Why a repository location is not an `s3://BUCKET/PREFIX` URL; each names the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not an `s3://` URL at all.
    #[error("{url:?} is not an s3://BUCKET/PREFIX location")]
    NotS3 {
        /// The location as given.
        url: String,
    },
    /// `s3:///…`
    #[error("{url:?}: the bucket name is empty")]
    EmptyBucket {
        /// The location as given.
        url: String,
    },
    /// A bucket name with characters S3 does not allow.
    #[error("{url:?}: {bucket:?} is not a valid S3 bucket name")]
    BadBucket {
        /// The location as given.
        url: String,
        /// The bucket part; only lowercase ASCII letters, digits, `-` and `.` are accepted.
        bucket: String,
    },
}

/// Split `s3://bucket/prefix` into bucket and prefix (prefix may be empty).
pub fn parse_s3_url(url: &str) -> Result<(String, String), UrlError> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| UrlError::NotS3 {
        url: url.to_string(),
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/');
    if bucket.is_empty() {
        return Err(UrlError::EmptyBucket {
            url: url.to_string(),
        });
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err(UrlError::BadBucket {
            url: url.to_string(),
            bucket: bucket.to_string(),
        });
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// Base64 of a SHA-256 digest, the form S3's `ChecksumSHA256` takes.
pub fn checksum_b64(sha256: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(sha256)
}

/// Objects under one prefix of one bucket (async).
#[derive(Clone, Debug)]
pub struct S3Objects {
    client: Client,
    bucket: String,
    prefix: String,
    patience: Option<Patience>,
}

impl S3Objects {
    /// Client from the standard AWS configuration chain; `region` overrides the chain's region.
    pub async fn from_env(bucket: &str, prefix: &str, region: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = region {
            loader = loader.region(aws_config::Region::new(r.to_string()));
        }
        let conf = loader.load().await;
        Self::with_client(Client::new(&conf), bucket, prefix)
    }

    /// [`from_env`](Self::from_env) whose calls retry and time out as `patience` says
    /// (uploads get their own, size-dependent timeouts).
    pub async fn from_env_with(
        bucket: &str,
        prefix: &str,
        region: Option<&str>,
        patience: Patience,
    ) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .retry_config(patience.retry_config())
            .timeout_config(patience.timeout_config(0));
        if let Some(r) = region {
            loader = loader.region(aws_config::Region::new(r.to_string()));
        }
        let conf = loader.load().await;
        let mut objects = Self::with_client(Client::new(&conf), bucket, prefix);
        objects.patience = Some(patience);
        objects
    }

    /// Objects under `prefix` (slashes at either end are dropped) of `bucket`, through an
    /// already configured `client` (e.g. explicit endpoint or credentials).
    pub fn with_client(client: Client, bucket: &str, prefix: &str) -> Self {
        Self {
            client,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            patience: None,
        }
    }

    /// The bucket's name (no `s3://`, no prefix).
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The full key of `rel` under this prefix.
    pub fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    /// `s3://bucket/prefix`
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    /// Put `body` at `rel` unless an object is there (`If-None-Match: *`); S3 checks
    /// `sha256` (sent as `ChecksumSHA256`) against the bytes it receives. Returns the outcome
    /// and the HTTP attempts made.
    ///
    /// A retried put whose earlier attempt was stored (its answer lost or late) gets 412 and
    /// is reported `AlreadyPresent`, like a put of an object someone else stored first
    /// ([conditional writes](https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html)):
    /// for names that are the content's hash the object there is the same bytes; a caller
    /// putting anything else compares (the gate's `config` and audit record do, by ETag).
    async fn put_body(
        &self,
        rel: &str,
        body: ByteStream,
        size: u64,
        sha256: &[u8; 32],
    ) -> Result<(PutOutcome, u32), S3Error> {
        let key = self.key(rel);
        let len = i64::try_from(size).map_err(|_| S3Error::TooLarge {
            bucket: self.bucket.clone(),
            key: key.clone(),
            size,
        })?;
        let counter = AttemptCounter::default();
        let mut op = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .if_none_match("*")
            // The algorithm header too: S3 requires it (or Content-MD5) on every put into a
            // bucket with Object Lock's default retention
            // (https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html); the value
            // given is sent as is, not computed again.
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
            .checksum_sha256(checksum_b64(sha256))
            .content_length(len)
            .body(body)
            .customize()
            .interceptor(counter.clone());
        if let Some(p) = &self.patience {
            op = op.config_override(
                aws_sdk_s3::config::Builder::new().timeout_config(p.timeout_config(size)),
            );
        }
        let res = op.send().await;
        let attempts = counter.0.load(Ordering::Relaxed);
        match res {
            Ok(_) => Ok((PutOutcome::Stored, attempts)),
            Err(e) if http_status(&e) == Some(412) => Ok((PutOutcome::AlreadyPresent, attempts)),
            Err(e) => {
                let mut err = s3_err("PutObject", &self.bucket, &key, &e);
                if let S3Error::Call { attempts: a, .. } = &mut err {
                    *a = Some(attempts);
                }
                Err(err)
            }
        }
    }

    /// Write-once put of bytes held in memory.
    pub async fn put_bytes_if_absent(
        &self,
        rel: &str,
        bytes: Vec<u8>,
    ) -> Result<PutOutcome, S3Error> {
        let digest: [u8; 32] = sha2::Sha256::digest(&bytes).into();
        let size = bytes.len() as u64;
        self.put_body(rel, ByteStream::from(bytes), size, &digest)
            .await
            .map(|(outcome, _)| outcome)
    }

    /// Write-once put of a file streamed from disk (the gate's spool), whose SHA-256 the
    /// caller computed while writing it.
    pub async fn put_file_if_absent(
        &self,
        rel: &str,
        path: &Path,
        size: u64,
        sha256: &[u8; 32],
    ) -> Result<PutOutcome, S3Error> {
        self.put_file_counted(rel, path, size, sha256)
            .await
            .map(|(outcome, _)| outcome)
    }

    /// [`put_file_if_absent`](Self::put_file_if_absent), also returning the HTTP attempts
    /// it took (1 without a retry). The file is read again for every attempt.
    pub async fn put_file_counted(
        &self,
        rel: &str,
        path: &Path,
        size: u64,
        sha256: &[u8; 32],
    ) -> Result<(PutOutcome, u32), S3Error> {
        let body = ByteStream::from_path(path)
            .await
            .map_err(|error| S3Error::Spool {
                path: path.to_path_buf(),
                bucket: self.bucket.clone(),
                key: self.key(rel),
                error,
            })?;
        self.put_body(rel, body, size, sha256).await
    }

    /// One page of keys under `rel_prefix` (relative to `rel_prefix`), and the token for
    /// the next page (`None` on the last page).
    pub async fn list_page(
        &self,
        rel_prefix: &str,
        continuation: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), S3Error> {
        let full = self.key(rel_prefix);
        let res = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full)
            .set_continuation_token(continuation)
            .send()
            .await
            .map_err(|e| s3_err("ListObjectsV2", &self.bucket, &full, &e))?;
        let names = res
            .contents()
            .iter()
            .filter_map(|o| o.key())
            .filter_map(|k| k.strip_prefix(full.as_str()))
            .map(str::to_string)
            .collect();
        let next = if res.is_truncated() == Some(true) {
            res.next_continuation_token().map(str::to_string)
        } else {
            None
        };
        Ok((names, next))
    }

    /// The ETag of the object at `rel` (quotes removed), found with ListObjectsV2 (so
    /// `s3:ListBucket` suffices, no read access), or `None` if there is none.
    pub async fn etag(&self, rel: &str) -> Result<Option<String>, S3Error> {
        let key = self.key(rel);
        let res = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&key)
            .max_keys(10)
            .send()
            .await
            .map_err(|e| s3_err("ListObjectsV2", &self.bucket, &key, &e))?;
        Ok(res
            .contents()
            .iter()
            .find(|o| o.key() == Some(key.as_str()))
            .and_then(|o| o.e_tag())
            .map(|t| t.trim_matches('"').to_string()))
    }

    /// All keys under `rel_prefix` (relative), following every page (bounded by S3's answers).
    pub async fn list_all(&self, rel_prefix: &str) -> Result<Vec<String>, S3Error> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let (names, next) = self.list_page(rel_prefix, token.take()).await?;
            out.extend(names);
            match next {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// `len` bytes at `offset` of the object at `rel` (a ranged GetObject; fewer at its end).
    pub async fn get_range(&self, rel: &str, offset: u64, len: u64) -> Result<Vec<u8>, S3Error> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let range = format!("bytes={}-{}", offset, offset.saturating_add(len) - 1);
        self.get_object(rel, Some(range)).await
    }

    /// Delete the object at `rel` (succeeds when it is not there, as S3 does).
    pub async fn delete(&self, rel: &str) -> Result<(), S3Error> {
        let key = self.key(rel);
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| s3_err("DeleteObject", &self.bucket, &key, &e))?;
        Ok(())
    }

    /// Copy the object at `from` to `to` inside the bucket (CopyObject: the bytes stay in S3).
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), S3Error> {
        let (src, dest) = (self.key(from), self.key(to));
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .copy_source(format!("{}/{}", self.bucket, src))
            .key(&dest)
            // S3 stores the copy's SHA-256 (and a bucket with Object Lock gets the algorithm
            // header it asks of every write that gets a retention).
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
            .send()
            .await
            .map_err(|e| s3_err("CopyObject", &self.bucket, &src, &e))?;
        Ok(())
    }

    /// Old versions under `rel_prefix` (see [`Storage::sweep_old_versions`]): `None` when the
    /// bucket has no Object Lock (Ferry's buckets are versioned only with it). Old versions
    /// whose retain-until date has passed are deleted by version id (a delete by version id
    /// never changes the current object:
    /// https://docs.aws.amazon.com/AmazonS3/latest/userguide/DeletingObjectVersions.html); a
    /// delete marker goes when no older version is left under it, or when it is not the
    /// current version itself. A version S3 still refuses to delete (403: its lock, as
    /// governance mode answers without the bypass header) is counted as locked.
    pub async fn sweep_old_versions(
        &self,
        rel_prefix: &str,
        now_secs: i64,
        dry_run: bool,
    ) -> Result<Option<VersionSweep>, S3Error> {
        match self
            .client
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(r)
                if r.object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled())
                    .is_some() => {}
            Ok(_) => return Ok(None),
            Err(e) if http_status(&e) == Some(404) => return Ok(None),
            Err(e) => {
                return Err(s3_err("GetObjectLockConfiguration", &self.bucket, "", &e));
            }
        }
        let full = self.key(rel_prefix);
        let mut sweep = VersionSweep::default();
        // key -> (old data versions (id, size), delete markers (id, is latest), has a current data version)
        let mut keys: std::collections::BTreeMap<String, KeyVersions> = Default::default();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        for _ in 0..MAX_VERSION_PAGES {
            let r = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(&full)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| s3_err("ListObjectVersions", &self.bucket, &full, &e))?;
            sweep.list_requests += 1;
            for v in r.versions() {
                let (Some(k), Some(id)) = (v.key(), v.version_id()) else {
                    continue;
                };
                let e = keys.entry(k.to_string()).or_default();
                if v.is_latest() == Some(true) {
                    e.current = true;
                } else {
                    e.old
                        .push((id.to_string(), v.size().unwrap_or(0).max(0) as u64));
                }
            }
            for m in r.delete_markers() {
                let (Some(k), Some(id)) = (m.key(), m.version_id()) else {
                    continue;
                };
                keys.entry(k.to_string())
                    .or_default()
                    .markers
                    .push((id.to_string(), m.is_latest() == Some(true)));
            }
            if r.is_truncated() != Some(true) {
                break;
            }
            key_marker = r.next_key_marker().map(str::to_string);
            id_marker = r.next_version_id_marker().map(str::to_string);
            if key_marker.is_none() {
                break;
            }
        }
        for (key, kv) in keys {
            let mut left = 0usize;
            for (id, size) in &kv.old {
                let head = self
                    .client
                    .head_object()
                    .bucket(&self.bucket)
                    .key(&key)
                    .version_id(id)
                    .send()
                    .await
                    .map_err(|e| s3_err("HeadObject", &self.bucket, &key, &e))?;
                sweep.head_requests += 1;
                let until = head.object_lock_retain_until_date().map(|d| d.secs());
                let locked = until.is_some_and(|u| u > now_secs)
                    || head.object_lock_legal_hold_status()
                        == Some(&aws_sdk_s3::types::ObjectLockLegalHoldStatus::On);
                let refused = if locked || dry_run {
                    false
                } else {
                    sweep.delete_requests += 1;
                    match self.delete_version(&key, id).await {
                        Ok(()) => false,
                        Err(e) if e.locked => true,
                        Err(e) => return Err(e.error),
                    }
                };
                if locked || refused {
                    left += 1;
                    sweep.locked += 1;
                    sweep.locked_bytes += size;
                    if let Some(u) = until {
                        sweep.next_unlock = Some(sweep.next_unlock.map_or(u, |n| n.min(u)));
                        sweep.last_unlock = Some(sweep.last_unlock.map_or(u, |n| n.max(u)));
                    }
                } else {
                    sweep.removed += 1;
                    sweep.removed_bytes += size;
                }
            }
            for (id, latest) in &kv.markers {
                // A current marker over locked versions stays: removing it would bring the
                // deleted object back.
                if *latest && !kv.current && left > 0 {
                    continue;
                }
                if !dry_run {
                    sweep.delete_requests += 1;
                    self.delete_version(&key, id).await.map_err(|e| e.error)?;
                }
                sweep.removed_markers += 1;
            }
        }
        Ok(Some(sweep))
    }

    async fn delete_version(&self, key: &str, id: &str) -> Result<(), VersionDeleteError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .version_id(id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| VersionDeleteError {
                // S3 answers a locked version 403 AccessDenied.
                locked: http_status(&e) == Some(403)
                    || e.as_service_error().and_then(|s| s.code()) == Some("AccessDenied"),
                error: s3_err(
                    "DeleteObject",
                    &self.bucket,
                    &format!("{key}?versionId={id}"),
                    &e,
                ),
            })
    }

    /// The whole object at `rel`.
    pub async fn get(&self, rel: &str) -> Result<Vec<u8>, S3Error> {
        self.get_object(rel, None).await
    }

    /// One GetObject, whole or of an HTTP `range`; a range past the end is empty (S3 answers
    /// 416 InvalidRange; the Storage contract says empty).
    async fn get_object(&self, rel: &str, range: Option<String>) -> Result<Vec<u8>, S3Error> {
        let key = self.key(rel);
        let ranged = range.is_some();
        let res = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .set_range(range)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) if ranged && http_status(&e) == Some(416) => return Ok(Vec::new()),
            Err(e) => return Err(s3_err("GetObject", &self.bucket, &key, &e)),
        };
        // Streamed into one buffer of the announced length: collecting the body and then
        // copying it out held the object three times at once (restore's peak memory).
        let announced = res
            .content_length()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        let mut out = Vec::with_capacity(announced.min(MAX_PREALLOC));
        let mut body = res.body;
        loop {
            match body.try_next().await {
                Ok(Some(chunk)) => out.extend_from_slice(&chunk),
                Ok(None) => return Ok(out),
                Err(error) => {
                    return Err(S3Error::Body {
                        bucket: self.bucket.clone(),
                        key,
                        error,
                    });
                }
            }
        }
    }
}

/// The most a GET reserves up front from the length S3 announces (a larger object grows the
/// buffer as it arrives): a wrong header cannot make it reserve more.
const MAX_PREALLOC: usize = 256 * 1024 * 1024;

/// Upper bound on `ListObjectVersions` pages one sweep reads (1,000 versions each).
const MAX_VERSION_PAGES: usize = 10_000;

/// The versions of one key that a sweep sees.
#[derive(Default)]
struct KeyVersions {
    /// Old (noncurrent) data versions: version id, size.
    old: Vec<(String, u64)>,
    /// Delete markers: version id, whether it is the current version.
    markers: Vec<(String, bool)>,
    /// A data version is the current one.
    current: bool,
}

struct VersionDeleteError {
    locked: bool,
    error: S3Error,
}

/// The names of `kind` among `rel_keys` listed under the kind's prefix.
fn names_of(kind: ObjectKind, rel_keys: Vec<String>) -> Vec<String> {
    let mut names: Vec<String> = rel_keys
        .into_iter()
        .filter(|k| {
            if kind == ObjectKind::Config {
                k.is_empty()
            } else {
                is_sha256_hex(k)
            }
        })
        .map(|k| {
            if kind == ObjectKind::Config {
                "config".to_string()
            } else {
                k
            }
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The listing prefix of `kind` relative to the repository root.
pub fn kind_prefix(kind: ObjectKind) -> String {
    match kind {
        ObjectKind::Config => "config".to_string(),
        k => format!("{}/", k.dir()),
    }
}

/// Names of `kind` from keys listed under [`kind_prefix`] (config: exactly `config`).
pub fn filter_names(kind: ObjectKind, rel_keys: Vec<String>) -> Vec<String> {
    names_of(kind, rel_keys)
}

/// A blocking [`Storage`] over S3, for the CLI. Owns a small multi-thread tokio runtime (two
/// workers drive the connections), so calls from several threads at once — restore's and
/// check's parallel pack reader — are that many requests in flight. It must not be used from
/// inside another tokio runtime.
pub struct S3Storage {
    objects: S3Objects,
    rt: tokio::runtime::Runtime,
}

/// The runtime of an [`S3Storage`]: two workers, enough for the connections of many requests
/// in flight (the bytes are decrypted on the callers' threads).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ferry-s3")
        .enable_all()
        .build()
}

impl S3Storage {
    /// Open `s3://bucket/prefix` with the standard AWS configuration chain.
    pub fn open(url: &str) -> Result<Self, StorageError> {
        let (bucket, prefix) = parse_s3_url(url).map_err(|e| StorageError::Backend {
            location: url.to_string(),
            message: e.to_string(),
        })?;
        let rt = runtime().map_err(|e| StorageError::Backend {
            location: url.to_string(),
            message: format!("cannot start the async runtime: {e}"),
        })?;
        let objects = rt.block_on(S3Objects::from_env(&bucket, &prefix, None));
        Ok(Self { objects, rt })
    }

    /// A blocking storage over an already configured client (e.g. explicit credentials).
    pub fn from_objects(objects: S3Objects) -> Result<Self, StorageError> {
        let rt = runtime().map_err(|e| StorageError::Backend {
            location: objects.url(),
            message: format!("cannot start the async runtime: {e}"),
        })?;
        Ok(Self { objects, rt })
    }

    /// All keys under `rel_prefix` (relative to it), e.g. the gate's `audit/` records.
    pub fn list_keys(&self, rel_prefix: &str) -> Result<Vec<String>, StorageError> {
        self.rt
            .block_on(self.objects.list_all(rel_prefix))
            .map_err(|e| self.backend(e))
    }

    /// The object at `rel` (relative to the prefix).
    pub fn get_key(&self, rel: &str) -> Result<Vec<u8>, StorageError> {
        self.rt
            .block_on(self.objects.get(rel))
            .map_err(|e| self.backend(e))
    }

    /// The async objects underneath, for calls this blocking API does not offer.
    pub fn objects(&self) -> &S3Objects {
        &self.objects
    }

    fn backend(&self, e: S3Error) -> StorageError {
        StorageError::Backend {
            location: self.location(),
            message: e.to_string(),
        }
    }
}

impl Storage for S3Storage {
    fn location(&self) -> String {
        self.objects.url()
    }

    fn put_if_absent(
        &self,
        kind: ObjectKind,
        name: &str,
        bytes: &[u8],
    ) -> Result<PutOutcome, StorageError> {
        self.rt
            .block_on(
                self.objects
                    .put_bytes_if_absent(&kind.key(name), bytes.to_vec()),
            )
            .map_err(|e| self.backend(e))
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<String>, StorageError> {
        let keys = self
            .rt
            .block_on(self.objects.list_all(&kind_prefix(kind)))
            .map_err(|e| self.backend(e))?;
        Ok(names_of(kind, keys))
    }

    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, StorageError> {
        let key = kind.key(name);
        self.rt
            .block_on(self.objects.get(&key))
            .map_err(|e| self.not_found_or(e, key))
    }

    fn get_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StorageError> {
        let key = kind.key(name);
        self.rt
            .block_on(self.objects.get_range(&key, offset, len))
            .map_err(|e| self.not_found_or(e, key))
    }

    fn can_delete(&self) -> bool {
        true
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> Result<(), StorageError> {
        self.rt
            .block_on(self.objects.delete(&kind.key(name)))
            .map_err(|e| self.backend(e))
    }

    fn copy(&self, from: ObjectKind, to: ObjectKind, name: &str) -> Result<(), StorageError> {
        let key = from.key(name);
        self.rt
            .block_on(self.objects.copy(&key, &to.key(name)))
            .map_err(|e| self.not_found_or(e, key))
    }

    fn sweep_old_versions(&self, dry_run: bool) -> Result<Option<VersionSweep>, StorageError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.rt
            .block_on(self.objects.sweep_old_versions("", now, dry_run))
            .map_err(|e| self.backend(e))
    }
}

impl S3Storage {
    fn not_found_or(&self, e: S3Error, key: String) -> StorageError {
        if e.is_not_found() {
            StorageError::NotFound {
                location: self.location(),
                key,
            }
        } else {
            self.backend(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_s3_url("s3://b/site").unwrap(),
            ("b".into(), "site".into())
        );
        assert_eq!(parse_s3_url("s3://b").unwrap(), ("b".into(), "".into()));
        assert_eq!(
            parse_s3_url("s3://b/a/b/").unwrap(),
            ("b".into(), "a/b".into())
        );
        assert!(parse_s3_url("s3:///x").is_err());
        assert!(parse_s3_url("gs://b/x").is_err());
        assert!(parse_s3_url("s3://B_x/y").is_err());
        assert_eq!(
            parse_s3_url("s3://B_x/y").map_err(|e| e.to_string()),
            Err(r#""s3://B_x/y": "B_x" is not a valid S3 bucket name"#.into())
        );
    }

    #[test]
    fn listing_filters_foreign_keys() {
        let n = "a".repeat(64);
        assert_eq!(
            filter_names(
                ObjectKind::Pack,
                vec![n.clone(), "junk".into(), "x/y".into()]
            ),
            vec![n]
        );
        assert_eq!(
            filter_names(ObjectKind::Config, vec!["".into(), ".bak".into()]),
            vec!["config"]
        );
        assert!(filter_names(ObjectKind::Config, vec!["x".into()]).is_empty());
    }
}
