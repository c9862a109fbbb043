//! The backup VM's own paths: the same listing, filtering and incremental rules as a remote
//! host, read straight from the local filesystem. The tree is walked by ferry-repo's one
//! local walker ([`ferry_repo::backup::local::walk`]); this file turns what it meets into
//! listing entries (like `find -H`: a symlink given as a root is followed, none below it).

use crate::collect::EngineFailure;
use crate::collect::{CheckReport, Ctx};
use crate::config::SourceSpec;
use crate::listing::{self, Entry, Kind};
use crate::sink::Sink;
use ferry_repo::backup::local::{Visit, WalkStep, walk};
use std::convert::Infallible;
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
    let mut lister = Lister::default();
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
                lister.add(a, &md);
            }
            Err(e) => lister.failed(a, &e),
        }
    }
    for root in &spec.paths {
        // Follow a symlink given as a root (like find -H), not below it.
        let md = match std::fs::metadata(root) {
            Ok(m) => m,
            Err(e) => {
                lister.failed(root, &e);
                continue;
            }
        };
        let Ok(()) = walk(root, &md, &mut lister);
    }
    let Lister {
        mut out, errors, ..
    } = lister;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    (out, errors)
}

/// Turns what the shared walker meets into listing entries (each path once) and errors.
#[derive(Default)]
struct Lister {
    out: Vec<Entry>,
    errors: Vec<(PathBuf, String)>,
    seen: std::collections::HashSet<PathBuf>,
}

impl Lister {
    /// Add `path` unless it was listed already; whether it was new.
    fn add(&mut self, path: &Path, md: &Metadata) -> bool {
        if !self.seen.insert(path.to_path_buf()) {
            return false;
        }
        self.out.push(entry_of(path, md));
        true
    }

    fn failed(&mut self, path: &Path, err: &std::io::Error) {
        self.errors.push((path.to_path_buf(), err.to_string()));
    }
}

impl Visit for Lister {
    type Error = Infallible;

    fn entry(&mut self, path: &Path, md: &Metadata) -> Result<bool, Infallible> {
        Ok(self.add(path, md))
    }

    fn error(&mut self, path: &Path, _: WalkStep, err: &std::io::Error) -> Result<(), Infallible> {
        self.failed(path, err);
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(paths: Vec<PathBuf>) -> SourceSpec {
        SourceSpec {
            name: "local".into(),
            paths,
            exclude: globset::GlobSet::empty(),
            exclude_patterns: Vec::new(),
            max_file_size: None,
        }
    }

    #[test]
    fn lists_like_find_h_ancestors_first_each_path_once() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().canonicalize().unwrap();
        std::fs::create_dir_all(r.join("data/sub")).unwrap();
        std::fs::write(r.join("data/sub/f"), b"f").unwrap();
        std::fs::write(r.join("data/g"), b"g").unwrap();
        std::os::unix::fs::symlink(r.join("data"), r.join("root-link")).unwrap();
        std::os::unix::fs::symlink(r.join("data"), r.join("data/inner-link")).unwrap();
        // Overlapping roots, and a symlink given as a root.
        let (entries, errors) = list(&spec(vec![
            r.join("data"),
            r.join("data/sub"),
            r.join("root-link"),
            r.join("missing"),
        ]));
        let got: Vec<(PathBuf, Kind)> = entries.into_iter().map(|e| (e.path, e.kind)).collect();
        let mut want: Vec<(PathBuf, Kind)> = r
            .ancestors()
            .map(|a| (a.to_path_buf(), Kind::Dir))
            .collect();
        want.extend([
            (r.join("data"), Kind::Dir),
            (r.join("data/g"), Kind::File),
            (r.join("data/inner-link"), Kind::Symlink),
            (r.join("data/sub"), Kind::Dir),
            (r.join("data/sub/f"), Kind::File),
            (r.join("root-link"), Kind::Dir),
            (r.join("root-link/g"), Kind::File),
            (r.join("root-link/inner-link"), Kind::Symlink),
            (r.join("root-link/sub"), Kind::Dir),
            (r.join("root-link/sub/f"), Kind::File),
        ]);
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, want);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, r.join("missing"));
    }
}
