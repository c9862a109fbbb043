//! ferry-build's per-day limits (sessions per UTC day, bytes per UTC day per site), through the
//! real `bootstrap` under the test kit's Lambda host, provisioning in moto.
//!
//! The handler reads the clock itself (no test seam), so earlier sessions of today and of
//! yesterday are seeded as day records in the state bucket, in the layout ferry-build writes
//! (`ferry_contract::keys::day_record`).

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use ferry_contract::keys;
use ferry_testkit::lambda_host::LambdaHost;
use serde_json::json;

const MIB: u64 = 1 << 20;

/// Sessions of 4 MiB at most, 6 MiB per site and day, 3 sessions a day, 5 at a time (so the
/// concurrency limit never speaks first).
const LIMITS: &[(&str, &str)] = &[
    ("FERRY_MAX_SESSIONS", "5"),
    ("FERRY_SESSIONS_PER_DAY", "3"),
    ("FERRY_GATE_MAX_SESSION_BYTES", "4194304"),
    ("FERRY_SITE_BYTES_PER_DAY", "6291456"),
];

fn host(cloud: &Cloud) -> LambdaHost {
    LambdaHost::start(vec![
        cloud.spec("ferry-build", cloud.function_env("build", None, LIMITS)),
        cloud.spec("ferry-clean", cloud.function_env("clean", None, LIMITS)),
    ])
    .expect("lambda host")
}

/// The UTC date `days` from now, `YYYY-MM-DD`.
fn date(days: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// A test that seeds today's records must not straddle midnight: wait (at most 3 minutes)
/// until there are at least 3 minutes of the day left.
async fn not_near_midnight() {
    let now = time::OffsetDateTime::now_utc();
    let left = 86_400
        - i64::from(now.hour()) * 3600
        - i64::from(now.minute()) * 60
        - i64::from(now.second());
    if left < 180 {
        tokio::time::sleep(Duration::from_secs(left as u64 + 2)).await;
    }
}

async fn build(lambda: &aws_sdk_lambda::Client, site: &str) -> Result<String, FnError> {
    invoke(
        lambda,
        "ferry-build",
        json!({"site": site, "public_key": CLIENT_PUB}),
    )
    .await
    .map(|v| v["session"].as_str().unwrap().to_string())
}

/// The `max_session_bytes` the session's gate was configured with (its box's user data).
async fn gate_budget(ec2: &aws_sdk_ec2::Client, s3: &aws_sdk_s3::Client, session: &str) -> u64 {
    let st = s3
        .get_object()
        .bucket(STATE_BUCKET)
        .key(keys::session_state(session))
        .send()
        .await
        .unwrap();
    let st: serde_json::Value =
        serde_json::from_slice(&st.body.collect().await.unwrap().into_bytes()).unwrap();
    let instance = st["instance_id"].as_str().unwrap();
    let a = ec2
        .describe_instance_attribute()
        .instance_id(instance)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    let ud = base64::engine::general_purpose::STANDARD
        .decode(a.user_data().and_then(|u| u.value()).unwrap())
        .unwrap();
    let ud = String::from_utf8(ud).unwrap();
    ud.lines()
        .find_map(|l| l.trim().strip_prefix("max_session_bytes = "))
        .unwrap_or_else(|| panic!("no max_session_bytes in the user data:\n{ud}"))
        .parse()
        .unwrap()
}

async fn seed(s3: &aws_sdk_s3::Client, key: &str) {
    s3.put_object()
        .bucket(STATE_BUCKET)
        .key(key)
        .body(b"{}".to_vec().into())
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_per_day_and_each_sites_bytes_are_bounded_and_refusals_are_clear() {
    not_near_midnight().await;
    let cloud = Cloud::start(b"gate-artifact");
    let h = host(&cloud);
    let lambda = cloud.lambda(&h.endpoint()).await;
    let admin = Cloud::default_creds();
    let (ec2, s3) = (cloud.ec2(&admin).await, cloud.s3(&admin).await);
    let today = date(0);

    // The first session of "home" gets the whole session limit, the second what is left of
    // the site's 6 MiB.
    let first = build(&lambda, "home")
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", h.log("ferry-build")));
    assert_eq!(gate_budget(&ec2, &s3, &first).await, 4 * MIB);
    let second = build(&lambda, "home").await.unwrap();
    assert_eq!(gate_budget(&ec2, &s3, &second).await, 2 * MIB);

    // The third is refused: the site's bytes are granted (granted, not used: no gate ever
    // reported anything here). Nothing of it is left behind.
    let (kind, msg) = build(&lambda, "home").await.unwrap_err();
    assert_eq!(kind, "Ferry.DailyLimit", "{msg}");
    assert!(
        msg.starts_with(
            "daily limit reached: site \"home\" has less than 1 MiB left of its 6 MiB for "
        ) && msg.contains(&today)
            && msg.contains("(2 session(s) today)")
            && msg.contains("after 00:00 UTC"),
        "{msg}"
    );
    cloud.settle().await;
    let (instances, _, states) = leftovers(&ec2, &s3).await;
    assert_eq!((instances.len(), states.len()), (2, 2), "{states:?}");

    // Another site has its own bytes, but the day's sessions are shared: the third session of
    // the day passes, the fourth is refused naming the three.
    let office = build(&lambda, "office").await.unwrap();
    assert_eq!(gate_budget(&ec2, &s3, &office).await, 4 * MIB);
    let (kind, msg) = build(&lambda, "cellar").await.unwrap_err();
    assert_eq!(kind, "Ferry.DailyLimit", "{msg}");
    assert!(
        msg.contains("3 session(s) per UTC day allowed and 3 already started on")
            && [&first, &second, &office].iter().all(|s| msg.contains(*s)),
        "{msg}"
    );

    // The day's records: the three sessions that passed, with their claims; the refused ones
    // removed theirs. They outlive the sessions: ending them frees no place in the day.
    let want: Vec<String> = {
        let mut w = vec![
            keys::day_record(&today, "home", &first, 4 * MIB),
            keys::day_record(&today, "home", &second, 4 * MIB),
            keys::day_record(&today, "office", &office, 4 * MIB),
        ];
        w.sort();
        w
    };
    assert_eq!(day_records(&s3).await, want);
    for s in [&first, &second, &office] {
        invoke(&lambda, "ferry-clean", json!({"session": s}))
            .await
            .unwrap();
    }
    let (kind, _) = build(&lambda, "office").await.unwrap_err();
    assert_eq!(kind, "Ferry.DailyLimit");
    assert_eq!(day_records(&s3).await, want);
    cloud.settle().await;
    assert_eq!(leftovers(&ec2, &s3).await, (vec![], vec![], vec![]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_utc_day_starts_with_fresh_limits_and_seeded_records_of_today_count() {
    not_near_midnight().await;
    let cloud = Cloud::start(b"gate-artifact");
    let h = host(&cloud);
    let lambda = cloud.lambda(&h.endpoint()).await;
    let admin = Cloud::default_creds();
    let (ec2, s3) = (cloud.ec2(&admin).await, cloud.s3(&admin).await);
    let (yesterday, today) = (date(-1), date(0));

    // Yesterday used up everything: three sessions, all of "home"'s bytes.
    for i in 0..3 {
        seed(
            &s3,
            &keys::day_record(&yesterday, "home", &format!("fs-old-{i}"), 4 * MIB),
        )
        .await;
    }
    // Today, an earlier session of "home" claimed 5 MiB.
    seed(
        &s3,
        &keys::day_record(&today, "home", "fs-earlier", 5 * MIB),
    )
    .await;

    let s = build(&lambda, "home")
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", h.log("ferry-build")));
    assert_eq!(
        gate_budget(&ec2, &s3, &s).await,
        MIB,
        "6 MiB a day less the 5 MiB claimed earlier today"
    );
    // The site's 6 MiB are granted now (5 earlier, 1 to this session).
    let (kind, msg) = build(&lambda, "home").await.unwrap_err();
    assert_eq!(kind, "Ferry.DailyLimit", "{msg}");
    assert!(
        msg.contains("has less than 1 MiB left of its 6 MiB"),
        "{msg}"
    );
    // The client sees the refusal as the function's error (ferry-run's `Lambda::build` shows
    // errorType and errorMessage); the log has it too.
    assert!(h.log("ferry-build").contains("daily limit reached"));

    invoke(&lambda, "ferry-clean", json!({"session": s}))
        .await
        .unwrap();
    cloud.settle().await;
    assert_eq!(leftovers(&ec2, &s3).await, (vec![], vec![], vec![]));
}
