//! `ferry status --config FILE`: the last runs recorded in the spool (when, result, sizes,
//! cloud usage) and what the spool still holds.

use crate::cli::{Global, Outcome, StatusArgs};
use crate::config::FerryConfig;
use anyhow::Context;

pub fn run(_g: &Global, a: &StatusArgs) -> anyhow::Result<Outcome> {
    let cfg = FerryConfig::load(&a.config)?;
    let b = cfg
        .backup
        .as_ref()
        .with_context(|| format!("config file {}: no [backup] section", a.config.display()))?
        .plan()?;
    let runs = crate::spool::read_runs(&b.spool, a.last)?;
    // Read without the spool's lock: a run may be going on.
    let waiting = crate::spool::waiting_bytes(&b.spool);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "spool": b.spool.display().to_string(),
                "waiting_bytes": waiting,
                "runs": runs,
            }))?
        );
        return Ok(Outcome::Ok);
    }
    if runs.is_empty() {
        println!("No backup runs recorded in {} yet.", b.spool.display());
    } else {
        println!(
            "{:<20} {:<11} {:<8} {:>10} {:>10} {:>5} {:>6} {:>7}  error",
            "finished", "result", "snapshot", "total", "new", "PUTs", "λ", "box s"
        );
    }
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let n = |v: &serde_json::Value| v.as_u64();
    for r in &runs {
        let finished = s(&r["finished"]);
        let snap = s(&r["snapshot"]);
        println!(
            "{:<20} {:<11} {:<8} {:>10} {:>10} {:>5} {:>6} {:>7}  {}",
            finished.get(..19).unwrap_or(&finished),
            s(&r["result"]),
            snap.get(..8).unwrap_or(&snap),
            n(&r["bytes"])
                .map(super::human)
                .unwrap_or_else(|| "-".into()),
            n(&r["new_bytes"])
                .map(super::human)
                .unwrap_or_else(|| "-".into()),
            n(&r["usage"]["s3_put_requests"]).unwrap_or(0),
            n(&r["usage"]["lambda_invocations"]).unwrap_or(0),
            n(&r["usage"]["instance_seconds"]).unwrap_or(0),
            s(&r["error"]).lines().next().unwrap_or(""),
        );
    }
    if waiting > 0 {
        println!(
            "The spool holds {} not uploaded yet; the next run uploads it.",
            super::human(waiting)
        );
    }
    Ok(Outcome::Ok)
}
