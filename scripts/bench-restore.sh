#!/usr/bin/env bash
# Benchmark: Ferry vs restic restoring the same snapshot, (1) from local repositories and
# (2) from S3 in the local cloud's moto with 0, 20 and 50 ms added to every object GET; then
# `check --read-data` of both, local and from S3 with 20 ms.
# Not a test: it prints a table (and writes it to $WORK/restore-table.md).
#
#   scripts/bench-restore.sh [SIZE_MIB]       (default 512)
#
# Environment: BENCH_DIR (default /tmp/ferry-bench-restore; needs ~4x SIZE free), FERRY (a
# ferry binary; default: cargo build --release), RESTIC (default: restic), LATENCIES (default
# "0 20 50"), FERRY_PARALLEL (ferry restore --parallel; default: Ferry's default).
#
# The corpus is scripts/bench-repo.sh's (scripts/gen-corpus.py, same seed). Both tools back it
# up into local repositories; the repositories are then copied as they are into one moto
# bucket (same key layout as on disk: Ferry's S3 backend and restic's both use it), moto
# started through the test kit's launcher (crates/ferry-testkit/py/moto/launcher.py), whose
# unkind_s3_faults module holds every object GET for the latency (a rule file). restic reads
# through its own S3 backend. GET requests are counted from moto's request log (object GETs
# only; listings are not GETs of an object). Wall time and peak RSS come from GNU time. Every
# restore is compared with the corpus (diff -r) before it counts.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE_MIB="${1:-512}"
SEED=20261123
WORK="${BENCH_DIR:-/tmp/ferry-bench-restore}"
RESTIC="${RESTIC:-restic}"
LATENCIES="${LATENCIES:-0 20 50}"
VENV="$ROOT/.venv"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}"

[ -x /usr/bin/time ] || { echo "bench: GNU time missing (apt-get install time, or scripts/install-deps.sh)"; exit 1; }
command -v "$RESTIC" >/dev/null || { echo "bench: restic missing (apt-get install restic)"; exit 1; }
[ -x "$VENV/bin/python3" ] || { echo "bench: $VENV missing (scripts/install-deps.sh)"; exit 1; }

if [ -z "${FERRY:-}" ]; then
  echo "bench: cargo build --release -p ferry-cli"
  cargo build --release -q -p ferry-cli
  FERRY="$CARGO_TARGET_DIR/release/ferry"
fi
PAR=()
[ -n "${FERRY_PARALLEL:-}" ] && PAR=(--parallel "$FERRY_PARALLEL")

mkdir -p "$WORK"
PRISTINE="$WORK/corpus-$SIZE_MIB-$SEED"
if [ ! -f "$PRISTINE.done" ]; then
  rm -rf "$PRISTINE"
  echo "bench: generating a ${SIZE_MIB} MiB corpus (seed $SEED)"
  python3 "$ROOT/scripts/gen-corpus.py" "$PRISTINE" --size-mib "$SIZE_MIB" --seed "$SEED"
  touch "$PRISTINE.done"
fi
CORPUS="$PRISTINE"
rm -rf "$WORK/ferry-repo" "$WORK/ferry-keys" "$WORK/restic-repo" "$WORK/restic-cache" "$WORK/times" "$WORK/out" "$WORK/moto"
mkdir -p "$WORK/times" "$WORK/ferry-keys" "$WORK/moto"
BYTES=$(du -sb "$CORPUS" | cut -f1)
FILES=$(find "$CORPUS" -type f | wc -l)

export RESTIC_PASSWORD=bench-only-password
FERRY_PASSPHRASE="" "$FERRY" key init --master "$WORK/ferry-keys/master" --put "$WORK/ferry-keys/put" 2>/dev/null
"$RESTIC" -r "$WORK/restic-repo" init --repository-version 2 -q >/dev/null
echo "bench: corpus $FILES files, $((BYTES / 1048576)) MiB; backing up with both tools"
rm -rf "$WORK/ferry-cache"
"$FERRY" backup -q --repo "$WORK/ferry-repo" --key "$WORK/ferry-keys/put" --cache-dir "$WORK/ferry-cache" "$CORPUS" >/dev/null
"$RESTIC" -r "$WORK/restic-repo" backup -q --compression auto --cache-dir "$WORK/restic-cache" "$CORPUS" >/dev/null

# moto (the test kit's launcher and patches), one bucket holding both repositories.
PORT=$("$VENV/bin/python3" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
FAULTS="$WORK/moto/s3_faults.json"
MOTO_LOG="$WORK/moto/moto.log"
echo '{"rules": []}' >"$FAULTS"
FERRY_UNKIND_S3_FAULTS_FILE="$FAULTS" "$VENV/bin/python3" "$ROOT/crates/ferry-testkit/py/moto/launcher.py" \
  -H 127.0.0.1 -p "$PORT" >"$MOTO_LOG" 2>&1 &
MOTO_PID=$!
trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do
  curl -sf "$AWS_ENDPOINT_URL/moto-api/" >/dev/null 2>&1 && break
  sleep 0.2
done
echo "bench: copying both repositories into moto (s3://bench/ferry, s3://bench/restic)"
"$VENV/bin/python3" - "$WORK" <<'PY'
import os, sys, boto3
work = sys.argv[1]
s3 = boto3.client("s3")
s3.create_bucket(Bucket="bench")
for tool in ("ferry", "restic"):
    root = f"{work}/{tool}-repo"
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            s3.upload_file(p, "bench", f"{tool}/{os.path.relpath(p, root)}")
PY

# measure NAME CMD... : run under GNU time, keep its report in $WORK/times/NAME.
measure() {
  local name=$1; shift
  if ! /usr/bin/time -v -o "$WORK/times/$name" "$@" >"$WORK/times/$name.out" 2>"$WORK/times/$name.err"; then
    echo "bench: $name failed:"; tail -n 20 "$WORK/times/$name.err"; exit 1
  fi
}
# restore NAME TOOL REPO: restore the latest snapshot into a fresh directory, compare it with
# the corpus, and record the object GETs moto logged meanwhile.
restore() {
  local name=$1 tool=$2 repo=$3 out="$WORK/out/$1" before
  rm -rf "$out"; mkdir -p "$out"
  sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  before=$(wc -l <"$MOTO_LOG")
  if [ "$tool" = ferry ]; then
    measure "$name" "$FERRY" restore -q --cache-dir "$WORK/ferry-cache-restore" --repo "$repo" --key "$WORK/ferry-keys/master" "${PAR[@]}" latest --target "$out"
  else
    measure "$name" "$RESTIC" -r "$repo" --no-cache restore latest --target "$out"
  fi
  tail -n +"$((before + 1))" "$MOTO_LOG" | grep -cE 'GET /(bench/)?(ferry|restic)/[^ ]+ HTTP' >"$WORK/times/$name.gets" || true
  diff -r "$CORPUS" "$out$CORPUS" >/dev/null || { echo "bench: $name restored something else than the corpus"; exit 1; }
  rm -rf "$out"
}
# check NAME TOOL REPO: read and verify every pack, recording the object GETs.
check() {
  local name=$1 tool=$2 repo=$3 before
  sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  before=$(wc -l <"$MOTO_LOG")
  if [ "$tool" = ferry ]; then
    measure "$name" "$FERRY" check -q --repo "$repo" --key "$WORK/ferry-keys/master" "${PAR[@]}" --read-data
  else
    measure "$name" "$RESTIC" -r "$repo" --no-cache check --read-data
  fi
  tail -n +"$((before + 1))" "$MOTO_LOG" | grep -cE 'GET /(bench/)?(ferry|restic)/[^ ]+ HTTP' >"$WORK/times/$name.gets" || true
}
rules() {
  if [ "$1" = 0 ]; then echo '{"rules": []}'; else echo "{\"rules\": [{\"method\": \"GET\", \"delay_ms\": $1}]}"; fi >"$FAULTS.tmp"
  mv "$FAULTS.tmp" "$FAULTS"
}

echo "bench: restoring from local repositories"
restore ferry-local ferry "$WORK/ferry-repo"
restore restic-local restic "$WORK/restic-repo"
for ms in $LATENCIES; do
  echo "bench: restoring from S3 (moto) with ${ms} ms per GET"
  rules "$ms"
  restore "ferry-s3-$ms" ferry "s3://bench/ferry"
  restore "restic-s3-$ms" restic "s3:$AWS_ENDPOINT_URL/bench/restic"
done
echo "bench: check --read-data, local and from S3 with 20 ms per GET"
check ferry-check-local ferry "$WORK/ferry-repo"
check restic-check-local restic "$WORK/restic-repo"
rules 20
check ferry-check-s3-20 ferry "s3://bench/ferry"
check restic-check-s3-20 restic "s3:$AWS_ENDPOINT_URL/bench/restic"
rules 0

python3 - "$WORK" "$BYTES" "$FILES" "$LATENCIES" "$FERRY" <<'PY'
import re, sys
work, nbytes, nfiles, lats, ferry = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(), sys.argv[5]
def t(name):
    s = open(f"{work}/times/{name}").read()
    w = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", s).group(1)
    secs = 0.0
    for part in w.split(":"):
        secs = secs * 60 + float(part)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", s).group(1))
    try:
        gets = int(open(f"{work}/times/{name}.gets").read().strip() or 0)
    except OSError:
        gets = 0
    return secs, rss / 1024, gets
mib = nbytes / 2**20
gib = nbytes / 2**30
rows, res = [], {}
for src in ["local"] + [f"s3-{ms}" for ms in lats]:
    label = "local directory" if src == "local" else f"S3 (moto), +{src[3:]} ms a GET"
    for tool in ("ferry", "restic"):
        secs, rss, gets = t(f"{tool}-{src}")
        res[(tool, src)] = secs
        g = "—" if src == "local" else f"{gets / gib:.0f}"
        rows.append(f"| {label} | {tool} | {secs:.1f} s | {mib / secs:.0f} | {g} | {rss:.0f} MiB |")
def ratio(src):
    return res[("restic", src)] / res[("ferry", src)]
out = [
    f"Corpus: {nfiles} files, {mib:.0f} MiB (scripts/gen-corpus.py, seed 20261123). Ferry: {ferry}.",
    "",
    "| restore from | tool | time | MiB/s | object GETs per GiB | peak RSS |",
    "|---|---|---|---|---|---|",
    *rows,
    "",
    f"- local: Ferry {ratio('local'):.2f}x restic's speed (goal >= 1.5x)",
]
if "20" in lats:
    out.append(f"- S3 +20 ms: Ferry {ratio('s3-20'):.2f}x restic's speed (goal >= 2x)")
out += ["", "check --read-data (every pack read and verified):", "",
        "| repository | tool | time | object GETs | peak RSS |", "|---|---|---|---|---|"]
for src, label in (("local", "local directory"), ("s3-20", "S3 (moto), +20 ms a GET")):
    for tool in ("ferry", "restic"):
        secs, rss, gets = t(f"{tool}-check-{src}")
        out.append(f"| {label} | {tool} | {secs:.1f} s | {'—' if src == 'local' else gets} | {rss:.0f} MiB |")
text = "\n".join(out)
print(); print(text)
open(f"{work}/restore-table.md", "w").write(text + "\n")
PY
echo
echo "bench: table also in $WORK/restore-table.md"
