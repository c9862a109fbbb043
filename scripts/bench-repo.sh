#!/usr/bin/env bash
# Benchmark: Ferry vs restic, borg and rustic on the same deterministic corpus, local
# repositories. Not a test: it prints one table (and writes it to $WORK/bench-table.md).
#
#   scripts/bench-repo.sh [SIZE_MIB]        (default 1100 MiB; the issue asks for >= 1 GiB)
#
# Environment: BENCH_DIR (default /tmp/ferry-bench; needs ~5x SIZE free), FERRY (a ferry
# binary; default: cargo build --release), RESTIC (default: restic), BORG (default: borg;
# installed with apt-get when missing), RUSTIC (default: rustic from $BENCH_TOOLS, installed
# there with `cargo install rustic-rs --locked --no-default-features` when absent: ~16 min of
# CPU on 2 cores), BENCH_TOOLS (default ~/.cache/ferry/bench-tools), BENCH_SKIP (tools to leave
# out, e.g. "rustic").
#
# Runs, for each tool: (1) first backup of the corpus, (2) unchanged re-run, (3) re-run after
# 1 % of the files changed (logs appended, configs edited, binaries partly overwritten), then
# (4) a full restore of the last snapshot into an empty directory, compared with the corpus
# (`diff -r`) before it counts. Wall time and peak RSS come from GNU time (/usr/bin/time -v).
# Every tool reads the corpus from a warm page cache (it was just generated), so the backup
# numbers measure CPU work, not the disk; restores write to the page cache (no fsync by any).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE_MIB="${1:-1100}"
SEED=20261123
WORK="${BENCH_DIR:-/tmp/ferry-bench}"
RESTIC="${RESTIC:-restic}"
BORG="${BORG:-borg}"
BENCH_TOOLS="${BENCH_TOOLS:-$HOME/.cache/ferry/bench-tools}"
RUSTIC="${RUSTIC:-$BENCH_TOOLS/bin/rustic}"
SKIP=" ${BENCH_SKIP:-} "
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}"

[ -x /usr/bin/time ] || { echo "bench: GNU time missing (apt-get install time, or scripts/install-deps.sh)"; exit 1; }
command -v "$RESTIC" >/dev/null || { echo "bench: restic missing (apt-get install restic)"; exit 1; }
TOOLS="ferry restic"
if [[ "$SKIP" != *" borg "* ]]; then
  if ! command -v "$BORG" >/dev/null; then
    echo "bench: borg missing: apt-get install borgbackup"
    apt-get install -y -q borgbackup >/dev/null || { echo "bench: installing borgbackup failed (BENCH_SKIP=borg to go without)"; exit 1; }
  fi
  TOOLS="$TOOLS borg"
fi
if [[ "$SKIP" != *" rustic "* ]]; then
  if [ ! -x "$RUSTIC" ]; then
    echo "bench: rustic missing: cargo install rustic-rs into $BENCH_TOOLS (~16 min of CPU)"
    cargo install rustic-rs --locked --no-default-features --root "$BENCH_TOOLS" \
      || { echo "bench: installing rustic failed (BENCH_SKIP=rustic to go without)"; exit 1; }
  fi
  TOOLS="$TOOLS rustic"
fi

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
rm -rf "$CORPUS" "$WORK/times" "$WORK/restore" "$WORK/ferry-keys"
for t in ferry restic borg rustic; do rm -rf "$WORK/$t-repo" "$WORK/$t-cache"; done
cp -a "$PRISTINE" "$CORPUS"
mkdir -p "$WORK/times" "$WORK/ferry-keys"
BYTES=$(du -sb "$CORPUS" | cut -f1)
FILES=$(find "$CORPUS" -type f | wc -l)

# One password for every tool's throwaway repositories; Ferry's keys have no passphrase.
export RESTIC_PASSWORD=bench-only-password RESTIC_REPOSITORY="$WORK/restic-repo"
export BORG_PASSPHRASE=$RESTIC_PASSWORD BORG_REPO="$WORK/borg-repo" BORG_BASE_DIR="$WORK/borg-cache"
export RUSTIC_PASSWORD=$RESTIC_PASSWORD RUSTIC_REPOSITORY="$WORK/rustic-repo" RUSTIC_CACHE_DIR="$WORK/rustic-cache"
export FERRY WORK CORPUS RESTIC BORG RUSTIC

FERRY_PASSPHRASE="" "$FERRY" key init --master "$WORK/ferry-keys/master" --put "$WORK/ferry-keys/put" 2>/dev/null
"$RESTIC" init --repository-version 2 -q >/dev/null
[[ " $TOOLS " != *" borg "* ]] || "$BORG" init -e repokey-blake2 >/dev/null 2>&1
[[ " $TOOLS " != *" rustic "* ]] || "$RUSTIC" init >/dev/null 2>&1

# measure NAME CMD... : run under GNU time, keep its report in $WORK/times/NAME.
measure() {
  local name=$1; shift
  if ! /usr/bin/time -v -o "$WORK/times/$name" "$@" >"$WORK/times/$name.out" 2>"$WORK/times/$name.err"; then
    echo "bench: $name failed:"; tail -n 20 "$WORK/times/$name.err"; exit 1
  fi
}
# Backups (RUN is the run's number) and full restores of the last snapshot into $TARGET.
ferry_backup() {
  "$FERRY" backup -q --repo "$WORK/ferry-repo" --key "$WORK/ferry-keys/put" \
    --cache-dir "$WORK/ferry-cache" --json "$CORPUS"
}
ferry_restore() {
  "$FERRY" restore -q --repo "$WORK/ferry-repo" --key "$WORK/ferry-keys/master" latest --target "$TARGET"
}
restic_backup() {
  "$RESTIC" backup -q --compression auto --cache-dir "$WORK/restic-cache" "$CORPUS"
}
restic_restore() {
  "$RESTIC" restore -q --cache-dir "$WORK/restic-cache" latest --target "$TARGET"
}
borg_backup() {
  "$BORG" create --compression auto,zstd,3 "::run$RUN" "$CORPUS"
}
borg_restore() {
  cd "$TARGET" && "$BORG" extract "::run3"
}
rustic_backup() {
  "$RUSTIC" backup --no-progress "$CORPUS"
}
rustic_restore() {
  "$RUSTIC" restore --no-progress latest "$TARGET"
}
export -f ferry_backup ferry_restore restic_backup restic_restore borg_backup borg_restore rustic_backup rustic_restore

echo "bench: corpus $FILES files, $((BYTES / 1048576)) MiB; tools: $TOOLS"
echo "bench: run 1 (first backup)"
for t in $TOOLS; do measure "$t-1" env RUN=1 bash -c "${t}_backup"; done
for t in $TOOLS; do du -sb "$WORK/$t-repo" | cut -f1 >"$WORK/times/$t-repo-bytes"; done
echo "bench: run 2 (unchanged)"
for t in $TOOLS; do measure "$t-2" env RUN=2 bash -c "${t}_backup"; done
echo "bench: run 3 (1% of files changed)"
python3 "$ROOT/scripts/gen-corpus.py" "$CORPUS" --mutate 1 --seed "$SEED"
for t in $TOOLS; do measure "$t-3" env RUN=3 bash -c "${t}_backup"; done
echo "bench: full restore of run 3's snapshot"
for t in $TOOLS; do
  target="$WORK/restore/$t"
  rm -rf "$target"; mkdir -p "$target"
  measure "$t-restore" env TARGET="$target" bash -c "${t}_restore"
  # Every tool but rustic (which restores the snapshot's one path as the target) keeps the
  # absolute path under the target.
  got="$target/${CORPUS#/}"; [ -d "$got" ] || got="$target"
  diff -r "$CORPUS" "$got" >/dev/null || { echo "bench: $t's restore differs from the corpus"; exit 1; }
  rm -rf "$target"
done

python3 - "$WORK" "$BYTES" "$FILES" "$TOOLS" <<'PY'
import re, sys
work, nbytes, nfiles, tools = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split()
def t(name):
    s = open(f"{work}/times/{name}").read()
    w = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", s).group(1)
    secs = 0.0
    for part in w.split(":"):
        secs = secs * 60 + float(part)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", s).group(1))
    return max(secs, 0.01), rss / 1024
mib = nbytes / 2**20
res = {}
rows = []
for tool in tools:
    r1, r2, r3, rr = t(f"{tool}-1"), t(f"{tool}-2"), t(f"{tool}-3"), t(f"{tool}-restore")
    repo = int(open(f"{work}/times/{tool}-repo-bytes").read())
    res[tool] = dict(backup=mib / r1[0], rss=max(r1[1], r2[1], r3[1]), rerun=r2[0],
                     restore=mib / rr[0])
    rows.append(f"| {tool} | {mib / r1[0]:.0f} | {res[tool]['rss']:.0f} MiB | {r2[0]:.2f} s "
                f"| {r3[0]:.2f} s | {mib / rr[0]:.0f} | {rr[1]:.0f} MiB | {repo / 2**20:.0f} MiB |")
out = [
    f"Corpus: {nfiles} files, {mib:.0f} MiB (scripts/gen-corpus.py, seed 20261123).",
    "",
    "| tool | backup (MiB/s) | peak RSS (backups) | unchanged re-run | 1% changed re-run | full restore (MiB/s) | peak RSS (restore) | repo size after run 1 |",
    "|---|---|---|---|---|---|---|---|",
    *rows,
    "",
]
others = [x for x in tools if x != "ferry"]
f = res["ferry"]
for key, what, better in (("backup", "backup MiB/s", max), ("restore", "full restore MiB/s", max),
                          ("rerun", "unchanged re-run (s)", min), ("rss", "peak RSS of backups (MiB)", min)):
    best = better(others, key=lambda x: res[x][key])
    ratio = f[key] / res[best][key]
    lead = (ratio > 1) if better is max else (ratio < 1)
    out.append(f"- {what}: ferry {f[key]:.2f}, best other {best} {res[best][key]:.2f} "
               f"({ratio:.2f}x): {'ferry leads' if lead else 'ferry does NOT lead'}")
if "restic" in res:
    out.append(f"- backup vs restic: {f['backup'] / res['restic']['backup']:.2f}x (goal >= 3x)")
text = "\n".join(out)
print(); print(text)
open(f"{work}/bench-table.md", "w").write(text + "\n")
PY
echo
echo "bench: table also in $WORK/bench-table.md"
