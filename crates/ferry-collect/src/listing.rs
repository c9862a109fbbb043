//! Remote listings: GNU `find -printf` with NUL-separated fields, parsed into [`Entry`]s,
//! then filtered by the source's exclude globs and size cap.

use crate::config::SourceSpec;
use crate::ssh::shell_quote;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// type, size, mtime (s.ns), inode, mode (octal), uid, gid, symlink target, path.
pub const FIND_FORMAT: &str = r"%y\0%s\0%T@\0%i\0%m\0%U\0%G\0%l\0%p\0";
const FIELDS: usize = 9;

/// What a listed path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file (find's `f`): its contents are backed up.
    File,
    /// A directory (`d`): kept for its metadata.
    Dir,
    /// A symbolic link (`l`): not followed; its target is kept.
    Symlink,
    /// Sockets, pipes, devices: not backed up.
    Other,
}

/// One listed path with its metadata (as the host reports it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What the path is (`%y`; a symlink is not followed).
    pub kind: Kind,
    /// Size in bytes (`%s`; for a symlink, the length of its target).
    pub size: u64,
    /// Modification time: whole seconds since the Unix epoch (`%T@`; negative before it).
    pub mtime_sec: i64,
    /// Modification time: nanoseconds added to `mtime_sec` (0 to 999 999 999).
    pub mtime_nsec: u32,
    /// Inode number on the host's filesystem (`%i`); matches renamed files against the
    /// previous snapshot.
    pub inode: u64,
    /// Permission bits (including setuid/setgid/sticky).
    pub mode: u32,
    /// Numeric owner user id on the host (`%U`).
    pub uid: u32,
    /// Numeric owner group id on the host (`%G`).
    pub gid: u32,
    /// Symlink target (empty for other kinds).
    pub target: PathBuf,
    /// Absolute path on the host.
    pub path: PathBuf,
}

/// Why a listing command could not be built, or a listing could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListingError {
    /// A path to list is not UTF-8, so it cannot be passed to the remote shell.
    #[error("path {} is not UTF-8", path.display())]
    NotUtf8 {
        /// The configured path that is not UTF-8.
        path: PathBuf,
    },
    /// The listing does not end with a NUL (the stream was cut in a record).
    #[error("listing is truncated (does not end with a NUL)")]
    NoFinalNul,
    /// The listing holds a partial record.
    #[error("listing is truncated ({fields} fields, not a multiple of {FIELDS})")]
    PartialRecord {
        /// How many NUL-terminated fields the listing holds.
        fields: usize,
    },
    /// A record's `field` does not parse (`value` as received, lossily decoded).
    #[error("listing of {}: bad {field} {value:?}", path.display())]
    BadField {
        /// The record's path (its last field), as received.
        path: PathBuf,
        /// Which field: `type`, `size`, `mtime`, `inode`, `mode`, `uid`, `gid` or `path`
        /// (a path that is not absolute).
        field: &'static str,
        /// The field's bytes, lossily decoded as UTF-8.
        value: String,
    },
}

/// The remote shell command that lists `paths` (and their ancestors, for their metadata).
pub fn find_command(paths: &[PathBuf]) -> Result<String, ListingError> {
    let mut ancestors: Vec<PathBuf> = Vec::new();
    for p in paths {
        for a in p.ancestors().skip(1) {
            let a = a.to_path_buf();
            if !ancestors.contains(&a) && !paths.contains(&a) {
                ancestors.push(a);
            }
        }
    }
    ancestors.sort();
    let q = |ps: &[PathBuf]| -> Result<String, ListingError> {
        ps.iter()
            .map(|p| {
                p.to_str()
                    .map(shell_quote)
                    .ok_or_else(|| ListingError::NotUtf8 { path: p.clone() })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(" "))
    };
    let fmt = shell_quote(FIND_FORMAT);
    let mut cmd = String::from("LC_ALL=C; export LC_ALL; ");
    if !ancestors.is_empty() {
        cmd.push_str(&format!(
            "find -H {} -maxdepth 0 -printf {fmt}; ",
            q(&ancestors)?
        ));
    }
    cmd.push_str(&format!("find -H {} -printf {fmt}", q(paths)?));
    Ok(cmd)
}

/// First field of the record that ends the listing in a host session: `%y` is always one
/// character, so no record of the listing can start with it.
pub const LISTED: &str = "FERRY-LISTED";

/// The largest listing accepted from a host (about seven million files); a host that sends
/// more is refused rather than allowed to exhaust the backup VM's memory.
pub const MAX_LISTING: usize = 1 << 30;

/// The shell code that ends a listing: the end record, [`LISTED`] then find's exit status.
pub fn end_record_command() -> String {
    format!("s=$?; printf '{LISTED}\\000%s\\000' \"$s\"")
}

/// A listing as read from a host session: the raw `find -printf` output and find's status.
#[derive(Debug)]
pub struct RawListing {
    /// The `find -printf` records ([`FIND_FORMAT`]), NUL-terminated fields, the end record
    /// left out; parse them with [`parse_find`].
    pub bytes: Vec<u8>,
    /// find's exit status as the host reported it (127: no `find` there).
    pub status: i32,
}

/// Why reading a framed listing stopped without its end record.
#[derive(Debug, thiserror::Error)]
pub enum ListingCut {
    /// The stream ended first (the connection failed, or the host's shell is not POSIX).
    #[error("the session ended after {read} bytes of listing, before its end record")]
    Eof {
        /// Bytes of listing read before the stream ended.
        read: usize,
    },
    /// Reading failed.
    #[error("reading the listing: {0}")]
    Io(std::io::Error),
    /// More than [`MAX_LISTING`] bytes.
    #[error("the listing exceeds {MAX_LISTING} bytes; refused")]
    TooLarge,
    /// An end record whose status is not a number (`got`, lossily decoded).
    #[error("the listing's end record has no exit status (got {got:?})")]
    NoStatus {
        /// What the end record held in place of the status.
        got: String,
    },
}

/// Read `find -printf FIND_FORMAT` records from `r` up to and including the end record that
/// [`end_record_command`] writes; `r` is left at the first byte after it (the tar stream).
pub fn read_listing<R: std::io::BufRead>(r: &mut R) -> Result<RawListing, ListingCut> {
    let mut bytes = Vec::new();
    let mut field = 0usize;
    loop {
        let start = bytes.len();
        let n = r.read_until(0, &mut bytes).map_err(ListingCut::Io)?;
        if n == 0 || bytes.last() != Some(&0) {
            return Err(ListingCut::Eof { read: bytes.len() });
        }
        if bytes.len() > MAX_LISTING {
            return Err(ListingCut::TooLarge);
        }
        if field.is_multiple_of(FIELDS) && &bytes[start..bytes.len() - 1] == LISTED.as_bytes() {
            bytes.truncate(start);
            let mut status = Vec::new();
            r.read_until(0, &mut status).map_err(ListingCut::Io)?;
            let Some(digits) = status.strip_suffix(&[0]) else {
                return Err(ListingCut::Eof {
                    read: bytes.len() + LISTED.len() + 1 + status.len(),
                });
            };
            let status = std::str::from_utf8(digits)
                .ok()
                .and_then(|s| s.parse::<i32>().ok())
                .ok_or_else(|| ListingCut::NoStatus {
                    got: String::from_utf8_lossy(digits).into_owned(),
                })?;
            return Ok(RawListing { bytes, status });
        }
        field += 1;
    }
}

/// Parse `find -printf FIND_FORMAT` output, sorted by path (component-wise), without duplicates.
pub fn parse_find(out: &[u8]) -> Result<Vec<Entry>, ListingError> {
    if out.last().is_some_and(|&b| b != 0) {
        return Err(ListingError::NoFinalNul);
    }
    let mut fields: Vec<&[u8]> = out.split(|&b| b == 0).collect();
    // Output ends with NUL, so the last split piece is empty.
    if fields.last().is_some_and(|l| l.is_empty()) {
        fields.pop();
    }
    if !fields.len().is_multiple_of(FIELDS) {
        return Err(ListingError::PartialRecord {
            fields: fields.len(),
        });
    }
    let mut entries = Vec::with_capacity(fields.len() / FIELDS);
    for rec in fields.chunks(FIELDS) {
        entries.push(parse_record(rec)?);
    }
    // Component-wise order: every directory comes right before its contents.
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries.dedup_by(|a, b| a.path == b.path);
    Ok(entries)
}

fn parse_record(r: &[&[u8]]) -> Result<Entry, ListingError> {
    let path = PathBuf::from(OsString::from_vec(r[8].to_vec()));
    let bad = |field: &'static str, v: &[u8]| ListingError::BadField {
        path: path.clone(),
        field,
        value: String::from_utf8_lossy(v).into_owned(),
    };
    let text = |v: &[u8], what: &'static str| -> Result<String, ListingError> {
        std::str::from_utf8(v)
            .map(str::to_string)
            .map_err(|_| bad(what, v))
    };
    let kind = match r[0] {
        b"f" => Kind::File,
        b"d" => Kind::Dir,
        b"l" => Kind::Symlink,
        b"s" | b"p" | b"b" | b"c" | b"D" | b"N" | b"?" | b"L" => Kind::Other,
        v => return Err(bad("type", v)),
    };
    let size: u64 = text(r[1], "size")?.parse().map_err(|_| bad("size", r[1]))?;
    let (mtime_sec, mtime_nsec) =
        parse_mtime(&text(r[2], "mtime")?).ok_or_else(|| bad("mtime", r[2]))?;
    let inode: u64 = text(r[3], "inode")?
        .parse()
        .map_err(|_| bad("inode", r[3]))?;
    let mode = u32::from_str_radix(&text(r[4], "mode")?, 8).map_err(|_| bad("mode", r[4]))?;
    let uid: u32 = text(r[5], "uid")?.parse().map_err(|_| bad("uid", r[5]))?;
    let gid: u32 = text(r[6], "gid")?.parse().map_err(|_| bad("gid", r[6]))?;
    if !path.is_absolute() {
        return Err(bad("path", r[8]));
    }
    Ok(Entry {
        kind,
        size,
        mtime_sec,
        mtime_nsec,
        inode,
        mode: mode & 0o7777,
        uid,
        gid,
        target: PathBuf::from(OsString::from_vec(r[7].to_vec())),
        path,
    })
}

/// `1700000000.1234567890` → (1700000000, 123456789). GNU find prints the `timespec` as
/// `tv_sec.tv_nsec` literally, also before the epoch: `-2.7500000000` is (-2, 750000000),
/// i.e. 1.25 s before the epoch.
fn parse_mtime(s: &str) -> Option<(i64, u32)> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = int.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    Some((secs, digits.parse().ok()?))
}

/// Why a listed path is not backed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The path matches one of the source's exclude globs (paths below an excluded
    /// directory are not reported at all).
    Excluded,
    /// A file bigger than the source's `max_file_size`.
    TooLarge {
        /// The file's size as listed, in bytes.
        size: u64,
        /// The source's cap, in bytes.
        cap: u64,
    },
    /// A socket, pipe, device or other special file ([`Kind::Other`]): not backed up.
    Special,
    /// Listed by the host although outside the configured paths (or not a clean path).
    Unexpected,
}

/// Split a listing into kept entries and skipped ones. `roots` are the configured paths:
/// their ancestors (listed for metadata) are kept and never excluded.
pub fn filter(entries: Vec<Entry>, spec: &SourceSpec) -> (Vec<Entry>, Vec<(PathBuf, Skip)>) {
    let mut kept = Vec::with_capacity(entries.len());
    let mut skipped = Vec::new();
    let mut excluded_dirs: Vec<PathBuf> = Vec::new();
    for e in entries {
        // Only what was asked for: a configured path, something below one, or an ancestor.
        // (A host's listing is not trusted to stay inside its own paths.)
        let related = spec
            .paths
            .iter()
            .any(|p| e.path.starts_with(p) || p.starts_with(&e.path));
        let clean = e
            .path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !related || !clean {
            skipped.push((e.path, Skip::Unexpected));
            continue;
        }
        let is_ancestor = spec
            .paths
            .iter()
            .any(|p| p != &e.path && p.starts_with(&e.path));
        if is_ancestor {
            kept.push(e);
            continue;
        }
        if excluded_dirs.iter().any(|d| e.path.starts_with(d)) {
            continue; // below an excluded directory: not even listed as skipped
        }
        if spec.exclude.is_match(&e.path) {
            if e.kind == Kind::Dir {
                excluded_dirs.push(e.path.clone());
            }
            skipped.push((e.path, Skip::Excluded));
            continue;
        }
        match e.kind {
            Kind::Other => skipped.push((e.path, Skip::Special)),
            Kind::File => match spec.max_file_size {
                Some(cap) if e.size > cap => {
                    skipped.push((e.path, Skip::TooLarge { size: e.size, cap }))
                }
                _ => kept.push(e),
            },
            Kind::Dir | Kind::Symlink => kept.push(e),
        }
    }
    (kept, skipped)
}

/// `find: '/x/y': Permission denied` → (`/x/y`, `Permission denied`).
pub fn parse_find_error(line: &str) -> Option<(PathBuf, String)> {
    let rest = line.strip_prefix("find: ")?;
    let rest = rest.strip_prefix('\'').or_else(|| rest.strip_prefix('‘'))?;
    let (path, msg) = rest
        .rsplit_once("': ")
        .or_else(|| rest.rsplit_once("’: "))?;
    Some((PathBuf::from(path), msg.trim().to_string()))
}

/// `/<source>/<remote path>` inside the snapshot.
pub fn snapshot_path(source: &str, remote: &Path) -> PathBuf {
    let mut p = PathBuf::from("/");
    p.push(source);
    let rel = remote.strip_prefix("/").unwrap_or(remote);
    if !rel.as_os_str().is_empty() {
        p.push(rel);
    }
    p
}

/// Path bytes, for protocols that need them (tar's file list).
pub fn path_bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigFile, SourcesConfig};

    #[test]
    fn mtimes() {
        assert_eq!(
            parse_mtime("1795409728.1033611130"),
            Some((1795409728, 103361113))
        );
        assert_eq!(parse_mtime("12"), Some((12, 0)));
        assert_eq!(parse_mtime("-2.7500000000"), Some((-2, 750_000_000)));
        assert_eq!(parse_mtime("1.x"), None);
    }

    #[test]
    fn parses_real_find_output() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/a b\nc"), b"hello").unwrap();
        std::os::unix::fs::symlink("a b\nc", d.join("sub/link")).unwrap();
        let cmd = find_command(&[d.join("sub")]).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let entries = parse_find(&out.stdout).unwrap();
        // ancestors: /, /tmp, ..., d; then sub, its file and link.
        let file = entries
            .iter()
            .find(|e| e.path == d.join("sub/a b\nc"))
            .unwrap();
        assert_eq!(file.kind, Kind::File);
        assert_eq!(file.size, 5);
        let md = std::fs::metadata(d.join("sub/a b\nc")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(file.inode, md.ino());
        assert_eq!(file.mtime_sec, md.mtime());
        assert_eq!(file.mtime_nsec as i64, md.mtime_nsec());
        assert_eq!(file.mode, md.mode() & 0o7777);
        let link = entries
            .iter()
            .find(|e| e.path == d.join("sub/link"))
            .unwrap();
        assert_eq!(link.kind, Kind::Symlink);
        assert_eq!(link.target, PathBuf::from("a b\nc"));
        assert!(
            entries
                .iter()
                .any(|e| e.path == Path::new("/") && e.kind == Kind::Dir)
        );
        assert!(entries.iter().any(|e| e.path == *d));
        assert!(parse_find(&out.stdout[..out.stdout.len() - 3]).is_err());
    }

    fn spec(extra: &str) -> SourcesConfig {
        ConfigFile::parse(
            &format!("[sources.local]\npaths = [\"/data\"]\n{extra}"),
            Path::new("t"),
        )
        .unwrap()
    }

    fn e(kind: Kind, path: &str, size: u64) -> Entry {
        Entry {
            kind,
            size,
            mtime_sec: 0,
            mtime_nsec: 0,
            inode: 1,
            mode: 0o644,
            uid: 0,
            gid: 0,
            target: PathBuf::new(),
            path: PathBuf::from(path),
        }
    }

    #[test]
    fn filtering() {
        let cfg = spec("exclude = [\"*.gz\", \"/data/cache\"]\nmax_file_size = 100\n");
        let s = cfg.local_spec().unwrap().unwrap();
        let (kept, skipped) = filter(
            vec![
                e(Kind::Dir, "/", 0),
                e(Kind::Dir, "/data", 0),
                e(Kind::File, "/data/a.log", 10),
                e(Kind::File, "/data/a.log.1.gz", 10),
                e(Kind::File, "/data/big", 101),
                e(Kind::Dir, "/data/cache", 0),
                e(Kind::File, "/data/cache/x", 1),
                e(Kind::Other, "/data/sock", 0),
                e(Kind::File, "/etc/passwd", 1),
                e(Kind::File, "/data/../etc/passwd", 1),
            ],
            &s,
        );
        let kept: Vec<_> = kept.iter().map(|e| e.path.to_str().unwrap()).collect();
        assert_eq!(kept, vec!["/", "/data", "/data/a.log"]);
        assert_eq!(
            skipped,
            vec![
                (PathBuf::from("/data/a.log.1.gz"), Skip::Excluded),
                (
                    PathBuf::from("/data/big"),
                    Skip::TooLarge {
                        size: 101,
                        cap: 100
                    }
                ),
                (PathBuf::from("/data/cache"), Skip::Excluded),
                (PathBuf::from("/data/sock"), Skip::Special),
                (PathBuf::from("/etc/passwd"), Skip::Unexpected),
                (PathBuf::from("/data/../etc/passwd"), Skip::Unexpected),
            ]
        );
    }

    /// Run `script` with sh and read its stdout as a host session's listing.
    fn session(script: &str) -> (Result<RawListing, ListingCut>, Vec<u8>) {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        let mut r = std::io::BufReader::with_capacity(7, &out.stdout[..]);
        let l = read_listing(&mut r);
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut rest).unwrap();
        (l, rest)
    }

    #[test]
    fn a_framed_listing_ends_at_its_end_record() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("sub");
        std::fs::create_dir(&d).unwrap();
        // A field equal to the sentinel that is not at a record's start is data.
        std::os::unix::fs::symlink("FERRY-LISTED", d.join("link")).unwrap();
        std::fs::write(d.join("FERRY-LISTED"), b"x").unwrap();
        let cmd = find_command(std::slice::from_ref(&d)).unwrap();
        let (l, rest) = session(&format!("{cmd}; {}; printf 'TAR'", end_record_command()));
        let l = l.unwrap();
        assert_eq!(l.status, 0);
        assert_eq!(rest, b"TAR");
        let entries = parse_find(&l.bytes).unwrap();
        let link = entries.iter().find(|e| e.path == d.join("link")).unwrap();
        assert_eq!(link.target, Path::new("FERRY-LISTED"));
        assert!(entries.iter().any(|e| e.path == d.join("FERRY-LISTED")));

        // find's own failure is reported in the end record; what it listed is kept.
        let missing = dir.path().join("none");
        let cmd = find_command(&[d.clone(), missing]).unwrap();
        let (l, rest) = session(&format!("{cmd} 2>/dev/null; {}", end_record_command()));
        let l = l.unwrap();
        assert_eq!(l.status, 1);
        assert!(rest.is_empty());
        assert!(parse_find(&l.bytes).unwrap().iter().any(|e| e.path == d));
    }

    #[test]
    fn a_listing_without_its_end_record_is_refused() {
        let (l, _) = session("printf 'f\\0001\\000'");
        assert!(matches!(l, Err(ListingCut::Eof { read: 4 })), "{l:?}");
        assert!(l.unwrap_err().to_string().contains("before its end record"));
        let (l, _) = session("printf 'FERRY-LISTED\\000x\\000'");
        let e = l.unwrap_err().to_string();
        assert!(e.contains("no exit status"), "{e}");
        let (l, _) = session("printf 'FERRY-LISTED\\0000'");
        assert!(l.is_err(), "an end record without its final NUL");
        let (l, _) = session("printf 'f\\000no-nul'");
        assert!(matches!(l, Err(ListingCut::Eof { .. })));
    }

    proptest::proptest! {
        #[test]
        fn parse_find_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = parse_find(&bytes);
        }

        #[test]
        fn read_listing_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let mut r = &bytes[..];
            if let Ok(l) = read_listing(&mut r) {
                let _ = parse_find(&l.bytes);
            }
        }

        #[test]
        fn parse_find_reads_what_find_writes(
            size in 0u64..u64::MAX, sec in -1_000_000_000i64..4_000_000_000, nsec in 0u32..1_000_000_000,
            inode in 0u64..u64::MAX, mode in 0u32..0o7777, uid in 0u32..u32::MAX,
            name in "[^/\\x00]{1,40}", target in "[^\\x00]{0,40}",
        ) {
            let rec = format!("l\0{size}\0{sec}.{nsec:09}0\0{inode}\0{mode:o}\0{uid}\0{uid}\0{target}\0/x/{name}\0");
            let v = parse_find(rec.as_bytes()).unwrap();
            proptest::prop_assert_eq!(v.len(), 1);
            let e = &v[0];
            proptest::prop_assert_eq!((e.kind, e.size, e.inode, e.mode, e.uid), (Kind::Symlink, size, inode, mode, uid));
            proptest::prop_assert_eq!(e.mtime_sec * 1_000_000_000 + i64::from(e.mtime_nsec), sec * 1_000_000_000 + i64::from(nsec));
            proptest::prop_assert_eq!(&e.target, &PathBuf::from(&target));
            proptest::prop_assert_eq!(&e.path, &PathBuf::from(format!("/x/{name}")));
        }
    }

    #[test]
    fn find_errors_and_paths() {
        assert_eq!(
            parse_find_error("find: '/r/x y': Permission denied"),
            Some((PathBuf::from("/r/x y"), "Permission denied".into()))
        );
        assert_eq!(parse_find_error("something else"), None);
        assert_eq!(
            snapshot_path("web1", Path::new("/var/log")),
            PathBuf::from("/web1/var/log")
        );
        assert_eq!(
            snapshot_path("web1", Path::new("/")),
            PathBuf::from("/web1")
        );
    }
}
