//! Benchmark driver for scripts/bench-collect.sh (not a test): collection throughput from a
//! real loopback sshd into a fresh repository, against `ssh HOST tar -cf - PATHS | cat >/dev/null`
//! on the same data, in one run, alternating, best of ROUNDS each.
//!
//!     bench-collect CORPUS_DIR WORK_DIR [ROUNDS]
//!
//! CORPUS_DIR must be readable by the read-only account (ferry-ro); run as root.

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: bench-collect CORPUS_DIR WORK_DIR [ROUNDS]".into());
    }
    let corpus = PathBuf::from(&args[1]).canonicalize()?;
    let work = PathBuf::from(&args[2]);
    let rounds: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(3);
    std::fs::create_dir_all(&work)?;

    let lan = Lan::start(&["bench"])?;
    let h = lan.host("bench");
    let toml = format!(
        "[sources]\n[[sources.host]]\nname = \"bench\"\naddress = \"127.0.0.1\"\nport = {}\nuser = {:?}\nidentity = {:?}\nknown_hosts = {:?}\npaths = [{:?}]\n",
        h.port,
        lan.user,
        lan.client_key.display().to_string(),
        h.known_hosts.display().to_string(),
        corpus.display().to_string()
    );
    let cfg = ConfigFile::parse(&toml, Path::new("bench.toml"))?;
    let target = SshTarget::from_config(&cfg.host[0], 10);

    let local_cfg = ConfigFile::parse(
        &format!(
            "[sources.local]\nname = \"bench\"\npaths = [{:?}]\n",
            corpus.display().to_string()
        ),
        Path::new("bench-local.toml"),
    )?;
    let mut best_local = f64::MAX;
    let mut best_transport = f64::MAX;
    let jobs = ferry_collect::jobs_of(&cfg)?;
    let mut best_base = f64::MAX;
    let mut best_ferry = f64::MAX;
    let mut base_bytes = 0u64;
    let mut content = 0u64;
    let mut wire = 0u64;
    let mut stored = 0u64;
    for round in 0..rounds {
        // Baseline: the same ssh options, the plain tar of the same paths, into cat.
        let t = Instant::now();
        let quoted =
            ferry_collect::ssh::shell_quote(corpus.to_str().ok_or("corpus path is not UTF-8")?);
        let mut ssh = target
            .command(&format!("tar -cf - {quoted}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let out = ssh.stdout.take().ok_or("no ssh stdout")?;
        let counter = Command::new("sh")
            .arg("-c")
            .arg("cat | wc -c")
            .stdin(out)
            .stdout(Stdio::piped())
            .spawn()?;
        let st = ssh.wait()?;
        let n = counter.wait_with_output()?;
        let base_secs = t.elapsed().as_secs_f64();
        if !st.success() {
            return Err(format!("baseline ssh tar failed: {st}").into());
        }
        base_bytes = String::from_utf8_lossy(&n.stdout).trim().parse()?;
        best_base = best_base.min(base_secs);

        // Ferry: a fresh repository and cache each round (a first, full collection).
        let repo_dir = work.join(format!("repo-{round}"));
        let _ = std::fs::remove_dir_all(&repo_dir);
        let master = MasterKey::generate();
        let repo = Repository::init(Arc::new(LocalDir::new(&repo_dir)), &master.put_key())?;
        let opts = BackupOptions {
            cache_disabled: true,
            ..BackupOptions::default()
        };
        let t = Instant::now();
        let (info, rep) =
            ferry_collect::backup(&repo, &master.put_key(), &cfg, opts, Arc::new(NoProgress))?;
        let secs = t.elapsed().as_secs_f64();
        if rep.is_partial() {
            return Err(format!("collection was partial:\n{}", rep.summary()).into());
        }
        best_ferry = best_ferry.min(secs);
        content = rep.sources[0].content_bytes;
        wire = rep.sources[0].wire_bytes;
        stored = info.snapshot.stats.stored_bytes;
        let _ = std::fs::remove_dir_all(&repo_dir);

        // Transport only.
        let t = Instant::now();
        let (_, trep) = ferry_collect::collect(&jobs, 1, Discard)?;
        let transport_secs = t.elapsed().as_secs_f64();
        if trep.is_partial() || trep.sources[0].content_bytes != content {
            return Err(format!("transport-only run differs:\n{}", trep.summary()).into());
        }
        best_transport = best_transport.min(transport_secs);

        // The engine alone: the same files from the local filesystem, no ssh.
        let master = MasterKey::generate();
        let repo = Repository::init(Arc::new(LocalDir::new(&repo_dir)), &master.put_key())?;
        let opts = BackupOptions {
            cache_disabled: true,
            ..BackupOptions::default()
        };
        let t = Instant::now();
        let (_, lrep) = ferry_collect::backup(
            &repo,
            &master.put_key(),
            &local_cfg,
            opts,
            Arc::new(NoProgress),
        )?;
        let local_secs = t.elapsed().as_secs_f64();
        if lrep.is_partial() {
            return Err(format!("local collection was partial:\n{}", lrep.summary()).into());
        }
        best_local = best_local.min(local_secs);
        let _ = std::fs::remove_dir_all(&repo_dir);
        eprintln!(
            "round {}: baseline {base_secs:.2} s, ferry {secs:.2} s, transport only {transport_secs:.2} s, engine alone {local_secs:.2} s",
            round + 1
        );
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let base_rate = mib(content) / best_base;
    let ferry_rate = mib(content) / best_ferry;
    println!("| what | time (best of {rounds}) | throughput (content MiB/s) | bytes over ssh |");
    println!("|---|---|---|---|");
    println!(
        "| `ssh HOST tar -cf - PATHS \\| cat >/dev/null` | {best_base:.2} s | {base_rate:.1} | {:.1} MiB |",
        mib(base_bytes)
    );
    println!(
        "| ferry collection (list + tar stream + chunk, compress, encrypt, pack into a local repository) | {best_ferry:.2} s | {ferry_rate:.1} | {:.1} MiB |",
        mib(wire)
    );
    println!(
        "| for reference: ferry's transport alone (listing + tar stream parsed, content dropped) | {best_transport:.2} s | {:.1} | - |",
        mib(content) / best_transport
    );
    println!(
        "| for reference: the engine alone, same files from the local filesystem (no ssh) | {best_local:.2} s | {:.1} | - |",
        mib(content) / best_local
    );
    println!(
        "\ncontent {:.1} MiB; stored {:.1} MiB; ferry / baseline = {:.0} % (target >= 80 %)",
        mib(content),
        mib(stored),
        100.0 * ferry_rate / base_rate
    );
    Ok(())
}
