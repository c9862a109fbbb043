//! The SSH connection to the gate cut or stalled mid-upload, and the gate or the run's ssh
//! killed with SIGKILL (no cleanup code runs) at each upload phase (docs/RELIABILITY.md).
//!
//! The rig (tests/common) is the whole cloud run through the real `ferry-gate` behind a real
//! sshd into the kit's moto. Network faults come from the kit's [`FaultProxy`] between the
//! run's ssh and sshd, which ferry-build's answer points the run at; the phase a kill hits is
//! made certain by holding that phase's first PUT in moto (the kit's `unkind_s3_faults.py`)
//! and killing while it is held. After each fault: the run fails naming what happened, the
//! next run (through a healthy network) completes, and every snapshot restores byte for byte.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;

use common::{PACKS, Rig, rig_with};
use ferry_remote::Keepalive;
use ferry_testkit::{FaultPlan, FaultProxy, NetFault, S3Fault, S3FaultAnswer};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// sshd's own keepalives toward the client, as the jump box has them (docs/JUMPBOX.md:
/// `ClientAliveInterval 30`, `ClientAliveCountMax 4`), shortened so the test is quick: they
/// are what ends the gate's side of a stalled connection.
const SSHD_CLIENT_ALIVE: &str = "ClientAliveInterval 1\nClientAliveCountMax 3\n";

/// Client bytes after which the proxy strikes: past the SSH handshake and HELLO (a few KiB),
/// inside the first pack (the rig's source has 600 KB that do not compress).
const MID_UPLOAD: u64 = 200_000;

fn with_proxy(r: &Rig) -> Arc<FaultProxy> {
    let p = Arc::new(FaultProxy::start(([127, 0, 0, 1], r.cloud.sshd.port()).into()).unwrap());
    *r.cloud.proxy.lock().unwrap() = Some(p.clone());
    p
}

/// Wait (bounded) until the gate's spool directory holds no object file: the gate removed
/// what it was receiving. Returns how long that took.
fn gate_spool_empties(r: &Rig, within: Duration) -> Duration {
    let dir = r.dir.path().join("gate-spool");
    let started = Instant::now();
    loop {
        let left: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if left.is_empty() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "the gate's spool still holds {left:?} after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// After a failed run: no snapshot of it in the bucket, the spool keeps it, and the next
/// run (faults off) uploads both; both restore.
fn next_run_completes(r: &Rig, expected: &Path) {
    assert!(
        r.keys("snapshots/").is_empty(),
        "{:?}",
        r.keys("snapshots/")
    );
    let held = r.held();
    assert!(held.snapshots == 1, "{held:?}");
    let (res, _) = r.run();
    let report = res.unwrap_or_else(|e| panic!("{}", ferry_run::error_chain(&e)));
    assert_eq!(report.snapshots.len(), 2);
    assert!(r.held().is_empty());
    r.restore_all(&[expected, expected]);
}

#[test]
fn a_connection_cut_mid_upload_fails_the_run_naming_it_and_the_next_run_completes() {
    let r = rig_with(SSHD_CLIENT_ALIVE);
    let proxy = with_proxy(&r);
    proxy.set(Some(FaultPlan {
        fault: NetFault::Cut,
        after_client_bytes: MID_UPLOAD,
    }));
    let expected = r.copy_src("expected");
    let (res, took) = r.run();
    let chain = ferry_run::error_chain(&res.unwrap_err());
    eprintln!(
        "cut mid-upload: failed after {:.1} s: {chain}",
        took.as_secs_f64()
    );
    assert_eq!(proxy.fired(), 1);
    for want in [
        "the spool keeps what was not uploaded",
        "not confirmed by the gate",
    ] {
        assert!(chain.contains(want), "{want:?} not in: {chain}");
    }
    assert!(r.keys("packs/").is_empty(), "{:?}", r.keys("packs/"));
    assert_eq!(*r.cloud.cleaned.lock().unwrap(), ["s-1"]);
    // The gate saw its input end mid-object and removed the object's spool file.
    let gone = gate_spool_empties(&r, Duration::from_secs(20));
    eprintln!("cut mid-upload: the gate's spool file was gone after {gone:?}");

    proxy.set(None);
    next_run_completes(&r, &expected);
}

#[test]
fn a_connection_stalled_mid_upload_is_noticed_by_keepalives_and_the_next_run_completes() {
    let r = rig_with(SSHD_CLIENT_ALIVE);
    let keepalive = Keepalive {
        interval: 1,
        count: 3,
    };
    *r.cloud.keepalive.lock().unwrap() = Some(keepalive);
    let proxy = with_proxy(&r);
    proxy.set(Some(FaultPlan {
        fault: NetFault::Stall,
        after_client_bytes: MID_UPLOAD,
    }));
    let expected = r.copy_src("expected");
    let (res, took) = r.run();
    let chain = ferry_run::error_chain(&res.unwrap_err());
    eprintln!(
        "stalled mid-upload (keepalives {} s x {}): failed after {:.1} s: {chain}",
        keepalive.interval,
        keepalive.count,
        took.as_secs_f64()
    );
    assert_eq!(proxy.fired(), 1);
    // Bounded: the run did not hang on a connection that says nothing (without keepalives
    // it would wait for TCP's own timeouts, minutes to hours).
    assert!(took < Duration::from_secs(60), "{took:?}");
    for want in [
        "ssh's keepalives went unanswered",
        "not responding",
        "the spool keeps what was not uploaded",
    ] {
        assert!(chain.contains(want), "{want:?} not in: {chain}");
    }
    assert!(r.keys("packs/").is_empty(), "{:?}", r.keys("packs/"));
    // The jump box's side: sshd's ClientAlive ends the session, the gate's input ends
    // mid-object, and the gate removes the object's spool file.
    let gone = gate_spool_empties(&r, Duration::from_secs(30));
    eprintln!("stalled mid-upload: the gate's spool file was gone after {gone:?}");

    proxy.set(None);
    next_run_completes(&r, &expected);
}

/// The upload phases a kill can hit, by the key pattern of the PUT held while it strikes.
const PHASES: [(&str, &str); 3] = [
    ("packs", PACKS),
    ("index", "^home/index/"),
    ("snapshot", "^home/snapshots/"),
];

/// Processes whose command line (NUL-separated arguments) contains `needle`.
fn pids_with(needle: &[u8]) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && cmd.windows(needle.len()).any(|w| w == needle)
        {
            out.push(pid);
        }
    }
    out
}

/// Run with the first PUT of `phase` held in moto, and SIGKILL what `victim` finds while it
/// is held. Returns the run's error chain.
fn run_killing_at(r: &Rig, pattern: &str, victim: fn(&Rig) -> Vec<i32>) -> String {
    r.moto
        .set_s3_faults(&[S3Fault {
            first: Some(1),
            delay: HOLD,
            ..S3Fault::new("PUT", pattern, S3FaultAnswer::Normal)
        }])
        .unwrap();
    let killed = std::thread::scope(|s| {
        let killer = s.spawn(|| {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(60) {
                if r.moto
                    .s3_faults_injected()
                    .iter()
                    .any(|l| l.contains("holding PUT"))
                {
                    let pids = victim(r);
                    for &p in &pids {
                        // SAFETY: kill(2) with a pid read from /proc just now.
                        unsafe { libc::kill(p, libc::SIGKILL) };
                    }
                    return pids;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Vec::new()
        });
        let (res, _) = r.run();
        (res, killer.join().unwrap())
    });
    let (res, pids) = killed;
    assert!(
        !pids.is_empty(),
        "nothing to kill was found while the PUT was held"
    );
    let chain = ferry_run::error_chain(&res.unwrap_err());
    r.moto.set_s3_faults(&[]).unwrap();
    chain
}

/// The gate serving this rig's sessions (its config is in the rig's directory).
fn the_gate(r: &Rig) -> Vec<i32> {
    let mut needle = b"serve\0--config\0".to_vec();
    needle.extend_from_slice(r.dir.path().as_os_str().as_encoded_bytes());
    pids_with(&needle)
}

/// The run's ssh to this rig's sshd (its `-p PORT`).
fn the_ssh(r: &Rig) -> Vec<i32> {
    let needle = format!("\0-p\0{}\0", r.cloud.sshd.port());
    pids_with(needle.as_bytes())
        .into_iter()
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "ssh")
        })
        .collect()
}

/// How long moto holds the PUT a kill lands in.
const HOLD: Duration = Duration::from_secs(2);

/// Wait until moto has handled the held PUT, so that what it stores after the kill is in
/// the bucket before the next run.
fn held_put_done() {
    std::thread::sleep(HOLD + Duration::from_millis(500));
}

#[test]
fn the_gate_killed_at_each_upload_phase_loses_nothing() {
    for (phase, pattern) in PHASES {
        let r = rig_with(SSHD_CLIENT_ALIVE);
        let expected = r.copy_src("expected");
        let chain = run_killing_at(&r, pattern, the_gate);
        eprintln!("gate SIGKILLed during the {phase} phase: {chain}");
        assert!(
            chain.contains("the spool keeps what was not uploaded"),
            "{phase}: {chain}"
        );
        held_put_done();
        // The object S3 was storing when the gate died is stored anyway (moto, like S3,
        // finishes a request whose client went away): a snapshot the run never heard
        // confirmed. The next run sends the same sealed object again (answered: present)
        // and its own.
        let before = r.keys("snapshots/").len();
        let held = r.held();
        assert_eq!(held.snapshots, 1, "{phase}: {held:?}");
        // The gate's spool file of the object in flight stays (no cleanup code ran); on
        // AWS it goes with the jump box, which ferry-clean or the box's timer terminates.
        let left: Vec<_> = std::fs::read_dir(r.dir.path().join("gate-spool"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            left.len() == 1 && left[0].starts_with("ferry-gate-spool-"),
            "{phase}: {left:?}"
        );
        let (res, _) = r.run();
        let report = res.unwrap_or_else(|e| panic!("{phase}: {}", ferry_run::error_chain(&e)));
        assert_eq!(report.snapshots.len(), 2, "{phase}");
        assert!(r.held().is_empty(), "{phase}");
        eprintln!(
            "gate SIGKILLed during the {phase} phase: {before} snapshot(s) stored by then; the next run completed"
        );
        r.restore_all(&[&expected, &expected]);
    }
}

#[test]
fn the_runs_ssh_killed_at_each_upload_phase_loses_nothing() {
    for (phase, pattern) in PHASES {
        let r = rig_with(SSHD_CLIENT_ALIVE);
        let expected = r.copy_src("expected");
        let chain = run_killing_at(&r, pattern, the_ssh);
        eprintln!("ssh SIGKILLed during the {phase} phase: {chain}");
        assert!(
            chain.contains("the spool keeps what was not uploaded"),
            "{phase}: {chain}"
        );
        // The gate's input ended when ssh died: it removed its spool file.
        let gone = gate_spool_empties(&r, Duration::from_secs(20));
        eprintln!(
            "ssh SIGKILLed during the {phase} phase: the gate's spool emptied after {gone:?}"
        );
        held_put_done();
        let (res, _) = r.run();
        let report = res.unwrap_or_else(|e| panic!("{phase}: {}", ferry_run::error_chain(&e)));
        assert_eq!(report.snapshots.len(), 2, "{phase}");
        assert!(r.held().is_empty(), "{phase}");
        r.restore_all(&[&expected, &expected]);
    }
}
