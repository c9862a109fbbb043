//! The backup VM's config file (TOML): `[sources]` (what to collect, see `ferry-collect`),
//! `[backup]` (the repository site, the put key, the spool) and `[cloud]` (how to reach the
//! functions that build and remove the jump box).
//!
//! ```toml
//! [backup]
//! site = "home"                    # the repository's prefix in the backup bucket
//! key = "/etc/ferry/put.key"       # the put key (cannot read or delete backups)
//! spool = "/var/spool/ferry"       # default: $XDG_STATE_HOME/ferry/spool
//! spool_max = "10GiB"              # the spool never grows beyond this (default 10GiB)
//! pack_size = "32MiB"              # optional
//! host = "backup-vm"               # optional: the host name recorded in snapshots
//!
//! [cloud]
//! region = "eu-west-1"
//! profile = "ferry-backup"         # optional: AWS profile (the credentials `ferry infra apply` wrote)
//! credentials_file = "/etc/ferry/aws-credentials"  # optional: that file, if not ~/.aws/credentials
//! installation = "ferry"           # the infra prefix: functions <installation>-build / -clean
//! session_minutes = 30             # jump box lifetime asked for (the function caps it)
//! connect_timeout = 180            # seconds to keep trying to reach the new jump box
//! ssh_config = "/etc/ferry/ssh_config"  # optional OpenSSH client config (also $FERRY_SSH_CONFIG)
//!
//! [metrics]                        # optional: after every run, for node_exporter's textfile collector
//! textfile = "/var/lib/node_exporter/textfile_collector/ferry.prom"
//!
//! [ping]                           # optional: healthchecks.io-style pings (/start, success, /fail)
//! url = "https://hc-ping.com/<uuid>"
//! timeout = 10                     # seconds per attempt (1–60, default 10)
//! retries = 2                      # attempts after the first (0–5, default 2)
//! # ca_file = "/etc/ferry/ping-ca.pem"   # optional: also trust these CA certificates (PEM), for
//!                                  # a self-hosted checker with a private CA
//!
//! [hooks]                          # optional: each an argv array, run without a shell
//! run-before = ["/usr/local/bin/mount-backup-disk"]   # fails: the run is skipped
//! run-after = ["/usr/local/bin/notify", "ok"]         # after a successful run
//! run-failed = ["/usr/local/bin/notify", "failed"]    # after a failed (or skipped) run
//! run-finally = ["/usr/local/bin/cleanup"]            # after every run
//! timeout = 300                    # seconds each hook may take (1–86400, default 300)
//! ```
//!
//! Unknown keys are refused; every error names the file and the field.

use ferry_collect::SourcesConfig;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// What is wrong with a config file; every message names the file or the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable).
    #[error("reading config file {}", path.display())]
    Read {
        /// The config file given.
        path: PathBuf,
        /// The I/O error reading it.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value fails its check.
    #[error("config file {}: {message}", path.display())]
    Invalid {
        /// The config file given.
        path: PathBuf,
        /// What is wrong, naming the field (`backup.site: …`) or the TOML position.
        message: String,
    },
    /// A field's value, before the file is known (`backup.site: …`).
    #[error("{0}")]
    Field(String),
}

macro_rules! bail {
    ($($t:tt)*) => {
        return Err(ConfigError::Field(format!($($t)*)))
    };
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FerryConfig {
    /// `[sources]`: what to collect (checked by `ferry-collect`).
    pub sources: SourcesConfig,
    /// `[backup]`, if present; needed for a cloud run ([`FerryConfig::cloud_run`]).
    #[serde(default)]
    pub backup: Option<BackupSection>,
    /// `[cloud]`, if present; needed for a cloud run ([`FerryConfig::cloud_run`]).
    #[serde(default)]
    pub cloud: Option<CloudSection>,
    /// `[metrics]`, if present: where the run writes its Prometheus text file.
    #[serde(default)]
    pub metrics: Option<MetricsSection>,
    /// `[ping]`, if present: the health-check URL pinged at start, success and failure.
    #[serde(default)]
    pub ping: Option<PingSection>,
    /// `[hooks]`, if present: commands run before and after the run.
    #[serde(default)]
    pub hooks: Option<HooksSection>,
}

/// `[metrics]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// `textfile`: absolute path of the `.prom` file node_exporter's textfile collector reads
    /// (written after every run through a temporary file in the same directory and a rename).
    pub textfile: PathBuf,
}

/// `[ping]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PingSection {
    /// `url`: the check's ping URL (`http://` or `https://`, no user:password); Ferry pings
    /// `<url>/start`, `<url>` and `<url>/fail` (the healthchecks.io convention).
    pub url: String,
    /// `timeout`: seconds one attempt may take (1–60, default 10).
    #[serde(default = "default_ping_timeout")]
    pub timeout: u64,
    /// `retries`: attempts after a failed first one, 1 s, 2 s, … apart (0–5, default 2).
    #[serde(default = "default_ping_retries")]
    pub retries: u32,
    /// `ca_file`: CA certificates (PEM) trusted for HTTPS pings besides the system's, for a
    /// self-hosted checker whose certificate a private CA signed.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// `[hooks]` (rustic's names): each hook is one command as an argv array, run without a
/// shell (`["sh", "-c", "…"]` when a shell is wanted), with the run's result in the
/// environment ([`ferry_contract::hooks`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HooksSection {
    /// `run-before`: runs before anything else; when it fails, the run is skipped (and
    /// counts as failed).
    #[serde(default)]
    pub run_before: Option<Vec<String>>,
    /// `run-after`: runs after a successful (or partial) run.
    #[serde(default)]
    pub run_after: Option<Vec<String>>,
    /// `run-failed`: runs after a failed, skipped or interrupted run.
    #[serde(default)]
    pub run_failed: Option<Vec<String>>,
    /// `run-finally`: runs after every run, last.
    #[serde(default)]
    pub run_finally: Option<Vec<String>>,
    /// `timeout`: seconds each hook may take before it is killed (1–86400, default 300).
    #[serde(default = "default_hook_timeout")]
    pub timeout: u64,
}

/// `[backup]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSection {
    /// `site`: the repository's prefix in the backup bucket (1–64 of `a-z0-9-_`, checked by
    /// [`BackupSection::plan`]).
    pub site: String,
    /// `key`: path of the put key file (it can put objects, never read or delete backups).
    pub key: PathBuf,
    /// `spool`: absolute spool directory; unset = [`default_spool`].
    #[serde(default)]
    pub spool: Option<PathBuf>,
    /// `spool_max`: size cap of the spool as written (`"10GiB"`); unset = [`DEFAULT_SPOOL_MAX`].
    #[serde(default)]
    pub spool_max: Option<String>,
    /// `pack_size`: target pack size as written (`"32MiB"`); unset = the engine's default.
    #[serde(default)]
    pub pack_size: Option<String>,
    /// `host`: host name recorded in snapshots; unset = the engine's default.
    #[serde(default)]
    pub host: Option<String>,
}

/// `[cloud]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudSection {
    /// `region`: AWS region of the functions (like `eu-west-1`).
    pub region: String,
    /// `profile`: AWS profile to use (the credentials `ferry infra apply` wrote); unset = the
    /// SDK's default chain.
    #[serde(default)]
    pub profile: Option<String>,
    /// `credentials_file`: AWS credentials file holding that profile, if not `~/.aws/credentials`.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// `installation`: the infra prefix naming the functions `<installation>-build` and
    /// `-clean` (default `ferry`).
    #[serde(default = "default_installation")]
    pub installation: String,
    /// `build_function`: overrides the build function's name derived from `installation`.
    #[serde(default)]
    pub build_function: Option<String>,
    /// `clean_function`: overrides the clean function's name derived from `installation`.
    #[serde(default)]
    pub clean_function: Option<String>,
    /// `session_minutes`: jump box lifetime asked for, in minutes (5–720, default 30; the
    /// function caps it).
    #[serde(default = "default_session_minutes")]
    pub session_minutes: u32,
    /// `connect_timeout`: seconds to keep trying to reach the new jump box (5–3600, default 180).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: u64,
    /// `ssh_config`: OpenSSH client config file for the connection; unset = `$FERRY_SSH_CONFIG`.
    #[serde(default)]
    pub ssh_config: Option<PathBuf>,
}

fn default_installation() -> String {
    "ferry".into()
}
fn default_session_minutes() -> u32 {
    30
}
fn default_connect_timeout() -> u64 {
    180
}
fn default_ping_timeout() -> u64 {
    10
}
fn default_ping_retries() -> u32 {
    2
}
fn default_hook_timeout() -> u64 {
    300
}

/// `[metrics]`, `[ping]` and `[hooks]` checked: what the run does around itself.
#[derive(Debug, Clone, Default)]
pub struct OpsPlan {
    /// The `.prom` file to write after every run.
    pub metrics: Option<PathBuf>,
    /// The health-check pings.
    pub ping: Option<PingPlan>,
    /// The hooks.
    pub hooks: HooksPlan,
}

/// `[ping]` checked.
#[derive(Clone, Default)]
pub struct PingPlan {
    /// The ping URL without a trailing `/` (it may hold the check's secret uuid: never logged,
    /// see [`PingPlan::shown`]).
    pub url: String,
    /// How long one attempt may take.
    pub timeout: std::time::Duration,
    /// Attempts after a failed first one.
    pub retries: u32,
    /// CA certificates (PEM) trusted besides the system's ([`PingSection::ca_file`]).
    pub ca_file: Option<PathBuf>,
}

impl PingPlan {
    /// The URL as messages show it: scheme and host only (the path is the check's secret).
    pub fn shown(&self) -> String {
        match self.url.split_once("://") {
            Some((scheme, rest)) => {
                let host = rest.split('/').next().unwrap_or("");
                format!("{scheme}://{host}/…")
            }
            None => "(ping url)".into(),
        }
    }
}

impl std::fmt::Debug for PingPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PingPlan")
            .field("url", &self.shown())
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// `[hooks]` checked.
#[derive(Debug, Clone, Default)]
pub struct HooksPlan {
    /// `run-before`.
    pub run_before: Option<Vec<String>>,
    /// `run-after`.
    pub run_after: Option<Vec<String>>,
    /// `run-failed`.
    pub run_failed: Option<Vec<String>>,
    /// `run-finally`.
    pub run_finally: Option<Vec<String>>,
    /// How long each may take.
    pub timeout: std::time::Duration,
}

impl MetricsSection {
    /// Check `textfile` (absolute, a `.prom` file name: node_exporter reads only those).
    pub fn plan(&self) -> Result<PathBuf, ConfigError> {
        let p = &self.textfile;
        if !p.is_absolute() {
            bail!("metrics.textfile: {} must be an absolute path", p.display());
        }
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.ends_with(".prom") || name.starts_with('.') || name == ".prom" {
            bail!(
                "metrics.textfile: {} must name a file ending in .prom (node_exporter's textfile \
                 collector reads only those)",
                p.display()
            );
        }
        Ok(p.clone())
    }
}

impl PingSection {
    /// Check the URL, the timeout and the retries.
    pub fn plan(&self) -> Result<PingPlan, ConfigError> {
        let url = self.url.trim_end_matches('/');
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        let Some(rest) = rest else {
            bail!("ping.url: must start with https:// or http://");
        };
        let host = rest.split('/').next().unwrap_or("");
        if host.is_empty() || host.contains('@') {
            bail!("ping.url: needs a host name (and no user:password@)");
        }
        if url.len() > 2048
            || url
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == '?' || c == '#')
        {
            bail!(
                "ping.url: must be a plain URL of at most 2048 characters, without spaces, '?' or '#'"
            );
        }
        if url.parse::<hyper::Uri>().is_err() {
            bail!("ping.url: not a valid URL");
        }
        if !(1..=60).contains(&self.timeout) {
            bail!("ping.timeout: must be between 1 and 60 seconds");
        }
        if self.retries > 5 {
            bail!("ping.retries: must be between 0 and 5");
        }
        if let Some(f) = &self.ca_file
            && let Err(e) = crate::ping::load_ca_file(f)
        {
            bail!("ping.ca_file: {e}");
        }
        Ok(PingPlan {
            url: url.to_string(),
            timeout: std::time::Duration::from_secs(self.timeout),
            retries: self.retries,
            ca_file: self.ca_file.clone(),
        })
    }
}

impl HooksSection {
    /// Check each command (a non-empty argv array; the program is an absolute path or a
    /// name looked up in `PATH`) and the timeout.
    pub fn plan(&self) -> Result<HooksPlan, ConfigError> {
        for (field, cmd) in [
            ("hooks.run-before", &self.run_before),
            ("hooks.run-after", &self.run_after),
            ("hooks.run-failed", &self.run_failed),
            ("hooks.run-finally", &self.run_finally),
        ] {
            if let Some(argv) = cmd {
                if argv.first().is_none_or(|p| p.is_empty()) {
                    bail!(
                        "{field}: an argv array whose first element is the program, like [\"/usr/local/bin/x\", \"arg\"]"
                    );
                }
                if argv.iter().any(|a| a.contains('\0')) {
                    bail!("{field}: an argument contains a NUL byte");
                }
            }
        }
        if !(1..=86400).contains(&self.timeout) {
            bail!("hooks.timeout: must be between 1 and 86400 seconds");
        }
        Ok(HooksPlan {
            run_before: self.run_before.clone(),
            run_after: self.run_after.clone(),
            run_failed: self.run_failed.clone(),
            run_finally: self.run_finally.clone(),
            timeout: std::time::Duration::from_secs(self.timeout),
        })
    }
}

/// Spool size cap when `backup.spool_max` is unset: 10 GiB, in bytes.
pub const DEFAULT_SPOOL_MAX: u64 = 10 << 30;

/// `[backup]` checked and with defaults filled in.
#[derive(Debug, Clone)]
pub struct BackupPlan {
    /// Repository prefix in the bucket: 1–64 of `a-z0-9-_`, not starting with `-`.
    pub site: String,
    /// Path of the put key file (non-empty; read when the run starts).
    pub key: PathBuf,
    /// Absolute spool directory (configured or [`default_spool`]).
    pub spool: PathBuf,
    /// Spool size cap in bytes, at least 64 MiB.
    pub spool_max: u64,
    /// Target pack size in bytes (1 MiB–1 GiB, at most half of `spool_max`); `None` = the
    /// engine's default.
    pub pack_size: Option<usize>,
    /// Host name recorded in snapshots (1–255 printable characters); `None` = engine default.
    pub host: Option<String>,
}

/// `[cloud]` checked, with the function names resolved.
#[derive(Debug, Clone)]
pub struct CloudPlan {
    /// AWS region of the functions (checked to look like `eu-west-1`).
    pub region: String,
    /// AWS profile for the Lambda client; `None` = the SDK's default chain.
    pub profile: Option<String>,
    /// AWS credentials file the profile is read from; `None` = the SDK's default files.
    pub credentials_file: Option<PathBuf>,
    /// Name of the Lambda function that builds the jump box (configured or `<installation>-build`).
    pub build_function: String,
    /// Name of the Lambda function that removes the jump box (configured or
    /// `<installation>-clean`).
    pub clean_function: String,
    /// Jump box lifetime asked of the build function, in minutes (5–720).
    pub session_minutes: u32,
    /// How long to keep trying to reach the new jump box's gate (5 s–1 h).
    pub connect_timeout: std::time::Duration,
    /// OpenSSH client config for the connection: `cloud.ssh_config`, else `$FERRY_SSH_CONFIG`,
    /// else none.
    pub ssh_config: Option<PathBuf>,
}

impl FerryConfig {
    /// Read, parse and validate `path` (the `[sources]` section as `ferry-collect` checks it).
    /// (`sources.ssh_debug` is left off: the caller decides whether ssh logs its debug lines.)
    pub fn load(path: &Path) -> Result<FerryConfig, ConfigError> {
        let text = read_config_text(path)?;
        Self::parse(&text, path)
    }

    /// Parse and validate the text of the file `path`.
    pub fn parse(text: &str, path: &Path) -> Result<FerryConfig, ConfigError> {
        let cfg: FerryConfig = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.sources.validate().map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if let Some(b) = &cfg.backup {
            b.plan().map_err(|e| in_file(path, e))?;
        }
        if let Some(c) = &cfg.cloud {
            c.plan().map_err(|e| in_file(path, e))?;
        }
        cfg.ops(path)?;
        Ok(cfg)
    }

    /// `[metrics]`, `[ping]` and `[hooks]`, checked (all optional).
    pub fn ops(&self, path: &Path) -> Result<OpsPlan, ConfigError> {
        let metrics = match &self.metrics {
            Some(m) => Some(m.plan().map_err(|e| in_file(path, e))?),
            None => None,
        };
        let ping = match &self.ping {
            Some(p) => Some(p.plan().map_err(|e| in_file(path, e))?),
            None => None,
        };
        let hooks = match &self.hooks {
            Some(h) => h.plan().map_err(|e| in_file(path, e))?,
            None => HooksPlan::default(),
        };
        Ok(OpsPlan {
            metrics,
            ping,
            hooks,
        })
    }

    /// Both sections, for a backup through the cloud; names what is missing.
    pub fn cloud_run(&self, path: &Path) -> Result<(BackupPlan, CloudPlan), ConfigError> {
        let missing = |section: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: format!(
                "a [{section}] section is needed to back up through the cloud \
                 (or give --repo and --key to write to a repository directly)"
            ),
        };
        let b = self.backup.as_ref().ok_or_else(|| missing("backup"))?;
        let c = self.cloud.as_ref().ok_or_else(|| missing("cloud"))?;
        Ok((
            b.plan().map_err(|e| in_file(path, e))?,
            c.plan().map_err(|e| in_file(path, e))?,
        ))
    }
}

fn in_file(path: &Path, e: ConfigError) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The default spool: `$XDG_STATE_HOME/ferry/spool`, else `~/.local/state/ferry/spool`.
pub fn default_spool() -> Option<PathBuf> {
    if let Some(s) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        return Some(PathBuf::from(s).join("ferry/spool"));
    }
    dirs::home_dir().map(|h| h.join(".local/state/ferry/spool"))
}

impl BackupSection {
    /// Check every field (each error names it) and fill in the defaults.
    pub fn plan(&self) -> Result<BackupPlan, ConfigError> {
        let site = self.site.as_str();
        if site.is_empty()
            || site.len() > 64
            || !site
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            || site.starts_with('-')
        {
            bail!(
                "backup.site: {site:?} must be 1 to 64 lowercase letters, digits, '-' or '_' \
                 (it is the repository's prefix in the bucket)"
            );
        }
        if self.key.as_os_str().is_empty() {
            bail!("backup.key: empty path");
        }
        let spool = match &self.spool {
            Some(p) if p.is_relative() => {
                bail!("backup.spool: {} must be an absolute path", p.display())
            }
            Some(p) => p.clone(),
            None => default_spool().ok_or_else(|| {
                ConfigError::Field(
                    "backup.spool: not set, and there is no home directory for the default".into(),
                )
            })?,
        };
        let spool_max = match &self.spool_max {
            Some(s) => ferry_repo::units::parse_size(s)
                .map_err(|e| ConfigError::Field(format!("backup.spool_max: {e}")))?,
            None => DEFAULT_SPOOL_MAX,
        };
        if spool_max < 64 << 20 {
            bail!("backup.spool_max: must be at least 64MiB (a pack is up to 32MiB by default)");
        }
        let pack_size = match &self.pack_size {
            Some(s) => {
                let n = ferry_repo::units::parse_size(s)
                    .map_err(|e| ConfigError::Field(format!("backup.pack_size: {e}")))?;
                if !(1 << 20..=1 << 30).contains(&n) {
                    bail!("backup.pack_size: must be between 1MiB and 1GiB");
                }
                if n.saturating_mul(2) > spool_max {
                    bail!("backup.pack_size: must be at most half of backup.spool_max");
                }
                Some(n as usize)
            }
            None => None,
        };
        if let Some(h) = &self.host
            && (h.is_empty() || h.len() > 255 || h.chars().any(char::is_control))
        {
            bail!("backup.host: must be 1 to 255 printable characters");
        }
        Ok(BackupPlan {
            site: site.to_string(),
            key: self.key.clone(),
            spool,
            spool_max,
            pack_size,
            host: self.host.clone(),
        })
    }
}

/// The most bytes a config file may have (1 MiB: a config is a few KiB).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The text of the config file `path`: a regular file of at most [`MAX_CONFIG_BYTES`], valid
/// UTF-8 (`/dev/zero`, a FIFO or a huge file is refused before it is read).
pub fn read_config_text(path: &Path) -> Result<String, ConfigError> {
    use ferry_repo::files::{BoundedReadError, read_bounded};
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let bytes = read_bounded(path, MAX_CONFIG_BYTES).map_err(|e| match e {
        BoundedReadError::Io(source) => ConfigError::Read {
            path: path.to_path_buf(),
            source,
        },
        other => invalid(other.to_string()),
    })?;
    String::from_utf8(bytes).map_err(|e| invalid(format!("not UTF-8: {e}")))
}

/// `v` is 1 to `max` ASCII letters, digits, '-' or '_' (a name AWS and systemd accept).
pub fn check_name(field: &str, v: &str, max: usize) -> Result<(), ConfigError> {
    if v.is_empty()
        || v.len() > max
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("{field}: {v:?} must be 1 to {max} letters, digits, '-' or '_'");
    }
    Ok(())
}

impl CloudSection {
    /// Check every field (each error names it), resolve the function names and read
    /// `$FERRY_SSH_CONFIG` when `ssh_config` is unset.
    pub fn plan(&self) -> Result<CloudPlan, ConfigError> {
        let r = self.region.as_str();
        let parts: Vec<&str> = r.split('-').collect();
        if parts.len() < 3
            || parts.iter().any(|p| p.is_empty())
            || !r
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || !parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        {
            bail!("cloud.region: {r:?} is not an AWS region name (like eu-west-1)");
        }
        if let Some(p) = &self.profile {
            check_name("cloud.profile", p, 128)?;
        }
        check_name("cloud.installation", &self.installation, 32)?;
        let build = self
            .build_function
            .clone()
            .unwrap_or_else(|| ferry_contract::lambda::build_function(&self.installation));
        let clean = self
            .clean_function
            .clone()
            .unwrap_or_else(|| ferry_contract::lambda::clean_function(&self.installation));
        check_name("cloud.build_function", &build, 64)?;
        check_name("cloud.clean_function", &clean, 64)?;
        if !(5..=720).contains(&self.session_minutes) {
            bail!("cloud.session_minutes: must be between 5 and 720");
        }
        if !(5..=3600).contains(&self.connect_timeout) {
            bail!("cloud.connect_timeout: must be between 5 and 3600 seconds");
        }
        for (field, p) in [
            ("cloud.credentials_file", &self.credentials_file),
            ("cloud.ssh_config", &self.ssh_config),
        ] {
            if let Some(p) = p
                && p.as_os_str().is_empty()
            {
                bail!("{field}: empty path");
            }
        }
        let ssh_config = self.ssh_config.clone().or_else(|| {
            std::env::var_os(ferry_contract::env::SSH_CONFIG)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        });
        Ok(CloudPlan {
            region: r.to_string(),
            profile: self.profile.clone(),
            credentials_file: self.credentials_file.clone(),
            build_function: build,
            clean_function: clean,
            session_minutes: self.session_minutes,
            connect_timeout: std::time::Duration::from_secs(self.connect_timeout),
            ssh_config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCES: &str = "[sources]\n[sources.local]\npaths = [\"/etc\"]\n";

    fn parse(extra: &str) -> Result<FerryConfig, ConfigError> {
        FerryConfig::parse(&format!("{SOURCES}{extra}"), Path::new("f.toml"))
    }

    fn err(extra: &str) -> String {
        parse(extra).unwrap_err().to_string()
    }

    #[test]
    fn full_config_is_accepted_with_defaults() {
        let c = parse(
            "[backup]\nsite = \"home\"\nkey = \"/k\"\nspool = \"/s\"\n[cloud]\nregion = \"eu-west-1\"\n",
        )
        .unwrap();
        let (b, cl) = c.cloud_run(Path::new("f.toml")).unwrap();
        assert_eq!(b.spool_max, DEFAULT_SPOOL_MAX);
        assert_eq!(cl.build_function, "ferry-build");
        assert_eq!(cl.clean_function, "ferry-clean");
        assert_eq!(cl.connect_timeout.as_secs(), 180);
    }

    /// The Debian package's example /etc/ferry/ferry.toml, with its `# ` commented lines
    /// uncommented, is a valid cloud config whose paths are the package's own.
    #[test]
    fn the_packaged_example_config_is_valid_once_uncommented() {
        use crate::schedule::packaged;
        let text = include_str!("../../../packaging/deb/ferry.toml");
        let body: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let c = FerryConfig::parse(&body, Path::new(packaged::CONFIG)).unwrap();
        let (b, cl) = c.cloud_run(Path::new(packaged::CONFIG)).unwrap();
        assert_eq!(b.spool, Path::new(packaged::SPOOL_DIR));
        assert!(b.key.starts_with(packaged::ETC_DIR), "{:?}", b.key);
        assert!(
            cl.credentials_file
                .as_deref()
                .is_some_and(|f| f.starts_with(packaged::ETC_DIR))
        );
        assert!(
            c.ops(Path::new(packaged::CONFIG))
                .unwrap()
                .metrics
                .is_some()
        );
    }

    #[test]
    fn bad_fields_are_named() {
        assert!(err("[backup]\nsite = \"Home/x\"\nkey = \"/k\"\n").contains("backup.site"));
        assert!(
            err("[backup]\nsite = \"h\"\nkey = \"/k\"\nspool = \"rel\"\n").contains("backup.spool")
        );
        assert!(
            err("[backup]\nsite = \"h\"\nkey = \"/k\"\nspool_max = \"1KiB\"\n")
                .contains("backup.spool_max")
        );
        assert!(
            err("[backup]\nsite = \"h\"\nkey = \"/k\"\nspool_max = \"lots\"\n")
                .contains("backup.spool_max")
        );
        assert!(err("[cloud]\nregion = \"mars\"\n").contains("cloud.region"));
        assert!(
            err("[cloud]\nregion = \"eu-west-1\"\nsession_minutes = 1\n")
                .contains("cloud.session_minutes")
        );
        assert!(
            err("[cloud]\nregion = \"eu-west-1\"\nbuild_function = \"a b\"\n")
                .contains("cloud.build_function")
        );
        let e = err("[cloud]\nregion = \"eu-west-1\"\nbogus = 1\n");
        assert!(e.contains("bogus") && e.contains("f.toml"), "{e}");
    }

    #[test]
    fn ops_sections_are_checked_and_named() {
        let c = parse(
            "[metrics]\ntextfile = \"/var/lib/ne/ferry.prom\"\n[ping]\nurl = \"https://hc-ping.com/abc-123/\"\n\
             [hooks]\nrun-before = [\"/bin/true\"]\nrun-finally = [\"sh\", \"-c\", \"echo x\"]\n",
        )
        .unwrap();
        let ops = c.ops(Path::new("f.toml")).unwrap();
        assert_eq!(ops.metrics.unwrap(), Path::new("/var/lib/ne/ferry.prom"));
        let ping = ops.ping.unwrap();
        assert_eq!(ping.url, "https://hc-ping.com/abc-123");
        assert_eq!(ping.timeout.as_secs(), 10);
        assert_eq!(ping.retries, 2);
        // The check's uuid is a secret: Debug and messages show the host only.
        assert!(!format!("{ping:?}").contains("abc-123"));
        assert_eq!(ping.shown(), "https://hc-ping.com/…");
        assert_eq!(ops.hooks.timeout.as_secs(), 300);
        assert_eq!(ops.hooks.run_finally.unwrap(), ["sh", "-c", "echo x"]);
        for (bad, field) in [
            ("[metrics]\ntextfile = \"rel.prom\"\n", "metrics.textfile"),
            (
                "[metrics]\ntextfile = \"/x/ferry.txt\"\n",
                "metrics.textfile",
            ),
            ("[ping]\nurl = \"ftp://h/x\"\n", "ping.url"),
            ("[ping]\nurl = \"https://u:p@h/x\"\n", "ping.url"),
            (
                "[ping]\nurl = \"https://h/x\"\ntimeout = 0\n",
                "ping.timeout",
            ),
            (
                "[ping]\nurl = \"https://h/x\"\nretries = 9\n",
                "ping.retries",
            ),
            ("[hooks]\nrun-after = []\n", "hooks.run-after"),
            ("[hooks]\nrun-after = [\"\"]\n", "hooks.run-after"),
            ("[hooks]\ntimeout = 0\n", "hooks.timeout"),
            ("[hooks]\nrun_after = [\"x\"]\n", "run_after"),
        ] {
            let e = err(bad);
            assert!(e.contains(field) && e.contains("f.toml"), "{bad}: {e}");
        }
    }

    #[test]
    fn cloud_run_names_the_missing_section() {
        let c = parse("").unwrap();
        assert!(
            c.cloud_run(Path::new("f.toml"))
                .unwrap_err()
                .to_string()
                .contains("[backup]")
        );
    }
}
