//! What the S3 tests share: a client on the kit's moto, for a bucket this creates.

use ferry_s3::S3Objects;
use ferry_testkit::{MOTO_REGION, Moto};

/// `prefix` in a new `bucket` of `moto`, with moto's test credentials.
pub fn objects(moto: &Moto, bucket: &str, prefix: &str) -> S3Objects {
    moto.python(
        "import boto3, sys; boto3.client('s3').create_bucket(Bucket=sys.argv[1])",
        &[bucket],
        &[],
    )
    .expect("bucket");
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
