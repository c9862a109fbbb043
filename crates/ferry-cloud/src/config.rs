//! The permanent-infrastructure configuration (`ferry-infra.toml`) and its validation.
//!
//! A config is parsed and validated completely before any API call: a malformed or contradictory
//! value is refused with an error that names the field (`network.public_subnet_cidr`, …).
//! Every resource name derives from [`InfraConfig::prefix`] (see [`Names`]), so two installations
//! with different prefixes can share an account.

use ferry_contract::limits::MAX_SESSION_MINUTES_LIMIT;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A configuration value that was refused: the field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid infra config: {field}: {problem}")]
pub struct ConfigError {
    /// Dotted path of the offending field, e.g. `network.vpc_cidr`.
    pub field: String,
    /// What is wrong, in words a user can act on.
    pub problem: String,
}

fn err(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// The infra config as written in TOML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfraConfig {
    /// Prefix of every resource name (`<prefix>-lambda`, `<prefix>-vpc`, …) and the value of the
    /// `ferry:installation` tag.
    pub prefix: String,
    /// AWS region of everything (buckets included).
    pub region: String,
    /// Bucket that receives the backups (written only by the jump box, through the endpoint).
    pub backup_bucket: String,
    /// Bucket for session state and the gate artifact (Lambda role only).
    pub state_bucket: String,
    /// `[network]`: the VPC and subnet layout; defaults when the table is absent.
    #[serde(default)]
    pub network: NetworkConfig,
    /// `[jumpbox]`: who may reach the jump box and what ferry-build may launch.
    pub jumpbox: JumpboxConfig,
    /// Principals (IAM user or role ARNs) that may read, write and delete objects as the
    /// operator (restore, forget, prune, uploading the gate artifact). The identity running `ferry infra apply`
    /// is always added.
    #[serde(default)]
    pub operator_arns: Vec<String>,
    /// `[object_lock]`: S3 Object Lock on the backup bucket (off when absent, the default).
    /// Every object the gate writes is then locked for `days` by the bucket's default
    /// retention: not even the operator's credentials can delete it sooner (docs/RETENTION.md).
    #[serde(default)]
    pub object_lock: Option<ObjectLockConfig>,
}

/// S3 Object Lock of the backup bucket: the bucket's default retention
/// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectLockConfig {
    /// `governance` (an identity with `s3:BypassGovernanceRetention` can still delete early)
    /// or `compliance` (nobody can, not even the account's root user, until the date).
    pub mode: LockMode,
    /// Days each object version stays locked after it is written, 1..=[`MAX_LOCK_DAYS`].
    pub days: u32,
}

/// Object Lock retention mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Deletable early by an identity holding `s3:BypassGovernanceRetention`.
    Governance,
    /// Deletable by nobody until the retain-until date.
    Compliance,
}

impl LockMode {
    /// The S3 API's spelling (`GOVERNANCE`, `COMPLIANCE`).
    pub fn as_s3(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
}

impl std::fmt::Display for ObjectLockConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} days", self.mode.as_s3().to_lowercase(), self.days)
    }
}

/// Longest Object Lock retention ferry accepts: a year. A longer lock in compliance mode is a
/// bill nobody can stop; a backup policy that needs more is better served by the retention
/// policy (`ferry forget`).
pub const MAX_LOCK_DAYS: u32 = 365;

/// Network layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// IPv4 CIDR of the VPC, /16 to /28 inside a private range; default `10.0.0.0/16`.
    #[serde(default = "default_vpc_cidr")]
    pub vpc_cidr: String,
    /// CIDR of the public subnet (internet gateway route; ferry-build launches the jump box
    /// there), inside the VPC; default `10.0.1.0/24`.
    #[serde(default = "default_public_cidr")]
    pub public_subnet_cidr: String,
    /// CIDR of the private subnet (no internet route; its NACL admits only the jump box's
    /// subnet and S3), inside the VPC and disjoint from the public one; default `10.0.2.0/24`.
    #[serde(default = "default_private_cidr")]
    pub private_subnet_cidr: String,
    /// Availability zone of both subnets; default `<region>a`.
    #[serde(default)]
    pub availability_zone: Option<String>,
}

fn default_vpc_cidr() -> String {
    "10.0.0.0/16".into()
}
fn default_public_cidr() -> String {
    "10.0.1.0/24".into()
}
fn default_private_cidr() -> String {
    "10.0.2.0/24".into()
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            vpc_cidr: default_vpc_cidr(),
            public_subnet_cidr: default_public_cidr(),
            private_subnet_cidr: default_private_cidr(),
            availability_zone: None,
        }
    }
}

/// What ferry-build may create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JumpboxConfig {
    /// Source ranges allowed to reach the jump box on port 22 (the site's public address).
    pub allowed_ssh_cidrs: Vec<String>,
    /// EC2 instance type of the jump box (`family.size`); default `t3.micro`. `ferry infra
    /// apply` refuses one not offered in the availability zone.
    #[serde(default = "default_instance_type")]
    pub instance_type: String,
    /// Longest session a caller may ask for, in minutes.
    #[serde(default = "default_max_session_minutes")]
    pub max_session_minutes: u32,
    /// MiB one session's gate accepts (`FERRY_GATE_MAX_SESSION_BYTES`); default 1024 (1 GiB),
    /// at least 1, at most 1 TiB.
    #[serde(default = "default_session_mib")]
    pub session_mib: u64,
    /// Sessions ferry-build starts per UTC day, all sites together (`FERRY_SESSIONS_PER_DAY`);
    /// default 4, at most 48.
    #[serde(default = "default_sessions_per_day")]
    pub sessions_per_day: u32,
    /// Sessions alive at once, all sites together (`FERRY_MAX_SESSIONS`); default 1, at most
    /// 100. An installation of several sites sets it to its number of sites.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: u32,
    /// MiB ferry-build grants one site's sessions per UTC day together
    /// (`FERRY_SITE_BYTES_PER_DAY`); default 4096 (4 GiB), at least 1, at most 1 TiB.
    #[serde(default = "default_site_mib_per_day")]
    pub site_mib_per_day: u64,
}

fn default_instance_type() -> String {
    ferry_contract::limits::DEFAULT_INSTANCE_TYPE.into()
}
fn default_max_session_minutes() -> u32 {
    ferry_contract::limits::DEFAULT_MAX_SESSION_MINUTES
}
fn default_session_mib() -> u64 {
    ferry_contract::limits::DEFAULT_GATE_MAX_SESSION_BYTES >> 20
}
fn default_sessions_per_day() -> u32 {
    ferry_contract::limits::DEFAULT_SESSIONS_PER_DAY
}
fn default_max_sessions() -> u32 {
    ferry_contract::limits::DEFAULT_MAX_SESSIONS
}
fn default_site_mib_per_day() -> u64 {
    ferry_contract::limits::DEFAULT_SITE_BYTES_PER_DAY >> 20
}

/// Largest `jumpbox.site_mib_per_day` and `jumpbox.session_mib` (1 TiB).
pub const SITE_MIB_PER_DAY_LIMIT: u64 = 1 << 20;

impl JumpboxConfig {
    /// `session_mib` in bytes (`FERRY_GATE_MAX_SESSION_BYTES`).
    pub fn session_bytes(&self) -> u64 {
        self.session_mib << 20
    }

    /// `site_mib_per_day` in bytes (`FERRY_SITE_BYTES_PER_DAY`).
    pub fn site_bytes_per_day(&self) -> u64 {
        self.site_mib_per_day << 20
    }
}

/// Commercial AWS regions (partition `aws`) that ferry knows.
pub const KNOWN_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
];

/// Why a string is not an IPv4 CIDR block; each names the text as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The text has no `/`.
    #[error("{text:?} is not a CIDR block (expected a.b.c.d/n)")]
    NoSlash {
        /// The text as written.
        text: String,
    },
    /// The part before `/` is not a dotted-quad IPv4 address.
    #[error("{addr:?} in {text:?} is not an IPv4 address")]
    Address {
        /// The whole text as written.
        text: String,
        /// The part before the `/`.
        addr: String,
    },
    /// The part after `/` is not a number from 0 to 32.
    #[error("prefix length {len:?} in {text:?} is not 0..=32")]
    PrefixLength {
        /// The whole text as written.
        text: String,
        /// The part after the `/`.
        len: String,
    },
    /// Host bits set; `suggested` is the block with them cleared.
    #[error("{text:?} has host bits set (did you mean {suggested}?)")]
    HostBits {
        /// The whole text as written.
        text: String,
        /// The same block with the host bits cleared, `a.b.c.d/n`.
        suggested: String,
    },
}

/// An IPv4 CIDR block whose host bits are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address (first address of the block; host bits are zero).
    pub addr: Ipv4Addr,
    /// Number of leading network bits, 0..=32.
    pub prefix_len: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, refusing host bits set (`10.0.1.5/24`).
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        let (a, p) = s.split_once('/').ok_or_else(|| CidrError::NoSlash {
            text: s.to_string(),
        })?;
        let addr: Ipv4Addr = a.parse().map_err(|_| CidrError::Address {
            text: s.to_string(),
            addr: a.to_string(),
        })?;
        let prefix_len: u8 =
            p.parse()
                .ok()
                .filter(|n| *n <= 32)
                .ok_or_else(|| CidrError::PrefixLength {
                    text: s.to_string(),
                    len: p.to_string(),
                })?;
        let c = Cidr { addr, prefix_len };
        if u32::from(addr) & !c.mask() != 0 {
            return Err(CidrError::HostBits {
                text: s.to_string(),
                suggested: format!(
                    "{}/{prefix_len}",
                    Ipv4Addr::from(u32::from(addr) & c.mask())
                ),
            });
        }
        Ok(c)
    }

    fn mask(&self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix_len))
        }
    }

    fn first(&self) -> u32 {
        u32::from(self.addr)
    }

    fn last(&self) -> u32 {
        self.first() | !self.mask()
    }

    /// Whether `other` lies entirely inside `self`.
    pub fn contains(&self, other: &Cidr) -> bool {
        self.first() <= other.first() && other.last() <= self.last()
    }

    /// Whether the two blocks share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.first() <= other.last() && other.first() <= self.last()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Every name derived from the prefix. The one place that spells resource names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Names {
    /// The config's prefix, also the `ferry:installation` tag value.
    pub prefix: String,
    /// `Name` tag of the VPC (`<prefix>-vpc`).
    pub vpc: String,
    /// `Name` tag of the internet gateway (`<prefix>-igw`).
    pub internet_gateway: String,
    /// `Name` tag of the public subnet, where ferry-build launches the jump box (`<prefix>-public`).
    pub public_subnet: String,
    /// `Name` tag of the private subnet (`<prefix>-private`).
    pub private_subnet: String,
    /// `Name` tag of the public subnet's route table (`<prefix>-public-rt`).
    pub public_route_table: String,
    /// `Name` tag of the private subnet's route table (`<prefix>-private-rt`).
    pub private_route_table: String,
    /// `Name` tag of the S3 gateway endpoint (`<prefix>-s3-endpoint`).
    pub s3_endpoint: String,
    /// `Name` tag of the private subnet's network ACL (`<prefix>-private-nacl`).
    pub private_nacl: String,
    /// IAM role the two Lambda functions run as (`<prefix>-lambda`).
    pub lambda_role: String,
    /// Name of the Lambda role's inline policy (`<prefix>-lambda-policy`).
    pub lambda_role_policy: String,
    /// IAM role of the jump box instance (`<prefix>-jumpbox`).
    pub jumpbox_role: String,
    /// Name of the jump box role's inline policy (`<prefix>-jumpbox-policy`).
    pub jumpbox_role_policy: String,
    /// Instance profile carrying the jump box role (`<prefix>-jumpbox`, same as the role).
    pub jumpbox_instance_profile: String,
    /// IAM user of the backup VM, which may only invoke build and clean (`<prefix>-backup`).
    pub backup_user: String,
    /// Name of the backup user's inline policy (`<prefix>-backup-policy`).
    pub backup_user_policy: String,
    /// The ferry-build Lambda function (`<prefix>-build`, spelled by ferry-contract).
    pub build_function: String,
    /// The ferry-clean Lambda function (`<prefix>-clean`, spelled by ferry-contract).
    pub clean_function: String,
    /// EventBridge rule that invokes the clean function every 6 hours in sweep mode.
    pub sweep_rule: String,
}

impl Names {
    /// Derives every name from a prefix (assumed valid: see [`InfraConfig::validate`]).
    pub fn from_prefix(prefix: &str) -> Names {
        let n = |s: &str| format!("{prefix}-{s}");
        Names {
            prefix: prefix.to_string(),
            vpc: n("vpc"),
            internet_gateway: n("igw"),
            public_subnet: n("public"),
            private_subnet: n("private"),
            public_route_table: n("public-rt"),
            private_route_table: n("private-rt"),
            s3_endpoint: n("s3-endpoint"),
            private_nacl: n("private-nacl"),
            lambda_role: n("lambda"),
            lambda_role_policy: n("lambda-policy"),
            jumpbox_role: n("jumpbox"),
            jumpbox_role_policy: n("jumpbox-policy"),
            jumpbox_instance_profile: n("jumpbox"),
            backup_user: n("backup"),
            backup_user_policy: n("backup-policy"),
            build_function: ferry_contract::lambda::build_function(prefix),
            clean_function: ferry_contract::lambda::clean_function(prefix),
            sweep_rule: n("sweep"),
        }
    }
}

/// A config that passed [`InfraConfig::validate`], with its parsed CIDRs and derived names.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    /// The config as written (defaults filled in by serde).
    pub raw: InfraConfig,
    /// Resource names derived from `raw.prefix`.
    pub names: Names,
    /// Parsed `network.vpc_cidr`.
    pub vpc_cidr: Cidr,
    /// Parsed `network.public_subnet_cidr`, inside `vpc_cidr`.
    pub public_subnet_cidr: Cidr,
    /// Parsed `network.private_subnet_cidr`, inside `vpc_cidr`, disjoint from the public one.
    pub private_subnet_cidr: Cidr,
    /// `network.availability_zone`, or `<region>a` when unset.
    pub availability_zone: String,
    /// Parsed `jumpbox.allowed_ssh_cidrs`, in config order; never empty, each /8 or narrower.
    pub allowed_ssh_cidrs: Vec<Cidr>,
}

impl InfraConfig {
    /// Reads and validates a TOML config file.
    pub fn load(path: &Path) -> crate::Result<ValidConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| crate::Error::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|e| crate::Error::ConfigFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> crate::Result<ValidConfig> {
        let cfg: InfraConfig = toml::from_str(text).map_err(|e| crate::Error::ConfigToml {
            message: e.message().to_string(),
        })?;
        Ok(cfg.validate()?)
    }

    /// Checks every field and their relations; returns the first problem found.
    pub fn validate(self) -> Result<ValidConfig, ConfigError> {
        validate_prefix(&self.prefix)?;
        if !KNOWN_REGIONS.contains(&self.region.as_str()) {
            return Err(err(
                "region",
                format!(
                    "unknown AWS region {:?} (known: {})",
                    self.region,
                    KNOWN_REGIONS.join(", ")
                ),
            ));
        }
        validate_bucket_name("backup_bucket", &self.backup_bucket)?;
        validate_bucket_name("state_bucket", &self.state_bucket)?;
        if self.backup_bucket == self.state_bucket {
            return Err(err(
                "state_bucket",
                "must differ from backup_bucket (the two buckets have different policies)",
            ));
        }

        let net = &self.network;
        let vpc = Cidr::parse(&net.vpc_cidr).map_err(|p| err("network.vpc_cidr", p.to_string()))?;
        if !(16..=28).contains(&vpc.prefix_len) {
            return Err(err(
                "network.vpc_cidr",
                format!(
                    "AWS allows VPC blocks from /16 to /28, not /{}",
                    vpc.prefix_len
                ),
            ));
        }
        if !is_private_range(&vpc) {
            return Err(err(
                "network.vpc_cidr",
                format!("{vpc} is not inside a private range (10/8, 172.16/12, 192.168/16)"),
            ));
        }
        let mut subnets = Vec::new();
        for (field, text) in [
            ("network.public_subnet_cidr", &net.public_subnet_cidr),
            ("network.private_subnet_cidr", &net.private_subnet_cidr),
        ] {
            let c = Cidr::parse(text).map_err(|p| err(field, p.to_string()))?;
            if !(16..=28).contains(&c.prefix_len) {
                return Err(err(
                    field,
                    format!(
                        "AWS allows subnet blocks from /16 to /28, not /{}",
                        c.prefix_len
                    ),
                ));
            }
            if !vpc.contains(&c) {
                return Err(err(field, format!("{c} is outside the VPC block {vpc}")));
            }
            subnets.push(c);
        }
        let (public, private) = (subnets[0], subnets[1]);
        if public.overlaps(&private) {
            return Err(err(
                "network.private_subnet_cidr",
                format!("{private} overlaps the public subnet {public}"),
            ));
        }
        let az = match &net.availability_zone {
            Some(az) => {
                let ok = az.len() == self.region.len() + 1
                    && az.starts_with(&self.region)
                    && az.ends_with(|c: char| c.is_ascii_lowercase());
                if !ok {
                    return Err(err(
                        "network.availability_zone",
                        format!(
                            "{az:?} is not a zone of region {} (e.g. {}a)",
                            self.region, self.region
                        ),
                    ));
                }
                az.clone()
            }
            None => format!("{}a", self.region),
        };

        let jb = &self.jumpbox;
        if jb.allowed_ssh_cidrs.is_empty() {
            return Err(err(
                "jumpbox.allowed_ssh_cidrs",
                "is empty: list the public address range(s) of the backup VM, e.g. [\"198.51.100.7/32\"]",
            ));
        }
        let mut ssh = Vec::new();
        for (i, s) in jb.allowed_ssh_cidrs.iter().enumerate() {
            let field = format!("jumpbox.allowed_ssh_cidrs[{i}]");
            let c = Cidr::parse(s).map_err(|p| err(&field, p.to_string()))?;
            if c.prefix_len < 8 {
                return Err(err(
                    &field,
                    format!(
                        "{c} opens SSH to a large part of the internet; give the backup VM's public range (/8 or narrower)"
                    ),
                ));
            }
            ssh.push(c);
        }
        validate_instance_type(&jb.instance_type)?;
        if jb.max_session_minutes == 0 || jb.max_session_minutes > MAX_SESSION_MINUTES_LIMIT {
            return Err(err(
                "jumpbox.max_session_minutes",
                format!(
                    "{} is not within 1..={MAX_SESSION_MINUTES_LIMIT}",
                    jb.max_session_minutes
                ),
            ));
        }
        let per_day = ferry_contract::limits::SESSIONS_PER_DAY_LIMIT;
        if jb.sessions_per_day == 0 || jb.sessions_per_day > per_day {
            return Err(err(
                "jumpbox.sessions_per_day",
                format!("{} is not within 1..={per_day}", jb.sessions_per_day),
            ));
        }
        let concurrent = ferry_contract::limits::MAX_SESSIONS_LIMIT;
        if jb.max_sessions == 0 || jb.max_sessions > concurrent {
            return Err(err(
                "jumpbox.max_sessions",
                format!("{} is not within 1..={concurrent}", jb.max_sessions),
            ));
        }
        for (field, v) in [
            ("jumpbox.session_mib", jb.session_mib),
            ("jumpbox.site_mib_per_day", jb.site_mib_per_day),
        ] {
            if v == 0 || v > SITE_MIB_PER_DAY_LIMIT {
                return Err(err(
                    field,
                    format!("{v} is not within 1..={SITE_MIB_PER_DAY_LIMIT} (MiB)"),
                ));
            }
        }
        for (i, a) in self.operator_arns.iter().enumerate() {
            validate_principal_arn(&format!("operator_arns[{i}]"), a)?;
        }
        if let Some(l) = &self.object_lock
            && (l.days == 0 || l.days > MAX_LOCK_DAYS)
        {
            return Err(err(
                "object_lock.days",
                format!("{} is not within 1..={MAX_LOCK_DAYS}", l.days),
            ));
        }

        Ok(ValidConfig {
            names: Names::from_prefix(&self.prefix),
            vpc_cidr: vpc,
            public_subnet_cidr: public,
            private_subnet_cidr: private,
            availability_zone: az,
            allowed_ssh_cidrs: ssh,
            raw: self,
        })
    }
}

fn is_private_range(c: &Cidr) -> bool {
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
        .iter()
        .filter_map(|r| Cidr::parse(r).ok())
        .any(|r| r.contains(c))
}

/// Prefix: 1–20 characters, lowercase letters, digits and `-`, starting with a letter and not
/// ending with `-` (the longest derived name must fit IAM's and Lambda's 64-character limits,
/// and the prefix is also used in tags).
fn validate_prefix(p: &str) -> Result<(), ConfigError> {
    let ok_chars = p
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if p.is_empty()
        || p.len() > 20
        || !ok_chars
        || !p.starts_with(|c: char| c.is_ascii_lowercase())
        || p.ends_with('-')
    {
        return Err(err(
            "prefix",
            format!(
                "{p:?} must be 1-20 characters of a-z, 0-9 and '-', start with a letter and not end with '-'"
            ),
        ));
    }
    Ok(())
}

/// S3 general-purpose bucket naming rules, plus: no dots (a dotted name breaks TLS for
/// virtual-hosted requests, and every request here must be TLS).
pub fn validate_bucket_name(field: &str, b: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| {
        Err(err(
            field,
            format!("{b:?} is not a valid S3 bucket name: {why}"),
        ))
    };
    if b.len() < 3 || b.len() > 63 {
        return bad("must be 3-63 characters long");
    }
    if b.contains('.') {
        return bad("dots are refused (they break TLS with virtual-hosted addressing)");
    }
    if !b
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return bad("only lowercase letters, digits and '-' are allowed");
    }
    let first_last_ok =
        |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !first_last_ok(b.chars().next()) || !first_last_ok(b.chars().last()) {
        return bad("must begin and end with a letter or digit");
    }
    for p in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if b.starts_with(p) {
            return bad(&format!("the prefix {p:?} is reserved"));
        }
    }
    for s in ["-s3alias", "--ol-s3", "--x-s3", "--table-s3"] {
        if b.ends_with(s) {
            return bad(&format!("the suffix {s:?} is reserved"));
        }
    }
    Ok(())
}

fn validate_instance_type(t: &str) -> Result<(), ConfigError> {
    let ok = t.split_once('.').is_some_and(|(fam, size)| {
        !fam.is_empty()
            && !size.is_empty()
            && fam.starts_with(|c: char| c.is_ascii_lowercase())
            && fam
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && size
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    if !ok {
        return Err(err(
            "jumpbox.instance_type",
            format!("{t:?} is not an EC2 instance type (e.g. t3.micro)"),
        ));
    }
    Ok(())
}

fn validate_principal_arn(field: &str, a: &str) -> Result<(), ConfigError> {
    let parts: Vec<&str> = a.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1] == "aws"
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && (parts[5].starts_with("user/") || parts[5].starts_with("role/") || parts[5] == "root")
        && !parts[5].contains('*');
    if !ok {
        return Err(err(
            field,
            format!(
                "{a:?} is not an IAM user, role or root ARN (arn:aws:iam::123456789012:role/Admin)"
            ),
        ));
    }
    Ok(())
}

/// A complete example config, the template `ferry infra` documents.
pub const EXAMPLE_CONFIG: &str = r#"# ferry infra config: every resource name derives from `prefix`.
prefix = "ferry"
region = "eu-central-1"
backup_bucket = "ferry-backup-example-123456789012"
state_bucket = "ferry-state-example-123456789012"
# Extra principals that may read, prune and delete as the operator (the identity running apply is always one).
operator_arns = []

[network]
vpc_cidr = "10.0.0.0/16"
public_subnet_cidr = "10.0.1.0/24"
private_subnet_cidr = "10.0.2.0/24"
# availability_zone = "eu-central-1a"

[jumpbox]
# Public address range(s) of the backup VM: the only sources allowed to reach port 22.
allowed_ssh_cidrs = ["198.51.100.7/32"]
instance_type = "t3.micro"
max_session_minutes = 60
# What a stolen backup credential can start: sessions per UTC day (all sites together), MiB per
# session and MiB per UTC day per site (each session is granted its MiB up front). `ferry infra
# plan` prints the worst-case monthly bill they allow.
sessions_per_day = 4
session_mib = 1024
# Sessions alive at once, all sites together: a run beyond it is refused, naming this limit.
# Set it to the number of sites whose runs may overlap (8 sites: 8, and sessions_per_day 32).
max_sessions = 1
site_mib_per_day = 4096

# S3 Object Lock on the backup bucket (off unless this table is there): every object is locked
# for `days` after it is written, so even stolen operator credentials cannot delete a backup
# that young. Needs bucket versioning; costs storage (docs/COST.md, docs/RETENTION.md).
# [object_lock]
# mode = "governance"   # or "compliance": nobody, not even root, can delete early
# days = 30
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn with(edit: impl FnOnce(&mut toml::Table)) -> Result<ValidConfig, String> {
        let mut t: toml::Table = toml::from_str(EXAMPLE_CONFIG).unwrap();
        edit(&mut t);
        let text = toml::to_string(&t).unwrap();
        InfraConfig::parse(&text).map_err(|e| crate::error::report(&e))
    }

    fn set(t: &mut toml::Table, path: &str, v: toml::Value) {
        match path.split_once('.') {
            Some((sec, key)) => {
                t.get_mut(sec)
                    .unwrap()
                    .as_table_mut()
                    .unwrap()
                    .insert(key.into(), v);
            }
            None => {
                t.insert(path.into(), v);
            }
        }
    }

    fn refused(path: &str, v: toml::Value) -> String {
        let e = with(|t| set(t, path, v.clone())).expect_err(&format!("{path}={v} was accepted"));
        assert!(e.contains(path), "error {e:?} does not name {path}");
        e
    }

    fn s(x: &str) -> toml::Value {
        toml::Value::String(x.into())
    }

    #[test]
    fn example_config_is_valid_and_names_derive_from_prefix() {
        let c = with(|_| {}).unwrap();
        assert_eq!(c.names.lambda_role, "ferry-lambda");
        assert_eq!(c.names.backup_user, "ferry-backup");
        assert_eq!(c.availability_zone, "eu-central-1a");
        assert_eq!(c.vpc_cidr.to_string(), "10.0.0.0/16");
        let c2 = with(|t| set(t, "prefix", s("site2"))).unwrap();
        assert_eq!(c2.names.jumpbox_instance_profile, "site2-jumpbox");
        assert_eq!(c2.names.clean_function, "site2-clean");
        assert_eq!(c2.names.sweep_rule, "site2-sweep");
    }

    #[test]
    fn defaults_apply_when_network_section_is_missing() {
        let c = with(|t| {
            t.remove("network");
        })
        .unwrap();
        assert_eq!(c.public_subnet_cidr.to_string(), "10.0.1.0/24");
        assert_eq!(c.private_subnet_cidr.to_string(), "10.0.2.0/24");
    }

    #[test]
    fn overlapping_subnets_are_refused() {
        let e = refused("network.private_subnet_cidr", s("10.0.1.128/25"));
        assert!(e.contains("overlaps"), "{e}");
    }

    #[test]
    fn subnet_outside_vpc_is_refused() {
        let e = refused("network.public_subnet_cidr", s("10.1.1.0/24"));
        assert!(e.contains("outside the VPC"), "{e}");
        refused("network.private_subnet_cidr", s("192.168.2.0/24"));
    }

    #[test]
    fn malformed_cidrs_are_refused() {
        refused("network.vpc_cidr", s("10.0.0.0"));
        refused("network.vpc_cidr", s("10.0.0.0/33"));
        refused("network.vpc_cidr", s("10.0.300.0/16"));
        let e = refused("network.vpc_cidr", s("10.0.1.0/16"));
        assert!(e.contains("host bits"), "{e}");
        refused("network.vpc_cidr", s("10.0.0.0/8"));
        refused("network.vpc_cidr", s("8.8.0.0/16"));
        refused("network.public_subnet_cidr", s("10.0.1.0/30"));
    }

    #[test]
    fn object_lock_is_off_by_default_and_its_days_are_bounded() {
        assert_eq!(with(|_| {}).unwrap().raw.object_lock, None);
        let lock = |days: i64, mode: &str| {
            with(|t| {
                let mut l = toml::Table::new();
                l.insert("mode".into(), s(mode));
                l.insert("days".into(), toml::Value::Integer(days));
                t.insert("object_lock".into(), toml::Value::Table(l));
            })
        };
        let c = lock(30, "compliance").unwrap();
        assert_eq!(
            c.raw.object_lock,
            Some(ObjectLockConfig {
                mode: LockMode::Compliance,
                days: 30
            })
        );
        assert_eq!(c.raw.object_lock.unwrap().to_string(), "compliance 30 days");
        for bad in [0, 366] {
            let e = lock(bad, "governance").expect_err("accepted");
            assert!(e.contains("object_lock.days"), "{e}");
        }
        let e = lock(30, "forever").expect_err("accepted");
        assert!(e.contains("forever"), "{e}");
    }

    #[test]
    fn unknown_region_is_refused() {
        let e = refused("region", s("eu-middle-9"));
        assert!(e.contains("unknown AWS region"), "{e}");
        refused("region", s("US-EAST-1"));
    }

    #[test]
    fn zone_outside_region_is_refused() {
        refused("network.availability_zone", s("us-east-1a"));
        assert!(with(|t| set(t, "network.availability_zone", s("eu-central-1b"))).is_ok());
    }

    #[test]
    fn invalid_bucket_names_are_refused() {
        for bad in [
            "ab",
            "Ferry-Backup",
            "ferry_backup",
            "ferry.backup",
            "-ferry",
            "ferry-",
            "xn--ferry",
            "ferry-s3alias",
            &"a".repeat(64),
        ] {
            refused("backup_bucket", s(bad));
            refused("state_bucket", s(bad));
        }
        let e = refused("state_bucket", s("ferry-backup-example-123456789012"));
        assert!(e.contains("must differ"), "{e}");
    }

    #[test]
    fn bad_prefix_is_refused() {
        for bad in [
            "",
            "Ferry",
            "1ferry",
            "ferry-",
            "ferry_x",
            "a-very-long-prefix-name-x",
        ] {
            refused("prefix", s(bad));
        }
    }

    #[test]
    fn ssh_cidrs_are_checked() {
        let e =
            with(|t| set(t, "jumpbox.allowed_ssh_cidrs", toml::Value::Array(vec![]))).unwrap_err();
        assert!(e.contains("jumpbox.allowed_ssh_cidrs"), "{e}");
        let e = with(|t| {
            set(
                t,
                "jumpbox.allowed_ssh_cidrs",
                toml::Value::Array(vec![s("198.51.100.7/32"), s("0.0.0.0/0")]),
            )
        })
        .unwrap_err();
        assert!(e.contains("jumpbox.allowed_ssh_cidrs[1]"), "{e}");
        let e = with(|t| {
            set(
                t,
                "jumpbox.allowed_ssh_cidrs",
                toml::Value::Array(vec![s("nonsense")]),
            )
        })
        .unwrap_err();
        assert!(e.contains("jumpbox.allowed_ssh_cidrs[0]"), "{e}");
    }

    #[test]
    fn instance_type_and_ttl_are_checked() {
        refused("jumpbox.instance_type", s("micro"));
        refused("jumpbox.instance_type", s("t3.micro; rm"));
        refused("jumpbox.max_session_minutes", toml::Value::Integer(0));
        refused("jumpbox.max_session_minutes", toml::Value::Integer(721));
        refused("jumpbox.sessions_per_day", toml::Value::Integer(0));
        refused("jumpbox.sessions_per_day", toml::Value::Integer(49));
        refused("jumpbox.max_sessions", toml::Value::Integer(0));
        refused("jumpbox.max_sessions", toml::Value::Integer(101));
        refused("jumpbox.site_mib_per_day", toml::Value::Integer(0));
        refused("jumpbox.session_mib", toml::Value::Integer(0));
        refused("jumpbox.session_mib", toml::Value::Integer(1 << 21));
        refused("jumpbox.site_mib_per_day", toml::Value::Integer(1 << 21));
        assert!(with(|t| set(t, "jumpbox.instance_type", s("t4g.nano"))).is_ok());
    }

    #[test]
    fn operator_arns_are_checked() {
        let e = with(|t| {
            set(
                t,
                "operator_arns",
                toml::Value::Array(vec![s("arn:aws:iam::1234:user/x")]),
            )
        })
        .unwrap_err();
        assert!(e.contains("operator_arns[0]"), "{e}");
        assert!(
            with(|t| set(
                t,
                "operator_arns",
                toml::Value::Array(vec![s("arn:aws:iam::123456789012:role/Admin")])
            ))
            .is_ok()
        );
    }

    #[test]
    fn unknown_fields_and_bad_toml_are_refused() {
        let e = with(|t| set(t, "jumpbox.instance_typo", s("t3.micro"))).unwrap_err();
        assert!(e.contains("instance_typo"), "{e}");
        let e = InfraConfig::parse("prefix = ").map(|_| ()).unwrap_err();
        assert!(crate::error::report(&e).contains("malformed TOML"));
    }
}
