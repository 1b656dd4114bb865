#!/usr/bin/env bash
# Installs, from Debian's packages, whatever rdrop's build, tests, benchmarks
# and examples need and this machine lacks. Safe to run again.
set -euo pipefail

packages=(
  cmake g++ make pkg-config   # build
  libeigen3-dev               # the one dependency of the headers
  catch2                      # tests (Catch2 v2)
  libbenchmark-dev            # rdrop_bench
  zlib1g-dev                  # the example reads gzip IDX files
  dataset-fashion-mnist       # the example's data, in /usr/share/datasets/fashion-mnist
  clang-14 libclang-rt-14-dev # tools/hardening.sh: the libFuzzer harness (tests/fuzz/)
  clang-tidy-14 cppcheck      # tools/hardening.sh: static analysis of the headers
  doxygen                     # the API reference (target docs, test api_reference)
  debhelper lintian           # tools/build-deb.sh, tools/test-deb.sh: the Debian package
  openmpi-bin libopenmpi-dev  # rdrop::mpi (rdrop/mpi.hpp), the data-parallel classifier and their tests
  libtorch-dev                # rdrop::torch (rdrop/torch.hpp), the torch classifier and their tests
  libopenblas0-openmp         # libtorch's float products leave the reference BLAS (about 7x), on OpenMP's threads (docs/torch.md)
  diatheke sword-text-sparv sword-text-web  # the translation example's Bible text (Spanish RV1909, English WEB)
  sentencepiece                             # the translation example's tokenizer (spm_train; its C++ library is not linked: examples/translation/pieces.hpp)
  python3                                   # the translation trainer's CTest damages a checkpoint's zip records with it
)

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "rdrop: installing ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Debian's libtorch multiplies through whichever libblas.so.3 / liblapack.so.3
# the alternatives point at. OpenBLAS's OpenMP build shares OpenMP's threads
# with torch and rdrop (at::set_num_threads reaches it); where the pthread
# build is also installed it has the higher priority, so an alternative left
# in auto mode is pointed at the OpenMP build. A choice made by hand stays.
# libopenblas.so.0 too: the OpenMP build's libblas.so.3 finds its kernels
# through $ORIGIN, which is /usr/lib/<arch> when it is loaded through the
# alternative's link, so it loads whatever libopenblas.so.0 points at there
# (the pthread build, left in auto mode).
arch=$(gcc -print-multiarch)
for alt in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
  name=$alt-$arch
  target=/usr/lib/$arch/openblas-openmp/$alt
  query=$(update-alternatives --query "$name" 2>/dev/null) || continue
  if grep -qx 'Status: auto' <<<"$query" && ! grep -qx "Value: $target" <<<"$query" && [[ -e $target ]]; then
    echo "rdrop: pointing $name at OpenBLAS's OpenMP build ($target)"
    $sudo update-alternatives --quiet --set "$name" "$target"
  fi
done
