#!/usr/bin/env bash
# Ferry's test command (README, .ci/run): installs what the tests need, then runs the
# format check, clippy, and every Rust test: unit, integration with real moto/sshd/binaries,
# and the independent proof of the IAM/bucket policies (parliament + principalmapper, run by
# crates/ferry-cloud/tests/policy_proof.rs), then the demo (scripts/demo.sh) on the local cloud.
set -euo pipefail
cd "$(dirname "$0")/.."
# Build outside the clone so later runs (and CI on the same machine) reuse it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}"
export CARGO_TERM_COLOR=never
# A test runner of our own must never talk to a real AWS account: drop any ambient profile.
unset AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN

step() { printf '\n==> %s\n' "$*"; }

step "install dependencies (apt: openssh-server, restic…; pip: moto, policy tools in .venv)"
bash scripts/install-deps.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "bootstrap and ferry-gate for Amazon Linux 2023 (cargo-zigbuild, glibc 2.34; checked by ferry-cloud's al2023_glibc test)"
bash scripts/build-al2023.sh debug

step "cargo test (unit + integration against real moto, sshd, ferry, ferry-gate)"
cargo test --workspace --locked --no-fail-fast

step "the demo (README command 1): the whole job on the local cloud, restore compared, nothing left"
bash scripts/demo.sh "$(mktemp -d /tmp/ferry-demo-ci.XXXXXX)"

step "all checks passed"
