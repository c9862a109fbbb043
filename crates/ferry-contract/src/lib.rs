//! # ferry-contract — what Ferry's parts say to each other
//!
//! Owns every message and name that one Ferry part writes and another reads, so that a
//! mismatch is a compile error instead of a failure at run time:
//! - [`lambda`]: the ferry-build and ferry-clean request and response types (the `ferry`
//!   client and the EventBridge sweep rule send them, `bootstrap` parses and answers them), the
//!   functions' names and the form of a session id (`bootstrap` makes and checks them, the
//!   client's spool notes them);
//! - [`env`]: the functions' environment variables (`ferry infra apply` sets them, `bootstrap`
//!   reads them);
//! - [`hooks`]: the environment of the backup VM's `[hooks]` commands (ferry-run sets it, the
//!   user's scripts read it);
//! - [`tags`]: the tag keys on every resource Ferry manages (the Lambda role's policy conditions
//!   in ferry-cloud, the resources ferry-build creates);
//! - [`keys`]: the state bucket's key layout (session state, day records, artifacts) and the
//!   audit prefix in the backup bucket;
//! - [`limits`]: the defaults of the functions' limits that `ferry infra` also needs (its
//!   config's defaults, the worst-case bill of `ferry infra plan`);
//! - [`gate`]: the gate's session config file (`gate.toml`: ferry-build writes it into the jump
//!   box's user data with the serializer, `ferry-gate serve` reads it with the same type) and
//!   where things live on the jump box.
//!
//! Serde types, constants and the form of the names they carry. Must never depend on the AWS SDK, SSH, the repository engine
//! or any other Ferry crate, and does no I/O: every crate that exchanges these may depend on it.
//! Validation that needs more than the types (a site name's rules, a key's algorithm) belongs to
//! the receiving side.

pub mod env;
pub mod gate;
pub mod hooks;
pub mod keys;
pub mod lambda;
pub mod limits;
pub mod tags;
