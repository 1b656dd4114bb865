#!/usr/bin/env bash
# Installs what is missing, builds the example classifier and trains it.
# Extra arguments go to the classifier (e.g. --epochs 5 --alpha 0).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
build=${RDROP_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$(nproc)" --target rdrop_toy_classifier
"$build"/examples/rdrop_toy_classifier "$@"
