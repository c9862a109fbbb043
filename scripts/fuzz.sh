#!/usr/bin/env bash
# Run every cargo-fuzz target in fuzz/ for a bounded time and fail if any crashes.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 30 s per target, all targets)
#
# Needs cargo-fuzz (the pinned one in .venv, from scripts/requirements.txt) and a nightly
# toolchain for the address sanitizer. Without nightly it falls back to the stable compiler
# with RUSTC_BOOTSTRAP=1 and no sanitizer (libFuzzer coverage still works; memory errors in
# unsafe code would go unnoticed). Crash inputs land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-30}"
shift || true
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}"
TARGET_DIR="$CARGO_TARGET_DIR/fuzz"

# cargo-fuzz: the pinned prebuilt one in the project venv (scripts/requirements.txt).
venv="$(pwd)/.venv"
if [ ! -x "$venv/bin/cargo-fuzz" ]; then
  echo "fuzz: cargo-fuzz missing from $venv; installing dependencies"
  bash scripts/install-deps.sh
fi
export PATH="$venv/bin:$PATH"

# The address sanitizer (FERRY_FUZZ_SANITIZER=address, the default by hand when a nightly
# toolchain is present) needs nightly and doubles the build's CPU time (10.6 against 6.2
# CPU-minutes, cold, on this machine). The test command uses `none`: the fuzzed parsers are
# safe Rust (the unsafe code in the fuzzed crates is libc calls in restore and locking), and
# zstd's C code is not instrumented either way (cargo-fuzz sets only RUSTFLAGS). `none` builds
# with the stable compiler and RUSTC_BOOTSTRAP=1 (libFuzzer's coverage flags are unstable).
san="${FERRY_FUZZ_SANITIZER:-}"
if [ -z "$san" ]; then
  if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then san=address; else san=none; fi
fi
case "$san" in
  address)
    rustup toolchain list 2>/dev/null | grep -q '^nightly' \
      || { echo "fuzz: the address sanitizer needs a nightly toolchain (rustup toolchain install nightly)" >&2; exit 2; }
    FUZZ=(cargo +nightly fuzz)
    SAN=()
    echo "fuzz: nightly toolchain, address sanitizer" ;;
  none)
    export RUSTC_BOOTSTRAP=1
    FUZZ=(cargo fuzz)
    SAN=(--sanitizer none)
    echo "fuzz: stable compiler with RUSTC_BOOTSTRAP=1, no sanitizer" ;;
  *) echo "fuzz: FERRY_FUZZ_SANITIZER must be address or none, not '$san'" >&2; exit 2 ;;
esac
# One build directory per sanitizer: switching would otherwise rebuild everything.
TARGET_DIR="$TARGET_DIR-$san"

cd fuzz
if (($#)); then TARGETS=("$@"); else mapfile -t TARGETS < <("${FUZZ[@]}" list); fi
echo "fuzz: building ${#TARGETS[@]} targets"
if (($#)); then
  for t in "${TARGETS[@]}"; do "${FUZZ[@]}" build "${SAN[@]}" --target-dir "$TARGET_DIR" "$t"; done
else
  "${FUZZ[@]}" build "${SAN[@]}" --target-dir "$TARGET_DIR"
fi

# FERRY_FUZZ_JOBS targets at a time (default 1; the test command runs 2, one per core, once
# the tests beside it are done). Each writes its result line to $results/<target>.
JOBS="${FERRY_FUZZ_JOBS:-1}"
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: FERRY_FUZZ_JOBS must be a positive number, not '$JOBS'" >&2; exit 2; }
results="$(mktemp -d)"
trap 'rm -rf -- "$results"' EXIT
run_target() {
  local t="$1" log runs cov
  echo "fuzz: $t for ${SECS}s"
  mkdir -p "corpus/$t"
  # Seed inputs kept in the repository (fuzz/seeds/<target>/); corpus/ is the run's own.
  if [ -d "seeds/$t" ]; then cp -n "seeds/$t"/* "corpus/$t"/ 2>/dev/null || true; fi
  log="$TARGET_DIR/fuzz-$t.log"
  # timeout is a safety net only: libFuzzer stops itself after -max_total_time.
  if timeout "$((SECS + 300))" "${FUZZ[@]}" run "${SAN[@]}" --target-dir "$TARGET_DIR" "$t" -- \
      -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*' || echo "?")
    echo "ok      runs=$runs cov=$cov" >"$results/$t"
  else
    echo "FAILED  (log: $log)" >"$results/$t"
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -n 5 || true
  fi
}
for t in "${TARGETS[@]}"; do
  while (($(jobs -rp | wc -l) >= JOBS)); do wait -n || true; done
  run_target "$t" &
done
wait

failed=()
declare -A RESULT
for t in "${TARGETS[@]}"; do
  RESULT[$t]="$(cat "$results/$t" 2>/dev/null || echo "FAILED  (no result)")"
  case "${RESULT[$t]}" in ok*) ;; *) failed+=("$t") ;; esac
done

echo
echo "fuzz: results (${SECS}s per target)"
for t in "${TARGETS[@]}"; do printf '  %-14s %s\n' "$t" "${RESULT[$t]}"; done
if ((${#failed[@]})); then
  echo "fuzz: ${#failed[@]} target(s) crashed: ${failed[*]} (inputs in fuzz/artifacts/)"
  exit 1
fi
