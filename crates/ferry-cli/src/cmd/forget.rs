//! `ferry forget --repo REPO --key MASTER_KEY [--keep-* …] [--group-by …] [--dry-run] [--prune]
//! [--json] [ID …]`, or `ferry forget -c RETENTION_TOML [--dry-run] [--prune]` for every site
//! of the operator's retention file.

use super::prune::{PruneFlags, print_prune};
use super::{Global, Outcome, RepoArgs};
use anyhow::{Context, bail};
use ferry_repo::retention::forget;
use ferry_repo::retention::policy::{GroupBy, Keep, KeepPolicy, KeepWithin, TagList};
use ferry_repo::{MasterKey, Repository, SnapshotInfo};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    /// Keep the N newest snapshots (-1 or `unlimited`: all).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub keep_last: Option<Keep>,
    /// Keep the newest snapshot of each of the last N hours that have one (UTC).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub keep_hourly: Option<Keep>,
    /// Keep the newest snapshot of each of the last N days that have one (UTC).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub keep_daily: Option<Keep>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub keep_weekly: Option<Keep>,
    /// Keep the newest snapshot of each of the last N months that have one.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub keep_monthly: Option<Keep>,
    /// Keep the newest snapshot of each of the last N years that have one.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub keep_yearly: Option<Keep>,
    /// Keep every snapshot within this duration (e.g. `1y6m`, `30d`, `12h`) of the group's
    /// newest snapshot.
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<KeepWithin>,
    /// Keep snapshots carrying all of these tags (`a,b`; repeat for alternatives).
    #[arg(long, value_name = "TAGS")]
    pub keep_tag: Vec<TagList>,
    /// Apply the policy per group of snapshots with the same `host`, `paths` and/or `tags`
    /// (comma-separated; `""`: one group).
    #[arg(long, value_name = "GROUPING", default_value = "host,paths")]
    pub group_by: GroupBy,
}

impl PolicyArgs {
    fn policy(&self) -> KeepPolicy {
        KeepPolicy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
            tags: self.keep_tag.clone(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ForgetArgs {
    /// Repository: a directory or `s3://BUCKET/SITE` (operator's credentials).
    #[arg(
        long,
        env = "FERRY_REPO",
        value_name = "REPO",
        required_unless_present = "config"
    )]
    pub repo: Option<String>,
    /// The master key file.
    #[arg(
        long,
        env = "FERRY_KEY",
        value_name = "KEY",
        required_unless_present = "config"
    )]
    pub key: Option<PathBuf>,
    /// The operator's retention file: apply each `[retention.SITE]` policy to its repository.
    #[arg(long, short = 'c', value_name = "FILE", conflicts_with_all = ["repo", "key", "ids"])]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Forget exactly these snapshots (ids or unique prefixes) instead of applying a policy.
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
    /// Print what would be forgotten (and pruned); change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Prune right after forgetting.
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub prune_flags: PruneFlags,
    /// Print a JSON report on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &Global, a: &ForgetArgs) -> anyhow::Result<Outcome> {
    if let Some(path) = &a.config {
        let cfg = ferry_run::RetentionConfig::load(path)?;
        if cfg.sites.is_empty() {
            bail!("{}: no [retention.SITE] section", path.display());
        }
        let mut reports = Vec::new();
        for (site, s) in &cfg.sites {
            if !g.quiet {
                eprintln!("site {site}: {} ({})", s.repo, s.policy.describe());
            }
            let flags = PruneFlags {
                max_unused: a.prune_flags.max_unused.clone().or(s.max_unused.clone()),
                keep_delete: a.prune_flags.keep_delete.clone().or(s.keep_delete.clone()),
            };
            let r = one(
                g,
                a,
                &repo_args(&s.repo, &s.key),
                &s.policy,
                &s.group_by,
                &[],
                &flags,
            )
            .with_context(|| format!("site {site} ({})", s.repo))?;
            reports.push(serde_json::json!({ "site": site, "report": r }));
        }
        if a.json {
            println!("{}", serde_json::to_string_pretty(&reports)?);
        }
        return Ok(Outcome::Ok);
    }
    let (Some(repo), Some(key)) = (&a.repo, &a.key) else {
        bail!("give --repo and --key, or --config");
    };
    let r = one(
        g,
        a,
        &repo_args(repo, key),
        &a.policy.policy(),
        &a.policy.group_by,
        &a.ids,
        &a.prune_flags,
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    }
    Ok(Outcome::Ok)
}

fn repo_args(repo: &str, key: &std::path::Path) -> RepoArgs {
    RepoArgs {
        repo: repo.to_string(),
        key: key.to_path_buf(),
        identity: None,
        host_key: None,
    }
}

/// Forget (and prune) one repository; its JSON report.
fn one(
    g: &Global,
    a: &ForgetArgs,
    repo_args: &RepoArgs,
    pol: &KeepPolicy,
    group_by: &GroupBy,
    ids: &[String],
    prune_flags: &PruneFlags,
) -> anyhow::Result<serde_json::Value> {
    let key: MasterKey = super::master_key(repo_args, "forget")?;
    let repo = Repository::open(Arc::from(super::storage(repo_args)?))?;
    let reader = repo.reader(&key)?;
    let snaps = reader.snapshots()?;
    super::warn_skipped(&reader);
    let mut groups = None;
    let (remove, kept, described) = if ids.is_empty() {
        let plan = forget::plan_policy(&snaps, pol, group_by)?;
        let (remove, kept) = (plan.remove, plan.kept);
        groups = Some(plan.groups);
        (remove, kept, pol.describe())
    } else {
        let mut remove: Vec<(SnapshotInfo, String)> = Vec::new();
        for id in ids {
            // Among the snapshots read above: no LIST and GET per id.
            let s = ferry_repo::repo::resolve_among(&snaps, id)?;
            if !remove.iter().any(|(r, _)| r.id == s.id) {
                remove.push((s, "named on the command line".to_string()));
            }
        }
        let kept = (snaps.len() - remove.len()) as u64;
        (remove, kept, "by id".to_string())
    };
    if !g.quiet && !a.json {
        if let Some(plans) = &groups {
            for gp in plans {
                println!("{} ({} snapshots)", gp.key, gp.decisions.len());
                for d in &gp.decisions {
                    let time = snaps
                        .iter()
                        .find(|s| s.id == d.id)
                        .map(|s| s.snapshot.time.chars().take(19).collect::<String>())
                        .unwrap_or_default()
                        .replace('T', " ");
                    println!(
                        "  {}  {:<8}  {}  {}",
                        if d.keep { "keep  " } else { "forget" },
                        d.id.get(..8).unwrap_or(&d.id),
                        time,
                        d.reasons.join(", ")
                    );
                }
            }
        } else {
            for (s, why) in &remove {
                println!("  forget  {}  {}", s.short_id(), why);
            }
        }
    }
    let mut out = serde_json::json!({
        "policy": described,
        "dry_run": a.dry_run,
        "remove": remove.iter().map(|(s, _)| s.id.clone()).collect::<Vec<_>>(),
        "kept": kept,
        "groups": groups,
    });
    if a.dry_run {
        if !g.quiet {
            eprintln!(
                "dry run: would forget {} snapshot(s), keep {kept}",
                remove.len()
            );
        }
    } else {
        let report = forget::forget(&repo, &key, &remove, kept, &described)?;
        if !g.quiet {
            eprintln!(
                "forgot {} snapshot(s), kept {}{}",
                report.removed.len(),
                report.kept,
                report
                    .record
                    .as_deref()
                    .map(|r| format!("; recorded as log/{}", r.get(..12).unwrap_or(r)))
                    .unwrap_or_default()
            );
        }
        out["record"] = serde_json::json!(report.record);
    }
    if a.prune {
        let opts = prune_flags.options()?;
        let pruned = super::prune::prune_repo(&repo, &key, &opts, a.dry_run)?;
        if !a.json {
            print_prune(g, &pruned, a.dry_run);
        }
        out["prune"] = serde_json::json!({
            "plan": pruned.plan,
            "record": pruned.record,
            "versions": pruned.versions,
        });
    }
    Ok(out)
}
