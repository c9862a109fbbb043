#!/usr/bin/env bash
# Builds Ferry's Debian package: the `ferry` binary, the Lambda `bootstrap` and `ferry-gate` built
# for Amazon Linux 2023 (scripts/build-al2023.sh), the systemd service and timer, completions,
# man pages and an example config, all made by the binary itself (`ferry generate`), with the
# maintainer scripts in packaging/deb/. dpkg-deb (Debian's own archive builder, on every Debian
# machine) writes the archive: cargo-deb would build the same files but would cost a cold CI
# run a `cargo install` of its own, and its asset paths assume one target, while this package
# mixes the host `ferry` with two cross-built AL2023 binaries.
#
# usage: scripts/package-deb.sh [debug|release]     (default: release)
#   debug   from the debug builds the test command already makes; uncompressed archive (fast;
#           what tests/deb.sh installs)
#   release stripped release binaries, xz-compressed: the package to install on a real backup VM
# output: the .deb's path on stdout ($CARGO_TARGET_DIR/deb/<profile>/ferry_<version>_amd64.deb)
#
# Layout (ferry-run's `schedule::packaged` names the same paths):
#   /usr/lib/ferry/{ferry,bootstrap,ferry-gate}  /usr/bin/ferry -> ../lib/ferry/ferry
#     (`ferry infra apply` looks for the artifacts next to the real executable)
#   /lib/systemd/system/ferry-backup.{service,timer}   (not enabled; runs as user `ferry`)
#   /etc/ferry/ferry.toml (conffile, a commented example)
#   /usr/share/man/man1/ferry*.1.gz, bash/zsh/fish completions, /usr/share/doc/ferry/
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
profile="${1:-release}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}"
# debug builds the same set the test command builds (`--workspace --all-targets`), so cargo's
# feature unification matches and nothing is rebuilt; `-p ferry-cli` alone would unify the
# AWS SDK crates' features differently and rebuild them (5 min on 2 cores).
case "$profile" in
  debug) cargo_flags=(--workspace --all-targets) compress=(-Znone) ;;
  release) cargo_flags=(--release -p ferry-cli --bin ferry) compress=(-Zxz) ;;
  *) echo "package-deb: unknown profile '$profile' (debug or release)" >&2; exit 2 ;;
esac
command -v dpkg-deb >/dev/null || { echo "package-deb: dpkg-deb not found (a Debian machine is needed)" >&2; exit 1; }

echo "package-deb: building ferry ($profile) and the AL2023 artifacts" >&2
cargo build --locked "${cargo_flags[@]}" >&2
al2023="$(bash scripts/build-al2023.sh "$profile")"
ferry="$CARGO_TARGET_DIR/$profile/ferry"

version="$("$ferry" --version | awk '{print $2}')"
[ -n "$version" ] || { echo "package-deb: could not read the version from $ferry --version" >&2; exit 1; }
out="$CARGO_TARGET_DIR/deb/$profile"
stage="$out/root"
rm -rf -- "$stage"
mkdir -p "$stage/DEBIAN" "$stage/usr/lib/ferry" "$stage/usr/bin" "$stage/etc/ferry" \
  "$stage/lib/systemd/system" "$stage/usr/share/man/man1" "$stage/usr/share/doc/ferry" \
  "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions" \
  "$stage/usr/share/fish/vendor_completions.d"

install -m 0755 "$ferry" "$stage/usr/lib/ferry/ferry"
install -m 0755 "$al2023/bootstrap" "$al2023/ferry-gate" "$stage/usr/lib/ferry/"
ln -s ../lib/ferry/ferry "$stage/usr/bin/ferry"
if [ "$profile" = release ]; then
  strip --strip-all "$stage/usr/lib/ferry/ferry"   # the AL2023 pair is already stripped
fi

gen="$out/generated"
rm -rf -- "$gen"
"$ferry" generate --completions "$gen/completions" --man "$gen/man" --units "$gen/units" >/dev/null
install -m 0644 "$gen/completions/ferry.bash" "$stage/usr/share/bash-completion/completions/ferry"
install -m 0644 "$gen/completions/_ferry" "$stage/usr/share/zsh/vendor-completions/_ferry"
install -m 0644 "$gen/completions/ferry.fish" "$stage/usr/share/fish/vendor_completions.d/ferry.fish"
for page in "$gen"/man/*.1; do
  gzip -9n <"$page" >"$stage/usr/share/man/man1/$(basename "$page").gz"
done
install -m 0644 "$gen"/units/* "$stage/lib/systemd/system/"
install -m 0644 packaging/deb/ferry.toml "$stage/etc/ferry/ferry.toml"
install -m 0644 README.md "$stage/usr/share/doc/ferry/README.md"
cat >"$stage/usr/share/doc/ferry/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ferry
License: MIT OR Apache-2.0 (Cargo.toml's license field)
EOF

install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$stage/DEBIAN/"
echo /etc/ferry/ferry.toml >"$stage/DEBIAN/conffiles"
size_kib="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$size_kib/" packaging/deb/control.in \
  >"$stage/DEBIAN/control"

deb="$out/ferry_${version}_amd64.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$stage" "$deb" >&2
echo "package-deb: $(stat -c %s "$deb") bytes, $(find "$stage" -type f -not -path '*/DEBIAN/*' | wc -l) files" >&2
cd "$root"
echo "$deb"
