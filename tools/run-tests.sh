#!/usr/bin/env bash
# Installs what is missing, builds everything (library checks, tests,
# examples, benchmarks) and runs the whole test suite with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
build=${RDROP_BUILD_DIR:-build}
jobs=${RDROP_JOBS:-$(nproc)}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" --output-on-failure -j "$jobs"
bash tools/hardening.sh  # sanitized suite, fuzzing (~60 s), clang-tidy, cppcheck
