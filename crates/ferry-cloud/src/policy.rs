//! Every policy document Ferry installs, generated in this one module.
//!
//! DESIGN.md's trust table is the specification:
//!
//! | principal | may | may not |
//! |---|---|---|
//! | backup VM (IAM user `<prefix>-backup`) | `lambda:InvokeFunction` on build and clean | anything in S3, EC2 or IAM |
//! | Lambda role `<prefix>-lambda` | EC2 instance/SG create, describe, tag, terminate (scoped by tags); `iam:PassRole` of the jump-box role only; get/put/delete/list in the state bucket | touch the backup bucket |
//! | jump-box role `<prefix>-jumpbox` | `s3:PutObject` (only with `If-None-Match`) and `s3:ListBucket` on the backup bucket, through the endpoint; `s3:GetObject` on `artifacts/*` of the state bucket; `lambda:InvokeFunction` on clean | read, overwrite or delete a backup |
//!
//! Identity policies grant; the bucket policies add explicit denies that hold whatever an
//! identity policy says (TLS only; backup puts only through the endpoint, only with
//! `If-None-Match`, only by the jump-box role — or by the operator, whose forget and prune
//! write records, repacked packs, indexes and copies to `trash/`; object reads/deletes only by
//! the operator); the
//! gateway endpoint policy caps what any principal can do through the endpoint.
//!
//! The proof that the documents say what the table says is `scripts/policy-proof/run.sh`
//! (parliament lint + an authorization matrix evaluated by principalmapper); see docs/SECURITY.md.

use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{Names, ValidConfig};

// The tag keys and the state bucket's artifact keys are ferry-contract's (ferry-build, the jump
// box and the local cloud use the same); named here as the policy documents use them.
pub use ferry_contract::keys::{
    ARTIFACTS_PREFIX, GATE_ARTIFACT as GATE_ARTIFACT_KEY, LAMBDA_ARTIFACT as LAMBDA_ARTIFACT_KEY,
};
pub use ferry_contract::tags::{
    INSTALLATION as TAG_INSTALLATION, MANAGED as TAG_MANAGED, SESSION as TAG_SESSION,
};
/// Statement id of the clean function's resource-policy statement for the sweep rule.
pub const SWEEP_PERMISSION_SID: &str = "FerrySweepInvokesClean";

/// Everything the documents depend on. Built from a validated config plus the IDs only known
/// once the account and the network exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyInputs {
    /// ARN partition; always `aws` (only commercial regions are accepted).
    pub partition: String,
    /// The 12-digit AWS account id.
    pub account_id: String,
    /// The config's region, used in Lambda, EventBridge, EC2 and log ARNs.
    pub region: String,
    /// Resource names derived from the config's prefix.
    pub names: Names,
    /// Name of the backup bucket (from the config).
    pub backup_bucket: String,
    /// Name of the state bucket (from the config).
    pub state_bucket: String,
    /// Id of the installation's VPC (`vpc-` then 8 to 17 lowercase hex digits).
    pub vpc_id: String,
    /// Id of the S3 gateway endpoint (`vpce-` then 8 to 17 lowercase hex digits), matched by
    /// the `aws:SourceVpce` conditions.
    pub vpce_id: String,
    /// IAM principal ARNs (user/role/root, never an STS session ARN) that act as the operator.
    pub operator_arns: Vec<String>,
}

/// What a document is attached to (decides how it is linted and evaluated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DocKind {
    /// Inline policy of a role or user.
    Identity,
    /// A role's trust (assume-role) policy.
    Trust,
    /// An S3 bucket policy.
    Bucket,
    /// A VPC gateway endpoint policy.
    Endpoint,
    /// A Lambda function's resource policy (statements added by `lambda:AddPermission`).
    Function,
}

/// One generated document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyDocument {
    /// Stable file-name stem, e.g. `jumpbox-role-policy`.
    pub name: &'static str,
    /// What the document is attached to, which decides how it is linted and evaluated.
    pub kind: DocKind,
    /// The principal or resource it is attached to (role/user name, bucket, endpoint).
    pub attached_to: String,
    /// The policy document itself, as JSON (`Version`, `Statement`; a function policy also has
    /// `Id`).
    pub document: Value,
}

/// Errors in the inputs (IDs that come from the account, not from the config file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid policy input {field}: {problem}")]
pub struct InputError {
    /// The input refused (`account_id`, `vpc_id`, `vpce_id`, `operator_arn`, `operator_arns`).
    pub field: &'static str,
    /// What is wrong with it, quoting the value.
    pub problem: String,
}

fn is_aws_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|rest| {
        (8..=17).contains(&rest.len())
            && rest
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

impl PolicyInputs {
    /// Combines a validated config with the account's identifiers. `operator_arn` is the IAM
    /// principal running `ferry infra apply` (a user, a role — its real ARN, path included — or
    /// root); an STS assumed-role session ARN is refused: its role's path is not in it, so it
    /// must be resolved first ([`Caller::AssumedRole`], `iam:GetRole`).
    pub fn new(
        cfg: &ValidConfig,
        account_id: &str,
        vpc_id: &str,
        vpce_id: &str,
        operator_arn: Option<&str>,
    ) -> Result<PolicyInputs, InputError> {
        if account_id.len() != 12 || !account_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(InputError {
                field: "account_id",
                problem: format!("{account_id:?} is not a 12-digit AWS account id"),
            });
        }
        if !is_aws_id(vpc_id, "vpc-") {
            return Err(InputError {
                field: "vpc_id",
                problem: format!("{vpc_id:?} is not a VPC id (vpc-0123abcd…)"),
            });
        }
        if !is_aws_id(vpce_id, "vpce-") {
            return Err(InputError {
                field: "vpce_id",
                problem: format!("{vpce_id:?} is not a VPC endpoint id (vpce-0123abcd…)"),
            });
        }
        let mut operator_arns = Vec::new();
        if let Some(op) = operator_arn {
            match Caller::parse(op) {
                Some(Caller::Principal(arn)) => operator_arns.push(arn),
                Some(Caller::AssumedRole { role_name, .. }) => {
                    return Err(InputError {
                        field: "operator_arn",
                        problem: format!(
                            "{op:?} is an assumed-role session: the bucket policies need the \
                             ARN of role {role_name:?} with its path (iam:GetRole)"
                        ),
                    });
                }
                None => {
                    return Err(InputError {
                        field: "operator_arn",
                        problem: format!("{op:?} is not an IAM user, role or root ARN"),
                    });
                }
            }
        }
        for a in &cfg.raw.operator_arns {
            if !operator_arns.contains(a) {
                operator_arns.push(a.clone());
            }
        }
        if operator_arns.is_empty() {
            return Err(InputError {
                field: "operator_arns",
                problem: "no operator: without one nobody could restore or prune".into(),
            });
        }
        Ok(PolicyInputs {
            partition: "aws".into(),
            account_id: account_id.into(),
            region: cfg.raw.region.clone(),
            names: cfg.names.clone(),
            backup_bucket: cfg.raw.backup_bucket.clone(),
            state_bucket: cfg.raw.state_bucket.clone(),
            vpc_id: vpc_id.into(),
            vpce_id: vpce_id.into(),
            operator_arns,
        })
    }

    fn iam(&self, kind: &str, name: &str) -> String {
        format!(
            "arn:{}:iam::{}:{kind}/{name}",
            self.partition, self.account_id
        )
    }
    /// ARN of the functions' IAM role.
    pub fn lambda_role_arn(&self) -> String {
        self.iam("role", &self.names.lambda_role)
    }
    /// ARN of the jump box's IAM role.
    pub fn jumpbox_role_arn(&self) -> String {
        self.iam("role", &self.names.jumpbox_role)
    }
    /// ARN of the backup VM's IAM user.
    pub fn backup_user_arn(&self) -> String {
        self.iam("user", &self.names.backup_user)
    }
    /// ARN of the Lambda function `name` in this account and region (unqualified: no version
    /// or alias).
    pub fn function_arn(&self, name: &str) -> String {
        format!(
            "arn:{}:lambda:{}:{}:function:{name}",
            self.partition, self.region, self.account_id
        )
    }
    /// ARN of ferry-build.
    pub fn build_function_arn(&self) -> String {
        self.function_arn(&self.names.build_function)
    }
    /// ARN of ferry-clean.
    pub fn clean_function_arn(&self) -> String {
        self.function_arn(&self.names.clean_function)
    }
    /// ARN of the six-hourly EventBridge sweep rule (on the default event bus).
    pub fn sweep_rule_arn(&self) -> String {
        format!(
            "arn:{}:events:{}:{}:rule/{}",
            self.partition, self.region, self.account_id, self.names.sweep_rule
        )
    }
    /// ARN of the S3 bucket `bucket` (bucket ARNs carry neither region nor account).
    pub fn bucket_arn(&self, bucket: &str) -> String {
        format!("arn:{}:s3:::{bucket}", self.partition)
    }
    fn ec2(&self, resource: &str) -> String {
        format!(
            "arn:{}:ec2:{}:{}:{resource}",
            self.partition, self.region, self.account_id
        )
    }
    fn log_group(&self, function: &str) -> String {
        format!(
            "arn:{}:logs:{}:{}:log-group:/aws/lambda/{function}",
            self.partition, self.region, self.account_id
        )
    }
}

/// What `sts get-caller-identity` says about the identity running `ferry infra`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An IAM user, role or root: the ARN is already the `aws:PrincipalArn` value.
    Principal(String),
    /// An assumed-role session `arn:aws:sts::A:assumed-role/R/session`. Its `aws:PrincipalArn`
    /// is the role's ARN **with the role's path** (`arn:aws:iam::A:role/PATH/R`), which the
    /// session ARN does not carry: IAM Identity Center roles live under
    /// `/aws-reserved/sso.amazonaws.com/…/`. Resolve it with `iam:GetRole` on `role_name`
    /// (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-principalarn,
    /// https://docs.aws.amazon.com/singlesignon/latest/userguide/referencingpermissionsets.html).
    AssumedRole {
        /// ARN partition of the session (`aws`, `aws-cn`, …).
        partition: String,
        /// 12-digit account id of the role.
        account: String,
        /// Name of the role (without its path, which the session ARN lacks).
        role_name: String,
    },
}

impl Caller {
    /// `None` for anything else (federated users, malformed strings, wildcards).
    pub fn parse(arn: &str) -> Option<Caller> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        if parts.len() != 6 || parts[0] != "arn" || !parts[3].is_empty() {
            return None;
        }
        let (partition, service, account, res) = (parts[1], parts[2], parts[4], parts[5]);
        if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) || res.contains('*')
        {
            return None;
        }
        match service {
            "iam" if res == "root" || res.starts_with("user/") || res.starts_with("role/") => {
                Some(Caller::Principal(arn.to_string()))
            }
            "sts" => {
                let rest = res.strip_prefix("assumed-role/")?;
                let (role, _session) = rest.split_once('/')?;
                if role.is_empty() {
                    return None;
                }
                Some(Caller::AssumedRole {
                    partition: partition.to_string(),
                    account: account.to_string(),
                    role_name: role.to_string(),
                })
            }
            _ => None,
        }
    }
}

/// Whether `arn` is the ARN of the IAM role named `role_name` (any path).
pub fn is_role_named(arn: &str, role_name: &str) -> bool {
    arn.split_once(":role/")
        .is_some_and(|(_, path_and_name)| path_and_name.rsplit('/').next() == Some(role_name))
}

const VERSION: &str = "2012-10-17";

/// The Lambda role's trust policy: only the Lambda service assumes it.
pub fn lambda_trust_policy() -> Value {
    json!({
        "Version": VERSION,
        "Statement": [{
            "Sid": "LambdaServiceAssumesRole",
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"
        }]
    })
}

/// The jump-box role's trust policy: only EC2 (through the instance profile) assumes it.
pub fn jumpbox_trust_policy() -> Value {
    json!({
        "Version": VERSION,
        "Statement": [{
            "Sid": "Ec2ServiceAssumesRole",
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole"
        }]
    })
}

/// The Lambda role (ferry-build and ferry-clean): launch and destroy tagged session resources,
/// pass only the jump-box role, use the state bucket. Nothing on the backup bucket.
pub fn lambda_role_policy(p: &PolicyInputs) -> Value {
    let inst = &p.names.prefix;
    let res_tags = json!({
        "StringEquals": {
            format!("aws:ResourceTag/{TAG_MANAGED}"): "true",
            format!("aws:ResourceTag/{TAG_INSTALLATION}"): inst
        },
        "Null": {format!("aws:ResourceTag/{TAG_SESSION}"): "false"}
    });
    let vpc_arn = p.ec2(&format!("vpc/{}", p.vpc_id));
    let functions = [&p.names.build_function, &p.names.clean_function];
    json!({
        "Version": VERSION,
        "Statement": [
            {
                // The log streams of the two functions' own groups. No CreateLogGroup: `ferry
                // infra apply` creates the groups with a retention (infra/logs.rs), and Lambda
                // needs CreateLogGroup only when the group does not exist; `:*` covers the
                // groups' `:log-stream:NAME` ARNs.
                // https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs.html
                "Sid": "WriteOwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": functions.iter().map(|f| format!("{}:*", p.log_group(f))).collect::<Vec<_>>()
            },
            {
                "Sid": "DescribeEc2",
                "Effect": "Allow",
                "Action": [
                    "ec2:DescribeImages",
                    "ec2:DescribeInstances",
                    "ec2:DescribeInstanceStatus",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeVpcs"
                ],
                "Resource": "*"
            },
            {
                "Sid": "LaunchJumpbox",
                "Effect": "Allow",
                "Action": "ec2:RunInstances",
                "Resource": [
                    p.ec2("instance/*"),
                    p.ec2("volume/*"),
                    p.ec2("network-interface/*"),
                    p.ec2("security-group/*"),
                    p.ec2("subnet/*"),
                    format!("arn:{}:ec2:{}::image/*", p.partition, p.region)
                ]
            },
            {
                "Sid": "DenyLaunchWithoutSessionTag",
                "Effect": "Deny",
                "Action": "ec2:RunInstances",
                "Resource": [p.ec2("instance/*"), p.ec2("volume/*")],
                "Condition": {"Null": {format!("aws:RequestTag/{TAG_SESSION}"): "true"}}
            },
            {
                "Sid": "DenyLaunchForOtherInstallation",
                "Effect": "Deny",
                "Action": "ec2:RunInstances",
                "Resource": [p.ec2("instance/*"), p.ec2("volume/*")],
                "Condition": {"StringNotEquals": {format!("aws:RequestTag/{TAG_INSTALLATION}"): inst}}
            },
            {
                "Sid": "DenyLaunchOutsideFerryVpc",
                "Effect": "Deny",
                "Action": "ec2:RunInstances",
                "Resource": [p.ec2("subnet/*"), p.ec2("security-group/*"), p.ec2("network-interface/*")],
                "Condition": {"ArnNotEquals": {"ec2:Vpc": vpc_arn}}
            },
            {
                "Sid": "DenyLaunchNonAmazonImages",
                "Effect": "Deny",
                "Action": "ec2:RunInstances",
                "Resource": format!("arn:{}:ec2:{}::image/*", p.partition, p.region),
                "Condition": {"StringNotEquals": {"ec2:Owner": "amazon"}}
            },
            {
                "Sid": "CreateSessionSecurityGroups",
                "Effect": "Allow",
                "Action": "ec2:CreateSecurityGroup",
                "Resource": [p.ec2("security-group/*"), vpc_arn]
            },
            {
                "Sid": "DenySecurityGroupWithoutSessionTag",
                "Effect": "Deny",
                "Action": "ec2:CreateSecurityGroup",
                "Resource": p.ec2("security-group/*"),
                "Condition": {"Null": {format!("aws:RequestTag/{TAG_SESSION}"): "true"}}
            },
            {
                "Sid": "DenySecurityGroupForOtherInstallation",
                "Effect": "Deny",
                "Action": "ec2:CreateSecurityGroup",
                "Resource": p.ec2("security-group/*"),
                "Condition": {"StringNotEquals": {format!("aws:RequestTag/{TAG_INSTALLATION}"): inst}}
            },
            {
                "Sid": "TagOnlyWhileCreating",
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": [
                    p.ec2("instance/*"),
                    p.ec2("volume/*"),
                    p.ec2("security-group/*"),
                    p.ec2("network-interface/*")
                ],
                "Condition": {"StringEquals": {"ec2:CreateAction": ["RunInstances", "CreateSecurityGroup"]}}
            },
            {
                "Sid": "ManageOwnSessionResources",
                "Effect": "Allow",
                "Action": [
                    "ec2:AuthorizeSecurityGroupEgress",
                    "ec2:AuthorizeSecurityGroupIngress",
                    "ec2:DeleteSecurityGroup",
                    "ec2:RevokeSecurityGroupEgress",
                    "ec2:RevokeSecurityGroupIngress",
                    "ec2:TerminateInstances"
                ],
                "Resource": [p.ec2("instance/*"), p.ec2("security-group/*")],
                "Condition": res_tags
            },
            {
                "Sid": "PassOnlyJumpboxRoleToEc2",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": p.jumpbox_role_arn(),
                "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}
            },
            {
                "Sid": "ListStateBucket",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": p.bucket_arn(&p.state_bucket)
            },
            {
                "Sid": "UseStateObjects",
                "Effect": "Allow",
                "Action": ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
                "Resource": format!("{}/*", p.bucket_arn(&p.state_bucket))
            }
        ]
    })
}

/// The jump box: write-once puts and list on the backup bucket through the endpoint, read the
/// gate artifact, invoke clean. No read or delete of backups.
pub fn jumpbox_role_policy(p: &PolicyInputs) -> Value {
    let backup = p.bucket_arn(&p.backup_bucket);
    json!({
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "PutNewBackupObjectsThroughEndpoint",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": format!("{backup}/*"),
                "Condition": {
                    "StringEquals": {"aws:SourceVpce": p.vpce_id},
                    "Null": {"s3:if-none-match": "false"}
                }
            },
            {
                "Sid": "ListBackupBucketThroughEndpoint",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": backup,
                "Condition": {"StringEquals": {"aws:SourceVpce": p.vpce_id}}
            },
            {
                "Sid": "GetGateArtifactThroughEndpoint",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": format!("{}/{ARTIFACTS_PREFIX}*", p.bucket_arn(&p.state_bucket)),
                "Condition": {"StringEquals": {"aws:SourceVpce": p.vpce_id}}
            },
            {
                "Sid": "InvokeClean",
                "Effect": "Allow",
                "Action": "lambda:InvokeFunction",
                "Resource": p.clean_function_arn()
            }
        ]
    })
}

/// The backup VM's user: invoke build and clean, nothing else.
pub fn backup_user_policy(p: &PolicyInputs) -> Value {
    json!({
        "Version": VERSION,
        "Statement": [{
            "Sid": "InvokeBuildAndClean",
            "Effect": "Allow",
            "Action": "lambda:InvokeFunction",
            "Resource": [p.build_function_arn(), p.clean_function_arn()]
        }]
    })
}

/// The one statement of the clean function's resource policy (made by `lambda:AddPermission`):
/// EventBridge may invoke ferry-clean, and only on behalf of this installation's sweep rule
/// (`AWS:SourceArn`, so no other rule — in this account or another — can use the grant). Nothing
/// may invoke ferry-build through a resource policy.
pub fn sweep_invoke_permission(p: &PolicyInputs) -> Value {
    json!({
        "Sid": SWEEP_PERMISSION_SID,
        "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"},
        "Action": "lambda:InvokeFunction",
        "Resource": p.clean_function_arn(),
        "Condition": {"ArnLike": {"AWS:SourceArn": p.sweep_rule_arn()}}
    })
}

/// The clean function's whole resource policy as Lambda shows it (`GetPolicy`): the one
/// statement [`sweep_invoke_permission`].
pub fn clean_function_policy(p: &PolicyInputs) -> Value {
    json!({
        "Version": VERSION,
        "Id": "default",
        "Statement": [sweep_invoke_permission(p)]
    })
}

/// Backup bucket policy: denies that hold whatever any identity policy grants.
pub fn backup_bucket_policy(p: &PolicyInputs) -> Value {
    let b = p.bucket_arn(&p.backup_bucket);
    let objects = format!("{b}/*");
    let mut readers = p.operator_arns.clone();
    readers.sort();
    let mut listers = readers.clone();
    listers.push(p.jumpbox_role_arn());
    json!({
        "Version": VERSION,
        "Statement": [
            deny_insecure_transport(&b),
            // The operator writes too: forget's and prune's records, prune's repacked packs and
            // indexes, and its CopyObject to trash/ (a PutObject on the copy, without
            // If-None-Match). It may delete anyway, so its puts add no power over a backup;
            // with Object Lock an overwrite only adds a version. Everyone else's puts are
            // write-once, through the endpoint, by the jump box. Under the If-None-Match deny S3
            // refuses a CopyObject (403 without the header, 501 with it), so the operator must be
            // spared it: https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes-enforce.html
            {
                "Sid": "DenyPutOutsideEndpoint",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": objects,
                "Condition": {
                    "StringNotEquals": {"aws:SourceVpce": p.vpce_id},
                    "ArnNotEquals": {"aws:PrincipalArn": readers}
                }
            },
            {
                "Sid": "DenyPutWithoutIfNoneMatch",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": objects,
                "Condition": {
                    "Null": {"s3:if-none-match": "true"},
                    "ArnNotEquals": {"aws:PrincipalArn": readers}
                }
            },
            {
                "Sid": "DenyPutByAnyoneButJumpboxAndOperator",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": objects,
                "Condition": {"ArnNotEquals": {"aws:PrincipalArn": listers}}
            },
            {
                "Sid": "DenyReadDeleteByAnyoneButOperator",
                "Effect": "Deny",
                "Principal": "*",
                // With Object Lock, also who may shorten, lengthen or bypass a lock: a
                // credential that could lengthen one could lock junk in for years.
                "Action": [
                    "s3:BypassGovernanceRetention", "s3:DeleteObject", "s3:DeleteObjectVersion",
                    "s3:GetObject", "s3:GetObjectVersion", "s3:PutObjectLegalHold",
                    "s3:PutObjectRetention"
                ],
                "Resource": objects,
                "Condition": {"ArnNotEquals": {"aws:PrincipalArn": readers}}
            },
            {
                "Sid": "DenyListByAnyoneButJumpboxAndOperator",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:ListBucket",
                "Resource": b,
                "Condition": {"ArnNotEquals": {"aws:PrincipalArn": listers}}
            }
        ]
    })
}

/// State bucket policy: the Lambda role (and the operator) only; the jump box may read
/// `artifacts/*` and nothing else.
pub fn state_bucket_policy(p: &PolicyInputs) -> Value {
    let b = p.bucket_arn(&p.state_bucket);
    let objects = format!("{b}/*");
    let mut users = vec![p.lambda_role_arn()];
    let mut ops = p.operator_arns.clone();
    ops.sort();
    users.extend(ops);
    let mut readers = users.clone();
    readers.push(p.jumpbox_role_arn());
    json!({
        "Version": VERSION,
        "Statement": [
            deny_insecure_transport(&b),
            {
                "Sid": "DenyWriteByAnyoneButLambdaAndOperator",
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["s3:DeleteObject", "s3:PutObject"],
                "Resource": objects,
                "Condition": {"ArnNotEquals": {"aws:PrincipalArn": users}}
            },
            {
                "Sid": "DenyListByAnyoneButLambdaAndOperator",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:ListBucket",
                "Resource": b,
                "Condition": {"ArnNotEquals": {"aws:PrincipalArn": users}}
            },
            {
                "Sid": "DenyReadByOthers",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": objects,
                "Condition": {"ArnNotEquals": {"aws:PrincipalArn": readers}}
            },
            {
                "Sid": "DenyJumpboxReadOutsideArtifacts",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObject",
                "NotResource": format!("{b}/{ARTIFACTS_PREFIX}*"),
                "Condition": {"ArnEquals": {"aws:PrincipalArn": p.jumpbox_role_arn()}}
            }
        ]
    })
}

fn deny_insecure_transport(bucket_arn: &str) -> Value {
    json!({
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, format!("{bucket_arn}/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}
    })
}

/// The S3 gateway endpoint policy: through the endpoint, only puts and list on the backup bucket
/// and get of the gate artifact — whoever the caller is. (That puts are write-once is the backup
/// bucket policy's job: it holds for every path, not only this one.)
pub fn s3_endpoint_policy(p: &PolicyInputs) -> Value {
    let backup = p.bucket_arn(&p.backup_bucket);
    json!({
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "PutNewBackupObjects",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": format!("{backup}/*")
            },
            {
                "Sid": "ListBackupBucket",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:ListBucket",
                "Resource": backup
            },
            {
                "Sid": "GetGateArtifact",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": format!("{}/{ARTIFACTS_PREFIX}*", p.bucket_arn(&p.state_bucket))
            }
        ]
    })
}

/// All documents, in a stable order.
pub fn all_documents(p: &PolicyInputs) -> Vec<PolicyDocument> {
    let n = &p.names;
    vec![
        PolicyDocument {
            name: "lambda-role-trust",
            kind: DocKind::Trust,
            attached_to: n.lambda_role.clone(),
            document: lambda_trust_policy(),
        },
        PolicyDocument {
            name: "lambda-role-policy",
            kind: DocKind::Identity,
            attached_to: n.lambda_role.clone(),
            document: lambda_role_policy(p),
        },
        PolicyDocument {
            name: "jumpbox-role-trust",
            kind: DocKind::Trust,
            attached_to: n.jumpbox_role.clone(),
            document: jumpbox_trust_policy(),
        },
        PolicyDocument {
            name: "jumpbox-role-policy",
            kind: DocKind::Identity,
            attached_to: n.jumpbox_role.clone(),
            document: jumpbox_role_policy(p),
        },
        PolicyDocument {
            name: "backup-user-policy",
            kind: DocKind::Identity,
            attached_to: n.backup_user.clone(),
            document: backup_user_policy(p),
        },
        PolicyDocument {
            name: "backup-bucket-policy",
            kind: DocKind::Bucket,
            attached_to: p.backup_bucket.clone(),
            document: backup_bucket_policy(p),
        },
        PolicyDocument {
            name: "state-bucket-policy",
            kind: DocKind::Bucket,
            attached_to: p.state_bucket.clone(),
            document: state_bucket_policy(p),
        },
        PolicyDocument {
            name: "s3-endpoint-policy",
            kind: DocKind::Endpoint,
            attached_to: p.vpce_id.clone(),
            document: s3_endpoint_policy(p),
        },
        PolicyDocument {
            name: "clean-function-policy",
            kind: DocKind::Function,
            attached_to: n.clean_function.clone(),
            document: clean_function_policy(p),
        },
    ]
}

/// Writes every document as `<dir>/<name>.json`, plus `<dir>/manifest.json` (the inputs, the
/// derived ARNs, and each document's kind and attachment) for the proof script.
pub fn dump_documents(
    p: &PolicyInputs,
    dir: &std::path::Path,
) -> crate::Result<Vec<std::path::PathBuf>> {
    use crate::error::IoContext;
    std::fs::create_dir_all(dir).io("creating", dir)?;
    let docs = all_documents(p);
    let mut written = Vec::new();
    for d in &docs {
        let path = dir.join(format!("{}.json", d.name));
        let text = serde_json::to_string_pretty(&d.document)?;
        std::fs::write(&path, text + "\n").io("writing", &path)?;
        written.push(path);
    }
    let manifest = json!({
        "inputs": p,
        "arns": {
            "lambda_role": p.lambda_role_arn(),
            "jumpbox_role": p.jumpbox_role_arn(),
            "backup_user": p.backup_user_arn(),
            "build_function": p.build_function_arn(),
            "clean_function": p.clean_function_arn(),
            "sweep_rule": p.sweep_rule_arn(),
            "backup_bucket": p.bucket_arn(&p.backup_bucket),
            "state_bucket": p.bucket_arn(&p.state_bucket),
        },
        "documents": docs.iter().map(|d| json!({
            "name": d.name, "kind": d.kind, "attached_to": d.attached_to,
            "file": format!("{}.json", d.name)
        })).collect::<Vec<_>>(),
    });
    let path = dir.join("manifest.json");
    std::fs::write(&path, serde_json::to_string_pretty(&manifest)? + "\n").io("writing", &path)?;
    written.push(path);
    Ok(written)
}

/// An IAM Identity Center (SSO) permission set's role in the example: a role with a path.
pub const EXAMPLE_SSO_OPERATOR: &str = "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_AdministratorAccess_0123456789abcdef";

/// Inputs for documentation and the policy proof: the example config with a fixed fake account,
/// VPC and endpoint, and two operators: the role `Admin` (the caller) and, from `operator_arns`,
/// an IAM Identity Center role with a path ([`EXAMPLE_SSO_OPERATOR`]).
pub fn example_inputs() -> crate::Result<PolicyInputs> {
    let mut cfg = crate::config::InfraConfig::parse(crate::config::EXAMPLE_CONFIG)?;
    cfg.raw.operator_arns.push(EXAMPLE_SSO_OPERATOR.to_string());
    Ok(PolicyInputs::new(
        &cfg,
        "123456789012",
        "vpc-0a1b2c3d4e5f60718",
        "vpce-0fedcba9876543210",
        Some("arn:aws:iam::123456789012:role/Admin"),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(v: &Value) -> &Vec<Value> {
        v["Statement"].as_array().unwrap()
    }

    #[test]
    fn caller_arns_parse() {
        assert_eq!(
            Caller::parse(
                "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_0123abcd/me@example.com"
            ),
            Some(Caller::AssumedRole {
                partition: "aws".into(),
                account: "123456789012".into(),
                role_name: "AWSReservedSSO_Admin_0123abcd".into()
            })
        );
        let same = |a: &str| assert_eq!(Caller::parse(a), Some(Caller::Principal(a.into())));
        same("arn:aws:iam::123456789012:user/alice");
        same("arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/eu-west-1/R");
        same("arn:aws:iam::123456789012:root");
        assert_eq!(Caller::parse("arn:aws:iam::123456789012:user/*"), None);
        assert_eq!(
            Caller::parse("arn:aws:sts::123456789012:federated-user/x"),
            None
        );
        assert_eq!(Caller::parse("garbage"), None);
        assert!(is_role_named(
            "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/eu-west-1/R",
            "R"
        ));
        assert!(!is_role_named("arn:aws:iam::123456789012:role/RR", "R"));
        assert!(!is_role_named("arn:aws:iam::123456789012:user/R", "R"));
    }

    #[test]
    fn a_session_arn_is_never_turned_into_a_pathless_role() {
        // The defect this guards against: `assumed-role/R/s` became `role/R`, which is not the
        // aws:PrincipalArn of a role with a path, so the bucket policies locked the operator out.
        let cfg = crate::config::InfraConfig::parse(crate::config::EXAMPLE_CONFIG).unwrap();
        let e = PolicyInputs::new(
            &cfg,
            "123456789012",
            "vpc-0a1b2c3d",
            "vpce-0a1b2c3d",
            Some("arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_0123abcd/me"),
        )
        .unwrap_err();
        assert_eq!(e.field, "operator_arn");
        assert!(e.problem.contains("iam:GetRole"), "{e}");
        let sso = "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/eu-west-1/\
                   AWSReservedSSO_Admin_0123abcd";
        let p = PolicyInputs::new(
            &cfg,
            "123456789012",
            "vpc-0a1b2c3d",
            "vpce-0a1b2c3d",
            Some(sso),
        )
        .unwrap();
        assert_eq!(p.operator_arns, vec![sso.to_string()]);
        let text = serde_json::to_string(&backup_bucket_policy(&p)).unwrap();
        assert!(text.contains(sso), "{text}");
    }

    #[test]
    fn inputs_refuse_bad_ids() {
        let cfg = crate::config::InfraConfig::parse(crate::config::EXAMPLE_CONFIG).unwrap();
        let ok = |a: &str, v: &str, e: &str| {
            PolicyInputs::new(&cfg, a, v, e, Some("arn:aws:iam::123456789012:root"))
        };
        assert!(ok("123456789012", "vpc-0a1b2c3d", "vpce-0a1b2c3d").is_ok());
        assert_eq!(
            ok("12345", "vpc-0a1b2c3d", "vpce-0a1b2c3d")
                .unwrap_err()
                .field,
            "account_id"
        );
        assert_eq!(
            ok("123456789012", "vpc-XYZ", "vpce-0a1b2c3d")
                .unwrap_err()
                .field,
            "vpc_id"
        );
        assert_eq!(
            ok("123456789012", "vpc-0a1b2c3d", "vpc-0a1b2c3d")
                .unwrap_err()
                .field,
            "vpce_id"
        );
        let none = PolicyInputs::new(&cfg, "123456789012", "vpc-0a1b2c3d", "vpce-0a1b2c3d", None);
        assert_eq!(none.unwrap_err().field, "operator_arns");
    }

    #[test]
    fn every_statement_has_a_unique_sid_and_version() {
        let p = example_inputs().unwrap();
        for d in all_documents(&p) {
            assert_eq!(d.document["Version"], VERSION, "{}", d.name);
            let mut sids: Vec<&str> = statements(&d.document)
                .iter()
                .map(|s| s["Sid"].as_str().unwrap())
                .collect();
            let n = sids.len();
            sids.sort();
            sids.dedup();
            assert_eq!(sids.len(), n, "duplicate Sid in {}", d.name);
        }
    }

    #[test]
    fn no_allow_statement_uses_a_wildcard_action() {
        let p = example_inputs().unwrap();
        for d in all_documents(&p) {
            for s in statements(&d.document) {
                if s["Effect"] == "Allow" {
                    let acts: Vec<String> = match &s["Action"] {
                        Value::String(a) => vec![a.clone()],
                        Value::Array(a) => {
                            a.iter().map(|x| x.as_str().unwrap().to_string()).collect()
                        }
                        other => panic!("{}: unexpected Action {other}", d.name),
                    };
                    for a in acts {
                        assert!(!a.contains('*'), "{}: wildcard action {a}", d.name);
                    }
                }
            }
        }
    }

    #[test]
    fn documents_mention_only_their_own_installation() {
        let p = example_inputs().unwrap();
        let text = serde_json::to_string(
            &all_documents(&p)
                .iter()
                .map(|d| &d.document)
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert!(text.contains("ferry-jumpbox"));
        assert!(!text.contains("arn:aws:iam::123456789012:role/*"));
        // Names follow the prefix.
        let cfg = crate::config::InfraConfig::parse(
            &crate::config::EXAMPLE_CONFIG.replace("prefix = \"ferry\"", "prefix = \"site2\""),
        )
        .unwrap();
        let p2 = PolicyInputs::new(
            &cfg,
            "123456789012",
            "vpc-0a1b2c3d",
            "vpce-0a1b2c3d",
            Some("arn:aws:iam::123456789012:root"),
        )
        .unwrap();
        let t2 = serde_json::to_string(&jumpbox_role_policy(&p2)).unwrap();
        assert!(t2.contains("function:site2-clean"), "{t2}");
        let l2 = serde_json::to_string(&lambda_role_policy(&p2)).unwrap();
        assert!(
            l2.contains("role/site2-jumpbox") && !l2.contains("role/ferry-"),
            "{l2}"
        );
    }

    #[test]
    fn dump_writes_every_document_and_a_manifest() {
        let p = example_inputs().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let files = dump_documents(&p, dir.path()).unwrap();
        assert_eq!(files.len(), all_documents(&p).len() + 1);
        let m: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("manifest.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            m["arns"]["jumpbox_role"],
            "arn:aws:iam::123456789012:role/ferry-jumpbox"
        );
        assert_eq!(
            m["inputs"]["operator_arns"][0],
            "arn:aws:iam::123456789012:role/Admin"
        );
    }
}
