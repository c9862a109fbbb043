//! A hostile backup VM against the real `ferry-gate serve` (issue 15): the test kit's
//! [`ferry_testkit::hostile`] client speaks the protocol wrongly on purpose, each trick to a
//! fresh gate started as the box's forced command starts it (`ferry-gate serve --config`, the
//! session on its stdin/stdout, the jump-box role's credentials in its environment) putting
//! into the kit's moto with IAM checks on. Every trick must get a clear refusal or ERROR, the
//! bucket (both sites, every object byte for byte) must be unchanged, and the spool empty.
//! Then the bounds: a stream of 200 MB refused and oversized bytes, thousands of refused
//! long-named requests (peak RSS from /proc/<pid>/status VmHWM, spool size), and slowloris
//! clients cut by the session's expiry. docs/SECURITY.md ("Hostile backup VM") has the table.
//!
//! (What other tests already cover is not repeated here: wrong object kind by header, non-Ferry
//! bytes, END before the announced size, an expired session, a config replaced by another,
//! a stall mid-object at expiry — `through_sshd.rs` and the gate's unit tests.)

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

mod common;

use common::s3_at as s3;
use ferry_repo::format::ObjectKind;
use ferry_repo::storage::Storage;
use ferry_repo::storage::conformance::object as obj;

use ferry_testkit::hostile::{self, Hostile, Known, Reply};
use ferry_testkit::{JumpboxCreds, Moto};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BUCKET: &str = "ferry-backup";
const SITE: &str = "home";
const OTHER: &str = "other";
const SESSION: &str = "s-hostile";
const MAX_OBJECT: u64 = 4 << 20;
const MAX_SESSION: u64 = 16 << 20;

struct Rig {
    moto: Moto,
    creds: JumpboxCreds,
    dir: tempfile::TempDir,
    known: Known,
}

/// moto with the jump-box role, a pack and a config at the site, a pack at the other site.
fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("spool")).unwrap();
    let moto = Moto::start().unwrap();
    let creds = moto.jumpbox_setup(BUCKET).unwrap();
    let existing = obj(ObjectKind::Pack, &[1u8; 50_000]);
    let (_, config) = obj(ObjectKind::Config, b"the repository's params");
    let home = s3(&moto, &creds.admin, SITE);
    home.put_if_absent(ObjectKind::Pack, &existing.0, &existing.1)
        .unwrap();
    home.put_if_absent(ObjectKind::Config, "config", &config)
        .unwrap();
    let theirs = obj(ObjectKind::Pack, b"the other site's pack");
    s3(&moto, &creds.admin, OTHER)
        .put_if_absent(ObjectKind::Pack, &theirs.0, &theirs.1)
        .unwrap();
    let (_, config2) = obj(ObjectKind::Config, b"a hostile config");
    let known = Known {
        site: SITE.into(),
        other_site: OTHER.into(),
        session: SESSION.into(),
        existing,
        fresh: obj(ObjectKind::Pack, &[2u8; 30_000]),
        config: config2,
    };
    Rig {
        moto,
        creds,
        dir,
        known,
    }
}

impl Rig {
    /// Every object of the bucket (both sites) but the gate's audit records, as the operator
    /// reads them.
    fn bucket(&self) -> BTreeMap<String, Vec<u8>> {
        let all = s3(&self.moto, &self.creds.admin, "");
        all.list_keys("")
            .unwrap()
            .into_iter()
            .filter(|k| !k.starts_with(&format!("{SITE}/audit/")))
            .map(|k| {
                let b = all.get_key(&k).unwrap();
                (k, b)
            })
            .collect()
    }

    /// The gate's audit records (key, text).
    fn audit(&self) -> Vec<(String, String)> {
        let home = s3(&self.moto, &self.creds.admin, SITE);
        home.list_keys("audit/")
            .unwrap()
            .into_iter()
            .map(|k| {
                let t = String::from_utf8(home.get_key(&format!("audit/{k}")).unwrap()).unwrap();
                (k, t)
            })
            .collect()
    }

    fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    /// Bytes in the spool dir (the gate's spool files).
    fn spooled(&self) -> u64 {
        std::fs::read_dir(self.spool())
            .unwrap()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    fn config(&self, name: &str, expires: &str) -> PathBuf {
        let p = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &p,
            format!(
                "bucket = \"{BUCKET}\"\nsite = \"{SITE}\"\nsession = \"{SESSION}\"\n\
                 expires = \"{expires}\"\nmax_object_size = {MAX_OBJECT}\n\
                 max_session_bytes = {MAX_SESSION}\n\
                 allowed_kinds = [\"pack\", \"index\", \"snapshot\"]\nspool_dir = \"{}\"\n",
                self.spool().display()
            ),
        )
        .unwrap();
        p
    }

    /// `ferry-gate serve --config` as the forced command runs it.
    fn gate(&self, config: &Path) -> Gate {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferry-gate"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.moto.env_with(&self.creds.jumpbox))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The journal (stderr) is drained, its last 64 KiB kept: a gate must never block on it.
        let journal = Arc::new(Mutex::new(Vec::new()));
        let mut err = child.stderr.take().unwrap();
        let j = journal.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut j = j.lock().unwrap();
                j.extend_from_slice(&buf[..n]);
                let over = j.len().saturating_sub(65536);
                j.drain(..over);
            }
        });
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        Gate {
            client: Hostile::new(stdin, stdout),
            child,
            journal,
        }
    }
}

struct Gate {
    client: Hostile<ChildStdin>,
    child: Child,
    journal: Arc<Mutex<Vec<u8>>>,
}

impl Gate {
    /// The gate's exit code once it ends (at most `within`; -1 if it had to be killed).
    fn exit(&mut self, within: Duration) -> i32 {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            if t0.elapsed() > within {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return -1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peak resident set of the gate so far (VmHWM), in bytes.
    fn peak_rss(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = s
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb * 1024
    }

    fn journal(&self) -> String {
        String::from_utf8_lossy(&self.journal.lock().unwrap()).into_owned()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn every_trick_is_refused_and_leaves_the_bucket_unchanged() {
    let r = rig();
    let before = r.bucket();
    assert_eq!(before.len(), 3, "{:?}", before.keys());
    let cfg = r.config("gate", "2999-01-01T00:00:00Z");
    let tricks = hostile::tricks(&r.known);
    let mut audits = 0;
    for t in &tricks {
        let mut g = r.gate(&cfg);
        // The gate may end the session before reading everything: a broken pipe is expected.
        let _ = g.client.raw(&t.bytes);
        if t.then_close {
            g.client.close();
        } else if !t.ends_session {
            let _ = g.client.send(&ferry_proto::Frame::Bye);
        }
        let replies = g.client.replies_until_closed(Duration::from_secs(20));
        let texts: Vec<String> = replies.iter().map(Reply::text).collect();
        let all = texts.join(" | ");
        let ctx = format!(
            "trick {} ({}): {all}\njournal:\n{}",
            t.name,
            t.tries,
            g.journal()
        );
        assert!(all.contains(t.answer), "{ctx}");
        assert_eq!(*replies.last().unwrap(), Reply::Closed, "{ctx}");
        let code = g.exit(Duration::from_secs(20));
        let answers: Vec<&String> = texts.iter().filter(|t| t.as_str() != "closed").collect();
        if t.ends_session {
            assert_eq!(code, 1, "{ctx}");
            if !t.then_close {
                // HELLO_OK (unless refused at HELLO), then one ERROR naming the problem.
                assert!(answers.last().unwrap().starts_with("Error"), "{ctx}");
            }
        } else {
            assert_eq!(code, 0, "{ctx}");
            let n = answers.len();
            assert!(n >= 3, "{ctx}");
            assert!(answers[0].starts_with("HelloOk"), "{ctx}");
            assert!(answers[n - 1].starts_with("ByeOk"), "{ctx}");
            assert!(answers[n - 2].contains(t.answer), "{ctx}");
        }
        assert_eq!(r.spooled(), 0, "{ctx}: a spool file was left");
        let after = r.bucket();
        assert_eq!(
            after.keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>(),
            "{ctx}"
        );
        assert!(after == before, "{ctx}: an object's bytes changed");
        // Every session that got past reading its first frame leaves one audit record.
        let n = r.audit().len();
        assert!(n == audits + 1, "{ctx}: {n} audit records, {audits} before");
        audits = n;
        eprintln!(
            "{:<22} {}",
            t.name,
            answers.last().map_or("", |s| s.as_str())
        );
    }
    assert!(tricks.len() >= 30, "{} tricks", tricks.len());

    // LIST answers only this site's names of an allowed kind (one pack at home, none of the
    // other site's); a continuation token the gate
    // did not issue in this session never reaches S3 (no S3 error, no retries: a one-line
    // refusal at once).
    let theirs: Vec<String> = before
        .keys()
        .filter(|k| k.starts_with("other/"))
        .cloned()
        .collect();
    for token in [String::new(), theirs[0].clone(), "s-hostile-1".to_string()] {
        let mut g = r.gate(&cfg);
        let _ = g.client.raw(&hostile::hello("", SITE));
        let t0 = Instant::now();
        let _ = g.client.raw(&hostile::list("pack", &token));
        let _ = g.client.send(&ferry_proto::Frame::Bye);
        let replies = g.client.replies_until_closed(Duration::from_secs(20));
        let took = t0.elapsed();
        let all: Vec<String> = replies.iter().map(Reply::text).collect();
        let all = all.join(" | ");
        if token.is_empty() {
            assert!(
                all.contains("Names { count: 1, continuation: \"\","),
                "{all}"
            );
        } else {
            assert!(
                all.contains("was not issued by this session"),
                "token {token:?}: {all}"
            );
            // Refused before anything is listed (the message only quotes the client's token).
            assert!(!all.contains("Names"), "{all}");
            assert!(
                !all.contains("S3") && !all.contains("service error"),
                "{all}"
            );
            assert!(took < Duration::from_secs(5), "{took:?}: {all}");
        }
        g.exit(Duration::from_secs(20));
        eprintln!("LIST token {token:?}: {all}");
    }
    assert!(r.bucket() == before);
}

/// Reads /proc/<pid>/status VmHWM of the gate and the spool dir's size while a client streams
/// 200 MB it may not store: after the session's byte budget is spent, an over-budget PUT and an
/// oversized PUT streamed in full. The gate stops accepting (REFUSED), never spools refused
/// bytes, and its memory stays bounded.
#[test]
fn a_flood_of_refused_and_oversized_bytes_keeps_the_gates_memory_and_spool_bounded() {
    let r = rig();
    let cfg = r.config("gate", "2999-01-01T00:00:00Z");
    let mut g = r.gate(&cfg);
    g.client.raw(&hostile::hello("", SITE)).unwrap();
    // The session's byte budget: four packs of 4,000,000 bytes fit in 16 MiB, a fifth does not.
    let packs: Vec<_> = (0..5u8)
        .map(|i| obj(ObjectKind::Pack, &vec![10 + i; 4_000_000 - 6]))
        .collect();
    let spool_peak = Arc::new(Mutex::new(0u64));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, stop, dir) = (spool_peak.clone(), stop.clone(), r.spool());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let n: u64 = std::fs::read_dir(&dir)
                    .map(|rd| {
                        rd.flatten()
                            .filter_map(|e| e.metadata().ok())
                            .map(|m| m.len())
                            .sum()
                    })
                    .unwrap_or(0);
                let mut p = peak.lock().unwrap();
                *p = (*p).max(n);
                drop(p);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    for (n, b) in &packs {
        g.client
            .raw(&hostile::put("pack", n, b.len() as u64, b))
            .unwrap();
    }
    // 200 MB announced and sent in 1 MiB DATA frames: refused at PUT, read and dropped.
    const FLOOD: u64 = 200_000_000;
    let (fname, _) = obj(ObjectKind::Pack, b"flood");
    g.client
        .send(&ferry_proto::Frame::Put {
            kind: "pack".into(),
            name: fname.clone(),
            size: FLOOD,
        })
        .unwrap();
    let chunk = vec![0x5au8; ferry_proto::MAX_DATA];
    let t0 = Instant::now();
    let mut sent = 0u64;
    while sent < FLOOD {
        let n = (FLOOD - sent).min(chunk.len() as u64) as usize;
        g.client
            .send(&ferry_proto::Frame::Data(&chunk[..n]))
            .unwrap();
        sent += n as u64;
        assert!(t0.elapsed() < Duration::from_secs(60), "flood too slow");
    }
    g.client.send(&ferry_proto::Frame::End).unwrap();
    // Every answer but BYE's, then the peak (VmHWM is gone once the process has exited).
    let mut replies: Vec<String> = (0..7)
        .map(|_| g.client.reply(Duration::from_secs(60)).text())
        .collect();
    let peak = g.peak_rss();
    g.client.send(&ferry_proto::Frame::Bye).unwrap();
    replies.extend(
        g.client
            .replies_until_closed(Duration::from_secs(30))
            .iter()
            .map(Reply::text),
    );
    assert_eq!(g.exit(Duration::from_secs(20)), 0, "{replies:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let spool_peak = *spool_peak.lock().unwrap();
    let flood_secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "gate VmHWM {:.1} MiB, spool peak {} bytes, {} MB refused in {flood_secs:.1} s",
        peak as f64 / (1 << 20) as f64,
        spool_peak,
        FLOOD / 1_000_000
    );
    assert!(replies[0].starts_with("HelloOk"), "{replies:?}");
    assert!(
        replies[1..5].iter().all(|r| r.starts_with("Stored")),
        "{replies:?}"
    );
    assert!(
        replies[5].contains("would exceed the session's limit of 16777216 bytes"),
        "{replies:?}"
    );
    assert!(
        replies[6].contains(&fname) && replies[6].contains("exceeds the session's object limit"),
        "{replies:?}"
    );
    assert!(replies[7].starts_with("ByeOk"), "{replies:?}");
    // Bounds: memory well under the 1 GiB box whatever is streamed; the spool never holds
    // more than one object of at most max_object_size, and nothing after the session.
    assert!(peak < 64 << 20, "gate peak RSS {peak} bytes");
    assert!(spool_peak <= MAX_OBJECT, "spool peak {spool_peak} bytes");
    assert_eq!(r.spooled(), 0);
    let stored: Vec<String> = s3(&r.moto, &r.creds.admin, SITE)
        .list(ObjectKind::Pack)
        .unwrap();
    let mut want: Vec<String> = packs[..4].iter().map(|p| p.0.clone()).collect();
    want.push(r.known.existing.0.clone());
    want.sort();
    assert_eq!(stored, want);
}

/// 3,000 refused PUTs with 4,000-byte names (each line of the audit record over 4 KB, 12 MB
/// in all): the gate's memory stays bounded and its audit record is capped, saying so.
#[test]
fn thousands_of_refused_long_named_requests_keep_the_gates_memory_bounded() {
    let r = rig();
    let cfg = r.config("gate", "2999-01-01T00:00:00Z");
    let mut g = r.gate(&cfg);
    let (fname, fbytes) = r.known.fresh.clone();
    let mut stream = hostile::hello("", SITE);
    const N: usize = 3000;
    for i in 0..N {
        let name = format!("{i:04}{}", "g".repeat(3996));
        stream.extend(hostile::put("pack", &name, 6, &fbytes[..6]));
    }
    stream.extend(hostile::put("pack", &fname, fbytes.len() as u64, &fbytes));
    // The answers are read on the client's thread while the stream is written.
    let t0 = Instant::now();
    g.client.raw(&stream).unwrap();
    let replies: Vec<Reply> = (0..N + 2)
        .map(|_| g.client.reply(Duration::from_secs(60)))
        .collect();
    let took = t0.elapsed();
    let peak = g.peak_rss();
    g.client.send(&ferry_proto::Frame::Bye).unwrap();
    let end = g.client.replies_until_closed(Duration::from_secs(30));
    assert_eq!(g.exit(Duration::from_secs(20)), 0, "{end:?}");
    assert!(end[0].text().starts_with("ByeOk"), "{end:?}");
    let refused = replies
        .iter()
        .filter(|r| r.text().contains("is not a lowercase hex SHA-256"))
        .count();
    assert_eq!(refused, N);
    assert!(
        replies[N + 1].text().starts_with("Stored"),
        "the session still works: {:?}",
        replies[N + 1]
    );
    eprintln!(
        "{N} refused long-named PUTs in {:.1} s: gate VmHWM {:.1} MiB",
        took.as_secs_f64(),
        peak as f64 / (1 << 20) as f64
    );
    assert!(peak < 64 << 20, "gate peak RSS {peak} bytes");
    let audit = r.audit();
    assert_eq!(audit.len(), 1);
    let text = &audit[0].1;
    assert!(
        text.len() <= ferry_gate::AUDIT_RECORD_MAX + 8192,
        "{} bytes",
        text.len()
    );
    let last = text.lines().last().unwrap();
    assert!(last.contains("audit lines beyond"), "{last}");
}

/// Clients that send one byte a second — inside HELLO, and inside an object's DATA — hold the
/// gate only until the session's expiry: it ends both (exit 3), stores its audit record and
/// leaves no spool file.
#[test]
fn slowloris_clients_are_ended_by_the_session_expiry() {
    let r = rig();
    let expires = time::OffsetDateTime::now_utc() + time::Duration::seconds(8);
    let expires_s = expires
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let cfg = r.config("slow", &expires_s);
    let mut a = r.gate(&cfg);
    let mut b = r.gate(&cfg);
    let hello = hostile::hello("", SITE);
    // b: HELLO, then a PUT of 1 MB whose bytes trickle in one-byte DATA frames.
    b.client.raw(&hello).unwrap();
    let (fname, _) = r.known.fresh.clone();
    b.client
        .send(&ferry_proto::Frame::Put {
            kind: "pack".into(),
            name: fname,
            size: 1_000_000,
        })
        .unwrap();
    let t0 = Instant::now();
    let mut i = 0;
    let limit = Duration::from_secs(30);
    let (mut code_a, mut code_b) = (None, None);
    while (code_a.is_none() || code_b.is_none()) && t0.elapsed() < limit {
        if code_a.is_none() {
            let _ = a.client.raw(&hello[i % hello.len()..][..1]);
        }
        if code_b.is_none() {
            let _ = b.client.send(&ferry_proto::Frame::Data(&[7u8]));
        }
        i += 1;
        std::thread::sleep(Duration::from_secs(1));
        if code_a.is_none() {
            code_a = a.child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1));
        }
        if code_b.is_none() {
            code_b = b.child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1));
        }
    }
    let ended = time::OffsetDateTime::now_utc();
    eprintln!(
        "slowloris: ended {:.1} s after the expiry, {i} bytes each",
        (ended - expires).as_seconds_f64()
    );
    assert_eq!(code_a, Some(3), "trickled HELLO: {}", a.journal());
    assert_eq!(code_b, Some(3), "trickled DATA: {}", b.journal());
    assert!(ended - expires < time::Duration::seconds(5));
    assert_eq!(r.spooled(), 0, "a spool file was left");
    let audit = r.audit();
    assert_eq!(audit.len(), 2, "{audit:?}");
    for (_, text) in &audit {
        assert!(text.contains("\"outcome\":\"expired\""), "{text}");
    }
    assert_eq!(
        s3(&r.moto, &r.creds.admin, SITE)
            .list(ObjectKind::Pack)
            .unwrap(),
        vec![r.known.existing.0.clone()]
    );
}
