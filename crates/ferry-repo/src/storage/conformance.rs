//! The storage conformance suite: one set of cases every [`Storage`] backend runs, so
//! "write-once", "a streaming put appears only on commit" or "a ranged get is exact" mean the
//! same thing for the local directory, the in-memory store, S3 and the gate.
//! Model: restic's `internal/backend/test/suite.go`.
//!
//! Test support, behind the `conformance` cargo feature: enable it only from
//! `[dev-dependencies]` (`ferry-repo = { workspace = true, features = ["conformance"] }`).
//!
//! A [`Backend`] names the store under test (the writer), optionally a separate reader (the
//! gate is write-only: its objects are read back from the bucket with an
//! `ferry_s3::S3Storage` on the same prefix) and what it checks ([`Checks`]).
//! [`run`] runs every case on an **empty** store and returns a [`Report`] of the cases it
//! ran and the ones it skipped, each with the reason; it panics naming every failed case,
//! and when no case ran. Callers assert the skipped list, so a skip is never silent.
//!
//! Every object the suite writes is a valid Ferry object ([`object`]: the header, then a
//! body; content-addressed kinds named by the SHA-256 of their bytes), so a checking
//! backend (the gate) accepts it.

use super::{PutOutcome, Storage, StorageError};
use crate::format::{CONFIG_NAME, ObjectKind, header, object_name};
use std::collections::BTreeSet;
use std::fmt;

/// A valid object of `kind`: the Ferry header, then `body`; named by the SHA-256 of the
/// bytes (`config` for the config object).
pub fn object(kind: ObjectKind, body: &[u8]) -> (String, Vec<u8>) {
    let mut bytes = header(kind).to_vec();
    bytes.extend_from_slice(body);
    let name = if kind.content_addressed() {
        object_name(&bytes)
    } else {
        CONFIG_NAME.to_string()
    };
    (name, bytes)
}

/// What a backend refuses on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// Stores any name it is given (`LocalDir`, S3): the refusal case is skipped.
    Nothing,
    /// Refuses names that are not a lowercase hex SHA-256 (`config` for the config object).
    Names,
    /// Also checks every object: the Ferry header of its kind, the SHA-256 of the bytes equal
    /// to the name, and a config that differs from the stored one is refused, not
    /// "already present" (the gate). Different bytes under an existing name cannot be
    /// offered, so write-once is shown with the same bytes and the refusals.
    Objects,
}

/// A backend under test.
pub struct Backend<'a> {
    /// Shown in every message.
    pub name: &'a str,
    /// Puts, lists and barriers go here.
    pub writer: &'a dyn Storage,
    /// Gets and ranged gets go here, and listings are checked here too; `None`: the writer.
    pub reader: Option<&'a dyn Storage>,
    /// What the writer refuses by itself, which selects the refusal cases (default
    /// [`Checks::Nothing`]).
    pub checks: Checks,
    /// Pack puts answer a provisional `Stored` once sent; the verdict comes at the barrier
    /// (the gate). The suite then asserts pack outcomes only through what is stored.
    pub pipelined_packs: bool,
}

impl<'a> Backend<'a> {
    /// A backend that reads its own objects, checks nothing and answers every put at once.
    pub fn new(name: &'a str, writer: &'a dyn Storage) -> Self {
        Self {
            name,
            writer,
            reader: None,
            checks: Checks::Nothing,
            pipelined_packs: false,
        }
    }

    /// Read back through `reader` instead of the writer.
    pub fn reader(mut self, reader: &'a dyn Storage) -> Self {
        self.reader = Some(reader);
        self
    }

    /// Declare what the writer refuses by itself (see [`Checks`]).
    pub fn checks(mut self, checks: Checks) -> Self {
        self.checks = checks;
        self
    }

    /// Declare that pack puts answer a provisional `Stored` (sets the `pipelined_packs` field).
    pub fn pipelined_packs(mut self) -> Self {
        self.pipelined_packs = true;
        self
    }

    fn read(&self) -> &dyn Storage {
        self.reader.unwrap_or(self.writer)
    }
}

/// What [`run`] did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The backend's name and its writer's location: `name (location)`.
    pub backend: String,
    /// The cases that ran and passed.
    pub ran: Vec<&'static str>,
    /// The cases that did not apply, with the reason.
    pub skipped: Vec<(&'static str, String)>,
}

impl Report {
    /// The names of the skipped cases.
    pub fn skipped_cases(&self) -> Vec<&'static str> {
        self.skipped.iter().map(|(c, _)| *c).collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "storage conformance for {}: {} cases ran, {} skipped",
            self.backend,
            self.ran.len(),
            self.skipped.len()
        )?;
        for c in &self.ran {
            writeln!(f, "  ran      {c}")?;
        }
        for (c, why) in &self.skipped {
            writeln!(f, "  skipped  {c}: {why}")?;
        }
        Ok(())
    }
}

/// A case's verdict: `Ok(None)` passed, `Ok(Some(reason))` does not apply, `Err` failed.
type Outcome = Result<Option<String>, String>;
type Case = fn(&Backend<'_>) -> Outcome;

/// Every case, in the order they run.
const CASES: &[(&str, Case)] = &[
    ("write-once put", write_once),
    ("config is write-once", config_write_once),
    ("list per kind", list_per_kind),
    ("get of a missing object is NotFound", missing_is_not_found),
    ("ranged get", ranged_get),
    ("streaming put appears only on commit", streaming_put),
    ("abandoned streaming put leaves nothing", abandoned_put),
    ("barrier after puts", barrier_after_puts),
    ("concurrent puts of one name", concurrent_same_name),
    (
        "concurrent puts of different names",
        concurrent_different_names,
    ),
    ("refused names and objects", refusals),
    ("delete and copy, or refused as put-only", delete_and_copy),
];

/// The names of every case, in the order they run.
pub fn case_names() -> Vec<&'static str> {
    CASES.iter().map(|(n, _)| *n).collect()
}

/// Run every case against `backend`, whose store must be empty. Panics naming each failed
/// case (and when no case ran); returns which cases ran and which were skipped, and why.
pub fn run(backend: &Backend<'_>) -> Report {
    let mut report = Report {
        backend: format!("{} ({})", backend.name, backend.writer.location()),
        ran: Vec::new(),
        skipped: Vec::new(),
    };
    if let Err(e) = empty(backend) {
        panic!("storage conformance for {}: {e}", report.backend);
    }
    let mut failed = Vec::new();
    for (name, case) in CASES {
        match case(backend) {
            Ok(None) => report.ran.push(name),
            Ok(Some(why)) => report.skipped.push((name, why)),
            Err(e) => failed.push(format!("  {name}: {e}")),
        }
    }
    if !failed.is_empty() {
        panic!(
            "storage conformance for {}: {} of {} cases failed:\n{}\n{report}",
            report.backend,
            failed.len(),
            CASES.len(),
            failed.join("\n")
        );
    }
    if report.ran.is_empty() {
        panic!(
            "storage conformance for {}: no case ran\n{report}",
            report.backend
        );
    }
    report
}

const CONTENT_KINDS: [ObjectKind; 3] = [ObjectKind::Pack, ObjectKind::Index, ObjectKind::Snapshot];

fn ctx<T>(what: &str, r: Result<T, StorageError>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn expect_eq<T: PartialEq + fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, expected {want:?}"))
    }
}

/// The store starts empty (so listings can be compared exactly).
fn empty(b: &Backend<'_>) -> Result<(), String> {
    for kind in ObjectKind::ALL {
        let names = ctx(&format!("listing {kind}"), b.read().list(kind))?;
        if !names.is_empty() {
            return Err(format!(
                "the store must start empty, but it holds {kind} objects {names:?}"
            ));
        }
    }
    Ok(())
}

/// Put, expecting `want` (any success for a pipelined pack: its answer is provisional).
fn put(
    b: &Backend<'_>,
    kind: ObjectKind,
    name: &str,
    bytes: &[u8],
    want: PutOutcome,
) -> Result<(), String> {
    let what = format!("put {}", kind.key(name));
    let got = ctx(&what, b.writer.put_if_absent(kind, name, bytes))?;
    if kind == ObjectKind::Pack && b.pipelined_packs {
        return Ok(());
    }
    expect_eq(&what, got, want)
}

fn barrier(b: &Backend<'_>) -> Result<(), String> {
    ctx("barrier", b.writer.barrier())
}

fn get(b: &Backend<'_>, kind: ObjectKind, name: &str) -> Result<Vec<u8>, String> {
    ctx(&format!("get {}", kind.key(name)), b.read().get(kind, name))
}

fn expect_object(b: &Backend<'_>, kind: ObjectKind, name: &str, want: &[u8]) -> Result<(), String> {
    let got = get(b, kind, name)?;
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{} holds {} bytes that differ from the {} bytes written first",
            kind.key(name),
            got.len(),
            want.len()
        ))
    }
}

/// Listing of `kind` through the writer and the reader (both must agree).
fn list(b: &Backend<'_>, kind: ObjectKind) -> Result<BTreeSet<String>, String> {
    let w: BTreeSet<String> = ctx(&format!("list {kind}"), b.writer.list(kind))?
        .into_iter()
        .collect();
    if let Some(r) = b.reader {
        let r: BTreeSet<String> = ctx(&format!("list {kind} (reader)"), r.list(kind))?
            .into_iter()
            .collect();
        expect_eq(&format!("list {kind}: writer vs reader"), &w, &r)?;
    }
    Ok(w)
}

fn write_once(b: &Backend<'_>) -> Outcome {
    for kind in CONTENT_KINDS {
        let (name, bytes) = object(kind, format!("write-once {kind}").as_bytes());
        put(b, kind, &name, &bytes, PutOutcome::Stored)?;
        barrier(b)?;
        put(b, kind, &name, &bytes, PutOutcome::AlreadyPresent)?;
        if b.checks != Checks::Objects {
            // Other bytes under the same name: "already present", nothing replaced.
            let (_, other) = object(kind, format!("write-once {kind}, other bytes").as_bytes());
            put(b, kind, &name, &other, PutOutcome::AlreadyPresent)?;
        }
        barrier(b)?;
        expect_object(b, kind, &name, &bytes)?;
    }
    Ok(None)
}

fn config_write_once(b: &Backend<'_>) -> Outcome {
    let k = ObjectKind::Config;
    expect_eq("list config before any put", list(b, k)?, BTreeSet::new())?;
    let (name, first) = object(k, b"config one");
    put(b, k, &name, &first, PutOutcome::Stored)?;
    expect_eq(
        "list config",
        list(b, k)?,
        BTreeSet::from([CONFIG_NAME.to_string()]),
    )?;
    put(b, k, &name, &first, PutOutcome::AlreadyPresent)?;
    let (_, second) = object(k, b"config two");
    match (b.checks, b.writer.put_if_absent(k, &name, &second)) {
        (Checks::Objects, Err(_))
        | (Checks::Nothing | Checks::Names, Ok(PutOutcome::AlreadyPresent)) => {}
        (checks, r) => {
            return Err(format!(
                "put of a different config (checks {checks:?}): got {r:?}, expected {}",
                if checks == Checks::Objects {
                    "a refusal"
                } else {
                    "AlreadyPresent"
                }
            ));
        }
    }
    expect_object(b, k, &name, &first)?;
    Ok(None)
}

fn list_per_kind(b: &Backend<'_>) -> Outcome {
    let mut before = Vec::new();
    for kind in CONTENT_KINDS {
        before.push(list(b, kind)?);
    }
    let mut added: Vec<BTreeSet<String>> = vec![BTreeSet::new(); CONTENT_KINDS.len()];
    for (i, kind) in CONTENT_KINDS.into_iter().enumerate() {
        for n in 0..3 {
            let (name, bytes) = object(kind, format!("list {kind} {n}").as_bytes());
            put(b, kind, &name, &bytes, PutOutcome::Stored)?;
            added[i].insert(name);
        }
    }
    barrier(b)?;
    for (i, kind) in CONTENT_KINDS.into_iter().enumerate() {
        let want: BTreeSet<String> = before[i].union(&added[i]).cloned().collect();
        expect_eq(
            &format!("list {kind} after three puts"),
            list(b, kind)?,
            want,
        )?;
    }
    // Listings come sorted.
    for kind in ObjectKind::ALL {
        let names = ctx(&format!("list {kind}"), b.writer.list(kind))?;
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        expect_eq(
            &format!("list {kind} is sorted, without repeats"),
            names,
            sorted,
        )?;
    }
    Ok(None)
}

fn missing_is_not_found(b: &Backend<'_>) -> Outcome {
    let (name, _) = object(ObjectKind::Index, b"never written");
    match b.read().get(ObjectKind::Index, &name) {
        Err(StorageError::NotFound { .. }) => {}
        other => {
            return Err(format!(
                "get of a missing index: got {other:?}, expected NotFound"
            ));
        }
    }
    match b.read().get_range(ObjectKind::Index, &name, 0, 10) {
        Err(StorageError::NotFound { .. }) => Ok(None),
        other => Err(format!(
            "ranged get of a missing index: got {other:?}, expected NotFound"
        )),
    }
}

fn ranged_get(b: &Backend<'_>) -> Outcome {
    let body: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (name, bytes) = object(ObjectKind::Pack, &body);
    put(b, ObjectKind::Pack, &name, &bytes, PutOutcome::Stored)?;
    barrier(b)?;
    let len = bytes.len() as u64;
    let ranges = [
        (0, 10),
        (0, len),
        (0, 0),
        (len / 2, 100),
        (len - 10, 10),
        (len - 5, 100),
        (len, 10),
        (len + 100, 10),
        (1, u64::MAX),
    ];
    for (offset, n) in ranges {
        let what = format!(
            "get_range {} at {offset} for {n}",
            ObjectKind::Pack.key(&name)
        );
        let got = ctx(
            &what,
            b.read().get_range(ObjectKind::Pack, &name, offset, n),
        )?;
        let start = offset.min(len) as usize;
        let end = offset.saturating_add(n).min(len) as usize;
        if got != bytes[start..end] {
            return Err(format!(
                "{what}: got {} bytes, expected bytes {start}..{end}",
                got.len()
            ));
        }
    }
    Ok(None)
}

fn streaming_put(b: &Backend<'_>) -> Outcome {
    let kind = ObjectKind::Pack;
    let (name, bytes) = object(kind, &[0x5a; 300_000]);
    let Some(p) = b.writer.begin_put(kind) else {
        return Ok(Some(
            "begin_put unsupported (callers buffer the object and use put_if_absent)".into(),
        ));
    };
    let mut p = ctx("begin_put pack", p)?;
    for chunk in bytes.chunks(65_536) {
        ctx("streaming write", p.write(chunk))?;
    }
    barrier(b)?;
    if list(b, kind)?.contains(&name) {
        return Err(format!("{} is listed before its commit", kind.key(&name)));
    }
    let got = ctx(&format!("commit {}", kind.key(&name)), p.commit(&name))?;
    if !b.pipelined_packs {
        expect_eq("streaming commit", got, PutOutcome::Stored)?;
    }
    barrier(b)?;
    expect_object(b, kind, &name, &bytes)?;
    if !list(b, kind)?.contains(&name) {
        return Err(format!(
            "{} is not listed after its commit",
            kind.key(&name)
        ));
    }
    // A second streaming put of the same name changes nothing.
    let mut p = ctx(
        "begin_put pack",
        b.writer.begin_put(kind).unwrap_or_else(|| {
            Err(StorageError::Backend {
                location: b.writer.location(),
                message: "begin_put supported once, then not".into(),
            })
        }),
    )?;
    let other = if b.checks == Checks::Objects {
        bytes.clone()
    } else {
        object(kind, b"other").1
    };
    ctx("streaming write", p.write(&other))?;
    let got = ctx(
        &format!("second commit {}", kind.key(&name)),
        p.commit(&name),
    )?;
    if !b.pipelined_packs {
        expect_eq("second streaming commit", got, PutOutcome::AlreadyPresent)?;
    }
    barrier(b)?;
    expect_object(b, kind, &name, &bytes)?;
    Ok(None)
}

fn abandoned_put(b: &Backend<'_>) -> Outcome {
    let kind = ObjectKind::Pack;
    let before = list(b, kind)?;
    let Some(p) = b.writer.begin_put(kind) else {
        return Ok(Some("begin_put unsupported".into()));
    };
    let mut p = ctx("begin_put pack", p)?;
    let (name, bytes) = object(kind, b"abandoned");
    ctx("streaming write", p.write(&bytes))?;
    drop(p);
    barrier(b)?;
    expect_eq("list pack after an abandoned put", list(b, kind)?, before)?;
    match b.read().get(kind, &name) {
        Err(StorageError::NotFound { .. }) => Ok(None),
        other => Err(format!(
            "get of the abandoned {}: got {other:?}, expected NotFound",
            kind.key(&name)
        )),
    }
}

fn barrier_after_puts(b: &Backend<'_>) -> Outcome {
    let objs: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| {
            object(
                ObjectKind::Pack,
                format!("barrier {i}").repeat(1000).as_bytes(),
            )
        })
        .collect();
    for (name, bytes) in &objs {
        put(b, ObjectKind::Pack, name, bytes, PutOutcome::Stored)?;
    }
    barrier(b)?;
    // Right after the barrier every object is there, whole.
    let listed = list(b, ObjectKind::Pack)?;
    for (name, bytes) in &objs {
        if !listed.contains(name) {
            return Err(format!(
                "{} is not listed after the barrier",
                ObjectKind::Pack.key(name)
            ));
        }
        expect_object(b, ObjectKind::Pack, name, bytes)?;
    }
    // A barrier with nothing outstanding is fine too.
    barrier(b)?;
    Ok(None)
}

const THREADS: usize = 8;

fn concurrent_same_name(b: &Backend<'_>) -> Outcome {
    // Index puts are answered at once by every backend (packs may be pipelined).
    let kind = ObjectKind::Index;
    let (name, first) = object(kind, b"concurrent one name");
    let writes: Vec<Vec<u8>> = (0..THREADS)
        .map(|i| {
            if b.checks == Checks::Objects {
                first.clone()
            } else {
                object(kind, format!("concurrent one name, writer {i}").as_bytes()).1
            }
        })
        .collect();
    let results: Vec<Result<PutOutcome, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = writes
            .iter()
            .map(|w| {
                s.spawn(|| {
                    b.writer
                        .put_if_absent(kind, &name, w)
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("the writer thread panicked".into()))
            })
            .collect()
    });
    let mut stored = 0;
    for r in &results {
        match r {
            Ok(PutOutcome::Stored) => stored += 1,
            Ok(PutOutcome::AlreadyPresent) => {}
            Err(e) => return Err(format!("concurrent put of {}: {e}", kind.key(&name))),
        }
    }
    expect_eq(
        &format!(
            "{THREADS} concurrent puts of {}: how many answered Stored",
            kind.key(&name)
        ),
        stored,
        1,
    )?;
    barrier(b)?;
    let got = get(b, kind, &name)?;
    if !writes.contains(&got) {
        return Err(format!(
            "{} holds bytes that none of the {THREADS} writers wrote (a mix?)",
            kind.key(&name)
        ));
    }
    Ok(None)
}

fn concurrent_different_names(b: &Backend<'_>) -> Outcome {
    let kind = ObjectKind::Pack;
    let before = list(b, kind)?;
    let objs: Vec<Vec<(String, Vec<u8>)>> = (0..THREADS)
        .map(|t| {
            (0..3)
                .map(|i| {
                    object(
                        kind,
                        format!("thread {t} object {i}").repeat(500).as_bytes(),
                    )
                })
                .collect()
        })
        .collect();
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = objs
            .iter()
            .map(|mine| {
                s.spawn(move || {
                    mine.iter()
                        .filter_map(|(name, bytes)| {
                            put(b, kind, name, bytes, PutOutcome::Stored).err()
                        })
                        .collect::<Vec<String>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec!["a writer thread panicked".into()])
            })
            .collect()
    });
    if let Some(e) = failures.first() {
        return Err(format!(
            "{} of {} concurrent puts failed, first: {e}",
            failures.len(),
            THREADS * 3
        ));
    }
    barrier(b)?;
    let mut want = before;
    want.extend(objs.iter().flatten().map(|(n, _)| n.clone()));
    expect_eq("list pack after concurrent puts", list(b, kind)?, want)?;
    for (name, bytes) in objs.iter().flatten() {
        expect_object(b, kind, name, bytes)?;
    }
    Ok(None)
}

fn refusals(b: &Backend<'_>) -> Outcome {
    if b.checks == Checks::Nothing {
        return Ok(Some("the backend stores any name it is given".into()));
    }
    let before: Vec<BTreeSet<String>> = ObjectKind::ALL
        .into_iter()
        .map(|k| list(b, k))
        .collect::<Result<_, _>>()?;
    let (good, bytes) = object(ObjectKind::Snapshot, b"refusals");
    let mut offers: Vec<(ObjectKind, String, Vec<u8>, &str)> = vec![
        (
            ObjectKind::Snapshot,
            "../../config".into(),
            bytes.clone(),
            "a path as a name",
        ),
        (
            ObjectKind::Index,
            good.to_uppercase(),
            bytes.clone(),
            "an uppercase name",
        ),
        (
            ObjectKind::Pack,
            good[..63].to_string(),
            bytes.clone(),
            "a 63-character name",
        ),
        (
            ObjectKind::Config,
            "other".into(),
            object(ObjectKind::Config, b"x").1,
            "a config not named config",
        ),
    ];
    if b.checks == Checks::Objects {
        let (pack, pack_bytes) = object(ObjectKind::Pack, b"refusals pack");
        offers.push((
            ObjectKind::Pack,
            object_name(b"x"),
            pack_bytes.clone(),
            "bytes that do not hash to the name",
        ));
        offers.push((
            ObjectKind::Index,
            pack,
            pack_bytes,
            "a pack offered as an index",
        ));
        let tar = b"ustar\x0000 plaintext".to_vec();
        offers.push((
            ObjectKind::Pack,
            object_name(&tar),
            tar,
            "bytes without the Ferry header",
        ));
    }
    for (kind, name, bytes, what) in &offers {
        // A pipelined pack's refusal surfaces at the barrier at the latest.
        if b.writer
            .put_if_absent(*kind, name, bytes)
            .and_then(|_| b.writer.barrier())
            .is_ok()
        {
            return Err(format!("{what} ({kind} {name:?}) was accepted"));
        }
    }
    for (i, kind) in ObjectKind::ALL.into_iter().enumerate() {
        expect_eq(
            &format!("list {kind} after the refusals"),
            list(b, kind)?,
            before[i].clone(),
        )?;
    }
    // Still usable after refusals.
    put(b, ObjectKind::Snapshot, &good, &bytes, PutOutcome::Stored)?;
    barrier(b)?;
    expect_object(b, ObjectKind::Snapshot, &good, &bytes)?;
    Ok(None)
}

/// The operator's delete and copy (forget, prune): a put-only backend refuses both with
/// `Unsupported` and changes nothing; any other backend copies inside the store (the
/// destination keeps the bytes after the source is deleted), deletes idempotently, and
/// answers NotFound for a missing source.
fn delete_and_copy(b: &Backend<'_>) -> Outcome {
    let (name, bytes) = object(ObjectKind::Pack, b"delete and copy");
    ctx(
        "put",
        b.writer.put_if_absent(ObjectKind::Pack, &name, &bytes),
    )?;
    ctx("barrier", b.writer.barrier())?;
    let refused = |r: Result<(), StorageError>| matches!(r, Err(StorageError::Unsupported { .. }));
    let del = b.writer.delete(ObjectKind::Pack, &name);
    if matches!(del, Err(StorageError::Unsupported { .. })) {
        if b.writer.can_delete() {
            return Err("delete is refused as put-only but can_delete() says true".into());
        }
        if !refused(b.writer.copy(ObjectKind::Pack, ObjectKind::Trash, &name)) {
            return Err("delete is refused as put-only but copy is not".into());
        }
        let got = ctx(
            "get after refused delete",
            b.read().get(ObjectKind::Pack, &name),
        )?;
        expect_eq("the pack after a refused delete", got == bytes, true)?;
        return Ok(None);
    }
    // The delete was allowed: the pack is gone; put it back and test copy.
    expect_eq(
        "can_delete() of a store that deleted",
        b.writer.can_delete(),
        true,
    )?;
    ctx("delete", del)?;
    expect_eq(
        "get after delete is NotFound",
        matches!(
            b.read().get(ObjectKind::Pack, &name),
            Err(StorageError::NotFound { .. })
        ),
        true,
    )?;
    ctx(
        "delete of a missing object",
        b.writer.delete(ObjectKind::Pack, &name),
    )?;
    expect_eq(
        "copy of a missing object is NotFound",
        matches!(
            b.writer.copy(ObjectKind::Pack, ObjectKind::Trash, &name),
            Err(StorageError::NotFound { .. })
        ),
        true,
    )?;
    ctx(
        "put again",
        b.writer.put_if_absent(ObjectKind::Pack, &name, &bytes),
    )?;
    ctx(
        "copy",
        b.writer.copy(ObjectKind::Pack, ObjectKind::Trash, &name),
    )?;
    ctx(
        "copy again",
        b.writer.copy(ObjectKind::Pack, ObjectKind::Trash, &name),
    )?;
    ctx("delete source", b.writer.delete(ObjectKind::Pack, &name))?;
    let got = ctx("get the copy", b.read().get(ObjectKind::Trash, &name))?;
    expect_eq("the copy's bytes", got == bytes, true)?;
    expect_eq(
        "trash listing",
        ctx("list trash", b.read().list(ObjectKind::Trash))?,
        vec![name.clone()],
    )?;
    expect_eq(
        "pack listing after the move",
        ctx("list packs", b.read().list(ObjectKind::Pack))?.contains(&name),
        false,
    )?;
    ctx("delete the copy", b.writer.delete(ObjectKind::Trash, &name))?;
    expect_eq(
        "trash listing after delete",
        ctx("list trash", b.read().list(ObjectKind::Trash))?,
        Vec::<String>::new(),
    )?;
    Ok(None)
}
