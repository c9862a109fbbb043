//! `ferry ls --repo DIR --key MASTER_KEY SNAPSHOT [PATH]`
//!
//! One line per entry: type, mode, size, mtime, and the path exactly as stored (non-UTF-8
//! bytes are written as they are).

use crate::cli::{Global, LsArgs, Outcome};
use ferry_repo::{NodeKind, Repository};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

pub fn run(_g: &Global, a: &LsArgs) -> anyhow::Result<Outcome> {
    let key = super::master_key(&a.repo, "ls")?;
    let repo = Repository::open(Arc::from(super::storage(&a.repo)?))?;
    let reader = repo.reader(&key)?;
    let snap = reader.resolve_snapshot(&a.snapshot)?;
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

/// `YYYY-MM-DD HH:MM:SS` (UTC) for seconds since the epoch (civil-from-days, H. Hinnant).
fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_748_779_200), "2025-06-01 12:00:00");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(super::utc(-1), "1969-12-31 23:59:59");
    }
}
