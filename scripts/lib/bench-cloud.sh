# Sourced by the benchmarks that run `ferry backup --config` through the whole local cloud
# (scripts/bench-load.sh, scripts/bench-year-cloud.sh): the build, the local cloud with the
# infrastructure applied, and a site's keys and config. Needs ROOT, WORK, CARGO_TARGET_DIR and
# PY (the project venv's python) set by the caller; root (jump boxes run under unshare).

# bench_cloud_build PROFILE: build what the run needs and set KIT (the test kit's debug build:
# ferry-localcloud), FERRY and ARTIFACTS (bootstrap, ferry-gate) for PROFILE:
#  - debug: what the test command builds (`--workspace --all-targets`: the same feature set, so
#    nothing is rebuilt);
#  - release: the binaries the release package ships, i.e. `ferry` built as
#    scripts/package-deb.sh builds it and the AL2023 `bootstrap`/`ferry-gate` from
#    scripts/build-al2023.sh release, so after a package build nothing is rebuilt.
bench_cloud_build() {
  echo "bench: cargo build --workspace --all-targets (ferry, ferry-gate, bootstrap, ferry-localcloud)" >&2
  cargo build -q --locked --workspace --all-targets
  KIT="$CARGO_TARGET_DIR/debug"
  case "$1" in
    debug) FERRY="$KIT/ferry" ARTIFACTS="$KIT" ;;
    release)
      echo "bench: cargo build --release -p ferry-cli --bin ferry, scripts/build-al2023.sh release" >&2
      cargo build -q --locked --release -p ferry-cli --bin ferry
      FERRY="$CARGO_TARGET_DIR/release/ferry"
      ARTIFACTS="$(bash "$ROOT/scripts/build-al2023.sh" release)"
      ;;
    *) echo "bench: the profile must be debug or release, not '$1'" >&2; exit 2 ;;
  esac
}

# bench_cloud_up CLOUD SESSION_MIB SITE_MIB_PER_DAY: start the local cloud in CLOUD, source its
# env, `ferry infra apply` (backup bucket ferry-backup-bench, state bucket ferry-state-bench;
# the backup VM's credentials in $WORK/backup.credentials) with sessions of up to SESSION_MIB
# and a site's day of SITE_MIB_PER_DAY, and wait until both functions are hosted.
bench_cloud_up() {
  local cloud=$1 session_mib=$2 site_mib=$3
  echo "bench: starting the local cloud, ferry infra apply" >&2
  "$KIT/ferry-localcloud" up --dir "$cloud" >/dev/null
  # shellcheck disable=SC1091
  . "$cloud/env"
  # Sessions long and large enough for one run (docs/INFRA.md); the day's session limit high
  # enough for a benchmark's many runs.
  cat >"$WORK/infra.toml" <<EOF
prefix = "ferry"
region = "$AWS_REGION"
backup_bucket = "ferry-backup-bench"
state_bucket = "ferry-state-bench"
operator_arns = []

[jumpbox]
allowed_ssh_cidrs = ["127.0.0.1/32"]
instance_type = "t3.micro"
max_session_minutes = 180
sessions_per_day = 48
max_sessions = 2
session_mib = $session_mib
site_mib_per_day = $site_mib
EOF
  "$FERRY" infra apply -c "$WORK/infra.toml" --credentials-out "$WORK/backup.credentials" \
    --artifacts "$ARTIFACTS" >"$WORK/apply.log"
  for _ in $(seq 1 240); do
    "$KIT/ferry-localcloud" status --dir "$cloud" --json | "$PY" -c '
import json, sys
fs = {f["name"]: f for f in json.load(sys.stdin)["functions"]}
sys.exit(0 if all(fs.get(n, {}).get("pid") for n in ("ferry-build", "ferry-clean")) else 1)' && return 0
    sleep 0.5
  done
  echo "bench: ferry-build and ferry-clean are not hosted after 120 s" >&2
  exit 1
}

# bench_cloud_site SITE SOURCE SPOOL_MAX [BACKUP_LINES]: keys ($WORK/SITE.master, $WORK/SITE.put)
# and the backup VM's config $WORK/SITE.toml backing up the directory SOURCE (source `local`)
# through the cloud; BACKUP_LINES are extra lines of its [backup] table (`pack_size = …`).
bench_cloud_site() {
  local site=$1 source=$2 spool_max=$3 extra=${4:-}
  FERRY_PASSPHRASE='' "$FERRY" key init --master "$WORK/$site.master" --put "$WORK/$site.put" 2>/dev/null
  cat >"$WORK/$site.toml" <<EOF
[sources]
[sources.local]
paths = ["$source"]

[backup]
site = "$site"
key = "$WORK/$site.put"
spool = "$WORK/spool-$site"
spool_max = "$spool_max"
$extra

[cloud]
region = "$AWS_REGION"
profile = "ferry-backup"
credentials_file = "$WORK/backup.credentials"
session_minutes = 180
connect_timeout = 180
EOF
}
