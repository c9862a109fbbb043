//! Retention: which snapshots to keep (policy), forgetting the others (forget), deleting what
//! no snapshot needs any more (prune), and the record of each (log). Operator only: every
//! change needs the master key and a storage that can delete (docs/RETENTION.md).

pub mod forget;
pub mod log;
pub mod policy;
pub mod prune;
