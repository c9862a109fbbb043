//! The two binaries that run in AWS, uploaded to the state bucket: `artifacts/ferry-gate` (the
//! raw gate binary the jump box downloads) and `artifacts/bootstrap.zip` (the Lambda code: a zip
//! with the one entry `bootstrap`, mode 0755). Key names are a contract (see
//! [`crate::policy::GATE_ARTIFACT_KEY`]).
//!
//! The zip is deterministic (fixed timestamp, fixed compression), so the same `bootstrap` always
//! gives the same zip, the same SHA-256 and the same Lambda `CodeSha256`: a second apply changes
//! nothing. Each object carries its SHA-256 (hex) as user metadata `sha256`.
//!
//! Lambda's package limits are checked here, before any API call: the zip's contents must be
//! smaller than [`LAMBDA_UNZIPPED_LIMIT`] (250 MiB; Lambda refuses larger ones only at
//! CreateFunction / UpdateFunctionCode, after everything else exists). The 50 MiB zipped limit
//! ([`LAMBDA_DIRECT_ZIP_LIMIT`]) applies only to a direct upload (`Code.ZipFile`); ferry deploys
//! from S3, where only the unzipped size counts. Both are reported by [`LambdaPackage`].
//! <https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html>
//!
//! Plan compares an object with the local file by its ETag, which S3 sets to the MD5 of the
//! content for a single `PutObject` with SSE-S3 (the buckets' enforced default encryption), as
//! listed by `ListObjectsV2` (a bucket-level read). It does not use `HeadObject` for that: moto
//! 5.2.5 refuses every object request on a bucket whose policy has a `Condition`, and the state
//! bucket's does; on AWS either works.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{AwsContext, Error, IoContext, Result};
use base64::Engine;
use md5::Digest as _;
use sha2::Sha256;

use super::{Change, Ctx};
use crate::policy::{GATE_ARTIFACT_KEY, LAMBDA_ARTIFACT_KEY};

/// File name of the Lambda binary in the artifacts directory (and the zip's only entry).
pub const BOOTSTRAP: &str = "bootstrap";
/// File name of the gate binary in the artifacts directory.
pub const GATE: &str = "ferry-gate";
/// Environment variable naming the artifacts directory when `--artifacts` is not given.
pub const ARTIFACTS_ENV: &str = "FERRY_ARTIFACTS";

/// Lambda's limit on a deployment package's contents, unzipped, including layers: "250 MB",
/// which Lambda reports as `CodeSizeUnzipped` = 262144000 bytes (250 MiB) and enforces with
/// `InvalidParameterValueException: Unzipped size must be smaller than 262144000 bytes`.
/// <https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html>
pub const LAMBDA_UNZIPPED_LIMIT: u64 = 262_144_000;
/// Lambda's limit on a zip uploaded directly (`Code.ZipFile`, not from S3): "50 MB", reported as
/// `CodeSizeZipped` = 52428800 bytes. Ferry uploads through S3, so it does not bind; shown in
/// the plan for comparison.
pub const LAMBDA_DIRECT_ZIP_LIMIT: u64 = 52_428_800;

/// What to do when `bootstrap` is too large for Lambda.
const SHRINK_HINT: &str = "build the stripped release binaries with `scripts/build-al2023.sh \
     release` and pass --artifacts <its output directory> (a debug build, or a release build with \
     debug info, can exceed the limit)";

/// The sizes that matter to Lambda, for the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LambdaPackage {
    /// Sum of the zip's entries, uncompressed (just `bootstrap`).
    pub unzipped: u64,
    /// The zip itself.
    pub zipped: u64,
}

impl std::fmt::Display for LambdaPackage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Lambda package: bootstrap {} unzipped (Lambda allows less than {}), bootstrap.zip {} \
             (deployed from S3; a direct upload would be limited to {})",
            mib(self.unzipped),
            mib(LAMBDA_UNZIPPED_LIMIT),
            mib(self.zipped),
            mib(LAMBDA_DIRECT_ZIP_LIMIT)
        )
    }
}

/// `n` bytes as MiB with one decimal (AWS's "MB" in the Lambda quotas are MiB).
fn mib(n: u64) -> String {
    format!("{:.1} MiB ({n} bytes)", n as f64 / 1_048_576.0)
}

/// Refuses a `bootstrap` of `len` bytes (at `path`) that Lambda would refuse unzipped, saying
/// what to do.
pub fn check_lambda_unzipped(path: &Path, len: u64) -> Result<()> {
    if len >= LAMBDA_UNZIPPED_LIMIT {
        return Err(Error::LimitExceeded {
            what: format!(
                "{} is {} unzipped; Lambda allows a package smaller than {} unzipped \
                 (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html): {SHRINK_HINT}",
                path.display(),
                mib(len),
                mib(LAMBDA_UNZIPPED_LIMIT)
            ),
        });
    }
    Ok(())
}

/// One object to upload.
#[derive(Clone)]
pub struct Artifact {
    /// Object key in the state bucket ([`crate::policy::GATE_ARTIFACT_KEY`] or
    /// [`crate::policy::LAMBDA_ARTIFACT_KEY`]).
    pub key: &'static str,
    /// The object's content as uploaded (the zip for the Lambda package).
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`, lowercase hex.
    pub sha256_hex: String,
    /// MD5 of `bytes`, lowercase hex (what S3's ETag is for a single-part SSE-S3 upload).
    pub md5_hex: String,
}

impl std::fmt::Debug for Artifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifact")
            .field("key", &self.key)
            .field("len", &self.bytes.len())
            .field("sha256_hex", &self.sha256_hex)
            .finish()
    }
}

impl Artifact {
    fn new(key: &'static str, bytes: Vec<u8>) -> Artifact {
        let sha256_hex = hex::encode(Sha256::digest(&bytes));
        let md5_hex = hex::encode(md5::Md5::digest(&bytes));
        Artifact {
            key,
            bytes,
            sha256_hex,
            md5_hex,
        }
    }
}

/// Both artifacts, read and prepared before any API call.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// Directory both files were read from (`--artifacts`, `$FERRY_ARTIFACTS` or the
    /// executable's directory).
    pub dir: PathBuf,
    /// The `ferry-gate` binary, uploaded as is.
    pub gate: Artifact,
    /// `bootstrap` zipped as the Lambda deployment package.
    pub lambda_zip: Artifact,
    /// The Lambda package's sizes (checked against [`LAMBDA_UNZIPPED_LIMIT`] by [`Self::load`]).
    pub lambda_package: LambdaPackage,
}

impl Artifacts {
    /// What Lambda reports as `CodeSha256` for the zip: base64 of its SHA-256.
    pub fn code_sha256_b64(&self) -> String {
        let raw = hex::decode(&self.lambda_zip.sha256_hex).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    /// Reads `bootstrap` and `ferry-gate` from `dir` and zips `bootstrap`. A missing or
    /// unreadable file is an error naming it; so is a `bootstrap` too large for Lambda
    /// unzipped (checked from its size, before it is read).
    pub fn load(dir: &Path) -> Result<Artifacts> {
        let read = |name: &str| -> Result<Vec<u8>> {
            let path = dir.join(name);
            let meta = std::fs::metadata(&path).map_err(|source| Error::ArtifactMissing {
                path: path.clone(),
                env: ARTIFACTS_ENV,
                source,
            })?;
            if !meta.is_file() {
                return Err(Error::ArtifactInvalid {
                    path,
                    why: "is not a regular file".to_string(),
                });
            }
            if name == BOOTSTRAP {
                check_lambda_unzipped(&path, meta.len())?;
            }
            let bytes = std::fs::read(&path).io("reading", &path)?;
            if !bytes.starts_with(b"\x7fELF") {
                return Err(Error::ArtifactInvalid {
                    path,
                    why: format!("is not an ELF executable (expected the {name} binary)"),
                });
            }
            Ok(bytes)
        };
        let gate = read(GATE)?;
        let bootstrap = read(BOOTSTRAP)?;
        // The file may have grown between the size check and the read.
        check_lambda_unzipped(&dir.join(BOOTSTRAP), bootstrap.len() as u64)?;
        let zip = zip_bootstrap(&bootstrap)
            .map_err(|e| e.context(format!("zipping {}", dir.join(BOOTSTRAP).display())))?;
        let lambda_package = LambdaPackage {
            unzipped: bootstrap.len() as u64,
            zipped: zip.len() as u64,
        };
        Ok(Artifacts {
            dir: dir.to_path_buf(),
            gate: Artifact::new(GATE_ARTIFACT_KEY, gate),
            lambda_zip: Artifact::new(LAMBDA_ARTIFACT_KEY, zip),
            lambda_package,
        })
    }

    fn all(&self) -> [&Artifact; 2] {
        [&self.gate, &self.lambda_zip]
    }
}

/// The artifacts directory: `--artifacts`, else `$FERRY_ARTIFACTS` (clap reads both), else the
/// directory of the running executable (where `cargo build` puts `ferry` next to `bootstrap`
/// and `ferry-gate`).
pub fn resolve_dir(arg: Option<&Path>) -> Result<PathBuf> {
    if let Some(d) = arg {
        return Ok(d.to_path_buf());
    }
    let exe = std::env::current_exe().map_err(|source| Error::CurrentExe { source })?;
    exe.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| Error::NotFound {
            what: format!("{} has no parent directory", exe.display()),
        })
}

/// A zip with one entry `bootstrap` (unix mode 0755, fixed timestamp), deflated.
pub fn zip_bootstrap(bootstrap: &[u8]) -> Result<Vec<u8>> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::with_capacity(
        bootstrap.len() / 2,
    )));
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1))
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o755)
        .large_file(bootstrap.len() as u64 >= u32::MAX as u64);
    w.start_file(BOOTSTRAP, opts).map_err(|e| Error::Zip {
        step: "starting the zip entry",
        source: e.into(),
    })?;
    w.write_all(bootstrap).map_err(|e| Error::Zip {
        step: "deflating bootstrap",
        source: e.into(),
    })?;
    let cur = w.finish().map_err(|e| Error::Zip {
        step: "finishing the zip",
        source: e.into(),
    })?;
    Ok(cur.into_inner())
}

/// Observes both objects and (in apply mode) uploads what differs. Without artifacts (plan
/// only) each object is recorded as unknown.
pub(super) async fn converge(ctx: &mut Ctx) -> Result<()> {
    let bucket = ctx.cfg.raw.state_bucket.clone();
    let keys = [GATE_ARTIFACT_KEY, LAMBDA_ARTIFACT_KEY];
    // What is there (a bucket-level list: see the module header).
    let mut have: Vec<(String, String)> = Vec::new();
    if ctx.state_bucket_exists {
        let r = ctx
            .s3
            .list_objects_v2()
            .bucket(&bucket)
            .prefix(crate::policy::ARTIFACTS_PREFIX)
            .send()
            .await
            .aws("s3:ListObjectsV2", || format!("{bucket}/artifacts/"))?;
        for o in r.contents() {
            if let (Some(k), Some(e)) = (o.key(), o.e_tag()) {
                have.push((k.to_string(), e.trim_matches('"').to_ascii_lowercase()));
            }
        }
    }
    let Some(arts) = ctx.artifacts.clone() else {
        let why = ctx
            .artifacts_problem
            .clone()
            .unwrap_or_else(|| "no artifacts directory".into());
        for k in keys {
            let exists = have.iter().any(|(hk, _)| hk == k);
            ctx.record(
                "artifact",
                k,
                None,
                Change::Unknown(format!(
                    "{} in S3; local binary not compared: {why}",
                    if exists { "present" } else { "absent" }
                )),
            );
        }
        return Ok(());
    };
    for a in arts.all() {
        let short = &a.sha256_hex[..12];
        let change = match have.iter().find(|(k, _)| k == a.key) {
            None => Change::Create,
            Some((_, etag)) if *etag == a.md5_hex => Change::Unchanged,
            Some((_, etag)) => Change::Update(vec![format!(
                "content: etag {etag} -> md5 {} (sha256 {short}…, {} bytes)",
                a.md5_hex,
                a.bytes.len()
            )]),
        };
        ctx.record("artifact", a.key, Some(short), change.clone());
        if !ctx.apply() || change == Change::Unchanged {
            continue;
        }
        ctx.s3
            .put_object()
            .bucket(&bucket)
            .key(a.key)
            .body(a.bytes.clone().into())
            .content_type(if a.key.ends_with(".zip") {
                "application/zip"
            } else {
                "application/octet-stream"
            })
            .metadata("sha256", &a.sha256_hex)
            .send()
            .await
            .aws("s3:PutObject", || {
                format!("{bucket}/{} ({} bytes)", a.key, a.bytes.len())
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip_is_deterministic_and_holds_bootstrap_0755() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let a = zip_bootstrap(&data).unwrap();
        let b = zip_bootstrap(&data).unwrap();
        assert_eq!(a, b, "same input must give the same zip");
        assert!(a.len() < data.len());
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(a)).unwrap();
        assert_eq!(z.len(), 1);
        let mut f = z.by_index(0).unwrap();
        assert_eq!(f.name(), "bootstrap");
        assert_eq!(f.unix_mode().map(|m| m & 0o777), Some(0o755));
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn a_bootstrap_lambda_would_refuse_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(GATE), b"\x7fELFgate").unwrap();
        let path = dir.path().join(BOOTSTRAP);
        let f = std::fs::File::create(&path).unwrap();
        (&f).write_all(b"\x7fELF").unwrap();
        // Sparse: reading and zipping 250 MiB would take seconds; the check must come first.
        f.set_len(LAMBDA_UNZIPPED_LIMIT).unwrap();
        let e = format!("{:#}", Artifacts::load(dir.path()).unwrap_err());
        assert!(
            e.contains("250.0 MiB (262144000 bytes) unzipped")
                && e.contains("scripts/build-al2023.sh release"),
            "{e}"
        );
        assert!(check_lambda_unzipped(&path, LAMBDA_UNZIPPED_LIMIT - 1).is_ok());
        assert!(check_lambda_unzipped(&path, LAMBDA_UNZIPPED_LIMIT).is_err());
        f.set_len(1 << 20).unwrap();
        let a = Artifacts::load(dir.path()).unwrap();
        assert_eq!(a.lambda_package.unzipped, 1 << 20);
        assert_eq!(a.lambda_package.zipped, a.lambda_zip.bytes.len() as u64);
        let shown = a.lambda_package.to_string();
        assert!(
            shown.starts_with("Lambda package: bootstrap 1.0 MiB (1048576 bytes) unzipped"),
            "{shown}"
        );
    }

    #[test]
    fn missing_artifacts_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = format!("{:#}", Artifacts::load(dir.path()).unwrap_err());
        assert!(e.contains("ferry-gate") && e.contains("not found"), "{e}");
        std::fs::write(dir.path().join(GATE), b"\x7fELFgate").unwrap();
        let e = format!("{:#}", Artifacts::load(dir.path()).unwrap_err());
        assert!(e.contains("bootstrap") && e.contains("not found"), "{e}");
        std::fs::write(dir.path().join(BOOTSTRAP), b"#!/bin/sh\n").unwrap();
        let e = format!("{:#}", Artifacts::load(dir.path()).unwrap_err());
        assert!(e.contains("not an ELF"), "{e}");
        std::fs::write(dir.path().join(BOOTSTRAP), b"\x7fELFboot").unwrap();
        let a = Artifacts::load(dir.path()).unwrap();
        assert_eq!(
            a.gate.sha256_hex,
            hex::encode(Sha256::digest(b"\x7fELFgate"))
        );
        assert_eq!(a.code_sha256_b64().len(), 44);
    }
}
