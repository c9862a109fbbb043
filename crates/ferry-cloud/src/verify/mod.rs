//! The authorization matrix of docs/SECURITY.md, defined once: principal × action × resource ×
//! request context → expected, generated from the same [`PolicyInputs`] the documents come
//! from. The policy proof (scripts/policy-proof/proof.py, through the `dump-policies` example's
//! `matrix.json`) and `ferry infra verify` read it from here.
//!
//! Every expected value is DESIGN.md's trust table, never an evaluator's output.
//!
//! [`LocalWorld`] evaluates the matrix on a set of documents (the generated ones, or the live
//! ones `ferry infra verify` reads from the account) with the evaluator in [`eval`].

pub mod eval;

use serde::Serialize;
use serde_json::{Value, json};

use crate::policy::{self, PolicyInputs};
use eval::{Caller, Request};

/// Who makes the request in a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Who {
    /// The backup VM's IAM user.
    BackupUser,
    /// The Lambda functions' role.
    LambdaRole,
    /// The jump box's role.
    JumpboxRole,
    /// The operator (the first of the operator ARNs): an administrator.
    Operator,
    /// The second operator ARN: in the example inputs an IAM Identity Center role, which lives
    /// under a path (`role/aws-reserved/sso.amazonaws.com/REGION/AWSReservedSSO_…`); its
    /// `aws:PrincipalArn` is the role ARN with that path.
    PathOperator,
    /// A role with the same name as [`Who::PathOperator`] at the root path (hypothetical): not
    /// an operator.
    SameNameRole,
    /// The jump-box role as if its identity policy had been widened to everything
    /// (hypothetical: what the bucket and endpoint policies refuse whatever the role may do).
    JumpboxWidened,
    /// Any other administrator of the account (hypothetical `user/other-admin`).
    OtherAdmin,
    /// An AWS service principal.
    Service(&'static str),
}

impl Who {
    /// The label printed in the matrix (and read by proof.py).
    pub fn label(&self) -> &'static str {
        match self {
            Who::BackupUser => "backup-user",
            Who::LambdaRole => "lambda-role",
            Who::JumpboxRole => "jumpbox-role",
            Who::Operator => "operator",
            Who::PathOperator => "operator (SSO role, path)",
            Who::SameNameRole => "same-name role, no path",
            Who::JumpboxWidened => "jumpbox-role widened",
            Who::OtherAdmin => "other-admin",
            Who::Service(s) => s,
        }
    }

    /// The principal's ARN (`None` for a service).
    pub fn arn(&self, p: &PolicyInputs) -> Option<String> {
        match self {
            Who::BackupUser => Some(p.backup_user_arn()),
            Who::LambdaRole => Some(p.lambda_role_arn()),
            Who::JumpboxRole | Who::JumpboxWidened => Some(p.jumpbox_role_arn()),
            Who::Operator => p.operator_arns.first().cloned(),
            Who::PathOperator => p.operator_arns.get(1).cloned(),
            Who::SameNameRole => p
                .operator_arns
                .get(1)
                .and_then(|a| same_name_role_arn(p, a)),
            Who::OtherAdmin => Some(other_admin_arn(p)),
            Who::Service(_) => None,
        }
    }

    /// Principals that exist only in the matrix (their identity policy is "everything").
    pub fn hypothetical(&self) -> bool {
        matches!(
            self,
            Who::JumpboxWidened | Who::OtherAdmin | Who::SameNameRole
        )
    }
}

/// The hypothetical other administrator of the account.
pub fn other_admin_arn(p: &PolicyInputs) -> String {
    format!("arn:{}:iam::{}:user/other-admin", p.partition, p.account_id)
}

/// The role with the same name as `role_arn` at the root path (`None` if `role_arn` is not a
/// role with a path).
pub fn same_name_role_arn(p: &PolicyInputs, role_arn: &str) -> Option<String> {
    let (_, path_and_name) = role_arn.split_once(":role/")?;
    let (_, name) = path_and_name.rsplit_once('/')?;
    Some(format!(
        "arn:{}:iam::{}:role/{name}",
        p.partition, p.account_id
    ))
}

/// An identity policy that allows everything (AdministratorAccess).
pub fn admin_policy() -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
}

/// One case of the matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Case {
    /// The principal making the request.
    pub who: Who,
    /// IAM action, `service:Action` (`s3:PutObject`, `sts:AssumeRole`).
    pub action: String,
    /// ARN of the resource (bucket, object, role, function) the request is about.
    pub resource: String,
    /// Request context as AWS would fill it for this request (besides `aws:PrincipalArn`,
    /// which follows from the principal), in a stable order.
    pub context: Vec<(String, String)>,
    /// `true`: allow. From DESIGN.md's trust table.
    pub expected: bool,
    /// Why the trust table expects that answer, in a few words (printed in the report).
    pub why: String,
}

/// The session id and object names the cases use.
const SESSION: &str = "s-20261123-1";
const PACK: &str = "site1/packs/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// The whole matrix for one installation.
pub fn matrix(p: &PolicyInputs) -> Vec<Case> {
    let (part, acct, reg) = (&p.partition, &p.account_id, &p.region);
    let b = p.bucket_arn(&p.backup_bucket);
    let s = p.bucket_arn(&p.state_bucket);
    let ec2 = format!("arn:{part}:ec2:{reg}:{acct}");
    let pack = format!("{b}/{PACK}");
    let state_obj = format!("{s}/{}", ferry_contract::keys::session_state(SESSION));
    let gate = format!("{s}/{}", policy::GATE_ARTIFACT_KEY);
    let (build, clean) = (p.build_function_arn(), p.clean_function_arn());
    let (lambda_role, jumpbox_role) = (p.lambda_role_arn(), p.jumpbox_role_arn());
    let sweep = p.sweep_rule_arn();
    let prefix = p.names.prefix.as_str();
    let vpc_arn = format!("{ec2}:vpc/{}", p.vpc_id);

    type Ctx = Vec<(String, String)>;
    let one = |k: &str, v: &str| -> Ctx { vec![(k.to_string(), v.to_string())] };
    let ours = one("aws:SourceVpce", &p.vpce_id);
    let inm = one("s3:if-none-match", "*");
    let via: Ctx = [ours.clone(), inm.clone()].concat();
    let plain = one("aws:SecureTransport", "false");
    let tag = |kind: &str, installation: &str, session: bool| -> Ctx {
        let mut t: Ctx = [
            one(&format!("aws:{kind}/{}", policy::TAG_MANAGED), "true"),
            one(
                &format!("aws:{kind}/{}", policy::TAG_INSTALLATION),
                installation,
            ),
        ]
        .concat();
        if session {
            t.extend(one(&format!("aws:{kind}/{}", policy::TAG_SESSION), SESSION));
        }
        t
    };
    let tags = tag("RequestTag", prefix, true);
    let rtags = tag("ResourceTag", prefix, true);
    let none: Ctx = Vec::new();

    use Who::*;
    const Y: bool = true;
    const N: bool = false;
    let events = Service("events.amazonaws.com");
    #[rustfmt::skip]
    let mut rows: Vec<(Who, &str, String, Ctx, bool, &str)> = vec![
        // backup VM: invoke build/clean, nothing else
        (BackupUser, "lambda:InvokeFunction", build.clone(), none.clone(), Y, "may invoke ferry-build"),
        (BackupUser, "lambda:InvokeFunction", clean.clone(), none.clone(), Y, "may invoke ferry-clean"),
        (BackupUser, "lambda:InvokeFunction", p.function_arn("other"), none.clone(), N, "no other function"),
        (BackupUser, "lambda:UpdateFunctionCode", build.clone(), none.clone(), N, "cannot change the function"),
        (BackupUser, "s3:GetObject", pack.clone(), none.clone(), N, "no S3"),
        (BackupUser, "s3:ListBucket", b.clone(), none.clone(), N, "no S3"),
        (BackupUser, "s3:PutObject", pack.clone(), via.clone(), N, "no S3, even via the endpoint"),
        (BackupUser, "s3:GetObject", state_obj.clone(), none.clone(), N, "no S3"),
        (BackupUser, "s3:PutObject", state_obj.clone(), none.clone(), N, "no S3"),
        (BackupUser, "ec2:DescribeInstances", "*".into(), none.clone(), N, "no EC2"),
        (BackupUser, "ec2:RunInstances", format!("{ec2}:instance/*"), tags.clone(), N, "no EC2"),
        (BackupUser, "iam:PassRole", jumpbox_role.clone(), one("iam:PassedToService", "ec2.amazonaws.com"), N, "no IAM"),
        (BackupUser, "sts:AssumeRole", lambda_role.clone(), none.clone(), N, "cannot become the Lambda role"),
        (BackupUser, "sts:AssumeRole", jumpbox_role.clone(), none.clone(), N, "cannot become the jump-box role"),
        // trust policies
        (Service("lambda.amazonaws.com"), "sts:AssumeRole", lambda_role.clone(), none.clone(), Y, "Lambda assumes its role"),
        (Service("ec2.amazonaws.com"), "sts:AssumeRole", lambda_role.clone(), none.clone(), N, "EC2 cannot assume the Lambda role"),
        (Service("ec2.amazonaws.com"), "sts:AssumeRole", jumpbox_role.clone(), none.clone(), Y, "EC2 assumes the jump-box role"),
        (Service("lambda.amazonaws.com"), "sts:AssumeRole", jumpbox_role.clone(), none.clone(), N, "Lambda cannot assume the jump-box role"),
        // the clean function's resource policy: only the sweep rule, through EventBridge
        (events, "lambda:InvokeFunction", clean.clone(), one("aws:SourceArn", &sweep), Y, "the six-hourly sweep rule invokes ferry-clean"),
        (events, "lambda:InvokeFunction", clean.clone(), one("aws:SourceArn", &format!("arn:{part}:events:{reg}:{acct}:rule/other")), N, "another rule cannot"),
        (events, "lambda:InvokeFunction", build.clone(), one("aws:SourceArn", &sweep), N, "nothing may invoke ferry-build by resource policy"),
        (Service("sns.amazonaws.com"), "lambda:InvokeFunction", clean.clone(), one("aws:SourceArn", &sweep), N, "another service cannot"),
        // Lambda role: tagged session resources, PassRole of the jump-box role, state bucket
        (LambdaRole, "ec2:RunInstances", format!("{ec2}:instance/*"), tags.clone(), Y, "launch a tagged jump box"),
        (LambdaRole, "ec2:RunInstances", format!("{ec2}:instance/*"), tag("RequestTag", prefix, false), N, "instance without ferry:session tag"),
        (LambdaRole, "ec2:RunInstances", format!("{ec2}:instance/*"), tag("RequestTag", "other", true), N, "tagged for another installation"),
        (LambdaRole, "ec2:RunInstances", format!("{ec2}:subnet/subnet-0a1b2c3d"), one("ec2:Vpc", &vpc_arn), Y, "subnet in the ferry VPC"),
        (LambdaRole, "ec2:RunInstances", format!("{ec2}:subnet/subnet-0e0e0e0e"), one("ec2:Vpc", &format!("{ec2}:vpc/vpc-0ffff0000")), N, "subnet in another VPC"),
        (LambdaRole, "ec2:RunInstances", format!("arn:{part}:ec2:{reg}::image/ami-0123456789abcdef0"), one("ec2:Owner", "amazon"), Y, "Amazon Linux image"),
        (LambdaRole, "ec2:RunInstances", format!("arn:{part}:ec2:{reg}::image/ami-0badbadbadbadbad0"), one("ec2:Owner", "999999999999"), N, "community image"),
        (LambdaRole, "ec2:CreateSecurityGroup", format!("{ec2}:security-group/*"), tags.clone(), Y, "create a tagged SG"),
        (LambdaRole, "ec2:CreateSecurityGroup", format!("{ec2}:security-group/*"), tag("RequestTag", prefix, false), N, "SG without ferry:session tag"),
        (LambdaRole, "ec2:CreateSecurityGroup", format!("{ec2}:security-group/*"), tag("RequestTag", "other", true), N, "SG for another installation"),
        (LambdaRole, "ec2:CreateTags", format!("{ec2}:instance/i-0123456789abcdef0"), one("ec2:CreateAction", "RunInstances"), Y, "tag while launching"),
        (LambdaRole, "ec2:CreateTags", format!("{ec2}:instance/i-0abcabcabcabcabc0"), none.clone(), N, "retag an existing instance into scope"),
        (LambdaRole, "ec2:TerminateInstances", format!("{ec2}:instance/i-0123456789abcdef0"), rtags.clone(), Y, "terminate a session's jump box"),
        (LambdaRole, "ec2:TerminateInstances", format!("{ec2}:instance/i-0abcabcabcabcabc0"), none.clone(), N, "terminate an untagged instance"),
        (LambdaRole, "ec2:TerminateInstances", format!("{ec2}:instance/i-0abcabcabcabcabc0"), tag("ResourceTag", "other", true), N, "terminate another installation's box"),
        (LambdaRole, "ec2:DeleteSecurityGroup", format!("{ec2}:security-group/sg-0123456789abcdef0"), rtags.clone(), Y, "delete a session SG"),
        (LambdaRole, "ec2:DescribeInstances", "*".into(), none.clone(), Y, "describe"),
        (LambdaRole, "logs:PutLogEvents", format!("arn:{part}:logs:{reg}:{acct}:log-group:/aws/lambda/{}:log-stream:2026/11/23/x", p.names.build_function), none.clone(), Y, "write its own function logs"),
        (LambdaRole, "logs:PutLogEvents", format!("arn:{part}:logs:{reg}:{acct}:log-group:/aws/lambda/other:log-stream:x"), none.clone(), N, "no other log group"),
        (LambdaRole, "logs:CreateLogStream", format!("arn:{part}:logs:{reg}:{acct}:log-group:/aws/lambda/{}:log-stream:2026/11/23/[$LATEST]0a1b", p.names.clean_function), none.clone(), Y, "open a stream in its own log group"),
        (LambdaRole, "logs:CreateLogStream", format!("arn:{part}:logs:{reg}:{acct}:log-group:/aws/lambda/other:log-stream:x"), none.clone(), N, "no stream in another group"),
        (LambdaRole, "logs:CreateLogGroup", format!("arn:{part}:logs:{reg}:{acct}:log-group:/aws/lambda/{}", p.names.build_function), none.clone(), N, "infra apply creates the log groups"),
        (LambdaRole, "logs:PutRetentionPolicy", format!("arn:{part}:logs:{reg}:{acct}:log-group:/aws/lambda/{}", p.names.build_function), none.clone(), N, "cannot change log retention"),
        (LambdaRole, "logs:DeleteLogGroup", format!("arn:{part}:logs:{reg}:{acct}:log-group:/aws/lambda/{}", p.names.build_function), none.clone(), N, "cannot delete its logs"),
        (LambdaRole, "iam:PassRole", jumpbox_role.clone(), one("iam:PassedToService", "ec2.amazonaws.com"), Y, "pass the jump-box role to EC2"),
        (LambdaRole, "iam:PassRole", lambda_role.clone(), one("iam:PassedToService", "ec2.amazonaws.com"), N, "pass its own role"),
        (LambdaRole, "iam:PassRole", jumpbox_role.clone(), one("iam:PassedToService", "lambda.amazonaws.com"), N, "pass the jump-box role to Lambda"),
        (LambdaRole, "iam:AttachRolePolicy", jumpbox_role.clone(), none.clone(), N, "no IAM changes"),
        (LambdaRole, "s3:PutObject", state_obj.clone(), none.clone(), Y, "write session state"),
        (LambdaRole, "s3:GetObject", state_obj.clone(), none.clone(), Y, "read session state"),
        (LambdaRole, "s3:DeleteObject", state_obj.clone(), none.clone(), Y, "delete session state"),
        (LambdaRole, "s3:ListBucket", s.clone(), none.clone(), Y, "list the state bucket"),
        (LambdaRole, "s3:PutObject", state_obj.clone(), plain.clone(), N, "state bucket is TLS only"),
        (LambdaRole, "s3:GetObject", pack.clone(), none.clone(), N, "never touches the backup bucket"),
        (LambdaRole, "s3:PutObject", pack.clone(), via.clone(), N, "never touches the backup bucket"),
        (LambdaRole, "s3:DeleteObject", pack.clone(), none.clone(), N, "never touches the backup bucket"),
        (LambdaRole, "s3:ListBucket", b.clone(), none.clone(), N, "never touches the backup bucket"),
        // jump box: write-once put + list via the endpoint, gate artifact, invoke clean
        (JumpboxRole, "s3:PutObject", pack.clone(), via.clone(), Y, "write-once put through the endpoint"),
        (JumpboxRole, "s3:PutObject", pack.clone(), ours.clone(), N, "put without If-None-Match (overwrite)"),
        (JumpboxRole, "s3:PutObject", pack.clone(), inm.clone(), N, "put around the endpoint (internet gateway)"),
        (JumpboxRole, "s3:PutObject", pack.clone(), [inm.clone(), one("aws:SourceVpce", "vpce-0bad0bad0bad0bad0")].concat(), N, "put through another endpoint"),
        (JumpboxRole, "s3:PutObject", pack.clone(), [via.clone(), plain.clone()].concat(), N, "backup bucket is TLS only"),
        (JumpboxRole, "s3:ListBucket", b.clone(), ours.clone(), Y, "list through the endpoint"),
        (JumpboxRole, "s3:ListBucket", b.clone(), none.clone(), N, "list around the endpoint"),
        (JumpboxRole, "s3:GetObject", pack.clone(), ours.clone(), N, "cannot read a backup"),
        (JumpboxRole, "s3:DeleteObject", pack.clone(), ours.clone(), N, "cannot delete a backup"),
        (JumpboxRole, "s3:DeleteObjectVersion", pack.clone(), ours.clone(), N, "cannot delete an old version"),
        (JumpboxRole, "s3:PutObjectRetention", pack.clone(), ours.clone(), N, "cannot change a backup's Object Lock"),
        (JumpboxRole, "s3:BypassGovernanceRetention", pack.clone(), ours.clone(), N, "cannot bypass Object Lock"),
        (JumpboxRole, "s3:GetObject", gate.clone(), ours.clone(), Y, "fetch the gate artifact"),
        (JumpboxRole, "s3:GetObject", state_obj.clone(), ours.clone(), N, "cannot read session state"),
        (JumpboxRole, "s3:PutObject", gate.clone(), via.clone(), N, "cannot replace the gate artifact"),
        (JumpboxRole, "lambda:InvokeFunction", clean.clone(), none.clone(), Y, "invoke ferry-clean"),
        (JumpboxRole, "lambda:InvokeFunction", build.clone(), none.clone(), N, "cannot invoke ferry-build"),
        (JumpboxRole, "ec2:TerminateInstances", format!("{ec2}:instance/i-0123456789abcdef0"), rtags.clone(), N, "no EC2"),
        // operator (admin role listed in operator_arns): restore, prune, upload the gate
        (Operator, "s3:GetObject", pack.clone(), none.clone(), Y, "restore reads backups"),
        (Operator, "s3:DeleteObject", pack.clone(), none.clone(), Y, "prune deletes backups"),
        (Operator, "s3:ListBucket", b.clone(), none.clone(), Y, "list backups"),
        (Operator, "s3:PutObject", pack.clone(), inm.clone(), Y, "prune writes repacked packs, indexes, records"),
        (Operator, "s3:PutObject", pack.clone(), none.clone(), Y, "prune's CopyObject to trash/ (no If-None-Match)"),
        (Operator, "s3:PutObject", pack.clone(), [inm.clone(), plain.clone()].concat(), N, "TLS only"),
        (Operator, "s3:GetObject", pack.clone(), plain.clone(), N, "TLS only"),
        (Operator, "s3:GetObject", pack.clone(), ours.clone(), N, "endpoint policy: no reads through the endpoint"),
        (Operator, "s3:PutObject", gate.clone(), none.clone(), Y, "upload the gate artifact"),
    ];
    // an operator that is a role with a path (IAM Identity Center), matched by its full ARN;
    // only when the inputs name a second operator that is a role with a path
    if p.operator_arns
        .get(1)
        .and_then(|a| same_name_role_arn(p, a))
        .is_some()
    {
        rows.extend([
            (
                PathOperator,
                "s3:GetObject",
                pack.clone(),
                none.clone(),
                Y,
                "restore reads backups",
            ),
            (
                PathOperator,
                "s3:ListBucket",
                b.clone(),
                none.clone(),
                Y,
                "list backups",
            ),
            (
                PathOperator,
                "s3:DeleteObject",
                pack.clone(),
                none.clone(),
                Y,
                "prune deletes backups",
            ),
            (
                SameNameRole,
                "s3:GetObject",
                pack.clone(),
                none.clone(),
                N,
                "the operator is the role with its path",
            ),
            (
                SameNameRole,
                "s3:ListBucket",
                b.clone(),
                none.clone(),
                N,
                "the operator is the role with its path",
            ),
        ]);
    }
    rows.extend([
        // defence in depth: the jump-box role with an identity policy widened to everything
        (
            JumpboxWidened,
            "s3:PutObject",
            pack.clone(),
            inm.clone(),
            N,
            "bucket policy: puts only through the endpoint",
        ),
        (
            JumpboxWidened,
            "s3:PutObject",
            pack.clone(),
            ours.clone(),
            N,
            "bucket policy: puts only with If-None-Match",
        ),
        (
            JumpboxWidened,
            "s3:PutObject",
            pack.clone(),
            via.clone(),
            Y,
            "the one way in stays open",
        ),
        (
            JumpboxWidened,
            "s3:GetObject",
            pack.clone(),
            none.clone(),
            N,
            "bucket policy: only the operator reads",
        ),
        (
            JumpboxWidened,
            "s3:DeleteObject",
            pack.clone(),
            none.clone(),
            N,
            "bucket policy: only the operator deletes",
        ),
        (
            JumpboxWidened,
            "s3:GetObject",
            state_obj.clone(),
            none.clone(),
            N,
            "state bucket: jump box reads artifacts/ only",
        ),
        (
            JumpboxWidened,
            "s3:GetObject",
            pack.clone(),
            ours.clone(),
            N,
            "endpoint policy: no reads through the endpoint",
        ),
        // any other administrator of the account (not an operator)
        (
            OtherAdmin,
            "s3:ListBucket",
            s.clone(),
            none.clone(),
            N,
            "state bucket: only the Lambda role/operator list",
        ),
        (
            OtherAdmin,
            "s3:GetObject",
            pack.clone(),
            none.clone(),
            N,
            "bucket policy: only the operator reads",
        ),
        (
            OtherAdmin,
            "s3:DeleteObject",
            pack.clone(),
            none.clone(),
            N,
            "bucket policy: only the operator deletes",
        ),
        (
            OtherAdmin,
            "s3:ListBucket",
            b.clone(),
            none.clone(),
            N,
            "bucket policy: only jump box/operator list",
        ),
        (
            OtherAdmin,
            "s3:PutObject",
            pack.clone(),
            via.clone(),
            N,
            "bucket policy: only the jump box and the operator put",
        ),
        (
            OtherAdmin,
            "s3:GetObject",
            state_obj.clone(),
            none.clone(),
            N,
            "state bucket: Lambda role only",
        ),
        (
            OtherAdmin,
            "s3:PutObject",
            gate.clone(),
            none,
            N,
            "cannot plant a gate artifact",
        ),
    ]);
    rows.into_iter()
        .map(|(who, action, resource, ctx, expected, why)| Case {
            who,
            action: action.to_string(),
            resource,
            context: ctx,
            expected,
            why: why.to_string(),
        })
        .collect()
}

/// The matrix as JSON for the policy proof: `{"cases": [{principal, action, resource,
/// context: [[k, v], …], expected, why}, …]}` (context as pairs, to keep its order).
pub fn matrix_json(p: &PolicyInputs) -> Value {
    json!({
        "cases": matrix(p).iter().map(|c| json!({
            "principal": c.who.label(),
            "action": c.action,
            "resource": c.resource,
            "context": c.context.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "expected": c.expected,
            "why": c.why,
        })).collect::<Vec<_>>()
    })
}

/// Writes `<dir>/matrix.json` ([`matrix_json`]) next to the documents
/// [`policy::dump_documents`] writes, for the policy proof.
pub fn dump_matrix(p: &PolicyInputs, dir: &std::path::Path) -> crate::Result<std::path::PathBuf> {
    use crate::error::IoContext;
    let path = dir.join("matrix.json");
    std::fs::write(&path, serde_json::to_string_pretty(&matrix_json(p))? + "\n")
        .io("writing", &path)?;
    Ok(path)
}

/// The documents a matrix is evaluated on: generated, or read from the account.
#[derive(Debug, Clone)]
pub struct Documents {
    /// Trust policy of the Lambda role (who may assume it).
    pub lambda_trust: Value,
    /// Trust policy of the jump box role.
    pub jumpbox_trust: Value,
    /// Every identity policy of each real principal (inline and attached).
    pub lambda_role: Vec<Value>,
    /// Identity policies of the jump box role.
    pub jumpbox_role: Vec<Value>,
    /// Identity policies of the backup user.
    pub backup_user: Vec<Value>,
    /// Bucket policy of the backup bucket.
    pub backup_bucket: Value,
    /// Bucket policy of the state bucket.
    pub state_bucket: Value,
    /// Policy of the S3 gateway endpoint.
    pub endpoint: Value,
    /// The functions' resource policies (`None`: the function has none).
    pub build_function: Option<Value>,
    /// ferry-clean's resource policy (the sweep rule's permission); `None`: it has none.
    pub clean_function: Option<Value>,
}

impl Documents {
    /// The documents as [`policy`] generates them.
    pub fn generated(p: &PolicyInputs) -> Documents {
        Documents {
            lambda_trust: policy::lambda_trust_policy(),
            jumpbox_trust: policy::jumpbox_trust_policy(),
            lambda_role: vec![policy::lambda_role_policy(p)],
            jumpbox_role: vec![policy::jumpbox_role_policy(p)],
            backup_user: vec![policy::backup_user_policy(p)],
            backup_bucket: policy::backup_bucket_policy(p),
            state_bucket: policy::state_bucket_policy(p),
            endpoint: policy::s3_endpoint_policy(p),
            build_function: None,
            clean_function: Some(policy::clean_function_policy(p)),
        }
    }

    /// The resource policy that governs `resource` (bucket, trust or function policy).
    pub fn resource_policy(
        &self,
        p: &PolicyInputs,
        action: &str,
        resource: &str,
    ) -> Option<&Value> {
        let in_bucket = |bucket: &str| {
            let arn = p.bucket_arn(bucket);
            resource == arn || resource.starts_with(&format!("{arn}/"))
        };
        if action.eq_ignore_ascii_case("sts:AssumeRole") {
            if resource == p.lambda_role_arn() {
                return Some(&self.lambda_trust);
            }
            if resource == p.jumpbox_role_arn() {
                return Some(&self.jumpbox_trust);
            }
            return None;
        }
        if in_bucket(&p.backup_bucket) {
            return Some(&self.backup_bucket);
        }
        if in_bucket(&p.state_bucket) {
            return Some(&self.state_bucket);
        }
        if resource == p.build_function_arn() {
            return self.build_function.as_ref();
        }
        if resource == p.clean_function_arn() {
            return self.clean_function.as_ref();
        }
        None
    }
}

/// The context of a case as AWS fills it: the case's entries plus `aws:PrincipalArn` (for an
/// assumed role: the role's ARN, path included —
/// <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-principalarn>).
pub fn full_context(case: &Case, p: &PolicyInputs) -> Vec<(String, String)> {
    let mut c = case.context.clone();
    if let Some(arn) = case.who.arn(p)
        && !c
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("aws:PrincipalArn"))
    {
        c.push(("aws:PrincipalArn".into(), arn));
    }
    c
}

/// Whether the request arrives through this installation's S3 gateway endpoint.
pub fn through_endpoint(case: &Case, p: &PolicyInputs) -> bool {
    case.action.starts_with("s3:")
        && case
            .context
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("aws:SourceVpce") && *v == p.vpce_id)
}

/// Why the local evaluator gives no verdict for a case: the document it cannot read, and
/// what in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The principal has no ARN (no operator resolved).
    #[error("{who} has no ARN (no operator?)")]
    NoArn {
        /// The principal's label ([`Who::label`]).
        who: &'static str,
    },
    /// The principal's `number`th identity policy (from 1).
    #[error("identity policy #{number} of {who}: {error}")]
    Identity {
        /// Position of the policy among the principal's identity policies, from 1.
        number: usize,
        /// The principal's label ([`Who::label`]).
        who: &'static str,
        /// What in the policy the evaluator cannot read.
        error: eval::PolicyError,
    },
    /// The resource's policy (bucket, function, role trust).
    #[error("resource policy: {0}")]
    Resource(eval::PolicyError),
    /// The S3 endpoint's policy.
    #[error("endpoint policy: {0}")]
    Endpoint(eval::PolicyError),
}

/// The matrix evaluated locally on one set of documents.
pub struct LocalWorld<'a> {
    /// The installation's identifiers, to resolve principals and resources to ARNs.
    pub inputs: &'a PolicyInputs,
    /// The documents evaluated.
    pub docs: &'a Documents,
    /// Identity policies of the operator (an administrator unless told otherwise).
    pub operator: Vec<Value>,
}

impl<'a> LocalWorld<'a> {
    /// A world on `docs` whose operator is an administrator ([`admin_policy`]).
    pub fn new(inputs: &'a PolicyInputs, docs: &'a Documents) -> LocalWorld<'a> {
        LocalWorld {
            inputs,
            docs,
            operator: vec![admin_policy()],
        }
    }

    fn identity(&self, who: Who) -> Vec<Value> {
        match who {
            Who::BackupUser => self.docs.backup_user.clone(),
            Who::LambdaRole => self.docs.lambda_role.clone(),
            Who::JumpboxRole => self.docs.jumpbox_role.clone(),
            Who::Operator | Who::PathOperator => self.operator.clone(),
            Who::JumpboxWidened | Who::OtherAdmin | Who::SameNameRole => vec![admin_policy()],
            Who::Service(_) => Vec::new(),
        }
    }

    /// `Ok(true)`: allowed. Errors name the document the evaluator cannot read.
    pub fn evaluate(&self, case: &Case) -> Result<bool, EvalError> {
        let p = self.inputs;
        let ctx = full_context(case, p);
        let arn = case.who.arn(p);
        let caller = match (&case.who, &arn) {
            (Who::Service(s), _) => Caller::Service(s),
            (_, Some(a)) => Caller::Aws(a),
            (w, None) => return Err(EvalError::NoArn { who: w.label() }),
        };
        let req = Request {
            caller,
            action: &case.action,
            resource: &case.resource,
            context: &ctx,
        };
        let rp = self.docs.resource_policy(p, &case.action, &case.resource);
        let (mut allow, mut deny) = (false, false);
        for (i, doc) in self.identity(case.who).iter().enumerate() {
            let v = eval::evaluate(doc, &req, false).map_err(|error| EvalError::Identity {
                number: i + 1,
                who: case.who.label(),
                error,
            })?;
            allow |= v.allows();
            deny |= v.denies();
        }
        if let Some(rp) = rp {
            let v = eval::evaluate(rp, &req, true).map_err(EvalError::Resource)?;
            allow |= v.allows();
            deny |= v.denies();
        }
        let mut allowed = allow && !deny;
        if allowed && through_endpoint(case, p) {
            let v = eval::evaluate(&self.docs.endpoint, &req, true).map_err(EvalError::Endpoint)?;
            allowed = v.allows() && !v.denies();
        }
        Ok(allowed)
    }

    /// Only the endpoint policy's verdict (for a request through the endpoint).
    pub fn endpoint_allows(&self, case: &Case) -> Result<bool, EvalError> {
        let p = self.inputs;
        let ctx = full_context(case, p);
        let arn = case.who.arn(p).unwrap_or_default();
        let req = Request {
            caller: Caller::Aws(&arn),
            action: &case.action,
            resource: &case.resource,
            context: &ctx,
        };
        let v = eval::evaluate(&self.docs.endpoint, &req, true).map_err(EvalError::Endpoint)?;
        Ok(v.allows() && !v.denies())
    }
}

/// A short name for a resource ARN, as the matrix prints it.
pub fn short_resource(p: &PolicyInputs, resource: &str) -> String {
    for (bucket, label) in [(&p.backup_bucket, "backup"), (&p.state_bucket, "state")] {
        let arn = p.bucket_arn(bucket);
        if resource == arn {
            return format!("{label} bucket");
        }
        if let Some(rest) = resource.strip_prefix(&format!("{arn}/")) {
            let rest: String = if rest.chars().count() > 28 {
                rest.chars().take(24).chain(['…']).collect()
            } else {
                rest.to_string()
            };
            return format!("{label}:{rest}");
        }
    }
    if resource.starts_with("arn:") {
        let tail = resource.splitn(6, ':').nth(5).unwrap_or(resource);
        if let Some(f) = tail.strip_prefix("function:") {
            return f.to_string();
        }
        return tail.to_string();
    }
    resource.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_has_the_documented_size_and_both_answers() {
        let p = policy::example_inputs().unwrap();
        let m = matrix(&p);
        assert_eq!(m.len(), 105);
        assert!(m.iter().any(|c| c.expected) && m.iter().any(|c| !c.expected));
        // Generated from the inputs: names follow them.
        assert!(m.iter().any(|c| c.resource == p.clean_function_arn()));
        assert!(
            m.iter()
                .any(|c| c.context.iter().any(|(_, v)| *v == p.vpce_id))
        );
    }

    #[test]
    fn local_evaluator_agrees_with_every_expected_value_on_the_generated_documents() {
        let p = policy::example_inputs().unwrap();
        let docs = Documents::generated(&p);
        let w = LocalWorld::new(&p, &docs);
        let wrong: Vec<String> = matrix(&p)
            .iter()
            .enumerate()
            .filter(|(_, c)| w.evaluate(c) != Ok(c.expected))
            .map(|(i, c)| {
                format!(
                    "#{} {} {} {}: {:?}",
                    i + 1,
                    c.who.label(),
                    c.action,
                    c.resource,
                    w.evaluate(c)
                )
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn local_evaluator_reports_a_weakened_bucket_policy() {
        let p = policy::example_inputs().unwrap();
        let mut docs = Documents::generated(&p);
        let st = docs.backup_bucket["Statement"].as_array_mut().unwrap();
        st.retain(|s| s["Sid"] != "DenyPutWithoutIfNoneMatch");
        let w = LocalWorld::new(&p, &docs);
        let wrong: Vec<String> = matrix(&p)
            .into_iter()
            .filter(|c| w.evaluate(c) != Ok(c.expected))
            .map(|c| c.why)
            .collect();
        assert_eq!(wrong, ["bucket policy: puts only with If-None-Match"]);
    }

    #[test]
    fn every_statement_changes_some_case() {
        // Statement coverage, as proof.py checks it with principalmapper: no statement of the
        // generated documents is dead weight for this evaluator either.
        let p = policy::example_inputs().unwrap();
        let m = matrix(&p);
        let base = Documents::generated(&p);
        let baseline: Vec<_> = {
            let w = LocalWorld::new(&p, &base);
            m.iter().map(|c| w.evaluate(c)).collect()
        };
        type Pick = fn(&mut Documents) -> &mut Value;
        let picks: [(&str, Pick); 8] = [
            ("lambda-role-trust", |d| &mut d.lambda_trust),
            ("jumpbox-role-trust", |d| &mut d.jumpbox_trust),
            ("lambda-role-policy", |d| &mut d.lambda_role[0]),
            ("jumpbox-role-policy", |d| &mut d.jumpbox_role[0]),
            ("backup-user-policy", |d| &mut d.backup_user[0]),
            ("backup-bucket-policy", |d| &mut d.backup_bucket),
            ("state-bucket-policy", |d| &mut d.state_bucket),
            ("s3-endpoint-policy", |d| &mut d.endpoint),
        ];
        let mut uncovered = Vec::new();
        for (name, pick) in picks {
            let n = pick(&mut base.clone())["Statement"]
                .as_array()
                .unwrap()
                .len();
            for i in 0..n {
                let mut d = base.clone();
                let sid = pick(&mut d)["Statement"][i]["Sid"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string();
                pick(&mut d)["Statement"].as_array_mut().unwrap().remove(i);
                let w = LocalWorld::new(&p, &d);
                if m.iter().zip(&baseline).all(|(c, b)| w.evaluate(c) == *b) {
                    uncovered.push(format!("{name} {sid}"));
                }
            }
        }
        assert!(uncovered.is_empty(), "{uncovered:?}");
    }

    #[test]
    fn short_names() {
        let p = policy::example_inputs().unwrap();
        assert_eq!(
            short_resource(&p, &p.bucket_arn(&p.backup_bucket)),
            "backup bucket"
        );
        assert_eq!(short_resource(&p, &p.clean_function_arn()), "ferry-clean");
        assert_eq!(
            short_resource(&p, &format!("{}/{PACK}", p.bucket_arn(&p.backup_bucket))),
            "backup:site1/packs/9f86d081884c…"
        );
    }
}
