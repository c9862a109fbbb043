//! # ferry-testkit — the local cloud for tests and the demo
//!
//! Starts real parts (moto server, OpenSSH sshd, ...) on free loopback ports and stops them by PID.
//! Product crates must never depend on it except as a dev-dependency.
