//! `ferry status --config FILE`: the last runs recorded in the spool (when, result, sizes,
//! cloud usage) and what the spool still holds.

use super::{Global, Outcome};
use crate::output::human;
use anyhow::Context;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The config file whose spool keeps the run records.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// How many runs to show.
    #[arg(long, short = 'n', default_value_t = 10)]
    pub last: usize,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_g: &Global, a: &StatusArgs) -> anyhow::Result<Outcome> {
    let cfg = super::load_config(&a.config)?;
    let b = cfg
        .backup
        .as_ref()
        .with_context(|| format!("config file {}: no [backup] section", a.config.display()))?
        .plan()?;
    let st = ferry_run::spool::status(&b.spool, a.last)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(Outcome::Ok);
    }
    if st.runs.is_empty() {
        println!("No backup runs recorded in {} yet.", st.spool);
    } else {
        println!(
            "{:<20} {:<11} {:<8} {:>10} {:>10} {:>5} {:>6} {:>7}  error",
            "finished", "result", "snapshot", "total", "new", "PUTs", "λ", "box s"
        );
    }
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let n = |v: &serde_json::Value| v.as_u64();
    for r in &st.runs {
        let finished = s(&r["finished"]);
        let snap = s(&r["snapshot"]);
        println!(
            "{:<20} {:<11} {:<8} {:>10} {:>10} {:>5} {:>6} {:>7}  {}",
            finished.get(..19).unwrap_or(&finished),
            s(&r["result"]),
            snap.get(..8).unwrap_or(&snap),
            n(&r["bytes"]).map(human).unwrap_or_else(|| "-".into()),
            n(&r["new_bytes"]).map(human).unwrap_or_else(|| "-".into()),
            n(&r["usage"]["s3_put_requests"]).unwrap_or(0),
            n(&r["usage"]["lambda_invocations"]).unwrap_or(0),
            n(&r["usage"]["instance_seconds"]).unwrap_or(0),
            s(&r["error"]).lines().next().unwrap_or(""),
        );
    }
    if st.waiting_bytes > 0 {
        println!(
            "The spool holds {} not uploaded yet; the next run uploads it.",
            human(st.waiting_bytes)
        );
    }
    Ok(Outcome::Ok)
}
