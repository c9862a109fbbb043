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

use ferry_remote::{GateOptions, GateStorage};
use ferry_repo::{MasterKey, NoProgress, Progress, Repository, RestoreOptions};
use ferry_run::{
    BackupPlan, Cloud, CloudRun, Error, Event, FerryConfig, Gate, RunInput, RunProgress, RunReport,
    Session,
};
use ferry_s3::{S3Objects, S3Storage};
use ferry_testkit::{Creds, JumpboxCreds, Moto, S3Fault, S3FaultAnswer, Sshd, SshdOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BUCKET: &str = "ferry-backup";
const SITE: &str = "home";
const PACKS: &str = "^home/packs/";

/// ferry-build and ferry-clean stood in for; the gate is the real one behind `sshd`.
struct SshdCloud {
    sshd: Arc<Sshd>,
    dir: PathBuf,
    /// gate.toml's `s3_attempt_timeout_secs` for the next session (`None`: the default).
    attempt_timeout: Mutex<Option<u64>>,
    builds: Mutex<u32>,
    cleaned: Mutex<Vec<String>>,
}

impl Cloud for SshdCloud {
    fn build_function(&self) -> &str {
        "test-build"
    }
    fn clean_function(&self) -> &str {
        "test-clean"
    }
    fn build(&self, site: &str, public_key: &str) -> Result<Session, Error> {
        let n = {
            let mut b = self.builds.lock().unwrap();
            *b += 1;
            *b
        };
        let session = format!("s-{n}");
        let spool = self.dir.join("gate-spool");
        std::fs::create_dir_all(&spool).unwrap();
        let timeout = match *self.attempt_timeout.lock().unwrap() {
            Some(s) => format!("s3_attempt_timeout_secs = {s}\n"),
            None => String::new(),
        };
        let cfg = self.dir.join(format!("gate-{n}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "bucket = \"{BUCKET}\"\nsite = \"{site}\"\nsession = \"{session}\"\n\
                 expires = \"2999-01-01T00:00:00Z\"\nmax_object_size = 67108864\n\
                 max_session_bytes = 1073741824\n\
                 allowed_kinds = [\"config\", \"pack\", \"index\", \"snapshot\"]\n\
                 spool_dir = \"{}\"\n{timeout}",
                spool.display()
            ),
        )
        .unwrap();
        let gate = env!("CARGO_BIN_EXE_ferry-gate");
        self.sshd
            .set_authorized_keys(&format!(
                "restrict,command=\"{gate} serve --config {}\" {public_key}\n",
                cfg.display()
            ))
            .unwrap();
        let host_key = std::fs::read_to_string(self.sshd.host_key_pub()).unwrap();
        let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        Ok(Session {
            session,
            site: site.to_string(),
            host: "127.0.0.1".into(),
            port: self.sshd.port(),
            user: "root".into(),
            host_key: host_key.join(" "),
            expires: "2999-01-01T00:00:00Z".into(),
            private_key: None,
            client_public_key: public_key.to_string(),
        })
    }
    fn clean(&self, session: &str, _within: Duration) -> Result<(), Error> {
        self.cleaned.lock().unwrap().push(session.to_string());
        Ok(())
    }
    fn connect_timeout(&self) -> Duration {
        Duration::from_secs(20)
    }
    fn connect(
        &self,
        session: &Session,
        site: &str,
        identity: &Path,
        host_key: &Path,
    ) -> Result<Box<dyn Gate>, Error> {
        let mut opts = GateOptions::new(identity, host_key);
        opts.session = Some(session.session.clone());
        opts.retry_budget = self.connect_timeout();
        let url = format!("gate+ssh://root@127.0.0.1:{}/{site}", session.port);
        let gate = GateStorage::connect(&url, &opts)
            .map_err(|e| Error::msg(format!("{e}\nsshd log:\n{}", self.sshd.log())))?;
        Ok(Box::new(gate))
    }
}

struct Quiet;

impl RunProgress for Quiet {
    fn event(&self, _: Event<'_>) {}
    fn collection(&self) -> Arc<dyn Progress> {
        Arc::new(NoProgress)
    }
    fn collection_done(&self) {}
}

struct Rig {
    moto: Moto,
    creds: JumpboxCreds,
    cloud: Arc<SshdCloud>,
    master: MasterKey,
    config: FerryConfig,
    plan: BackupPlan,
    src: PathBuf,
    dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start().unwrap();
    let creds = moto.jumpbox_setup(BUCKET).unwrap();
    let sshd = Sshd::start(SshdOptions {
        set_env: moto.env_with(&creds.jumpbox),
        ..Default::default()
    })
    .unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    std::fs::write(src.join("var.log"), noise(1, 600_000)).unwrap();
    let config = FerryConfig::parse(
        &format!(
            "[sources]\n[sources.local]\nname = \"vm\"\npaths = [\"{}\"]\n",
            src.display()
        ),
        Path::new("ferry.toml"),
    )
    .unwrap();
    let plan = BackupPlan {
        site: SITE.into(),
        key: dir.path().join("put.key"),
        spool: dir.path().join("spool"),
        spool_max: 1 << 30,
        pack_size: None,
        host: Some("vm".into()),
    };
    Rig {
        cloud: Arc::new(SshdCloud {
            sshd: Arc::new(sshd),
            dir: dir.path().to_path_buf(),
            attempt_timeout: Mutex::new(None),
            builds: Mutex::new(0),
            cleaned: Mutex::new(Vec::new()),
        }),
        moto,
        creds,
        master: MasterKey::generate(),
        config,
        plan,
        src,
        dir,
    }
}

/// Incompressible bytes (xorshift), different for each seed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e3779b97f4a7c15 ^ seed.wrapping_mul(0x2545f4914f6cdd1d);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

impl Rig {
    /// One cloud run; its result and how long it took.
    fn run(&self) -> (Result<RunReport, Error>, Duration) {
        let run = CloudRun::open(self.plan.clone(), self.cloud.clone()).unwrap();
        let key = |_: &Path| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
            Ok(self.master.put_key())
        };
        let input = RunInput {
            sources: &self.config.sources,
            cache_dir: Some(self.dir.path().join("cache")),
            put_key: &key,
        };
        let started = Instant::now();
        let r = run.run(&input, &Quiet);
        (r, started.elapsed())
    }

    /// The bucket as the operator sees it (admin credentials).
    fn admin(&self) -> S3Storage {
        s3(&self.moto, &self.creds.admin)
    }

    /// Keys under `prefix` in the site.
    fn keys(&self, prefix: &str) -> Vec<String> {
        self.admin().list_keys(prefix).unwrap()
    }

    /// The gate's `put` audit lines of `session`: (kind, outcome, attempts).
    fn puts(&self, session: &str) -> Vec<(String, String, u64)> {
        let admin = self.admin();
        let mut out = Vec::new();
        for k in admin.list_keys("audit/").unwrap() {
            if !k.starts_with(&format!("{session}-")) {
                continue;
            }
            let text = String::from_utf8(admin.get_key(&format!("audit/{k}")).unwrap()).unwrap();
            for l in text.lines() {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                if v["event"] == "put" {
                    out.push((
                        v["kind"].as_str().unwrap().to_string(),
                        v["outcome"].as_str().unwrap().to_string(),
                        v["attempts"].as_u64().unwrap_or(0),
                    ));
                }
            }
        }
        out
    }

    /// The audit record of `session` (the gate puts it as the session ends; bounded wait).
    fn wait_audit(&self, session: &str) {
        for _ in 0..100 {
            if self
                .keys("audit/")
                .iter()
                .any(|k| k.starts_with(&format!("{session}-")))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no audit record of {session}");
    }

    /// Restore every snapshot in the bucket with the master key; each must equal the copy
    /// of the source `expected` names for it (by order, oldest first).
    fn restore_all(&self, expected: &[&Path]) {
        let repo = Repository::open(Arc::new(self.admin())).unwrap();
        let reader = repo.reader(&self.master).unwrap();
        let snaps = reader.snapshots().unwrap();
        assert_eq!(snaps.len(), expected.len(), "snapshots in the bucket");
        for (i, (snap, want)) in snaps.iter().zip(expected).enumerate() {
            let target = self.dir.path().join(format!("restored-{i}"));
            reader
                .restore(snap, &target, &RestoreOptions::default(), &NoProgress)
                .unwrap();
            let got = find_dir_named(&target, "src")
                .unwrap_or_else(|| panic!("no src/ under {}", target.display()));
            diff(want, &got);
        }
    }

    /// What the spool still holds (after the run released it).
    fn held(&self) -> ferry_run::Held {
        ferry_run::Spool::open(&self.plan.spool, 1 << 30)
            .unwrap()
            .held()
            .unwrap()
    }

    /// A copy of the source as it is now, to compare a later restore with.
    fn copy_src(&self, name: &str) -> PathBuf {
        let to = self.dir.path().join(name).join("src");
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let out = Command::new("cp")
            .arg("-a")
            .arg(&self.src)
            .arg(&to)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        to
    }
}

fn s3(moto: &Moto, c: &Creds) -> S3Storage {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(ferry_testkit::MOTO_REGION))
        .endpoint_url(moto.endpoint())
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.clone(),
            c.session_token.clone(),
            None,
            "test",
        ))
        .build();
    S3Storage::from_objects(S3Objects::with_client(
        aws_sdk_s3::Client::from_conf(conf),
        BUCKET,
        SITE,
    ))
    .unwrap()
}

fn diff(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .arg("-r")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restore differs from {}:\n{}",
        a.display(),
        String::from_utf8_lossy(&out.stdout)
    );
}

fn find_dir_named(root: &Path, name: &str) -> Option<PathBuf> {
    let mut stack = vec![root.to_path_buf()];
    let mut seen = 0;
    while let Some(p) = stack.pop() {
        seen += 1;
        if seen > 10_000 {
            return None;
        }
        if p.file_name().is_some_and(|n| n == name) && p.join("etc/hosts").is_file() {
            return Some(p);
        }
        if let Ok(rd) = std::fs::read_dir(&p) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                }
            }
        }
    }
    None
}

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
