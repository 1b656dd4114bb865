// rdrop against independent references computed by PyTorch (autograd, float64):
// tests/data/pytorch_fixtures.txt, written by tools/make_fixtures.py (see its
// docstring for the format). A missing or malformed file fails the tests.
#include <catch2/catch.hpp>
#include <rdrop/rdrop.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace {

template <typename S>
using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename S>
using Vector = Eigen::Matrix<S, Eigen::Dynamic, 1>;

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw std::runtime_error("pytorch fixtures: " + where + ": " + what);
}

// strtod rather than operator>>: it reads `inf` and `-inf` (masked classes).
double to_double(const std::string& token, const std::string& where) {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(token.c_str(), &end);
  if (token.empty() || end != token.c_str() + token.size() || errno == ERANGE) {
    bad(where, "'" + token + "' is not a number");
  }
  return v;
}

long to_long(const std::string& token, const std::string& where) {
  errno = 0;
  char* end = nullptr;
  const long v = std::strtol(token.c_str(), &end, 10);
  if (token.empty() || end != token.c_str() + token.size() || errno == ERANGE) {
    bad(where, "'" + token + "' is not an integer");
  }
  return v;
}

// One `case` block: its keys and the tokens that follow each key.
struct Case {
  std::string name;
  std::map<std::string, std::vector<std::string>> fields;

  const std::vector<std::string>& tokens(const std::string& key) const {
    const auto it = fields.find(key);
    if (it == fields.end()) bad(name, "missing key '" + key + "'");
    return it->second;
  }
  bool has(const std::string& key) const { return fields.count(key) != 0; }

  std::string word(const std::string& key) const {
    const auto& t = tokens(key);
    if (t.size() != 1) bad(name, "key '" + key + "' must have one value");
    return t[0];
  }
  double number(const std::string& key) const { return to_double(word(key), name + " " + key); }
  long integer(const std::string& key) const { return to_long(word(key), name + " " + key); }

  // `key n v...`
  Vector<double> vector(const std::string& key) const {
    const auto& t = tokens(key);
    const std::string where = name + " " + key;
    if (t.empty()) bad(where, "no size");
    const long n = to_long(t[0], where);
    if (n < 0 || static_cast<std::size_t>(n) + 1 != t.size()) bad(where, "size does not match");
    Vector<double> v(n);
    for (long i = 0; i < n; ++i) v(i) = to_double(t[static_cast<std::size_t>(i) + 1], where);
    return v;
  }

  Eigen::VectorXi labels(const std::string& key) const {
    const auto& t = tokens(key);
    const std::string where = name + " " + key;
    if (t.empty()) bad(where, "no size");
    const long n = to_long(t[0], where);
    if (n < 0 || static_cast<std::size_t>(n) + 1 != t.size()) bad(where, "size does not match");
    Eigen::VectorXi v(n);
    for (long i = 0; i < n; ++i) v(i) = static_cast<int>(to_long(t[static_cast<std::size_t>(i) + 1], where));
    return v;
  }

  // `key rows cols v...`, row-major.
  Matrix<double> matrix(const std::string& key) const {
    const auto& t = tokens(key);
    const std::string where = name + " " + key;
    if (t.size() < 2) bad(where, "no shape");
    const long r = to_long(t[0], where), c = to_long(t[1], where);
    if (r < 0 || c < 0 || static_cast<std::size_t>(r * c) + 2 != t.size()) {
      bad(where, "shape does not match the number of values");
    }
    Matrix<double> m(r, c);
    for (long i = 0; i < r * c; ++i) m.data()[i] = to_double(t[static_cast<std::size_t>(i) + 2], where);
    return m;
  }
};

std::string fixture_path() {
  // The override lets a check point the tests at a broken copy without
  // touching the committed file.
  if (const char* env = std::getenv("RDROP_PYTORCH_FIXTURES")) return env;
  return std::string(RDROP_TEST_DATA_DIR) + "/pytorch_fixtures.txt";
}

std::vector<Case> parse_fixtures(const std::string& path) {
  std::ifstream in(path);
  if (!in) bad(path, "cannot open (run /usr/bin/python3 tools/make_fixtures.py)");
  std::vector<Case> cases;
  bool in_case = false, seen_format = false, seen_count = false;
  std::string line;
  long line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    const std::string where = path + ":" + std::to_string(line_no);
    if (line.empty() || line[0] == '#') continue;
    if (seen_count) bad(where, "text after the final 'cases' line");
    std::istringstream words(line);
    std::string key;
    words >> key;
    std::vector<std::string> rest;
    for (std::string w; words >> w;) rest.push_back(w);
    if (key == "format") {
      if (rest != std::vector<std::string>{"rdrop-pytorch-fixtures", "1"}) bad(where, "unknown format");
      seen_format = true;
    } else if (!seen_format) {
      bad(where, "expected the 'format' line first");
    } else if (key == "case") {
      if (in_case || rest.size() != 1) bad(where, "malformed 'case' line");
      cases.push_back(Case{rest[0], {}});
      in_case = true;
    } else if (key == "end") {
      if (!in_case) bad(where, "'end' outside a case");
      in_case = false;
    } else if (key == "cases") {
      if (in_case || rest.size() != 1 || to_long(rest[0], where) != static_cast<long>(cases.size())) {
        bad(where, "the case count does not match (truncated file?)");
      }
      seen_count = true;
    } else {
      if (!in_case) bad(where, "key '" + key + "' outside a case");
      if (!cases.back().fields.emplace(key, std::move(rest)).second) bad(where, "duplicate key '" + key + "'");
    }
  }
  if (!seen_count) bad(path, "no final 'cases' line (truncated or empty file?)");
  return cases;
}

// Parsed once; a parse error throws, which fails the calling test.
const std::vector<Case>& fixtures() {
  static const std::vector<Case> cases = parse_fixtures(fixture_path());
  return cases;
}

std::vector<const Case*> cases_of(const std::string& op) {
  std::vector<const Case*> out;
  for (const Case& c : fixtures()) {
    if (c.word("op") == op) out.push_back(&c);
  }
  return out;
}

// Per-type tolerance, relative to max(1, |reference|) for values and to
// max(1, largest |entry|) for a gradient matrix. The inputs are float32
// values, so float reads exactly what PyTorch read.
template <typename S>
double tolerance() {
  return std::is_same_v<S, double> ? 1e-10 : 1e-4;
}

template <typename S>
Matrix<S> cast(const Matrix<double>& m) {
  return m.template cast<S>();
}

// Returns the error scaled by max(1, |ref|); NaN anywhere gives NaN, which
// fails every `<=` check.
double value_error(double got, double ref) {
  if (std::isinf(ref) && got == ref) return 0.0;
  return std::abs(got - ref) / std::max(1.0, std::abs(ref));
}

// The largest error of `got` against `ref`, scaled by max(1, max|ref|);
// describes the worst entry in `worst`.
template <typename M>
double matrix_error(const M& got_in, const Matrix<double>& ref, std::string& worst) {
  const Matrix<double> got = got_in.template cast<double>();
  if (got.rows() != ref.rows() || got.cols() != ref.cols()) {
    worst = "shape " + std::to_string(got.rows()) + "x" + std::to_string(got.cols()) + ", expected " +
            std::to_string(ref.rows()) + "x" + std::to_string(ref.cols());
    return std::numeric_limits<double>::infinity();
  }
  const double scale = std::max(1.0, ref.size() ? ref.cwiseAbs().maxCoeff() : 0.0);
  double err = 0.0;
  for (Eigen::Index i = 0; i < ref.rows(); ++i) {
    for (Eigen::Index j = 0; j < ref.cols(); ++j) {
      const double e = std::abs(got(i, j) - ref(i, j)) / scale;
      if (!(e <= err)) {  // NaN counts as the worst
        err = std::isnan(e) ? std::numeric_limits<double>::quiet_NaN() : e;
        std::ostringstream s;
        s.precision(17);
        s << "(" << i << ", " << j << "): got " << got(i, j) << ", expected " << ref(i, j);
        worst = s.str();
        if (std::isnan(e)) return err;
      }
    }
  }
  return err;
}

#define RDROP_CHECK_VALUE(got, ref)                                      \
  do {                                                                   \
    const double got_ = static_cast<double>(got);                        \
    const double ref_ = (ref);                                           \
    INFO("value: got " << got_ << ", expected " << ref_);                \
    CHECK(value_error(got_, ref_) <= tolerance<TestType>());             \
  } while (0)

#define RDROP_CHECK_MATRIX(got, ref)                                     \
  do {                                                                   \
    std::string worst_;                                                  \
    const double err_ = matrix_error((got), (ref), worst_);              \
    INFO(#got " worst entry " << worst_);                                \
    CHECK(err_ <= tolerance<TestType>());                                \
  } while (0)

rdrop::Reduction reduction_of(const Case& c) {
  const std::string r = c.word("reduction");
  if (r == "mean") return rdrop::Reduction::Mean;
  if (r == "sum") return rdrop::Reduction::Sum;
  bad(c.name, "unknown reduction '" + r + "'");
}

}  // namespace

TEST_CASE("PyTorch fixtures: the file parses and covers every operation", "[pytorch]") {
  const std::vector<Case>& cases = fixtures();
  // The generator writes 84 cases; fewer means a stale or damaged file.
  CHECK(cases.size() >= 80);
  std::map<std::string, int> per_op;
  for (const Case& c : cases) ++per_op[c.word("op")];
  CHECK(per_op["cross_entropy"] > 0);
  CHECK(per_op["kl"] > 0);
  CHECK(per_op["symmetric_kl"] > 0);
  CHECK(per_op["rdrop"] > 0);
  for (const auto& [op, n] : per_op) {
    INFO("op " << op);
    CHECK((op == "cross_entropy" || op == "kl" || op == "symmetric_kl" || op == "rdrop"));
  }
}

TEMPLATE_TEST_CASE("PyTorch fixtures: CrossEntropy matches F.cross_entropy", "[pytorch]", float,
                   double) {
  using S = TestType;
  const auto cases = cases_of("cross_entropy");
  REQUIRE(!cases.empty());
  for (const Case* c : cases) {
    INFO("case " << c->name);
    const Matrix<S> x = cast<S>(c->matrix("logits"));
    const Eigen::VectorXi y = c->labels("labels");
    const Matrix<double> grad_ref = c->matrix("grad");
    rdrop::CrossEntropyOptions<S> o;
    o.ignore_index = c->integer("ignore_index");
    o.label_smoothing = static_cast<S>(c->number("label_smoothing"));
    Matrix<S> g;
    if (c->word("reduction") == "none") {
      // Per-row values; the reference gradient is that of their sum.
      o.reduction = rdrop::Reduction::Sum;
      const rdrop::CrossEntropy<S> ce(o);
      const Vector<double> values_ref = c->vector("values");
      Vector<S> values;
      ce.EvaluatePerRow(x, y, values);
      RDROP_CHECK_MATRIX(Matrix<S>(values), Matrix<double>(values_ref));
      RDROP_CHECK_VALUE(ce.EvaluateWithGradient(x, y, g), values_ref.sum());
      RDROP_CHECK_MATRIX(g, grad_ref);
    } else {
      o.reduction = reduction_of(*c);
      const rdrop::CrossEntropy<S> ce(o);
      const double value_ref = c->number("value");
      RDROP_CHECK_VALUE(ce.Evaluate(x, y), value_ref);
      RDROP_CHECK_VALUE(ce.EvaluateWithGradient(x, y, g), value_ref);
      RDROP_CHECK_MATRIX(g, grad_ref);
      Matrix<S> g2;
      ce.Gradient(x, y, g2);
      RDROP_CHECK_MATRIX(g2, grad_ref);
    }
  }
}

namespace {

template <typename S, typename D>
void check_divergence(const Case& c) {
  INFO("case " << c.name);
  using TestType = S;  // for the check macros
  const Matrix<S> a = cast<S>(c.matrix("a"));
  const Matrix<S> b = cast<S>(c.matrix("b"));
  const D d(reduction_of(c));
  const double value_ref = c.number("value");
  // The masked_* cases hold −inf in the same class of both rows: the value
  // and gradient must stay finite (a NaN fails every check), and the
  // big_shift_* cases in float catch a lse(a) − lse(b) formed from two
  // log-sum-exps rounded at 1e4 (~1e-3 off; PyTorch float32 is 2e-7 off).
  RDROP_CHECK_VALUE(d.Evaluate(a, b), value_ref);
  Matrix<S> ga, gb;
  RDROP_CHECK_VALUE(d.EvaluateWithGradient(a, b, ga, gb), value_ref);
  RDROP_CHECK_MATRIX(ga, c.matrix("grad_a"));
  RDROP_CHECK_MATRIX(gb, c.matrix("grad_b"));
  Matrix<S> ga2, gb2;
  d.Gradient(a, b, ga2, gb2);
  RDROP_CHECK_MATRIX(ga2, c.matrix("grad_a"));
  RDROP_CHECK_MATRIX(gb2, c.matrix("grad_b"));
  Vector<S> values;
  d.EvaluatePerRow(a, b, values);
  RDROP_CHECK_MATRIX(Matrix<S>(values), Matrix<double>(c.vector("values")));
}

}  // namespace

TEMPLATE_TEST_CASE("PyTorch fixtures: KLDivergence matches F.kl_div", "[pytorch]", float, double) {
  const auto cases = cases_of("kl");
  REQUIRE(!cases.empty());
  for (const Case* c : cases) check_divergence<TestType, rdrop::KLDivergence<TestType>>(*c);
}

TEMPLATE_TEST_CASE("PyTorch fixtures: SymmetricKL matches 0.5*(KL(p||q) + KL(q||p))", "[pytorch]",
                   float, double) {
  const auto cases = cases_of("symmetric_kl");
  REQUIRE(!cases.empty());
  for (const Case* c : cases) check_divergence<TestType, rdrop::SymmetricKL<TestType>>(*c);
}

TEMPLATE_TEST_CASE("PyTorch fixtures: RDropLoss matches the README, Keras-code and fairseq losses",
                   "[pytorch]", float, double) {
  using S = TestType;
  const auto cases = cases_of("rdrop");
  REQUIRE(!cases.empty());
  for (const Case* c : cases) {
    INFO("case " << c->name);
    rdrop::RDropOptions<S> o;
    o.alpha = static_cast<S>(c->number("alpha"));
    o.ignore_index = c->integer("ignore_index");
    o.label_smoothing = static_cast<S>(c->number("label_smoothing"));
    const std::string norm = c->word("normalization"), layout = c->word("layout");
    if (norm == "PyTorchReadme") {
      o.normalization = rdrop::Normalization::PyTorchReadme;
    } else if (norm == "KerasCode") {
      o.normalization = rdrop::Normalization::KerasCode;
    } else if (norm == "Fairseq") {
      o.normalization = rdrop::Normalization::Fairseq;
    } else {
      FAIL("unknown normalization " << norm);
    }
    if (layout == "Stacked") {
      o.layout = rdrop::Layout::Stacked;
    } else if (layout == "Interleaved") {
      o.layout = rdrop::Layout::Interleaved;
    } else {
      FAIL("unknown layout " << layout);
    }
    if (c->has("padding_index")) o.padding_index = c->integer("padding_index");
    if (c->has("smoothing_style")) {
      REQUIRE(c->word("smoothing_style") == "ExcludeTarget");
      o.smoothing_style = rdrop::SmoothingStyle::ExcludeTarget;
    }
    const rdrop::RDropLoss<S> loss(o);
    const Matrix<S> x = cast<S>(c->matrix("logits"));
    const Eigen::VectorXi y = c->labels("labels");
    const Matrix<double> grad_ref = c->matrix("grad");
    const double value_ref = c->number("value");
    REQUIRE(x.rows() == 2 * y.size());

    if (c->has("time")) {
      // A sequence batch: the same data as [2B, T, V] and [B, T] tensors.
      const auto b = static_cast<Eigen::Index>(c->integer("batch"));
      const auto t = static_cast<Eigen::Index>(c->integer("time"));
      REQUIRE(b * t == y.size());
      const Eigen::TensorMap<const Eigen::Tensor<S, 3, Eigen::RowMajor>> xt(x.data(), 2 * b, t, x.cols());
      const Eigen::TensorMap<const Eigen::Tensor<int, 2, Eigen::RowMajor>> yt(y.data(), b, t);
      Eigen::Tensor<S, 3, Eigen::RowMajor> gt;
      RDROP_CHECK_VALUE(loss.EvaluateWithGradient(xt, yt, gt), value_ref);
      RDROP_CHECK_MATRIX(Matrix<S>(Eigen::Map<const Matrix<S>>(gt.data(), x.rows(), x.cols())), grad_ref);
    }

    // Labels once per sample...
    RDROP_CHECK_VALUE(loss.Evaluate(x, y), value_ref);
    Matrix<S> g;
    RDROP_CHECK_VALUE(loss.EvaluateWithGradient(x, y, g), value_ref);
    RDROP_CHECK_MATRIX(g, grad_ref);
    Matrix<S> g2;
    loss.Gradient(x, y, g2);
    RDROP_CHECK_MATRIX(g2, grad_ref);

    // ...and once per row, duplicated in the case's layout.
    const Eigen::Index b = y.size();
    Eigen::VectorXi y_rows(2 * b);
    for (Eigen::Index k = 0; k < b; ++k) {
      const bool stacked = o.layout == rdrop::Layout::Stacked;
      y_rows(stacked ? k : 2 * k) = y(k);
      y_rows(stacked ? b + k : 2 * k + 1) = y(k);
    }
    Matrix<S> g3;
    RDROP_CHECK_VALUE(loss.EvaluateWithGradient(x, y_rows, g3), value_ref);
    RDROP_CHECK_MATRIX(g3, grad_ref);
  }
}
