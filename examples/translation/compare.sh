#!/usr/bin/env bash
# The translation comparison (issue 24, item 6): R-Drop (alpha 5) against the
# same two-copy path without the KL term (alpha 0) and the plain single-pass
# baseline, over several seeds, with rdrop_translation.
#
#   compare.sh [options] [-- more trainer flags]
#
#   --trainer PATH          default build/examples/translation/rdrop_translation
#   --data DIR              prepare-data.sh's output (default build/translation-data)
#   --out DIR               results root (default build/translation-compare)
#   --alphas LIST           two-copy runs, comma-separated (default 0,5)
#   --no-single-pass        leave the single-pass baseline out
#   --seeds LIST            comma-separated (default 1,2,3)
#   --epochs N              epochs of the two-copy runs (default 60)
#   --single-pass-epochs N  epochs of the baseline (default 2 x --epochs: a
#                           single-pass epoch costs half, so equal compute)
#   --train-every K         every K-th training pair (default 9: 3,106 pairs)
#   --valid-every M         every M-th validation pair (default 4: 286 pairs)
#   --jobs N                runs at a time (default 1)
#   --threads T             --threads of each run (default 1)
#   --nice N                niceness of the runs (default 19)
#   --import DIR            before running, take the finished runs of an
#                           earlier sitting from DIR (what --export wrote,
#                           e.g. the committed examples/translation/results):
#                           only with the same data (DIR/stats.txt, which
#                           holds the derived files' SHA-256, spm.model's
#                           excepted: it records temporary paths) and the same
#                           flags and epochs; never over a run under OUT
#   --list                  print the runs and their state, run nothing
#   --export DIR            copy the raw results of the finished runs
#                           (epochs.csv, train.log, command.txt, test.hyp)
#                           and data/stats.txt to DIR, and summarize.sh's
#                           report of DIR there (summary.md, valid_bleu.svg);
#                           runs nothing
#
# Model and schedule (defaults below, overridable after --: the trainer
# takes the last value of a flag): d = 128, ffn 512, 4 heads, 2 + 2 layers
# (1.95 M parameters with the 8,000-piece vocabulary), lr 1e-3, 400
# warm-up updates, dropout 0.3, label smoothing 0.1, 1024 tokens a batch
# (120 updates an epoch). Cost (measured 2026-12-07, two runs side by side,
# one core each): about 52 s a two-copy epoch with its validation, so about
# 52 min a 60-epoch run and about as long a 120-epoch single-pass one; about
# 8 h of one core for the 9 runs. See the README's "The comparison".
#
# The data: a derived copy under OUT/data (every K-th training pair, every
# M-th validation pair, the whole test set, the same tokenizer), so that the
# subset spans the whole Bible rather than its first books (--limit and
# --valid-limit take the first pairs).
#
# One directory per run, OUT/runs/NAME (alpha5-seed1, single-pass-seed1,
# ...): the trainer's checkpoint.pt, best.pt, epochs.csv, test.hyp, plus
# train.log (everything it printed, every sitting) and command.txt. The
# order interleaves the configurations (seed 1 of every configuration, then
# seed 2, ...), so that partial results are balanced. Resumable: a run whose
# epochs.csv has its epochs and whose train.log ends with its test_bleu=
# line is skipped; any other is started or resumed from its checkpoint by
# rdrop_translation itself (a larger --epochs extends finished runs). Each
# run holds OUT/runs/NAME/lock (flock) while it trains: another driver skips
# it. At the end: OUT/summary.md and OUT/valid_bleu.svg (summarize.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

trainer=build/examples/translation/rdrop_translation
data=build/translation-data
out=build/translation-compare
alphas=0,5
single=1
seeds=1,2,3
epochs=60
sp_epochs=""
train_every=9
valid_every=4
jobs=1
threads=1
niceness=19
list=0
export_dir=""
import_dir=""
model=(--d-model 128 --ffn 512 --heads 4 --encoder-layers 2 --decoder-layers 2 --lr 1e-3 --warmup 400 --max-tokens 1024)
extra=()

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "compare.sh: $*" >&2; exit 2; }
count() { [[ $2 =~ ^[0-9]+$ && $2 -ge 1 ]] || die "$1 expects a positive integer, got '$2'"; }
while (($#)); do
  case $1 in
    --trainer) trainer=${2:?}; shift 2 ;;
    --data) data=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --alphas) alphas=${2?}; shift 2 ;;
    --no-single-pass) single=0; shift ;;
    --seeds) [[ -n ${2:-} ]] || die "--seeds expects a comma-separated list"; seeds=$2; shift 2 ;;
    --epochs) count "$1" "${2:-}"; epochs=$2; shift 2 ;;
    --single-pass-epochs) count "$1" "${2:-}"; sp_epochs=$2; shift 2 ;;
    --train-every) count "$1" "${2:-}"; train_every=$2; shift 2 ;;
    --valid-every) count "$1" "${2:-}"; valid_every=$2; shift 2 ;;
    --jobs) count "$1" "${2:-}"; jobs=$2; shift 2 ;;
    --threads) count "$1" "${2:-}"; threads=$2; shift 2 ;;
    --nice) [[ ${2:-} =~ ^-?[0-9]+$ ]] || die "--nice expects an integer"; niceness=$2; shift 2 ;;
    --list) list=1; shift ;;
    --export) export_dir=${2:?}; shift 2 ;;
    --import) import_dir=${2:?}; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (trainer flags go after --)" ;;
  esac
done
sp_epochs=${sp_epochs:-$((2 * epochs))}
# Under the kernel's autogroup scheduling (Debian's default), a process
# started in a session of its own (setsid, nohup from another terminal)
# shares the CPU equally with every other session whatever its nice value:
# give the session's group the niceness too, where the kernel allows it,
# when this driver leads its own session (so never a terminal's).
if [[ -w /proc/self/autogroup && $(ps -o sid= -p $$ | tr -d ' ') == "$$" ]]; then
  echo "$niceness" >/proc/self/autogroup 2>/dev/null || true
fi
IFS=, read -r -a alpha_list <<<"$alphas"
IFS=, read -r -a seed_list <<<"$seeds"
# One spelling per value ("5.0" and "05" are 5, "01" is 1), each value once:
# the runs' names and the report's configurations and seeds come from them.
for i in "${!alpha_list[@]}"; do
  a=${alpha_list[i]}
  [[ $a =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--alphas: '$a' is not a number (decimal digits, e.g. 0.5)"
  alpha_list[i]=$(awk -v a="$a" 'BEGIN { printf "%.10g", a + 0 }')
done
for i in "${!seed_list[@]}"; do
  s=${seed_list[i]}
  [[ $s =~ ^[0-9]{1,9}$ ]] || die "--seeds: '$s' is not a seed (an integer below 10^9)"
  seed_list[i]=$((10#$s))
done
[[ -z $(printf '%s\n' "${alpha_list[@]}" | sort | uniq -d) ]] || die "--alphas '$alphas' names a value twice"
[[ -z $(printf '%s\n' "${seed_list[@]}" | sort | uniq -d) ]] || die "--seeds '$seeds' names a seed twice"
# The flags that name a run are compare.sh's to set.
for f in "${extra[@]}"; do
  case ${f%%=*} in
    --seed | --alpha | --single-pass | --run | --data | --epochs | --threads | --csv | --progress | --no-progress)
      die "'$f' after --: compare.sh sets it for every run (use its own options)" ;;
  esac
done
((${#alpha_list[@]} + single > 0)) || die "nothing to run"

# The runs, interleaved: NAME<TAB>EPOCHS<TAB>flags
plan=()
for s in "${seed_list[@]}"; do
  for a in "${alpha_list[@]}"; do plan+=("alpha${a//./p}-seed$s	$epochs	--alpha $a --seed $s"); done
  ((single)) && plan+=("single-pass-seed$s	$sp_epochs	--single-pass --seed $s")
done

rows() { [[ -f $1/epochs.csv ]] && awk 'NR > 1 && NF' "$1/epochs.csv" | wc -l || echo 0; }
finished() {  # finished DIR EPOCHS: its epochs done and test_bleu= printed after the last one
  [[ -f $1/train.log && $(rows "$1") -ge $2 ]] &&
    awk '/^epoch [0-9]+\/[0-9]+:/ { b = 0 } /^test_bleu=[0-9]/ { b = 1 } END { exit !b }' "$1/train.log"
}
state() {  # state DIR EPOCHS
  local dir=$1 n
  if finished "$dir" "$2"; then echo "finished: $(grep '^test_bleu=' "$dir/train.log" | tail -1)"; return; fi
  n=$(rows "$dir")
  if [[ -f $dir/lock ]] && ! flock -n "$dir/lock" true; then echo "running elsewhere ($n/$2 epochs)"
  elif ((n > 0)); then echo "partial: $n/$2 epochs"
  else echo "not started"; fi
}

if [[ -n $export_dir ]]; then
  [[ -f $out/data/stats.txt ]] || die "--export: nothing to export from '$out' (no $out/data/stats.txt)"
  # One sitting's data per directory: runs of other data would be imported
  # later as if they were on this one.
  if [[ -f $export_dir/stats.txt ]] && ! cmp -s "$export_dir/stats.txt" "$out/data/stats.txt"; then
    die "--export: '$export_dir' holds runs of other data (its stats.txt differs from $out/data/stats.txt): use an empty directory"
  fi
  mkdir -p "$export_dir"
  for p in "${plan[@]}"; do
    IFS=$'\t' read -r name e flags <<<"$p"
    dir=$out/runs/$name
    finished "$dir" "$e" || continue  # a run in progress travels with its checkpoint only
    mkdir -p "$export_dir/$name"
    for f in epochs.csv train.log command.txt test.hyp; do [[ -f $dir/$f ]] && cp "$dir/$f" "$export_dir/$name/"; done
  done
  cp "$out/data/stats.txt" "$export_dir/"
  # The report of what is there now (this sitting's runs and any earlier).
  if [[ -n $(find "$export_dir" -mindepth 2 -maxdepth 2 -name epochs.csv -print -quit) ]]; then
    bash "$here/summarize.sh" --svg "$export_dir/valid_bleu.svg" "$export_dir" >"$export_dir/summary.md"
  fi
  echo "compare.sh: raw results copied to $export_dir"
  exit 0
fi

if ((list)); then
  for p in "${plan[@]}"; do
    IFS=$'\t' read -r name e flags <<<"$p"
    printf '%-22s %s\n' "$name" "$(state "$out/runs/$name" "$e")"
  done
  exit 0
fi

[[ -x $trainer ]] || die "no trainer at '$trainer' (build it: cmake --build build --target rdrop_translation; or --trainer PATH)"
[[ -f $data/spm.model && -f $data/train.es.ids ]] || die "no data in '$data' (bash examples/translation/prepare-data.sh)"
mkdir -p "$out/runs"

# The derived data, made once (under a lock) and checked on every start:
# a different subset would make every checkpoint refuse to resume.
derive() {
  local tmp=$out/data.tmp split f every
  rm -rf "$tmp"
  mkdir -p "$tmp"
  for split in train valid test; do
    every=1
    [[ $split == train ]] && every=$train_every
    [[ $split == valid ]] && every=$valid_every
    for f in "$data/$split".*; do
      awk -v k="$every" '(NR - 1) % k == 0' "$f" >"$tmp/${f##*/}"
    done
  done
  cp "$data/spm.model" "$data/spm.vocab" "$tmp/"
  {
    # No path here: the same data reached by another path is the same data.
    echo "derived by compare.sh: 1 training pair in $train_every, 1 validation pair in $valid_every, all test pairs"
    for split in train valid test; do echo "${split}_pairs=$(wc -l <"$tmp/$split.es.ids")"; done
    # Not spm.model: it records the temporary paths it was trained from, so
    # it differs between any two preparations; spm.vocab and the .ids files
    # pin the tokenization.
    (cd "$tmp" && LC_ALL=C sha256sum -- train.* valid.* test.* spm.vocab)
  } >"$tmp/stats.txt"
  if [[ -d $out/data ]]; then
    diff -rq "$tmp" "$out/data" >/dev/null ||
      { rm -rf "$tmp"; die "$out/data differs from the data these flags derive from $data: another --train-every/--valid-every or other data; use another --out"; }
    rm -rf "$tmp"
  else
    mv "$tmp" "$out/data"
  fi
}
(
  flock 9
  derive
) 9>"$out/.data.lock"
echo "compare.sh: data $out/data: $(sed -n '2,4p' "$out/data/stats.txt" | tr '\n' ' ')"

log=$out/compare.log
say() { echo "$(date '+%F %T') $*" | tee -a "$log"; }

# The trainer flags of a run after those that only say where and how fast:
# flag_words FLAGS sets the array run_words, which run_one puts at the end of
# the command it runs; run_flags FLAGS prints them as command.txt records them.
flag_words() {  # flag_words FLAGS
  # shellcheck disable=SC2206
  run_words=("${model[@]}" $1 "${extra[@]}")
}
run_flags() {  # run_flags FLAGS
  flag_words "$1"
  printf '%q ' "${run_words[@]}"
}
recorded_flags() {  # recorded_flags DIR: the run_flags a run's command.txt records
  head -1 "$1/command.txt" 2>/dev/null | sed 's/.*--no-progress //'
}

import_runs() {  # import_runs DIR
  local from=$1 p name e flags src
  if [[ ! -f $from/stats.txt ]]; then
    [[ -d $from && -z $(find "$from" -mindepth 2 -maxdepth 2 -name epochs.csv -print -quit) ]] ||
      die "--import '$from': no stats.txt there (not a directory written by --export)"
    say "--import $from: no run there yet, nothing to import"
    return 0
  fi
  cmp -s "$from/stats.txt" "$out/data/stats.txt" ||
    die "--import '$from': its runs were trained on other data (its stats.txt differs from $out/data/stats.txt)"
  for p in "${plan[@]}"; do
    IFS=$'\t' read -r name e flags <<<"$p"
    src=$from/$name
    [[ -f $out/runs/$name/epochs.csv || ! -f $src/epochs.csv ]] && continue
    if ! finished "$src" "$e" || (($(rows "$src") != e)); then
      say "$name: not imported from $from: not finished with $e epochs there"; continue
    fi
    if [[ $(recorded_flags "$src") != "$(run_flags "$flags")" ]]; then
      say "$name: not imported from $from: trained with other flags ($src/command.txt)"; continue
    fi
    mkdir -p "$out/runs/$name"
    for f in epochs.csv train.log command.txt test.hyp; do [[ -f $src/$f ]] && cp "$src/$f" "$out/runs/$name/"; done
    say "$name: imported from $from, $(grep '^test_bleu=' "$src/train.log" | tail -1)"
  done
}

run_one() {  # run_one NAME EPOCHS FLAGS: 0 done or skipped, 1 failed
  local name=$1 e=$2 flags=$3 dir=$out/runs/$1 rc=0 n
  mkdir -p "$dir"
  (
    flock -n 9 || exit 75
    finished "$dir" "$e" && exit 76
    n=$(rows "$dir")
    if ((n > 0)); then say "$name: resuming after $n of $e epochs"; else say "$name: starting, $e epochs"; fi
    flag_words "$flags"
    local cmd=(nice -n "$niceness" "$trainer" --data "$out/data" --run "$dir" --epochs "$e" --threads "$threads"
      --no-progress "${run_words[@]}")
    printf '%q ' "${cmd[@]}" >"$dir/command.txt"
    echo >>"$dir/command.txt"
    echo "# compare.sh $(date '+%F %T'): $(cat "$dir/command.txt")" >>"$dir/train.log"
    "${cmd[@]}" >>"$dir/train.log" 2>&1
  ) 9>"$dir/lock" || rc=$?
  case $rc in
    0) say "$name: finished, $(grep '^test_bleu=' "$dir/train.log" | tail -1)" ;;
    75) say "$name: trained by another worker or driver now, skipped" ;;
    76) ;;
    *) say "$name: FAILED (exit $rc), see $dir/train.log:"; tail -5 "$dir/train.log" | sed 's/^/    /' | tee -a "$log"; return 1 ;;
  esac
}

worker() {
  local p name e flags failed=0
  for p in "${plan[@]}"; do
    IFS=$'\t' read -r name e flags <<<"$p"
    finished "$out/runs/$name" "$e" && continue
    run_one "$name" "$e" "$flags" || failed=1
  done
  return $failed
}

[[ -z $import_dir ]] || import_runs "$import_dir"

# A run under OUT is resumed, skipped or extended only if it is this plan's:
# the same trainer flags, no more epochs than asked for.
for p in "${plan[@]}"; do
  IFS=$'\t' read -r name e flags <<<"$p"
  dir=$out/runs/$name
  [[ -f $dir/epochs.csv ]] || continue
  n=$(rows "$dir")
  ((n <= e)) || die "$dir has $n epochs, more than the $e these flags ask for: use the --epochs it ran with, or another --out"
  if [[ -f $dir/command.txt ]]; then
    was=$(recorded_flags "$dir")
    [[ $was == "$(run_flags "$flags")" ]] ||
      die "$dir was trained with other flags ($was) than these ($(run_flags "$flags")): use the same ones, or another --out"
  fi
done

pgid=$(awk '{ print $5 }' "/proc/$$/stat" 2>/dev/null || echo "?")
say "compare.sh: ${#plan[@]} runs, $jobs at a time, under $out (pid $$, process group $pgid: stop it with kill -- -$pgid)"
status=0
if ((jobs == 1)); then
  worker || status=1
else
  pids=()
  for ((j = 0; j < jobs; ++j)); do
    worker &
    pids+=($!)
    sleep 1
  done
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
fi

left=0
for p in "${plan[@]}"; do
  IFS=$'\t' read -r name e flags <<<"$p"
  finished "$out/runs/$name" "$e" || left=$((left + 1))
done
if [[ -n $(find "$out/runs" -name epochs.csv) ]]; then
  bash "$here/summarize.sh" --svg "$out/valid_bleu.svg" "$out/runs" >"$out/summary.md" &&
    say "summary: $out/summary.md, plot: $out/valid_bleu.svg"
fi
say "compare.sh: $left of ${#plan[@]} runs not finished"
exit $status
