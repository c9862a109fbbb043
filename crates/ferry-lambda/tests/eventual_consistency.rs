//! ferry-build, ferry-clean and the sweep against EC2's and IAM's eventual consistency, as the
//! test kit's moto reproduces it (`py/moto/unkind_ec2.py`: a new instance or security group is
//! NotFound for `FERRY_UNKIND_EC2_NOTFOUND_SECONDS`, a new instance profile is refused by
//! RunInstances for `FERRY_UNKIND_IAM_PROFILE_SECONDS`). The windows here are longer than the
//! kit's defaults, so that every first call after a create surely falls inside them.
//!
//! AWS: https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html and
//! https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;

use common::*;
use ferry_testkit::lambda_host::LambdaHost;
use serde_json::{Value, json};

/// A session made by hand a moment ago, as ferry-build would leave it (tagged instance and
/// group, state object recording both, `created` now): argv subnet, vpc, ami, expires-in
/// minutes (0: already expired). Prints {"session", "instance", "group"}.
const YOUNG_SESSION: &str = r#"
import boto3, datetime, json, secrets, sys
subnet, vpc, ami, minutes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ec2 = boto3.client('ec2'); s3 = boto3.client('s3')
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
session = 'fs-%s-%s' % (now.strftime('%Y%m%d-%H%M%S'), secrets.token_hex(4))
def spec(kind):
    return [{'ResourceType': kind, 'Tags': [{'Key': 'ferry:installation', 'Value': 'ferry'},
                                            {'Key': 'ferry:session', 'Value': session}]}]
group = ec2.create_security_group(GroupName='ferry-' + session, Description='x', VpcId=vpc,
                                  TagSpecifications=spec('security-group'))['GroupId']
import botocore.exceptions, time
for attempt in range(60):  # a new group is NotFound to RunInstances for a while, as on AWS
    try:
        instance = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, SubnetId=subnet,
                                     SecurityGroupIds=[group],
                                     TagSpecifications=spec('instance'))['Instances'][0]['InstanceId']
        break
    except botocore.exceptions.ClientError as e:
        if e.response['Error']['Code'] != 'InvalidGroup.NotFound' or attempt == 59:
            raise
        time.sleep(0.25)
stamp = lambda t: t.strftime('%Y-%m-%dT%H:%M:%SZ')
st = {'version': 1, 'session': session, 'installation': 'ferry', 'site': 'home', 'created': stamp(now),
      'expires': stamp(now + datetime.timedelta(minutes=minutes)), 'phase': 'instance',
      'security_group_id': group, 'instance_id': instance, 'host': None, 'host_key': None}
s3.put_object(Bucket='ferry-state', Key='sessions/%s.json' % session, Body=json.dumps(st).encode())
print(json.dumps({'session': session, 'instance': instance, 'group': group}))
"#;

fn young_session(cloud: &Cloud, expires_in_minutes: &str) -> Value {
    let out = cloud
        .moto
        .python(
            YOUNG_SESSION,
            &[&cloud.subnet, &cloud.vpc, &cloud.ami, expires_in_minutes],
            &[],
        )
        .expect("a young session");
    serde_json::from_str(out.trim()).unwrap()
}

fn nothing() -> (Vec<String>, Vec<String>, Vec<String>) {
    (vec![], vec![], vec![])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_instance_profile_is_refused_at_first_and_ferry_build_waits_for_it() {
    // The profile is created by the setup just before the functions start. It stays refused
    // for 40 s: the setup and the Lambda host's start took more than 10 s when the test
    // binaries run three at a time on two cores, and the impatient build then saw the profile.
    let cloud = Cloud::start_with(
        b"gate-artifact",
        &[
            ("FERRY_UNKIND_EC2_NOTFOUND_SECONDS", "0"),
            ("FERRY_UNKIND_IAM_PROFILE_SECONDS", "40"),
        ],
    );
    let h = LambdaHost::start(vec![
        cloud.spec(
            "impatient-build",
            cloud.function_env("build", None, &[("FERRY_PROPAGATION_SECONDS", "0")]),
        ),
        cloud.spec("ferry-build", cloud.function_env("build", None, &[])),
        cloud.spec("ferry-clean", cloud.function_env("clean", None, &[])),
    ])
    .unwrap();
    let lambda = cloud.lambda(&h.endpoint()).await;
    let admin = Cloud::default_creds();
    let (ec2, s3) = (cloud.ec2(&admin).await, cloud.s3(&admin).await);
    let req = json!({"site": "home", "public_key": CLIENT_PUB});

    // Without a propagation allowance the refusal is final: the injection is real.
    let (kind, msg) = invoke(&lambda, "impatient-build", req.clone())
        .await
        .expect_err("the profile is refused");
    assert_eq!(kind, "Ferry.Provisioning", "{msg}");
    assert!(
        msg.contains("launching the jump box")
            && msg.contains(
                "InvalidParameterValue: Value (ferry-jumpbox) for parameter iamInstanceProfile.name is invalid"
            )
            && !msg.contains("rollback incomplete"),
        "{msg}"
    );
    assert_eq!(leftovers(&ec2, &s3).await, nothing());

    // With the default allowance ferry-build retries until IAM's change has propagated.
    let r = invoke(&lambda, "ferry-build", req)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", h.log("ferry-build")));
    let log = h.log("ferry-build");
    assert!(
        log.contains("not yet propagated") && log.contains("InvalidParameterValue"),
        "{log}"
    );
    let session = r["session"].as_str().unwrap();
    invoke(&lambda, "ferry-clean", json!({"session": session}))
        .await
        .unwrap();
    assert_eq!(leftovers(&ec2, &s3).await, nothing());
}

#[tokio::test(flavor = "multi_thread")]
async fn ferry_build_and_clean_succeed_while_ec2_lags_behind() {
    let cloud = Cloud::start_with(
        b"gate-artifact",
        &[
            ("FERRY_UNKIND_EC2_NOTFOUND_SECONDS", "6"),
            ("FERRY_UNKIND_IAM_PROFILE_SECONDS", "0"),
        ],
    );
    let h = LambdaHost::start(vec![
        cloud.spec("ferry-build", cloud.function_env("build", None, &[])),
        cloud.spec("ferry-clean", cloud.function_env("clean", None, &[])),
    ])
    .unwrap();
    let lambda = cloud.lambda(&h.endpoint()).await;
    let admin = Cloud::default_creds();
    let (ec2, s3) = (cloud.ec2(&admin).await, cloud.s3(&admin).await);

    let r = invoke(
        &lambda,
        "ferry-build",
        json!({"site": "home", "public_key": CLIENT_PUB}),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:?}\n{}", h.log("ferry-build")));
    let log = h.log("ferry-build");
    for code in ["InvalidGroup.NotFound", "InvalidInstanceID.NotFound"] {
        assert!(log.contains(code), "no retry of {code}:\n{log}");
    }
    assert!(r["host"].as_str().is_some_and(|h| !h.is_empty()), "{r}");

    let session = r["session"].as_str().unwrap();
    let c = invoke(&lambda, "ferry-clean", json!({"session": session}))
        .await
        .unwrap();
    assert_eq!(c["removed"].as_array().unwrap().len(), 3, "{c}");
    cloud.settle().await;
    assert_eq!(leftovers(&ec2, &s3).await, nothing());
}

#[tokio::test(flavor = "multi_thread")]
async fn clean_and_sweep_remove_a_session_whose_instance_ec2_does_not_show_yet() {
    let cloud = Cloud::start_with(
        b"gate-artifact",
        &[("FERRY_UNKIND_EC2_NOTFOUND_SECONDS", "6")],
    );
    let h = LambdaHost::start(vec![
        cloud.spec("ferry-clean", cloud.function_env("clean", None, &[])),
    ])
    .unwrap();
    let lambda = cloud.lambda(&h.endpoint()).await;
    let admin = Cloud::default_creds();
    let (ec2, s3) = (cloud.ec2(&admin).await, cloud.s3(&admin).await);

    // ferry-clean of a session whose instance and group were created a moment ago.
    let a = young_session(&cloud, "30");
    let r = invoke(&lambda, "ferry-clean", json!({"session": a["session"]}))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", h.log("ferry-clean")));
    assert_eq!(
        r["removed"],
        json!([
            format!("instance {}", a["instance"].as_str().unwrap()),
            format!("security-group {}", a["group"].as_str().unwrap()),
            format!("state sessions/{}.json", a["session"].as_str().unwrap()),
        ]),
        "{r}\n{}",
        h.log("ferry-clean")
    );
    cloud.settle().await;
    assert_eq!(leftovers(&ec2, &s3).await, nothing());

    // The sweep, of an expired session whose instance and group are that young.
    let b = young_session(&cloud, "0");
    let r = invoke(&lambda, "ferry-clean", json!({"sweep": true}))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", h.log("ferry-clean")));
    assert_eq!(r["sessions"][0]["session"], b["session"], "{r}");
    assert_eq!(
        r["sessions"][0]["removed"].as_array().map(Vec::len),
        Some(3),
        "{r}"
    );
    cloud.settle().await;
    assert_eq!(leftovers(&ec2, &s3).await, nothing());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_build_that_fails_while_ec2_does_not_show_its_resources_yet_leaves_no_box_behind() {
    let cloud = Cloud::start_with(
        b"gate-artifact",
        &[
            ("FERRY_UNKIND_EC2_NOTFOUND_SECONDS", "6"),
            ("FERRY_UNKIND_IAM_PROFILE_SECONDS", "0"),
        ],
    );
    let users: Value = serde_json::from_str(
        cloud
            .moto
            .python(
                USERS,
                &[
                    "admin=",
                    "noingress=ec2:AuthorizeSecurityGroupIngress",
                    "nodescribe=ec2:DescribeInstances",
                ],
                &[],
            )
            .unwrap()
            .trim(),
    )
    .unwrap();
    cloud.moto.enable_iam_checks().unwrap();
    let admin = creds(&users, "admin");
    let h = LambdaHost::start(vec![
        cloud.spec(
            "noingress-build",
            cloud.function_env("build", Some(&creds(&users, "noingress")), &[]),
        ),
        cloud.spec(
            "nodescribe-build",
            cloud.function_env("build", Some(&creds(&users, "nodescribe")), &[]),
        ),
        cloud.spec(
            "ferry-clean",
            cloud.function_env("clean", Some(&admin), &[]),
        ),
    ])
    .unwrap();
    let lambda = cloud.lambda(&h.endpoint()).await;
    let (ec2, s3) = (cloud.ec2(&admin).await, cloud.s3(&admin).await);
    let req = json!({"site": "home", "public_key": CLIENT_PUB});

    // Fails right after CreateSecurityGroup: the rollback's DeleteSecurityGroup first answers
    // InvalidGroup.NotFound, which must not be taken as "already gone".
    let (_, msg) = invoke(&lambda, "noingress-build", req.clone())
        .await
        .expect_err("ingress is denied");
    assert!(
        msg.contains("allowing SSH into sg-") && !msg.contains("rollback incomplete"),
        "{msg}\n{}",
        h.log("noingress-build")
    );
    cloud.settle().await;
    assert_eq!(leftovers(&ec2, &s3).await, nothing(), "{msg}");

    // Fails right after RunInstances, and the rollback cannot describe instances at all: it
    // still terminates the recorded instance (retrying TerminateInstances' NotFound), then
    // keeps the state object because it cannot see the termination finish.
    let (_, msg) = invoke(&lambda, "nodescribe-build", req)
        .await
        .expect_err("describe is denied");
    assert!(
        msg.contains("waiting for i-") && msg.contains("rollback incomplete"),
        "{msg}"
    );
    cloud.settle().await;
    let (instances, groups, states) = leftovers(&ec2, &s3).await;
    assert_eq!(
        (instances.len(), groups.len(), states.len()),
        (0, 1, 1),
        "the box must be terminated: {msg}\n{}",
        h.log("nodescribe-build")
    );
    let session = states[0]
        .trim_start_matches("sessions/")
        .trim_end_matches(".json")
        .to_string();
    let r = invoke(&lambda, "ferry-clean", json!({"session": session}))
        .await
        .unwrap();
    assert_eq!(r["removed"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(leftovers(&ec2, &s3).await, nothing());
}
