//! Health pings (the healthchecks.io convention): `POST <url>/start` when a run starts,
//! `POST <url>` when it succeeded, `POST <url>/fail` when it failed, the run's summary as the
//! body. Each attempt is bounded by `ping.timeout`, failed attempts are retried
//! `ping.retries` times 1 s, 2 s, 4 s … apart, and a ping that never gets through is a
//! warning, never the run's failure.
//!
//! The client is hyper 1 with rustls (aws-lc-rs): the stack the AWS SDK already builds, so
//! pings add no crate to the build. It trusts the system's CA certificates the standard way
//! (`rustls-native-certs`: the system store, or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set) and
//! those of `[ping] ca_file`: a self-hosted checker with a private CA is trusted by naming its
//! CA in Ferry's own config, without adding it to the whole system's store and without an
//! environment variable that a systemd service would not inherit. The URL's path is the
//! check's secret: messages show only its scheme and host.

use crate::config::PingPlan;
use bytes::Bytes;
use http_body_util::Full;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;
use std::time::Duration;

/// The largest `ca_file` read (a bundle of a few hundred certificates).
pub const MAX_CA_FILE: u64 = 1 << 20;

/// The CA certificates of a PEM file (`[ping] ca_file`); an error (a sentence naming the file)
/// when it cannot be read, is not PEM, or holds no certificate.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = ferry_repo::files::read_bounded(path, MAX_CA_FILE)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The most bytes of summary a ping sends (healthchecks.io keeps 100 kB, shows 10 kB).
pub const MAX_BODY: usize = 10_000;

/// Which ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingKind {
    /// The run starts: `<url>/start`.
    Start,
    /// The run succeeded: `<url>`.
    Success,
    /// The run failed: `<url>/fail`.
    Fail,
}

impl PingKind {
    /// The URL pinged for this kind.
    pub fn url(self, base: &str) -> String {
        match self {
            PingKind::Start => format!("{base}/start"),
            PingKind::Success => base.to_string(),
            PingKind::Fail => format!("{base}/fail"),
        }
    }

    /// `start`, `success`, `fail` (for messages).
    pub fn name(self) -> &'static str {
        match self {
            PingKind::Start => "start",
            PingKind::Success => "success",
            PingKind::Fail => "fail",
        }
    }
}

/// `body` cut to at most [`MAX_BODY`] bytes, on a character boundary.
pub fn bounded(body: &str) -> &str {
    if body.len() <= MAX_BODY {
        return body;
    }
    let mut end = MAX_BODY;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    &body[..end]
}

/// Send one ping (with the plan's retries). `Err` is a sentence for the log, naming the ping,
/// the host (never the path) and the last attempt's error.
pub fn ping(plan: &PingPlan, kind: PingKind, body: &str) -> Result<(), String> {
    let what = format!("the {} ping to {}", kind.name(), plan.shown());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("{what}: starting the async runtime: {e}"))?;
    let extra = match &plan.ca_file {
        Some(f) => load_ca_file(f).map_err(|e| format!("{what}: ca_file {e}"))?,
        None => Vec::new(),
    };
    let client = client(extra).map_err(|e| format!("{what}: {e}"))?;
    let url = kind.url(&plan.url);
    let body = Bytes::copy_from_slice(bounded(body).as_bytes());
    let attempts = plan.retries + 1;
    let mut last = String::new();
    for attempt in 0..attempts {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(1 << (attempt - 1).min(5)));
        }
        let req = hyper::Request::post(url.as_str())
            .header(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(
                hyper::header::USER_AGENT,
                concat!("ferry/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body.clone()))
            .map_err(|e| format!("{what}: {e}"))?;
        let r =
            rt.block_on(async { tokio::time::timeout(plan.timeout, client.request(req)).await });
        last = match r {
            Ok(Ok(resp)) if resp.status().is_success() => return Ok(()),
            Ok(Ok(resp)) => format!("answered {}", resp.status()),
            Ok(Err(e)) => crate::error::error_chain(&e),
            Err(_) => format!("no answer within {} s", plan.timeout.as_secs()),
        };
    }
    Err(format!(
        "{what} failed after {} attempt{}: {last}",
        attempts,
        if attempts == 1 { "" } else { "s" }
    ))
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// An HTTP(S) client trusting the system's CA certificates and `extra` (none at all: HTTPS
/// pings fail with a certificate error, plain HTTP still works).
fn client(extra: Vec<CertificateDer<'static>>) -> Result<Client, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots.add_parsable_certificates(extra);
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https),
    )
}
