// Extreme logits: magnitudes of 1e4, classes masked with −inf in both copies
// or in one copy only, and NaN.
#include "support/reference.hpp"

#include <rdrop/rdrop.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

namespace {
using ref::Index;
using ref::MatrixD;
}  // namespace

TEMPLATE_TEST_CASE("Logits of magnitude 1e4 give finite, correct results", "[stability]", float, double) {
  using S = TestType;
  const Index b = 4, c = 10;
  const auto x = ref::random_logits<S>(2 * b, c, 1e4, 61);
  const Eigen::VectorXi y = ref::random_labels(b, static_cast<int>(c), 62);
  rdrop::RDropOptions<S> o;
  o.alpha = S(1);
  o.normalization = rdrop::Normalization::Paper;
  o.label_smoothing = S(0.1);
  ref::Matrix<S> g;
  const S v = rdrop::RDropLoss<S>(o).EvaluateWithGradient(x, y, g);
  REQUIRE(std::isfinite(v));
  REQUIRE(g.allFinite());
  const MatrixD xd = x.template cast<double>();
  std::vector<Index> first, second;
  std::vector<int> labels;
  for (Index i = 0; i < b; ++i) {
    first.push_back(2 * i);
    second.push_back(2 * i + 1);
    labels.push_back(y(i));
    labels.push_back(y(i));
  }
  CHECK(static_cast<double>(v) == Approx(ref::paper_loss(xd, first, second, labels, 1.0, 0.1)).epsilon(1e-6));
  // With such logits the softmaxes are one-hot: gradient entries are 0 or ±weights.
  CHECK(g.cwiseAbs().maxCoeff() <= S(2));
}

TEMPLATE_TEST_CASE("A class at -inf in both copies contributes exactly nothing", "[stability][masked]",
                   float, double) {
  using S = TestType;
  const S inf = std::numeric_limits<S>::infinity();
  const Index b = 5, c = 7;
  ref::Matrix<S> x = ref::random_logits<S>(2 * b, c, 3.0, 70);
  const Eigen::VectorXi y = ref::random_labels(b, 5, 71);  // labels avoid the masked classes 5, 6
  x.col(5).setConstant(-inf);
  x.col(6).setConstant(-inf);
  // The same batch without the masked classes.
  const ref::Matrix<S> reduced = x.leftCols(5);

  rdrop::RDropOptions<S> o;
  o.alpha = S(2);
  const rdrop::RDropLoss<S> loss(o);
  ref::Matrix<S> g, g_reduced;
  const S v = loss.EvaluateWithGradient(x, y, g);
  const S v_reduced = loss.EvaluateWithGradient(reduced, y, g_reduced);
  REQUIRE(std::isfinite(v));
  CHECK(static_cast<double>(v) == Approx(static_cast<double>(v_reduced)).epsilon(ref::tolerance<S>()));
  CHECK(g.rightCols(2).isZero(0));
  CHECK(ref::relative_error(g.leftCols(5).template cast<double>(), g_reduced.template cast<double>()) <
        ref::tolerance<S>());

  ref::Matrix<S> ga, gb;
  const S sym = rdrop::SymmetricKL<S>().EvaluateWithGradient(rdrop::FirstCopy(x), rdrop::SecondCopy(x), ga, gb);
  const S sym_reduced = rdrop::SymmetricKL<S>().Evaluate(rdrop::FirstCopy(reduced), rdrop::SecondCopy(reduced));
  CHECK(static_cast<double>(sym) == Approx(static_cast<double>(sym_reduced)).epsilon(ref::tolerance<S>()));
  CHECK(ga.allFinite());
  CHECK(gb.allFinite());
  CHECK(rdrop::KLDivergence<S>().Evaluate(x, x) == S(0));
}

TEMPLATE_TEST_CASE("A class at -inf in one copy only makes the KL that divides by it +inf",
                   "[stability][masked]", float, double) {
  using S = TestType;
  const S inf = std::numeric_limits<S>::infinity();
  ref::Matrix<S> a = ref::random_logits<S>(1, 4, 1.0, 80);
  ref::Matrix<S> b = ref::random_logits<S>(1, 4, 1.0, 81);
  b(0, 2) = -inf;  // q_2 = 0 < p_2
  const S kl_pq = rdrop::KLDivergence<S>().Evaluate(a, b);
  const S kl_qp = rdrop::KLDivergence<S>().Evaluate(b, a);
  CHECK(kl_pq == inf);
  CHECK(std::isfinite(kl_qp));  // terms with q_j = 0 are 0 · log 0 = 0
  // KL(q‖p) is then the KL over the other classes plus nothing: check it.
  const MatrixD ad = a.template cast<double>(), bd = b.template cast<double>();
  CHECK(static_cast<double>(kl_qp) == Approx(ref::kl(bd, 0, ad, 0)).epsilon(1e-5));
  CHECK(rdrop::SymmetricKL<S>().Evaluate(a, b) == inf);

  // With alpha = 0 the divergence is not part of the loss: CE stays finite.
  ref::Matrix<S> x(2, 4);
  x.row(0) = a;
  x.row(1) = b;
  Eigen::VectorXi y(1);
  y << 0;
  rdrop::RDropOptions<S> o;
  o.alpha = S(0);
  ref::Matrix<S> g;
  CHECK(std::isfinite(rdrop::RDropLoss<S>(o).EvaluateWithGradient(x, y, g)));
  CHECK(g.allFinite());
  o.alpha = S(1);
  CHECK(rdrop::RDropLoss<S>(o).Evaluate(x, y) == inf);
}

TEMPLATE_TEST_CASE("NaN logits give a NaN loss, never a crash", "[stability][nan]", float, double) {
  using S = TestType;
  ref::Matrix<S> x = ref::random_logits<S>(4, 3, 1.0, 90);
  x(1, 1) = std::numeric_limits<S>::quiet_NaN();
  Eigen::VectorXi y = Eigen::VectorXi::Zero(2);
  ref::Matrix<S> g;
  CHECK(std::isnan(rdrop::RDropLoss<S>().EvaluateWithGradient(x, y, g)));
  CHECK(std::isnan(rdrop::SymmetricKL<S>().Evaluate(rdrop::FirstCopy(x), rdrop::SecondCopy(x))));
  CHECK(std::isnan(rdrop::CrossEntropy<S>().Evaluate(x, rdrop::Duplicate(y))));
}
