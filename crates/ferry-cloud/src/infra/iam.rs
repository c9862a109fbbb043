//! The Lambda role, the jump-box role and its instance profile, the backup user and its key.

use std::io::Write;

use crate::error::{AwsContext, BuildContext, Error, IoContext, Missing, Result};
use aws_sdk_iam::types::Tag;
use serde_json::Value;

use super::{Change, Ctx, same_policy, url_decode};
use crate::policy;

fn iam_tags(ctx: &Ctx, name: &str) -> Result<Vec<Tag>> {
    ctx.tags(name)
        .into_iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .build_ctx("an IAM tag")
        })
        .collect()
}

fn tag_drift(ctx: &Ctx, name: &str, have: &[Tag]) -> Vec<String> {
    let mut d = Vec::new();
    for (k, v) in ctx.tags(name) {
        let got = have.iter().find(|t| t.key() == k).map(|t| t.value());
        if got != Some(v.as_str()) {
            d.push(format!("tag {k}: {} -> {v}", got.unwrap_or("(none)")));
        }
    }
    d
}

/// Refuses to adopt an IAM entity of the same name that another installation (or a person) made.
fn check_owner(ctx: &Ctx, kind: &str, name: &str, have: &[Tag]) -> Result<()> {
    let inst = have
        .iter()
        .find(|t| t.key() == policy::TAG_INSTALLATION)
        .map(|t| t.value());
    match inst {
        Some(p) if p == ctx.cfg.names.prefix => Ok(()),
        Some(p) => Err(Error::NotOurs {
            resource: format!("IAM {kind} {name}"),
            why: format!(
                "belongs to ferry installation {p:?}, not {:?}",
                ctx.cfg.names.prefix
            ),
        }),
        None => Err(Error::NotOurs {
            resource: format!("IAM {kind} {name}"),
            why: format!(
                "exists but is not tagged {}={}: not created by ferry; rename the prefix or delete it",
                policy::TAG_INSTALLATION,
                ctx.cfg.names.prefix
            ),
        }),
    }
}

pub(super) async fn converge(ctx: &mut Ctx) -> Result<()> {
    let p = ctx.policy_inputs()?;
    let n = ctx.cfg.names.clone();
    role(
        ctx,
        &n.lambda_role,
        &policy::lambda_trust_policy(),
        &n.lambda_role_policy,
        &policy::lambda_role_policy(&p),
    )
    .await?;
    role(
        ctx,
        &n.jumpbox_role,
        &policy::jumpbox_trust_policy(),
        &n.jumpbox_role_policy,
        &policy::jumpbox_role_policy(&p),
    )
    .await?;
    instance_profile(ctx).await?;
    user(ctx, &policy::backup_user_policy(&p)).await?;
    Ok(())
}

async fn role(
    ctx: &mut Ctx,
    name: &str,
    trust: &Value,
    policy_name: &str,
    doc: &Value,
) -> Result<()> {
    let got = ctx.iam.get_role().role_name(name).send().await;
    let mut drift = Vec::new();
    let exists = match got {
        Ok(r) => {
            let role = r.role().missing(|| "GetRole returned no role")?;
            check_owner(ctx, "role", name, role.tags())?;
            drift.extend(tag_drift(ctx, name, role.tags()));
            if !role
                .assume_role_policy_document()
                .is_some_and(|d| same_policy(&url_decode(d), trust))
            {
                drift.push("trust policy: differs -> generated".into());
            }
            true
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            false
        }
        Err(e) => return Err(Error::aws("iam:GetRole", name.to_string(), e)),
    };
    let inline_ok = if exists {
        match ctx
            .iam
            .get_role_policy()
            .role_name(name)
            .policy_name(policy_name)
            .send()
            .await
        {
            Ok(r) => same_policy(&url_decode(r.policy_document()), doc),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                false
            }
            Err(e) => {
                return Err(Error::aws(
                    "iam:GetRolePolicy",
                    format!("{name}/{policy_name}"),
                    e,
                ));
            }
        }
    } else {
        false
    };
    if exists && !inline_ok {
        drift.push(format!("inline policy {policy_name}: differs -> generated"));
    }
    let change = match (exists, drift.is_empty()) {
        (false, _) => Change::Create,
        (true, true) => Change::Unchanged,
        (true, false) => Change::Update(drift.clone()),
    };
    ctx.record("iam-role", name, None, change.clone());
    if !ctx.apply() || change == Change::Unchanged {
        return Ok(());
    }
    if !exists {
        ctx.iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(trust.to_string())
            .set_tags(Some(iam_tags(ctx, name)?))
            .send()
            .await
            .aws("iam:CreateRole", || name.to_string())?;
    } else {
        ctx.iam
            .tag_role()
            .role_name(name)
            .set_tags(Some(iam_tags(ctx, name)?))
            .send()
            .await
            .aws("iam:TagRole", || name.to_string())?;
        ctx.iam
            .update_assume_role_policy()
            .role_name(name)
            .policy_document(trust.to_string())
            .send()
            .await
            .aws("iam:UpdateAssumeRolePolicy", || name.to_string())?;
    }
    if !inline_ok {
        ctx.iam
            .put_role_policy()
            .role_name(name)
            .policy_name(policy_name)
            .policy_document(doc.to_string())
            .send()
            .await
            .aws("iam:PutRolePolicy", || format!("{name}/{policy_name}"))?;
    }
    Ok(())
}

async fn instance_profile(ctx: &mut Ctx) -> Result<()> {
    let name = ctx.cfg.names.jumpbox_instance_profile.clone();
    let role = ctx.cfg.names.jumpbox_role.clone();
    let got = ctx
        .iam
        .get_instance_profile()
        .instance_profile_name(&name)
        .send()
        .await;
    let (exists, has_role) = match got {
        Ok(r) => {
            let ip = r
                .instance_profile()
                .missing(|| "GetInstanceProfile returned nothing")?;
            let roles: Vec<&str> = ip.roles().iter().map(|r| r.role_name()).collect();
            if roles.iter().any(|r| *r != role) {
                return Err(Error::NotOurs {
                    resource: format!("instance profile {name}"),
                    why: format!(
                        "holds other roles ({}): not ferry's; delete it or rename the prefix",
                        roles.join(",")
                    ),
                });
            }
            (true, roles.contains(&role.as_str()))
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            (false, false)
        }
        Err(e) => {
            return Err(Error::aws("iam:GetInstanceProfile", name.to_string(), e));
        }
    };
    let change = match (exists, has_role) {
        (false, _) => Change::Create,
        (true, true) => Change::Unchanged,
        (true, false) => Change::Update(vec![format!("role: (none) -> {role}")]),
    };
    ctx.record("instance-profile", &name, None, change.clone());
    if !ctx.apply() || change == Change::Unchanged {
        return Ok(());
    }
    if !exists {
        ctx.iam
            .create_instance_profile()
            .instance_profile_name(&name)
            .set_tags(Some(iam_tags(ctx, &name)?))
            .send()
            .await
            .aws("iam:CreateInstanceProfile", || name.to_string())?;
    }
    ctx.iam
        .add_role_to_instance_profile()
        .instance_profile_name(&name)
        .role_name(&role)
        .send()
        .await
        .aws("iam:AddRoleToInstanceProfile", || format!("{name} {role}"))?;
    Ok(())
}

async fn user(ctx: &mut Ctx, doc: &Value) -> Result<()> {
    let name = ctx.cfg.names.backup_user.clone();
    let policy_name = ctx.cfg.names.backup_user_policy.clone();
    let mut drift = Vec::new();
    let exists = match ctx.iam.get_user().user_name(&name).send().await {
        Ok(r) => {
            let u = r.user().missing(|| "GetUser returned no user")?;
            check_owner(ctx, "user", &name, u.tags())?;
            drift.extend(tag_drift(ctx, &name, u.tags()));
            true
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            false
        }
        Err(e) => return Err(Error::aws("iam:GetUser", name.to_string(), e)),
    };
    let (inline_ok, extra_policies, keys) = if exists {
        let inline_ok = match ctx
            .iam
            .get_user_policy()
            .user_name(&name)
            .policy_name(&policy_name)
            .send()
            .await
        {
            Ok(r) => same_policy(&url_decode(r.policy_document()), doc),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                false
            }
            Err(e) => {
                return Err(Error::aws(
                    "iam:GetUserPolicy",
                    format!("{name}/{policy_name}"),
                    e,
                ));
            }
        };
        let listed = ctx
            .iam
            .list_user_policies()
            .user_name(&name)
            .send()
            .await
            .aws("iam:ListUserPolicies", || name.to_string())?;
        let extra: Vec<String> = listed
            .policy_names()
            .iter()
            .filter(|p| **p != policy_name)
            .cloned()
            .collect();
        let attached = ctx
            .iam
            .list_attached_user_policies()
            .user_name(&name)
            .send()
            .await
            .aws("iam:ListAttachedUserPolicies", || name.to_string())?;
        let attached: Vec<String> = attached
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_string))
            .collect();
        let keys = ctx
            .iam
            .list_access_keys()
            .user_name(&name)
            .send()
            .await
            .aws("iam:ListAccessKeys", || name.to_string())?
            .access_key_metadata()
            .len();
        (inline_ok, (extra, attached), keys)
    } else {
        (false, (Vec::new(), Vec::new()), 0)
    };
    if exists && !inline_ok {
        drift.push(format!("inline policy {policy_name}: differs -> generated"));
    }
    for p in &extra_policies.0 {
        drift.push(format!(
            "inline policy {p}: present -> removed (least privilege)"
        ));
    }
    for p in &extra_policies.1 {
        drift.push(format!(
            "attached policy {p}: present -> detached (least privilege)"
        ));
    }
    if exists && keys == 0 {
        drift.push("access key: none -> created".into());
    }
    let change = match (exists, drift.is_empty()) {
        (false, _) => Change::Create,
        (true, true) => Change::Unchanged,
        (true, false) => Change::Update(drift),
    };
    ctx.record("iam-user", &name, None, change.clone());
    if !ctx.apply() || change == Change::Unchanged {
        return Ok(());
    }
    if !exists {
        ctx.iam
            .create_user()
            .user_name(&name)
            .set_tags(Some(iam_tags(ctx, &name)?))
            .send()
            .await
            .aws("iam:CreateUser", || name.to_string())?;
    } else {
        ctx.iam
            .tag_user()
            .user_name(&name)
            .set_tags(Some(iam_tags(ctx, &name)?))
            .send()
            .await
            .aws("iam:TagUser", || name.to_string())?;
    }
    for p in &extra_policies.0 {
        ctx.iam
            .delete_user_policy()
            .user_name(&name)
            .policy_name(p)
            .send()
            .await
            .aws("iam:DeleteUserPolicy", || format!("{name}/{p}"))?;
    }
    for p in &extra_policies.1 {
        ctx.iam
            .detach_user_policy()
            .user_name(&name)
            .policy_arn(p)
            .send()
            .await
            .aws("iam:DetachUserPolicy", || format!("{name} {p}"))?;
    }
    if !inline_ok {
        ctx.iam
            .put_user_policy()
            .user_name(&name)
            .policy_name(&policy_name)
            .policy_document(doc.to_string())
            .send()
            .await
            .aws("iam:PutUserPolicy", || format!("{name}/{policy_name}"))?;
    }
    if keys == 0 {
        create_key(ctx, &name).await?;
    }
    Ok(())
}

/// Creates the backup user's access key and writes it, once, to the credentials file (0600).
/// The secret is never printed; if the file cannot be written the key is deleted again so the
/// next apply retries cleanly.
async fn create_key(ctx: &mut Ctx, user: &str) -> Result<()> {
    let path = ctx.credentials_out.clone().ok_or_else(|| Error::Refused {
        why: "no credentials file path for the backup user's access key".to_string(),
    })?;
    if path.exists() {
        return Err(Error::Refused {
            why: format!(
                "{} already exists: move it away (its key is no longer on {user}) and apply again",
                path.display()
            ),
        });
    }
    let r = ctx
        .iam
        .create_access_key()
        .user_name(user)
        .send()
        .await
        .aws("iam:CreateAccessKey", || user.to_string())?;
    let key = r
        .access_key()
        .missing(|| "CreateAccessKey returned no key")?;
    let id = key.access_key_id().to_string();
    let mut body = zeroize::Zeroizing::new(format!(
        "[{user}]\naws_access_key_id = {id}\naws_secret_access_key = {}\nregion = {}\n",
        key.secret_access_key(),
        ctx.cfg.raw.region
    ));
    let written = write_0600(&path, body.as_bytes());
    body.clear();
    if let Err(e) = written {
        let undone = ctx
            .iam
            .delete_access_key()
            .user_name(user)
            .access_key_id(&id)
            .send()
            .await;
        let what = match undone {
            Ok(_) => "was deleted again".to_string(),
            Err(d) => format!(
                "could NOT be deleted again ({}): delete it by hand (iam delete-access-key)",
                aws_sdk_iam::error::DisplayErrorContext(&d)
            ),
        };
        return Err(e.context(format!(
            "writing the credentials for {user} (the new key {id} {what})"
        )));
    }
    ctx.notes.push(format!(
        "The backup VM's access key {id} was written to {} (mode 0600, profile [{user}]); the secret is not shown anywhere else.",
        path.display()
    ));
    Ok(())
}

/// Write a new file (never an existing one) readable only by its owner, and sync it.
pub fn write_0600(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .io("creating", path)?;
    f.write_all(bytes).io("writing", path)?;
    f.sync_all().io("syncing", path)?;
    Ok(())
}

/// `Ok(None)` when IAM says the entity does not exist (`NoSuchEntity`); any other error is an
/// error (a throttle or a denied read must not be taken for "already gone").
fn found<T, E>(
    r: Result<T, aws_sdk_iam::error::SdkError<E>>,
    call: &'static str,
    resource: &str,
) -> Result<Option<T>>
where
    E: aws_sdk_iam::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("NoSuchEntity") => Ok(None),
        Err(e) => Err(Error::aws(call, resource, e)),
    }
}

pub(super) async fn destroy(ctx: &mut Ctx, out: &mut dyn Write) -> Result<()> {
    let n = ctx.cfg.names.clone();
    // The user and its keys.
    if found(
        ctx.iam.get_user().user_name(&n.backup_user).send().await,
        "iam:GetUser",
        &n.backup_user,
    )?
    .is_some()
    {
        let keys = ctx
            .iam
            .list_access_keys()
            .user_name(&n.backup_user)
            .send()
            .await
            .aws("iam:ListAccessKeys", || n.backup_user.to_string())?;
        for k in keys.access_key_metadata() {
            if let Some(id) = k.access_key_id() {
                ctx.iam
                    .delete_access_key()
                    .user_name(&n.backup_user)
                    .access_key_id(id)
                    .send()
                    .await
                    .aws("iam:DeleteAccessKey", || format!("{} {id}", n.backup_user))?;
            }
        }
        let pols = ctx
            .iam
            .list_user_policies()
            .user_name(&n.backup_user)
            .send()
            .await
            .aws("iam:ListUserPolicies", || n.backup_user.to_string())?;
        for p in pols.policy_names() {
            ctx.iam
                .delete_user_policy()
                .user_name(&n.backup_user)
                .policy_name(p)
                .send()
                .await
                .aws("iam:DeleteUserPolicy", || format!("{}/{p}", n.backup_user))?;
        }
        ctx.iam
            .delete_user()
            .user_name(&n.backup_user)
            .send()
            .await
            .aws("iam:DeleteUser", || n.backup_user.to_string())?;
        writeln!(out, "- iam-user {}", n.backup_user)?;
    }
    if let Some(r) = found(
        ctx.iam
            .get_instance_profile()
            .instance_profile_name(&n.jumpbox_instance_profile)
            .send()
            .await,
        "iam:GetInstanceProfile",
        &n.jumpbox_instance_profile,
    )? {
        for role in r.instance_profile().map(|p| p.roles()).unwrap_or_default() {
            ctx.iam
                .remove_role_from_instance_profile()
                .instance_profile_name(&n.jumpbox_instance_profile)
                .role_name(role.role_name())
                .send()
                .await
                .aws("iam:RemoveRoleFromInstanceProfile", || {
                    n.jumpbox_instance_profile.to_string()
                })?;
        }
        ctx.iam
            .delete_instance_profile()
            .instance_profile_name(&n.jumpbox_instance_profile)
            .send()
            .await
            .aws("iam:DeleteInstanceProfile", || {
                n.jumpbox_instance_profile.to_string()
            })?;
        writeln!(out, "- instance-profile {}", n.jumpbox_instance_profile)?;
    }
    for role in [&n.jumpbox_role, &n.lambda_role] {
        if found(
            ctx.iam.get_role().role_name(role).send().await,
            "iam:GetRole",
            role,
        )?
        .is_none()
        {
            continue;
        }
        let pols = ctx
            .iam
            .list_role_policies()
            .role_name(role)
            .send()
            .await
            .aws("iam:ListRolePolicies", || role.to_string())?;
        for p in pols.policy_names() {
            ctx.iam
                .delete_role_policy()
                .role_name(role)
                .policy_name(p)
                .send()
                .await
                .aws("iam:DeleteRolePolicy", || format!("{role}/{p}"))?;
        }
        ctx.iam
            .delete_role()
            .role_name(role)
            .send()
            .await
            .aws("iam:DeleteRole", || role.to_string())?;
        writeln!(out, "- iam-role {role}")?;
    }
    Ok(())
}
