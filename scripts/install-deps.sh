#!/usr/bin/env bash
# Installs what Ferry's tests and local cloud need on a fresh Debian machine (root):
# OpenSSH server (real sshd for the gate and LAN hosts), restic (benchmarks), busybox (a
# LAN host without GNU find, in the collection tests), netcat (the
# local cloud's ssh_config reaches jump boxes with `nc`), man-db, systemd (systemd-analyze),
# passwd and binutils (the Debian package's test: man pages, units, the account, strip), and a
# project-local Python virtual environment (.venv) with the pinned AWS emulator and the
# policy linters/evaluators. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(openssh-server openssh-client restic time util-linux iproute2 zip unzip netcat-openbsd busybox
  man-db systemd passwd binutils)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Pinned Python tools, in the project's own virtual environment.
VENV=.venv
PY_REQS=scripts/requirements.txt
stamp="$VENV/.installed-$(sha256sum "$PY_REQS" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "install-deps: python venv $VENV ($PY_REQS)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$PY_REQS"
  touch "$stamp"
fi
