// Extreme logits: magnitudes of 1e4, classes masked with −inf in both copies
// or in one copy only, and NaN.
#include "support/reference.hpp"

#include <rdrop/rdrop.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

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
  // One gradient row is not finite: the other copy's (a), where the class
  // has p_2 > 0; b's own row, with q_2 = 0, stays finite.
  rdrop::RDropLoss<S>(o).EvaluateWithGradient(x, y, g);
  CHECK_FALSE(g.row(0).allFinite());
  CHECK(g.row(1).allFinite());
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

TEMPLATE_TEST_CASE("Jensen-Shannon does not move when every logit is shifted by the same constant",
                   "[stability][jensen_shannon]", float, double) {
  // The float inputs are the reference's inputs too (widened exactly to
  // double), so what is measured is rdrop's arithmetic, not the rounding of
  // the shifted inputs. Offsets are multiples of 1/64 of the logits' range
  // apart, so that x + offset is exact in float for these logits.
  using S = TestType;
  const Index c = 50;
  for (const double offset : {0.0, 1e2, -1e2, 1e4, -1e4}) {
    CAPTURE(offset);
    ref::Matrix<S> a = ref::random_logits<S>(1, c, 3.0, 95), b = ref::random_logits<S>(1, c, 3.0, 96);
    a = (a.array() * S(64)).round() / S(64) + S(offset);
    b = (b.array() * S(64)).round() / S(64) + S(offset);
    const MatrixD ad = a.template cast<double>(), bd = b.template cast<double>();
    ref::Matrix<S> ga, gb;
    const rdrop::JensenShannon<S> js(rdrop::Reduction::Sum);
    const S v = js.EvaluateWithGradient(a, b, ga, gb);
    // Relative accuracy at every offset: a few ulps of the result, as at offset 0.
    const double tol = std::is_same_v<S, float> ? 3e-6 : 1e-13;
    CHECK(static_cast<double>(v) == Approx(ref::js(ad, 0, bd, 0)).epsilon(tol));
    const std::vector<double> want_a = ref::js_gradient_first(ad, 0, bd, 0);
    const std::vector<double> want_b = ref::js_gradient_first(bd, 0, ad, 0);
    MatrixD wa(1, c), wb(1, c);
    for (Index j = 0; j < c; ++j) {
      wa(0, j) = want_a[static_cast<std::size_t>(j)];
      wb(0, j) = want_b[static_cast<std::size_t>(j)];
    }
    CHECK(ref::relative_error(ga.template cast<double>(), wa) < tol);
    CHECK(ref::relative_error(gb.template cast<double>(), wb) < tol);
  }
}

TEST_CASE("Float Jensen-Shannon gradients of near-equal copies are accurate to float rounding of the largest",
          "[stability][jensen_shannon]") {
  // R-Drop's copies differ by a little noise, so Δ = log p − log q is small
  // and each gradient entry p_j(g_j − Σ p g), g_j ≈ Δ_j/4, is small too; an
  // error of ε·|log p_j| in Δ_j (what forming Δ from two rounded log
  // softmaxes costs) was up to 5e-2 of the largest entry. Each pair is
  // measured against ref::js_gradient_first (long double, straight from the
  // definition) on the float logits widened to double: max|g − ref| must be
  // within 1e-5 of max|ref|. Noise 1e-1 to 1e-4 of the logits' range, 2 to
  // 32000 classes, logits up to ±30, shifted by ±1e4, every third class at
  // −inf in both copies (their gradient exactly 0). Through JensenShannon and
  // through RDropLoss with every row unlabeled (ignore_index, α = 1,
  // Normalization::Sum: the divergence's gradient alone).
  const float inf = std::numeric_limits<float>::infinity();
  double worst = 0;
  unsigned seed = 700;
  for (const Index c : {2, 10, 1000, 32000}) {
    for (const double scale : {1.0, 30.0}) {
      for (const double shift : {0.0, 1e4, -1e4}) {
        for (const bool masked : {false, true}) {
          if (masked && c == 2) continue;
          const std::vector<double> noises = {1e-1, 1e-2, 1e-3, 1e-4};
          const Index pairs = static_cast<Index>(noises.size());
          ref::Matrix<float> x(2 * pairs, c);
          for (Index i = 0; i < pairs; ++i) {
            const MatrixD a = ref::random_logits<double>(1, c, scale, ++seed);
            const MatrixD e = ref::random_logits<double>(1, c, scale, ++seed);
            x.row(2 * i) = (a.array() + shift).cast<float>().matrix();
            x.row(2 * i + 1) = (a.array() + noises[static_cast<std::size_t>(i)] * e.array() + shift).cast<float>().matrix();
            if (masked)
              for (Index j = 0; j < c; j += 3) x(2 * i, j) = x(2 * i + 1, j) = -inf;
          }
          const ref::Matrix<float> first = rdrop::FirstCopy(x), second = rdrop::SecondCopy(x);
          ref::Matrix<float> ga, gb, g;
          rdrop::JensenShannon<float>(rdrop::Reduction::Sum).EvaluateWithGradient(first, second, ga, gb);
          rdrop::RDropOptions<float> o;
          o.normalization = rdrop::Normalization::Sum;
          rdrop::RDropLoss<float, rdrop::JensenShannon<float>>(o).EvaluateWithGradient(
              x, Eigen::VectorXi::Constant(pairs, -100), g);
          const MatrixD xd = x.cast<double>();
          for (Index i = 0; i < pairs; ++i) {
            CAPTURE(c, scale, shift, masked, noises[static_cast<std::size_t>(i)]);
            for (int side = 0; side < 2; ++side) {
              const Index r = 2 * i + side, other = 2 * i + 1 - side;
              const std::vector<double> want = ref::js_gradient_first(xd, r, xd, other);
              double largest = 0, error = 0, loss_error = 0;
              bool masked_zero = true;
              for (Index j = 0; j < c; ++j) {
                const double w = want[static_cast<std::size_t>(j)];
                const double got = side == 0 ? ga(i, j) : gb(i, j);
                largest = std::max(largest, std::abs(w));
                error = std::max(error, std::abs(got - w));
                loss_error = std::max(loss_error, std::abs(static_cast<double>(g(r, j)) - w));
                if (masked && j % 3 == 0) masked_zero = masked_zero && got == 0.0f && g(r, j) == 0.0f;
              }
              CAPTURE(side, largest);
              CHECK(masked_zero);
              CHECK(error <= 1e-5 * largest);
              CHECK(loss_error <= 1e-5 * largest);
              worst = std::max(worst, error / largest);
            }
          }
        }
      }
    }
  }
  INFO("worst max|g - ref| / max|ref|: " << worst);  // 7.7e-7 when written
  CHECK(worst <= 1e-5);

  // Identical copies: exactly 0, value and gradient.
  const ref::Matrix<float> a = ref::random_logits<float>(1, 1000, 30.0, 799);
  ref::Matrix<float> ga, gb;
  CHECK(rdrop::JensenShannon<float>().EvaluateWithGradient(a, a, ga, gb) == 0.0f);
  CHECK((ga.array() == 0.0f).all());
  CHECK((gb.array() == 0.0f).all());
}

TEST_CASE("Loss sums over 2^20 float rows do not drift from the double reference", "[stability][accumulation]") {
  // 2^19 pairs of positive per-pair losses: summed in float they drift by
  // about n·ε (0.6 % at 2^21 rows); summed compensated in double, the
  // float loss is as accurate as its per-pair terms.
  const Index rows = Index(1) << 20, c = 4;
  const auto x = ref::random_logits<float>(rows, c, 2.0, 97);
  const Eigen::VectorXi y = ref::random_labels(rows / 2, static_cast<int>(c), 98);
  rdrop::RDropOptions<float> o;
  o.normalization = rdrop::Normalization::Paper;
  const float v = rdrop::RDropLoss<float>(o).Evaluate(x, y);
  const rdrop::RDropTerms<float> terms = rdrop::RDropLoss<float>(o).EvaluateTerms(x, y);
  std::vector<Index> first, second;
  std::vector<int> labels;
  for (Index i = 0; i < rows / 2; ++i) {
    first.push_back(2 * i);
    second.push_back(2 * i + 1);
    labels.push_back(y(i));
    labels.push_back(y(i));
  }
  const double want = ref::paper_loss(x.cast<double>(), first, second, labels, 1.0, 0.0);
  CHECK(std::abs(static_cast<double>(v) - want) / want < 1e-6);
  CHECK(std::abs(static_cast<double>(terms.task_sum + terms.divergence_sum) - want) / want < 1e-6);
}

TEMPLATE_TEST_CASE("Near-equal copies: the precision docs/kl_divergence.md states", "[stability][precision]", float,
                   double) {
  // b = a + δ·N(0, 1) per logit, 1000 classes. Measured (docs): the symmetric
  // KL's value has a relative error of about 2ε/δ (p − q is formed from
  // separately rounded p and q), each KL direction about 40-120·ε/δ², and
  // the gradient an absolute error of a few ε·‖p‖ whatever δ is.
  using S = TestType;
  const double eps = std::numeric_limits<S>::epsilon();
  const Index c = 1000;
  std::mt19937 rng(7);
  std::normal_distribution<double> normal(0, 1);
  for (const double delta : {1e-2, 1e-4, 1e-6}) {
    CAPTURE(delta);
    for (int trial = 0; trial < 4; ++trial) {
      ref::Matrix<S> a(1, c), b(1, c);
      for (Index j = 0; j < c; ++j) {
        a(0, j) = static_cast<S>(3 * normal(rng));
        b(0, j) = static_cast<S>(static_cast<double>(a(0, j)) + delta * normal(rng));
      }
      const MatrixD ad = a.template cast<double>(), bd = b.template cast<double>();
      const double kl_pq = ref::kl(ad, 0, bd, 0), sym = 0.5 * (kl_pq + ref::kl(bd, 0, ad, 0));
      ref::Matrix<S> ga, gb;
      const S v = rdrop::SymmetricKL<S>(rdrop::Reduction::Sum).EvaluateWithGradient(a, b, ga, gb);
      CHECK(std::abs(static_cast<double>(v) - sym) / sym < 8 * eps / delta);
      const S one_way = rdrop::KLDivergence<S>(rdrop::Reduction::Sum).Evaluate(a, b);
      CHECK(std::abs(static_cast<double>(one_way) - kl_pq) / kl_pq < 400 * eps / (delta * delta));
      // ∂S/∂a = ½[p ⊙ (d − KL(p‖q)) + p − q], from the long double log-softmax.
      const auto lp = ref::log_softmax(ad, 0), lq = ref::log_softmax(bd, 0);
      long double err = 0, norm_p = 0;
      for (Index j = 0; j < c; ++j) {
        const auto k = static_cast<std::size_t>(j);
        const long double p = std::exp(lp[k]), q = std::exp(lq[k]);
        const long double want = 0.5L * (p * (lp[k] - lq[k] - kl_pq) + p - q);
        err += (want - ga(0, j)) * (want - ga(0, j));
        norm_p += p * p;
      }
      CHECK(static_cast<double>(std::sqrt(err / norm_p)) < 16 * eps);
    }
  }
}
