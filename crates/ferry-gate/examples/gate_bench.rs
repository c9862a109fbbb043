//! Benchmark driver for `scripts/bench-gate.sh` (run in release mode): upload throughput of
//! client → sshd → `ferry-gate serve --sink null` against raw `ssh … 'cat >/dev/null'` over the
//! same loopback sshd, and the gate's peak RSS (from `/usr/bin/time -v`) with 32 MiB packs.
//!
//! Usage: gate_bench [PACKS] [PACK_MIB] [ROUNDS]    (default 16 packs of 32 MiB, 3 rounds)
//!
//! Each round runs raw ssh into `cat`, raw ssh into a reader that widens its stdin pipe to
//! 1 MiB like the gate does (perl: F_SETPIPE_SZ, 1 MiB sysread), the gate with pipelining
//! off (window of 1 pack: the client waits for each pack's answer before sending the next)
//! and the gate with the default window, in that order, so all see the same machine load.

use ferry_remote::{GateOptions, GateStorage, Window};
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
            std::env::var("FERRY_BENCH_SPOOL_DIR").unwrap_or_else(|_| d.display().to_string())
        ),
    )
    .expect("write config");
    let (gate_key, raw_key) = (d.join("gate_id"), d.join("raw_id"));
    let gate_pub = keygen(&gate_key).expect("keygen");
    let raw_pub = keygen(&raw_key).expect("keygen");
    let rss_file = d.join("gate-rss.txt");
    let cat_cpu = d.join("cat-cpu.txt");
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
    let mut wide_best = f64::MAX;
    let raw_run = |command: String| {
        let t = Instant::now();
        let mut child = sshd
            .ssh_command("root", &raw_key)
            .arg(command)
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
        t.elapsed().as_secs_f64()
    };
    let mut gate_best = f64::MAX;
    let mut serial_best = f64::MAX;
    let run_gate = |window: Window| {
        let t = Instant::now();
        let mut opts = GateOptions::new(&gate_key, sshd.host_key_pub());
        opts.window = window;
        let g = GateStorage::connect(
            &format!("gate+ssh://root@127.0.0.1:{}/home", sshd.port()),
            &opts,
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
        for (n, b) in &objs {
            assert_eq!(
                g.put_if_absent(ObjectKind::Pack, n, b).expect("put"),
                PutOutcome::Stored
            );
        }
        g.barrier().expect("every pack confirmed");
        g.close().expect("bye");
        t.elapsed().as_secs_f64()
    };
    for round in 0..rounds {
        // Raw ssh: the same bytes into `cat >/dev/null`, and into a 1 MiB-pipe reader.
        let raw = raw_run(format!(
            "/usr/bin/time -f '%U %S' -a -o {} cat >/dev/null",
            cat_cpu.display()
        ));
        raw_best = raw_best.min(raw);
        let wide = raw_run(
            "perl -e 'fcntl(STDIN, 1031, 1 << 20); while (sysread(STDIN, $b, 1 << 20)) {}'"
                .to_string(),
        );
        wide_best = wide_best.min(wide);

        // Through the gate (null sink): HELLO, PUT/DATA…/END per pack, answers, BYE.
        let serial = run_gate(Window {
            objects: 1,
            bytes: 0,
        });
        serial_best = serial_best.min(serial);
        let gt = run_gate(Window::default());
        gate_best = gate_best.min(gt);
        eprintln!(
            "round {round}: raw {:.0} MB/s, raw 1 MiB pipe {:.0} MB/s, gate unpipelined {:.0} MB/s, gate pipelined {:.0} MB/s",
            mbs(raw),
            mbs(wide),
            mbs(serial),
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
    // CPU seconds (user + system) of the server-side command per session: `cat` for raw
    // ssh; the gate's sessions alternate unpipelined, pipelined.
    let cat_secs: Vec<f64> = std::fs::read_to_string(&cat_cpu)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace().map(|v| v.parse::<f64>().ok());
            Some(it.next()?? + it.next()??)
        })
        .collect();
    let field = |name: &str| -> Vec<f64> {
        report
            .lines()
            .filter_map(|l| l.trim().strip_prefix(name))
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .collect()
    };
    let gate_secs: Vec<f64> = field("User time (seconds): ")
        .iter()
        .zip(field("System time (seconds): "))
        .map(|(u, s)| u + s)
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let serial_cpu: Vec<f64> = gate_secs.iter().step_by(2).copied().collect();
    let piped_cpu: Vec<f64> = gate_secs.iter().skip(1).step_by(2).copied().collect();
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
        "| raw `ssh … perl` reading a 1 MiB stdin pipe, as the gate does (best of {rounds}) | {:.0} MB/s |",
        mbs(wide_best)
    );
    println!(
        "| client → sshd → ferry-gate --sink null, unpipelined: window 1 pack (best of {rounds}) | {:.0} MB/s ({:.1} % of raw) |",
        mbs(serial_best),
        100.0 * raw_best / serial_best
    );
    let w = Window::default();
    println!(
        "| client → sshd → ferry-gate --sink null, pipelined: window {} packs / {} MiB (best of {rounds}) | {:.0} MB/s |",
        w.objects,
        w.bytes >> 20,
        mbs(gate_best)
    );
    println!(
        "| gate (pipelined) / raw `cat` | {:.1} % (target ≥ 90 %) |",
        100.0 * raw_best / gate_best
    );
    println!(
        "| gate (pipelined) / raw 1 MiB-pipe reader | {:.1} % |",
        100.0 * wide_best / gate_best
    );
    println!(
        "| gate peak RSS ({mib} MiB packs) | {:.1} MiB (target ≤ 64 MiB) |",
        rss_kib as f64 / 1024.0
    );
    println!(
        "| server-side CPU per run (user + sys, mean): `cat` / gate unpipelined / gate pipelined | {:.2} s / {:.2} s / {:.2} s |",
        mean(&cat_secs),
        mean(&serial_cpu),
        mean(&piped_cpu)
    );
}
