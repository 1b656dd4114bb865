// The gradient written over its own logits: exact for every loss (bitwise
// the out-of-place result), and every other overlap between an output and
// an input refused before anything is written.
#include "support/reference.hpp"

#include <rdrop/rdrop.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

namespace {
using ref::Index;
using Catch::Matchers::Contains;

template <typename S>
using Tensor3 = Eigen::Tensor<S, 3, Eigen::RowMajor>;

/// A divergence written by a user: ½ Σ (softmax(a) − softmax(b))², which
/// reads its rows after nothing in particular; in-place safety must not
/// depend on how a divergence is written.
template <typename S>
struct SquaredProbabilityGap {
  S EvaluatePair(rdrop::ConstRowMap<S> a, rdrop::ConstRowMap<S> b) const {
    return S(0.5) * (softmax(a) - softmax(b)).square().sum();
  }
  S EvaluatePairWithGradient(rdrop::ConstRowMap<S> a, rdrop::ConstRowMap<S> b, rdrop::RowMap<S>& ga,
                             rdrop::RowMap<S>& gb) const {
    const Eigen::Array<S, 1, Eigen::Dynamic> p = softmax(a), q = softmax(b), d = p - q;
    ga = p * (d - (p * d).sum());
    gb = -q * (d - (q * d).sum());
    return S(0.5) * d.square().sum();
  }
  static Eigen::Array<S, 1, Eigen::Dynamic> softmax(const rdrop::ConstRowMap<S>& x) {
    const Eigen::Array<S, 1, Eigen::Dynamic> e = (x - x.maxCoeff()).exp();
    return e / e.sum();
  }
};

/// Bitwise equality, NaN-aware (same bits).
template <typename A, typename B>
bool same_bits(const A& a, const B& b) {
  if (a.size() != b.size()) return false;
  if (a.size() == 0) return true;  // an empty matrix's data() may be null, which memcmp must not get
  return std::memcmp(a.data(), b.data(), sizeof(typename A::Scalar) * static_cast<std::size_t>(a.size())) == 0;
}

const auto kNormalizations = {rdrop::Normalization::Paper, rdrop::Normalization::KerasCode,
                              rdrop::Normalization::PyTorchReadme, rdrop::Normalization::Sum,
                              rdrop::Normalization::Mean, rdrop::Normalization::Fairseq};

/// Runs loss out of place and in place on a copy of x; both must agree bitwise.
template <typename Loss, typename X, typename... Rest>
void check_in_place(const Loss& loss, const X& x, const Rest&... rest) {
  X grad;
  const auto out_of_place = loss.EvaluateWithGradient(x, rest..., grad);
  X inout = x;
  const auto in_place = loss.EvaluateWithGradient(inout, rest..., inout);
  CHECK(std::memcmp(&out_of_place, &in_place, sizeof in_place) == 0);
  CHECK(same_bits(grad, inout));
  X only = x;
  loss.Gradient(only, rest..., only);
  CHECK(same_bits(grad, only));
}

/// A divergence functor with both gradients over their own inputs, and
/// with one of them only, against out of place.
template <typename D, typename M>
void check_divergence_in_place(const D& d, const M& x, const M& x2) {
  using S = typename M::Scalar;
  M ga, gb;
  const S v = d.EvaluateWithGradient(x, x2, ga, gb);
  M a = x, b = x2;
  const S vi = d.EvaluateWithGradient(a, b, a, b);
  CHECK(std::memcmp(&v, &vi, sizeof v) == 0);
  CHECK(same_bits(ga, a));
  CHECK(same_bits(gb, b));
  M a2 = x, gb2;
  d.Gradient(a2, x2, a2, gb2);
  CHECK(same_bits(ga, a2));
  CHECK(same_bits(gb, gb2));
}
}  // namespace

TEMPLATE_TEST_CASE("In place, every RDropLoss divergence equals out of place bitwise", "[in_place]", float, double) {
  using S = TestType;
  const auto layout = GENERATE(rdrop::Layout::Interleaved, rdrop::Layout::Stacked);
  const auto normalization = GENERATE(values(kNormalizations));
  const auto smoothing = GENERATE(S(0), S(0.1));
  CAPTURE(static_cast<int>(layout), static_cast<int>(normalization), smoothing);
  // 37 classes: rows of odd length start at every alignment; 6 pairs.
  const ref::Matrix<S> x = ref::random_logits<S>(12, 37, 3.0, 501);
  Eigen::VectorXi y = ref::random_labels(6, 37, 502);
  y(2) = -100;  // unlabeled: divergence only
  rdrop::RDropOptions<S> o;
  o.alpha = S(1.5);
  o.layout = layout;
  o.normalization = normalization;
  o.label_smoothing = smoothing;
  check_in_place(rdrop::RDropLoss<S>(o), x, y);
  check_in_place(rdrop::RDropLoss<S, rdrop::KLDivergence<S>>(o), x, y);
  check_in_place(rdrop::RDropLoss<S, rdrop::JensenShannon<S>>(o), x, y);
  check_in_place(rdrop::RDropLoss<S, SquaredProbabilityGap<S>>(o), x, y);
  // Labels once per row, and a per-row mask that masks one copy only (the
  // other copy keeps its cross-entropy, computed row by row).
  const Eigen::VectorXi per_row = rdrop::Duplicate(y, layout);
  Eigen::VectorXi mask = Eigen::VectorXi::Ones(12);
  mask(layout == rdrop::Layout::Stacked ? 7 : 3) = 0;
  check_in_place(rdrop::RDropLoss<S>(o), x, per_row, mask);
  check_in_place(rdrop::RDropLoss<S, rdrop::JensenShannon<S>>(o), x, per_row, mask);
  // −inf classes: the masked passes of the fused sweep.
  ref::Matrix<S> masked = x;
  masked.col(5).setConstant(-std::numeric_limits<S>::infinity());
  check_in_place(rdrop::RDropLoss<S>(o), masked, y);
}

TEMPLATE_TEST_CASE("In place, multi-label and regression losses equal out of place bitwise", "[in_place]", float,
                   double) {
  using S = TestType;
  const auto layout = GENERATE(rdrop::Layout::Interleaved, rdrop::Layout::Stacked);
  const auto normalization = GENERATE(values(kNormalizations));
  CAPTURE(static_cast<int>(layout), static_cast<int>(normalization));
  const ref::Matrix<S> x = ref::random_logits<S>(10, 13, 2.0, 511);
  const ref::Matrix<S> targets = (ref::random_logits<S>(5, 13, 1.0, 512).array() > S(0)).template cast<S>();
  rdrop::MultiLabelOptions<S> m;
  m.alpha = S(2);
  m.layout = layout;
  m.normalization = normalization;
  check_in_place(rdrop::RDropMultiLabelLoss<S>(m), x, targets);
  Eigen::VectorXi mask = Eigen::VectorXi::Ones(10);
  mask(4) = 0;
  check_in_place(rdrop::RDropMultiLabelLoss<S>(m), x, targets, mask);
  rdrop::RegressionOptions<S> r;
  r.alpha = S(0.5);
  r.layout = layout;
  r.normalization = normalization;
  check_in_place(rdrop::RDropRegressionLoss<S>(r), x, ref::random_logits<S>(5, 13, 1.0, 513));
  check_in_place(rdrop::RDropRegressionLoss<S>(r), x, ref::random_logits<S>(10, 13, 1.0, 514), mask);
}

TEMPLATE_TEST_CASE("In place, sequences with padding equal out of place bitwise", "[in_place][sequence]", float,
                   double) {
  using S = TestType;
  const auto layout = GENERATE(rdrop::Layout::Interleaved, rdrop::Layout::Stacked);
  const auto normalization = GENERATE(rdrop::Normalization::Fairseq, rdrop::Normalization::KerasCode);
  CAPTURE(static_cast<int>(layout), static_cast<int>(normalization));
  Tensor3<S> x(4, 3, 21);
  const ref::Matrix<S> flat = ref::random_logits<S>(12, 21, 2.0, 521);
  std::copy(flat.data(), flat.data() + flat.size(), x.data());
  Eigen::Tensor<int, 2, Eigen::RowMajor> y(2, 3);
  y.setValues({{1, 2, 3}, {4, 0, 0}});
  rdrop::RDropOptions<S> o;
  o.alpha = S(5);
  o.layout = layout;
  o.normalization = normalization;
  o.padding_index = 0;
  o.label_smoothing = S(0.1);
  o.smoothing_style = rdrop::SmoothingStyle::ExcludeTarget;
  check_in_place(rdrop::RDropLoss<S>(o), x, y);
  check_in_place(rdrop::RDropLoss<S, rdrop::JensenShannon<S>>(o), x, y);
}

TEMPLATE_TEST_CASE("In place, CrossEntropy and the divergence functors equal out of place bitwise", "[in_place]",
                   float, double) {
  using S = TestType;
  const ref::Matrix<S> x = ref::random_logits<S>(6, 29, 3.0, 531);
  const ref::Matrix<S> x2 = ref::random_logits<S>(6, 29, 3.0, 532);
  Eigen::VectorXi y = ref::random_labels(6, 29, 533);
  y(1) = -100;
  rdrop::CrossEntropyOptions<S> co;
  co.label_smoothing = S(0.2);
  check_in_place(rdrop::CrossEntropy<S>(co), x, y);

  check_divergence_in_place(rdrop::SymmetricKL<S>(), x, x2);
  check_divergence_in_place(rdrop::KLDivergence<S>(), x, x2);
  check_divergence_in_place(rdrop::JensenShannon<S>(), x, x2);
  check_divergence_in_place(rdrop::BernoulliSymmetricKL<S>(), x, x2);
  check_divergence_in_place(rdrop::SquaredError<S>(), x, x2);
}

TEMPLATE_TEST_CASE("The fused kernels take grad_a = a and grad_b = b", "[in_place][kernels]", float, double) {
  using S = TestType;
  const ref::Matrix<S> x = ref::random_logits<S>(2, 1000, 4.0, 541);
  rdrop::kernels::PairWeights<S> w;
  w.first = {3, S(0.1), S(1)};
  w.second = {7, S(0.1), S(1)};
  w.kl_pq = w.kl_qp = S(0.75);
  ref::Matrix<S> g(2, 1000);
  const auto v = rdrop::kernels::rdrop_pair(x.row(0).data(), x.row(1).data(), 1000, w, g.row(0).data(),
                                            g.row(1).data());
  ref::Matrix<S> inout = x;
  const auto vi = rdrop::kernels::rdrop_pair(inout.row(0).data(), inout.row(1).data(), 1000, w, inout.row(0).data(),
                                             inout.row(1).data());
  CHECK(v.symmetric == vi.symmetric);
  CHECK(v.ce_first == vi.ce_first);
  CHECK(same_bits(g, inout));
}

TEMPLATE_TEST_CASE("Any other overlap of the gradient with the logits throws before writing", "[in_place][errors]",
                   float, double) {
  using S = TestType;
  using RowMap = Eigen::Map<ref::Matrix<S>>;
  using ColMap = Eigen::Map<Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>>;
  const ref::Matrix<S> original = ref::random_logits<S>(9, 8, 2.0, 551);  // one spare row
  Eigen::VectorXi y = ref::random_labels(4, 8, 552);
  const rdrop::RDropLoss<S> loss;
  ref::Matrix<S> buffer = original;
  const RowMap logits(buffer.data(), 8, 8);
  const auto untouched = [&] { return buffer == original; };

  RowMap shifted_row(buffer.data() + 8, 8, 8);  // one row further on
  CHECK_THROWS_WITH(loss.EvaluateWithGradient(logits, y, shifted_row), Contains("overlaps 'logits'"));
  CHECK(untouched());
  RowMap shifted_one(buffer.data() + 1, 8, 8);  // one element further on
  CHECK_THROWS_WITH(loss.Gradient(logits, y, shifted_one), Contains("'gradient' overlaps"));
  CHECK(untouched());
  RowMap part(buffer.data() + 2 * 8, 4, 8);  // rows 2 to 5 against logits rows 4 to 7
  CHECK_THROWS_AS(loss.EvaluateWithGradient(logits.bottomRows(4), y.head(2), part), std::invalid_argument);
  CHECK(untouched());
  ColMap transposed(buffer.data(), 8, 8);  // the same memory in the other element order
  CHECK_THROWS_WITH(loss.EvaluateWithGradient(logits, y, transposed), Contains("same order"));
  CHECK(untouched());
  CHECK_THROWS_AS(rdrop::CrossEntropy<S>().Gradient(logits, rdrop::Duplicate(y), shifted_row),
                  std::invalid_argument);
  CHECK(untouched());

  // Tensors: the same memory seen as [2B, T, C] with a shift.
  Eigen::TensorMap<Tensor3<S>> tensor(buffer.data(), 4, 2, 8);
  Eigen::TensorMap<Tensor3<S>> tensor_shifted(buffer.data() + 8, 4, 2, 8);
  Eigen::Tensor<int, 2, Eigen::RowMajor> ty(2, 2);
  ty.setValues({{1, 2}, {3, 4}});
  CHECK_THROWS_AS(loss.EvaluateWithGradient(tensor, ty, tensor_shifted), std::invalid_argument);
  CHECK(untouched());

  // The divergence functors: a gradient over the other input, or two gradients over one another.
  ref::Matrix<S> a = original.topRows(4), b = original.bottomRows(4);
  const ref::Matrix<S> a0 = a, b0 = b;
  CHECK_THROWS_WITH(rdrop::SymmetricKL<S>().Gradient(a, b, b, a), Contains("overlaps"));
  ref::Matrix<S> g(4, 8);
  CHECK_THROWS_WITH(rdrop::JensenShannon<S>().Gradient(a, b, g, g), Contains("'grad_second' overlaps 'grad_first'"));
  CHECK((a == a0 && b == b0));
}

TEMPLATE_TEST_CASE("A gradient over the regression or multi-label targets throws", "[in_place][errors]", float,
                   double) {
  using S = TestType;
  const ref::Matrix<S> x = ref::random_logits<S>(4, 3, 1.0, 561);
  ref::Matrix<S> targets = ref::random_logits<S>(4, 3, 1.0, 562);
  const ref::Matrix<S> before = targets;
  CHECK_THROWS_WITH(rdrop::RDropRegressionLoss<S>().EvaluateWithGradient(x, targets, targets),
                    Contains("'gradient' overlaps 'targets'"));
  CHECK(targets == before);
  ref::Matrix<S> probabilities = (targets.array() > S(0)).template cast<S>();
  const ref::Matrix<S> p0 = probabilities;
  CHECK_THROWS_AS(rdrop::RDropMultiLabelLoss<S>().Gradient(x, probabilities, probabilities), std::invalid_argument);
  CHECK(probabilities == p0);
}

TEMPLATE_TEST_CASE("In place at the edges: an empty batch, logits of 1e4, -inf classes", "[in_place][stability]",
                   float, double) {
  using S = TestType;
  rdrop::RDropOptions<S> o;
  o.label_smoothing = S(0.1);
  // An empty batch: loss 0, an empty gradient, in place as out of place.
  const ref::Matrix<S> empty(0, 7);
  check_in_place(rdrop::RDropLoss<S>(o), empty, Eigen::VectorXi(0));
  check_in_place(rdrop::RDropLoss<S, rdrop::JensenShannon<S>>(o), empty, Eigen::VectorXi(0));
  check_in_place(rdrop::RDropRegressionLoss<S>(), empty, ref::Matrix<S>(0, 7));
  // Logits around 1e4 (float spacing there is 1e-3) and a class at -inf in
  // one copy only: the fused sweep's redone and masked passes, in place.
  ref::Matrix<S> x = ref::random_logits<S>(8, 33, 4.0, 571);
  x.array() += S(1e4);
  const Eigen::VectorXi y = ref::random_labels(4, 33, 572);
  check_in_place(rdrop::RDropLoss<S>(o), x, y);
  check_in_place(rdrop::RDropLoss<S, rdrop::JensenShannon<S>>(o), x, y);
  check_in_place(rdrop::CrossEntropy<S>(), x, rdrop::Duplicate(y));
  x(3, 5) = -std::numeric_limits<S>::infinity();
  check_in_place(rdrop::RDropLoss<S>(o), x, y);
  check_in_place(rdrop::RDropLoss<S, rdrop::KLDivergence<S>>(o), x, y);
}
