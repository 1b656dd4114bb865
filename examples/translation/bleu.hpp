// Corpus BLEU as sacreBLEU computes it by default (Post, 2018; sacreBLEU 2.x,
// BLEU(): tokenize "13a", 4-gram precisions clipped by the references,
// smoothing "exp", brevity penalty against the closest reference length,
// statistics summed over the corpus before the score is formed, mixed case).
// sacreBLEU is not packaged for Debian: this is our own implementation,
// checked against sacreBLEU's published values (examples/translation/
// bleu_test.cpp, fixtures in examples/translation/sacrebleu_fixtures.txt).
//
//   std::vector<std::string> hyps = ..., refs = ...;   // detokenized text
//   double score = bleu::corpus_bleu(hyps, refs).score;  // 0..100
//
// Text is UTF-8 and handled as bytes: the 13a rules only ever look at ASCII
// characters, and a multi-byte character has no ASCII byte in it. Text that
// is not valid UTF-8 is refused (std::invalid_argument): sacreBLEU takes
// only decoded text, and byte-wise rules could join the halves of a broken
// character around a removed "<skipped>" into a space that it never saw.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace bleu {

inline constexpr int kMaxOrder = 4;

enum class Tokenize { k13a, kNone };
enum class Smooth { kExp, kNone, kFloor };

struct Options {
  Tokenize tokenize = Tokenize::k13a;
  Smooth smooth = Smooth::kExp;
  double smooth_value = 0.1;     // for kFloor (sacreBLEU's default 0.1)
  bool effective_order = false;  // sacreBLEU's sentence-level setting; off for corpus BLEU
};

/// Sufficient statistics: summed over segments, then scored.
struct Stats {
  std::int64_t sys_len = 0;
  std::int64_t ref_len = 0;
  std::array<std::int64_t, kMaxOrder> correct{};  // clipped matches of each order
  std::array<std::int64_t, kMaxOrder> total{};    // hypothesis n-grams of each order

  Stats& operator+=(const Stats& o) {
    sys_len += o.sys_len;
    ref_len += o.ref_len;
    for (int n = 0; n < kMaxOrder; ++n) {
      correct[n] += o.correct[n];
      total[n] += o.total[n];
    }
    return *this;
  }
};

struct Score {
  double score = 0.0;  // 0..100
  double bp = 0.0;     // brevity penalty
  std::array<double, kMaxOrder> precisions{};  // percent
  Stats stats;
};

namespace detail {

/// The whitespace of Python's str.split(), in UTF-8: returns the length of
/// the whitespace character at s[i], 0 if none.
inline std::size_t space_at(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return k < s.size() ? static_cast<unsigned char>(s[k]) : 0u; };
  const unsigned c = b(i);
  if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
  if (c == 0xc2 && (b(i + 1) == 0x85 || b(i + 1) == 0xa0)) return 2;           // U+0085, U+00A0
  if (c == 0xe1 && b(i + 1) == 0x9a && b(i + 2) == 0x80) return 3;            // U+1680
  if (c == 0xe2 && b(i + 1) == 0x80) {
    const unsigned d = b(i + 2);
    if ((d >= 0x80 && d <= 0x8a) || d == 0xa8 || d == 0xa9 || d == 0xaf) return 3;  // U+2000-200A, 2028, 2029, 202F
  }
  if (c == 0xe2 && b(i + 1) == 0x81 && b(i + 2) == 0x9f) return 3;            // U+205F
  if (c == 0xe3 && b(i + 1) == 0x80 && b(i + 2) == 0x80) return 3;            // U+3000
  return 0;
}

/// Python's str.split() with no argument.
inline std::vector<std::string> split_words(std::string_view s) {
  std::vector<std::string> words;
  std::size_t i = 0;
  std::string word;
  while (i < s.size()) {
    if (const std::size_t w = space_at(s, i); w > 0) {
      if (!word.empty()) words.push_back(std::move(word));
      word.clear();
      i += w;
    } else {
      word += s[i++];
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  return words;
}

inline void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  std::size_t at = 0;
  for (std::size_t hit; (hit = s.find(from, at)) != std::string::npos; at = hit + from.size()) {
    out.append(s, at, hit - at);
    out.append(to);
  }
  out.append(s, at, std::string::npos);
  s = std::move(out);
}

inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

/// The ASCII punctuation that 13a always separates: { | } ~ [ \ ] ^ _ `
/// space ! " # $ % & ( ) * + : ; < = > ? @ / (not ' - . ,).
inline bool always_split(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (u >= '{' && u <= '~') || (u >= '[' && u <= '`') || (u >= ' ' && u <= '&') ||
         (u >= '(' && u <= '+') || (u >= ':' && u <= '@') || u == '/';
}

}  // namespace detail

/// mteval-v13a's tokenization as sacreBLEU writes it: a few entities
/// decoded, punctuation separated, a period or comma kept inside a number
/// ("3.5", "1,000") and a hyphen kept inside a word ("well-known") but split
/// after a digit ("1990 - 91"). Returns the tokens joined by single spaces.
inline std::string tokenize_13a(std::string line) {
  using detail::is_digit;
  // sacreBLEU strips trailing whitespace before it tokenizes.
  while (!line.empty()) {
    std::size_t last = line.size() - 1;
    while (last > 0 && (static_cast<unsigned char>(line[last]) & 0xc0) == 0x80) --last;  // start of the last character
    if (detail::space_at(line, last) != line.size() - last) break;
    line.resize(last);
  }
  // Language-independent part, in this order (so "&amp;lt;" becomes "<"
  // and "&amp;quot;" stays "&quot;").
  detail::replace_all(line, "<skipped>", "");
  detail::replace_all(line, "-\n", "");
  detail::replace_all(line, "\n", " ");
  detail::replace_all(line, "&quot;", "\"");
  detail::replace_all(line, "&amp;", "&");
  detail::replace_all(line, "&lt;", "<");
  detail::replace_all(line, "&gt;", ">");
  line = " " + line + " ";

  // Each rule is one left-to-right pass of non-overlapping matches.
  std::string s;
  for (char c : line) {
    if (detail::always_split(c)) {
      s += ' ';
      s += c;
      s += ' ';
    } else {
      s += c;
    }
  }
  const auto pass = [](const std::string& in, auto&& rule) {
    std::string out;
    for (std::size_t i = 0; i < in.size();) i += rule(in, i, out);
    return out;
  };
  // A period or comma after a non-digit: "x." -> "x . "
  s = pass(s, [](const std::string& in, std::size_t i, std::string& out) -> std::size_t {
    if (i + 1 < in.size() && !is_digit(in[i]) && (in[i + 1] == '.' || in[i + 1] == ',')) {
      out += in[i];
      out += ' ';
      out += in[i + 1];
      out += ' ';
      return 2;
    }
    out += in[i];
    return 1;
  });
  // A period or comma before a non-digit: ".x" -> " . x"
  s = pass(s, [](const std::string& in, std::size_t i, std::string& out) -> std::size_t {
    if (i + 1 < in.size() && (in[i] == '.' || in[i] == ',') && !is_digit(in[i + 1])) {
      out += ' ';
      out += in[i];
      out += ' ';
      out += in[i + 1];
      return 2;
    }
    out += in[i];
    return 1;
  });
  // A hyphen after a digit: "5-" -> "5 - "
  s = pass(s, [](const std::string& in, std::size_t i, std::string& out) -> std::size_t {
    if (i + 1 < in.size() && is_digit(in[i]) && in[i + 1] == '-') {
      out += in[i];
      out += " - ";
      return 2;
    }
    out += in[i];
    return 1;
  });

  std::string joined;
  for (const std::string& w : detail::split_words(s)) {
    if (!joined.empty()) joined += ' ';
    joined += w;
  }
  return joined;
}

inline std::vector<std::string> words(const std::string& segment, const Options& options) {
  return detail::split_words(options.tokenize == Tokenize::k13a ? tokenize_13a(segment) : segment);
}

namespace detail {

using NgramCounts = std::map<std::string, std::int64_t>;

inline NgramCounts ngrams(const std::vector<std::string>& w) {
  NgramCounts counts;
  for (int n = 1; n <= kMaxOrder; ++n) {
    for (std::size_t i = 0; i + static_cast<std::size_t>(n) <= w.size(); ++i) {
      std::string key = std::to_string(n);
      for (int k = 0; k < n; ++k) {
        key += '\x1f';
        key += w[i + static_cast<std::size_t>(k)];
      }
      ++counts[key];
    }
  }
  return counts;
}

}  // namespace detail

/// The offset of the first byte of s that is not part of valid UTF-8 (the
/// strict form Python decodes: no overlong form, no surrogate, nothing past
/// U+10FFFF), or std::string_view::npos when all of it is.
inline std::size_t invalid_utf8_at(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    unsigned lo = 0x80, hi = 0xbf;  // the allowed range of the second byte
    if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      if (c == 0xe0) lo = 0xa0;  // overlong
      if (c == 0xed) hi = 0x9f;  // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      if (c == 0xf0) lo = 0x90;  // overlong
      if (c == 0xf4) hi = 0x8f;  // past U+10FFFF
    } else if (c >= 0x80) {
      return i;
    }
    for (std::size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return i;
      const auto d = static_cast<unsigned char>(s[i + k]);
      if (d < (k == 1 ? lo : 0x80u) || d > (k == 1 ? hi : 0xbfu)) return i;
    }
    i += n + 1;
  }
  return std::string_view::npos;
}

namespace detail {
inline void require_utf8(const std::string& text, const char* what) {
  const std::size_t at = invalid_utf8_at(text);
  if (at != std::string_view::npos) {
    throw std::invalid_argument(std::string("bleu: ") + what + " is not valid UTF-8 (byte " + std::to_string(at) +
                                " of " + std::to_string(text.size()) + ")");
  }
}
}  // namespace detail

/// The statistics of one hypothesis against its references (one or more).
inline Stats segment_stats(const std::string& hypothesis, const std::vector<std::string>& references,
                           const Options& options = {}) {
  if (references.empty()) throw std::invalid_argument("bleu: a segment without a reference");
  detail::require_utf8(hypothesis, "a hypothesis");
  for (const std::string& r : references) detail::require_utf8(r, "a reference");
  const std::vector<std::string> hyp = words(hypothesis, options);
  detail::NgramCounts ref_max;
  std::int64_t closest = -1;
  std::int64_t closest_diff = -1;
  const auto hyp_len = static_cast<std::int64_t>(hyp.size());
  for (const std::string& r : references) {
    const std::vector<std::string> ref = words(r, options);
    const auto len = static_cast<std::int64_t>(ref.size());
    const std::int64_t diff = std::abs(hyp_len - len);
    if (closest_diff < 0 || diff < closest_diff || (diff == closest_diff && len < closest)) {
      closest_diff = diff;
      closest = len;
    }
    for (const auto& [gram, count] : detail::ngrams(ref)) {
      std::int64_t& m = ref_max[gram];
      m = std::max(m, count);
    }
  }
  Stats st;
  st.sys_len = hyp_len;
  st.ref_len = closest;
  for (const auto& [gram, count] : detail::ngrams(hyp)) {
    const int n = gram[0] - '0';
    const auto it = ref_max.find(gram);
    if (it != ref_max.end()) st.correct[static_cast<std::size_t>(n - 1)] += std::min(count, it->second);
  }
  for (int n = 1; n <= kMaxOrder; ++n) st.total[static_cast<std::size_t>(n - 1)] = std::max<std::int64_t>(0, hyp_len - n + 1);
  return st;
}

/// The score from summed statistics (sacreBLEU's BLEU.compute_bleu).
inline Score score_from_stats(const Stats& st, const Options& options = {}) {
  Score out;
  out.stats = st;
  if (st.sys_len < st.ref_len) {
    out.bp = st.sys_len > 0 ? std::exp(1.0 - static_cast<double>(st.ref_len) / static_cast<double>(st.sys_len)) : 0.0;
  } else {
    out.bp = 1.0;
  }
  if (std::all_of(st.correct.begin(), st.correct.end(), [](std::int64_t c) { return c == 0; })) return out;
  double smooth_mteval = 1.0;
  int order = kMaxOrder;
  for (int n = 1; n <= kMaxOrder; ++n) {
    const auto k = static_cast<std::size_t>(n - 1);
    if (st.total[k] == 0) break;
    if (options.effective_order) order = n;
    const auto total = static_cast<double>(st.total[k]);
    if (st.correct[k] == 0) {
      if (options.smooth == Smooth::kExp) {
        smooth_mteval *= 2.0;
        out.precisions[k] = 100.0 / (smooth_mteval * total);
      } else if (options.smooth == Smooth::kFloor) {
        out.precisions[k] = 100.0 * options.smooth_value / total;
      }
    } else {
      out.precisions[k] = 100.0 * static_cast<double>(st.correct[k]) / total;
    }
  }
  double log_sum = 0.0;
  for (int n = 0; n < order; ++n) {
    const double p = out.precisions[static_cast<std::size_t>(n)];
    log_sum += p != 0.0 ? std::log(p) : -9999999999.0;  // sacreBLEU's my_log
  }
  out.score = out.bp * std::exp(log_sum / order);
  return out;
}

/// Corpus BLEU against one or more reference streams: references[k][i] is
/// the k-th reference of hypothesis i (sacreBLEU's layout).
inline Score corpus_bleu(const std::vector<std::string>& hypotheses,
                         const std::vector<std::vector<std::string>>& references, const Options& options = {}) {
  if (references.empty()) throw std::invalid_argument("bleu: no reference stream");
  for (const auto& stream : references) {
    if (stream.size() != hypotheses.size()) {
      throw std::invalid_argument("bleu: " + std::to_string(hypotheses.size()) + " hypotheses but a stream of " +
                                  std::to_string(stream.size()) + " references");
    }
  }
  Stats sum;
  std::vector<std::string> refs(references.size());
  for (std::size_t i = 0; i < hypotheses.size(); ++i) {
    for (std::size_t k = 0; k < references.size(); ++k) refs[k] = references[k][i];
    sum += segment_stats(hypotheses[i], refs, options);
  }
  return score_from_stats(sum, options);
}

/// Corpus BLEU with one reference per hypothesis.
inline Score corpus_bleu(const std::vector<std::string>& hypotheses, const std::vector<std::string>& references,
                         const Options& options = {}) {
  return corpus_bleu(hypotheses, std::vector<std::vector<std::string>>{references}, options);
}

}  // namespace bleu
