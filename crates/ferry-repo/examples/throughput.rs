//! Quick engine throughput measurement (not a test): generates a deterministic mixed corpus
//! (logs, config files, incompressible binaries) and backs it up into a fresh local
//! repository, then runs an unchanged second backup.
//!
//! `cargo run --release -p ferry-repo --example throughput -- [CORPUS_DIR] [MIB]`

#![allow(clippy::unwrap_used)] // a benchmark harness: a failed step ends the run

use ferry_repo::backup::local::backup_paths;
use ferry_repo::storage::LocalDir;
use ferry_repo::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn generate(dir: &Path, mib: usize) -> std::io::Result<u64> {
    let mut total = 0u64;
    let budget = (mib as u64) << 20;
    std::fs::create_dir_all(dir.join("log"))?;
    std::fs::create_dir_all(dir.join("etc"))?;
    std::fs::create_dir_all(dir.join("bin"))?;
    // ~45% logs, ~5% configs, ~50% binaries.
    let mut i = 0u64;
    while total < budget * 45 / 100 {
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(dir.join(format!("log/app{i}.log")))?);
        let mut n = 0u64;
        let mut line = 0u64;
        while n < 16 << 20 {
            let s = format!(
                "2026-11-23T05:{:02}:{:02}.{:06}Z host{} service[{}]: request id={} path=/api/v1/items/{} status={} took={}ms\n",
                (line / 60) % 60,
                line % 60,
                line * 7919 % 1_000_000,
                i % 7,
                1000 + line % 13,
                line * 2654435761 % 1_000_003,
                line % 977,
                [200, 200, 200, 404, 500][(line % 5) as usize],
                line % 250
            );
            f.write_all(s.as_bytes())?;
            n += s.len() as u64;
            line += 1;
        }
        total += n;
        i += 1;
    }
    let mut c = 0u64;
    while total < budget * 50 / 100 {
        let sub = dir.join(format!("etc/d{}", c / 100));
        std::fs::create_dir_all(&sub)?;
        let body = format!(
            "# config {c}\nkey = value{c}\nlisten = 0.0.0.0:{}\n",
            1000 + c
        )
        .repeat(1 + (c % 200) as usize);
        std::fs::write(sub.join(format!("f{c}.conf")), &body)?;
        total += body.len() as u64;
        c += 1;
    }
    let mut b = 0u64;
    while total < budget {
        let len = 5 << 20;
        std::fs::write(dir.join(format!("bin/blob{b}.bin")), noise(b + 1, len))?;
        total += len as u64;
        b += 1;
    }
    Ok(total)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.to_string())
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn dir_size(p: &Path) -> u64 {
    let mut t = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            t += if m.is_dir() {
                dir_size(&e.path())
            } else {
                m.len()
            };
        }
    }
    t
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let corpus = PathBuf::from(
        args.get(1)
            .cloned()
            .unwrap_or_else(|| "/tmp/ferry-corpus".into()),
    );
    let mib: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1024);
    if !corpus.exists() {
        let t = Instant::now();
        let n = generate(&corpus, mib)?;
        eprintln!(
            "generated {} MiB in {:.1}s",
            n >> 20,
            t.elapsed().as_secs_f64()
        );
    }
    let size = dir_size(&corpus);
    let work = tempfile::tempdir()?;
    let key = MasterKey::generate();
    let storage: Arc<dyn storage::Storage> = Arc::new(LocalDir::new(work.path().join("repo")));
    let repo = Repository::init(storage, &key.put_key())?;
    let opts = BackupOptions {
        cache_dir: Some(work.path().join("cache")),
        ..Default::default()
    };
    let t = Instant::now();
    let s1 = backup_paths(
        &repo,
        &key.put_key(),
        std::slice::from_ref(&corpus),
        opts.clone(),
        Arc::new(NoProgress),
    )?;
    let d1 = t.elapsed().as_secs_f64();
    let rss1 = peak_rss_kib();
    let t = Instant::now();
    let s2 = backup_paths(
        &repo,
        &key.put_key(),
        std::slice::from_ref(&corpus),
        opts,
        Arc::new(NoProgress),
    )?;
    let d2 = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let reader = repo.reader(&key)?;
    let rs = reader.restore(
        &s1,
        &work.path().join("restore"),
        &RestoreOptions::default(),
        &NoProgress,
    )?;
    let d3 = t.elapsed().as_secs_f64();
    println!(
        "corpus            {:>10.1} MiB ({} files)",
        size as f64 / 1048576.0,
        s1.snapshot.stats.files
    );
    println!(
        "first backup      {:>10.2} s  {:>8.1} MiB/s",
        d1,
        size as f64 / 1048576.0 / d1
    );
    println!(
        "repository size   {:>10.1} MiB ({} packs)",
        dir_size(&work.path().join("repo")) as f64 / 1048576.0,
        s1.snapshot.stats.packs
    );
    println!("peak RSS          {:>10.1} MiB", rss1 as f64 / 1024.0);
    println!(
        "unchanged re-run  {:>10.3} s  (read {} bytes, {} unchanged files)",
        d2, s2.snapshot.stats.bytes_read, s2.snapshot.stats.unchanged_files
    );
    println!(
        "restore           {:>10.2} s  {:>8.1} MiB/s ({} files)",
        d3,
        rs.bytes as f64 / 1048576.0 / d3,
        rs.files
    );
    Ok(())
}
