// CrossEntropy, KLDivergence, SymmetricKL and a user-defined divergence:
// values against the definitions, gradients against central differences,
// and the properties every divergence must have.
#include "support/reference.hpp"

#include <rdrop/rdrop.hpp>

#include <catch2/catch.hpp>

#include <cmath>

namespace {

using ref::Index;
using ref::MatrixD;

// A user's divergence, written only against the concept: half the squared
// distance between the two logit rows. Its gradients are a − b and b − a.
template <typename Scalar>
struct HalfSquaredDistance : rdrop::PairedDivergence<HalfSquaredDistance<Scalar>, Scalar> {
  Scalar EvaluatePair(rdrop::ConstRowMap<Scalar> a, rdrop::ConstRowMap<Scalar> b) const {
    return Scalar(0.5) * (a - b).square().sum();
  }
  Scalar EvaluatePairWithGradient(rdrop::ConstRowMap<Scalar> a, rdrop::ConstRowMap<Scalar> b,
                                  rdrop::RowMap<Scalar>& ga, rdrop::RowMap<Scalar>& gb) const {
    ga = a - b;
    gb = b - a;
    return EvaluatePair(a, b);
  }
};

static_assert(rdrop::is_divergence_v<HalfSquaredDistance<double>, double>);
static_assert(rdrop::is_divergence_v<rdrop::SymmetricKL<float>, float>);
static_assert(!rdrop::is_divergence_v<rdrop::CrossEntropy<float>, float>);

}  // namespace

TEMPLATE_TEST_CASE("CrossEntropy matches the definition", "[cross_entropy]", float, double) {
  using S = TestType;
  const double eps = GENERATE(0.0, 0.1, 0.5);
  const auto reduction = GENERATE(rdrop::Reduction::Sum, rdrop::Reduction::Mean);
  const Index n = 9, c = 6;
  const auto x = ref::random_logits<S>(n, c, 3.0, 3);
  Eigen::VectorXi y = ref::random_labels(n, static_cast<int>(c), 4);
  y(3) = -100;
  y(7) = -100;
  rdrop::CrossEntropyOptions<S> o;
  o.label_smoothing = static_cast<S>(eps);
  o.reduction = reduction;
  const rdrop::CrossEntropy<S> ce(o);

  const MatrixD xd = x.template cast<double>();
  double sum = 0;
  Eigen::VectorXd per_row(n);
  for (Index i = 0; i < n; ++i) {
    per_row(i) = y(i) < 0 ? 0.0 : ref::cross_entropy(xd, i, y(i), eps);
    sum += per_row(i);
  }
  const double expected = reduction == rdrop::Reduction::Mean ? sum / 7.0 : sum;
  CHECK(static_cast<double>(ce.Evaluate(x, y)) == Approx(expected).epsilon(ref::tolerance<S>()));
  Eigen::Matrix<S, Eigen::Dynamic, 1> values;
  ce.EvaluatePerRow(x, y, values);
  CHECK(ref::relative_error(values.template cast<double>(), per_row) < ref::tolerance<S>());
}

TEST_CASE("CrossEntropy gradient matches central differences", "[cross_entropy][gradient]") {
  const double eps = GENERATE(0.0, 0.25);
  const auto reduction = GENERATE(rdrop::Reduction::Sum, rdrop::Reduction::Mean);
  const Index n = 5, c = 7;
  const MatrixD x = ref::random_logits<double>(n, c, 2.0, 8);
  Eigen::VectorXi y = ref::random_labels(n, static_cast<int>(c), 9);
  y(2) = -100;
  rdrop::CrossEntropyOptions<double> o;
  o.label_smoothing = eps;
  o.reduction = reduction;
  const rdrop::CrossEntropy<double> ce(o);
  MatrixD g;
  ce.Gradient(x, y, g);
  const MatrixD numeric = ref::numeric_gradient([&](const MatrixD& z) { return ce.Evaluate(z, y); }, x);
  CHECK(ref::relative_error(g, numeric) < 1e-6);
  CHECK(g.row(2).isZero(0));  // ignored rows get no gradient
}

TEMPLATE_TEST_CASE("KL divergences match the definition", "[kl]", float, double) {
  using S = TestType;
  const Index n = 6, c = 8;
  const auto a = ref::random_logits<S>(n, c, 3.0, 1);
  const auto b = ref::random_logits<S>(n, c, 3.0, 2);
  const MatrixD ad = a.template cast<double>(), bd = b.template cast<double>();
  double kl_sum = 0, sym_sum = 0;
  for (Index i = 0; i < n; ++i) {
    kl_sum += ref::kl(ad, i, bd, i);
    sym_sum += 0.5 * (ref::kl(ad, i, bd, i) + ref::kl(bd, i, ad, i));
  }
  const rdrop::KLDivergence<S> kl_mean;
  const rdrop::KLDivergence<S> kl_sum_f(rdrop::Reduction::Sum);
  const rdrop::SymmetricKL<S> sym_mean;
  CHECK(static_cast<double>(kl_mean.Evaluate(a, b)) == Approx(kl_sum / n).epsilon(ref::tolerance<S>()));
  CHECK(static_cast<double>(kl_sum_f.Evaluate(a, b)) == Approx(kl_sum).epsilon(ref::tolerance<S>()));
  CHECK(static_cast<double>(sym_mean.Evaluate(a, b)) == Approx(sym_sum / n).epsilon(ref::tolerance<S>()));
}

TEST_CASE("Divergence gradients for both sides match central differences", "[kl][gradient]") {
  const Index n = 4, c = 9;
  const MatrixD a = ref::random_logits<double>(n, c, 2.0, 5);
  const MatrixD b = ref::random_logits<double>(n, c, 2.0, 6);
  auto check = [&](const auto& d) {
    MatrixD ga, gb;
    d.EvaluateWithGradient(a, b, ga, gb);
    const MatrixD na = ref::numeric_gradient([&](const MatrixD& z) { return d.Evaluate(z, b); }, a);
    const MatrixD nb = ref::numeric_gradient([&](const MatrixD& z) { return d.Evaluate(a, z); }, b);
    CHECK(ref::relative_error(ga, na) < 1e-6);
    CHECK(ref::relative_error(gb, nb) < 1e-6);
  };
  SECTION("KL(p||q)") { check(rdrop::KLDivergence<double>()); }
  SECTION("KL(p||q), summed") { check(rdrop::KLDivergence<double>(rdrop::Reduction::Sum)); }
  SECTION("symmetric KL") { check(rdrop::SymmetricKL<double>()); }
  SECTION("a user-defined divergence") { check(HalfSquaredDistance<double>()); }
}

TEMPLATE_TEST_CASE("Divergence properties: non-negative, zero on equal rows, symmetric",
                   "[kl][properties]", float, double) {
  using S = TestType;
  const Index n = 20;
  const Index c = GENERATE(Index(1), Index(2), Index(17), Index(300));
  const auto a = ref::random_logits<S>(n, c, 4.0, static_cast<unsigned>(c));
  const auto b = ref::random_logits<S>(n, c, 4.0, static_cast<unsigned>(c + 1));
  Eigen::Matrix<S, Eigen::Dynamic, 1> kl_ab, sym_ab, sym_ba, kl_aa, sym_aa;
  rdrop::KLDivergence<S>().EvaluatePerRow(a, b, kl_ab);
  rdrop::KLDivergence<S>().EvaluatePerRow(a, a, kl_aa);
  rdrop::SymmetricKL<S>().EvaluatePerRow(a, b, sym_ab);
  rdrop::SymmetricKL<S>().EvaluatePerRow(b, a, sym_ba);
  rdrop::SymmetricKL<S>().EvaluatePerRow(a, a, sym_aa);
  CHECK((kl_ab.array() >= S(0)).all());
  CHECK((sym_ab.array() >= S(0)).all());
  CHECK(kl_aa.isZero(0));   // exactly zero, not merely small
  CHECK(sym_aa.isZero(0));
  CHECK(sym_ab == sym_ba);  // the terms (p − q)(log p − log q) are symmetric bit for bit
  // A constant shift of a row's logits is the same distribution.
  ref::Matrix<S> shifted = a.array() + S(5);
  Eigen::Matrix<S, Eigen::Dynamic, 1> shift_kl;
  rdrop::SymmetricKL<S>().EvaluatePerRow(a, shifted, shift_kl);
  CHECK(shift_kl.maxCoeff() < S(100) * std::numeric_limits<S>::epsilon());
}

TEMPLATE_TEST_CASE("Gradient rows of softmax losses sum to zero", "[properties]", float, double) {
  using S = TestType;
  const Index b = 8, c = 50;
  const auto x = ref::random_logits<S>(2 * b, c, 5.0, 40);
  Eigen::VectorXi y = ref::random_labels(b, static_cast<int>(c), 41);
  y(4) = -100;
  rdrop::RDropOptions<S> o;
  o.alpha = S(4);
  o.label_smoothing = S(0.1);
  ref::Matrix<S> g, ga, gb, gce;
  rdrop::RDropLoss<S>(o).EvaluateWithGradient(x, y, g);
  rdrop::SymmetricKL<S>().EvaluateWithGradient(rdrop::FirstCopy(x), rdrop::SecondCopy(x), ga, gb);
  rdrop::CrossEntropy<S>().EvaluateWithGradient(x, rdrop::Duplicate(y), gce);
  const double tol = std::is_same_v<S, float> ? 1e-6 : 1e-15;
  for (const ref::Matrix<S>* m : {&g, &ga, &gb, &gce}) {
    CHECK(m->rowwise().sum().cwiseAbs().maxCoeff() < tol);
  }
}

TEMPLATE_TEST_CASE("RDropLoss with a user-defined divergence", "[divergence][rdrop]", float, double) {
  using S = TestType;
  const Index b = 5, c = 4;
  const auto x = ref::random_logits<S>(2 * b, c, 2.0, 13);
  const Eigen::VectorXi y = ref::random_labels(b, static_cast<int>(c), 14);
  rdrop::RDropOptions<S> o;
  o.alpha = S(0.75);
  o.normalization = rdrop::Normalization::Paper;
  const rdrop::RDropLoss<S, HalfSquaredDistance<S>> loss(o);
  const MatrixD xd = x.template cast<double>();
  double expected = 0;
  for (Index i = 0; i < b; ++i) {
    expected += ref::cross_entropy(xd, 2 * i, y(i), 0) + ref::cross_entropy(xd, 2 * i + 1, y(i), 0);
    expected += 0.75 * 0.5 * (xd.row(2 * i) - xd.row(2 * i + 1)).squaredNorm();
  }
  ref::Matrix<S> g;
  CHECK(static_cast<double>(loss.EvaluateWithGradient(x, y, g)) == Approx(expected).epsilon(ref::tolerance<S>()));
  if constexpr (std::is_same_v<S, double>) {
    const MatrixD numeric = ref::numeric_gradient([&](const MatrixD& z) { return loss.Evaluate(z, y); }, x);
    CHECK(ref::relative_error(g, numeric) < 1e-6);
  }
  // KLDivergence plugs in too: α·KL(p‖q) of the first copy against the second.
  const rdrop::RDropLoss<S, rdrop::KLDivergence<S>> kl_loss(o);
  double kl_expected = 0;
  for (Index i = 0; i < b; ++i) {
    kl_expected += ref::cross_entropy(xd, 2 * i, y(i), 0) + ref::cross_entropy(xd, 2 * i + 1, y(i), 0) +
                   0.75 * ref::kl(xd, 2 * i, xd, 2 * i + 1);
  }
  CHECK(static_cast<double>(kl_loss.Evaluate(x, y)) == Approx(kl_expected).epsilon(ref::tolerance<S>()));
}
