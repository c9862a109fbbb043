//! # ferry-remote — the gate-over-SSH storage backend
//!
//! Owns the client side of the gate protocol over the system OpenSSH client. Must never depend on AWS.
