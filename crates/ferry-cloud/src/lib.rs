//! # ferry-cloud — the cloud layer
//!
//! Owns the infrastructure configuration and its validation ([`config`]), every IAM, bucket and
//! endpoint policy document ([`policy`], the single place they are generated), the authorization
//! matrix those documents must satisfy with a local IAM evaluator for it ([`verify`]), the
//! permanent infrastructure, session provisioning, and the worst-case monthly bill the
//! configured limits allow a stolen backup credential ([`cost`]).
//!
//! Errors are typed ([`Error`]: the failed AWS call and its resource, a resource that is not
//! this installation's, a limit, a bad config naming its file and field, …) and the library
//! never prints: `ferry infra` writes its report to the writer the caller passes.
//!
//! Must never depend on SSH, on the repository engine's internals or on the CLI. AWS endpoints
//! come only from the SDK's standard configuration: nothing here knows whether it talks to AWS
//! or to an emulator.

pub mod config;
pub mod cost;
pub mod error;
pub mod infra;
pub mod policy;
pub mod verify;

pub use error::{Error, Result};
pub use infra::{InfraArgs, InfraCommand, infra_main};
