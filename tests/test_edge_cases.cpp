// Numerical and structural edge cases: all-equal logits, one dominant logit,
// -inf in one copy only, a huge class count, rows that are not contiguous,
// the precision of float input, NaN, empty and N x 0 views; and regression
// tests for the bugs the fuzzer (tests/fuzz/fuzz_rdrop.cpp) found.
#include "support/reference.hpp"

#include <rdrop/rdrop.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace {
using ref::Index;
using ref::MatrixD;
template <typename S>
using ColMajor = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;

template <typename S>
rdrop::RDropOptions<S> paper(S alpha) {
  rdrop::RDropOptions<S> o;
  o.alpha = alpha;
  o.normalization = rdrop::Normalization::Paper;
  return o;
}

// Interleaved pairs (2i, 2i + 1) and per-row labels for ref::paper_loss.
struct Rows {
  std::vector<Index> first, second;
  std::vector<int> labels;
};
Rows interleaved(const Eigen::VectorXi& y) {
  Rows r;
  for (Index i = 0; i < y.size(); ++i) {
    r.first.push_back(2 * i);
    r.second.push_back(2 * i + 1);
    r.labels.push_back(y(i));
    r.labels.push_back(y(i));
  }
  return r;
}
}  // namespace

TEMPLATE_TEST_CASE("All-equal logits: uniform softmax, divergence exactly 0, CE = log C", "[edge]", float, double) {
  using S = TestType;
  for (const Index c : {Index(1), Index(2), Index(7), Index(1000)}) {
    CAPTURE(c);
    // Each row constant, the two copies at different levels (softmax is
    // shift invariant), one pair at -1e4.
    ref::Matrix<S> x(4, c);
    x.row(0).setConstant(S(3.25));
    x.row(1).setConstant(S(-0.5));
    x.row(2).setConstant(S(-1e4));
    x.row(3).setConstant(S(7));
    Eigen::VectorXi y(2);
    y << 0, static_cast<int>(c - 1);
    ref::Matrix<S> g;
    const rdrop::RDropLoss<S> loss(paper(S(3)));
    const rdrop::RDropTerms<S> t = loss.EvaluateTerms(x, y);
    CHECK(t.divergence_sum == S(0));
    const double log_c = std::log(static_cast<double>(c));
    CHECK(static_cast<double>(t.task_sum) == Approx(4 * log_c).margin(1e-6).epsilon(ref::tolerance<S>()));
    loss.EvaluateWithGradient(x, y, g);
    // Gradient: softmax − onehot = 1/C − onehot, with no divergence part.
    for (Index r = 0; r < 4; ++r) {
      for (Index j = 0; j < c; ++j) {
        const double want = 1.0 / static_cast<double>(c) - (j == y(r / 2) ? 1.0 : 0.0);
        CHECK(static_cast<double>(g(r, j)) == Approx(want).margin(1e-6));
      }
    }
    CHECK(rdrop::SymmetricKL<S>().Evaluate(x.topRows(2), x.bottomRows(2)) == S(0));
    CHECK(rdrop::KLDivergence<S>().Evaluate(x.topRows(2), x.bottomRows(2)) == S(0));
    // JS reads log-softmaxes that may differ in the last bit: 0 up to rounding.
    CHECK(static_cast<double>(rdrop::JensenShannon<S>().Evaluate(x.topRows(2), x.bottomRows(2))) ==
          Approx(0).margin(1e-6));
  }
}

TEMPLATE_TEST_CASE("One logit 1e4 above the rest: finite and exact", "[edge]", float, double) {
  using S = TestType;
  const Index c = 9;
  ref::Matrix<S> x = ref::random_logits<S>(6, c, 1.0, 5);
  // Pair 0: both copies dominated by class 2. Pair 1: the copies disagree
  // (class 0 against class 5). Pair 2: only the first copy has a dominant class.
  x(0, 2) += S(1e4);
  x(1, 2) += S(1e4);
  x(2, 0) += S(1e4);
  x(3, 5) += S(1e4);
  x(4, 7) += S(1e4);
  Eigen::VectorXi y(3);
  y << 2, 1, 7;
  const MatrixD xd = x.template cast<double>();
  const Rows rows = interleaved(y);
  for (const double eps : {0.0, 0.1}) {
    CAPTURE(eps);
    rdrop::RDropOptions<S> o = paper(S(1));
    o.label_smoothing = static_cast<S>(eps);
    ref::Matrix<S> g;
    const S v = rdrop::RDropLoss<S>(o).EvaluateWithGradient(x, y, g);
    REQUIRE(std::isfinite(v));
    REQUIRE(g.allFinite());
    CHECK(static_cast<double>(v) ==
          Approx(ref::paper_loss(xd, rows.first, rows.second, rows.labels, 1.0, eps)).epsilon(1e-6));
    // Softmaxes are one-hot here: |gradient| ≤ |KL| + 2 per entry.
    CHECK(g.cwiseAbs().maxCoeff() <= S(2e4));
  }
  // The disagreeing pair: KL ≈ 1e4 each way; the agreeing pair: ≈ 0.
  const S s1 = rdrop::SymmetricKL<S>().Evaluate(x.middleRows(2, 1), x.middleRows(3, 1));
  CHECK(static_cast<double>(s1) ==
        Approx(0.5 * (ref::kl(xd, 2, xd, 3) + ref::kl(xd, 3, xd, 2))).epsilon(1e-6));
  const S s0 = rdrop::SymmetricKL<S>().Evaluate(x.topRows(1), x.middleRows(1, 1));
  CHECK(std::abs(s0) <= S(1e-30));
  // Cross-entropy of the dominant class is 0, of another class 1e4 + O(1).
  CHECK(rdrop::CrossEntropy<S>().Evaluate(x.topRows(1), Eigen::VectorXi::Constant(1, 2)) == S(0));
  CHECK(static_cast<double>(rdrop::CrossEntropy<S>().Evaluate(x.topRows(1), Eigen::VectorXi::Constant(1, 4))) ==
        Approx(ref::cross_entropy(xd, 0, 4, 0.0)).epsilon(1e-6));
  // Jensen-Shannon is bounded by log 2 whatever the logits.
  const S js = rdrop::JensenShannon<S>().Evaluate(x.middleRows(2, 1), x.middleRows(3, 1));
  CHECK(js >= S(0));
  CHECK(static_cast<double>(js) <= std::log(2.0) + 1e-6);
  // Sigmoid outputs at ±1e4 are exact too.
  ref::Matrix<S> u(2, 3);
  u << S(1e4), S(-1e4), S(0.5), S(-1e4), S(1e4), S(0.5);
  ref::Matrix<S> targets(1, 3);
  targets << S(1), S(0), S(0.5);
  ref::Matrix<S> gu;
  rdrop::MultiLabelOptions<S> mo;
  mo.normalization = rdrop::Normalization::Paper;
  const S ml = rdrop::RDropMultiLabelLoss<S>(mo).EvaluateWithGradient(u, targets, gu);
  // BCE: copy 1 is right on nodes 0, 1 (0), copy 2 wrong (1e4 each); node 2
  // gives softplus(0.5) − 0.25 twice; the Bernoulli KL of nodes 0, 1 is
  // ½·1·2e4 each (p − q = ±1, u − v = ±2e4).
  const double node2 = std::log1p(std::exp(0.5)) - 0.25;
  CHECK(static_cast<double>(ml) == Approx(2e4 + 2 * node2 + 2e4).epsilon(1e-6));
  CHECK(gu.allFinite());
}

TEMPLATE_TEST_CASE("A class at -inf in one copy only: +inf divergence in that pair only", "[edge][masked]", float, double) {
  using S = TestType;
  const S inf = std::numeric_limits<S>::infinity();
  ref::Matrix<S> x = ref::random_logits<S>(6, 5, 2.0, 11);
  ref::Matrix<S> clean = x;
  x(3, 1) = -inf;  // pair 1, second copy: q_1 = 0 < p_1
  Eigen::VectorXi y(3);
  y << 0, 2, 4;
  ref::Matrix<S> g, g_clean;
  const rdrop::RDropLoss<S> loss;
  // KL(p‖q) = +inf, so S and the loss are +inf (documented in
  // docs/kl_divergence.md, "−inf logits"), never NaN.
  CHECK(loss.EvaluateWithGradient(x, y, g) == inf);
  loss.EvaluateWithGradient(clean, y, g_clean);
  // The other pairs keep exactly their gradient: the normalization depends
  // on counts, not values.
  for (const Index r : {Index(0), Index(1), Index(4), Index(5)}) CHECK(g.row(r) == g_clean.row(r));
  CHECK_FALSE(g.middleRows(2, 2).allFinite());  // documented: not finite
  Eigen::Matrix<S, Eigen::Dynamic, 1> per;
  loss.EvaluatePerRow(x, y, per);
  CHECK(per(2) == inf);
  CHECK(per(3) == inf);
  CHECK(std::isfinite(per(0)));
  // KL(q‖p) leaves the class out (q_1 = 0): finite. KL(p‖q) is +inf.
  CHECK(std::isfinite(rdrop::KLDivergence<S>().Evaluate(x.middleRows(3, 1), x.middleRows(2, 1))));
  CHECK(rdrop::KLDivergence<S>().Evaluate(x.middleRows(2, 1), x.middleRows(3, 1)) == inf);
  // Jensen-Shannon stays finite: m > 0 wherever p or q is.
  const S js = rdrop::JensenShannon<S>().Evaluate(x.middleRows(2, 1), x.middleRows(3, 1));
  CHECK(std::isfinite(js));
  CHECK(js >= S(0));
  // A label on the -inf class: CE = +inf for that row (docs/cross_entropy.md).
  Eigen::VectorXi per_row_labels(6);
  per_row_labels << 0, 0, 2, 1, 4, 4;
  CHECK(rdrop::RDropLoss<S>(paper(S(0))).Evaluate(x, per_row_labels) == inf);
}

TEMPLATE_TEST_CASE("200000 classes: exact values, gradients that sum to 0", "[edge][huge]", float, double) {
  using S = TestType;
  const Index c = 200000;
  ref::Matrix<S> x = ref::random_logits<S>(4, c, 4.0, 21);
  // The second copies close to the first, as after two dropout passes.
  const ref::Matrix<S> noise = ref::random_logits<S>(2, c, 0.05, 22);
  x.row(1) = x.row(0) + noise.row(0);
  x.row(3) = x.row(2) + noise.row(1);
  Eigen::VectorXi y(2);
  y << 123456, 7;
  const MatrixD xd = x.template cast<double>();
  // The reference, from one long-double log-softmax per row.
  std::vector<std::vector<long double>> lp;
  for (Index r = 0; r < 4; ++r) lp.push_back(ref::log_softmax(xd, r));
  const auto kl = [&](Index r, Index s) {
    long double sum = 0;
    for (Index j = 0; j < c; ++j) {
      const auto u = static_cast<std::size_t>(j);
      const auto& a = lp[static_cast<std::size_t>(r)];
      sum += std::exp(a[u]) * (a[u] - lp[static_cast<std::size_t>(s)][u]);
    }
    return static_cast<double>(sum);
  };
  const auto ce = [&](Index r) {
    return static_cast<double>(-lp[static_cast<std::size_t>(r)][static_cast<std::size_t>(y(r / 2))]);
  };
  const double sym_ref = 0.5 * (kl(0, 1) + kl(1, 0) + kl(2, 3) + kl(3, 2));
  const double ce_ref = ce(0) + ce(1) + ce(2) + ce(3);

  ref::Matrix<S> g;
  const S v = rdrop::RDropLoss<S>(paper(S(2))).EvaluateWithGradient(x, y, g);
  CHECK(static_cast<double>(v) == Approx(ce_ref + 2 * sym_ref).epsilon(std::is_same_v<S, float> ? 1e-5 : 1e-11));
  REQUIRE(g.allFinite());
  // Σ_j (p − onehot) = 0 and every KL gradient sums to 0.
  for (Index r = 0; r < 4; ++r) CHECK(std::abs(static_cast<double>(g.row(r).sum())) < 1e-4);
  // The gradient of the float loss matches the double loss on the same logits.
  MatrixD gd;
  rdrop::RDropLoss<double>(paper(2.0)).EvaluateWithGradient(xd, y, gd);
  CHECK(ref::relative_error(g.template cast<double>(), gd) < (std::is_same_v<S, float> ? 1e-5 : 1e-13));
  if constexpr (std::is_same_v<S, double>) {
    // A directional derivative by central differences.
    const MatrixD dir = ref::random_logits<double>(4, c, 1.0, 23);
    const double h = 1e-5;
    const rdrop::RDropLoss<double> loss(paper(2.0));
    const double fd = (loss.Evaluate(MatrixD(xd + h * dir), y) - loss.Evaluate(MatrixD(xd - h * dir), y)) / (2 * h);
    CHECK(fd == Approx(gd.cwiseProduct(dir).sum()).epsilon(1e-6));
  }
  const S sym = rdrop::SymmetricKL<S>(rdrop::Reduction::Sum).Evaluate(rdrop::FirstCopy(x), rdrop::SecondCopy(x));
  CHECK(static_cast<double>(sym) == Approx(sym_ref).epsilon(std::is_same_v<S, float> ? 1e-4 : 1e-10));
  const S mean_ce = rdrop::CrossEntropy<S>().Evaluate(x, rdrop::Duplicate(y));
  CHECK(static_cast<double>(mean_ce) == Approx(ce_ref / 4).epsilon(1e-5));
  CHECK(std::isfinite(rdrop::JensenShannon<S>().Evaluate(rdrop::FirstCopy(x), rdrop::SecondCopy(x))));
}

TEMPLATE_TEST_CASE("Rows that are not contiguous give bitwise the same results", "[edge][inputs]", float, double) {
  using S = TestType;
  using RowMajor = ref::Matrix<S>;
  using Strided = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
  const Index b = 5, c = 19;
  const RowMajor x = ref::random_logits<S>(2 * b, c, 3.0, 31);
  const Eigen::VectorXi y = ref::random_labels(b, static_cast<int>(c), 32);
  rdrop::RDropOptions<S> o;
  o.alpha = S(1.5);
  o.label_smoothing = S(0.05);
  const rdrop::RDropLoss<S> loss(o);
  RowMajor g;
  const S v = loss.EvaluateWithGradient(x, y, g);

  // Column-major storage, whole and as a block of a bigger matrix.
  const ColMajor<S> xc = x;
  ColMajor<S> big = ColMajor<S>::Constant(2 * b + 3, c + 2, std::numeric_limits<S>::quiet_NaN());
  big.block(1, 2, 2 * b, c) = x;
  // Row-major with a row stride, and with classes two apart (inner stride 2).
  RowMajor wide = RowMajor::Constant(2 * b, 2 * c + 1, std::numeric_limits<S>::quiet_NaN());
  for (Index j = 0; j < c; ++j) wide.col(2 * j) = x.col(j);
  const Eigen::Map<const RowMajor, 0, Strided> every_other(wide.data(), 2 * b, c, Strided(2 * c + 1, 2));

  RowMajor g2;
  CHECK(loss.EvaluateWithGradient(xc, y, g2) == v);
  CHECK(g2 == g);
  CHECK(loss.EvaluateWithGradient(big.block(1, 2, 2 * b, c), y, g2) == v);
  CHECK(g2 == g);
  CHECK(loss.EvaluateWithGradient(every_other, y, g2) == v);
  CHECK(g2 == g);

  // Gradients written through non-contiguous outputs.
  RowMajor gwide = RowMajor::Constant(2 * b, 2 * c + 1, S(9));
  Eigen::Map<RowMajor, 0, Strided> gview(gwide.data(), 2 * b, c, Strided(2 * c + 1, 2));
  CHECK(loss.EvaluateWithGradient(x, y, gview) == v);
  CHECK(RowMajor(gview) == g);
  CHECK((gwide.col(1).array() == S(9)).all());  // odd columns untouched
  ColMajor<S> gbig = ColMajor<S>::Zero(2 * b + 3, c + 2);
  loss.Gradient(x, y, gbig.block(1, 2, 2 * b, c));
  CHECK(RowMajor(gbig.block(1, 2, 2 * b, c)) == g);
  CHECK(gbig.col(0).isZero(0));

  // The copies as strided views (every other row) for the stand-alone
  // functors, against contiguous copies of the same rows.
  const RowMajor first = rdrop::FirstCopy(x), second = rdrop::SecondCopy(x);
  RowMajor ga, gb, ha, hb;
  const rdrop::SymmetricKL<S> sym;
  CHECK(sym.EvaluateWithGradient(rdrop::FirstCopy(x), rdrop::SecondCopy(x), ga, gb) ==
        sym.EvaluateWithGradient(first, second, ha, hb));
  CHECK(ga == ha);
  CHECK(gb == hb);
  const rdrop::JensenShannon<S> js;
  CHECK(js.Evaluate(rdrop::FirstCopy(xc), rdrop::SecondCopy(xc)) == js.Evaluate(first, second));
  const rdrop::CrossEntropy<S> ce;
  CHECK(ce.Evaluate(rdrop::SecondCopy(x), y) == ce.Evaluate(second, y));
  CHECK(ce.Evaluate(every_other, rdrop::Duplicate(y)) == ce.Evaluate(x, rdrop::Duplicate(y)));

  // The multi-label and regression losses read their targets the same way.
  const RowMajor t = (ref::random_logits<S>(b, c, 1.0, 33).array() * S(0.5) + S(0.5)).matrix();
  const ColMajor<S> tc = t;
  const rdrop::RDropMultiLabelLoss<S> ml;
  const rdrop::RDropRegressionLoss<S> reg;
  CHECK(ml.EvaluateWithGradient(every_other, tc, g2) == ml.EvaluateWithGradient(x, t, ga));
  CHECK(g2 == ga);
  CHECK(reg.EvaluateWithGradient(big.block(1, 2, 2 * b, c), tc, g2) == reg.EvaluateWithGradient(x, t, ga));
  CHECK(g2 == ga);
}

TEMPLATE_TEST_CASE("Float logits: per-row work in double keeps the fused losses accurate", "[edge][precision]",
                   float, double) {
  // docs/inputs_and_errors.md, "Precision": the fused softmax sweep
  // (RDropLoss with SymmetricKL or KLDivergence, SymmetricKL, KLDivergence,
  // rdrop::kernels) computes each row's log-sum-exp, the gap between the
  // copies and the cross-entropy in double for float rows. Logits offset by
  // 1e4 (float spacing there: 1e-3) therefore give the cross-entropy and a
  // tiny symmetric KL to float precision of the result, not of the logits.
  using S = TestType;
  const Index c = 50;
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(-3, 3);
  ref::Matrix<S> x(2, c);
  for (Index j = 0; j < c; ++j) {
    x(0, j) = static_cast<S>(1e4 + u(rng));
    x(1, j) = x(0, j) + static_cast<S>(0.001 * std::round(u(rng)));
  }
  Eigen::VectorXi y(1);
  y << 3;
  const MatrixD xd = x.template cast<double>();  // the same numbers, in double
  const rdrop::RDropTerms<S> t = rdrop::RDropLoss<S>(paper(S(1))).EvaluateTerms(x, y);
  const rdrop::RDropTerms<double> td = rdrop::RDropLoss<double>(paper(1.0)).EvaluateTerms(xd, y);
  const double ce_ref = ref::cross_entropy(xd, 0, 3, 0.0) + ref::cross_entropy(xd, 1, 3, 0.0);
  const double sym_ref = 0.5 * (ref::kl(xd, 0, xd, 1) + ref::kl(xd, 1, xd, 0));
  CHECK(std::abs(td.task_sum - ce_ref) < 1e-10);
  // Float: about 1e-6 absolute on a CE of ~15; rounding each row's
  // log-sum-exp (~1e4) to float would cost up to 5e-4.
  CHECK(std::abs(static_cast<double>(t.task_sum) - ce_ref) < 1e-5);
  CHECK(static_cast<double>(t.divergence_sum) == Approx(sym_ref).epsilon(std::is_same_v<S, float> ? 1e-4 : 1e-8));
  const S sym = rdrop::SymmetricKL<S>().Evaluate(x.topRows(1), x.bottomRows(1));
  CHECK(static_cast<double>(sym) == Approx(sym_ref).epsilon(std::is_same_v<S, float> ? 1e-4 : 1e-8));
}

TEMPLATE_TEST_CASE("NaN: a NaN result where the row takes part, nothing where it does not", "[edge][nan]", float,
                   double) {
  using S = TestType;
  const S nan = std::numeric_limits<S>::quiet_NaN();
  ref::Matrix<S> x = ref::random_logits<S>(6, 4, 1.0, 41);
  x(3, 2) = nan;  // pair 1, second copy
  Eigen::VectorXi y(3);
  y << 0, 1, 2;
  ref::Matrix<S> g;
  const rdrop::RDropLoss<S> loss;
  CHECK(std::isnan(loss.EvaluateWithGradient(x, y, g)));
  CHECK(g.topRows(2).allFinite());
  CHECK(g.bottomRows(2).allFinite());
  // Masked: never read, gradient exactly 0, loss finite.
  Eigen::VectorXi keep(3);
  keep << 1, 0, 1;
  CHECK(std::isfinite(loss.EvaluateWithGradient(x, y, keep, g)));
  CHECK(g.middleRows(2, 2).isZero(0));
  // Padding (a mask given through the labels): the same.
  rdrop::RDropOptions<S> o;
  o.padding_index = -1;
  Eigen::VectorXi y_pad(3);
  y_pad << 0, -1, 2;
  CHECK(std::isfinite(rdrop::RDropLoss<S>(o).EvaluateWithGradient(x, y_pad, g)));
  CHECK(g.middleRows(2, 2).isZero(0));
  // Unlabeled (ignore label): the divergence still reads the row.
  Eigen::VectorXi y_ignored(3);
  y_ignored << 0, -100, 2;
  CHECK(std::isnan(loss.Evaluate(x, y_ignored)));
  // +inf behaves as NaN (inf − inf in the max shift).
  x(3, 2) = std::numeric_limits<S>::infinity();
  CHECK(std::isnan(loss.Evaluate(x, y)));
  CHECK(std::isnan(rdrop::JensenShannon<S>().Evaluate(x.middleRows(2, 1), x.middleRows(3, 1))));
  x(3, 2) = nan;
  CHECK(std::isnan(rdrop::JensenShannon<S>().Evaluate(x.middleRows(2, 1), x.middleRows(3, 1))));
  CHECK(std::isnan(rdrop::RDropMultiLabelLoss<S>().Evaluate(x, ref::Matrix<S>::Zero(3, 4))));
  CHECK(std::isnan(rdrop::RDropRegressionLoss<S>().Evaluate(x, ref::Matrix<S>::Zero(3, 4))));
}

TEMPLATE_TEST_CASE("Empty and N x 0 matrices: duplication and copy views", "[edge][empty][regression]", float,
                   double) {
  // Regression (fuzzer): FirstCopy/SecondCopy offset the null data()
  // pointer of an empty matrix, and Duplicate called Eigen's row() on
  // N x 0 matrices (undefined behaviour; UBSan flagged both).
  using S = TestType;
  for (const Index rows : {Index(0), Index(4)}) {
    for (const Index cols : {Index(0), Index(3)}) {
      if (rows > 0 && cols > 0) continue;
      const ref::Matrix<S> x(rows, cols);
      const ColMajor<S> xc(rows, cols);
      for (const auto layout : {rdrop::Layout::Interleaved, rdrop::Layout::Stacked}) {
        CHECK(rdrop::Duplicate(x, layout).rows() == 2 * rows);
        CHECK(rdrop::Duplicate(xc, layout).cols() == cols);
        CHECK(rdrop::FirstCopy(x, layout).rows() == rows / 2);
        CHECK(rdrop::SecondCopy(xc, layout).rows() == rows / 2);
        CHECK(rdrop::SecondCopy(xc, layout).cols() == cols);
      }
    }
  }
  const Eigen::VectorXi none(0);
  CHECK(rdrop::Duplicate(none).size() == 0);
  CHECK(rdrop::SecondCopy(none).size() == 0);
}

TEMPLATE_TEST_CASE("An infinite alpha is rejected", "[edge][errors][regression]", float, double) {
  // Regression (fuzzer): α = +inf passed the α >= 0 check and turned every
  // loss into inf or NaN (inf · 0 for equal copies).
  using S = TestType;
  const S inf = std::numeric_limits<S>::infinity();
  rdrop::RDropOptions<S> o;
  o.alpha = inf;
  CHECK_THROWS_AS(rdrop::RDropLoss<S>(o), std::invalid_argument);
  rdrop::MultiLabelOptions<S> mo;
  mo.alpha = inf;
  CHECK_THROWS_AS(rdrop::RDropMultiLabelLoss<S>(mo), std::invalid_argument);
  rdrop::RegressionOptions<S> ro;
  ro.alpha = inf;
  CHECK_THROWS_AS(rdrop::RDropRegressionLoss<S>(ro), std::invalid_argument);
  o.alpha = std::numeric_limits<S>::max();  // huge but finite: accepted
  CHECK_NOTHROW(rdrop::RDropLoss<S>(o));
}

TEMPLATE_TEST_CASE("Jensen-Shannon: exactly 0 on equal rows, never negative", "[edge][regression]", float, double) {
  // Regression (fuzzer): JS of equal float rows [-1.375, -0] came out as
  // -1.19e-8 (log m was formed as hi + log1p(..) − log 2, which does not
  // round back to hi).
  using S = TestType;
  ref::Matrix<S> a(1, 2);
  a << S(-1.375), S(-0.0);
  const rdrop::JensenShannon<S> js;
  ref::Matrix<S> ga, gb;
  CHECK(js.EvaluateWithGradient(a, a, ga, gb) == S(0));
  CHECK(ga.isZero(0));
  CHECK(gb.isZero(0));
  const ref::Matrix<S> x = ref::random_logits<S>(64, 33, 6.0, 51);
  ref::Matrix<S> y = x;
  y(0, 0) = std::nextafter(y(0, 0), S(10));  // nearly equal rows
  Eigen::Matrix<S, Eigen::Dynamic, 1> per;
  js.EvaluatePerRow(x, x, per);
  CHECK(per.isZero(0));
  js.EvaluatePerRow(x, y, per);
  CHECK((per.array() >= S(0)).all());
  CHECK(per(0) >= S(0));
}

TEMPLATE_TEST_CASE("KL of near one-hot rows is never negative", "[edge][regression][kernels]", float, double) {
  // Fuzzer finding in the fused softmax sweep (detail/softmax_kernels.hpp):
  // with both rows one-hot up to exp(-1e4), KL(p‖q) came out as -8.8e-39 in
  // float. A divergence is never negative.
  using S = TestType;
  ref::Matrix<S> a(1, 3), b(1, 3);
  a << S(-2.4375), S(-1e4), S(-1e4);
  b << S(-3.9375), S(-1e4), S(-1e4);
  CHECK(rdrop::KLDivergence<S>().Evaluate(a, b) >= S(0));
  CHECK(rdrop::KLDivergence<S>().Evaluate(b, a) >= S(0));
  CHECK(rdrop::SymmetricKL<S>().Evaluate(a, b) >= S(0));
}

TEMPLATE_TEST_CASE("NaN at the same class of both copies still gives NaN", "[edge][nan][regression][kernels]", float,
                   double) {
  // Fuzzer finding in the fused softmax sweep (detail/softmax_kernels.hpp):
  // its masked pass keeps exp(x − max) only where x > −inf, which drops a
  // NaN logit like a −inf one. When both copies hold NaN at the same class
  // (a model that emits NaN does that), the NaN vanished: KL 0, a finite
  // loss. The documented contract (docs/inputs_and_errors.md) is NaN.
  using S = TestType;
  const S nan = std::numeric_limits<S>::quiet_NaN();
  ref::Matrix<S> x(2, 3);
  x << S(5.8125), S(1.625), nan, S(5.8125), S(1.625), nan;
  CHECK(std::isnan(rdrop::KLDivergence<S>().Evaluate(x.topRows(1), x.bottomRows(1))));
  CHECK(std::isnan(rdrop::SymmetricKL<S>().Evaluate(x.topRows(1), x.bottomRows(1))));
  x(1, 0) = S(-2);  // the copies differ elsewhere
  CHECK(std::isnan(rdrop::SymmetricKL<S>().Evaluate(x.topRows(1), x.bottomRows(1))));
  const Eigen::VectorXi y = Eigen::VectorXi::Zero(1);
  ref::Matrix<S> g;
  CHECK(std::isnan(rdrop::RDropLoss<S>().EvaluateWithGradient(x, y, g)));
  x.setConstant(nan);  // whole rows
  CHECK(std::isnan(rdrop::RDropLoss<S>().EvaluateWithGradient(x, y, g)));
}

TEMPLATE_TEST_CASE("MeasureConsistency keeps its KL accurate for large logits", "[edge][regression][consistency]",
                   float, double) {
  // Fuzzer finding in rdrop/consistency.hpp: log_sum_exp returned
  // top + log Σ exp(x − top) in Scalar and the log-softmax was formed as
  // x − lse, so every log-probability carried the rounding of lse, about
  // ε·|top|: 5e-4 for float logits near 1e4, 0.06 for double logits near
  // 1e15. The KL of nearly equal distributions then came out wrong, even
  // negative (−2.3e-3 for double logits of −1e15). Forming
  // (x − top) − log Σ exp(x − top) keeps it exact.
  using S = TestType;
  const double offset = std::is_same_v<S, float> ? 1e4 : 1e12;
  const int c = 5;
  ref::Matrix<S> off(1, c);
  for (int j = 0; j < c; ++j) off(0, j) = static_cast<S>(offset + 0.5 * j);
  int pass = 0;
  const auto forward = [&](const auto& rows, bool dropout) {
    ref::Matrix<S> out = off.topRows(rows.rows());
    if (dropout) {
      ++pass;
      out(0, pass % c) += S(1);  // representable steps at this offset
    }
    return out;
  };
  const Eigen::VectorXi labels = Eigen::VectorXi::Constant(1, -1);
  const ref::Matrix<S> input = ref::Matrix<S>::Zero(1, 1);
  rdrop::ConsistencyOptions options;
  options.passes = 3;
  const auto report = rdrop::MeasureConsistency(forward, input, labels, options);
  // The same KL in long double from the same Scalar logits.
  const auto log_softmax = [&](const ref::Matrix<S>& row) {
    long double top = row(0, 0), sum = 0;
    for (int j = 1; j < c; ++j) top = std::max(top, static_cast<long double>(row(0, j)));
    for (int j = 0; j < c; ++j) sum += std::exp(static_cast<long double>(row(0, j)) - top);
    std::vector<long double> out(c);
    for (int j = 0; j < c; ++j) out[static_cast<std::size_t>(j)] = (row(0, j) - top) - std::log(sum);
    return out;
  };
  std::vector<long double> m(c, 0.0L);
  for (int k = 1; k <= 3; ++k) {
    ref::Matrix<S> on = off;
    on(0, k % c) += S(1);
    const auto lp = log_softmax(on);
    for (int j = 0; j < c; ++j) m[static_cast<std::size_t>(j)] += std::exp(lp[static_cast<std::size_t>(j)]) / 3;
  }
  const auto ld = log_softmax(off);
  long double kl = 0;
  for (int j = 0; j < c; ++j)
    kl += m[static_cast<std::size_t>(j)] * (std::log(m[static_cast<std::size_t>(j)]) - ld[static_cast<std::size_t>(j)]);
  CHECK(report.kl >= S(0));
  CHECK(static_cast<double>(report.kl) == Approx(static_cast<double>(kl)).epsilon(1e-4));
}

TEMPLATE_TEST_CASE("Cross-entropy of one copy does not depend on the other copy's magnitude",
                   "[edge][regression][kernels]", float, double) {
  // Fuzzer finding in the fused softmax sweep (detail/softmax_kernels.hpp):
  // the second copy's log-sum-exp is taken as lse(a) − gap, which cancels
  // catastrophically when the first copy's logits are far larger in
  // magnitude: with a = [−1e30] (float) and b = [6.1875], one class each,
  // CE(b) came out −6.1875 instead of 0. A cross-entropy is never negative.
  using S = TestType;
  const S big = std::is_same_v<S, float> ? S(1e30) : S(1e20);
  const Eigen::VectorXi y = Eigen::VectorXi::Zero(1);
  ref::Matrix<S> x(2, 1);
  x << -big, S(6.1875);  // one class: CE = 0 whatever the logit
  const rdrop::RDropTerms<S> t = rdrop::RDropLoss<S>(paper(S(1))).EvaluateTerms(x, y);
  CHECK(t.task_sum == S(0));
  // Five classes, smoothing 0.1, only the second copy labeled.
  ref::Matrix<S> z(2, 5);
  z << S(5.25), S(-4.9375), big, S(6.1875), S(6.1875), S(5.25), S(0), S(0), S(6.1875), S(0);
  Eigen::VectorXi per_row(2);
  per_row << -100, 0;
  rdrop::RDropOptions<S> o = paper(S(1));
  o.label_smoothing = S(0.1);
  const rdrop::RDropTerms<S> u = rdrop::RDropLoss<S>(o).EvaluateTerms(z, per_row);
  const MatrixD zd = z.template cast<double>();
  CHECK(u.task_sum >= S(0));
  CHECK(static_cast<double>(u.task_sum) == Approx(ref::cross_entropy(zd, 1, 0, 0.1)).epsilon(1e-5));
}

TEMPLATE_TEST_CASE("Label smoothing on huge logits: the cross-entropy stays exact and non-negative",
                   "[edge][regression][kernels]", float, double) {
  // Fuzzer finding (CI, seed 1): all 1031 logits of both copies at 1e30,
  // smoothing 0.1. The smoothing part lse − mean x was formed from Σ x, whose
  // rounding at 1e30 (an ulp is ~1e14 in double) left it at −7e13 per row;
  // its true value is log C. Now the mean is taken of x − max, like the exps.
  using S = TestType;
  rdrop::RDropOptions<S> o = paper(S(1));
  o.label_smoothing = S(0.1);
  const rdrop::RDropLoss<S> loss(o);
  const Index c = 1031;
  const ref::Matrix<S> x = ref::Matrix<S>::Constant(2, c, S(1e30));
  const Eigen::VectorXi y = Eigen::VectorXi::Constant(1, 197);
  const rdrop::RDropTerms<S> t = loss.EvaluateTerms(x, y);
  // Uniform softmax: CE = log C whatever the target; both copies.
  CHECK(static_cast<double>(t.task_sum) == Approx(2 * std::log(double(c))).epsilon(1e-6));
  CHECK(t.divergence_sum == S(0));
  // Through the per-row kernel as well (a sequence loss takes that path).
  rdrop::CrossEntropyOptions<S> smoothed;
  smoothed.label_smoothing = S(0.1);
  const ref::Matrix<S> one_row = x.topRows(1);
  CHECK(static_cast<double>(rdrop::CrossEntropy<S>(smoothed).Evaluate(one_row, y)) ==
        Approx(std::log(double(c))).epsilon(1e-6));

  // A dominant target outside the first packet: the exps are shifted by the
  // first packet's max, and x_y − shift rounds; CE ≈ 0 must not come out < 0.
  for (const double top : {50.3, 37.77, 61.1, 23.456}) {
    CAPTURE(top);
    ref::Matrix<S> z = ref::Matrix<S>::Constant(2, 64, S(0.1));
    z(0, 63) = static_cast<S>(top);
    z(1, 63) = static_cast<S>(top);
    const Eigen::VectorXi last = Eigen::VectorXi::Constant(1, 63);
    for (const S eps : {S(0), S(0.1)}) {
      rdrop::RDropOptions<S> oe = paper(S(1));
      oe.label_smoothing = eps;
      const rdrop::RDropTerms<S> u = rdrop::RDropLoss<S>(oe).EvaluateTerms(z, last);
      CHECK(u.task_sum >= S(0));
      const double want = 2 * ref::cross_entropy(z.template cast<double>(), 0, 63, double(eps));
      CHECK(static_cast<double>(u.task_sum) == Approx(want).margin(1e-5));
    }
  }
}
