//! Session provisioning: the state object, the security group and the jump-box instance, their
//! removal, and the sweep.
//!
//! This module talks only to EC2 and S3 through clients it is given, and to the [`Config`]; it
//! knows nothing of the Lambda runtime, so it can move to `ferry-cloud` unchanged (with
//! `config`, `payload` and `userdata`).
//!
//! ## The state object
//! `s3://<state bucket>/sessions/<session>.json` ([`SessionState`]). ferry-build writes it
//! twice: `intent` (write-once, `If-None-Match: *`) **before** it creates anything, and `ready`
//! with the group's and the instance's ids once the box runs. Every resource is tagged at
//! creation (in the same API call, so a resource never exists untagged) with
//! `ferry:managed=true`, `ferry:installation`, `ferry:session`, `ferry:site`, `ferry:expiry`,
//! and removal always looks the session's resources up by tag too: so the state need not be
//! rewritten after each resource (a PUT each, billed against the free tier's 2,000 a month; it
//! was until 2026-12-03). A build that dies in between leaves an `intent` state and tagged
//! resources, which the sweep removes once the build is abandoned; a build that fails rolls back
//! by the ids it holds (a resource EC2 does not show by tag yet is still found).
//!
//! ## Per-day limits (`claim_day`)
//! After its intent, each session writes a day record
//! `days/<YYYY-MM-DD>/<site>/<session>.<claimed bytes>` (the UTC day it starts), then one LIST
//! gives it the day's records and every state (`list_live`): the concurrency check counts the
//! states, then the day: more than `FERRY_SESSIONS_PER_DAY` records, or a site whose other records claim all of
//! `FERRY_SITE_BYTES_PER_DAY`, refuse it (its record deleted). Its gate's session limit is the
//! claim capped by what the site has left. Records of sessions that passed stay after the
//! session ends (ferry-clean does not touch `days/`); only a complete rollback removes one.
//!
//! ## Removal ([`Cloud::clean_session`])
//! The union of what the state records and what the tags find: terminate instances, wait until
//! terminated, delete security groups (retrying while EC2 reports a dependency), then delete
//! the state object — last, and only when everything else is gone, so a failed clean leaves its
//! record for the next attempt. Idempotent: what is already gone is skipped, not an error.
//!
//! ## Eventual consistency
//! EC2 may answer `InvalidInstanceID.NotFound` / `InvalidGroup.NotFound` for a while after
//! RunInstances / CreateSecurityGroup, and RunInstances may refuse a new instance profile
//! (`InvalidParameterValue … iamInstanceProfile`) for a while after IAM created it
//! (<https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html>,
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency>).
//! Until `FERRY_PROPAGATION_SECONDS` after the session started (and within the invocation's
//! deadline), every call on the session's instance or group, and RunInstances, retries those
//! answers with a capped backoff ([`retry_pending`]); later a NotFound is believed. A NotFound
//! from TerminateInstances is never taken as "terminated": removal terminates the recorded id
//! (whatever a Describe says) until EC2 accepts it, and only a Describe that says
//! `terminated` ends the wait.
//!
//! ## Sweep ([`Cloud::sweep`])
//! Cleans every session whose state says it expired, and every session whose resources carry
//! this installation's tags but which has no state object (an orphan: ferry-build writes the
//! state before creating anything and ferry-clean deletes it last, so a live session always has
//! one).
//!
//! It asks EC2 first (DescribeInstances and DescribeSecurityGroups by tag cost nothing) and
//! lists the state bucket only when EC2 shows a resource of this installation: an S3 LIST is
//! billed like a PUT, and the free tier's 2,000 a month are the backups'. With nothing in EC2
//! there is nothing that costs money to remove; the state objects left by a build that died
//! before its first resource, or by a clean that died after its last, hold no session slot
//! (expired or abandoned) and S3 itself deletes them: the state bucket's lifecycle rule expires
//! `sessions/` after [`ferry_contract::keys::STATE_EXPIRY_DAYS`] days (`ferry infra`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ec2::types::{
    Filter, HttpTokensState, IamInstanceProfileSpecification, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceNetworkInterfaceSpecification, InstanceStateName,
    InstanceType, IpPermission, IpRange, ResourceType, ShutdownBehavior, Tag, TagSpecification,
};
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use ssh_key::{Algorithm, LineEnding, PrivateKey};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

use ferry_contract::gate::JUMPBOX_USER;
use ferry_contract::lambda::{BuildRequest, BuildResponse, CleanReport, SweepReport};
use ferry_contract::{keys, limits, tags};

use crate::config::Config;
use crate::payload::{check_public_key, check_ttl};
use crate::userdata::{self, UserData};
use crate::{FerryError, log};

/// The session's record in the state bucket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SessionState {
    pub version: u32,
    pub session: String,
    pub installation: String,
    pub site: String,
    pub created: String,
    pub expires: String,
    /// `intent` or `ready` (`security-group` and `instance` in states written before
    /// 2026-12-03: read alike, as not ready).
    pub phase: String,
    pub security_group_id: Option<String>,
    pub instance_id: Option<String>,
    pub host: Option<String>,
    pub host_key: Option<String>,
    /// The end of the ferry-build invocation that wrote this state (RFC 3339): Lambda stops a
    /// handler at its timeout, and one that crashed never resumes, so a state still short of
    /// `ready` after it (and [`ABANDON_MARGIN`]) is an abandoned build. Absent in states
    /// written before it existed: `created` + 15 min (Lambda's longest timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_deadline: Option<String>,
}

/// Slack after a build's deadline before its state counts as abandoned (clock differences
/// between invocations; Lambda's clocks are NTP-synchronised).
pub const ABANDON_MARGIN: time::Duration = time::Duration::seconds(15);

impl SessionState {
    fn expired(&self, now: OffsetDateTime) -> bool {
        OffsetDateTime::parse(&self.expires, &Rfc3339)
            .map(|e| e <= now)
            .unwrap_or(true)
    }

    /// A build that can no longer finish: not `ready`, and the ferry-build invocation that
    /// wrote it is over (timed out or killed: Lambda reset its execution environment,
    /// <https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html>). It
    /// holds no session slot (no client can ever use it) and the sweep removes what it made.
    fn abandoned(&self, now: OffsetDateTime) -> bool {
        if self.phase == "ready" {
            return false;
        }
        let parse = |t: &str| OffsetDateTime::parse(t, &Rfc3339).ok();
        let end = match &self.build_deadline {
            Some(d) => parse(d),
            None => parse(&self.created).map(|c| c + time::Duration::minutes(15)),
        };
        end.is_none_or(|e| e + ABANDON_MARGIN <= now)
    }
}

/// EC2 + S3 clients and the function's configuration.
pub struct Cloud {
    pub ec2: aws_sdk_ec2::Client,
    pub s3: aws_sdk_s3::Client,
    pub cfg: Config,
}

/// `what: Code: message` for a service error; the error chain for anything else (timeouts,
/// connection failures). Never the raw response.
fn aws_err<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    what: &str,
    e: aws_sdk_ec2::error::SdkError<E, R>,
) -> FerryError {
    match (e.code(), e.message()) {
        (Some(code), Some(msg)) => FerryError::Aws(format!("{what}: {code}: {msg}")),
        (Some(code), None) => FerryError::Aws(format!("{what}: {code}")),
        _ => FerryError::Aws(format!("{what}: {}", DisplayErrorContext(&e))),
    }
}

fn ec2_err<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    what: &str,
    e: aws_sdk_ec2::error::SdkError<E, R>,
) -> FerryError {
    aws_err(what, e)
}

fn s3_err<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    what: &str,
    e: aws_sdk_s3::error::SdkError<E, R>,
) -> FerryError {
    aws_err(what, e)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// The UTC date of `t`, `YYYY-MM-DD`: the day a session counts against.
pub fn utc_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// `n` bytes in MiB, for messages.
fn mib(n: u64) -> String {
    format!("{} MiB", n >> 20)
}

/// `fs-YYYYMMDD-HHMMSS-<8 hex>`.
pub fn new_session_id(now: OffsetDateTime) -> String {
    let mut r = [0u8; 4];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut r);
    format!(
        "{}{:04}{:02}{:02}-{:02}{:02}{:02}-{}",
        ferry_contract::lambda::SESSION_ID_PREFIX,
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        hex::encode(r)
    )
}

fn new_ed25519(comment: &str) -> Result<PrivateKey, FerryError> {
    let mut k = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519)
        .map_err(|e| FerryError::Internal(format!("generating an ed25519 key: {e}")))?;
    k.set_comment(comment);
    Ok(k)
}

fn public_line(k: &PrivateKey) -> Result<String, FerryError> {
    let mut p = k.public_key().clone();
    p.set_comment("");
    p.to_openssh()
        .map(|s| s.trim().to_string())
        .map_err(|e| FerryError::Internal(format!("encoding a public key: {e}")))
}

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

/// A bounded wait: the sooner of `limit` and the invocation's deadline (less a margin for the
/// answer and a rollback).
fn until(deadline: Instant, limit: Duration) -> Instant {
    let cap = Instant::now() + limit;
    let d = deadline
        .checked_sub(Duration::from_secs(20))
        .unwrap_or(deadline);
    cap.min(d.max(Instant::now() + Duration::from_secs(5)))
}

/// First and longest pause between retries of an answer that means "not yet propagated".
const PENDING_FIRST: Duration = Duration::from_millis(250);
const PENDING_CAP: Duration = Duration::from_secs(3);

/// EC2 does not see the instance yet (or any more).
fn instance_not_found(code: Option<&str>) -> bool {
    code == Some("InvalidInstanceID.NotFound")
}

/// EC2 does not see the security group yet (or any more).
fn group_not_found(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("InvalidGroup.NotFound") | Some("InvalidGroupId.NotFound")
    )
}

/// RunInstances refused the instance profile: "Value (NAME) for parameter
/// iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name" — the answer for a
/// profile IAM created moments ago as for one that does not exist.
fn profile_refused(code: Option<&str>, message: Option<&str>) -> bool {
    code == Some("InvalidParameterValue")
        && message.is_some_and(|m| m.contains("iamInstanceProfile"))
}

/// Call `call` until it answers anything but what `pending` calls "not yet propagated", or
/// until `end` (then the last answer is returned). Capped exponential backoff; each retry is
/// logged with the answer's code, so a slow account can be diagnosed from the log.
async fn retry_pending<T, E, R>(
    session: &str,
    what: &str,
    end: Instant,
    pending: impl Fn(Option<&str>, Option<&str>) -> bool,
    mut call: impl AsyncFnMut() -> Result<T, aws_sdk_ec2::error::SdkError<E, R>>,
) -> Result<T, aws_sdk_ec2::error::SdkError<E, R>>
where
    E: ProvideErrorMetadata,
{
    let mut delay = PENDING_FIRST;
    let mut attempt = 0u32;
    loop {
        attempt = attempt.saturating_add(1);
        match call().await {
            Err(e) if pending(e.code(), e.message()) && Instant::now() + delay <= end => {
                log::info(
                    session,
                    "not yet propagated; retrying",
                    &[
                        ("call", what),
                        ("code", e.code().unwrap_or("")),
                        ("attempt", &attempt.to_string()),
                    ],
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(PENDING_CAP);
            }
            r => return r,
        }
    }
}

/// When the session started: its state's `created`, else the time in its id
/// (`fs-YYYYMMDD-HHMMSS-…`); `None` when neither parses.
fn session_started(session: &str, state: Option<&SessionState>) -> Option<OffsetDateTime> {
    if let Some(t) = state.and_then(|s| OffsetDateTime::parse(&s.created, &Rfc3339).ok()) {
        return Some(t);
    }
    let stamp = session.strip_prefix("fs-")?.get(..15)?;
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    time::PrimitiveDateTime::parse(stamp, &fmt)
        .ok()
        .map(|t| t.assume_utc())
}

impl Cloud {
    /// Until when a NotFound for the session's resources (or a refused instance profile) is
    /// taken as "not yet propagated": `FERRY_PROPAGATION_SECONDS` after the session started,
    /// and never past the invocation's deadline (less its margin). A session of unknown start
    /// gets no allowance.
    fn propagation_end(&self, started: Option<OffsetDateTime>, deadline: Instant) -> Instant {
        let left = started
            .map(|t| {
                let age = (OffsetDateTime::now_utc() - t).max(time::Duration::ZERO);
                Duration::from_secs(self.cfg.propagation_seconds).saturating_sub(age.unsigned_abs())
            })
            .unwrap_or(Duration::ZERO);
        if left.is_zero() {
            return Instant::now();
        }
        until(deadline, left)
    }

    fn state_key(session: &str) -> String {
        keys::session_state(session)
    }

    fn tags(&self, st: &SessionState) -> Vec<Tag> {
        vec![
            tag(tags::MANAGED, "true"),
            tag(tags::INSTALLATION, &self.cfg.installation),
            tag(tags::SESSION, &st.session),
            tag(tags::SITE, &st.site),
            tag(tags::EXPIRY, &st.expires),
            tag(
                "Name",
                &format!("{}-jumpbox-{}", self.cfg.installation, st.session),
            ),
        ]
    }

    fn tag_spec(&self, rt: ResourceType, st: &SessionState) -> TagSpecification {
        TagSpecification::builder()
            .resource_type(rt)
            .set_tags(Some(self.tags(st)))
            .build()
    }

    /// Write the state object; `create` makes it write-once (refused if it exists).
    async fn put_state(&self, st: &SessionState, create: bool) -> Result<(), FerryError> {
        let key = Self::state_key(&st.session);
        let body = serde_json::to_vec_pretty(st)
            .map_err(|e| FerryError::Internal(format!("encoding state: {e}")))?;
        let mut req = self
            .s3
            .put_object()
            .bucket(&self.cfg.state_bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(body));
        if create {
            req = req.if_none_match("*");
        }
        req.send().await.map_err(|e| {
            s3_err(
                &format!("writing state s3://{}/{key}", self.cfg.state_bucket),
                e,
            )
        })?;
        log::info(&st.session, "state written", &[("phase", &st.phase)]);
        Ok(())
    }

    /// The session's state object, or `None` when there is none.
    pub async fn get_state(&self, session: &str) -> Result<Option<SessionState>, FerryError> {
        let key = Self::state_key(session);
        let what = format!("reading state s3://{}/{key}", self.cfg.state_bucket);
        let out = match self
            .s3
            .get_object()
            .bucket(&self.cfg.state_bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e)
                if e.as_service_error()
                    .map(|s| s.is_no_such_key())
                    .unwrap_or(false) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(s3_err(&what, e)),
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| FerryError::Aws(format!("{what}: {e}")))?
            .into_bytes();
        let st: SessionState = serde_json::from_slice(&bytes)
            .map_err(|e| FerryError::Aws(format!("{what}: not a session state: {e}")))?;
        Ok(Some(st))
    }

    /// Every key under `prefix` in the state bucket (ListObjectsV2, at most 100 pages).
    async fn list_state_keys(&self, prefix: &str) -> Result<Vec<String>, FerryError> {
        self.list_state_keys_after(prefix, None).await
    }

    /// Every key under `prefix` that sorts after `start_after` (ListObjectsV2's `StartAfter`).
    async fn list_state_keys_after(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<String>, FerryError> {
        let mut out = Vec::new();
        let mut token = None;
        for _ in 0..100 {
            let page = self
                .s3
                .list_objects_v2()
                .bucket(&self.cfg.state_bucket)
                .set_prefix((!prefix.is_empty()).then(|| prefix.to_string()))
                .set_start_after(start_after.map(str::to_string))
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| {
                    let after = start_after
                        .map(|a| format!(" after {a}"))
                        .unwrap_or_default();
                    s3_err(
                        &format!("listing s3://{}/{prefix}{after}", self.cfg.state_bucket),
                        e,
                    )
                })?;
            out.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .map(String::from),
            );
            token = page.next_continuation_token().map(String::from);
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Session ids that have a state object.
    pub async fn list_states(&self) -> Result<Vec<String>, FerryError> {
        Ok(self
            .list_state_keys(keys::STATE_PREFIX)
            .await?
            .iter()
            .filter_map(|k| keys::session_of_state(k))
            .map(str::to_string)
            .collect())
    }

    // ----- ferry-build -----

    /// ferry-build: validate, record the intent, create, wait, answer. On any failure after the
    /// intent is written, everything created so far is removed before the error is returned.
    pub async fn build(
        &self,
        req: BuildRequest,
        deadline: Instant,
    ) -> Result<BuildResponse, FerryError> {
        let ttl = check_ttl(
            req.ttl_minutes,
            self.cfg.default_session_minutes,
            self.cfg.max_session_minutes,
        )?;
        let client_public = match &req.public_key {
            Some(k) => Some(check_public_key(k)?),
            None => None,
        };
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc());
        let expires = now + time::Duration::minutes(i64::from(ttl));
        let session = new_session_id(now);

        let host_key = new_ed25519(&format!("ferry-host-{session}"))?;
        let host_public = public_line(&host_key)?;
        let (client_public, client_private) = match client_public {
            Some(p) => (p, None),
            None => {
                let k = new_ed25519(&format!("ferry-client-{session}"))?;
                let pem = k
                    .to_openssh(LineEnding::LF)
                    .map_err(|e| FerryError::Internal(format!("encoding the client key: {e}")))?;
                (public_line(&k)?, Some(pem))
            }
        };

        let mut st = SessionState {
            version: 1,
            session: session.clone(),
            installation: self.cfg.installation.clone(),
            site: req.site.clone(),
            created: rfc3339(now),
            expires: rfc3339(expires),
            phase: "intent".into(),
            security_group_id: None,
            instance_id: None,
            host: None,
            host_key: Some(host_public.clone()),
            // This invocation's end, rounded up to the second.
            build_deadline: Some(rfc3339(
                now + time::Duration::seconds(
                    deadline.saturating_duration_since(Instant::now()).as_secs() as i64 + 1,
                ),
            )),
        };
        log::info(
            &session,
            "build started",
            &[("site", &req.site), ("ttl_minutes", &ttl.to_string())],
        );
        self.put_state(&st, true).await?;

        // From here on a failure rolls back. `day` is the session's day record once written:
        // it stays when the session passed the limits and its rollback is incomplete (the
        // session may have cost something), and goes with a complete rollback.
        let mut day = None;
        let result = async {
            // The concurrency limit and the per-day limits, from one LIST (`claim_day`).
            let budget = self.claim_day(&st, now, &mut day).await?;
            let host_private = host_key
                .to_openssh(LineEnding::LF)
                .map_err(|e| FerryError::Internal(format!("encoding the host key: {e}")))?;
            let ud = userdata::render(&UserData {
                session: &session,
                site: &req.site,
                region: &self.cfg.region,
                backup_bucket: &self.cfg.backup_bucket,
                state_bucket: &self.cfg.state_bucket,
                gate_key: &self.cfg.gate_key,
                gate_sha256: &self.cfg.gate_sha256,
                clean_function: &self.cfg.clean_function,
                expires: &st.expires,
                expires_unix: expires.unix_timestamp(),
                shutdown_grace_minutes: self.cfg.shutdown_grace_minutes,
                max_object_bytes: self.cfg.gate_max_object_bytes.min(budget),
                max_session_bytes: budget,
                client_public_key: &client_public,
                host_private_key: &host_private,
                host_public_key: &host_public,
            })
            .map_err(FerryError::Internal)?;
            drop(host_private);
            self.provision(&mut st, &ud, deadline).await
        }
        .await;
        drop(host_key);

        match result {
            Ok(host) => {
                log::info(&session, "build done", &[("host", &host)]);
                Ok(BuildResponse {
                    session,
                    site: req.site,
                    host,
                    port: 22,
                    user: JUMPBOX_USER.into(),
                    host_key: host_public,
                    expires: st.expires,
                    private_key: client_private,
                    client_public_key: client_public,
                })
            }
            Err(e) => {
                log::error(
                    &session,
                    "build failed; rolling back",
                    &[("error", &e.to_string())],
                );
                // What this invocation made, by id: EC2 may not show a new resource by its tag
                // yet (module doc), and the state object names none before `ready`.
                match self.clean_known(&session, Some(&st), deadline).await {
                    Ok(r) => {
                        if let Some(key) = &day {
                            self.delete_day_record(&session, key).await;
                        }
                        log::info(
                            &session,
                            "rollback done",
                            &[("removed", &r.removed.join(", "))],
                        );
                        Err(e)
                    }
                    Err(rb) => Err(FerryError::Aws(format!(
                        "{e}; rollback incomplete ({rb}); the state object sessions/{session}.json is kept so that \
                         ferry-clean or the six-hourly sweep can finish it"
                    ))),
                }
            }
        }
    }

    /// Delete a day record (a session refused by the day's limits, or fully rolled back). A
    /// failure only logs: the record then counts against the day, which errs on the safe side.
    async fn delete_day_record(&self, session: &str, key: &str) {
        if let Err(e) = self
            .s3
            .delete_object()
            .bucket(&self.cfg.state_bucket)
            .key(key)
            .send()
            .await
        {
            let e = s3_err(&format!("deleting s3://{}/{key}", self.cfg.state_bucket), e);
            log::error(session, "day record kept", &[("error", &e.to_string())]);
        }
    }

    /// The per-day limits: claim this session's place in its UTC day and its byte budget, or
    /// refuse ([`FerryError::DailyLimit`]).
    ///
    /// The session writes its day record `days/<date>/<site>/<session>.<claim>` first, with
    /// claim = min(`FERRY_GATE_MAX_SESSION_BYTES`, `FERRY_SITE_BYTES_PER_DAY`), and then lists
    /// the day (S3 LIST is strongly consistent:
    /// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/Welcome.html#ConsistencyModel>).
    /// It is refused when the day holds more than `FERRY_SESSIONS_PER_DAY` records, or when the
    /// other records of its site claim all of the site's bytes; otherwise its budget is the
    /// claim, capped by what those records leave. Why that bounds the day, races included: of
    /// the sessions that passed, take the one whose record was written last. Its LIST came
    /// after every other passing session's record was written, and a passing session's record
    /// is never removed while the session may cost anything, so it saw all of them: their
    /// number is within the limit, and its budget plus their claims (each at least what that
    /// session was granted) is within the site's bytes. Two racing builds can both refuse;
    /// never both pass beyond the limits. Granted, not used, bytes count: the bound holds
    /// even when a gate never reports back. A refused session deletes its record.
    ///
    /// The same LIST first serves the concurrency limit ([`Cloud::check_limit`]): it came after
    /// this session's intent too. A session the concurrency limit refuses has its day record
    /// removed by the rollback; until then it counts, which can only refuse, never admit, a
    /// racing build.
    async fn claim_day(
        &self,
        st: &SessionState,
        now: OffsetDateTime,
        day: &mut Option<String>,
    ) -> Result<u64, FerryError> {
        let date = utc_date(now);
        let claim = self
            .cfg
            .gate_max_session_bytes
            .min(self.cfg.site_bytes_per_day);
        let key = keys::day_record(&date, &st.site, &st.session, claim);
        let body = serde_json::json!({
            "session": st.session,
            "site": st.site,
            "created": st.created,
            "expires": st.expires,
            "claimed_bytes": claim,
        });
        self.s3
            .put_object()
            .bucket(&self.cfg.state_bucket)
            .key(&key)
            .if_none_match("*")
            .content_type("application/json")
            .body(ByteStream::from(body.to_string().into_bytes()))
            .send()
            .await
            .map_err(|e| {
                s3_err(
                    &format!(
                        "writing the day record s3://{}/{key}",
                        self.cfg.state_bucket
                    ),
                    e,
                )
            })?;
        *day = Some(key.clone());

        // One LIST serves both limits: it comes after this session's intent and its day record
        // were written, as each check needs (see `check_limit` and above).
        let (states, records) = self.list_live(&date).await?;
        self.check_limit(&st.session, states).await?;
        if !records.iter().any(|(_, s, _)| *s == st.session) {
            return Err(FerryError::Aws(format!(
                "day record {key} vanished after it was written"
            )));
        }
        let others: Vec<&(String, String, u64)> = records
            .iter()
            .filter(|(_, s, _)| *s != st.session)
            .collect();
        let refusal = if records.len() > self.cfg.sessions_per_day as usize {
            format!(
                "{} session(s) per UTC day allowed and {} already started on {date} ({}); the \
                 next one is allowed after 00:00 UTC (sessions_per_day in the infra config)",
                self.cfg.sessions_per_day,
                others.len(),
                others
                    .iter()
                    .map(|(_, s, _)| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            let site_claims: u64 = others
                .iter()
                .filter(|(site, _, _)| *site == st.site)
                .map(|(_, _, b)| *b)
                .fold(0u64, u64::saturating_add);
            let left = self.cfg.site_bytes_per_day.saturating_sub(site_claims);
            if left < limits::MIN_SESSION_BYTES {
                format!(
                    "site {:?} has less than 1 MiB left of its {} for {date} ({} session(s) today); \
                     its next session is allowed after 00:00 UTC (site_mib_per_day in the \
                     infra config)",
                    st.site,
                    mib(self.cfg.site_bytes_per_day),
                    others
                        .iter()
                        .filter(|(site, _, _)| *site == st.site)
                        .count()
                )
            } else {
                let budget = claim.min(left);
                log::info(
                    &st.session,
                    "day claimed",
                    &[
                        ("date", &date),
                        ("sessions_today", &records.len().to_string()),
                        ("budget_bytes", &budget.to_string()),
                    ],
                );
                return Ok(budget);
            }
        };
        self.delete_day_record(&st.session, &key).await;
        *day = None;
        Err(FerryError::DailyLimit(refusal))
    }

    /// The session ids that have a state object, and the day's records (site, session,
    /// claimed bytes), from one LIST: keys sort as `artifacts/` < `days/` < `sessions/`, so a
    /// listing that starts after `days/<date>/` holds the day's records and then every state
    /// (one request while they are under 1,000 keys; older days are skipped, not read). It
    /// used to be two LISTs (S3 bills each like a PUT). Keys that are neither are skipped.
    async fn list_live(
        &self,
        date: &str,
    ) -> Result<(Vec<String>, Vec<(String, String, u64)>), FerryError> {
        let today = keys::day_prefix(date);
        let all = self.list_state_keys_after("", Some(&today)).await?;
        let states = all
            .iter()
            .filter_map(|k| keys::session_of_state(k))
            .map(str::to_string)
            .collect();
        let records = all
            .iter()
            .filter(|k| k.starts_with(&today))
            .filter_map(|k| keys::parse_day_record(k))
            .map(|r| (r.site.to_string(), r.session.to_string(), r.bytes))
            .collect();
        Ok((states, records))
    }

    /// Count unexpired sessions (ours included, its intent already written). An abandoned
    /// build (its ferry-build timed out or was killed before `ready`) is not counted: no client
    /// can use it, and the sweep removes it; counting it would refuse every run until it expired.
    /// `states`: the ids listed after this session's intent was written.
    async fn check_limit(&self, session: &str, states: Vec<String>) -> Result<(), FerryError> {
        let now = OffsetDateTime::now_utc();
        let mut active = Vec::new();
        for id in states {
            match self.get_state(&id).await? {
                Some(st) if st.abandoned(now) => log::info(
                    session,
                    "abandoned build not counted",
                    &[("abandoned", &id), ("phase", &st.phase)],
                ),
                Some(st) if !st.expired(now) => active.push(id),
                _ => {}
            }
        }
        if !active.iter().any(|a| a == session) {
            return Err(FerryError::Aws(format!(
                "state object for {session} vanished after it was written"
            )));
        }
        if active.len() > self.cfg.max_sessions as usize {
            let others: Vec<_> = active.iter().filter(|a| *a != session).cloned().collect();
            return Err(FerryError::Limit(format!(
                "{} concurrent session(s) allowed and {} already active ({}); end one with ferry-clean or wait for its expiry (max_sessions in the infra config)",
                self.cfg.max_sessions,
                others.len(),
                others.join(", ")
            )));
        }
        Ok(())
    }

    async fn provision(
        &self,
        st: &mut SessionState,
        user_data: &Zeroizing<String>,
        deadline: Instant,
    ) -> Result<String, FerryError> {
        let cfg = &self.cfg;
        let session = st.session.clone();

        // The VPC of the public subnet.
        let subnets = self
            .ec2
            .describe_subnets()
            .subnet_ids(&cfg.subnet_id)
            .send()
            .await
            .map_err(|e| ec2_err(&format!("looking up subnet {}", cfg.subnet_id), e))?;
        let vpc_id = subnets
            .subnets()
            .first()
            .and_then(|s| s.vpc_id())
            .ok_or_else(|| FerryError::Aws(format!("subnet {} not found", cfg.subnet_id)))?
            .to_string();

        // Security group: SSH in from the configured ranges only, HTTPS out only.
        // Descriptions have no spaces: moto 5.2.5 with IAM checks on fails the SigV4 check of EC2
        // query requests whose values contain spaces (the Rust SDK encodes them as %20).
        let sg = self
            .ec2
            .create_security_group()
            .group_name(format!("{}-{}", cfg.installation, session))
            .description(format!("ferry-jumpbox-{session}"))
            .vpc_id(&vpc_id)
            .tag_specifications(self.tag_spec(ResourceType::SecurityGroup, st))
            .send()
            .await
            .map_err(|e| ec2_err(&format!("creating the security group in {vpc_id}"), e))?;
        let sg_id = sg
            .group_id()
            .ok_or_else(|| FerryError::Aws("CreateSecurityGroup returned no group id".into()))?
            .to_string();
        log::info(&session, "security group created", &[("id", &sg_id)]);
        // Not written to the state object yet (a PUT each; the tag finds the group, and the
        // rollback gets `st`): module doc.
        st.security_group_id = Some(sg_id.clone());

        let ssh = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(22)
            .to_port(22)
            .set_ip_ranges(Some(
                cfg.allowed_ssh_cidrs
                    .iter()
                    .map(|c| {
                        IpRange::builder()
                            .cidr_ip(c)
                            .description("ferry-backup-vm")
                            .build()
                    })
                    .collect(),
            ))
            .build();
        // The new group may not be visible yet (InvalidGroup.NotFound): retried, see the module
        // doc.
        let started = OffsetDateTime::parse(&st.created, &Rfc3339).ok();
        let group_pending = |code: Option<&str>, _: Option<&str>| group_not_found(code);
        let req = self
            .ec2
            .authorize_security_group_ingress()
            .group_id(&sg_id)
            .ip_permissions(ssh);
        let what = format!("allowing SSH into {sg_id}");
        retry_pending(
            &session,
            &what,
            self.propagation_end(started, deadline),
            group_pending,
            async || req.clone().send().await,
        )
        .await
        .map_err(|e| ec2_err(&what, e))?;
        let req = self
            .ec2
            .revoke_security_group_egress()
            .group_id(&sg_id)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("-1")
                    .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                    .build(),
            );
        let what = format!("removing the default egress rule of {sg_id}");
        retry_pending(
            &session,
            &what,
            self.propagation_end(started, deadline),
            group_pending,
            async || req.clone().send().await,
        )
        .await
        .map_err(|e| ec2_err(&what, e))?;
        let req = self
            .ec2
            .authorize_security_group_egress()
            .group_id(&sg_id)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(443)
                    .to_port(443)
                    .ip_ranges(
                        IpRange::builder()
                            .cidr_ip("0.0.0.0/0")
                            .description("https-s3-endpoint-and-lambda")
                            .build(),
                    )
                    .build(),
            );
        let what = format!("allowing HTTPS out of {sg_id}");
        retry_pending(
            &session,
            &what,
            self.propagation_end(started, deadline),
            group_pending,
            async || req.clone().send().await,
        )
        .await
        .map_err(|e| ec2_err(&what, e))?;

        let ami = match &cfg.ami_id {
            Some(a) => a.clone(),
            None => self.latest_al2023().await?,
        };

        let b64 =
            Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(user_data.as_bytes()));
        // The client token (the session id) makes a retry that follows a lost answer launch
        // nothing twice; a refused instance profile (IAM propagation) or a group EC2 does not
        // see yet is retried, see the module doc.
        let req = self
            .ec2
            .run_instances()
            .image_id(&ami)
            .instance_type(InstanceType::from(cfg.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .client_token(&session)
            .network_interfaces(
                InstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .subnet_id(&cfg.subnet_id)
                    .groups(&sg_id)
                    .associate_public_ip_address(true)
                    .delete_on_termination(true)
                    .build(),
            )
            .iam_instance_profile(
                IamInstanceProfileSpecification::builder()
                    .name(&cfg.instance_profile)
                    .build(),
            )
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .http_tokens(HttpTokensState::Required)
                    .http_put_response_hop_limit(1)
                    .build(),
            )
            .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
            .user_data(b64.as_str())
            .tag_specifications(self.tag_spec(ResourceType::Instance, st))
            .tag_specifications(self.tag_spec(ResourceType::Volume, st));
        drop(b64);
        let what = format!(
            "launching the jump box ({ami}, {}, profile {})",
            cfg.instance_type, cfg.instance_profile
        );
        let run = retry_pending(
            &session,
            &what,
            self.propagation_end(started, deadline),
            |code, message| profile_refused(code, message) || group_not_found(code),
            async || req.clone().send().await,
        )
        .await
        .map_err(|e| ec2_err(&what, e))?;
        drop(req);
        let instance_id = run
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .ok_or_else(|| FerryError::Aws("RunInstances returned no instance".into()))?
            .to_string();
        log::info(
            &session,
            "instance launched",
            &[("id", &instance_id), ("ami", &ami)],
        );
        st.instance_id = Some(instance_id.clone());

        let host = self
            .wait_running(&session, &instance_id, started, deadline)
            .await?;
        st.host = Some(host.clone());
        st.phase = "ready".into();
        self.put_state(st, false).await?;
        Ok(host)
    }

    /// The newest Amazon-owned Amazon Linux 2023 x86_64 AMI.
    async fn latest_al2023(&self) -> Result<String, FerryError> {
        let out = self
            .ec2
            .describe_images()
            .owners("amazon")
            .filters(
                Filter::builder()
                    .name("name")
                    .values("al2023-ami-2023.*-x86_64")
                    .build(),
            )
            .filters(Filter::builder().name("state").values("available").build())
            .filters(
                Filter::builder()
                    .name("architecture")
                    .values("x86_64")
                    .build(),
            )
            .send()
            .await
            .map_err(|e| ec2_err("looking up the Amazon Linux 2023 AMI", e))?;
        out.images()
            .iter()
            .filter(|i| i.image_id().is_some())
            .max_by_key(|i| (i.creation_date().unwrap_or(""), i.name().unwrap_or("")))
            .and_then(|i| i.image_id())
            .map(String::from)
            .ok_or_else(|| {
                FerryError::Aws(
                    "no Amazon-owned al2023-ami-2023.*-x86_64 image found; set FERRY_AMI_ID".into(),
                )
            })
    }

    /// Poll until the instance runs and has a public address (bounded).
    /// A NotFound is "pending" until the propagation allowance ends (see the module doc).
    async fn wait_running(
        &self,
        session: &str,
        instance_id: &str,
        started: Option<OffsetDateTime>,
        deadline: Instant,
    ) -> Result<String, FerryError> {
        let end = until(deadline, Duration::from_secs(240));
        let mut delay = Duration::from_millis(250);
        loop {
            let what = format!("waiting for {instance_id} to run");
            let out = retry_pending(
                session,
                &what,
                self.propagation_end(started, deadline),
                |code, _| instance_not_found(code),
                async || {
                    self.ec2
                        .describe_instances()
                        .instance_ids(instance_id)
                        .send()
                        .await
                },
            )
            .await
            .map_err(|e| ec2_err(&what, e))?;
            let inst = out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find(|i| i.instance_id() == Some(instance_id));
            let state = inst.and_then(|i| i.state()).and_then(|s| s.name()).cloned();
            match state {
                Some(InstanceStateName::Running) => {
                    if let Some(ip) = inst.and_then(|i| i.public_ip_address()) {
                        return Ok(ip.to_string());
                    }
                }
                Some(InstanceStateName::Pending) | None => {}
                Some(other) => {
                    return Err(FerryError::Aws(format!(
                        "{instance_id} went to {} instead of running",
                        other.as_str()
                    )));
                }
            }
            if Instant::now() + delay > end {
                return Err(FerryError::Aws(format!(
                    "{instance_id} not running with a public address in time (last state {})",
                    state
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_else(|| "unknown".into())
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(3));
        }
    }

    // ----- ferry-clean -----

    fn session_filters(&self, session: Option<&str>) -> Vec<Filter> {
        let mut f = vec![
            Filter::builder()
                .name(format!("tag:{}", tags::INSTALLATION))
                .values(&self.cfg.installation)
                .build(),
        ];
        match session {
            Some(s) => f.push(
                Filter::builder()
                    .name(format!("tag:{}", tags::SESSION))
                    .values(s)
                    .build(),
            ),
            None => f.push(
                Filter::builder()
                    .name("tag-key")
                    .values(tags::SESSION)
                    .build(),
            ),
        }
        f
    }

    /// Instances of this installation (of `session`, or of any session) that are not terminated,
    /// with their session tag.
    async fn tagged_instances(
        &self,
        session: Option<&str>,
    ) -> Result<Vec<(String, String)>, FerryError> {
        let mut out = Vec::new();
        let mut token = None;
        for _ in 0..100 {
            let page = self
                .ec2
                .describe_instances()
                .set_filters(Some(self.session_filters(session)))
                .filters(
                    Filter::builder()
                        .name("instance-state-name")
                        .values("pending")
                        .values("running")
                        .values("shutting-down")
                        .values("stopping")
                        .values("stopped")
                        .build(),
                )
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| ec2_err("listing session instances by tag", e))?;
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                let s = session_tag(i.tags());
                if let Some(id) = i.instance_id() {
                    out.push((id.to_string(), s.to_string()));
                }
            }
            token = page.next_token().map(String::from);
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Security groups of this installation (of `session`, or of any session), with their session tag.
    async fn tagged_groups(
        &self,
        session: Option<&str>,
    ) -> Result<Vec<(String, String)>, FerryError> {
        let mut out = Vec::new();
        let mut token = None;
        for _ in 0..100 {
            let page = self
                .ec2
                .describe_security_groups()
                .set_filters(Some(self.session_filters(session)))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| ec2_err("listing session security groups by tag", e))?;
            for g in page.security_groups() {
                let s = session_tag(g.tags());
                if let Some(id) = g.group_id() {
                    out.push((id.to_string(), s.to_string()));
                }
            }
            token = page.next_token().map(String::from);
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// States of `ids` (`None`: EC2 answered InvalidInstanceID.NotFound).
    async fn instance_states(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, Option<InstanceStateName>)>, FerryError> {
        let mut out = Vec::new();
        for id in ids {
            let r = self.ec2.describe_instances().instance_ids(id).send().await;
            let state = match r {
                Ok(o) => o
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .find(|i| i.instance_id() == Some(id.as_str()))
                    .and_then(|i| i.state())
                    .and_then(|s| s.name())
                    .cloned(),
                Err(e) if instance_not_found(e.code()) => None,
                Err(e) => return Err(ec2_err(&format!("describing {id}"), e)),
            };
            out.push((id.clone(), state));
        }
        Ok(out)
    }

    /// Whether a NotFound for this session's resources may still mean "not visible yet". The
    /// allowance is shortened by one backoff step: [`retry_pending`] gives up that much before
    /// its end, and a NotFound met there is the allowance running out, not the deadline.
    fn propagating(&self, started: Option<OffsetDateTime>) -> bool {
        started.is_some_and(|t| {
            let allowance = Duration::from_secs(self.cfg.propagation_seconds)
                .saturating_sub(PENDING_CAP + Duration::from_secs(1));
            OffsetDateTime::now_utc() - t < allowance
        })
    }

    /// Terminate `id` whatever a Describe says (TerminateInstances is idempotent). `Some(previous
    /// state)` when EC2 accepted it; `None` when EC2 does not know the id and the session is past
    /// its propagation allowance (gone long ago). A NotFound within the allowance is retried
    /// and, at the deadline, an error: it never means "terminated".
    async fn terminate(
        &self,
        session: &str,
        id: &str,
        started: Option<OffsetDateTime>,
        deadline: Instant,
    ) -> Result<Option<Option<InstanceStateName>>, FerryError> {
        let what = format!("terminating {id}");
        match retry_pending(
            session,
            &what,
            self.propagation_end(started, deadline),
            |code, _| instance_not_found(code),
            async || self.ec2.terminate_instances().instance_ids(id).send().await,
        )
        .await
        {
            Ok(out) => Ok(Some(
                out.terminating_instances()
                    .iter()
                    .find(|t| t.instance_id() == Some(id))
                    .and_then(|t| t.previous_state())
                    .and_then(|s| s.name())
                    .cloned(),
            )),
            Err(e) if instance_not_found(e.code()) && !self.propagating(started) => Ok(None),
            Err(e) if instance_not_found(e.code()) => Err(FerryError::Aws(format!(
                "{what}: EC2 does not see it yet (InvalidInstanceID.NotFound within {} s of the \
                 session's start); it may still be running",
                self.cfg.propagation_seconds
            ))),
            Err(e) => Err(ec2_err(&what, e)),
        }
    }

    /// Remove everything of `session`: idempotent, reports what it removed.
    pub async fn clean_session(
        &self,
        session: &str,
        deadline: Instant,
    ) -> Result<CleanReport, FerryError> {
        self.clean_known(session, None, deadline).await
    }

    /// [`Cloud::clean_session`], also removing the resources `known` names (a rollback's own
    /// record of what it made).
    async fn clean_known(
        &self,
        session: &str,
        known: Option<&SessionState>,
        deadline: Instant,
    ) -> Result<CleanReport, FerryError> {
        let mut report = CleanReport {
            session: session.to_string(),
            removed: Vec::new(),
        };
        let state = self.get_state(session).await?;
        if let Some(st) = &state
            && st.installation != self.cfg.installation
        {
            return Err(FerryError::BadRequest(format!(
                "session {session} belongs to installation {:?}, not {:?}",
                st.installation, self.cfg.installation
            )));
        }
        let started = session_started(session, state.as_ref());

        // Instances: from the state and from the tags. The recorded ones are terminated even
        // when the tag lookup fails (its error is returned afterwards).
        let mut instances: BTreeSet<String> = state
            .iter()
            .chain(known)
            .filter_map(|s| s.instance_id.clone())
            .collect();
        let tag_lookup = match self.tagged_instances(Some(session)).await {
            Ok(found) => {
                instances.extend(found.into_iter().map(|(id, _)| id));
                Ok(())
            }
            Err(e) => Err(e),
        };
        let mut live = Vec::new();
        for id in &instances {
            match self.terminate(session, id, started, deadline).await? {
                Some(Some(InstanceStateName::Terminated)) | None => {}
                Some(_) => live.push(id.clone()),
            }
        }
        tag_lookup?;
        if !live.is_empty() {
            log::info(
                session,
                "instances terminating",
                &[("ids", &live.join(","))],
            );
            let end = until(deadline, Duration::from_secs(300));
            let mut delay = Duration::from_millis(250);
            loop {
                let states = self.instance_states(&live).await?;
                // Only `terminated` ends the wait; a NotFound does too once the session is past
                // its propagation allowance.
                let propagating = self.propagating(started);
                let waiting: Vec<_> = states
                    .iter()
                    .filter(|(_, s)| match s {
                        Some(s) => *s != InstanceStateName::Terminated,
                        None => propagating,
                    })
                    .map(|(id, s)| {
                        format!(
                            "{id} ({})",
                            s.as_ref().map(|s| s.as_str()).unwrap_or("not found")
                        )
                    })
                    .collect();
                if waiting.is_empty() {
                    break;
                }
                if Instant::now() + delay > end {
                    return Err(FerryError::Aws(format!(
                        "still not terminated: {}",
                        waiting.join(", ")
                    )));
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            report
                .removed
                .extend(live.iter().map(|i| format!("instance {i}")));
        }

        // Security groups: from the state and from the tags.
        let mut groups: BTreeSet<String> = state
            .iter()
            .chain(known)
            .filter_map(|s| s.security_group_id.clone())
            .collect();
        groups.extend(
            self.tagged_groups(Some(session))
                .await?
                .into_iter()
                .map(|(id, _)| id),
        );
        for g in groups {
            if self.delete_group(session, &g, started, deadline).await? {
                report.removed.push(format!("security-group {g}"));
            }
        }

        if state.is_some() {
            let key = Self::state_key(session);
            self.s3
                .delete_object()
                .bucket(&self.cfg.state_bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| {
                    s3_err(&format!("deleting s3://{}/{key}", self.cfg.state_bucket), e)
                })?;
            report.removed.push(format!("state {key}"));
        }
        log::info(
            session,
            "clean done",
            &[("removed", &report.removed.join(", "))],
        );
        Ok(report)
    }

    /// Delete a security group, retrying while EC2 still sees it in use (DependencyViolation)
    /// and, within the session's propagation allowance, while EC2 does not see it yet
    /// (InvalidGroup.NotFound). `false` if it was already gone.
    async fn delete_group(
        &self,
        session: &str,
        id: &str,
        started: Option<OffsetDateTime>,
        deadline: Instant,
    ) -> Result<bool, FerryError> {
        let what = format!("deleting security group {id}");
        let end = until(deadline, Duration::from_secs(180));
        let mut delay = Duration::from_millis(500);
        loop {
            let r = retry_pending(
                session,
                &what,
                self.propagation_end(started, deadline),
                |code, _| group_not_found(code),
                async || self.ec2.delete_security_group().group_id(id).send().await,
            )
            .await;
            match r {
                Ok(_) => return Ok(true),
                Err(e) if group_not_found(e.code()) && !self.propagating(started) => {
                    return Ok(false);
                }
                Err(e) if group_not_found(e.code()) => {
                    return Err(FerryError::Aws(format!(
                        "{what}: EC2 does not see it yet (InvalidGroup.NotFound within {} s of \
                         the session's start)",
                        self.cfg.propagation_seconds
                    )));
                }
                Err(e)
                    if e.code() == Some("DependencyViolation") && Instant::now() + delay <= end =>
                {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(ec2_err(&what, e)),
            }
        }
    }

    /// Clean every expired session and every orphan (tagged resources without a state object).
    pub async fn sweep(&self, deadline: Instant) -> Result<SweepReport, FerryError> {
        let now = OffsetDateTime::now_utc();
        let mut report = SweepReport::default();
        let mut errors = Vec::new();
        // EC2 first: its Describe calls are free, an S3 LIST is billed like a PUT (module doc).
        let tagged: Vec<(String, String)> = self
            .tagged_instances(None)
            .await?
            .into_iter()
            .chain(self.tagged_groups(None).await?)
            .collect();
        // Only when EC2 shows one of the installation's resources are the states listed.
        if !tagged.is_empty() {
            report.states_listed = true;
            self.sweep_states(tagged, now, deadline, &mut report, &mut errors)
                .await?;
        }
        log::info(
            "sweep",
            "sweep done",
            &[
                ("cleaned", &report.sessions.len().to_string()),
                ("errors", &errors.len().to_string()),
                ("states_listed", &report.states_listed.to_string()),
            ],
        );
        if errors.is_empty() {
            Ok(report)
        } else {
            let done: Vec<_> = report.sessions.iter().map(|r| r.session.as_str()).collect();
            Err(FerryError::Aws(format!(
                "sweep cleaned [{}] but failed: {}",
                done.join(", "),
                errors.join("; ")
            )))
        }
    }

    /// The sweep's second half, when EC2 showed `tagged` resources: list and read the states,
    /// then clean every expired or abandoned session and every orphan.
    async fn sweep_states(
        &self,
        tagged: Vec<(String, String)>,
        now: OffsetDateTime,
        deadline: Instant,
        report: &mut SweepReport,
        errors: &mut Vec<String>,
    ) -> Result<(), FerryError> {
        let states = self.list_states().await?;
        let with_state: BTreeSet<String> = states.iter().cloned().collect();
        let mut to_clean = Vec::new();
        for id in &states {
            match self.get_state(id).await {
                Ok(Some(st)) if st.expired(now) || st.abandoned(now) => to_clean.push(id.clone()),
                Ok(Some(_)) => report.kept.push(id.clone()),
                Ok(None) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        let mut orphans = BTreeSet::new();
        for (_, s) in tagged {
            if !s.is_empty() && !with_state.contains(&s) {
                orphans.insert(s);
            }
        }
        for o in &orphans {
            if crate::payload::check_session_id(o).is_ok() {
                report.orphans.push(o.clone());
                to_clean.push(o.clone());
            } else {
                errors.push(format!(
                    "resources tagged {}={o:?}: not a Ferry session id; left alone",
                    tags::SESSION
                ));
            }
        }
        for id in to_clean {
            match self.clean_session(&id, deadline).await {
                Ok(r) => report.sessions.push(r),
                Err(e) => errors.push(format!("{id}: {e}")),
            }
        }
        Ok(())
    }
}

/// The value of a resource's `ferry:session` tag ("" when it has none).
fn session_tag(tags: &[aws_sdk_ec2::types::Tag]) -> &str {
    tags.iter()
        .find(|t| t.key() == Some(tags::SESSION))
        .and_then(|t| t.value())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(phase: &str, created: OffsetDateTime, deadline: Option<&str>) -> SessionState {
        SessionState {
            version: 1,
            session: "fs-20261203-000000-00000000".into(),
            installation: "ferry".into(),
            site: "home".into(),
            created: rfc3339(created),
            expires: rfc3339(created + time::Duration::minutes(65)),
            phase: phase.into(),
            security_group_id: None,
            instance_id: None,
            host: None,
            host_key: None,
            build_deadline: deadline.map(str::to_string),
        }
    }

    #[test]
    fn a_build_is_abandoned_once_its_invocation_and_the_margin_are_over() {
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let at = |secs: i64| rfc3339(now + time::Duration::seconds(secs));
        let created = now - time::Duration::minutes(2);
        // Within the invocation, or within the margin after it: still a build in progress.
        assert!(!state("instance", created, Some(&at(30))).abandoned(now));
        assert!(!state("instance", created, Some(&at(-14))).abandoned(now));
        // Past the deadline and the margin: abandoned, whatever phase short of ready.
        for phase in ["intent", "security-group", "instance"] {
            assert!(
                state(phase, created, Some(&at(-16))).abandoned(now),
                "{phase}"
            );
        }
        // A ready session is a session, however old its build.
        assert!(!state("ready", created, Some(&at(-600))).abandoned(now));
        // Without the field (an older ferry-build): 15 min after `created`.
        assert!(!state("instance", now - time::Duration::minutes(10), None).abandoned(now));
        assert!(state("instance", now - time::Duration::minutes(16), None).abandoned(now));
        // A deadline that does not parse cannot hold a slot.
        assert!(state("instance", created, Some("soon")).abandoned(now));
    }
}
