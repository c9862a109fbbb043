//! Opening a repository's storage from the `--repo` value. Every command goes through
//! [`open_storage`], so a new backend is one more branch here: a directory (or `file://PATH`),
//! `gate+ssh://user@host:port/SITE` (upload through the jump box's gate, `ferry-remote`) or
//! `s3://bucket/prefix` (operator reads, `ferry-s3`). It stays in the binary: no library may
//! depend on both (ferry-run never on ferry-s3, ferry-remote never on AWS, ferry-s3 never on SSH).

use anyhow::{Context, bail};
use ferry_repo::storage::{LocalDir, Storage};
use std::path::PathBuf;

/// Options that only remote backends use (`--identity`, `--host-key`).
#[derive(Debug, Clone, Default)]
pub struct RemoteOptions {
    /// SSH private key used to reach the gate (`--identity KEY`).
    pub identity: Option<PathBuf>,
    /// The gate's pinned public host key (`--host-key HOSTKEY`).
    pub host_key: Option<PathBuf>,
}

/// The storage named by `spec`.
pub fn open_storage(spec: &str, remote: &RemoteOptions) -> anyhow::Result<Box<dyn Storage>> {
    if spec.is_empty() {
        bail!("the repository location is empty (give --repo DIR or set FERRY_REPO)");
    }
    // --- helper B (issue 3): gate+ssh:// and s3:// backends ---
    if spec.starts_with("gate+ssh://") {
        let identity = remote.identity.as_ref().with_context(|| {
            format!("repository {spec}: --identity KEY is required for gate+ssh://")
        })?;
        let host_key = remote
            .host_key
            .as_ref()
            .with_context(|| format!("repository {spec}: --host-key FILE is required for gate+ssh:// (the gate's pinned public host key)"))?;
        let mut opts = ferry_remote::GateOptions::new(identity, host_key);
        opts.ssh_debug = crate::output::ssh_debug();
        return Ok(Box::new(ferry_remote::GateStorage::connect(spec, &opts)?));
    }
    if spec.starts_with("s3://") {
        return Ok(Box::new(ferry_s3::S3Storage::open(spec)?));
    }
    // --- end helper B ---
    if let Some((scheme, _)) = spec.split_once("://")
        && scheme != "file"
    {
        bail!(
            "repository {spec:?}: unsupported scheme {scheme:?} (this build reads local directories)"
        );
    }
    let path = PathBuf::from(spec.strip_prefix("file://").unwrap_or(spec));
    if let Some(p) = remote.identity.as_ref().or(remote.host_key.as_ref()) {
        tracing::warn!("{} is ignored: {spec} is a local directory", p.display());
    }
    // A missing directory is fine here: the first backup creates it, and the read
    // commands report "no repository" when they find no `config`.
    match std::fs::metadata(&path) {
        Ok(meta) if !meta.is_dir() => bail!("repository {}: not a directory", path.display()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("repository {}: cannot open", path.display()));
        }
    }
    Ok(Box::new(LocalDir::new(path)))
}
