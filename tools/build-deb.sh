#!/usr/bin/env bash
# Builds the Debian package librdrop-dev_<version>_all.deb from this tree's
# files (tracked and untracked, not ignored: what a clone of a commit holds), offline, into ${1:-build/deb}, and runs
# lintian on it: errors fail, warnings are printed. Prints the .deb's path
# as the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-build/deb}")
version=$(sed -n 's/^#define RDROP_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$/\2/p' include/rdrop/version.hpp | paste -sd.)
src="$out/rdrop-$version"
rm -rf "$out"
mkdir -p "$src"
# dpkg-buildpackage writes next to the source tree: build in a copy under
# $out, never beside the clone.
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$src"
(cd "$src" && dpkg-buildpackage -b -us -uc >"$out/dpkg-buildpackage.log" 2>&1) || {
  tail -40 "$out/dpkg-buildpackage.log" >&2
  echo "build-deb: dpkg-buildpackage failed (log: $out/dpkg-buildpackage.log)" >&2
  exit 1
}
deb="$out/librdrop-dev_${version}_all.deb"
[ -f "$deb" ] || { echo "build-deb: $deb was not built" >&2; exit 1; }
# --fail-on error: warnings are reported (and explained in debian/ or fixed),
# errors fail the build.
lintian --fail-on error --info "$deb" | tee "$out/lintian.log" >&2
echo "$deb"
