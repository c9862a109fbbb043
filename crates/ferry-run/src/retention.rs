//! The operator's retention file (TOML): one `[retention.SITE]` section per repository, so a
//! monthly `ferry forget --prune -c FILE` applies every site's policy in one command.
//!
//! ```toml
//! [retention.home]
//! repo = "s3://ferry-backups-1a2b/home"   # or a directory
//! key = "/root/ferry/master.key"           # the master key (never on the backup VM)
//! keep_daily = 7
//! keep_weekly = 5
//! keep_monthly = 12
//! keep_yearly = 3
//! # keep_last = 3, keep_hourly = 24, keep_within = "30d", keep_tag = ["keep"]
//! # group_by = "host,paths"              # restic's default
//! # max_unused = "5%"                    # prune: repack packs with more unused
//! # keep_delete = "24h"                  # prune: grace period of trash/ (at least 13h)
//! ```
//!
//! Unknown keys are refused; every error names the file and the site.

use crate::config::ConfigError;
use ferry_repo::retention::policy::{GroupBy, Keep, KeepPolicy, KeepWithin, TagList};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The whole file.
#[derive(Debug, Clone, Default)]
pub struct RetentionConfig {
    /// Site name → its repository, key and policy.
    pub sites: BTreeMap<String, SiteRetention>,
}

/// One `[retention.SITE]`, checked.
#[derive(Debug, Clone)]
pub struct SiteRetention {
    /// The repository (directory or `s3://BUCKET/SITE`).
    pub repo: String,
    /// The master key file.
    pub key: PathBuf,
    /// The keep rules.
    pub policy: KeepPolicy,
    /// The grouping (default host,paths).
    pub group_by: GroupBy,
    /// Prune's `--max-unused`, as written.
    pub max_unused: Option<String>,
    /// Prune's `--keep-delete`, as written.
    pub keep_delete: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    retention: BTreeMap<String, Section>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    repo: String,
    key: PathBuf,
    keep_last: Option<Keep>,
    keep_hourly: Option<Keep>,
    keep_daily: Option<Keep>,
    keep_weekly: Option<Keep>,
    keep_monthly: Option<Keep>,
    keep_yearly: Option<Keep>,
    keep_within: Option<KeepWithin>,
    #[serde(default)]
    keep_tag: Vec<String>,
    group_by: Option<String>,
    max_unused: Option<String>,
    keep_delete: Option<String>,
}

impl RetentionConfig {
    /// Read and check the file at `path`.
    pub fn load(path: &Path) -> Result<RetentionConfig, ConfigError> {
        let text = crate::config::read_config_text(path)?;
        Self::parse(&text, path)
    }

    /// Parse `text` (read from `path`, named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<RetentionConfig, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let file: File = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut sites = BTreeMap::new();
        for (site, s) in file.retention {
            crate::config::check_name(&format!("retention.{site}"), &site, 64)
                .map_err(|e| invalid(e.to_string()))?;
            let mut tags = Vec::new();
            for t in &s.keep_tag {
                tags.push(
                    t.parse::<TagList>()
                        .map_err(|e| invalid(format!("retention.{site}.keep_tag: {e}")))?,
                );
            }
            let group_by = match &s.group_by {
                Some(g) => g
                    .parse::<GroupBy>()
                    .map_err(|e| invalid(format!("retention.{site}.group_by: {e}")))?,
                None => GroupBy::default(),
            };
            let policy = KeepPolicy {
                last: s.keep_last,
                hourly: s.keep_hourly,
                daily: s.keep_daily,
                weekly: s.keep_weekly,
                monthly: s.keep_monthly,
                yearly: s.keep_yearly,
                within: s.keep_within,
                tags,
            };
            if policy.is_empty() {
                return Err(invalid(format!(
                    "retention.{site}: no keep_* rule: such a policy would forget every snapshot"
                )));
            }
            sites.insert(
                site,
                SiteRetention {
                    repo: s.repo,
                    key: s.key,
                    policy,
                    group_by,
                    max_unused: s.max_unused,
                    keep_delete: s.keep_delete,
                },
            );
        }
        Ok(RetentionConfig { sites })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn config_files_that_are_not_small_regular_files_are_refused_before_reading() {
        for (path, needle) in [
            ("/dev/zero", "character device, not a regular file"),
            ("/", "directory, not a regular file"),
        ] {
            let e = RetentionConfig::load(Path::new(path))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle) && e.contains(path), "{e}");
            let e = crate::FerryConfig::load(Path::new(path))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{e}");
        }
        let d = tempfile::tempdir().unwrap();
        let big = d.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; 2 * 1024 * 1024]).unwrap();
        let e = RetentionConfig::load(&big).unwrap_err().to_string();
        assert!(e.contains("more than the 1048576 accepted"), "{e}");
    }

    #[test]
    fn parses_sites_and_refuses_mistakes() {
        let p = Path::new("/etc/ferry/retention.toml");
        let c = RetentionConfig::parse(
            "[retention.home]\nrepo = \"s3://b/home\"\nkey = \"/k\"\nkeep_daily = 7\nkeep_weekly = 4\nkeep_within = \"30d\"\nkeep_tag = [\"keep\"]\n",
            p,
        )
        .unwrap();
        let s = &c.sites["home"];
        assert_eq!(s.policy.daily, Some(Keep::N(7)));
        assert_eq!(s.policy.tags.len(), 1);
        assert_eq!(s.group_by, GroupBy::default());
        for (text, needle) in [
            (
                "[retention.home]\nrepo = \"r\"\nkey = \"/k\"\n",
                "no keep_* rule",
            ),
            (
                "[retention.home]\nrepo = \"r\"\nkey = \"/k\"\nkeep_daly = 3\n",
                "keep_daly",
            ),
            (
                "[retention.home]\nrepo = \"r\"\nkey = \"/k\"\nkeep_daily = -3\n",
                "-3",
            ),
            (
                "[retention.home]\nrepo = \"r\"\nkey = \"/k\"\nkeep_daily = 1\ngroup_by = \"hots\"\n",
                "hots",
            ),
            (
                "[retention.\"a b\"]\nrepo = \"r\"\nkey = \"/k\"\nkeep_daily = 1\n",
                "retention.a b",
            ),
        ] {
            let e = RetentionConfig::parse(text, p).unwrap_err().to_string();
            assert!(
                e.contains(needle) && e.contains("retention.toml"),
                "{text}: {e}"
            );
        }
    }
}
