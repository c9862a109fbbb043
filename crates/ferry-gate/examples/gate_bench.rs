//! Benchmark driver for `scripts/bench-gate.sh` (run in release mode): upload throughput of
//! client → sshd → `ferry-gate serve --sink null` against raw `ssh … 'cat >/dev/null'` over the
//! same loopback sshd, and the gate's peak RSS (from `/usr/bin/time -v`) with 32 MiB packs.
//!
//! Usage: gate_bench [PACKS] [PACK_MIB] [ROUNDS]    (default 16 packs of 32 MiB, 3 rounds)

use ferry_remote::{GateOptions, GateStorage};
use ferry_repo::format::{ObjectKind, header, object_name};
use ferry_repo::storage::{PutOutcome, Storage};
use ferry_testkit::{Sshd, SshdOptions, keygen};
use std::io::Write;
use std::process::Stdio;
use std::time::Instant;

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numeric arguments"))
        .collect();
    let packs = *args.first().unwrap_or(&16) as usize;
    let mib = *args.get(1).unwrap_or(&32) as usize;
    let rounds = *args.get(2).unwrap_or(&3) as usize;
    let gate = std::env::var("FERRY_GATE_BIN").expect("FERRY_GATE_BIN (release ferry-gate)");

    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let cfg = d.join("gate.toml");
    std::fs::write(
        &cfg,
        format!(
            "bucket = \"bench\"\nsite = \"home\"\nsession = \"bench\"\nexpires = \"2999-01-01T00:00:00Z\"\n\
             max_object_size = {}\nmax_session_bytes = {}\nallowed_kinds = [\"pack\"]\nspool_dir = \"{}\"\n",
            (mib + 1) << 20,
            1u64 << 40,
            d.display()
        ),
    )
    .expect("write config");
    let (gate_key, raw_key) = (d.join("gate_id"), d.join("raw_id"));
    let gate_pub = keygen(&gate_key).expect("keygen");
    let raw_pub = keygen(&raw_key).expect("keygen");
    let rss_file = d.join("gate-rss.txt");
    let keys = format!(
        "restrict,command=\"/usr/bin/time -v -o {rss} -a {gate} serve --config {cfg} --sink null\" {gate_pub}\n{raw_pub}\n",
        rss = rss_file.display(),
        cfg = cfg.display()
    );
    let sshd = Sshd::start(SshdOptions {
        authorized_keys: keys,
        ..Default::default()
    })
    .expect("sshd");

    // Distinct packs (each starts with the Ferry pack header), generated before timing.
    let mut x: u64 = 0x2545f4914f6cdd1d;
    let objs: Vec<(String, Vec<u8>)> = (0..packs)
        .map(|_| {
            let mut b = header(ObjectKind::Pack).to_vec();
            b.reserve(mib << 20);
            while b.len() < mib << 20 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.extend_from_slice(&x.to_le_bytes());
            }
            (object_name(&b), b)
        })
        .collect();
    let total: usize = objs.iter().map(|(_, b)| b.len()).sum();
    let mbs = |secs: f64| total as f64 / secs / 1e6;

    let mut raw_best = f64::MAX;
    let mut gate_best = f64::MAX;
    for round in 0..rounds {
        // Raw ssh: the same bytes into `cat >/dev/null`.
        let t = Instant::now();
        let mut child = sshd
            .ssh_command("root", &raw_key)
            .arg("cat >/dev/null")
            .stdin(Stdio::piped())
            .spawn()
            .expect("ssh");
        {
            let mut w = child.stdin.take().expect("stdin");
            for (_, b) in &objs {
                w.write_all(b).expect("raw write");
            }
        }
        assert!(child.wait().expect("ssh").success(), "raw ssh failed");
        let raw = t.elapsed().as_secs_f64();
        raw_best = raw_best.min(raw);

        // Through the gate (null sink): HELLO, PUT/READY/DATA…/END/STORED per pack, BYE.
        let t = Instant::now();
        let g = GateStorage::connect(
            &format!("gate+ssh://root@127.0.0.1:{}/home", sshd.port()),
            &GateOptions::new(&gate_key, sshd.host_key_pub()),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
        for (n, b) in &objs {
            assert_eq!(
                g.put_if_absent(ObjectKind::Pack, n, b).expect("put"),
                PutOutcome::Stored
            );
        }
        g.close().expect("bye");
        let gt = t.elapsed().as_secs_f64();
        gate_best = gate_best.min(gt);
        eprintln!(
            "round {round}: raw {:.0} MB/s, gate {:.0} MB/s",
            mbs(raw),
            mbs(gt)
        );
    }
    // `/usr/bin/time -v` appends one report per gate session; take the largest.
    let report = std::fs::read_to_string(&rss_file).unwrap_or_default();
    let rss_kib = report
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| data per run | {packs} packs × {mib} MiB = {:.0} MB |",
        total as f64 / 1e6
    );
    println!(
        "| raw `ssh … 'cat >/dev/null'` (best of {rounds}) | {:.0} MB/s |",
        mbs(raw_best)
    );
    println!(
        "| client → sshd → ferry-gate --sink null (best of {rounds}) | {:.0} MB/s |",
        mbs(gate_best)
    );
    println!(
        "| gate / raw | {:.1} % (target ≥ 90 %) |",
        100.0 * raw_best / gate_best
    );
    println!(
        "| gate peak RSS ({mib} MiB packs) | {:.1} MiB (target ≤ 64 MiB) |",
        rss_kib as f64 / 1024.0
    );
}
