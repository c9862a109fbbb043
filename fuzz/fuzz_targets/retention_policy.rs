//! Forget's policy: the rule texts an operator writes (`--keep-daily`, `--keep-within`,
//! `--keep-tag`, `--group-by`, also read from the retention file), applied to snapshots whose
//! times, hosts and tags come from snapshot objects a hostile backup VM may have written (any
//! `time_ns`, even far outside the calendar).
#![no_main]
use ferry_repo::ids::BlobId;
use ferry_repo::objects::{Snapshot, SnapshotInfo};
use ferry_repo::retention::policy::{self, GroupBy, Keep, KeepPolicy, KeepWithin, TagList};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The rule texts up to the first NUL byte, then 9 bytes per snapshot (time, host/tag bits).
    let cut = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (text, times) = data.split_at(cut);
    let text = String::from_utf8_lossy(text);
    let mut lines = text.lines();
    let count = lines.next().and_then(|l| l.parse::<Keep>().ok());
    let within = lines.next().and_then(|l| l.parse::<KeepWithin>().ok());
    let tags: Vec<TagList> = lines.next().and_then(|l| l.parse::<TagList>().ok()).into_iter().collect();
    let group_by = lines
        .next()
        .and_then(|l| l.parse::<GroupBy>().ok())
        .unwrap_or_default();
    let snapshots: Vec<SnapshotInfo> = times
        .chunks_exact(9)
        .take(64)
        .enumerate()
        .map(|(i, c)| {
            let mut t = [0u8; 8];
            t.copy_from_slice(&c[..8]);
            SnapshotInfo {
                id: format!("{i:064x}"),
                snapshot: Snapshot {
                    time: String::new(),
                    time_ns: i64::from_le_bytes(t),
                    host: format!("h{}", c[8] % 3),
                    paths: vec!["/".into()],
                    tags: if c[8] & 4 != 0 { vec!["keep".into()] } else { vec![] },
                    source_set: String::new(),
                    root: BlobId([0; 32]),
                    stats: Default::default(),
                    sources: vec![],
                    errors: vec![],
                    ferry_version: String::new(),
                    usage: None,
                },
            }
        })
        .collect();
    let p = KeepPolicy {
        daily: count,
        weekly: count,
        within,
        tags,
        ..Default::default()
    };
    if let Ok(plans) = policy::apply(&snapshots, &p, &group_by) {
        // Every snapshot is decided once, kept or removed.
        let decided: usize = plans.iter().map(|g| g.keep().count() + g.remove().count()).sum();
        assert_eq!(decided, snapshots.len());
    }
});
