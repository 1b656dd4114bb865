#!/usr/bin/env bash
# Installs what is missing, builds the Fashion-MNIST classifier example and
# trains it with R-Drop. Arguments go to the classifier (default: --epochs 2;
# e.g. --alpha 0 for the plain-dropout baseline, --labeled 1000 for
# semi-supervised R-Drop, --help for all flags).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
build=${RDROP_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$(nproc)" --target rdrop_classifier
if [ $# -eq 0 ]; then set -- --epochs 2; fi
"$build"/examples/rdrop_classifier "$@"
