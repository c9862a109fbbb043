//! ferry-build and ferry-clean: the real `bootstrap` binary under the test kit's Lambda runtime
//! host, invoked through `aws-sdk-lambda`, provisioning in moto (EC2, S3, IAM).

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;

use base64::Engine as _;
use common::*;
use ferry_testkit::lambda_host::LambdaHost;
use serde_json::{Value, json};

fn host(cloud: &Cloud, extra: &[(&str, &str)]) -> LambdaHost {
    LambdaHost::start(vec![
        cloud.spec("ferry-build", cloud.function_env("build", None, extra)),
        cloud.spec("ferry-clean", cloud.function_env("clean", None, extra)),
    ])
    .expect("lambda host")
}

/// One test's local cloud, as (cloud, host, lambda, ec2, s3): moto, the two functions under
/// the Lambda host (with `extra` variables), and Lambda, EC2 and S3 clients with the
/// operator's credentials. The servers stop when dropped: bind them for the whole test.
async fn setup(
    extra: &[(&str, &str)],
) -> (
    Cloud,
    LambdaHost,
    aws_sdk_lambda::Client,
    aws_sdk_ec2::Client,
    aws_sdk_s3::Client,
) {
    let cloud = Cloud::start(b"gate-artifact");
    let host = host(&cloud, extra);
    let lambda = cloud.lambda(&host.endpoint()).await;
    let admin = Cloud::default_creds();
    let (ec2, s3) = (cloud.ec2(&admin).await, cloud.s3(&admin).await);
    (cloud, host, lambda, ec2, s3)
}

/// A security group's rules in one direction as (protocol, from port, to port, CIDR).
fn rules(
    perms: &[aws_sdk_ec2::types::IpPermission],
) -> Vec<(&str, Option<i32>, Option<i32>, &str)> {
    perms
        .iter()
        .flat_map(|p| {
            p.ip_ranges().iter().map(move |r| {
                (
                    p.ip_protocol().unwrap(),
                    p.from_port(),
                    p.to_port(),
                    r.cidr_ip().unwrap(),
                )
            })
        })
        .collect()
}

async fn user_data(ec2: &aws_sdk_ec2::Client, instance: &str) -> String {
    let a = ec2
        .describe_instance_attribute()
        .instance_id(instance)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    let b64 = a.user_data().and_then(|u| u.value()).unwrap_or_default();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

async fn state(s3: &aws_sdk_s3::Client, session: &str) -> Option<Value> {
    let o = s3
        .get_object()
        .bucket(STATE_BUCKET)
        .key(format!("sessions/{session}.json"))
        .send()
        .await
        .ok()?;
    Some(serde_json::from_slice(&o.body.collect().await.unwrap().into_bytes()).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn build_with_the_clients_key_provisions_a_confined_box_and_clean_removes_it_twice() {
    let (cloud, h, lambda, ec2, s3) = setup(&[]).await;

    let r = invoke(
        &lambda,
        "ferry-build",
        json!({"site": "home", "public_key": CLIENT_PUB, "ttl_minutes": 20}),
    )
    .await
    .unwrap_or_else(|e| panic!("build: {e:?}\n{}", h.log("ferry-build")));
    let session = r["session"].as_str().unwrap().to_string();
    assert!(session.starts_with("fs-"), "{r}");
    assert_eq!(
        (r["port"].as_u64(), r["user"].as_str(), r["site"].as_str()),
        (Some(22), Some("ferry"), Some("home"))
    );
    assert!(
        r.get("private_key").is_none(),
        "no private key when the caller sent a public one: {r}"
    );
    let host_key = r["host_key"].as_str().unwrap();
    assert!(host_key.starts_with("ssh-ed25519 "), "{host_key}");

    // The instance: AMI, subnet, profile, IMDSv2 with hop limit 1, tags, public address.
    let d = ec2
        .describe_instances()
        .filters(filter("tag:ferry:session", &session))
        .send()
        .await
        .unwrap();
    let insts: Vec<_> = d
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .collect();
    assert_eq!(insts.len(), 1);
    let i = insts[0];
    let iid = i.instance_id().unwrap().to_string();
    // The AMI was looked up: the newest Amazon-owned AL2023 x86_64 image.
    let img = ec2
        .describe_images()
        .image_ids(i.image_id().unwrap())
        .send()
        .await
        .unwrap();
    let img = &img.images()[0];
    assert!(
        img.name().unwrap().starts_with("al2023-ami-2023.")
            && img.name().unwrap().ends_with("-x86_64"),
        "{img:?}"
    );
    assert_eq!(img.architecture().map(|a| a.as_str()), Some("x86_64"));
    assert_eq!(i.subnet_id(), Some(cloud.subnet.as_str()));
    assert_eq!(i.public_ip_address(), r["host"].as_str());
    assert!(
        i.iam_instance_profile()
            .and_then(|p| p.arn())
            .unwrap_or("")
            .ends_with("instance-profile/ferry-jumpbox")
    );
    let md = i.metadata_options().unwrap();
    assert_eq!(
        md.http_tokens(),
        Some(&aws_sdk_ec2::types::HttpTokensState::Required)
    );
    assert_eq!(md.http_put_response_hop_limit(), Some(1));
    let tags: std::collections::HashMap<_, _> = i
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert_eq!(tags["ferry:site"], "home");
    assert_eq!(tags["ferry:installation"], INSTALLATION);
    assert_eq!(tags["ferry:managed"], "true");
    assert_eq!(tags["ferry:expiry"], r["expires"].as_str().unwrap());
    let shutdown = ec2
        .describe_instance_attribute()
        .instance_id(&iid)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::InstanceInitiatedShutdownBehavior)
        .send()
        .await
        .unwrap();
    assert_eq!(
        shutdown
            .instance_initiated_shutdown_behavior()
            .and_then(|v| v.value()),
        Some("terminate")
    );

    // The security group: SSH in from the configured ranges only, HTTPS out only.
    let nic_groups: Vec<_> = i
        .network_interfaces()
        .iter()
        .flat_map(|n| n.groups())
        .filter_map(|g| g.group_id())
        .collect();
    assert_eq!(nic_groups.len(), 1, "one security group on the instance");
    let sg_id = nic_groups[0].to_string();
    let g = ec2
        .describe_security_groups()
        .group_ids(&sg_id)
        .send()
        .await
        .unwrap();
    let g = &g.security_groups()[0];
    let ingress = rules(g.ip_permissions());
    assert_eq!(
        ingress,
        vec![
            ("tcp", Some(22), Some(22), "203.0.113.0/24"),
            ("tcp", Some(22), Some(22), "198.51.100.7/32")
        ]
    );
    let egress = rules(g.ip_permissions_egress());
    assert_eq!(egress, vec![("tcp", Some(443), Some(443), "0.0.0.0/0")]);

    // The user data: the client key confined to the gate, the returned host key, the checksum.
    let ud = user_data(&ec2, &iid).await;
    assert!(ud.contains(&format!(
        "restrict,command=\"/usr/local/bin/ferry-gate serve --config /etc/ferry/gate.toml\" {} ferry-client-{session}",
        CLIENT_PUB.rsplit_once(' ').unwrap().0
    )));
    assert!(ud.contains(&format!("{host_key} ferry-host-{session}")));
    assert!(ud.contains(&format!("\ngate_sha256='{}'\n", cloud.gate_sha256)));
    assert!(ud.contains(
        "printf '%s  %s\\n' \"$gate_sha256\" \"$gate_tmp\" | sha256sum --check --status"
    ));
    assert!(!ud.contains("backup-vm"), "the caller's comment is dropped");

    // The state object records everything.
    let st = state(&s3, &session).await.expect("state object");
    assert_eq!(st["phase"], "ready");
    assert_eq!(st["instance_id"], iid.as_str());
    assert_eq!(st["security_group_id"], sg_id.as_str());

    // Clean removes all of it; a second clean succeeds and removes nothing.
    let c = invoke(&lambda, "ferry-clean", json!({"session": session}))
        .await
        .unwrap();
    let removed: Vec<_> = c["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        removed,
        vec![
            format!("instance {iid}"),
            format!("security-group {sg_id}"),
            format!("state sessions/{session}.json")
        ]
    );
    assert_eq!(leftovers(&ec2, &s3).await, (vec![], vec![], vec![]));
    let again = invoke(&lambda, "ferry-clean", json!({"session": session}))
        .await
        .unwrap();
    assert_eq!(again["removed"], json!([]), "{again}");
}

/// A sweep's answer as (session, what was removed) pairs.
fn swept(r: &Value) -> Vec<(Value, Value)> {
    r["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["session"].clone(), s["removed"].clone()))
        .collect()
}

fn filter(n: &str, v: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(n)
        .values(v)
        .build()
}

#[tokio::test(flavor = "multi_thread")]
async fn build_without_a_key_returns_a_generated_one_and_no_key_material_reaches_the_logs() {
    let cloud = Cloud::start(b"gate-artifact");
    let h = host(&cloud, &[("FERRY_AMI_ID", &cloud.ami)]);
    let lambda = cloud.lambda(&h.endpoint()).await;
    let admin = Cloud::default_creds();
    let (ec2, s3) = (cloud.ec2(&admin).await, cloud.s3(&admin).await);

    let r = invoke(&lambda, "ferry-build", json!({"site": "office"}))
        .await
        .unwrap();
    let pem = r["private_key"].as_str().expect("generated private key");
    let key = ssh_key::PrivateKey::from_openssh(pem).unwrap();
    assert_eq!(key.algorithm(), ssh_key::Algorithm::Ed25519);
    let public = key.public_key().to_openssh().unwrap();
    let public = public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(r["client_public_key"].as_str(), Some(public.as_str()));
    // Default TTL (30 min) when none is asked for.
    let session = r["session"].as_str().unwrap().to_string();
    let ud = {
        let d = ec2
            .describe_instances()
            .filters(filter("tag:ferry:session", &session))
            .send()
            .await
            .unwrap();
        let inst = &d.reservations()[0].instances()[0];
        assert_eq!(
            inst.image_id(),
            Some(cloud.ami.as_str()),
            "FERRY_AMI_ID pins the image"
        );
        user_data(&ec2, inst.instance_id().unwrap()).await
    };
    assert!(
        ud.contains(&format!("\" {public} ferry-client-{session}")),
        "the generated key is the authorized one"
    );

    // Key material: the client private key (as returned) and the host private key (in the user
    // data). Search the function logs for any of their base64 lines and the PEM markers.
    let host_pem: String = ud
        .split("\nhost_private_key='")
        .nth(1)
        .and_then(|s| s.split("'\n").next())
        .unwrap()
        .to_string();
    assert!(host_pem.contains("BEGIN OPENSSH PRIVATE KEY"));
    invoke(&lambda, "ferry-clean", json!({"session": session}))
        .await
        .unwrap();
    let logs = format!("{}\n{}", h.log("ferry-build"), h.log("ferry-clean"));
    assert!(
        logs.contains("build done") && logs.contains("clean done"),
        "logs were captured: {logs}"
    );
    assert!(!logs.contains("PRIVATE KEY"), "{logs}");
    for pem in [pem, host_pem.as_str()] {
        for line in pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        {
            assert!(!logs.contains(line), "key material in the logs: {line}");
            assert!(!logs.contains(&line[..16]));
        }
    }
    assert_eq!(leftovers(&ec2, &s3).await, (vec![], vec![], vec![]));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_payloads_get_clear_errors_and_create_nothing() {
    let (_cloud, h, lambda, ec2, s3) = setup(&[]).await;
    let private = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n";
    for (function, payload, needle) in [
        (
            "ferry-build",
            json!({"site": "home", "instance_type": "m5.24xlarge"}),
            "unknown field `instance_type`",
        ),
        (
            "ferry-build",
            json!({"site": "home", "public_key": "ssh-ed25519 AAAAnot-a-key"}),
            "public_key: not an OpenSSH public key",
        ),
        (
            "ferry-build",
            json!({"site": "home", "public_key": private}),
            "public_key: this is a private key",
        ),
        (
            "ferry-build",
            json!({"site": "home", "ttl_minutes": 61}),
            "ttl_minutes 61 exceeds this function's limit of 60 minutes",
        ),
        (
            "ferry-build",
            json!({"site": "../etc"}),
            "site \"../etc\" is not a valid site name",
        ),
        (
            "ferry-build",
            json!({"public_key": CLIENT_PUB}),
            "missing field `site`",
        ),
        (
            "ferry-build",
            json!(["home"]),
            "payload: expected a JSON object",
        ),
        (
            "ferry-clean",
            json!("fs-x"),
            "payload: expected a JSON object",
        ),
        (
            "ferry-clean",
            json!({"session": "fs-x", "sweep": true}),
            "not both",
        ),
        (
            "ferry-clean",
            json!({"session": "i-0123"}),
            "not a Ferry session id",
        ),
        ("ferry-clean", json!({"all": true}), "unknown field `all`"),
    ] {
        // Never print an unexpected answer: it could carry a generated private key.
        let Err((kind, msg)) = invoke(&lambda, function, payload.clone()).await else {
            panic!("{payload} was accepted")
        };
        assert_eq!(kind, "Ferry.BadRequest", "{payload}: {msg}");
        assert!(msg.contains(needle), "{payload}: {msg:?} lacks {needle:?}");
        assert!(
            !msg.contains("b3BlbnNz"),
            "the error echoes key material: {msg}"
        );
    }
    assert_eq!(leftovers(&ec2, &s3).await, (vec![], vec![], vec![]));
    assert!(!h.log("ferry-build").contains("b3BlbnNz"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_concurrent_session_limit_refuses_with_a_clear_error() {
    let (_cloud, _h, lambda, ec2, s3) = setup(&[("FERRY_MAX_SESSIONS", "1")]).await;
    let first = invoke(
        &lambda,
        "ferry-build",
        json!({"site": "home", "public_key": CLIENT_PUB}),
    )
    .await
    .unwrap();
    let first = first["session"].as_str().unwrap().to_string();
    let (kind, msg) = invoke(
        &lambda,
        "ferry-build",
        json!({"site": "home", "public_key": CLIENT_PUB}),
    )
    .await
    .unwrap_err();
    assert_eq!(kind, "Ferry.SessionLimit");
    assert!(
        msg.contains("1 concurrent session(s) allowed") && msg.contains(&first),
        "{msg}"
    );
    let (instances, groups, states) = leftovers(&ec2, &s3).await;
    assert_eq!(
        (instances.len(), groups.len(), states),
        (1, 1, vec![format!("sessions/{first}.json")])
    );
    // The refused build's day record (written before its one LIST) went with its rollback:
    // the day counts only the first.
    let days = day_records(&s3).await;
    assert_eq!(days.len(), 1, "{days:?}");
    assert!(days[0].contains(&first), "{days:?}");
    // After the first ends, a new one is allowed.
    invoke(&lambda, "ferry-clean", json!({"session": first}))
        .await
        .unwrap();
    invoke(
        &lambda,
        "ferry-build",
        json!({"site": "home", "public_key": CLIENT_PUB}),
    )
    .await
    .unwrap();
}

/// A build whose ferry-build was stopped before `ready` (Lambda's timeout, or the handler
/// killed) holds no session slot once its invocation is over, and the sweep removes what it
/// made; a build still within its invocation is counted.
#[tokio::test(flavor = "multi_thread")]
async fn an_abandoned_build_holds_no_slot_and_the_sweep_removes_it() {
    let (cloud, h, lambda, ec2, s3) = setup(&[("FERRY_MAX_SESSIONS", "1")]).await;
    let fmt = |t: time::OffsetDateTime| {
        t.replace_nanosecond(0)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let now = time::OffsetDateTime::now_utc();
    // A state as ferry-build writes it at phase `security-group`, its group recorded; the
    // session itself is far from expiry. `deadline`: its invocation's end.
    let put_build = |id: &'static str, sg: String, deadline: time::OffsetDateTime| {
        let st = json!({"version": 1, "session": id, "installation": INSTALLATION, "site": "home",
            "created": fmt(now - time::Duration::minutes(3)),
            "expires": fmt(now + time::Duration::minutes(60)), "phase": "security-group",
            "security_group_id": sg, "instance_id": null, "host": null, "host_key": null,
            "build_deadline": fmt(deadline)});
        let s3 = s3.clone();
        async move {
            s3.put_object()
                .bucket(STATE_BUCKET)
                .key(format!("sessions/{id}.json"))
                .body(st.to_string().into_bytes().into())
                .send()
                .await
                .unwrap();
        }
    };
    let group = |name: &'static str| {
        let ec2 = ec2.clone();
        let vpc = cloud.vpc.clone();
        async move {
            let g = ec2
                .create_security_group()
                .group_name(name)
                .description("x")
                .vpc_id(vpc)
                .send()
                .await
                .unwrap();
            g.group_id().unwrap().to_string()
        }
    };

    // A build still within its invocation (deadline a minute ahead) holds the one slot.
    let running = "fs-20261203-000000-00c0ffee";
    put_build(
        running,
        group("ferry-running").await,
        now + time::Duration::minutes(1),
    )
    .await;
    let (kind, msg) = invoke(
        &lambda,
        "ferry-build",
        json!({"site": "home", "public_key": CLIENT_PUB}),
    )
    .await
    .unwrap_err();
    assert_eq!(kind, "Ferry.SessionLimit", "{msg}");
    assert!(msg.contains(running), "{msg}");
    // Its hand-made group is minutes younger than its state says: let EC2 (the kit's eventual
    // consistency) show it before ferry-clean, which believes a NotFound for an older session.
    cloud.settle().await;
    invoke(&lambda, "ferry-clean", json!({"session": running}))
        .await
        .unwrap();

    // A build whose invocation ended 20 s ago without reaching `ready`: not counted.
    let abandoned = "fs-20261203-000000-0dead0ff";
    let sg = group("ferry-abandoned").await;
    put_build(abandoned, sg.clone(), now - time::Duration::seconds(20)).await;
    let live = invoke(
        &lambda,
        "ferry-build",
        json!({"site": "home", "public_key": CLIENT_PUB}),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:?}\n{}", h.log("ferry-build")));
    let live = live["session"].as_str().unwrap().to_string();
    assert!(
        h.log("ferry-build").contains("abandoned build not counted"),
        "{}",
        h.log("ferry-build")
    );

    // The sweep removes the abandoned build (long before its expiry) and keeps the live one.
    cloud.settle().await;
    let r = invoke(&lambda, "ferry-clean", json!({"sweep": true}))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", h.log("ferry-clean")));
    assert_eq!(r["kept"], json!([live]), "{r}");
    let cleaned = swept(&r);
    assert_eq!(
        cleaned,
        vec![(
            json!(abandoned),
            json!([
                format!("security-group {sg}"),
                format!("state sessions/{abandoned}.json")
            ])
        )],
        "{r}"
    );
    let (instances, groups, states) = leftovers(&ec2, &s3).await;
    assert_eq!(
        (instances.len(), groups.len(), states),
        (1, 1, vec![format!("sessions/{live}.json")])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_misconfigured_function_fails_at_init_naming_the_variable() {
    let cloud = Cloud::start(b"gate-artifact");
    let h = LambdaHost::start(vec![cloud.spec(
        "ferry-build",
        cloud.function_env("build", None, &[("FERRY_GATE_SHA256", "")]),
    )])
    .unwrap();
    let lambda = cloud.lambda(&h.endpoint()).await;
    let (kind, msg) = invoke(&lambda, "ferry-build", json!({"site": "home"}))
        .await
        .unwrap_err();
    assert_eq!(kind, "Runtime.ExitError");
    assert!(msg.contains("FERRY_GATE_SHA256 is not set"), "{msg}");
    assert!(
        h.init_error("ferry-build")
            .unwrap_or_default()
            .contains("FERRY_GATE_SHA256")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sweep_removes_expired_sessions_and_orphans_and_keeps_live_ones() {
    let (cloud, h, lambda, ec2, s3) = setup(&[]).await;

    // A live session (kept).
    let live = invoke(
        &lambda,
        "ferry-build",
        json!({"site": "home", "public_key": CLIENT_PUB}),
    )
    .await
    .unwrap();
    let live = live["session"].as_str().unwrap().to_string();

    // An orphan: a tagged instance whose state object is gone (made by hand, as if a state
    // object had been lost).
    let orphan = "fs-20200101-000000-deadbeef";
    let tags = aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("ferry:installation")
                .value(INSTALLATION)
                .build(),
        )
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("ferry:session")
                .value(orphan)
                .build(),
        )
        .build();
    let run = ec2
        .run_instances()
        .image_id(&cloud.ami)
        .min_count(1)
        .max_count(1)
        .subnet_id(&cloud.subnet)
        .tag_specifications(tags)
        .send()
        .await
        .unwrap();
    let orphan_instance = run.instances()[0].instance_id().unwrap().to_string();

    // An expired session: its state says so (a security group recorded in it).
    let expired = "fs-20200101-000000-0badcafe";
    let sg = ec2
        .create_security_group()
        .group_name("ferry-expired")
        .description("x")
        .vpc_id(&cloud.vpc)
        .send()
        .await
        .unwrap();
    let sg = sg.group_id().unwrap().to_string();
    let st = json!({"version": 1, "session": expired, "installation": INSTALLATION, "site": "home",
        "created": "2020-01-01T00:00:00Z", "expires": "2020-01-01T00:30:00Z", "phase": "security-group",
        "security_group_id": sg, "instance_id": null, "host": null, "host_key": null});
    s3.put_object()
        .bucket(STATE_BUCKET)
        .key(format!("sessions/{expired}.json"))
        .body(st.to_string().into_bytes().into())
        .send()
        .await
        .unwrap();

    // The hand-made resources carry sessions from 2020, whose NotFound ferry-clean believes:
    // let EC2 (the kit's eventual consistency) show them first. Young sessions whose resources
    // EC2 does not show yet: tests/eventual_consistency.rs.
    cloud.settle().await;
    let r = invoke(&lambda, "ferry-clean", json!({"sweep": true}))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", h.log("ferry-clean")));
    assert_eq!(r["orphans"], json!([orphan]), "{r}");
    assert_eq!(r["kept"], json!([live]), "{r}");
    assert_eq!(r["states_listed"], json!(true), "{r}");
    let cleaned = swept(&r);
    assert!(
        cleaned.contains(&(
            json!(orphan),
            json!([format!("instance {orphan_instance}")])
        )),
        "{r}"
    );
    assert!(
        cleaned.contains(&(
            json!(expired),
            json!([
                format!("security-group {sg}"),
                format!("state sessions/{expired}.json")
            ])
        )),
        "{r}"
    );
    let (instances, groups, states) = leftovers(&ec2, &s3).await;
    assert_eq!(
        (instances.len(), groups.len(), states),
        (1, 1, vec![format!("sessions/{live}.json")])
    );
    // A second sweep finds nothing more to do.
    let r = invoke(&lambda, "ferry-clean", json!({"sweep": true}))
        .await
        .unwrap();
    assert_eq!(
        (r["sessions"].clone(), r["orphans"].clone()),
        (json!([]), json!([]))
    );
}

/// With nothing of the installation in EC2, the sweep does not list the state bucket (an S3
/// LIST is billed like a PUT; EC2's Describe calls are free): a dead session's state without
/// resources stays for the bucket's lifecycle rule. Once EC2 shows a resource again, the next
/// sweep lists and removes that state too.
#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_with_nothing_in_ec2_lists_no_state() {
    let (cloud, h, lambda, ec2, s3) = setup(&[]).await;

    // A build that died before its first resource, long ago: a state, nothing in EC2.
    let dead = "fs-20200101-000000-0dead0ff";
    let st = json!({"version": 1, "session": dead, "installation": INSTALLATION, "site": "home",
        "created": "2020-01-01T00:00:00Z", "expires": "2020-01-01T00:30:00Z", "phase": "intent",
        "security_group_id": null, "instance_id": null, "host": null, "host_key": null});
    s3.put_object()
        .bucket(STATE_BUCKET)
        .key(format!("sessions/{dead}.json"))
        .body(st.to_string().into_bytes().into())
        .send()
        .await
        .unwrap();
    let r = invoke(&lambda, "ferry-clean", json!({"sweep": true}))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", h.log("ferry-clean")));
    assert_eq!(r["states_listed"], json!(false), "{r}");
    assert_eq!(r["sessions"], json!([]), "{r}");
    let (instances, groups, states) = leftovers(&ec2, &s3).await;
    assert_eq!(
        (instances.len(), groups.len(), states),
        (0, 0, vec![format!("sessions/{dead}.json")])
    );

    // A live session: EC2 shows its instance and group, so the sweep lists, keeps it and
    // removes the dead state.
    let live = invoke(
        &lambda,
        "ferry-build",
        json!({"site": "home", "public_key": CLIENT_PUB}),
    )
    .await
    .unwrap();
    let live = live["session"].as_str().unwrap().to_string();
    cloud.settle().await;
    let r = invoke(&lambda, "ferry-clean", json!({"sweep": true}))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", h.log("ferry-clean")));
    assert_eq!(r["states_listed"], json!(true), "{r}");
    assert_eq!(r["kept"], json!([live]), "{r}");
    assert_eq!(
        swept(&r),
        vec![(json!(dead), json!([format!("state sessions/{dead}.json")]))],
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lambda_host_answers_like_the_invoke_api_for_unknown_functions_and_events() {
    let cloud = Cloud::start(b"gate-artifact");
    let h = host(&cloud, &[]);
    let lambda = cloud.lambda(&h.endpoint()).await;
    let e = lambda
        .invoke()
        .function_name("ferry-nothing")
        .send()
        .await
        .expect_err("unknown function");
    assert!(
        e.as_service_error()
            .is_some_and(|s| s.is_resource_not_found_exception()),
        "{e:?}"
    );
    // An asynchronous (Event) invocation is accepted with 202 and runs later: a sweep here.
    let out = lambda
        .invoke()
        .function_name("ferry-clean")
        .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
        .payload(aws_sdk_lambda::primitives::Blob::new(
            json!({"sweep": true}).to_string(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status_code(), 202);
    ferry_testkit::wait_until("the event ran", std::time::Duration::from_secs(30), || {
        h.log("ferry-clean").contains("sweep done")
    })
    .unwrap();
}
