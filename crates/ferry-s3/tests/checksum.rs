//! S3 verifies the `ChecksumSHA256` of every write-once put against the bytes it receives and
//! refuses a mismatch with 400 BadDigest, storing nothing
//! (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html>).
//! moto 5.2.5 does not; the test kit's moto does (`py/moto/unkind_s3_checksum.py`). So a gate
//! that hashed its spool file wrongly fails here as it would on AWS, and nothing half-right
//! lands in the bucket. The pair test shows the gap in plain moto (when it fails, moto verifies
//! on its own: drop the patch).

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;

use ferry_repo::storage::PutOutcome;
use ferry_s3::S3Objects;
use ferry_testkit::{Moto, MotoOptions};
use sha2::Digest;

const BUCKET: &str = "ferry-checksum";

fn objects(moto: &Moto) -> S3Objects {
    common::objects(moto, BUCKET, "site1")
}

/// A spool file holding `body`, and the SHA-256 of something else.
fn spool_with_wrong_digest(dir: &std::path::Path, body: &[u8]) -> (std::path::PathBuf, [u8; 32]) {
    let path = dir.join("spool");
    std::fs::write(&path, body).unwrap();
    (path, sha2::Sha256::digest(b"not the body").into())
}

#[tokio::test(flavor = "current_thread")]
async fn a_put_whose_sha256_is_not_its_bytes_is_refused_and_stores_nothing() {
    let moto = Moto::start().expect("moto");
    let s3 = objects(&moto);
    let dir = tempfile::tempdir().unwrap();
    let body = b"pack bytes as the gate spooled them".to_vec();
    let (path, wrong) = spool_with_wrong_digest(dir.path(), &body);

    let e = s3
        .put_file_if_absent("packs/p1", &path, body.len() as u64, &wrong)
        .await
        .expect_err("S3 refuses a checksum that is not the body's");
    let msg = e.to_string();
    assert!(
        msg.contains("BadDigest")
            && msg.contains("The SHA256 you specified did not match the calculated checksum")
            && msg.contains("s3://ferry-checksum/site1/packs/p1"),
        "{msg}"
    );
    assert!(s3.list_all("packs/").await.unwrap().is_empty());

    // The right digest (as put_bytes_if_absent computes it) is stored, and read back intact.
    let right: [u8; 32] = sha2::Sha256::digest(&body).into();
    assert_eq!(
        s3.put_file_if_absent("packs/p1", &path, body.len() as u64, &right)
            .await
            .unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(s3.get("packs/p1").await.unwrap(), body);
    assert_eq!(
        s3.put_bytes_if_absent("packs/p2", b"x".to_vec())
            .await
            .unwrap(),
        PutOutcome::Stored
    );
}

#[tokio::test(flavor = "current_thread")]
async fn plain_moto_stores_a_put_whose_sha256_is_not_its_bytes() {
    let moto = Moto::start_with(MotoOptions {
        plain: true,
        ..Default::default()
    })
    .expect("plain moto");
    let s3 = objects(&moto);
    let dir = tempfile::tempdir().unwrap();
    let body = b"pack bytes".to_vec();
    let (path, wrong) = spool_with_wrong_digest(dir.path(), &body);
    assert_eq!(
        s3.put_file_if_absent("packs/p1", &path, body.len() as u64, &wrong)
            .await
            .unwrap(),
        PutOutcome::Stored,
        "plain moto now verifies checksums: drop py/moto/unkind_s3_checksum.py"
    );
}
