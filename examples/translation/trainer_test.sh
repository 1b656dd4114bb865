#!/usr/bin/env bash
# CTest check of the trainer's quick mode on two books (Galatians,
# Colossians: 188 training pairs, 31 validation, 25 test; a 400-piece
# tokenizer). Exits 77 (skipped) when diatheke, the two SWORD modules or
# spm_train are not installed.
#   trainer_test.sh TRAINER WORK_DIR
# Checks: the training loss falls from the first epoch to the last; BLEU is
# printed for validation and test; a run stopped after 2 epochs and resumed
# to 5 gives the numbers of the uninterrupted run; a checkpoint of another
# --alpha (and of other data) is refused with a message naming it; a CSV
# that lost rows the checkpoint holds is rewritten; incremental decoding
# gives the tokens of the full recompute; the detokenizer agrees with
# spm_decode; damaged checkpoints (model or optimizer), fewer --epochs than
# a checkpoint holds, malformed ids, empty splits and bad flags are refused
# with messages that name them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
trainer=${1:?usage: trainer_test.sh TRAINER WORK_DIR}
work=${2:?usage: trainer_test.sh TRAINER WORK_DIR}
fail() { echo "FAIL: $*" >&2; exit 1; }

missing=""
command -v diatheke >/dev/null 2>&1 || missing+=" diatheke"
command -v spm_train >/dev/null 2>&1 || missing+=" sentencepiece"
if [[ -z $missing ]]; then
  modules=$(diatheke -b system -k modulelist 2>/dev/null || true)
  grep -q '^spaRV1909eb : ' <<<"$modules" || missing+=" sword-text-sparv"
  grep -q '^engWEB2015eb : ' <<<"$modules" || missing+=" sword-text-web"
fi
if [[ -n $missing ]]; then
  echo "skipped: the Debian packages$missing are not installed (bash tools/install-deps.sh)"
  exit 77
fi

rm -rf "$work"
mkdir -p "$work"
data=$work/data
bash "$here/prepare-data.sh" --out "$data" --books "Galatians, Colossians" --vocab-size 400 >"$work/data.log" 2>&1 ||
  { cat "$work/data.log"; fail "prepare-data.sh failed"; }

train() {  # train RUN_NAME [flags...]
  local name=$1
  shift
  "$trainer" --quick --threads 1 --no-progress --data "$data" --run "$work/$name" "$@"
}
column() {  # column CSV NAME: the values of one column
  awk -F, -v name="$2" 'NR == 1 { for (i = 1; i <= NF; ++i) if ($i == name) c = i; next } { print $c }' "$1"
}

start=$(date +%s.%N)
train full >"$work/full.log" 2>&1 || { cat "$work/full.log"; fail "the quick run failed"; }
seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
cat "$work/full.log"
echo "quick run: $seconds s"

csv=$work/full/epochs.csv
[[ $(wc -l <"$csv") == 6 ]] || fail "$csv has not a header and 5 epochs"
first=$(column "$csv" train_loss | head -1)
last=$(column "$csv" train_loss | tail -1)
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' || fail "the training loss did not fall ($first -> $last)"
grep -qE '^epoch 5/5: .* valid_bleu=[0-9]+\.[0-9]+ ' "$work/full.log" || fail "no validation BLEU printed"
[[ $(tail -1 "$work/full.log") =~ ^test_bleu=[0-9]+\.[0-9]+$ ]] || fail "the last line is not test_bleu=<number>"
[[ -s $work/full/checkpoint.pt && -s $work/full/best.pt && -f $work/full/test.hyp ]] ||
  fail "checkpoint.pt, best.pt or test.hyp missing"
[[ $(wc -l <"$work/full/test.hyp") == 25 ]] || fail "test.hyp has not 25 lines"
# CPU seconds of every epoch's training, for the comparison's equal compute.
column "$csv" train_cpu_seconds | awk '!($1 > 0) { bad = 1 } END { exit bad || NR != 5 }' ||
  fail "epochs.csv: no positive train_cpu_seconds for each of the 5 epochs"

# Stopped after 2 epochs, resumed to 5: the same losses and BLEU.
train resumed --epochs 2 >"$work/resumed.log" 2>&1 || { cat "$work/resumed.log"; fail "the 2-epoch run failed"; }
train resumed >>"$work/resumed.log" 2>&1 || { cat "$work/resumed.log"; fail "the resumed run failed"; }
grep -q "resumed from '.*checkpoint.pt': 2 epochs done" "$work/resumed.log" || { cat "$work/resumed.log"; fail "did not resume"; }
for c in epoch train_loss valid_loss valid_bleu updates; do
  [[ $(column "$csv" $c) == $(column "$work/resumed/epochs.csv" $c) ]] ||
    { paste -d' ' <(column "$csv" $c) <(column "$work/resumed/epochs.csv" $c); fail "resumed run: $c differs from the uninterrupted run"; }
done
[[ $(tail -1 "$work/full.log") == $(tail -1 "$work/resumed.log") ]] || fail "resumed run: another test BLEU"

# A checkpoint of other flags or other data is refused, naming the difference.
if train full --alpha 1 >"$work/refused.log" 2>&1; then fail "a checkpoint of --alpha 5 was resumed with --alpha 1"; fi
grep -q 'alpha: checkpoint 5, this run 1' "$work/refused.log" || { cat "$work/refused.log"; fail "no clear refusal message"; }
if train full --limit 100 >"$work/refused.log" 2>&1; then fail "a checkpoint of other data was resumed"; fi
grep -q 'data: training pairs: checkpoint 188, this run 100' "$work/refused.log" ||
  { cat "$work/refused.log"; fail "no clear refusal message for other data"; }

# Stopped after the checkpoint, before the CSV (its last row lost): the
# next start, with nothing left to train, writes the CSV again.
cp "$csv" "$work/full-epochs.csv"
sed -i '$d' "$csv"
train full >"$work/again.log" 2>&1 || { cat "$work/again.log"; fail "the finished run did not start again"; }
cmp -s "$csv" "$work/full-epochs.csv" || { diff "$csv" "$work/full-epochs.csv"; fail "epochs.csv not rewritten from the checkpoint"; }

# Incremental greedy decoding gives the full recompute's tokens, with the
# trained model and with an untrained one (which decodes to the length limit).
train full --check-decoding >"$work/check.log" 2>&1 || { cat "$work/check.log"; fail "decoding check (trained)"; }
grep -q 'decoding check: 31 sentences, .* the same from both decoders' "$work/check.log" || { cat "$work/check.log"; fail "decoding check output"; }
train fresh --check-decoding >"$work/check0.log" 2>&1 || { cat "$work/check0.log"; fail "decoding check (untrained)"; }
[[ ! -e $work/fresh ]] || fail "--check-decoding created the run directory"

# A damaged checkpoint: refused, naming the file, without a C++ stack.
mkdir -p "$work/damaged"
head -c 3000 "$work/full/checkpoint.pt" >"$work/damaged/checkpoint.pt"
if train damaged >"$work/damaged.log" 2>&1; then fail "a truncated checkpoint was loaded"; fi
grep -q "cannot read '.*damaged/checkpoint.pt'" "$work/damaged.log" || { cat "$work/damaged.log"; fail "no clear message for a damaged checkpoint"; }
grep -q 'frame #' "$work/damaged.log" && fail "a C++ stack trace in the message"

# --run naming a file: refused before any training.
: >"$work/a-file"
if "$trainer" --quick --threads 1 --no-progress --data "$data" --run "$work/a-file" >"$work/file.log" 2>&1; then fail "--run a file accepted"; fi
grep -q "cannot create the run directory .*a file of that name is there" "$work/file.log" || { cat "$work/file.log"; fail "no clear message for --run a file"; }
grep -q '^epoch' "$work/file.log" && fail "--run a file: trained before refusing"

# A checkpoint whose tensor bytes changed (libtorch reads its archives
# without checking their CRCs): refused by its hashes. flip_records MIN CKPT
# [KEEP] flips one byte in the middle of every tensor record of at least MIN
# bytes of the zip archive CKPT in place, except the records whose bytes are
# also a record of KEEP.
flip_records() {
  python3 - "$@" <<'PY' || fail "could not flip the bytes of $2"
import struct, sys, zipfile
least, path = int(sys.argv[1]), sys.argv[2]
keep = set()
if len(sys.argv) > 3:
    with zipfile.ZipFile(sys.argv[3]) as z:
        keep = {z.read(i) for i in z.infolist() if "/data/" in i.filename}
with zipfile.ZipFile(path) as z:
    records = [i for i in z.infolist() if "/data/" in i.filename and i.file_size >= least and z.read(i) not in keep]
with open(path, "r+b") as f:
    for i in records:
        f.seek(i.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
        at = i.header_offset + 30 + name_len + extra_len + i.file_size // 2
        f.seek(at)
        b = f.read(1)[0]
        f.seek(at)
        f.write(bytes([b ^ 0x40]))
if not records:
    sys.exit(1)
PY
}
mkdir -p "$work/flipped"
cp "$work/full/checkpoint.pt" "$work/flipped/checkpoint.pt"
flip_records 4 "$work/flipped/checkpoint.pt"
if train flipped >"$work/flipped.log" 2>&1; then fail "a checkpoint with changed tensor bytes was loaded"; fi
grep -q "the model in '.*flipped/checkpoint.pt' is damaged" "$work/flipped.log" || { cat "$work/flipped.log"; fail "no clear message for changed tensor bytes"; }
# The model intact, the optimizer's moments and the generator's state
# changed: after one epoch best.pt holds the checkpoint's model, so the
# records of checkpoint.pt that best.pt lacks are the rest. Its 8-byte
# records are the optimizer's counts of groups and parameters, which torch
# checks as it reads them: changed, they are refused as an unreadable state.
train one --epochs 1 >"$work/one.log" 2>&1 || { cat "$work/one.log"; fail "the 1-epoch run failed"; }
cp -r "$work/one" "$work/one-counts"
flip_records 16 "$work/one/checkpoint.pt" "$work/one/best.pt"
if train one --epochs 2 >"$work/one-flipped.log" 2>&1; then fail "a checkpoint with changed optimizer bytes was resumed"; fi
grep -q "the optimizer or random-generator state in '.*one/checkpoint.pt' is damaged" "$work/one-flipped.log" ||
  { cat "$work/one-flipped.log"; fail "no clear message for changed optimizer bytes"; }
flip_records 4 "$work/one-counts/checkpoint.pt" "$work/one-counts/best.pt"
if train one-counts --epochs 2 >"$work/one-counts.log" 2>&1; then fail "a checkpoint with changed optimizer counts was resumed"; fi
grep -q "cannot read the optimizer state in '.*one-counts/checkpoint.pt'" "$work/one-counts.log" ||
  { cat "$work/one-counts.log"; fail "no clear message for changed optimizer counts"; }

# Fewer --epochs than the checkpoint holds: refused (its best.pt may come
# from a later epoch), the run's files untouched.
cp "$csv" "$work/full-epochs.csv"
cp "$work/full/test.hyp" "$work/full-test.hyp"
if train full --epochs 3 >"$work/fewer.log" 2>&1; then fail "--epochs 3 accepted on a 5-epoch checkpoint"; fi
grep -q "checkpoint.pt' has 5 epochs done, more than --epochs 3" "$work/fewer.log" || { cat "$work/fewer.log"; fail "no clear message for fewer --epochs"; }
grep -q '^test_bleu' "$work/fewer.log" && fail "fewer --epochs: tested anyway"
if ! cmp -s "$csv" "$work/full-epochs.csv" || ! cmp -s "$work/full/test.hyp" "$work/full-test.hyp"; then
  fail "fewer --epochs: epochs.csv or test.hyp changed"
fi

# --csv that cannot be written (a directory): refused before any training,
# nothing left behind.
mkdir -p "$work/csv-dir"
if train csvdir --csv "$work/csv-dir" >"$work/csvdir.log" 2>&1; then fail "--csv a directory accepted"; fi
grep -q "cannot rename '.*csv-dir.tmp'" "$work/csvdir.log" || { cat "$work/csvdir.log"; fail "no clear message for --csv a directory"; }
grep -q '^epoch' "$work/csvdir.log" && fail "--csv a directory: trained before refusing"
[[ ! -e $work/csv-dir.tmp ]] || fail "--csv a directory: its .tmp file left behind"

# Malformed ids and empty splits: refused, naming the file.
bad=$work/bad-data
cp -r "$data" "$bad"
sed -i '3s/ / 1.5 /' "$bad/train.es.ids"
if train bad1 --data "$bad" >"$work/bad-ids.log" 2>&1; then fail "a malformed ids line was accepted"; fi
grep -q "train.es.ids' line 3 is not a line of piece ids" "$work/bad-ids.log" || { cat "$work/bad-ids.log"; fail "no clear message for malformed ids"; }
cp "$data/train.es.ids" "$bad/train.es.ids"
for f in es en es.ids en.ids keys; do : >"$bad/valid.$f"; done
if train bad2 --data "$bad" >"$work/bad-valid.log" 2>&1; then fail "an empty validation split was accepted"; fi
grep -q "the validation split .* is empty" "$work/bad-valid.log" || { cat "$work/bad-valid.log"; fail "no clear message for an empty validation split"; }

# The detokenizer (pieces.hpp) gives spm_decode's text, line for line.
for f in train.en valid.en test.en train.es; do
  "$trainer" --data "$data" --detokenize "$data/$f.ids" >"$work/ours.txt" || fail "--detokenize failed"
  spm_decode --model "$data/spm.model" --input_format id <"$data/$f.ids" >"$work/spm.txt"
  cmp -s "$work/ours.txt" "$work/spm.txt" || { diff "$work/ours.txt" "$work/spm.txt" | head; fail "$f.ids: not decoded as spm_decode does"; }
done

# Bad flags: a clear message, exit 2.
set +e
"$trainer" --alpha -1 >"$work/bad.log" 2>&1
rc=$?
set -e
[[ $rc == 2 ]] && grep -q -- '--alpha expects a number' "$work/bad.log" || fail "--alpha -1 not refused clearly"
for flags in "--lr 0" "--decoder-layers 0"; do
  set +e
  # shellcheck disable=SC2086
  "$trainer" $flags >"$work/bad.log" 2>&1
  rc=$?
  set -e
  [[ $rc == 2 ]] && grep -q -- "${flags% *}" "$work/bad.log" || { cat "$work/bad.log"; fail "$flags not refused clearly"; }
done
echo "trainer test passed"
