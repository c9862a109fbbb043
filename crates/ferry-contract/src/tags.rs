//! Tag keys on the resources Ferry manages. ferry-cloud's policies condition on them
//! (`aws:RequestTag/…`, `aws:ResourceTag/…`) and ferry-build sets them; a different spelling on
//! either side would make every RunInstances fail with AccessDenied.

/// Tag on every resource Ferry manages.
pub const MANAGED: &str = "ferry:managed";
/// Tag naming the installation (its prefix): two installations in one account never touch each
/// other's resources.
pub const INSTALLATION: &str = "ferry:installation";
/// Tag carried by every per-session resource (jump box, its volume and security group).
pub const SESSION: &str = "ferry:session";
/// The session's site, on its per-session resources.
pub const SITE: &str = "ferry:site";
/// The session's expiry (RFC 3339), on its per-session resources (the sweep reads it).
pub const EXPIRY: &str = "ferry:expiry";
