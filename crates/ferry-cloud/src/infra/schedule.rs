//! The six-hourly sweep: EventBridge rule `<prefix>-sweep` (`rate(6 hours)`, enabled) whose one
//! target is the clean function with the constant input `{"sweep": true}`. The permission that
//! lets EventBridge invoke the function is in [`super::lambda`].

use std::io::Write;

use crate::error::{AwsContext, BuildContext, Error, Result};
use aws_sdk_eventbridge::operation::describe_rule::DescribeRuleOutput;
use aws_sdk_eventbridge::types::{RuleState, Tag, Target};
use serde_json::Value;

use super::{Change, Ctx, same_policy};
use crate::policy;

/// The sweep rule's schedule expression (EventBridge syntax). AWS refuses a rate whose unit's
/// number does not match its value (`rate(1 hour)`, `rate(6 hours)`; not `rate(6 hour)`):
/// <https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rate-expressions.html>. moto
/// does not check this, so the unit test below does. Why 6 hours: docs/LAMBDA.md.
pub const SCHEDULE: &str = "rate(6 hours)";
/// Id of the rule's one target.
pub const TARGET_ID: &str = "ferry-clean-sweep";

/// The input the clean function receives from the rule (ferry-contract's sweep request).
pub fn sweep_input() -> Value {
    serde_json::to_value(ferry_contract::lambda::CleanRequest::sweep()).unwrap_or_default()
}

fn not_found<E: aws_sdk_eventbridge::error::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ResourceNotFoundException")
}

fn eb_tags(ctx: &Ctx, name: &str) -> Result<Vec<Tag>> {
    ctx.tags(name)
        .into_iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .build_ctx("an EventBridge tag")
        })
        .collect()
}

/// The rule `name` with its ARN and tags, or `None` when it does not exist.
async fn describe(ctx: &Ctx, name: &str) -> Result<Option<(DescribeRuleOutput, String, Vec<Tag>)>> {
    let rule = match ctx.events.describe_rule().name(name).send().await {
        Ok(r) => r,
        Err(e) if e.as_service_error().is_some_and(not_found) => return Ok(None),
        Err(e) => {
            return Err(Error::aws("events:DescribeRule", name.to_string(), e));
        }
    };
    let arn = rule.arn().unwrap_or_default().to_string();
    let tags = ctx
        .events
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .aws("events:ListTagsForResource", || name.to_string())?
        .tags()
        .to_vec();
    Ok(Some((rule, arn, tags)))
}

pub(super) async fn converge(ctx: &mut Ctx) -> Result<()> {
    let name = ctx.cfg.names.sweep_rule.clone();
    let p = ctx.policy_inputs()?;
    let fn_arn = p.clean_function_arn();
    let input = sweep_input();
    let Some((rule, arn, tags)) = describe(ctx, &name).await? else {
        ctx.record("schedule-rule", &name, None, Change::Create);
        if ctx.apply() {
            put_rule(ctx, &name, true).await?;
            put_target(ctx, &name, &fn_arn, &input).await?;
        }
        return Ok(());
    };
    let get = |k: &str| tags.iter().find(|t| t.key() == k).map(|t| t.value());
    match get(policy::TAG_INSTALLATION) {
        Some(p) if p == ctx.cfg.names.prefix => {}
        other => {
            return Err(Error::NotOurs {
                resource: format!("EventBridge rule {name}"),
                why: format!(
                    "is tagged {}={} instead of {:?}: not this installation's; delete it or rename the prefix",
                    policy::TAG_INSTALLATION,
                    other.unwrap_or("(none)"),
                    ctx.cfg.names.prefix
                ),
            });
        }
    }
    let mut drift = Vec::new();
    let mut fix_rule = false;
    let sched = rule.schedule_expression().unwrap_or("(none)");
    if sched != SCHEDULE {
        drift.push(format!("schedule: {sched} -> {SCHEDULE}"));
        fix_rule = true;
    }
    let state = rule.state().map(|s| s.as_str()).unwrap_or("(none)");
    if state != "ENABLED" {
        drift.push(format!("state: {state} -> ENABLED"));
        fix_rule = true;
    }
    if rule.event_pattern().is_some() {
        drift.push("event pattern: present -> none".into());
        fix_rule = true;
    }
    let mut fix_tags = false;
    for (k, v) in ctx.tags(&name) {
        if get(&k) != Some(v.as_str()) {
            drift.push(format!("tag {k}: {} -> {v}", get(&k).unwrap_or("(none)")));
            fix_tags = true;
        }
    }
    let targets = ctx
        .events
        .list_targets_by_rule()
        .rule(&name)
        .send()
        .await
        .aws("events:ListTargetsByRule", || name.to_string())?;
    let mut extra = Vec::new();
    let mut target_ok = false;
    for t in targets.targets() {
        if t.id() == TARGET_ID {
            let arn_ok = t.arn() == fn_arn;
            let input_ok = t.input().is_some_and(|i| same_policy(i, &input));
            if !arn_ok {
                drift.push(format!("target {TARGET_ID} arn: {} -> {fn_arn}", t.arn()));
            }
            if !input_ok {
                drift.push(format!(
                    "target {TARGET_ID} input: {} -> {input}",
                    t.input().unwrap_or("(none)")
                ));
            }
            target_ok = arn_ok && input_ok;
        } else {
            drift.push(format!("target {}: present -> removed", t.id()));
            extra.push(t.id().to_string());
        }
    }
    if !targets.targets().iter().any(|t| t.id() == TARGET_ID) {
        drift.push(format!(
            "target {TARGET_ID}: missing -> {}",
            p.names.clean_function
        ));
    }
    let change = if drift.is_empty() {
        Change::Unchanged
    } else {
        Change::Update(drift)
    };
    ctx.record("schedule-rule", &name, Some(&arn), change.clone());
    if !ctx.apply() || change == Change::Unchanged {
        return Ok(());
    }
    if fix_rule {
        put_rule(ctx, &name, false).await?;
    }
    if fix_tags {
        ctx.events
            .tag_resource()
            .resource_arn(&arn)
            .set_tags(Some(eb_tags(ctx, &name)?))
            .send()
            .await
            .aws("events:TagResource", || name.to_string())?;
    }
    if !extra.is_empty() {
        ctx.events
            .remove_targets()
            .rule(&name)
            .set_ids(Some(extra))
            .send()
            .await
            .aws("events:RemoveTargets", || name.to_string())?;
    }
    if !target_ok {
        put_target(ctx, &name, &fn_arn, &input).await?;
    }
    Ok(())
}

async fn put_rule(ctx: &Ctx, name: &str, create: bool) -> Result<()> {
    let mut req = ctx
        .events
        .put_rule()
        .name(name)
        .schedule_expression(SCHEDULE)
        .state(RuleState::Enabled)
        .description(format!(
            "ferry installation {}: six-hourly sweep of expired and orphaned jump-box sessions",
            ctx.cfg.names.prefix
        ));
    if create {
        req = req.set_tags(Some(eb_tags(ctx, name)?));
    }
    req.send()
        .await
        .aws("events:PutRule", || format!("{name} ({SCHEDULE})"))?;
    Ok(())
}

async fn put_target(ctx: &Ctx, name: &str, fn_arn: &str, input: &Value) -> Result<()> {
    let t = Target::builder()
        .id(TARGET_ID)
        .arn(fn_arn)
        .input(input.to_string())
        .build()
        .build_ctx("the sweep target")?;
    let r = ctx
        .events
        .put_targets()
        .rule(name)
        .targets(t)
        .send()
        .await
        .aws("events:PutTargets", || format!("{name} -> {fn_arn}"))?;
    if r.failed_entry_count() > 0 {
        let why: Vec<String> = r
            .failed_entries()
            .iter()
            .map(|f| {
                format!(
                    "{}: {}",
                    f.error_code().unwrap_or("?"),
                    f.error_message().unwrap_or("?")
                )
            })
            .collect();
        return Err(Error::AwsRefused {
            call: "events:PutTargets",
            resource: format!("{name} -> {fn_arn}"),
            why: why.join("; "),
        });
    }
    Ok(())
}

pub(super) async fn destroy(ctx: &mut Ctx, out: &mut dyn Write) -> Result<()> {
    let name = ctx.cfg.names.sweep_rule.clone();
    let Some((_, _, tags)) = describe(ctx, &name).await? else {
        return Ok(());
    };
    if !tags
        .iter()
        .any(|t| t.key() == policy::TAG_INSTALLATION && t.value() == ctx.cfg.names.prefix)
    {
        return Err(Error::NotOurs {
            resource: format!("EventBridge rule {name}"),
            why: format!(
                "is not tagged {}={}: not deleting what ferry did not create",
                policy::TAG_INSTALLATION,
                ctx.cfg.names.prefix
            ),
        });
    }
    let targets = ctx
        .events
        .list_targets_by_rule()
        .rule(&name)
        .send()
        .await
        .aws("events:ListTargetsByRule", || name.to_string())?;
    let ids: Vec<String> = targets
        .targets()
        .iter()
        .map(|t| t.id().to_string())
        .collect();
    if !ids.is_empty() {
        ctx.events
            .remove_targets()
            .rule(&name)
            .set_ids(Some(ids))
            .send()
            .await
            .aws("events:RemoveTargets", || name.to_string())?;
    }
    ctx.events
        .delete_rule()
        .name(&name)
        .send()
        .await
        .aws("events:DeleteRule", || name.to_string())?;
    writeln!(out, "- schedule-rule {name}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::SCHEDULE;

    /// EventBridge's rate grammar: `rate(value unit)`, value a positive integer, unit
    /// minute|hour|day, singular exactly when value is 1 (link at [`SCHEDULE`]).
    fn valid_rate(expr: &str) -> bool {
        let Some(inner) = expr.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) else {
            return false;
        };
        let mut it = inner.split(' ');
        let (Some(v), Some(unit), None) = (it.next(), it.next(), it.next()) else {
            return false;
        };
        let Ok(v) = v.parse::<u64>() else {
            return false;
        };
        let singular = ["minute", "hour", "day"].contains(&unit);
        let plural = ["minutes", "hours", "days"].contains(&unit);
        v >= 1 && if v == 1 { singular } else { plural }
    }

    #[test]
    fn the_schedule_is_a_rate_eventbridge_accepts() {
        assert!(valid_rate(SCHEDULE), "{SCHEDULE}");
        // The grammar itself, on AWS's own examples of valid and invalid rates.
        for ok in [
            "rate(1 minute)",
            "rate(5 minutes)",
            "rate(1 hour)",
            "rate(1 day)",
        ] {
            assert!(valid_rate(ok), "{ok}");
        }
        for bad in [
            "rate(1 hours)",
            "rate(5 hour)",
            "rate(0 hours)",
            "rate(6hours)",
            "cron(0 * * * ? *)",
        ] {
            assert!(!valid_rate(bad), "{bad}");
        }
    }
}
