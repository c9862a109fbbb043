//! The two functions' CloudWatch log groups, `/aws/lambda/<function>`, created here with a
//! retention and the managed tags, before the functions.
//!
//! Lambda writes a function's logs to `/aws/lambda/<function>` with the function's execution
//! role, which needs `logs:CreateLogStream` and `logs:PutLogEvents`, and `logs:CreateLogGroup`
//! unless the group exists
//! (<https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs.html>). Creating the
//! groups here means the role needs no `CreateLogGroup` (it gets only the two write actions on
//! `log-group:/aws/lambda/<function>:*`, the log streams of its own two groups: see
//! [`crate::policy::lambda_role_policy`]), and the logs expire after [`RETENTION_DAYS`] instead
//! of never (a group Lambda creates itself keeps its logs forever).
//!
//! A group of that name that exists without ferry's tags (Lambda made it on a first invocation
//! before ferry managed the groups) is adopted: tagged and given the retention. One tagged for
//! another installation is an error. Destroy deletes the groups (and so the logs).

use std::collections::HashMap;
use std::io::Write;

use crate::error::{AwsContext, Error, Result};
use aws_sdk_cloudwatchlogs::types::LogGroup;

use super::{Change, Ctx};
use crate::policy::TAG_INSTALLATION;

/// How long the functions' logs are kept (a value PutRetentionPolicy accepts:
/// <https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html>).
/// Long enough to diagnose a month of daily backups; a few KiB a day, inside the free tier.
pub const RETENTION_DAYS: i32 = 30;

/// The log group Lambda writes `function`'s logs to.
pub fn group_name(function: &str) -> String {
    format!("/aws/lambda/{function}")
}

const KIND: &str = "log-group";

async fn find(ctx: &Ctx, name: &str) -> Result<Option<LogGroup>> {
    let r = ctx
        .logs
        .describe_log_groups()
        .log_group_name_prefix(name)
        .send()
        .await
        .aws("logs:DescribeLogGroups", || name.to_string())?;
    Ok(r.log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(name))
        .cloned())
}

/// The group's ARN without the `:*` DescribeLogGroups appends to `arn`, as the tagging API
/// takes it.
fn arn_of(ctx: &Ctx, g: &LogGroup, name: &str) -> String {
    g.log_group_arn()
        .map(str::to_string)
        .or_else(|| g.arn().map(|a| a.trim_end_matches(":*").to_string()))
        .unwrap_or_else(|| {
            format!(
                "arn:aws:logs:{}:{}:log-group:{name}",
                ctx.cfg.raw.region, ctx.account_id
            )
        })
}

/// The group's tags (`name` for the error's context).
async fn tags_of(ctx: &Ctx, arn: &str, name: &str) -> Result<HashMap<String, String>> {
    Ok(ctx
        .logs
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .aws("logs:ListTagsForResource", || name.to_string())?
        .tags()
        .cloned()
        .unwrap_or_default())
}

pub(super) async fn converge(ctx: &mut Ctx) -> Result<()> {
    let n = ctx.cfg.names.clone();
    for function in [&n.build_function, &n.clean_function] {
        group(ctx, &group_name(function)).await?;
    }
    Ok(())
}

async fn group(ctx: &mut Ctx, name: &str) -> Result<()> {
    let want_tags: HashMap<String, String> = ctx.tags(name).into_iter().collect();
    let Some(g) = find(ctx, name).await? else {
        ctx.record(KIND, name, None, Change::Create);
        if ctx.apply() {
            match ctx
                .logs
                .create_log_group()
                .log_group_name(name)
                .set_tags(Some(want_tags))
                .send()
                .await
            {
                Ok(_) => {}
                // Lambda may have created it since we looked (a function invoked meanwhile).
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_already_exists_exception()) =>
                {
                    return Err(Error::NotReady {
                        resource: format!("log group {name}"),
                        why: "was created by someone else while apply ran \
                              (a first invocation of the function?): run apply again to adopt it"
                            .to_string(),
                    });
                }
                Err(e) => {
                    return Err(Error::aws("logs:CreateLogGroup", name.to_string(), e));
                }
            }
            retention(ctx, name).await?;
        }
        return Ok(());
    };
    let arn = arn_of(ctx, &g, name);
    let have_tags = tags_of(ctx, &arn, name).await?;
    if let Some(p) = have_tags.get(TAG_INSTALLATION)
        && *p != ctx.cfg.names.prefix
    {
        return Err(Error::NotOurs {
            resource: format!("log group {name}"),
            why: format!(
                "belongs to ferry installation {p:?}, not {:?}",
                ctx.cfg.names.prefix
            ),
        });
    }
    let mut drift = Vec::new();
    if g.retention_in_days() != Some(RETENTION_DAYS) {
        drift.push(format!(
            "retention: {} -> {RETENTION_DAYS} days",
            g.retention_in_days()
                .map(|d| format!("{d} days"))
                .unwrap_or_else(|| "never expire".into())
        ));
    }
    let mut tag_drift = false;
    for (k, v) in &want_tags {
        if have_tags.get(k) != Some(v) {
            tag_drift = true;
            drift.push(format!(
                "tag {k}: {} -> {v}",
                have_tags.get(k).map(String::as_str).unwrap_or("(none)")
            ));
        }
    }
    if drift.is_empty() {
        ctx.record(KIND, name, None, Change::Unchanged);
        return Ok(());
    }
    let retention_drift = g.retention_in_days() != Some(RETENTION_DAYS);
    ctx.record(KIND, name, None, Change::Update(drift));
    if !ctx.apply() {
        return Ok(());
    }
    if tag_drift {
        ctx.logs
            .tag_resource()
            .resource_arn(&arn)
            .set_tags(Some(want_tags))
            .send()
            .await
            .aws("logs:TagResource", || name.to_string())?;
    }
    if retention_drift {
        retention(ctx, name).await?;
    }
    Ok(())
}

async fn retention(ctx: &Ctx, name: &str) -> Result<()> {
    ctx.logs
        .put_retention_policy()
        .log_group_name(name)
        .retention_in_days(RETENTION_DAYS)
        .send()
        .await
        .aws("logs:PutRetentionPolicy", || {
            format!("{name} ({RETENTION_DAYS} days)")
        })?;
    Ok(())
}

/// Deletes the groups this installation tagged (after the functions, so nothing writes to them).
pub(super) async fn destroy(ctx: &mut Ctx, out: &mut dyn Write) -> Result<()> {
    let n = ctx.cfg.names.clone();
    for function in [&n.build_function, &n.clean_function] {
        let name = group_name(function);
        let Some(g) = find(ctx, &name).await? else {
            continue;
        };
        let tags = tags_of(ctx, &arn_of(ctx, &g, &name), &name).await?;
        if tags.get(TAG_INSTALLATION) != Some(&n.prefix) {
            writeln!(
                out,
                "  (log group {name} is not tagged {TAG_INSTALLATION}={}: left in place)",
                n.prefix
            )?;
            continue;
        }
        match ctx
            .logs
            .delete_log_group()
            .log_group_name(&name)
            .send()
            .await
        {
            Ok(_) => writeln!(out, "- {KIND} {name}")?,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) => {}
            Err(e) => {
                return Err(Error::aws("logs:DeleteLogGroup", name.to_string(), e));
            }
        }
    }
    Ok(())
}
