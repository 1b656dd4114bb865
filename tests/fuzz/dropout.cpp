// Fuzz family "dropout": Dropout (masks, Forward and Backward over every
// input and output kind, in place) and MeasureConsistency (the gap between
// the Monte-Carlo average of dropout-on passes and the dropout-off one).
#include "check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>

namespace fuzz::dropout {
namespace {

template <typename S>
void fuzz_dropout(FuzzedDataProvider& in, int profile) {
  const S p = draw_unit<S>(in);
  const int threads = in.ConsumeIntegralInRange(0, 4) == 0 ? -1 : in.ConsumeIntegralInRange(0, 2);
  const auto seed = in.ConsumeIntegral<std::uint64_t>();
  const auto step = in.ConsumeIntegral<std::uint64_t>();
  std::optional<rdrop::Dropout<S>> made;
  EXPECT(p >= S(0) && p < S(1) && threads >= 0, made.emplace(p, seed, threads));
  if (!made) return;
  const rdrop::Dropout<S>& drop = *made;
  const Batch<S> b = draw_batch<S>(in, profile, false);
  const Index rows = b.x.rows(), cols = b.x.cols();

  RowMat<S> mask;
  const Index mr = in.ConsumeIntegralInRange(0, 9) == 0 ? -1 : rows;
  EXPECT(mr >= 0, mask = drop.Mask(mr, cols, step));
  if (mr < 0) return;
  FUZZ_REQUIRE(mask.rows() == rows && mask.cols() == cols);
  FUZZ_REQUIRE(((mask.array() == S(0)) || (mask.array() == drop.scale())).all());

  RowMat<S> out = prefilled<RowMat<S>>(in);
  drop.Forward(b.x, out, step);
  for (Index i = 0; i < rows; ++i)
    for (Index j = 0; j < cols; ++j) {
      const S want = mask(i, j) == S(0) ? S(0) : b.x(i, j) * drop.scale();
      FUZZ_REQUIRE(same(out(i, j), want));
      if (mask(i, j) == S(0)) FUZZ_REQUIRE(!std::signbit(out(i, j)));  // +0, NaN does not leak
    }
  // Same mask whatever the layout of input and output, and in place.
  const int kind = in.ConsumeIntegralInRange(0, 3);
  if (kind == 0) {
    const ColMat<S> xc = b.x;
    ColMat<S> oc;
    drop.Forward(xc, oc, step);
    FUZZ_REQUIRE(same_all(oc, out));
  } else if (kind == 1) {
    RowMat<S> inplace = b.x;
    drop.Forward(inplace, inplace, step);
    FUZZ_REQUIRE(same_all(inplace, out));
  } else if (kind == 2) {
    const bool fits = in.ConsumeIntegralInRange(0, 3) != 0;
    const Index oc = fits ? cols : cols + 1;
    RowMat<S> buffer = RowMat<S>::Constant(rows, oc + 1, sentinel<S>);
    StridedMap<S> view(buffer.data(), rows, oc, Eigen::OuterStride<>(oc + 1));
    EXPECT(fits, drop.Backward(b.x * S(1), view, step));
    if (fits) {
      FUZZ_REQUIRE(same_all(buffer.leftCols(cols), out));
      FUZZ_REQUIRE(cols_from_are(buffer, oc, sentinel<S>));
    } else {
      FUZZ_REQUIRE((buffer.array() == sentinel<S>).all());
    }
  } else {
    ColMat<S> oc = ColMat<S>::Constant(cols, rows, sentinel<S>);
    drop.Forward(b.x, oc.transpose(), step);
    FUZZ_REQUIRE(same_all(oc.transpose(), out));
  }
}

// MeasureConsistency.

template <typename S>
void fuzz_consistency(FuzzedDataProvider& in, int profile) {
  const Batch<S> b = draw_batch<S>(in, profile, false);
  const Index rows = b.x.rows(), c = b.x.cols();
  rdrop::ConsistencyOptions o;
  o.passes = in.ConsumeIntegralInRange(-1, 4);
  o.batch_rows = in.ConsumeIntegralInRange<Index>(-1, 4);
  Eigen::VectorXi labels(in.ConsumeIntegralInRange(0, 9) == 0 ? in.ConsumeIntegralInRange<Index>(0, 10) : rows);
  bool label_too_big = false;
  for (Index i = 0; i < labels.size(); ++i) {
    labels(i) = in.ConsumeIntegralInRange(-2, static_cast<int>(c));
    label_too_big = label_too_big || labels(i) >= c;
  }
  const bool wrong_shape = in.ConsumeIntegralInRange(0, 9) == 0;
  // The input carries each row's index; forward returns that row's logits,
  // perturbed per dropout-on call.
  RowMat<S> x(rows, 1);
  for (Index i = 0; i < rows; ++i) x(i, 0) = S(i);
  int calls = 0;
  auto forward = [&](const auto& batch, bool dropout) {
    ++calls;
    RowMat<S> out(batch.rows(), wrong_shape && calls == 1 ? c + 1 : c);
    for (Index i = 0; i < batch.rows(); ++i) {
      const auto r = static_cast<Index>(batch(i, 0));
      for (Index j = 0; j < out.cols(); ++j) {
        const S base = j < c ? b.x(r, j) : S(0);
        out(i, j) = dropout ? base + S(0.125) * S((calls + j) % 3) : base;
      }
    }
    return out;
  };
  const bool valid = o.passes >= 1 && o.batch_rows >= 0 && labels.size() == rows && !wrong_shape && c > 0 &&
                     !label_too_big;
  rdrop::ConsistencyReport<S> report;
  if (EXPECT(valid, report = rdrop::MeasureConsistency(forward, x, labels, o))) return;
  show("logits", b.x);
  show("labels", labels);
  note("passes", o.passes);
  note("batch_rows", static_cast<double>(o.batch_rows));
  note("kl", static_cast<double>(report.kl));
  FUZZ_REQUIRE(report.samples == rows && report.passes == o.passes);
  const Index labeled = (labels.array() >= 0).count();
  FUZZ_REQUIRE(report.labeled == labeled);
  const RowFacts<S> f = facts(b.x);
  const bool finite_rows = std::count(f.nan_or_pinf.begin(), f.nan_or_pinf.end(), 1) == 0 &&
                           std::count(f.ninf.begin(), f.ninf.end(), 1) == 0;
  if (finite_rows && bounded<S>(f.max_abs, 0, rows, c, false)) {
    FUZZ_REQUIRE(std::isfinite(report.kl));
  }
  // KL ≥ 0 up to rounding, at any logit magnitude (log-softmaxes are formed
  // as (x − top) − log Σ; see tests/test_edge_cases.cpp, "MeasureConsistency
  // keeps its KL accurate").
  FUZZ_REQUIRE(std::isnan(report.kl) || report.kl >= -S(1e-3));
  for (S acc : {report.mc_accuracy, report.deterministic_accuracy})
    FUZZ_REQUIRE(labeled == 0 ? std::isnan(acc) : (acc >= S(0) && acc <= S(1)));
  FUZZ_REQUIRE(report.agreement >= S(0) && report.agreement <= S(1));
}

}  // namespace

template <typename S>
void run(FuzzedDataProvider& in, int profile, int variant) {
  if (variant == 0) return fuzz_dropout<S>(in, profile);
  fuzz_consistency<S>(in, profile);
}

template void run<float>(FuzzedDataProvider&, int, int);
template void run<double>(FuzzedDataProvider&, int, int);

}  // namespace fuzz::dropout
