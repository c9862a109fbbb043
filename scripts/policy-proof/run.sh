#!/usr/bin/env bash
# Policy proof (docs/SECURITY.md): dumps every policy document Ferry generates, then
#   1. proof.py: parliament lint + an authorization matrix evaluated by principalmapper
#      (prints the matrix as Markdown);
#   2. moto_check.py: the backup user's keys against moto with its IAM checks on.
# Exits non-zero on any finding, mismatch or failed check.
# usage: scripts/policy-proof/run.sh [OUTDIR]   (needs .venv: bash scripts/install-deps.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "policy-proof: $PY missing; run: bash scripts/install-deps.sh" >&2; exit 2; }
out="${1:-}"
if [ -z "$out" ]; then
  out="$(mktemp -d)"
  trap 'rm -rf -- "$out"' EXIT
fi
cargo run -q -p ferry-cloud --example dump-policies -- "$out" >/dev/null
"$PY" scripts/policy-proof/proof.py "$out"
echo
echo "## moto (IAM enforcement on): the backup user's keys"
echo
"$PY" scripts/policy-proof/moto_check.py "$out"
