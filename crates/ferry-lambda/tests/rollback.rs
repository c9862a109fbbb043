//! A failure injected at each provisioning step of ferry-build leaves nothing behind.
//!
//! Failures are injected from outside the product, never by a switch in it: either the
//! function's configuration names something that does not exist in moto (subnet, AMI, instance
//! profile), or the function runs with the keys of an IAM user whose policy denies exactly the
//! API action of one step, with moto's IAM checks on. The product code is the same in every case.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;

use common::*;
use ferry_testkit::lambda_host::LambdaHost;
use serde_json::{Value, json};

/// (function, injected by, step it covers, text the error must contain, config overrides)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const CASES: &[Case] = &[
    (
        "state",
        "s3:PutObject",
        "intent state object",
        "writing state s3://ferry-state/sessions/",
        &[],
    ),
    (
        "limit",
        "s3:ListBucket",
        "the limits' LIST (after the intent and the day record)",
        "listing s3://ferry-state/ after days/",
        &[],
    ),
    (
        "subnet",
        "",
        "subnet lookup",
        "looking up subnet subnet-0000dead",
        &[("FERRY_SUBNET_ID", "subnet-0000dead")],
    ),
    (
        "sg",
        "ec2:CreateSecurityGroup",
        "security group creation",
        "creating the security group",
        &[],
    ),
    (
        "ingress",
        "ec2:AuthorizeSecurityGroupIngress",
        "SSH ingress rule",
        "allowing SSH into sg-",
        &[],
    ),
    (
        "revoke",
        "ec2:RevokeSecurityGroupEgress",
        "default egress removal",
        "removing the default egress rule",
        &[],
    ),
    (
        "egress",
        "ec2:AuthorizeSecurityGroupEgress",
        "HTTPS egress rule",
        "allowing HTTPS out of sg-",
        &[],
    ),
    // (A missing pinned AMI cannot be injected: moto launches unknown AMIs unless
    // MOTO_ENABLE_AMI_VALIDATION is set on the server.)
    (
        "ami",
        "ec2:DescribeImages",
        "AMI lookup",
        "looking up the Amazon Linux 2023 AMI",
        &[],
    ),
    (
        "profile",
        "",
        "RunInstances: instance profile",
        "profile no-such-profile",
        // EC2 answers a missing profile as it answers one IAM has just created, so ferry-build
        // retries it for FERRY_PROPAGATION_SECONDS: shortened here, this case is about the
        // rollback (tests/eventual_consistency.rs is about the wait).
        &[
            ("FERRY_INSTANCE_PROFILE", "no-such-profile"),
            ("FERRY_PROPAGATION_SECONDS", "8"),
        ],
    ),
    (
        "run",
        "ec2:RunInstances",
        "RunInstances: denied",
        "launching the jump box",
        &[],
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_at_each_provisioning_step_leaves_nothing_behind() {
    let cloud = Cloud::start(b"gate-artifact");
    let mut args: Vec<String> = vec!["admin=".into(), "nodescribe=ec2:DescribeInstances".into()];
    args.extend(CASES.iter().map(|(n, deny, ..)| format!("{n}={deny}")));
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let users: Value =
        serde_json::from_str(cloud.moto.python(USERS, &arg_refs, &[]).unwrap().trim()).unwrap();
    cloud.moto.enable_iam_checks().unwrap();
    let admin = creds(&users, "admin");

    let mut specs = vec![
        cloud.spec(
            "ferry-clean",
            cloud.function_env("clean", Some(&admin), &[]),
        ),
        cloud.spec(
            "nodescribe-build",
            cloud.function_env("build", Some(&creds(&users, "nodescribe")), &[]),
        ),
    ];
    for (name, _, _, _, overrides) in CASES {
        specs.push(cloud.spec(
            &format!("{name}-build"),
            cloud.function_env("build", Some(&creds(&users, name)), overrides),
        ));
    }
    let h = LambdaHost::start(specs).unwrap();
    let lambda = cloud.lambda(&h.endpoint()).await;
    let (ec2, s3) = (cloud.ec2(&admin).await, cloud.s3(&admin).await);
    assert_eq!(leftovers(&ec2, &s3).await, (vec![], vec![], vec![]));

    for (name, by, step, needle, _) in CASES {
        let f = format!("{name}-build");
        let (kind, msg) = invoke(
            &lambda,
            &f,
            json!({"site": "home", "public_key": CLIENT_PUB}),
        )
        .await
        .expect_err(&format!("{step}: the build should fail"));
        assert_eq!(kind, "Ferry.Provisioning", "{step}: {msg}");
        assert!(
            msg.contains(needle),
            "{step} ({by}): {msg:?} lacks {needle:?}\n{}",
            h.log(&f)
        );
        assert!(!msg.contains("rollback incomplete"), "{step}: {msg}");
        // What EC2 does not show yet (the kit's eventual consistency) would hide a leftover.
        cloud.settle().await;
        assert_eq!(
            leftovers(&ec2, &s3).await,
            (vec![], vec![], vec![]),
            "{step} ({by}) left something behind: {msg}"
        );
        // A complete rollback also removes the day record (written before the limits' LIST).
        assert_eq!(
            day_records(&s3).await,
            Vec::<String>::new(),
            "{step} ({by}) left its day record: {msg}"
        );
    }

    // A failure that also defeats the rollback (it cannot see the instances): the rollback still
    // terminates the recorded instance (whatever a Describe says), the state object stays as
    // the record of what may exist, and ferry-clean removes the rest.
    let (kind, msg) = invoke(
        &lambda,
        "nodescribe-build",
        json!({"site": "home", "public_key": CLIENT_PUB}),
    )
    .await
    .unwrap_err();
    assert_eq!(kind, "Ferry.Provisioning");
    assert!(
        msg.contains("waiting for i-") && msg.contains("rollback incomplete"),
        "{msg}"
    );
    cloud.settle().await;
    let (instances, groups, states) = leftovers(&ec2, &s3).await;
    assert_eq!(
        (instances.len(), groups.len(), states.len()),
        (0, 1, 1),
        "{msg}"
    );
    let session = states[0]
        .trim_start_matches("sessions/")
        .trim_end_matches(".json")
        .to_string();
    assert!(msg.contains(&session), "{msg}");
    let r = invoke(&lambda, "ferry-clean", json!({"session": session}))
        .await
        .unwrap();
    assert_eq!(r["removed"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(leftovers(&ec2, &s3).await, (vec![], vec![], vec![]));
}
