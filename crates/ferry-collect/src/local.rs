//! The backup VM's own paths: the same listing, filtering and incremental rules as a remote
//! host, read straight from the local filesystem.

use crate::collect::EngineFailure;
use crate::collect::{CheckReport, Ctx};
use crate::config::SourceSpec;
use crate::listing::{self, Entry, Kind};
use crate::sink::Sink;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

fn entry_of(path: &Path, md: &Metadata) -> Entry {
    let ft = md.file_type();
    let kind = if ft.is_file() {
        Kind::File
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else {
        Kind::Other
    };
    let target = if kind == Kind::Symlink {
        std::fs::read_link(path).unwrap_or_default()
    } else {
        PathBuf::new()
    };
    Entry {
        kind,
        size: md.len(),
        mtime_sec: md.mtime(),
        mtime_nsec: u32::try_from(md.mtime_nsec()).unwrap_or(0),
        inode: md.ino(),
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        target,
        path: path.to_path_buf(),
    }
}

/// List like `find -H ROOTS` (ancestors first), collecting per-path errors.
fn list(spec: &SourceSpec) -> (Vec<Entry>, Vec<(PathBuf, String)>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut ancestors: Vec<PathBuf> = Vec::new();
    for p in &spec.paths {
        for a in p.ancestors().skip(1) {
            if !ancestors.iter().any(|x| x == a) && !spec.paths.iter().any(|x| x == a) {
                ancestors.push(a.to_path_buf());
            }
        }
    }
    ancestors.sort();
    for a in &ancestors {
        match std::fs::metadata(a) {
            Ok(md) => {
                if seen.insert(a.clone()) {
                    out.push(entry_of(a, &md));
                }
            }
            Err(e) => errors.push((a.clone(), e.to_string())),
        }
    }
    for root in &spec.paths {
        // Follow a symlink given as a root (like find -H), not below it.
        let md = match std::fs::metadata(root) {
            Ok(m) => m,
            Err(e) => {
                errors.push((root.clone(), e.to_string()));
                continue;
            }
        };
        walk(root, md, &mut out, &mut errors, &mut seen);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    (out, errors)
}

fn walk(
    path: &Path,
    md: Metadata,
    out: &mut Vec<Entry>,
    errors: &mut Vec<(PathBuf, String)>,
    seen: &mut std::collections::HashSet<PathBuf>,
) {
    if !seen.insert(path.to_path_buf()) {
        return;
    }
    let is_dir = md.is_dir();
    out.push(entry_of(path, &md));
    if !is_dir {
        return;
    }
    let rd = match std::fs::read_dir(path) {
        Ok(rd) => rd,
        Err(e) => {
            errors.push((path.to_path_buf(), e.to_string()));
            return;
        }
    };
    let mut children: Vec<PathBuf> = Vec::new();
    for item in rd {
        match item {
            Ok(d) => children.push(d.path()),
            Err(e) => errors.push((path.to_path_buf(), e.to_string())),
        }
    }
    children.sort();
    for c in children {
        match std::fs::symlink_metadata(&c) {
            Ok(m) => walk(&c, m, out, errors, seen),
            Err(e) => errors.push((c, e.to_string())),
        }
    }
}

pub(crate) fn collect_local<S: Sink>(
    ctx: &mut Ctx<'_, S>,
    spec: &SourceSpec,
) -> Result<(), EngineFailure> {
    let (entries, errors) = list(spec);
    for (p, m) in errors {
        ctx.error(&p, format!("cannot list: {m}"))?;
    }
    let (kept, skipped) = listing::filter(entries, spec);
    ctx.report.skipped = skipped;
    let need = ctx.add_listing(kept)?;
    for e in need {
        if ctx.abort.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        // O_NOFOLLOW: a path swapped for a symlink since the listing is not followed.
        let opened = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&e.path)
        };
        let mut f = match opened {
            Ok(f) => f,
            Err(err) => {
                ctx.error(&e.path, format!("Cannot open: {err}"))?;
                continue;
            }
        };
        // The file may have changed since it was listed: use its size now.
        let mut meta = e.clone();
        if let Ok(md) = f.metadata() {
            if !md.is_file() {
                ctx.error(
                    &e.path,
                    "changed type while being collected; skipped".into(),
                )?;
                continue;
            }
            meta.size = md.len();
        }
        if let Some(cap) = spec.max_file_size
            && meta.size > cap
        {
            ctx.error(
                &e.path,
                format!(
                    "grew to {} bytes, over the size cap of {cap}; skipped",
                    meta.size
                ),
            )?;
            continue;
        }
        if let Err(m) = ctx.add_file(&meta, &mut f)? {
            ctx.error(&e.path, format!("reading: {m}"))?;
        }
    }
    Ok(())
}

pub(crate) fn check_local(spec: &SourceSpec) -> CheckReport {
    let paths = spec
        .paths
        .iter()
        .map(|p| {
            let s = match std::fs::metadata(p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => "missing",
                Err(_) => "unreadable",
                Ok(md) if md.is_dir() => {
                    if std::fs::read_dir(p).is_ok() {
                        "ok"
                    } else {
                        "unreadable"
                    }
                }
                Ok(_) => {
                    if std::fs::File::open(p).is_ok() {
                        "ok"
                    } else {
                        "unreadable"
                    }
                }
            };
            (p.clone(), s.to_string())
        })
        .collect();
    CheckReport {
        name: spec.name.clone(),
        origin: "local".into(),
        connection: Ok("local paths".into()),
        paths,
    }
}
