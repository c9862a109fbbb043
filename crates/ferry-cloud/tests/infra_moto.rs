//! `ferry infra plan|apply|show|destroy` against moto (the pinned server from .venv) on a free
//! loopback port: create from nothing, a second apply changes nothing, hand-made drift shows in
//! plan and apply corrects it, destroy refuses a non-empty backup bucket unless it is named.
//!
//! moto's IAM checks are off here (this test is about provisioning; the policies' effect is
//! proven by tests/policy_proof.rs), but the test kit's moto evaluates the bucket policies with
//! their conditions: a backup object is planted as the jump box through the S3 gateway
//! endpoint, and an operator role with a path keeps its access. Where moto is not AWS, the assertion is about what moto can
//! show: the endpoint policy is stored and read back, not enforced; the Lambda functions are
//! created and configured from the real `bootstrap` zip, but moto 5.2.5's Invoke never runs
//! their code (ferry-lambda's tests run it under the test kit's Lambda host), and the sweep
//! rule's schedule never fires.
//!
//! The artifacts are the real binaries `cargo test --workspace` builds next to this test's
//! executable (`<target>/debug/bootstrap`, `ferry-gate`): native builds, which is all moto
//! needs; the Amazon Linux 2023 builds are checked by tests/al2023_glibc.rs.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_cloud::config::{EXAMPLE_CONFIG, InfraConfig, ValidConfig};
use ferry_cloud::infra::{InfraCommand, run_with};
use ferry_testkit::Moto;

mod common;
use common::{cmd, operator_sdk as sdk, sdk_with};

/// moto from ferry-testkit (free loopback port, stopped by PID on drop); installs the venv
/// first when it is missing.
fn start_moto() -> Moto {
    if !Moto::venv().join("bin/moto_server").exists() {
        let root = ferry_testkit::workspace_root();
        let st = Command::new("bash")
            .arg(root.join("scripts/install-deps.sh"))
            .status()
            .unwrap();
        assert!(st.success(), "scripts/install-deps.sh failed");
    }
    Moto::start().unwrap_or_else(|e| panic!("starting moto: {e}"))
}

async fn sdk_with_session(
    moto: &Moto,
    region: &str,
    c: &aws_sdk_sts::types::Credentials,
) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .endpoint_url(moto.endpoint())
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            None,
            "test",
        ))
        .load()
        .await
}

fn path_style(c: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(c)
            .force_path_style(true)
            .build(),
    )
}

/// Writes `key` into the backup bucket the only way the bucket policy leaves open: as the
/// jump-box role, from an instance in the public subnet (its role session is named after the
/// instance, as EC2 names it), through the S3 gateway endpoint (the test kit's endpoint port,
/// where the request carries `aws:SourceVpce` when the subnet's route table has the endpoint),
/// with `If-None-Match: *`. The instance is terminated afterwards. Returns the jump box's S3
/// client through the endpoint and the one around it.
async fn plant_as_jumpbox(
    moto: &Moto,
    admin: &aws_config::SdkConfig,
    cfg: &ValidConfig,
    key: &str,
) -> (aws_sdk_s3::Client, aws_sdk_s3::Client) {
    let ec2 = aws_sdk_ec2::Client::new(admin);
    let subnet = ec2
        .describe_subnets()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:Name")
                .values(format!("{}-public", cfg.names.prefix))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let subnet = subnet.subnets()[0].subnet_id().unwrap().to_string();
    let image = ec2.describe_images().owners("amazon").send().await.unwrap();
    let image = image.images()[0].image_id().unwrap().to_string();
    let run = ec2
        .run_instances()
        .image_id(image)
        .min_count(1)
        .max_count(1)
        .subnet_id(&subnet)
        .send()
        .await
        .unwrap();
    let instance = run.instances()[0].instance_id().unwrap().to_string();
    let account = aws_sdk_sts::Client::new(admin)
        .get_caller_identity()
        .send()
        .await
        .unwrap()
        .account()
        .unwrap()
        .to_string();
    let role = format!("arn:aws:iam::{account}:role/{}", cfg.names.jumpbox_role);
    let c = aws_sdk_sts::Client::new(admin)
        .assume_role()
        .role_arn(&role)
        .role_session_name(&instance)
        .send()
        .await
        .unwrap();
    let jb = sdk_with_session(moto, &cfg.raw.region, c.credentials().unwrap()).await;
    let endpoint = moto
        .s3_gateway_endpoint()
        .expect("the test kit's moto has a gateway endpoint");
    let through = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&jb)
            .endpoint_url(endpoint)
            .force_path_style(true)
            .build(),
    );
    through
        .put_object()
        .bucket(&cfg.raw.backup_bucket)
        .key(key)
        .if_none_match("*")
        // As the gate does (ferry-s3): a bucket with Object Lock asks for the algorithm header.
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the jump box's put through the endpoint: {}\n{}",
                aws_sdk_s3::error::DisplayErrorContext(&e),
                moto.log()
            )
        });
    // A new instance is NotFound for a while (EC2 eventual consistency, reproduced by the kit):
    // terminate it once it is visible.
    for attempt in 0.. {
        match ec2
            .terminate_instances()
            .instance_ids(&instance)
            .send()
            .await
        {
            Ok(_) => break,
            Err(e)
                if attempt < 80
                    && aws_sdk_ec2::error::ProvideErrorMetadata::code(&e)
                        == Some("InvalidInstanceID.NotFound") =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(e) => panic!("terminating {instance}: {e:?}"),
        }
    }
    (through, path_style(&jb))
}

fn config() -> ValidConfig {
    InfraConfig::parse(EXAMPLE_CONFIG).unwrap()
}

/// `<target>/debug`, where cargo puts `bootstrap` and `ferry-gate` (the test executable is
/// `<target>/debug/deps/infra_moto-<hash>`).
fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.ancestors().nth(2).unwrap().to_path_buf();
    for b in ["bootstrap", "ferry-gate"] {
        assert!(
            dir.join(b).is_file(),
            "{} is missing: build it first (cargo build -p ferry-lambda -p ferry-gate; cargo test --workspace does)",
            dir.join(b).display()
        );
    }
    dir
}

fn plan_cmd() -> InfraCommand {
    InfraCommand::Plan {
        artifacts: Some(artifacts_dir()),
    }
}

fn show_cmd() -> InfraCommand {
    InfraCommand::Show {
        artifacts: Some(artifacts_dir()),
    }
}

/// IAM returns policy documents URL-encoded.
fn url_decode(s: &str) -> String {
    String::from_utf8(ferry_testkit::percent_decode(s)).unwrap()
}

/// (egress, CIDR, protocol, port range) of a NACL entry.
type AclEntry = (bool, String, String, Option<(i32, i32)>);

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

fn apply(creds: &Path) -> InfraCommand {
    InfraCommand::Apply {
        credentials_out: creds.to_path_buf(),
        artifacts: Some(artifacts_dir()),
    }
}

fn summary(plan: &str) -> &str {
    plan.lines()
        .find(|l| l.starts_with("Plan: "))
        .unwrap_or("(no summary)")
}

/// The state bucket's lifecycle rule as apply wrote it, and none on the backup bucket; then
/// run by the kit's lifecycle (`py/moto/lifecycle.py`, S3's rounding to midnight UTC) with the
/// clock moved forward: a session state lives at least 48 h after its write and is gone at
/// the first midnight after that, a day record 35 days, the artifacts for good.
async fn state_bucket_lifecycle(s3: &aws_sdk_s3::Client, cfg: &ValidConfig, moto: &Moto) {
    // The state bucket's lifecycle rule: S3 itself expires dead sessions' states and old day
    // records (the sweep lists the bucket only when EC2 shows a resource). The backup bucket
    // has none: nothing there may expire but by the operator's prune.
    let lc = s3
        .get_bucket_lifecycle_configuration()
        .bucket(&cfg.raw.state_bucket)
        .send()
        .await
        .unwrap();
    let mut rules: Vec<(String, Option<i32>, String)> = lc
        .rules()
        .iter()
        .map(|r| {
            (
                r.filter()
                    .and_then(|f| f.prefix())
                    .unwrap_or("")
                    .to_string(),
                r.expiration().and_then(|e| e.days()),
                r.status().as_str().to_string(),
            )
        })
        .collect();
    rules.sort();
    assert_eq!(
        rules,
        [
            ("days/".to_string(), Some(35), "Enabled".to_string()),
            ("sessions/".to_string(), Some(2), "Enabled".to_string())
        ]
    );
    assert!(
        s3.get_bucket_lifecycle_configuration()
            .bucket(&cfg.raw.backup_bucket)
            .send()
            .await
            .is_err(),
        "the backup bucket has a lifecycle rule"
    );

    use ferry_contract::keys;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    let bucket = &cfg.raw.state_bucket;
    let state = keys::session_state("lifecycle-probe");
    let day = keys::day_record("2026-12-03", "home", "lifecycle-probe", 1);
    let mut written = 0f64;
    for key in [&state, &day] {
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(b"{}".to_vec().into())
            .send()
            .await
            .unwrap();
        let head = s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        let t = head.last_modified().unwrap();
        written = written.max(t.secs() as f64 + f64::from(t.subsec_nanos()) / 1e9);
    }
    let keys_left = || async {
        let out = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
        let mut k: Vec<String> = out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect();
        k.sort();
        k
    };
    let before = keys_left().await;
    assert!(
        before.contains(&state) && before.contains(&day),
        "{before:?}"
    );
    const DAY: u64 = 86_400;
    let due = |days: i32| {
        let at = written + f64::from(days) * DAY as f64;
        (at.ceil() as u64).div_ceil(DAY) * DAY
    };
    let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
    let states_due = due(keys::STATE_EXPIRY_DAYS);
    assert!(states_due as f64 - written >= 48.0 * 3600.0);
    // A second before: all there (the listing is the request at which the pass runs).
    moto.set_lifecycle_clock(at(states_due - 1)).unwrap();
    assert_eq!(keys_left().await, before);
    moto.set_lifecycle_clock(at(states_due)).unwrap();
    let after = keys_left().await;
    assert!(!after.contains(&state) && after.contains(&day), "{after:?}");
    moto.set_lifecycle_clock(at(due(keys::DAY_RECORD_EXPIRY_DAYS) - 1))
        .unwrap();
    assert_eq!(keys_left().await, after);
    moto.set_lifecycle_clock(at(due(keys::DAY_RECORD_EXPIRY_DAYS) + 365 * DAY))
        .unwrap();
    let last = keys_left().await;
    assert!(!last.contains(&day), "{last:?}");
    assert!(
        !last.is_empty() && last.iter().all(|k| k.starts_with(keys::ARTIFACTS_PREFIX)),
        "only the artifacts stay: {last:?}"
    );
    moto.set_lifecycle_clock(SystemTime::now()).unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn apply_converges_is_idempotent_corrects_drift_and_destroys() {
    let moto = start_moto();
    let cfg = config();
    let sdk = sdk(&moto, &cfg.raw.region).await;
    let dir = tempfile::tempdir().unwrap();
    let creds: PathBuf = dir.path().join("backup.credentials");

    // Fresh account: everything is to be created.
    let plan = cmd(&cfg, &sdk, plan_cmd()).await.unwrap();
    assert!(
        summary(&plan).starts_with("Plan: 22 to create, 0 to update, 0 unchanged"),
        "{plan}"
    );

    // Apply creates it all and writes the key once, 0600, without printing the secret.
    let out = cmd(&cfg, &sdk, apply(&creds)).await.unwrap();
    assert!(out.contains("Applied: 22 change(s)."), "{out}");
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
        again.contains("Plan: 0 to create, 0 to update, 22 unchanged."),
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
    // The private NACL: the jump-box subnet, and HTTPS to/from each CIDR of the region's S3
    // prefix list (resolved by apply; NACL entries cannot name a prefix list).
    let pl = ec2
        .describe_managed_prefix_lists()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("prefix-list-name")
                .values("com.amazonaws.eu-central-1.s3")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let pl_id = pl.prefix_lists()[0].prefix_list_id().unwrap();
    let s3_cidrs: Vec<String> = ec2
        .get_managed_prefix_list_entries()
        .prefix_list_id(pl_id)
        .send()
        .await
        .unwrap()
        .entries()
        .iter()
        .map(|e| e.cidr().unwrap().to_string())
        .collect();
    assert!(!s3_cidrs.is_empty());
    let acl = ec2
        .describe_network_acls()
        .filters(tagged("ferry-private-nacl"))
        .send()
        .await
        .unwrap();
    let acl = &acl.network_acls()[0];
    assert!(
        acl.associations()
            .iter()
            .any(|a| a.subnet_id() == private.subnets()[0].subnet_id()),
        "NACL not on the private subnet"
    );
    let entries: Vec<AclEntry> = acl
        .entries()
        .iter()
        .filter(|e| e.rule_number() != Some(32767))
        .map(|e| {
            assert_eq!(
                e.rule_action(),
                Some(&aws_sdk_ec2::types::RuleAction::Allow)
            );
            (
                e.egress().unwrap(),
                e.cidr_block().unwrap().to_string(),
                e.protocol().unwrap().to_string(),
                e.port_range().map(|p| (p.from().unwrap(), p.to().unwrap())),
            )
        })
        .collect();
    let mut want = vec![
        (false, "10.0.1.0/24".to_string(), "-1".to_string(), None),
        (true, "10.0.1.0/24".to_string(), "-1".to_string(), None),
    ];
    for c in &s3_cidrs {
        want.push((true, c.clone(), "6".into(), Some((443, 443))));
        want.push((false, c.clone(), "6".into(), Some((1024, 65535))));
    }
    let (mut got, mut want) = (entries, want);
    got.sort();
    want.sort();
    assert_eq!(got, want, "private NACL entries");
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
    // Boxed: the SDK's futures are large, and this test's own future is near the test
    // thread's stack.
    Box::pin(state_bucket_lifecycle(&s3, &cfg, &moto)).await;

    // The two functions: runtime, role, handler, architecture, limits, and exactly the
    // environment ferry-lambda's config table expects.
    let arts = artifacts_dir();
    let gate_bytes = std::fs::read(arts.join("ferry-gate")).unwrap();
    let bootstrap_bytes = std::fs::read(arts.join("bootstrap")).unwrap();
    let gate_sha = sha256_hex(&gate_bytes);
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let role_arn = iam
        .get_role()
        .role_name("ferry-lambda")
        .send()
        .await
        .unwrap()
        .role()
        .unwrap()
        .arn()
        .to_string();
    let mut code_shas = Vec::new();
    for (name, handler, timeout) in [("ferry-build", "build", 120), ("ferry-clean", "clean", 300)] {
        let f = lambda
            .get_function()
            .function_name(name)
            .send()
            .await
            .unwrap();
        let c = f.configuration().unwrap();
        assert_eq!(
            c.runtime().map(|r| r.as_str()),
            Some("provided.al2023"),
            "{name}"
        );
        assert_eq!(c.handler(), Some("bootstrap"), "{name}");
        assert_eq!(c.role(), Some(role_arn.as_str()), "{name}");
        let arch: Vec<&str> = c.architectures().iter().map(|a| a.as_str()).collect();
        assert_eq!(arch, ["x86_64"], "{name}");
        assert_eq!(c.timeout(), Some(timeout), "{name}");
        assert_eq!(c.memory_size(), Some(256), "{name}");
        assert_eq!(
            f.tags()
                .and_then(|t| t.get("ferry:installation"))
                .map(String::as_str),
            Some("ferry")
        );
        let env: std::collections::BTreeMap<&str, &str> = c
            .environment()
            .and_then(|e| e.variables())
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let want: std::collections::BTreeMap<&str, &str> = [
            ("FERRY_HANDLER", handler),
            ("FERRY_INSTALLATION", "ferry"),
            ("FERRY_STATE_BUCKET", cfg.raw.state_bucket.as_str()),
            ("FERRY_BACKUP_BUCKET", cfg.raw.backup_bucket.as_str()),
            ("FERRY_SUBNET_ID", public.subnet_id().unwrap()),
            ("FERRY_INSTANCE_PROFILE", "ferry-jumpbox"),
            ("FERRY_ALLOWED_SSH_CIDRS", "198.51.100.7/32"),
            ("FERRY_GATE_SHA256", gate_sha.as_str()),
            ("FERRY_GATE_KEY", "artifacts/ferry-gate"),
            ("FERRY_CLEAN_FUNCTION", "ferry-clean"),
            ("FERRY_INSTANCE_TYPE", "t3.micro"),
            ("FERRY_MAX_SESSION_MINUTES", "60"),
            ("FERRY_MAX_SESSIONS", "1"),
            ("FERRY_SESSIONS_PER_DAY", "4"),
            ("FERRY_GATE_MAX_SESSION_BYTES", "1073741824"),
            ("FERRY_SITE_BYTES_PER_DAY", "4294967296"),
        ]
        .into_iter()
        .collect();
        assert_eq!(env, want, "{name}");
        code_shas.push(c.code_sha256().unwrap().to_string());
    }
    assert_eq!(
        code_shas[0], code_shas[1],
        "both functions run the same zip"
    );

    // The functions' log groups exist before any invocation, tagged, with the retention; the
    // Lambda role may only open streams in them and write to those streams (no CreateLogGroup).
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
    for f in ["ferry-build", "ferry-clean"] {
        let name = format!("/aws/lambda/{f}");
        let r = logs
            .describe_log_groups()
            .log_group_name_prefix(&name)
            .send()
            .await
            .unwrap();
        let g = r
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("log group {name} missing"));
        assert_eq!(g.retention_in_days(), Some(30), "{name}");
        let tags = logs
            .list_tags_for_resource()
            .resource_arn(g.log_group_arn().unwrap())
            .send()
            .await
            .unwrap();
        let tags = tags.tags().unwrap();
        assert_eq!(
            tags.get("ferry:installation").map(String::as_str),
            Some("ferry")
        );
        assert_eq!(tags.get("Name"), Some(&name));
    }
    let role_doc = iam
        .get_role_policy()
        .role_name("ferry-lambda")
        .policy_name("ferry-lambda-policy")
        .send()
        .await
        .unwrap();
    let role_doc: serde_json::Value =
        serde_json::from_str(&url_decode(role_doc.policy_document())).unwrap();
    let log_statements: Vec<&serde_json::Value> = role_doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            let a = &s["Action"];
            let acts: Vec<&str> = match a {
                serde_json::Value::String(x) => vec![x.as_str()],
                serde_json::Value::Array(v) => v.iter().filter_map(|x| x.as_str()).collect(),
                _ => vec![],
            };
            acts.iter().any(|x| x.starts_with("logs:") || *x == "*")
        })
        .collect();
    assert_eq!(log_statements.len(), 1, "{role_doc}");
    let st = log_statements[0];
    assert_eq!(st["Effect"], "Allow");
    assert_eq!(
        st["Action"],
        serde_json::json!(["logs:CreateLogStream", "logs:PutLogEvents"])
    );
    let region = &cfg.raw.region;
    assert_eq!(
        st["Resource"],
        serde_json::json!([
            format!("arn:aws:logs:{region}:123456789012:log-group:/aws/lambda/ferry-build:*"),
            format!("arn:aws:logs:{region}:123456789012:log-group:/aws/lambda/ferry-clean:*"),
        ])
    );

    // The sweep: rule, its one target with the sweep payload, and the permission that lets
    // EventBridge (only for this rule) invoke ferry-clean.
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let rule = events
        .describe_rule()
        .name("ferry-sweep")
        .send()
        .await
        .unwrap();
    assert_eq!(rule.schedule_expression(), Some("rate(6 hours)"));
    assert_eq!(rule.state().map(|s| s.as_str()), Some("ENABLED"));
    let targets = events
        .list_targets_by_rule()
        .rule("ferry-sweep")
        .send()
        .await
        .unwrap();
    assert_eq!(targets.targets().len(), 1);
    let t = &targets.targets()[0];
    let clean_arn = lambda
        .get_function()
        .function_name("ferry-clean")
        .send()
        .await
        .unwrap()
        .configuration()
        .unwrap()
        .function_arn()
        .unwrap()
        .to_string();
    assert_eq!(t.arn(), clean_arn);
    let input: serde_json::Value = serde_json::from_str(t.input().unwrap()).unwrap();
    assert_eq!(input, serde_json::json!({"sweep": true}));
    let pol = lambda
        .get_policy()
        .function_name("ferry-clean")
        .send()
        .await
        .unwrap();
    let pol: serde_json::Value = serde_json::from_str(pol.policy().unwrap()).unwrap();
    let st = pol["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "FerrySweepInvokesClean")
        .expect("sweep permission statement");
    assert_eq!(st["Principal"]["Service"], "events.amazonaws.com");
    assert_eq!(st["Action"], "lambda:InvokeFunction");
    assert_eq!(
        st["Condition"]["ArnLike"]["AWS:SourceArn"].as_str(),
        rule.arn()
    );
    assert!(
        lambda
            .get_policy()
            .function_name("ferry-build")
            .send()
            .await
            .is_err(),
        "ferry-build must have no resource policy"
    );

    // The artifacts, byte for byte, with their SHA-256 as metadata; the zip is what Lambda
    // runs. moto 5.2.5 refuses every object request on a bucket whose policy has a Condition,
    // so the test lifts the state bucket's policy to read them (as the operator could on AWS);
    // the next apply puts it back (one more drift below).
    s3.delete_bucket_policy()
        .bucket(&cfg.raw.state_bucket)
        .send()
        .await
        .unwrap();
    let get = |key: &'static str| {
        let s3 = s3.clone();
        let b = cfg.raw.state_bucket.clone();
        async move {
            let o = s3.get_object().bucket(b).key(key).send().await.unwrap();
            let meta = o.metadata().and_then(|m| m.get("sha256")).cloned();
            (o.body.collect().await.unwrap().into_bytes().to_vec(), meta)
        }
    };
    let (gate_obj, gate_meta) = get("artifacts/ferry-gate").await;
    assert!(
        gate_obj == gate_bytes,
        "artifacts/ferry-gate differs from the local binary"
    );
    assert_eq!(gate_meta.as_deref(), Some(gate_sha.as_str()));
    let (zip_obj, zip_meta) = get("artifacts/bootstrap.zip").await;
    assert_eq!(zip_meta, Some(sha256_hex(&zip_obj)));
    {
        use base64::Engine;
        let raw = hex::decode(sha256_hex(&zip_obj)).unwrap();
        assert_eq!(
            code_shas[0],
            base64::engine::general_purpose::STANDARD.encode(raw),
            "CodeSha256 is the uploaded zip's"
        );
    }
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(zip_obj)).unwrap();
    assert_eq!(zip.len(), 1);
    let mut entry = zip.by_index(0).unwrap();
    assert_eq!(entry.name(), "bootstrap");
    assert_eq!(entry.unix_mode().map(|m| m & 0o777), Some(0o755));
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut unzipped).unwrap();
    assert!(unzipped == bootstrap_bytes, "the zipped bootstrap differs");
    drop(entry);

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
    // A function's environment and the rule's schedule, changed by hand.
    lambda
        .update_function_configuration()
        .function_name("ferry-clean")
        .environment(
            aws_sdk_lambda::types::Environment::builder()
                .variables("FERRY_HANDLER", "clean")
                .variables("FERRY_INSTALLATION", "ferry")
                .variables("FERRY_STATE_BUCKET", "someone-elses-bucket")
                .build(),
        )
        .send()
        .await
        .unwrap();
    events
        .put_rule()
        .name("ferry-sweep")
        .schedule_expression("rate(7 days)")
        .send()
        .await
        .unwrap();
    // A log group's retention, changed by hand.
    logs.put_retention_policy()
        .log_group_name("/aws/lambda/ferry-build")
        .retention_in_days(7)
        .send()
        .await
        .unwrap();
    // The state bucket's lifecycle rule, removed by hand.
    Box::pin(
        s3.delete_bucket_lifecycle()
            .bucket(&cfg.raw.state_bucket)
            .send(),
    )
    .await
    .unwrap();
    let drift = cmd(&cfg, &sdk, plan_cmd()).await.unwrap();
    assert!(
        drift.contains("lifecycle: none -> \"sessions/\" after 2 d, \"days/\" after 35 d"),
        "{drift}"
    );
    assert!(
        summary(&drift).starts_with("Plan: 0 to create, 8 to update"),
        "{drift}"
    );
    assert!(drift.contains("retention: 7 days -> 30 days"), "{drift}");
    assert!(
        drift.contains(
            "env FERRY_STATE_BUCKET: someone-elses-bucket -> ferry-state-example-123456789012"
        ),
        "{drift}"
    );
    assert!(
        drift.contains(&format!("env FERRY_GATE_SHA256: (unset) -> {gate_sha}")),
        "{drift}"
    );
    assert!(
        drift.contains("schedule: rate(7 days) -> rate(6 hours)"),
        "{drift}"
    );
    assert!(
        drift.contains("bucket policy: differs -> generated"),
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
    let fixed = cmd(&cfg, &sdk, plan_cmd()).await.unwrap();
    assert!(
        fixed.contains("Plan: 0 to create, 0 to update, 22 unchanged."),
        "{fixed}"
    );
    let c = lambda
        .get_function_configuration()
        .function_name("ferry-clean")
        .send()
        .await
        .unwrap();
    let env = c.environment().and_then(|e| e.variables()).unwrap();
    assert_eq!(env.get("FERRY_GATE_SHA256"), Some(&gate_sha));
    assert_eq!(env.get("FERRY_STATE_BUCKET"), Some(&cfg.raw.state_bucket));
    let rule = events
        .describe_rule()
        .name("ferry-sweep")
        .send()
        .await
        .unwrap();
    assert_eq!(rule.schedule_expression(), Some("rate(6 hours)"));

    // show prints IDs.
    let show = cmd(&cfg, &sdk, show_cmd()).await.unwrap();
    assert!(
        show.contains(pub_id) && show.contains("Next steps"),
        "{show}"
    );

    // destroy refuses a non-empty backup bucket unless its name is repeated. The backup object
    // is planted as only the jump box can: through the endpoint, under the bucket policy.
    plant_as_jumpbox(&moto, &sdk, &cfg, "site1/config").await;
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
    let still = cmd(&cfg, &sdk, plan_cmd()).await.unwrap();
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
    for f in ["ferry-build", "ferry-clean"] {
        let e = lambda
            .get_function()
            .function_name(f)
            .send()
            .await
            .unwrap_err();
        assert!(
            e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()),
            "{f} still there: {e:?}"
        );
    }
    assert!(
        events
            .describe_rule()
            .name("ferry-sweep")
            .send()
            .await
            .is_err(),
        "sweep rule still there"
    );
    assert!(
        gone.contains("- schedule-rule ferry-sweep")
            && gone.contains("- lambda-permission ferry-clean/FerrySweepInvokesClean")
            && gone.contains("- lambda-function ferry-build")
            && gone.contains("- log-group /aws/lambda/ferry-build")
            && gone.contains("- log-group /aws/lambda/ferry-clean"),
        "{gone}"
    );
    let left = logs
        .describe_log_groups()
        .log_group_name_prefix("/aws/lambda/ferry-")
        .send()
        .await
        .unwrap();
    assert!(left.log_groups().is_empty(), "{left:?}");
    let empty = cmd(&cfg, &sdk, plan_cmd()).await.unwrap();
    assert!(
        summary(&empty).starts_with("Plan: 22 to create, 0 to update, 0 unchanged"),
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
        command: InfraCommand::Plan { artifacts: None },
    };
    let e = ferry_cloud::infra_main(args, &mut Vec::new()).unwrap_err();
    let msg = format!("{:#}", anyhow::Error::from(e));
    assert!(msg.contains("network.private_subnet_cidr"), "{msg}");
}

#[tokio::test(flavor = "current_thread")]
async fn apply_without_artifacts_stops_before_any_api_call_and_plan_shows_unknown() {
    // An endpoint where nothing listens: any API call would fail with a connection error.
    let cfg = config();
    let nowhere = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(cfg.raw.region.clone()))
        .endpoint_url("http://127.0.0.1:9")
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "x",
            None,
            None,
            "test",
        ))
        .load()
        .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        artifacts_dir().join("ferry-gate"),
        dir.path().join("ferry-gate"),
    )
    .unwrap();
    let c = InfraCommand::Apply {
        credentials_out: dir.path().join("creds"),
        artifacts: Some(dir.path().to_path_buf()),
    };
    let e = format!("{:#}", cmd(&cfg, &nowhere, c).await.unwrap_err());
    assert!(
        e.contains(&format!("{}/bootstrap not found", dir.path().display()))
            && e.contains("scripts/build-al2023.sh"),
        "{e}"
    );

    // plan does not fail without them: the artifacts show as unknown, with the reason.
    let moto = start_moto();
    let sdk = sdk(&moto, &cfg.raw.region).await;
    let out = cmd(
        &cfg,
        &sdk,
        InfraCommand::Plan {
            artifacts: Some(dir.path().to_path_buf()),
        },
    )
    .await
    .unwrap();
    assert!(
        summary(&out).starts_with("Plan: 20 to create, 0 to update, 0 unchanged, 2 unknown"),
        "{out}"
    );
    assert!(
        out.contains("? artifact") && out.contains("bootstrap not found"),
        "{out}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn plan_prints_the_worst_case_bill_of_the_configured_limits() {
    let moto = start_moto();
    let no_artifacts = tempfile::tempdir().unwrap();
    let plan = || InfraCommand::Plan {
        artifacts: Some(no_artifacts.path().to_path_buf()),
    };
    // The example config: the defaults, 4 sessions a day of 1 GiB, 4 GiB per site and day.
    let cfg = config();
    let sdk = sdk(&moto, &cfg.raw.region).await;
    let out = cmd(&cfg, &sdk, plan()).await.unwrap();
    let bill = ferry_cloud::cost::worst_case(&ferry_cloud::cost::Limits::of(&cfg));
    assert!(out.contains(&bill.to_string()), "{out}");
    assert!(
        out.contains(
            "Worst case with a stolen backup credential: 4 session(s)/day × (60 + 5 min), \
             4096 MiB/day per site, 1024 MiB per session"
        ) && out.contains("4 GiB/day, 124 GiB by day 31: 64 GiB-month"),
        "{out}"
    );
    let total = out
        .lines()
        .find(|l| l.trim_start().starts_with("total"))
        .unwrap_or_else(|| panic!("no total in {out}"));
    assert!(
        total.contains(&format!("${:.2}", bill.total_usd)),
        "{total}"
    );

    // Tighter limits in the config: a smaller bill, from the same formula.
    let text = EXAMPLE_CONFIG
        .replace("sessions_per_day = 4", "sessions_per_day = 1")
        .replace("site_mib_per_day = 4096", "site_mib_per_day = 1024")
        .replace("max_session_minutes = 60", "max_session_minutes = 25");
    let small = InfraConfig::parse(&text).unwrap();
    let out = cmd(&small, &sdk, plan()).await.unwrap();
    let small_bill = ferry_cloud::cost::worst_case(&ferry_cloud::cost::Limits::of(&small));
    assert!(
        out.contains("1 session(s)/day × (25 + 5 min), 1024 MiB/day per site")
            && out.contains("1 GiB/day, 31 GiB by day 31: 16 GiB-month")
            && out.contains("EC2 t3.micro")
            && out.contains("15.5 h × $0.0104/h"),
        "{out}"
    );
    assert!(small_bill.total_usd < bill.total_usd / 4.0);
    assert!(
        out.contains(&format!("${:.2}", small_bill.total_usd)),
        "{out}"
    );
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
    let plan = cmd(&cfg, &sdk, plan_cmd()).await.unwrap();
    assert!(
        summary(&plan).starts_with("Plan: 21 to create, 0 to update, 1 unchanged"),
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
    let plan = cmd(&cfg, &sdk, plan_cmd()).await.unwrap();
    assert!(plan.contains("access key: none -> created"), "{plan}");
    cmd(&cfg, &sdk, apply(&creds)).await.unwrap();
    assert!(creds.exists());
    let done = cmd(&cfg, &sdk, plan_cmd()).await.unwrap();
    assert!(
        done.contains("Plan: 0 to create, 0 to update, 22 unchanged."),
        "{done}"
    );

    // A new gate binary: the artifact and both functions' FERRY_GATE_SHA256 are to update.
    let arts = artifacts_dir();
    let new = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(arts.join("bootstrap"), new.path().join("bootstrap")).unwrap();
    let mut gate = std::fs::read(arts.join("ferry-gate")).unwrap();
    gate.extend_from_slice(b"\0rebuilt");
    std::fs::write(new.path().join("ferry-gate"), &gate).unwrap();
    let new_sha = sha256_hex(&gate);
    // moto 5.2.5 refuses object requests on a bucket whose policy has a Condition (the state
    // bucket's has): lift it so that apply can upload; apply puts it back after the upload.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    s3.delete_bucket_policy()
        .bucket(&cfg.raw.state_bucket)
        .send()
        .await
        .unwrap();
    let with_new = |c: &str| -> InfraCommand {
        match c {
            "plan" => InfraCommand::Plan {
                artifacts: Some(new.path().to_path_buf()),
            },
            _ => InfraCommand::Apply {
                credentials_out: dir.path().join("unused"),
                artifacts: Some(new.path().to_path_buf()),
            },
        }
    };
    let p = cmd(&cfg, &sdk, with_new("plan")).await.unwrap();
    assert!(
        summary(&p).starts_with("Plan: 0 to create, 4 to update, 18 unchanged"),
        "{p}"
    );
    assert!(
        p.contains("~ artifact           artifacts/ferry-gate"),
        "{p}"
    );
    assert!(
        p.contains(&format!(
            "env FERRY_GATE_SHA256: {} -> {new_sha}",
            sha256_hex(&std::fs::read(arts.join("ferry-gate")).unwrap())
        )),
        "{p}"
    );
    assert!(!p.contains("code sha256"), "the zip did not change:\n{p}");
    cmd(&cfg, &sdk, with_new("apply")).await.unwrap();
    let p = cmd(&cfg, &sdk, with_new("plan")).await.unwrap();
    assert!(
        p.contains("Plan: 0 to create, 0 to update, 22 unchanged."),
        "{p}"
    );
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let c = lambda
        .get_function_configuration()
        .function_name("ferry-build")
        .send()
        .await
        .unwrap();
    assert_eq!(
        c.environment()
            .and_then(|e| e.variables())
            .and_then(|v| v.get("FERRY_GATE_SHA256")),
        Some(&new_sha)
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
    // ListAllMyBuckets is judged on the user's identity policy alone; list, get and put are
    // refused by it and by the bucket policies (which the test kit's moto evaluates), so those
    // only show that the keys get nowhere.
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
    // Invoking is not checked here: moto 5.2.5 judges invokes as `lambda:Invoke` on `*` and
    // its Invoke never runs the function's code; see scripts/policy-proof/moto_check.py and the
    // evaluator's matrix (docs/SECURITY.md). The functions exist, and the keys cannot change
    // them:
    let lambda_b = aws_sdk_lambda::Client::new(&backup);
    denied(
        lambda_b
            .update_function_configuration()
            .function_name("ferry-build")
            .timeout(900)
            .send()
            .await,
        "lambda:UpdateFunctionConfiguration",
    );
}

/// `ferry infra verify` after apply: every case of the matrix on the documents read back from
/// moto. moto 5.2.5 implements neither SimulatePrincipalPolicy nor SimulateCustomPolicy (HTTP
/// 500), so verify says so once and evaluates locally. Then the backup bucket's policy is
/// weakened in the account (the If-None-Match deny removed, as an attacker or a careless hand
/// would): verify reads it, exits 1 and names exactly the case that now differs.
#[tokio::test(flavor = "current_thread")]
async fn verify_checks_the_live_policies_and_names_what_a_weakened_bucket_policy_opens() {
    let moto = start_moto();
    let cfg = config();
    let sdk = sdk(&moto, &cfg.raw.region).await;
    let dir = tempfile::tempdir().unwrap();
    cmd(&cfg, &sdk, apply(&dir.path().join("backup.credentials")))
        .await
        .unwrap();

    let verify = |json: bool| {
        let (cfg, sdk) = (cfg.clone(), sdk.clone());
        async move {
            let mut out = Vec::new();
            let code = run_with(&cfg, InfraCommand::Verify { json }, &mut out, &sdk)
                .await
                .unwrap();
            (code, String::from_utf8(out).unwrap())
        }
    };
    let (code, out) = verify(false).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("IAM policy simulator unavailable (iam:Simulate")
            && out.contains("every case is evaluated by Ferry's local evaluator"),
        "{out}"
    );
    assert!(out.contains("100 cases: 100 OK, 0 DIFF."), "{out}");

    // Weaken the live bucket policy.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let bucket = cfg.raw.backup_bucket.clone();
    let have = s3.get_bucket_policy().bucket(&bucket).send().await.unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(have.policy().unwrap()).unwrap();
    let st = doc["Statement"].as_array_mut().unwrap();
    let before = st.len();
    st.retain(|s| s["Sid"] != "DenyPutWithoutIfNoneMatch");
    assert_eq!(st.len(), before - 1);
    s3.put_bucket_policy()
        .bucket(&bucket)
        .policy(doc.to_string())
        .send()
        .await
        .unwrap();

    let (code, out) = verify(true).await;
    assert_eq!(code, 1, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let diffs: Vec<&serde_json::Value> = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .collect();
    assert_eq!(diffs.len(), 1, "{out}");
    assert_eq!(
        diffs[0]["why"], "bucket policy: puts only with If-None-Match",
        "{out}"
    );
    assert_eq!(
        (&diffs[0]["expected"], &diffs[0]["got"]),
        (&"deny".into(), &"allow".into())
    );
    assert_eq!(report["diff"], 1);
    let (_, text) = verify(false).await;
    assert!(text.contains("100 cases: 99 OK, 1 DIFF."), "{text}");
}

/// An operator that is a role with a path — IAM Identity Center's
/// `role/aws-reserved/sso.amazonaws.com/REGION/AWSReservedSSO_…` — runs `ferry infra apply` as
/// an assumed-role session. The bucket policies must name the role's full ARN (its
/// `aws:PrincipalArn`), so that under the test kit's moto, which evaluates the policies' conditions
/// with aws:PrincipalArn taken from the request's keys, the operator still lists and reads the
/// backups and nobody else does. (With the session ARN turned into `role/NAME` without the path,
/// the operator was locked out.)
#[tokio::test(flavor = "current_thread")]
async fn an_operator_role_with_a_path_keeps_its_access_to_the_backups() {
    let moto = start_moto();
    let cfg = config();
    let region = cfg.raw.region.clone();
    let setup = sdk_with(&moto, &region, "AKIAIOSFODNN7EXAMPLE", "setup").await;
    let iam = aws_sdk_iam::Client::new(&setup);
    let path = "/aws-reserved/sso.amazonaws.com/eu-west-1/";
    let name = "AWSReservedSSO_AdministratorAccess_0123456789abcdef";
    let admin =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    let role = iam
        .create_role()
        .role_name(name)
        .path(path)
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::123456789012:saml-provider/AWSSSO_0123_DO_NOT_DELETE"},"Action":"sts:AssumeRoleWithSAML"}]}"#,
        )
        .send()
        .await
        .unwrap();
    let role_arn = role.role().unwrap().arn().to_string();
    assert!(
        role_arn.ends_with(&format!("role{path}{name}")),
        "{role_arn}"
    );
    iam.put_role_policy()
        .role_name(name)
        .policy_name("admin")
        .policy_document(admin)
        .send()
        .await
        .unwrap();
    let session = aws_sdk_sts::Client::new(&setup)
        .assume_role()
        .role_arn(&role_arn)
        .role_session_name("alice@example.com")
        .send()
        .await
        .unwrap();
    let sso = sdk_with_session(&moto, &region, session.credentials().unwrap()).await;
    let me = aws_sdk_sts::Client::new(&sso)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(
        me.arn(),
        Some(format!("arn:aws:sts::123456789012:assumed-role/{name}/alice@example.com").as_str()),
        "the session ARN does not carry the path"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = cmd(&cfg, &sso, apply(&dir.path().join("backup.credentials")))
        .await
        .unwrap();
    assert!(
        out.contains(&format!(
            "Operator (may read, prune and delete backups): {role_arn} (the role of the caller's session"
        )),
        "{out}"
    );

    // Both bucket policies name the full ARN, and nowhere the path-less one.
    let s3_op = path_style(&sso);
    for b in [&cfg.raw.backup_bucket, &cfg.raw.state_bucket] {
        let p = s3_op.get_bucket_policy().bucket(b).send().await.unwrap();
        let p = p.policy().unwrap();
        assert!(p.contains(&role_arn), "{b}: {p}");
        assert!(!p.contains(&format!(":role/{name}")), "{b}: {p}");
    }

    // A backup object, planted the one way the policy leaves open.
    let (jb_through, jb_around) = plant_as_jumpbox(&moto, &sso, &cfg, "site1/config").await;
    let backup = &cfg.raw.backup_bucket;

    // The operator lists and reads it through the policy-evaluating moto…
    let listed = s3_op
        .list_objects_v2()
        .bucket(backup)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "operator list: {}\n{}",
                aws_sdk_s3::error::DisplayErrorContext(&e),
                moto.log()
            )
        });
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["site1/config"]);
    let got = s3_op
        .get_object()
        .bucket(backup)
        .key("site1/config")
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "operator read: {}\n{}",
                aws_sdk_s3::error::DisplayErrorContext(&e),
                moto.log()
            )
        });
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"x"
    );

    // …an unrelated administrator of the same account does not…
    iam.create_user()
        .user_name("other-admin")
        .send()
        .await
        .unwrap();
    iam.put_user_policy()
        .user_name("other-admin")
        .policy_name("admin")
        .policy_document(admin)
        .send()
        .await
        .unwrap();
    let k = iam
        .create_access_key()
        .user_name("other-admin")
        .send()
        .await
        .unwrap();
    let k = k.access_key().unwrap();
    let other =
        path_style(&sdk_with(&moto, &region, k.access_key_id(), k.secret_access_key()).await);
    fn access_denied<T, E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug>(
        r: Result<T, E>,
        what: &str,
    ) {
        let e = r.err().unwrap_or_else(|| panic!("{what} was allowed"));
        assert_eq!(e.code(), Some("AccessDenied"), "{what}: {e:?}");
    }
    access_denied(
        other.list_objects_v2().bucket(backup).send().await,
        "another admin's list",
    );
    access_denied(
        other
            .get_object()
            .bucket(backup)
            .key("site1/config")
            .send()
            .await,
        "another admin's read",
    );
    access_denied(
        other
            .delete_object()
            .bucket(backup)
            .key("site1/config")
            .send()
            .await,
        "another admin's delete",
    );
    // …and the jump box cannot overwrite, put around the endpoint, or read.
    let put = |c: &aws_sdk_s3::Client, inm: bool| {
        let r = c
            .put_object()
            .bucket(backup)
            .key("site1/packs/new")
            .body(b"y".to_vec().into());
        if inm { r.if_none_match("*") } else { r }
    };
    access_denied(
        put(&jb_through, false).send().await,
        "a put without If-None-Match",
    );
    access_denied(
        put(&jb_around, true).send().await,
        "a put around the endpoint",
    );
    access_denied(
        jb_through
            .get_object()
            .bucket(backup)
            .key("site1/config")
            .send()
            .await,
        "the jump box's read",
    );
    // (The instance that made the put is terminated; a role session named after no instance
    // carries no aws:SourceVpce either.)
    access_denied(
        put(&jb_through, true).send().await,
        "a put from a terminated instance",
    );
}

/// `[object_lock]` in the config: apply creates the backup bucket with Object Lock and its
/// default retention (so the jump box's writes are locked without it holding any retention
/// permission), a second apply changes nothing, a changed retention shows as drift and is
/// applied, and destroy keeps the bucket while versions are locked, saying until when, after
/// removing everything else.
#[tokio::test(flavor = "current_thread")]
async fn object_lock_locks_every_backup_and_destroy_keeps_what_is_locked() {
    let moto = start_moto();
    let with_lock = |days: u32| {
        InfraConfig::parse(&format!(
            "{EXAMPLE_CONFIG}\n[object_lock]\nmode = \"governance\"\ndays = {days}\n"
        ))
        .unwrap()
    };
    let cfg = with_lock(1);
    let sdk = sdk(&moto, &cfg.raw.region).await;
    let dir = tempfile::tempdir().unwrap();
    let out = cmd(&cfg, &sdk, apply(&dir.path().join("backup.credentials")))
        .await
        .unwrap();
    assert!(out.contains("Applied: 22 change(s)."), "{out}");
    let s3 = path_style(&sdk);
    let bucket = cfg.raw.backup_bucket.clone();
    let lock = |s3: aws_sdk_s3::Client, bucket: String| async move {
        let c = s3
            .get_object_lock_configuration()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        let c = c.object_lock_configuration().unwrap().clone();
        let d = c.rule().unwrap().default_retention().unwrap().clone();
        (
            c.object_lock_enabled().map(|e| e.as_str().to_string()),
            d.mode().map(|m| m.as_str().to_string()),
            d.days(),
        )
    };
    assert_eq!(
        lock(s3.clone(), bucket.clone()).await,
        (Some("Enabled".into()), Some("GOVERNANCE".into()), Some(1))
    );
    // The state bucket stays unversioned, without a lock.
    assert!(
        s3.get_object_lock_configuration()
            .bucket(&cfg.raw.state_bucket)
            .send()
            .await
            .is_err()
    );
    let again = cmd(&cfg, &sdk, plan_cmd()).await.unwrap();
    assert!(
        summary(&again).starts_with("Plan: 0 to create, 0 to update"),
        "{again}"
    );

    // The jump box writes a backup object: S3 locks it by the bucket's default retention.
    plant_as_jumpbox(&moto, &sdk, &cfg, "site1/config").await;
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key("site1/config")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.object_lock_mode().map(|m| m.as_str()),
        Some("GOVERNANCE")
    );
    let until = head.object_lock_retain_until_date().unwrap().secs();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now + 86_400 - 120..=now + 86_400 + 120).contains(&until),
        "retain until {until}, now {now}"
    );

    // A longer retention in the config: plan shows it, apply puts it (on a bucket holding
    // objects, as AWS allows).
    let cfg30 = with_lock(30);
    let plan = cmd(&cfg30, &sdk, plan_cmd()).await.unwrap();
    assert!(
        plan.contains("object lock: governance 1 days -> governance 30 days"),
        "{plan}"
    );
    cmd(&cfg30, &sdk, apply(&dir.path().join("unused")))
        .await
        .unwrap();
    assert_eq!(lock(s3.clone(), bucket.clone()).await.2, Some(30));

    // The config without [object_lock]: Object Lock cannot be turned off; plan says so and
    // does not try to suspend versioning.
    let plain = cmd(&config(), &sdk, plan_cmd()).await.unwrap();
    assert!(
        plain.contains("Object Lock cannot be turned off")
            && !plain.contains("versioning: Enabled -> Suspended"),
        "{plain}"
    );

    // Destroy removes everything else, keeps the bucket (its object is locked for a day) and
    // says so; the locked object is still there.
    let e = cmd(
        &cfg30,
        &sdk,
        InfraCommand::Destroy {
            delete_backup_bucket: Some(bucket.clone()),
        },
    )
    .await
    .unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("under S3 Object Lock until") && msg.contains(&bucket),
        "{msg}"
    );
    s3.head_object()
        .bucket(&bucket)
        .key("site1/config")
        .version_id(head.version_id().unwrap())
        .send()
        .await
        .unwrap();
    let iam = aws_sdk_iam::Client::new(&sdk);
    assert!(
        iam.get_role()
            .role_name(&cfg.names.lambda_role)
            .send()
            .await
            .is_err(),
        "the rest was not destroyed"
    );
}
