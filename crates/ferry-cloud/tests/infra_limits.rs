//! Limits a first run on a real account meets, reproduced in the local cloud and checked by
//! `ferry infra` before it changes anything:
//! - Lambda's deployment-package limits: the test kit's moto refuses CreateFunction /
//!   UpdateFunctionCode over them with Lambda's own status, code and message
//!   (`ferry-testkit/py/moto/unkind_lambda.py`), plain moto does not (the gap the patch fills),
//!   and `ferry infra plan/apply` refuses an oversized `bootstrap` itself, saying what to do.
//!   <https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html>
//! - The jump box's instance type must be offered in the configured availability zone (moto's
//!   offering data, like AWS, has no t3.micro in us-east-1e): plan warns, apply refuses.
//!   <https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstanceTypeOfferings.html>
//!
//! Zips here hold zeros (a 250 MiB entry deflates to ~250 KiB) except the direct-upload one,
//! which must be large zipped and so holds pseudo-random bytes (~51 MiB, in memory).

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

use std::io::Write;
use std::path::{Path, PathBuf};

use aws_sdk_lambda::error::ProvideErrorMetadata;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{FunctionCode, Runtime};
use ferry_cloud::config::{EXAMPLE_CONFIG, InfraConfig, ValidConfig};
use ferry_cloud::infra::InfraCommand;
use ferry_cloud::infra::artifacts::LAMBDA_UNZIPPED_LIMIT;
use ferry_testkit::{Moto, MotoOptions};

mod common;
use common::{cmd, operator_sdk, sdk_with};

const REGION: &str = "us-east-1";
const BUCKET: &str = "kit-lambda-code";

fn moto(plain: bool) -> Moto {
    Moto::start_with(MotoOptions {
        plain,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("starting moto (run scripts/install-deps.sh?): {e}"))
}

/// A deflated zip whose entries hold `sizes[i]` zero bytes each, written in 1 MiB pieces.
fn zeros_zip(sizes: &[u64]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let chunk = vec![0u8; 1 << 20];
    for (i, &size) in sizes.iter().enumerate() {
        let opts = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(1))
            .unix_permissions(0o755);
        w.start_file(format!("part{i}"), opts).unwrap();
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            w.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
    }
    w.finish().unwrap().into_inner()
}

/// A stored (uncompressed) zip of `len` pseudo-random bytes: as large zipped as unzipped.
fn random_zip(len: usize) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut data = Vec::with_capacity(len);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while data.len() < len {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::with_capacity(len + 1024)));
    w.start_file(
        "bootstrap",
        SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored),
    )
    .unwrap();
    w.write_all(&data).unwrap();
    w.finish().unwrap().into_inner()
}

/// A role Lambda may use, and the code bucket with `(key, zip)` objects.
async fn setup_lambda_world(sdk: &aws_config::SdkConfig, objects: &[(&str, Vec<u8>)]) -> String {
    let iam = aws_sdk_iam::Client::new(sdk);
    let role = iam
        .create_role()
        .role_name("kit-lambda")
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .unwrap();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    for (key, bytes) in objects {
        s3.put_object()
            .bucket(BUCKET)
            .key(*key)
            .body(bytes.clone().into())
            .send()
            .await
            .unwrap();
    }
    role.role().unwrap().arn().to_string()
}

fn from_s3(key: &str) -> FunctionCode {
    FunctionCode::builder()
        .s3_bucket(BUCKET)
        .s3_key(key)
        .build()
}

async fn create(
    lambda: &aws_sdk_lambda::Client,
    name: &str,
    role: &str,
    code: FunctionCode,
) -> Result<(), (u16, String, String)> {
    lambda
        .create_function()
        .function_name(name)
        .runtime(Runtime::Providedal2023)
        .handler("bootstrap")
        .role(role)
        .code(code)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
            (
                status,
                e.code().unwrap_or("(none)").to_string(),
                e.message().unwrap_or("(none)").to_string(),
            )
        })
}

#[tokio::test(flavor = "current_thread")]
async fn kit_lambda_refuses_packages_over_the_limits_as_aws_does() {
    let moto = moto(false);
    let sdk = sdk_with(&moto, REGION, "AKIAIOSFODNN7EXAMPLE", "x").await;
    let half = LAMBDA_UNZIPPED_LIMIT / 2;
    // Two entries that together reach the limit (the sum counts), and one just under it.
    let over = zeros_zip(&[half, LAMBDA_UNZIPPED_LIMIT - half]);
    let under = zeros_zip(&[LAMBDA_UNZIPPED_LIMIT - 1]);
    let role = setup_lambda_world(&sdk, &[("over.zip", over), ("under.zip", under)]).await;
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let unzipped_refusal = (
        400,
        "InvalidParameterValueException".to_string(),
        "Unzipped size must be smaller than 262144000 bytes".to_string(),
    );

    // From S3: over the unzipped limit refused, under accepted.
    assert_eq!(
        create(&lambda, "f-over", &role, from_s3("over.zip")).await,
        Err(unzipped_refusal.clone())
    );
    assert!(
        lambda
            .get_function()
            .function_name("f-over")
            .send()
            .await
            .is_err(),
        "a refused function must not exist"
    );
    create(&lambda, "f", &role, from_s3("under.zip"))
        .await
        .unwrap();
    let before = lambda
        .get_function_configuration()
        .function_name("f")
        .send()
        .await
        .unwrap();

    // UpdateFunctionCode over the limit: refused, the function keeps its code.
    let e = lambda
        .update_function_code()
        .function_name("f")
        .s3_bucket(BUCKET)
        .s3_key("over.zip")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (
            e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0),
            e.code().unwrap_or("").to_string(),
            e.message().unwrap_or("").to_string()
        ),
        unzipped_refusal
    );
    let after = lambda
        .get_function_configuration()
        .function_name("f")
        .send()
        .await
        .unwrap();
    assert_eq!(after.code_sha256(), before.code_sha256());
    assert_eq!(after.code_size(), before.code_size());

    // Direct upload (ZipFile): a zip over 50 MiB is refused before anything else is looked at,
    // a small one accepted.
    let big = random_zip(52_428_800 + (1 << 20));
    assert_eq!(
        create(
            &lambda,
            "f-direct-big",
            &role,
            FunctionCode::builder().zip_file(Blob::new(big)).build()
        )
        .await,
        Err((
            413,
            "RequestEntityTooLargeException".to_string(),
            "Request must be smaller than 69905067 bytes for the CreateFunction operation"
                .to_string()
        ))
    );
    create(
        &lambda,
        "f-direct",
        &role,
        FunctionCode::builder()
            .zip_file(Blob::new(zeros_zip(&[4096])))
            .build(),
    )
    .await
    .unwrap();
    // A direct upload under 50 MiB zipped but over 250 MiB unzipped.
    let e = lambda
        .update_function_code()
        .function_name("f-direct")
        .zip_file(Blob::new(zeros_zip(&[LAMBDA_UNZIPPED_LIMIT])))
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("InvalidParameterValueException"), "{e:?}");
}

/// The gap the kit's patch fills: plain moto 5.2.5 accepts a package Lambda refuses. When this
/// fails, moto enforces the limit itself: drop `unkind_lambda.py`.
#[tokio::test(flavor = "current_thread")]
async fn plain_moto_accepts_a_package_lambda_refuses() {
    let moto = moto(true);
    let sdk = sdk_with(&moto, REGION, "AKIAIOSFODNN7EXAMPLE", "x").await;
    let over = zeros_zip(&[LAMBDA_UNZIPPED_LIMIT + 1]);
    let role = setup_lambda_world(&sdk, &[("over.zip", over)]).await;
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    create(&lambda, "f-over", &role, from_s3("over.zip"))
        .await
        .unwrap();
}

fn config(region: &str, zone: &str) -> ValidConfig {
    let text = EXAMPLE_CONFIG
        .replace(
            "region = \"eu-central-1\"",
            &format!("region = \"{region}\""),
        )
        .replace(
            "# availability_zone = \"eu-central-1a\"",
            &format!("availability_zone = \"{zone}\""),
        );
    InfraConfig::parse(&text).unwrap()
}

/// An artifacts directory with a small stand-in gate and a `bootstrap` of `len` bytes (an ELF
/// header, then a sparse hole: nothing is written or read beyond the header unless the size
/// check is missing).
fn artifacts(len: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ferry-gate"), b"\x7fELF stand-in gate").unwrap();
    let f = std::fs::File::create(dir.path().join("bootstrap")).unwrap();
    (&f).write_all(b"\x7fELF").unwrap();
    f.set_len(len).unwrap();
    dir
}

fn dir_of(d: &tempfile::TempDir) -> Option<PathBuf> {
    Some(d.path().to_path_buf())
}

async fn vpc_count(sdk: &aws_config::SdkConfig) -> usize {
    aws_sdk_ec2::Client::new(sdk)
        .describe_vpcs()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:ferry:installation")
                .values("ferry")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .vpcs()
        .len()
}

#[tokio::test(flavor = "current_thread")]
async fn infra_refuses_a_bootstrap_lambda_would_refuse_before_changing_anything() {
    let moto = moto(false);
    let sdk = operator_sdk(&moto, REGION).await;
    let cfg = config(REGION, "us-east-1a");
    let big = artifacts(LAMBDA_UNZIPPED_LIMIT + 42);
    let creds = big.path().join("creds");

    let e = cmd(
        &cfg,
        &sdk,
        InfraCommand::Apply {
            credentials_out: creds.clone(),
            artifacts: dir_of(&big),
        },
    )
    .await
    .unwrap_err();
    let msg = format!("{e:#}");
    let path = big.path().join("bootstrap");
    assert!(
        msg.contains(&format!(
            "{} is 250.0 MiB (262144042 bytes) unzipped",
            path.display()
        )) && msg.contains("smaller than 250.0 MiB (262144000 bytes)")
            && msg.contains("scripts/build-al2023.sh release")
            && msg.contains("gettingstarted-limits"),
        "{msg}"
    );
    assert_eq!(vpc_count(&sdk).await, 0, "apply changed something: {msg}");
    assert!(!creds.exists());

    // plan says the same, and shows the artifacts as not compared.
    let out = cmd(
        &cfg,
        &sdk,
        InfraCommand::Plan {
            artifacts: dir_of(&big),
        },
    )
    .await
    .unwrap();
    assert!(
        out.contains("Artifacts not compared:")
            && out.contains("Lambda allows a package smaller than 250.0 MiB"),
        "{out}"
    );

    // One byte under the limit passes the check (the plan shows the sizes).
    let fits = artifacts(LAMBDA_UNZIPPED_LIMIT - 1);
    let out = cmd(
        &cfg,
        &sdk,
        InfraCommand::Plan {
            artifacts: dir_of(&fits),
        },
    )
    .await
    .unwrap();
    assert!(
        out.contains(
            "Lambda package: bootstrap 250.0 MiB (262143999 bytes) unzipped (Lambda allows less \
             than 250.0 MiB (262144000 bytes))"
        ),
        "{out}"
    );
}

fn plan_without_artifacts() -> InfraCommand {
    InfraCommand::Plan {
        artifacts: Some(Path::new("/nonexistent/ferry-artifacts").to_path_buf()),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn plan_warns_and_apply_refuses_when_the_instance_type_is_not_offered_in_the_zone() {
    let moto = moto(false);
    let sdk = operator_sdk(&moto, REGION).await;

    // us-east-1a offers t3.micro: no warning.
    let ok = cmd(
        &config(REGION, "us-east-1a"),
        &sdk,
        plan_without_artifacts(),
    )
    .await
    .unwrap();
    assert!(!ok.contains("is not offered"), "{ok}");

    // us-east-1e does not (on AWS, and in moto's offering data).
    let cfg = config(REGION, "us-east-1e");
    let out = cmd(&cfg, &sdk, plan_without_artifacts()).await.unwrap();
    assert!(
        out.contains(
            "warning: jumpbox.instance_type t3.micro is not offered in us-east-1e \
             (network.availability_zone)"
        ) && out.contains(
            "it is offered in us-east-1a, us-east-1b, us-east-1c, us-east-1d, us-east-1f"
        ),
        "{out}"
    );

    let arts = artifacts(4096);
    let dir = tempfile::tempdir().unwrap();
    let e = cmd(
        &cfg,
        &sdk,
        InfraCommand::Apply {
            credentials_out: dir.path().join("creds"),
            artifacts: dir_of(&arts),
        },
    )
    .await
    .unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("not offered in us-east-1e"), "{msg}");
    assert_eq!(vpc_count(&sdk).await, 0, "apply changed something: {msg}");

    // A type offered in no zone of the region (hpc7a: us-east-2 only) says so.
    let text = EXAMPLE_CONFIG
        .replace("region = \"eu-central-1\"", "region = \"us-east-1\"")
        .replace("t3.micro", "hpc7a.12xlarge");
    let out = cmd(
        &InfraConfig::parse(&text).unwrap(),
        &sdk,
        plan_without_artifacts(),
    )
    .await
    .unwrap();
    assert!(
        out.contains(
            "warning: jumpbox.instance_type hpc7a.12xlarge is not offered in any availability \
             zone of us-east-1"
        ),
        "{out}"
    );
}
