//! `ferry infra plan|apply|destroy|show|verify`: the permanent infrastructure, created idempotently with
//! the AWS SDK from one validated config.
//!
//! No local state: every resource is found by its tags (`ferry:installation = <prefix>` plus its
//! `Name`) or by its derived name (IAM, buckets). Plan and apply run the *same* code: each
//! resource is observed, compared with what the config asks for, and recorded as create / update
//! (with the differing fields) / unchanged; in apply mode the difference is then made so. An
//! interrupted apply therefore resumes where it stopped. Every API failure names the resource.
//!
//! Order: the instance type's offering in the zone (a check, `offering`), network, IAM, buckets,
//! the two artifacts (`bootstrap` zipped, `ferry-gate`) in the state bucket, the functions' log
//! groups, the Lambda functions and the clean function's permission for the sweep rule, the
//! six-hourly sweep rule; destroy runs in reverse. The artifacts are read (and the zip made, and
//! its size checked against Lambda's limit) before any API call: apply refuses to start without
//! them, plan shows them as unknown.
//!
//! Not here: building the binaries for Amazon Linux 2023 (`scripts/build-al2023.sh`).

pub mod artifacts;
mod buckets;
mod iam;
pub use iam::write_0600;
pub mod lambda;
mod logs;
mod network;
mod offering;
pub mod schedule;
mod verify;
pub use verify::{CaseReport, Report};

use std::fmt;
use std::path::PathBuf;

use crate::error::{AwsContext, Error, Result};
use clap::{Args, Subcommand};

use crate::config::{InfraConfig, ValidConfig};
use crate::policy::{Caller, PolicyInputs, TAG_INSTALLATION, TAG_MANAGED, is_role_named};
use artifacts::Artifacts;

/// `ferry infra …`
#[derive(Debug, Args)]
pub struct InfraArgs {
    /// Infra config file (TOML; `ferry infra example-config` prints a template).
    #[arg(long, short = 'c', default_value = "ferry-infra.toml", global = true)]
    pub config: PathBuf,
    /// Which `ferry infra` subcommand to run.
    #[command(subcommand)]
    pub command: InfraCommand,
}

/// The `ferry infra` subcommands.
#[derive(Debug, Subcommand)]
pub enum InfraCommand {
    /// Show what apply would create, update (with the differing fields) or keep.
    Plan {
        /// Directory holding `bootstrap` and `ferry-gate` (default: $FERRY_ARTIFACTS, else the
        /// directory of this executable). Without them the artifacts show as unknown.
        #[arg(long, value_name = "DIR", env = "FERRY_ARTIFACTS")]
        artifacts: Option<PathBuf>,
    },
    /// Show the plan, then make it so.
    Apply {
        /// Where the backup VM's credentials are written (0600) when its access key is created.
        #[arg(long, default_value = "ferry-backup.credentials")]
        credentials_out: PathBuf,
        /// Directory holding `bootstrap` and `ferry-gate` built for Amazon Linux 2023
        /// (scripts/build-al2023.sh; default: $FERRY_ARTIFACTS, else the directory of this
        /// executable). Both must exist.
        #[arg(long, value_name = "DIR", env = "FERRY_ARTIFACTS")]
        artifacts: Option<PathBuf>,
    },
    /// Remove everything, in reverse order.
    Destroy {
        /// Also empty and delete the backup bucket; must repeat the bucket's name.
        #[arg(long, value_name = "BUCKET")]
        delete_backup_bucket: Option<String>,
    },
    /// Print what exists, with IDs, and the backup VM's next steps.
    Show {
        /// As for plan: where `bootstrap` and `ferry-gate` are, to compare the deployed code.
        #[arg(long, value_name = "DIR", env = "FERRY_ARTIFACTS")]
        artifacts: Option<PathBuf>,
    },
    /// Check the live account's policies against the authorization matrix of docs/SECURITY.md
    /// with IAM's policy simulator (or, where it does not answer, Ferry's local evaluator).
    /// Exits 1 on any case that differs.
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a commented example config.
    ExampleConfig,
}

/// Entry point for the `ferry` CLI: everything the command reports goes to `out` (the CLI
/// passes stdout). Returns the process exit code.
pub fn infra_main(args: InfraArgs, out: &mut dyn std::io::Write) -> Result<i32> {
    if let InfraCommand::ExampleConfig = args.command {
        write!(out, "{}", crate::config::EXAMPLE_CONFIG)?;
        return Ok(0);
    }
    // Validate before any API call.
    let cfg = InfraConfig::load(&args.config)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Runtime { source })?;
    rt.block_on(run(&cfg, args.command, out))
}

/// Runs one command against the account in the SDK's standard configuration.
pub async fn run(
    cfg: &ValidConfig,
    cmd: InfraCommand,
    out: &mut dyn std::io::Write,
) -> Result<i32> {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(cfg.raw.region.clone()))
        .load()
        .await;
    run_with(cfg, cmd, out, &sdk).await
}

/// [`run`] with an explicit SDK configuration (credentials, endpoint) instead of the
/// environment's.
pub async fn run_with(
    cfg: &ValidConfig,
    cmd: InfraCommand,
    out: &mut dyn std::io::Write,
    sdk: &aws_config::SdkConfig,
) -> Result<i32> {
    // Artifacts are read before any API call: apply needs them, plan and show only compare.
    let (arts, problem) = match &cmd {
        InfraCommand::Apply { artifacts, .. } => {
            let dir = artifacts::resolve_dir(artifacts.as_deref())?;
            let a = Artifacts::load(&dir).map_err(|e| {
                e.context(format!("apply needs both artifacts in {}", dir.display()))
            })?;
            (Some(a), None)
        }
        InfraCommand::Plan { artifacts } | InfraCommand::Show { artifacts } => {
            match artifacts::resolve_dir(artifacts.as_deref()).and_then(|d| Artifacts::load(&d)) {
                Ok(a) => (Some(a), None),
                Err(e) => (None, Some(crate::error::report(&e))),
            }
        }
        _ => (None, None),
    };
    let mut ctx = Ctx::new(cfg.clone(), sdk).await?;
    ctx.artifacts = arts;
    ctx.artifacts_problem = problem;
    match cmd {
        InfraCommand::Plan { .. } => {
            ctx.mode = Mode::Plan;
            ctx.converge().await?;
            ctx.print_plan(out)?;
            Ok(0)
        }
        InfraCommand::Apply {
            credentials_out, ..
        } => {
            ctx.mode = Mode::Plan;
            ctx.converge().await?;
            ctx.print_plan(out)?;
            if ctx.plan.iter().all(|i| i.change == Change::Unchanged) {
                writeln!(out, "Nothing to do: the infrastructure matches the config.")?;
                return Ok(0);
            }
            ctx.plan.clear();
            ctx.warnings.clear();
            ctx.mode = Mode::Apply;
            ctx.credentials_out = Some(credentials_out);
            ctx.converge().await?;
            let changed = ctx
                .plan
                .iter()
                .filter(|i| i.change != Change::Unchanged)
                .count();
            writeln!(out, "Applied: {changed} change(s).")?;
            for note in &ctx.notes {
                writeln!(out, "{note}")?;
            }
            Ok(0)
        }
        InfraCommand::Destroy {
            delete_backup_bucket,
        } => {
            ctx.destroy(delete_backup_bucket.as_deref(), out).await?;
            Ok(0)
        }
        InfraCommand::Show { .. } => {
            ctx.mode = Mode::Plan;
            ctx.converge().await?;
            ctx.print_show(out)?;
            Ok(0)
        }
        InfraCommand::Verify { json } => verify::run(&mut ctx, json, out).await,
        InfraCommand::ExampleConfig => {
            write!(out, "{}", crate::config::EXAMPLE_CONFIG)?;
            Ok(0)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Plan,
    Apply,
}

/// What apply does (or did) to one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The resource does not exist (apply creates it).
    Create,
    /// The fields that differ, as `field: have -> want`.
    Update(Vec<String>),
    /// The resource exists and matches the config.
    Unchanged,
    /// Not compared (plan without the artifacts), and why.
    Unknown(String),
}

/// One line of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanItem {
    /// Resource kind as printed (`vpc`, `iam-role`, `s3-bucket`, `lambda-function`, `artifact`).
    pub kind: &'static str,
    /// Resource name: the `Name` tag, IAM or bucket name, or the artifact's object key.
    pub name: String,
    /// AWS id when one exists (`vpc-…`), or a short digest for an artifact; `-` when printed
    /// empty.
    pub id: Option<String>,
    /// What apply does (or did) to it.
    pub change: Change,
}

impl fmt::Display for PlanItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (sign, what) = match &self.change {
            Change::Create => ("+", "create".to_string()),
            Change::Update(fields) => ("~", format!("update: {}", fields.join("; "))),
            Change::Unchanged => ("=", "unchanged".to_string()),
            Change::Unknown(why) => ("?", format!("unknown: {why}")),
        };
        write!(
            f,
            "{sign} {:<18} {:<36} {:<24} {what}",
            self.kind,
            self.name,
            self.id.as_deref().unwrap_or("-")
        )
    }
}

/// The operator that the bucket policies name (they deny reads, deletes and — but for the jump
/// box's write-once puts — writes of backups to anyone else): the caller of `sts:GetCallerIdentity` as its `aws:PrincipalArn`. For an assumed-role
/// session that is the role's ARN with its path — IAM Identity Center roles live under
/// `/aws-reserved/sso.amazonaws.com/…/`, and the session ARN does not show it — so it is read
/// with `iam:GetRole`. When it cannot be resolved, the config's `operator_arns` must name the
/// operator (for a role, its full ARN); otherwise apply would lock the operator out.
async fn resolve_operator(
    iam: &aws_sdk_iam::Client,
    caller_arn: &str,
    cfg: &ValidConfig,
) -> Result<(Option<String>, String)> {
    let listed = &cfg.raw.operator_arns;
    match Caller::parse(caller_arn) {
        Some(Caller::Principal(arn)) => Ok((
            Some(arn.clone()),
            format!("Operator (may read, prune and delete backups): {arn} (the caller)."),
        )),
        Some(Caller::AssumedRole {
            partition,
            account,
            role_name,
        }) => match iam.get_role().role_name(&role_name).send().await {
            Ok(r) => {
                let arn = r.role().map(|r| r.arn().to_string()).unwrap_or_default();
                let expected = format!("arn:{partition}:iam::{account}:role/");
                if !arn.starts_with(&expected) || !is_role_named(&arn, &role_name) {
                    return Err(Error::Operator {
                        caller: caller_arn.to_string(),
                        why: format!(
                            "iam:GetRole {role_name:?} answered {arn:?}, which is not the role of \
                             the caller {caller_arn}"
                        ),
                    });
                }
                Ok((
                    Some(arn.clone()),
                    format!(
                        "Operator (may read, prune and delete backups): {arn} (the role of the caller's \
                         session {caller_arn})."
                    ),
                ))
            }
            Err(e) => {
                let why = aws_sdk_iam::error::DisplayErrorContext(&e);
                if listed.iter().any(|a| is_role_named(a, &role_name)) {
                    Ok((
                        None,
                        format!(
                            "Operator (may read, prune and delete backups): operator_arns only; the \
                             caller's role {role_name:?} could not be read (iam:GetRole: {why}), \
                             operator_arns names it."
                        ),
                    ))
                } else {
                    Err(Error::Operator {
                        caller: caller_arn.to_string(),
                        why: format!(
                            "the caller {caller_arn} is a session of role {role_name:?}, whose ARN \
                             (with its path, e.g. role/aws-reserved/sso.amazonaws.com/… for IAM \
                             Identity Center) could not be read with iam:GetRole: {why}. The bucket \
                             policies would lock that role out of the backups: allow iam:GetRole on \
                             it, or put its full role ARN into operator_arns in the infra config"
                        ),
                    })
                }
            }
        },
        None if !listed.is_empty() => Ok((
            None,
            format!(
                "Operator (may read, prune and delete backups): operator_arns only (the caller \
                 {caller_arn} is no IAM user, role or root)."
            ),
        )),
        None => Err(Error::Operator {
            caller: caller_arn.to_string(),
            why: format!(
                "the caller {caller_arn} is no IAM user, role, root or assumed-role session, so \
                 it cannot be the operator the bucket policies let read backups: put the \
                 operator's IAM ARN into operator_arns in the infra config"
            ),
        }),
    }
}

/// Placeholder IDs used only while planning resources whose parents do not exist yet.
pub(crate) const PLANNED_VPC: &str = "vpc-00000000000000000";
pub(crate) const PLANNED_VPCE: &str = "vpce-00000000000000000";

pub(crate) struct Ctx {
    pub(crate) cfg: ValidConfig,
    pub(crate) ec2: aws_sdk_ec2::Client,
    pub(crate) iam: aws_sdk_iam::Client,
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) lambda: aws_sdk_lambda::Client,
    pub(crate) events: aws_sdk_eventbridge::Client,
    pub(crate) logs: aws_sdk_cloudwatchlogs::Client,
    pub(crate) account_id: String,
    /// The caller as an IAM principal ARN (`aws:PrincipalArn`: an assumed role's real ARN,
    /// path included), or `None` when only `operator_arns` name the operator.
    pub(crate) operator_arn: Option<String>,
    /// How the operator was found (printed with the plan).
    pub(crate) operator_note: String,
    pub(crate) mode: Mode,
    pub(crate) plan: Vec<PlanItem>,
    pub(crate) notes: Vec<String>,
    pub(crate) warnings: Vec<String>,
    pub(crate) credentials_out: Option<PathBuf>,
    // IDs found or created during converge.
    pub(crate) vpc_id: Option<String>,
    pub(crate) igw_id: Option<String>,
    pub(crate) public_subnet_id: Option<String>,
    pub(crate) private_subnet_id: Option<String>,
    pub(crate) public_rt_id: Option<String>,
    pub(crate) private_rt_id: Option<String>,
    pub(crate) vpce_id: Option<String>,
    /// The binaries to deploy (always present in apply mode).
    pub(crate) artifacts: Option<Artifacts>,
    /// Why there are no artifacts (plan/show).
    pub(crate) artifacts_problem: Option<String>,
    pub(crate) state_bucket_exists: bool,
    /// The state bucket's policy, put after the artifacts (see `buckets::put_deferred_policy`).
    pub(crate) deferred_state_policy: Option<serde_json::Value>,
}

impl Ctx {
    async fn new(cfg: ValidConfig, sdk: &aws_config::SdkConfig) -> Result<Ctx> {
        let sts = aws_sdk_sts::Client::new(sdk);
        let me = sts.get_caller_identity().send().await.aws(
            "sts:GetCallerIdentity",
            || "(are AWS credentials configured?)",
        )?;
        let account_id = me.account().unwrap_or_default().to_string();
        let caller_arn = me.arn().unwrap_or_default().to_string();
        let iam = aws_sdk_iam::Client::new(sdk);
        let (operator_arn, operator_note) = resolve_operator(&iam, &caller_arn, &cfg).await?;
        Ok(Ctx {
            cfg,
            ec2: aws_sdk_ec2::Client::new(sdk),
            iam,
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(sdk)
                    .force_path_style(true)
                    .build(),
            ),
            lambda: aws_sdk_lambda::Client::new(sdk),
            events: aws_sdk_eventbridge::Client::new(sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(sdk),
            account_id,
            operator_arn,
            operator_note,
            mode: Mode::Plan,
            plan: Vec::new(),
            notes: Vec::new(),
            warnings: Vec::new(),
            credentials_out: None,
            vpc_id: None,
            igw_id: None,
            public_subnet_id: None,
            private_subnet_id: None,
            public_rt_id: None,
            private_rt_id: None,
            vpce_id: None,
            artifacts: None,
            artifacts_problem: None,
            state_bucket_exists: false,
            deferred_state_policy: None,
        })
    }

    pub(crate) fn apply(&self) -> bool {
        self.mode == Mode::Apply
    }

    pub(crate) fn record(
        &mut self,
        kind: &'static str,
        name: &str,
        id: Option<&str>,
        change: Change,
    ) {
        self.plan.push(PlanItem {
            kind,
            name: name.to_string(),
            id: id.map(str::to_string),
            change,
        });
    }

    /// The policy inputs as far as they are known (placeholders while planning a fresh install).
    pub(crate) fn policy_inputs(&self) -> Result<PolicyInputs> {
        let p = PolicyInputs::new(
            &self.cfg,
            &self.account_id,
            self.vpc_id.as_deref().unwrap_or(PLANNED_VPC),
            self.vpce_id.as_deref().unwrap_or(PLANNED_VPCE),
            self.operator_arn.as_deref(),
        )?;
        Ok(p)
    }

    /// The tags every managed resource carries.
    pub(crate) fn tags(&self, name: &str) -> Vec<(String, String)> {
        vec![
            ("Name".into(), name.into()),
            (TAG_MANAGED.into(), "true".into()),
            (TAG_INSTALLATION.into(), self.cfg.names.prefix.clone()),
        ]
    }

    /// Observe everything and (in apply mode) make it match, in dependency order.
    async fn converge(&mut self) -> Result<()> {
        offering::check(self).await?;
        network::converge(self).await?;
        iam::converge(self).await?;
        buckets::converge(self).await?;
        artifacts::converge(self).await?;
        buckets::put_deferred_policy(self).await?;
        logs::converge(self).await?;
        lambda::converge(self).await?;
        schedule::converge(self).await?;
        Ok(())
    }

    async fn destroy(
        &mut self,
        delete_backup_bucket: Option<&str>,
        out: &mut dyn std::io::Write,
    ) -> Result<()> {
        if let Some(b) = delete_backup_bucket
            && b != self.cfg.raw.backup_bucket
        {
            return Err(Error::Refused {
                why: format!(
                    "--delete-backup-bucket {b:?} does not name this installation's backup bucket {:?}",
                    self.cfg.raw.backup_bucket
                ),
            });
        }
        // Observe first so that IDs are known.
        self.mode = Mode::Plan;
        self.converge().await?;
        buckets::check_destroy(self, delete_backup_bucket.is_some()).await?;
        schedule::destroy(self, out).await?;
        lambda::destroy(self, out).await?;
        logs::destroy(self, out).await?;
        let kept = buckets::destroy(self, delete_backup_bucket.is_some(), out).await?;
        iam::destroy(self, out).await?;
        network::destroy(self, out).await?;
        if let Some(why) = kept {
            return Err(Error::Refused { why });
        }
        writeln!(out, "Destroyed.")?;
        Ok(())
    }

    fn print_plan(&self, out: &mut dyn std::io::Write) -> Result<()> {
        let (mut c, mut u, mut k, mut q) = (0, 0, 0, 0);
        for item in &self.plan {
            writeln!(out, "{item}")?;
            match item.change {
                Change::Create => c += 1,
                Change::Update(_) => u += 1,
                Change::Unchanged => k += 1,
                Change::Unknown(_) => q += 1,
            }
        }
        if q > 0 {
            writeln!(
                out,
                "Plan: {c} to create, {u} to update, {k} unchanged, {q} unknown."
            )?;
        } else {
            writeln!(out, "Plan: {c} to create, {u} to update, {k} unchanged.")?;
        }
        if let Some(a) = &self.artifacts {
            writeln!(
                out,
                "Artifacts from {}: ferry-gate sha256 {}, bootstrap.zip sha256 {}.",
                a.dir.display(),
                a.gate.sha256_hex,
                a.lambda_zip.sha256_hex
            )?;
            writeln!(out, "{}.", a.lambda_package)?;
        } else if let Some(p) = &self.artifacts_problem {
            writeln!(out, "Artifacts not compared: {p}")?;
        }
        writeln!(out, "{}", self.operator_note)?;
        writeln!(
            out,
            "{}",
            crate::cost::worst_case(&crate::cost::Limits::of(&self.cfg))
        )?;
        for w in &self.warnings {
            writeln!(out, "warning: {w}")?;
        }
        Ok(())
    }

    fn print_show(&self, out: &mut dyn std::io::Write) -> Result<()> {
        writeln!(
            out,
            "Installation {:?} in account {} ({})",
            self.cfg.names.prefix, self.account_id, self.cfg.raw.region
        )?;
        let mut missing = 0;
        for item in &self.plan {
            let state = match &item.change {
                Change::Create => {
                    missing += 1;
                    "MISSING".to_string()
                }
                Change::Update(f) => format!("DRIFT ({})", f.join("; ")),
                Change::Unchanged => "ok".to_string(),
                Change::Unknown(why) => format!("UNKNOWN ({why})"),
            };
            writeln!(
                out,
                "  {:<18} {:<36} {:<24} {state}",
                item.kind,
                item.name,
                item.id.as_deref().unwrap_or("-")
            )?;
        }
        if missing > 0 {
            writeln!(
                out,
                "{missing} resource(s) missing: run `ferry infra apply`."
            )?;
        } else {
            writeln!(out, "Next steps on the backup VM:")?;
            writeln!(
                out,
                "  1. copy the credentials file written by the first apply (profile [{}]) to the backup VM, mode 0600;",
                self.cfg.names.backup_user
            )?;
            writeln!(
                out,
                "  2. copy the put key (`ferry key init` made it; the master key stays offline);"
            )?;
            writeln!(
                out,
                "  3. in its ferry.toml, next to [sources]:\n       [backup]\n       site = \"SITE\"\n       \
                 key = \"/etc/ferry/put.key\"\n       [cloud]\n       region = \"{}\"\n       \
                 profile = \"{}\"\n       credentials_file = \"/etc/ferry/{}.credentials\"\n       \
                 installation = \"{}\"",
                self.cfg.raw.region,
                self.cfg.names.backup_user,
                self.cfg.names.backup_user,
                self.cfg.raw.prefix
            )?;
            writeln!(
                out,
                "  4. run `ferry backup --config ferry.toml`, then `ferry schedule install --config ferry.toml`\n     \
                 (its credentials may only invoke {} and {}).",
                self.cfg.names.build_function, self.cfg.names.clean_function
            )?;
        }
        Ok(())
    }
}

/// Compares two policy documents the way IAM/S3 store them: after parsing, with one-element
/// arrays and plain values treated alike and arrays compared as sets.
pub(crate) fn same_policy(have: &str, want: &serde_json::Value) -> bool {
    match serde_json::from_str::<serde_json::Value>(have) {
        Ok(h) => canonical(&h) == canonical(want),
        Err(_) => false,
    }
}

fn canonical(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Array(a) if a.len() == 1 => canonical(&a[0]),
        Value::Array(a) => {
            let mut items: Vec<Value> = a.iter().map(canonical).collect();
            items.sort_by_key(|x| x.to_string());
            Value::Array(items)
        }
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, x)| (k.clone(), canonical(x))).collect())
        }
        other => other.clone(),
    }
}

/// IAM returns policy documents URL-encoded.
pub(crate) fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        infra: InfraArgs,
    }

    #[test]
    fn artifacts_option_parses_for_plan_apply_and_show() {
        use clap::{CommandFactory, Parser};
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["ferry", "apply", "--artifacts", "/opt/al2023"]).unwrap();
        match c.infra.command {
            InfraCommand::Apply { artifacts, .. } => {
                assert_eq!(
                    artifacts.as_deref(),
                    Some(std::path::Path::new("/opt/al2023"))
                )
            }
            other => panic!("{other:?}"),
        }
        for sub in ["plan", "show"] {
            let c =
                Cli::try_parse_from(["ferry", sub, "--artifacts", "d", "-c", "x.toml"]).unwrap();
            assert_eq!(c.infra.config, std::path::Path::new("x.toml"));
            assert!(matches!(
                c.infra.command,
                InfraCommand::Plan { artifacts: Some(_) }
                    | InfraCommand::Show { artifacts: Some(_) }
            ));
        }
        assert!(Cli::try_parse_from(["ferry", "destroy", "--artifacts", "d"]).is_err());
    }

    #[test]
    fn url_decode_handles_iam_documents() {
        assert_eq!(url_decode("%7B%22a%22%3A%201%7D"), "{\"a\": 1}");
        assert_eq!(url_decode("100%"), "100%");
        assert_eq!(url_decode("%zz"), "%zz");
    }

    #[test]
    fn policies_compare_as_stored() {
        let want = serde_json::json!({"Statement": [{"Action": ["s3:GetObject"], "Resource": ["a", "b"]}]});
        assert!(same_policy(
            r#"{"Statement": {"Action": "s3:GetObject", "Resource": ["b", "a"]}}"#,
            &want
        ));
        assert!(!same_policy(
            r#"{"Statement": {"Action": "s3:PutObject", "Resource": ["b", "a"]}}"#,
            &want
        ));
        assert!(!same_policy("not json", &want));
    }
}
