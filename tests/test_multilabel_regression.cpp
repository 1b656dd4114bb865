// Multi-label (sigmoid) and regression R-Drop, the Jensen–Shannon
// divergence, and a user's divergence in each of them.
#include "support/reference.hpp"

#include <rdrop/rdrop.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

namespace {
using ref::Index;
using ref::MatrixD;

long double sigmoid(long double u) { return 1.0L / (1.0L + std::exp(-u)); }

// Σ_j softplus(u_j) − t_j u_j, from the definition −t log σ(u) − (1−t) log(1−σ(u)).
double bce_row(const MatrixD& u, Index r, const MatrixD& t, Index tr) {
  long double s = 0;
  for (Index j = 0; j < u.cols(); ++j) {
    const long double p = sigmoid(u(r, j));
    s -= t(tr, j) * std::log(p) + (1 - t(tr, j)) * std::log(1 - p);
  }
  return static_cast<double>(s);
}

// ½[KL(p‖q) + KL(q‖p)] per node from the Bernoulli definition, summed.
double bernoulli_sym_kl(const MatrixD& x, Index a, Index b) {
  long double s = 0;
  for (Index j = 0; j < x.cols(); ++j) {
    const long double p = sigmoid(x(a, j)), q = sigmoid(x(b, j));
    s += 0.5L * (p * std::log(p / q) + (1 - p) * std::log((1 - p) / (1 - q)) + q * std::log(q / p) +
                 (1 - q) * std::log((1 - q) / (1 - p)));
  }
  return static_cast<double>(s);
}

// JS(p, q) from its definition with m = (p + q)/2.
double js(const MatrixD& x, Index a, Index b) {
  const auto lp = ref::log_softmax(x, a), lq = ref::log_softmax(x, b);
  long double s = 0;
  for (std::size_t j = 0; j < lp.size(); ++j) {
    const long double p = std::exp(lp[j]), q = std::exp(lq[j]), m = (p + q) / 2;
    if (p > 0) s += 0.5L * p * std::log(p / m);
    if (q > 0) s += 0.5L * q * std::log(q / m);
  }
  return static_cast<double>(s);
}

// A user's divergence: a weighted L2 distance between softmax probabilities
// would do, but the point is only that it is written against the concept.
template <typename Scalar>
struct ScaledSquaredDistance : rdrop::PairedDivergence<ScaledSquaredDistance<Scalar>, Scalar> {
  Scalar scale = Scalar(3);
  Scalar EvaluatePair(rdrop::ConstRowMap<Scalar> a, rdrop::ConstRowMap<Scalar> b) const {
    return scale * (a - b).square().sum();
  }
  Scalar EvaluatePairWithGradient(rdrop::ConstRowMap<Scalar> a, rdrop::ConstRowMap<Scalar> b,
                                  rdrop::RowMap<Scalar>& ga, rdrop::RowMap<Scalar>& gb) const {
    ga = Scalar(2) * scale * (a - b);
    gb = -ga;
    return EvaluatePair(a, b);
  }
};

}  // namespace

TEMPLATE_TEST_CASE("Multi-label R-Drop matches the Bernoulli definitions", "[multilabel]", float, double) {
  using S = TestType;
  const Index b = 5, k = 6;
  const auto x = ref::random_logits<S>(2 * b, k, 3.0, 501);
  ref::Matrix<S> t = (ref::random_logits<S>(b, k, 1.0, 502).array() > S(0)).template cast<S>();
  t(0, 0) = S(0.3);  // soft targets are allowed
  rdrop::MultiLabelOptions<S> o;
  o.alpha = S(2);
  o.normalization = rdrop::Normalization::Paper;
  const rdrop::RDropMultiLabelLoss<S> loss(o);
  ref::Matrix<S> g;
  const S v = loss.EvaluateWithGradient(x, t, g);
  const MatrixD xd = x.template cast<double>(), td = t.template cast<double>();
  double expected = 0;
  for (Index i = 0; i < b; ++i) {
    expected += bce_row(xd, 2 * i, td, i) + bce_row(xd, 2 * i + 1, td, i);
    expected += 2 * bernoulli_sym_kl(xd, 2 * i, 2 * i + 1);
  }
  CHECK(static_cast<double>(v) == Approx(expected).epsilon(std::is_same_v<S, float> ? 1e-5 : 1e-12));
  if constexpr (std::is_same_v<S, double>) {
    CHECK(ref::relative_error(g, ref::numeric_gradient([&](const MatrixD& z) { return loss.Evaluate(z, t); }, x)) <
          1e-6);
    // Targets once per row give the same result as once per sample.
    CHECK(loss.Evaluate(x, rdrop::Duplicate(t)) == Approx(static_cast<double>(v)).epsilon(1e-14));
  }
}

TEMPLATE_TEST_CASE("Multi-label R-Drop is exact for logits of magnitude 1e4", "[multilabel][stability]", float,
                   double) {
  using S = TestType;
  ref::Matrix<S> x(2, 3);
  x << S(1e4), S(-1e4), S(3), S(-1e4), S(1e4), S(3);
  ref::Matrix<S> t(1, 3);
  t << S(1), S(0), S(1);
  rdrop::MultiLabelOptions<S> o;
  o.normalization = rdrop::Normalization::Paper;
  ref::Matrix<S> g;
  const S v = rdrop::RDropMultiLabelLoss<S>(o).EvaluateWithGradient(x, t, g);
  REQUIRE(std::isfinite(v));
  REQUIRE(g.allFinite());
  // Row 0 is right on both extreme nodes, row 1 wrong by 1e4 on each; the
  // divergence ½(p − q)(u − v) is ½·1·2e4 per extreme node; node 3 agrees.
  const double softplus3 = std::log1p(std::exp(-3.0));
  const double expected = (0 + 0 + softplus3) + (1e4 + 1e4 + softplus3) + 2 * 0.5 * 2e4;
  CHECK(static_cast<double>(v) == Approx(expected).epsilon(1e-6));
  CHECK(static_cast<double>(rdrop::BernoulliSymmetricKL<S>().EvaluatePair(
            rdrop::ConstRowMap<S>(x.row(0).data(), 3), rdrop::ConstRowMap<S>(x.row(1).data(), 3))) ==
        Approx(2e4).epsilon(1e-6));
}

// Eigen evaluates the logistic function one way in packets and another in
// scalars (below -9 through exp, which the packet path clamps), and which
// elements of an assignment go by packets depends on where the destination
// starts. The gradient must not depend on where it is written: found by the
// fuzz family two_byte (a bf16 gradient, staged through an aligned scratch
// row, held 0 where the float gradient held 1.47e-39).
TEST_CASE("Multi-label gradients are bitwise the same wherever they are written", "[multilabel][gradient]") {
  using Matrix = ref::Matrix<float>;
  Matrix x = Matrix::Constant(2, 15, -9984.f);
  x(0, 11) = 0.f;
  Matrix t = Matrix::Constant(1, 15, 0.5f);
  t(0, 12) = 0.f;
  rdrop::MultiLabelOptions<float> o;
  o.alpha = 4.f;
  o.layout = rdrop::Layout::Stacked;
  o.threads = 1;
  const rdrop::RDropMultiLabelLoss<float> loss(o);
  Matrix g;
  const float v = loss.EvaluateWithGradient(x, t, g);
  // Every row start from 0 to 3 floats past a 16-byte boundary.
  for (Index stride = 15; stride <= 18; ++stride) {
    for (Index offset = 0; offset < 4; ++offset) {
      CAPTURE(stride, offset);
      Matrix buffer = Matrix::Zero(2, 24);
      Eigen::Map<Matrix, 0, Eigen::OuterStride<>> view(buffer.data() + offset, 2, 15, Eigen::OuterStride<>(stride));
      CHECK(loss.EvaluateWithGradient(x, t, view) == v);
      CHECK((view.array() == g.array()).all());
    }
  }
  // The divergence on its own.
  const rdrop::BernoulliSymmetricKL<float> d;
  Matrix ga, gb;
  d.EvaluateWithGradient(x.topRows(1), x.bottomRows(1), ga, gb);
  Matrix buffer = Matrix::Zero(2, 17);
  Eigen::Map<Matrix> va(buffer.data() + 1, 1, 15), vb(buffer.data() + 18, 1, 15);
  d.EvaluateWithGradient(x.topRows(1), x.bottomRows(1), va, vb);
  CHECK((va.array() == ga.array()).all());
  CHECK((vb.array() == gb.array()).all());
  // A bf16 gradient (computed in an aligned scratch row) is the float one
  // rounded once.
  using BF16Matrix = Eigen::Matrix<Eigen::bfloat16, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  BF16Matrix gh;
  loss.EvaluateWithGradient(x.cast<Eigen::bfloat16>(), t, gh);
  CHECK((gh.cast<float>().array() == g.cast<Eigen::bfloat16>().cast<float>().array()).all());
}

TEST_CASE("Multi-label targets are checked", "[multilabel][errors]") {
  const MatrixD x = MatrixD::Zero(4, 3);
  MatrixD t = MatrixD::Zero(2, 3);
  t(1, 2) = 1.5;
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(rdrop::RDropMultiLabelLoss<double>().Evaluate(x, t), Contains("row 1") && Contains("[0, 1]"));
  const MatrixD wrong = MatrixD::Zero(3, 3);
  CHECK_THROWS_WITH(rdrop::RDropMultiLabelLoss<double>().Evaluate(x, wrong),
                    Contains("'targets' has shape [3 x 3]") && Contains("2 (one per sample) or 4"));
  MatrixD y = MatrixD::Zero(2, 3);
  y(0, 1) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(rdrop::RDropRegressionLoss<double>().Evaluate(x, y), Contains("not finite"));
}

TEMPLATE_TEST_CASE("Regression R-Drop: squared error on both copies plus alpha times their distance",
                   "[regression]", float, double) {
  using S = TestType;
  const Index b = 4, k = 3;
  const auto f = ref::random_logits<S>(2 * b, k, 2.0, 511);
  const auto y = ref::random_logits<S>(b, k, 2.0, 512);
  const auto layout = GENERATE(rdrop::Layout::Interleaved, rdrop::Layout::Stacked);
  rdrop::RegressionOptions<S> o;
  o.alpha = S(0.5);
  o.layout = layout;
  o.normalization = rdrop::Normalization::Paper;
  const rdrop::RDropRegressionLoss<S> loss(o);
  ref::Matrix<S> g;
  const S v = loss.EvaluateWithGradient(f, y, g);
  const MatrixD fd = f.template cast<double>(), yd = y.template cast<double>();
  double expected = 0;
  for (Index i = 0; i < b; ++i) {
    const Index a = layout == rdrop::Layout::Interleaved ? 2 * i : i;
    const Index c = layout == rdrop::Layout::Interleaved ? 2 * i + 1 : b + i;
    expected += (fd.row(a) - yd.row(i)).squaredNorm() + (fd.row(c) - yd.row(i)).squaredNorm();
    expected += 0.5 / 2 * 2 * (fd.row(a) - fd.row(c)).squaredNorm();  // α/2 [D(f2,f1) + D(f1,f2)]
  }
  CHECK(static_cast<double>(v) == Approx(expected).epsilon(ref::tolerance<S>()));
  if constexpr (std::is_same_v<S, double>) {
    CHECK(ref::relative_error(g, ref::numeric_gradient([&](const MatrixD& z) { return loss.Evaluate(z, y); }, f)) <
          1e-6);
  }
}

TEMPLATE_TEST_CASE("Jensen-Shannon: definition, bounds, symmetry, masked classes", "[jensen_shannon]", float,
                   double) {
  using S = TestType;
  const Index n = 6, c = 9;
  ref::Matrix<S> a = ref::random_logits<S>(n, c, 3.0, 521);
  ref::Matrix<S> b = ref::random_logits<S>(n, c, 3.0, 522);
  a.col(8).setConstant(-std::numeric_limits<S>::infinity());
  b.col(8).setConstant(-std::numeric_limits<S>::infinity());
  Eigen::Matrix<S, Eigen::Dynamic, 1> ab, ba;
  rdrop::JensenShannon<S>().EvaluatePerRow(a, b, ab);
  rdrop::JensenShannon<S>().EvaluatePerRow(b, a, ba);
  ref::Matrix<S> both(2 * n, c);
  both << a, b;
  const MatrixD d = both.template cast<double>();
  for (Index i = 0; i < n; ++i) {
    CHECK(static_cast<double>(ab(i)) == Approx(js(d, i, n + i)).epsilon(ref::tolerance<S>() * 10));
    CHECK(ab(i) >= S(0));
    CHECK(ab(i) <= S(std::log(2.0)));
  }
  CHECK(ab.isApprox(ba, static_cast<S>(ref::tolerance<S>())));
  CHECK(rdrop::JensenShannon<S>().Evaluate(a, a) == S(0));
}

TEST_CASE("Jensen-Shannon gradients and its use as R-Drop's divergence", "[jensen_shannon][gradient]") {
  const Index b = 4, c = 5;
  const MatrixD x = ref::random_logits<double>(2 * b, c, 2.0, 531);
  const Eigen::VectorXi y = ref::random_labels(b, static_cast<int>(c), 532);
  rdrop::RDropOptions<double> o;
  o.alpha = 4;
  o.normalization = rdrop::Normalization::Paper;
  const rdrop::RDropLoss<double, rdrop::JensenShannon<double>> loss(o);
  MatrixD g;
  const double v = loss.EvaluateWithGradient(x, y, g);
  double expected = 0;
  for (Index i = 0; i < b; ++i) {
    expected += ref::cross_entropy(x, 2 * i, y(i), 0) + ref::cross_entropy(x, 2 * i + 1, y(i), 0) +
                4 * js(x, 2 * i, 2 * i + 1);
  }
  CHECK(v == Approx(expected).epsilon(1e-12));
  CHECK(ref::relative_error(g, ref::numeric_gradient([&](const MatrixD& z) { return loss.Evaluate(z, y); }, x)) <
        1e-6);
}

TEST_CASE("A user-defined divergence works in every R-Drop loss, with masks", "[divergence]") {
  const Index b = 4, k = 3;
  const MatrixD x = ref::random_logits<double>(2 * b, k, 1.5, 541);
  Eigen::VectorXi keep = Eigen::VectorXi::Ones(b);
  keep(2) = 0;
  const ScaledSquaredDistance<double> user;
  auto distance = [&](Index i) { return 3 * (x.row(2 * i) - x.row(2 * i + 1)).squaredNorm(); };

  SECTION("softmax classification") {
    const Eigen::VectorXi y = ref::random_labels(b, static_cast<int>(k), 542);
    rdrop::RDropOptions<double> o;
    o.normalization = rdrop::Normalization::Sum;
    o.alpha = 0.5;
    const rdrop::RDropLoss<double, ScaledSquaredDistance<double>> loss(o, user);
    double expected = 0;
    for (Index i = 0; i < b; ++i)
      if (keep(i))
        expected += ref::cross_entropy(x, 2 * i, y(i), 0) + ref::cross_entropy(x, 2 * i + 1, y(i), 0) +
                    0.5 * distance(i);
    MatrixD g;
    CHECK(loss.EvaluateWithGradient(x, y, keep, g) == Approx(expected).epsilon(1e-12));
    CHECK(ref::relative_error(g, ref::numeric_gradient([&](const MatrixD& z) { return loss.Evaluate(z, y, keep); }, x)) <
          1e-6);
  }
  SECTION("multi-label") {
    const MatrixD t = MatrixD::Constant(b, k, 0.5);
    rdrop::MultiLabelOptions<double> o;
    o.normalization = rdrop::Normalization::Sum;
    const rdrop::RDropMultiLabelLoss<double, ScaledSquaredDistance<double>> loss(o, user);
    double expected = 0;
    for (Index i = 0; i < b; ++i)
      if (keep(i)) expected += bce_row(x, 2 * i, t, i) + bce_row(x, 2 * i + 1, t, i) + distance(i);
    MatrixD g;
    CHECK(loss.EvaluateWithGradient(x, t, keep, g) == Approx(expected).epsilon(1e-12));
    CHECK(ref::relative_error(g, ref::numeric_gradient([&](const MatrixD& z) { return loss.Evaluate(z, t, keep); }, x)) <
          1e-6);
  }
  SECTION("regression") {
    const MatrixD y = ref::random_logits<double>(b, k, 1.0, 543);
    rdrop::RegressionOptions<double> o;
    o.normalization = rdrop::Normalization::Sum;
    const rdrop::RDropRegressionLoss<double, ScaledSquaredDistance<double>> loss(o, user);
    double expected = 0;
    for (Index i = 0; i < b; ++i)
      if (keep(i))
        expected += (x.row(2 * i) - y.row(i)).squaredNorm() + (x.row(2 * i + 1) - y.row(i)).squaredNorm() + distance(i);
    CHECK(loss.Evaluate(x, y, keep) == Approx(expected).epsilon(1e-12));
  }
}
