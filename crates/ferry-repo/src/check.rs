//! `check`: verify every object and report each problem by object name.
//!
//! Always (also with [`ReadData::None`]): every index and snapshot object (name = SHA-256,
//! decrypts, parses), every tree reachable from a snapshot (present in an index, decrypts, id
//! matches), every data blob a tree references is listed by an index, every pack an index
//! names exists, and no snapshot nests directories deeper than restore accepts
//! ([`MAX_TREE_DEPTH`]).
//! With [`ReadData::All`]: additionally every pack is read whole (by the parallel pack reader,
//! [`crate::fetch`], several at once within its byte budget): name = SHA-256, trailer
//! decrypts, every blob decrypts and matches its id, and the trailer agrees with the indexes.
//! With [`ReadData::Subset`]: the same, for the packs a [`DataSubset`] selects (restic's
//! `check --read-data-subset`); every other pack is still checked for existence.

use crate::error::Result;
use crate::format::{self, ObjectKind};
use crate::ids::{BlobId, BlobKind};
use crate::keys::MasterKey;
use crate::objects::{
    BlobEntry, IndexObject, MAX_TREE_DEPTH, NodeKind, Snapshot, Tree, open_blob, open_pack_trailer,
};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::storage::Storage;
use crate::units::{SizeError, parse_size};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

/// How much pack data `check` reads and verifies.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum ReadData {
    /// Read no pack data: only indexes, snapshots and trees (and packs' existence).
    #[default]
    None,
    /// Read every pack (`check --read-data`).
    All,
    /// Read the packs the subset selects (`check --read-data-subset`).
    Subset(DataSubset),
}

impl ReadData {
    /// Whether any pack data is read ([`All`](Self::All) or [`Subset`](Self::Subset)).
    pub fn reads_data(&self) -> bool {
        !matches!(self, ReadData::None)
    }
}

/// Which packs `check --read-data-subset` reads, as restic selects them.
///
/// Parsed from the user's text by [`FromStr`] and shown back by [`Display`](fmt::Display):
/// `n/t`, `p%` or a size such as `500M`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DataSubset {
    /// `n/t`: group `n` of `t` (1 ≤ n ≤ t ≤ 256). A pack is in group `n` when the first byte of
    /// its name (the SHA-256 of its bytes, as hex) modulo `t` is `n - 1`, restic's rule. The
    /// groups are fixed by the names alone, so running `1/t`, `2/t`, … `t/t` (e.g. one a day)
    /// reads every pack exactly once; a pack added in between is read by its group's next run.
    /// `t` is at most 256 because only the first byte counts.
    Part {
        /// The group read, from 1.
        n: u32,
        /// How many groups.
        of: u32,
    },
    /// `p%` (0 < p ≤ 100, e.g. `2.5%`): a random `p` % of the packs (rounded down, as restic
    /// does, but at least one when there are any); a new sample every run.
    Percent(f64),
    /// A size (`500M`, `2G`; units K, M, G, T are binary, `KiB`… also accepted; a bare number
    /// is bytes): random packs are drawn until their summed size reaches it (at least one
    /// pack; every pack when it exceeds the total). A pack's size is taken from the indexes:
    /// the end of its last blob record (the pack without its trailer, a few hundred bytes
    /// short of the object); a pack no index covers counts as the mean of the others.
    /// (restic turns the size into a percentage of the repository instead.)
    Size(u64),
}

/// The most groups `n/t` can name: a pack's group comes from the first byte of its name.
pub const MAX_PARTS: u32 = 256;

/// Why a `--read-data-subset` value was refused; every variant names the value as given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubsetError {
    /// Neither `n/t`, nor `p%`, nor a size.
    #[error(
        "{input:?} is not a data subset: give n/t (e.g. 1/5), a percentage (e.g. 2.5%) or a size (e.g. 500M)"
    )]
    Unrecognised {
        /// The value as given.
        input: String,
    },
    /// Has a `/`, but not two whole numbers around it.
    #[error("{input:?} is not a part n/t: n and t must be whole numbers (e.g. 1/5)")]
    NotAPart {
        /// The value as given.
        input: String,
    },
    /// `n/t` with `n` or `t` out of range.
    #[error("part {input:?} is out of range: n/t needs 1 <= n <= t <= {MAX_PARTS}")]
    PartOutOfRange {
        /// The value as given.
        input: String,
    },
    /// Ends with `%`, but no number before it.
    #[error("{input:?} is not a percentage (e.g. 2.5%)")]
    NotAPercentage {
        /// The value as given.
        input: String,
    },
    /// A percentage not above 0 and at most 100.
    #[error("percentage {input:?} is out of range: it must be above 0% and at most 100%")]
    PercentOutOfRange {
        /// The value as given.
        input: String,
    },
    /// A size with an unknown unit, zero, or too large.
    #[error("{0}")]
    Size(SizeError),
}

impl DataSubset {
    /// Refuse values the parser would refuse (for subsets built in code). `input` names the
    /// value in the error.
    fn validate(&self, input: &str) -> Result<(), SubsetError> {
        let input = input.to_string();
        match *self {
            DataSubset::Part { n, of } if n == 0 || n > of || of > MAX_PARTS => {
                Err(SubsetError::PartOutOfRange { input })
            }
            DataSubset::Percent(p) if !(p > 0.0 && p <= 100.0) => {
                Err(SubsetError::PercentOutOfRange { input })
            }
            DataSubset::Size(0) => Err(SubsetError::Size(SizeError::OutOfRange { input })),
            _ => Ok(()),
        }
    }

    /// The packs (names, as listed) to read, sorted. `size` estimates a pack's size in bytes
    /// (used by [`Size`](Self::Size) only); `seed` drives the random draws.
    fn select<'a>(
        &self,
        packs: &[&'a String],
        size: &dyn Fn(&str) -> u64,
        seed: u64,
    ) -> Vec<&'a String> {
        let mut picked: Vec<&'a String> = match *self {
            DataSubset::Part { n, of } => packs
                .iter()
                .copied()
                .filter(|p| u32::from(first_byte(p)) % of == n - 1)
                .collect(),
            DataSubset::Percent(p) => {
                let mut all = packs.to_vec();
                shuffle(&mut all, seed);
                // Rounded down like restic; the epsilon keeps e.g. 10 × 30% from being 2.
                let k = ((all.len() as f64) * p / 100.0 + 1e-9).floor() as usize;
                all.truncate(k.clamp(1, all.len().max(1)));
                all
            }
            DataSubset::Size(want) => {
                let mut all = packs.to_vec();
                shuffle(&mut all, seed);
                let mut sum = 0u64;
                let mut out = Vec::new();
                for p in all {
                    if !out.is_empty() && sum >= want {
                        break;
                    }
                    sum = sum.saturating_add(size(p));
                    out.push(p);
                }
                out
            }
        };
        picked.sort();
        picked
    }
}

/// The first byte of a pack's name (hex SHA-256); a name that is not hex (which no storage
/// lists) counts as 0, so it still falls into exactly one group.
fn first_byte(name: &str) -> u8 {
    name.get(..2)
        .and_then(|h| u8::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

/// Fisher–Yates with splitmix64: the draw needs to be unpredictable between runs, not
/// cryptographic.
fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut x = seed;
    let mut next = || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..v.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

impl FromStr for DataSubset {
    type Err = SubsetError;

    /// `n/t`, `p%` or a size; see [`DataSubset`]. Surrounding spaces are ignored.
    fn from_str(s: &str) -> Result<Self, SubsetError> {
        let t = s.trim();
        let subset = if let Some((a, b)) = t.split_once('/') {
            let num = |x: &str| x.trim().parse::<u32>().ok();
            let (Some(n), Some(of)) = (num(a), num(b)) else {
                return Err(SubsetError::NotAPart { input: s.into() });
            };
            DataSubset::Part { n, of }
        } else if let Some(p) = t.strip_suffix('%') {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| SubsetError::NotAPercentage { input: s.into() })?;
            DataSubset::Percent(p)
        } else {
            match parse_size(t) {
                Ok(n) => DataSubset::Size(n),
                Err(SizeError::NotASize { .. }) => {
                    return Err(SubsetError::Unrecognised { input: s.into() });
                }
                Err(SizeError::UnknownUnit { unit, .. }) => {
                    return Err(SubsetError::Size(SizeError::UnknownUnit {
                        input: s.into(),
                        unit,
                    }));
                }
                Err(SizeError::OutOfRange { .. }) => {
                    return Err(SubsetError::Size(SizeError::OutOfRange { input: s.into() }));
                }
            }
        };
        subset.validate(s)?;
        Ok(subset)
    }
}

impl fmt::Display for DataSubset {
    /// The user's form: `2/5`, `2.5%`, `500M` (the largest binary unit that divides the size
    /// exactly, else bytes).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DataSubset::Part { n, of } => write!(f, "{n}/{of}"),
            DataSubset::Percent(p) => write!(f, "{p}%"),
            DataSubset::Size(b) => {
                for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
                    if b != 0 && b % (1u64 << shift) == 0 {
                        return write!(f, "{}{unit}", b >> shift);
                    }
                }
                write!(f, "{b}")
            }
        }
    }
}

/// One problem (or warning), naming the object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// e.g. `packs/ab12…`, `index/…`, `snapshots/…`, `blob 3f…`.
    pub object: String,
    /// What is wrong, with where it was found (e.g. `missing (listed by index/…)`).
    pub message: String,
}

/// What `check` found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckReport {
    /// Missing or corrupt objects: the repository is damaged.
    pub problems: Vec<Problem>,
    /// Harmless findings (e.g. a pack no index covers yet, left by an interrupted backup).
    pub warnings: Vec<Problem>,
    /// Snapshot objects listed by storage (including unreadable ones).
    pub snapshots: u64,
    /// Index objects listed by storage (including unreadable ones).
    pub indexes: u64,
    /// Pack objects listed by storage.
    pub packs: u64,
    /// Packs in `trash/` (moved there by a prune; deleted by a later one).
    pub trash_packs: u64,
    /// Distinct tree blobs reached from the snapshots.
    pub trees: u64,
    /// Distinct data blobs referenced by files in the reachable trees.
    pub data_blobs_referenced: u64,
    /// Blobs decrypted and verified (with `read_data`).
    pub blobs_verified: u64,
    /// Whether pack data was read (`check --read-data` or `--read-data-subset`).
    pub read_data: bool,
    /// Packs read whole and their blobs verified (all of them with `--read-data`).
    pub packs_read: u64,
    /// The subset read (its [`DataSubset`] display form, e.g. `2/5`), if only a subset.
    pub read_data_subset: Option<String>,
}

impl CheckReport {
    /// True when there are no problems (warnings do not count).
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
    fn problem(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            object: object.into(),
            message: message.into(),
        });
    }

    /// Read a content-addressed object, recording a problem if it cannot be read (then `None`)
    /// or if its bytes do not hash to its name (the bytes are still returned, so the caller
    /// can report what else is wrong with them).
    fn read_object(
        &mut self,
        storage: &dyn Storage,
        kind: ObjectKind,
        name: &str,
    ) -> Option<Vec<u8>> {
        let object = kind.key(name);
        let bytes = match storage.get(kind, name) {
            Ok(b) => b,
            Err(e) => {
                self.problem(&object, format!("cannot read: {e}"));
                return None;
            }
        };
        if format::object_name(&bytes) != name {
            self.problem(
                &object,
                "content does not match its name (SHA-256 mismatch)",
            );
        }
        Some(bytes)
    }
}

struct Loc {
    pack: String,
    ephemeral: [u8; 32],
    entry: BlobEntry,
}

pub(crate) fn check(
    repo: &Repository,
    key: &MasterKey,
    read: ReadData,
    fetch: crate::fetch::FetchOptions,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    if let ReadData::Subset(s) = &read {
        s.validate(&s.to_string())
            .map_err(|e| crate::error::Error::InvalidOption(e.to_string()))?;
    }
    repo.config().check_key(key.as_put())?;
    let storage: &dyn Storage = repo.storage().as_ref();
    let mut rep = CheckReport {
        read_data: read.reads_data(),
        read_data_subset: match &read {
            ReadData::Subset(s) => Some(s.to_string()),
            _ => None,
        },
        ..Default::default()
    };
    let packs: HashSet<String> = storage.list(ObjectKind::Pack)?.into_iter().collect();
    rep.packs = packs.len() as u64;
    // Packs a prune moved to `trash/`: still readable, deleted by a later prune (RETENTION.md).
    let trash: HashSet<String> = storage.list(ObjectKind::Trash)?.into_iter().collect();
    rep.trash_packs = trash.len() as u64;
    let mut needed_from_trash: BTreeSet<String> = BTreeSet::new();

    // Indexes.
    let mut blobs: HashMap<BlobId, Loc> = HashMap::new();
    let mut indexed_packs: HashMap<String, Vec<BlobEntry>> = HashMap::new();
    for name in storage.list(ObjectKind::Index)? {
        let object = ObjectKind::Index.key(&name);
        progress.check_object(&object);
        rep.indexes += 1;
        let Some(bytes) = rep.read_object(storage, ObjectKind::Index, &name) else {
            continue;
        };
        let idx = match IndexObject::open(key, &bytes, &name) {
            Ok(i) => i,
            Err(e) => {
                rep.problem(&object, e.to_string());
                continue;
            }
        };
        for p in idx.packs {
            if !packs.contains(&p.pack) && !trash.contains(&p.pack) {
                rep.problem(
                    ObjectKind::Pack.key(&p.pack),
                    format!("missing (listed by {object})"),
                );
            }
            for b in &p.blobs {
                // A blob in a pack of `packs/` is read from there rather than from `trash/`.
                let replace = match blobs.get(&b.id) {
                    None => true,
                    Some(old) => !packs.contains(&old.pack) && packs.contains(&p.pack),
                };
                if replace {
                    blobs.insert(
                        b.id,
                        Loc {
                            pack: p.pack.clone(),
                            ephemeral: p.ephemeral,
                            entry: *b,
                        },
                    );
                }
            }
            indexed_packs.entry(p.pack).or_default().extend(p.blobs);
        }
    }
    for p in &packs {
        if !indexed_packs.contains_key(p) {
            rep.warnings.push(Problem {
                object: ObjectKind::Pack.key(p),
                message: "not covered by any index (left by an interrupted backup: the next backup from the \
                          same cache indexes it; otherwise it is unused)"
                    .into(),
            });
        }
    }

    // Snapshots and the trees they reach.
    let mut seen_trees: HashSet<BlobId> = HashSet::new();
    let mut seen_data: HashSet<BlobId> = HashSet::new();
    // Each tree's subdirectories and each snapshot's root: how deep the nesting goes is
    // worked out after the walk, which visits a tree shared by two places only once.
    let mut subdirs: HashMap<BlobId, Vec<BlobId>> = HashMap::new();
    let mut roots: Vec<(String, BlobId)> = Vec::new();
    for name in storage.list(ObjectKind::Snapshot)? {
        let object = ObjectKind::Snapshot.key(&name);
        progress.check_object(&object);
        rep.snapshots += 1;
        let Some(bytes) = rep.read_object(storage, ObjectKind::Snapshot, &name) else {
            continue;
        };
        let snap = match Snapshot::open(key, &bytes, &name) {
            Ok(s) => s,
            Err(e) => {
                rep.problem(&object, e.to_string());
                continue;
            }
        };
        roots.push((object.clone(), snap.root));
        // A level of the snapshot's directories at a time: the level's trees are read in
        // parallel (on S3 each is a round trip), then looked at in order.
        let mut level = vec![(snap.root, String::new())];
        while !level.is_empty() {
            let mut todo = Vec::new();
            for (tid, path) in level {
                if !seen_trees.insert(tid) {
                    continue;
                }
                rep.trees += 1;
                let Some(loc) = blobs.get(&tid) else {
                    rep.problem(
                        format!("tree blob {tid}"),
                        format!("missing from every index (directory /{path} of {object})"),
                    );
                    continue;
                };
                if loc.entry.kind != BlobKind::Tree {
                    rep.problem(
                        format!("tree blob {tid}"),
                        format!("is a data blob in the index, not a tree (directory /{path} of {object})"),
                    );
                    continue;
                }
                if !packs.contains(&loc.pack) {
                    needed_from_trash.insert(loc.pack.clone());
                }
                todo.push((tid, path, loc));
            }
            let read = crate::fetch::run(
                todo,
                fetch,
                |(_, _, loc)| u64::from(loc.entry.length),
                |(tid, path, loc)| {
                    let tree = read_blob(storage, key, loc).and_then(|b| Tree::parse(&b));
                    Ok((tid, path, tree))
                },
            )?;
            let mut next = Vec::new();
            for (tid, path, tree) in read {
                let tree = match tree {
                    Ok(t) => t,
                    Err(e) => {
                        rep.problem(
                            format!("tree blob {tid}"),
                            format!("{e} (directory /{path} of {object})"),
                        );
                        continue;
                    }
                };
                let mut names = HashSet::new();
                let mut dirs = Vec::new();
                for n in tree.nodes {
                    let child = if path.is_empty() {
                        n.name_lossy()
                    } else {
                        format!("{path}/{}", n.name_lossy())
                    };
                    // What restore refuses (a name that would leave its directory, or a
                    // second entry by one name) is reported here too, naming the tree.
                    if let Some(reason) = crate::backup::bad_component(&n.name) {
                        rep.problem(
                            format!("tree blob {tid}"),
                            format!("entry {child:?}: {reason}; restore refuses it ({object})"),
                        );
                    } else if !names.insert(n.name.clone()) {
                        rep.problem(
                            format!("tree blob {tid}"),
                            format!(
                                "entry {child:?}: the same name appears twice in one directory; restore refuses it ({object})"
                            ),
                        );
                    }
                    match n.kind {
                        NodeKind::Dir { subtree } => {
                            dirs.push(subtree);
                            next.push((subtree, child));
                        }
                        NodeKind::File { content } => {
                            let located: Option<u64> = content
                                .iter()
                                .map(|b| blobs.get(b).map(|l| u64::from(l.entry.raw_length)))
                                .sum();
                            if let Some(sum) = located
                                && sum != n.size
                            {
                                rep.problem(
                                    format!("tree blob {tid}"),
                                    format!(
                                        "entry {child:?}: content is {sum} bytes, the tree says {}; restore refuses it ({object})",
                                        n.size
                                    ),
                                );
                            }
                            for b in content {
                                if seen_data.insert(b) {
                                    rep.data_blobs_referenced += 1;
                                    if let Some(l) = blobs.get(&b)
                                        && !packs.contains(&l.pack)
                                    {
                                        needed_from_trash.insert(l.pack.clone());
                                    }
                                    if let Some(l) = blobs.get(&b)
                                        && l.entry.kind != BlobKind::Data
                                    {
                                        rep.problem(
                                            format!("data blob {b}"),
                                            format!(
                                                "is a tree blob in the index, not file content (file /{child} of {object})"
                                            ),
                                        );
                                    }
                                    if !blobs.contains_key(&b) {
                                        rep.problem(
                                            format!("data blob {b}"),
                                            format!(
                                                "missing from every index (file /{child} of {object})"
                                            ),
                                        );
                                    }
                                }
                            }
                        }
                        NodeKind::Symlink { .. } => {}
                    }
                }
                if !dirs.is_empty() {
                    subdirs.insert(tid, dirs);
                }
            }
            level = next;
        }
    }
    let mut heights = HashMap::new();
    for (object, root) in roots {
        let deepest = height(&subdirs, root, &mut heights);
        if deepest > MAX_TREE_DEPTH {
            let at = tree_at_level(&subdirs, &heights, root, MAX_TREE_DEPTH + 1);
            rep.problem(
                object,
                format!(
                    "directories nested {deepest} levels below its root (tree blob {at} at level {}): \
                     restore refuses directory nesting deeper than {MAX_TREE_DEPTH} levels",
                    MAX_TREE_DEPTH + 1
                ),
            );
        }
    }

    for p in &needed_from_trash {
        rep.warnings.push(Problem {
            object: ObjectKind::Trash.key(p),
            message: "a snapshot needs blobs of this pack, which a prune moved to trash/ while the snapshot \
                      was being written; it stays readable, and the next prune moves it back"
                .into(),
        });
    }

    if read.reads_data() {
        let mut names: Vec<&String> = packs.iter().collect();
        names.sort();
        if let ReadData::Subset(subset) = &read {
            let sizes = pack_sizes(&names, &indexed_packs);
            let size = |p: &str| sizes.get(p).copied().unwrap_or(0);
            names = subset.select(
                &names,
                &size,
                rand_core::RngCore::next_u64(&mut rand_core::OsRng),
            );
        }
        rep.packs_read = names.len() as u64;
        // Whole packs (the name is the SHA-256 of all the bytes), read by the parallel pack
        // reader within its byte budget (a pack's size estimated from the indexes).
        let sizes = pack_sizes(&names, &indexed_packs);
        let checked = crate::fetch::run(
            names,
            fetch,
            |name| sizes.get(*name).copied().unwrap_or(0),
            |name| {
                progress.check_object(&ObjectKind::Pack.key(name));
                Ok(verify_pack(storage, key, name, indexed_packs.get(name)))
            },
        )?;
        for (problems, verified) in checked {
            rep.problems.extend(problems);
            rep.blobs_verified += verified;
        }
    }
    Ok(rep)
}

/// How many levels of directories lie below tree `root` (0: no subdirectory), from the
/// trees' subdirectories as read (a tree that could not be read counts as having none: it is
/// reported already). Iterative, so a crafted chain of trees cannot exhaust the stack;
/// `memo` keeps each tree's height for the next snapshot.
fn height(
    subdirs: &HashMap<BlobId, Vec<BlobId>>,
    root: BlobId,
    memo: &mut HashMap<BlobId, usize>,
) -> usize {
    let none = Vec::new();
    let mut expanded = HashSet::new();
    let mut stack = vec![(root, false)];
    while let Some((id, children_done)) = stack.pop() {
        if memo.contains_key(&id) {
            continue;
        }
        let kids = subdirs.get(&id).unwrap_or(&none);
        if children_done {
            let h = kids
                .iter()
                .map(|k| memo.get(k).map_or(1, |h| h + 1))
                .max()
                .unwrap_or(0);
            memo.insert(id, h);
        } else if expanded.insert(id) {
            // (A tree reached again before its height is known would be a cycle, which
            // content addressing rules out; it is not expanded twice either way.)
            stack.push((id, true));
            stack.extend(kids.iter().map(|k| (*k, false)));
        }
    }
    memo.get(&root).copied().unwrap_or(0)
}

/// The tree `level` levels below `root` on a deepest path (heights from [`height`]).
fn tree_at_level(
    subdirs: &HashMap<BlobId, Vec<BlobId>>,
    heights: &HashMap<BlobId, usize>,
    root: BlobId,
    level: usize,
) -> BlobId {
    let mut id = root;
    for _ in 0..level {
        let deepest = subdirs.get(&id).and_then(|kids| {
            kids.iter()
                .max_by_key(|k| heights.get(k).copied().unwrap_or(0))
        });
        match deepest {
            Some(k) => id = *k,
            None => break,
        }
    }
    id
}

/// Read pack `name` whole and verify it: its name, trailer, every blob (the index's list
/// when an index covers it, else the trailer's), and that trailer and index agree. Returns
/// the problems found and how many blobs verified.
fn verify_pack(
    storage: &dyn Storage,
    key: &MasterKey,
    name: &str,
    indexed: Option<&Vec<BlobEntry>>,
) -> (Vec<Problem>, u64) {
    let mut rep = CheckReport::default();
    let object = ObjectKind::Pack.key(name);
    let Some(bytes) = rep.read_object(storage, ObjectKind::Pack, name) else {
        return (rep.problems, 0);
    };
    let eph = match crate::objects::pack_ephemeral(&bytes, name) {
        Ok(e) => e,
        Err(e) => {
            rep.problem(&object, e.to_string());
            return (rep.problems, 0);
        }
    };
    // Prefer the index's view (what restore uses); fall back to the trailer.
    let trailer = open_pack_trailer(key, &bytes, name);
    let entries: Vec<BlobEntry> = match (&trailer, indexed) {
        (_, Some(ix)) => ix.clone(),
        (Ok(t), None) => t.blobs.clone(),
        (Err(_), None) => Vec::new(),
    };
    if let Err(e) = &trailer {
        rep.problem(&object, format!("trailer: {e}"));
    } else if let (Ok(t), Some(ix)) = (&trailer, indexed) {
        let a: HashSet<_> = t.blobs.iter().map(|b| (b.id, b.offset, b.length)).collect();
        let b: HashSet<_> = ix.iter().map(|b| (b.id, b.offset, b.length)).collect();
        if a != b {
            rep.problem(
                &object,
                "trailer and index disagree about the blobs in this pack",
            );
        }
    }
    let mut bad = 0usize;
    let mut verified = 0u64;
    for e in &entries {
        let start = e.offset as usize;
        let end = start.saturating_add(e.length as usize);
        let res = if end > bytes.len() {
            Err(crate::error::Error::corrupt(
                &object,
                format!("blob {} extends past the end of the pack", e.id),
            ))
        } else {
            open_blob(key, &eph, e, &bytes[start..end], name)
        };
        match res {
            Ok(_) => verified += 1,
            Err(err) => {
                bad += 1;
                if bad <= 20 {
                    rep.problem(&object, format!("blob {}: {err}", e.id));
                }
            }
        }
    }
    if bad > 20 {
        rep.problem(
            &object,
            format!("{} more damaged blobs not listed", bad - 20),
        );
    }
    (rep.problems, verified)
}

/// Estimated size of each listed pack: the end of its last blob record per the indexes; a
/// pack no index covers gets the mean of the others (0 when none is indexed).
fn pack_sizes(
    names: &[&String],
    indexed: &HashMap<String, Vec<BlobEntry>>,
) -> HashMap<String, u64> {
    let known: HashMap<String, u64> = names
        .iter()
        .filter_map(|n| {
            let ix = indexed.get(*n)?;
            let end = ix
                .iter()
                .map(|b| u64::from(b.offset) + u64::from(b.length))
                .max()?;
            Some(((*n).clone(), end))
        })
        .collect();
    let mean = if known.is_empty() {
        0
    } else {
        known.values().sum::<u64>() / known.len() as u64
    };
    names
        .iter()
        .map(|n| ((*n).clone(), known.get(*n).copied().unwrap_or(mean)))
        .collect()
}

fn read_blob(storage: &dyn crate::storage::Storage, key: &MasterKey, loc: &Loc) -> Result<Vec<u8>> {
    let (offset, len) = (loc.entry.offset as u64, loc.entry.length as u64);
    let rec = crate::repo::pack_or_trash(|kind| storage.get_range(kind, &loc.pack, offset, len))?;
    open_blob(key, &loc.ephemeral, &loc.entry, &rec, &loc.pack)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

    use super::*;

    fn parse(s: &str) -> Result<DataSubset, String> {
        s.parse::<DataSubset>().map_err(|e| e.to_string())
    }

    #[test]
    fn parser_accepts_the_three_forms() {
        assert_eq!(parse("1/5"), Ok(DataSubset::Part { n: 1, of: 5 }));
        assert_eq!(parse("5/5"), Ok(DataSubset::Part { n: 5, of: 5 }));
        assert_eq!(parse(" 2 / 256 "), Ok(DataSubset::Part { n: 2, of: 256 }));
        assert_eq!(parse("2.5%"), Ok(DataSubset::Percent(2.5)));
        assert_eq!(parse("100%"), Ok(DataSubset::Percent(100.0)));
        assert_eq!(parse("500M"), Ok(DataSubset::Size(500 << 20)));
        assert_eq!(parse("2G"), Ok(DataSubset::Size(2 << 30)));
        assert_eq!(parse("3k"), Ok(DataSubset::Size(3 << 10)));
        assert_eq!(parse("1T"), Ok(DataSubset::Size(1 << 40)));
        assert_eq!(parse("4096"), Ok(DataSubset::Size(4096)));
        assert_eq!(parse("64MiB"), Ok(DataSubset::Size(64 << 20)));
    }

    #[test]
    fn parser_refuses_naming_the_value_and_the_reason() {
        let cases = [
            (
                "0/5",
                "part \"0/5\" is out of range: n/t needs 1 <= n <= t <= 256",
            ),
            (
                "6/5",
                "part \"6/5\" is out of range: n/t needs 1 <= n <= t <= 256",
            ),
            (
                "1/0",
                "part \"1/0\" is out of range: n/t needs 1 <= n <= t <= 256",
            ),
            (
                "1/257",
                "part \"1/257\" is out of range: n/t needs 1 <= n <= t <= 256",
            ),
            (
                "a/5",
                "\"a/5\" is not a part n/t: n and t must be whole numbers (e.g. 1/5)",
            ),
            (
                "1/2/3",
                "\"1/2/3\" is not a part n/t: n and t must be whole numbers (e.g. 1/5)",
            ),
            (
                "-1/5",
                "\"-1/5\" is not a part n/t: n and t must be whole numbers (e.g. 1/5)",
            ),
            (
                "0%",
                "percentage \"0%\" is out of range: it must be above 0% and at most 100%",
            ),
            (
                "101%",
                "percentage \"101%\" is out of range: it must be above 0% and at most 100%",
            ),
            (
                "-3%",
                "percentage \"-3%\" is out of range: it must be above 0% and at most 100%",
            ),
            (
                "NaN%",
                "percentage \"NaN%\" is out of range: it must be above 0% and at most 100%",
            ),
            ("x%", "\"x%\" is not a percentage (e.g. 2.5%)"),
            ("%", "\"%\" is not a percentage (e.g. 2.5%)"),
            (
                "abc",
                "\"abc\" is not a data subset: give n/t (e.g. 1/5), a percentage (e.g. 2.5%) or a size (e.g. 500M)",
            ),
            (
                "",
                "\"\" is not a data subset: give n/t (e.g. 1/5), a percentage (e.g. 2.5%) or a size (e.g. 500M)",
            ),
            (
                "5X",
                "unknown size unit \"x\" in \"5X\" (use KiB, MiB, GiB or TiB)",
            ),
            ("0", "size \"0\" is out of range"),
            ("0M", "size \"0M\" is out of range"),
            ("99999999999T", "size \"99999999999T\" is out of range"),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), Err(want.to_string()), "{input:?}");
        }
        assert!(matches!(
            "6/5".parse::<DataSubset>(),
            Err(SubsetError::PartOutOfRange { input }) if input == "6/5"
        ));
    }

    #[test]
    fn display_gives_the_users_form_back() {
        for s in [
            "1/5", "256/256", "2.5%", "100%", "0.1%", "500M", "2G", "3K", "1T", "4097",
        ] {
            assert_eq!(parse(s).unwrap().to_string(), s);
        }
        assert_eq!(parse("1024M").unwrap().to_string(), "1G");
        assert_eq!(parse("64MiB").unwrap().to_string(), "64M");
        assert_eq!(DataSubset::Size(0).to_string(), "0");
    }

    /// `count` pack names, sorted (as `check` hands them to `select`).
    fn names(count: usize) -> Vec<String> {
        let mut v: Vec<String> = (0..count)
            .map(|i| format::object_name(&i.to_le_bytes()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn parts_partition_the_packs_by_first_byte() {
        let owned = names(1000);
        let packs: Vec<&String> = owned.iter().collect();
        for of in [1u32, 2, 3, 5, 7, 16, 100, 256] {
            let mut seen: HashMap<&String, u32> = HashMap::new();
            for n in 1..=of {
                let part = DataSubset::Part { n, of };
                for p in part.select(&packs, &|_| 0, 0) {
                    assert_eq!(u32::from(first_byte(p)) % of, n - 1, "{p} in {part}");
                    *seen.entry(p).or_default() += 1;
                }
            }
            assert_eq!(seen.len(), packs.len(), "every pack in some part of {of}");
            assert!(
                seen.values().all(|&c| c == 1),
                "no pack in two parts of {of}"
            );
        }
        // The groups are restic's: first byte 0x00 and 0x05 are in group 1 of 5, 0x04 in 5.
        let odd = ["00aa".to_string(), "05bb".to_string(), "04cc".to_string()];
        let refs: Vec<&String> = odd.iter().collect();
        let one = DataSubset::Part { n: 1, of: 5 }.select(&refs, &|_| 0, 0);
        assert_eq!(one, vec![&odd[0], &odd[1]]);
        let five = DataSubset::Part { n: 5, of: 5 }.select(&refs, &|_| 0, 0);
        assert_eq!(five, vec![&odd[2]]);
    }

    #[test]
    fn percent_draws_rounded_down_but_at_least_one() {
        let owned = names(40);
        let packs: Vec<&String> = owned.iter().collect();
        let sel = |p: f64, seed: u64| DataSubset::Percent(p).select(&packs, &|_| 0, seed);
        assert_eq!(sel(100.0, 1).len(), 40);
        assert_eq!(sel(100.0, 1), packs, "100% is every pack, sorted");
        assert_eq!(sel(50.0, 1).len(), 20);
        assert_eq!(sel(30.0, 1).len(), 12);
        assert_eq!(sel(2.5, 1).len(), 1);
        assert_eq!(sel(0.1, 1).len(), 1, "at least one");
        assert!(DataSubset::Percent(10.0).select(&[], &|_| 0, 1).is_empty());
        // Random: different seeds draw different samples (and are sorted, no repeats).
        let a = sel(50.0, 1);
        let b = sel(50.0, 2);
        assert_ne!(a, b);
        let mut dedup = a.clone();
        dedup.dedup();
        assert_eq!(dedup, a);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn size_draws_until_the_sum_reaches_it() {
        let owned = names(20);
        let packs: Vec<&String> = owned.iter().collect();
        let mib = |_: &str| 1u64 << 20;
        let sel = |b: u64, seed: u64| DataSubset::Size(b).select(&packs, &mib, seed);
        assert_eq!(sel(5 << 20, 7).len(), 5);
        assert_eq!(
            sel((5 << 20) + 1, 7).len(),
            6,
            "until the sum reaches the size"
        );
        assert_eq!(sel(1, 7).len(), 1, "at least one pack");
        assert_eq!(
            sel(1 << 40, 7),
            packs,
            "more than the total reads every pack"
        );
        assert_ne!(sel(5 << 20, 7), sel(5 << 20, 8));
    }

    #[test]
    fn pack_sizes_come_from_the_index_and_unindexed_packs_get_the_mean() {
        let owned = names(3);
        let refs: Vec<&String> = owned.iter().collect();
        let entry = |offset: u32, length: u32| BlobEntry {
            id: BlobId([offset as u8; 32]),
            kind: crate::ids::BlobKind::Data,
            offset,
            length,
            raw_length: length,
        };
        let mut indexed = HashMap::new();
        indexed.insert(owned[0].clone(), vec![entry(100, 900), entry(1000, 1000)]);
        indexed.insert(owned[1].clone(), vec![entry(64, 3936)]);
        let sizes = pack_sizes(&refs, &indexed);
        assert_eq!(sizes[&owned[0]], 2000);
        assert_eq!(sizes[&owned[1]], 4000);
        assert_eq!(sizes[&owned[2]], 3000, "the mean of the indexed packs");
    }
}
