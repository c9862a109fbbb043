//! Benchmark of the `bootstrap` binary (docs/BENCHMARKS.md, "Lambda"): cold init time (process
//! start → first `/runtime/invocation/next`), and the handlers' own time per session
//! (`handler_ms` from the function's log: ferry-build excluding instance boot — moto's instances
//! run at once — and ferry-clean), against moto on loopback. Prints a table.
//!
//! `cargo run -p ferry-lambda --example bench-lambda -- [BOOTSTRAP] [ROUNDS]`
//! (default: the release binary next to this example's target dir; 10 rounds).

#![allow(clippy::unwrap_used)] // a benchmark harness: a failed step ends the run

use std::path::PathBuf;
use std::time::Duration;

use aws_config::BehaviorVersion;
use ferry_testkit::MOTO_REGION;
use ferry_testkit::lambda_host::{FunctionSpec, LambdaHost};
use serde_json::{Value, json};

const SETUP: &str = r#"
import boto3, json
s3 = boto3.client('s3'); ec2 = boto3.client('ec2'); iam = boto3.client('iam')
for b in ('ferry-state', 'ferry-backup'):
    s3.create_bucket(Bucket=b)
vpc = ec2.create_vpc(CidrBlock='10.0.0.0/16')['Vpc']['VpcId']
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock='10.0.1.0/24', AvailabilityZone='us-east-1a')['Subnet']['SubnetId']
iam.create_role(RoleName='ferry-jumpbox', AssumeRolePolicyDocument='{}')
iam.create_instance_profile(InstanceProfileName='ferry-jumpbox')
ami = sorted(i['ImageId'] for i in ec2.describe_images(Owners=['amazon'])['Images'])[0]
print(json.dumps({'subnet': subnet, 'ami': ami}))
"#;

fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    (v[0], v[n / 2], v[n - 1])
}

fn handler_ms(log: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["handler_ms"].as_str().and_then(|s| s.parse().ok()))
        .collect()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let bin: PathBuf = args.next().map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("current exe");
        exe.ancestors()
            .nth(3)
            .expect("target dir")
            .join("release/bootstrap")
    });
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    assert!(
        bin.is_file(),
        "{} missing: cargo build --release -p ferry-lambda",
        bin.display()
    );

    let moto = ferry_testkit::Moto::start().expect("moto");
    let v: Value = serde_json::from_str(moto.python(SETUP, &[], &[]).expect("setup").trim())
        .expect("setup output");
    let mut env = moto.env();
    for (k, val) in [
        ("FERRY_INSTALLATION", "ferry"),
        ("FERRY_STATE_BUCKET", "ferry-state"),
        ("FERRY_BACKUP_BUCKET", "ferry-backup"),
        ("FERRY_SUBNET_ID", v["subnet"].as_str().unwrap()),
        ("FERRY_INSTANCE_PROFILE", "ferry-jumpbox"),
        ("FERRY_ALLOWED_SSH_CIDRS", "203.0.113.0/24"),
        ("FERRY_GATE_SHA256", &"0".repeat(64)),
        ("FERRY_AMI_ID", v["ami"].as_str().unwrap()),
    ] {
        env.push((k.to_string(), val.to_string()));
    }
    let spec = |name: &str| FunctionSpec {
        name: name.into(),
        binary: bin.clone(),
        env: env.clone(),
        timeout: Duration::from_secs(60),
    };

    // Cold init: a fresh process each round, both handlers.
    let mut init = Vec::new();
    for _ in 0..rounds {
        let h = LambdaHost::start(vec![spec("ferry-build"), spec("ferry-clean")]).expect("host");
        for f in ["ferry-build", "ferry-clean"] {
            init.push(h.init_duration(f).expect("init").as_secs_f64() * 1000.0);
        }
    }

    // Handler time per session: build + clean, one warm process each.
    let h = LambdaHost::start(vec![spec("ferry-build"), spec("ferry-clean")]).expect("host");
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_sdk_lambda::config::Region::new(MOTO_REGION))
        .endpoint_url(h.endpoint())
        .credentials_provider(aws_sdk_lambda::config::Credentials::new(
            "testing", "testing", None, None, "bench",
        ))
        .load()
        .await;
    let lambda = aws_sdk_lambda::Client::new(&conf);
    for i in 0..rounds {
        let payload = if i % 2 == 0 {
            json!({"site": "bench"})
        } else {
            json!({"site": "bench", "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHHJ7v6mV3mSgNS7QOTtzxDCHD/QfhUKpJ6Chy1R5rOk"})
        };
        let out = lambda
            .invoke()
            .function_name("ferry-build")
            .payload(payload.to_string().into_bytes().into())
            .send()
            .await
            .expect("invoke");
        assert!(
            out.function_error().is_none(),
            "build failed: {:?}",
            out.payload()
        );
        let r: Value =
            serde_json::from_slice(out.payload().expect("payload").as_ref()).expect("json");
        let c = json!({"session": r["session"]});
        let out = lambda
            .invoke()
            .function_name("ferry-clean")
            .payload(c.to_string().into_bytes().into())
            .send()
            .await
            .expect("invoke");
        assert!(
            out.function_error().is_none(),
            "clean failed: {:?}",
            out.payload()
        );
    }
    let mut build = handler_ms(&h.log("ferry-build"));
    let mut clean = handler_ms(&h.log("ferry-clean"));
    let size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);

    println!("bootstrap: {} ({:.1} MB)", bin.display(), size as f64 / 1e6);
    println!("| measure | n | min | median | max |");
    println!("|---|---|---|---|---|");
    for (name, v) in [
        ("cold init (spawn → first /next), ms", &mut init),
        ("ferry-build handler, ms", &mut build),
        ("ferry-clean handler, ms", &mut clean),
    ] {
        let (lo, med, hi) = stats(v);
        println!("| {name} | {} | {lo:.1} | {med:.1} | {hi:.1} |", v.len());
    }
}
