# Aligns the cleaned verses of both languages by key and splits the pairs by
# chapter (used by prepare-data.sh; POSIX awk, mawk included).
#   awk -F'\t' -v dir=DIR -v canon="Book|chapters..." -f align-split.awk en.tsv es.tsv
# Writes DIR/{train,valid,test}.{es,en,keys}, DIR/dropped.tsv and appends
# the counts to DIR/stats.txt.

function book_of(key,    b) { b = key; sub(/ [0-9]+:[0-9]+$/, "", b); return b }
function chapter_of(key,    c) { c = key; sub(/^.* /, "", c); sub(/:.*$/, "", c); return c + 0 }
function chapter_id(key) { return book_of(key) "|" chapter_of(key) }
function next_chapter_id(key) { return book_of(key) "|" (chapter_of(key) + 1) }

# The chapter's number n in 1..1189 over the 66 books, and its split.
function split_of(key,    book, n) {
  book = book_of(key)
  if (!(book in first_chapter)) return ""
  n = first_chapter[book] + chapter_of(key) - 1
  chapter_ordinal = n
  if (n % 30 == 15) return "valid"
  if (n % 30 == 0) return "test"
  return "train"
}

# A verse missing or empty on one side (Numbers 12:16 in the Spanish module,
# whose Numbers 13 then begins with the English 12:16) means that the two
# modules number this passage differently: that chapter and the next are
# dropped whole.
function uneven(key) {
  if (!(book_of(key) in first_chapter)) return
  bad_chapter[chapter_id(key)] = "versification differs (a verse missing or empty nearby)"
  if (!(next_chapter_id(key) in bad_chapter))
    bad_chapter[next_chapter_id(key)] = "versification differs (a verse missing or empty nearby)"
}

function drop(key, reason) {
  print key "\t" reason >dropped_file
  dropped[reason]++
  dropped_total++
}

BEGIN {
  nbooks = split(canon, rows, "\n")
  total = 0
  for (i = 1; i <= nbooks; i++) {
    split(rows[i], f, "|")
    first_chapter[f[1]] = total + 1
    total += f[2]
  }
  if (total != 1189) { print "align-split: the chapter table has " total " chapters, not 1189" >"/dev/stderr"; exit 1 }
  dropped_file = dir "/dropped.tsv"
  printf "" >dropped_file
  split("train valid test", splits, " ")
  for (i = 1; i <= 3; i++) {
    s = splits[i]
    printf "" >(dir "/" s ".es"); printf "" >(dir "/" s ".en"); printf "" >(dir "/" s ".keys")
    pairs[s] = 0
  }
}

FNR == NR {  # English
  if ($1 in en) { en_duplicates++; next }
  en[$1] = $2
  en_order[++en_count] = $1
  if ($2 == "") en_empty++
  next
}

{  # Spanish, in canonical order
  if ($1 in es) { es_duplicates++; next }
  es[$1] = $2
  es_order[++es_count] = $1
  if ($2 == "") es_empty++
}

END {
  # Verses each side lacks.
  for (i = 1; i <= en_count; i++) {
    k = en_order[i]
    if (!(k in es)) { drop(k, "missing in Spanish"); uneven(k) }
  }
  for (i = 1; i <= es_count; i++) {
    k = es_order[i]
    if (!(k in en)) { drop(k, "missing in English"); uneven(k); status[k] = "x"; continue }
    if (es[k] == "" && en[k] == "") { drop(k, "empty in both"); status[k] = "x"; continue }
    if (es[k] == "") { drop(k, "empty in Spanish"); uneven(k); status[k] = "x"; continue }
    if (en[k] == "") { drop(k, "empty in English"); uneven(k); status[k] = "x"; continue }
    if (split_of(k) == "") { drop(k, "book outside the 66-book canon"); status[k] = "x"; continue }
    c = chapter_id(k)
    r = log((length(es[k]) + 1) / (length(en[k]) + 1))
    chapter_deviation[c] += r < 0 ? -r : r
    chapter_verses[c]++
  }
  # A chapter whose verses differ in length far more than translations do
  # (mean |log(length ratio)| over 0.3, about twice that of the most uneven
  # well-aligned chapters) is misnumbered as well (I Chronicles 21 is).
  for (c in chapter_verses)
    if (!(c in bad_chapter) && chapter_deviation[c] / chapter_verses[c] > 0.3)
      bad_chapter[c] = "chapter lengths do not match (mean |log length ratio| > 0.3)"
  for (i = 1; i <= es_count; i++) {
    k = es_order[i]
    if (k in status) continue
    c = chapter_id(k)
    if (c in bad_chapter) { drop(k, bad_chapter[c]); if (!(c in counted_bad)) { counted_bad[c] = 1; bad_chapters[bad_chapter[c]]++ }; continue }
    s = split_of(k)
    print es[k] >(dir "/" s ".es")
    print en[k] >(dir "/" s ".en")
    print k >(dir "/" s ".keys")
    pairs[s]++
    if (!((s, chapter_ordinal) in seen_chapter)) { seen_chapter[s, chapter_ordinal] = 1; chapters[s]++ }
    if (s == "train") train_source[es[k]] = 1; else held_out[s, pairs[s]] = es[k]
  }

  stats = dir "/stats.txt"
  print "verses_es=" es_count + 0 >>stats
  print "verses_en=" en_count + 0 >>stats
  print "empty_es=" es_empty + 0 >>stats
  print "empty_en=" en_empty + 0 >>stats
  print "duplicate_keys_es=" es_duplicates + 0 >>stats
  print "duplicate_keys_en=" en_duplicates + 0 >>stats
  print "aligned_pairs=" pairs["train"] + pairs["valid"] + pairs["test"] >>stats
  print "dropped_pairs=" dropped_total + 0 >>stats
  n = split("missing in English;missing in Spanish;empty in Spanish;empty in English;empty in both;book outside the 66-book canon;versification differs (a verse missing or empty nearby);chapter lengths do not match (mean |log length ratio| > 0.3)", reasons, ";")
  for (i = 1; i <= n; i++) {
    r = reasons[i]; sub(/ \(.*$/, "", r); gsub(/[ -]/, "_", r)
    print "dropped_" r "=" dropped[reasons[i]] + 0 >>stats
    if (reasons[i] in bad_chapters) print "dropped_chapters_" r "=" bad_chapters[reasons[i]] >>stats
  }
  for (i = 1; i <= 3; i++) {
    s = splits[i]
    print s "_pairs=" pairs[s] >>stats
    print s "_chapters=" chapters[s] + 0 >>stats
  }
  # Held-out pairs whose Spanish verse appears word for word in training
  # (the Bible repeats itself: Kings and Chronicles, the synoptic gospels).
  for (i = 2; i <= 3; i++) {
    s = splits[i]; c = 0
    for (j = 1; j <= pairs[s]; j++) if (held_out[s, j] in train_source) c++
    print s "_source_also_in_train=" c >>stats
  }
}
