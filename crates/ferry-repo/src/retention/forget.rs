//! Forget: remove snapshot objects (the decision comes from [`super::policy`] or from ids
//! the operator names). The record goes first, so a snapshot never vanishes without a trace;
//! then each snapshot object is deleted. Blobs stay until a prune.

use super::log::{self, ForgotSnapshot, LogEvent};
use super::policy::{self, GroupBy, GroupPlan, KeepPolicy};
use crate::error::{Error, Result};
use crate::format::ObjectKind;
use crate::keys::MasterKey;
use crate::objects::SnapshotInfo;
use crate::repo::Repository;
use serde::Serialize;

/// What a forget did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ForgetReport {
    /// Ids of the snapshots removed.
    pub removed: Vec<String>,
    /// How many snapshots were kept.
    pub kept: u64,
    /// The `log/` record written (none when nothing was removed).
    pub record: Option<String>,
}

/// What a policy decides for a repository's snapshots.
#[derive(Clone, Debug)]
pub struct PolicyPlan {
    /// Each group with every snapshot's decision and the rules that keep it.
    pub groups: Vec<GroupPlan>,
    /// The snapshots to remove, each with the reason it goes.
    pub remove: Vec<(SnapshotInfo, String)>,
    /// How many snapshots the policy keeps.
    pub kept: u64,
}

/// Apply `policy` per `group_by` to `snapshots`. Refused, as restic refuses: an empty policy,
/// and a policy that would leave a group with no snapshot.
pub fn plan_policy(
    snapshots: &[SnapshotInfo],
    policy: &KeepPolicy,
    group_by: &GroupBy,
) -> Result<PolicyPlan> {
    let refuse = |message: String| Error::Retention {
        op: "forget",
        message,
    };
    let groups = policy::apply(snapshots, policy, group_by).map_err(|e| refuse(e.to_string()))?;
    if let Some(gp) = groups.iter().find(|gp| gp.keep().next().is_none()) {
        return Err(refuse(format!(
            "the policy ({}) keeps no snapshot of group {}: refusing to forget all {} of them (forget them by id if you mean it)",
            policy.describe(),
            gp.key,
            gp.decisions.len()
        )));
    }
    let reason = format!("no rule of the policy ({}) keeps it", policy.describe());
    let remove = groups
        .iter()
        .flat_map(|gp| gp.remove())
        .filter_map(|d| snapshots.iter().find(|s| s.id == d.id).cloned())
        .map(|s| (s, reason.clone()))
        .collect();
    let kept = groups.iter().map(|gp| gp.keep().count() as u64).sum();
    Ok(PolicyPlan {
        groups,
        remove,
        kept,
    })
}

/// Remove `remove` (each snapshot with the reason it goes), recording `policy` and how many
/// were `kept`. Needs the master key and a storage that can delete.
pub fn forget(
    repo: &Repository,
    key: &MasterKey,
    remove: &[(SnapshotInfo, String)],
    kept: u64,
    policy: &str,
) -> Result<ForgetReport> {
    repo.config().check_key(key.as_put())?;
    let storage = repo.storage();
    if !storage.can_delete() {
        return Err(Error::Retention {
            op: "forget",
            message: format!(
                "{} is put-only: forgetting needs the operator's storage (a directory or s3:// with admin credentials)",
                storage.location()
            ),
        });
    }
    let mut report = ForgetReport {
        kept,
        ..Default::default()
    };
    if remove.is_empty() {
        return Ok(report);
    }
    let event = LogEvent::Forget {
        policy: policy.to_string(),
        removed: remove
            .iter()
            .map(|(s, reason)| ForgotSnapshot {
                id: s.id.clone(),
                time: s.snapshot.time.clone(),
                host: s.snapshot.host.clone(),
                paths: s.snapshot.paths.clone(),
                reason: reason.clone(),
            })
            .collect(),
        kept,
    };
    report.record = Some(log::record(log::now_ns(), event).write(storage.as_ref(), key.as_put())?);
    for (s, _) in remove {
        storage.delete(ObjectKind::Snapshot, &s.id)?;
        report.removed.push(s.id.clone());
    }
    Ok(report)
}
