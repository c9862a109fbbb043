//! # ferry-proto — the client ⇄ gate wire protocol
//!
//! Owns frame encoding/decoding and message types. Must never depend on AWS, SSH or the engine.
