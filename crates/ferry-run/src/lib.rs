//! # ferry-run — the cloud run of `ferry backup --config FILE`
//!
//! Owns everything between "the config file says `[backup]` and `[cloud]`" and "the snapshot
//! is in the bucket and the jump box is gone": the config file's types ([`config`]), the
//! spool, a wrapper `Storage` that the engine packs into before any jump box exists
//! ([`spool`]), the Lambda client that asks ferry-build and ferry-clean for and to remove a
//! jump box ([`lambda`]; [`cloud`] puts it and the gate connection behind a trait), and the
//! run itself ([`run`]: collect → spool → build → upload → clean), which reports through a
//! progress sink, stops on a cancellation handle, guarantees ferry-clean for every jump box
//! it got, and returns a report value; and the run's schedule (systemd units, [`schedule`]).
//! Around the run ([`ops`]): the health pings ([`ping`]), the user's hooks ([`hooks`]), the
//! Prometheus metrics file ([`metrics`]), the `--max-age` check ([`staleness`]) and the
//! `--json` progress lines ([`jsonl`]; the operator's `restore --json` and `check --json`
//! write theirs through the same module, so every command's lines share one convention and
//! one set of field names). It prints nothing and reads no command line; the
//! `ferry` binary installs the signal handler and prints.
//!
//! Must never depend on the CLI (ferry-cli, clap, indicatif), the test kit, or any AWS
//! service but Lambda: of the SDK it uses only aws-config and aws-sdk-lambda (no ferry-cloud,
//! no ferry-s3, no aws-sdk-s3, -ec2, -iam).

pub mod cloud;
pub mod config;
pub mod error;
pub mod format;
pub mod hooks;
pub mod jsonl;
pub mod lambda;
pub mod metrics;
pub mod ops;
pub mod ping;
pub mod report;
pub mod retention;
pub mod run;
pub mod schedule;
pub mod spool;
pub mod staleness;

pub use cloud::{AwsCloud, Cloud, Gate};
pub use config::{BackupPlan, CloudPlan, ConfigError, FerryConfig, OpsPlan};
pub use error::{Error, error_chain};
pub use jsonl::{CheckLines, DirectRun, JsonLines, RestoreLines};
pub use lambda::{Functions, Session};
pub use ops::Ops;
pub use report::{RunReport, dedup_ratio, run_sources_json, sources_json};
pub use retention::{RetentionConfig, SiteRetention};
pub use run::{Cancel, CloudRun, Event, RunInput, RunProgress};
pub use spool::{Held, Spool, SpoolStorage};
