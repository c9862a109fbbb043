//! The kit's S3 faults (`py/moto/unkind_s3_faults.py`) do what they say, through boto3 with
//! retries off against the patched moto: off by default; a rule set while moto runs answers
//! 503 SlowDown / 500 InternalError with S3's XML error body to the first N matching requests
//! (per key) and stores nothing; other keys and methods are untouched; delays hold the answer
//! (before or after the request is handled); an empty rule set turns faults off again.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

use ferry_testkit::{Moto, S3Fault, S3FaultAnswer};
use serde_json::Value;
use std::time::Duration;

/// One step of observations as JSON: `put KEY` / `get KEY` answers (code or "ok") and times.
const PROBE: &str = r#"
import boto3, botocore, json, sys, time
s3 = boto3.client('s3', config=botocore.config.Config(retries={'total_max_attempts': 1, 'mode': 'standard'}))
if sys.argv[1] == 'setup':
    s3.create_bucket(Bucket='ferry-faults')
    print('{}')
    sys.exit(0)
out = {}
def call(f):
    t = time.monotonic()
    try:
        f()
        r = 'ok'
    except botocore.exceptions.ClientError as e:
        r = '%s %s: %s' % (e.response['ResponseMetadata']['HTTPStatusCode'], e.response['Error']['Code'], e.response['Error']['Message'])
    return [r, round(time.monotonic() - t, 2)]
for i, op in enumerate(sys.argv[1:]):
    verb, key = op.split(' ')
    if verb == 'put':
        out['%d %s' % (i, op)] = call(lambda: s3.put_object(Bucket='ferry-faults', Key=key, Body=b'x', IfNoneMatch='*'))
    else:
        out['%d %s' % (i, op)] = call(lambda: s3.get_object(Bucket='ferry-faults', Key=key))
print(json.dumps(out))
"#;

fn probe(moto: &Moto, ops: &[&str]) -> Vec<(String, f64)> {
    let out = moto.python(PROBE, ops, &[]).unwrap();
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    (0..ops.len())
        .map(|i| {
            let r = &v[format!("{i} {}", ops[i])];
            (r[0].as_str().unwrap().to_string(), r[1].as_f64().unwrap())
        })
        .collect()
}

fn answers(r: &[(String, f64)]) -> Vec<&str> {
    r.iter().map(|(a, _)| a.as_str()).collect()
}

#[test]
fn s3_faults_are_off_by_default_and_follow_the_rule_file() {
    let moto = Moto::start().unwrap();
    moto.python(PROBE, &["setup"], &[]).unwrap();
    assert_eq!(answers(&probe(&moto, &["put s/packs/a"])), ["ok"]);
    assert!(moto.s3_faults_injected().is_empty());

    moto.set_s3_faults(&[
        S3Fault {
            first: Some(2),
            per_key: true,
            ..S3Fault::new("PUT", "^s/packs/", S3FaultAnswer::SlowDown)
        },
        S3Fault {
            first: Some(1),
            ..S3Fault::new("PUT", "^s/index/", S3FaultAnswer::InternalError)
        },
    ])
    .unwrap();
    let slow = "503 SlowDown: Please reduce your request rate.";
    let internal = "500 InternalError: We encountered an internal error. Please try again.";
    assert_eq!(
        answers(&probe(
            &moto,
            &[
                "put s/packs/b",
                "get s/packs/a",
                "put s/packs/b",
                "put s/packs/c",
                "put s/packs/b",
                "put s/index/i",
                "put s/index/i",
                "put s/snapshots/x",
            ]
        )),
        [slow, "ok", slow, slow, "ok", internal, "ok", "ok"]
    );
    // The 503 stored nothing; the write that got through did, once (412 after).
    assert_eq!(
        answers(&probe(
            &moto,
            &["get s/packs/b", "put s/packs/b", "get s/packs/c"]
        )),
        [
            "ok",
            "412 PreconditionFailed: At least one of the pre-conditions you specified did not hold",
            "404 NoSuchKey: The specified key does not exist."
        ]
    );
    assert_eq!(moto.s3_faults_injected().len(), 4, "{}", moto.log());

    // Delays: before the request is handled, and after it (the object is stored, the answer late).
    moto.set_s3_faults(&[
        S3Fault {
            delay: Duration::from_millis(1500),
            ..S3Fault::new("GET", "^s/packs/a$", S3FaultAnswer::Normal)
        },
        S3Fault {
            delay: Duration::from_millis(1500),
            delay_after: true,
            ..S3Fault::new("PUT", "^s/late/", S3FaultAnswer::Normal)
        },
    ])
    .unwrap();
    let r = probe(&moto, &["get s/packs/a", "put s/late/x", "get s/late/x"]);
    assert_eq!(answers(&r), ["ok", "ok", "ok"]);
    assert!(r[0].1 >= 1.4 && r[1].1 >= 1.4, "{r:?}");
    assert!(r[2].1 < 1.0, "{r:?}");

    // An empty rule set: off again.
    moto.set_s3_faults(&[]).unwrap();
    let r = probe(&moto, &["put s/packs/d", "get s/packs/a"]);
    assert_eq!(answers(&r), ["ok", "ok"]);
    assert!(r.iter().all(|(_, t)| *t < 1.0), "{r:?}");
}
