// RDropLoss against the paper's formula written out directly, the Keras
// code form's equivalence with it, and finite-difference gradients.
#include "support/reference.hpp"

#include <rdrop/rdrop.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

namespace {

using ref::Index;
using ref::MatrixD;

struct Pairs {
  std::vector<Index> first, second;
};

Pairs pairs_of(rdrop::Layout layout, Index b) {
  Pairs p;
  for (Index i = 0; i < b; ++i) {
    p.first.push_back(layout == rdrop::Layout::Interleaved ? 2 * i : i);
    p.second.push_back(layout == rdrop::Layout::Interleaved ? 2 * i + 1 : b + i);
  }
  return p;
}

// Per-sample labels spread onto the rows of their pair.
std::vector<int> row_labels(const Pairs& p, const Eigen::VectorXi& y, int ignore = -100) {
  std::vector<int> out(2 * p.first.size());
  for (std::size_t i = 0; i < p.first.size(); ++i) {
    const int v = y(static_cast<Index>(i)) == ignore ? -1 : y(static_cast<Index>(i));
    out[static_cast<std::size_t>(p.first[i])] = out[static_cast<std::size_t>(p.second[i])] = v;
  }
  return out;
}

template <typename S>
MatrixD to_double(const ref::Matrix<S>& m) {
  return m.template cast<double>();
}

}  // namespace

TEMPLATE_TEST_CASE("Keras code form equals the paper's form divided by 2B, in value and gradient",
                   "[rdrop][conventions]", float, double) {
  using S = TestType;
  const auto b = GENERATE(Index(1), Index(3), Index(8), Index(17));
  const double alpha = GENERATE(0.0, 0.5, 1.0, 4.0);
  const Index c = 7;
  const auto x = ref::random_logits<S>(2 * b, c, 3.0, static_cast<unsigned>(b * 31 + 7));
  const Eigen::VectorXi y = ref::random_labels(b, static_cast<int>(c), static_cast<unsigned>(b));

  rdrop::RDropOptions<S> keras;
  keras.alpha = static_cast<S>(alpha);
  keras.normalization = rdrop::Normalization::KerasCode;
  rdrop::RDropOptions<S> paper = keras;
  paper.normalization = rdrop::Normalization::Paper;

  ref::Matrix<S> g_keras, g_paper;
  const S v_keras = rdrop::RDropLoss<S>(keras).EvaluateWithGradient(x, y, g_keras);
  const S v_paper = rdrop::RDropLoss<S>(paper).EvaluateWithGradient(x, y, g_paper);

  const double two_b = static_cast<double>(2 * b);
  CHECK(static_cast<double>(v_keras) ==
        Approx(static_cast<double>(v_paper) / two_b).epsilon(ref::tolerance<S>()));
  CHECK(ref::relative_error(to_double<S>(g_keras), to_double<S>(g_paper) / two_b) <
        ref::tolerance<S>());

  // And both against the formulas written out independently: the seed's
  // mean(CE over 2B rows) + α/4 · mean over pairs of (KL(p‖q) + KL(q‖p)).
  const MatrixD xd = to_double<S>(x);
  const Pairs p = pairs_of(rdrop::Layout::Interleaved, b);
  const auto labels = row_labels(p, y);
  double ce = 0, kl2 = 0;
  for (Index r = 0; r < 2 * b; ++r) ce += ref::cross_entropy(xd, r, labels[static_cast<std::size_t>(r)], 0);
  for (Index i = 0; i < b; ++i) {
    const auto ia = static_cast<std::size_t>(i);
    kl2 += ref::kl(xd, p.first[ia], xd, p.second[ia]) + ref::kl(xd, p.second[ia], xd, p.first[ia]);
  }
  const double keras_formula = ce / two_b + alpha / 4 * kl2 / static_cast<double>(b);
  CHECK(static_cast<double>(v_keras) == Approx(keras_formula).epsilon(ref::tolerance<S>()));
  CHECK(static_cast<double>(v_paper) ==
        Approx(ref::paper_loss(xd, p.first, p.second, labels, alpha, 0)).epsilon(ref::tolerance<S>()));
}

TEMPLATE_TEST_CASE("Every normalization matches its formula", "[rdrop][conventions]", float, double) {
  using S = TestType;
  const auto layout = GENERATE(rdrop::Layout::Interleaved, rdrop::Layout::Stacked);
  const auto norm = GENERATE(rdrop::Normalization::Paper, rdrop::Normalization::KerasCode,
                             rdrop::Normalization::PyTorchReadme, rdrop::Normalization::Sum,
                             rdrop::Normalization::Mean, rdrop::Normalization::Fairseq);
  const Index b = 6, c = 5;
  const double alpha = 2.5, eps = 0.1;
  const auto x = ref::random_logits<S>(2 * b, c, 2.0, 99);
  Eigen::VectorXi y = ref::random_labels(b, static_cast<int>(c), 5);
  y(2) = -100;  // one unlabeled sample: both its rows carry KL only

  rdrop::RDropOptions<S> o;
  o.alpha = static_cast<S>(alpha);
  o.layout = layout;
  o.normalization = norm;
  o.label_smoothing = static_cast<S>(eps);
  const S value = rdrop::RDropLoss<S>(o).Evaluate(x, y);

  const MatrixD xd = to_double<S>(x);
  const Pairs p = pairs_of(layout, b);
  const auto labels = row_labels(p, y);
  double ce = 0, sym = 0;
  Index labeled = 0;
  for (Index r = 0; r < 2 * b; ++r) {
    const int l = labels[static_cast<std::size_t>(r)];
    if (l >= 0) {
      ce += ref::cross_entropy(xd, r, l, eps);
      ++labeled;
    }
  }
  for (Index i = 0; i < b; ++i) {
    const auto ia = static_cast<std::size_t>(i);
    sym += 0.5 * (ref::kl(xd, p.first[ia], xd, p.second[ia]) + ref::kl(xd, p.second[ia], xd, p.first[ia]));
  }
  const double n = static_cast<double>(labeled), pairs = static_cast<double>(b);
  double expected = 0;
  switch (norm) {
    case rdrop::Normalization::Paper:
    case rdrop::Normalization::Sum: expected = ce + alpha * sym; break;
    case rdrop::Normalization::KerasCode: expected = ce / n + alpha / 4 * (2 * sym) / pairs; break;
    case rdrop::Normalization::PyTorchReadme: expected = ce / n + alpha * sym; break;
    case rdrop::Normalization::Mean: expected = ce / n + alpha * sym / pairs; break;
    case rdrop::Normalization::Fairseq: expected = (ce + alpha * sym) / pairs; break;
  }
  CHECK(static_cast<double>(value) == Approx(expected).epsilon(ref::tolerance<S>()));
}

TEST_CASE("RDropLoss gradients match central differences", "[rdrop][gradient]") {
  const auto layout = GENERATE(rdrop::Layout::Interleaved, rdrop::Layout::Stacked);
  const auto norm = GENERATE(rdrop::Normalization::Paper, rdrop::Normalization::KerasCode,
                             rdrop::Normalization::PyTorchReadme, rdrop::Normalization::Mean);
  const double eps = GENERATE(0.0, 0.2);
  const bool per_row = GENERATE(false, true);
  const Index b = 4, c = 6;
  const MatrixD x = ref::random_logits<double>(2 * b, c, 2.0, 11);
  Eigen::VectorXi y = ref::random_labels(per_row ? 2 * b : b, static_cast<int>(c), 3);
  y(1) = -100;

  rdrop::RDropOptions<double> o;
  o.alpha = 1.7;
  o.layout = layout;
  o.normalization = norm;
  o.label_smoothing = eps;
  const rdrop::RDropLoss<double> loss(o);
  MatrixD g;
  loss.EvaluateWithGradient(x, y, g);
  const MatrixD numeric = ref::numeric_gradient([&](const MatrixD& z) { return loss.Evaluate(z, y); }, x);
  CHECK(ref::relative_error(g, numeric) < 1e-6);

  MatrixD g_only;
  loss.Gradient(x, y, g_only);
  CHECK(g_only == g);  // same sweep, bit for bit
}

TEMPLATE_TEST_CASE("Labels per row equal labels per sample when the copies agree", "[rdrop]", float,
                   double) {
  using S = TestType;
  const auto layout = GENERATE(rdrop::Layout::Interleaved, rdrop::Layout::Stacked);
  const Index b = 5, c = 4;
  const auto x = ref::random_logits<S>(2 * b, c, 2.0, 21);
  const Eigen::VectorXi y = ref::random_labels(b, static_cast<int>(c), 8);
  rdrop::RDropOptions<S> o;
  o.layout = layout;
  const rdrop::RDropLoss<S> loss(o);
  ref::Matrix<S> g1, g2;
  const S v1 = loss.EvaluateWithGradient(x, y, g1);
  const S v2 = loss.EvaluateWithGradient(x, rdrop::Duplicate(y, layout), g2);
  CHECK(v1 == v2);
  CHECK(g1 == g2);
}

TEMPLATE_TEST_CASE("Both layouts give the same loss and correspondingly permuted gradients",
                   "[rdrop][layout]", float, double) {
  using S = TestType;
  const Index b = 7, c = 9;
  const auto interleaved = ref::random_logits<S>(2 * b, c, 3.0, 4);
  // The same pairs, stacked: sample i's copies move from rows 2i, 2i+1 to i, B+i.
  ref::Matrix<S> stacked(2 * b, c);
  for (Index i = 0; i < b; ++i) {
    stacked.row(i) = interleaved.row(2 * i);
    stacked.row(b + i) = interleaved.row(2 * i + 1);
  }
  const Eigen::VectorXi y = ref::random_labels(b, static_cast<int>(c), 6);
  rdrop::RDropOptions<S> oi, os;
  oi.alpha = os.alpha = S(3);
  os.layout = rdrop::Layout::Stacked;
  ref::Matrix<S> gi, gs;
  const S vi = rdrop::RDropLoss<S>(oi).EvaluateWithGradient(interleaved, y, gi);
  const S vs = rdrop::RDropLoss<S>(os).EvaluateWithGradient(stacked, y, gs);
  CHECK(vi == vs);
  for (Index i = 0; i < b; ++i) {
    CHECK(gi.row(2 * i) == gs.row(i));
    CHECK(gi.row(2 * i + 1) == gs.row(b + i));
  }
  // The zero-copy views see the same rows.
  CHECK(rdrop::FirstCopy(stacked, rdrop::Layout::Stacked) == rdrop::FirstCopy(interleaved));
  CHECK(rdrop::SecondCopy(stacked, rdrop::Layout::Stacked) == rdrop::SecondCopy(interleaved));
}

TEMPLATE_TEST_CASE("Per-row values sum to the paper's loss", "[rdrop]", float, double) {
  using S = TestType;
  const Index b = 5, c = 6;
  const auto x = ref::random_logits<S>(2 * b, c, 2.0, 77);
  Eigen::VectorXi y = ref::random_labels(b, static_cast<int>(c), 2);
  y(0) = -100;
  rdrop::RDropOptions<S> o;
  o.alpha = S(2);
  o.normalization = rdrop::Normalization::Paper;
  const rdrop::RDropLoss<S> loss(o);
  Eigen::Matrix<S, Eigen::Dynamic, 1> values;
  loss.EvaluatePerRow(x, y, values);
  REQUIRE(values.size() == 2 * b);
  CHECK(static_cast<double>(values.sum()) ==
        Approx(static_cast<double>(loss.Evaluate(x, y))).epsilon(ref::tolerance<S>() * 10));
  // Row 0 and row 1 are the unlabeled pair: each carries half of α·S only.
  const MatrixD xd = x.template cast<double>();
  const double half = 0.5 * 2 * 0.5 * (ref::kl(xd, 0, xd, 1) + ref::kl(xd, 1, xd, 0));
  CHECK(static_cast<double>(values(0)) == Approx(half).epsilon(ref::tolerance<S>() * 10));
  CHECK(static_cast<double>(values(1)) == Approx(half).epsilon(ref::tolerance<S>() * 10));
}

TEMPLATE_TEST_CASE("alpha = 0 is plain cross-entropy over the 2B rows", "[rdrop]", float, double) {
  using S = TestType;
  const Index b = 4, c = 3;
  const auto x = ref::random_logits<S>(2 * b, c, 2.0, 12);
  const Eigen::VectorXi y = ref::random_labels(b, static_cast<int>(c), 1);
  rdrop::RDropOptions<S> o;
  o.alpha = S(0);
  ref::Matrix<S> g, g_ce;
  const S v = rdrop::RDropLoss<S>(o).EvaluateWithGradient(x, y, g);
  const S v_ce = rdrop::CrossEntropy<S>().EvaluateWithGradient(x, rdrop::Duplicate(y), g_ce);
  CHECK(static_cast<double>(v) == Approx(static_cast<double>(v_ce)).epsilon(ref::tolerance<S>()));
  CHECK(ref::relative_error(g.template cast<double>(), g_ce.template cast<double>()) < ref::tolerance<S>());
}
