#![allow(clippy::unwrap_used, missing_docs)] // a benchmark program: it fails by panicking
//! A simulated year of a homelab backed up daily, with a retention policy and a weekly
//! `forget --prune` (the benchmark behind `scripts/bench-year.sh`; not a test).
//!
//! Five hosts, each with configs that change now and then, a log that grows every day and is
//! rotated weekly (the rotated copy compressed, four kept), and an application database
//! rewritten in places. At full scale the hosts change about 200 MiB a day; `--scale` shrinks
//! every size (and the pack size) by the same factor, so object and request counts stay those
//! of full scale and bytes are multiplied back by 1/scale in the table.
//!
//! Ferry runs through the engine into an in-memory store that counts every call (the "faster
//! path" of the issue). S3 requests of a cloud run are modelled from it: one PUT per object
//! the run stores, plus per run one PUT (the gate's audit record) and one LIST (the packs,
//! before the snapshot); `config` goes once per spool. This is what the local cloud's demo
//! reports for a second run (`scripts/demo.sh`: "3 objects uploaded; S3 requests by the
//! gate: 3 PUT, 1 LIST"; the audit record is the gate's own PUT). The operator's forget and prune talk to S3 directly: their
//! store calls are their requests. With `--restic PATH`, restic backs up the same tree on the
//! same simulated days (`--time`) into a local repository and runs `forget --prune` with the
//! same policy on the same days.
//!
//! With `--cloud HELPER` (`scripts/bench-year-cloud.sh`, which starts the local cloud and is
//! the helper), every simulated day is also backed up by the real `ferry backup --config`
//! through the local cloud (moto, the real Lambda functions, a jump box with sshd and the gate)
//! into its own repository, and each forget + prune is repeated there by the real `ferry
//! forget ID…` (the snapshots of the days the fast path's policy removed) and `ferry prune`
//! against `s3://`. moto's own request log counts what reached S3, and a table compares, week by
//! week, the requests the fast path models with the ones measured (the issue's validation of
//! the fast path against a real local-cloud run of the first month). The helper's verbs:
//! `backup` (prints the new snapshot's id), `forget ID…`, `prune`, `requests` (two lines,
//! `backup|state PUT COPY LIST GET DELETE`: moto's count so far per bucket).
//!
//! ```text
//! cargo run --release -p ferry-repo --example bench_year -- --days 365 --scale 0.02 \
//!     --dir /tmp/ferry-year [--restic restic] [--cloud HELPER] [--log-mib 24] [--db-mib 16] \
//!     [--prune-every 7] [--keep 7,4,6]
//! ```

use ferry_repo::backup::local::backup_paths;
use ferry_repo::format::ObjectKind;
use ferry_repo::retention::policy::{GroupBy, Keep, KeepPolicy};
use ferry_repo::retention::{forget, prune};
use ferry_repo::storage::{MemCalls, MemStorage};
use ferry_repo::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

const DAY_NS: i64 = 86_400_000_000_000;
const MIB: f64 = 1024.0 * 1024.0;
const HOSTS: usize = 5;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Log-like text: lines of words from a small vocabulary (compresses about 4x).
    fn text(&mut self, n: usize, day: u64) -> Vec<u8> {
        const WORDS: [&str; 24] = [
            "kernel:",
            "sshd[",
            "accepted",
            "publickey",
            "for",
            "root",
            "from",
            "192.168.1.",
            "port",
            "session",
            "opened",
            "closed",
            "cron[",
            "CMD",
            "(run-parts",
            "/etc/cron.hourly)",
            "systemd[1]:",
            "Started",
            "Finished",
            "nginx:",
            "GET",
            "/index.html",
            "200",
            "dhcpd:",
        ];
        let mut out = Vec::with_capacity(n + 80);
        while out.len() < n {
            out.extend_from_slice(format!("day {day} {:06} ", self.below(1_000_000)).as_bytes());
            for _ in 0..(4 + self.below(8)) {
                out.extend_from_slice(WORDS[self.below(24) as usize].as_bytes());
                out.extend_from_slice(format!("{} ", self.below(300)).as_bytes());
            }
            out.push(b'\n');
        }
        out.truncate(n);
        out
    }
}

struct Sizes {
    /// Bytes appended to each host's log per day.
    log_per_day: usize,
    /// Bytes of the database file rewritten per day, per host.
    db_per_day: usize,
    db_size: usize,
    configs: usize,
}

fn write(p: &Path, b: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, b).unwrap();
}

/// Day 0: create the tree.
fn create(root: &Path, s: &Sizes, rng: &mut Rng) {
    for h in 0..HOSTS {
        let host = root.join(format!("host{h}"));
        for c in 0..s.configs {
            let len = 500 + rng.below(6_000) as usize;
            write(
                &host.join(format!("etc/app{}/conf{c}.conf", c % 7)),
                &rng.text(len, 0),
            );
        }
        if s.db_per_day > 0 {
            write(&host.join("var/lib/app/db.bin"), &rng.bytes(s.db_size));
        }
        write(&host.join("var/log/syslog"), &rng.text(s.log_per_day, 0));
    }
}

/// One day of change on every host.
fn change(root: &Path, s: &Sizes, rng: &mut Rng, day: u64) {
    use std::io::{Seek, SeekFrom, Write};
    for h in 0..HOSTS {
        let host = root.join(format!("host{h}"));
        // Configs: now and then one is edited.
        if rng.below(3) == 0 {
            let c = rng.below(s.configs as u64);
            let p = host.join(format!("etc/app{}/conf{c}.conf", c % 7));
            let mut b = std::fs::read(&p).unwrap();
            b.extend_from_slice(format!("# edited on day {day}\n").as_bytes());
            write(&p, &b);
        }
        // The database: one region rewritten (pages of a table that changed).
        if s.db_per_day > 0 {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(host.join("var/lib/app/db.bin"))
                .unwrap();
            let at = rng.below((s.db_size - s.db_per_day) as u64);
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(&rng.bytes(s.db_per_day)).unwrap();
        }
        // The log: grows every day, rotated weekly (syslog.1, then compressed, four kept).
        let log = host.join("var/log");
        if day.is_multiple_of(7) {
            let _ = std::fs::remove_file(log.join("syslog.5.gz"));
            for i in (2..5).rev() {
                let _ = std::fs::rename(
                    log.join(format!("syslog.{i}.gz")),
                    log.join(format!("syslog.{}.gz", i + 1)),
                );
            }
            if let Ok(old) = std::fs::read(log.join("syslog.1")) {
                // gzip output looks random: model it as incompressible, a quarter the size.
                let _ = old;
                write(&log.join("syslog.2.gz"), &rng.bytes(old.len() / 4));
            }
            let _ = std::fs::rename(log.join("syslog"), log.join("syslog.1"));
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log.join("syslog"))
            .unwrap();
        f.write_all(&rng.text(s.log_per_day, day)).unwrap();
    }
}

/// (bytes, objects, bytes under `trash/`: packs a prune moved, waiting for their grace period
/// and the next prune).
fn stored(store: &MemStorage) -> (u64, u64, u64) {
    let keys = store.keys();
    let size = |k: ObjectKind, n: &str| store.object(k, n).map(|b| b.len() as u64).unwrap_or(0);
    let bytes = keys.iter().map(|(k, n)| size(*k, n)).sum();
    let trash = keys
        .iter()
        .filter(|(k, _)| *k == ObjectKind::Trash)
        .map(|(k, n)| size(*k, n))
        .sum();
    (bytes, keys.len() as u64, trash)
}

fn du(p: &Path) -> (u64, u64) {
    let mut bytes = 0;
    let mut files = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let m = e.metadata().unwrap();
                if m.is_dir() {
                    stack.push(e.path());
                } else {
                    bytes += m.len();
                    files += 1;
                }
            }
        }
    }
    (bytes, files)
}

#[derive(Default, Clone, Copy)]
struct Month {
    put: u64,
    list: u64,
    get: u64,
    copy: u64,
    delete: u64,
    prunes: u64,
    days: u64,
    byte_days: u64,
    trash_byte_days: u64,
    peak: u64,
    restic_byte_days: u64,
    restic_files: u64,
}

fn diff(a: MemCalls, b: MemCalls) -> MemCalls {
    MemCalls {
        puts: b.puts - a.puts,
        lists: b.lists - a.lists,
        gets: b.gets - a.gets,
        get_ranges: b.get_ranges - a.get_ranges,
        begin_puts: b.begin_puts - a.begin_puts,
        barriers: b.barriers - a.barriers,
        deletes: b.deletes - a.deletes,
        copies: b.copies - a.copies,
    }
}

/// S3 requests by class (moto's count of one bucket, or the fast path's model of it): the PUT
/// class (PUT, COPY, POST), LIST and GET. DELETE is free.
#[derive(Default, Clone, Copy, Debug)]
struct Req {
    put: u64,
    list: u64,
    get: u64,
}

impl Req {
    fn sub(self, o: Req) -> Req {
        Req {
            put: self.put - o.put,
            list: self.list - o.list,
            get: self.get - o.get,
        }
    }
    fn add(&mut self, o: Req) {
        *self = Req {
            put: self.put + o.put,
            list: self.list + o.list,
            get: self.get + o.get,
        };
    }
    fn from_calls(c: &MemCalls) -> Req {
        Req {
            put: c.puts + c.copies,
            list: c.lists,
            get: c.gets + c.get_ranges,
        }
    }
}

/// `--cloud HELPER`: the same days through the real local cloud (module doc).
struct Cloud {
    helper: String,
    /// The cloud snapshot of each simulated day.
    ids: Vec<String>,
    /// Per week: [model backups, measured backups, model forget+prune, measured forget+prune,
    /// measured state bucket].
    weeks: Vec<[Req; 5]>,
}

impl Cloud {
    fn call(&self, args: &[&str]) -> String {
        let out = Command::new(&self.helper).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{} {}: {}",
            self.helper,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// moto's count so far: (backup bucket, state bucket).
    fn requests(&self) -> (Req, Req) {
        let text = self.call(&["requests"]);
        let mut by = std::collections::HashMap::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let n = |i: usize| f[i].parse::<u64>().unwrap();
            let r = Req {
                put: n(1) + n(2),
                list: n(3),
                get: n(4),
            };
            by.insert(f[0].to_string(), r);
        }
        (by["backup"], by["state"])
    }

    fn week(&mut self, day: u64) -> &mut [Req; 5] {
        let w = (day / 7) as usize;
        if self.weeks.len() <= w {
            self.weeks.resize(w + 1, Default::default());
        }
        &mut self.weeks[w]
    }

    fn print(&self) {
        println!(
            "\nThe fast path's model against the local cloud (moto's request log), per simulated week:\n"
        );
        println!(
            "| week | backups PUT model / measured | backups LIST | backups GET | forget+prune PUT+COPY model / measured | forget+prune LIST | forget+prune GET | state bucket PUT / LIST / GET (measured) |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        let mut total = [Req::default(); 5];
        for (w, r) in self.weeks.iter().enumerate() {
            for (t, x) in total.iter_mut().zip(r) {
                t.add(*x);
            }
            Self::row(&(w + 1).to_string(), r);
        }
        Self::row("total", &total);
    }

    fn row(label: &str, r: &[Req; 5]) {
        let [mb, cb, mp, cp, st] = r;
        println!(
            "| {label} | {} / {} | {} / {} | {} / {} | {} / {} | {} / {} | {} / {} | {} / {} / {} |",
            mb.put,
            cb.put,
            mb.list,
            cb.list,
            mb.get,
            cb.get,
            mp.put,
            cp.put,
            mp.list,
            cp.list,
            mp.get,
            cp.get,
            st.put,
            st.list,
            st.get,
        );
    }
}

fn main() {
    let mut days = 365u64;
    let mut scale = 0.02f64;
    let mut dir = PathBuf::from("/tmp/ferry-year");
    let mut restic: Option<String> = None;
    let mut cloud: Option<Cloud> = None;
    let mut log_mib = 24.0f64;
    let mut db_mib = 16.0f64;
    let mut prune_every = 7u64;
    let mut keep = [7u32, 4, 6];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--days" => days = args.next().unwrap().parse().unwrap(),
            "--scale" => scale = args.next().unwrap().parse().unwrap(),
            "--dir" => dir = args.next().unwrap().into(),
            "--restic" => restic = args.next(),
            "--log-mib" => log_mib = args.next().unwrap().parse().unwrap(),
            "--db-mib" => db_mib = args.next().unwrap().parse().unwrap(),
            "--prune-every" => prune_every = args.next().unwrap().parse().unwrap(),
            "--keep" => {
                let v: Vec<u32> = args
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|n| n.parse().unwrap())
                    .collect();
                keep = [v[0], v[1], v[2]];
            }
            "--cloud" => {
                cloud = Some(Cloud {
                    helper: args.next().unwrap(),
                    ids: Vec::new(),
                    weeks: Vec::new(),
                })
            }
            other => panic!("unknown argument {other}"),
        }
    }
    // Full scale by default: 200 MiB of change a day over 5 hosts: 24 MiB of log text and
    // 16 MiB of database rewrites per host (`--log-mib`, `--db-mib`; `--db-mib 0`: no database,
    // the issue's homelab of logs and configs).
    let full = |b: f64| (b * scale) as usize;
    let sizes = Sizes {
        log_per_day: full(log_mib * MIB),
        db_per_day: if db_mib > 0.0 {
            full(db_mib * MIB).max(64 * 1024)
        } else {
            0
        },
        db_size: full(512.0 * MIB).max(1 << 20),
        configs: 200,
    };
    let _ = std::fs::remove_dir_all(&dir);
    let tree = dir.join("tree");
    let mut rng = Rng(20261202);
    create(&tree, &sizes, &mut rng);

    let store = MemStorage::named("year");
    let key = MasterKey::generate();
    let repo = Repository::init(Arc::new(store.clone()), &key.put_key()).unwrap();
    let pack_size = ((32.0 * MIB * scale) as usize).max(1024 * 1024);
    let policy = KeepPolicy {
        daily: Some(Keep::N(keep[0])),
        weekly: Some(Keep::N(keep[1])),
        monthly: Some(Keep::N(keep[2])),
        ..Default::default()
    };
    let start_ns: i64 = 1_767_225_600 * 1_000_000_000 + 3 * 3_600_000_000_000; // 2026-01-01 03:00 UTC
    if let Some(r) = &restic {
        let status = Command::new(r)
            .args(["init", "-q", "--repository-version", "2", "-r"])
            .arg(dir.join("restic"))
            .env("RESTIC_PASSWORD", "bench-year")
            .status()
            .unwrap();
        assert!(status.success(), "restic init");
    }

    println!(
        "policy: {} (forget --prune every {prune_every} days); change per host and day: {log_mib} MiB of log, {db_mib} MiB of database; scale {scale} (bytes shown at full scale); pack size {} KiB",
        policy.describe(),
        pack_size / 1024
    );
    println!(
        "| month | ferry stored, month average | of which trash/ | peak | objects | S3 PUT+COPY | LIST | GET | prunes | snapshots | restic stored, month average | restic files |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut month = Month::default();
    for day in 0..days {
        let now = start_ns + day as i64 * DAY_NS;
        if day > 0 {
            change(&tree, &sizes, &mut rng, day);
        }
        let before = store.calls();
        let snap = backup_paths(
            &repo,
            &key.put_key(),
            std::slice::from_ref(&tree),
            BackupOptions {
                host: Some("homelab".into()),
                cache_dir: Some(dir.join("cache")),
                pack_size,
                time_ns: Some(now),
                ..Default::default()
            },
            Arc::new(NoProgress),
        )
        .unwrap();
        let c = diff(before, store.calls());
        let _ = snap;
        // The cloud run's requests: each stored object a PUT, plus the audit record and the
        // LIST of packs (module doc). The engine's own calls here go to the spool, not S3.
        month.put += c.puts + 1;
        month.list += 1;
        month.get += 1; // the jump box fetches the gate artifact
        if let Some(cl) = &mut cloud {
            let (b0, s0) = cl.requests();
            let id = cl.call(&["backup"]).trim().to_string();
            assert!(
                !id.is_empty(),
                "the cloud run of day {day} stored no snapshot"
            );
            cl.ids.push(id);
            let (b1, s1) = cl.requests();
            let model = Req {
                put: c.puts + 1,
                list: 1,
                ..Default::default()
            };
            let w = cl.week(day);
            w[0].add(model);
            w[1].add(b1.sub(b0));
            w[4].add(s1.sub(s0));
        }
        if let Some(r) = &restic {
            let t = time::OffsetDateTime::from_unix_timestamp(now / 1_000_000_000).unwrap();
            let when = format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
            let out = Command::new(r)
                .args(["backup", "-q", "--host", "homelab", "--time", &when, "-r"])
                .arg(dir.join("restic"))
                .arg(&tree)
                .env("RESTIC_PASSWORD", "bench-year")
                .env("RESTIC_CACHE_DIR", dir.join("restic-cache"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "restic backup: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if day % prune_every == prune_every - 1 {
            // forget + prune, as the operator's timer does (`ferry schedule install
            // --retention`: weekly by default).
            let before = store.calls();
            let reader = repo.reader(&key).unwrap();
            let snaps = reader.snapshots().unwrap();
            let plan = forget::plan_policy(&snaps, &policy, &GroupBy::default()).unwrap();
            forget::forget(&repo, &key, &plan.remove, plan.kept, &policy.describe()).unwrap();
            let mut o = prune::PruneOptions {
                now_ns: Some(now + 3_600_000_000_000),
                ..Default::default()
            };
            o.pack.pack_size = pack_size;
            prune::prune(&repo, &key, &o).unwrap();
            let c = diff(before, store.calls());
            if let Some(cl) = &mut cloud {
                // The same forget (the snapshots of the same simulated days) and a prune, by
                // the real `ferry` against the local cloud's S3.
                let (b0, s0) = cl.requests();
                let gone: Vec<&str> = plan
                    .remove
                    .iter()
                    .map(|(s, _)| {
                        cl.ids[((s.snapshot.time_ns - start_ns) / DAY_NS) as usize].as_str()
                    })
                    .collect();
                if !gone.is_empty() {
                    let mut a = vec!["forget"];
                    a.extend(gone);
                    cl.call(&a);
                }
                cl.call(&["prune"]);
                let (b1, s1) = cl.requests();
                let w = cl.week(day);
                w[2].add(Req::from_calls(&c));
                w[3].add(b1.sub(b0));
                w[4].add(s1.sub(s0));
            }
            month.put += c.puts;
            month.copy += c.copies;
            month.list += c.lists;
            month.get += c.gets + c.get_ranges;
            month.delete += c.deletes;
            month.prunes += 1;
            if let Some(r) = &restic {
                let out = Command::new(r)
                    .args([
                        "forget",
                        "-q",
                        "--prune",
                        "--keep-daily",
                        &keep[0].to_string(),
                        "--keep-weekly",
                        &keep[1].to_string(),
                        "--keep-monthly",
                        &keep[2].to_string(),
                        "-r",
                    ])
                    .arg(dir.join("restic"))
                    .env("RESTIC_PASSWORD", "bench-year")
                    .env("RESTIC_CACHE_DIR", dir.join("restic-cache"))
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "restic forget: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        // What S3 bills is the month's average of the bytes stored: sample every day.
        let (bytes, objects, trash) = stored(&store);
        month.byte_days += bytes;
        month.trash_byte_days += trash;
        month.peak = month.peak.max(bytes);
        month.days += 1;
        if restic.is_some() {
            let (b, f) = du(&dir.join("restic"));
            month.restic_byte_days += b;
            month.restic_files = f;
        }
        if day % 30 == 29 || day + 1 == days {
            let snaps = repo.reader(&key).unwrap().snapshots().unwrap().len();
            let avg = |b: u64| b as f64 / month.days as f64 / MIB / scale;
            let (rb, rf) = if restic.is_some() {
                (
                    format!("{:.0} MiB", avg(month.restic_byte_days)),
                    month.restic_files.to_string(),
                )
            } else {
                ("-".into(), "-".into())
            };
            println!(
                "| {} | {:.0} MiB | {:.0} MiB | {:.0} MiB | {objects} | {} | {} | {} | {} | {snaps} | {rb} | {rf} |",
                day / 30 + 1,
                avg(month.byte_days),
                avg(month.trash_byte_days),
                month.peak as f64 / MIB / scale,
                month.put + month.copy,
                month.list,
                month.get,
                month.prunes,
            );
            month = Month::default();
        }
    }
    if let Some(cl) = &cloud {
        cl.print();
        println!("\ncloud: {}", cl.call(&["check"]).trim());
    }
    let check = repo.check(&key, ReadData::All, &NoProgress).unwrap();
    assert!(check.is_ok(), "check after the year: {:?}", check.problems);
    println!(
        "check --read-data after the year: ok ({} snapshots, {} packs)",
        check.snapshots, check.packs
    );
}
