//! S3 answering 500 InternalError / 503 SlowDown, and answering slowly, while the gate uploads
//! (docs/RELIABILITY.md). The whole cloud run of `ferry backup --config` (ferry-run's
//! `CloudRun`: collect into the spool, upload, the spool's ledger) talks to the real
//! `ferry-gate` binary behind a real sshd forced command — the key line ferry-build writes,
//! with the session key the run makes — which puts into the test kit's moto with the jump-box
//! role's credentials; faults come from the kit's `unkind_s3_faults.py`, switched while moto
//! runs. Only ferry-build and ferry-clean are stood in for (a Lambda round trip adds nothing
//! here): "building" writes the gate's config and the session key's line, "cleaning" notes
//! the session. Every snapshot in the bucket is then restored with the master key (the
//! operator's credentials) and compared byte for byte.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;

use common::{PACKS, noise, rig};
use ferry_testkit::{S3Fault, S3FaultAnswer};
use std::time::Duration;

fn first_per_key(key: &str, answer: S3FaultAnswer, n: u32) -> S3Fault {
    S3Fault {
        first: Some(n),
        per_key: true,
        ..S3Fault::new("PUT", key, answer)
    }
}

#[test]
fn transient_slowdown_and_internal_errors_are_retried_within_the_session() {
    let r = rig();
    // Each pack: two 503 SlowDown, then stored; each index and snapshot: one 500 InternalError.
    r.moto
        .set_s3_faults(&[
            first_per_key(PACKS, S3FaultAnswer::SlowDown, 2),
            first_per_key("^home/(index|snapshots)/", S3FaultAnswer::InternalError, 1),
        ])
        .unwrap();
    let expected = r.copy_src("expected");
    let (res, took) = r.run();
    let report = res.unwrap_or_else(|e| panic!("{}", ferry_run::error_chain(&e)));
    assert_eq!(report.snapshots.len(), 1);
    r.wait_audit("s-1");
    let puts = r.puts("s-1");
    let packs: Vec<_> = puts.iter().filter(|p| p.0 == "pack").collect();
    assert!(!packs.is_empty(), "{puts:?}");
    // The audit shows the retries: 3 requests for each pack, 2 for the index and snapshot.
    for (kind, outcome, attempts) in &puts {
        assert_eq!(outcome, "stored", "{puts:?}");
        let want = match kind.as_str() {
            "pack" => 3,
            "index" | "snapshot" => 2,
            _ => 1,
        };
        assert_eq!(*attempts, want, "{kind}: {puts:?}");
    }
    let injected = r.moto.s3_faults_injected();
    assert_eq!(
        injected
            .iter()
            .filter(|l| l.contains("503 SlowDown"))
            .count(),
        2 * packs.len(),
        "{injected:?}"
    );
    assert_eq!(
        injected
            .iter()
            .filter(|l| l.contains("500 InternalError"))
            .count(),
        2,
        "{injected:?}"
    );
    eprintln!(
        "transient faults: {} packs, run took {:.1} s",
        packs.len(),
        took.as_secs_f64()
    );
    r.restore_all(&[&expected]);
}

#[test]
fn a_pack_s3_keeps_refusing_fails_the_run_naming_it_and_the_next_run_completes() {
    let r = rig();
    r.moto
        .set_s3_faults(&[S3Fault::new("PUT", PACKS, S3FaultAnswer::SlowDown)])
        .unwrap();
    let expected = r.copy_src("expected");
    let (res, took) = r.run();
    let e = res.unwrap_err();
    let chain = ferry_run::error_chain(&e);
    eprintln!(
        "persistent SlowDown: failed after {:.1} s: {chain}",
        took.as_secs_f64()
    );
    // Bounded: 6 attempts and at most ~17 s of backoff per pack, well inside a session.
    assert!(took < Duration::from_secs(60), "{took:?}");
    for want in [
        "the spool keeps what was not uploaded",
        "the gate refused packs/",
        "SlowDown",
        "gave up after 6 attempts",
    ] {
        assert!(chain.contains(want), "{want:?} not in: {chain}");
    }
    // Nothing counted as stored, no index and no snapshot referring to the missing packs.
    assert!(r.keys("packs/").is_empty());
    assert!(r.keys("index/").is_empty());
    assert!(r.keys("snapshots/").is_empty());
    assert_eq!(*r.cloud.cleaned.lock().unwrap(), ["s-1"]);
    r.wait_audit("s-1");
    let puts = r.puts("s-1");
    assert!(
        puts.iter()
            .filter(|p| p.0 == "pack")
            .all(|p| p.1 == "refused" && p.2 == 6),
        "{puts:?}"
    );
    assert!(!puts.iter().any(|p| p.0 == "index" || p.0 == "snapshot"));
    let held = r.held();
    assert!(held.packs >= 1 && held.snapshots == 1, "{held:?}");
    let runs = ferry_run::spool::read_runs(&r.plan.spool, 10).unwrap();
    assert_eq!(runs.last().unwrap()["result"], "failed");

    // Faults off: the next run uploads the spooled snapshot and its own.
    r.moto.set_s3_faults(&[]).unwrap();
    let (res, _) = r.run();
    let report = res.unwrap_or_else(|e| panic!("{}", ferry_run::error_chain(&e)));
    assert_eq!(report.snapshots.len(), 2);
    assert!(r.held().is_empty());
    r.restore_all(&[&expected, &expected]);
}

#[test]
fn slow_answers_still_complete() {
    let r = rig();
    // Every put of the site answered 2 s late.
    r.moto
        .set_s3_faults(&[S3Fault {
            delay: Duration::from_secs(2),
            ..S3Fault::new("PUT", "^home/", S3FaultAnswer::Normal)
        }])
        .unwrap();
    let expected = r.copy_src("expected");
    let (res, took) = r.run();
    let report = res.unwrap_or_else(|e| panic!("{}", ferry_run::error_chain(&e)));
    assert_eq!(report.snapshots.len(), 1);
    r.wait_audit("s-1");
    let puts = r.puts("s-1");
    assert!(puts.iter().all(|p| p.1 == "stored" && p.2 == 1), "{puts:?}");
    assert!(
        took >= Duration::from_secs(2 * puts.len() as u64),
        "{took:?}"
    );
    eprintln!(
        "2 s answers: {} puts, run took {:.1} s",
        puts.len(),
        took.as_secs_f64()
    );
    r.restore_all(&[&expected]);
}

#[test]
fn a_stalled_s3_is_cut_by_the_attempt_timeout() {
    let r = rig();
    *r.cloud.attempt_timeout.lock().unwrap() = Some(2);

    // 1. The first request of each pack is stored but answered 4 s late: the attempt times
    // out at 2 s, the retry gets 412 (the object is there), and the pack counts as present.
    r.moto
        .set_s3_faults(&[S3Fault {
            delay: Duration::from_secs(4),
            delay_after: true,
            ..first_per_key(PACKS, S3FaultAnswer::Normal, 1)
        }])
        .unwrap();
    let first = r.copy_src("first");
    let (res, took) = r.run();
    let report = res.unwrap_or_else(|e| panic!("{}", ferry_run::error_chain(&e)));
    assert_eq!(report.snapshots.len(), 1);
    r.wait_audit("s-1");
    let puts = r.puts("s-1");
    let packs: Vec<_> = puts.iter().filter(|p| p.0 == "pack").collect();
    assert!(!packs.is_empty(), "{puts:?}");
    assert!(
        packs.iter().all(|p| p.1 == "already_present" && p.2 == 2),
        "{puts:?}"
    );
    eprintln!(
        "late answers past the 2 s attempt timeout: run took {:.1} s",
        took.as_secs_f64()
    );

    // 2. S3 holds every request of the next pack past the timeout: six attempts, then the
    // pack is refused and the run fails, within about 6 × 2 s plus the backoff.
    std::fs::write(r.src.join("new.bin"), noise(2, 300_000)).unwrap();
    let second = r.copy_src("second");
    r.moto
        .set_s3_faults(&[S3Fault {
            first: Some(6),
            delay: Duration::from_secs(4),
            ..S3Fault::new("PUT", PACKS, S3FaultAnswer::Normal)
        }])
        .unwrap();
    let (res, took) = r.run();
    let chain = ferry_run::error_chain(&res.unwrap_err());
    eprintln!(
        "stalled S3: failed after {:.1} s: {chain}",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(60), "{took:?}");
    for want in ["the gate refused packs/", "gave up after 6 attempts"] {
        assert!(chain.contains(want), "{want:?} not in: {chain}");
    }
    assert!(chain.to_lowercase().contains("timeout"), "{chain}");
    assert_eq!(
        r.keys("snapshots/").len(),
        1,
        "no snapshot of the failed run"
    );
    let held = r.held();
    assert!(held.packs >= 1 && held.snapshots == 1, "{held:?}");

    // 3. Faults off: the next run completes (a pack S3 stored late answers 412: present).
    r.moto.set_s3_faults(&[]).unwrap();
    let (res, _) = r.run();
    let report = res.unwrap_or_else(|e| panic!("{}", ferry_run::error_chain(&e)));
    assert_eq!(report.snapshots.len(), 2);
    assert!(r.held().is_empty());
    r.restore_all(&[&first, &second, &second]);
}
