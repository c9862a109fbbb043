//! Forget: remove snapshot objects (the decision comes from [`super::policy`] or from ids
//! the operator names). The record goes first, so a snapshot never vanishes without a trace;
//! then each snapshot object is deleted. Blobs stay until a prune.

use super::log::{self, ForgotSnapshot, LogEvent};
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
