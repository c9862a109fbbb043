//! The local cloud for the function tests: moto (EC2, S3, IAM, STS), the real `bootstrap`
//! under the test kit's Lambda host, and SDK clients with the operator's credentials for
//! setting up and inspecting moto.
#![allow(dead_code)]

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Credentials, Region};
use ferry_testkit::lambda_host::FunctionSpec;
use ferry_testkit::{Creds, MOTO_REGION, Moto, MotoOptions};
use serde_json::Value;

pub const INSTALLATION: &str = "ferry";
pub const STATE_BUCKET: &str = "ferry-state";
pub const BACKUP_BUCKET: &str = "ferry-backup";
pub const PROFILE: &str = "ferry-jumpbox";
pub const SSH_CIDRS: &str = "203.0.113.0/24,198.51.100.7/32";

/// The backup VM's client key as the tests send it to ferry-build.
pub const CLIENT_PUB: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHHJ7v6mV3mSgNS7QOTtzxDCHD/QfhUKpJ6Chy1R5rOk backup-vm";

/// Python: IAM users allowed everything except one action (`name=Action`, or `name=` for none);
/// prints `{name: {AccessKeyId, SecretAccessKey}}`. Read it with [`creds`].
pub const USERS: &str = r#"
import boto3, json, sys
iam = boto3.client('iam')
out = {}
for arg in sys.argv[1:]:
    name, _, deny = arg.partition('=')
    iam.create_user(UserName=name)
    stmts = [{'Effect': 'Allow', 'Action': '*', 'Resource': '*'}]
    if deny:
        stmts.append({'Effect': 'Deny', 'Action': deny, 'Resource': '*'})
    iam.put_user_policy(UserName=name, PolicyName='p', PolicyDocument=json.dumps({'Version': '2012-10-17', 'Statement': stmts}))
    k = iam.create_access_key(UserName=name)['AccessKey']
    out[name] = {'AccessKeyId': k['AccessKeyId'], 'SecretAccessKey': k['SecretAccessKey']}
print(json.dumps(out))
"#;

/// The keys of user `name` from [`USERS`]' output.
pub fn creds(v: &Value, name: &str) -> Creds {
    Creds {
        access_key_id: v[name]["AccessKeyId"].as_str().unwrap().into(),
        secret_access_key: v[name]["SecretAccessKey"].as_str().unwrap().into(),
        session_token: None,
    }
}

/// Operator-side setup of what `ferry infra apply` would have made: buckets, the gate artifact,
/// VPC and public subnet, the jump-box role and instance profile. Prints JSON.
const SETUP: &str = r#"
import boto3, hashlib, json, sys
gate = open(sys.argv[1], 'rb').read()
s3 = boto3.client('s3'); ec2 = boto3.client('ec2'); iam = boto3.client('iam')
for b in ('ferry-state', 'ferry-backup'):
    s3.create_bucket(Bucket=b)
s3.put_object(Bucket='ferry-state', Key='artifacts/ferry-gate', Body=gate)
vpc = ec2.create_vpc(CidrBlock='10.0.0.0/16')['Vpc']['VpcId']
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock='10.0.1.0/24', AvailabilityZone='us-east-1a')['Subnet']['SubnetId']
trust = {'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow', 'Principal': {'Service': 'ec2.amazonaws.com'}, 'Action': 'sts:AssumeRole'}]}
role = iam.create_role(RoleName='ferry-jumpbox', AssumeRolePolicyDocument=json.dumps(trust))['Role']['Arn']
iam.create_instance_profile(InstanceProfileName='ferry-jumpbox')
iam.add_role_to_instance_profile(InstanceProfileName='ferry-jumpbox', RoleName='ferry-jumpbox')
amis = ec2.describe_images(Owners=['amazon'])['Images']
ami = sorted(i['ImageId'] for i in amis if i.get('Architecture', 'x86_64') == 'x86_64')[0]
print(json.dumps({'vpc': vpc, 'subnet': subnet, 'ami': ami, 'role_arn': role, 'gate_sha256': hashlib.sha256(gate).hexdigest()}))
"#;

pub struct Cloud {
    pub moto: Moto,
    pub vpc: String,
    pub subnet: String,
    pub ami: String,
    pub role_arn: String,
    pub gate_sha256: String,
    /// How long the kit's moto hides a new instance or security group (its
    /// `FERRY_UNKIND_EC2_NOTFOUND_SECONDS`).
    pub ec2_window: Duration,
    _dir: tempfile::TempDir,
}

/// The kit's default `FERRY_UNKIND_EC2_NOTFOUND_SECONDS` (py/moto/unkind_ec2.py).
const KIT_EC2_WINDOW: Duration = Duration::from_secs(2);

impl Cloud {
    /// moto with the permanent infrastructure; `gate` is the artifact's content. The kit's
    /// AWS-like defaults (eventual consistency included) are on.
    pub fn start(gate: &[u8]) -> Cloud {
        Self::start_with(gate, &[])
    }

    /// As [`Cloud::start`], with the kit's knobs (`FERRY_UNKIND_*`) set in `env`.
    pub fn start_with(gate: &[u8], env: &[(&str, &str)]) -> Cloud {
        let ec2_window = env
            .iter()
            .find(|(k, _)| *k == "FERRY_UNKIND_EC2_NOTFOUND_SECONDS")
            .map(|(_, v)| Duration::from_secs_f64(v.parse().expect("seconds")))
            .unwrap_or(KIT_EC2_WINDOW);
        let moto = Moto::start_with(MotoOptions::with_env(env)).expect("moto");
        let dir = tempfile::tempdir().unwrap();
        let gate_path = dir.path().join("ferry-gate");
        std::fs::write(&gate_path, gate).unwrap();
        let out = moto
            .python(SETUP, &[gate_path.to_str().unwrap()], &[])
            .expect("moto setup");
        let v: Value = serde_json::from_str(out.trim()).expect("setup output");
        let s = |k: &str| v[k].as_str().unwrap().to_string();
        Cloud {
            vpc: s("vpc"),
            subnet: s("subnet"),
            ami: s("ami"),
            role_arn: s("role_arn"),
            gate_sha256: s("gate_sha256"),
            ec2_window,
            moto,
            _dir: dir,
        }
    }

    /// The function's environment as `ferry infra` would deploy it (no `FERRY_AMI_ID`: the
    /// AL2023 image is looked up), plus moto's endpoint and
    /// `creds`; `overrides` replace or add variables (an empty value removes one).
    pub fn function_env(
        &self,
        handler: &str,
        creds: Option<&Creds>,
        overrides: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let mut env = match creds {
            Some(c) => self.moto.env_with(c),
            None => self.moto.env(),
        };
        for (k, v) in [
            ("FERRY_HANDLER", handler),
            ("FERRY_INSTALLATION", INSTALLATION),
            ("FERRY_STATE_BUCKET", STATE_BUCKET),
            ("FERRY_BACKUP_BUCKET", BACKUP_BUCKET),
            ("FERRY_SUBNET_ID", &self.subnet),
            ("FERRY_INSTANCE_PROFILE", PROFILE),
            ("FERRY_ALLOWED_SSH_CIDRS", SSH_CIDRS),
            ("FERRY_GATE_SHA256", &self.gate_sha256),
            ("FERRY_MAX_SESSION_MINUTES", "60"),
        ] {
            env.push((k.to_string(), v.to_string()));
        }
        for (k, v) in overrides {
            env.retain(|(ek, _)| ek != k);
            if !v.is_empty() {
                env.push((k.to_string(), v.to_string()));
            }
        }
        env
    }

    pub fn spec(&self, name: &str, env: Vec<(String, String)>) -> FunctionSpec {
        FunctionSpec {
            name: name.into(),
            binary: env!("CARGO_BIN_EXE_bootstrap").into(),
            env,
            timeout: Duration::from_secs(120),
        }
    }

    async fn sdk(&self, endpoint: &str, c: &Creds) -> aws_config::SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(MOTO_REGION))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new(
                &c.access_key_id,
                &c.secret_access_key,
                c.session_token.clone(),
                None,
                "test",
            ))
            .load()
            .await
    }

    pub fn default_creds() -> Creds {
        Creds {
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
            session_token: None,
        }
    }

    pub async fn ec2(&self, c: &Creds) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk(&self.moto.endpoint(), c).await)
    }

    pub async fn s3(&self, c: &Creds) -> aws_sdk_s3::Client {
        let conf = self.sdk(&self.moto.endpoint(), c).await;
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf)
                .force_path_style(true)
                .build(),
        )
    }

    /// Wait until everything created so far is visible to every EC2 call (the kit's window has
    /// passed): before counting what is left, or before a test that is about something else
    /// works on resources it has just created by hand.
    pub async fn settle(&self) {
        tokio::time::sleep(self.ec2_window + Duration::from_millis(500)).await;
    }

    /// A Lambda client whose endpoint (standard SDK config) is the test kit's Lambda host.
    pub async fn lambda(&self, endpoint: &str) -> aws_sdk_lambda::Client {
        aws_sdk_lambda::Client::new(&self.sdk(endpoint, &Self::default_creds()).await)
    }
}

/// A function error: (errorType, errorMessage).
pub type FnError = (String, String);

/// Invoke through `aws-sdk-lambda` (RequestResponse).
pub async fn invoke(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
    payload: Value,
) -> Result<Value, FnError> {
    let out = lambda
        .invoke()
        .function_name(function)
        .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_string()))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "invoke {function}: {}",
                aws_sdk_lambda::error::DisplayErrorContext(&e)
            )
        });
    let body: Value = out
        .payload()
        .map(|b| serde_json::from_slice(b.as_ref()).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    match out.function_error() {
        None => Ok(body),
        Some(_) => Err((
            body["errorType"].as_str().unwrap_or_default().to_string(),
            body["errorMessage"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )),
    }
}

/// What of `installation`'s sessions exists in moto: (non-terminated instances, security
/// groups, state objects), each as ids/keys.
pub async fn leftovers(
    ec2: &aws_sdk_ec2::Client,
    s3: &aws_sdk_s3::Client,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let filter = |n: &str, v: &str| {
        aws_sdk_ec2::types::Filter::builder()
            .name(n)
            .values(v)
            .build()
    };
    let inst = ec2
        .describe_instances()
        .filters(filter("tag:ferry:installation", INSTALLATION))
        .send()
        .await
        .unwrap();
    let instances = inst
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| {
            i.state().and_then(|s| s.name())
                != Some(&aws_sdk_ec2::types::InstanceStateName::Terminated)
        })
        .filter_map(|i| i.instance_id().map(String::from))
        .collect();
    // Every security group that is not a VPC's default group counts, tagged or not.
    let groups = ec2
        .describe_security_groups()
        .send()
        .await
        .unwrap()
        .security_groups()
        .iter()
        .filter(|g| g.group_name() != Some("default"))
        .filter_map(|g| g.group_id().map(String::from))
        .collect();
    let states = keys_under(s3, ferry_contract::keys::STATE_PREFIX).await;
    (instances, groups, states)
}

/// Keys under `days/`, sorted.
pub async fn day_records(s3: &aws_sdk_s3::Client) -> Vec<String> {
    keys_under(s3, ferry_contract::keys::DAY_PREFIX).await
}

/// The state bucket's keys under `prefix` (one page), sorted.
pub async fn keys_under(s3: &aws_sdk_s3::Client, prefix: &str) -> Vec<String> {
    let mut found: Vec<String> = s3
        .list_objects_v2()
        .bucket(STATE_BUCKET)
        .prefix(prefix)
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(String::from))
        .collect();
    found.sort();
    found
}
