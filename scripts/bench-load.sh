#!/usr/bin/env bash
# Load figures (issue 15), not a test: it prints a table (and writes it to $WORK/table.md).
#
#   sudo bash scripts/bench-load.sh [FILES] [BIG_MIB]      (default 100000 4096)
#
# Two sources, each backed up by `ferry backup --config` through the whole local cloud
# (`ferry-localcloud`: moto, the real Lambda `bootstrap`, a jump box booted from its user data
# with real sshd and the real `ferry-gate`), first run then the unchanged re-run:
#  - `small`: FILES small files (100 per directory, 200-2,200 bytes of seeded random hex and
#    words each, which zstd halves but cannot make vanish);
#  - `big`: one file of BIG_MIB MiB from /dev/urandom (incompressible).
# For each run: wall time, and the phases from `--json` (collect+pack until ferry-build is
# asked; build; connect+upload; clean), peak RSS of `ferry backup` (GNU time's "Maximum
# resident set size") and of the session's `ferry-gate` (VmHWM from /proc/<pid>/status, read
# every 0.05 s while it runs, of the ferry-gate processes under the jump box's PID; "–" when a
# session's gate lived too briefly to be seen), the files the run saw unchanged, and the bytes
# it uploaded; for the small source, the time per 10,000 files of collect+pack (the phase that
# grows with the number of files; the others are one jump box's fixed cost).
# Wall time is GNU time's; the phases come from `seconds_elapsed`, whole seconds.
#
# Environment: BENCH_DIR (default /var/tmp/ferry-bench-load; needs about 3 x BIG_MIB free:
# the source, the spool, moto's copy), BENCH_PROFILE (debug | release; default debug: the
# build the tests use; release: the binaries the release package ships, i.e. `ferry` built as
# scripts/package-deb.sh builds it and the AL2023 `bootstrap`/`ferry-gate` from
# scripts/build-al2023.sh release, so after a package build nothing is rebuilt; the local
# cloud itself, `ferry-localcloud`, is the test kit's debug build either way),
# CARGO_TARGET_DIR. Needs root (jump boxes run under unshare), the project venv
# (scripts/install-deps.sh), GNU time. Removes everything it made when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FILES="${1:-100000}"
BIG_MIB="${2:-4096}"
PROFILE="${BENCH_PROFILE:-debug}"
WORK="${BENCH_DIR:-/var/tmp/ferry-bench-load}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}"
PY="$ROOT/.venv/bin/python"

[ "$(id -u)" = 0 ] || { echo "bench-load: run as root (jump boxes run under unshare)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench-load: GNU time missing (apt-get install time)" >&2; exit 1; }
[ -x "$PY" ] || { echo "bench-load: $PY missing (bash scripts/install-deps.sh)" >&2; exit 1; }

# shellcheck source=scripts/lib/bench-cloud.sh
. "$ROOT/scripts/lib/bench-cloud.sh"
bench_cloud_build "$PROFILE"

rm -rf "$WORK"
mkdir -p "$WORK/times"
CLOUD="$WORK/cloud"
cleanup() {
  "$KIT/ferry-localcloud" down --dir "$CLOUD" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "bench-load: generating $FILES small files and a $BIG_MIB MiB file in $WORK" >&2
"$PY" - "$WORK/src/small" "$FILES" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(20261202)
words = ["ferry", "backup", "config", "log", "error", "warn", "info", "host", "port", "user"]
for i in range(n):
    d = os.path.join(root, f"d{i // 100:04d}")
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    size = 200 + rng.randrange(2000)
    lines = []
    while sum(map(len, lines)) < size:
        lines.append(f"{rng.choice(words)} {rng.getrandbits(64):016x} {rng.randrange(10**6)}\n")
    with open(os.path.join(d, f"f{i % 100:03d}.conf"), "w") as f:
        f.write("".join(lines)[:size])
PY
mkdir -p "$WORK/src/big"
head -c "$((BIG_MIB << 20))" /dev/urandom >"$WORK/src/big/big.bin"

bench_cloud_up "$CLOUD" $((BIG_MIB * 2)) $((BIG_MIB * 8))
for site in small big; do
  # Room for the big file 3 times over; ferry refuses a spool under 64 MiB.
  bench_cloud_site "$site" "$WORK/src/$site" "$(( BIG_MIB * 3 > 64 ? BIG_MIB * 3 : 64 ))MiB"
done

# The peak VmHWM (kB) of the ferry-gate processes under this local cloud's jump boxes, read
# every 0.2 s until $1 exists; printed to stdout.
gate_peak() {
  "$PY" - "$CLOUD/state.json" "$1" <<'PY'
import json, os, sys, time
state, stop = sys.argv[1], sys.argv[2]
peak = 0
while not os.path.exists(stop):
    try:
        boxes = {b["pid"] for b in json.load(open(state)).get("boxes", []) if b.get("pid")}
    except (OSError, ValueError):
        boxes = set()
    parent, comm = {}, {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            s = open(f"/proc/{p}/stat").read()
        except OSError:
            continue
        comm[int(p)] = s[s.index("(") + 1 : s.rindex(")")]
        parent[int(p)] = int(s[s.rindex(")") + 2 :].split()[1])
    for p, c in comm.items():
        if c != "ferry-gate":
            continue
        q, seen = p, 0
        while q > 1 and q not in boxes and seen < 64:
            q, seen = parent.get(q, 1), seen + 1
        if q in boxes:
            try:
                for line in open(f"/proc/{p}/status"):
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            except OSError:
                pass
    time.sleep(0.05)
print(peak)
PY
}

# run NAME SITE: one `ferry backup --config` as the backup VM (only its profile), measured.
run() {
  local name=$1 site=$2
  rm -f "$WORK/times/$name.stop"
  gate_peak "$WORK/times/$name.stop" >"$WORK/times/$name.gate" &
  local sampler=$!
  if ! env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY FERRY_CACHE_DIR="$WORK/cache-$site" \
    /usr/bin/time -v -o "$WORK/times/$name.time" \
    "$FERRY" backup --json --config "$WORK/$site.toml" >"$WORK/times/$name.json" 2>"$WORK/times/$name.err"; then
    touch "$WORK/times/$name.stop"; wait "$sampler" || true
    echo "bench-load: $name failed:" >&2; tail -n 20 "$WORK/times/$name.err" >&2; exit 1
  fi
  touch "$WORK/times/$name.stop"
  wait "$sampler"
}

for site in small big; do
  echo "bench-load: $site, first run" >&2
  run "$site-1" "$site"
  echo "bench-load: $site, unchanged re-run" >&2
  run "$site-2" "$site"
done

echo "bench-load: restoring both from S3 (checked with diff -r)" >&2
for site in small big; do
  "$FERRY" restore --repo "s3://ferry-backup-bench/$site" --key "$WORK/$site.master" latest \
    --target "$WORK/restore-$site" >/dev/null 2>&1
  diff -r "$WORK/src/$site" "$WORK/restore-$site/local$WORK/src/$site" >/dev/null ||
    { echo "bench-load: the restore of $site differs" >&2; exit 1; }
  rm -rf "$WORK/restore-$site"
done

"$PY" - "$WORK/times" "$FILES" "$BIG_MIB" "$PROFILE" "$(nproc)" <<'PY' | tee "$WORK/table.md"
import json, sys
d, files, big_mib, profile, cores = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def load(name):
    lines = [json.loads(l) for l in open(f"{d}/{name}.json") if l.strip()]
    at = {}
    for l in lines:
        if l.get("message_type") == "status":
            at.setdefault(l["action"], l["seconds_elapsed"])
    summary = lines[-1]
    rss = next(int(l.split(":")[1]) for l in open(f"{d}/{name}.time") if "Maximum resident set size" in l)
    # "Elapsed (wall clock) time (h:mm:ss or m:ss): 1:02.34"
    el = next(l.rsplit(" ", 1)[1] for l in open(f"{d}/{name}.time") if "Elapsed (wall clock)" in l)
    wall = sum(float(p) * 60**i for i, p in enumerate(reversed(el.strip().split(":"))))
    gate = int(open(f"{d}/{name}.gate").read().strip() or 0)
    unchanged = sum(s.get("files_unchanged", 0) for s in summary.get("sources", []))
    return at, summary, rss, gate, unchanged, wall
print(f"ferry backup through the local cloud, {profile} build, {cores} cores\n")
print("| run | wall s | collect+pack s | build s | connect+upload s | clean s | files | unchanged | uploaded MiB | ferry backup peak RSS MiB | ferry-gate peak RSS MiB | collect+pack s per 10,000 files |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for name, label in [("small-1", f"{files:,} small files, first"), ("small-2", f"{files:,} small files, unchanged re-run"),
                    ("big-1", f"one {big_mib} MiB file, first"), ("big-2", f"one {big_mib} MiB file, unchanged re-run")]:
    at, s, rss, gate, unchanged, wall = load(name)
    b, l, c = at.get("building"), at.get("launched"), at.get("cleaning")
    f = lambda x: f"{x:.1f}" if x is not None else "–"
    per = f"{b / s['files'] * 10000:.2f}" if name.startswith("small") and s.get("files") and b is not None else ""
    gate_mib = f"{gate / 1024:.0f}" if gate else "–"
    print(f"| {label} | {wall:.1f} | {f(b)} | {f(l - b if l is not None and b is not None else None)} | "
          f"{f(c - l if c is not None and l is not None else None)} | {f(wall - c if c is not None else None)} | "
          f"{s.get('files', 0):,} | {unchanged:,} | {s['usage']['uploaded_bytes'] / 2**20:.1f} | "
          f"{rss / 1024:.0f} | {gate_mib} | {per} |")
PY
