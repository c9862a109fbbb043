//! `ferry prune --repo REPO --key MASTER_KEY [--max-unused 5%] [--keep-delete 24h] [--dry-run]
//! [--json]`: delete what no snapshot needs, in two phases (docs/RETENTION.md).

use super::{Global, Outcome, RepoArgs};
use crate::output::human;
use anyhow::Context;
use ferry_repo::retention::log::PruneRecord;
use ferry_repo::retention::prune::{self, PackAction, PruneOptions, PrunePlan};
use ferry_repo::storage::VersionSweep;
use ferry_repo::{MasterKey, Repository};
use std::sync::Arc;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct PruneFlags {
    /// Repack partly used packs until at most this share of the kept bytes is unused (restic's `--max-unused`; default 5%).
    #[arg(long, value_name = "PERCENT")]
    pub max_unused: Option<String>,
    /// How long an unused pack waits in trash/ before it is deleted (at least 13h; default
    /// 24h): longer than any backup run, so a run that listed it before the prune never ends
    /// up with a snapshot that needs a deleted pack.
    #[arg(long, value_name = "DURATION")]
    pub keep_delete: Option<String>,
}

impl PruneFlags {
    pub fn options(&self) -> anyhow::Result<PruneOptions> {
        let mut o = PruneOptions::default();
        if let Some(m) = &self.max_unused {
            let v = m.trim().trim_end_matches('%');
            o.max_unused_percent = v
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .with_context(|| {
                    format!("--max-unused {m:?}: give a percentage from 0% to 100%, e.g. 5%")
                })?;
        }
        if let Some(d) = &self.keep_delete {
            o.grace_ns = parse_hours(d).with_context(|| {
                format!("--keep-delete {d:?}: give hours or days, e.g. 24h, 2d")
            })? * 3_600_000_000_000;
        }
        Ok(o)
    }
}

fn parse_hours(s: &str) -> Option<i64> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = n.parse().ok()?;
    match unit {
        "h" => Some(n),
        "d" => n.checked_mul(24),
        _ => None,
    }
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub flags: PruneFlags,
    /// Print what would be written, moved and deleted, and the S3 requests; change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Print a JSON report on stdout.
    #[arg(long)]
    pub json: bool,
}

/// What [`prune_repo`] planned and did.
#[derive(Debug)]
pub struct Pruned {
    pub plan: PrunePlan,
    /// The record written; `None` in a dry run.
    pub record: Option<PruneRecord>,
    /// Old object versions (S3 with Object Lock): swept, or in a dry run what would be.
    pub versions: Option<VersionSweep>,
}

/// Plan, and unless `dry_run` execute: the plan, the record written, the old versions swept.
pub fn prune_repo(
    repo: &Repository,
    key: &MasterKey,
    opts: &PruneOptions,
    dry_run: bool,
) -> anyhow::Result<Pruned> {
    let plan = prune::plan(repo, key, opts)?;
    if dry_run {
        let versions = prune::old_versions(repo, true)?;
        return Ok(Pruned {
            plan,
            record: None,
            versions,
        });
    }
    let report = prune::execute(repo, key, plan, opts)?;
    Ok(Pruned {
        plan: report.plan,
        record: Some(report.record),
        versions: report.versions,
    })
}

pub fn print_prune(g: &Global, p: &Pruned, dry_run: bool) {
    if g.quiet {
        return;
    }
    let (plan, record) = (&p.plan, p.record.as_ref());
    let n = |a: PackAction| plan.with(a).count();
    let bytes = |a: PackAction| human(plan.with(a).map(|p| p.bytes).sum());
    let would = if dry_run { "would " } else { "" };
    eprintln!(
        "{} snapshots need {} blobs; packs: {} kept, {} unindexed left alone",
        plan.snapshots,
        plan.used_blobs,
        n(PackAction::Keep),
        n(PackAction::KeepUnindexed)
    );
    eprintln!(
        "{would}repack {} pack(s) ({} of used blobs written anew), {would}move {} unused pack(s) ({}) to trash/, {would}move back {} pack(s) a new snapshot needs",
        n(PackAction::Repack),
        human(plan.write_bytes),
        n(PackAction::Trash),
        bytes(PackAction::Trash),
        n(PackAction::Rescue)
    );
    eprintln!(
        "{would}delete {} pack(s) for good ({}); {} pack(s) ({}) wait in trash/ for their grace period{}",
        n(PackAction::Delete),
        human(plan.delete_bytes),
        n(PackAction::Wait),
        human(plan.waiting_bytes),
        plan.with(PackAction::Wait)
            .filter_map(|p| p.ready_ns)
            .min()
            .map(|t| format!(" (first ready at {})", format_ns(t)))
            .unwrap_or_default()
    );
    let r = &plan.requests;
    eprintln!(
        "S3 requests{}: {} PUT/COPY, {} LIST, {} GET, {} DELETE (free)",
        if dry_run { " it would make" } else { "" },
        r.put,
        r.list,
        r.get,
        r.delete
    );
    for (object, why) in &plan.skipped {
        eprintln!("warning: skipped unreadable {object}: {why}");
    }
    if let Some(rec) = record {
        eprintln!(
            "done: {} written, {} trashed, {} rescued, {} deleted ({}); {} index object(s) replaced",
            rec.written_packs.len(),
            rec.trashed.len(),
            rec.rescued.len(),
            rec.deleted.len(),
            human(rec.deleted_bytes),
            rec.deleted_indexes.len()
        );
    }
    if let Some(v) = &p.versions {
        let would = if dry_run { "would " } else { "" };
        eprintln!(
            "Object Lock: {would}remove {} old version(s) ({}) and {} delete marker(s); {} old version(s) ({}) wait for their lock{}",
            v.removed,
            human(v.removed_bytes),
            v.removed_markers,
            v.locked,
            human(v.locked_bytes),
            match (v.next_unlock, v.last_unlock) {
                (Some(a), Some(b)) => format!(
                    " (first free {}, all by {})",
                    format_ns(a.saturating_mul(1_000_000_000)),
                    format_ns(b.saturating_mul(1_000_000_000))
                ),
                _ => String::new(),
            }
        );
    }
}

fn format_ns(ns: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ns.div_euclid(1_000_000_000))
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_else(|_| format!("@{ns}"))
}

pub fn run(g: &Global, a: &PruneArgs) -> anyhow::Result<Outcome> {
    let key = super::master_key(&a.repo, "prune")?;
    let repo = Repository::open(Arc::from(super::storage(&a.repo)?))?;
    let opts = a.flags.options()?;
    let pruned = prune_repo(&repo, &key, &opts, a.dry_run)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "dry_run": a.dry_run,
                "plan": pruned.plan,
                "record": pruned.record,
                "versions": pruned.versions,
            }))?
        );
    }
    print_prune(g, &pruned, a.dry_run);
    Ok(Outcome::Ok)
}
