#!/usr/bin/env bash
# Benchmark (not a test): collecting a LAN host's files over SSH into a repository, against
# the plain transfer `ssh HOST tar -cf - PATHS | cat >/dev/null` of the same data, in one run.
# Prints markdown tables (also written to $BENCH_DIR/collect-table.md): first on plain
# loopback (the issue's setting: both ends share this machine's CPUs), then over LAN-speed
# links, 1 Gbit/s and 2.5 Gbit/s: the same run inside a network namespace of its own
# (`unshare -n`) whose loopback is shaped with `tc qdisc ... tbf`; no traffic leaves it.
#
#   scripts/bench-collect.sh [SIZE_MIB] [ROUNDS] [LINKS]
#       defaults: 512 MiB, best of 3, LINKS="1gbit 2500mbit" ("" for loopback only)
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
LINKS="${3-1gbit 2500mbit}"
SEED=20261123
WORK="${BENCH_DIR:-/tmp/ferry-bench}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}"

[ "$(id -u)" -eq 0 ] || { echo "bench-collect: run as root (creates the read-only account ferry-ro)"; exit 1; }
[ -x /usr/sbin/sshd ] || { echo "bench-collect: /usr/sbin/sshd missing (scripts/install-deps.sh)"; exit 1; }
command -v tc >/dev/null && command -v unshare >/dev/null || { echo "bench-collect: tc/unshare missing (iproute2, util-linux: scripts/install-deps.sh)"; exit 1; }

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

echo "bench-collect: $FILES files, $(du -sh "$CORPUS" | cut -f1); $(nproc) CPUs; $ROUNDS rounds; load $(cut -d' ' -f1-3 /proc/loadavg)"
{
  echo "### Loopback, unshaped (both ends on this machine's $(nproc) CPUs)"
  echo
  "$BIN" "$CORPUS" "$WORK/collect-work" "$ROUNDS"
  for link in $LINKS; do
    echo
    echo "### A $link link (private network namespace, loopback shaped with tc tbf)"
    echo
    BENCH_ONLY=plain,ferry unshare -n sh -c '
      set -e
      ip link set lo up
      tc qdisc add dev lo root tbf rate "$1" burst 4mb latency 20ms
      exec "$2" "$3" "$4" "$5"' sh "$link" "$BIN" "$CORPUS" "$WORK/collect-work" "$ROUNDS"
  done
} | tee "$WORK/collect-table.md"
rm -rf "$WORK/collect-work"
