// examples/translation/bleu.hpp against the values sacreBLEU publishes in its
// own tests (sacrebleu_fixtures.txt, each case with its repository, file and
// commit), and 13a tokenizations derived by hand from sacreBLEU's rules. A
// missing or malformed fixture file fails.
#define CATCH_CONFIG_MAIN
#include "bleu.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

std::vector<std::string> fields(const std::string& line) {
  std::vector<std::string> out;
  std::size_t at = 0;
  for (std::size_t tab; (tab = line.find('\t', at)) != std::string::npos; at = tab + 1) out.push_back(line.substr(at, tab - at));
  out.push_back(line.substr(at));
  return out;
}

std::string unescape(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      const char c = s[++i];
      out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
    } else {
      out += s[i];
    }
  }
  return out;
}

struct Case {
  std::string name, source;
  bleu::Options options;
  std::vector<std::string> hyps;
  std::vector<std::vector<std::string>> refs;  // refs[k][i]
  bool from_stats = false;
  bleu::Stats stats;
  bool has_score = false;
  double score = 0, tolerance = 0;
  bool has_counts = false;
  std::array<std::int64_t, 4> correct{}, total{};
};

struct Fixtures {
  std::vector<Case> cases;
  std::vector<std::pair<std::string, std::string>> tokenizations;
};

Fixtures load() {
  const std::string path = RDROP_TRANSLATION_DIR "/sacrebleu_fixtures.txt";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  Fixtures fx;
  std::string line, source;
  Case c;
  bool open = false;
  int number = 0;
  const auto bad = [&](const std::string& what) {
    throw std::runtime_error(path + ":" + std::to_string(number) + ": " + what);
  };
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || line[0] == '#') continue;
    const std::vector<std::string> f = fields(line);
    const std::string& tag = f[0];
    if (tag == "source") {
      if (f.size() != 4) bad("source needs REPOSITORY PATH COMMIT");
      source = f[1] + " " + f[2] + " @ " + f[3];
    } else if (tag == "case") {
      if (open) bad("case inside a case");
      c = Case{};
      c.name = f.at(1);
      c.source = source;
      open = true;
    } else if (tag == "options" && open) {
      std::istringstream words(f.at(1));
      for (std::string w; words >> w;) {
        const std::size_t eq = w.find('=');
        const std::string key = w.substr(0, eq), value = w.substr(eq + 1);
        if (key == "tokenize") {
          c.options.tokenize = value == "13a" ? bleu::Tokenize::k13a : bleu::Tokenize::kNone;
        } else if (key == "smooth") {
          c.options.smooth = value == "exp" ? bleu::Smooth::kExp : value == "floor" ? bleu::Smooth::kFloor : bleu::Smooth::kNone;
        } else if (key == "smooth_value") {
          c.options.smooth_value = std::stod(value);
        } else if (key == "effective_order") {
          c.options.effective_order = value == "1";
        } else {
          bad("unknown option " + key);
        }
      }
    } else if (tag == "hyp" && open) {
      c.hyps.push_back(unescape(f.size() > 1 ? f[1] : ""));
    } else if (tag == "ref" && open) {
      const auto k = static_cast<std::size_t>(std::stoi(f.at(1)));
      if (c.refs.size() <= k) c.refs.resize(k + 1);
      c.refs[k].push_back(unescape(f.size() > 2 ? f[2] : ""));
    } else if (tag == "stats" && open) {
      std::istringstream v(f.at(1));
      v >> c.stats.sys_len >> c.stats.ref_len;
      for (auto& x : c.stats.correct) v >> x;
      for (auto& x : c.stats.total) v >> x;
      if (!v) bad("stats needs 10 numbers");
      c.from_stats = true;
    } else if (tag == "score" && open) {
      c.score = std::stod(f.at(1));
      c.tolerance = std::stod(f.at(2));
      c.has_score = true;
    } else if (tag == "counts" && open) {
      std::istringstream v(f.at(1));
      for (auto& x : c.correct) v >> x;
      for (auto& x : c.total) v >> x;
      if (!v) bad("counts needs 8 numbers");
      c.has_counts = true;
    } else if (tag == "end" && open) {
      if (!c.has_score && !c.has_counts) bad("case " + c.name + " checks nothing");
      if (!c.from_stats && c.hyps.empty()) bad("case " + c.name + " has no segment");
      fx.cases.push_back(c);
      open = false;
    } else if (tag == "tok13a") {
      if (f.size() != 3) bad("tok13a needs INPUT and EXPECTED");
      fx.tokenizations.emplace_back(unescape(f[1]), unescape(f[2]));
    } else {
      bad("unexpected line");
    }
  }
  if (open) bad("the last case has no end");
  return fx;
}

}  // namespace

TEST_CASE("bleu: sacreBLEU's published scores and statistics", "[bleu]") {
  const Fixtures fx = load();
  REQUIRE(fx.cases.size() >= 20);
  for (const Case& c : fx.cases) {
    INFO(c.name << " (" << c.source << ")");
    bleu::Score s;
    if (c.from_stats) {
      s = bleu::score_from_stats(c.stats, c.options);
    } else {
      REQUIRE(!c.refs.empty());
      s = bleu::corpus_bleu(c.hyps, c.refs, c.options);
    }
    if (c.has_score) {
      INFO("expected " << c.score << ", got " << s.score);
      CHECK(std::abs(s.score - c.score) <= c.tolerance);
    }
    if (c.has_counts) {
      CHECK(s.stats.correct == c.correct);
      CHECK(s.stats.total == c.total);
    }
  }
}

TEST_CASE("bleu: 13a tokenization edge cases", "[bleu]") {
  const Fixtures fx = load();
  REQUIRE(fx.tokenizations.size() >= 15);
  for (const auto& [input, expected] : fx.tokenizations) {
    INFO("input: [" << input << "]");
    CHECK(bleu::tokenize_13a(input) == expected);
  }
}

TEST_CASE("bleu: one reference stream, brevity penalty, empty hypotheses", "[bleu]") {
  // The single-stream overload is the general one with one stream.
  const std::vector<std::string> hyps = {"The dog bit the man.", "It wasn't surprising."};
  const std::vector<std::string> refs = {"The dog had bit the man.", "No one was surprised."};
  const bleu::Score one = bleu::corpus_bleu(hyps, refs);
  const bleu::Score general = bleu::corpus_bleu(hyps, std::vector<std::vector<std::string>>{refs});
  CHECK(one.score == general.score);
  // 13a: "The dog bit the man ." (6) + "It wasn't surprising ." (4) against 7 + 5.
  CHECK(one.stats.sys_len == 10);
  CHECK(one.stats.ref_len == 12);
  CHECK(one.bp == Approx(std::exp(1.0 - 12.0 / 10.0)).epsilon(1e-15));
  // Corpus statistics are sums of the segments' (not a mean of scores).
  bleu::Stats sum = bleu::segment_stats(hyps[0], {refs[0]});
  sum += bleu::segment_stats(hyps[1], {refs[1]});
  CHECK(bleu::score_from_stats(sum).score == one.score);
  // Empty hypotheses count: no n-gram, brevity penalty 0.
  const bleu::Score empty = bleu::corpus_bleu({"", ""}, refs);
  CHECK(empty.score == 0.0);
  CHECK(empty.bp == 0.0);
  CHECK(empty.stats.ref_len == 12);
  // A stream of the wrong length is refused.
  CHECK_THROWS_AS(bleu::corpus_bleu(hyps, std::vector<std::string>{"only one"}), std::invalid_argument);
}

TEST_CASE("bleu: text that is not valid UTF-8 is refused", "[bleu]") {
  // Offsets of the first bad byte, from Python's bytes.decode('utf-8') (its
  // UnicodeDecodeError.start) on the same bytes.
  const std::vector<std::pair<std::string, std::size_t>> bad = {
      {"a\xc2", 1},             // truncated
      {"a\xc2<skipped>\xa0" "b", 1},  // the halves of U+00A0 around a tag
      {"\x80", 0},              // a lone continuation byte
      {"\xc0\xaf", 0},          // overlong '/'
      {"ab\xe0\x80\xaf", 2},    // overlong, three bytes
      {"\xed\xa0\x80", 0},      // a surrogate (U+D800)
      {"x\xf4\x90\x80\x80", 1},  // past U+10FFFF
      {"\xf5\x80\x80\x80", 0},  // not a lead byte
      {"\xe2\x82", 0},          // truncated three-byte
  };
  for (const auto& [text, at] : bad) {
    INFO("offset " << at);
    CHECK(bleu::invalid_utf8_at(text) == at);
    CHECK_THROWS_AS(bleu::corpus_bleu({text}, std::vector<std::string>{"a b"}), std::invalid_argument);
    CHECK_THROWS_AS(bleu::corpus_bleu({"a b"}, std::vector<std::string>{text}), std::invalid_argument);
  }
  // Valid text of every length of character, the largest and smallest of each.
  for (const std::string ok : {"", "plain", "\xc2\x80 \xdf\xbf", "\xe0\xa0\x80 \xed\x9f\xbf \xee\x80\x80 \xef\xbf\xbf",
                               "\xf0\x90\x80\x80 \xf4\x8f\xbf\xbf", "a\xc2\xa0" "b \xe2\x80\x94 \xf0\x9f\x98\x80"}) {
    CHECK(bleu::invalid_utf8_at(ok) == std::string_view::npos);
    CHECK_NOTHROW(bleu::corpus_bleu({ok}, std::vector<std::string>{ok}));
  }
}
