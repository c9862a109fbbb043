#!/usr/bin/env bash
# Runs every test of the workspace (what `cargo test --workspace` runs: each crate's unit tests,
# each integration-test binary, the doctests), with several test binaries at once.
#
# Most integration suites wait on real servers (moto, sshd, jump boxes) far more than they
# compute, so `cargo test`'s one-binary-after-another order left both cores idle for most of
# its ~14 minutes. Here each binary still runs whole, as cargo runs it (its own working
# directory = its package's, its tests as threads of one process sharing their fixtures), but
# FERRY_TEST_LANES binaries (default 3) run side by side, the slowest first (by the times of
# the previous run, kept in $CARGO_TARGET_DIR/ferry-test-times; a cold run, which has none,
# takes them from scripts/test-times.tsv, a copy kept in the repository, so its slowest
# binaries do not start last either). Each binary's output is
# printed whole when it ends; the run fails if any binary fails, naming each.
#
# usage: scripts/run-tests.sh            (after the workspace is built by `cargo test --no-run`)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}"
lanes="${FERRY_TEST_LANES:-3}"
times="$CARGO_TARGET_DIR/ferry-test-times"
known_times="$times"
[ -s "$known_times" ] || known_times=scripts/test-times.tsv
work="$(mktemp -d /tmp/ferry-tests.XXXXXX)"
trap 'rm -rf -- "$work"' EXIT

# The test executables, exactly those `cargo test --workspace` would run (a no-op build when
# the workspace is built): "<executable>\t<package dir>\t<name>" per line.
cargo test --workspace --locked --no-run --message-format=json 2>/dev/null | python3 -c '
import json, os, sys
seen = set()
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("profile", {}).get("test") or not m.get("executable"):
        continue
    exe = m["executable"]
    if exe in seen:
        continue
    seen.add(exe)
    pkg = os.path.dirname(m["manifest_path"])
    kind = m["target"]["kind"][0]
    name = os.path.basename(pkg) + ("/" + m["target"]["name"] if kind == "test" else " (unit)")
    print(f"{exe}\t{pkg}\t{name}")
' >"$work/list"
[ -s "$work/list" ] || { echo "run-tests: no test executables (is the workspace built?)" >&2; exit 1; }

# Slowest first: the previous run's seconds per binary (unknown ones first, as if slow).
python3 - "$work/list" "$known_times" >"$work/order" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
known = {}
try:
    for l in open(sys.argv[2]):
        n, t = l.rstrip("\n").rsplit("\t", 1)
        known[n] = float(t)
except (OSError, ValueError):
    pass
rows.sort(key=lambda r: -known.get(r[2], 1e9))
for r in rows:
    print("\t".join(r))
PY

run_one() { # exe pkg name: runs one binary, its output into its own log, printed whole at its end
  local exe="$1" pkg="$2" name="$3" id start rc
  id="$(printf '%s' "$name" | tr -c 'A-Za-z0-9_-' '_')"
  start="$(date +%s%N)"
  set +e
  (cd "$pkg" && "$exe") >"$work/$id.log" 2>&1
  rc=$?
  set -e
  printf '%s\t%d\n' "$name" "$((($(date +%s%N) - start) / 1000000000))" >>"$work/times"
  if [ "$rc" != 0 ]; then echo "$name (exit $rc)" >>"$work/failed"; fi
  flock "$work/print" sh -c 'printf "\n     Running %s\n" "$1"; cat "$2"' _ "$name ($exe)" "$work/$id.log"
}
export -f run_one
export work CARGO_TARGET_DIR
touch "$work/times" "$work/print"

echo "run-tests: $(grep -c '' "$work/order") test binaries, $lanes at a time, and the doctests"
# The doctests compile as they run: one more lane beside the binaries.
(cargo test --workspace --locked --doc >"$work/doc.log" 2>&1 || echo "doctests (cargo test --doc)" >>"$work/failed") &
doc_pid=$!
tr '\t' '\n' <"$work/order" | xargs -d '\n' -n 3 -P "$lanes" bash -c 'run_one "$@"' _ || true
wait "$doc_pid" || true
cat "$work/doc.log"

sort -t$'\t' -k2 -rn "$work/times" >"$times.new" && mv "$times.new" "$times"
echo
echo "run-tests: the slowest binaries (seconds):"
head -n 8 "$times" | sed 's/^/  /'
if [ -s "$work/failed" ]; then
  echo "run-tests: FAILED:" >&2
  sed 's/^/  /' "$work/failed" >&2
  exit 1
fi
echo "run-tests: every test binary passed"
