// Fuzz family "safety": what once gave silent wrong answers.
//  - variant 0: gradients written in place over their own logits: every
//    loss gives the out-of-place value and gradient (bitwise, NaN as NaN),
//    or throws exactly when out of place throws; a gradient one row or one
//    element off the logits throws and leaves the buffer as it was;
//  - variant 1: the per-pair calls of every divergence with rows (and
//    gradient rows) of any lengths: they throw if and only if the lengths
//    differ, and then write nothing (no read past a row: ASan watches);
//  - variant 2: Jensen–Shannon is shift invariant: the same constant (0,
//    ±1e2, ±1e4) added to every logit of both rows changes its value and
//    gradient only by rounding, against the unshifted rows in double.
#include "check.hpp"

#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <type_traits>

namespace fuzz::safety {
namespace {

template <typename S>
using Buffer = Eigen::Map<RowMat<S>>;

// Runs loss out of place and in place (gradient = logits) on copies of x.
template <typename S, typename Loss, typename... Rest>
void in_place_equals_out_of_place(const Loss& loss, const RowMat<S>& x, const Rest&... rest) {
  RowMat<S> grad;
  S value = 0;
  const bool threw = throws([&] { value = loss.EvaluateWithGradient(x, rest..., grad); });
  RowMat<S> inout = x;
  S value_in_place = 0;
  const bool threw_in_place = throws([&] { value_in_place = loss.EvaluateWithGradient(inout, rest..., inout); });
  FUZZ_REQUIRE(threw == threw_in_place);
  if (threw) {
    FUZZ_REQUIRE(same_all(inout, x));  // outputs untouched on error
    return;
  }
  FUZZ_REQUIRE(same(value, value_in_place));
  FUZZ_REQUIRE(same_all(grad, inout));
}

// Options of a row-target loss with the layout and normalization of `o`.
template <typename Options, typename S>
Options like(const rdrop::RDropOptions<S>& o) {
  Options r;
  r.layout = o.layout;
  r.normalization = o.normalization;
  return r;
}

template <typename S>
void fuzz_in_place(FuzzedDataProvider& in, int profile) {
  const Batch<S> b = draw_batch<S>(in, profile, false);
  const Index rows = b.x.rows(), c = b.x.cols();
  const Index samples = rows / 2;
  Eigen::VectorXi labels(draw_count(in, rows));
  for (Index i = 0; i < labels.size(); ++i)
    labels(i) = in.ConsumeIntegralInRange(0, 9) == 0 ? -100 : in.ConsumeIntegralInRange<int>(0, int(std::max<Index>(c, 1)) - 1);
  rdrop::RDropOptions<S> o;
  o.layout = in.ConsumeBool() ? rdrop::Layout::Stacked : rdrop::Layout::Interleaved;
  o.normalization = static_cast<rdrop::Normalization>(in.ConsumeIntegralInRange(0, 5));
  o.alpha = S(in.ConsumeIntegralInRange(0, 8)) / S(2);
  o.label_smoothing = in.ConsumeBool() ? S(0.1) : S(0);
  switch (in.ConsumeIntegralInRange(0, 5)) {
    case 0: in_place_equals_out_of_place<S>(rdrop::RDropLoss<S>(o), b.x, labels); break;
    case 1: in_place_equals_out_of_place<S>(rdrop::RDropLoss<S, rdrop::KLDivergence<S>>(o), b.x, labels); break;
    case 2: in_place_equals_out_of_place<S>(rdrop::RDropLoss<S, rdrop::JensenShannon<S>>(o), b.x, labels); break;
    case 3:
      in_place_equals_out_of_place<S>(rdrop::RDropRegressionLoss<S>(like<rdrop::RegressionOptions<S>>(o)), b.x,
                                      RowMat<S>::Constant(samples, c, S(0.5)).eval());
      break;
    case 4:
      in_place_equals_out_of_place<S>(rdrop::RDropMultiLabelLoss<S>(like<rdrop::MultiLabelOptions<S>>(o)), b.x,
                                      RowMat<S>::Constant(samples, c, S(1)).eval());
      break;
    default: in_place_equals_out_of_place<S>(rdrop::CrossEntropy<S>(), b.x, labels); break;
  }
  // A gradient one element or one row further on: refused, buffer intact.
  if (rows >= 2 && c >= 1) {
    RowMat<S> buffer(rows + 1, c);
    buffer.topRows(rows) = b.x;
    buffer.row(rows).setConstant(S(0));
    const RowMat<S> before = buffer;
    const Buffer<S> logits(buffer.data(), rows, c);
    Buffer<S> shifted(buffer.data() + (in.ConsumeBool() ? c : 1), rows, c);
    EXPECT(false, rdrop::RDropLoss<S>(o).EvaluateWithGradient(logits, labels, shifted));
    FUZZ_REQUIRE(same_all(buffer, before));
  }
}

template <typename S, typename D>
void per_pair_lengths(FuzzedDataProvider& in, int profile) {
  using Row = Eigen::Array<S, 1, Eigen::Dynamic>;
  Index n[4];
  for (Index& k : n) k = in.ConsumeIntegralInRange<Index>(0, 3) == 0 ? in.ConsumeIntegralInRange<Index>(0, 40) : -1;
  const Index base = in.ConsumeIntegralInRange<Index>(0, 40);
  for (Index& k : n)
    if (k < 0) k = base;
  // Exact-size heap rows: ASan reports any read or write past one.
  Row a(n[0]), b(n[1]), ga(n[2]), gb(n[3]);
  for (Index j = 0; j < a.size(); ++j) a(j) = draw<S>(in, profile);
  for (Index j = 0; j < b.size(); ++j) b(j) = draw<S>(in, profile);
  ga.setConstant(sentinel<S>);
  gb.setConstant(sentinel<S>);
  const rdrop::ConstRowMap<S> ma(a.data(), a.size()), mb(b.data(), b.size());
  rdrop::RowMap<S> mga(ga.data(), ga.size()), mgb(gb.data(), gb.size());
  const D d;
  EXPECT(n[0] == n[1], (void)d.EvaluatePair(ma, mb));
  const bool valid = n[0] == n[1] && n[2] == n[0] && n[3] == n[0];
  if (EXPECT(valid, (void)d.EvaluatePairWithGradient(ma, mb, mga, mgb))) {
    FUZZ_REQUIRE((ga == sentinel<S>).all() && (gb == sentinel<S>).all());
  }
}

template <typename S>
void js_shift(FuzzedDataProvider& in) {
  const Index c = in.ConsumeIntegralInRange<Index>(1, 64);
  RowMat<S> a(1, c), b(1, c);
  // Moderate values on a 1/16 grid: exact in float after any listed shift.
  for (Index j = 0; j < c; ++j) {
    a(0, j) = S(in.ConsumeIntegralInRange(-96, 96)) / S(16);
    b(0, j) = S(in.ConsumeIntegralInRange(-96, 96)) / S(16);
  }
  constexpr double shifts[] = {0, 1e2, -1e2, 1e4, -1e4};
  const double shift = shifts[in.ConsumeIntegralInRange(0, 4)];
  const RowMat<S> as = (a.array() + S(shift)).matrix(), bs = (b.array() + S(shift)).matrix();
  RowMat<S> ga, gb;
  const rdrop::JensenShannon<S> js(rdrop::Reduction::Sum);
  const S v = js.EvaluateWithGradient(as, bs, ga, gb);
  RowMat<double> ga0, gb0;
  const RowMat<double> ad = a.template cast<double>(), bd = b.template cast<double>();
  const double v0 = rdrop::JensenShannon<double>(rdrop::Reduction::Sum).EvaluateWithGradient(ad, bd, ga0, gb0);
  // Bounds: 6 and 9 times the worst of 200 000 random cases of this shape
  // after the fix; the unshifted-logsumexp form exceeded them 16 and 360
  // times (float, shifts of 1e4).
  const double eps = std::numeric_limits<S>::epsilon();
  FUZZ_REQUIRE(std::abs(static_cast<double>(v) - v0) <= 256 * eps * (v0 + 1e-3));
  const double scale = 1e-3 + std::max(ga0.cwiseAbs().maxCoeff(), gb0.cwiseAbs().maxCoeff());
  FUZZ_REQUIRE((ga.template cast<double>() - ga0).cwiseAbs().maxCoeff() <= 2048 * eps * scale);
  FUZZ_REQUIRE((gb.template cast<double>() - gb0).cwiseAbs().maxCoeff() <= 2048 * eps * scale);
}

}  // namespace

template <typename S>
void run(FuzzedDataProvider& in, int profile, int variant) {
  switch (variant) {
    case 0: return fuzz_in_place<S>(in, profile);
    case 1:
      return with_drawn_divergence<S>(
          in, [&](const auto& d) { per_pair_lengths<S, std::decay_t<decltype(d)>>(in, profile); });
    default: return js_shift<S>(in);
  }
}

template void run<float>(FuzzedDataProvider&, int, int);
template void run<double>(FuzzedDataProvider&, int, int);

}  // namespace fuzz::safety
