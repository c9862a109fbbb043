//! # ferry — the CLI (thin: parses arguments, calls the engine)
fn main() {}
