# Cleans diatheke's internal (OSIS) output, one verse a line, into
# "KEY<TAB>text" lines (used by prepare-data.sh; POSIX awk, mawk included).
#
# diatheke writes each verse as "Book C:V: text". Before the key it may write
# the verse's pre-verse content (a psalm's title) and, as diatheke 4.8 does,
# keeps writing that stale content before the following verses until another
# verse has its own. A psalm's canonical title is verse text in the KJV
# versification of the Spanish module (Psalm 3:1 begins "Salmo de David,
# cuando huía..."), a heading before verse 1 in the English one: it is put
# back at the head of the verse whose pre-verse content it is (the first
# whose prefix differs from the verse before).

function drop_elements(s, name,    i, rest, close_at, end_tag) {
  end_tag = "</" name ">"
  while ((i = index(s, "<" name)) > 0) {
    rest = substr(s, i)
    close_at = index(rest, ">")
    if (close_at == 0) return substr(s, 1, i - 1)
    if (substr(rest, close_at - 1, 1) == "/") {       # <name .../>: the tag alone
      s = substr(s, 1, i - 1) " " substr(rest, close_at + 1)
    } else if ((close_at = index(rest, end_tag)) > 0) { # the element and its content
      s = substr(s, 1, i - 1) " " substr(rest, close_at + length(end_tag))
    } else {
      return substr(s, 1, i - 1)
    }
  }
  return s
}

function element_text(s, name,    i, j, out, rest) {  # the text of every <name ...>...</name>
  out = ""
  while ((i = index(s, "<" name)) > 0) {
    rest = substr(s, i)
    j = index(rest, "</" name ">")
    if (j == 0) break
    out = out " " substr(rest, 1, j - 1)
    s = substr(rest, j + length(name) + 3)
  }
  return out
}

# Two words written as adjacent elements (<w>God</w><w>created</w>, and in
# the Spanish <w>siempre</w><w>es</w>) are two words, except a Spanish
# enclitic pronoun (<w>oyéndo</w><w>lo</w>: "oyéndolo").
function join_adjacent(s,    out, next_text, rest) {
  out = ""
  while (match(s, /<\/(w|transChange)><(w|transChange)[^>]*>/)) {
    rest = substr(s, RSTART + RLENGTH)
    next_text = rest
    sub(/<.*$/, "", next_text)
    out = out substr(s, 1, RSTART - 1) (next_text ~ /^(lo|la|le|les|los|las|nos|se|me|te|os)$/ ? "" : " ")
    s = rest
  }
  return out s
}

function clean(s) {
  # Content that is not the verse's text: what follows the end of a book
  # (the glossary after Revelation 22:21), headings, speaker labels, notes.
  if (match(s, /<div[^>]*type="(book|bookGroup|glossary|introduction)"/)) s = substr(s, 1, RSTART - 1)
  s = drop_elements(s, "title")
  s = drop_elements(s, "speaker")
  s = drop_elements(s, "note")
  s = join_adjacent(s)
  # Line, paragraph and division markers separate words; the other tags
  # (w, q, transChange, seg, name, ...) wrap words and punctuation.
  gsub(/<\/?(l|lb|lg|p|div|chapter|milestone|list|item|table|row|cell)( [^>]*)?\/?>/, " ", s)
  gsub(/<[^>]*>/, "", s)
  gsub(/&lt;/, "<", s); gsub(/&gt;/, ">", s); gsub(/&quot;/, "\"", s); gsub(/&apos;/, "'", s)
  gsub(/&amp;/, "\\&", s)
  gsub(/\302\240/, " ", s)  # no-break space
  gsub(/[ \t\r]+/, " ", s)
  sub(/^ /, "", s); sub(/ $/, "", s)
  return s
}

function flush() {
  if (key != "") print key "\t" clean(text)
  key = ""
}

BEGIN { key = ""; previous_prefix = "" }

{
  line = $0
  if (match(line, /(^|>) *[^<>:]+ [0-9]+:[0-9]+: /)) {
    at = RSTART; len = RLENGTH  # (clean() calls match() too)
    flush()
    k = substr(line, at, len)
    prefix = substr(line, 1, at - 1)
    text = substr(line, at + len)
    if (substr(k, 1, 1) == ">") { prefix = prefix ">"; k = substr(k, 2) }
    sub(/^ +/, "", k); sub(/: $/, "", k)
    key = k
    if (prefix != previous_prefix && index(prefix, "<title") > 0) {
      title = element_text(prefix, "title")
      sub(/^[^>]*>/, "", title)
      gsub(/ <title[^>]*>/, " ", title)
      text = title " " text
      titles++
    }
    previous_prefix = prefix
  } else if (line == "(" module ")" || line == "") {
    flush()
  } else if (key != "") {
    text = text " " line  # a verse written over more than one line
  }
}

END {
  flush()
  if (titles_file != "") print "titles_prepended_" lang "=" titles + 0 >>titles_file
}
