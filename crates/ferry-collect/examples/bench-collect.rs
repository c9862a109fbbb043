//! Benchmark driver for scripts/bench-collect.sh (not a test): collection throughput from a
//! real sshd into a fresh repository, against `ssh HOST tar -cf - PATHS | cat >/dev/null` on
//! the same data, in one run, alternating, best of ROUNDS each.
//!
//!     bench-collect CORPUS_DIR WORK_DIR [ROUNDS]
//!
//! CORPUS_DIR must be readable by the read-only account (ferry-ro); run as root.
//!
//! Two baselines: the reference, a plain `ssh HOST tar` with OpenSSH's defaults
//! (chacha20-poly1305), and the same tar over ferry's own ssh options (AES-GCM first), so the
//! cipher's share is visible. Each row also gives the CPU time the whole machine spent in its
//! best round (from /proc/stat: ssh, the host's sshd and tar, and ferry's threads alike),
//! which is what bounds the result when both ends share the CPUs.
//!
//! Knobs for profiling (not used by the script): `BENCH_ONLY=connect,plain,same,ferry,
//! transport,local` runs only those rows; `BENCH_ZSTD_LEVEL=N` changes ferry's zstd level.

use ferry_collect::listing::Entry;
use ferry_collect::ssh::SshTarget;
use ferry_collect::{ConfigFile, SinkError};
use ferry_repo::storage::LocalDir;
use ferry_repo::{BackupOptions, MasterKey, NoProgress, Repository};
use ferry_testkit::lanhost::Lan;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Transport only: every file's stream is read to the end and dropped (no engine), to
/// separate the collector's own cost (listing, tar parsing) from the engine's.
struct Discard;

impl ferry_collect::Sink for Discard {
    fn add_dir(&mut self, _: &Path, _: &Entry) -> Result<(), SinkError> {
        Ok(())
    }
    fn add_symlink(&mut self, _: &Path, _: &Entry) -> Result<(), SinkError> {
        Ok(())
    }
    fn reuse_unchanged(&mut self, _: &Path, _: &Path, _: &Entry) -> Result<bool, SinkError> {
        Ok(false)
    }
    fn add_file(
        &mut self,
        _: &Path,
        _: &Entry,
        r: &mut dyn std::io::Read,
    ) -> Result<(), SinkError> {
        std::io::copy(r, &mut std::io::sink())
            .map(|_| ())
            .map_err(SinkError::Source)
    }
    fn add_source(&mut self, _: &str) {}
    fn record_error(&mut self, _: &str, _: &Path, _: &str) {}
    fn source_failed(&mut self, _: &str, _: &str) {}
}

/// CPU seconds the whole machine has been busy (user, nice, system, irq, softirq).
fn machine_busy_secs() -> Res<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or("/proc/stat has no cpu line")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let busy = [0usize, 1, 2, 5, 6]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum::<u64>();
    // USER_HZ is 100 on Linux.
    Ok(busy as f64 / 100.0)
}

/// The best round of one contender: its wall time and the machine's CPU time.
struct Best {
    what: String,
    secs: f64,
    cpu: f64,
    wire: String,
}

impl Best {
    fn new(what: &str) -> Best {
        Best {
            what: what.to_string(),
            secs: f64::MAX,
            cpu: 0.0,
            wire: "-".into(),
        }
    }
    fn ran(&self) -> bool {
        self.secs < f64::MAX
    }
    /// Time `f`; keep it if it is the best so far. Returns the seconds.
    fn time<T>(&mut self, f: impl FnOnce() -> Res<T>) -> Res<(f64, T)> {
        let c0 = machine_busy_secs()?;
        let t = Instant::now();
        let v = f()?;
        let secs = t.elapsed().as_secs_f64();
        let cpu = machine_busy_secs()? - c0;
        if secs < self.secs {
            self.secs = secs;
            self.cpu = cpu;
        }
        Ok((secs, v))
    }
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: bench-collect CORPUS_DIR WORK_DIR [ROUNDS]".into());
    }
    let corpus = PathBuf::from(&args[1]).canonicalize()?;
    let work = PathBuf::from(&args[2]);
    let rounds: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(3);
    std::fs::create_dir_all(&work)?;
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let on = |what: &str| only.is_empty() || only.split(',').any(|w| w == what);
    let level: i32 = match std::env::var("BENCH_ZSTD_LEVEL") {
        Ok(v) => v.parse()?,
        Err(_) => BackupOptions::default().compression_level,
    };

    let lan = Lan::start(&["bench"])?;
    let h = lan.host("bench");
    let corpus_s = corpus.to_str().ok_or("corpus path is not UTF-8")?;
    let toml = format!(
        "[sources]\n[[sources.host]]\nname = \"bench\"\naddress = \"127.0.0.1\"\nport = {}\nuser = {:?}\nidentity = {:?}\nknown_hosts = {:?}\npaths = [{corpus_s:?}]\n",
        h.port,
        lan.user,
        lan.client_key.display().to_string(),
        h.known_hosts.display().to_string(),
    );
    let cfg = ConfigFile::parse(&toml, Path::new("bench.toml"))?;
    let target = SshTarget::from_config(&cfg.host[0], 10);
    let jobs = ferry_collect::jobs_of(&cfg)?;
    let local_cfg = ConfigFile::parse(
        &format!("[sources.local]\nname = \"bench\"\npaths = [{corpus_s:?}]\n"),
        Path::new("bench-local.toml"),
    )?;
    let tar = format!("tar -cf - {}", ferry_collect::ssh::shell_quote(corpus_s));
    // The reference: plain ssh, OpenSSH's default ciphers, only what is needed to
    // log in non-interactively with the pinned key.
    let plain_ssh = || {
        let mut c = Command::new("ssh");
        c.args(["-F", "none", "-o", "BatchMode=yes", "-o"])
            .arg(format!("UserKnownHostsFile={}", h.known_hosts.display()))
            .arg("-i")
            .arg(&lan.client_key)
            .args(["-p", &h.port.to_string(), "-l", &lan.user, "127.0.0.1"])
            .arg(&tar);
        c
    };

    let mut connect = Best::new(
        "for reference: one ssh connection, `ssh HOST true` (ferry makes one per host and run)",
    );
    let mut plain = Best::new(
        "`ssh HOST tar -cf - PATHS \\| cat >/dev/null` (OpenSSH defaults: chacha20-poly1305)",
    );
    let mut same = Best::new("the same over ferry's ssh options (aes128-gcm first)");
    let mut ferry = Best::new(&format!(
        "ferry collection (list + tar stream + chunk, compress (zstd {level}), encrypt, pack into a local repository)"
    ));
    let mut transport = Best::new(
        "for reference: ferry's transport alone (listing + tar stream parsed, content dropped)",
    );
    let mut local =
        Best::new("for reference: the engine alone, same files from the local filesystem (no ssh)");
    let mut content = 0u64;
    let mut stored = 0u64;
    // A fresh repository and no cache each time: a first, full collection, timed by `best`.
    let backup_fresh = |best: &mut Best, sources: &ferry_collect::SourcesConfig, dir: &Path| {
        let _ = std::fs::remove_dir_all(dir);
        let master = MasterKey::generate();
        let repo = Repository::init(Arc::new(LocalDir::new(dir)), &master.put_key())?;
        let opts = BackupOptions {
            cache_disabled: true,
            compression_level: level,
            ..BackupOptions::default()
        };
        let (s, (info, rep)) = best.time(|| {
            Ok(ferry_collect::backup(
                &repo,
                &master.put_key(),
                sources,
                opts,
                Arc::new(NoProgress),
            )?)
        })?;
        let _ = std::fs::remove_dir_all(dir);
        if rep.is_partial() {
            return Err(
                format!("{}: collection was partial:\n{}", best.what, rep.summary()).into(),
            );
        }
        Res::Ok((s, info, rep))
    };
    for round in 0..rounds {
        let mut line = Vec::new();
        if on("connect") {
            let (s, _) = connect.time(|| {
                let st = target
                    .command("true")
                    .map_err(|e| e.to_string())?
                    .stderr(Stdio::null())
                    .status()?;
                if st.success() {
                    Ok(())
                } else {
                    Err(format!("ssh HOST true failed: {st}").into())
                }
            })?;
            line.push(format!("ssh HOST true {s:.3} s"));
        }
        if on("plain") {
            let (s, n) = plain.time(|| time_into_cat(plain_ssh()))?;
            plain.wire = format!("{:.1} MiB", mib(n));
            line.push(format!("plain ssh tar {s:.2} s"));
        }
        if on("same") {
            let (s, n) =
                same.time(|| time_into_cat(target.command(&tar).map_err(|e| e.to_string())?))?;
            same.wire = format!("{:.1} MiB", mib(n));
            line.push(format!("ssh tar with ferry's options {s:.2} s"));
        }
        let repo_dir = work.join(format!("repo-{round}"));
        if on("ferry") {
            let (s, info, rep) = backup_fresh(&mut ferry, &cfg, &repo_dir)?;
            content = rep.sources[0].content_bytes;
            stored = info.snapshot.stats.stored_bytes;
            ferry.wire = format!("{:.1} MiB", mib(rep.sources[0].wire_bytes));
            line.push(format!("ferry {s:.2} s"));
        }
        if on("transport") {
            let (s, (_, rep)) =
                transport.time(|| Ok(ferry_collect::collect(&jobs, 1, Discard)?))?;
            if rep.is_partial() || (content != 0 && rep.sources[0].content_bytes != content) {
                return Err(format!("transport-only run differs:\n{}", rep.summary()).into());
            }
            content = rep.sources[0].content_bytes;
            line.push(format!("transport only {s:.2} s"));
        }
        if on("local") {
            let (s, _, _) = backup_fresh(&mut local, &local_cfg, &repo_dir)?;
            line.push(format!("engine alone {s:.2} s"));
        }
        eprintln!("round {}: {}", round + 1, line.join(", "));
    }

    println!(
        "| what | time (best of {rounds}) | throughput (content MiB/s) | CPU time, whole machine | bytes over ssh |"
    );
    println!("|---|---|---|---|---|");
    for b in [&plain, &same, &ferry, &transport, &local] {
        if b.ran() {
            let rate = if content > 0 {
                format!("{:.1}", mib(content) / b.secs)
            } else {
                "-".into()
            };
            println!(
                "| {} | {:.2} s | {rate} | {:.2} s | {} |",
                b.what, b.secs, b.cpu, b.wire
            );
        }
    }
    if connect.ran() {
        println!(
            "| {} | {:.3} s | - | {:.2} s | - |",
            connect.what, connect.secs, connect.cpu
        );
    }
    println!(
        "\ncontent {:.1} MiB; stored {:.1} MiB; {} CPUs",
        mib(content),
        mib(stored),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if ferry.ran() {
        for b in [&plain, &same] {
            if b.ran() {
                println!(
                    "ferry / {} = {:.0} % (target >= 80 %)",
                    b.what.split(" (").next().unwrap_or(&b.what),
                    100.0 * b.secs / ferry.secs
                );
            }
        }
    }
    Ok(())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// Run `cmd` (an ssh) into `cat | wc -c`; returns the bytes received.
fn time_into_cat(mut cmd: Command) -> Res<u64> {
    let mut ssh = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let out = ssh.stdout.take().ok_or("no ssh stdout")?;
    let counter = Command::new("sh")
        .arg("-c")
        .arg("cat | wc -c")
        .stdin(out)
        .stdout(Stdio::piped())
        .spawn()?;
    let st = ssh.wait()?;
    let n = counter.wait_with_output()?;
    if !st.success() {
        return Err(format!("baseline ssh tar failed: {st}").into());
    }
    Ok(String::from_utf8_lossy(&n.stdout).trim().parse()?)
}
