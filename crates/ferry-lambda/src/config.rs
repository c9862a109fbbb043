//! The function's configuration: environment variables set at deploy time by `ferry infra`
//! (never by the caller). Read and checked once, at init; a missing or malformed variable is an
//! init error naming the variable.
//!
//! | variable | handler | meaning |
//! |---|---|---|
//! | `FERRY_HANDLER` | both | `build` or `clean`; when unset, the suffix of `AWS_LAMBDA_FUNCTION_NAME` (`…-build`, `…-clean`) |
//! | `FERRY_INSTALLATION` | both | the installation prefix; the value of the `ferry:installation` tag |
//! | `FERRY_STATE_BUCKET` | both | bucket of the session state objects (`sessions/<id>.json`) and the gate artifact |
//! | `FERRY_BACKUP_BUCKET` | build | bucket the gate writes to |
//! | `FERRY_SUBNET_ID` | build | the public subnet of the jump box (its VPC is looked up from it) |
//! | `FERRY_INSTANCE_PROFILE` | build | name of the jump-box instance profile |
//! | `FERRY_ALLOWED_SSH_CIDRS` | build | comma-separated IPv4 CIDRs allowed to reach port 22 |
//! | `FERRY_GATE_SHA256` | build | SHA-256 (hex) of the `ferry-gate` artifact the jump box must verify |
//! | `FERRY_GATE_KEY` | build | key of the gate artifact in the state bucket (default `artifacts/ferry-gate`) |
//! | `FERRY_CLEAN_FUNCTION` | build | function the jump box's expiry timer invokes (default `<installation>-clean`) |
//! | `FERRY_AMI_ID` | build | AMI to launch; when unset, the newest Amazon-owned `al2023-ami-2023.*-x86_64` image (DescribeImages) |
//! | `FERRY_INSTANCE_TYPE` | build | default `t3.micro` |
//! | `FERRY_MAX_SESSION_MINUTES` | build | longest TTL a caller may ask for (default 60, at most 720) |
//! | `FERRY_DEFAULT_SESSION_MINUTES` | build | TTL when the caller gives none (default 30, capped by the maximum) |
//! | `FERRY_MAX_SESSIONS` | build | concurrent unexpired sessions allowed, all sites together (default 1, at most 100) |
//! | `FERRY_SESSIONS_PER_DAY` | build | sessions started per UTC day, all sites together (default 4, at most 48) |
//! | `FERRY_SITE_BYTES_PER_DAY` | build | bytes granted per UTC day to one site's sessions together; each session's gate limit is the smaller of `FERRY_GATE_MAX_SESSION_BYTES` and what is left (default 4 GiB, at least 1 MiB) |
//! | `FERRY_SHUTDOWN_GRACE_MINUTES` | build | backstop power-off this long after expiry (default 5) |
//! | `FERRY_GATE_MAX_OBJECT_BYTES` | build | gate limit per object (default 256 MiB) |
//! | `FERRY_GATE_MAX_SESSION_BYTES` | build | gate limit per session (default 1 GiB); a session is granted the smaller of this and what its site has left of `FERRY_SITE_BYTES_PER_DAY` |
//! | `FERRY_PROPAGATION_SECONDS` | both | for this long after a session starts, EC2's NotFound for its instance or security group and RunInstances' refusal of the instance profile are taken as not-yet-propagated (eventual consistency) and retried; later they are believed (default 120, at most 900) |
//!
//! The region is the standard `AWS_REGION` (set by Lambda).

use ferry_contract::limits::MAX_SESSION_MINUTES_LIMIT;
use ferry_contract::{env, keys, lambda, limits};
use std::net::Ipv4Addr;

/// Which handler this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    Build,
    Clean,
}

/// Checked configuration. Build-only fields are empty for the clean handler.
#[derive(Debug, Clone)]
pub struct Config {
    pub handler: Handler,
    pub installation: String,
    pub state_bucket: String,
    pub region: String,
    pub backup_bucket: String,
    pub subnet_id: String,
    pub instance_profile: String,
    pub allowed_ssh_cidrs: Vec<String>,
    pub gate_sha256: String,
    pub gate_key: String,
    pub clean_function: String,
    pub ami_id: Option<String>,
    pub instance_type: String,
    pub max_session_minutes: u32,
    pub default_session_minutes: u32,
    pub max_sessions: u32,
    /// `FERRY_SESSIONS_PER_DAY`.
    pub sessions_per_day: u32,
    /// `FERRY_SITE_BYTES_PER_DAY`.
    pub site_bytes_per_day: u64,
    pub shutdown_grace_minutes: u32,
    pub gate_max_object_bytes: u64,
    pub gate_max_session_bytes: u64,
    /// `FERRY_PROPAGATION_SECONDS`: see the table above and docs/LAMBDA.md.
    pub propagation_seconds: u64,
}

impl Config {
    /// Read from the process environment.
    pub fn from_env() -> Result<Config, String> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Read through `get` (the environment, or a map in unit tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let var = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let handler = match var(env::HANDLER).as_deref() {
            Some("build") => Handler::Build,
            Some("clean") => Handler::Clean,
            Some(other) => {
                return Err(format!(
                    "FERRY_HANDLER is {other:?}; expected \"build\" or \"clean\""
                ));
            }
            None => match var("AWS_LAMBDA_FUNCTION_NAME") {
                Some(n) if n.ends_with(lambda::BUILD_SUFFIX) => Handler::Build,
                Some(n) if n.ends_with(lambda::CLEAN_SUFFIX) => Handler::Clean,
                n => {
                    return Err(format!(
                        "FERRY_HANDLER is not set and the function name {:?} ends neither in -build nor in -clean",
                        n.unwrap_or_default()
                    ));
                }
            },
        };
        let build = handler == Handler::Build;
        let required = |k: &str| var(k).ok_or_else(|| format!("{k} is not set"));
        let build_required = |k: &str| {
            if build {
                required(k)
            } else {
                Ok(var(k).unwrap_or_default())
            }
        };
        let number = |k: &str, default: u64, min: u64, max: u64| -> Result<u64, String> {
            match var(k) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| {
                        format!("{k} is {v:?}; expected a whole number in {min}..={max}")
                    }),
            }
        };

        let installation = required(env::INSTALLATION)?;
        if !installation
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || installation.len() > 32
        {
            return Err(format!(
                "FERRY_INSTALLATION {installation:?} must be at most 32 lowercase letters, digits or '-'"
            ));
        }
        let state_bucket = required(env::STATE_BUCKET)?;
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .ok_or("AWS_REGION is not set")?;

        let allowed_ssh_cidrs: Vec<String> = build_required(env::ALLOWED_SSH_CIDRS)?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        for c in &allowed_ssh_cidrs {
            check_cidr(c).map_err(|e| format!("FERRY_ALLOWED_SSH_CIDRS: {e}"))?;
        }
        if build && allowed_ssh_cidrs.is_empty() {
            return Err("FERRY_ALLOWED_SSH_CIDRS lists no CIDR".into());
        }
        let gate_sha256 = build_required(env::GATE_SHA256)?.to_ascii_lowercase();
        if build && (gate_sha256.len() != 64 || !gate_sha256.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err("FERRY_GATE_SHA256 is not 64 hex digits".into());
        }
        let ami_id = var(env::AMI_ID);
        if let Some(a) = &ami_id
            && !(a.starts_with("ami-")
                && a.len() <= 21
                && a[4..].bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(format!("FERRY_AMI_ID {a:?} is not an AMI id (ami-…)"));
        }
        let max_session_minutes = number(
            env::MAX_SESSION_MINUTES,
            limits::DEFAULT_MAX_SESSION_MINUTES.into(),
            1,
            MAX_SESSION_MINUTES_LIMIT as u64,
        )? as u32;
        let default_session_minutes = (number(
            env::DEFAULT_SESSION_MINUTES,
            30,
            1,
            MAX_SESSION_MINUTES_LIMIT as u64,
        )? as u32)
            .min(max_session_minutes);
        let instance_type =
            var(env::INSTANCE_TYPE).unwrap_or_else(|| limits::DEFAULT_INSTANCE_TYPE.into());
        if !instance_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return Err(format!(
                "FERRY_INSTANCE_TYPE {instance_type:?} is not an instance type"
            ));
        }
        let name_ok = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.+=,@/:".contains(&b))
        };
        let subnet_id = build_required(env::SUBNET_ID)?;
        let instance_profile = build_required(env::INSTANCE_PROFILE)?;
        let backup_bucket = build_required(env::BACKUP_BUCKET)?;
        let gate_key = var(env::GATE_KEY).unwrap_or_else(|| keys::GATE_ARTIFACT.into());
        let clean_function =
            var(env::CLEAN_FUNCTION).unwrap_or_else(|| lambda::clean_function(&installation));
        for (k, v) in [
            (env::STATE_BUCKET, &state_bucket),
            (env::BACKUP_BUCKET, &backup_bucket),
            (env::SUBNET_ID, &subnet_id),
            (env::INSTANCE_PROFILE, &instance_profile),
            (env::GATE_KEY, &gate_key),
            (env::CLEAN_FUNCTION, &clean_function),
            ("AWS_REGION", &region),
        ] {
            // These values are written into the jump box's shell script and TOML: allow only
            // characters that need no quoting anywhere.
            if !name_ok(v) {
                return Err(format!(
                    "{k} {v:?} contains characters outside [A-Za-z0-9-_.+=,@/:]"
                ));
            }
        }
        Ok(Config {
            handler,
            installation,
            state_bucket,
            region,
            backup_bucket,
            subnet_id,
            instance_profile,
            allowed_ssh_cidrs,
            gate_sha256,
            gate_key,
            clean_function,
            ami_id,
            instance_type,
            max_session_minutes,
            default_session_minutes,
            max_sessions: number(
                env::MAX_SESSIONS,
                limits::DEFAULT_MAX_SESSIONS.into(),
                1,
                limits::MAX_SESSIONS_LIMIT.into(),
            )? as u32,
            sessions_per_day: number(
                env::SESSIONS_PER_DAY,
                limits::DEFAULT_SESSIONS_PER_DAY.into(),
                1,
                limits::SESSIONS_PER_DAY_LIMIT.into(),
            )? as u32,
            site_bytes_per_day: number(
                env::SITE_BYTES_PER_DAY,
                limits::DEFAULT_SITE_BYTES_PER_DAY,
                limits::MIN_SESSION_BYTES,
                1 << 40,
            )?,
            shutdown_grace_minutes: number(
                env::SHUTDOWN_GRACE_MINUTES,
                limits::DEFAULT_SHUTDOWN_GRACE_MINUTES.into(),
                1,
                60,
            )? as u32,
            gate_max_object_bytes: number(
                env::GATE_MAX_OBJECT_BYTES,
                limits::DEFAULT_GATE_MAX_OBJECT_BYTES,
                1 << 20,
                5 << 30,
            )?,
            gate_max_session_bytes: number(
                env::GATE_MAX_SESSION_BYTES,
                limits::DEFAULT_GATE_MAX_SESSION_BYTES,
                limits::MIN_SESSION_BYTES,
                1 << 40,
            )?,
            propagation_seconds: number(env::PROPAGATION_SECONDS, 120, 0, 900)?,
        })
    }
}

/// `a.b.c.d/n` with no host bits set.
pub fn check_cidr(s: &str) -> Result<(), String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not a CIDR block (a.b.c.d/n)"))?;
    let addr: Ipv4Addr = a
        .parse()
        .map_err(|_| format!("{a:?} in {s:?} is not an IPv4 address"))?;
    let n: u32 = p
        .parse()
        .ok()
        .filter(|n| *n <= 32)
        .ok_or_else(|| format!("prefix length in {s:?} is not 0..=32"))?;
    let mask = if n == 0 { 0 } else { u32::MAX << (32 - n) };
    if u32::from(addr) & !mask != 0 {
        return Err(format!("{s:?} has host bits set"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_documents_every_variable_of_the_contract() {
        let doc = include_str!("config.rs");
        for name in ferry_contract::env::LAMBDA {
            assert!(
                doc.contains(&format!("//! | `{name}` |")),
                "{name} is not in the table"
            );
        }
    }
    use std::collections::HashMap;

    fn base() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("FERRY_HANDLER", "build"),
            ("FERRY_INSTALLATION", "ferry"),
            ("FERRY_STATE_BUCKET", "ferry-state"),
            ("FERRY_BACKUP_BUCKET", "ferry-backup"),
            ("FERRY_SUBNET_ID", "subnet-123"),
            ("FERRY_INSTANCE_PROFILE", "ferry-jumpbox"),
            ("FERRY_ALLOWED_SSH_CIDRS", "203.0.113.0/24, 198.51.100.7/32"),
            ("FERRY_GATE_SHA256", "ab".repeat(32).leak()),
            ("AWS_REGION", "us-east-1"),
        ])
    }

    fn load(m: &HashMap<&str, &str>) -> Result<Config, String> {
        Config::from_lookup(|k| m.get(k).map(|v| v.to_string()))
    }

    #[test]
    fn a_complete_build_config_loads_with_defaults() {
        let c = load(&base()).unwrap();
        assert_eq!(c.handler, Handler::Build);
        assert_eq!(
            c.allowed_ssh_cidrs,
            vec!["203.0.113.0/24", "198.51.100.7/32"]
        );
        assert_eq!(c.clean_function, "ferry-clean");
        assert_eq!(c.gate_key, "artifacts/ferry-gate");
        assert_eq!(
            (
                c.max_session_minutes,
                c.default_session_minutes,
                c.max_sessions
            ),
            (60, 30, 1)
        );
        assert_eq!(c.propagation_seconds, 120);
        assert_eq!((c.sessions_per_day, c.site_bytes_per_day), (4, 4 << 30));
    }

    #[test]
    fn clean_needs_only_the_installation_and_the_state_bucket() {
        let m = HashMap::from([
            ("AWS_LAMBDA_FUNCTION_NAME", "ferry-clean"),
            ("FERRY_INSTALLATION", "ferry"),
            ("FERRY_STATE_BUCKET", "ferry-state"),
            ("AWS_REGION", "us-east-1"),
        ]);
        assert_eq!(load(&m).unwrap().handler, Handler::Clean);
    }

    #[test]
    fn each_bad_variable_is_named() {
        for (k, v, needle) in [
            ("FERRY_HANDLER", "both", "FERRY_HANDLER"),
            ("FERRY_ALLOWED_SSH_CIDRS", "10.0.0.1/8", "host bits"),
            ("FERRY_ALLOWED_SSH_CIDRS", " ", "FERRY_ALLOWED_SSH_CIDRS"),
            ("FERRY_GATE_SHA256", "xyz", "FERRY_GATE_SHA256"),
            (
                "FERRY_MAX_SESSION_MINUTES",
                "721",
                "FERRY_MAX_SESSION_MINUTES",
            ),
            ("FERRY_AMI_ID", "ubuntu", "FERRY_AMI_ID"),
            (
                "FERRY_PROPAGATION_SECONDS",
                "901",
                "FERRY_PROPAGATION_SECONDS",
            ),
            ("FERRY_STATE_BUCKET", "a b", "FERRY_STATE_BUCKET"),
            ("FERRY_SESSIONS_PER_DAY", "0", "FERRY_SESSIONS_PER_DAY"),
            ("FERRY_SESSIONS_PER_DAY", "49", "FERRY_SESSIONS_PER_DAY"),
            (
                "FERRY_SITE_BYTES_PER_DAY",
                "1000",
                "FERRY_SITE_BYTES_PER_DAY",
            ),
            ("FERRY_SUBNET_ID", "", "FERRY_SUBNET_ID is not set"),
        ] {
            let mut m = base();
            m.insert(k, v);
            let e = load(&m).unwrap_err();
            assert!(e.contains(needle), "{k}={v:?}: {e}");
        }
    }
}
