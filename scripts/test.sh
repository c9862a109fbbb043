#!/usr/bin/env bash
# Ferry's test command (README, .ci/run): installs what the tests need, then runs the
# format check, clippy, and every Rust test: unit, integration with real moto/sshd/binaries,
# and the independent proof of the IAM/bucket policies (parliament + principalmapper, run by
# crates/ferry-cloud/tests/policy_proof.rs), three test binaries at a time
# (scripts/run-tests.sh); then the demo (scripts/demo.sh) on the local cloud beside the Debian
# package's install/use/purge test (scripts/test-deb.sh). Every fuzz target (scripts/fuzz.sh)
# runs for a bounded time in the background throughout, at the lowest CPU priority.
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

# The fuzzers run in the background from here on, at the lowest CPU priority, so they take the
# time the builds leave and the tests (which mostly wait on moto, sshd and jump boxes) do not
# use; each target runs for a bounded time from the seeds kept in fuzz/seeds/; a crash fails
# the run. Their build has its own target dir ($CARGO_TARGET_DIR/fuzz-none). No address
# sanitizer here: it doubles the fuzz build's CPU time for parsers in safe Rust (scripts/fuzz.sh).
# Two targets run at a time: the runs mostly fall after the tests, when both cores are free.
FUZZ_SECONDS="${FERRY_FUZZ_SECONDS:-15}"
fuzz_log="$(mktemp /tmp/ferry-fuzz.XXXXXX.log)"
step "fuzz every parser of outside data (scripts/fuzz.sh, ${FUZZ_SECONDS} s per target), in the background at nice 19; log: $fuzz_log"
FERRY_FUZZ_SANITIZER=none FERRY_FUZZ_JOBS=2 nice -n 19 bash scripts/fuzz.sh "$FUZZ_SECONDS" >"$fuzz_log" 2>&1 &
fuzz_pid=$!
deb_pid=""
trap 'kill "$fuzz_pid" $deb_pid 2>/dev/null || true' EXIT

step "cargo test --no-run (build every test binary)"
cargo test --workspace --locked --no-run

# The debug build's bootstrap and ferry-gate, when they need no glibc newer than Amazon Linux
# 2023's 2.34 (else a zig build against 2.34); ferry-cloud's al2023_glibc test checks them.
step "bootstrap and ferry-gate for Amazon Linux 2023 (scripts/build-al2023.sh debug; glibc 2.34)"
bash scripts/build-al2023.sh debug

step "every test (unit + integration against real moto, sshd, ferry, ferry-gate), 3 binaries at a time (scripts/run-tests.sh)"
bash scripts/run-tests.sh

# The package test and the demo each start their own local cloud; they run side by side.
deb_log="$(mktemp /tmp/ferry-deb.XXXXXX.log)"
step "the Debian package, beside the demo: built from the debug builds, installed, used against the local cloud as its service runs, purged (scripts/test-deb.sh; log: $deb_log)"
bash scripts/test-deb.sh >"$deb_log" 2>&1 &
deb_pid=$!

step "the demo (README command 1): the whole job on the local cloud, restore compared, nothing left"
bash scripts/demo.sh "$(mktemp -d /tmp/ferry-demo-ci.XXXXXX)"

step "the Debian package's test"
if ! wait "$deb_pid"; then
  cat "$deb_log"
  echo "test-deb: FAILED (log: $deb_log)"
  exit 1
fi
deb_pid=""
cat "$deb_log"

step "fuzz results"
if ! wait "$fuzz_pid"; then
  tail -n 40 "$fuzz_log"
  echo "fuzz: FAILED (full log: $fuzz_log)"
  exit 1
fi
trap - EXIT
sed -n '/^fuzz: results/,$p' "$fuzz_log"

step "all checks passed"
