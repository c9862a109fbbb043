//! Whole sessions with real parts: ferry-build (the real `bootstrap` under the Lambda host) →
//! the jump box booted from its real user data (real sshd, the real `ferry-gate` downloaded from
//! the state bucket and checked against its SHA-256) → a backup through the gate with the
//! pinned host key → ferry-clean → nothing of the session remains in moto.
//!
//! moto's IAM checks are on: the functions run as an IAM user, the jump box (its gate and its
//! expiry timer) with the jump-box role's credentials from moto STS.
//!
//! Needs the `ferry-gate` binary next to `bootstrap` (`cargo test --workspace` builds it;
//! alone: `cargo build -p ferry-gate`).

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ferry_remote::{GateOptions, GateStorage};
use ferry_repo::storage::Storage;
use ferry_testkit::Creds;
use ferry_testkit::jumpbox::{Jumpbox, JumpboxOptions};
use ferry_testkit::lambda_host::LambdaHost;
use serde_json::{Value, json};

/// Users and the jump-box role's policy (what `ferry infra` grants, minus the conditions moto
/// cannot evaluate: source VPC endpoint, If-None-Match).
const IAM: &str = r#"
import boto3, json
iam = boto3.client('iam')
out = {}
for name in ('admin', 'functions'):
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName='p', PolicyDocument=json.dumps({'Version': '2012-10-17',
        'Statement': [{'Effect': 'Allow', 'Action': '*', 'Resource': '*'}]}))
    k = iam.create_access_key(UserName=name)['AccessKey']
    out[name] = {'AccessKeyId': k['AccessKeyId'], 'SecretAccessKey': k['SecretAccessKey']}
iam.put_role_policy(RoleName='ferry-jumpbox', PolicyName='gate', PolicyDocument=json.dumps({'Version': '2012-10-17',
    'Statement': [
        {'Effect': 'Allow', 'Action': 's3:PutObject', 'Resource': 'arn:aws:s3:::ferry-backup/*'},
        {'Effect': 'Allow', 'Action': 's3:ListBucket', 'Resource': 'arn:aws:s3:::ferry-backup'},
        {'Effect': 'Allow', 'Action': 's3:GetObject', 'Resource': 'arn:aws:s3:::ferry-state/artifacts/*'},
        {'Effect': 'Allow', 'Action': 'lambda:InvokeFunction', 'Resource': '*'}]}))
# The instance role, assumable by the admin too: there is no instance metadata service here, so
# the test gets the box's credentials from moto STS. (moto 5.2.5 matches the user's own ARN in a
# trust policy; the account root did not match here.)
account = boto3.client('sts').get_caller_identity()['Account']
iam.update_assume_role_policy(RoleName='ferry-jumpbox', PolicyDocument=json.dumps({'Version': '2012-10-17',
    'Statement': [{'Effect': 'Allow', 'Principal': {'Service': 'ec2.amazonaws.com', 'AWS': f'arn:aws:iam::{account}:user/admin'},
                   'Action': 'sts:AssumeRole'}]}))
print(json.dumps(out))
"#;

const ASSUME: &str = r#"
import boto3, json, sys
c = boto3.client('sts').assume_role(RoleArn=sys.argv[1], RoleSessionName='i-jumpbox')['Credentials']
print(json.dumps({k: c[k] for k in ('AccessKeyId', 'SecretAccessKey', 'SessionToken')}))
"#;

fn gate_binary() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_BIN_EXE_bootstrap")).with_file_name("ferry-gate");
    assert!(
        p.is_file(),
        "{} is missing: build it first (cargo build -p ferry-gate)",
        p.display()
    );
    p
}

fn creds(v: &Value) -> Creds {
    Creds {
        access_key_id: v["AccessKeyId"].as_str().unwrap().into(),
        secret_access_key: v["SecretAccessKey"].as_str().unwrap().into(),
        session_token: v["SessionToken"].as_str().map(String::from),
    }
}

struct Rig {
    cloud: Cloud,
    host: LambdaHost,
    admin: Creds,
    jumpbox: Creds,
    dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let gate = std::fs::read(gate_binary()).unwrap();
    let cloud = Cloud::start(&gate);
    let users: Value =
        serde_json::from_str(cloud.moto.python(IAM, &[], &[]).unwrap().trim()).unwrap();
    cloud.moto.enable_iam_checks().unwrap();
    let admin = creds(&users["admin"]);
    let jb: Value = serde_json::from_str(
        cloud
            .moto
            .python(ASSUME, &[&cloud.role_arn], &cloud.moto.env_with(&admin))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let functions = creds(&users["functions"]);
    let host = LambdaHost::start(vec![
        cloud.spec(
            "ferry-build",
            cloud.function_env("build", Some(&functions), &[]),
        ),
        cloud.spec(
            "ferry-clean",
            cloud.function_env("clean", Some(&functions), &[]),
        ),
    ])
    .unwrap();
    Rig {
        cloud,
        host,
        admin,
        jumpbox: creds(&jb),
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Rig {
    /// Build a session with a client key made here; boot its jump box and wait for its user
    /// data. (answer, box, key path)
    async fn session(&self, ttl: u32) -> (Value, Jumpbox, PathBuf) {
        let (r, mut bx, key) = self.start_session(ttl, JumpboxOptions::default()).await;
        bx.wait_user_data(Duration::from_secs(60)).unwrap();
        (r, bx, key)
    }

    /// Build a session; start its jump box (until the AMI's sshd answers) with `opts` (its user
    /// data and AWS variables filled in here).
    async fn start_session(&self, ttl: u32, opts: JumpboxOptions) -> (Value, Jumpbox, PathBuf) {
        let key = self.dir.path().join(format!("id-{ttl}"));
        let public = ferry_testkit::keygen(&key).unwrap();
        let lambda = self.cloud.lambda(&self.host.endpoint()).await;
        let r = invoke(
            &lambda,
            "ferry-build",
            json!({"site": "home", "public_key": public.trim(), "ttl_minutes": ttl}),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", self.host.log("ferry-build")));
        let session = r["session"].as_str().unwrap();
        let ec2 = self.cloud.ec2(&self.admin).await;
        let d = ec2
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:ferry:session")
                    .values(session)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let instance = d.reservations()[0].instances()[0]
            .instance_id()
            .unwrap()
            .to_string();
        let user_data = ferry_testkit::jumpbox::user_data_from_moto(
            &self.cloud.moto,
            &instance,
            &self.cloud.moto.env_with(&self.admin),
        )
        .unwrap();
        let mut aws_env = self.cloud.moto.env_with(&self.jumpbox);
        aws_env.push(("AWS_ENDPOINT_URL_LAMBDA".into(), self.host.endpoint()));
        let bx = Jumpbox::start(JumpboxOptions {
            user_data,
            aws_env,
            boot_timeout: Duration::from_secs(60),
            ..opts
        })
        .unwrap();
        std::fs::write(
            self.dir.path().join(format!("{session}.host.pub")),
            format!("{}\n", r["host_key"].as_str().unwrap()),
        )
        .unwrap();
        (r, bx, key)
    }

    fn host_key_file(&self, r: &Value) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.host.pub", r["session"].as_str().unwrap()))
    }

    async fn leftovers(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        leftovers(
            &self.cloud.ec2(&self.admin).await,
            &self.cloud.s3(&self.admin).await,
        )
        .await
    }
}

fn admin_storage(cloud: &Cloud, admin: &Creds) -> Arc<dyn Storage> {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(ferry_testkit::MOTO_REGION))
        .endpoint_url(cloud.moto.endpoint())
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            &admin.access_key_id,
            &admin.secret_access_key,
            None,
            None,
            "test",
        ))
        .build();
    let objects = ferry_s3::S3Objects::with_client(
        aws_sdk_s3::Client::from_conf(conf),
        BACKUP_BUCKET,
        "home",
    );
    Arc::new(ferry_s3::S3Storage::from_objects(objects).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_session_build_connect_back_up_clean() {
    let rig = rig();
    // A 1 MiB /tmp (AL2023: a tmpfs of half the RAM): the gate's download and the objects it
    // spools (a pack of over 3 MiB below) must not land there.
    let (r, mut bx, key) = rig
        .start_session(
            30,
            JumpboxOptions {
                tmp_size_mib: 1,
                ..JumpboxOptions::default()
            },
        )
        .await;
    bx.wait_user_data(Duration::from_secs(60)).unwrap();
    let session = r["session"].as_str().unwrap().to_string();

    // The box ran the user data: the gate verified and installed, its session config written.
    let gate_toml = bx.read_file("etc/ferry/gate.toml").unwrap();
    assert!(
        gate_toml.contains(&format!("session = \"{session}\""))
            && gate_toml.contains("bucket = \"ferry-backup\""),
        "{gate_toml}"
    );
    assert!(
        bx.read_file("etc/ferry/authorized_keys")
            .unwrap()
            .starts_with("restrict,command=\"/usr/local/bin/ferry-gate serve")
    );

    // Back up through the gate: the real repository engine over the SSH backend, the host key
    // pinned from ferry-build's answer.
    let url = format!("gate+ssh://ferry@127.0.0.1:{}/home", bx.port());
    let opts = GateOptions::new(&key, rig.host_key_file(&r));
    let gate = GateStorage::connect(&url, &opts).unwrap_or_else(|e| panic!("{e}\n{}", bx.logs()));
    assert_eq!(gate.session(), session);
    let src = rig.dir.path().join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    std::fs::write(
        src.join("etc/big.log"),
        (0..200_000u32)
            .flat_map(|i| i.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    // Incompressible, so its pack is larger than the box's /tmp.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..3 * 1024 * 1024 / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    std::fs::write(src.join("etc/noise.bin"), &noise).unwrap();
    let master = ferry_repo::MasterKey::generate();
    let put = master.put_key();
    let gate: Arc<dyn Storage> = Arc::new(gate);
    let repo = ferry_repo::Repository::init(gate.clone(), &put).unwrap();
    let opts_b = ferry_repo::BackupOptions {
        cache_disabled: true,
        ..Default::default()
    };
    let snap = ferry_repo::backup::local::backup_paths(
        &repo,
        &put,
        std::slice::from_ref(&src),
        opts_b,
        Arc::new(ferry_repo::NoProgress),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", bx.logs()));
    drop(repo);
    drop(gate);

    // The pinned key is enforced: another host key is refused before anything is sent.
    let other = rig.dir.path().join("other-host");
    ferry_testkit::keygen(&other).unwrap();
    let err = GateStorage::connect(&url, &GateOptions::new(&key, other.with_extension("pub")))
        .err()
        .expect("wrong host key must fail");
    assert!(!err.to_string().is_empty());
    // The key can only talk to the gate: a command gets the gate, not a shell.
    let out = ssh(bx.port(), &key, "ferry", None, "echo shell-reached");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("shell-reached"));

    // Restore with the master key straight from the backup bucket (operator credentials). The
    // S3 storage is blocking: run it off the async runtime.
    let target = rig.dir.path().join("restored");
    let storage = admin_storage(&rig.cloud, &rig.admin);
    let t = target.clone();
    let latest_id = std::thread::spawn(move || {
        let admin_repo = ferry_repo::Repository::open(storage).unwrap();
        let reader = admin_repo.reader(&master).unwrap();
        let latest = reader.resolve_snapshot("latest").unwrap();
        reader
            .restore(
                &latest,
                &t,
                &ferry_repo::RestoreOptions::default(),
                &ferry_repo::NoProgress,
            )
            .unwrap();
        latest.id
    })
    .join()
    .unwrap();
    assert_eq!(latest_id, snap.id);
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(restored.join("etc/hosts")).unwrap(),
        std::fs::read(src.join("etc/hosts")).unwrap()
    );
    assert_eq!(
        std::fs::read(restored.join("etc/big.log")).unwrap(),
        std::fs::read(src.join("etc/big.log")).unwrap()
    );
    assert!(std::fs::read(restored.join("etc/noise.bin")).unwrap() == noise);

    // Clean: nothing of the session remains in moto, the state object is gone.
    let lambda = rig.cloud.lambda(&rig.host.endpoint()).await;
    let c = invoke(&lambda, "ferry-clean", json!({"session": session}))
        .await
        .unwrap();
    assert_eq!(c["removed"].as_array().unwrap().len(), 3, "{c}");
    assert_eq!(rig.leftovers().await, (vec![], vec![], vec![]));
}

/// `ssh` as a client runs it ([`ferry_ssh::SshCommand`]), the host key pinned by
/// `known_hosts`, or (`None`) by whatever ed25519 key the box presents now (`ssh-keyscan`).
fn ssh(port: u16, identity: &Path, user: &str, known_hosts: Option<&Path>, cmd: &str) -> Output {
    let scanned;
    let known_hosts = match known_hosts {
        Some(k) => k,
        None => {
            scanned = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(
                scanned.path(),
                format!("[127.0.0.1]:{port} ssh-ed25519 {}\n", host_key_of(port)),
            )
            .unwrap();
            scanned.path()
        }
    };
    ferry_ssh::SshCommand::new(user, "127.0.0.1", port, identity, known_hosts)
        .remote_command(cmd)
        .command()
        .unwrap()
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The ed25519 host key (base64) sshd on `port` presents.
fn host_key_of(port: u16) -> String {
    let out = Command::new("ssh-keyscan")
        .args(["-t", "ed25519", "-p", &port.to_string(), "127.0.0.1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[1] == "ssh-ed25519").then(|| f[2].to_string())
        })
        .unwrap_or_else(|| panic!("no ed25519 key from port {port}: {text}"))
}

/// On EC2 the AMI's sshd is up, with host keys of its own, before the user data runs (cloud-init:
/// sshd after the Network stage, user scripts in the Final stage,
/// https://docs.cloud-init.io/en/latest/explanation/boot.html); and AL2023's preinstalled
/// ec2-instance-connect package puts AuthorizedKeysCommand on sshd's command line through a
/// systemd drop-in (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/connect-linux-inst-eic.html).
/// The pinned client refuses the AMI's sshd; once the user data ran, the box presents the
/// session's key, the session key reaches the gate, and an EC2 Instance Connect key is refused.
#[tokio::test(flavor = "multi_thread")]
async fn the_box_answers_before_its_user_data_and_never_lets_instance_connect_keys_in() {
    let rig = rig();
    let (r, mut bx, key) = rig
        .start_session(
            25,
            JumpboxOptions {
                hold_user_data: true,
                ..JumpboxOptions::default()
            },
        )
        .await;
    let host_line = r["host_key"].as_str().unwrap();
    let pinned = host_line.split_whitespace().nth(1).unwrap().to_string();
    let known = rig.dir.path().join("known_hosts");
    std::fs::write(&known, format!("[127.0.0.1]:{} {host_line}\n", bx.port())).unwrap();

    // The AMI's sshd, the user data not run yet: a host key of the instance's own.
    assert_ne!(host_key_of(bx.port()), pinned, "{}", bx.logs());
    let out = ssh(bx.port(), &key, "ferry", Some(&known), "true");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{err}");
    assert!(err.contains("Host key verification failed"), "{err}");
    // The AMI's EC2 Instance Connect drop-in is live: a "pushed" key logs in as ec2-user.
    let out = ssh(bx.port(), &bx.eic_key(), "ec2-user", None, "echo eic-in");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("eic-in"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        bx.logs()
    );

    // The user data (cloud-init's final stage) installs the session's key and rules.
    bx.release_user_data();
    bx.wait_user_data(Duration::from_secs(60)).unwrap();
    assert_eq!(host_key_of(bx.port()), pinned, "{}", bx.logs());
    for user in ["ferry", "ec2-user"] {
        let out = ssh(bx.port(), &bx.eic_key(), user, Some(&known), "echo eic-in");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(255), "{user}: {err}\n{}", bx.logs());
        assert!(err.contains("Permission denied"), "{user}: {err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("eic-in"));
    }
    let url = format!("gate+ssh://ferry@127.0.0.1:{}/home", bx.port());
    let gate = GateStorage::connect(&url, &GateOptions::new(&key, rig.host_key_file(&r)))
        .unwrap_or_else(|e| panic!("{e}\n{}", bx.logs()));
    assert_eq!(gate.session(), r["session"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_expiry_timer_invokes_ferry_clean_and_the_backstop_powers_off() {
    let rig = rig();
    let (r, mut bx, _key) = rig.session(20).await;
    let session = r["session"].as_str().unwrap().to_string();
    let timers = bx.timers();
    assert_eq!(
        timers.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(),
        vec!["ferry-backstop", "ferry-expire"]
    );
    let expire = &timers[1];
    let backstop = &timers[0];
    assert!(
        (20 * 60 - 120..=20 * 60).contains(&expire.1),
        "expiry timer in {}s",
        expire.1
    );
    assert_eq!(backstop.1, expire.1 + 300);
    assert!(
        expire.2.contains("lambda invoke")
            && expire.2.contains("ferry-clean")
            && expire.2.contains(&session),
        "{}",
        expire.2
    );

    // Expiry: the box invokes ferry-clean for its own session with the instance role.
    let (rc, out) = bx.fire_timer("ferry-expire").unwrap();
    assert_eq!(rc, 0, "{out}\n{}", rig.host.log("ferry-clean"));
    assert_eq!(rig.leftovers().await, (vec![], vec![], vec![]));
    // The backstop powers the box off whatever happened.
    // (Its poweroff ends the box's PID namespace, and with it the nsenter that fired the timer,
    // possibly before that reports: the outcome is what counts.)
    let fired = bx.fire_timer("ferry-backstop");
    assert!(bx.powered_off().is_some(), "{fired:?}");
    ferry_testkit::wait_until("box ends", Duration::from_secs(10), || !bx.running()).unwrap();
}
