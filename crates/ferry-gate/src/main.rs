//! # ferry-gate — the jump-box gate (stub; see issue 3)
fn main() {}
