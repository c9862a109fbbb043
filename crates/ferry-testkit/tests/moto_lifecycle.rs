//! The kit's S3 lifecycle (`py/moto/lifecycle.py`) expires what S3 would, when S3 would at the
//! earliest: Days counted from the object's creation and rounded up to the next midnight UTC,
//! Date at its midnight; rules matched by prefix, by tag, and by And of both; disabled rules
//! and objects no rule matches are kept. Through boto3 against the patched moto, with the
//! lifecycle clock moved forward between the steps.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

use ferry_testkit::Moto;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const BUCKET: &str = "ferry-lifecycle";

/// `setup`: the bucket, its rules and objects, answering each object's LastModified (Unix
/// seconds). `list`: the keys left.
const PROBE: &str = r#"
import boto3, json, sys
s3 = boto3.client('s3')
B = 'ferry-lifecycle'
if sys.argv[1] == 'setup':
    s3.create_bucket(Bucket=B)
    s3.put_bucket_lifecycle_configuration(Bucket=B, LifecycleConfiguration={'Rules': [
        {'ID': 'sessions', 'Status': 'Enabled', 'Filter': {'Prefix': 'sessions/'}, 'Expiration': {'Days': 2}},
        {'ID': 'days', 'Status': 'Enabled', 'Filter': {'Prefix': 'days/'}, 'Expiration': {'Days': 35}},
        {'ID': 'tag', 'Status': 'Enabled', 'Filter': {'Tag': {'Key': 'k', 'Value': 'v'}}, 'Expiration': {'Days': 1}},
        {'ID': 'and', 'Status': 'Enabled', 'Filter': {'And': {'Prefix': 'tmp/', 'Tags': [{'Key': 't', 'Value': '1'}]}}, 'Expiration': {'Days': 1}},
        {'ID': 'off', 'Status': 'Disabled', 'Filter': {'Prefix': 'off/'}, 'Expiration': {'Days': 1}},
        {'ID': 'date', 'Status': 'Enabled', 'Filter': {'Prefix': 'dated/'}, 'Expiration': {'Date': sys.argv[2]}},
    ]})
    out = {}
    for key, tags in [('sessions/a', ''), ('days/2026-12-03/b', ''), ('artifacts/c', ''),
                      ('tagged/t', 'k=v'), ('tagged/other', 'k=w'), ('tmp/u', 't=1'),
                      ('tmp/w', ''), ('off/o', ''), ('dated/d', '')]:
        s3.put_object(Bucket=B, Key=key, Body=b'x', **({'Tagging': tags} if tags else {}))
        out[key] = s3.head_object(Bucket=B, Key=key)['LastModified'].timestamp()
    print(json.dumps(out))
else:
    keys = [o['Key'] for o in s3.list_objects_v2(Bucket=B).get('Contents', [])]
    print(json.dumps(sorted(keys)))
"#;

const DAY: u64 = 86_400;

/// Midnight UTC on or after `t` (Unix seconds).
fn midnight_on_or_after(t: f64) -> u64 {
    let s = t.ceil() as u64;
    s.div_ceil(DAY) * DAY
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// `keys` less `gone`.
fn without<'a>(keys: &[&'a str], gone: &[&str]) -> Vec<&'a str> {
    keys.iter().copied().filter(|k| !gone.contains(k)).collect()
}

fn left(moto: &Moto, clock: SystemTime) -> Vec<String> {
    moto.set_lifecycle_clock(clock).unwrap();
    // The listing is the request at which the pass runs, before it is answered.
    let out = moto.python(PROBE, &["list"], &[]).unwrap();
    serde_json::from_str(out.trim()).unwrap()
}

#[test]
fn lifecycle_expires_what_s3_would_when_it_would() {
    let moto = Moto::start().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // A Date rule: the midnight 4 days from today, after the 2-day rule's objects are due.
    let date_at = (now / DAY + 4) * DAY;
    let date = {
        let out = moto
            .python(
                "import datetime, sys; print(datetime.datetime.fromtimestamp(int(sys.argv[1]), datetime.timezone.utc).strftime('%Y-%m-%dT00:00:00Z'))",
                &[date_at.to_string().as_str()],
                &[],
            )
            .unwrap();
        out.trim().to_string()
    };
    let out = moto.python(PROBE, &["setup", &date], &[]).unwrap();
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    let made = |k: &str| created[k].as_f64().unwrap();
    let all = [
        "artifacts/c",
        "dated/d",
        "days/2026-12-03/b",
        "off/o",
        "sessions/a",
        "tagged/other",
        "tagged/t",
        "tmp/u",
        "tmp/w",
    ];
    assert_eq!(left(&moto, SystemTime::now()), all, "nothing is due yet");

    // Days = 1: due at the midnight after creation + 24 h, not a second before.
    let one_day = midnight_on_or_after(made("tagged/t") + DAY as f64);
    assert!(one_day as f64 >= made("tagged/t") + DAY as f64);
    assert_eq!(left(&moto, at(one_day - 1)), all, "a second early");
    let after_one = without(&all, &["tagged/t", "tmp/u"]);
    assert_eq!(
        left(&moto, at(one_day)),
        after_one,
        "tag and And(prefix, tag) rules"
    );

    // Days = 2 for sessions/: at least 48 h after the write, whatever its time of day.
    let two_days = midnight_on_or_after(made("sessions/a") + 2.0 * DAY as f64);
    assert!(two_days as f64 - made("sessions/a") >= 2.0 * DAY as f64);
    assert_eq!(left(&moto, at(two_days - 1)), after_one);
    let after_two = without(&after_one, &["sessions/a"]);
    assert_eq!(left(&moto, at(two_days)), after_two);

    // The Date rule at its midnight.
    assert!(date_at > two_days);
    assert_eq!(left(&moto, at(date_at - 1)), after_two);
    let after_date = without(&after_two, &["dated/d"]);
    assert_eq!(left(&moto, at(date_at)), after_date);

    // Days = 35 for days/; what no enabled rule matches stays for good.
    let days35 = midnight_on_or_after(made("days/2026-12-03/b") + 35.0 * DAY as f64);
    assert_eq!(left(&moto, at(days35 - 1)), after_date);
    assert_eq!(
        left(&moto, at(days35 + 400 * DAY)),
        ["artifacts/c", "off/o", "tagged/other", "tmp/w"]
    );

    // Every removal was logged once, with the rule that made it.
    let mut expired = moto.lifecycle_expired();
    expired.sort();
    assert_eq!(
        expired,
        [
            "dated/d",
            "days/2026-12-03/b",
            "sessions/a",
            "tagged/t",
            "tmp/u"
        ]
        .map(|k| format!("s3://{BUCKET}/{k}")),
        "{}",
        moto.log()
    );
}
