#!/usr/bin/env bash
# Gate benchmark (issue 3), one run, release build:
#  - upload throughput client → loopback sshd → `ferry-gate serve --sink null` (forced command)
#    against raw `ssh … 'cat >/dev/null'` over the same sshd and the same bytes (target ≥ 90 %),
#    with pipelining off (a window of 1 pack) and on (the default window), each round in turn;
#  - the server side's CPU time per run (`cat` vs the gate), from /usr/bin/time;
#  - the gate's peak RSS with 32 MiB packs, from /usr/bin/time -v (target ≤ 64 MiB).
#
#   scripts/bench-gate.sh [PACKS] [PACK_MIB] [ROUNDS]     (default: 16 32 3)
#
# Needs openssh-server, openssh-client and time (scripts/install-deps.sh); runs as root
# (the test sshd lets root in with a key only, on 127.0.0.1). Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}"
cargo build -q --release -p ferry-gate --bin ferry-gate --example gate_bench
export FERRY_GATE_BIN="$CARGO_TARGET_DIR/release/ferry-gate"
echo "ssh: $(ssh -V 2>&1); cores: $(nproc); $(date -u +%FT%TZ); $(uptime)" >&2
"$CARGO_TARGET_DIR/release/examples/gate_bench" "${1:-16}" "${2:-32}" "${3:-3}"
