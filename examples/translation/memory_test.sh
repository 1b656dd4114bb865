#!/usr/bin/env bash
# rdrop_translation --measure-memory on a tiny model: the fused output layer
# peaks lower than the explicit one at the same batch, fits a larger batch in
# the same budget, and each reported largest batch's peak is within it.
#   memory_test.sh <rdrop_translation>
set -euo pipefail
trainer=$1
out=$("$trainer" --measure-memory --quick --vocab 4000 --memory-batch 16 --memory-budget-gib 0.05 --threads 1)
echo "$out"
fail() { echo "memory_test: $*" >&2; exit 1; }
at_batch=$(grep '^memory: batch of 16 sentences' <<<"$out") || fail "no line for the batch of 16"
largest=$(grep '^memory: largest batch in 0.05 GiB' <<<"$out") || fail "no line for the largest batches"
read -r fused explicit < <(sed -E 's/.* step ([0-9.]+) MiB with the fused .*, ([0-9.]+) MiB with an explicit .*/\1 \2/' <<<"$at_batch")
awk -v f="$fused" -v e="$explicit" 'BEGIN { exit !(f > 0 && f < e) }' || fail "fused $fused MiB is not below explicit $explicit MiB"
read -r fb fp eb ep < <(sed -E 's/.*: ([0-9]+) sentences with the fused output layer \(peak ([0-9.]+) MiB\), ([0-9]+) with an explicit one \(peak ([0-9.]+) MiB\).*/\1 \2 \3 \4/' <<<"$largest")
awk -v fb="$fb" -v eb="$eb" 'BEGIN { exit !(fb > eb && eb >= 1) }' || fail "fused batch $fb is not above explicit batch $eb"
awk -v fp="$fp" -v ep="$ep" 'BEGIN { budget = 0.05 * 1024; exit !(fp <= budget && ep <= budget) }' ||
  fail "a largest batch's peak ($fp, $ep MiB) exceeds the budget"
echo "memory_test: ok"
