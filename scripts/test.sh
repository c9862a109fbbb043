#!/usr/bin/env bash
# Ferry's test command (README, .ci/run): installs what the tests need, then runs the
# format check, clippy, and every Rust test: unit, integration with real moto/sshd/binaries,
# and the independent proof of the IAM/bucket policies (parliament + principalmapper, run by
# crates/ferry-cloud/tests/policy_proof.rs), then the demo (scripts/demo.sh) on the local cloud,
# with every fuzz target (scripts/fuzz.sh) run for a bounded time beside it.
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

# The fuzzers run beside the demo (which mostly waits on sshd, moto and the jump box), each
# target for a bounded time from the seeds kept in fuzz/seeds/; a crash fails the run.
FUZZ_SECONDS="${FERRY_FUZZ_SECONDS:-15}"
fuzz_log="$(mktemp /tmp/ferry-fuzz.XXXXXX.log)"
step "fuzz every parser of outside data (scripts/fuzz.sh, ${FUZZ_SECONDS} s per target), beside the demo; log: $fuzz_log"
bash scripts/fuzz.sh "$FUZZ_SECONDS" >"$fuzz_log" 2>&1 &
fuzz_pid=$!
trap 'kill "$fuzz_pid" 2>/dev/null || true' EXIT

step "the demo (README command 1): the whole job on the local cloud, restore compared, nothing left"
bash scripts/demo.sh "$(mktemp -d /tmp/ferry-demo-ci.XXXXXX)"

step "fuzz results"
if ! wait "$fuzz_pid"; then
  tail -n 40 "$fuzz_log"
  echo "fuzz: FAILED (full log: $fuzz_log)"
  exit 1
fi
trap - EXIT
sed -n '/^fuzz: results/,$p' "$fuzz_log"

step "all checks passed"
