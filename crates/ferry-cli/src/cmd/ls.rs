//! `ferry ls --repo DIR --key MASTER_KEY SNAPSHOT [PATH]`
//!
//! One line per entry: type, mode, size, mtime, and the path exactly as stored (non-UTF-8
//! bytes are written as they are).

use super::{Global, Outcome, RepoArgs};
use crate::output::utc;
use ferry_repo::{NodeKind, Repository};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// A full snapshot id, a unique prefix, or `latest`.
    pub snapshot: String,
    /// Only this path (and below) inside the snapshot.
    pub path: Option<PathBuf>,
}

pub fn run(_g: &Global, a: &LsArgs) -> anyhow::Result<Outcome> {
    let key = super::master_key(&a.repo, "ls")?;
    let repo = Repository::open(Arc::from(super::storage(&a.repo)?))?;
    let reader = repo.reader(&key)?;
    let snap = reader.resolve_snapshot(&a.snapshot)?;
    super::warn_skipped(&reader);
    let path = a.path.as_ref().map(|p| p.as_os_str().as_bytes());
    let entries = reader.ls(&snap, path)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for e in entries {
        let n = &e.node;
        let (t, extra): (char, Vec<u8>) = match &n.kind {
            NodeKind::File { .. } => ('-', Vec::new()),
            NodeKind::Dir { .. } => ('d', Vec::new()),
            NodeKind::Symlink { target } => ('l', [b" -> ".as_slice(), target].concat()),
        };
        let time = utc(n.mtime_ns.div_euclid(1_000_000_000));
        write!(out, "{t} {:04o} {:>12} {time} /", n.mode & 0o7777, n.size)?;
        out.write_all(&e.path)?;
        out.write_all(&extra)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
