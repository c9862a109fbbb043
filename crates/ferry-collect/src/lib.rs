//! # ferry-collect — sources: what to back up, and pulling it from the LAN
//!
//! Owns the `[sources]` section of the config file (the backup VM's own paths and remote
//! hosts) and collecting those sources into the repository engine: files are listed on each
//! host with GNU `find -printf`, filtered (exclude globs, size cap), checked against the
//! previous snapshot (size + mtime, or inode for renamed files), and only the changed ones
//! are streamed with `tar` straight into the engine's snapshot builder — no staging copy on
//! disk, no whole file in memory. The listing and the tar share one session of the system
//! OpenSSH client per host and run ([`collect::session_command`]), with the command line and
//! child-process handling every ssh in Ferry uses ([`ferry_ssh::SshCommand`],
//! [`ferry_ssh::SshChild`]; see [`ssh`]). Nothing is installed
//! on the hosts: a read-only account is enough. Host keys are pinned (StrictHostKeyChecking
//! against the source's own known-hosts file). One failing host never stops the others.
//!
//! Must never depend on AWS (or any cloud crate), nor on an SSH library: SSH is the system
//! `ssh` binary. It reaches the repository only through `ferry-repo`'s snapshot builder, and
//! lists the backup VM's own paths with `ferry-repo`'s local walker (`backup::local::walk`).

pub mod collect;
pub mod config;
pub mod engine;
pub mod listing;
mod local;
pub mod sink;
pub mod ssh;

pub use collect::{
    CheckError, CheckReport, CollectReport, EngineFailure, Job, SourceReport, SourceStatus, check,
    collect, jobs_of,
};
pub use config::{ConfigError, ConfigFile, SourcesConfig};
pub use engine::{BackupError, backup, backup_then};
pub use sink::{Sink, SinkError};
