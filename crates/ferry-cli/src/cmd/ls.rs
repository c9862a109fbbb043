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
        out.write_all(&escape_controls(&e.path))?;
        out.write_all(&escape_controls(&extra))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}

/// `name` with every byte a terminal could act on written as `\xNN` (C0 controls, DEL, C1
/// controls as single bytes or UTF-8) and `\` as `\\`, so a name stored by a hostile
/// machine cannot move the cursor, recolour or retitle the operator's terminal. Other bytes,
/// non-UTF-8 ones included, are written as they are.
pub fn escape_controls(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        let b = name[i];
        let c1_utf8 = b == 0xc2 && name.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n));
        if c1_utf8 {
            out.extend_from_slice(format!("\\x{:02x}\\x{:02x}", b, name[i + 1]).as_bytes());
            i += 2;
            continue;
        }
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x00..=0x1f | 0x7f | 0x80..=0x9f => {
                out.extend_from_slice(format!("\\x{b:02x}").as_bytes())
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn terminal_controls_are_escaped_other_bytes_kept() {
        assert_eq!(
            escape_controls(b"a\x1b[31mb\x07"),
            b"a\\x1b[31mb\\x07".to_vec()
        );
        assert_eq!(
            escape_controls(b"caf\xe9-\xff.txt"),
            b"caf\xe9-\xff.txt".to_vec()
        );
        assert_eq!(
            escape_controls("x\u{9b}y".as_bytes()),
            b"x\\xc2\\x9by".to_vec()
        );
        assert_eq!(escape_controls(b"a\\b\nc"), b"a\\\\b\\x0ac".to_vec());
    }
}
