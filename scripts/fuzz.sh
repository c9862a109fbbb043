#!/usr/bin/env bash
# Run every cargo-fuzz target in fuzz/ for a bounded time and fail if any crashes.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 30 s per target, all targets)
#
# Needs cargo-fuzz (installed here with `cargo install cargo-fuzz` if missing) and a nightly
# toolchain for the address sanitizer. Without nightly it falls back to the stable compiler
# with RUSTC_BOOTSTRAP=1 and no sanitizer (libFuzzer coverage still works; memory errors in
# unsafe code would go unnoticed). Crash inputs land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-30}"
shift || true
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}"
TARGET_DIR="$CARGO_TARGET_DIR/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  # Its own build directory: the workspace's target dir is in use by the tests beside it.
  env -u CARGO_TARGET_DIR cargo install --locked cargo-fuzz
fi

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  FUZZ=(cargo +nightly fuzz)
  SAN=()
  echo "fuzz: nightly toolchain, address sanitizer"
else
  export RUSTC_BOOTSTRAP=1
  FUZZ=(cargo fuzz)
  SAN=(--sanitizer none)
  echo "fuzz: no nightly toolchain; stable compiler with RUSTC_BOOTSTRAP=1, no sanitizer"
fi

cd fuzz
if (($#)); then TARGETS=("$@"); else mapfile -t TARGETS < <("${FUZZ[@]}" list); fi
echo "fuzz: building ${#TARGETS[@]} targets"
if (($#)); then
  for t in "${TARGETS[@]}"; do "${FUZZ[@]}" build "${SAN[@]}" --target-dir "$TARGET_DIR" "$t"; done
else
  "${FUZZ[@]}" build "${SAN[@]}" --target-dir "$TARGET_DIR"
fi

failed=()
declare -A RESULT
for t in "${TARGETS[@]}"; do
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
    RESULT[$t]="ok      runs=$runs cov=$cov"
  else
    RESULT[$t]="FAILED  (log: $log)"
    failed+=("$t")
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -n 5 || true
  fi
done

echo
echo "fuzz: results (${SECS}s per target)"
for t in "${TARGETS[@]}"; do printf '  %-14s %s\n' "$t" "${RESULT[$t]}"; done
if ((${#failed[@]})); then
  echo "fuzz: ${#failed[@]} target(s) crashed: ${failed[*]} (inputs in fuzz/artifacts/)"
  exit 1
fi
