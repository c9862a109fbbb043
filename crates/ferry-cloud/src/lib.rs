//! # ferry-cloud — the cloud layer
//!
//! Owns policy documents, permanent infrastructure and session provisioning. Must never depend on SSH or the CLI.
