//! Eight sites backing up at once through the whole local cloud (issue 15, "Load"), each with
//! its own put key, `[backup] site`, spool, cache and source: the real `ferry backup` of each
//! → the real ferry-build (`bootstrap`, one installation with `jumpbox.max_sessions = 8`) →
//! eight jump boxes at once, booted from their user data with real sshd and `ferry-gate` →
//! moto. All eight complete, nothing is left in the cloud, and each site's latest snapshot
//! restores byte for byte with that site's own master key.
//!
//! Then the limits, with `max_sessions = 2` applied by `ferry infra apply`: the test, as a
//! hostile backup VM with the backup user's credentials, holds two sessions (site-1's and
//! site-2's) and speaks the gate protocol wrongly on purpose through site-1's live gate (the
//! test kit's `hostile` client over the box's real sshd): a LIST answers only site-1's packs,
//! PUTs into site-2's prefix by name or by kind are refused, a HELLO naming site-2 or site-2's
//! session is refused, and no object of the bucket changed. With both slots held, six sites'
//! runs started at once are each refused naming the limit (`2 concurrent session(s) allowed
//! … (max_sessions in the infra config)`), and only the two held sessions exist in the cloud;
//! once they are cleaned nothing is left, and the refused sites' next runs complete and
//! restore byte for byte. docs/RELIABILITY.md ("Load") has the figures.
//!
//! The local cloud's Lambda host runs one invocation of a function at a time (as one execution
//! environment), so builds here never race; on AWS racing builds can both be refused, never
//! both pass (docs/LAMBDA.md). Needs what `common` says.

mod common;

use common::{BACKUP_BUCKET, Cloud, noise, text};
use ferry_repo::format::ObjectKind;
use ferry_repo::storage::conformance::object as obj;
use ferry_testkit::hostile::{self, Hostile, Reply};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

const SITES: usize = 8;
/// Runs of `ferry backup` at once must all end within this.
const RUNS_WITHIN: Duration = Duration::from_secs(240);

struct Site {
    name: String,
    src: PathBuf,
    config: PathBuf,
    master: PathBuf,
    dir: PathBuf,
}

/// Site `i`'s own keys, spool, cache and source (about 1.3 MiB, mostly incompressible).
fn site(cloud: &Cloud, creds: &Path, i: usize) -> Site {
    let name = format!("site-{i}");
    let dir = cloud.path(&name);
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("etc")).expect("mkdir");
    std::fs::create_dir_all(src.join("var/log")).expect("mkdir");
    std::fs::write(src.join("etc/hostname"), format!("{name}\n")).expect("write");
    std::fs::write(
        src.join("etc/app.conf"),
        format!("site = {name}\nworkers = {i}\n").repeat(50),
    )
    .expect("write");
    std::fs::write(
        src.join("var/log/app.log"),
        noise(i as u64, (1 << 20) + i * 4096),
    )
    .expect("write");
    let (master, put) = cloud.keys(&name);
    let config = dir.join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[sources]\n[sources.local]\npaths = [{:?}]\n\n{}",
            src.display().to_string(),
            cloud.backup_sections(&name, &put, &dir.join("spool"), creds, "")
        ),
    )
    .expect("ferry.toml");
    Site {
        name,
        src,
        config,
        master,
        dir,
    }
}

/// `ferry backup --config` of every site in `sites`, all started at once, as their backup VMs
/// (each with only the backup user's profile and its own cache). (exit code, what it printed)
/// of each, and the most jump boxes the local cloud ran at once while they ran.
fn backups_at_once(cloud: &Cloud, sites: &[&Site]) -> (Vec<(i32, String)>, usize) {
    let mut children: Vec<(Child, PathBuf)> = sites
        .iter()
        .map(|s| {
            let log = s.dir.join(format!("run-{}.log", now_ms()));
            let out = std::fs::File::create(&log).expect("log");
            let err = out.try_clone().expect("log");
            let child = cloud
                .ferry(false)
                .env("FERRY_CACHE_DIR", s.dir.join("cache"))
                .args(["backup", "--config"])
                .arg(&s.config)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("ferry backup");
            (child, log)
        })
        .collect();
    let started = Instant::now();
    let mut codes: Vec<Option<i32>> = vec![None; children.len()];
    let mut peak_boxes = 0;
    while codes.iter().any(Option::is_none) {
        for (i, (c, _)) in children.iter_mut().enumerate() {
            if codes[i].is_none()
                && let Some(st) = c.try_wait().expect("wait")
            {
                codes[i] = Some(st.code().unwrap_or(-1));
            }
        }
        peak_boxes = peak_boxes.max(running_boxes(cloud));
        if started.elapsed() > RUNS_WITHIN {
            for (c, _) in &mut children {
                let _ = c.kill();
                let _ = c.wait();
            }
            let logs: Vec<String> = children
                .iter()
                .map(|(_, l)| std::fs::read_to_string(l).unwrap_or_default())
                .collect();
            panic!(
                "{} runs not done within {RUNS_WITHIN:?}:\n{}\n{}",
                sites.len(),
                logs.join("\n----\n"),
                cloud.log()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "{} runs at once took {:.1} s; at most {peak_boxes} jump boxes at once",
        sites.len(),
        started.elapsed().as_secs_f64()
    );
    let results = children
        .iter()
        .zip(codes)
        .map(|((_, log), code)| {
            (
                code.unwrap_or(-1),
                std::fs::read_to_string(log).unwrap_or_default(),
            )
        })
        .collect();
    (results, peak_boxes)
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// The local cloud's state (`ferry-localcloud status --json`).
fn status(cloud: &Cloud) -> serde_json::Value {
    let o = Command::new(common::LC)
        .args(["status", "--json", "--dir"])
        .arg(cloud.path("cloud"))
        .output()
        .expect("ferry-localcloud status");
    serde_json::from_slice(&o.stdout).unwrap_or_default()
}

fn running_boxes(cloud: &Cloud) -> usize {
    status(cloud)["boxes"]
        .as_array()
        .map_or(0, |b| b.iter().filter(|b| b["status"] == "running").count())
}

/// The site's latest snapshot, restored from S3 with the site's master key, equals its
/// source now, file by file.
fn restores(cloud: &Cloud, s: &Site) {
    let target = s.dir.join(format!("restore-{}", now_ms()));
    cloud.ok(
        true,
        &[
            "restore",
            "--repo",
            &format!("s3://{BACKUP_BUCKET}/{}", s.name),
            "--key",
            s.master.to_str().expect("utf-8"),
            "latest",
            "--target",
            target.to_str().expect("utf-8"),
        ],
    );
    let restored = target
        .join("local")
        .join(s.src.strip_prefix("/").expect("absolute"));
    let o = Command::new("diff")
        .arg("-r")
        .arg(&s.src)
        .arg(&restored)
        .output()
        .expect("diff");
    assert!(
        o.status.success(),
        "{}: the restore differs from the source:\n{}",
        s.name,
        text(&o)
    );
}

/// Every object of the backup bucket but the gates' audit records: key → ETag.
fn bucket(cloud: &Cloud) -> BTreeMap<String, String> {
    const PY: &str = r#"
import boto3, json, sys
out = {}
for page in boto3.client('s3').get_paginator('list_objects_v2').paginate(Bucket=sys.argv[1]):
    for o in page.get('Contents', []):
        if '/audit/' not in o['Key']:
            out[o['Key']] = o['ETag']
print(json.dumps(out))
"#;
    serde_json::from_value(cloud.py(PY, &[BACKUP_BUCKET], None)).expect("key → ETag")
}

/// A session ferry-build made for `site` on the request of the test, as a backup VM with the
/// backup user's credentials and its own SSH key.
struct Held {
    session: String,
    host: String,
    key: PathBuf,
    known_hosts: PathBuf,
}

fn hold_session(cloud: &Cloud, creds: &Path, site: &str) -> Held {
    let key = cloud.path(&format!("{site}-hostile-id"));
    let public = ferry_testkit::keygen(&key).expect("ssh-keygen");
    let r = cloud.invoke(
        "ferry-build",
        &serde_json::json!({"site": site, "public_key": public.trim(), "ttl_minutes": 30}),
        Some(creds),
    );
    assert!(r["error"].is_null(), "{r:#}\n{}", cloud.log());
    let p = &r["payload"];
    let host = p["host"].as_str().expect("host").to_string();
    let known_hosts = cloud.path(&format!("{site}-known_hosts"));
    std::fs::write(
        &known_hosts,
        format!("{host} {}\n", p["host_key"].as_str().expect("host key")),
    )
    .expect("known_hosts");
    let session = p["session"].as_str().expect("session").to_string();
    // The box boots from its user data (bounded).
    ferry_testkit::wait_until(
        "the session's jump box runs",
        Duration::from_secs(90),
        || {
            status(cloud)["boxes"].as_array().is_some_and(|b| {
                b.iter()
                    .any(|b| b["session"] == session.as_str() && b["status"] == "running")
            })
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cloud.log()));
    Held {
        session,
        host,
        key,
        known_hosts,
    }
}

/// A raw protocol client on the session's live gate (ssh to the box's sshd, whose forced
/// command is `ferry-gate serve`), after a HELLO that the gate answered with `first`.
struct Raw {
    ssh: Child,
    client: Hostile<ChildStdin>,
    first: Reply,
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.ssh.kill();
        let _ = self.ssh.wait();
    }
}

fn raw(cloud: &Cloud, h: &Held, hello: &[u8]) -> Raw {
    // sshd on a box that just booted may not accept yet: a few tries (bounded).
    for attempt in 0..10 {
        let mut ssh = ferry_ssh::SshCommand::new("ferry", &h.host, 22, &h.key, &h.known_hosts)
            .config_file(Some(cloud.path("cloud/ssh_config")))
            .command()
            .expect("ssh command")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh");
        let stdin = ssh.stdin.take().expect("stdin");
        let stdout = ssh.stdout.take().expect("stdout");
        let mut client = Hostile::new(stdin, stdout);
        let _ = client.raw(hello);
        let first = client.reply(Duration::from_secs(20));
        if first != Reply::Closed || attempt == 9 {
            return Raw { ssh, client, first };
        }
        let _ = ssh.wait();
        std::thread::sleep(Duration::from_millis(500));
    }
    unreachable!("the last attempt returns")
}

#[test]
fn eight_sites_at_once_then_the_session_limit_and_the_site_scope_hold() {
    let cloud = Cloud::up(0);
    // The installation for 8 sites: 8 sessions at once, 32 a day (each site's daily run and
    // three retries or manual runs).
    let creds = cloud.apply("max_sessions = 8\nsessions_per_day = 32\n");
    let sites: Vec<Site> = (1..=SITES).map(|i| site(&cloud, &creds, i)).collect();

    // 1. All eight at once: each completes; nothing is left; each restores byte for byte.
    let all: Vec<&Site> = sites.iter().collect();
    let (results, peak) = backups_at_once(&cloud, &all);
    for (s, (code, out)) in sites.iter().zip(&results) {
        assert_eq!(*code, 0, "{}: {out}\n{}", s.name, cloud.log());
    }
    assert!(peak <= SITES, "{peak} boxes at once");
    assert_eq!(cloud.leftovers(), (0, 0, 0), "{}", cloud.log());
    for s in &sites {
        restores(&cloud, s);
    }

    // 2. Two sessions at most, both held by a hostile backup VM (site-1's and site-2's).
    cloud.apply("max_sessions = 2\nsessions_per_day = 32\n");
    let one = hold_session(&cloud, &creds, "site-1");
    let two = hold_session(&cloud, &creds, "site-2");
    assert_eq!(cloud.leftovers(), (2, 2, 2), "{}", cloud.log());
    let before = bucket(&cloud);
    let keys_of = |site: &str, kind: &str| -> Vec<String> {
        before
            .keys()
            .filter_map(|k| k.strip_prefix(&format!("{site}/{kind}/")))
            .map(str::to_string)
            .collect()
    };
    let (mine, theirs) = (keys_of("site-1", "packs"), keys_of("site-2", "packs"));
    assert!(!mine.is_empty() && !theirs.is_empty(), "{before:?}");

    // Through site-1's live gate: LIST answers only site-1's packs; PUTs into site-2's prefix
    // by name or by kind are refused; the session goes on to BYE.
    let mut g = raw(&cloud, &one, &hostile::hello("", "site-1"));
    assert!(g.first.text().starts_with("HelloOk"), "{:?}", g.first);
    let (fresh, bytes) = obj(ObjectKind::Pack, &noise(99, 4096));
    let n = bytes.len() as u64;
    let tricks: Vec<(&str, Vec<u8>, &str)> = vec![
        ("LIST packs", hostile::list("pack", ""), "Names"),
        (
            "PUT ../site-2/packs/<sha>",
            hostile::put("pack", &format!("../site-2/packs/{fresh}"), n, &bytes),
            "is not a lowercase hex SHA-256",
        ),
        (
            "PUT /site-2/packs/<sha>",
            hostile::put("pack", &format!("/site-2/packs/{fresh}"), n, &bytes),
            "is not a lowercase hex SHA-256",
        ),
        (
            "PUT kind ../site-2/packs",
            hostile::put("../site-2/packs", &fresh, n, &bytes),
            "unknown object kind",
        ),
    ];
    for (what, frames, want) in &tricks {
        g.client.raw(frames).expect("write to the gate");
        let answer = g.client.reply(Duration::from_secs(30)).text();
        assert!(answer.contains(want), "{what}: {answer}");
        eprintln!("site-1's gate, {what}: {answer}");
        if *what == "LIST packs" {
            for t in &theirs {
                assert!(
                    !answer.contains(t.as_str()),
                    "site-2's pack listed: {answer}"
                );
            }
            for m in &mine {
                assert!(
                    answer.contains(m.as_str()),
                    "site-1's pack {m} missing: {answer}"
                );
            }
        }
    }
    g.client
        .send(&ferry_proto::Frame::Bye)
        .expect("write to the gate");
    let end = g.client.replies_until_closed(Duration::from_secs(30));
    assert!(end[0].text().starts_with("ByeOk"), "{end:?}");
    drop(g);
    // A HELLO naming site-2, or site-2's session, at site-1's gate ends the session.
    for (hello, want) in [
        (hostile::hello("", "site-2"), "is not this session's site"),
        (
            hostile::hello(&two.session, "site-1"),
            "is not this gate's session",
        ),
    ] {
        let g = raw(&cloud, &one, &hello);
        assert!(g.first.text().contains(want), "{:?}", g.first);
        eprintln!("site-1's gate, foreign HELLO: {}", g.first.text());
    }
    // And the other way round: site-2's gate does not serve site-1.
    let g = raw(&cloud, &two, &hostile::hello("", "site-1"));
    assert!(
        g.first.text().contains("is not this session's site"),
        "{:?}",
        g.first
    );
    drop(g);
    assert!(bucket(&cloud) == before, "an object of the bucket changed");

    // 3. Both slots held: the runs of six sites, started at once, are each refused naming the
    // limit; the spool keeps each run; only the held sessions exist in the cloud.
    let rest: Vec<&Site> = sites[2..].iter().collect();
    for s in &rest {
        std::fs::write(
            s.src.join("var/log/today.log"),
            format!("{} day 2\n", s.name),
        )
        .expect("write");
    }
    let (results, _) = backups_at_once(&cloud, &rest);
    for (s, (code, out)) in rest.iter().zip(&results) {
        assert_eq!(*code, 1, "{}: {out}", s.name);
        for want in [
            "Ferry.SessionLimit: session limit reached: 2 concurrent session(s) allowed and 2 already active",
            one.session.as_str(),
            two.session.as_str(),
            "(max_sessions in the infra config)",
            "no jump box; the spool keeps",
        ] {
            assert!(out.contains(want), "{}: {want:?} not in: {out}", s.name);
        }
    }
    eprintln!("refused: {}", results[0].1.trim());
    assert_eq!(cloud.leftovers(), (2, 2, 2), "{}", cloud.log());

    // The held sessions cleaned: nothing is left; two refused sites' next runs (within the
    // limit) upload what their spools kept and their own, and restore byte for byte.
    for h in [&one, &two] {
        let r = cloud.invoke(
            "ferry-clean",
            &serde_json::json!({"session": h.session}),
            Some(&creds),
        );
        assert!(r["error"].is_null(), "{r:#}\n{}", cloud.log());
    }
    assert_eq!(cloud.leftovers(), (0, 0, 0), "{}", cloud.log());
    let (results, _) = backups_at_once(&cloud, &rest[..2]);
    for (s, (code, out)) in rest.iter().zip(&results) {
        assert_eq!(*code, 0, "{}: {out}\n{}", s.name, cloud.log());
        assert!(out.contains("The spool still holds"), "{}: {out}", s.name);
        restores(&cloud, s);
    }
    assert_eq!(cloud.leftovers(), (0, 0, 0), "{}", cloud.log());
}
