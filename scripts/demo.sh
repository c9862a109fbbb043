#!/usr/bin/env bash
# Ferry's main job, end to end, on the embedded local cloud (README command 1).
#
#   sudo bash scripts/demo.sh [WORKDIR]
#
# Installs what is missing (scripts/install-deps.sh), builds Ferry, starts the local cloud
# (moto, the Lambda host running the real `bootstrap`, the jump-box runner, three sample LAN
# hosts with real sshd), creates the permanent infrastructure with `ferry infra apply` and checks
# its policies with `ferry infra verify`, makes the keys, runs `ferry backup` (collect →
# ferry-build → upload through the jump box's gate → ferry-clean) twice with a file changed in
# between, forgets the older snapshots and prunes as the operator, checks the repository,
# restores the latest from S3 with the master key, shows that the restore equals the LAN hosts' files
# and that nothing of the session is left in the cloud, and stops everything. Exits non-zero if
# anything differs.
#
# Needs root: sample hosts get a read-only account, jump boxes run under `unshare`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}"

if [ -t 1 ]; then B=$'\033[1m' N=$'\033[0m'; else B='' N=''; fi
say() { printf '\n%s%s%s\n' "$B" "$*" "$N"; }
run() { printf '  $ %s\n' "$*"; "$@"; }

if [ "$(id -u)" != 0 ]; then
  echo "demo: run as root (sudo): the sample LAN hosts need a user account and jump boxes run under unshare." >&2
  exit 1
fi
command -v cargo >/dev/null || {
  echo "demo: cargo not found. Install Rust first: https://rustup.rs (then re-run this script)." >&2
  exit 1
}

say "0. Install what is missing (apt: openssh-server, netcat…; pip: moto into ./.venv)"
bash scripts/install-deps.sh

say "1. Build ferry, ferry-gate, the Lambda bootstrap and the local cloud (the first build takes several minutes)"
# The whole workspace with its tests, as the test command builds it: one build serves both.
cargo build -q --locked --workspace --all-targets
BIN="$CARGO_TARGET_DIR/debug"
ferry() { "$BIN/ferry" "$@"; }

WORK="${1:-$(mktemp -d /tmp/ferry-demo.XXXXXX)}"
mkdir -p "$WORK"
CLOUD="$WORK/cloud"
echo "  working in $WORK"

say "2. Start the local cloud: moto (S3, EC2, IAM, STS, Lambda, EventBridge), the real Lambda bootstrap, the jump-box runner, 3 LAN hosts"
run "$BIN/ferry-localcloud" up --dir "$CLOUD" --lan 3
stop_cloud() { "$BIN/ferry-localcloud" down --dir "$CLOUD" >/dev/null 2>&1 || true; }
trap stop_cloud EXIT
# shellcheck disable=SC1091
. "$CLOUD/env"   # AWS_ENDPOINT_URL (moto), AWS_ENDPOINT_URL_LAMBDA, operator keys, FERRY_SSH_CONFIG

say "3. As the operator: create the permanent infrastructure (ferry infra apply) and verify its policies"
cat >"$WORK/infra.toml" <<EOF
prefix = "ferry"
region = "$AWS_REGION"
backup_bucket = "ferry-backup-demo"
state_bucket = "ferry-state-demo"
operator_arns = []

[jumpbox]
# Jump boxes of the local cloud listen on loopback.
allowed_ssh_cidrs = ["127.0.0.1/32"]
instance_type = "t3.micro"
max_session_minutes = 60
EOF
run ferry infra apply -c "$WORK/infra.toml" --credentials-out "$WORK/backup.credentials" --artifacts "$BIN"
# The authorization matrix of docs/SECURITY.md on the policies just installed, read back from the
# account (moto has no IAM policy simulator: verify says so and uses its local evaluator).
printf '  $ %s\n' "ferry infra verify -c $WORK/infra.toml"
if ! ferry infra verify -c "$WORK/infra.toml" >"$WORK/verify.txt"; then
  cat "$WORK/verify.txt"
  echo "demo: ferry infra verify found a difference" >&2
  exit 1
fi
sed -n '1,2p;$p' "$WORK/verify.txt" | sed 's/^/    /'
echo "    (every case: $WORK/verify.txt)"

# The local cloud hosts each function once it sees it in moto (a second or two).
for _ in $(seq 1 120); do
  "$BIN/ferry-localcloud" status --dir "$CLOUD" --json | "$ROOT/.venv/bin/python" -c '
import json, sys
fs = {f["name"]: f for f in json.load(sys.stdin)["functions"]}
sys.exit(0 if all(fs.get(n, {}).get("pid") for n in ("ferry-build", "ferry-clean")) else 1)' && break
  sleep 0.5
done

say "4. Keys: the master key stays with the operator; the backup VM gets only the put key"
FERRY_PASSPHRASE='' run ferry key init --master "$WORK/master.key" --put "$WORK/put.key"

say "5. The backup VM's config: the LAN hosts, the put key, the spool, the cloud"
{
  cat "$CLOUD/sources.toml"
  cat <<EOF

[backup]
site = "home"
key = "$WORK/put.key"
spool = "$WORK/spool"

[cloud]
region = "$AWS_REGION"
profile = "ferry-backup"
credentials_file = "$WORK/backup.credentials"
installation = "ferry"
EOF
} >"$WORK/ferry.toml"
sed -n '/^\[backup\]/,$p' "$WORK/ferry.toml" | sed 's/^/    /'

say "6. On the backup VM: ferry backup (collect → ferry-build → upload through the gate → ferry-clean)"
# Only the backup user's credentials (they can invoke the two functions, nothing else).
run env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY "$BIN/ferry" backup --config "$WORK/ferry.toml"
say "   A file changes on a LAN host; a second run: only what changed is read and uploaded"
changed=$("$ROOT/.venv/bin/python" -c '
import sys, tomllib
h = tomllib.load(open(sys.argv[1], "rb"))["sources"]["host"][0]
print(h["paths"][0])' "$CLOUD/sources.toml")
changed=$(find "$changed" -type f | sort | head -n 1)
echo "# changed by the demo" >>"$changed"
echo "  appended a line to $changed"
run env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY "$BIN/ferry" backup --config "$WORK/ferry.toml"
run ferry status --config "$WORK/ferry.toml"

say "7. As the operator: retention — keep the latest snapshot of each host, prune what only the older ones used"
run ferry snapshots --repo s3://ferry-backup-demo/home --key "$WORK/master.key"
run ferry forget --repo s3://ferry-backup-demo/home --key "$WORK/master.key" --keep-last 1
# --max-unused 0%: repack the pack that held the changed file's old version (new packs, index,
# the old pack moved to trash/ by CopyObject: every kind of write prune makes).
run ferry prune --repo s3://ferry-backup-demo/home --key "$WORK/master.key" --max-unused 0%
run ferry check --repo s3://ferry-backup-demo/home --key "$WORK/master.key" --read-data

say "8. As the operator: restore the latest from S3 with the master key"
rm -rf "$WORK/restore"
run ferry restore --repo s3://ferry-backup-demo/home --key "$WORK/master.key" latest --target "$WORK/restore"

say "9. The restore equals the LAN hosts' files"
"$ROOT/.venv/bin/python" - "$CLOUD/sources.toml" >"$WORK/pairs" <<'PY'
import sys, tomllib
for h in tomllib.load(open(sys.argv[1], "rb"))["sources"]["host"]:
    for p in h["paths"]:
        print(h["name"], p)
PY
while read -r name path; do
  diff -r "$path" "$WORK/restore/$name$path"
  echo "  $name:$path — identical ($(find "$path" -type f | wc -l) files)"
done <"$WORK/pairs"

say "10. Nothing of the sessions is left in the cloud"
"$ROOT/.venv/bin/python" - <<'PY'
import boto3, sys
ec2, s3 = boto3.client("ec2"), boto3.client("s3")
live = [i["InstanceId"] for r in ec2.describe_instances(Filters=[{"Name": "tag:ferry:installation", "Values": ["ferry"]}])["Reservations"]
        for i in r["Instances"] if i["State"]["Name"] != "terminated"]
groups = [g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]
          if any(t["Key"] == "ferry:session" for t in g.get("Tags", []))]
states = s3.list_objects_v2(Bucket="ferry-state-demo", Prefix="sessions/").get("KeyCount", 0)
print(f"  instances running: {len(live)}, session security groups: {len(groups)}, session state objects: {states}")
sys.exit(1 if live or groups or states else 0)
PY

say "11. Stop the local cloud"
trap - EXIT
run "$BIN/ferry-localcloud" down --dir "$CLOUD"

say "Done. To use a real AWS account instead:"
cat <<'EOF'
  ferry infra example-config > ferry-infra.toml        # region, bucket names, your public IP as allowed_ssh_cidrs
  bash scripts/build-al2023.sh release                 # bootstrap + ferry-gate for Amazon Linux 2023 (glibc 2.34)
  ferry infra apply -c ferry-infra.toml --artifacts "$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"
  # copy ferry-backup.credentials and put.key to the backup VM, write ferry.toml as above, then there:
  ferry backup --config ferry.toml && ferry schedule install --config ferry.toml
  # restore anywhere with the master key and operator credentials:
  ferry restore --repo s3://BACKUP_BUCKET/SITE --key master.key latest --target /tmp/restore
EOF
