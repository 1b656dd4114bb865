// Fuzz family "kernels": the raw-pointer kernels of rdrop::kernels
// (rdrop_pairs, rdrop_pair, symmetric_kl_pairs) on exact-size buffers with
// row strides, so that AddressSanitizer sees any read or write past a row.
#include "check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstddef>
#include <vector>

namespace fuzz::kernels {
namespace {

template <typename S>
void fuzz_kernels(FuzzedDataProvider& in, int profile) {
  const Index pairs = in.ConsumeIntegralInRange<Index>(0, 5);
  const Index c = draw_classes(in);
  const Index stride = c + in.ConsumeIntegralInRange<Index>(0, 2);
  const auto rows_size = static_cast<std::size_t>(pairs > 0 ? (pairs - 1) * stride + c : 0);
  std::vector<S> a(rows_size), b(rows_size);
  for (S& v : a) v = draw<S>(in, profile);
  for (S& v : b) v = in.ConsumeIntegralInRange(0, 3) == 0 ? draw<S>(in, profile) : v;
  for (std::size_t i = 0; i < b.size(); ++i)
    if (in.ConsumeIntegralInRange(0, 3) != 0) b[i] = a[i];  // close copies, as in R-Drop
  std::vector<rdrop::kernels::Index> la(static_cast<std::size_t>(pairs)), lb(la.size());
  for (std::size_t i = 0; i < la.size(); ++i) {
    la[i] = c > 0 && in.ConsumeBool() ? in.ConsumeIntegralInRange<Index>(0, c - 1) : -1;
    lb[i] = c > 0 && in.ConsumeBool() ? in.ConsumeIntegralInRange<Index>(0, c - 1) : -1;
  }
  rdrop::kernels::RDropPairsOptions<S> o;
  const S weights[] = {S(1), S(0), S(0.5), S(1e-3), S(3)};
  o.ce_weight = weights[in.ConsumeIntegralInRange(0, 4)];
  o.kl_weight = weights[in.ConsumeIntegralInRange(0, 4)];
  o.label_smoothing = in.ConsumeBool() ? S(0) : S(0.1);
  const bool with_grad = in.ConsumeBool();
  std::vector<S> ga(with_grad ? rows_size : 0, sentinel<S>), gb(ga.size(), sentinel<S>);
  std::vector<rdrop::kernels::PairValues<S>> per(static_cast<std::size_t>(pairs));
  const auto sums = rdrop::kernels::rdrop_pairs<S>(pairs, c, a.data(), stride, b.data(), stride, la.data(), lb.data(),
                                                   with_grad ? ga.data() : nullptr, stride,
                                                   with_grad ? gb.data() : nullptr, stride, o, per.data());
  const RowMat<S> xa = Eigen::Map<const RowMat<S>>(a.data(), 1, static_cast<Index>(a.size()));
  const RowMat<S> xb = Eigen::Map<const RowMat<S>>(b.data(), 1, static_cast<Index>(b.size()));
  const RowFacts<S> fa = facts(xa), fb = facts(xb);
  const bool clean = !fa.nan_or_pinf[0] && !fb.nan_or_pinf[0] && (xa.size() == 0 || (!fa.ninf[0] && !fb.ninf[0]));
  if (verbose) std::fprintf(stderr, "pairs %ld classes %ld stride %ld\n", static_cast<long>(pairs), static_cast<long>(c), static_cast<long>(stride));
  show("a", xa);
  show("b", xb);
  note("ce_weight", static_cast<double>(o.ce_weight));
  note("kl_weight", static_cast<double>(o.kl_weight));
  note("smoothing", static_cast<double>(o.label_smoothing));
  for (std::size_t i = 0; i < la.size(); ++i) note("label a/b", static_cast<double>(la[i] * 1000 + lb[i]));
  note("sums.cross_entropy", static_cast<double>(sums.cross_entropy));
  note("sums.symmetric_kl", static_cast<double>(sums.symmetric_kl));
  note("sums.loss", static_cast<double>(sums.loss));
  const bool in_bounds = bounded<S>(std::max(fa.max_abs, fb.max_abs), 3, 2 * pairs, c, false);
  if (clean && in_bounds) {
    FUZZ_REQUIRE(std::isfinite(sums.loss) && sums.cross_entropy >= S(0) && sums.symmetric_kl >= S(0));
    for (std::size_t i = 0; i < ga.size(); ++i) FUZZ_REQUIRE(std::isfinite(ga[i]) && std::isfinite(gb[i]));
  }
  // Each pair of the batch equals the one-pair kernel on copies of its rows.
  for (Index i = 0; i < pairs && c > 0; ++i) {
    const std::vector<S> ra(a.begin() + i * stride, a.begin() + i * stride + c);
    const std::vector<S> rb(b.begin() + i * stride, b.begin() + i * stride + c);
    rdrop::kernels::PairWeights<S> w;
    w.first = {la[static_cast<std::size_t>(i)], o.label_smoothing, o.ce_weight};
    w.second = {lb[static_cast<std::size_t>(i)], o.label_smoothing, o.ce_weight};
    w.kl_pq = w.kl_qp = S(0.5) * o.kl_weight;
    std::vector<S> ha(with_grad ? static_cast<std::size_t>(c) : 0), hb(ha.size());
    const auto v = rdrop::kernels::rdrop_pair<S>(ra.data(), rb.data(), c, w, with_grad ? ha.data() : nullptr,
                                                 with_grad ? hb.data() : nullptr);
    const auto& u = per[static_cast<std::size_t>(i)];
    FUZZ_REQUIRE(same(v.ce_first, u.ce_first) && same(v.ce_second, u.ce_second) && same(v.symmetric, u.symmetric) &&
                 same(v.kl_pq, u.kl_pq) && same(v.kl_qp, u.kl_qp));
    for (std::size_t j = 0; j < ha.size(); ++j) {
      FUZZ_REQUIRE(same(ha[j], ga[static_cast<std::size_t>(i * stride) + j]));
      FUZZ_REQUIRE(same(hb[j], gb[static_cast<std::size_t>(i * stride) + j]));
    }
  }
  // Gaps between rows (stride > classes) are never written.
  for (Index i = 0; i + 1 < pairs && with_grad; ++i)
    for (Index j = c; j < stride; ++j) FUZZ_REQUIRE(ga[static_cast<std::size_t>(i * stride + j)] == sentinel<S>);
  // The symmetric-KL batch kernel agrees with the pair sweep's S.
  std::vector<S> values(static_cast<std::size_t>(pairs), sentinel<S>);
  std::vector<S> ka(ga.size(), sentinel<S>), kb(ga.size(), sentinel<S>);
  const S total = rdrop::kernels::symmetric_kl_pairs<S>(pairs, c, a.data(), stride, b.data(), stride,
                                                        with_grad ? ka.data() : nullptr, stride,
                                                        with_grad ? kb.data() : nullptr, stride, S(1), values.data());
  for (Index i = 0; i < pairs && c > 0; ++i) FUZZ_REQUIRE(same(values[static_cast<std::size_t>(i)], per[static_cast<std::size_t>(i)].symmetric));
  if (clean && in_bounds) FUZZ_REQUIRE(std::isfinite(total) && total >= S(0));
}

}  // namespace

template <typename S>
void run(FuzzedDataProvider& in, int profile, int variant) {
  (void)variant;
  fuzz_kernels<S>(in, profile);
}

template void run<float>(FuzzedDataProvider&, int, int);
template void run<double>(FuzzedDataProvider&, int, int);

}  // namespace fuzz::kernels
