//! The backup VM's side of a session: invoke ferry-build and ferry-clean with the backup
//! user's credentials (which allow nothing else), through `aws-sdk-lambda` and the SDK's own
//! configuration (profile, region, `AWS_ENDPOINT_URL_LAMBDA`).

use crate::config::CloudPlan;
use crate::error::{Context, Error, bail};
use aws_config::BehaviorVersion;
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};

/// ferry-build's answer: ferry-contract's type, the one the function serializes (unknown
/// fields are ignored; its `Debug` never shows a key).
pub use ferry_contract::lambda::BuildResponse as Session;
use ferry_contract::lambda::{BuildRequest, CleanRequest};

/// A Lambda client for the two functions.
#[derive(Clone, Debug)]
pub struct Functions {
    client: aws_sdk_lambda::Client,
    plan: CloudPlan,
}

impl Functions {
    /// A client in `plan`'s region, with its profile and credentials file if set (else the
    /// SDK's default chain).
    pub async fn new(plan: &CloudPlan) -> Functions {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(plan.region.clone()));
        if let Some(p) = &plan.profile {
            loader = loader.profile_name(p);
        }
        if let Some(f) = &plan.credentials_file {
            let files = EnvConfigFiles::builder()
                .include_default_config_file(true)
                .with_file(EnvConfigFileKind::Credentials, f)
                .build();
            loader = loader.profile_files(files);
        }
        let sdk = loader.load().await;
        Functions {
            client: aws_sdk_lambda::Client::new(&sdk),
            plan: plan.clone(),
        }
    }

    async fn invoke(&self, function: &str, payload: String) -> Result<Vec<u8>, Error> {
        let out = self
            .client
            .invoke()
            .function_name(function)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload))
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) => Error::msg(format!(
                    "invoking {function}: {}: {}",
                    aws_sdk_lambda::error::ProvideErrorMetadata::code(se).unwrap_or("error"),
                    aws_sdk_lambda::error::ProvideErrorMetadata::message(se).unwrap_or("")
                )),
                None => Error::msg(format!(
                    "invoking {function}: {}",
                    aws_sdk_lambda::error::DisplayErrorContext(&e)
                )),
            })?;
        let body = out
            .payload()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default();
        if let Some(kind) = out.function_error() {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            return Err(Error::FunctionFailed {
                function: function.to_string(),
                kind: kind.to_string(),
                error_type: v["errorType"].as_str().unwrap_or("error").to_string(),
                message: v["errorMessage"]
                    .as_str()
                    .unwrap_or("(no message)")
                    .to_string(),
            });
        }
        Ok(body)
    }

    /// Ask ferry-build for a jump box that accepts `public_key` for `site`.
    pub async fn build(&self, site: &str, public_key: &str) -> Result<Session, Error> {
        let f = &self.plan.build_function;
        let body = self
            .invoke(
                f,
                Self::json(&BuildRequest {
                    site: site.to_string(),
                    public_key: Some(public_key.to_string()),
                    ttl_minutes: Some(self.plan.session_minutes),
                })?,
            )
            .await
            .map_err(|e| {
                // Lambda stopped the handler (its timeout, or a crash): what it made is an
                // abandoned build, which holds no session slot once its invocation is over.
                if matches!(&e, Error::FunctionFailed { error_type, .. }
                    if error_type == "Sandbox.Timedout" || error_type == "Runtime.ExitError")
                {
                    e.context(format!(
                        "{f} stopped before it answered; what it made holds no session slot \
                         after its timeout, and ferry-clean's six-hourly sweep removes it"
                    ))
                } else {
                    e
                }
            })?;
        let s: Session = serde_json::from_slice(&body)
            .with_context(|| format!("{f} answered something that is not a session"))?;
        if s.site != site {
            bail!("{f} answered a session for site {:?}, not {site:?}", s.site);
        }
        if s.host.is_empty() || s.port == 0 {
            bail!("{f} answered session {} without an address", s.session);
        }
        Ok(s)
    }

    /// Ask ferry-clean to remove `session` (instance, security group, state).
    pub async fn clean(&self, session: &str) -> Result<(), Error> {
        self.invoke(
            &self.plan.clean_function,
            CleanRequest::session(session).to_json(),
        )
        .await
        .map(|_| ())
    }

    fn json(request: &BuildRequest) -> Result<String, Error> {
        serde_json::to_string(request).context("encoding ferry-build's request")
    }

    /// Name of the clean function (for messages and events).
    pub fn clean_function(&self) -> &str {
        &self.plan.clean_function
    }
}

/// A fresh ed25519 client key for one session: (OpenSSH private key, public key line).
pub fn session_key() -> Result<(zeroize::Zeroizing<String>, String), Error> {
    let key = ssh_key::PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519)
        .context("generating the session's SSH key")?;
    let private = key
        .to_openssh(ssh_key::LineEnding::LF)
        .context("encoding the session's SSH key")?;
    let public = key
        .public_key()
        .to_openssh()
        .context("encoding the session's public key")?;
    Ok((private, public))
}
