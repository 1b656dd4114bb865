// Fuzz family "linear": RDropLinearLoss, the output layer fused with the
// loss, against the unfused pipeline built from RDropLoss (logits = H·Wᵀ + b,
// the loss, the products). For drawn shapes, options, labels, masks, bias or
// none, chunk sizes and thread counts:
//  - it throws std::invalid_argument if and only if RDropLoss on the
//    logits throws, and then leaves its outputs as they were;
//  - with moderate values, its value and gradients agree with the
//    pipeline's (to float rounding of the products);
//  - its results are bitwise the same for another thread count, and with
//    the hidden states' gradient written over the hidden states.
#include "check.hpp"

#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>

namespace fuzz::linear {
namespace {

template <typename S>
struct Outputs {
  RowMat<S> hidden, weight;
  Vec<S> bias;
  S value = S(0);
};

template <typename S>
bool close(const RowMat<S>& a, const RowMat<S>& b, double tol) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  if (a.size() == 0) return true;
  const double scale = 1.0 + static_cast<double>(b.cwiseAbs().maxCoeff());
  return static_cast<double>((a - b).cwiseAbs().maxCoeff()) <= tol * scale;
}

template <typename S>
void run_linear(FuzzedDataProvider& in, int profile) {
  const Index pairs = in.ConsumeIntegralInRange<Index>(0, 7);
  const Index d = in.ConsumeIntegralInRange<Index>(0, 6);
  const Index v = in.ConsumeIntegralInRange<Index>(0, 9) == 0 ? 0 : in.ConsumeIntegralInRange<Index>(1, 12);
  const bool with_bias = in.ConsumeBool();
  RowMat<S> hidden(2 * pairs, d), weight(v, d);
  Vec<S> bias(v);
  for (Index i = 0; i < hidden.size(); ++i) hidden.data()[i] = draw<S>(in, profile);
  for (Index i = 0; i < weight.size(); ++i) weight.data()[i] = draw<S>(in, profile) / S(4);
  for (Index i = 0; i < bias.size(); ++i) bias(i) = draw<S>(in, profile);

  rdrop::RDropOptions<S> o;
  o.layout = in.ConsumeBool() ? rdrop::Layout::Stacked : rdrop::Layout::Interleaved;
  o.normalization = static_cast<rdrop::Normalization>(in.ConsumeIntegralInRange(0, 5));
  o.alpha = in.ConsumeBool() ? S(1) : draw_alpha<S>(in);
  o.label_smoothing = in.ConsumeIntegralInRange(0, 3) == 0 ? draw_unit<S>(in) : S(0);
  o.smoothing_style = in.ConsumeBool() ? rdrop::SmoothingStyle::Uniform : rdrop::SmoothingStyle::ExcludeTarget;
  if (in.ConsumeIntegralInRange(0, 3) == 0) o.padding_index = 0;
  const Index n_labels = draw_count(in, 2 * pairs);
  Eigen::VectorXi labels(n_labels);
  for (Index i = 0; i < n_labels; ++i) {
    const int pick = in.ConsumeIntegralInRange(0, 11);
    labels(i) = pick == 0 ? -100 : pick == 1 ? static_cast<int>(v) : in.ConsumeIntegralInRange<int>(0, 11);
  }
  const int mask_kind = in.ConsumeIntegralInRange(0, 2);  // none, once per pair, once per row
  Eigen::VectorXi mask(mask_kind == 1 ? pairs : 2 * pairs);
  for (Index i = 0; i < mask.size(); ++i) mask(i) = in.ConsumeIntegralInRange(0, 3) != 0;
  rdrop::LinearLossOptions lo;
  lo.chunk_bytes = static_cast<std::size_t>(in.ConsumeIntegralInRange<Index>(1, pairs + 1) * 2 * (v + 2 * d)) *
                       sizeof(S) +
                   in.ConsumeIntegralInRange<std::size_t>(0, 7);
  o.threads = 1;

  // The oracle: the unfused pipeline. Options RDropLoss refuses, the fused
  // loss refuses too (it is built from them).
  std::optional<rdrop::RDropLoss<S>> loss;
  std::optional<rdrop::RDropLinearLoss<S>> linear;
  const bool options_valid = !throws([&] { loss.emplace(o); });
  // ... and a chunk budget of 0 bytes.
  FUZZ_REQUIRE((options_valid && lo.chunk_bytes > 0) == !throws([&] { linear.emplace(o, lo); }));
  if (!linear) return;
  RowMat<S> logits = hidden * weight.transpose();
  if (with_bias) logits.rowwise() += bias.transpose();
  RowMat<S> g;
  S want = S(0);
  const auto reference = [&] {
    want = mask_kind == 0 ? loss->EvaluateWithGradient(logits, labels, g)
                          : loss->EvaluateWithGradient(logits, labels, mask, g);
  };
  const bool valid = !throws(reference);

  const auto fused = [&](const rdrop::RDropLinearLoss<S>& l, Outputs<S>& out) {
    if (with_bias) {
      out.value = mask_kind == 0 ? l.EvaluateWithGradient(hidden, weight, bias, labels, out.hidden, out.weight, out.bias)
                                 : l.EvaluateWithGradient(hidden, weight, bias, labels, mask, out.hidden, out.weight,
                                                          out.bias);
    } else {
      out.value = mask_kind == 0 ? l.EvaluateWithGradient(hidden, weight, rdrop::no_bias, labels, out.hidden,
                                                          out.weight, rdrop::no_bias)
                                 : l.EvaluateWithGradient(hidden, weight, rdrop::no_bias, labels, mask, out.hidden,
                                                          out.weight, rdrop::no_bias);
    }
  };
  Outputs<S> out;
  out.hidden = prefilled<RowMat<S>>(in);
  out.weight = prefilled<RowMat<S>>(in);
  const RowMat<S> hidden_before = out.hidden, weight_before = out.weight;
  if (EXPECT(valid, fused(*linear, out))) {
    FUZZ_REQUIRE(same_all(out.hidden, hidden_before));
    FUZZ_REQUIRE(same_all(out.weight, weight_before));
    return;
  }

  if (profile == kModerate) {
    // Moderate inputs: the products differ only in their rounding.
    const double tol = 2e4 * static_cast<double>(std::numeric_limits<S>::epsilon());  // 2.4e-3, 4.4e-12
    FUZZ_REQUIRE(std::abs(static_cast<double>(out.value - want)) <= tol * (1.0 + std::abs(static_cast<double>(want))));
    FUZZ_REQUIRE(close<S>(out.hidden, RowMat<S>(g * weight), tol));
    FUZZ_REQUIRE(close<S>(out.weight, RowMat<S>(g.transpose() * hidden), tol));
    // (A column sum of no rows is left to the check below: Eigen's colwise
    // sum offsets the null data pointer of an empty matrix.)
    if (with_bias && g.rows() > 0) {
      FUZZ_REQUIRE(close<S>(RowMat<S>(out.bias.transpose()), RowMat<S>(g.colwise().sum()), tol));
    }
    if (with_bias && g.rows() == 0) FUZZ_REQUIRE(out.bias.isZero(0));
  }

  // Another thread count: the same bits.
  rdrop::RDropOptions<S> o2 = o;
  o2.threads = in.ConsumeIntegralInRange(2, 3);
  Outputs<S> threaded;
  fused(rdrop::RDropLinearLoss<S>(o2, lo), threaded);
  FUZZ_REQUIRE(same(out.value, threaded.value));
  FUZZ_REQUIRE(same_all(out.hidden, threaded.hidden));
  FUZZ_REQUIRE(same_all(out.weight, threaded.weight));

  // The hidden states' gradient over the hidden states: the same bits.
  RowMat<S> inout = hidden, gw;
  Vec<S> gb;
  const S value = mask_kind == 0
                      ? linear->EvaluateWithGradient(inout, weight, bias, labels, inout, gw, gb)
                      : linear->EvaluateWithGradient(inout, weight, bias, labels, mask, inout, gw, gb);
  if (with_bias) {
    FUZZ_REQUIRE(same(value, out.value));
    FUZZ_REQUIRE(same_all(inout, out.hidden));
  }
}

}  // namespace

template <typename S>
void run(FuzzedDataProvider& in, int profile, int) {
  run_linear<S>(in, profile);
}

template void run<float>(FuzzedDataProvider&, int, int);
template void run<double>(FuzzedDataProvider&, int, int);

}  // namespace fuzz::linear
