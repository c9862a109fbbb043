#!/usr/bin/env bash
# Benchmark (not a test): the simulated year's fast path (scripts/bench-year.sh) checked against
# the real local cloud, day by day. It prints bench-year's table for DAYS simulated days and
# then, per simulated week, the S3 requests the fast path models next to the ones moto's own
# request log counted:
#
#   sudo bash scripts/bench-year-cloud.sh [DAYS] [SCALE]      (default 30 0.02)
#
# Each day the fast path backs up the model's tree through the engine, and the real
# `ferry backup --config` backs up the same tree through the whole local cloud (moto, the real
# Lambda `bootstrap`, a jump box booted from its user data with real sshd and `ferry-gate`) into
# s3://ferry-backup-bench/homelab, with the same pack size. On each weekly forget --prune day,
# the real `ferry forget` removes the cloud snapshots of the simulated days the fast path's
# policy removed, and `ferry prune` runs against s3:// with the admin credentials. At the end,
# `ferry check --read-data` of the cloud repository. Requests are counted from moto's log
# (DIR/moto.log, one line per HTTP request), per bucket: PUT and POST are the PUT class (a
# COPY is a PUT on the wire: counted there), GET of a bucket (or with list-type/versions/
# uploads) the LIST class, other GET and HEAD the GET class, DELETE free. Snapshot times differ
# (the cloud's are real, minutes apart): the forget names the snapshots by id, so the policy is
# the fast path's; and a trashed pack's grace period (24 h) never passes in the cloud, so its
# prunes delete no trashed pack (DELETE is free; it changes stored bytes, not PUT/LIST).
#
# Environment: BENCH_DIR (default /var/tmp/ferry-bench-year-cloud), BENCH_PROFILE (debug |
# release, as scripts/bench-load.sh), BENCH_KEEP=1 (keep BENCH_DIR: moto's log, the runs'
# output in last.json/last.err, retention.log), CARGO_TARGET_DIR. Needs root (jump boxes run under
# unshare) and the project venv (scripts/install-deps.sh). Removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY="$ROOT/.venv/bin/python"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}"

# The helper bench_year calls (`--cloud`): one verb per call, with the exported state below.
if [ "${1:-}" = __step ]; then
  shift
  verb=$1
  shift
  repo=(--repo "s3://ferry-backup-bench/homelab" --key "$WORK/homelab.master")
  case "$verb" in
    backup)
      # As the backup VM: only its profile, no admin keys.
      env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY FERRY_CACHE_DIR="$WORK/cache" \
        "$FERRY" backup --json --config "$WORK/homelab.toml" >"$WORK/last.json" 2>"$WORK/last.err" ||
        { tail -n 20 "$WORK/last.err" >&2; exit 1; }
      "$PY" -c 'import json, sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["snapshots"][-1]["snapshot"])' "$WORK/last.json"
      ;;
    forget) "$FERRY" forget "${repo[@]}" "$@" >>"$WORK/retention.log" 2>&1 || { tail -n 20 "$WORK/retention.log" >&2; exit 1; } ;;
    prune) "$FERRY" prune "${repo[@]}" >>"$WORK/retention.log" 2>&1 || { tail -n 20 "$WORK/retention.log" >&2; exit 1; } ;;
    check) "$FERRY" check "${repo[@]}" --read-data 2>&1 | tail -n 1 ;;
    requests)
      "$PY" - "$CLOUD/moto.log" <<'PY'
import re, sys
from urllib.parse import urlsplit, parse_qs
count = {b: {"PUT": 0, "COPY": 0, "LIST": 0, "GET": 0, "DELETE": 0} for b in ("backup", "state")}
buckets = {"ferry-backup-bench": "backup", "ferry-state-bench": "state"}
line_re = re.compile(r'"(GET|HEAD|PUT|POST|DELETE) (\S+) HTTP/1\.[01]" \d{3} ')
ansi = re.compile(r"\x1b\[[0-9;]*m")  # werkzeug colours some lines (206, 4xx) for a terminal
for line in open(sys.argv[1], errors="replace"):
    m = line_re.search(ansi.sub("", line))
    if not m:
        continue
    method, target = m.groups()
    url = urlsplit(target)
    bucket, _, key = url.path.lstrip("/").partition("/")
    if bucket not in buckets:
        continue
    c = count[buckets[bucket]]
    q = parse_qs(url.query, keep_blank_values=True)
    if method in ("PUT", "POST"):
        c["PUT"] += 1
    elif method == "DELETE":
        c["DELETE"] += 1
    elif method == "GET" and (not key or {"list-type", "versions", "uploads"} & q.keys()):
        c["LIST"] += 1
    else:
        c["GET"] += 1
for b, c in count.items():
    print(b, c["PUT"], c["COPY"], c["LIST"], c["GET"], c["DELETE"])
PY
      ;;
    *) echo "bench-year-cloud: unknown step $verb" >&2; exit 2 ;;
  esac
  exit 0
fi

DAYS="${1:-30}"
SCALE="${2:-0.02}"
PROFILE="${BENCH_PROFILE:-debug}"
export WORK="${BENCH_DIR:-/var/tmp/ferry-bench-year-cloud}"
[ "$(id -u)" = 0 ] || { echo "bench-year-cloud: run as root (jump boxes run under unshare)" >&2; exit 1; }
[ -x "$PY" ] || { echo "bench-year-cloud: $PY missing (bash scripts/install-deps.sh)" >&2; exit 1; }

# shellcheck source=scripts/lib/bench-cloud.sh
. "$ROOT/scripts/lib/bench-cloud.sh"
bench_cloud_build "$PROFILE"
echo "bench-year-cloud: cargo build --release -p ferry-repo --example bench_year" >&2
cargo build --release -q -p ferry-repo --example bench_year

rm -rf "$WORK"
mkdir -p "$WORK"
export CLOUD="$WORK/cloud" FERRY
cleanup() {
  "$KIT/ferry-localcloud" down --dir "$CLOUD" >/dev/null 2>&1 || true
  [ -n "${BENCH_KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# Each session reserves its session_mib of the site's day (docs/LAMBDA.md): 48 sessions fit.
bench_cloud_up "$CLOUD" 256 $((256 * 48))
# The fast path's pack size at this scale, in bytes (bench_year.rs: 32 MiB x SCALE, at least
# 1 MiB).
pack=$("$PY" -c 'import sys; print(max(1 << 20, int(32 * 2**20 * float(sys.argv[1]))))' "$SCALE")
bench_cloud_site homelab "$WORK/year/tree" 1GiB "pack_size = \"$pack\""
printf '#!/bin/bash\nexec bash %q __step "$@"\n' "$ROOT/scripts/bench-year-cloud.sh" >"$WORK/step"
chmod +x "$WORK/step"

start=$(date +%s)
"$CARGO_TARGET_DIR/release/examples/bench_year" --days "$DAYS" --scale "$SCALE" \
  --dir "$WORK/year" --cloud "$WORK/step"
echo "bench-year-cloud: $(( $(date +%s) - start )) s"
