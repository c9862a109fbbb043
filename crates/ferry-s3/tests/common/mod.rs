//! What the S3 tests share: a client on the kit's moto, for a bucket this creates.

use ferry_s3::S3Objects;
use ferry_testkit::{MOTO_REGION, Moto};

/// `prefix` in a new `bucket` of `moto`, with moto's test credentials.
#[allow(dead_code)] // not every test binary uses it
pub fn objects(moto: &Moto, bucket: &str, prefix: &str) -> S3Objects {
    moto.python(
        "import boto3, sys; boto3.client('s3').create_bucket(Bucket=sys.argv[1])",
        &[bucket],
        &[],
    )
    .expect("bucket");
    objects_in(moto, bucket, prefix)
}

/// `prefix` in the existing `bucket` of `moto`.
#[allow(dead_code)] // not every test binary uses it
pub fn objects_in(moto: &Moto, bucket: &str, prefix: &str) -> S3Objects {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(MOTO_REGION))
        .endpoint_url(moto.endpoint())
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .build();
    S3Objects::with_client(aws_sdk_s3::Client::from_conf(conf), bucket, prefix)
}
