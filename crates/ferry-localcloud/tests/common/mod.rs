//! The rig of the tests that run the real `ferry` binary through the whole local cloud
//! (backup_signals.rs, load.rs): `ferry-localcloud up` in a temporary directory (`down` when
//! the test ends, however it ends), the infrastructure made by `ferry infra apply` with the
//! `bootstrap` and `ferry-gate` of this test's target directory, keys from `ferry key init`,
//! `ferry` run as the operator or as the backup VM (only the backup user's profile), and what
//! is left in the cloud. Needs root, the project venv and `nc` (scripts/install-deps.sh), and
//! the binaries `ferry`, `bootstrap`, `ferry-gate` in this test's target directory
//! (`cargo test --workspace` builds them).

#![allow(dead_code)] // each test file uses its own part of the rig

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const LC: &str = env!("CARGO_BIN_EXE_ferry-localcloud");
/// The buckets `Cloud::apply` names in the infra config.
pub const BACKUP_BUCKET: &str = "ferry-backup-lc";
pub const STATE_BUCKET: &str = "ferry-state-lc";

/// `name` (`ferry`, `bootstrap`, `ferry-gate`) in the target directory this test was built into.
pub fn target_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let p = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join(name);
    assert!(
        p.is_file(),
        "{} is missing: build it first (cargo build --workspace)",
        p.display()
    );
    p
}

/// stdout and stderr of a finished command, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A running local cloud in `<dir>/cloud`; `down` when dropped.
pub struct Cloud {
    pub dir: tempfile::TempDir,
    /// DIR/env: the SDK-standard variables (endpoints, region, the operator's keys).
    pub env: Vec<(String, String)>,
}

impl Drop for Cloud {
    fn drop(&mut self) {
        let _ = Command::new(LC)
            .args(["down", "--dir"])
            .arg(self.dir.path().join("cloud"))
            .output();
    }
}

/// `export K='V'` lines of DIR/env.
fn read_env(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).expect("DIR/env");
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

impl Cloud {
    /// `ferry-localcloud up` with `lan` sample LAN hosts (as root: they get a user account,
    /// jump boxes run under unshare).
    pub fn up(lan: usize) -> Cloud {
        assert!(
            unsafe { libc::geteuid() } == 0,
            "needs root: the local cloud's sample hosts get a user account, jump boxes run under unshare"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let cdir = dir.path().join("cloud");
        let up = Command::new(LC)
            .args(["up", "--lan", &lan.to_string(), "--dir"])
            .arg(&cdir)
            .output()
            .expect("ferry-localcloud up");
        assert!(up.status.success(), "up: {}", text(&up));
        Cloud {
            env: read_env(&cdir.join("env")),
            dir,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `ferry` as the operator (`operator`: DIR/env's keys) or as the backup VM (only the
    /// backup user's profile, named in its config).
    pub fn ferry(&self, operator: bool) -> Command {
        let mut c = Command::new(target_binary("ferry"));
        for (k, v) in &self.env {
            c.env(k, v);
        }
        if !operator {
            c.env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY");
        }
        c.env("FERRY_CACHE_DIR", self.path("cache"));
        c
    }

    /// Run `ferry args`; it must succeed. Returns what it printed.
    pub fn ok(&self, operator: bool, args: &[&str]) -> String {
        let o = self.ferry(operator).args(args).output().expect("ferry");
        assert!(
            o.status.success(),
            "ferry {args:?}: {}\n{}",
            text(&o),
            self.log()
        );
        text(&o)
    }

    /// The daemon's log (functions loaded, boxes booted and stopped).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("cloud/localcloud.log")).unwrap_or_default()
    }

    /// `ferry infra apply` as the operator: buckets [`BACKUP_BUCKET`] and [`STATE_BUCKET`],
    /// SSH from loopback, 60-minute sessions, plus `jumpbox` (more `[jumpbox]` lines). Writes
    /// the backup user's credentials to `backup.credentials` (once: a second apply keeps
    /// them) and waits (bounded) until the local cloud hosts both functions — after a second
    /// apply, which must change the functions' configuration, until both were reloaded.
    pub fn apply(&self, jumpbox: &str) -> PathBuf {
        let before = self.function_pids();
        let artifacts = target_binary("bootstrap")
            .parent()
            .expect("dir")
            .to_path_buf();
        let infra = self.path("infra.toml");
        std::fs::write(
            &infra,
            format!(
                "prefix = \"ferry\"\nregion = \"us-east-1\"\nbackup_bucket = \"{BACKUP_BUCKET}\"\n\
                 state_bucket = \"{STATE_BUCKET}\"\noperator_arns = []\n\n[jumpbox]\n\
                 allowed_ssh_cidrs = [\"127.0.0.1/32\"]\ninstance_type = \"t3.micro\"\n\
                 max_session_minutes = 60\n{jumpbox}"
            ),
        )
        .expect("infra.toml");
        let creds = self.path("backup.credentials");
        let mut args = vec![
            "infra".to_string(),
            "apply".into(),
            "-c".into(),
            infra.display().to_string(),
            "--artifacts".into(),
            artifacts.display().to_string(),
        ];
        if !creds.exists() {
            args.extend(["--credentials-out".into(), creds.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ok(true, &args);
        let started = Instant::now();
        loop {
            match (self.function_pids(), before) {
                (Some(_), None) => break,
                (Some(now), Some(was)) if now.0 != was.0 && now.1 != was.1 => break,
                _ => {}
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "ferry-build and ferry-clean not (re)loaded 90 s after apply\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        creds
    }

    /// The processes hosting ferry-build and ferry-clean, once both run without an init error.
    pub fn function_pids(&self) -> Option<(u64, u64)> {
        let o = Command::new(LC)
            .args(["status", "--json", "--dir"])
            .arg(self.path("cloud"))
            .output()
            .expect("ferry-localcloud status");
        let st: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        let pid = |name: &str| {
            st["functions"]
                .as_array()?
                .iter()
                .find(|f| f["name"] == name && f["init_error"].is_null())?["pid"]
                .as_u64()
        };
        Some((pid("ferry-build")?, pid("ferry-clean")?))
    }

    /// `ferry key init` (no passphrase): (master key, put key) named `<name>.master`,
    /// `<name>.put`.
    pub fn keys(&self, name: &str) -> (PathBuf, PathBuf) {
        let (master, put) = (
            self.path(&format!("{name}.master")),
            self.path(&format!("{name}.put")),
        );
        let o = self
            .ferry(true)
            .env("FERRY_PASSPHRASE", "")
            .args(["key", "init", "--master"])
            .arg(&master)
            .arg("--put")
            .arg(&put)
            .output()
            .expect("ferry key init");
        assert!(o.status.success(), "key init: {}", text(&o));
        (master, put)
    }

    /// The `[backup]` (with `backup_extra` lines) and `[cloud]` sections of a backup VM's
    /// config for `site`, with its own put key and spool.
    pub fn backup_sections(
        &self,
        site: &str,
        put: &Path,
        spool: &Path,
        creds: &Path,
        backup_extra: &str,
    ) -> String {
        format!(
            "[backup]\nsite = \"{site}\"\nkey = {:?}\nspool = {:?}\n{backup_extra}\n\
             [cloud]\nregion = \"us-east-1\"\nprofile = \"ferry-backup\"\ncredentials_file = {:?}\n",
            put.display().to_string(),
            spool.display().to_string(),
            creds.display().to_string(),
        )
    }

    /// A python script (boto3, the project venv) with DIR/env's variables; as the backup VM
    /// (`backup_creds`: only the backup user's profile) or as the operator. Its stdout parsed
    /// as JSON.
    pub fn py(
        &self,
        script: &str,
        args: &[&str],
        backup_creds: Option<&Path>,
    ) -> serde_json::Value {
        let mut c = Command::new(ferry_testkit::Moto::venv().join("bin/python3"));
        for (k, v) in &self.env {
            c.env(k, v);
        }
        if let Some(creds) = backup_creds {
            c.env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY")
                .env("AWS_SHARED_CREDENTIALS_FILE", creds)
                .env("AWS_PROFILE", "ferry-backup");
        }
        let o = c.arg("-c").arg(script).args(args).output().expect("python");
        assert!(o.status.success(), "python: {}\n{}", text(&o), self.log());
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("python printed no JSON ({e}): {}", text(&o)))
    }

    /// Invoke `function` with `payload` the SDK-standard way: {"error", "payload"}.
    pub fn invoke(
        &self,
        function: &str,
        payload: &serde_json::Value,
        backup_creds: Option<&Path>,
    ) -> serde_json::Value {
        const PY: &str = r#"
import boto3, json, sys
r = boto3.client('lambda').invoke(FunctionName=sys.argv[1], Payload=sys.argv[2].encode())
print(json.dumps({'error': r.get('FunctionError'), 'payload': json.loads(r['Payload'].read() or b'null')}))
"#;
        self.py(PY, &[function, &payload.to_string()], backup_creds)
    }

    /// (running instances of the installation, session security groups, session state objects)
    pub fn leftovers(&self) -> (u64, u64, u64) {
        const PY: &str = r#"
import boto3, json, sys
ec2, s3 = boto3.client('ec2'), boto3.client('s3')
live = [i['InstanceId'] for r in ec2.describe_instances(Filters=[{'Name': 'tag:ferry:installation', 'Values': ['ferry']}])['Reservations']
        for i in r['Instances'] if i['State']['Name'] not in ('terminated', 'shutting-down')]
groups = [g['GroupId'] for g in ec2.describe_security_groups()['SecurityGroups']
          if any(t['Key'] == 'ferry:session' for t in g.get('Tags', []))]
states = s3.list_objects_v2(Bucket=sys.argv[1], Prefix='sessions/').get('KeyCount', 0)
print(json.dumps([len(live), len(groups), states]))
"#;
        let v = self.py(PY, &[STATE_BUCKET], None);
        let n = |i: usize| v[i].as_u64().expect("a count");
        (n(0), n(1), n(2))
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
            (x >> 24) as u8
        })
        .collect()
}
