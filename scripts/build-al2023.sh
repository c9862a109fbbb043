#!/usr/bin/env bash
# Builds the two binaries that run in AWS — `bootstrap` (both Lambda functions) and `ferry-gate`
# (the jump box) — for Amazon Linux 2023, whose glibc is 2.34: target
# x86_64-unknown-linux-gnu.2.34 with cargo-zigbuild, which links against glibc 2.34's symbol
# versions with the zig toolchain from PyPI (`ziglang`, pinned in scripts/requirements.txt,
# installed into the project venv). A native build may need newer symbols and then fails to
# start on Lambda. `debug` first tries the workspace's own build (see below).
#
# Lambda refuses a package whose contents exceed 250 MiB unzipped
# (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html); the workspace's
# release profile keeps line tables (`debug = "line-tables-only"`), which make `bootstrap` too
# large. So the release build here is stripped (no debug info, no symbol table: a panic still
# prints its message and file:line), by `--config` overrides that apply only to this build — the
# workspace profiles, and so the host builds the tests use, are unchanged. Output paths stay
# the same. `ferry infra plan/apply` checks the size again before uploading.
#
# The zig build has its own directory, $CARGO_TARGET_DIR/al2023 (its target and linker differ
# from the workspace build's, so sharing one would rebuild both in turn); the two binaries are
# then hard-linked to the output path below.
#
# usage: scripts/build-al2023.sh [debug|release]      (default: debug)
# output: $CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/<profile>/{bootstrap,ferry-gate}
#         (`ferry infra apply --artifacts <that dir>` deploys them; tests/al2023_glibc.rs checks
#         their symbol versions). Prints each binary's size, and the zip limit's headroom.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
profile="${1:-debug}"
case "$profile" in
  debug) flags=() ;;
  release) flags=(--release --config 'profile.release.debug=false' --config 'profile.release.strip="symbols"') ;;
  *) echo "build-al2023: unknown profile '$profile' (debug or release)" >&2; exit 2 ;;
esac
target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="$target_dir/x86_64-unknown-linux-gnu/$profile"

# Links bootstrap and ferry-gate from $1 to the output path, prints their sizes and the path.
finish() {
  mkdir -p "$out"
  for b in bootstrap ferry-gate; do
    [ -x "$1/$b" ] || { echo "build-al2023: $1/$b was not built" >&2; exit 1; }
    ln -f "$1/$b" "$out/$b"
    echo "build-al2023: $b $(stat -c %s "$out/$b") bytes" >&2
  done
  # Lambda's unzipped limit (262144000 bytes = 250 MiB); `ferry infra apply` refuses larger.
  local limit=262144000 size
  size="$(stat -c %s "$out/bootstrap")"
  if [ "$size" -ge "$limit" ]; then
    echo "build-al2023: WARNING: bootstrap is $size bytes, Lambda allows less than $limit unzipped: use 'release'" >&2
  fi
  echo "$out"
  exit 0
}

# The newest GLIBC_x.y that ELF file $1 needs (its version references, `objdump -p`), or
# "PRIVATE" / "none".
newest_glibc() {
  local v
  v="$(objdump -p "$1" | awk '/^Version References:/ {r = 1; next} r && /^[^ \t]/ {r = 0} r && $NF ~ /^GLIBC_/ {sub(/^GLIBC_/, "", $NF); print $NF}' | sort -V | tail -n 1)"
  echo "${v:-none}"
}

# debug (the test command's case): the workspace's own debug build of the two binaries, when
# it already needs no glibc newer than 2.34 — as on this Debian 12 (glibc 2.36) build machine.
# That spares a second compile of the AWS SDK crates with zig (11 min 26 s of 2 cores when it
# ran nearly alone). ferry-cloud's al2023_glibc test checks the linked binaries either way; when
# they need more (a newer build machine) or FERRY_AL2023_ZIG=1, the zig build below runs. A
# release build always goes through zig: it is what a real AWS account runs.
if [ "$profile" = debug ] && [ "${FERRY_AL2023_ZIG:-0}" != 1 ]; then
  cargo build --locked --workspace --all-targets >&2
  host="$target_dir/debug"
  usable=1
  for b in bootstrap ferry-gate; do
    newest="$(newest_glibc "$host/$b")"
    echo "build-al2023: $host/$b needs glibc up to $newest" >&2
    if [ "$newest" = none ] || [ "$newest" = PRIVATE ] || [ "$(printf '%s\n' "$newest" 2.34 | sort -V | tail -n 1)" != 2.34 ]; then
      usable=0
    fi
  done
  if [ "$usable" = 1 ]; then
    echo "build-al2023: debug: the workspace's own build fits AL2023 (glibc 2.34); no zig build" >&2
    finish "$host"
  fi
  echo "build-al2023: debug: the workspace's build needs a newer glibc than AL2023's 2.34; building with zig" >&2
fi

# zig from the project venv (ziglang wheel). cargo-zigbuild runs `zig` from PATH, else
# `python3 -m ziglang`; putting the venv first on PATH makes the latter the venv's pinned one.
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
  echo "build-al2023: $venv missing; installing dependencies" >&2
  bash scripts/install-deps.sh
fi
zig_pin="$(grep -E '^ziglang==' scripts/requirements.txt | head -n1)"
[ -n "$zig_pin" ] || { echo "build-al2023: no ziglang pin in scripts/requirements.txt" >&2; exit 2; }
if ! "$venv/bin/python" -m pip show ziglang >/dev/null 2>&1 \
   || [ "ziglang==$("$venv/bin/python" -m pip show ziglang | sed -n 's/^Version: //p')" != "$zig_pin" ]; then
  "$venv/bin/python" -m pip install --quiet "$zig_pin"
fi
export PATH="$venv/bin:$PATH"
# A `zig` elsewhere on PATH would win over the venv's; point cargo-zigbuild at the pinned one.
zigwrap="$(mktemp -d)"
trap 'rm -rf -- "$zigwrap"' EXIT
printf '#!/bin/sh\nexec "%s" -m ziglang "$@"\n' "$venv/bin/python" > "$zigwrap/zig"
chmod +x "$zigwrap/zig"
export PATH="$zigwrap:$PATH"

# cargo-zigbuild itself: the pinned prebuilt one in the venv (scripts/requirements.txt).
if [ ! -x "$venv/bin/cargo-zigbuild" ]; then
  echo "build-al2023: cargo-zigbuild missing from $venv; installing dependencies" >&2
  bash scripts/install-deps.sh
fi

echo "build-al2023: zig $(zig version), $(cargo-zigbuild --version), profile $profile" >&2
cargo zigbuild --locked "${flags[@]}" --target-dir "$target_dir/al2023" \
  --target x86_64-unknown-linux-gnu.2.34 -p ferry-lambda --bin bootstrap -p ferry-gate --bin ferry-gate
finish "$target_dir/al2023/x86_64-unknown-linux-gnu/$profile"
