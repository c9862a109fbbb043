//! The cloud run without the binary and without Lambda: a [`Cloud`] whose "jump box" is a
//! local directory (a real `LocalDir` repository as the upload target). What is checked is
//! the run's own contract: upload order (config, packs, indexes, the snapshot last), what the
//! spool keeps when the upload fails, ferry-clean exactly once per jump box (also when an
//! interrupt arrives mid-run), and the run records in `runs.jsonl`.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

use ferry_repo::format::ObjectKind;
use ferry_repo::storage::{LocalDir, PutOutcome, Storage, StorageError};
use ferry_repo::{MasterKey, NoProgress, Progress, Repository};
use ferry_run::{
    BackupPlan, Cancel, Cloud, CloudRun, Error, Event, FerryConfig, Gate, RunInput, RunProgress,
    Session,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The upload target: a local repository that notes the order it is given objects in.
struct LocalGate {
    dir: LocalDir,
    log: Arc<Mutex<Vec<ObjectKind>>>,
}

impl Storage for LocalGate {
    fn location(&self) -> String {
        self.dir.location()
    }
    fn put_if_absent(
        &self,
        kind: ObjectKind,
        name: &str,
        bytes: &[u8],
    ) -> Result<PutOutcome, StorageError> {
        self.log.lock().unwrap().push(kind);
        self.dir.put_if_absent(kind, name, bytes)
    }
    fn list(&self, kind: ObjectKind) -> Result<Vec<String>, StorageError> {
        self.dir.list(kind)
    }
    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, StorageError> {
        self.dir.get(kind, name)
    }
}

impl Gate for LocalGate {
    fn close(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// A cloud whose jump box is the directory `remote`.
struct LocalCloud {
    remote: PathBuf,
    /// The gate cannot be reached (as a box that never boots).
    unreachable: bool,
    /// Interrupt the run (from another thread) while the box exists.
    interrupt: Mutex<Option<Cancel>>,
    builds: Mutex<u32>,
    cleaned: Mutex<Vec<String>>,
    log: Arc<Mutex<Vec<ObjectKind>>>,
}

impl LocalCloud {
    fn new(remote: &Path) -> LocalCloud {
        LocalCloud {
            remote: remote.to_path_buf(),
            unreachable: false,
            interrupt: Mutex::new(None),
            builds: Mutex::new(0),
            cleaned: Mutex::new(Vec::new()),
            log: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl Cloud for LocalCloud {
    fn build_function(&self) -> &str {
        "local-build"
    }
    fn clean_function(&self) -> &str {
        "local-clean"
    }
    fn build(&self, site: &str, public_key: &str) -> Result<Session, Error> {
        assert!(public_key.starts_with("ssh-ed25519 "), "{public_key}");
        let mut n = self.builds.lock().unwrap();
        *n += 1;
        Ok(Session {
            session: format!("local-{n}"),
            site: site.to_string(),
            host: "127.0.0.1".into(),
            port: 22,
            user: "ferry".into(),
            host_key: "ssh-ed25519 AAAAlocal".into(),
            expires: "2026-01-01T00:30:00Z".into(),
            private_key: None,
            client_public_key: public_key.to_string(),
        })
    }
    fn clean(&self, session: &str, _within: Duration) -> Result<(), Error> {
        self.cleaned.lock().unwrap().push(session.to_string());
        Ok(())
    }
    fn connect_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }
    fn connect(
        &self,
        session: &Session,
        _site: &str,
        identity: &Path,
        host_key: &Path,
    ) -> Result<Box<dyn Gate>, Error> {
        // The session's keys were written for ssh: the client key 0600, the pinned host key.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(identity).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(host_key).unwrap(),
            format!("{}\n", session.host_key)
        );
        if let Some(cancel) = self.interrupt.lock().unwrap().take() {
            std::thread::spawn(move || cancel.interrupt("SIGTERM", &Events::default()))
                .join()
                .unwrap();
        }
        if self.unreachable {
            return Err(Error::msg(format!(
                "connecting to the jump box of session {}: the box never answered",
                session.session
            )));
        }
        Ok(Box::new(LocalGate {
            dir: LocalDir::new(self.remote.clone()),
            log: self.log.clone(),
        }))
    }
}

#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl RunProgress for Events {
    fn event(&self, e: Event<'_>) {
        self.0.lock().unwrap().push(format!("{e:?}"));
    }
    fn collection(&self) -> Arc<dyn Progress> {
        Arc::new(NoProgress)
    }
    fn collection_done(&self) {}
}

struct Setup {
    _t: tempfile::TempDir,
    master: MasterKey,
    sources: ferry_collect::SourcesConfig,
    plan: BackupPlan,
    remote: PathBuf,
    cache: PathBuf,
}

fn setup() -> Setup {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a"), vec![7u8; 200_000]).unwrap();
    std::fs::write(src.join("b"), b"small").unwrap();
    let text = format!(
        "[sources]\n[sources.local]\nname = \"vm\"\npaths = [\"{}\"]\n",
        src.display()
    );
    let sources = FerryConfig::parse(&text, Path::new("t.toml"))
        .unwrap()
        .sources;
    let plan = BackupPlan {
        site: "home".into(),
        key: t.path().join("put.key"),
        spool: t.path().join("spool"),
        spool_max: 1 << 30,
        pack_size: None,
        host: Some("vm".into()),
    };
    Setup {
        master: MasterKey::generate(),
        sources,
        plan,
        remote: t.path().join("remote"),
        cache: t.path().join("cache"),
        _t: t,
    }
}

fn run_once(s: &Setup, cloud: Arc<LocalCloud>) -> (CloudRun, Result<ferry_run::RunReport, Error>) {
    let run = CloudRun::open(s.plan.clone(), cloud).unwrap();
    let key = |_: &Path| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
        Ok(s.master.put_key())
    };
    let input = RunInput {
        sources: &s.sources,
        cache_dir: Some(s.cache.clone()),
        put_key: &key,
    };
    let r = run.run(&input, &Events::default());
    (run, r)
}

fn runs(spool: &Path) -> Vec<serde_json::Value> {
    ferry_run::spool::read_runs(spool, 100).unwrap()
}

#[test]
fn a_failed_upload_keeps_the_spool_and_the_next_run_uploads_snapshot_last() {
    let s = setup();

    // The jump box never answers: the run fails, its box is removed once, nothing is lost.
    let mut failing = LocalCloud::new(&s.remote);
    failing.unreachable = true;
    let failing = Arc::new(failing);
    let (run, r) = run_once(&s, failing.clone());
    let e = r.unwrap_err();
    let chain = ferry_run::error_chain(&e);
    assert!(
        chain.starts_with(
            "uploading through session local-1 (the spool keeps what was not uploaded): connecting"
        ),
        "{chain}"
    );
    assert_eq!(*failing.cleaned.lock().unwrap(), ["local-1"]);
    let held = ferry_run::Spool::open(&s.plan.spool, 1 << 30).unwrap_err();
    assert!(
        ferry_run::error_chain(&held).contains("in use"),
        "the run still holds its spool"
    );
    drop(run);
    let spool = ferry_run::Spool::open(&s.plan.spool, 1 << 30).unwrap();
    let held = spool.held().unwrap();
    assert!(
        held.packs >= 1 && held.indexes == 1 && held.snapshots == 1,
        "{held:?}"
    );
    drop(spool);
    assert!(
        !s.remote.join("config").exists(),
        "nothing reached the bucket"
    );
    let record = runs(&s.plan.spool);
    assert_eq!(record.len(), 1);
    assert_eq!(record[0]["result"], "failed");
    assert_eq!(record[0]["usage"]["lambda_invocations"], 2);

    // The next run uploads the earlier snapshot and its own: config, packs, indexes, and
    // the snapshots last.
    let cloud = Arc::new(LocalCloud::new(&s.remote));
    let (run, r) = run_once(&s, cloud.clone());
    let report = r.unwrap();
    assert_eq!(report.resumed, held);
    assert_eq!(report.snapshots.len(), 2);
    assert_eq!(report.result(), "ok");
    assert_eq!(*cloud.cleaned.lock().unwrap(), ["local-1"]);
    let log = cloud.log.lock().unwrap().clone();
    let rank = |k: &ObjectKind| match k {
        ObjectKind::Config => 0,
        ObjectKind::Pack => 1,
        ObjectKind::Index => 2,
        ObjectKind::Snapshot => 3,
        // The backup VM never writes the operator's kinds.
        ObjectKind::Trash | ObjectKind::Log => 99,
    };
    assert!(
        log.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
        "{log:?}"
    );
    assert_eq!(log.first(), Some(&ObjectKind::Config));
    assert_eq!(log[log.len() - 2..], [ObjectKind::Snapshot; 2]);
    assert_eq!(report.usage.uploaded_objects as usize, log.len());
    assert_eq!(report.usage.lambda_invocations, 2);
    assert!(run.spool_dir().join("uploaded").exists());
    drop(run);
    let record = runs(&s.plan.spool);
    assert_eq!(record.len(), 2);
    assert_eq!(record[1]["result"], "ok");
    assert_eq!(record[1]["session"], "local-1");
    assert_eq!(record[1]["snapshot"], report.snapshots[1].id.as_str());

    // What arrived is a whole repository, readable with the master key.
    let repo = Repository::open(Arc::new(LocalDir::new(s.remote.clone()))).unwrap();
    let snaps = repo.reader(&s.master).unwrap().snapshots().unwrap();
    assert_eq!(snaps.len(), 2);
    assert!(snaps.iter().all(|x| x.snapshot.usage.is_some()));
}

#[test]
fn an_interrupt_while_the_box_exists_cleans_it_exactly_once() {
    let s = setup();
    let cloud = Arc::new(LocalCloud::new(&s.remote));
    let run = CloudRun::open(s.plan.clone(), cloud.clone()).unwrap();
    *cloud.interrupt.lock().unwrap() = Some(run.cancel());
    let key = |_: &Path| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
        Ok(s.master.put_key())
    };
    let input = RunInput {
        sources: &s.sources,
        cache_dir: Some(s.cache.clone()),
        put_key: &key,
    };
    let events = Events::default();
    let e = run.run(&input, &events).unwrap_err();
    assert!(e.is_interrupted(), "{e}");
    assert!(run.cancel().is_interrupted());
    // The interrupt removed the box; the run did not remove it a second time.
    assert_eq!(*cloud.cleaned.lock().unwrap(), ["local-1"]);
    let events = events.0.lock().unwrap().clone();
    assert!(
        !events.iter().any(|e| e.starts_with("Cleaning")),
        "{events:?}"
    );
    // One record: the interrupt's; nothing was uploaded, the spool keeps it all.
    let record = runs(&s.plan.spool);
    assert_eq!(record.len(), 1, "{record:?}");
    assert_eq!(record[0]["result"], "interrupted");
    assert_eq!(
        record[0]["error"],
        "SIGTERM; jump box of session local-1 removed"
    );
    assert!(cloud.log.lock().unwrap().is_empty());
    drop(run);
    let spool = ferry_run::Spool::open(&s.plan.spool, 1 << 30).unwrap();
    assert_eq!(spool.held().unwrap().snapshots, 1);
}
