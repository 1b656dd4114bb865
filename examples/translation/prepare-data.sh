#!/usr/bin/env bash
# Builds the Spanish->English parallel corpus of the translation example from
# two SWORD Bible modules that Debian packages, read with diatheke:
#   spaRV1909eb  Reina-Valera 1909     (Debian: sword-text-sparv)
#   engWEB2015eb World English Bible   (Debian: sword-text-web)
# It cleans each verse (markup and verse numbers gone), aligns the two by
# verse key, drops and counts the pairs missing or empty on either side,
# splits them by whole chapters with a fixed rule (below), and trains a joint
# SentencePiece model on the training split only (spm_train, Debian:
# sentencepiece). See examples/translation/README.md.
#
# usage: prepare-data.sh [--out DIR] [--books "Ruth,Jonah"] [--vocab-size N]
#                        [--model-type unigram|bpe] [--no-spm]
#
# Output in DIR (default build/translation-data), all UTF-8, one verse a line,
# line i of every file of a split describing the same verse:
#   {train,valid,test}.{es,en}   clean text
#   {train,valid,test}.keys      the verse keys ("Genesis 1:1")
#   {train,valid,test}.{es,en}.ids  SentencePiece ids, space-separated (no BOS/EOS)
#   spm.model, spm.vocab         the joint SentencePiece model
#   dropped.tsv                  key <TAB> reason, for every pair dropped
#   stats.txt                    the counts, key=value
#
# The split (fixed; it does not depend on --books): the 1,189 chapters of
# the 66 books (KJV versification, the Spanish module's) are numbered 1..1189
# in canonical order (the table below). Chapter n is validation when
# n % 30 == 15, test when n % 30 == 0, training otherwise: whole chapters, so
# no verse of a validation or test chapter is in training.
#
# Running it again rewrites the same files; the SentencePiece model is
# retrained only when the training text or its options changed.
set -euo pipefail

out=build/translation-data
books=""
vocab_size=8000
model_type=unigram
spm=1
es_module=spaRV1909eb
en_module=engWEB2015eb

die() { echo "prepare-data: $*" >&2; exit 1; }
while (($# > 0)); do
  case "$1" in
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --books) books=${2:?--books needs a comma-separated list}; shift 2 ;;
    --vocab-size) vocab_size=${2:?}; shift 2 ;;
    --model-type) model_type=${2:?}; shift 2 ;;
    --no-spm) spm=0; shift ;;
    # For the tests: other module names (to check the missing-module message).
    --es-module) es_module=${2:?}; shift 2 ;;
    --en-module) en_module=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (--help for the usage)" ;;
  esac
done
[[ $vocab_size =~ ^[0-9]+$ ]] || die "--vocab-size must be a positive integer"
[[ $model_type == unigram || $model_type == bpe ]] || die "--model-type must be unigram or bpe"

# The books of the 66-book canon as diatheke names them, with their chapter
# counts (KJV versification): the chapter numbering of the split.
canon="Genesis|50 Exodus|40 Leviticus|27 Numbers|36 Deuteronomy|34 Joshua|24 Judges|21 Ruth|4
I Samuel|31 II Samuel|24 I Kings|22 II Kings|25 I Chronicles|29 II Chronicles|36 Ezra|10
Nehemiah|13 Esther|10 Job|42 Psalms|150 Proverbs|31 Ecclesiastes|12 Song of Solomon|8
Isaiah|66 Jeremiah|52 Lamentations|5 Ezekiel|48 Daniel|12 Hosea|14 Joel|3 Amos|9 Obadiah|1
Jonah|4 Micah|7 Nahum|3 Habakkuk|3 Zephaniah|3 Haggai|2 Zechariah|14 Malachi|4 Matthew|28
Mark|16 Luke|24 John|21 Acts|28 Romans|16 I Corinthians|16 II Corinthians|13 Galatians|6
Ephesians|6 Philippians|4 Colossians|4 I Thessalonians|5 II Thessalonians|3 I Timothy|6
II Timothy|4 Titus|3 Philemon|1 Hebrews|13 James|5 I Peter|5 II Peter|3 I John|5 II John|1
III John|1 Jude|1 Revelation of John|22"
canon_table=$(printf '%s\n' "$canon" | sed -E 's/\|([0-9]+)( |$)/|\1\n/g' | sed -E '/^$/d; s/^ +//')

command -v diatheke >/dev/null 2>&1 ||
  die "diatheke not found: install the Debian package diatheke (bash tools/install-deps.sh)"
modules=$(diatheke -b system -k modulelist 2>/dev/null || true)
for pair in "$es_module:sword-text-sparv" "$en_module:sword-text-web"; do
  m=${pair%%:*}
  grep -q "^$m : " <<<"$modules" ||
    die "the SWORD module $m is not installed: install the Debian package ${pair#*:} (bash tools/install-deps.sh)"
done
if ((spm)); then
  for tool in spm_train spm_encode; do
    command -v "$tool" >/dev/null 2>&1 ||
      die "$tool not found: install the Debian package sentencepiece (bash tools/install-deps.sh), or pass --no-spm"
  done
fi

here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
tmp=$(mktemp -d "$out/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# One diatheke call per module for the whole Bible (a few seconds), or one
# per requested book. The internal (OSIS) format keeps the markup that plain
# text loses: WEB writes some adjacent words as <w>God</w><w>created</w>.
extract() {  # module file
  if [[ -z $books ]]; then
    diatheke -b "$1" -f internal -k "Genesis 1:1-Revelation of John 22:21" >"$2"
  else
    : >"$2"
    local IFS=,
    for b in $books; do
      b=$(sed -E 's/^ +| +$//g' <<<"$b")
      grep -qxF "$b" <(cut -d'|' -f1 <<<"$canon_table") ||
        die "unknown book '$b' (names as diatheke writes them: Genesis, I Samuel, Revelation of John, ...)"
      diatheke -b "$1" -f internal -k "$b" >>"$2"
    done
  fi
}
start=$(date +%s.%N)
extract "$es_module" "$tmp/es.raw" &
es_pid=$!
extract "$en_module" "$tmp/en.raw"
wait "$es_pid"

# Cleaning, one verse a line: "KEY<TAB>text". awk in the C locale: bytes,
# as Debian's mawk always reads them (gawk would count characters otherwise).
clean() {  # module lang raw -> stdout
  LC_ALL=C awk -v module="$1" -v lang="$2" -v titles_file="$tmp/stats.txt" -f "$here/clean-verses.awk" "$3"
}
: >"$tmp/stats.txt"
clean "$es_module" es "$tmp/es.raw" >"$tmp/es.tsv"
clean "$en_module" en "$tmp/en.raw" >"$tmp/en.tsv"

# Alignment and split.
LC_ALL=C awk -F'\t' -v dir="$tmp" -v canon="$canon_table" -f "$here/align-split.awk" "$tmp/en.tsv" "$tmp/es.tsv"
end=$(date +%s.%N)
awk -v a="$start" -v b="$end" 'BEGIN { printf "seconds_extract_clean_align=%.1f\n", b - a }' >>"$tmp/stats.txt"

for f in {train,valid,test}.{es,en,keys} dropped.tsv; do mv "$tmp/$f" "$out/$f"; done

if ((spm)); then
  # The SentencePiece model: joint, trained on the training split only.
  # ids: 0 <pad>, 1 <unk>, 2 <s>, 3 </s>.
  spm_options=(--vocab_size="$vocab_size" --model_type="$model_type" --character_coverage=1.0
               --pad_id=0 --unk_id=1 --bos_id=2 --eos_id=3 --input_sentence_size=0
               --num_threads=1 --hard_vocab_limit=false)
  stamp=$(cat "$out/train.es" "$out/train.en" | sha256sum | cut -d' ' -f1)-$(printf '%s ' "${spm_options[@]}" | sha256sum | cut -c1-16)
  if [[ ! -f $out/spm.model || ! -f $out/spm.stamp || $(cat "$out/spm.stamp") != "$stamp" ]]; then
    spm_start=$(date +%s)
    cat "$out/train.es" "$out/train.en" >"$tmp/spm-input.txt"
    spm_train --input="$tmp/spm-input.txt" --model_prefix="$tmp/spm" "${spm_options[@]}" \
      >"$tmp/spm_train.log" 2>&1 || { cat "$tmp/spm_train.log" >&2; die "spm_train failed"; }
    mv "$tmp/spm.model" "$out/spm.model"
    mv "$tmp/spm.vocab" "$out/spm.vocab"
    echo "$stamp" >"$out/spm.stamp"
    echo "prepare-data: trained $out/spm.model in $(($(date +%s) - spm_start)) s"
  else
    echo "prepare-data: $out/spm.model is up to date"
  fi
  for s in train valid test; do
    for l in es en; do
      spm_encode --model="$out/spm.model" --output_format=id <"$out/$s.$l" >"$tmp/$s.$l.ids"
      mv "$tmp/$s.$l.ids" "$out/$s.$l.ids"
    done
  done
  echo "spm_pieces=$(wc -l <"$out/spm.vocab")" >>"$tmp/stats.txt"
fi
mv "$tmp/stats.txt" "$out/stats.txt"
sed 's/^/prepare-data: /' "$out/stats.txt"
echo "prepare-data: wrote $out"
