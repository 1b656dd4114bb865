// Fuzz family "divergences": the stand-alone divergences per pair of rows
// (SymmetricKL, KLDivergence, JensenShannon, BernoulliSymmetricKL,
// SquaredError), against the same rows in other shapes.
#include "check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstddef>
#include <type_traits>

namespace fuzz::divergences {
namespace {

template <typename S, typename D>
void fuzz_divergence(FuzzedDataProvider& in, int profile) {
  const Batch<S> a = draw_batch<S>(in, profile, false);
  Batch<S> b = a;
  const int shape = in.ConsumeIntegralInRange(0, 9);
  if (shape == 0) {
    b = draw_batch<S>(in, profile, false);  // any shape: usually an error
  } else {
    for (Index i = 0; i < b.x.size(); ++i)
      if (in.ConsumeBool()) b.x.data()[i] = draw<S>(in, profile);
  }
  const D d(in.ConsumeBool() ? rdrop::Reduction::Mean : rdrop::Reduction::Sum);
  const bool valid = a.x.rows() == b.x.rows() && a.x.cols() == b.x.cols() && !(a.x.rows() > 0 && a.x.cols() == 0);
  RowMat<S> ga = prefilled<RowMat<S>>(in), gb = prefilled<RowMat<S>>(in);
  const Index r1 = ga.rows(), c1 = ga.cols(), r2 = gb.rows(), c2 = gb.cols();
  S value = 0;
  if (EXPECT(valid, value = d.EvaluateWithGradient(a.x, b.x, ga, gb))) {
    FUZZ_REQUIRE(untouched(ga, r1, c1) && untouched(gb, r2, c2));
    return;
  }
  const ColMat<S> bc = b.x;
  FUZZ_REQUIRE(same(d.Evaluate(a.x, bc), value));
  Vec<S> per;
  d.EvaluatePerRow(a.x, b.x, per);
  RowMat<S> ha, hb;
  d.Gradient(a.x, b.x, ha, hb);
  FUZZ_REQUIRE(same_all(ha, ga) && same_all(hb, gb));
  if (verbose) std::fprintf(stderr, "%s\n", __PRETTY_FUNCTION__);
  show("first", a.x);
  show("second", b.x);
  show("per pair", per);
  show("grad first", ga);
  show("grad second", gb);
  const RowFacts<S> fa = facts(a.x), fb = facts(b.x);
  constexpr bool squares = std::is_same_v<D, rdrop::SquaredError<S>>;
  const bool in_bounds = bounded<S>(std::max(fa.max_abs, fb.max_abs), 1, a.x.rows(), a.x.cols(), squares);
  bool poisoned = false, ninf = false;
  for (Index i = 0; i < a.x.rows(); ++i) {
    const auto iu = static_cast<std::size_t>(i);
    poisoned = poisoned || fa.nan_or_pinf[iu] || fb.nan_or_pinf[iu];
    const bool row_ninf = fa.ninf[iu] || fb.ninf[iu];
    ninf = ninf || row_ninf;
    if (!fa.nan_or_pinf[iu] && !fb.nan_or_pinf[iu] && !row_ninf && in_bounds) {
      FUZZ_REQUIRE(std::isfinite(per(i)) && per(i) >= S(0));
      FUZZ_REQUIRE(all_finite(ga.row(i)) && all_finite(gb.row(i)));
      if (same_all(a.x.row(i), b.x.row(i)) && !std::is_same_v<D, rdrop::JensenShannon<S>> &&
          fa.max_abs < 1e20L)
        FUZZ_REQUIRE(per(i) == S(0));
    }
  }
  // The softmax divergences are NaN for NaN/+inf rows; the Bernoulli KL and
  // the squared error work node by node, so they propagate NaN but may turn
  // +inf into +inf.
  if (poisoned && !std::is_same_v<D, rdrop::BernoulliSymmetricKL<S>> && !squares) FUZZ_REQUIRE(std::isnan(value));
  if (!poisoned && !ninf && in_bounds) FUZZ_REQUIRE(std::isfinite(value) && value >= S(0));
}

}  // namespace

template <typename S>
void run(FuzzedDataProvider& in, int profile, int variant) {
  (void)variant;
  with_drawn_divergence<S>(in, [&](const auto& d) { fuzz_divergence<S, std::decay_t<decltype(d)>>(in, profile); });
}

template void run<float>(FuzzedDataProvider&, int, int);
template void run<double>(FuzzedDataProvider&, int, int);

}  // namespace fuzz::divergences
