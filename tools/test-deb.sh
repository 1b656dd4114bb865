#!/usr/bin/env bash
# The Debian package as a user meets it: builds librdrop-dev from this tree
# (tools/build-deb.sh, lintian included), installs it with apt-get into the
# system, builds and runs the consumer (tests/consumer/project) against /usr
# with find_package(rdrop) (with and without libtorch and MPI visible) and
# with pkg-config, then removes the package. Afterwards the installed
# packages are exactly those before; nothing the test did not install is
# touched. Needs root (or sudo) and a machine without librdrop-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(realpath -m "${RDROP_BUILD_DIR:-build}/deb-test")
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
fail() { echo "test-deb: $*" >&2; exit 1; }

installed() { dpkg-query -W -f='${Package}:${Architecture} ${Version} ${Status}\n' | grep ' installed$' | sort; }
if dpkg-query -W -f='${Status}' librdrop-dev 2>/dev/null | grep -q "install ok installed"; then
  fail "librdrop-dev is installed already; this test installs and removes its own (apt-get remove librdrop-dev first)"
fi
for path in /usr/include/rdrop /usr/share/cmake/rdrop /usr/share/pkgconfig/rdrop.pc; do
  [ ! -e "$path" ] || fail "$path exists outside any package; the test would overwrite it"
done

rm -rf "$work"
mkdir -p "$work"
deb=$(bash tools/build-deb.sh "$work/deb" | tail -n 1)
version=$(dpkg-deb -f "$deb" Version)
[ "$(dpkg-deb -f "$deb" Architecture)" = all ] || fail "$deb is not Architecture: all"
dpkg-deb -f "$deb" Depends | grep -q 'libeigen3-dev' || fail "$deb does not depend on libeigen3-dev"
for s in libtorch-dev libopenmpi-dev libgomp1; do
  dpkg-deb -f "$deb" Suggests | grep -q "$s" || fail "$deb does not suggest $s"
done
contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in $(git ls-files include); do
  grep -qx "./usr/$f" <<<"$contents" || fail "$deb lacks /usr/$f"
done
for f in rdropConfig rdropConfigVersion rdropTargets rdropOpenMPTargets rdropMPITargets rdropTorchTargets; do
  grep -qx "./usr/share/cmake/rdrop/$f.cmake" <<<"$contents" || fail "$deb lacks $f.cmake"
done
grep -qx "./usr/share/pkgconfig/rdrop.pc" <<<"$contents" || fail "$deb lacks rdrop.pc"

installed >"$work/before.txt"
remove() {
  # Everything this test added: the package, and whatever apt pulled in for it.
  installed >"$work/after-install.txt"
  added=$(comm -13 "$work/before.txt" "$work/after-install.txt" | awk '{print $1}')
  if [ -n "$added" ]; then
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get remove --purge -y -q $added >"$work/remove.log" 2>&1 ||
      { cat "$work/remove.log" >&2; echo "test-deb: removing $added failed" >&2; }
  fi
}
trap remove EXIT
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "$deb" >"$work/install.log" 2>&1 ||
  { cat "$work/install.log" >&2; fail "apt-get install $deb failed"; }
echo "test-deb: installed librdrop-dev $version"

consumer() {  # <name> [cmake options]: configure, build and run the consumer against /usr
  local name=$1
  shift
  cmake -S tests/consumer/project -B "$work/$name" -DRDROP_CONSUMER_MODE=find_package -DRDROP_EXPECTED_PREFIX=/usr \
    -DRDROP_EXPECTED_VERSION="$version" "$@" >"$work/$name.log" 2>&1 || { cat "$work/$name.log" >&2; fail "$name: configure failed"; }
  grep "rdrop consumer:" "$work/$name.log"
  cmake --build "$work/$name" >>"$work/$name.log" 2>&1 || { cat "$work/$name.log" >&2; fail "$name: build failed"; }
  "$work/$name/consumer" | tee -a "$work/$name.log" | grep -q "^rdrop $version consumer.*: ok$" || fail "$name: the consumer failed"
  echo "test-deb: $name: ok"
}
consumer find_package -DRDROP_CONSUMER_COMPONENTS="torch;mpi;openmp"
consumer find_package_without_adapters -DCMAKE_DISABLE_FIND_PACKAGE_Torch=ON -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON
# A component whose dependency is missing fails REQUIRED, naming it.
if cmake -S tests/consumer/project -B "$work/missing_component" -DRDROP_CONSUMER_MODE=find_package \
  -DRDROP_EXPECTED_PREFIX=/usr -DCMAKE_DISABLE_FIND_PACKAGE_Torch=ON -DRDROP_CONSUMER_COMPONENTS=torch \
  >"$work/missing_component.log" 2>&1; then
  fail "find_package(rdrop REQUIRED COMPONENTS torch) succeeded without Torch"
fi
grep -q "rdrop::torch needs Torch" "$work/missing_component.log" || fail "the missing component is not named"
echo "test-deb: find_package(rdrop REQUIRED COMPONENTS torch) without Torch fails: ok"

cflags=$(pkg-config --cflags rdrop)
[ "$(pkg-config --modversion rdrop)" = "$version" ] || fail "pkg-config gives version $(pkg-config --modversion rdrop), not $version"
# shellcheck disable=SC2086
g++ -std=c++17 $cflags tests/consumer/project/main.cpp -o "$work/pkgconfig-consumer"
"$work/pkgconfig-consumer" | grep -q "^rdrop $version consumer.*: ok$" || fail "the pkg-config consumer failed"
echo "test-deb: pkg-config (cflags '$cflags'): ok"

trap - EXIT
remove
installed >"$work/after.txt"
diff -u "$work/before.txt" "$work/after.txt" || fail "the installed packages differ from before the test"
for path in /usr/include/rdrop /usr/share/cmake/rdrop /usr/share/pkgconfig/rdrop.pc /usr/share/doc/librdrop-dev; do
  [ ! -e "$path" ] || fail "$path is left after removing the package"
done
echo "test-deb: librdrop-dev $version built, passed lintian, installed, used with find_package and pkg-config, and removed"
cd "$root"
