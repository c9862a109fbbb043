//! The record of every forget and prune: one `log/<sha256>` object each, sealed to the
//! repository key like a snapshot, written by the operator only (the gate never accepts the
//! `log` kind). Nothing leaves the repository without a trace: a forget writes its record
//! before it deletes, a prune after it has moved and deleted (its record is also the state
//! the next prune starts from: which packs are in `trash/` since when).

use crate::crypto;
use crate::error::{Error, Result};
use crate::format::{self, ObjectKind};
use crate::keys::{MasterKey, PutKey};
use crate::storage::Storage;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One forget or prune.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// RFC 3339 UTC time of the operation.
    pub time: String,
    /// The same instant, nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// The operator's host name.
    pub host: String,
    /// The `ferry-repo` version that wrote it.
    pub ferry_version: String,
    /// What was done.
    pub event: LogEvent,
}

/// What a [`LogRecord`] records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum LogEvent {
    /// Snapshots removed by `ferry forget`.
    Forget {
        /// The policy as the operator gave it (or "by id").
        policy: String,
        /// Every snapshot removed, with its time, host and paths.
        removed: Vec<ForgotSnapshot>,
        /// How many snapshots the policy kept.
        kept: u64,
    },
    /// Objects moved and deleted by `ferry prune`.
    Prune(PruneRecord),
}

/// A snapshot a forget removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgotSnapshot {
    /// The snapshot id (object name).
    pub id: String,
    /// Its time (RFC 3339).
    pub time: String,
    /// Its host.
    pub host: String,
    /// Its paths.
    pub paths: Vec<String>,
    /// Why it went ("no rule of the policy keeps it", "named on the command line").
    pub reason: String,
}

/// What one prune did, and the state the next one starts from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneRecord {
    /// After this prune: every pack in `trash/` and when it went there (ns). The next prune
    /// deletes one only when its grace period has passed since that time.
    pub trash: BTreeMap<String, i64>,
    /// Packs in `packs/` that no index covered (a backup in flight, or one interrupted): left
    /// alone the first time; moved to `trash/` by the next prune if still not indexed.
    pub unindexed: BTreeSet<String>,
    /// Packs moved to `trash/` by this prune (unused, or repacked).
    pub trashed: Vec<String>,
    /// Packs moved back from `trash/` (a snapshot written meanwhile needs them).
    pub rescued: Vec<String>,
    /// Packs deleted for good (in `trash/` for longer than the grace period, still unused).
    pub deleted: Vec<String>,
    /// New packs written by repacking.
    pub written_packs: Vec<String>,
    /// Index objects written (covering every pack that stays).
    pub written_indexes: Vec<String>,
    /// Index objects deleted (replaced by the written ones).
    pub deleted_indexes: Vec<String>,
    /// Bytes of the packs deleted for good (their blob records).
    pub deleted_bytes: u64,
}

impl LogRecord {
    /// Seal to the repository key: `(object name, bytes)` for `log/<name>`.
    pub fn seal(&self, key: &PutKey) -> Result<(String, Vec<u8>)> {
        let json =
            serde_json::to_vec(self).map_err(|e| Error::malformed("log record", e.to_string()))?;
        let obj = crypto::seal_object(ObjectKind::Log, key.public_key(), &json);
        Ok((format::object_name(&obj), obj))
    }

    /// Parse a decrypted record (fuzzable: never panics, allocates in proportion to its input).
    pub fn parse(plaintext: &[u8]) -> Result<LogRecord> {
        serde_json::from_slice(plaintext).map_err(|e| Error::malformed("log record", e.to_string()))
    }

    /// Decrypt and parse a whole `log/<name>` object.
    pub fn open(key: &MasterKey, bytes: &[u8], name: &str) -> Result<LogRecord> {
        let object = ObjectKind::Log.key(name);
        let plain = crypto::open_object(ObjectKind::Log, key.secret(), bytes, &object)?;
        Self::parse(&plain).map_err(|e| Error::corrupt(object, e.to_string()))
    }

    /// Store it (write-once).
    pub fn write(&self, storage: &dyn Storage, key: &PutKey) -> Result<String> {
        let (name, obj) = self.seal(key)?;
        storage.put_if_absent(ObjectKind::Log, &name, &obj)?;
        Ok(name)
    }
}

/// Records by object name, oldest first.
pub type Records = Vec<(String, LogRecord)>;
/// Objects that could not be read: (object key, why).
pub type Unreadable = Vec<(String, String)>;

/// Every readable record, oldest first, and the ones that could not be read (object, why).
pub fn read_all(storage: &dyn Storage, key: &MasterKey) -> Result<(Records, Unreadable)> {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for name in storage.list(ObjectKind::Log)? {
        let bytes = match storage.get(ObjectKind::Log, &name) {
            Ok(b) => b,
            Err(e) if e.is_not_regular_file() => {
                bad.push((ObjectKind::Log.key(&name), e.to_string()));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        match LogRecord::open(key, &bytes, &name) {
            Ok(r) => out.push((name, r)),
            Err(e) => bad.push((ObjectKind::Log.key(&name), e.to_string())),
        }
    }
    out.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
    Ok((out, bad))
}

/// The newest prune record, if any.
pub fn last_prune(records: &[(String, LogRecord)]) -> Option<&PruneRecord> {
    records.iter().rev().find_map(|(_, r)| match &r.event {
        LogEvent::Prune(p) => Some(p),
        _ => None,
    })
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

pub(crate) fn record(time_ns: i64, event: LogEvent) -> LogRecord {
    LogRecord {
        time: crate::backup::format_time(time_ns),
        time_ns,
        host: crate::backup::hostname(),
        ferry_version: env!("CARGO_PKG_VERSION").to_string(),
        event,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_record_round_trips_sealed() {
        let key = MasterKey::from_seed(&[3; 32]);
        let rec = record(
            5,
            LogEvent::Forget {
                policy: "keep 1 last".into(),
                removed: vec![],
                kept: 1,
            },
        );
        let (name, obj) = rec.seal(key.as_put()).unwrap();
        assert_eq!(LogRecord::open(&key, &obj, &name).unwrap(), rec);
        let e = LogRecord::parse(b"{\"time\": 1}").unwrap_err().to_string();
        assert!(e.contains("log record"), "{e}");
    }

    proptest! {
        #[test]
        fn the_record_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = LogRecord::parse(&bytes);
            let key = MasterKey::from_seed(&[3; 32]);
            let _ = LogRecord::open(&key, &bytes, "x");
        }
    }
}
