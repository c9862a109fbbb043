//! The rig of the gate's fault tests (s3_faults.rs, network_faults.rs): the whole cloud run
//! of `ferry backup --config` (ferry-run's `CloudRun`: collect into the spool, upload, the
//! spool's ledger) talking to the real `ferry-gate` binary behind a real sshd forced command —
//! the key line ferry-build writes, with the session key the run makes — which puts into the
//! test kit's moto with the jump-box role's credentials. Only ferry-build and ferry-clean are
//! stood in for (a Lambda round trip adds nothing here): "building" writes the gate's config
//! and the session key's line, "cleaning" notes the session. Between the run's ssh and sshd a
//! test may put the kit's fault proxy. Every snapshot in the bucket can then be restored with
//! the master key (the operator's credentials) and compared byte for byte.

#![allow(dead_code)] // each test file uses its own part of the rig

use ferry_remote::{GateOptions, GateStorage, Keepalive};
use ferry_repo::{MasterKey, NoProgress, Progress, Repository, RestoreOptions};
use ferry_run::{
    BackupPlan, Cloud, CloudRun, Error, Event, FerryConfig, Gate, RunInput, RunProgress, RunReport,
    Session,
};
use ferry_s3::{S3Objects, S3Storage};
use ferry_testkit::{Creds, FaultProxy, JumpboxCreds, Moto, Sshd, SshdOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BUCKET: &str = "ferry-backup";
pub const SITE: &str = "home";
pub const PACKS: &str = "^home/packs/";

/// ferry-build and ferry-clean stood in for; the gate is the real one behind `sshd`.
pub struct SshdCloud {
    pub sshd: Arc<Sshd>,
    pub dir: PathBuf,
    /// gate.toml's `s3_attempt_timeout_secs` for the next session (`None`: the default).
    pub attempt_timeout: Mutex<Option<u64>>,
    /// The fault proxy the run's ssh goes through (the address ferry-build answers with).
    pub proxy: Mutex<Option<Arc<FaultProxy>>>,
    /// The run's ssh keepalives (`None`: the product's default).
    pub keepalive: Mutex<Option<Keepalive>>,
    pub builds: Mutex<u32>,
    pub cleaned: Mutex<Vec<String>>,
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
        let port = match &*self.proxy.lock().unwrap() {
            Some(p) => p.port(),
            None => self.sshd.port(),
        };
        Ok(Session {
            session,
            site: site.to_string(),
            host: "127.0.0.1".into(),
            port,
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
        if let Some(k) = *self.keepalive.lock().unwrap() {
            opts.keepalive = k;
        }
        let url = format!("gate+ssh://root@127.0.0.1:{}/{site}", session.port);
        let gate = GateStorage::connect(&url, &opts)
            .map_err(|e| Error::msg(format!("{e}\nsshd log:\n{}", self.sshd.log())))?;
        Ok(Box::new(gate))
    }
}

pub struct Quiet;

impl RunProgress for Quiet {
    fn event(&self, _: Event<'_>) {}
    fn collection(&self) -> Arc<dyn Progress> {
        Arc::new(NoProgress)
    }
    fn collection_done(&self) {}
}

pub struct Rig {
    pub moto: Moto,
    pub creds: JumpboxCreds,
    pub cloud: Arc<SshdCloud>,
    pub master: MasterKey,
    pub config: FerryConfig,
    pub plan: BackupPlan,
    pub src: PathBuf,
    pub dir: tempfile::TempDir,
}

pub fn rig() -> Rig {
    rig_with("")
}

/// A rig whose sshd has these extra `sshd_config` lines.
pub fn rig_with(sshd_config: &str) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start().unwrap();
    let creds = moto.jumpbox_setup(BUCKET).unwrap();
    let sshd = Sshd::start(SshdOptions {
        set_env: moto.env_with(&creds.jumpbox),
        extra_config: sshd_config.to_string(),
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
            proxy: Mutex::new(None),
            keepalive: Mutex::new(None),
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
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
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
    pub fn run(&self) -> (Result<RunReport, Error>, Duration) {
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
    pub fn admin(&self) -> S3Storage {
        s3(&self.moto, &self.creds.admin)
    }

    /// Keys under `prefix` in the site.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.admin().list_keys(prefix).unwrap()
    }

    /// The gate's `put` audit lines of `session`: (kind, outcome, attempts).
    pub fn puts(&self, session: &str) -> Vec<(String, String, u64)> {
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
    pub fn wait_audit(&self, session: &str) {
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
    pub fn restore_all(&self, expected: &[&Path]) {
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
    pub fn held(&self) -> ferry_run::Held {
        ferry_run::Spool::open(&self.plan.spool, 1 << 30)
            .unwrap()
            .held()
            .unwrap()
    }

    /// A copy of the source as it is now, to compare a later restore with.
    pub fn copy_src(&self, name: &str) -> PathBuf {
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

/// The site's repository in the bucket, as `c` sees it (admin or jump-box credentials).
pub fn s3(moto: &Moto, c: &Creds) -> S3Storage {
    s3_at(moto, c, SITE)
}

/// The repository under `prefix` of the bucket, with `c`'s credentials.
pub fn s3_at(moto: &Moto, c: &Creds, prefix: &str) -> S3Storage {
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
        prefix,
    ))
    .unwrap()
}

pub fn diff(a: &Path, b: &Path) {
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

pub fn find_dir_named(root: &Path, name: &str) -> Option<PathBuf> {
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
