#!/usr/bin/env bash
# CTest check of prepare-data.sh on two books (Galatians, Colossians: 10
# chapters, of which Galatians 4 is validation and Colossians 3 test by the
# split's rule). Exits 77 (skipped) when diatheke, the two SWORD modules or
# spm_train are not installed.
#   data_test.sh WORK_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:?usage: data_test.sh WORK_DIR}
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
out=$work/data
bash "$here/prepare-data.sh" --out "$out" --books "Galatians, Colossians" --vocab-size 400 >"$work.log" 2>&1 ||
  { cat "$work.log"; fail "prepare-data.sh failed"; }
cat "$work.log"
stat() { sed -n "s/^$1=//p" "$out/stats.txt"; }

# Galatians has 149 verses and Colossians 95, none missing or empty.
[[ $(stat verses_es) == 244 && $(stat verses_en) == 244 ]] || fail "verse counts $(stat verses_es) / $(stat verses_en), expected 244"
[[ $(stat aligned_pairs) == 244 && $(stat dropped_pairs) == 0 ]] || fail "expected 244 pairs, none dropped"
# Galatians 4 (31 verses) is validation, Colossians 3 (25 verses) test.
[[ $(sort -u <(sed 's/:.*//' "$out/valid.keys")) == "Galatians 4" ]] || fail "validation is not Galatians 4"
[[ $(sort -u <(sed 's/:.*//' "$out/test.keys")) == "Colossians 3" ]] || fail "test is not Colossians 3"
[[ $(stat valid_pairs) == 31 && $(stat test_pairs) == 25 && $(stat train_pairs) == 188 ]] ||
  fail "split sizes $(stat train_pairs)/$(stat valid_pairs)/$(stat test_pairs), expected 188/31/25"
for s in train valid test; do
  n=$(wc -l <"$out/$s.keys")
  for f in "$s.es" "$s.en" "$s.es.ids" "$s.en.ids"; do
    [[ $(wc -l <"$out/$f") == "$n" ]] || fail "$f has not $n lines"
  done
  # No chapter of a held-out split in training.
  if [[ $s != train ]]; then
    ! grep -qxFf <(sed 's/:.*//' "$out/$s.keys" | sort -u) <(sed 's/:.*//' "$out/train.keys") || fail "a $s chapter is in training"
  fi
done
# Clean text: no markup, no verse numbers, no empty line.
! grep -q '[<>]' "$out"/*.es "$out"/*.en || fail "markup left in the text"
! grep -qE '^[0-9]+:[0-9]+|^(Galatians|Colossians) [0-9]' "$out"/*.es "$out"/*.en || fail "a verse number left"
! grep -qx '' "$out"/*.es "$out"/*.en || fail "an empty line"
grep -qx 'PABLO, apóstol, (no de los hombres, ni por hombre, mas por Jesucristo y por Dios el Padre, que lo resucitó de los muertos),' "$out/train.es" ||
  fail "Galatians 1:1 (Spanish) is not as expected"
grep -qx 'Paul, an apostle—not from men, nor through man, but through Jesus Christ, and God the Father, who raised him from the dead—' "$out/train.en" ||
  fail "Galatians 1:1 (English) is not as expected"
[[ -s $out/spm.model ]] || fail "no spm.model"

# Idempotent: a second run gives the same files and keeps the tokenizer.
sums() { (cd "$out" && sha256sum -- *.es *.en *.keys *.ids spm.model dropped.tsv); }
before=$(sums)
bash "$here/prepare-data.sh" --out "$out" --books "Galatians, Colossians" --vocab-size 400 >"$work.log" 2>&1 || fail "second run failed"
grep -q 'spm.model is up to date' "$work.log" || fail "the second run retrained the tokenizer"
[[ $(sums) == "$before" ]] || fail "the second run wrote different files"

# A missing module is named with its Debian package.
if bash "$here/prepare-data.sh" --out "$work/none" --books Jude --es-module noSuchModule >"$work.log" 2>&1; then
  fail "a missing module was accepted"
fi
grep -q 'noSuchModule is not installed: install the Debian package sword-text-sparv' "$work.log" ||
  { cat "$work.log"; fail "no clear message for a missing module"; }
echo "data test passed"
