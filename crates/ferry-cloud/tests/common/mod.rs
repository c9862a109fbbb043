//! Helpers shared by ferry-cloud's suites against the test kit's moto (`infra_moto.rs`,
//! `infra_limits.rs`): SDK configs with given keys, an operator IAM user, running a
//! `ferry infra` command and capturing its output.
#![allow(dead_code)]

use ferry_cloud::config::ValidConfig;
use ferry_cloud::infra::{InfraCommand, run_with};
use ferry_testkit::Moto;

/// An SDK config for `moto` in `region`, signed with the given keys.
pub async fn sdk_with(moto: &Moto, region: &str, id: &str, secret: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .endpoint_url(moto.endpoint())
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            id, secret, None, None, "test",
        ))
        .load()
        .await
}

/// Credentials of an operator IAM user made in moto, so that sts:GetCallerIdentity answers with
/// a real IAM user ARN (moto's anonymous default is not an IAM ARN).
pub async fn operator_sdk(moto: &Moto, region: &str) -> aws_config::SdkConfig {
    let setup = sdk_with(moto, region, "AKIAIOSFODNN7EXAMPLE", "setup").await;
    let iam = aws_sdk_iam::Client::new(&setup);
    iam.create_user()
        .user_name("operator")
        .send()
        .await
        .unwrap();
    iam.put_user_policy()
        .user_name("operator")
        .policy_name("admin")
        .policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
        )
        .send()
        .await
        .unwrap();
    let k = iam
        .create_access_key()
        .user_name("operator")
        .send()
        .await
        .unwrap();
    let k = k.access_key().unwrap();
    sdk_with(moto, region, k.access_key_id(), k.secret_access_key()).await
}

/// Runs one `ferry infra` command and returns what it printed.
pub async fn cmd(
    cfg: &ValidConfig,
    sdk: &aws_config::SdkConfig,
    c: InfraCommand,
) -> anyhow::Result<String> {
    let mut out = Vec::new();
    run_with(cfg, c, &mut out, sdk).await?;
    Ok(String::from_utf8(out).unwrap())
}
