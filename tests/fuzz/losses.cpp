// Fuzz family "losses": RDropLoss under SymmetricKL, KLDivergence and
// JensenShannon, RDropMultiLabelLoss and RDropRegressionLoss, each through
// the paired-loss driver (paired.hpp) with its Task, and CrossEntropy.
#include "paired.hpp"

#include <cmath>
#include <cstddef>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

namespace fuzz::losses {
namespace {

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
      const S v = fuzz::draw<S>(in, profile);
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

}  // namespace

template <typename S>
void run(FuzzedDataProvider& in, int profile, int variant) {
  switch (variant) {
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
    default:
      return fuzz_cross_entropy<S>(in, profile);
  }
}

template void run<float>(FuzzedDataProvider&, int, int);
template void run<double>(FuzzedDataProvider&, int, int);

}  // namespace fuzz::losses
