#!/usr/bin/env bash
# Benchmark: Ferry vs restic on the same deterministic corpus, local repositories.
# Not a test: it prints a table (and writes it to $WORK/bench-table.md).
#
#   scripts/bench-repo.sh [SIZE_MIB]        (default 1100 MiB; the issue asks for >= 1 GiB)
#
# Environment: BENCH_DIR (default /tmp/ferry-bench; needs ~3x SIZE free), FERRY (a ferry
# binary; default: cargo build --release), RESTIC (default: restic).
#
# Runs, for each tool: (1) first backup of the corpus, (2) unchanged re-run, (3) re-run after
# 1 % of the files changed (logs appended, configs edited, binaries partly overwritten).
# Wall time and peak RSS come from GNU time (/usr/bin/time -v). Both tools read the corpus from
# a warm page cache (it was just generated), so the numbers measure CPU work, not the disk.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE_MIB="${1:-1100}"
SEED=20261123
WORK="${BENCH_DIR:-/tmp/ferry-bench}"
RESTIC="${RESTIC:-restic}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}"

[ -x /usr/bin/time ] || { echo "bench: GNU time missing (apt-get install time, or scripts/install-deps.sh)"; exit 1; }
command -v "$RESTIC" >/dev/null || { echo "bench: restic missing (apt-get install restic)"; exit 1; }

if [ -z "${FERRY:-}" ]; then
  echo "bench: cargo build --release -p ferry-cli"
  cargo build --release -q -p ferry-cli
  FERRY="$CARGO_TARGET_DIR/release/ferry"
fi

mkdir -p "$WORK"
PRISTINE="$WORK/corpus-$SIZE_MIB-$SEED"
if [ ! -f "$PRISTINE.done" ]; then
  rm -rf "$PRISTINE"
  echo "bench: generating a ${SIZE_MIB} MiB corpus (seed $SEED)"
  python3 "$ROOT/scripts/gen-corpus.py" "$PRISTINE" --size-mib "$SIZE_MIB" --seed "$SEED"
  touch "$PRISTINE.done"
fi
CORPUS="$WORK/corpus"
rm -rf "$CORPUS" "$WORK/ferry-repo" "$WORK/ferry-cache" "$WORK/ferry-keys" "$WORK/restic-repo" "$WORK/restic-cache" "$WORK/times"
cp -a "$PRISTINE" "$CORPUS"
mkdir -p "$WORK/times" "$WORK/ferry-keys"
BYTES=$(du -sb "$CORPUS" | cut -f1)
FILES=$(find "$CORPUS" -type f | wc -l)

export RESTIC_PASSWORD=bench-only-password
export RESTIC_REPOSITORY="$WORK/restic-repo"
FERRY_PASSPHRASE="" "$FERRY" key init --master "$WORK/ferry-keys/master" --put "$WORK/ferry-keys/put" 2>/dev/null
"$RESTIC" init --repository-version 2 -q >/dev/null

# measure NAME CMD... : run under GNU time, keep its report in $WORK/times/NAME.
measure() {
  local name=$1; shift
  if ! /usr/bin/time -v -o "$WORK/times/$name" "$@" >"$WORK/times/$name.out" 2>"$WORK/times/$name.err"; then
    echo "bench: $name failed:"; tail -n 20 "$WORK/times/$name.err"; exit 1
  fi
}
ferry_backup() {
  "$FERRY" backup -q --repo "$WORK/ferry-repo" --key "$WORK/ferry-keys/put" \
    --cache-dir "$WORK/ferry-cache" --json "$CORPUS"
}
restic_backup() {
  "$RESTIC" backup -q --compression auto --cache-dir "$WORK/restic-cache" "$CORPUS"
}
export -f ferry_backup restic_backup
export FERRY WORK CORPUS RESTIC

echo "bench: corpus $FILES files, $((BYTES / 1048576)) MiB; run 1 (first backup)"
measure ferry-1 bash -c ferry_backup
measure restic-1 bash -c restic_backup
FERRY_REPO_1=$(du -sb "$WORK/ferry-repo" | cut -f1)
RESTIC_REPO_1=$(du -sb "$WORK/restic-repo" | cut -f1)
echo "bench: run 2 (unchanged)"
measure ferry-2 bash -c ferry_backup
measure restic-2 bash -c restic_backup
echo "bench: run 3 (1% of files changed)"
python3 "$ROOT/scripts/gen-corpus.py" "$CORPUS" --mutate 1 --seed "$SEED"
measure ferry-3 bash -c ferry_backup
measure restic-3 bash -c restic_backup

python3 - "$WORK" "$BYTES" "$FILES" "$FERRY_REPO_1" "$RESTIC_REPO_1" <<'PY'
import re, sys
work, nbytes, nfiles, frepo, rrepo = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def t(name):
    s = open(f"{work}/times/{name}").read()
    w = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", s).group(1)
    secs = 0.0
    for part in w.split(":"):
        secs = secs * 60 + float(part)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", s).group(1))
    cpu = float(re.search(r"User time \(seconds\): (\S+)", s).group(1)) + float(re.search(r"System time \(seconds\): (\S+)", s).group(1))
    return secs, rss / 1024, cpu
mib = nbytes / 2**20
rows = []
res = {}
for tool, repo in (("ferry", frepo), ("restic", rrepo)):
    r1, r2, r3 = t(f"{tool}-1"), t(f"{tool}-2"), t(f"{tool}-3")
    res[tool] = (r1, r2, r3, repo)
    rows.append(f"| {tool} | {r1[0]:.1f} s | {mib / r1[0]:.1f} | {r1[2]:.1f} s | {max(r1[1], r2[1], r3[1]):.0f} MiB | {repo / 2**20:.0f} MiB | {r2[0]:.2f} s | {r3[0]:.2f} s |")
f, r = res["ferry"], res["restic"]
def verdict(ok): return "met" if ok else "MISSED"
tp = (mib / f[0][0]) / (mib / r[0][0])
rss_f = max(x[1] for x in f[:3]); rss_r = max(x[1] for x in r[:3])
rerun = f[1][0] / r[1][0]
out = [
    f"Corpus: {nfiles} files, {mib:.0f} MiB (scripts/gen-corpus.py, seed 20261123).",
    "",
    "| tool | run 1 time | throughput (MiB/s) | run 1 CPU (user+sys) | peak RSS (max of runs) | repo size after run 1 | run 2 (unchanged) | run 3 (1% changed) |",
    "|---|---|---|---|---|---|---|---|",
    *rows,
    "",
    f"- throughput: Ferry {tp:.2f}x restic (target >= 2x): {verdict(tp >= 2)}",
    f"- peak RSS: Ferry {rss_f:.0f} MiB vs restic {rss_r:.0f} MiB (target <=): {verdict(rss_f <= rss_r)}",
    f"- unchanged re-run: Ferry {rerun:.2f}x restic's time (target <= 0.5x): {verdict(rerun <= 0.5)}",
]
text = "\n".join(out)
print(); print(text)
open(f"{work}/bench-table.md", "w").write(text + "\n")
PY
echo
echo "bench: table also in $WORK/bench-table.md"
