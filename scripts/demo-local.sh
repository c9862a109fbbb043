#!/usr/bin/env bash
# Ferry's main job, end to end, against a local directory repository (README command 1).
#
#   bash scripts/demo-local.sh [WORKDIR]
#
# Builds `ferry`, makes a master key and a put key, backs up a generated sample tree (config
# files, logs, a symlink, a file whose name is not UTF-8), lists the snapshots, shows that the
# put key cannot read the backup, restores with the master key, and compares the restore with
# the source: bytes (diff -r) and metadata (type, mode, mtime, size, symlink target).
# Exits non-zero if anything differs. Needs only cargo (Rust) and coreutils/findutils/diffutils.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}"

if [ -t 1 ]; then B=$'\033[1m' N=$'\033[0m'; else B='' N=''; fi
say() { printf '\n%s%s%s\n' "$B" "$*" "$N"; }
run() { printf '  $ %s\n' "$*"; "$@"; }

command -v cargo >/dev/null || {
  echo "demo: cargo not found. Install Rust first: https://rustup.rs (then re-run this script)." >&2
  exit 1
}

say "1. Build the ferry command (cargo build; the first build takes a few minutes)"
cargo build -q -p ferry-cli
FERRY="$CARGO_TARGET_DIR/debug/ferry"
ferry() { "$FERRY" "$@"; }

WORK="${1:-$(mktemp -d /tmp/ferry-demo.XXXXXX)}"
mkdir -p "$WORK"
SRC="$WORK/sample"
REPO="$WORK/repo"
KEYS="$WORK/keys"
export FERRY_CACHE_DIR="$WORK/cache"
rm -rf "$SRC" "$REPO" "$KEYS" "$WORK/restore" "$FERRY_CACHE_DIR"
echo "  working in $WORK"

say "2. Generate a sample tree to back up: config files, logs, a symlink, a non-UTF-8 file name"
mkdir -p "$SRC/etc/nginx" "$SRC/etc/ssh" "$SRC/var/log/nginx" "$SRC/home/admin"
printf 'server {\n  listen 80;\n  root /srv/www;\n}\n' >"$SRC/etc/nginx/site.conf"
printf 'Port 22\nPermitRootLogin no\nPasswordAuthentication no\n' >"$SRC/etc/ssh/sshd_config"
chmod 600 "$SRC/etc/ssh/sshd_config"
printf '#!/bin/sh\necho backup hook\n' >"$SRC/home/admin/hook.sh"
chmod 755 "$SRC/home/admin/hook.sh"
for i in $(seq 1 20000); do
  printf '2026-01-01T10:%02d:%02dZ gw nginx[42]: 10.0.0.%d "GET /status HTTP/1.1" 200 %d\n' \
    $((i / 60 % 60)) $((i % 60)) $((i % 250)) $((i % 9000))
done >"$SRC/var/log/nginx/access.log"
head -c 2000000 /dev/urandom >"$SRC/home/admin/photo.jpg"
ln -s ../../etc/nginx/site.conf "$SRC/home/admin/site-link"
printf 'a file whose name is Latin-1, not UTF-8\n' >"$SRC/home/admin/caf"$'\xe9'".txt"
touch -d '2025-06-01 12:00:00' "$SRC/etc/nginx/site.conf"
find "$SRC" -printf '  %y %m %10s  %P\n' | sort -k4 | LC_ALL=C sed 's/[^[:print:]]/?/g'

say "3. Make the keys"
echo "  The master key (restore) stays offline with the operator; the put key (backup only) goes to"
echo "  the backup machine. FERRY_PASSPHRASE='' means no passphrase (fine for a demo only)."
mkdir -p "$KEYS"
FERRY_PASSPHRASE='' run ferry key init --master "$KEYS/master.key" --put "$KEYS/put.key"
ls -l "$KEYS" | sed 's/^/  /'

say "4. Back up with the put key: chunk, deduplicate, compress, encrypt to the public key, pack"
run ferry backup --repo "$REPO" --key "$KEYS/put.key" "$SRC"

say "5. Back up again: unchanged files are not even read (known from the local cache)"
run ferry backup --repo "$REPO" --key "$KEYS/put.key" "$SRC"

say "6. The repository holds only encrypted, content-addressed objects"
(cd "$REPO" && find . -type f | sort | sed 's/^/  /')

say "7. The put key cannot read the backup (the backup machine could not leak it):"
if out=$(ferry snapshots --repo "$REPO" --key "$KEYS/put.key" 2>&1); then
  echo "demo: FAILED: the put key could read the repository" >&2
  exit 1
fi
echo "  \$ ferry snapshots --repo $REPO --key $KEYS/put.key"
echo "  $out"

say "8. List the snapshots and the files of the latest one (master key)"
run ferry snapshots --repo "$REPO" --key "$KEYS/master.key"
run ferry ls --repo "$REPO" --key "$KEYS/master.key" latest "$SRC/etc"

say "9. Check the repository, reading and verifying every pack"
run ferry check --repo "$REPO" --key "$KEYS/master.key" --read-data

say "10. Restore the latest snapshot into a new directory"
run ferry restore --repo "$REPO" --key "$KEYS/master.key" latest --target "$WORK/restore"
RESTORED="$WORK/restore$SRC"   # Ferry keeps the absolute path layout, like restic

say "11. Compare the restore with the source"
meta() { (cd "$1" && find . -printf '%y %m %s %T@ %l %P\n' | LC_ALL=C sort); }
status=0
if diff -r --no-dereference "$SRC" "$RESTORED" >/dev/null 2>&1; then
  echo "  contents: identical (diff -r)"
else
  echo "  contents DIFFER:"; diff -r --no-dereference "$SRC" "$RESTORED" | head -20 || true; status=1
fi
if diff <(meta "$SRC") <(meta "$RESTORED") >/dev/null; then
  echo "  metadata: identical (type, mode, size, mtime to the nanosecond, symlink targets, names as bytes)"
else
  echo "  metadata DIFFERS:"; diff <(meta "$SRC") <(meta "$RESTORED") | head -20 || true; status=1
fi
if [ "$status" -ne 0 ]; then
  echo; echo "demo: FAILED: the restore differs from the source ($WORK)" >&2
  exit 1
fi
echo
echo "demo: success. The restore equals the source. Everything is in $WORK (delete it when done)."
