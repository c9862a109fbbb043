#!/usr/bin/env bash
# Benchmark (not a test): a simulated year of a 5-host homelab backed up daily, with a
# retention policy (keep 7 daily, 4 weekly, 6 monthly) and a weekly forget --prune, Ferry and
# restic side by side in one run. Prints, per month, what each stores (scaled back to full
# scale: ~200 MiB of change a day) and Ferry's S3 requests. See crates/ferry-repo/examples/
# bench_year.rs for the model and docs/COST.md for the results. scripts/bench-year-cloud.sh
# checks this fast path's request counts against the real local cloud.
#
#   scripts/bench-year.sh [DAYS] [SCALE] [MODEL...]   (default 365 days, scale 0.02)
#
# MODEL: bench_year's options, e.g. `--db-mib 0 --log-mib 40 --prune-every 30` (the issue's
# homelab: logs and configs only, 200 MiB a day, a monthly prune); `--keep 7,4,6` (daily,
# weekly, monthly). Defaults: 24 MiB of log and 16 MiB of database per host a day, weekly.
#
# Environment: BENCH_DIR (default /tmp/ferry-year; needs ~DAYS x 4 MiB x SCALE/0.02 free),
# RESTIC (default: restic; set RESTIC=none to skip it).
set -euo pipefail
cd "$(dirname "$0")/.."
DAYS="${1:-365}"
SCALE="${2:-0.02}"
shift $(( $# < 2 ? $# : 2 ))
WORK="${BENCH_DIR:-/tmp/ferry-year}"
RESTIC="${RESTIC:-restic}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}"

args=(--days "$DAYS" --scale "$SCALE" --dir "$WORK" "$@")
if [ "$RESTIC" != none ]; then
  command -v "$RESTIC" >/dev/null || { echo "bench-year: restic missing (apt-get install restic, or RESTIC=none)"; exit 1; }
  args+=(--restic "$RESTIC")
  echo "bench-year: $("$RESTIC" version | head -1)"
fi
echo "bench-year: cargo build --release -p ferry-repo --example bench_year"
cargo build --release -q -p ferry-repo --example bench_year
start=$(date +%s)
"$CARGO_TARGET_DIR/release/examples/bench_year" "${args[@]}"
echo "bench-year: $(( $(date +%s) - start )) s"
