//! `ferry infra plan|apply|show|destroy` against moto (the pinned server from .venv) on a free
//! loopback port: create from nothing, a second apply changes nothing, hand-made drift shows in
//! plan and apply corrects it, destroy refuses a non-empty backup bucket unless it is named.
//!
//! moto's IAM checks are off here (this test is about provisioning; the policies' effect is
//! proven by tests/policy_proof.rs). Where moto is not AWS, the assertion is about what moto can
//! show: the endpoint policy is stored and read back, not enforced.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_cloud::config::{EXAMPLE_CONFIG, InfraConfig, ValidConfig};
use ferry_cloud::infra::{InfraCommand, run_with};
use ferry_testkit::Moto;

/// moto from ferry-testkit (free loopback port, stopped by PID on drop); installs the venv
/// first when it is missing.
fn start_moto() -> Moto {
    if !Moto::venv().join("bin/moto_server").exists() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let st = Command::new("bash")
            .arg(root.join("scripts/install-deps.sh"))
            .status()
            .unwrap();
        assert!(st.success(), "scripts/install-deps.sh failed");
    }
    Moto::start().unwrap_or_else(|e| panic!("starting moto: {e}"))
}

async fn sdk_with(moto: &Moto, region: &str, id: &str, secret: &str) -> aws_config::SdkConfig {
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
async fn sdk(moto: &Moto, region: &str) -> aws_config::SdkConfig {
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

fn config() -> ValidConfig {
    InfraConfig::parse(EXAMPLE_CONFIG).unwrap()
}

async fn cmd(
    cfg: &ValidConfig,
    sdk: &aws_config::SdkConfig,
    c: InfraCommand,
) -> anyhow::Result<String> {
    let mut out = Vec::new();
    run_with(cfg, c, &mut out, sdk).await?;
    Ok(String::from_utf8(out).unwrap())
}

fn apply(creds: &Path) -> InfraCommand {
    InfraCommand::Apply {
        credentials_out: creds.to_path_buf(),
    }
}

fn summary(plan: &str) -> &str {
    plan.lines()
        .find(|l| l.starts_with("Plan: "))
        .unwrap_or("(no summary)")
}

#[tokio::test(flavor = "current_thread")]
async fn apply_converges_is_idempotent_corrects_drift_and_destroys() {
    let moto = start_moto();
    let cfg = config();
    let sdk = sdk(&moto, &cfg.raw.region).await;
    let dir = tempfile::tempdir().unwrap();
    let creds: PathBuf = dir.path().join("backup.credentials");

    // Fresh account: everything is to be created.
    let plan = cmd(&cfg, &sdk, InfraCommand::Plan).await.unwrap();
    assert!(
        summary(&plan).starts_with("Plan: 14 to create, 0 to update, 0 unchanged"),
        "{plan}"
    );

    // Apply creates it all and writes the key once, 0600, without printing the secret.
    let out = cmd(&cfg, &sdk, apply(&creds)).await.unwrap();
    assert!(out.contains("Applied: 14 change(s)."), "{out}");
    let text = std::fs::read_to_string(&creds).unwrap();
    let secret = text
        .lines()
        .find_map(|l| l.strip_prefix("aws_secret_access_key = "))
        .expect("secret in credentials file");
    assert!(
        !secret.is_empty() && !out.contains(secret),
        "secret printed:\n{out}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Second apply: nothing to do.
    let again = cmd(&cfg, &sdk, apply(&dir.path().join("unused")))
        .await
        .unwrap();
    assert!(
        again.contains("Plan: 0 to create, 0 to update, 14 unchanged."),
        "{again}"
    );
    assert!(again.contains("Nothing to do"), "{again}");
    assert!(!dir.path().join("unused").exists());

    // What was created is what the config says.
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let iam = aws_sdk_iam::Client::new(&sdk);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let tagged = |n: &str| {
        aws_sdk_ec2::types::Filter::builder()
            .name("tag:Name")
            .values(n)
            .build()
    };
    let vpcs = ec2
        .describe_vpcs()
        .filters(tagged("ferry-vpc"))
        .send()
        .await
        .unwrap();
    let vpc = &vpcs.vpcs()[0];
    assert_eq!(vpc.cidr_block(), Some("10.0.0.0/16"));
    assert!(
        vpc.ipv6_cidr_block_association_set().is_empty(),
        "VPC has IPv6"
    );
    let subs = ec2
        .describe_subnets()
        .filters(tagged("ferry-public"))
        .send()
        .await
        .unwrap();
    let public = subs.subnets()[0].clone();
    assert_eq!(public.cidr_block(), Some("10.0.1.0/24"));
    assert_eq!(public.map_public_ip_on_launch(), Some(true));
    let private = ec2
        .describe_subnets()
        .filters(tagged("ferry-private"))
        .send()
        .await
        .unwrap();
    assert_eq!(private.subnets()[0].cidr_block(), Some("10.0.2.0/24"));
    assert_eq!(
        private.subnets()[0].availability_zone(),
        public.availability_zone()
    );
    let eps = ec2
        .describe_vpc_endpoints()
        .filters(tagged("ferry-s3-endpoint"))
        .send()
        .await
        .unwrap();
    let ep = &eps.vpc_endpoints()[0];
    assert_eq!(
        ep.route_table_ids().len(),
        2,
        "endpoint must serve both route tables"
    );
    let priv_rt = ec2
        .describe_route_tables()
        .filters(tagged("ferry-private-rt"))
        .send()
        .await
        .unwrap();
    assert!(
        !priv_rt.route_tables()[0]
            .routes()
            .iter()
            .any(|r| r.destination_cidr_block() == Some("0.0.0.0/0")),
        "private route table has an internet route"
    );
    let pab = s3
        .get_public_access_block()
        .bucket(&cfg.raw.backup_bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(
        pab.public_access_block_configuration()
            .unwrap()
            .block_public_policy(),
        Some(true)
    );
    let pol = s3
        .get_bucket_policy()
        .bucket(&cfg.raw.backup_bucket)
        .send()
        .await
        .unwrap();
    assert!(
        pol.policy()
            .unwrap()
            .contains(ep.vpc_endpoint_id().unwrap()),
        "backup policy names the endpoint"
    );

    // Drift made by hand shows up in plan, named, and apply corrects it.
    let pub_id = public.subnet_id().unwrap();
    ec2.modify_subnet_attribute()
        .subnet_id(pub_id)
        .map_public_ip_on_launch(
            aws_sdk_ec2::types::AttributeBooleanValue::builder()
                .value(false)
                .build(),
        )
        .send()
        .await
        .unwrap();
    iam.put_user_policy()
        .user_name("ferry-backup")
        .policy_name("handmade")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();
    ec2.modify_vpc_endpoint()
        .vpc_endpoint_id(ep.vpc_endpoint_id().unwrap())
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();
    s3.delete_public_access_block()
        .bucket(&cfg.raw.state_bucket)
        .send()
        .await
        .unwrap();
    let pub_rt = ec2
        .describe_route_tables()
        .filters(tagged("ferry-public-rt"))
        .send()
        .await
        .unwrap();
    ec2.delete_route()
        .route_table_id(pub_rt.route_tables()[0].route_table_id().unwrap())
        .destination_cidr_block("0.0.0.0/0")
        .send()
        .await
        .unwrap();
    let drift = cmd(&cfg, &sdk, InfraCommand::Plan).await.unwrap();
    assert!(
        summary(&drift).starts_with("Plan: 0 to create, 5 to update"),
        "{drift}"
    );
    assert!(drift.contains("route 0.0.0.0/0: (none) -> igw-"), "{drift}");
    assert!(
        drift.contains("map_public_ip_on_launch: false -> true"),
        "{drift}"
    );
    assert!(
        drift.contains("inline policy handmade: present -> removed"),
        "{drift}"
    );
    assert!(drift.contains("policy: differs -> generated"), "{drift}");
    assert!(drift.contains("public access block"), "{drift}");
    cmd(&cfg, &sdk, apply(&dir.path().join("unused")))
        .await
        .unwrap();
    let fixed = cmd(&cfg, &sdk, InfraCommand::Plan).await.unwrap();
    assert!(
        fixed.contains("Plan: 0 to create, 0 to update, 14 unchanged."),
        "{fixed}"
    );

    // show prints IDs.
    let show = cmd(&cfg, &sdk, InfraCommand::Show).await.unwrap();
    assert!(
        show.contains(pub_id) && show.contains("Next steps"),
        "{show}"
    );

    // destroy refuses a non-empty backup bucket unless its name is repeated. (moto 5.2.5 refuses
    // object requests on a bucket whose policy has a Condition, so the test lifts the policy to
    // plant a backup object, as only the jump box could on AWS.)
    s3.delete_bucket_policy()
        .bucket(&cfg.raw.backup_bucket)
        .send()
        .await
        .unwrap();
    s3.put_object()
        .bucket(&cfg.raw.backup_bucket)
        .key("site1/config")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
    let e = cmd(
        &cfg,
        &sdk,
        InfraCommand::Destroy {
            delete_backup_bucket: None,
        },
    )
    .await
    .unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("not empty") && msg.contains(&cfg.raw.backup_bucket),
        "{msg}"
    );
    let still = cmd(&cfg, &sdk, InfraCommand::Plan).await.unwrap();
    assert!(
        !still.contains("to create, 0 to update, 0 unchanged"),
        "refused destroy removed something:\n{still}"
    );
    assert!(summary(&still).starts_with("Plan: 0 to create"), "{still}");
    let e = cmd(
        &cfg,
        &sdk,
        InfraCommand::Destroy {
            delete_backup_bucket: Some("other-bucket".into()),
        },
    )
    .await
    .unwrap_err();
    assert!(format!("{e:#}").contains("does not name"), "{e:#}");
    let gone = cmd(
        &cfg,
        &sdk,
        InfraCommand::Destroy {
            delete_backup_bucket: Some(cfg.raw.backup_bucket.clone()),
        },
    )
    .await
    .unwrap();
    assert!(gone.contains("Destroyed."), "{gone}");
    let empty = cmd(&cfg, &sdk, InfraCommand::Plan).await.unwrap();
    assert!(
        summary(&empty).starts_with("Plan: 14 to create, 0 to update, 0 unchanged"),
        "{empty}"
    );
}

#[test]
fn malformed_config_is_refused_before_any_api_call() {
    // No endpoint, no credentials: a config error must come first, naming the field.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("infra.toml");
    std::fs::write(&path, EXAMPLE_CONFIG.replace("10.0.2.0/24", "10.0.1.0/25")).unwrap();
    let args = ferry_cloud::InfraArgs {
        config: path,
        command: InfraCommand::Plan,
    };
    let e = ferry_cloud::infra_main(args).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("network.private_subnet_cidr"), "{msg}");
}

#[tokio::test(flavor = "current_thread")]
async fn apply_resumes_after_an_interruption() {
    let moto = start_moto();
    let cfg = config();
    let sdk = sdk(&moto, &cfg.raw.region).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("backup.credentials");

    // An apply that stopped after the VPC and the Lambda role, as a crash would leave it.
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let tags: Vec<aws_sdk_ec2::types::Tag> = [
        ("Name", "ferry-vpc"),
        ("ferry:managed", "true"),
        ("ferry:installation", "ferry"),
    ]
    .iter()
    .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(*k).value(*v).build())
    .collect();
    ec2.create_vpc()
        .cidr_block("10.0.0.0/16")
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Vpc)
                .set_tags(Some(tags))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let plan = cmd(&cfg, &sdk, InfraCommand::Plan).await.unwrap();
    assert!(
        summary(&plan).starts_with("Plan: 13 to create, 0 to update, 1 unchanged"),
        "{plan}"
    );

    // The credentials file is in the way: apply stops at the access key, naming the file, and
    // leaves no key behind.
    std::fs::write(&creds, "someone else's").unwrap();
    let e = cmd(&cfg, &sdk, apply(&creds)).await.unwrap_err();
    assert!(format!("{e:#}").contains("backup.credentials"), "{e:#}");
    let iam = aws_sdk_iam::Client::new(&sdk);
    let keys = iam
        .list_access_keys()
        .user_name("ferry-backup")
        .send()
        .await
        .unwrap();
    assert!(keys.access_key_metadata().is_empty());
    assert_eq!(std::fs::read_to_string(&creds).unwrap(), "someone else's");

    // The next apply completes what is left.
    std::fs::remove_file(&creds).unwrap();
    let plan = cmd(&cfg, &sdk, InfraCommand::Plan).await.unwrap();
    assert!(plan.contains("access key: none -> created"), "{plan}");
    cmd(&cfg, &sdk, apply(&creds)).await.unwrap();
    assert!(creds.exists());
    let done = cmd(&cfg, &sdk, InfraCommand::Plan).await.unwrap();
    assert!(
        done.contains("Plan: 0 to create, 0 to update, 14 unchanged."),
        "{done}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn applied_backup_user_keys_are_refused_s3_ec2_and_iam_with_moto_iam_checks_on() {
    let moto = start_moto();
    let cfg = config();
    let operator = sdk(&moto, &cfg.raw.region).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("backup.credentials");
    cmd(&cfg, &operator, apply(&creds)).await.unwrap();
    moto.enable_iam_checks().unwrap();

    // The keys exactly as apply wrote them for the backup VM.
    let text = std::fs::read_to_string(&creds).unwrap();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap()
            .to_string()
    };
    let backup = sdk_with(
        &moto,
        &cfg.raw.region,
        &field("aws_access_key_id = "),
        &field("aws_secret_access_key = "),
    )
    .await;
    let path_style = |c: &aws_config::SdkConfig| {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(c)
                .force_path_style(true)
                .build(),
        )
    };
    let (s3_b, s3_op) = (path_style(&backup), path_style(&operator));
    let (ec2_b, ec2_op) = (
        aws_sdk_ec2::Client::new(&backup),
        aws_sdk_ec2::Client::new(&operator),
    );
    let iam_b = aws_sdk_iam::Client::new(&backup);

    // Control: the operator (admin policy) is let through by the same moto, so the refusals
    // below are moto applying the backup user's policy.
    s3_op
        .list_buckets()
        .send()
        .await
        .expect("operator lists buckets");
    ec2_op
        .describe_vpcs()
        .send()
        .await
        .expect("operator describes VPCs");

    fn denied<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) {
        let e = format!(
            "{:?}",
            r.err()
                .unwrap_or_else(|| panic!("backup user was allowed {what}"))
        );
        assert!(
            e.contains("AccessDenied") || e.contains("UnauthorizedOperation") || e.contains("403"),
            "{what}: unexpected error {e}"
        );
    }
    // ListAllMyBuckets and ListBucket are judged on the user's identity policy alone; for the
    // object requests moto 5.2.5 would also refuse anyone because the bucket policies carry
    // conditions, so those two only show that the keys get nowhere.
    denied(s3_b.list_buckets().send().await, "s3:ListAllMyBuckets");
    for b in [&cfg.raw.backup_bucket, &cfg.raw.state_bucket] {
        denied(
            s3_b.list_objects_v2().bucket(b).send().await,
            "s3:ListBucket",
        );
        denied(
            s3_b.get_object().bucket(b).key("any").send().await,
            "s3:GetObject",
        );
        let put = s3_b
            .put_object()
            .bucket(b)
            .key("planted")
            .body(b"x".to_vec().into());
        denied(put.send().await, "s3:PutObject");
    }
    denied(
        ec2_b.describe_instances().send().await,
        "ec2:DescribeInstances",
    );
    denied(ec2_b.describe_vpcs().send().await, "ec2:DescribeVpcs");
    denied(iam_b.list_users().send().await, "iam:ListUsers");
    // Invoking is not checked here: the functions are not created yet (they need the bootstrap
    // binary), and moto 5.2.5 judges invokes as `lambda:Invoke` on `*` anyway; see
    // scripts/policy-proof/moto_check.py and the evaluator's matrix (docs/SECURITY.md).
}
