#!/usr/bin/env bash
# CTest example_translation_summarize: summarize.sh on fixed, made-up runs
# whose numbers were worked out by hand (below, next to each check).
#   summarize_test.sh WORK_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:?usage: summarize_test.sh WORK_DIR}
fail() { echo "FAIL: $*" >&2; exit 1; }
rm -rf "$work"
mkdir -p "$work/runs"

# run NAME ALPHA SINGLE SEED TEST_BLEU TRAIN_SECONDS_PER_EPOCH VALID_BLEU...
# (TEST_BLEU "-": unfinished, no test_bleu= line in the log.) With CPU=S in
# the environment the CSV has the trainer's train_cpu_seconds column (S).
run() {
  local name=$1 alpha=$2 single=$3 seed=$4 test=$5 secs=$6 root=${ROOT:-$work/runs}
  shift 6
  local dir=$root/$name e=0 b
  mkdir -p "$dir"
  echo "epoch,alpha,single_pass,seed,train_loss,valid_loss,valid_bleu,train_seconds,seconds,updates,lr${CPU:+,train_cpu_seconds}" >"$dir/epochs.csv"
  : >"$dir/train.log"
  for b in "$@"; do
    e=$((e + 1))
    echo "$e,$alpha,$single,$seed,9.0,5.0,$b,$secs,$((secs + 7)).000,$((e * 10)),0.001${CPU:+,$CPU}" >>"$dir/epochs.csv"
    echo "epoch $e/$#: train_loss=9.0000 valid_loss=5.0000 valid_bleu=$b" >>"$dir/train.log"
  done
  if [[ $test != - ]]; then
    echo "test: greedy decoding" >>"$dir/train.log"
    echo "test_bleu=$test" >>"$dir/train.log"
  fi
}
#   name        alpha single seed test  s/epoch valid BLEU per epoch
run a5-seed1    5 0 1 20.00 100 10 15 16
run a5-seed2    5 0 2 22.00 100 11 14 17
run a5-seed3    5 0 3 24.00 100 12 16 15
run a0-seed1    0 0 1 19.00 100 10 14 15
run a0-seed2    0 0 2 20.00 100 10 13 15
run a0-seed3    0 0 3 24.00 100 11 15 14
run sp-seed1    0 1 1 18.00 40  5 9 12 13 14 13
run sp-seed2    0 1 2 21.00 55  6 10 12 14 15 15
run sp-seed3    0 1 3 21.00 40  6 9 13 14 14 14.5
run a5-seed4    5 0 4 -     100 30 31           # unfinished: listed, not counted
# A finished run's log resumed for more epochs: unfinished again.
run a0-seed4    0 0 4 -     100 9 9
printf 'test_bleu=5.00\nepoch 3/3: valid_bleu=9\n' >>"$work/runs/a0-seed4/train.log"

out=$work/summary.md
bash "$here/summarize.sh" --svg "$work/plot.svg" "$work/runs" >"$out" || { cat "$out"; fail "summarize.sh failed"; }
cat "$out"
expect() {  # expect LINE: LINE must be in the report, exactly
  grep -qxF -- "$1" "$out" || fail "missing line: $1"
}

# Test BLEU: alpha=5 20, 22, 24 -> mean 22, sd sqrt(((-2)^2+0+2^2)/2) = 2.
#   alpha=0 19, 20, 24 -> mean 21, sd sqrt((4+1+9)/2) = sqrt(7) = 2.6458.
#   single-pass 18, 21, 21 -> mean 20, sd sqrt((4+1+1)/2) = sqrt(3) = 1.7321.
# Equal time. Budgets: seed 1 min(300, 300, 6*40=240) = 240; seed 2
#   min(300, 300, 6*55=330) = 300; seed 3 240.
#   seed 1, 3: the two-copy runs' cumulative 100, 200, 300 -> epoch 2
#   (|200-240| = 40 < 60); single-pass: its last epoch (240).
#   seed 2: two-copy runs epoch 3 (300); single-pass 55..330: 275 (epoch 5,
#   25 away) against 330 (30 away) -> epoch 5.
#   Best valid BLEU up to there: alpha=5: 15, 17, 16 -> 16 ± 1;
#   alpha=0: 14, 15, 15 -> 14.6667 ± 0.5774; single-pass: 14, 15, 14.5 ->
#   14.5 ± 0.5.
expect "| single-pass | 3 | 20.00 ± 1.73 | 14.50 ± 0.50 |"
expect "| alpha=0 | 3 | 21.00 ± 2.65 | 14.67 ± 0.58 |"
expect "| alpha=5 | 3 | 22.00 ± 2.00 | 16.00 ± 1.00 |"
# Differences, seed by seed, t(0.975, 2) = 4.303:
#   test, alpha=5 - single-pass: 2, 1, 3 -> mean 2, sd 1, half-width
#   4.303 / sqrt(3) = 2.4843 -> [-0.48, +4.48].
#   equal time, alpha=5 - single-pass: 1, 2, 1.5 -> mean 1.5, sd 0.5,
#   half-width 4.303 * 0.5 / sqrt(3) = 1.2422 -> [+0.26, +2.74].
#   test, alpha=5 - alpha=0: 1, 2, 0 -> mean 1, sd 1 -> [-1.48, +3.48].
#   equal time, alpha=5 - alpha=0: 1, 2, 1 -> mean 1.3333, sd 0.5774,
#   half-width 4.303 / 3 = 1.4343 -> [-0.10, +2.77].
expect "| alpha=5 - single-pass | +2.00 | [-0.48, +4.48] | 3 | +1.50 | [+0.26, +2.74] | 3 |"
expect "| alpha=5 - alpha=0 | +1.00 | [-1.48, +3.48] | 3 | +1.33 | [-0.10, +2.77] | 3 |"
# Per run: the equal-time epoch and value, the best epoch, the hours.
expect "| single-pass | 2 | 6 | 15.00 (5) | 21.00 | 0.09 | 5, 15.00 |"
expect "| alpha=5 | 1 | 3 | 16.00 (3) | 20.00 | 0.08 | 2, 15.00 |"
expect "| alpha=5 | 4 | 2 | 31.00 (2) | unfinished | 0.06 | - |"
expect "| alpha=0 | 4 | 2 | 9.00 (1) | unfinished | 0.06 | - |"
grep -qF "seed 1: 240 s, seed 2: 300 s, seed 3: 240 s, seed 4:" "$out" && fail "an unfinished run set a budget"
grep -qF "(seed 1: 240 s, seed 2: 300 s, seed 3: 240 s)" "$out" || fail "budgets not 240, 300, 240 s"
# Another treatment: the signs turn.
bash "$here/summarize.sh" --treatment alpha=0 "$work/runs" >"$work/other.md"
grep -qxF "| alpha=0 - alpha=5 | -1.00 | [-3.48, +1.48] | 3 | -1.33 | [-2.77, +0.10] | 3 |" "$work/other.md" ||
  { cat "$work/other.md"; fail "--treatment alpha=0"; }

# Equal compute from train_cpu_seconds where the CSV has it, not from the
# wall time: alpha=5 at 100 s wall but 50 s CPU an epoch (50, 100, 150),
# single-pass 40 s of both (40 ... 240): the budget is 150 s, and alpha=5's
# epoch 3 (150) against single-pass's epoch 4 (160, 10 away; 120 is 30).
ROOT=$work/cpu CPU=50 run a5-seed1 5 0 1 20.00 100 10 15 16
ROOT=$work/cpu CPU=40 run sp-seed1 0 1 1 18.00 40 5 9 12 13 14 13
bash "$here/summarize.sh" "$work/cpu" >"$work/cpu.md"
grep -qF "(seed 1: 150 s)" "$work/cpu.md" || { cat "$work/cpu.md"; fail "the budget is not from train_cpu_seconds"; }
grep -qxF "| single-pass | 1 | 6 | 14.00 (5) | 18.00 | 0.07 | 4, 13.00 |" "$work/cpu.md" ||
  { cat "$work/cpu.md"; fail "single-pass at equal CPU time"; }

# A CSV without train_cpu_seconds beside one with it: wall seconds for
# every run (min(300, 240) = 240), said in the report.
ROOT=$work/mixed CPU=50 run a5-seed1 5 0 1 20.00 100 10 15 16
ROOT=$work/mixed run sp-seed1 0 1 1 18.00 40 5 9 12 13 14 13
bash "$here/summarize.sh" "$work/mixed" >"$work/mixed.md"
grep -qF "(wall seconds, train_seconds: not every CSV has train_cpu_seconds; validation excluded) of its finished runs (seed 1: 240 s)" "$work/mixed.md" ||
  { cat "$work/mixed.md"; fail "mixed CSVs: not wall seconds for all"; }

# Refused: two runs of one configuration and seed (a copy would count as
# another seed); a field that is not a finite number.
ROOT=$work/dup run a5-seed1 5 0 1 20.00 100 10 15 16
ROOT=$work/dup run a5-copy 5 0 1 20.00 100 10 15 16
if bash "$here/summarize.sh" "$work/dup" >/dev/null 2>"$work/err.txt"; then fail "a duplicated run was accepted"; fi
grep -q "a5-copy and a5-seed1 are both alpha=5, seed 1\|a5-seed1 and a5-copy are both alpha=5, seed 1" "$work/err.txt" || { cat "$work/err.txt"; fail "no clear message for a duplicate"; }
ROOT=$work/nan run a5-seed1 5 0 1 20.00 100 10 nan 16
if bash "$here/summarize.sh" "$work/nan" >/dev/null 2>"$work/err.txt"; then fail "a NaN was accepted"; fi
grep -q 'field 7 of epoch 2 is "nan", not a finite number' "$work/err.txt" || { cat "$work/err.txt"; fail "no clear message for a NaN"; }

# The plot: a thin line per run with epochs, a thick one per configuration.
svg=$work/plot.svg
[[ $(grep -c '<polyline class="run"' "$svg") == 11 ]] || fail "not 11 run lines in the SVG"
[[ $(grep -c '<polyline class="mean"' "$svg") == 3 ]] || fail "not 3 mean lines in the SVG"
grep -q '>single-pass</text>' "$svg" && grep -q '>alpha=5</text>' "$svg" || fail "legend missing"
tail -1 "$svg" | grep -qx '</svg>' || fail "SVG not closed"

# Has validation BLEU stopped rising: the least-squares slope over the last
# K epochs (all if fewer). Default K = 10 on sp-seed1's 6 epochs
# (5 9 12 13 14 13): mean epoch 3.5, mean BLEU 11, Sxx 17.5, Sxy 28 ->
# slope 1.6; residuals -2, 0.4, 1.8, 1.2, 0.6, -2 -> SSE 13.2; standard
# error sqrt(13.2 / 4 / 17.5) = 0.43425, t(0.975, 4) = 2.776 -> half-width
# 1.20547.
expect "| single-pass | 1 | 1-6 | +1.600 | [+0.395, +2.805] |"
# --trend-epochs 3 takes the last three epochs only: 100 50 1 3 2 -> epochs
# 3-5 (1, 3, 2): slope 0.5, SSE 1.5, Sxx 2, standard error
# sqrt(1.5 / 1 / 2) = 0.86603, t(0.975, 1) = 12.706 -> half-width 11.0037.
# An exact line (2 4 6 8) has slope 2 and no spread; two epochs have no
# slope. Per configuration: alpha=5's finished slopes 0.5 and 0 -> mean
# 0.25, sd 0.35355.
ROOT=$work/trend run a5-seed1 5 0 1 20.00 100 100 50 1 3 2
ROOT=$work/trend run a5-seed2 5 0 2 20.00 100 7 7 7 7
ROOT=$work/trend run a0-seed1 0 0 1 20.00 100 2 4 6 8
ROOT=$work/trend run a0-seed2 0 0 2 20.00 100 2 4
bash "$here/summarize.sh" --trend-epochs 3 "$work/trend" >"$work/trend.md"
for line in "| alpha=5 | 1 | 3-5 | +0.500 | [-10.504, +11.504] |" "| alpha=5 | 2 | 2-4 | +0.000 | [+0.000, +0.000] |" \
  "| alpha=0 | 1 | 2-4 | +2.000 | [+2.000, +2.000] |" "| alpha=0 | 2 | 2 | (fewer than 3 epochs) | |" \
  "| alpha=5 | 2 | +0.250 ± 0.354 |" "| alpha=0 | 1 | +2.000 (n = 1) |"; do
  grep -qxF -- "$line" "$work/trend.md" || { cat "$work/trend.md"; fail "trend: missing line: $line"; }
done
if bash "$here/summarize.sh" --trend-epochs 2 "$work/trend" >/dev/null 2>"$work/err.txt"; then fail "--trend-epochs 2 accepted"; fi
grep -q "at least 3" "$work/err.txt" || { cat "$work/err.txt"; fail "--trend-epochs 2: no clear message"; }

# A treatment that is not there: named, with the ones that are.
if bash "$here/summarize.sh" --treatment alpha=7 "$work/runs" >/dev/null 2>"$work/err.txt"; then fail "--treatment alpha=7 accepted"; fi
grep -q "no such configuration (there are: single-pass, alpha=0, alpha=5)" "$work/err.txt" || { cat "$work/err.txt"; fail "--treatment: no list"; }

# Bad input: a clear message.
if bash "$here/summarize.sh" "$work/nothing" 2>"$work/err.txt"; then fail "a missing root was accepted"; fi
grep -q "no directory" "$work/err.txt" || fail "no clear message for a missing root"
echo "summarize test passed"
