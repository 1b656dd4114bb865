#!/usr/bin/env bash
# Installs what is missing, builds everything (library checks, tests,
# examples, benchmarks), runs the whole test suite with CTest (the unit
# tests under the sanitizers), tests the Debian package, then fuzzes and runs
# the static analysers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
build=${RDROP_BUILD_DIR:-build}
jobs=${RDROP_JOBS:-$(nproc)}
# Release for everything but rdrop_tests, which is built once, unoptimized,
# under AddressSanitizer + UndefinedBehaviorSanitizer with Eigen's
# assertions on (RDROP_SANITIZE_TESTS): one build of the test suite, not two.
# The benchmarks are only checked to compile and link (-O0, binaries that
# refuse to run: RDROP_BENCHMARKS_CHECK_ONLY); bench/run_bench.sh builds them
# optimized in build-bench/.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DRDROP_SANITIZE_TESTS=ON -DRDROP_BENCHMARKS_CHECK_ONLY=ON
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" --output-on-failure -j "$jobs"
bash tools/test-deb.sh  # the Debian package: built, lintian, installed, used, removed
bash tools/hardening.sh fuzz tidy cppcheck  # fuzzing (~60 s), clang-tidy, cppcheck
