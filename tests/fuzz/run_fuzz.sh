#!/usr/bin/env bash
# Builds the libFuzzer harness (tests/fuzz/fuzz_rdrop.cpp, the dispatcher,
# and one file per API family, tests/fuzz/*.cpp) with clang (libFuzzer +
# AddressSanitizer + UndefinedBehaviorSanitizer) into one binary, and runs
# it for a bounded time, starting from the committed seed corpus
# tests/fuzz/corpus/ (copied into the build directory, so the committed
# corpus is never written). Prints the number of executions; exits non-zero
# on any finding, whose reproducer is left in the build directory (replay:
# build-fuzz/fuzz_rdrop <file>, with FUZZ_RDROP_VERBOSE=1 to print what the
# input drew).
#
#   tests/fuzz/run_fuzz.sh [seconds]        default 60
#
# Environment: RDROP_FUZZ_DIR (default build-fuzz), RDROP_FUZZ_CXX (default
# clang++-14, else clang++), RDROP_FUZZ_FLAGS (extra compiler flags, e.g.
# -mavx2 to fuzz the AVX2 paths), RDROP_FUZZ_SEED (libFuzzer's -seed;
# default 0, a random seed each run; tools/hardening.sh fixes it, see there),
# RDROP_JOBS (files compiled at once; default nproc).
set -euo pipefail
seconds=${1:-60}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${RDROP_FUZZ_DIR:-$root/build-fuzz}
cxx=${RDROP_FUZZ_CXX:-$(command -v clang++-14 || command -v clang++)}
eigen=$(pkg-config --cflags-only-I eigen3 2>/dev/null | sed 's/^-I//;s/ .*//')
[ -n "$eigen" ] || eigen=/usr/include/eigen3
mkdir -p "$out"

# One object per harness file, rebuilt when it, a harness header, an rdrop
# header or the flags changed; the objects compile in parallel, the largest
# files first and the next as soon as any finishes (in file order the
# largest came last and compiled alone).
flags="-std=c++17 -O1 -g1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all ${RDROP_FUZZ_FLAGS:-}"
jobs=${RDROP_JOBS:-$(nproc)}
binary=$out/fuzz_rdrop
[ "$(cat "$out/flags" 2>/dev/null)" = "$cxx $flags" ] || rm -rf "$out/obj"
mkdir -p "$out/obj"
objects=() status=0 start=$(date +%s)
# (A here-string, not a process substitution: wait -n could count that as a job.)
mapfile -t sources <<<"$(ls -S "$here"/*.cpp)"
running=0
for src in "${sources[@]}"; do
  obj=$out/obj/$(basename "${src%.cpp}").o
  objects+=("$obj")
  if [ ! -f "$obj" ] || [ -n "$(find "$src" "$here"/*.hpp "$root/include" -newer "$obj" -print -quit)" ]; then
    if ((running >= jobs)); then
      wait -n || status=$?
      running=$((running - 1))
    fi
    # shellcheck disable=SC2086  # flags is a list of words
    "$cxx" $flags -I"$root/include" -isystem "$eigen" -c "$src" -o "$obj" &
    running=$((running + 1))
  fi
done
while ((running > 0)); do
  wait -n || status=$?
  running=$((running - 1))
done
if ((status != 0)); then
  rm -f "$binary"
  echo "fuzz_rdrop: build failed" >&2
  exit "$status"
fi
if [ ! -x "$binary" ] || [ -n "$(find "${objects[@]}" -newer "$binary" -print -quit)" ] ||
   [ "$(cat "$out/flags" 2>/dev/null)" != "$cxx $flags" ]; then
  # shellcheck disable=SC2086
  "$cxx" $flags "${objects[@]}" -o "$binary.tmp"
  mv "$binary.tmp" "$binary"
  echo "$cxx $flags" >"$out/flags"
  echo "fuzz_rdrop: built in $(($(date +%s) - start)) s"
fi

# A fresh working corpus each run: the seeds, plus what this run finds.
rm -rf "$out/corpus"
mkdir -p "$out/corpus"
cp "$here"/corpus/* "$out/corpus/" 2>/dev/null || true
log=$out/fuzz.log
status=0
"$binary" -seed="${RDROP_FUZZ_SEED:-0}" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$out/" "$out/corpus" >"$log" 2>&1 || status=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
if ((status != 0)); then
  grep -E "property violated|runtime error|ERROR: |unexpected throw|SUMMARY" "$log" | head -20 >&2 || true
  # CI keeps only what is printed: the input itself (base64) and what it drew,
  # so that a finding can be replayed from the log alone.
  artifact=$(ls -t "$out"/crash-* "$out"/timeout-* "$out"/oom-* 2>/dev/null | head -1 || true)
  if [ -n "$artifact" ]; then
    echo "fuzz_rdrop: reproducer $(basename "$artifact"), base64 (replay: base64 -d > f; build-fuzz/fuzz_rdrop f):" >&2
    base64 -w 0 "$artifact" >&2
    echo >&2
    FUZZ_RDROP_VERBOSE=1 timeout 60 "$binary" "$artifact" 2>&1 | grep -v -E "^(INFO|    #|==[0-9]+==|    [0-9])" | cut -c1-400 | head -60 >&2 || true
  fi
  echo "fuzz_rdrop: FAILED after ${runs:-?} executions; reproducer and log in $out" >&2
  exit "$status"
fi
echo "fuzz_rdrop: ${runs:-?} executions in $seconds s, no findings (corpus $(ls "$out/corpus" | wc -l) inputs)"
