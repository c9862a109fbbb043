//! The `[sources]` section of Ferry's config file (TOML).
//!
//! ```toml
//! [sources]
//! parallel = 4              # hosts collected at once (default 4)
//! connect_timeout = 10      # seconds, per SSH connection (default 10)
//!
//! [sources.local]           # optional: the backup VM's own paths
//! name = "backup-vm"        # default "local"
//! paths = ["/etc", "/var/log"]
//! exclude = ["*.swp"]
//! max_file_size = "512MiB"
//!
//! [[sources.host]]
//! name = "web1"
//! address = "192.168.1.10"
//! port = 22                 # default 22
//! user = "ferry-ro"
//! identity = "/etc/ferry/id_ed25519"
//! known_hosts = "/etc/ferry/known_hosts"
//! paths = ["/etc/nginx", "/var/log/nginx"]
//! exclude = ["*.gz", "/var/log/nginx/cache"]
//! max_file_size = "100MiB"  # optional; bigger files are skipped and listed
//! ```
//!
//! Unknown keys are rejected, and every validation error names the field
//! (`sources.host[1].port`, `sources.host "web1".paths[0]`).

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// A configuration problem, naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read ([`ConfigFile::load`]).
    #[error("reading config file {path}: {source}")]
    Read {
        /// The config file, as given to [`ConfigFile::load`].
        path: PathBuf,
        /// The error from reading it (missing, unreadable, not UTF-8).
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or does not fit the schema (unknown or missing key,
    /// wrong type, bad size).
    #[error("config file {path}: {message}")]
    Parse {
        /// The config file (only named in the message).
        path: PathBuf,
        /// The TOML parser's message, trailing whitespace trimmed; it names the key and line.
        message: String,
    },
    /// A parsed value fails validation ([`SourcesConfig::validate`] and the `*_spec`
    /// methods, which know no file path).
    #[error("config: {field}: {message}")]
    Invalid {
        /// The offending field, e.g. `sources.host[1].port` or `sources.host "web1".paths[0]`.
        field: String,
        /// What is wrong with it and what is allowed.
        message: String,
    },
    /// [`ConfigError::Invalid`] with the config file named ([`ConfigFile::parse`] and
    /// [`ConfigFile::load`] turn the one into the other).
    #[error("config file {path}: {field}: {message}")]
    InvalidIn {
        /// The config file the value came from.
        path: PathBuf,
        /// The offending field, as in [`ConfigError::Invalid`].
        field: String,
        /// What is wrong with it and what is allowed.
        message: String,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// A config file holding only the sources section (the CLI may embed [`SourcesConfig`] in a
/// larger file of its own).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The `[sources]` table (required; nothing else may be in the file).
    pub sources: SourcesConfig,
}

/// `[sources]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    /// How many sources are collected at once.
    #[serde(default = "default_parallel")]
    pub parallel: usize,
    /// Seconds to wait for each SSH connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: u32,
    /// The backup VM's own paths.
    #[serde(default)]
    pub local: Option<LocalSource>,
    /// Remote hosts.
    #[serde(default)]
    pub host: Vec<HostSource>,
    /// Not read from the file: the caller's wish for ssh's own debug lines in the log
    /// ([`crate::ssh::SshTarget::ssh_debug`]; `ferry -vv`).
    #[serde(skip)]
    pub ssh_debug: bool,
}

fn default_parallel() -> usize {
    4
}
fn default_connect_timeout() -> u32 {
    10
}
fn default_local_name() -> String {
    "local".to_string()
}
fn default_port() -> u16 {
    22
}

/// `[sources.local]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSource {
    /// Source name (default `local`): the top directory of this source in the snapshot;
    /// 1-64 characters of `A-Z a-z 0-9 - _ .`, unique among the sources.
    #[serde(default = "default_local_name")]
    pub name: String,
    /// Paths on the backup VM to back up: absolute, no `..`; at least one.
    pub paths: Vec<PathBuf>,
    /// Glob patterns matched against each listed absolute path (`*` also crosses `/`); a
    /// matching directory is skipped with everything below it.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Files bigger than this (bytes) are skipped and reported; `None`: no cap.
    #[serde(default)]
    pub max_file_size: Option<Size>,
}

/// One `[[sources.host]]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSource {
    /// Source name: the top directory of this host's files in the snapshot; 1-64
    /// characters of `A-Z a-z 0-9 - _ .`, unique among the sources.
    pub name: String,
    /// Host name or IP address given to ssh; no leading `-`, spaces, `@` or quotes.
    pub address: String,
    /// SSH port (default 22; 0 is refused).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Login user on the host (a read-only account is enough); no leading `-`, spaces,
    /// `@` or quotes.
    pub user: String,
    /// Private key file for this host (its contents are never read by Ferry, only by ssh).
    pub identity: PathBuf,
    /// The pinned host keys (OpenSSH known_hosts format; `[address]:port` for ports other than 22).
    pub known_hosts: PathBuf,
    /// Paths on the host to back up: absolute, no `..`; at least one. They go through the
    /// remote shell, so a path that is not UTF-8 fails the host when it is collected.
    pub paths: Vec<PathBuf>,
    /// Glob patterns matched against each listed absolute path on the host (`*` also
    /// crosses `/`); a matching directory is skipped with everything below it.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Files bigger than this (bytes) are skipped and reported; `None`: no cap.
    #[serde(default)]
    pub max_file_size: Option<Size>,
}

impl fmt::Debug for HostSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Paths only: the identity file's path is not a secret, its contents are never loaded.
        f.debug_struct("HostSource")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("identity", &self.identity)
            .field("known_hosts", &self.known_hosts)
            .field("paths", &self.paths)
            .field("exclude", &self.exclude)
            .field("max_file_size", &self.max_file_size)
            .finish()
    }
}

/// A byte size: an integer, or a string such as `"100MiB"`, `"512KiB"`, `"2G"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(
    /// The size in bytes; never 0 when read from a config file.
    pub u64,
);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a size: bytes or a string like \"100MiB\"")
        })? {
            Raw::Int(0) => Err(serde::de::Error::custom("a size must be greater than 0")),
            Raw::Int(n) => Ok(Size(n)),
            Raw::Str(s) => parse_size(&s).map(Size).map_err(serde::de::Error::custom),
        }
    }
}

pub use ferry_repo::units::parse_size;

impl ConfigFile {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<SourcesConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse and validate config text; `path` is used in messages only.
    pub fn parse(text: &str, path: &Path) -> Result<SourcesConfig, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        file.sources.validate().map_err(|e| match e {
            ConfigError::Invalid { field, message } => ConfigError::InvalidIn {
                path: path.to_path_buf(),
                field,
                message,
            },
            other => other,
        })?;
        Ok(file.sources)
    }
}

/// A validated, normalised source, as the collector uses it.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// Source name from the config: the top directory of this source in the snapshot.
    pub name: String,
    /// Absolute, normalised (no `.`/`..`, no trailing slash), deduplicated, in config order.
    pub paths: Vec<PathBuf>,
    /// The exclude globs compiled, matched against each listed absolute path.
    pub exclude: GlobSet,
    /// The exclude globs as written in the config, in config order (`exclude` is built
    /// from them).
    pub exclude_patterns: Vec<String>,
    /// Size cap in bytes: bigger files are skipped and reported; `None`: no cap.
    pub max_file_size: Option<u64>,
}

impl SourcesConfig {
    /// Check every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.parallel == 0 || self.parallel > 256 {
            return Err(invalid("sources.parallel", "must be between 1 and 256"));
        }
        if self.connect_timeout == 0 || self.connect_timeout > 3600 {
            return Err(invalid(
                "sources.connect_timeout",
                "must be between 1 and 3600 seconds",
            ));
        }
        if self.local.is_none() && self.host.is_empty() {
            return Err(invalid(
                "sources",
                "no sources: add [sources.local] or at least one [[sources.host]]",
            ));
        }
        let mut names = BTreeSet::new();
        if let Some(l) = &self.local {
            let f = "sources.local".to_string();
            check_name(&f, &l.name)?;
            names.insert(l.name.clone());
            self.local_spec_checked(l, &f)?;
        }
        for (i, h) in self.host.iter().enumerate() {
            let f = format!("sources.host[{i}]");
            check_name(&format!("{f}.name"), &h.name)?;
            let f = format!("sources.host \"{}\"", h.name);
            if !names.insert(h.name.clone()) {
                return Err(invalid(
                    format!("{f}.name"),
                    format!("source name {:?} is used twice", h.name),
                ));
            }
            check_ssh_word(&format!("{f}.address"), &h.address)?;
            check_ssh_word(&format!("{f}.user"), &h.user)?;
            ferry_ssh::host_arg(&h.address)
                .map_err(|e| invalid(format!("{f}.address"), e.to_string()))?;
            ferry_ssh::user_arg(&h.user)
                .map_err(|e| invalid(format!("{f}.user"), e.to_string()))?;
            if h.port == 0 {
                return Err(invalid(format!("{f}.port"), "must be between 1 and 65535"));
            }
            for (field, keyword, p) in [
                ("identity", "IdentityFile", &h.identity),
                ("known_hosts", "UserKnownHostsFile", &h.known_hosts),
            ] {
                if p.as_os_str().is_empty() {
                    return Err(invalid(format!("{f}.{field}"), "must not be empty"));
                }
                // A path ssh would not read as exactly this file is refused here, naming it.
                ferry_ssh::path_option(keyword, p)
                    .map_err(|e| invalid(format!("{f}.{field}"), e.to_string()))?;
            }
            spec_of(&f, &h.name, &h.paths, &h.exclude, h.max_file_size)?;
        }
        Ok(())
    }

    fn local_spec_checked(&self, l: &LocalSource, f: &str) -> Result<SourceSpec, ConfigError> {
        spec_of(f, &l.name, &l.paths, &l.exclude, l.max_file_size)
    }

    /// The local source, normalised (call after [`validate`](Self::validate)).
    pub fn local_spec(&self) -> Result<Option<SourceSpec>, ConfigError> {
        self.local
            .as_ref()
            .map(|l| self.local_spec_checked(l, "sources.local"))
            .transpose()
    }

    /// A host's source, normalised.
    pub fn host_spec(&self, h: &HostSource) -> Result<SourceSpec, ConfigError> {
        spec_of(
            &format!("sources.host \"{}\"", h.name),
            &h.name,
            &h.paths,
            &h.exclude,
            h.max_file_size,
        )
    }
}

fn check_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{name:?} is not a valid source name (1-64 characters of A-Z a-z 0-9 - _ .; it becomes the top directory of the snapshot)"
            ),
        ))
    }
}

/// Address and user go on ssh's command line: no option look-alikes, no spaces, no `@`.
fn check_ssh_word(field: &str, v: &str) -> Result<(), ConfigError> {
    if v.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if v.starts_with('-') {
        return Err(invalid(field, format!("{v:?} must not start with '-'")));
    }
    if v.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '@' || c == '\'')
    {
        return Err(invalid(
            field,
            format!("{v:?} must not contain spaces, control characters, '@' or quotes"),
        ));
    }
    Ok(())
}

fn spec_of(
    f: &str,
    name: &str,
    paths: &[PathBuf],
    exclude: &[String],
    max: Option<Size>,
) -> Result<SourceSpec, ConfigError> {
    if paths.is_empty() {
        return Err(invalid(format!("{f}.paths"), "must list at least one path"));
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let n = normalise(&format!("{f}.paths[{i}]"), p)?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    let mut b = GlobSetBuilder::new();
    for (i, g) in exclude.iter().enumerate() {
        let glob = Glob::new(g).map_err(|e| invalid(format!("{f}.exclude[{i}]"), e.to_string()))?;
        b.add(glob);
    }
    let exclude_set = b
        .build()
        .map_err(|e| invalid(format!("{f}.exclude"), e.to_string()))?;
    Ok(SourceSpec {
        name: name.to_string(),
        paths: out,
        exclude: exclude_set,
        exclude_patterns: exclude.to_vec(),
        max_file_size: max.map(|s| s.0),
    })
}

/// `p` made absolute and free of `.`; a path that cannot be is [`ConfigError::Invalid`] at
/// `field`.
fn normalise(field: &str, p: &Path) -> Result<PathBuf, ConfigError> {
    use std::os::unix::ffi::OsStrExt;
    if p.as_os_str().as_bytes().contains(&0) {
        return Err(invalid(field, "contains a NUL byte"));
    }
    if !p.is_absolute() {
        return Err(invalid(
            field,
            format!("{} is not an absolute path", p.display()),
        ));
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(invalid(
                    field,
                    format!("{} must not contain '..'", p.display()),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<SourcesConfig, ConfigError> {
        ConfigFile::parse(s, Path::new("test.toml"))
    }

    const GOOD: &str = r#"
[sources]
parallel = 2
[sources.local]
paths = ["/etc/", "/var/./log"]
[[sources.host]]
name = "web1"
address = "127.0.0.1"
port = 2222
user = "ferry-ro"
identity = "/k"
known_hosts = "/kh"
paths = ["/var/log", "/var/log"]
exclude = ["*.gz"]
max_file_size = "1MiB"
"#;

    #[test]
    fn good_config_parses_and_normalises() {
        let cfg = parse(GOOD).unwrap();
        assert_eq!(cfg.parallel, 2);
        let l = cfg.local_spec().unwrap().unwrap();
        assert_eq!(l.name, "local");
        assert_eq!(
            l.paths,
            vec![PathBuf::from("/etc"), PathBuf::from("/var/log")]
        );
        let h = cfg.host_spec(&cfg.host[0]).unwrap();
        assert_eq!(h.paths, vec![PathBuf::from("/var/log")]);
        assert_eq!(h.max_file_size, Some(1 << 20));
        assert!(h.exclude.is_match("/var/log/syslog.2.gz"));
        assert!(!h.exclude.is_match("/var/log/syslog"));
    }

    fn err(s: &str) -> String {
        parse(s).unwrap_err().to_string()
    }

    #[test]
    fn bad_input_names_the_field() {
        let e = err(&GOOD.replace("/var/./log", "/var/log/../log"));
        assert!(
            e.contains("sources.local.paths[1]") && e.contains(".."),
            "{e}"
        );
        let e = err(&GOOD.replace("port = 2222", "port = 2222\nprot = 1"));
        assert!(e.contains("unknown field `prot`"), "{e}");
        let e = err(&GOOD.replace("port = 2222", "port = 70000"));
        assert!(e.contains("port"), "{e}");
        let e = err(&GOOD.replace("\"127.0.0.1\"", "\"-oProxyCommand=x\""));
        assert!(e.contains("sources.host \"web1\".address"), "{e}");
        let e = err(&GOOD.replace("\"*.gz\"", "\"a[\""));
        assert!(e.contains("sources.host \"web1\".exclude[0]"), "{e}");
        let e = err(&GOOD.replace("\"1MiB\"", "\"1 parsec\""));
        assert!(e.contains("max_file_size") || e.contains("parsec"), "{e}");
        let e = err(&GOOD.replace("name = \"web1\"", "name = \"../x\""));
        assert!(e.contains("sources.host[0].name"), "{e}");
        let e = err(&GOOD.replace("name = \"web1\"", "name = \"local\""));
        assert!(e.contains("used twice"), "{e}");
        let e = err(&GOOD.replace("user = \"ferry-ro\"\n", ""));
        assert!(e.contains("missing field `user`"), "{e}");
        let e = err(&GOOD.replace(
            "paths = [\"/var/log\", \"/var/log\"]",
            "paths = [\"var/log\"]",
        ));
        assert!(e.contains("paths[0]") && e.contains("absolute"), "{e}");
        let e = err("[sources]\nparallel = 0\n");
        assert!(e.contains("sources.parallel"), "{e}");
        let e = err("[sources]\n");
        assert!(e.contains("no sources"), "{e}");
        let e = err("[source]\n");
        assert!(e.contains("unknown field `source`"), "{e}");
    }

    #[test]
    fn sizes_in_the_config() {
        #[derive(Deserialize)]
        struct S {
            s: Size,
        }
        let parse = |t: &str| {
            toml::from_str::<S>(t)
                .map(|v| v.s.0)
                .map_err(|e| e.to_string())
        };
        assert_eq!(parse("s = 4096"), Ok(4096));
        assert_eq!(parse("s = \"512KiB\""), Ok(512 << 10));
        assert!(parse("s = 0").unwrap_err().contains("greater than 0"));
        assert!(
            parse("s = \"12 parsecs\"")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(parse("s = true").unwrap_err().contains("expected a size"));
    }
}
