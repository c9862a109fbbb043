//! The two Lambda functions (`<prefix>-build`, `<prefix>-clean`: one `bootstrap` binary on the
//! custom runtime `provided.al2023`, x86_64, code from `artifacts/bootstrap.zip` in the state
//! bucket) and the clean function's resource-policy statement that lets the sweep rule invoke it.
//!
//! The environment is ferry-lambda's contract (the table at the top of
//! `crates/ferry-lambda/src/config.rs`), filled from the validated config and the IDs found
//! during converge. Both functions get the same variables except `FERRY_HANDLER`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::Duration;

use crate::error::{AwsContext, Error, Missing, Result};
use aws_sdk_lambda::types::{
    Architecture, Environment, FunctionCode, LastUpdateStatus, Runtime, State,
};
use serde_json::Value;

use super::{Change, Ctx, same_policy};
use crate::policy::{self, LAMBDA_ARTIFACT_KEY, SWEEP_PERMISSION_SID};
use ferry_contract::{env, keys};

/// Memory of both functions. The handlers make a few SDK calls and wait; 256 MB keeps cold
/// starts of the ~10 MB release binary short and stays far inside the free tier.
pub const MEMORY_MB: i32 = 256;
/// ferry-build waits for the instance to run (about a minute on EC2).
pub const BUILD_TIMEOUT_S: i32 = 120;
/// ferry-clean waits for instances to terminate and retries security-group deletion.
pub const CLEAN_TIMEOUT_S: i32 = 300;
/// The functions' `Handler` setting; with the custom runtime it is only the name of the
/// executable in the package.
pub const HANDLER: &str = "bootstrap";
/// Lambda runtime of both functions: custom runtime on Amazon Linux 2023.
pub const RUNTIME: &str = "provided.al2023";
/// Instruction set of both functions (the artifacts are built for it).
pub const ARCH: &str = "x86_64";

/// Placeholder in a plan for an ID that apply creates first.
const PENDING: &str = "(created by apply)";

/// Bound on waiting for a function to become Active / finish an update.
const WAIT_POLLS: u32 = 90;
const WAIT_EVERY: Duration = Duration::from_secs(2);

/// What one function should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    /// Function name ([`crate::config::Names::build_function`] or `clean_function`).
    pub name: String,
    /// `build` or `clean`: the `FERRY_HANDLER` value that selects the handler in `bootstrap`.
    pub handler_kind: &'static str,
    /// Timeout in seconds ([`BUILD_TIMEOUT_S`] or [`CLEAN_TIMEOUT_S`]).
    pub timeout: i32,
    /// Memory in MB ([`MEMORY_MB`]).
    pub memory: i32,
    /// Environment variables, sorted by name (see `environment`).
    pub env: BTreeMap<String, String>,
}

/// The wanted environment of one handler. `gate_sha256` is `None` while planning without
/// artifacts.
pub(crate) fn environment(
    ctx: &Ctx,
    handler: &'static str,
    gate_sha256: Option<&str>,
) -> BTreeMap<String, String> {
    let c = &ctx.cfg;
    let mut e = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        e.insert(k.to_string(), v);
    };
    set(env::HANDLER, handler.into());
    set(env::INSTALLATION, c.names.prefix.clone());
    set(env::STATE_BUCKET, c.raw.state_bucket.clone());
    set(env::BACKUP_BUCKET, c.raw.backup_bucket.clone());
    set(
        env::SUBNET_ID,
        ctx.public_subnet_id
            .clone()
            .unwrap_or_else(|| PENDING.into()),
    );
    set(
        env::INSTANCE_PROFILE,
        c.names.jumpbox_instance_profile.clone(),
    );
    set(
        env::ALLOWED_SSH_CIDRS,
        c.allowed_ssh_cidrs
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    set(
        env::GATE_SHA256,
        gate_sha256.unwrap_or("(unknown: no artifacts)").to_string(),
    );
    set(env::GATE_KEY, keys::GATE_ARTIFACT.into());
    set(env::CLEAN_FUNCTION, c.names.clean_function.clone());
    set(env::INSTANCE_TYPE, c.raw.jumpbox.instance_type.clone());
    set(
        env::MAX_SESSION_MINUTES,
        c.raw.jumpbox.max_session_minutes.to_string(),
    );
    set(env::MAX_SESSIONS, c.raw.jumpbox.max_sessions.to_string());
    set(
        env::SESSIONS_PER_DAY,
        c.raw.jumpbox.sessions_per_day.to_string(),
    );
    set(
        env::GATE_MAX_SESSION_BYTES,
        c.raw.jumpbox.session_bytes().to_string(),
    );
    set(
        env::SITE_BYTES_PER_DAY,
        c.raw.jumpbox.site_bytes_per_day().to_string(),
    );
    e
}

fn specs(ctx: &Ctx) -> [FunctionSpec; 2] {
    let gate = ctx.artifacts.as_ref().map(|a| a.gate.sha256_hex.clone());
    let n = &ctx.cfg.names;
    [
        FunctionSpec {
            name: n.build_function.clone(),
            handler_kind: "build",
            timeout: BUILD_TIMEOUT_S,
            memory: MEMORY_MB,
            env: environment(ctx, "build", gate.as_deref()),
        },
        FunctionSpec {
            name: n.clean_function.clone(),
            handler_kind: "clean",
            timeout: CLEAN_TIMEOUT_S,
            memory: MEMORY_MB,
            env: environment(ctx, "clean", gate.as_deref()),
        },
    ]
}

pub(super) async fn converge(ctx: &mut Ctx) -> Result<()> {
    for spec in specs(ctx) {
        function(ctx, &spec).await?;
    }
    permission(ctx).await?;
    Ok(())
}

fn not_found<E: aws_sdk_lambda::error::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ResourceNotFoundException")
}

fn tag_map(ctx: &Ctx, name: &str) -> HashMap<String, String> {
    ctx.tags(name).into_iter().collect()
}

async fn function(ctx: &mut Ctx, spec: &FunctionSpec) -> Result<()> {
    let name = spec.name.as_str();
    let p = ctx.policy_inputs()?;
    let role_arn = p.lambda_role_arn();
    let got = match ctx.lambda.get_function().function_name(name).send().await {
        Ok(r) => Some(r),
        Err(e) if e.as_service_error().is_some_and(not_found) => None,
        Err(e) => {
            return Err(Error::aws("lambda:GetFunction", name.to_string(), e));
        }
    };
    let code_sha = ctx.artifacts.as_ref().map(|a| a.code_sha256_b64());
    let Some(got) = got else {
        ctx.record("lambda-function", name, None, Change::Create);
        if ctx.apply() {
            create(ctx, spec, &role_arn).await?;
        }
        return Ok(());
    };
    let conf = got
        .configuration()
        .missing(|| format!("lambda:GetFunction {name} returned no configuration"))?;
    let tags = got.tags().cloned().unwrap_or_default();
    match tags.get(policy::TAG_INSTALLATION) {
        Some(p) if *p == ctx.cfg.names.prefix => {}
        Some(p) => {
            return Err(Error::NotOurs {
                resource: format!("Lambda function {name}"),
                why: format!(
                    "belongs to ferry installation {p:?}, not {:?}",
                    ctx.cfg.names.prefix
                ),
            });
        }
        None => {
            return Err(Error::NotOurs {
                resource: format!("Lambda function {name}"),
                why: format!(
                    "exists but is not tagged {}={}: not created by ferry; delete it or rename the prefix",
                    policy::TAG_INSTALLATION,
                    ctx.cfg.names.prefix
                ),
            });
        }
    }
    let id = conf.function_arn().map(str::to_string);
    let mut config_drift = Vec::new();
    let mut code_drift = Vec::new();
    let runtime = conf.runtime().map(|r| r.as_str()).unwrap_or("(none)");
    if runtime != RUNTIME {
        config_drift.push(format!("runtime: {runtime} -> {RUNTIME}"));
    }
    let role = conf.role().unwrap_or("(none)");
    if role != role_arn {
        config_drift.push(format!("role: {role} -> {role_arn}"));
    }
    let handler = conf.handler().unwrap_or("(none)");
    if handler != HANDLER {
        config_drift.push(format!("handler: {handler} -> {HANDLER}"));
    }
    if conf.timeout() != Some(spec.timeout) {
        config_drift.push(format!(
            "timeout: {} -> {}",
            opt(conf.timeout()),
            spec.timeout
        ));
    }
    if conf.memory_size() != Some(spec.memory) {
        config_drift.push(format!(
            "memory: {} -> {}",
            opt(conf.memory_size()),
            spec.memory
        ));
    }
    let have_env: BTreeMap<String, String> = conf
        .environment()
        .and_then(|e| e.variables())
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mut want_env = spec.env.clone();
    if code_sha.is_none() {
        // Planning without artifacts: the gate's hash is not known here; keep what is there.
        if let Some(v) = have_env.get(env::GATE_SHA256) {
            want_env.insert(env::GATE_SHA256.into(), v.clone());
        }
    }
    let keys: std::collections::BTreeSet<&String> =
        want_env.keys().chain(have_env.keys()).collect();
    for k in keys {
        let (h, w) = (have_env.get(k), want_env.get(k));
        if h != w {
            config_drift.push(format!(
                "env {k}: {} -> {}",
                h.map(String::as_str).unwrap_or("(unset)"),
                w.map(String::as_str).unwrap_or("(unset)")
            ));
        }
    }
    let arch: Vec<&str> = conf.architectures().iter().map(|a| a.as_str()).collect();
    // No architectures listed means Lambda's default, x86_64.
    if !arch.is_empty() && arch != [ARCH] {
        code_drift.push(format!("architectures: {} -> {ARCH}", arch.join(",")));
    }
    if let Some(want) = &code_sha {
        let have = conf.code_sha256().unwrap_or("(none)");
        if have != want {
            code_drift.push(format!("code sha256: {have} -> {want}"));
        }
    }
    let want_tags = tag_map(ctx, name);
    let mut tag_drift = Vec::new();
    for (k, v) in &want_tags {
        if tags.get(k) != Some(v) {
            tag_drift.push(format!(
                "tag {k}: {} -> {v}",
                tags.get(k).map(String::as_str).unwrap_or("(none)")
            ));
        }
    }
    let all: Vec<String> = code_drift
        .iter()
        .chain(&config_drift)
        .chain(&tag_drift)
        .cloned()
        .collect();
    let change = if !all.is_empty() {
        Change::Update(all)
    } else if code_sha.is_none() {
        Change::Unknown(format!(
            "code and FERRY_GATE_SHA256 not compared: {}",
            ctx.artifacts_problem.as_deref().unwrap_or("no artifacts")
        ))
    } else {
        Change::Unchanged
    };
    ctx.record("lambda-function", name, id.as_deref(), change.clone());
    if !ctx.apply() || !matches!(change, Change::Update(_)) {
        return Ok(());
    }
    let arn = id.clone().unwrap_or_else(|| name.to_string());
    if !code_drift.is_empty() {
        wait_ready(ctx, name).await?;
        ctx.lambda
            .update_function_code()
            .function_name(name)
            .s3_bucket(&ctx.cfg.raw.state_bucket)
            .s3_key(LAMBDA_ARTIFACT_KEY)
            .architectures(Architecture::X8664)
            .send()
            .await
            .aws("lambda:UpdateFunctionCode", || name.to_string())?;
    }
    if !config_drift.is_empty() {
        // A function accepts one update at a time (ResourceConflictException otherwise).
        wait_ready(ctx, name).await?;
        ctx.lambda
            .update_function_configuration()
            .function_name(name)
            .runtime(Runtime::Providedal2023)
            .role(&role_arn)
            .handler(HANDLER)
            .timeout(spec.timeout)
            .memory_size(spec.memory)
            .environment(env_of(&spec.env))
            .send()
            .await
            .aws("lambda:UpdateFunctionConfiguration", || name.to_string())?;
    }
    if !tag_drift.is_empty() {
        ctx.lambda
            .tag_resource()
            .resource(&arn)
            .set_tags(Some(want_tags))
            .send()
            .await
            .aws("lambda:TagResource", || name.to_string())?;
    }
    wait_ready(ctx, name).await?;
    Ok(())
}

fn opt(v: Option<i32>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "(none)".into())
}

fn env_of(env: &BTreeMap<String, String>) -> Environment {
    Environment::builder()
        .set_variables(Some(
            env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ))
        .build()
}

/// Retries of CreateFunction while IAM has not yet propagated a just-created role.
const ROLE_PROPAGATION_TRIES: u32 = 15;
const ROLE_PROPAGATION_WAIT: Duration = Duration::from_secs(4);

async fn create(ctx: &mut Ctx, spec: &FunctionSpec, role_arn: &str) -> Result<()> {
    let name = spec.name.as_str();
    let mut tries = 0;
    loop {
        tries += 1;
        let r = ctx
            .lambda
            .create_function()
            .function_name(name)
            .description(format!(
                "ferry-{} of installation {} (bootstrap binary, managed by ferry infra)",
                spec.handler_kind, ctx.cfg.names.prefix
            ))
            .runtime(Runtime::Providedal2023)
            .architectures(Architecture::X8664)
            .role(role_arn)
            .handler(HANDLER)
            .code(
                FunctionCode::builder()
                    .s3_bucket(&ctx.cfg.raw.state_bucket)
                    .s3_key(LAMBDA_ARTIFACT_KEY)
                    .build(),
            )
            .timeout(spec.timeout)
            .memory_size(spec.memory)
            .environment(env_of(&spec.env))
            .set_tags(Some(tag_map(ctx, name)))
            .send()
            .await;
        match r {
            Ok(_) => break,
            // A role created seconds ago is not yet visible to Lambda ("The role defined for the
            // function cannot be assumed by Lambda"): IAM is eventually consistent. Bounded.
            Err(e)
                if tries < ROLE_PROPAGATION_TRIES
                    && e.as_service_error().is_some_and(|s| {
                        s.is_invalid_parameter_value_exception()
                            && s.meta()
                                .message()
                                .is_some_and(|m| m.contains("cannot be assumed"))
                    }) =>
            {
                tokio::time::sleep(ROLE_PROPAGATION_WAIT).await;
            }
            Err(e) => {
                return Err(Error::aws(
                    "lambda:CreateFunction",
                    format!(
                        "{name} (code s3://{}/{LAMBDA_ARTIFACT_KEY}, role {role_arn})",
                        ctx.cfg.raw.state_bucket
                    ),
                    e,
                ));
            }
        }
    }
    wait_ready(ctx, name).await
}

/// Waits (bounded) until the function is `Active` and no update is in progress.
async fn wait_ready(ctx: &Ctx, name: &str) -> Result<()> {
    for _ in 0..WAIT_POLLS {
        let c = ctx
            .lambda
            .get_function_configuration()
            .function_name(name)
            .send()
            .await
            .aws("lambda:GetFunctionConfiguration", || name.to_string())?;
        match (c.state(), c.last_update_status()) {
            (Some(State::Failed), _) => {
                return Err(Error::NotReady {
                    resource: format!("Lambda function {name}"),
                    why: format!(
                        "is in state Failed: {}",
                        c.state_reason().unwrap_or("no reason given")
                    ),
                });
            }
            (_, Some(LastUpdateStatus::Failed)) => {
                return Err(Error::NotReady {
                    resource: format!("the last update of Lambda function {name}"),
                    why: format!(
                        "failed: {}",
                        c.last_update_status_reason().unwrap_or("no reason given")
                    ),
                });
            }
            (Some(State::Pending), _) | (_, Some(LastUpdateStatus::InProgress)) => {
                tokio::time::sleep(WAIT_EVERY).await;
            }
            _ => return Ok(()),
        }
    }
    Err(Error::NotReady {
        resource: format!("Lambda function {name}"),
        why: format!(
            "was still pending or updating after {} s; run apply again",
            WAIT_POLLS as u64 * WAIT_EVERY.as_secs()
        ),
    })
}

/// The clean function's resource-policy statement for the sweep rule
/// ([`policy::sweep_invoke_permission`]).
async fn permission(ctx: &mut Ctx) -> Result<()> {
    let p = ctx.policy_inputs()?;
    let want = policy::sweep_invoke_permission(&p);
    let function = ctx.cfg.names.clean_function.clone();
    let label = format!("{function}/{SWEEP_PERMISSION_SID}");
    let doc = match ctx
        .lambda
        .get_policy()
        .function_name(&function)
        .send()
        .await
    {
        Ok(r) => r.policy().map(str::to_string),
        Err(e) if e.as_service_error().is_some_and(not_found) => None,
        Err(e) => {
            return Err(Error::aws("lambda:GetPolicy", function.to_string(), e));
        }
    };
    let have = doc
        .as_deref()
        .and_then(|d| find_statement(d, SWEEP_PERMISSION_SID));
    let change = match &have {
        None => Change::Create,
        Some(h) if same_statement(h, &want) => Change::Unchanged,
        Some(_) => Change::Update(vec![format!(
            "statement {SWEEP_PERMISSION_SID}: differs -> generated (events.amazonaws.com, source {})",
            p.sweep_rule_arn()
        )]),
    };
    ctx.record("lambda-permission", &label, None, change.clone());
    if !ctx.apply() || change == Change::Unchanged {
        return Ok(());
    }
    if have.is_some() {
        ctx.lambda
            .remove_permission()
            .function_name(&function)
            .statement_id(SWEEP_PERMISSION_SID)
            .send()
            .await
            .aws("lambda:RemovePermission", || label.to_string())?;
    }
    let field = |v: &Value| v.as_str().map(str::to_string);
    ctx.lambda
        .add_permission()
        .function_name(&function)
        .statement_id(SWEEP_PERMISSION_SID)
        .set_action(field(&want["Action"]))
        .set_principal(field(&want["Principal"]["Service"]))
        .set_source_arn(field(&want["Condition"]["ArnLike"]["AWS:SourceArn"]))
        .send()
        .await
        .aws("lambda:AddPermission", || label.to_string())?;
    Ok(())
}

fn find_statement(doc: &str, sid: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(doc).ok()?;
    let st = match &v["Statement"] {
        Value::Array(a) => a.clone(),
        o @ Value::Object(_) => vec![o.clone()],
        _ => return None,
    };
    st.into_iter().find(|s| s["Sid"] == sid)
}

/// Compares the fields that grant (not the bookkeeping Lambda adds).
fn same_statement(have: &Value, want: &Value) -> bool {
    let pick = |v: &Value| {
        let mut m = serde_json::Map::new();
        for k in [
            "Sid",
            "Effect",
            "Principal",
            "Action",
            "Resource",
            "Condition",
        ] {
            m.insert(k.into(), v[k].clone());
        }
        Value::Object(m)
    };
    same_policy(&pick(have).to_string(), &pick(want))
}

pub(super) async fn destroy(ctx: &mut Ctx, out: &mut dyn Write) -> Result<()> {
    let n = ctx.cfg.names.clone();
    for name in [&n.build_function, &n.clean_function] {
        match ctx.lambda.get_function().function_name(name).send().await {
            Ok(r) => {
                let inst = r.tags().and_then(|t| t.get(policy::TAG_INSTALLATION));
                if inst != Some(&n.prefix) {
                    return Err(Error::NotOurs {
                        resource: format!("Lambda function {name}"),
                        why: format!(
                            "is not tagged {}={}: not deleting what ferry did not create",
                            policy::TAG_INSTALLATION,
                            n.prefix
                        ),
                    });
                }
            }
            Err(e) if e.as_service_error().is_some_and(not_found) => continue,
            Err(e) => {
                return Err(Error::aws("lambda:GetFunction", name.to_string(), e));
            }
        }
        if *name == n.clean_function {
            match ctx
                .lambda
                .remove_permission()
                .function_name(name)
                .statement_id(SWEEP_PERMISSION_SID)
                .send()
                .await
            {
                Ok(_) => writeln!(out, "- lambda-permission {name}/{SWEEP_PERMISSION_SID}")?,
                Err(e) if e.as_service_error().is_some_and(not_found) => {}
                Err(e) => {
                    return Err(Error::aws(
                        "lambda:RemovePermission",
                        format!("{name}/{SWEEP_PERMISSION_SID}"),
                        e,
                    ));
                }
            }
        }
        ctx.lambda
            .delete_function()
            .function_name(name)
            .send()
            .await
            .aws("lambda:DeleteFunction", || name.to_string())?;
        writeln!(out, "- lambda-function {name}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_compare_on_what_grants() {
        let p = crate::policy::example_inputs().unwrap();
        let want = policy::sweep_invoke_permission(&p);
        // As Lambda stores it: one-element condition, extra bookkeeping ignored.
        let mut stored = want.clone();
        stored["Extra"] = Value::String("x".into());
        let doc =
            serde_json::json!({"Version": "2012-10-17", "Id": "default", "Statement": [stored]});
        let found = find_statement(&doc.to_string(), SWEEP_PERMISSION_SID).unwrap();
        assert!(same_statement(&found, &want));
        let mut other = want.clone();
        other["Condition"]["ArnLike"]["AWS:SourceArn"] =
            Value::String("arn:aws:events:eu-central-1:999999999999:rule/x".into());
        assert!(!same_statement(&other, &want));
        assert!(find_statement("{}", SWEEP_PERMISSION_SID).is_none());
    }
}
