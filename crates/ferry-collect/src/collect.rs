//! Collecting sources into a [`Sink`]: remote hosts over SSH (listing, then one tar stream of
//! the files that changed), and the backup VM's own paths; several sources at once.

use crate::config::{SourceSpec, SourcesConfig};
use crate::listing::{self, Entry, Kind, ListingError, Skip};
use crate::sink::{ExactReader, Sink, SinkError};
use crate::ssh::{self, SshFailure, SshTarget};
use ferry_ssh::SshChild;
use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// How a source ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceStatus {
    /// Everything listed was backed up (skips by exclude/size cap are not errors).
    Ok,
    /// Backed up, but some paths could not be read (see `errors`).
    Partial,
    /// Nothing (or not everything) could be collected: the host was unreachable, its key
    /// did not match, or its stream broke.
    Failed(String),
}

/// What happened to one source.
#[derive(Debug, Clone)]
pub struct SourceReport {
    /// Source name from the config (its top directory in the snapshot).
    pub name: String,
    /// `local` or `user@address:port`.
    pub origin: String,
    /// How the source ended; anything but [`SourceStatus::Ok`] makes the run partial.
    pub status: SourceStatus,
    /// Paths listed after filtering (files, directories, symlinks).
    pub entries: u64,
    /// Files found unchanged since the previous snapshot: not transferred.
    pub files_unchanged: u64,
    /// Files whose content was read (transferred, for a host).
    pub files_read: u64,
    /// Content bytes of the files read.
    pub content_bytes: u64,
    /// Bytes read from ssh: listing plus tar stream (0 for local).
    pub wire_bytes: u64,
    /// Bytes of the tar stream alone (file content plus tar headers).
    pub transfer_bytes: u64,
    /// Content bytes of this source the repository did not have (after deduplication).
    pub new_bytes: u64,
    /// Paths left out on purpose (excluded, over the size cap, special files, or listed
    /// outside the configured paths), as listed on the host (or the backup VM), with the
    /// reason; not errors.
    pub skipped: Vec<(PathBuf, Skip)>,
    /// Per-path errors (remote paths), also recorded in the snapshot.
    pub errors: Vec<(PathBuf, String)>,
}

impl SourceReport {
    fn new(name: &str, origin: String) -> Self {
        SourceReport {
            name: name.to_string(),
            origin,
            status: SourceStatus::Ok,
            entries: 0,
            files_unchanged: 0,
            files_read: 0,
            content_bytes: 0,
            wire_bytes: 0,
            transfer_bytes: 0,
            new_bytes: 0,
            skipped: Vec::new(),
            errors: Vec::new(),
        }
    }
}

/// The whole collection.
#[derive(Debug, Clone, Default)]
pub struct CollectReport {
    /// One report per source that ran to its end (ok, partial or failed), in job order.
    pub sources: Vec<SourceReport>,
}

impl CollectReport {
    /// True when any source failed or had unreadable paths: the run's exit code is "partial".
    pub fn is_partial(&self) -> bool {
        self.sources.iter().any(|s| s.status != SourceStatus::Ok)
    }

    /// A human summary, one line per source plus its errors.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for s in &self.sources {
            let status = match &s.status {
                SourceStatus::Ok => "ok".to_string(),
                SourceStatus::Partial => format!("PARTIAL ({} errors)", s.errors.len()),
                SourceStatus::Failed(m) => format!("FAILED: {m}"),
            };
            out.push_str(&format!(
                "{:<16} {:<28} {status}\n  {} entries, {} files read ({} bytes), {} unchanged, {} bytes over ssh, {} skipped\n",
                s.name,
                s.origin,
                s.entries,
                s.files_read,
                s.content_bytes,
                s.files_unchanged,
                s.wire_bytes,
                s.skipped.len()
            ));
            let failed = matches!(s.status, SourceStatus::Failed(_));
            // A failed source's own "/" error repeats the FAILED line above.
            let shown: Vec<_> = s
                .errors
                .iter()
                .filter(|(p, _)| !(failed && p.as_os_str() == "/"))
                .collect();
            for (p, m) in shown.iter().take(20) {
                out.push_str(&format!("  error: {}: {m}\n", p.display()));
            }
            if shown.len() > 20 {
                out.push_str(&format!("  … and {} more errors\n", shown.len() - 20));
            }
        }
        out
    }
}

/// The engine failed: the backup must stop (nothing already stored is affected).
#[derive(Debug, thiserror::Error)]
#[error("repository engine failed while collecting {source_name} ({path}): {message}")]
pub struct EngineFailure {
    /// The source being collected when the engine failed (`-` when not known).
    pub source_name: String,
    /// The snapshot path (`/<source>/<remote path>`) being added, `/` for the snapshot as a
    /// whole, or `-` when not known.
    pub path: String,
    /// The engine's error message.
    pub message: String,
}

/// One unit of work.
#[derive(Clone, Debug)]
pub enum Job {
    /// The backup VM's own paths, read from the local filesystem.
    Local(SourceSpec),
    /// A remote host: how to reach it over ssh, and what to collect there.
    Host(SshTarget, SourceSpec),
}

impl Job {
    /// The source's name (its top directory in the snapshot).
    pub fn name(&self) -> &str {
        match self {
            Job::Local(s) | Job::Host(_, s) => &s.name,
        }
    }
}

/// The jobs a validated config describes, local first then hosts in config order.
pub fn jobs_of(cfg: &SourcesConfig) -> Result<Vec<Job>, crate::config::ConfigError> {
    cfg.validate()?;
    let mut jobs = Vec::new();
    if let Some(l) = cfg.local_spec()? {
        jobs.push(Job::Local(l));
    }
    for h in &cfg.host {
        let mut t = SshTarget::from_config(h, cfg.connect_timeout);
        t.ssh_debug = cfg.ssh_debug;
        jobs.push(Job::Host(t, cfg.host_spec(h)?));
    }
    Ok(jobs)
}

/// Collect every job into `sink`, at most `parallel` at once. Returns the sink back (to be
/// finished by the caller) with the report; an engine failure stops everything.
pub fn collect<S: Sink>(
    jobs: &[Job],
    parallel: usize,
    sink: S,
) -> Result<(S, CollectReport), EngineFailure> {
    let sink = Mutex::new(sink);
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let results: Mutex<Vec<(usize, SourceReport)>> = Mutex::new(Vec::new());
    let failure: Mutex<Option<EngineFailure>> = Mutex::new(None);
    let workers = parallel.clamp(1, jobs.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    if abort.load(Ordering::SeqCst) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(job) = jobs.get(i) else { break };
                    let mut ctx = Ctx {
                        sink: &sink,
                        abort: &abort,
                        report: SourceReport::new(job.name(), String::new()),
                    };
                    if let Ok(mut s) = sink.lock() {
                        s.add_source(job.name());
                    }
                    let r = match job {
                        Job::Local(spec) => {
                            ctx.report.origin = "local".into();
                            crate::local::collect_local(&mut ctx, spec)
                        }
                        Job::Host(t, spec) => {
                            ctx.report.origin = t.display();
                            collect_host(&mut ctx, t, spec)
                        }
                    };
                    match r {
                        Ok(()) => {
                            if let Ok(mut v) = results.lock() {
                                v.push((i, ctx.report));
                            }
                        }
                        Err(e) => {
                            abort.store(true, Ordering::SeqCst);
                            if let Ok(mut f) = failure.lock() {
                                f.get_or_insert(e);
                            }
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(f) = failure.into_inner().ok().flatten() {
        return Err(f);
    }
    let mut results = results.into_inner().unwrap_or_default();
    results.sort_by_key(|(i, _)| *i);
    let sink = sink.into_inner().map_err(|_| EngineFailure {
        source_name: "-".into(),
        path: "-".into(),
        message: "a collector thread panicked while holding the snapshot".into(),
    })?;
    Ok((
        sink,
        CollectReport {
            sources: results.into_iter().map(|(_, r)| r).collect(),
        },
    ))
}

/// Per-source state shared by the local and remote collectors.
pub(crate) struct Ctx<'a, S: Sink> {
    pub sink: &'a Mutex<S>,
    pub abort: &'a AtomicBool,
    pub report: SourceReport,
}

impl<S: Sink> Ctx<'_, S> {
    pub fn lock(&self) -> Result<std::sync::MutexGuard<'_, S>, EngineFailure> {
        self.sink
            .lock()
            .map_err(|_| self.engine_failure(Path::new("/"), "snapshot lock poisoned".into()))
    }

    pub fn engine_failure(&self, path: &Path, message: String) -> EngineFailure {
        EngineFailure {
            source_name: self.report.name.clone(),
            path: path.display().to_string(),
            message,
        }
    }

    fn engine(&self, path: &Path, e: SinkError) -> EngineFailure {
        self.engine_failure(path, e.to_string())
    }

    /// Record a per-path error (remote path) in the report and in the snapshot.
    pub fn error(&mut self, remote: &Path, message: String) -> Result<(), EngineFailure> {
        tracing::warn!(source = %self.report.name, path = %remote.display(), "{message}");
        self.lock()?
            .record_error(&self.report.name, remote, &message);
        self.report.errors.push((remote.to_path_buf(), message));
        if self.report.status == SourceStatus::Ok {
            self.report.status = SourceStatus::Partial;
        }
        Ok(())
    }

    /// The whole source failed (nothing more is collected from it).
    pub fn fail(&mut self, message: String) -> Result<(), EngineFailure> {
        let full = format!("{} ({}): {message}", self.report.name, self.report.origin);
        tracing::warn!(source = %self.report.name, "{full}");
        self.lock()?.source_failed(&self.report.name, &full);
        self.report.errors.push((PathBuf::from("/"), full));
        self.report.status = SourceStatus::Failed(message);
        Ok(())
    }

    /// Add directories and symlinks, reuse unchanged files; returns the files to read.
    ///
    /// A file is unchanged when the previous run saw it at the same path with the same size,
    /// mtime and inode — or at another path of the same directory (a rotated log: renamed,
    /// so same inode, size and mtime), trying at most [`RENAME_CANDIDATES`] siblings.
    pub fn add_listing(&mut self, kept: Vec<Entry>) -> Result<Vec<Entry>, EngineFailure> {
        let mut need = Vec::new();
        self.report.entries = kept.len() as u64;
        let name = self.report.name.clone();
        let mut unchanged = 0u64;
        let mut siblings: HashMap<&Path, Vec<&Path>> = HashMap::new();
        for e in kept.iter().filter(|e| e.kind == Kind::File) {
            if let Some(d) = e.path.parent() {
                siblings.entry(d).or_default().push(&e.path);
            }
        }
        let mut sink = self
            .sink
            .lock()
            .map_err(|_| self.engine_failure(Path::new("/"), "snapshot lock poisoned".into()))?;
        for e in &kept {
            let sp = listing::snapshot_path(&name, &e.path);
            let r = match e.kind {
                Kind::Dir => sink.add_dir(&sp, e),
                Kind::Symlink => sink.add_symlink(&sp, e),
                Kind::File => (|| {
                    if sink.reuse_unchanged(&sp, &sp, e)? {
                        return Ok(true);
                    }
                    let cands = e.path.parent().and_then(|d| siblings.get(d));
                    for c in cands
                        .into_iter()
                        .flatten()
                        .filter(|c| **c != e.path)
                        .take(RENAME_CANDIDATES)
                    {
                        if sink.reuse_unchanged(&sp, &listing::snapshot_path(&name, c), e)? {
                            return Ok(true);
                        }
                    }
                    Ok(false)
                })()
                .map(|reused| {
                    if reused {
                        unchanged += 1;
                    } else {
                        need.push(e.clone());
                    }
                }),
                Kind::Other => Ok(()),
            };
            if let Err(err) = r {
                return Err(EngineFailure {
                    source_name: name.clone(),
                    path: sp.display().to_string(),
                    message: err.to_string(),
                });
            }
        }
        drop(sink);
        self.report.files_unchanged += unchanged;
        Ok(need)
    }

    /// Feed one file's content. `Ok(Err(e))`: the file's stream failed (a source problem: the
    /// reader's error, or the engine's message about it with the reader's error kind).
    pub fn add_file(
        &mut self,
        meta: &Entry,
        reader: &mut dyn Read,
    ) -> Result<Result<(), std::io::Error>, EngineFailure> {
        let sp = listing::snapshot_path(&self.report.name, &meta.path);
        let mut exact = ExactReader::new(reader, meta.size);
        let (r, new) = {
            let mut sink = self.lock()?;
            let before = sink.new_bytes();
            let r = sink.add_file(&sp, meta, &mut exact);
            (r, sink.new_bytes().saturating_sub(before))
        };
        self.report.new_bytes += new;
        match r {
            Ok(()) => {
                self.report.files_read += 1;
                self.report.content_bytes += meta.size;
                Ok(Ok(()))
            }
            Err(SinkError::Source(e)) => Ok(Err(e)),
            Err(SinkError::Engine(m)) => match exact.source_error {
                Some(kind) => Ok(Err(std::io::Error::new(kind, m))),
                None => Err(self.engine(&sp, SinkError::Engine(m))),
            },
        }
    }
}

/// How many other files of the same directory are tried as a renamed file's previous path.
pub const RENAME_CANDIDATES: usize = 64;

struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Bytes of ssh's stderr kept (the last ones): find's and tar's per-file messages are read
/// from it, so a host gets more room than [`ferry_ssh::STDERR_CAP`].
const STDERR_CAP: usize = 1 << 20;

/// Kernel buffer of the pipe from ssh (F_SETPIPE_SZ; the default is 64 KiB): ssh and the
/// remote tar keep streaming while the engine chunks and hashes the previous megabyte.
const PIPE_BUFFER: libc::c_int = 1 << 20;

fn enlarge_pipe(fd: &impl std::os::fd::AsRawFd) {
    // SAFETY: fcntl on a pipe descriptor we own; failure (e.g. over pipe-max-size) is harmless.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BUFFER) };
    if r < 0 {
        tracing::debug!("F_SETPIPE_SZ failed: {}", std::io::Error::last_os_error());
    }
}

/// The remote command that streams the files whose names arrive NUL-separated on stdin.
pub const TAR_COMMAND: &str = "LC_ALL=C; export LC_ALL; exec tar -cf - --format=gnu --null --no-recursion --verbatim-files-from --no-unquote --absolute-names --hard-dereference --quoting-style=literal -T -";

/// The one remote command of a host's collection: the listing, its end record, then the tar
/// of the names that arrive on stdin. One SSH session per host and run: one login in the
/// host's auth log, one key exchange (about 0.2 s on loopback, docs/BENCHMARKS.md).
pub fn session_command(paths: &[PathBuf]) -> Result<String, listing::ListingError> {
    Ok(format!(
        "{}; {}; {TAR_COMMAND}",
        listing::find_command(paths)?,
        listing::end_record_command()
    ))
}

fn collect_host<S: Sink>(
    ctx: &mut Ctx<'_, S>,
    t: &SshTarget,
    spec: &SourceSpec,
) -> Result<(), EngineFailure> {
    if let Err(f) = t.preflight() {
        return ctx.fail(f.to_string());
    }
    let cmd = match session_command(&spec.paths) {
        Ok(c) => c,
        Err(m) => return ctx.fail(m.to_string()),
    };
    let mut ssh = match t.spawn(&cmd, Stdio::piped(), STDERR_CAP) {
        Ok(c) => c,
        Err(f) => return ctx.fail(f.to_string()),
    };
    let (Some(stdin), Some(stdout)) = (ssh.take_stdin(), ssh.take_stdout()) else {
        ssh.kill();
        return ctx.fail("ssh pipes missing".into());
    };
    enlarge_pipe(&stdout);
    let counter = Arc::new(AtomicU64::new(0));
    let mut session = Session {
        ssh,
        stdin,
        reader: BufReader::with_capacity(
            256 << 10,
            Counting {
                inner: stdout,
                count: counter.clone(),
            },
        ),
        counter,
        listed_bytes: 0,
    };
    // 1. The listing, up to its end record.
    let raw = listing::read_listing(&mut session.reader);
    session.listed_bytes =
        session.counter.load(Ordering::Relaxed) - session.reader.buffer().len() as u64;
    ctx.report.wire_bytes += session.listed_bytes;
    let raw = match raw {
        Ok(r) => r,
        Err(cut) => {
            let (code, stderr) = session.end();
            return ctx.fail(match (code, &cut) {
                (Some(255) | None, listing::ListingCut::Eof { .. }) => {
                    ssh::classify(&stderr).to_string()
                }
                _ => format!("{cut}: {}", ssh::summarise(&stderr)),
            });
        }
    };
    if raw.status == 127 {
        let (_, stderr) = session.end();
        return ctx.fail(format!(
            "the host has no `find` command (GNU findutils needed): {}",
            ssh::summarise(&stderr)
        ));
    }
    let entries = match listing::parse_find(&raw.bytes) {
        Ok(e) => e,
        Err(m) => {
            session.end();
            return ctx.fail(m.to_string());
        }
    };
    let (kept, skipped) = listing::filter(entries, spec);
    ctx.report.skipped = skipped;
    let need = match ctx.add_listing(kept) {
        Ok(n) => n,
        Err(e) => {
            session.end();
            return Err(e);
        }
    };
    if ctx.abort.load(Ordering::SeqCst) {
        session.end();
        return Ok(());
    }
    // 2. The same session's tar of the files to read (an empty list: an empty archive).
    stream_files(ctx, session, need, spec.max_file_size)
}

/// A host session after its listing: the tar waits for names on `stdin`.
struct Session {
    ssh: SshChild,
    stdin: std::process::ChildStdin,
    reader: BufReader<Counting<std::process::ChildStdout>>,
    counter: Arc<AtomicU64>,
    /// Bytes of stdout that were the listing (the rest is the tar stream).
    listed_bytes: u64,
}

impl Session {
    /// Stop a session that is not needed any more; returns ssh's exit code and stderr.
    fn end(mut self) -> (Option<i32>, String) {
        drop(self.stdin);
        let f = self.ssh.kill();
        (f.code(), f.stderr)
    }
}

fn stream_files<S: Sink>(
    ctx: &mut Ctx<'_, S>,
    session: Session,
    need: Vec<Entry>,
    max_size: Option<u64>,
) -> Result<(), EngineFailure> {
    let Session {
        mut ssh,
        mut stdin,
        reader,
        counter,
        listed_bytes,
    } = session;
    let names: Vec<Vec<u8>> = need
        .iter()
        .map(|e| listing::path_bytes(&e.path).to_vec())
        .collect();
    let writer = std::thread::spawn(move || {
        let mut w = std::io::BufWriter::new(&mut stdin);
        for n in &names {
            if w.write_all(n).and_then(|_| w.write_all(&[0])).is_err() {
                return;
            }
        }
        let _ = w.flush();
        drop(w);
        drop(stdin);
    });
    let mut by_path: HashMap<&[u8], usize> = HashMap::with_capacity(need.len());
    for (i, e) in need.iter().enumerate() {
        by_path.insert(listing::path_bytes(&e.path), i);
    }
    let mut received = vec![false; need.len()];
    let mut broken: Option<String> = None;
    let mut archive = tar::Archive::new(reader);
    let mut engine_err: Option<EngineFailure> = None;
    match archive.entries() {
        Err(e) => broken = Some(format!("reading the tar stream: {e}")),
        Ok(entries) => {
            for item in entries {
                if ctx.abort.load(Ordering::SeqCst) {
                    broken = Some("backup aborted".into());
                    break;
                }
                let mut entry = match item {
                    Ok(e) => e,
                    Err(e) => {
                        broken = Some(format!("reading the tar stream: {e}"));
                        break;
                    }
                };
                let name = entry.path_bytes().into_owned();
                let Some(&i) = by_path.get(name.as_slice()) else {
                    broken = Some(format!(
                        "the host sent an entry that was not asked for: {}",
                        String::from_utf8_lossy(&name)
                    ));
                    break;
                };
                received[i] = true;
                let header_size = entry.size();
                let et = entry.header().entry_type();
                if !et.is_file() {
                    ctx.error(
                        &need[i].path,
                        "changed type while being collected; skipped".into(),
                    )?;
                    continue;
                }
                // Content as streamed now; size from the tar header (the file may have grown
                // since the listing; the listed mtime then makes the next run read it again).
                if let Some(cap) = max_size
                    && header_size > cap
                {
                    // Grew past the cap since the listing; tar's reader skips the content.
                    ctx.error(
                        &need[i].path,
                        format!("grew to {header_size} bytes, over the size cap of {cap}; skipped"),
                    )?;
                    continue;
                }
                let mut meta = need[i].clone();
                meta.size = header_size;
                match ctx.add_file(&meta, &mut entry) {
                    Ok(Ok(())) => {}
                    Ok(Err(m)) => {
                        ctx.error(&meta.path, format!("stream broke: {m}"))?;
                        broken = Some(format!("stream broke in {}: {m}", meta.path.display()));
                        break;
                    }
                    Err(e) => {
                        engine_err = Some(e);
                        break;
                    }
                }
            }
        }
    }
    let ended = if broken.is_some() || engine_err.is_some() {
        ssh.kill()
    } else {
        ssh.wait()
    };
    let _ = writer.join();
    let stderr = ended.stderr.clone();
    let tb = counter.load(Ordering::Relaxed).saturating_sub(listed_bytes);
    ctx.report.transfer_bytes += tb;
    ctx.report.wire_bytes += tb;
    if let Some(e) = engine_err {
        return Err(e);
    }
    // What find said while listing (it shares stderr with tar). A find without -printf
    // says so in a line that names no path ("find: unrecognized: -printf"); a file whose
    // name holds "-printf" is not mistaken for it.
    if let Some(l) = stderr.lines().find(|l| {
        l.starts_with("find: ") && l.contains("-printf") && listing::parse_find_error(l).is_none()
    }) {
        return ctx.fail(format!(
            "the host's find does not support -printf (GNU findutils needed): {l}"
        ));
    }
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        match listing::parse_find_error(line) {
            Some((p, m)) => ctx.error(&p, format!("cannot list: {m}"))?,
            None if line.starts_with("find: ") => {
                ctx.error(Path::new("/"), format!("listing: {line}"))?
            }
            // tar's lines are read below.
            None if line.starts_with("tar: ") => {}
            // Login noise ("Could not chdir to home directory", banners): not about our files.
            None => tracing::debug!(source = %ctx.report.name, "ssh stderr: {line}"),
        }
    }
    let code = ended.code();
    if broken.is_none() && code == Some(255) {
        broken = Some(ssh::classify(&stderr).to_string());
    }
    // Files asked for but not sent: match tar's message for each.
    let mut unexplained = 0usize;
    for (i, e) in need.iter().enumerate() {
        if received[i] {
            continue;
        }
        let prefix = format!("tar: {}: ", e.path.display());
        match stderr.lines().find(|l| l.starts_with(&prefix)) {
            Some(l) => {
                let msg = l[prefix.len()..].trim().to_string();
                ctx.error(&e.path, msg)?;
            }
            None => {
                unexplained += 1;
                if broken.is_none() {
                    ctx.error(
                        &e.path,
                        format!("not sent by the host: {}", ssh::summarise(&stderr)),
                    )?;
                }
            }
        }
    }
    // Warnings about files that were sent (e.g. "file changed as we read it").
    for line in stderr.lines() {
        if let Some(rest) = line.strip_prefix("tar: ")
            && (rest.contains("file changed as we read it") || rest.contains("shrank"))
        {
            ctx.error(Path::new("/"), format!("tar: {rest}"))?;
        }
    }
    if let Some(b) = broken {
        let m = if unexplained > 0 {
            format!("{b} ({unexplained} files not collected)")
        } else {
            b
        };
        ctx.fail(m)?;
    }
    Ok(())
}

/// Result of `sources check` for one source.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// Source name from the config.
    pub name: String,
    /// `local` or `user@address:port`.
    pub origin: String,
    /// `Err` when the connection or host key failed, the host lacks GNU find or tar, or a
    /// path is not UTF-8;
    /// `Ok` says what was found (the find and tar versions, for a host).
    pub connection: Result<String, CheckError>,
    /// Per configured path: `ok`, `missing`, `unreadable`.
    pub paths: Vec<(PathBuf, String)>,
}

/// Why `sources check` finds a source unusable ([`CheckReport::connection`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// ssh did not get in (host key, network, login) or could not start (a local file).
    #[error(transparent)]
    Ssh(#[from] SshFailure),
    /// A configured path cannot be passed to the remote shell.
    #[error(transparent)]
    Path(#[from] ListingError),
    /// The check command ran on the host and failed.
    #[error("remote check exited {code}: {stderr}")]
    RemoteExit {
        /// Its exit status.
        code: i32,
        /// ssh's standard error, summarised.
        stderr: String,
    },
    /// Connected, but the host lacks what collecting needs (GNU find, GNU tar).
    #[error("connected, host key matches, but {}", missing.join("; "))]
    MissingTools {
        /// One sentence per missing tool, with what was found instead.
        missing: Vec<String>,
    },
}

impl CheckReport {
    /// The connection worked and every configured path is `ok`.
    pub fn ok(&self) -> bool {
        self.connection.is_ok() && self.paths.iter().all(|(_, s)| s == "ok")
    }
}

/// `ferry sources check --json`: `{"connection": {"message": …, "ok": …}, "ok": …,
/// "origin": …, "paths": [{"path": …, "state": …}], "source": …}` (keys in alphabetical
/// order).
impl serde::Serialize for CheckReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Connection {
            message: String,
            ok: bool,
        }
        #[derive(serde::Serialize)]
        struct PathState<'a> {
            path: String,
            state: &'a str,
        }
        #[derive(serde::Serialize)]
        struct Report<'a> {
            connection: Connection,
            ok: bool,
            origin: &'a str,
            paths: Vec<PathState<'a>>,
            source: &'a str,
        }
        let (ok, message) = match &self.connection {
            Ok(m) => (true, m.clone()),
            Err(e) => (false, e.to_string()),
        };
        Report {
            connection: Connection { message, ok },
            ok: self.ok(),
            origin: &self.origin,
            paths: (self.paths.iter())
                .map(|(p, s)| PathState {
                    path: p.display().to_string(),
                    state: s,
                })
                .collect(),
            source: &self.name,
        }
        .serialize(serializer)
    }
}

/// Test each source's connection, host key and paths without backing anything up.
pub fn check(jobs: &[Job], parallel: usize) -> Vec<CheckReport> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, CheckReport)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..parallel.clamp(1, jobs.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(job) = jobs.get(i) else { break };
                    let r = match job {
                        Job::Local(spec) => crate::local::check_local(spec),
                        Job::Host(t, spec) => check_host(t, spec),
                    };
                    if let Ok(mut v) = results.lock() {
                        v.push((i, r));
                    }
                }
            });
        }
    });
    let mut v = results.into_inner().unwrap_or_default();
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, r)| r).collect()
}

fn check_host(t: &SshTarget, spec: &SourceSpec) -> CheckReport {
    let mut r = CheckReport {
        name: spec.name.clone(),
        origin: t.display(),
        connection: Ok(String::new()),
        paths: Vec::new(),
    };
    if let Err(f) = t.preflight() {
        r.connection = Err(f.into());
        return r;
    }
    let mut cmd = String::from(
        "LC_ALL=C; export LC_ALL; echo \"find: $(find --version 2>/dev/null | head -n 1)\"; echo \"tar: $(tar --version 2>/dev/null | head -n 1)\"; for p in",
    );
    for p in &spec.paths {
        match p.to_str() {
            Some(s) => {
                cmd.push(' ');
                cmd.push_str(&ssh::shell_quote(s));
            }
            None => {
                r.connection = Err(ListingError::NotUtf8 { path: p.clone() }.into());
                return r;
            }
        }
    }
    cmd.push_str("; do if [ ! -e \"$p\" ] && [ ! -L \"$p\" ]; then echo missing; elif [ -d \"$p\" ] && { [ ! -r \"$p\" ] || [ ! -x \"$p\" ]; }; then echo unreadable; elif [ ! -r \"$p\" ]; then echo unreadable; else echo ok; fi; done");
    let mut ssh = match t.spawn(&cmd, Stdio::null(), ferry_ssh::STDERR_CAP) {
        Ok(c) => c,
        Err(f) => {
            r.connection = Err(f.into());
            return r;
        }
    };
    let mut stdout = Vec::new();
    if let Some(mut o) = ssh.take_stdout() {
        let _ = o.read_to_end(&mut stdout);
    }
    let out = ssh.wait();
    let stderr = &out.stderr;
    if out.code() != Some(0) {
        r.connection = Err(match out.code() {
            Some(255) | None => ssh::classify(stderr).into(),
            Some(code) => CheckError::RemoteExit {
                code,
                stderr: ssh::summarise(stderr),
            },
        });
        return r;
    }
    let stdout = String::from_utf8_lossy(&stdout);
    let mut lines = stdout.lines();
    let find_v = lines.next().unwrap_or("").trim().to_string();
    let tar_v = lines.next().unwrap_or("").trim().to_string();
    let mut problems = Vec::new();
    if !find_v.contains("GNU findutils") {
        problems.push(format!("GNU find is needed on the host (found {find_v:?})"));
    }
    if !tar_v.contains("GNU tar") {
        problems.push(format!("GNU tar is needed on the host (found {tar_v:?})"));
    }
    r.connection = if problems.is_empty() {
        Ok(format!("connected, host key matches; {find_v}; {tar_v}"))
    } else {
        Err(CheckError::MissingTools { missing: problems })
    };
    for p in &spec.paths {
        r.paths.push((
            p.clone(),
            lines.next().unwrap_or("no answer").trim().to_string(),
        ));
    }
    r
}
