#!/usr/bin/env bash
# The Debian package, installed for real (part of the test command, scripts/test.sh):
#   1. builds it (scripts/package-deb.sh): from the debug builds the test command already made,
#      or, with `release`, the release package a real backup VM installs (same checks);
#   2. `dpkg -i`: the `ferry` account, the directories and their modes, `ferry --version`,
#      `man ferry-backup`, the bash completion answering, systemd accepting the units;
#   3. runs the installed `ferry` against the local cloud: `ferry infra apply` with no
#      --artifacts (so from the packaged AL2023 `bootstrap` and `ferry-gate`, checked by hash),
#      then one backup run exactly as the packaged service runs it (its User=, Environment=,
#      ExecStart= and only CAP_DAC_READ_SEARCH, through setpriv) of a root-only directory, and
#      a restore compared with the source; without the capability the same account cannot read it;
#   4. `dpkg --purge`: nothing is left but the account and the files the operator put in
#      /etc/ferry (keys, credentials), which a purge keeps by design (packaging/deb/postrm).
# Needs root. Leaves the machine as it found it (the trap purges and removes the account).
# usage: scripts/test-deb.sh [debug|release]     (default: debug; the local cloud is always the
#        debug ferry-localcloud the test command builds)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}"
BIN="$CARGO_TARGET_DIR/debug"
profile="${1:-debug}"
case "$profile" in debug | release) ;; *) echo "test-deb: unknown profile '$profile' (debug or release)" >&2; exit 2 ;; esac
step() { printf '\n--> %s\n' "$*"; }
fail() { echo "test-deb: FAILED: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "run as root (dpkg -i, a system account)"

if dpkg-query -W -f='${Status}' ferry 2>/dev/null | grep -q installed; then
  fail "a ferry package is already installed on this machine; this test installs and purges its own"
fi
if [ -e /etc/ferry ] && [ ! -e /etc/ferry/.test-deb ]; then
  fail "/etc/ferry exists and is not this test's leftover: not touching it"
fi

WORK="$(mktemp -d /tmp/ferry-deb.XXXXXX)"
CLOUD="$WORK/cloud"
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -d "$CLOUD" ]; then # keep the local cloud's logs (boxes, gate, moto)
    keep="$(mktemp -d /tmp/ferry-deb-failed.XXXXXX)"
    find "$CLOUD" -name '*.log' -size -20M -exec cp --parents -t "$keep" {} + 2>/dev/null || true
    echo "test-deb: the local cloud's logs are kept in $keep" >&2
  fi
  [ -f "$CLOUD/env" ] && "$BIN/ferry-localcloud" down --dir "$CLOUD" >/dev/null 2>&1 || true
  dpkg --purge ferry >/dev/null 2>&1 || true
  rm -rf /etc/ferry
  userdel ferry >/dev/null 2>&1 || true
  groupdel ferry >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cleanup_leftover() { rm -rf /etc/ferry; userdel ferry 2>/dev/null || true; groupdel ferry 2>/dev/null || true; }
cleanup_leftover

step "build the package ($profile)"
deb="$(bash scripts/package-deb.sh "$profile")"
dpkg-deb --contents "$deb" >"$WORK/contents"
for p in ./usr/lib/ferry/ferry ./usr/lib/ferry/bootstrap ./usr/lib/ferry/ferry-gate ./usr/bin/ferry \
  ./lib/systemd/system/ferry-backup.service ./lib/systemd/system/ferry-backup.timer \
  ./etc/ferry/ferry.toml ./usr/share/man/man1/ferry-backup.1.gz \
  ./usr/share/bash-completion/completions/ferry ./usr/share/zsh/vendor-completions/_ferry \
  ./usr/share/fish/vendor_completions.d/ferry.fish; do
  grep -q " $p\( ->.*\)\?$" "$WORK/contents" || fail "$deb has no $p"
done
echo "  $deb: $(grep -c '' "$WORK/contents") entries, $(grep -c 'man1/.*\.1\.gz' "$WORK/contents") man pages"

step "dpkg -i"
dpkg -i "$deb" >/dev/null
touch /etc/ferry/.test-deb
getent passwd ferry | grep -q ':/var/lib/ferry:/usr/sbin/nologin$' || fail "account: $(getent passwd ferry)"
check_mode() { [ "$(stat -c '%U:%G %a' "$1")" = "$2" ] || fail "$1 is $(stat -c '%U:%G %a' "$1"), want $2"; }
check_mode /etc/ferry "root:ferry 750"
check_mode /etc/ferry/ferry.toml "root:ferry 640"
for d in /var/spool/ferry /var/cache/ferry /var/lib/ferry; do check_mode "$d" "ferry:ferry 700"; done
dpkg-query -W -f='${Conffiles}\n' ferry | grep -q '/etc/ferry/ferry.toml' || fail "ferry.toml is not a conffile"
v="$(ferry --version)"
echo "  $v"
re="^ferry [0-9]+\\.[0-9]+\\.[0-9]+ \\(commit ([0-9a-f]{12}|unknown), $profile build\\)\$"
[[ "$v" =~ $re ]] || fail "ferry --version: $v"
[ "$(readlink -f "$(command -v ferry)")" = /usr/lib/ferry/ferry ] || fail "ferry on PATH is not /usr/lib/ferry/ferry"

command -v man >/dev/null || apt-get install -y -qq --no-install-recommends man-db >/dev/null
man -w ferry-backup | grep -q '^/usr/share/man/man1/ferry-backup.1.gz$' || fail "man -w ferry-backup"
MANWIDTH=100 man -P cat ferry-backup 2>/dev/null >"$WORK/man.txt"
grep -q -- '--config' "$WORK/man.txt" && grep -qi 'ferry-backup' "$WORK/man.txt" || fail "man ferry-backup: $(head -5 "$WORK/man.txt")"
echo "  man ferry-backup: $(grep -c '' "$WORK/man.txt") lines"

words="$(bash -c '. /usr/share/bash-completion/completions/ferry
  COMP_WORDS=(ferry ba); COMP_CWORD=1; COMP_LINE="ferry ba"; COMP_POINT=${#COMP_LINE}
  _ferry ferry ba ferry; printf "%s\n" "${COMPREPLY[@]}"')"
grep -qx backup <<<"$words" || fail "bash completion of 'ferry ba': $words"
grep -q '^#compdef ferry' /usr/share/zsh/vendor-completions/_ferry || fail "zsh completion"
grep -q '^complete -c ferry' /usr/share/fish/vendor_completions.d/ferry.fish || fail "fish completion"
echo "  bash completes 'ferry ba' to: $(tr '\n' ' ' <<<"$words")"

command -v systemd-analyze >/dev/null ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
out="$(systemd-analyze verify /lib/systemd/system/ferry-backup.service /lib/systemd/system/ferry-backup.timer 2>&1)" ||
  fail "systemd-analyze verify: $out"
grep -q ferry-backup <<<"$out" && fail "systemd-analyze verify: $out"
echo "  systemd-analyze verify: the service and the timer are accepted"

step "the installed ferry against the local cloud"
"$BIN/ferry-localcloud" up --dir "$CLOUD" --lan 1 >/dev/null
# shellcheck disable=SC1091
. "$CLOUD/env"
cat >"$WORK/infra.toml" <<EOF
prefix = "ferry"
region = "$AWS_REGION"
backup_bucket = "ferry-backup-deb"
state_bucket = "ferry-state-deb"
operator_arns = []

[jumpbox]
allowed_ssh_cidrs = ["127.0.0.1/32"]
instance_type = "t3.micro"
max_session_minutes = 60
EOF
# No --artifacts: apply must take bootstrap and ferry-gate from /usr/lib/ferry.
ferry infra apply -c "$WORK/infra.toml" --credentials-out /etc/ferry/aws-credentials >"$WORK/apply.txt"
"$ROOT/.venv/bin/python" - <<'PY' || fail "the state bucket's gate is not the packaged one"
import boto3, hashlib
body = boto3.client("s3").get_object(Bucket="ferry-state-deb", Key="artifacts/ferry-gate")["Body"].read()
want = hashlib.sha256(open("/usr/lib/ferry/ferry-gate", "rb").read()).hexdigest()
assert hashlib.sha256(body).hexdigest() == want
print(f"  artifacts/ferry-gate is /usr/lib/ferry/ferry-gate ({len(body)} bytes, sha256 {want[:12]}…)")
PY
for _ in $(seq 1 120); do
  "$BIN/ferry-localcloud" status --dir "$CLOUD" --json | "$ROOT/.venv/bin/python" -c '
import json, sys
fs = {f["name"]: f for f in json.load(sys.stdin)["functions"]}
sys.exit(0 if all(fs.get(n, {}).get("pid") for n in ("ferry-build", "ferry-clean")) else 1)' && break
  sleep 0.5
done

FERRY_PASSPHRASE='' ferry key init --master "$WORK/master.key" --put /etc/ferry/put.key >/dev/null
chown ferry:ferry /etc/ferry/put.key /etc/ferry/aws-credentials
chmod 0600 /etc/ferry/put.key /etc/ferry/aws-credentials

# A local source only root can read: the account reaches it through its one capability.
SRC="$WORK/root-only"
mkdir -m 0700 "$SRC" "$SRC/etc"
printf 'secret=1\n' >"$SRC/etc/app.conf"
head -c 300000 /dev/urandom >"$SRC/blob.bin"
chmod 0600 "$SRC/etc/app.conf" "$SRC/blob.bin"
{
  cat "$CLOUD/sources.toml"
  cat <<EOF

[sources.local]
name = "vm"
paths = ["$SRC"]

[backup]
site = "deb"
key = "/etc/ferry/put.key"
spool = "/var/spool/ferry"

[cloud]
region = "$AWS_REGION"
profile = "ferry-backup"
credentials_file = "/etc/ferry/aws-credentials"
installation = "ferry"
EOF
} >/etc/ferry/ferry.toml

# The service's own lines: who it runs as, its environment, its command.
unit=/lib/systemd/system/ferry-backup.service
user="$(sed -n 's/^User=//p' "$unit")"
cap="$(sed -n 's/^AmbientCapabilities=CAP_//p' "$unit" | tr 'A-Z' 'a-z')"
read -r -a unit_env <<<"$(sed -n 's/^Environment=//p' "$unit")"
read -r -a exec_start <<<"$(sed -n 's/^ExecStart=//p' "$unit")"
[ "$user" = ferry ] && [ "$cap" = dac_read_search ] || fail "$unit: User=$user, capability $cap"
# The local cloud's endpoints and ssh config are this machine's AWS environment (as a real
# VM's would be its region's defaults); the operator's keys are not passed.
cloud_env=(AWS_ENDPOINT_URL="$AWS_ENDPOINT_URL" AWS_ENDPOINT_URL_LAMBDA="$AWS_ENDPOINT_URL_LAMBDA"
  AWS_REGION="$AWS_REGION" AWS_EC2_METADATA_DISABLED=true FERRY_SSH_CONFIG="$FERRY_SSH_CONFIG")
as_service() { # [--no-cap] CMD...: as systemd would start the unit (but for the sandbox options)
  local caps=(--inh-caps=+"$cap" --ambient-caps=+"$cap" --bounding-set=-all,+"$cap")
  if [ "$1" = --no-cap ]; then caps=(--bounding-set=-all); shift; fi
  setpriv --reuid="$user" --regid="$user" --init-groups "${caps[@]}" --no-new-privs \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "${unit_env[@]}" "${cloud_env[@]}" "$@"
}
set +e
as_service --no-cap ferry sources check --config /etc/ferry/ferry.toml >"$WORK/nocap.txt" 2>&1
rc=$?
set -e
[ "$rc" = 3 ] && grep -q "$SRC" "$WORK/nocap.txt" ||
  fail "without the capability the account read $SRC (exit $rc): $(cat "$WORK/nocap.txt")"
echo "  without CAP_DAC_READ_SEARCH: 'ferry sources check' exits 3 naming $SRC"
as_service "${exec_start[@]}" >"$WORK/backup.txt" 2>&1 || fail "the service's backup: $(tail -20 "$WORK/backup.txt")"
echo "  the service's command as user ferry with CAP_DAC_READ_SEARCH: $(grep -c '' "$WORK/backup.txt") lines of report, exit 0"
as_service ferry status --config /etc/ferry/ferry.toml >"$WORK/status.txt" && [ -s "$WORK/status.txt" ] || fail "ferry status as the account"
[ -z "$(find /var/spool/ferry /var/cache/ferry -not -user ferry)" ] || fail "files not owned by ferry in the spool/cache"

ferry restore --repo s3://ferry-backup-deb/deb --key "$WORK/master.key" latest --target "$WORK/restore" >/dev/null
diff -r "$SRC" "$WORK/restore/vm$SRC" || fail "the restore differs from $SRC"
# The LAN host's source: its name and paths, as the local cloud wrote them.
lan="$("$ROOT/.venv/bin/python" -c '
import sys, tomllib
src = tomllib.load(open(sys.argv[1], "rb"))["sources"]["host"][0]
print(src["name"]); print(*src["paths"], sep="\n")' "$CLOUD/sources.toml")"
lan_name="$(head -n1 <<<"$lan")"
while read -r p; do
  diff -r "$p" "$WORK/restore/$lan_name$p" || fail "the restore differs from LAN host $lan_name's $p"
done < <(tail -n +2 <<<"$lan")
echo "  restored from S3 as the operator: equal to $SRC and to $lan_name's $(tail -n +2 <<<"$lan" | wc -l) paths"
"$BIN/ferry-localcloud" down --dir "$CLOUD" >/dev/null

step "dpkg --purge"
rm /etc/ferry/.test-deb
dpkg --purge ferry >/dev/null 2>"$WORK/purge.txt"
grep -q "kept /etc/ferry" "$WORK/purge.txt" || fail "purge did not say it kept /etc/ferry: $(cat "$WORK/purge.txt")"
left="$(ls -d /usr/bin/ferry /usr/lib/ferry /lib/systemd/system/ferry-backup.* /usr/share/man/man1/ferry* \
  /usr/share/bash-completion/completions/ferry /usr/share/zsh/vendor-completions/_ferry \
  /usr/share/fish/vendor_completions.d/ferry.fish /usr/share/doc/ferry /var/spool/ferry /var/cache/ferry \
  /var/lib/ferry /etc/ferry/ferry.toml 2>/dev/null || true)"
[ -z "$left" ] || fail "left after purge: $left"
[ "$(ls -A /etc/ferry | sort | tr '\n' ' ')" = "aws-credentials put.key " ] || fail "/etc/ferry after purge: $(ls -A /etc/ferry)"
getent passwd ferry >/dev/null || fail "the purge removed the ferry account (Debian keeps system accounts)"
echo "  purged: only the account and the operator's /etc/ferry/{put.key,aws-credentials} remain"
echo "test-deb: ok"
