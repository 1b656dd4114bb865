// libFuzzer harness over rdrop's public API (clang++ -fsanitize=fuzzer,
// address,undefined; see fuzz/run_fuzz.sh). The fuzz input picks a target
// (the three R-Drop losses under several divergences, CrossEntropy, the
// stand-alone divergences, the raw-pointer kernels, Dropout,
// MeasureConsistency, duplication and copy views), the scalar type, shapes
// (0 rows, 1 class, odd row counts, long rows), layouts, normalizations,
// labels, masks, α, ε, and logits that may hold NaN, ±inf, ±1e30, ±1e4 above
// the rest, huge finite values and denormals.
//
// An independent oracle in this file decides from the arguments alone
// whether a call is valid. The properties checked (abort() on a violation):
//  - no crash, no sanitizer report, no exception other than
//    std::invalid_argument;
//  - a call throws if and only if the oracle calls it invalid, and then
//    leaves every output exactly as it was (shape and contents);
//  - valid, finite, bounded input (see `bounded`) gives a finite loss,
//    finite gradients, finite per-row values and a non-negative loss;
//  - a NaN or +inf in a row that takes part in the loss makes the loss NaN
//    (the documented contract, docs/inputs_and_errors.md); masked rows are
//    never read: their gradient is exactly 0, whatever they hold; rows of
//    pairs without non-finite values keep a finite gradient;
//  - every input kind (row-major, column-major, strided Map, transposed
//    view, TensorMap) and output kind gives bitwise the same results, and
//    Evaluate, EvaluateWithGradient, EvaluateTerms + Normalize and
//    WithCounts(Count) agree bitwise;
//  - identical copies have divergence exactly 0.
#include <rdrop/rdrop.hpp>

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using Index = Eigen::Index;
template <typename S>
using RowMat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename S>
using ColMat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
template <typename S>
using Vec = Eigen::Matrix<S, Eigen::Dynamic, 1>;
template <typename S, int R>
using Tensor = Eigen::Tensor<S, R, Eigen::RowMajor>;
template <typename S>
using StridedMap = Eigen::Map<RowMat<S>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename S>
using ConstStridedMap = Eigen::Map<const RowMat<S>, Eigen::Unaligned, Eigen::OuterStride<>>;

// FUZZ_RDROP_VERBOSE=1 ./fuzz_rdrop crash-file prints what a target drew.
bool verbose = false;

template <typename M>
void show(const char* name, const M& m) {
  if (!verbose) return;
  std::fprintf(stderr, "%s [%ld x %ld]:\n", name, static_cast<long>(m.rows()), static_cast<long>(m.cols()));
  for (Index i = 0; i < m.rows(); ++i) {
    for (Index j = 0; j < m.cols(); ++j) std::fprintf(stderr, " %.9g", static_cast<double>(m(i, j)));
    std::fprintf(stderr, "\n");
  }
}
void note(const char* what, double v) {
  if (verbose) std::fprintf(stderr, "%s = %.9g\n", what, v);
}

[[noreturn]] void property_failed(const char* what, const char* file, int line) {
  std::fprintf(stderr, "fuzz_rdrop: property violated: %s (%s:%d)\n", what, file, line);
  std::abort();
}
#define FUZZ_REQUIRE(cond)                                  \
  do {                                                      \
    if (!(cond)) property_failed(#cond, __FILE__, __LINE__); \
  } while (0)

// Runs `call`, which the oracle says is valid or not; returns whether it
// threw. Any exception but std::invalid_argument is a failure, and so is a
// disagreement with the oracle.
template <typename F>
bool expect(bool valid, F&& call, int line) {
  try {
    call();
  } catch (const std::invalid_argument& e) {
    if (valid) {
      std::fprintf(stderr, "fuzz_rdrop: unexpected throw: %s\n", e.what());
      property_failed("a valid call threw", __FILE__, line);
    }
    if (std::string(e.what()).rfind("rdrop::", 0) != 0) property_failed("message starts with rdrop::", __FILE__, line);
    return true;
  } catch (...) {
    property_failed("an exception other than std::invalid_argument", __FILE__, line);
  }
  if (!valid) property_failed("an invalid call did not throw", __FILE__, line);
  return false;
}
#define EXPECT(valid, ...) expect((valid), [&] { __VA_ARGS__; }, __LINE__)

// Bitwise equal, or both NaN.
template <typename S>
bool same(S a, S b) {
  return (std::isnan(a) && std::isnan(b)) || a == b;
}
template <typename A, typename B>
bool same_all(const A& a, const B& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  for (Index i = 0; i < a.rows(); ++i)
    for (Index j = 0; j < a.cols(); ++j)
      if (!same(a(i, j), b(i, j))) return false;
  return true;
}

template <typename S>
constexpr S sentinel = S(-1234.5);

// Whether columns [from, end) of m all hold v. (Element by element: Eigen's
// block of an empty matrix offsets a null pointer.)
template <typename M, typename S>
bool cols_from_are(const M& m, Index from, S v) {
  for (Index i = 0; i < m.rows(); ++i)
    for (Index j = from; j < m.cols(); ++j)
      if (!(m(i, j) == v)) return false;
  return true;
}

// ---------------------------------------------------------------------------
// Values. A per-input profile keeps most inputs finite and moderate, so that
// the valid path is explored as often as the extreme ones.

enum Profile { kModerate = 0, kExtreme = 1, kNonFinite = 2 };

template <typename S>
S draw(FuzzedDataProvider& in, int profile) {
  using L = std::numeric_limits<S>;
  const auto b = in.ConsumeIntegral<std::uint8_t>();
  if (b < 200) return S(int(b) - 100) / S(16);  // [-6.25, 6.19], exact
  if (b < 220) {
    constexpr S common[] = {S(0), S(-0.0), S(1), S(-1), S(0.5)};
    return common[b % 5];
  }
  if (profile >= kExtreme && b < 236) {
    switch (b - 220) {
      case 0: return S(1e30);
      case 1: return S(-1e30);
      case 2: return S(1e4);
      case 3: return S(-1e4);
      case 4: return L::denorm_min();
      case 5: return -L::denorm_min();
      case 6: return L::min() / S(3);  // a denormal
      case 7: return L::max() / S(4);
      case 8: return -L::max() / S(4);
      case 9: return L::max();
      case 10: return L::lowest();
      case 11: return S(1e-30);
      case 12: return S(1e15);
      case 13: return S(-1e15);
      case 14: return L::min();
      default: return S(88.5);  // exp overflows in float beyond 88.7
    }
  }
  if (profile >= kNonFinite && b >= 236) {
    if (b < 244) return L::quiet_NaN();
    if (b < 250) return L::infinity();
    return -L::infinity();
  }
  return S(int(b) - 230) / S(4);
}

// α, ε, p and friends: valid and invalid choices.
template <typename S>
S draw_alpha(FuzzedDataProvider& in) {
  using L = std::numeric_limits<S>;
  const S menu[] = {S(1),    S(0),          S(0.5),           S(4),      S(100),       S(1e-30),
                    L::denorm_min(), S(1e6), S(-1), -L::denorm_min(), L::quiet_NaN(), L::infinity(),
                    S(1e30), S(2)};
  return menu[in.ConsumeIntegralInRange<std::size_t>(0, std::size(menu) - 1)];
}

template <typename S>
S draw_unit(FuzzedDataProvider& in) {  // ε, p: valid in [0, 1)
  using L = std::numeric_limits<S>;
  const S menu[] = {S(0),    S(0.1), S(0.5), S(0.9),          S(1) - L::epsilon(), L::denorm_min(), S(1),
                    S(-0.1), S(2),   L::quiet_NaN(), L::infinity(), -L::infinity(), S(0.25)};
  return menu[in.ConsumeIntegralInRange<std::size_t>(0, std::size(menu) - 1)];
}

// ---------------------------------------------------------------------------
// Logits: a batch as row-major rows plus its logical shape.

template <typename S>
struct Batch {
  int rank = 2;
  Index d0 = 0, t = 1, c = 0;  // [d0, c] or [d0, t, c]
  RowMat<S> x;                 // d0·t rows of c classes
  Index rows() const { return d0 * t; }
};

Index draw_classes(FuzzedDataProvider& in) {
  const Index menu[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 100, 513, 1031};
  const auto i = in.ConsumeIntegralInRange<std::size_t>(0, 40);
  return i < std::size(menu) ? menu[i] : Index(1 + i % 6);
}

template <typename S>
Batch<S> draw_batch(FuzzedDataProvider& in, int profile, bool allow_rank3) {
  Batch<S> b;
  b.rank = allow_rank3 && in.ConsumeIntegralInRange(0, 3) == 0 ? 3 : 2;
  b.d0 = in.ConsumeIntegralInRange<Index>(0, 9);
  b.t = b.rank == 3 ? in.ConsumeIntegralInRange<Index>(0, 3) : 1;
  b.c = draw_classes(in);
  if (b.c > 100 && b.rows() > 4) b.d0 = b.rank == 3 ? 2 : 4;  // keep executions fast
  b.x.resize(b.rows(), b.c);
  for (Index i = 0; i < b.x.rows(); ++i) {
    // Row patterns: free values, all equal, one dominant logit, a copy of
    // the row above (identical copies when it is the pair partner).
    const int pattern = in.ConsumeIntegralInRange(0, 7);
    for (Index j = 0; j < b.c; ++j) {
      if (pattern == 5) {
        b.x(i, j) = j == 0 ? draw<S>(in, profile) : b.x(i, 0);
      } else if (pattern == 6 && i > 0) {
        b.x(i, j) = b.x(i - 1, j);
      } else {
        b.x(i, j) = draw<S>(in, profile);
      }
    }
    if (pattern == 7 && b.c > 0) {
      b.x.row(i).setConstant(S(0.25));
      b.x(i, in.ConsumeIntegralInRange<Index>(0, b.c - 1)) = S(1e4);
    }
  }
  return b;
}

// The row indices of pair k, written out from the Layout documentation.
struct Pair {
  Index first, second;
};
Pair pair_of(rdrop::Layout layout, Index k, Index rows, Index group) {
  if (layout == rdrop::Layout::Stacked) return {k, k + rows / 2};
  const Index sample = k / group;
  const Index first = 2 * sample * group + k % group;
  return {first, first + group};
}

template <typename S>
struct RowFacts {
  std::vector<char> nan_or_pinf;  // NaN or +inf: poisons everything it touches
  std::vector<char> ninf;         // -inf: valid, may give +inf or NaN
  long double max_abs = 0;        // over finite entries
};

template <typename S>
RowFacts<S> facts(const RowMat<S>& x) {
  RowFacts<S> f;
  f.nan_or_pinf.assign(static_cast<std::size_t>(x.rows()), 0);
  f.ninf.assign(static_cast<std::size_t>(x.rows()), 0);
  for (Index i = 0; i < x.rows(); ++i)
    for (Index j = 0; j < x.cols(); ++j) {
      const S v = x(i, j);
      if (std::isnan(v) || v == std::numeric_limits<S>::infinity()) {
        f.nan_or_pinf[static_cast<std::size_t>(i)] = 1;
      } else if (v == -std::numeric_limits<S>::infinity()) {
        f.ninf[static_cast<std::size_t>(i)] = 1;
      } else {
        f.max_abs = std::max(f.max_abs, std::fabs(static_cast<long double>(v)));
      }
    }
  return f;
}

// The finiteness guarantee: with every logit finite and |x| ≤ R, losses and
// gradients are bounded by about (1 + α)·rows·C·(4R + log C + 8) (squared
// errors: (2R + 1)² in place of the last factor); when that is below the
// largest Scalar / 16, every result must be finite. Beyond it the true
// value itself may overflow.
template <typename S>
bool bounded(long double r, long double alpha, Index rows, Index c, bool squares) {
  const long double per = squares ? (2 * r + 1) * (2 * r + 1) : 4 * r + 8 + std::log(static_cast<long double>(c + 2));
  const long double bound = (1 + alpha) * static_cast<long double>(rows + 2) * static_cast<long double>(c + 2) * per;
  return bound <= static_cast<long double>(std::numeric_limits<S>::max()) / 16;
}

template <typename M>
bool all_finite(const M& m) {
  for (Index i = 0; i < m.rows(); ++i)
    for (Index j = 0; j < m.cols(); ++j)
      if (!std::isfinite(m(i, j))) return false;
  return true;
}

// A resizable output prefilled with the sentinel, at a random shape.
template <typename M>
M prefilled(FuzzedDataProvider& in) {
  const Index r = in.ConsumeIntegralInRange<Index>(0, 3), c = in.ConsumeIntegralInRange<Index>(0, 3);
  if constexpr (M::ColsAtCompileTime == 1) {
    return M::Constant(r, sentinel<typename M::Scalar>);
  } else {
    return M::Constant(r, c, sentinel<typename M::Scalar>);
  }
}

template <typename M>
bool untouched(const M& m, Index rows, Index cols) {
  return m.rows() == rows && m.cols() == cols && (m.array() == sentinel<typename M::Scalar>).all();
}

// Counts of labels or masks: once per sample, once per row, or anything.
Index draw_count(FuzzedDataProvider& in, Index rows) {
  switch (in.ConsumeIntegralInRange(0, 9)) {
    case 0: return in.ConsumeIntegralInRange<Index>(0, 12);
    case 1: case 2: case 3: case 4: return rows / 2;
    default: return rows;
  }
}

// ---------------------------------------------------------------------------
// The three R-Drop losses. A Task supplies the targets, the loss type and
// what the oracle needs to know about them.

template <typename S>
struct CommonOptions {
  S alpha = 1;
  rdrop::Layout layout = rdrop::Layout::Interleaved;
  rdrop::Normalization normalization = rdrop::Normalization::KerasCode;
  int threads = 0;
};

template <typename S>
CommonOptions<S> draw_common(FuzzedDataProvider& in) {
  CommonOptions<S> o;
  o.alpha = draw_alpha<S>(in);
  o.layout = in.ConsumeBool() ? rdrop::Layout::Stacked : rdrop::Layout::Interleaved;
  o.normalization = static_cast<rdrop::Normalization>(in.ConsumeIntegralInRange(0, 5));
  const int threads[] = {0, 1, 2, 0, -1};
  o.threads = threads[in.ConsumeIntegralInRange(0, 4)];
  return o;
}

template <typename S>
bool common_valid(const CommonOptions<S>& o) {
  return o.alpha >= 0 && std::isfinite(o.alpha) && o.threads >= 0;
}

// Single-label classification: integer labels, ignore and padding labels,
// smoothing. Divergence picks SymmetricKL, KLDivergence or JensenShannon.
template <typename S, typename Divergence>
struct ClassTask {
  using Loss = rdrop::RDropLoss<S, Divergence>;
  rdrop::RDropOptions<S> options;
  Eigen::VectorXi labels;
  bool labels_as_matrix = false;  // labels passed as a 2 x n/2 matrix: an error when both > 1
  static constexpr bool squares = false;
  static constexpr bool exact_zero_on_twins = !std::is_same_v<Divergence, rdrop::JensenShannon<S>>;

  void draw(FuzzedDataProvider& in, const CommonOptions<S>& c, const Batch<S>& b) {
    options.alpha = c.alpha;
    options.layout = c.layout;
    options.normalization = c.normalization;
    options.threads = c.threads;
    const Index ignores[] = {-100, -1, 0, 2};
    options.ignore_index = ignores[in.ConsumeIntegralInRange(0, 3)];
    const Index paddings[] = {rdrop::no_padding, rdrop::no_padding, 1, -7};
    options.padding_index = paddings[in.ConsumeIntegralInRange(0, 3)];
    options.label_smoothing = in.ConsumeBool() ? S(0) : draw_unit<S>(in);
    options.smoothing_style = in.ConsumeBool() ? rdrop::SmoothingStyle::Uniform : rdrop::SmoothingStyle::ExcludeTarget;
    labels.resize(draw_count(in, b.rows()));
    for (Index i = 0; i < labels.size(); ++i) {
      const int k = in.ConsumeIntegralInRange(0, 15);
      const int c_int = static_cast<int>(b.c);
      if (k < 10) {
        labels(i) = b.c > 0 ? in.ConsumeIntegralInRange(0, c_int - 1) : 0;
      } else {
        const int others[] = {static_cast<int>(options.ignore_index), -1, c_int, -100,
                              static_cast<int>(options.padding_index == rdrop::no_padding ? 1 : options.padding_index),
                              std::numeric_limits<int>::min()};
        labels(i) = others[k - 10];
      }
    }
    labels_as_matrix = labels.size() >= 4 && labels.size() % 2 == 0 && in.ConsumeIntegralInRange(0, 15) == 0;
  }

  bool options_valid() const {
    return options.label_smoothing >= S(0) && options.label_smoothing < S(1);
  }

  // Validity of the targets and, per row, whether it carries a CE term.
  bool targets(const Batch<S>& b, std::vector<char>& task, std::vector<char>& padded) const {
    const Index rows = b.rows(), n = labels.size();
    if (n != rows && n != rows / 2) return false;
    if (options.smoothing_style == rdrop::SmoothingStyle::ExcludeTarget && options.label_smoothing > S(0) &&
        b.c < 2)
      return false;
    task.assign(static_cast<std::size_t>(rows), 0);
    padded.assign(static_cast<std::size_t>(rows), 0);
    for (Index i = 0; i < n; ++i) {
      const Index y = labels(i);
      const bool pad = options.padding_index != rdrop::no_padding && y == options.padding_index;
      const bool ignored = pad || y == options.ignore_index;
      if (!ignored && !(y >= 0 && y < b.c)) return false;
      auto set = [&](Index r) {
        task[static_cast<std::size_t>(r)] = !ignored;
        padded[static_cast<std::size_t>(r)] = pad;
      };
      if (n == rows) {
        set(i);
      } else {
        const Pair p = pair_of(options.layout, i, rows, b.rank == 3 ? b.t : 1);
        set(p.first);
        set(p.second);
      }
    }
    return true;
  }

  Loss make() const { return Loss(options); }

  const Eigen::VectorXi& targets() const { return labels; }
  void describe() const {
    note("ignore_index", static_cast<double>(options.ignore_index));
    note("padding_index", static_cast<double>(options.padding_index));
    note("label_smoothing", static_cast<double>(options.label_smoothing));
    note("exclude_target", options.smoothing_style == rdrop::SmoothingStyle::ExcludeTarget);
  }

  // Other forms of the same labels: as a 2 x n/2 matrix (an error), as a
  // row vector of another integer type (the same value).
  template <typename Loss>
  void other_forms(const Loss& loss, const RowMat<S>& x, const Eigen::VectorXi* m, bool valid, S value) const {
    if (labels_as_matrix) {
      const Eigen::MatrixXi matrix = Eigen::Map<const Eigen::MatrixXi>(labels.data(), 2, labels.size() / 2);
      EXPECT(false, m ? loss.Evaluate(x, matrix, *m) : loss.Evaluate(x, matrix));
    }
    const Eigen::Matrix<long, 1, Eigen::Dynamic> row = labels.cast<long>().transpose();
    S v = 0;
    EXPECT(valid, v = m ? loss.Evaluate(x, row, *m) : loss.Evaluate(x, row));
    if (valid) FUZZ_REQUIRE(same(v, value));
  }
};

// Multi-label (sigmoid, BCE, Bernoulli symmetric KL) and regression
// (squared error): Scalar target rows.
template <typename S, bool Regression>
struct RealTask {
  using Loss = std::conditional_t<Regression, rdrop::RDropRegressionLoss<S>, rdrop::RDropMultiLabelLoss<S>>;
  using Options = std::conditional_t<Regression, rdrop::RegressionOptions<S>, rdrop::MultiLabelOptions<S>>;
  Options options;
  RowMat<S> y;
  static constexpr bool squares = Regression;
  static constexpr bool exact_zero_on_twins = true;

  void draw(FuzzedDataProvider& in, const CommonOptions<S>& c, const Batch<S>& b) {
    options.alpha = c.alpha;
    options.layout = c.layout;
    options.normalization = c.normalization;
    options.threads = c.threads;
    const Index cols = in.ConsumeIntegralInRange(0, 15) == 0 ? b.c + 1 : b.c;
    y.resize(draw_count(in, b.rows()), cols);
    const int profile = in.ConsumeIntegralInRange(0, 7) == 0 ? kNonFinite : kModerate;
    for (Index i = 0; i < y.size(); ++i) {
      const S v = ::draw<S>(in, profile);
      if constexpr (Regression) {
        y.data()[i] = v;
      } else {
        y.data()[i] = std::isfinite(v) ? (in.ConsumeIntegralInRange(0, 20) == 0 ? v : std::fabs(v) / S(7)) : v;
      }
    }
  }

  bool options_valid() const { return true; }

  bool targets(const Batch<S>& b, std::vector<char>& task, std::vector<char>& padded) const {
    const Index rows = b.rows();
    if (y.cols() != b.c || (y.rows() != rows && y.rows() != rows / 2)) return false;
    for (Index i = 0; i < y.size(); ++i) {
      const S v = y.data()[i];
      if (Regression ? !std::isfinite(v) : !(v >= S(0) && v <= S(1))) return false;
    }
    task.assign(static_cast<std::size_t>(rows), 1);
    padded.assign(static_cast<std::size_t>(rows), 0);
    return true;
  }

  long double target_max() const {
    long double m = 0;
    for (Index i = 0; i < y.size(); ++i)
      if (std::isfinite(y.data()[i])) m = std::max(m, std::fabs(static_cast<long double>(y.data()[i])));
    return m;
  }

  Loss make() const { return Loss(options); }
  const RowMat<S>& targets() const { return y; }
  void describe() const {}

  // Column-major targets give the same value.
  template <typename Loss>
  void other_forms(const Loss& loss, const RowMat<S>& x, const Eigen::VectorXi* m, bool valid, S value) const {
    const ColMat<S> col = y;
    S v = 0;
    EXPECT(valid, v = m ? loss.Evaluate(x, col, *m) : loss.Evaluate(x, col));
    if (valid) FUZZ_REQUIRE(same(v, value));
  }
};

template <typename T>
long double target_max_of(const T& task) {
  if constexpr (T::squares) {
    return task.target_max();
  } else {
    (void)task;
    return 0;
  }
}

// Mask: absent, or an int / bool / float vector, per sample or per row.
template <typename S>
struct MaskChoice {
  bool present = false;
  int kind = 0;  // 0: VectorXi, 1: bool row vector, 2: Scalar vector
  std::vector<int> keep;

  void draw(FuzzedDataProvider& in, Index rows) {
    present = in.ConsumeIntegralInRange(0, 2) == 0;
    if (!present) return;
    kind = in.ConsumeIntegralInRange(0, 2);
    keep.resize(static_cast<std::size_t>(draw_count(in, rows)));
    for (int& k : keep) k = in.ConsumeIntegralInRange(0, 3) != 0;
  }

  Eigen::VectorXi as_ints() const {
    Eigen::VectorXi m(static_cast<Index>(keep.size()));
    for (Index i = 0; i < m.size(); ++i) m(i) = keep[static_cast<std::size_t>(i)] ? 3 : 0;
    return m;
  }

  // The same mask as bool or Scalar values gives the same value.
  template <typename Loss, typename Y>
  void other_forms(const Loss& loss, const RowMat<S>& x, const Y& y, bool valid, S value) const {
    if (!present) return;
    const auto n = static_cast<Index>(keep.size());
    S v = 0;
    if (kind == 1) {
      Eigen::Matrix<bool, 1, Eigen::Dynamic> m(n);
      for (Index i = 0; i < n; ++i) m(i) = keep[static_cast<std::size_t>(i)] != 0;
      EXPECT(valid, v = loss.Evaluate(x, y, m));
    } else if (kind == 2) {
      Vec<S> m(n);
      for (Index i = 0; i < n; ++i) m(i) = keep[static_cast<std::size_t>(i)] ? S(0.5) : S(0);
      EXPECT(valid, v = loss.Evaluate(x, y, m));
    } else {
      return;
    }
    if (valid) FUZZ_REQUIRE(same(v, value));
  }
};

template <typename Loss, typename X, typename Y, typename M, typename G>
auto ewg(const Loss& loss, const X& x, const Y& y, const M* m, G&& g) {
  if (m) return loss.EvaluateWithGradient(x, y, *m, std::forward<G>(g));
  return loss.EvaluateWithGradient(x, y, std::forward<G>(g));
}
template <typename Loss, typename X, typename Y, typename M>
auto eval(const Loss& loss, const X& x, const Y& y, const M* m) {
  if (m) return loss.Evaluate(x, y, *m);
  return loss.Evaluate(x, y);
}
template <typename Loss, typename X, typename Y, typename M, typename V>
void per_row(const Loss& loss, const X& x, const Y& y, const M* m, V&& v) {
  if (m) {
    loss.EvaluatePerRow(x, y, *m, std::forward<V>(v));
  } else {
    loss.EvaluatePerRow(x, y, std::forward<V>(v));
  }
}
template <typename Loss, typename X, typename Y, typename M>
auto terms(const Loss& loss, const X& x, const Y& y, const M* m) {
  if (m) return loss.EvaluateTerms(x, y, *m);
  return loss.EvaluateTerms(x, y);
}
template <typename Loss, typename X, typename Y, typename M>
rdrop::RDropCounts count(const Loss& loss, const X& x, const Y& y, const M* m) {
  if (m) return loss.Count(x, y, *m);
  return loss.Count(x, y);
}
template <typename Loss, typename X, typename Y, typename M, typename G>
void grad(const Loss& loss, const X& x, const Y& y, const M* m, G&& g) {
  if (m) {
    loss.Gradient(x, y, *m, std::forward<G>(g));
  } else {
    loss.Gradient(x, y, std::forward<G>(g));
  }
}

template <typename S>
Tensor<S, 3> to_tensor3(const Batch<S>& b) {
  Tensor<S, 3> t(b.d0, b.t, b.c);
  std::copy(b.x.data(), b.x.data() + b.x.size(), t.data());
  return t;
}
template <typename S, int R>
RowMat<S> rows_of(const Tensor<S, R>& t, Index rows, Index cols) {
  RowMat<S> m(rows, cols);
  std::copy(t.data(), t.data() + t.size(), m.data());
  return m;
}

template <typename S, typename Task>
void fuzz_paired(FuzzedDataProvider& in, int profile) {
  const Batch<S> b = draw_batch<S>(in, profile, true);
  const CommonOptions<S> common = draw_common<S>(in);
  Task task;
  task.draw(in, common, b);
  MaskChoice<S> mask;
  mask.draw(in, b.rows());
  const Index rows = b.rows(), c = b.c, group = b.rank == 3 ? b.t : 1;

  // The constructor.
  const bool options_valid = common_valid(common) && task.options_valid();
  std::optional<typename Task::Loss> made;
  EXPECT(options_valid, made.emplace(task.make()));
  if (!made) return;
  const auto& loss = *made;

  // The oracle for the arguments of every call.
  bool valid = b.d0 % 2 == 0 && !(rows > 0 && c == 0);
  std::vector<char> has_task, padded;
  valid = valid && task.targets(b, has_task, padded);
  std::vector<char> keep(static_cast<std::size_t>(rows), 1);
  if (mask.present) {
    const auto n = static_cast<Index>(mask.keep.size());
    if (n != rows && n != rows / 2) valid = false;
    if (valid) {
      for (Index i = 0; i < n; ++i) {
        if (n == rows) {
          keep[static_cast<std::size_t>(i)] = mask.keep[static_cast<std::size_t>(i)] != 0;
        } else {
          const Pair p = pair_of(common.layout, i, rows, group);
          keep[static_cast<std::size_t>(p.first)] = keep[static_cast<std::size_t>(p.second)] =
              mask.keep[static_cast<std::size_t>(i)] != 0;
        }
      }
    }
  }
  const RowFacts<S> f = facts(b.x);
  const bool twins_only = [&] {
    if (b.d0 % 2 != 0) return false;  // no pairs to speak of
    for (Index k = 0; k < rows / 2; ++k) {
      const Pair p = pair_of(common.layout, k, rows, group);
      if (!same_all(b.x.row(p.first), b.x.row(p.second))) return false;
    }
    return true;
  }();

  // Reference call: row-major logits (a tensor for rank 3), labels as drawn,
  // resizable outputs prefilled with the sentinel.
  RowMat<S> g;  // the gradient as rows, whatever the output type
  S value = 0;
  Vec<S> values;
  const auto tensor = to_tensor3(b);
  const Eigen::VectorXi mask_ints = mask.as_ints();
  const Eigen::VectorXi* m = mask.present ? &mask_ints : nullptr;
  const auto& y = task.targets();
  [&] {
    {
      if (b.rank == 3) {
        Tensor<S, 3> gt(1, 1, 1);
        gt.setConstant(sentinel<S>);
        Tensor<S, 2> vt(1, 2);
        vt.setConstant(sentinel<S>);
        if (EXPECT(valid, value = ewg(loss, tensor, y, m, gt))) {
          FUZZ_REQUIRE(gt.dimension(0) == 1 && gt.dimension(2) == 1 && gt(0, 0, 0) == sentinel<S>);
          return;
        }
        g = rows_of(gt, rows, c);
        EXPECT(true, per_row(loss, tensor, y, m, vt));
        FUZZ_REQUIRE(vt.dimension(0) == b.d0 && vt.dimension(1) == b.t);
        values = Eigen::Map<const Vec<S>>(vt.data(), rows);
        FUZZ_REQUIRE(same(eval(loss, tensor, y, m), value));
        const Eigen::TensorMap<const Tensor<S, 3>> view(tensor.data(), b.d0, b.t, c);
        FUZZ_REQUIRE(same(eval(loss, view, y, m), value));
        return;
      }
      RowMat<S> gm = prefilled<RowMat<S>>(in);
      Vec<S> vm = prefilled<Vec<S>>(in);
      const Index gr = gm.rows(), gc = gm.cols(), vr = vm.rows();
      if (EXPECT(valid, value = ewg(loss, b.x, y, m, gm))) {
        FUZZ_REQUIRE(untouched(gm, gr, gc));
        EXPECT(false, per_row(loss, b.x, y, m, vm));
        FUZZ_REQUIRE(untouched(vm, vr, 1));
        EXPECT(false, grad(loss, b.x, y, m, gm));
        FUZZ_REQUIRE(untouched(gm, gr, gc));
        EXPECT(false, eval(loss, b.x, y, m));
        EXPECT(false, terms(loss, b.x, y, m));
        EXPECT(false, count(loss, b.x, y, m));
        return;
      }
      g = gm;
      EXPECT(true, per_row(loss, b.x, y, m, vm));
      values = vm;
      FUZZ_REQUIRE(same(eval(loss, b.x, y, m), value));
      RowMat<S> g2;
      EXPECT(true, grad(loss, b.x, y, m, g2));
      FUZZ_REQUIRE(same_all(g2, g));
      const auto t = terms(loss, b.x, y, m);
      const rdrop::RDropCounts counts = count(loss, b.x, y, m);
      FUZZ_REQUIRE(t.counts == counts);
      FUZZ_REQUIRE(same(loss.Normalize(t), value));
      FUZZ_REQUIRE(same(eval(loss.WithCounts(counts), b.x, y, m), value));
      if (twins_only && f.max_abs < 1e20L && !std::count(f.nan_or_pinf.begin(), f.nan_or_pinf.end(), 1) &&
          !std::count(f.ninf.begin(), f.ninf.end(), 1) && Task::exact_zero_on_twins) {
        FUZZ_REQUIRE(t.divergence_sum == S(0));  // D(p, p) = 0 exactly
      }

      // Other input kinds give bitwise the same value and gradient.
      const int kind = in.ConsumeIntegralInRange(0, 3);
      RowMat<S> g_other;
      S v_other = 0;
      if (kind == 0) {
        const ColMat<S> xc = b.x;
        v_other = ewg(loss, xc, y, m, g_other);
      } else if (kind == 1) {
        RowMat<S> wide = RowMat<S>::Constant(rows, c + 3, std::numeric_limits<S>::quiet_NaN());
        wide.leftCols(c) = b.x;
        const ConstStridedMap<S> view(wide.data(), rows, c, Eigen::OuterStride<>(c + 3));
        v_other = ewg(loss, view, y, m, g_other);
      } else if (kind == 2) {
        const ColMat<S> per_column = b.x.transpose();
        v_other = ewg(loss, per_column.transpose(), y, m, g_other);
      } else {
        const Eigen::TensorMap<const Tensor<S, 2>> view(b.x.data(), rows, c);
        v_other = ewg(loss, view, y, m, g_other);
      }
      FUZZ_REQUIRE(same(v_other, value));
      FUZZ_REQUIRE(same_all(g_other, g));
    }
  }();
  if (b.rank == 2) {
    task.other_forms(loss, b.x, m, valid, value);
    mask.other_forms(loss, b.x, y, valid, value);
  }
  if (!valid) return;

  // Other output kinds: the same numbers; those that cannot be resized must
  // match, else the call throws and leaves them untouched.
  if (b.rank == 2) {
    {
      {
        const int kind = in.ConsumeIntegralInRange(0, 3);
        const Index want_r = in.ConsumeIntegralInRange(0, 7) == 0 ? rows + 2 : rows;
        const Index want_c = in.ConsumeIntegralInRange(0, 7) == 0 ? c + 1 : c;
        const bool fits = want_r == rows && want_c == c;
        if (kind == 0) {
          ColMat<S> gc = ColMat<S>::Constant(2, 5, sentinel<S>);
          EXPECT(true, ewg(loss, b.x, y, m, gc));
          FUZZ_REQUIRE(same_all(gc, g));
        } else if (kind == 1) {
          RowMat<S> buffer = RowMat<S>::Constant(want_r, want_c + 2, sentinel<S>);
          StridedMap<S> view(buffer.data(), want_r, want_c, Eigen::OuterStride<>(want_c + 2));
          EXPECT(fits, ewg(loss, b.x, y, m, view));
          if (fits) {
            FUZZ_REQUIRE(same_all(buffer.leftCols(c), g));
            FUZZ_REQUIRE(cols_from_are(buffer, c, sentinel<S>));  // padding untouched
          } else {
            FUZZ_REQUIRE((buffer.array() == sentinel<S>).all());
          }
        } else if (kind == 2) {
          ColMat<S> per_column = ColMat<S>::Constant(want_c, want_r, sentinel<S>);
          EXPECT(fits, ewg(loss, b.x, y, m, per_column.transpose()));
          if (fits) {
            FUZZ_REQUIRE(same_all(per_column.transpose(), g));
          } else {
            FUZZ_REQUIRE((per_column.array() == sentinel<S>).all());
          }
        } else {
          Vec<S> buffer = Vec<S>::Constant(want_r + 1, sentinel<S>);
          Eigen::Map<Vec<S>> view(buffer.data(), want_r);
          EXPECT(want_r == rows, per_row(loss, b.x, y, m, view));
          if (want_r == rows) {
            FUZZ_REQUIRE(same_all(view, values));
            FUZZ_REQUIRE(buffer(want_r) == sentinel<S>);
          } else {
            FUZZ_REQUIRE((buffer.array() == sentinel<S>).all());
          }
        }
      }
    }
  }

  if (verbose) std::fprintf(stderr, "%s rank %d d0 %ld t %ld\n", __PRETTY_FUNCTION__, b.rank, static_cast<long>(b.d0), static_cast<long>(b.t));
  note("alpha", static_cast<double>(common.alpha));
  note("layout (0 interleaved)", static_cast<double>(common.layout));
  note("normalization", static_cast<double>(common.normalization));
  note("value", static_cast<double>(value));
  task.describe();
  show("logits", b.x);
  show("targets", task.targets());
  show("mask", mask.as_ints());
  show("gradient", g);
  show("per-row values", values);
  // What the results must be. Rows that carry a term: task rows that are
  // kept and not padding; both rows of a kept pair when α > 0.
  const bool alpha_on = common.alpha > S(0);
  std::vector<char> contributes(static_cast<std::size_t>(rows), 0);
  bool poisoned = false, any_ninf = false;
  std::vector<char> pair_clean(static_cast<std::size_t>(rows / 2), 1);
  for (Index k = 0; k < rows / 2; ++k) {
    const Pair p = pair_of(common.layout, k, rows, group);
    const auto a = static_cast<std::size_t>(p.first), bb = static_cast<std::size_t>(p.second);
    const bool kept = keep[a] && keep[bb] && !padded[a] && !padded[bb];
    for (std::size_t r : {a, bb}) {
      const bool row_kept = keep[r] && !padded[r];
      contributes[r] = (row_kept && has_task[r]) || (kept && alpha_on);
      if (contributes[r] && f.nan_or_pinf[r]) poisoned = true;
      if (contributes[r] && f.ninf[r]) any_ninf = true;
    }
    pair_clean[static_cast<std::size_t>(k)] = !f.nan_or_pinf[a] && !f.nan_or_pinf[bb] && !f.ninf[a] && !f.ninf[bb];
  }
  const bool in_bounds = bounded<S>(std::max(f.max_abs, target_max_of(task)), static_cast<long double>(common.alpha),
                                    rows, c, Task::squares);
  // (+inf is NaN for the softmax and sigmoid losses; squared errors may
  // keep it as +inf.)
  if (poisoned) FUZZ_REQUIRE(Task::squares ? !std::isfinite(value) : std::isnan(value));
  if (!poisoned && !any_ninf && in_bounds) {
    FUZZ_REQUIRE(std::isfinite(value));
    FUZZ_REQUIRE(value >= S(0));
  }
  for (Index k = 0; k < rows / 2; ++k) {
    const Pair p = pair_of(common.layout, k, rows, group);
    for (Index r : {p.first, p.second}) {
      const auto ru = static_cast<std::size_t>(r);
      if (!keep[ru] || padded[ru]) {
        // Masked (or padding) rows are not read: gradient and value exactly 0.
        FUZZ_REQUIRE((g.row(r).array() == S(0)).all());
        FUZZ_REQUIRE(values(r) == S(0));
      } else if (pair_clean[static_cast<std::size_t>(k)] && in_bounds) {
        FUZZ_REQUIRE(all_finite(g.row(r)));
        FUZZ_REQUIRE(std::isfinite(values(r)));
        if (!contributes[ru]) FUZZ_REQUIRE((g.row(r).array() == S(0)).all());
      }
    }
  }
}

// ---------------------------------------------------------------------------
// CrossEntropy.

template <typename S>
void fuzz_cross_entropy(FuzzedDataProvider& in, int profile) {
  const Batch<S> b = draw_batch<S>(in, profile, false);
  rdrop::CrossEntropyOptions<S> o;
  o.ignore_index = in.ConsumeBool() ? -100 : 0;
  o.label_smoothing = in.ConsumeBool() ? S(0) : draw_unit<S>(in);
  o.reduction = in.ConsumeBool() ? rdrop::Reduction::Mean : rdrop::Reduction::Sum;
  std::optional<rdrop::CrossEntropy<S>> made;
  EXPECT(o.label_smoothing >= S(0) && o.label_smoothing < S(1), made.emplace(o));
  if (!made) return;
  const Index rows = b.rows(), c = b.c;
  Eigen::VectorXi y(in.ConsumeIntegralInRange(0, 9) == 0 ? in.ConsumeIntegralInRange<Index>(0, 10) : rows);
  bool valid = !(rows > 0 && c == 0) && y.size() == rows;
  for (Index i = 0; i < y.size(); ++i) {
    const int k = in.ConsumeIntegralInRange(0, 12);
    y(i) = k < 10 ? (c > 0 ? in.ConsumeIntegralInRange(0, static_cast<int>(c) - 1) : 0)
                  : (k == 10 ? static_cast<int>(o.ignore_index) : (k == 11 ? static_cast<int>(c) : -5));
    if (!(y(i) == o.ignore_index || (y(i) >= 0 && y(i) < c))) valid = false;
  }
  RowMat<S> g = prefilled<RowMat<S>>(in);
  const Index gr = g.rows(), gc = g.cols();
  S value = 0;
  if (EXPECT(valid, value = made->EvaluateWithGradient(b.x, y, g))) {
    FUZZ_REQUIRE(untouched(g, gr, gc));
    return;
  }
  const ColMat<S> xc = b.x;
  FUZZ_REQUIRE(same(made->Evaluate(xc, y), value));
  Vec<S> per = Vec<S>::Constant(rows, sentinel<S>);
  Eigen::Map<Vec<S>> per_view(per.data(), rows);
  made->EvaluatePerRow(b.x, y, per_view);
  const RowFacts<S> f = facts(b.x);
  const bool in_bounds = bounded<S>(f.max_abs, 0, rows, c, false);
  bool poisoned = false, ninf = false;
  for (Index i = 0; i < rows; ++i) {
    const bool counted = y(i) != o.ignore_index;
    const auto iu = static_cast<std::size_t>(i);
    if (counted && f.nan_or_pinf[iu]) poisoned = true;
    if (counted && f.ninf[iu]) ninf = true;
    if (!counted) {
      FUZZ_REQUIRE(per(i) == S(0));
    } else if (!f.nan_or_pinf[iu] && !f.ninf[iu] && in_bounds) {
      FUZZ_REQUIRE(std::isfinite(per(i)) && per(i) >= S(0));
      FUZZ_REQUIRE(all_finite(g.row(i)));
    }
  }
  if (poisoned) FUZZ_REQUIRE(std::isnan(value));
  if (!poisoned && !ninf && in_bounds) FUZZ_REQUIRE(std::isfinite(value) && value >= S(0));
}

// ---------------------------------------------------------------------------
// The stand-alone divergences.

template <typename S, typename D>
void fuzz_divergence(FuzzedDataProvider& in, int profile) {
  const Batch<S> a = draw_batch<S>(in, profile, false);
  Batch<S> b = a;
  const int shape = in.ConsumeIntegralInRange(0, 9);
  if (shape == 0) {
    b = draw_batch<S>(in, profile, false);  // any shape: usually an error
  } else {
    for (Index i = 0; i < b.x.size(); ++i)
      if (in.ConsumeBool()) b.x.data()[i] = draw<S>(in, profile);
  }
  const D d(in.ConsumeBool() ? rdrop::Reduction::Mean : rdrop::Reduction::Sum);
  const bool valid = a.x.rows() == b.x.rows() && a.x.cols() == b.x.cols() && !(a.x.rows() > 0 && a.x.cols() == 0);
  RowMat<S> ga = prefilled<RowMat<S>>(in), gb = prefilled<RowMat<S>>(in);
  const Index r1 = ga.rows(), c1 = ga.cols(), r2 = gb.rows(), c2 = gb.cols();
  S value = 0;
  if (EXPECT(valid, value = d.EvaluateWithGradient(a.x, b.x, ga, gb))) {
    FUZZ_REQUIRE(untouched(ga, r1, c1) && untouched(gb, r2, c2));
    return;
  }
  const ColMat<S> bc = b.x;
  FUZZ_REQUIRE(same(d.Evaluate(a.x, bc), value));
  Vec<S> per;
  d.EvaluatePerRow(a.x, b.x, per);
  RowMat<S> ha, hb;
  d.Gradient(a.x, b.x, ha, hb);
  FUZZ_REQUIRE(same_all(ha, ga) && same_all(hb, gb));
  if (verbose) std::fprintf(stderr, "%s\n", __PRETTY_FUNCTION__);
  show("first", a.x);
  show("second", b.x);
  show("per pair", per);
  show("grad first", ga);
  show("grad second", gb);
  const RowFacts<S> fa = facts(a.x), fb = facts(b.x);
  constexpr bool squares = std::is_same_v<D, rdrop::SquaredError<S>>;
  const bool in_bounds = bounded<S>(std::max(fa.max_abs, fb.max_abs), 1, a.x.rows(), a.x.cols(), squares);
  bool poisoned = false, ninf = false;
  for (Index i = 0; i < a.x.rows(); ++i) {
    const auto iu = static_cast<std::size_t>(i);
    poisoned = poisoned || fa.nan_or_pinf[iu] || fb.nan_or_pinf[iu];
    const bool row_ninf = fa.ninf[iu] || fb.ninf[iu];
    ninf = ninf || row_ninf;
    if (!fa.nan_or_pinf[iu] && !fb.nan_or_pinf[iu] && !row_ninf && in_bounds) {
      FUZZ_REQUIRE(std::isfinite(per(i)) && per(i) >= S(0));
      FUZZ_REQUIRE(all_finite(ga.row(i)) && all_finite(gb.row(i)));
      if (same_all(a.x.row(i), b.x.row(i)) && !std::is_same_v<D, rdrop::JensenShannon<S>> &&
          fa.max_abs < 1e20L)
        FUZZ_REQUIRE(per(i) == S(0));
    }
  }
  // The softmax divergences are NaN for NaN/+inf rows; the Bernoulli KL and
  // the squared error work node by node, so they propagate NaN but may turn
  // +inf into +inf.
  if (poisoned && !std::is_same_v<D, rdrop::BernoulliSymmetricKL<S>> && !squares) FUZZ_REQUIRE(std::isnan(value));
  if (!poisoned && !ninf && in_bounds) FUZZ_REQUIRE(std::isfinite(value) && value >= S(0));
}

// ---------------------------------------------------------------------------
// Raw-pointer kernels: exact-size buffers so that AddressSanitizer sees any
// read or write past a row.

template <typename S>
void fuzz_kernels(FuzzedDataProvider& in, int profile) {
  const Index pairs = in.ConsumeIntegralInRange<Index>(0, 5);
  const Index c = draw_classes(in);
  const Index stride = c + in.ConsumeIntegralInRange<Index>(0, 2);
  const auto rows_size = static_cast<std::size_t>(pairs > 0 ? (pairs - 1) * stride + c : 0);
  std::vector<S> a(rows_size), b(rows_size);
  for (S& v : a) v = draw<S>(in, profile);
  for (S& v : b) v = in.ConsumeIntegralInRange(0, 3) == 0 ? draw<S>(in, profile) : v;
  for (std::size_t i = 0; i < b.size(); ++i)
    if (in.ConsumeIntegralInRange(0, 3) != 0) b[i] = a[i];  // close copies, as in R-Drop
  std::vector<rdrop::kernels::Index> la(static_cast<std::size_t>(pairs)), lb(la.size());
  for (std::size_t i = 0; i < la.size(); ++i) {
    la[i] = c > 0 && in.ConsumeBool() ? in.ConsumeIntegralInRange<Index>(0, c - 1) : -1;
    lb[i] = c > 0 && in.ConsumeBool() ? in.ConsumeIntegralInRange<Index>(0, c - 1) : -1;
  }
  rdrop::kernels::RDropPairsOptions<S> o;
  const S weights[] = {S(1), S(0), S(0.5), S(1e-3), S(3)};
  o.ce_weight = weights[in.ConsumeIntegralInRange(0, 4)];
  o.kl_weight = weights[in.ConsumeIntegralInRange(0, 4)];
  o.label_smoothing = in.ConsumeBool() ? S(0) : S(0.1);
  const bool with_grad = in.ConsumeBool();
  std::vector<S> ga(with_grad ? rows_size : 0, sentinel<S>), gb(ga.size(), sentinel<S>);
  std::vector<rdrop::kernels::PairValues<S>> per(static_cast<std::size_t>(pairs));
  const auto sums = rdrop::kernels::rdrop_pairs<S>(pairs, c, a.data(), stride, b.data(), stride, la.data(), lb.data(),
                                                   with_grad ? ga.data() : nullptr, stride,
                                                   with_grad ? gb.data() : nullptr, stride, o, per.data());
  const RowMat<S> xa = Eigen::Map<const RowMat<S>>(a.data(), 1, static_cast<Index>(a.size()));
  const RowMat<S> xb = Eigen::Map<const RowMat<S>>(b.data(), 1, static_cast<Index>(b.size()));
  const RowFacts<S> fa = facts(xa), fb = facts(xb);
  const bool clean = !fa.nan_or_pinf[0] && !fb.nan_or_pinf[0] && (xa.size() == 0 || (!fa.ninf[0] && !fb.ninf[0]));
  if (verbose) std::fprintf(stderr, "pairs %ld classes %ld stride %ld\n", static_cast<long>(pairs), static_cast<long>(c), static_cast<long>(stride));
  show("a", xa);
  show("b", xb);
  note("ce_weight", static_cast<double>(o.ce_weight));
  note("kl_weight", static_cast<double>(o.kl_weight));
  note("smoothing", static_cast<double>(o.label_smoothing));
  for (std::size_t i = 0; i < la.size(); ++i) note("label a/b", static_cast<double>(la[i] * 1000 + lb[i]));
  note("sums.cross_entropy", static_cast<double>(sums.cross_entropy));
  note("sums.symmetric_kl", static_cast<double>(sums.symmetric_kl));
  note("sums.loss", static_cast<double>(sums.loss));
  const bool in_bounds = bounded<S>(std::max(fa.max_abs, fb.max_abs), 3, 2 * pairs, c, false);
  if (clean && in_bounds) {
    FUZZ_REQUIRE(std::isfinite(sums.loss) && sums.cross_entropy >= S(0) && sums.symmetric_kl >= S(0));
    for (std::size_t i = 0; i < ga.size(); ++i) FUZZ_REQUIRE(std::isfinite(ga[i]) && std::isfinite(gb[i]));
  }
  // Each pair of the batch equals the one-pair kernel on copies of its rows.
  for (Index i = 0; i < pairs && c > 0; ++i) {
    const std::vector<S> ra(a.begin() + i * stride, a.begin() + i * stride + c);
    const std::vector<S> rb(b.begin() + i * stride, b.begin() + i * stride + c);
    rdrop::kernels::PairWeights<S> w;
    w.first = {la[static_cast<std::size_t>(i)], o.label_smoothing, o.ce_weight};
    w.second = {lb[static_cast<std::size_t>(i)], o.label_smoothing, o.ce_weight};
    w.kl_pq = w.kl_qp = S(0.5) * o.kl_weight;
    std::vector<S> ha(with_grad ? static_cast<std::size_t>(c) : 0), hb(ha.size());
    const auto v = rdrop::kernels::rdrop_pair<S>(ra.data(), rb.data(), c, w, with_grad ? ha.data() : nullptr,
                                                 with_grad ? hb.data() : nullptr);
    const auto& u = per[static_cast<std::size_t>(i)];
    FUZZ_REQUIRE(same(v.ce_first, u.ce_first) && same(v.ce_second, u.ce_second) && same(v.symmetric, u.symmetric) &&
                 same(v.kl_pq, u.kl_pq) && same(v.kl_qp, u.kl_qp));
    for (std::size_t j = 0; j < ha.size(); ++j) {
      FUZZ_REQUIRE(same(ha[j], ga[static_cast<std::size_t>(i * stride) + j]));
      FUZZ_REQUIRE(same(hb[j], gb[static_cast<std::size_t>(i * stride) + j]));
    }
  }
  // Gaps between rows (stride > classes) are never written.
  for (Index i = 0; i + 1 < pairs && with_grad; ++i)
    for (Index j = c; j < stride; ++j) FUZZ_REQUIRE(ga[static_cast<std::size_t>(i * stride + j)] == sentinel<S>);
  // The symmetric-KL batch kernel agrees with the pair sweep's S.
  std::vector<S> values(static_cast<std::size_t>(pairs), sentinel<S>);
  std::vector<S> ka(ga.size(), sentinel<S>), kb(ga.size(), sentinel<S>);
  const S total = rdrop::kernels::symmetric_kl_pairs<S>(pairs, c, a.data(), stride, b.data(), stride,
                                                        with_grad ? ka.data() : nullptr, stride,
                                                        with_grad ? kb.data() : nullptr, stride, S(1), values.data());
  for (Index i = 0; i < pairs && c > 0; ++i) FUZZ_REQUIRE(same(values[static_cast<std::size_t>(i)], per[static_cast<std::size_t>(i)].symmetric));
  if (clean && in_bounds) FUZZ_REQUIRE(std::isfinite(total) && total >= S(0));
}

// ---------------------------------------------------------------------------
// Dropout.

template <typename S>
void fuzz_dropout(FuzzedDataProvider& in, int profile) {
  const S p = draw_unit<S>(in);
  const int threads = in.ConsumeIntegralInRange(0, 4) == 0 ? -1 : in.ConsumeIntegralInRange(0, 2);
  const auto seed = in.ConsumeIntegral<std::uint64_t>();
  const auto step = in.ConsumeIntegral<std::uint64_t>();
  std::optional<rdrop::Dropout<S>> made;
  EXPECT(p >= S(0) && p < S(1) && threads >= 0, made.emplace(p, seed, threads));
  if (!made) return;
  const rdrop::Dropout<S>& drop = *made;
  const Batch<S> b = draw_batch<S>(in, profile, false);
  const Index rows = b.x.rows(), cols = b.x.cols();

  RowMat<S> mask;
  const Index mr = in.ConsumeIntegralInRange(0, 9) == 0 ? -1 : rows;
  EXPECT(mr >= 0, mask = drop.Mask(mr, cols, step));
  if (mr < 0) return;
  FUZZ_REQUIRE(mask.rows() == rows && mask.cols() == cols);
  FUZZ_REQUIRE(((mask.array() == S(0)) || (mask.array() == drop.scale())).all());

  RowMat<S> out = prefilled<RowMat<S>>(in);
  drop.Forward(b.x, out, step);
  for (Index i = 0; i < rows; ++i)
    for (Index j = 0; j < cols; ++j) {
      const S want = mask(i, j) == S(0) ? S(0) : b.x(i, j) * drop.scale();
      FUZZ_REQUIRE(same(out(i, j), want));
      if (mask(i, j) == S(0)) FUZZ_REQUIRE(!std::signbit(out(i, j)));  // +0, NaN does not leak
    }
  // Same mask whatever the layout of input and output, and in place.
  const int kind = in.ConsumeIntegralInRange(0, 3);
  if (kind == 0) {
    const ColMat<S> xc = b.x;
    ColMat<S> oc;
    drop.Forward(xc, oc, step);
    FUZZ_REQUIRE(same_all(oc, out));
  } else if (kind == 1) {
    RowMat<S> inplace = b.x;
    drop.Forward(inplace, inplace, step);
    FUZZ_REQUIRE(same_all(inplace, out));
  } else if (kind == 2) {
    const bool fits = in.ConsumeIntegralInRange(0, 3) != 0;
    const Index oc = fits ? cols : cols + 1;
    RowMat<S> buffer = RowMat<S>::Constant(rows, oc + 1, sentinel<S>);
    StridedMap<S> view(buffer.data(), rows, oc, Eigen::OuterStride<>(oc + 1));
    EXPECT(fits, drop.Backward(b.x * S(1), view, step));
    if (fits) {
      FUZZ_REQUIRE(same_all(buffer.leftCols(cols), out));
      FUZZ_REQUIRE(cols_from_are(buffer, oc, sentinel<S>));
    } else {
      FUZZ_REQUIRE((buffer.array() == sentinel<S>).all());
    }
  } else {
    ColMat<S> oc = ColMat<S>::Constant(cols, rows, sentinel<S>);
    drop.Forward(b.x, oc.transpose(), step);
    FUZZ_REQUIRE(same_all(oc.transpose(), out));
  }
}

// ---------------------------------------------------------------------------
// MeasureConsistency.

template <typename S>
void fuzz_consistency(FuzzedDataProvider& in, int profile) {
  const Batch<S> b = draw_batch<S>(in, profile, false);
  const Index rows = b.x.rows(), c = b.x.cols();
  rdrop::ConsistencyOptions o;
  o.passes = in.ConsumeIntegralInRange(-1, 4);
  o.batch_rows = in.ConsumeIntegralInRange<Index>(-1, 4);
  Eigen::VectorXi labels(in.ConsumeIntegralInRange(0, 9) == 0 ? in.ConsumeIntegralInRange<Index>(0, 10) : rows);
  bool label_too_big = false;
  for (Index i = 0; i < labels.size(); ++i) {
    labels(i) = in.ConsumeIntegralInRange(-2, static_cast<int>(c));
    label_too_big = label_too_big || labels(i) >= c;
  }
  const bool wrong_shape = in.ConsumeIntegralInRange(0, 9) == 0;
  // The input carries each row's index; forward returns that row's logits,
  // perturbed per dropout-on call.
  RowMat<S> x(rows, 1);
  for (Index i = 0; i < rows; ++i) x(i, 0) = S(i);
  int calls = 0;
  auto forward = [&](const auto& batch, bool dropout) {
    ++calls;
    RowMat<S> out(batch.rows(), wrong_shape && calls == 1 ? c + 1 : c);
    for (Index i = 0; i < batch.rows(); ++i) {
      const auto r = static_cast<Index>(batch(i, 0));
      for (Index j = 0; j < out.cols(); ++j) {
        const S base = j < c ? b.x(r, j) : S(0);
        out(i, j) = dropout ? base + S(0.125) * S((calls + j) % 3) : base;
      }
    }
    return out;
  };
  const bool valid = o.passes >= 1 && o.batch_rows >= 0 && labels.size() == rows && !wrong_shape && c > 0 &&
                     !label_too_big;
  rdrop::ConsistencyReport<S> report;
  if (EXPECT(valid, report = rdrop::MeasureConsistency(forward, x, labels, o))) return;
  show("logits", b.x);
  show("labels", labels);
  note("passes", o.passes);
  note("batch_rows", static_cast<double>(o.batch_rows));
  note("kl", static_cast<double>(report.kl));
  FUZZ_REQUIRE(report.samples == rows && report.passes == o.passes);
  const Index labeled = (labels.array() >= 0).count();
  FUZZ_REQUIRE(report.labeled == labeled);
  const RowFacts<S> f = facts(b.x);
  const bool finite_rows = std::count(f.nan_or_pinf.begin(), f.nan_or_pinf.end(), 1) == 0 &&
                           std::count(f.ninf.begin(), f.ninf.end(), 1) == 0;
  if (finite_rows && bounded<S>(f.max_abs, 0, rows, c, false)) {
    FUZZ_REQUIRE(std::isfinite(report.kl));
  }
  // KL ≥ 0 up to rounding, at any logit magnitude (log-softmaxes are formed
  // as (x − top) − log Σ; see tests/test_edge_cases.cpp, "MeasureConsistency
  // keeps its KL accurate").
  FUZZ_REQUIRE(std::isnan(report.kl) || report.kl >= -S(1e-3));
  for (S acc : {report.mc_accuracy, report.deterministic_accuracy})
    FUZZ_REQUIRE(labeled == 0 ? std::isnan(acc) : (acc >= S(0) && acc <= S(1)));
  FUZZ_REQUIRE(report.agreement >= S(0) && report.agreement <= S(1));
}

// ---------------------------------------------------------------------------
// Duplicate, FirstCopy, SecondCopy.

template <typename S>
void fuzz_duplicate(FuzzedDataProvider& in, int profile) {
  const Batch<S> b = draw_batch<S>(in, profile, false);
  const rdrop::Layout layout = in.ConsumeBool() ? rdrop::Layout::Stacked : rdrop::Layout::Interleaved;
  const RowMat<S> d = rdrop::Duplicate(b.x, layout);
  FUZZ_REQUIRE(d.rows() == 2 * b.x.rows() && d.cols() == b.x.cols());
  FUZZ_REQUIRE(same_all(rdrop::FirstCopy(d, layout), b.x) && same_all(rdrop::SecondCopy(d, layout), b.x));
  const ColMat<S> dc = rdrop::Duplicate(ColMat<S>(b.x), layout);
  FUZZ_REQUIRE(same_all(dc, d));
  FUZZ_REQUIRE(same_all(rdrop::FirstCopy(dc, layout), b.x) && same_all(rdrop::SecondCopy(dc, layout), b.x));
  // An odd number of rows cannot hold two copies.
  const bool odd = b.x.rows() % 2 != 0;
  EXPECT(!odd, (void)rdrop::FirstCopy(b.x, layout));
  EXPECT(!odd, (void)rdrop::SecondCopy(b.x, layout));
  const Eigen::VectorXi y = Eigen::VectorXi::LinSpaced(b.x.rows(), 0, static_cast<int>(b.x.rows()));
  const Eigen::VectorXi yy = rdrop::Duplicate(y, layout);
  FUZZ_REQUIRE(rdrop::FirstCopy(yy, layout) == y && rdrop::SecondCopy(yy, layout) == y);
}

template <typename S>
void run(FuzzedDataProvider& in) {
  const int profile = in.ConsumeIntegralInRange(0, 3) % 3;  // moderate twice as often
  switch (in.ConsumeIntegralInRange(0, 14)) {
    case 0: case 1: case 2:
      return fuzz_paired<S, ClassTask<S, rdrop::SymmetricKL<S>>>(in, profile);
    case 3:
      return fuzz_paired<S, ClassTask<S, rdrop::KLDivergence<S>>>(in, profile);
    case 4:
      return fuzz_paired<S, ClassTask<S, rdrop::JensenShannon<S>>>(in, profile);
    case 5:
      return fuzz_paired<S, RealTask<S, false>>(in, profile);
    case 6:
      return fuzz_paired<S, RealTask<S, true>>(in, profile);
    case 7:
      return fuzz_cross_entropy<S>(in, profile);
    case 8:
      switch (in.ConsumeIntegralInRange(0, 4)) {
        case 0: return fuzz_divergence<S, rdrop::SymmetricKL<S>>(in, profile);
        case 1: return fuzz_divergence<S, rdrop::KLDivergence<S>>(in, profile);
        case 2: return fuzz_divergence<S, rdrop::JensenShannon<S>>(in, profile);
        case 3: return fuzz_divergence<S, rdrop::BernoulliSymmetricKL<S>>(in, profile);
        default: return fuzz_divergence<S, rdrop::SquaredError<S>>(in, profile);
      }
    case 9: case 10:
      return fuzz_kernels<S>(in, profile);
    case 11:
      return fuzz_dropout<S>(in, profile);
    case 12:
      return fuzz_consistency<S>(in, profile);
    case 13:
      return fuzz_duplicate<S>(in, profile);
    default: {
      // The global thread setting: negative values throw.
      const int t = in.ConsumeIntegralInRange(-2, 3);
      EXPECT(t >= 0, rdrop::set_num_threads(t));
      if (t >= 0) FUZZ_REQUIRE(rdrop::num_threads() == t);
      rdrop::set_num_threads(0);
      return;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  verbose = std::getenv("FUZZ_RDROP_VERBOSE") != nullptr;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  if (in.ConsumeBool()) {
    run<double>(in);
  } else {
    run<float>(in);
  }
  return 0;
}
