//! `ferry infra verify`: the authorization matrix ([`crate::verify::matrix`]) on the live
//! account, through IAM's policy simulator.
//!
//! The documents are read from the account (role and user policies, trust policies, bucket
//! policies, the S3 endpoint's policy, the functions' resource policies), never regenerated, so
//! drift or a hand-made change shows as a case that differs. Each case goes to the simulator
//! (<https://docs.aws.amazon.com/IAM/latest/APIReference/API_SimulatePrincipalPolicy.html>,
//! <https://docs.aws.amazon.com/IAM/latest/APIReference/API_SimulateCustomPolicy.html>):
//! - a real principal (backup user, Lambda role, jump-box role, operator) →
//!   `SimulatePrincipalPolicy` with `PolicySourceArn` = the principal, so every policy attached
//!   to it counts, and `ResourcePolicy` = the bucket (or trust) policy read from the account;
//! - a hypothetical principal (the widened jump-box role, another administrator) →
//!   `SimulateCustomPolicy` with an allow-everything identity policy and the same resource
//!   policy.
//!
//! What the simulator cannot model is said per case and evaluated by Ferry's local evaluator
//! ([`crate::verify::eval`]) on the same live documents:
//! - `CallerArn` may only be an IAM user, and is required with a `ResourcePolicy` when the
//!   principal is not a user: the backup user stands in, and the principal is passed as the
//!   `aws:PrincipalArn` context entry, which is what Ferry's bucket policies judge (their
//!   `Principal` is `*`);
//! - service principals (trust policies, the sweep rule invoking ferry-clean) and the account
//!   root cannot be callers, and the simulator ignores a trust policy passed as
//!   `ResourcePolicy` for `sts:AssumeRole` (<https://github.com/aws/aws-cli/issues/10314>):
//!   local evaluator;
//! - VPC endpoint policies are not simulated: a request through the endpoint that the simulator
//!   allows must also pass the live endpoint policy in the local evaluator.
//!
//! Where the simulator does not answer at all (an unknown operation, a server error, no
//! permission to call it — moto 5.2.5 answers HTTP 500 for both operations), verify says so
//! once and evaluates every case locally. The decision is made on the simulator's answer, never
//! on the endpoint.

use std::fmt::Write as _;

use crate::error::{AwsContext, Error, Missing, Result};
use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_iam::types::{ContextEntry, ContextKeyTypeEnum, PolicyEvaluationDecisionType};
use serde::Serialize;
use serde_json::Value;

use super::{Ctx, Mode, network, url_decode};
use crate::policy::PolicyInputs;
use crate::verify::{
    self, Case, Documents, LocalWorld, Who, admin_policy, full_context, short_resource,
    through_endpoint,
};

/// One case's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    /// 1-based position of the case in the matrix.
    pub n: usize,
    /// The principal, as [`crate::verify::Who::label`] spells it (`backup-user`, `operator`, …).
    pub principal: &'static str,
    /// IAM action, `service:Action` (`s3:GetObject`).
    pub action: String,
    /// ARN of the resource the request is about.
    pub resource: String,
    /// Request context keys and values besides `aws:PrincipalArn`, as in the matrix.
    pub context: Vec<(String, String)>,
    /// `allow` or `deny`, from the trust table.
    pub expected: &'static str,
    /// `allow`, `deny`, or `error`.
    pub got: &'static str,
    /// `simulator`, `simulator+local` (endpoint policy evaluated locally) or `local`.
    pub by: &'static str,
    /// Whether `got` equals `expected` (never for `error`).
    pub ok: bool,
    /// Why the matrix expects that answer.
    pub why: String,
    /// Why a part was evaluated locally, or the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The whole report (`--json` prints it as is).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The installation's prefix.
    pub installation: String,
    /// AWS account id (12 digits) the documents were read from.
    pub account: String,
    /// Region of the installation.
    pub region: String,
    /// `true` when the simulator answered (at least one case).
    pub simulator: bool,
    /// Why the simulator was not used, if it was not.
    pub simulator_unavailable: Option<String>,
    /// Every case of the matrix, in matrix order.
    pub cases: Vec<CaseReport>,
    /// Number of cases whose answer matches the expected one.
    pub ok: usize,
    /// Number of cases that differ (or errored); `ferry infra verify` exits 1 when non-zero.
    pub diff: usize,
}

pub(super) async fn run(ctx: &mut Ctx, json: bool, out: &mut dyn std::io::Write) -> Result<i32> {
    ctx.mode = Mode::Plan;
    network::converge(ctx).await?;
    if ctx.vpce_id.is_none() {
        return Err(Error::NotFound {
            what: format!(
                "installation {:?}: no S3 gateway endpoint found in the ferry VPC: run `ferry infra apply` first",
                ctx.cfg.names.prefix
            ),
        });
    }
    let p = ctx.policy_inputs()?;
    let docs = read_documents(ctx, &p).await?;
    let report = evaluate(ctx, &p, &docs).await;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        out.write_all(render(&report, &p).as_bytes())?;
    }
    Ok(if report.diff == 0 { 0 } else { 1 })
}

fn parse(what: &str, text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|source| Error::PolicyJson {
        what: what.to_string(),
        source,
    })
}

/// Every inline and attached policy of a role (`user == false`) or user.
async fn identity_policies(ctx: &Ctx, name: &str, user: bool) -> Result<Vec<Value>> {
    let kind = if user { "user" } else { "role" };
    let mut docs = Vec::new();
    let (inline, attached): (Vec<String>, Vec<String>) = if user {
        let i = ctx
            .iam
            .list_user_policies()
            .user_name(name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .aws("iam:ListUserPolicies", || name.to_string())?;
        let a = ctx
            .iam
            .list_attached_user_policies()
            .user_name(name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .aws("iam:ListAttachedUserPolicies", || name.to_string())?;
        (
            i,
            a.iter()
                .filter_map(|p| p.policy_arn().map(str::to_string))
                .collect(),
        )
    } else {
        let i = ctx
            .iam
            .list_role_policies()
            .role_name(name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .aws("iam:ListRolePolicies", || name.to_string())?;
        let a = ctx
            .iam
            .list_attached_role_policies()
            .role_name(name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .aws("iam:ListAttachedRolePolicies", || name.to_string())?;
        (
            i,
            a.iter()
                .filter_map(|p| p.policy_arn().map(str::to_string))
                .collect(),
        )
    };
    for pn in inline {
        let text = if user {
            ctx.iam
                .get_user_policy()
                .user_name(name)
                .policy_name(&pn)
                .send()
                .await
                .aws("iam:GetUserPolicy", || format!("{name}/{pn}"))?
                .policy_document()
                .to_string()
        } else {
            ctx.iam
                .get_role_policy()
                .role_name(name)
                .policy_name(&pn)
                .send()
                .await
                .aws("iam:GetRolePolicy", || format!("{name}/{pn}"))?
                .policy_document()
                .to_string()
        };
        docs.push(parse(
            &format!("{kind} {name} policy {pn}"),
            &url_decode(&text),
        )?);
    }
    for arn in attached {
        let pol = ctx
            .iam
            .get_policy()
            .policy_arn(&arn)
            .send()
            .await
            .aws("iam:GetPolicy", || arn.to_string())?;
        let version = pol
            .policy()
            .and_then(|p| p.default_version_id())
            .missing(|| format!("iam:GetPolicy {arn}: no default version"))?;
        let v = ctx
            .iam
            .get_policy_version()
            .policy_arn(&arn)
            .version_id(version)
            .send()
            .await
            .aws("iam:GetPolicyVersion", || format!("{arn} {version}"))?;
        let text = v
            .policy_version()
            .and_then(|v| v.document())
            .missing(|| format!("iam:GetPolicyVersion {arn}: no document"))?;
        docs.push(parse(
            &format!("{kind} {name} managed policy {arn}"),
            &url_decode(text),
        )?);
    }
    Ok(docs)
}

async fn trust_policy(ctx: &Ctx, role: &str) -> Result<Value> {
    let r = ctx
        .iam
        .get_role()
        .role_name(role)
        .send()
        .await
        .aws("iam:GetRole", || {
            format!("{role} (run `ferry infra apply` first)")
        })?;
    let text = r
        .role()
        .and_then(|r| r.assume_role_policy_document())
        .missing(|| format!("iam:GetRole {role}: no trust policy"))?;
    parse(&format!("trust policy of {role}"), &url_decode(text))
}

/// A bucket without a policy is evaluated as one with no statement (so what its policy should
/// deny shows as a difference).
async fn bucket_policy(ctx: &Ctx, bucket: &str) -> Result<Value> {
    match ctx.s3.get_bucket_policy().bucket(bucket).send().await {
        Ok(r) => parse(
            &format!("bucket policy of {bucket}"),
            r.policy().unwrap_or(r#"{"Statement": []}"#),
        ),
        Err(e) if e.code() == Some("NoSuchBucketPolicy") => {
            Ok(serde_json::json!({"Statement": []}))
        }
        Err(e) => Err(Error::aws("s3:GetBucketPolicy", bucket.to_string(), e)),
    }
}

async fn function_policy(ctx: &Ctx, function: &str) -> Result<Option<Value>> {
    match ctx.lambda.get_policy().function_name(function).send().await {
        Ok(r) => r
            .policy()
            .map(|t| parse(&format!("resource policy of function {function}"), t))
            .transpose(),
        Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(None),
        Err(e) => Err(Error::aws("lambda:GetPolicy", function.to_string(), e)),
    }
}

async fn read_documents(ctx: &Ctx, p: &PolicyInputs) -> Result<Documents> {
    let n = &ctx.cfg.names;
    let vpce = p.vpce_id.clone();
    let ep = ctx
        .ec2
        .describe_vpc_endpoints()
        .vpc_endpoint_ids(&vpce)
        .send()
        .await
        .aws("ec2:DescribeVpcEndpoints", || vpce.to_string())?;
    let endpoint_text = ep
        .vpc_endpoints()
        .first()
        .and_then(|e| e.policy_document())
        .missing(|| format!("S3 endpoint {vpce} has no policy document"))?;
    Ok(Documents {
        lambda_trust: trust_policy(ctx, &n.lambda_role).await?,
        jumpbox_trust: trust_policy(ctx, &n.jumpbox_role).await?,
        lambda_role: identity_policies(ctx, &n.lambda_role, false).await?,
        jumpbox_role: identity_policies(ctx, &n.jumpbox_role, false).await?,
        backup_user: identity_policies(ctx, &n.backup_user, true).await?,
        backup_bucket: bucket_policy(ctx, &p.backup_bucket).await?,
        state_bucket: bucket_policy(ctx, &p.state_bucket).await?,
        endpoint: parse(&format!("policy of S3 endpoint {vpce}"), endpoint_text)?,
        build_function: function_policy(ctx, &n.build_function).await?,
        clean_function: function_policy(ctx, &n.clean_function).await?,
    })
}

/// How one case can be put to the simulator, or why not.
enum Route {
    Principal(String),
    Custom,
    Local(&'static str),
}

fn route(case: &Case, p: &PolicyInputs) -> Route {
    if case.action.eq_ignore_ascii_case("sts:AssumeRole") {
        // https://github.com/aws/aws-cli/issues/10314: the simulator ignores ResourcePolicy
        // for sts:Assume* (a denying trust policy still simulates as allowed).
        return Route::Local("the simulator ignores trust policies for sts:AssumeRole");
    }
    match case.who {
        Who::Service(_) => Route::Local("the simulator takes no service principal as caller"),
        w if w.hypothetical() => Route::Custom,
        w => match w.arn(p) {
            Some(a) if a.ends_with(":root") => {
                Route::Local("the simulator cannot simulate the account root")
            }
            Some(a) => Route::Principal(a),
            None => Route::Local("no principal ARN"),
        },
    }
}

/// The simulator's answer for one case: `Ok(Some(allowed))`, `Ok(None)` when the simulator is
/// unavailable (the reason in `Err` of the outer result is for other errors).
enum SimAnswer {
    Decision(bool),
    /// The simulator does not answer here at all: the reason.
    Unavailable(String),
    /// It answered with an error for this case.
    Failed(String),
}

fn classify<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    op: &str,
    e: aws_sdk_iam::error::SdkError<E, aws_sdk_iam::config::http::HttpResponse>,
) -> SimAnswer {
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.code().map(str::to_string);
    let message = e.message().map(str::to_string);
    let text = format!(
        "iam:{op} answered {}{}{}",
        status
            .map(|s| format!("HTTP {s}"))
            .unwrap_or_else(|| "no HTTP response".into()),
        code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(),
        message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default(),
    );
    let unavailable = status.is_none_or(|s| s >= 500)
        || code.is_none()
        || matches!(
            code.as_deref(),
            Some(
                "InvalidAction"
                    | "NotImplemented"
                    | "UnknownOperationException"
                    | "AccessDenied"
                    | "AccessDeniedException"
                    | "UnauthorizedOperation"
            )
        );
    if unavailable {
        SimAnswer::Unavailable(text)
    } else {
        SimAnswer::Failed(format!(
            "{text} ({})",
            aws_sdk_iam::error::DisplayErrorContext(&e)
        ))
    }
}

fn context_entries(case: &Case, p: &PolicyInputs) -> Vec<ContextEntry> {
    full_context(case, p)
        .into_iter()
        .map(|(k, v)| {
            let ty = if k.eq_ignore_ascii_case("aws:SecureTransport") {
                ContextKeyTypeEnum::Boolean
            } else {
                ContextKeyTypeEnum::String
            };
            ContextEntry::builder()
                .context_key_name(k)
                .context_key_values(v)
                .context_key_type(ty)
                .build()
        })
        .collect()
}

fn decision(results: &[aws_sdk_iam::types::EvaluationResult]) -> SimAnswer {
    match results {
        [r] => SimAnswer::Decision(*r.eval_decision() == PolicyEvaluationDecisionType::Allowed),
        other => SimAnswer::Failed(format!(
            "the simulator returned {} results for one action",
            other.len()
        )),
    }
}

async fn simulate(
    ctx: &Ctx,
    p: &PolicyInputs,
    docs: &Documents,
    case: &Case,
    route: &Route,
) -> SimAnswer {
    let rp = docs
        .resource_policy(p, &case.action, &case.resource)
        .map(Value::to_string);
    let owner = rp
        .as_ref()
        .map(|_| format!("arn:{}:iam::{}:root", p.partition, p.account_id));
    // CallerArn may only be an IAM user and is needed with a resource policy: the backup user
    // stands in, the real principal is in aws:PrincipalArn.
    let stand_in = |is_user: bool| (rp.is_some() && !is_user).then(|| p.backup_user_arn());
    let entries = context_entries(case, p);
    match route {
        Route::Principal(arn) => {
            let is_user = arn.contains(":user/");
            match ctx
                .iam
                .simulate_principal_policy()
                .policy_source_arn(arn)
                .action_names(&case.action)
                .resource_arns(&case.resource)
                .set_resource_policy(rp.clone())
                .set_resource_owner(owner)
                .set_caller_arn(stand_in(is_user))
                .set_context_entries(Some(entries))
                .send()
                .await
            {
                Ok(r) => decision(r.evaluation_results()),
                Err(e) => classify("SimulatePrincipalPolicy", e),
            }
        }
        Route::Custom => match ctx
            .iam
            .simulate_custom_policy()
            .policy_input_list(admin_policy().to_string())
            .action_names(&case.action)
            .resource_arns(&case.resource)
            .set_resource_policy(rp.clone())
            .set_resource_owner(owner)
            .set_caller_arn(stand_in(false))
            .set_context_entries(Some(entries))
            .send()
            .await
        {
            Ok(r) => decision(r.evaluation_results()),
            Err(e) => classify("SimulateCustomPolicy", e),
        },
        Route::Local(why) => SimAnswer::Failed((*why).into()),
    }
}

const ENDPOINT_NOTE: &str =
    "endpoint policy by the local evaluator: the simulator does not model VPC endpoint policies";

/// Why a case got no verdict; its text is the report row's note.
#[derive(Debug, thiserror::Error)]
enum NoVerdict {
    /// The local evaluator cannot read a document the case needs.
    #[error(transparent)]
    Local(#[from] crate::verify::EvalError),
    /// The simulator answered this case with an error (or with no single result).
    #[error("{0}")]
    Simulator(String),
}

/// A local verdict as the report shows it: allowed or denied, or why none.
fn local(r: Result<bool, crate::verify::EvalError>) -> Result<bool, NoVerdict> {
    r.map_err(NoVerdict::Local)
}

async fn evaluate(ctx: &Ctx, p: &PolicyInputs, docs: &Documents) -> Report {
    let world = LocalWorld::new(p, docs);
    let mut unavailable: Option<String> = None;
    let mut simulated_any = false;
    let mut cases = Vec::new();
    for (i, case) in verify::matrix(p).iter().enumerate() {
        let r = route(case, p);
        let mut note = None;
        let (got, by): (Result<bool, NoVerdict>, &'static str) = match (&r, &unavailable) {
            (Route::Local(why), _) => {
                note = Some(format!("local evaluator: {why}"));
                (local(world.evaluate(case)), "local")
            }
            (_, Some(_)) => (local(world.evaluate(case)), "local"),
            _ => match simulate(ctx, p, docs, case, &r).await {
                SimAnswer::Decision(allowed) => {
                    simulated_any = true;
                    if allowed && through_endpoint(case, p) {
                        note = Some(ENDPOINT_NOTE.into());
                        (local(world.endpoint_allows(case)), "simulator+local")
                    } else {
                        (Ok(allowed), "simulator")
                    }
                }
                SimAnswer::Unavailable(why) => {
                    unavailable = Some(why);
                    (local(world.evaluate(case)), "local")
                }
                SimAnswer::Failed(e) => (Err(NoVerdict::Simulator(e)), "simulator"),
            },
        };
        let word = |b: bool| if b { "allow" } else { "deny" };
        let ok = got.as_ref().is_ok_and(|g| *g == case.expected);
        if let Err(e) = &got {
            note = Some(e.to_string());
        }
        cases.push(CaseReport {
            n: i + 1,
            principal: case.who.label(),
            action: case.action.clone(),
            resource: case.resource.clone(),
            context: case.context.clone(),
            expected: word(case.expected),
            got: got.as_ref().map(|g| word(*g)).unwrap_or("error"),
            by,
            ok,
            why: case.why.clone(),
            note,
        });
    }
    let ok = cases.iter().filter(|c| c.ok).count();
    Report {
        installation: ctx.cfg.names.prefix.clone(),
        account: p.account_id.clone(),
        region: p.region.clone(),
        simulator: simulated_any,
        simulator_unavailable: unavailable,
        diff: cases.len() - ok,
        ok,
        cases,
    }
}

/// The request context in a few words.
pub fn describe_context(context: &[(String, String)], p: &PolicyInputs) -> String {
    let parts: Vec<String> = context
        .iter()
        .map(|(k, v)| match k.as_str() {
            "aws:SourceVpce" if *v == p.vpce_id => "via ferry endpoint".to_string(),
            "aws:SourceVpce" => "via other endpoint".to_string(),
            "s3:if-none-match" => "If-None-Match".to_string(),
            "aws:SecureTransport" if v == "false" => "plain HTTP".to_string(),
            _ => {
                let k = k
                    .strip_prefix("aws:RequestTag/")
                    .map(|t| format!("RequestTag/{t}"))
                    .or_else(|| {
                        k.strip_prefix("aws:ResourceTag/")
                            .map(|t| format!("ResourceTag/{t}"))
                    })
                    .unwrap_or_else(|| k.clone());
                let v = if v.starts_with("arn:") {
                    v.rsplit(':').next().unwrap_or(v)
                } else {
                    v
                };
                format!("{k}={v}")
            }
        })
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

fn render(r: &Report, p: &PolicyInputs) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Authorization matrix of installation {:?}, account {} ({}): {} cases on the live documents.",
        r.installation,
        r.account,
        r.region,
        r.cases.len()
    );
    match &r.simulator_unavailable {
        Some(why) => {
            let _ = writeln!(
                s,
                "IAM policy simulator unavailable ({why}): {} evaluated by Ferry's local evaluator on the same live documents.",
                if r.simulator {
                    "the remaining cases are"
                } else {
                    "every case is"
                }
            );
        }
        None => {
            let _ = writeln!(
                s,
                "Evaluated by IAM's policy simulator (SimulatePrincipalPolicy / SimulateCustomPolicy); what it cannot model is said per case."
            );
        }
    }
    let _ = writeln!(
        s,
        "{:>3} {:<21} {:<26} {:<34} {:<8} {:<8} {:<16} result",
        "#", "principal", "action", "resource", "expected", "got", "by"
    );
    for c in &r.cases {
        let _ = writeln!(
            s,
            "{:>3} {:<21} {:<26} {:<34} {:<8} {:<8} {:<16} {}  {} [{}]",
            c.n,
            c.principal,
            c.action,
            short_resource(p, &c.resource),
            c.expected,
            c.got,
            c.by,
            if c.ok { "OK  " } else { "DIFF" },
            c.why,
            describe_context(&c.context, p),
        );
        if let Some(n) = &c.note
            && (!c.ok || n != ENDPOINT_NOTE)
        {
            let _ = writeln!(s, "      {n}");
        }
    }
    let _ = writeln!(s, "{} cases: {} OK, {} DIFF.", r.cases.len(), r.ok, r.diff);
    if r.diff > 0 {
        let _ = writeln!(
            s,
            "The live policies do not say what DESIGN.md's trust table says: `ferry infra plan` shows drift; `ferry infra apply` restores the generated documents."
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_what_the_simulator_can_model() {
        let p = crate::policy::example_inputs().unwrap();
        let m = verify::matrix(&p);
        let by = |w: Who| m.iter().find(|c| c.who == w).map(|c| route(c, &p)).unwrap();
        assert!(
            matches!(by(Who::BackupUser), Route::Principal(a) if a.ends_with(":user/ferry-backup"))
        );
        assert!(matches!(by(Who::Operator), Route::Principal(_)));
        assert!(matches!(by(Who::OtherAdmin), Route::Custom));
        assert!(matches!(
            by(Who::Service("events.amazonaws.com")),
            Route::Local(_)
        ));
        let assume = m
            .iter()
            .find(|c| c.who == Who::BackupUser && c.action == "sts:AssumeRole")
            .unwrap();
        assert!(matches!(route(assume, &p), Route::Local(_)));
        let c = m.iter().find(|c| c.who == Who::JumpboxRole).unwrap();
        let e = context_entries(c, &p);
        assert!(
            e.iter()
                .any(|e| e.context_key_name() == Some("aws:PrincipalArn")
                    && e.context_key_values() == [p.jumpbox_role_arn()])
        );
    }

    #[test]
    fn contexts_read_short() {
        let p = crate::policy::example_inputs().unwrap();
        let c = vec![
            ("aws:SourceVpce".to_string(), p.vpce_id.clone()),
            ("s3:if-none-match".into(), "*".into()),
            ("aws:ResourceTag/ferry:session".into(), "s-1".into()),
            ("ec2:Vpc".into(), "arn:aws:ec2:r:1:vpc/vpc-1".into()),
        ];
        assert_eq!(
            describe_context(&c, &p),
            "via ferry endpoint, If-None-Match, ResourceTag/ferry:session=s-1, ec2:Vpc=vpc/vpc-1"
        );
        assert_eq!(describe_context(&[], &p), "-");
    }
}
