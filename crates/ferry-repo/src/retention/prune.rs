//! Prune: delete what no snapshot needs, safely while put-only clients keep backing up from
//! caches the operator cannot see (docs/RETENTION.md).
//!
//! **Two phases.** A pack no snapshot needs is first *moved* to `trash/` (copy, then delete
//! the original): from then on the backup VM's listing of `packs/` no longer shows it, so its
//! cache forgets the pack and the next run stores those blobs again. A later prune deletes a
//! trashed pack for good only when it has been in `trash/` for the grace period (default 24 h,
//! longer than any backup run takes from listing `packs/` to writing its snapshot) and still no
//! snapshot needs it; a pack a snapshot written meanwhile does need is moved back. Readers look
//! in `trash/` when a pack is not in `packs/`, so nothing a snapshot needs is unreadable at any
//! time.
//!
//! **Order.** Repacked blobs go to new packs first; then index objects covering every pack
//! that stays (including trashed ones, which stay readable); then the moves; then the old
//! index objects are deleted; then the trashed packs whose time has come; the record last. A
//! prune killed at any point leaves a valid repository: at worst duplicate index entries,
//! packs no index covers (handled by the next prune) or a trashed pack whose time is unknown
//! (the next prune starts its grace period again).

use super::log::{self, LogEvent, PruneRecord};
use crate::backup::{BackupOptions, BlobWriter};
use crate::crypto;
use crate::error::{Error, Result};
use crate::format::{self, ObjectKind};
use crate::ids::BlobId;
use crate::keys::MasterKey;
use crate::objects::{BlobEntry, IndexObject, IndexPack, NodeKind, Snapshot};
use crate::repo::{Reader, Repository};
use crate::storage::{StorageError, VersionSweep};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Nanoseconds in an hour.
const HOUR_NS: i64 = 3_600_000_000_000;

/// How a prune decides and writes.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Repack partly used packs, those with the largest unused share first, until the unused
    /// bytes left in kept packs are at most this percentage of their bytes (restic's
    /// `--max-unused`, default 5%).
    pub max_unused_percent: f64,
    /// How long a pack stays in `trash/` before it may be deleted (rustic's `--keep-delete`).
    /// At least [`MIN_GRACE_HOURS`].
    pub grace_ns: i64,
    /// The time the prune runs at (ns since the epoch); `None`: the system clock. Tests
    /// simulate time with it.
    pub now_ns: Option<i64>,
    /// Pack size, workers and compression for repacked blobs.
    pub pack: BackupOptions,
}

/// The shortest grace period accepted. It must outlast the time from a writer's listing of
/// `packs/` to its snapshot: a cloud run lists and writes within one jump-box session, whose
/// gate refuses every request once the session expires, and a session lasts at most 12 h
/// (`ferry_contract::limits::MAX_SESSION_MINUTES_LIMIT`; ferry-run checks the two at compile
/// time). The 13th hour is margin for a request in flight at expiry and for clocks.
pub const MIN_GRACE_HOURS: i64 = 13;

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused_percent: 5.0,
            grace_ns: 24 * HOUR_NS,
            now_ns: None,
            pack: BackupOptions::default(),
        }
    }
}

/// What happens to one pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PackAction {
    /// Stays in `packs/` as it is.
    Keep,
    /// No index covers it yet (a backup in flight or interrupted): left alone this time.
    KeepUnindexed,
    /// Its used blobs are written to new packs, then it moves to `trash/`.
    Repack,
    /// Unused: moves to `trash/`.
    Trash,
    /// In `trash/`, but a snapshot needs it: moves back to `packs/`.
    Rescue,
    /// In `trash/`, waiting for its grace period to pass.
    Wait,
    /// In `trash/` for longer than the grace period and unused: deleted.
    Delete,
    /// A leftover copy in `trash/` of a pack that stays in `packs/`: deleted.
    DropCopy,
}

/// One pack's fate, with its sizes (bytes of blob records, from the index).
#[derive(Clone, Debug, Serialize)]
pub struct PackPlan {
    /// The pack's name.
    pub pack: String,
    /// What happens to it.
    pub action: PackAction,
    /// Bytes of its blob records the indexes list.
    pub bytes: u64,
    /// Of those, bytes of blobs a snapshot needs (kept there).
    pub used_bytes: u64,
    /// For [`PackAction::Wait`]: when it may be deleted (ns since the epoch).
    pub ready_ns: Option<i64>,
}

/// Requests a prune makes against S3 (what `--dry-run` estimates; see docs/COST.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Requests {
    /// PUT-class (PutObject, CopyObject): new packs, index objects, moves, the record.
    pub put: u64,
    /// LIST (ListObjectsV2 pages; at least one per prefix).
    pub list: u64,
    /// GET (snapshots, indexes, trees, records, packs read to repack).
    pub get: u64,
    /// DELETE (free on S3).
    pub delete: u64,
}

/// What a prune will do (or did).
#[derive(Clone, Debug, Serialize)]
pub struct PrunePlan {
    /// The time it runs at (ns).
    pub now_ns: i64,
    /// Snapshots read.
    pub snapshots: u64,
    /// Blobs the snapshots need.
    pub used_blobs: u64,
    /// Every pack of `packs/` and `trash/`, with its fate.
    pub packs: Vec<PackPlan>,
    /// Index objects that will be replaced (all of them, when anything changes).
    pub old_indexes: Vec<String>,
    /// Objects skipped because they cannot be read (object, why): junk that a hostile or
    /// broken client stored. Not deleted; `check` reports them.
    pub skipped: Vec<(String, String)>,
    /// Bytes written to new packs (estimate: the used bytes of repacked packs).
    pub write_bytes: u64,
    /// Bytes deleted for good (packs whose grace period has passed).
    pub delete_bytes: u64,
    /// Bytes moved to `trash/` (deleted by a later prune).
    pub trash_bytes: u64,
    /// Bytes waiting in `trash/` for their grace period.
    pub waiting_bytes: u64,
    /// Requests the prune makes (estimate for new packs and indexes).
    pub requests: Requests,
    #[serde(skip)]
    indexes: Vec<IndexPack>,
    #[serde(skip)]
    chosen: HashMap<BlobId, String>,
    #[serde(skip)]
    previous: PruneRecord,
}

impl PrunePlan {
    /// The packs with `action`.
    pub fn with(&self, action: PackAction) -> impl Iterator<Item = &PackPlan> {
        self.packs.iter().filter(move |p| p.action == action)
    }

    /// Whether executing it moves, writes or deletes any pack or index.
    pub fn changes_anything(&self) -> bool {
        self.packs.iter().any(|p| {
            !matches!(
                p.action,
                PackAction::Keep | PackAction::Wait | PackAction::KeepUnindexed
            )
        })
    }

    /// Whether a record must be written even when no pack changes: packs seen unindexed or in
    /// `trash/` for the first time (their clocks start now).
    fn needs_record(&self) -> bool {
        let unindexed: BTreeSet<String> = self
            .with(PackAction::KeepUnindexed)
            .map(|p| p.pack.clone())
            .collect();
        unindexed != self.previous.unindexed
            || self
                .with(PackAction::Wait)
                .any(|p| !self.previous.trash.contains_key(&p.pack))
    }
}

/// Refuse a storage that cannot delete, and an option out of range.
fn preflight(repo: &Repository, key: &MasterKey, opts: &PruneOptions) -> Result<()> {
    repo.config().check_key(key.as_put())?;
    if !repo.storage().can_delete() {
        return Err(Error::Retention {
            op: "prune",
            message: format!(
                "{} is put-only: pruning needs the operator's storage (a directory or s3:// with admin credentials)",
                repo.storage().location()
            ),
        });
    }
    if opts.grace_ns < MIN_GRACE_HOURS * HOUR_NS {
        return Err(Error::InvalidOption(format!(
            "the grace period must be at least {MIN_GRACE_HOURS} hours (a backup run may be between listing packs and writing its snapshot for as long as a jump-box session, up to 12 hours)"
        )));
    }
    if !(0.0..=100.0).contains(&opts.max_unused_percent) {
        return Err(Error::InvalidOption(format!(
            "max unused {}% is outside 0..=100%",
            opts.max_unused_percent
        )));
    }
    Ok(())
}

/// Decide what a prune does, reading snapshots, indexes and the last prune record. Changes
/// nothing (this is `--dry-run`).
pub fn plan(repo: &Repository, key: &MasterKey, opts: &PruneOptions) -> Result<PrunePlan> {
    preflight(repo, key, opts)?;
    let now_ns = opts.now_ns.unwrap_or_else(log::now_ns);
    let storage = repo.storage().clone();
    let mut requests = Requests::default();
    let mut skipped = Vec::new();

    let (records, bad) = log::read_all(storage.as_ref(), key)?;
    requests.list += 1;
    requests.get += (records.len() + bad.len()) as u64;
    skipped.extend(bad);
    let previous = log::last_prune(&records).cloned().unwrap_or_default();

    // Everything listed, before anything is read.
    let live: BTreeSet<String> = storage.list(ObjectKind::Pack)?.into_iter().collect();
    let trash: BTreeSet<String> = storage.list(ObjectKind::Trash)?.into_iter().collect();
    let index_names = storage.list(ObjectKind::Index)?;
    let snapshot_names = storage.list(ObjectKind::Snapshot)?;
    requests.list += pages(live.len())
        + pages(trash.len())
        + pages(index_names.len())
        + pages(snapshot_names.len());

    // Indexes: pack → entries (first index naming a pack wins; they agree).
    let mut index_packs: BTreeMap<String, IndexPack> = BTreeMap::new();
    for name in &index_names {
        requests.get += 1;
        let bytes = match storage.get(ObjectKind::Index, name) {
            Ok(b) => b,
            Err(e) if e.is_not_regular_file() => {
                skipped.push((ObjectKind::Index.key(name), e.to_string()));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        match IndexObject::open(key, &bytes, name) {
            Ok(idx) => {
                for p in idx.packs {
                    index_packs.entry(p.pack.clone()).or_insert(p);
                }
            }
            Err(e) => skipped.push((ObjectKind::Index.key(name), e.to_string())),
        }
    }
    let reader = Reader::from_indexes(
        storage.clone(),
        key,
        [IndexObject {
            packs: index_packs.values().cloned().collect(),
        }],
    );

    // Snapshots, then every blob they reach.
    let mut snapshots: Vec<Snapshot> = Vec::new();
    for name in &snapshot_names {
        requests.get += 1;
        let bytes = match storage.get(ObjectKind::Snapshot, name) {
            Ok(b) => b,
            Err(e) if e.is_not_regular_file() => {
                skipped.push((ObjectKind::Snapshot.key(name), e.to_string()));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        match Snapshot::open(key, &bytes, name) {
            Ok(s) => snapshots.push(s),
            Err(e) => skipped.push((ObjectKind::Snapshot.key(name), e.to_string())),
        }
    }
    let mut used: HashSet<BlobId> = HashSet::new();
    let mut todo: Vec<BlobId> = snapshots.iter().map(|s| s.root).collect();
    while let Some(tree_id) = todo.pop() {
        if !used.insert(tree_id) {
            continue;
        }
        requests.get += 1;
        let tree = reader.read_tree(&tree_id).map_err(|e| Error::Retention {
            op: "prune",
            message: format!(
                "cannot read tree blob {tree_id} that a snapshot needs ({e}); nothing was changed: run `ferry check`"
            ),
        })?;
        for n in tree.nodes {
            match n.kind {
                NodeKind::Dir { subtree } => todo.push(subtree),
                NodeKind::File { content } => used.extend(content),
                NodeKind::Symlink { .. } => {}
            }
        }
    }

    // Where each used blob is kept: a pack in `packs/` if any has it (the first by name), else
    // a trashed pack (which is then rescued). A blob in no pack at all: refuse.
    let mut where_is: HashMap<BlobId, Vec<&str>> = HashMap::new();
    for p in index_packs.values() {
        for b in &p.blobs {
            where_is.entry(b.id).or_default().push(p.pack.as_str());
        }
    }
    let mut chosen: HashMap<BlobId, String> = HashMap::new();
    for id in &used {
        let places = where_is.get(id).map(Vec::as_slice).unwrap_or(&[]);
        let pick = places
            .iter()
            .filter(|p| live.contains(**p))
            .min()
            .or_else(|| places.iter().filter(|p| trash.contains(**p)).min());
        match pick {
            Some(p) => {
                chosen.insert(*id, p.to_string());
            }
            None => {
                return Err(Error::Retention {
                    op: "prune",
                    message: format!(
                        "blob {id}, which a snapshot needs, is in no stored pack; nothing was changed: run `ferry check`"
                    ),
                });
            }
        }
    }
    let mut used_in: HashMap<&str, u64> = HashMap::new();
    for (id, pack) in &chosen {
        if let Some(e) = index_packs
            .get(pack)
            .and_then(|p| p.blobs.iter().find(|b| b.id == *id))
        {
            *used_in.entry(pack.as_str()).or_default() += e.length as u64;
        }
    }
    let size_of = |pack: &str| -> u64 {
        index_packs
            .get(pack)
            .map(|p| p.blobs.iter().map(|b| b.length as u64).sum())
            .unwrap_or(0)
    };

    let mut packs = Vec::new();
    for name in &live {
        let bytes = size_of(name);
        let used_bytes = used_in.get(name.as_str()).copied().unwrap_or(0);
        let action = if !index_packs.contains_key(name) {
            if previous.unindexed.contains(name) {
                PackAction::Trash
            } else {
                PackAction::KeepUnindexed
            }
        } else if used_bytes == 0 {
            PackAction::Trash
        } else {
            PackAction::Keep
        };
        packs.push(PackPlan {
            pack: name.clone(),
            action,
            bytes,
            used_bytes,
            ready_ns: None,
        });
    }
    // Repack, as restic does: while the unused bytes left in kept packs exceed
    // `max_unused_percent` of the bytes those packs hold, repack the pack with the largest
    // unused share. So a repository keeps a bounded share of waste, and a pack that lost one
    // blob is not rewritten every time (each rewrite costs a PUT and a COPY).
    let kept_bytes: u64 = packs
        .iter()
        .filter(|p| p.action == PackAction::Keep)
        .map(|p| p.bytes)
        .sum();
    let mut unused: u64 = packs
        .iter()
        .filter(|p| p.action == PackAction::Keep)
        .map(|p| p.bytes - p.used_bytes)
        .sum();
    let allowed = opts.max_unused_percent / 100.0 * kept_bytes as f64;
    let mut candidates: Vec<usize> = (0..packs.len())
        .filter(|&i| packs[i].action == PackAction::Keep && packs[i].used_bytes < packs[i].bytes)
        .collect();
    candidates.sort_by(|&a, &b| {
        let share = |p: &PackPlan| (p.bytes - p.used_bytes) as f64 / p.bytes.max(1) as f64;
        share(&packs[b])
            .total_cmp(&share(&packs[a]))
            .then(packs[a].pack.cmp(&packs[b].pack))
    });
    for i in candidates {
        if unused as f64 <= allowed {
            break;
        }
        unused -= packs[i].bytes - packs[i].used_bytes;
        packs[i].action = PackAction::Repack;
    }
    let live_action: HashMap<String, PackAction> =
        packs.iter().map(|p| (p.pack.clone(), p.action)).collect();
    for name in &trash {
        let bytes = size_of(name);
        let used_bytes = used_in.get(name.as_str()).copied().unwrap_or(0);
        let (action, ready_ns) = if let Some(a) = live_action.get(name) {
            // In both places: an interrupted move (or rescue). If the pack in `packs/` stays,
            // the copy in `trash/` goes; if it is being moved, that move covers both.
            if matches!(a, PackAction::Keep | PackAction::KeepUnindexed) {
                (PackAction::DropCopy, None)
            } else {
                continue;
            }
        } else if used_bytes > 0 {
            (PackAction::Rescue, None)
        } else {
            let since = previous.trash.get(name).copied().unwrap_or(now_ns);
            let ready = since.saturating_add(opts.grace_ns);
            if ready <= now_ns {
                (PackAction::Delete, None)
            } else {
                (PackAction::Wait, Some(ready))
            }
        };
        packs.push(PackPlan {
            pack: name.clone(),
            action,
            bytes,
            used_bytes,
            ready_ns,
        });
    }

    let mut plan = PrunePlan {
        now_ns,
        snapshots: snapshots.len() as u64,
        used_blobs: used.len() as u64,
        packs,
        old_indexes: Vec::new(),
        skipped,
        write_bytes: 0,
        delete_bytes: 0,
        trash_bytes: 0,
        waiting_bytes: 0,
        requests,
        indexes: index_packs.into_values().collect(),
        chosen,
        previous,
    };
    let sum = |plan: &PrunePlan, a: PackAction, f: fn(&PackPlan) -> u64| -> u64 {
        plan.with(a).map(f).sum()
    };
    plan.write_bytes = sum(&plan, PackAction::Repack, |p| p.used_bytes);
    plan.delete_bytes = sum(&plan, PackAction::Delete, |p| p.bytes);
    plan.trash_bytes =
        sum(&plan, PackAction::Trash, |p| p.bytes) + sum(&plan, PackAction::Repack, |p| p.bytes);
    plan.waiting_bytes = sum(&plan, PackAction::Wait, |p| p.bytes);
    let count = |plan: &PrunePlan, a: PackAction| plan.with(a).count() as u64;
    let changes = plan.changes_anything();
    if changes {
        plan.old_indexes = index_names;
        let pack_size = opts.pack.pack_size.max(1) as u64;
        let new_packs = plan.write_bytes.div_ceil(pack_size);
        let blobs: usize = plan.indexes.iter().map(|p| p.blobs.len()).sum();
        let new_indexes = (blobs.div_ceil(INDEX_BLOBS) as u64).max(1);
        let moves = count(&plan, PackAction::Trash)
            + count(&plan, PackAction::Repack)
            + count(&plan, PackAction::Rescue);
        plan.requests.put += new_packs + new_indexes + moves + 1;
        plan.requests.get += count(&plan, PackAction::Repack);
        plan.requests.delete += moves
            + plan.old_indexes.len() as u64
            + count(&plan, PackAction::Delete)
            + count(&plan, PackAction::DropCopy);
    }
    Ok(plan)
}

/// Blobs per index object written by prune (as backup writes them).
const INDEX_BLOBS: usize = 100_000;

fn pages(n: usize) -> u64 {
    (n.div_ceil(1000) as u64).max(1)
}

/// What [`execute`] did.
#[derive(Clone, Debug, Serialize)]
pub struct PruneReport {
    /// The plan it carried out.
    pub plan: PrunePlan,
    /// The record written (`log/<name>`); `None` when nothing changed.
    pub record_name: Option<String>,
    /// The record's content.
    pub record: PruneRecord,
    /// Old object versions swept after the prune (a bucket with S3 Object Lock keeps every
    /// deleted object as a locked old version); `None` for stores that keep none.
    pub versions: Option<VersionSweep>,
}

/// Carry out `plan` (from [`plan`] with the same options, just before), then sweep the old
/// versions the store keeps ([`old_versions`]).
pub fn execute(
    repo: &Repository,
    key: &MasterKey,
    plan: PrunePlan,
    opts: &PruneOptions,
) -> Result<PruneReport> {
    let mut report = execute_plan(repo, key, plan, opts)?;
    report.versions = old_versions(repo, false)?;
    Ok(report)
}

/// The old object versions a versioned store keeps (S3 with Object Lock): swept (unless
/// `dry_run`) where their lock has passed, counted with their dates where it has not. Only
/// old versions and delete markers are touched, never a current object: what a snapshot needs
/// is always a current object (`packs/` or `trash/`), so this cannot lose it.
pub fn old_versions(repo: &Repository, dry_run: bool) -> Result<Option<VersionSweep>> {
    Ok(repo.storage().sweep_old_versions(dry_run)?)
}

fn execute_plan(
    repo: &Repository,
    key: &MasterKey,
    plan: PrunePlan,
    opts: &PruneOptions,
) -> Result<PruneReport> {
    preflight(repo, key, opts)?;
    let storage = repo.storage().clone();
    let mut record = PruneRecord {
        unindexed: plan
            .with(PackAction::KeepUnindexed)
            .map(|p| p.pack.clone())
            .collect(),
        ..Default::default()
    };
    if !plan.changes_anything() {
        record.trash = waiting(&plan);
        let record_name = if plan.needs_record() {
            let rec = log::record(plan.now_ns, LogEvent::Prune(record.clone()));
            Some(rec.write(storage.as_ref(), key.as_put())?)
        } else {
            None
        };
        return Ok(PruneReport {
            plan,
            record_name,
            record,
            versions: None,
        });
    }
    let reader = Reader::from_indexes(
        storage.clone(),
        key,
        [IndexObject {
            packs: plan.indexes.clone(),
        }],
    );

    // 1. Repack: the used blobs of each repacked pack into new packs.
    let mut new_packs: Vec<IndexPack> = Vec::new();
    let repack: Vec<&PackPlan> = plan.with(PackAction::Repack).collect();
    if !repack.is_empty() {
        let mut writer =
            BlobWriter::start(storage.clone(), *key.as_put().public_key(), &opts.pack)?;
        for pp in &repack {
            let Some(ip) = plan.indexes.iter().find(|p| p.pack == pp.pack) else {
                continue;
            };
            let keep: Vec<BlobEntry> = ip
                .blobs
                .iter()
                .filter(|b| plan.chosen.get(&b.id) == Some(&pp.pack))
                .copied()
                .collect();
            let blobs = reader.read_pack_blobs(&ip.pack, &ip.ephemeral, &keep)?;
            for (e, plain) in keep.iter().zip(blobs) {
                writer.add(e.id, e.kind, &plain)?;
            }
        }
        new_packs = writer.finish()?;
        record.written_packs = new_packs.iter().map(|p| p.pack.clone()).collect();
    }

    // 2. Index objects covering every pack that stays: kept, unindexed-but-known, new,
    //    trashed now or waiting (still readable), rescued. Repacked blobs are listed at their
    //    new place only.
    let gone: HashSet<&str> = plan
        .with(PackAction::Delete)
        .map(|p| p.pack.as_str())
        .collect();
    let repacked: HashSet<&str> = repack.iter().map(|p| p.pack.as_str()).collect();
    let moved: HashSet<BlobId> = new_packs
        .iter()
        .flat_map(|p| p.blobs.iter().map(|b| b.id))
        .collect();
    let mut cover: Vec<IndexPack> = Vec::new();
    for ip in &plan.indexes {
        if gone.contains(ip.pack.as_str()) {
            continue;
        }
        let mut ip = ip.clone();
        if repacked.contains(ip.pack.as_str()) {
            ip.blobs.retain(|b| !moved.contains(&b.id));
            if ip.blobs.is_empty() {
                continue;
            }
        }
        cover.push(ip);
    }
    cover.extend(new_packs);
    let public = *key.as_put().public_key();
    let mut batch: Vec<IndexPack> = Vec::new();
    let mut count = 0usize;
    let flush = |batch: Vec<IndexPack>, record: &mut PruneRecord| -> Result<()> {
        let obj = crypto::seal_object(
            ObjectKind::Index,
            &public,
            &IndexObject { packs: batch }.to_bytes(),
        );
        let name = format::object_name(&obj);
        storage.put_if_absent(ObjectKind::Index, &name, &obj)?;
        record.written_indexes.push(name);
        Ok(())
    };
    for ip in cover {
        count += ip.blobs.len();
        batch.push(ip);
        if count >= INDEX_BLOBS {
            flush(std::mem::take(&mut batch), &mut record)?;
            count = 0;
        }
    }
    if !batch.is_empty() || record.written_indexes.is_empty() {
        flush(batch, &mut record)?;
    }

    // 3. Moves: rescued packs back to `packs/`, unused and repacked ones to `trash/`.
    for p in plan.with(PackAction::Rescue) {
        storage.copy(ObjectKind::Trash, ObjectKind::Pack, &p.pack)?;
        storage.delete(ObjectKind::Trash, &p.pack)?;
        record.rescued.push(p.pack.clone());
    }
    for p in plan
        .packs
        .iter()
        .filter(|p| matches!(p.action, PackAction::Trash | PackAction::Repack))
    {
        match storage.copy(ObjectKind::Pack, ObjectKind::Trash, &p.pack) {
            // Gone meanwhile (another prune moved it): the trash copy, if any, is what counts.
            Err(StorageError::NotFound { .. }) => {}
            r => r?,
        }
        storage.delete(ObjectKind::Pack, &p.pack)?;
        record.trashed.push(p.pack.clone());
    }
    // The grace period of what was trashed now starts when every move is done.
    let moved_at = opts.now_ns.unwrap_or_else(log::now_ns).max(plan.now_ns);

    // 4. The replaced index objects (never one just written).
    let written: HashSet<&String> = record.written_indexes.iter().collect();
    for name in &plan.old_indexes {
        if !written.contains(name) {
            storage.delete(ObjectKind::Index, name)?;
            record.deleted_indexes.push(name.clone());
        }
    }

    // 5. Trashed packs whose time has come, and stale copies of packs that stay.
    for p in plan.with(PackAction::Delete) {
        storage.delete(ObjectKind::Trash, &p.pack)?;
        record.deleted.push(p.pack.clone());
        record.deleted_bytes += p.bytes;
    }
    for p in plan.with(PackAction::DropCopy) {
        storage.delete(ObjectKind::Trash, &p.pack)?;
    }

    // 6. The record: also the trash state the next prune starts from.
    record.trash = waiting(&plan);
    for name in &record.trashed {
        record.trash.insert(name.clone(), moved_at);
    }
    let rec = log::record(moved_at, LogEvent::Prune(record.clone()));
    let record_name = Some(rec.write(storage.as_ref(), key.as_put())?);
    Ok(PruneReport {
        plan,
        record_name,
        record,
        versions: None,
    })
}

/// Packs staying in `trash/`, with the time they went there.
fn waiting(plan: &PrunePlan) -> BTreeMap<String, i64> {
    plan.with(PackAction::Wait)
        .map(|p| {
            let since = plan
                .previous
                .trash
                .get(&p.pack)
                .copied()
                .unwrap_or(plan.now_ns);
            (p.pack.clone(), since)
        })
        .collect()
}

/// Plan and execute in one call (`ferry prune` without `--dry-run`).
pub fn prune(repo: &Repository, key: &MasterKey, opts: &PruneOptions) -> Result<PruneReport> {
    let p = plan(repo, key, opts)?;
    execute(repo, key, p, opts)
}
