//! The backup and state buckets: public access blocked, versioning never enabled (unless the
//! backup bucket has S3 Object Lock, which needs it), default SSE, tags, the generated
//! bucket policies, and the state bucket's lifecycle rule (dead sessions' states and old day
//! records expire; [`ferry_contract::keys::STATE_EXPIRY_DAYS`]).

use std::io::Write;

use crate::error::{AwsContext, BuildContext, Error, Result};
use aws_sdk_s3::error::ProvideErrorMetadata as _;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketLocationConstraint, BucketVersioningStatus,
    CreateBucketConfiguration, DefaultRetention, ExpirationStatus, LifecycleExpiration,
    LifecycleRule, LifecycleRuleFilter, ObjectLockConfiguration, ObjectLockEnabled,
    ObjectLockRetentionMode, ObjectLockRule, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Tag, Tagging,
};
use serde_json::Value;

use super::{Change, Ctx, same_policy};
use crate::config::{LockMode, ObjectLockConfig};
use crate::policy;
use ferry_contract::keys;

pub(super) async fn converge(ctx: &mut Ctx) -> Result<()> {
    let p = ctx.policy_inputs()?;
    let backup = ctx.cfg.raw.backup_bucket.clone();
    let state = ctx.cfg.raw.state_bucket.clone();
    // Bucket policies need the endpoint's id; while planning a fresh install it does not exist.
    let known = ctx.vpce_id.is_some();
    bucket(
        ctx,
        &backup,
        known.then(|| policy::backup_bucket_policy(&p)),
        false,
    )
    .await?;
    // The state bucket's policy is put after the artifacts are uploaded (see
    // [`put_deferred_policy`]).
    ctx.deferred_state_policy = bucket(
        ctx,
        &state,
        known.then(|| policy::state_bucket_policy(&p)),
        true,
    )
    .await?;
    Ok(())
}

/// Puts the state bucket's policy if [`converge`] deferred it. It comes after the artifact
/// upload only for the local cloud's sake: moto 5.2.5 refuses every object request on a bucket
/// whose policy has a `Condition`, so on a fresh install the upload must precede the policy. On
/// AWS the order does not matter (the policy lets the operator write).
pub(super) async fn put_deferred_policy(ctx: &mut Ctx) -> Result<()> {
    let Some(want) = ctx.deferred_state_policy.take() else {
        return Ok(());
    };
    let name = ctx.cfg.raw.state_bucket.clone();
    ctx.s3
        .put_bucket_policy()
        .bucket(&name)
        .policy(want.to_string())
        .send()
        .await
        .aws("s3:PutBucketPolicy", || name.to_string())?;
    Ok(())
}

fn s3_tags(ctx: &Ctx, name: &str) -> Result<Vec<Tag>> {
    ctx.tags(name)
        .into_iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .build_ctx("an S3 tag")
        })
        .collect()
}

fn is_status(e: &aws_sdk_s3::error::SdkError<impl std::fmt::Debug>, code: u16) -> bool {
    e.raw_response()
        .is_some_and(|r| r.status().as_u16() == code)
}

/// Observes one bucket and (in apply mode) makes it match. With `defer_policy`, a policy that
/// needs putting is returned instead of put.
async fn bucket(
    ctx: &mut Ctx,
    name: &str,
    want_policy: Option<Value>,
    defer_policy: bool,
) -> Result<Option<Value>> {
    let exists = match ctx.s3.head_bucket().bucket(name).send().await {
        Ok(_) => true,
        Err(e) if is_status(&e, 404) => false,
        Err(e) if is_status(&e, 403) => {
            return Err(Error::NotOurs {
                resource: format!("bucket {name}"),
                why: "exists and belongs to someone else (403): choose another name in the config"
                    .to_string(),
            });
        }
        Err(e) => return Err(Error::aws("s3:HeadBucket", name.to_string(), e)),
    };
    let mut drift = Vec::new();
    let mut fix_tags = false;
    let mut fix_pab = false;
    let mut fix_versioning = false;
    let mut fix_sse = false;
    let mut fix_policy = false;
    let mut fix_lock = false;
    let mut fix_lifecycle = false;
    let want_lifecycle = name == ctx.cfg.raw.state_bucket;
    // S3 Object Lock: only the backup bucket, only when the config asks for it.
    let want_lock = (name == ctx.cfg.raw.backup_bucket)
        .then_some(ctx.cfg.raw.object_lock)
        .flatten();
    if exists {
        let tags = match ctx.s3.get_bucket_tagging().bucket(name).send().await {
            Ok(t) => t.tag_set().to_vec(),
            Err(e) if is_status(&e, 404) => Vec::new(),
            Err(e) => {
                return Err(Error::aws("s3:GetBucketTagging", name.to_string(), e));
            }
        };
        let inst = tags
            .iter()
            .find(|t| t.key() == policy::TAG_INSTALLATION)
            .map(|t| t.value());
        if inst != Some(ctx.cfg.names.prefix.as_str()) {
            return Err(Error::NotOurs {
                resource: format!("bucket {name}"),
                why: format!(
                    "exists but is not tagged {}={}: not created by this ferry installation; choose another name",
                    policy::TAG_INSTALLATION,
                    ctx.cfg.names.prefix
                ),
            });
        }
        for (k, v) in ctx.tags(name) {
            let got = tags.iter().find(|t| t.key() == k).map(|t| t.value());
            if got != Some(v.as_str()) {
                drift.push(format!("tag {k}: {} -> {v}", got.unwrap_or("(none)")));
                fix_tags = true;
            }
        }
        let pab = match ctx.s3.get_public_access_block().bucket(name).send().await {
            Ok(r) => r.public_access_block_configuration().cloned(),
            Err(e) if is_status(&e, 404) => None,
            Err(e) => {
                return Err(Error::aws("s3:GetPublicAccessBlock", name.to_string(), e));
            }
        };
        let all_blocked = pab.is_some_and(|c| {
            c.block_public_acls() == Some(true)
                && c.ignore_public_acls() == Some(true)
                && c.block_public_policy() == Some(true)
                && c.restrict_public_buckets() == Some(true)
        });
        if !all_blocked {
            drift.push("public access block: incomplete -> all four on".into());
            fix_pab = true;
        }
        match ctx.s3.get_bucket_versioning().bucket(name).send().await {
            Ok(v) => {
                // Object Lock needs versioning (and S3 refuses to suspend it on such a bucket).
                if v.status() == Some(&BucketVersioningStatus::Enabled) && want_lock.is_none() {
                    drift.push("versioning: Enabled -> Suspended".into());
                    fix_versioning = true;
                }
            }
            // A 200 whose body does not parse (moto 5.2.5 answers with the wrong XML root):
            // say so instead of failing the whole plan, and do not guess a state.
            Err(e) if is_status(&e, 200) => ctx.warnings.push(format!(
                "bucket {name}: versioning state unreadable (HTTP 200 with a body the SDK could not parse); not checked"
            )),
            Err(e) => return Err(Error::aws("s3:GetBucketVersioning", name.to_string(), e)),
        }
        if name == ctx.cfg.raw.backup_bucket {
            let have = object_lock(ctx, name).await?;
            match (have, want_lock) {
                (Some(h), None) => ctx.warnings.push(format!(
                    "bucket {name} has S3 Object Lock ({}) but the config has no [object_lock]: \
                     Object Lock cannot be turned off; add `[object_lock]` to the config to manage it",
                    describe_lock(h)
                )),
                (h, Some(w)) if h != Some(Some(w)) => {
                    drift.push(format!(
                        "object lock: {} -> {w}",
                        h.map_or("off".to_string(), describe_lock)
                    ));
                    fix_lock = true;
                }
                _ => {}
            }
        }
        let sse = match ctx.s3.get_bucket_encryption().bucket(name).send().await {
            Ok(r) => r
                .server_side_encryption_configuration()
                .map(|c| {
                    c.rules()
                        .iter()
                        .any(|r| r.apply_server_side_encryption_by_default().is_some())
                })
                .unwrap_or(false),
            Err(e) if is_status(&e, 404) => false,
            Err(e) => {
                return Err(Error::aws("s3:GetBucketEncryption", name.to_string(), e));
            }
        };
        if !sse {
            drift.push("default encryption: none -> SSE-S3".into());
            fix_sse = true;
        }
        // Boxed: the SDK's futures are large, and this one would grow every caller's.
        if want_lifecycle && let Some(d) = Box::pin(lifecycle_drift(ctx, name)).await? {
            drift.push(d);
            fix_lifecycle = true;
        }
        if let Some(want) = &want_policy {
            let have = match ctx.s3.get_bucket_policy().bucket(name).send().await {
                Ok(r) => r.policy().map(str::to_string),
                Err(e) if is_status(&e, 404) => None,
                Err(e) => {
                    return Err(Error::aws("s3:GetBucketPolicy", name.to_string(), e));
                }
            };
            if !have.is_some_and(|h| same_policy(&h, want)) {
                drift.push("bucket policy: differs -> generated".into());
                fix_policy = true;
            }
        }
    }
    let change = match (exists, drift.is_empty()) {
        (false, _) => Change::Create,
        (true, true) => Change::Unchanged,
        (true, false) => Change::Update(drift),
    };
    ctx.record("s3-bucket", name, None, change.clone());
    if name == ctx.cfg.raw.state_bucket {
        ctx.state_bucket_exists = exists || ctx.apply();
    }
    if !ctx.apply() || change == Change::Unchanged {
        return Ok(None);
    }
    if !exists {
        let mut req = ctx.s3.create_bucket().bucket(name);
        if want_lock.is_some() {
            // Versioning comes with it
            // (https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateBucket.html).
            req = req.object_lock_enabled_for_bucket(true);
        }
        if ctx.cfg.raw.region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(
                        ctx.cfg.raw.region.as_str(),
                    ))
                    .build(),
            );
        }
        req.send().await.aws("s3:CreateBucket", || {
            format!("{name} in {}", ctx.cfg.raw.region)
        })?;
        fix_tags = true;
        fix_pab = true;
        fix_sse = true;
        fix_policy = want_policy.is_some();
        fix_lock = want_lock.is_some();
        fix_lifecycle = want_lifecycle;
    }
    if fix_tags {
        ctx.s3
            .put_bucket_tagging()
            .bucket(name)
            .tagging(
                Tagging::builder()
                    .set_tag_set(Some(s3_tags(ctx, name)?))
                    .build()
                    .build_ctx("tagging")?,
            )
            .send()
            .await
            .aws("s3:PutBucketTagging", || name.to_string())?;
    }
    if fix_pab {
        ctx.s3
            .put_public_access_block()
            .bucket(name)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await
            .aws("s3:PutPublicAccessBlock", || name.to_string())?;
    }
    if fix_versioning {
        ctx.s3
            .put_bucket_versioning()
            .bucket(name)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Suspended)
                    .build(),
            )
            .send()
            .await
            .aws("s3:PutBucketVersioning", || name.to_string())?;
    }
    if fix_lock && let Some(w) = want_lock {
        put_object_lock(ctx, name, w).await?;
    }
    if fix_sse {
        let rule = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(
                ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::Aes256)
                    .build()
                    .build_ctx("SSE default")?,
            )
            .build();
        ctx.s3
            .put_bucket_encryption()
            .bucket(name)
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder()
                    .rules(rule)
                    .build()
                    .build_ctx("SSE configuration")?,
            )
            .send()
            .await
            .aws("s3:PutBucketEncryption", || name.to_string())?;
    }
    if fix_lifecycle {
        Box::pin(put_state_lifecycle(ctx, name)).await?;
    }
    if fix_policy && defer_policy {
        return Ok(want_policy);
    }
    if fix_policy && let Some(want) = &want_policy {
        ctx.s3
            .put_bucket_policy()
            .bucket(name)
            .policy(want.to_string())
            .send()
            .await
            .aws("s3:PutBucketPolicy", || name.to_string())?;
    }
    Ok(None)
}

/// The state bucket's lifecycle drift ("lifecycle: have -> want"), or `None` when it is Ferry's.
async fn lifecycle_drift(ctx: &Ctx, name: &str) -> Result<Option<String>> {
    let have = match ctx
        .s3
        .get_bucket_lifecycle_configuration()
        .bucket(name)
        .send()
        .await
    {
        Ok(r) => r.rules().to_vec(),
        Err(e) if is_status(&e, 404) => Vec::new(),
        Err(e) => {
            return Err(Error::aws(
                "s3:GetLifecycleConfiguration",
                name.to_string(),
                e,
            ));
        }
    };
    Ok((!same_lifecycle(&have)).then(|| {
        format!(
            "lifecycle: {} -> {}",
            describe_lifecycle(&have),
            describe_shapes(&wanted_shapes())
        )
    }))
}

async fn put_state_lifecycle(ctx: &Ctx, name: &str) -> Result<()> {
    ctx.s3
        .put_bucket_lifecycle_configuration()
        .bucket(name)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .set_rules(Some(state_lifecycle_rules()?))
                .build()
                .build_ctx("lifecycle configuration")?,
        )
        .send()
        .await
        .aws("s3:PutLifecycleConfiguration", || name.to_string())?;
    Ok(())
}

/// The state bucket's lifecycle rules: (rule id, prefix, days). Expiration is free in S3
/// Standard, which has no minimum storage duration
/// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lifecycle-mgmt.html>).
const STATE_LIFECYCLE: [(&str, &str, i32); 2] = [
    (
        "ferry-expire-session-states",
        keys::STATE_PREFIX,
        keys::STATE_EXPIRY_DAYS,
    ),
    (
        "ferry-expire-day-records",
        keys::DAY_PREFIX,
        keys::DAY_RECORD_EXPIRY_DAYS,
    ),
];

// That a state outlives any session is checked at compile time in `ferry_contract::limits`.

fn state_lifecycle_rules() -> Result<Vec<LifecycleRule>> {
    STATE_LIFECYCLE
        .iter()
        .map(|(id, prefix, days)| {
            LifecycleRule::builder()
                .id(*id)
                .filter(LifecycleRuleFilter::builder().prefix(*prefix).build())
                .status(ExpirationStatus::Enabled)
                .expiration(LifecycleExpiration::builder().days(*days).build())
                .build()
                .build_ctx("a lifecycle rule")
        })
        .collect()
}

/// A lifecycle rule as (prefix, days, enabled).
type Shape = (String, Option<i32>, bool);

/// Ferry's rules ([`STATE_LIFECYCLE`]) as shapes.
fn wanted_shapes() -> Vec<Shape> {
    STATE_LIFECYCLE
        .iter()
        .map(|(_, p, d)| (p.to_string(), Some(*d), true))
        .collect()
}

/// A rule's shape; the prefix from the filter or the older top-level field (deprecated, but a
/// rule written by another tool may still carry it).
#[allow(deprecated)]
fn rule_shape(r: &LifecycleRule) -> Shape {
    let prefix = r
        .filter()
        .and_then(|f| f.prefix())
        .or(r.prefix())
        .unwrap_or("")
        .to_string();
    let days = r.expiration().and_then(|e| e.days());
    (prefix, days, r.status() == &ExpirationStatus::Enabled)
}

/// Whether `have` is exactly Ferry's rules: each prefix expired after its days, nothing else
/// (another rule could expire what a live session needs, e.g. `artifacts/`).
fn same_lifecycle(have: &[LifecycleRule]) -> bool {
    let mut have: Vec<_> = have.iter().map(rule_shape).collect();
    let mut want = wanted_shapes();
    have.sort();
    want.sort();
    have == want
}

fn describe_lifecycle(rules: &[LifecycleRule]) -> String {
    describe_shapes(&rules.iter().map(rule_shape).collect::<Vec<_>>())
}

fn describe_shapes(shapes: &[Shape]) -> String {
    let all: Vec<String> = shapes
        .iter()
        .map(|(p, d, on)| {
            format!(
                "{p:?} after {}{}",
                d.map_or("?".to_string(), |d| format!("{d} d")),
                if *on { "" } else { " (disabled)" }
            )
        })
        .collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

/// A bucket's Object Lock: `None` when it has none, `Some(None)` when it is on without a
/// default retention, `Some(Some(rule))` with one.
async fn object_lock(ctx: &Ctx, name: &str) -> Result<Option<Option<ObjectLockConfig>>> {
    let conf = match ctx
        .s3
        .get_object_lock_configuration()
        .bucket(name)
        .send()
        .await
    {
        Ok(r) => r.object_lock_configuration().cloned(),
        // ObjectLockConfigurationNotFoundError: a bucket without Object Lock.
        Err(e) if is_status(&e, 404) => None,
        Err(e) => {
            return Err(Error::aws(
                "s3:GetObjectLockConfiguration",
                name.to_string(),
                e,
            ));
        }
    };
    let Some(conf) = conf else { return Ok(None) };
    if conf.object_lock_enabled() != Some(&ObjectLockEnabled::Enabled) {
        return Ok(None);
    }
    let rule = conf
        .rule()
        .and_then(|r| r.default_retention())
        .and_then(|d| {
            let mode = match d.mode()? {
                ObjectLockRetentionMode::Governance => LockMode::Governance,
                ObjectLockRetentionMode::Compliance => LockMode::Compliance,
                _ => return None,
            };
            // A rule in years is shown (and compared) as its days; S3 counts a year as 365 days.
            let days = match (d.days(), d.years()) {
                (Some(days), _) if days > 0 => u32::try_from(days).ok()?,
                (_, Some(y)) if y > 0 => u32::try_from(y).ok()?.checked_mul(365)?,
                _ => return None,
            };
            Some(ObjectLockConfig { mode, days })
        });
    Ok(Some(rule))
}

fn describe_lock(l: Option<ObjectLockConfig>) -> String {
    l.map_or("on, no default retention".to_string(), |l| l.to_string())
}

/// Versioning on, then the Object Lock configuration with its default retention: S3 applies
/// it to every object version written from then on, whoever writes it
/// (https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock.html#object-lock-bucket-config).
/// An existing bucket may get Object Lock once versioning is on
/// (https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObjectLockConfiguration.html).
async fn put_object_lock(ctx: &Ctx, name: &str, w: ObjectLockConfig) -> Result<()> {
    ctx.s3
        .put_bucket_versioning()
        .bucket(name)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .aws("s3:PutBucketVersioning", || name.to_string())?;
    let mode = match w.mode {
        LockMode::Governance => ObjectLockRetentionMode::Governance,
        LockMode::Compliance => ObjectLockRetentionMode::Compliance,
    };
    let days = i32::try_from(w.days).map_err(|_| Error::Refused {
        why: format!("object_lock.days {} is too large", w.days),
    })?;
    ctx.s3
        .put_object_lock_configuration()
        .bucket(name)
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .rule(
                    ObjectLockRule::builder()
                        .default_retention(
                            DefaultRetention::builder().mode(mode).days(days).build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .aws("s3:PutObjectLockConfiguration", || name.to_string())?;
    Ok(())
}

/// Upper bound on objects deleted from one bucket by destroy (1000 per page).
const MAX_DELETE_PAGES: usize = 10_000;

/// Refuses (before destroy removes anything) when the backup bucket holds objects and
/// `delete_backup` was not given.
pub(super) async fn check_destroy(ctx: &Ctx, delete_backup: bool) -> Result<()> {
    let backup = ctx.cfg.raw.backup_bucket.clone();
    if bucket_exists(ctx, &backup).await? && !delete_backup {
        let r = ctx
            .s3
            .list_objects_v2()
            .bucket(&backup)
            .max_keys(1)
            .send()
            .await
            .aws("s3:ListObjectsV2", || backup.to_string())?;
        if !r.contents().is_empty() {
            return Err(Error::Refused {
                why: format!(
                    "the backup bucket {backup} is not empty: it holds backups. To delete them too, repeat its name: \
                     ferry infra destroy --delete-backup-bucket {backup}"
                ),
            });
        }
    }
    Ok(())
}

/// Deletes both buckets (the backup bucket only with `delete_backup`). A backup bucket whose
/// object versions are still under Object Lock is kept: the answer is why (and until when),
/// for destroy to finish the rest and then report it.
pub(super) async fn destroy(
    ctx: &mut Ctx,
    delete_backup: bool,
    out: &mut dyn Write,
) -> Result<Option<String>> {
    let mut kept = None;
    let backup = ctx.cfg.raw.backup_bucket.clone();
    let state = ctx.cfg.raw.state_bucket.clone();
    // Checked first: nothing is removed if it refuses.
    check_destroy(ctx, delete_backup).await?;
    for name in [&state, &backup] {
        if !bucket_exists(ctx, name).await? {
            continue;
        }
        // Reverse order of creation: the policy goes first (it also denies the operator's
        // deletes outside its rules).
        ctx.s3
            .delete_bucket_policy()
            .bucket(name)
            .send()
            .await
            .aws("s3:DeleteBucketPolicy", || name.to_string())?;
        let mut pages = 0;
        loop {
            pages += 1;
            if pages > MAX_DELETE_PAGES {
                return Err(Error::LimitExceeded {
                    what: format!(
                        "bucket {name}: more than {MAX_DELETE_PAGES} pages of objects; giving up"
                    ),
                });
            }
            let r = ctx
                .s3
                .list_objects_v2()
                .bucket(name)
                .send()
                .await
                .aws("s3:ListObjectsV2", || name.to_string())?;
            if r.contents().is_empty() {
                break;
            }
            for o in r.contents() {
                if let Some(k) = o.key() {
                    ctx.s3
                        .delete_object()
                        .bucket(name)
                        .key(k)
                        .send()
                        .await
                        .aws("s3:DeleteObject", || format!("{name}/{k}"))?;
                }
            }
        }
        if name == &backup
            && object_lock(ctx, name).await?.is_some()
            && let Some(why) = delete_versions(ctx, name).await?
        {
            writeln!(out, "= s3-bucket {name} kept: {why}")?;
            kept = Some(why);
            continue;
        }
        ctx.s3
            .delete_bucket()
            .bucket(name)
            .send()
            .await
            .aws("s3:DeleteBucket", || name.to_string())?;
        writeln!(out, "- s3-bucket {name}")?;
    }
    Ok(kept)
}

/// Deletes every object version and delete marker of a bucket with Object Lock (a versioned
/// bucket cannot be deleted while any is left). S3 refuses a version still under its lock
/// (403): the answer then says how many and until when.
async fn delete_versions(ctx: &Ctx, name: &str) -> Result<Option<String>> {
    let mut locked = 0u64;
    let mut until: Option<aws_sdk_s3::primitives::DateTime> = None;
    let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
    for _ in 0..MAX_DELETE_PAGES {
        let r = ctx
            .s3
            .list_object_versions()
            .bucket(name)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(id_marker.take())
            .send()
            .await
            .aws("s3:ListObjectVersions", || name.to_string())?;
        let all = r
            .versions()
            .iter()
            .map(|v| (v.key(), v.version_id()))
            .chain(r.delete_markers().iter().map(|m| (m.key(), m.version_id())));
        for (k, id) in all {
            let (Some(k), Some(id)) = (k, id) else {
                continue;
            };
            match ctx
                .s3
                .delete_object()
                .bucket(name)
                .key(k)
                .version_id(id)
                .send()
                .await
            {
                Ok(_) => {}
                // S3 answers a version under its lock 403 AccessDenied.
                Err(e)
                    if is_status(&e, 403)
                        || e.as_service_error().and_then(|s| s.code()) == Some("AccessDenied") =>
                {
                    locked += 1;
                    if let Ok(h) = ctx
                        .s3
                        .head_object()
                        .bucket(name)
                        .key(k)
                        .version_id(id)
                        .send()
                        .await
                        && let Some(u) = h.object_lock_retain_until_date()
                        && until.is_none_or(|t| t.secs() < u.secs())
                    {
                        until = Some(*u);
                    }
                }
                Err(e) => {
                    return Err(Error::aws(
                        "s3:DeleteObject",
                        format!("{name}/{k} version {id}"),
                        e,
                    ));
                }
            }
        }
        if r.is_truncated() != Some(true) {
            break;
        }
        key_marker = r.next_key_marker().map(str::to_string);
        id_marker = r.next_version_id_marker().map(str::to_string);
    }
    if locked == 0 {
        return Ok(None);
    }
    let until = until
        .and_then(|u| u.fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime).ok())
        .map(|u| format!(" until {u}"))
        .unwrap_or_default();
    Ok(Some(format!(
        "bucket {name}: {locked} object version(s) are under S3 Object Lock{until}; S3 deletes \
         neither them nor the bucket before that: run `ferry infra destroy --delete-backup-bucket {name}` again after that date"
    )))
}

async fn bucket_exists(ctx: &Ctx, name: &str) -> Result<bool> {
    match ctx.s3.head_bucket().bucket(name).send().await {
        Ok(_) => Ok(true),
        Err(e) if is_status(&e, 404) => Ok(false),
        Err(e) => Err(Error::aws("s3:HeadBucket", name.to_string(), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_lifecycle_matches_itself_and_nothing_else() {
        let ours = state_lifecycle_rules().unwrap();
        assert!(same_lifecycle(&ours));
        assert!(!same_lifecycle(&[]));
        assert!(!same_lifecycle(&ours[..1]));
        // A rule on another prefix (it could expire the artifacts a box downloads).
        let mut more = ours.clone();
        more.push(
            LifecycleRule::builder()
                .filter(LifecycleRuleFilter::builder().prefix("").build())
                .status(ExpirationStatus::Enabled)
                .expiration(LifecycleExpiration::builder().days(1).build())
                .build()
                .unwrap(),
        );
        assert!(!same_lifecycle(&more));
        // Disabled, or other days: drift.
        let rule = |prefix: &str, days: i32, status: ExpirationStatus| {
            LifecycleRule::builder()
                .filter(LifecycleRuleFilter::builder().prefix(prefix).build())
                .status(status)
                .expiration(LifecycleExpiration::builder().days(days).build())
                .build()
                .unwrap()
        };
        let off = [
            rule("sessions/", 2, ExpirationStatus::Disabled),
            ours[1].clone(),
        ];
        assert!(!same_lifecycle(&off));
        let longer = [
            rule("sessions/", 3, ExpirationStatus::Enabled),
            ours[1].clone(),
        ];
        assert!(!same_lifecycle(&longer));
        // The same rules under other ids, in another order: the same.
        let same = [
            rule("days/", 35, ExpirationStatus::Enabled),
            rule("sessions/", 2, ExpirationStatus::Enabled),
        ];
        assert!(same_lifecycle(&same));
        assert_eq!(
            describe_lifecycle(&ours),
            "\"sessions/\" after 2 d, \"days/\" after 35 d"
        );
    }
}
