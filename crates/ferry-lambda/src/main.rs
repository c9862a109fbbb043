//! # ferry-lambda — `bootstrap`, the ferry-build and ferry-clean Lambda functions
//!
//! One static binary for the custom runtime `provided.al2023`, deployed twice. Which handler a
//! process runs is decided once at init by `FERRY_HANDLER` (`build`/`clean`, set at deploy time),
//! or, when unset, by the suffix of the function's name (`…-build`, `…-clean`).
//!
//! - ferry-build (`{"site": …, "public_key"?: …, "ttl_minutes"?: …}`): provisions one jump-box
//!   session (security group + EC2 instance + state object) and answers host, port, user, host
//!   key, expiry (and a generated client private key only when no public key was sent).
//! - ferry-clean (`{"session": ID}` or `{"sweep": true}`): removes a session, idempotently; or
//!   sweeps expired and orphaned sessions.
//!
//! See `docs/LAMBDA.md`. Owns: payload validation, session provisioning ([`session`], written to
//! move to `ferry-cloud` later), the jump box's user data ([`userdata`]). Must never depend on
//! the repository engine, SSH crates, the CLI, or the backup bucket (the Lambda role cannot touch
//! it). AWS endpoints come only from the SDK's standard configuration.
//!
//! Logs are one JSON object per line on stderr (CloudWatch). They never contain key material:
//! neither the generated private keys nor the user data (which carries the host key).

mod config;
mod log;
mod payload;
mod session;
mod userdata;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;

use crate::config::{Config, Handler};
use crate::session::Cloud;

/// Every error a handler returns; the variant becomes the Lambda `errorType`.
#[derive(Debug, thiserror::Error)]
pub enum FerryError {
    /// The payload is malformed or refused.
    #[error("{0}")]
    BadRequest(String),
    /// The concurrent session limit is reached.
    #[error("session limit reached: {0}")]
    Limit(String),
    /// A per-day limit is reached (sessions per UTC day, a site's bytes per UTC day).
    #[error("daily limit reached: {0}")]
    DailyLimit(String),
    /// An AWS call failed (with the resource it was about).
    #[error("{0}")]
    Aws(String),
    /// Something that should not happen (key encoding).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<FerryError> for Diagnostic {
    fn from(e: FerryError) -> Diagnostic {
        let error_type = match &e {
            FerryError::BadRequest(_) => "Ferry.BadRequest",
            FerryError::Limit(_) => "Ferry.SessionLimit",
            FerryError::DailyLimit(_) => "Ferry.DailyLimit",
            FerryError::Aws(_) => "Ferry.Provisioning",
            FerryError::Internal(_) => "Ferry.Internal",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// The invocation's deadline as an `Instant` (bounded to 15 minutes, Lambda's maximum).
fn deadline_of(ctx: &lambda_runtime::Context) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let left = ctx.deadline.saturating_sub(now_ms).min(15 * 60 * 1000);
    Instant::now() + Duration::from_millis(left)
}

async fn handle(cloud: &Cloud, ev: LambdaEvent<Value>) -> Result<Value, FerryError> {
    let started = Instant::now();
    let deadline = deadline_of(&ev.context);
    let request_id = ev.context.request_id.clone();
    let result = match cloud.cfg.handler {
        Handler::Build => {
            let req = payload::parse_build(ev.payload)?;
            let resp = cloud.build(req, deadline).await?;
            serde_json::to_value(&resp)
                .map_err(|e| FerryError::Internal(format!("encoding the answer: {e}")))
        }
        Handler::Clean => {
            let req = payload::parse_clean(ev.payload)?;
            match req.session {
                Some(s) => cloud.clean_session(&s, deadline).await.and_then(|r| {
                    serde_json::to_value(r)
                        .map_err(|e| FerryError::Internal(format!("encoding the answer: {e}")))
                }),
                None => cloud.sweep(deadline).await.and_then(|r| {
                    serde_json::to_value(r)
                        .map_err(|e| FerryError::Internal(format!("encoding the answer: {e}")))
                }),
            }
        }
    };
    let ms = started.elapsed().as_millis().to_string();
    match &result {
        Ok(_) => log::info(&request_id, "invocation done", &[("handler_ms", &ms)]),
        Err(e) => log::error(
            &request_id,
            "invocation failed",
            &[("handler_ms", &ms), ("error", &e.to_string())],
        ),
    }
    result
}

/// Report an init failure to the runtime API (`/runtime/init/error`), as the Lambda custom
/// runtime contract asks, then exit non-zero.
fn init_error(message: &str) -> ! {
    log::error("init", "init failed", &[("error", message)]);
    if let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") {
        let body =
            serde_json::json!({"errorType": "Ferry.Config", "errorMessage": message}).to_string();
        let req = format!(
            "POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\n\
             Lambda-Runtime-Function-Error-Type: Ferry.Config\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        if let Ok(mut s) = std::net::TcpStream::connect(&api) {
            use std::io::{Read, Write};
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(req.as_bytes());
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
    }
    std::process::exit(1)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cfg = match Config::from_env() {
        Ok(c) => c,
        Err(e) => init_error(&format!("function configuration: {e}")),
    };
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let cloud = Cloud {
        ec2: aws_sdk_ec2::Client::new(&sdk),
        s3: aws_sdk_s3::Client::new(&sdk),
        cfg,
    };
    log::info(
        "init",
        "ready",
        &[(
            "handler",
            match cloud.cfg.handler {
                Handler::Build => "build",
                Handler::Clean => "clean",
            },
        )],
    );
    let cloud = &cloud;
    if let Err(e) = lambda_runtime::run(service_fn(move |ev| handle(cloud, ev))).await {
        log::error(
            "runtime",
            "runtime loop ended",
            &[("error", &e.to_string())],
        );
        std::process::exit(1);
    }
}
