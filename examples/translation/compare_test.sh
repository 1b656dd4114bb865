#!/usr/bin/env bash
# CTest example_translation_compare: compare.sh's bookkeeping with a fake
# trainer (a bash script that writes epochs.csv and prints what
# rdrop_translation prints, resuming from the rows already there): the
# order of the runs, the derived data, skipping finished runs, resuming an
# interrupted one, extending finished runs with a larger --epochs, a run
# locked by another driver skipped, the summary written, an earlier
# sitting's exported runs imported only where data, flags and epochs match.
#   compare_test.sh WORK_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:?usage: compare_test.sh WORK_DIR}
fail() { echo "FAIL: $*" >&2; exit 1; }
rm -rf "$work"
mkdir -p "$work/data"

# Data: 10 training pairs, 5 validation, 4 test.
for split in train:10 valid:5 test:4; do
  name=${split%:*}
  for ((i = 1; i <= ${split#*:}; ++i)); do
    for f in es en es.ids en.ids keys; do echo "$name $f $i" >>"$work/data/$name.$f"; done
  done
done
echo model >"$work/data/spm.model"
echo vocab >"$work/data/spm.vocab"

fake=$work/fake-trainer
cat >"$fake" <<'EOF'
#!/usr/bin/env bash
# Takes rdrop_translation's flags; appends "NAME ..." to $FAKE_CALLS.
set -euo pipefail
run="" epochs=0 alpha=5 single=0 seed=1 data=""
while (($#)); do
  case $1 in
    --run) run=$2; shift 2 ;; --epochs) epochs=$2; shift 2 ;; --alpha) alpha=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;; --data) data=$2; shift 2 ;; --single-pass) single=1; shift ;;
    --no-progress) shift ;; *) shift 2 ;;
  esac
done
echo "${run##*/} train=$(wc -l <"$data/train.es.ids") valid=$(wc -l <"$data/valid.en") test=$(wc -l <"$data/test.en")" >>"$FAKE_CALLS"
csv=$run/epochs.csv
[[ -f $csv ]] || echo "epoch,alpha,single_pass,seed,train_loss,valid_loss,valid_bleu,train_seconds,seconds,updates,lr" >"$csv"
done_epochs=$(($(wc -l <"$csv") - 1))
((done_epochs == 0)) || echo "resumed from '$run/checkpoint.pt': $done_epochs epochs done"
new=0
for ((e = done_epochs + 1; e <= epochs; ++e)); do
  if [[ -n ${FAKE_FAIL_AFTER:-} ]] && ((new == FAKE_FAIL_AFTER)); then echo "killed" >&2; exit 143; fi
  echo "$e,$alpha,$single,$seed,9,5,$((10 + e + seed)),$((single ? 50 : 100)),110,$e,0.001" >>"$csv"
  echo "epoch $e/$epochs: train_loss=9 valid_bleu=$((10 + e + seed))"
  new=$((new + 1))
done
sleep "${FAKE_SLEEP:-0}"
echo "test_bleu=$((20 + seed)).00"
EOF
chmod +x "$fake"
export FAKE_CALLS=$work/calls.txt
compare() { bash "$here/compare.sh" --trainer "$fake" --data "$work/data" --nice 0 --train-every 3 --valid-every 2 "$@"; }

# 1. Two seeds, alpha 0 and 5 for 2 epochs, the baseline for 4: seed 1 of
# every configuration first; every 3rd training pair (1, 4, 7, 10), every
# 2nd validation pair (1, 3, 5), all test pairs.
compare --out "$work/a" --seeds 1,2 --epochs 2 -- --extra-flag 7 >"$work/a.log" 2>&1 || { cat "$work/a.log"; fail "first sitting failed"; }
expected="alpha0-seed1 train=4 valid=3 test=4
alpha5-seed1 train=4 valid=3 test=4
single-pass-seed1 train=4 valid=3 test=4
alpha0-seed2 train=4 valid=3 test=4
alpha5-seed2 train=4 valid=3 test=4
single-pass-seed2 train=4 valid=3 test=4"
[[ $(cat "$FAKE_CALLS") == "$expected" ]] || { cat "$FAKE_CALLS"; fail "runs not in the interleaved order"; }
[[ $(sed -n 2p "$work/a/data/train.es.ids") == "train es.ids 4" ]] || fail "derived training data is not every 3rd pair"
[[ $(($(wc -l <"$work/a/runs/single-pass-seed2/epochs.csv") - 1)) == 4 ]] || fail "the baseline did not run 2 x --epochs"
grep -q -- '--d-model 128 .*--alpha 5 --seed 2 --extra-flag 7' "$work/a/runs/alpha5-seed2/command.txt" ||
  { cat "$work/a/runs/alpha5-seed2/command.txt"; fail "command.txt: not the model flags, the run's flags, then the extra ones"; }
[[ -s $work/a/summary.md && -s $work/a/valid_bleu.svg ]] || fail "no summary or plot"
grep -qxF "| alpha=5 - alpha=0 | +0.00 | [+0.00, +0.00] | 2 | +0.00 | [+0.00, +0.00] | 2 |" "$work/a/summary.md" ||
  { cat "$work/a/summary.md"; fail "summary.md"; }

# 2. Again: everything finished, the trainer is not called.
: >"$FAKE_CALLS"
compare --out "$work/a" --seeds 1,2 --epochs 2 -- --extra-flag 7 >"$work/a2.log" 2>&1 || { cat "$work/a2.log"; fail "second sitting failed"; }
[[ ! -s $FAKE_CALLS ]] || { cat "$FAKE_CALLS"; fail "finished runs were run again"; }
grep -q '0 of 6 runs not finished' "$work/a2.log" || fail "not reported finished"

# 3. A larger --epochs extends every run from where it stopped.
compare --out "$work/a" --seeds 1,2 --epochs 3 -- --extra-flag 7 >"$work/a3.log" 2>&1 || { cat "$work/a3.log"; fail "extension failed"; }
[[ $(wc -l <"$FAKE_CALLS") == 6 ]] || fail "not every run extended"
[[ $(cut -d, -f1 "$work/a/runs/alpha5-seed1/epochs.csv" | tr '\n' ' ') == "epoch 1 2 3 " ]] || fail "extension: epochs not 1 2 3"
[[ $(cut -d, -f1 "$work/a/runs/single-pass-seed1/epochs.csv" | tr '\n' ' ') == "epoch 1 2 3 4 5 6 " ]] || fail "extension of the baseline"

# 4. An interrupted run fails the sitting, is listed as partial, and the next
# sitting resumes it.
: >"$FAKE_CALLS"
if FAKE_FAIL_AFTER=1 compare --out "$work/b" --alphas 5 --no-single-pass --seeds 1 --epochs 3 >"$work/b.log" 2>&1; then
  fail "an interrupted run did not fail the sitting"
fi
grep -q 'alpha5-seed1: FAILED (exit 143)' "$work/b.log" || { cat "$work/b.log"; fail "failure not reported"; }
compare --out "$work/b" --alphas 5 --no-single-pass --seeds 1 --epochs 3 --list | grep -q 'alpha5-seed1 .*partial: 1/3 epochs' ||
  fail "--list does not show the partial run"
compare --out "$work/b" --alphas 5 --no-single-pass --seeds 1 --epochs 3 >"$work/b2.log" 2>&1 || { cat "$work/b2.log"; fail "resume failed"; }
grep -q "resumed from .*: 1 epochs done" "$work/b/runs/alpha5-seed1/train.log" || fail "not resumed"
[[ $(cut -d, -f1 "$work/b/runs/alpha5-seed1/epochs.csv" | tr '\n' ' ') == "epoch 1 2 3 " ]] || fail "resumed: epochs not 1 2 3"

# 5. A run locked by another driver is skipped; the others run.
: >"$FAKE_CALLS"
mkdir -p "$work/c/runs/alpha0-seed1"
flock "$work/c/runs/alpha0-seed1/lock" bash "$here/compare.sh" --trainer "$fake" --data "$work/data" --nice 0 \
  --out "$work/c" --seeds 1 --epochs 1 >"$work/c.log" 2>&1 || { cat "$work/c.log"; fail "locked sitting failed"; }
grep -q 'alpha0-seed1: trained by another worker or driver now, skipped' "$work/c.log" || { cat "$work/c.log"; fail "locked run not skipped"; }
grep -q '^alpha0-seed1' "$FAKE_CALLS" && fail "a locked run was run"
[[ $(wc -l <"$FAKE_CALLS") == 2 ]] || fail "the unlocked runs did not run"
grep -q '1 of 3 runs not finished' "$work/c.log" || fail "the locked run not counted as not finished"

# 6. Two jobs at a time run everything once.
: >"$FAKE_CALLS"
FAKE_SLEEP=1.5 compare --out "$work/d" --seeds 1,2,3 --epochs 1 --jobs 2 >"$work/d.log" 2>&1 || { cat "$work/d.log"; fail "--jobs 2 failed"; }
grep -q 'trained by another worker or driver now, skipped' "$work/d.log" || { cat "$work/d.log"; fail "--jobs 2: the two workers did not overlap"; }
[[ $(sort "$FAKE_CALLS" | cut -d' ' -f1 | uniq | wc -l) == 9 && $(wc -l <"$FAKE_CALLS") == 9 ]] ||
  { cat "$FAKE_CALLS"; fail "--jobs 2: not 9 runs, each once"; }

# 7. Other data under the same --out is refused; bad flags are refused.
if compare --out "$work/a" --seeds 1,2 --epochs 3 --train-every 2 >"$work/e.log" 2>&1; then fail "other data accepted"; fi
grep -q 'differs from the data' "$work/e.log" || fail "no clear message for other data"
if compare --epochs 0 >"$work/e.log" 2>&1; then fail "--epochs 0 accepted"; fi
grep -q -- '--epochs expects a positive integer' "$work/e.log" || fail "no clear message for --epochs 0"
# 8. Another sitting on another machine: the runs exported from a (3 epochs,
# the baseline 6) are imported, not trained again; only with the same data,
# flags and epochs.
compare --out "$work/a" --seeds 1,2 --epochs 3 --export "$work/export" >/dev/null
grep -q "derived by compare.sh: " "$work/export/stats.txt" && ! grep -q "$work" "$work/export/stats.txt" ||
  fail "stats.txt names a path (the same data by another path would differ)"
[[ -f $work/export/stats.txt && -f $work/export/alpha5-seed2/train.log ]] || fail "--export: no stats.txt or train.log"
grep -q '  train.es.ids$' "$work/export/stats.txt" || fail "stats.txt has no checksum of the derived data"
[[ -s $work/export/summary.md && -s $work/export/valid_bleu.svg ]] || fail "--export wrote no report"
# Only finished runs travel: an interrupted one (b's, resumed there) is not
# exported while unfinished.
if FAKE_FAIL_AFTER=1 compare --out "$work/p" --alphas 5 --no-single-pass --seeds 1 --epochs 3 >/dev/null 2>&1; then fail "p not interrupted"; fi
compare --out "$work/p" --alphas 5 --no-single-pass --seeds 1 --epochs 3 --export "$work/p-export" >/dev/null
[[ ! -e $work/p-export/alpha5-seed1 ]] || fail "an unfinished run was exported"
: >"$FAKE_CALLS"
compare --out "$work/g" --seeds 1,2 --epochs 3 --import "$work/export" -- --extra-flag 7 >"$work/g.log" 2>&1 || { cat "$work/g.log"; fail "import failed"; }
[[ ! -s $FAKE_CALLS ]] || { cat "$FAKE_CALLS"; fail "imported runs were trained again"; }
[[ $(grep -c ': imported from .*test_bleu=' "$work/g.log") == 6 ]] || { cat "$work/g.log"; fail "not 6 runs imported"; }
grep -q '0 of 6 runs not finished' "$work/g.log" || fail "imported runs not finished"
cmp -s "$work/a/runs/single-pass-seed2/epochs.csv" "$work/g/runs/single-pass-seed2/epochs.csv" || fail "epochs.csv not imported"
# Other epochs, other flags: nothing imported, everything trained.
compare --out "$work/h" --seeds 1 --epochs 4 --import "$work/export" -- --extra-flag 7 >"$work/h.log" 2>&1 || { cat "$work/h.log"; fail "h failed"; }
[[ $(grep -c 'not imported from .*: not finished with [48] epochs there' "$work/h.log") == 3 ]] || { cat "$work/h.log"; fail "other epochs imported"; }
: >"$FAKE_CALLS"
compare --out "$work/i" --seeds 1 --epochs 3 --import "$work/export" -- --lr 1 >"$work/i.log" 2>&1 || { cat "$work/i.log"; fail "i failed"; }
[[ $(grep -c 'not imported from .*: trained with other flags' "$work/i.log") == 3 && $(wc -l <"$FAKE_CALLS") == 3 ]] ||
  { cat "$work/i.log"; fail "runs of other flags imported"; }
# Other data: refused before anything runs.
if compare --out "$work/j" --seeds 1 --epochs 3 --train-every 2 --import "$work/export" >"$work/j.log" 2>&1; then
  fail "runs on other data imported"
fi
grep -q 'trained on other data' "$work/j.log" || { cat "$work/j.log"; fail "no clear message for other data"; }
# An --import directory without runs yet (the committed one before the first
# export) is nothing to import.
mkdir -p "$work/empty-export"
compare --out "$work/k" --seeds 1 --epochs 1 --train-every 2 --import "$work/empty-export" >"$work/k.log" 2>&1 || { cat "$work/k.log"; fail "empty import failed"; }
grep -q 'no run there yet, nothing to import' "$work/k.log" || { cat "$work/k.log"; fail "empty import not said"; }
# --export into a directory of other data is refused; exporting nothing too.
if compare --out "$work/k" --seeds 1 --epochs 1 --train-every 2 --export "$work/export" >"$work/x.log" 2>&1; then fail "export over other data"; fi
grep -q 'holds runs of other data' "$work/x.log" || { cat "$work/x.log"; fail "no clear message for export over other data"; }
if compare --out "$work/nowhere" --export "$work/x" >"$work/x.log" 2>&1; then fail "export of nothing"; fi
grep -q 'nothing to export' "$work/x.log" || { cat "$work/x.log"; fail "no clear message for export of nothing"; }

# 9. The runs under OUT must be this plan's: other flags or more epochs are
# refused before anything runs, naming the run.
: >"$FAKE_CALLS"
if compare --out "$work/a" --seeds 1,2 --epochs 3 -- --extra-flag 8 >"$work/m.log" 2>&1; then fail "other flags resumed"; fi
grep -q 'alpha0-seed1 was trained with other flags' "$work/m.log" || { cat "$work/m.log"; fail "no clear message for other flags"; }
if compare --out "$work/a" --seeds 1,2 --epochs 2 -- --extra-flag 7 >"$work/m.log" 2>&1; then fail "more epochs accepted"; fi
grep -q 'has 3 epochs, more than the 2' "$work/m.log" || { cat "$work/m.log"; fail "no clear message for more epochs"; }
[[ ! -s $FAKE_CALLS ]] || fail "a refused sitting ran the trainer"

# 10. Values spelled twice, and flags compare.sh sets, are refused.
for bad in "--seeds 1,01" "--alphas 5,5.0" "--alphas 05,5"; do
  # shellcheck disable=SC2086
  if compare --out "$work/n" $bad >"$work/n.log" 2>&1; then fail "$bad accepted"; fi
  grep -q 'twice' "$work/n.log" || { cat "$work/n.log"; fail "$bad: no clear message"; }
done
for bad in --seed=7 --alpha --run --threads; do
  if compare --out "$work/n" -- $bad 1 >"$work/n.log" 2>&1; then fail "$bad after -- accepted"; fi
  grep -q "compare.sh sets it for every run" "$work/n.log" || { cat "$work/n.log"; fail "$bad after --: no clear message"; }
done
compare --out "$work/o" --seeds 01 --alphas 5.0 --no-single-pass --epochs 1 >"$work/o.log" 2>&1 || { cat "$work/o.log"; fail "o failed"; }
[[ -f $work/o/runs/alpha5-seed1/epochs.csv ]] || { ls "$work/o/runs"; fail "alpha 5.0 / seed 01 not named alpha5-seed1"; }
echo "compare test passed"
