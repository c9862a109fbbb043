#!/usr/bin/env bash
# Benchmark (not a test): collecting a LAN host's files over SSH into a repository, against
# the plain transfer `ssh HOST tar -cf - PATHS | cat >/dev/null` of the same data, in one run.
# Prints a markdown table (also written to $BENCH_DIR/collect-table.md).
#
#   scripts/bench-collect.sh [SIZE_MIB] [ROUNDS]     (defaults: 512 MiB, best of 3)
#
# Needs root (the sample host's read-only account is created with useradd) and
# openssh-server (scripts/install-deps.sh). The host is a real sshd on a loopback port
# (ferry-testkit's lanhost), the corpus is scripts/gen-corpus.py's (logs, configs, ~25 %
# incompressible binaries), read from a warm page cache by both sides. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE_MIB="${1:-512}"
ROUNDS="${2:-3}"
SEED=20261123
WORK="${BENCH_DIR:-/tmp/ferry-bench}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}"

[ "$(id -u)" -eq 0 ] || { echo "bench-collect: run as root (creates the read-only account ferry-ro)"; exit 1; }
[ -x /usr/sbin/sshd ] || { echo "bench-collect: /usr/sbin/sshd missing (scripts/install-deps.sh)"; exit 1; }

echo "bench-collect: cargo build --release --example bench-collect"
cargo build --release -q -p ferry-collect --example bench-collect
BIN="$CARGO_TARGET_DIR/release/examples/bench-collect"

mkdir -p "$WORK"
chmod 755 "$WORK"
CORPUS="$WORK/collect-corpus-$SIZE_MIB-$SEED"
if [ ! -f "$CORPUS.done" ]; then
  rm -rf "$CORPUS"
  echo "bench-collect: generating a ${SIZE_MIB} MiB corpus (seed $SEED)"
  python3 "$ROOT/scripts/gen-corpus.py" "$CORPUS" --size-mib "$SIZE_MIB" --seed "$SEED"
  touch "$CORPUS.done"
fi
# The read-only account must be able to read it all.
chmod -R a+rX "$CORPUS"
FILES=$(find "$CORPUS" -type f | wc -l)
# Warm the page cache for both contenders.
find "$CORPUS" -type f -exec cat {} + >/dev/null

echo "bench-collect: $FILES files, $(du -sh "$CORPUS" | cut -f1); $(nproc) CPUs; $ROUNDS rounds"
"$BIN" "$CORPUS" "$WORK/collect-work" "$ROUNDS" | tee "$WORK/collect-table.md"
rm -rf "$WORK/collect-work"
