// Fuzz family "two_byte": the float losses on Eigen::bfloat16 and
// Eigen::half logits (docs/two_byte.md). The input's scalar choice picks the
// 2-byte type (float: bfloat16, double: half); the loss is always float.
// The logits are drawn by the shared decoder in float (its profiles: NaN,
// ±inf, ±1e30, huge and denormal values, rows at 1e4 above the rest),
// optionally shifted by ±1e4 or 6e4 / 7e4 (beyond half's 65504 once
// rounded), then rounded to the 2-byte type; "the widened logits" are those
// 2-byte values read back as float (exact). Variants: 0-1 RDropLoss
// (SymmetricKL), 2 KLDivergence, 3 JensenShannon, 4 RDropMultiLabelLoss,
// 5 RDropRegressionLoss (rank-2 matrices of either storage order, strided
// Maps and TensorMaps, or [d0, t, c] tensors; both layouts, masks, padding,
// ignore_index, label smoothing, every normalization, thread counts), 6 the
// divergence functors on pairs of 2-byte rows. Properties:
//  - a call throws if and only if the float call on the widened logits
//    throws, and then leaves every output (2-byte or float) untouched, in
//    place too;
//  - the 2-byte gradient is bitwise the float gradient of the same 2-byte
//    logits rounded once (Eigen's conversion: nearest, ties to even; a NaN
//    as the canonical quiet NaN, of either sign), with the same value;
//  - against the float loss of the widened logits: the softmax KL
//    divergences (SymmetricKL, KLDivergence: the fused sweep) give bitwise
//    its value, per-row values and float gradient, and its gradient rounded
//    once; the staged losses (Jensen-Shannon, multi-label, regression,
//    the other functors) the same up to float rounding, as documented;
//  - Evaluate, Gradient and every output kind agree bitwise with
//    EvaluateWithGradient; in place (the gradient over the 2-byte logits)
//    and another thread count give bitwise the out-of-place result.
// FUZZ_RDROP_STATS=1 prints at exit how many staged comparisons were not
// bitwise (allowed, but so far never seen).
#include "paired.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <type_traits>

namespace fuzz::two_byte {
namespace {

struct Stats {
  long staged = 0, staged_inexact = 0;
  ~Stats() {
    if (std::getenv("FUZZ_RDROP_STATS"))
      std::fprintf(stderr, "two_byte: %ld staged comparisons, %ld not bitwise\n", staged, staged_inexact);
  }
} stats;

template <typename T>
std::uint16_t bits(T v) {
  return Eigen::numext::bit_cast<std::uint16_t>(v);
}
template <typename T>
T sentinel_of() {
  return T(-1234.5f);
}

// Whether the 2-byte g holds exactly want (float) rounded once to T. A NaN
// must be the canonical quiet NaN (bf16 0x7fc0, half 0x7e00) of either sign:
// the sign of a NaN the float arithmetic makes is not specified, and it can
// differ between a float and a 2-byte gradient of the same logits (found by
// this family: KLDivergence, a row holding +inf and NaN); as everywhere in
// rdrop's tests, every NaN counts as one.
template <typename T, typename A, typename B>
bool rounded_once(const A& g, const B& want) {
  if (g.rows() != want.rows() || g.cols() != want.cols()) return false;
  const std::uint16_t quiet = std::is_same_v<T, Eigen::bfloat16> ? 0x7fc0 : 0x7e00;
  for (Index i = 0; i < g.rows(); ++i)
    for (Index j = 0; j < g.cols(); ++j) {
      const std::uint16_t got = bits<T>(g(i, j));
      if (std::isnan(want(i, j)) ? (got & 0x7fffu) != quiet : got != bits<T>(T(want(i, j)))) return false;
    }
  return true;
}
template <typename A, typename B>
bool same_bits(const A& a, const B& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  for (Index i = 0; i < a.rows(); ++i)
    for (Index j = 0; j < a.cols(); ++j)
      if (bits(a(i, j)) != bits(b(i, j))) return false;
  return true;
}
// Whether a 2-byte output kept its shape and its sentinels.
template <typename M>
bool untouched_t(const M& m, Index rows, Index cols) {
  using T = typename M::Scalar;
  if (m.rows() != rows || m.cols() != cols) return false;
  for (Index i = 0; i < rows; ++i)
    for (Index j = 0; j < cols; ++j)
      if (bits(m(i, j)) != bits(sentinel_of<T>())) return false;
  return true;
}

// Up to float rounding (the staged losses): non-finite results alike,
// finite ones within a relative 1e-5.
inline bool close_value(float a, float b) {
  if (!std::isfinite(a) || !std::isfinite(b)) return same(a, b);
  const double da = a, db = b;
  return std::fabs(da - db) <= 1e-5 * std::max(std::fabs(da), std::fabs(db)) + 1e-30;
}
// g (of element type G: float or T) against the float gradient want: each
// element within an ulp of G of want rounded to G, plus 1e-5 of the largest
// finite |want| (and half's subnormal spacing).
template <typename T, typename A, typename B>
bool close_gradient(const A& g, const B& want) {
  using G = typename A::Scalar;
  constexpr bool two = !std::is_same_v<G, float>;
  if (g.rows() != want.rows() || g.cols() != want.cols()) return false;
  double top = 0;
  for (Index i = 0; i < want.rows(); ++i)
    for (Index j = 0; j < want.cols(); ++j)
      if (std::isfinite(want(i, j))) top = std::max(top, std::fabs(static_cast<double>(want(i, j))));
  const double ulp = !two ? 0x1p-20 : std::is_same_v<T, Eigen::bfloat16> ? 0x1p-7 : 0x1p-10;
  const double floor = std::max(1e-5 * top, two && std::is_same_v<T, Eigen::half> ? 0x1p-24 : 0.0);
  for (Index i = 0; i < g.rows(); ++i)
    for (Index j = 0; j < g.cols(); ++j) {
      const float got = static_cast<float>(g(i, j));
      const float ref = static_cast<float>(G(want(i, j)));
      if (!std::isfinite(got) || !std::isfinite(ref)) {
        if (!same(got, ref)) return false;
      } else if (std::fabs(static_cast<double>(got) - ref) > ulp * std::fabs(static_cast<double>(ref)) + floor) {
        return false;
      }
    }
  return true;
}

// The staged comparisons, counted (FUZZ_RDROP_STATS).
template <typename T, typename A, typename B>
bool staged_gradient(const A& g, const B& want) {
  ++stats.staged;
  bool exact;
  if constexpr (std::is_same_v<typename A::Scalar, float>) {
    exact = same_all(g, want);
  } else {
    exact = rounded_once<T>(g, want);
  }
  if (!exact) ++stats.staged_inexact;
  return exact || close_gradient<T>(g, want);
}
inline bool staged_value(float a, float b) {
  ++stats.staged;
  if (same(a, b)) return true;
  ++stats.staged_inexact;
  return close_value(a, b);
}
template <typename A, typename B>
bool staged_values(const A& a, const B& b) {
  if (a.size() != b.size()) return false;
  for (Index i = 0; i < a.size(); ++i)
    if (!staged_value(a(i), b(i))) return false;
  return true;
}

// An offset to every logit (after the decoder's draw, before rounding):
// ±1e4, or 6e4 and 7e4, around and beyond half's largest finite 65504.
inline void shift(FuzzedDataProvider& in, RowMat<float>& x) {
  constexpr float shifts[] = {0, 0, 0, 0, 1e4f, -1e4f, 6e4f, 7e4f};
  const float s = shifts[in.ConsumeIntegralInRange(0, 7)];
  if (s != 0) x.array() += s;
}

// Single-label classification, as losses.cpp draws it.
template <typename D>
struct ClassTask {
  using Loss = rdrop::RDropLoss<float, D>;
  static constexpr bool fused = std::is_same_v<D, rdrop::SymmetricKL<float>> || std::is_same_v<D, rdrop::KLDivergence<float>>;
  rdrop::RDropOptions<float> options;
  Eigen::VectorXi labels;

  void draw(FuzzedDataProvider& in, const CommonOptions<float>& c, const Batch<float>& b) {
    options.alpha = c.alpha;
    options.layout = c.layout;
    options.normalization = c.normalization;
    const Index ignores[] = {-100, -1, 0, 2};
    options.ignore_index = ignores[in.ConsumeIntegralInRange(0, 3)];
    const Index paddings[] = {rdrop::no_padding, rdrop::no_padding, 1, -7};
    options.padding_index = paddings[in.ConsumeIntegralInRange(0, 3)];
    options.label_smoothing = in.ConsumeBool() ? 0.f : draw_unit<float>(in);
    options.smoothing_style = in.ConsumeBool() ? rdrop::SmoothingStyle::Uniform : rdrop::SmoothingStyle::ExcludeTarget;
    labels.resize(draw_count(in, b.rows()));
    const int c_int = static_cast<int>(b.c);
    for (Index i = 0; i < labels.size(); ++i) {
      const int k = in.ConsumeIntegralInRange(0, 15);
      if (k < 10) {
        labels(i) = b.c > 0 ? in.ConsumeIntegralInRange(0, c_int - 1) : 0;
      } else {
        const int others[] = {static_cast<int>(options.ignore_index), -1, c_int, -100,
                              static_cast<int>(options.padding_index == rdrop::no_padding ? 1 : options.padding_index),
                              std::numeric_limits<int>::min()};
        labels(i) = others[k - 10];
      }
    }
  }
  Loss make(int threads) const {
    rdrop::RDropOptions<float> o = options;
    o.threads = threads;
    return Loss(o);
  }
  const Eigen::VectorXi& targets() const { return labels; }
};

// Multi-label and regression: float target rows, as losses.cpp draws them.
template <bool Regression>
struct RealTask {
  using Loss = std::conditional_t<Regression, rdrop::RDropRegressionLoss<float>, rdrop::RDropMultiLabelLoss<float>>;
  using Options = std::conditional_t<Regression, rdrop::RegressionOptions<float>, rdrop::MultiLabelOptions<float>>;
  static constexpr bool fused = false;
  Options options;
  RowMat<float> y;

  void draw(FuzzedDataProvider& in, const CommonOptions<float>& c, const Batch<float>& b) {
    options.alpha = c.alpha;
    options.layout = c.layout;
    options.normalization = c.normalization;
    const Index cols = in.ConsumeIntegralInRange(0, 15) == 0 ? b.c + 1 : b.c;
    y.resize(draw_count(in, b.rows()), cols);
    const int profile = in.ConsumeIntegralInRange(0, 7) == 0 ? kNonFinite : kModerate;
    for (Index i = 0; i < y.size(); ++i) {
      const float v = fuzz::draw<float>(in, profile);
      if constexpr (Regression) {
        y.data()[i] = v;
      } else {
        y.data()[i] = std::isfinite(v) ? (in.ConsumeIntegralInRange(0, 20) == 0 ? v : std::fabs(v) / 7.f) : v;
      }
    }
  }
  Loss make(int threads) const {
    Options o = options;
    o.threads = threads;
    return Loss(o);
  }
  const RowMat<float>& targets() const { return y; }
};

// Calls f with the 2-byte logits as the drawn input kind: row-major,
// column-major, a strided Map (NaN in the gaps), a rank-2 TensorMap.
template <typename T, typename F>
void with_input_kind(int kind, const RowMat<T>& x, F&& f) {
  const Index rows = x.rows(), c = x.cols();
  if (kind == 0) {
    f(x);
  } else if (kind == 1) {
    f(ColMat<T>(x));
  } else if (kind == 2) {
    RowMat<T> wide = RowMat<T>::Constant(rows, c + 3, T(std::numeric_limits<float>::quiet_NaN()));
    wide.leftCols(c) = x;
    f(ConstStridedMap<T>(wide.data(), rows, c, Eigen::OuterStride<>(c + 3)));
  } else {
    f(Eigen::TensorMap<const Tensor<T, 2>>(x.data(), rows, c));
  }
}

// Rank 2: the float oracle on the widened logits, then every 2-byte call.
template <typename T, typename Task, typename Loss, typename Y, typename M>
void matrix_calls(FuzzedDataProvider& in, const Task& task, const Loss& loss, const Loss& other_threads,
                  const RowMat<T>& xt, const Y& y, const M* m) {
  const RowMat<float> xf = xt.template cast<float>();
  const Index rows = xt.rows(), c = xt.cols();
  RowMat<float> gf;
  float vf = 0;
  Vec<float> rf;
  const bool valid = !throws([&] { vf = ewg(loss, xf, y, m, gf); });
  if (valid) per_row(loss, xf, y, m, rf);
  const int in_kind = in.ConsumeIntegralInRange(0, 3);
  const int out_kind = in.ConsumeIntegralInRange(0, 2);
  const T s = sentinel_of<T>();

  if (!valid) {
    with_input_kind<T>(in_kind, xt, [&](const auto& x2) {
      RowMat<T> g2 = RowMat<T>::Constant(2, 3, s);
      EXPECT(false, ewg(loss, x2, y, m, g2));
      FUZZ_REQUIRE(untouched_t(g2, 2, 3));
      EXPECT(false, grad(loss, x2, y, m, g2));
      FUZZ_REQUIRE(untouched_t(g2, 2, 3));
      RowMat<float> gw = RowMat<float>::Constant(3, 2, sentinel<float>);
      EXPECT(false, ewg(loss, x2, y, m, gw));
      FUZZ_REQUIRE(untouched(gw, 3, 2));
      Vec<float> v = Vec<float>::Constant(3, sentinel<float>);
      EXPECT(false, per_row(loss, x2, y, m, v));
      FUZZ_REQUIRE(untouched(v, 3, 1));
      EXPECT(false, eval(loss, x2, y, m));
    });
    RowMat<T> z = xt;
    EXPECT(false, ewg(loss, z, y, m, z));
    FUZZ_REQUIRE(same_bits(z, xt));
    return;
  }

  RowMat<T> g2;
  float v2 = 0;
  with_input_kind<T>(in_kind, xt, [&](const auto& x2) {
    g2 = RowMat<T>::Constant(2, 3, s);
    EXPECT(true, v2 = ewg(loss, x2, y, m, g2));
    // The float gradient of the same 2-byte logits: g2 is it rounded once.
    RowMat<float> gw = RowMat<float>::Constant(3, 2, sentinel<float>);
    float vw = 0;
    EXPECT(true, vw = ewg(loss, x2, y, m, gw));
    FUZZ_REQUIRE(same(vw, v2));
    FUZZ_REQUIRE(rounded_once<T>(g2, gw));
    // Against the float loss of the widened logits.
    Vec<float> r2;
    per_row(loss, x2, y, m, r2);
    if constexpr (Task::fused) {
      FUZZ_REQUIRE(same(v2, vf));
      FUZZ_REQUIRE(same_all(gw, gf));
      FUZZ_REQUIRE(rounded_once<T>(g2, gf));
      FUZZ_REQUIRE(same_all(r2, rf));
    } else {
      FUZZ_REQUIRE(staged_value(v2, vf));
      FUZZ_REQUIRE(staged_gradient<T>(gw, gf));
      FUZZ_REQUIRE(staged_gradient<T>(g2, gf));
      FUZZ_REQUIRE(staged_values(r2, rf));
    }
    FUZZ_REQUIRE(same(eval(loss, x2, y, m), v2));
    RowMat<T> g3;
    grad(loss, x2, y, m, g3);
    FUZZ_REQUIRE(same_bits(g3, g2));
  });

  // Other 2-byte output kinds: the same bits.
  if (out_kind == 0) {
    ColMat<T> gc = ColMat<T>::Constant(1, 4, s);
    FUZZ_REQUIRE(same(ewg(loss, xt, y, m, gc), v2));
    FUZZ_REQUIRE(same_bits(RowMat<T>(gc), g2));
  } else if (out_kind == 1) {
    RowMat<T> buffer = RowMat<T>::Constant(rows, c + 2, s);
    Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>> view(buffer.data(), rows, c,
                                                                       Eigen::OuterStride<>(c + 2));
    FUZZ_REQUIRE(same(ewg(loss, xt, y, m, view), v2));
    FUZZ_REQUIRE(same_bits(RowMat<T>(view), g2));
    for (Index i = 0; i < rows; ++i)
      for (Index j = c; j < c + 2; ++j) FUZZ_REQUIRE(bits(buffer(i, j)) == bits(s));  // padding untouched
  } else {
    Tensor<T, 2> gt(1, 1);
    FUZZ_REQUIRE(same(ewg(loss, xt, y, m, gt), v2));
    FUZZ_REQUIRE(same_bits(Eigen::Map<const RowMat<T>>(gt.data(), rows, c), g2));
  }

  // In place: the gradient over the 2-byte logits.
  RowMat<T> z = xt;
  FUZZ_REQUIRE(same(ewg(loss, z, y, m, z), v2));
  FUZZ_REQUIRE(same_bits(z, g2));
  // Another thread count.
  RowMat<T> g4;
  FUZZ_REQUIRE(same(ewg(other_threads, xt, y, m, g4), v2));
  FUZZ_REQUIRE(same_bits(g4, g2));
  (void)task;
}

// Rank 3: [d0, t, c] tensors (or TensorMaps) of 2-byte logits.
template <typename T, typename Task, typename Loss, typename Y, typename M>
void sequence_calls(FuzzedDataProvider& in, const Batch<float>& b, const Loss& loss, const Loss& other_threads,
                    const RowMat<T>& xt, const Y& y, const M* m) {
  const Index rows = b.rows(), c = b.c;
  Tensor<T, 3> x3(b.d0, b.t, c);
  std::copy(xt.data(), xt.data() + xt.size(), x3.data());
  Tensor<float, 3> xf3(b.d0, b.t, c);
  for (Index i = 0; i < xt.size(); ++i) xf3.data()[i] = static_cast<float>(xt.data()[i]);
  const auto as_rows = [&](const auto& t) {
    using S = typename std::decay_t<decltype(t)>::Scalar;
    return Eigen::Map<const RowMat<S>>(t.data(), rows, c);
  };
  Tensor<float, 3> gf;
  Tensor<float, 2> rf;
  float vf = 0;
  const bool valid = !throws([&] { vf = ewg(loss, xf3, y, m, gf); });
  if (valid) per_row(loss, xf3, y, m, rf);
  const bool as_map = in.ConsumeBool();
  const T s = sentinel_of<T>();
  const auto run = [&](const auto& x2) {
    Tensor<T, 3> g2(1, 1, 1);
    g2.setConstant(s);
    float v2 = 0;
    if (EXPECT(valid, v2 = ewg(loss, x2, y, m, g2))) {
      FUZZ_REQUIRE(g2.dimension(0) == 1 && g2.dimension(1) == 1 && g2.dimension(2) == 1 && bits(g2(0, 0, 0)) == bits(s));
      Tensor<float, 3> gw(1, 1, 1);
      gw.setConstant(sentinel<float>);
      EXPECT(false, ewg(loss, x2, y, m, gw));
      FUZZ_REQUIRE(gw.dimension(0) == 1 && gw.dimension(2) == 1 && gw(0, 0, 0) == sentinel<float>);
      Tensor<float, 2> v(1, 2);
      v.setConstant(sentinel<float>);
      EXPECT(false, per_row(loss, x2, y, m, v));
      FUZZ_REQUIRE(v.dimension(0) == 1 && v.dimension(1) == 2 && v(0, 1) == sentinel<float>);
      Tensor<T, 3> z = x3;
      EXPECT(false, ewg(loss, z, y, m, z));
      FUZZ_REQUIRE(same_bits(as_rows(z), xt));
      return;
    }
    FUZZ_REQUIRE(g2.dimension(0) == b.d0 && g2.dimension(1) == b.t && g2.dimension(2) == c);
    Tensor<float, 3> gw;
    FUZZ_REQUIRE(same(ewg(loss, x2, y, m, gw), v2));
    FUZZ_REQUIRE(rounded_once<T>(as_rows(g2), as_rows(gw)));
    Tensor<float, 2> r2;
    per_row(loss, x2, y, m, r2);
    FUZZ_REQUIRE(r2.dimension(0) == b.d0 && r2.dimension(1) == b.t);
    const Eigen::Map<const Vec<float>> r2v(r2.data(), rows), rfv(rf.data(), rows);
    if constexpr (Task::fused) {
      FUZZ_REQUIRE(same(v2, vf));
      FUZZ_REQUIRE(same_all(as_rows(gw), as_rows(gf)));
      FUZZ_REQUIRE(rounded_once<T>(as_rows(g2), as_rows(gf)));
      FUZZ_REQUIRE(same_all(r2v, rfv));
    } else {
      FUZZ_REQUIRE(staged_value(v2, vf));
      FUZZ_REQUIRE(staged_gradient<T>(as_rows(gw), as_rows(gf)));
      FUZZ_REQUIRE(staged_gradient<T>(as_rows(g2), as_rows(gf)));
      FUZZ_REQUIRE(staged_values(r2v, rfv));
    }
    FUZZ_REQUIRE(same(eval(loss, x2, y, m), v2));
    Tensor<T, 3> z = x3;
    FUZZ_REQUIRE(same(ewg(loss, z, y, m, z), v2));
    FUZZ_REQUIRE(same_bits(as_rows(z), as_rows(g2)));
    Tensor<T, 3> g4;
    FUZZ_REQUIRE(same(ewg(other_threads, x2, y, m, g4), v2));
    FUZZ_REQUIRE(same_bits(as_rows(g4), as_rows(g2)));
  };
  if (as_map) {
    run(Eigen::TensorMap<const Tensor<T, 3>>(x3.data(), b.d0, b.t, c));
  } else {
    run(x3);
  }
}

template <typename T, typename Task>
void fuzz_loss(FuzzedDataProvider& in, int profile) {
  Batch<float> b = draw_batch<float>(in, profile, true);
  shift(in, b.x);
  const RowMat<T> xt = b.x.template cast<T>();
  const CommonOptions<float> common = draw_common<float>(in);
  Task task;
  task.draw(in, common, b);
  MaskChoice<float> mask;
  mask.draw(in, b.rows());
  const int threads[] = {1, 2, 3};
  const int other = threads[in.ConsumeIntegralInRange(0, 2)];
  std::optional<typename Task::Loss> loss, other_loss;
  // (Options the constructor refuses are the family "losses"' business.)
  if (throws([&] { loss.emplace(task.make(common.threads)); })) return;
  other_loss.emplace(task.make(other == common.threads ? 0 : other));
  const Eigen::VectorXi mask_ints = mask.as_ints();
  const Eigen::VectorXi* m = mask.present ? &mask_ints : nullptr;
  if (verbose) {
    std::fprintf(stderr, "%s rank %d d0 %ld t %ld\n", __PRETTY_FUNCTION__, b.rank, static_cast<long>(b.d0),
                 static_cast<long>(b.t));
    note("alpha", static_cast<double>(common.alpha));
    note("layout (0 interleaved)", static_cast<double>(common.layout));
    note("normalization", static_cast<double>(common.normalization));
    note("threads", common.threads);
    note("other threads", other);
    show("logits (widened)", RowMat<float>(xt.template cast<float>()));
    show("targets", task.targets());
    show("mask", mask_ints);
  }
  if (b.rank == 3) {
    sequence_calls<T, Task>(in, b, *loss, *other_loss, xt, task.targets(), m);
  } else {
    matrix_calls<T, Task>(in, task, *loss, *other_loss, xt, task.targets(), m);
  }
}

// The divergence functors on pairs of 2-byte rows.
template <typename T>
void fuzz_divergence(FuzzedDataProvider& in, int profile) {
  Batch<float> b = draw_batch<float>(in, profile, false);
  shift(in, b.x);
  const RowMat<T> xt = b.x.template cast<T>();
  const Index n = b.rows() / 2;
  const Index n2 = n > 0 && in.ConsumeIntegralInRange(0, 7) == 0 ? n - 1 : n;  // shapes differ: refused
  const RowMat<T> ta = xt.topRows(n), tb = xt.bottomRows(n2);
  const RowMat<float> fa = ta.template cast<float>(), fb = tb.template cast<float>();
  const rdrop::Reduction reduction = in.ConsumeBool() ? rdrop::Reduction::Sum : rdrop::Reduction::Mean;
  const int threads = in.ConsumeIntegralInRange(1, 3);
  with_drawn_divergence<float>(in, [&](const auto& drawn) {
    using D = std::decay_t<decltype(drawn)>;
    constexpr bool fused = std::is_same_v<D, rdrop::SymmetricKL<float>> || std::is_same_v<D, rdrop::KLDivergence<float>>;
    const D d(reduction);
    if (verbose) std::fprintf(stderr, "%s\n", __PRETTY_FUNCTION__);
    show("first (widened)", fa);
    show("second (widened)", fb);
    RowMat<float> gfa, gfb;
    float vf = 0;
    const bool valid = !throws([&] { vf = d.EvaluateWithGradient(fa, fb, gfa, gfb); });
    const T s = sentinel_of<T>();
    RowMat<T> ga = RowMat<T>::Constant(1, 2, s), gb = RowMat<T>::Constant(1, 2, s);
    float v2 = 0;
    if (EXPECT(valid, v2 = d.EvaluateWithGradient(ta, tb, ga, gb))) {
      FUZZ_REQUIRE(untouched_t(ga, 1, 2) && untouched_t(gb, 1, 2));
      EXPECT(false, (void)d.Evaluate(ta, tb));
      RowMat<T> za = ta, zb = tb;
      EXPECT(false, d.EvaluateWithGradient(za, zb, za, zb));
      FUZZ_REQUIRE(same_bits(za, ta) && same_bits(zb, tb));
      return;
    }
    RowMat<float> wa, wb;
    FUZZ_REQUIRE(same(d.EvaluateWithGradient(ta, tb, wa, wb), v2));
    FUZZ_REQUIRE(rounded_once<T>(ga, wa) && rounded_once<T>(gb, wb));
    Vec<float> rf, r2;
    d.EvaluatePerRow(fa, fb, rf);
    d.EvaluatePerRow(ta, tb, r2);
    if constexpr (fused) {
      FUZZ_REQUIRE(same(v2, vf));
      FUZZ_REQUIRE(same_all(wa, gfa) && same_all(wb, gfb));
      FUZZ_REQUIRE(rounded_once<T>(ga, gfa) && rounded_once<T>(gb, gfb));
      FUZZ_REQUIRE(same_all(r2, rf));
    } else {
      FUZZ_REQUIRE(staged_value(v2, vf));
      FUZZ_REQUIRE(staged_gradient<T>(wa, gfa) && staged_gradient<T>(wb, gfb));
      FUZZ_REQUIRE(staged_gradient<T>(ga, gfa) && staged_gradient<T>(gb, gfb));
      FUZZ_REQUIRE(staged_values(r2, rf));
    }
    FUZZ_REQUIRE(same(d.Evaluate(ta, tb), v2));
    RowMat<T> za = ta, zb = tb;
    FUZZ_REQUIRE(same(d.EvaluateWithGradient(za, zb, za, zb), v2));
    FUZZ_REQUIRE(same_bits(za, ga) && same_bits(zb, gb));
    rdrop::set_num_threads(threads);
    RowMat<T> ha, hb;
    const float vt = d.EvaluateWithGradient(ta, tb, ha, hb);
    rdrop::set_num_threads(0);
    FUZZ_REQUIRE(same(vt, v2));
    FUZZ_REQUIRE(same_bits(ha, ga) && same_bits(hb, gb));
  });
}

template <typename T>
void run_type(FuzzedDataProvider& in, int profile, int variant) {
  switch (variant) {
    case 0: case 1: return fuzz_loss<T, ClassTask<rdrop::SymmetricKL<float>>>(in, profile);
    case 2: return fuzz_loss<T, ClassTask<rdrop::KLDivergence<float>>>(in, profile);
    case 3: return fuzz_loss<T, ClassTask<rdrop::JensenShannon<float>>>(in, profile);
    case 4: return fuzz_loss<T, RealTask<false>>(in, profile);
    case 5: return fuzz_loss<T, RealTask<true>>(in, profile);
    default: return fuzz_divergence<T>(in, profile);
  }
}

}  // namespace

// The scalar choice picks the 2-byte type: float gives bfloat16, double half.
template <typename S>
void run(FuzzedDataProvider& in, int profile, int variant) {
  if constexpr (std::is_same_v<S, float>) {
    run_type<Eigen::bfloat16>(in, profile, variant);
  } else {
    run_type<Eigen::half>(in, profile, variant);
  }
}

template void run<float>(FuzzedDataProvider&, int, int);
template void run<double>(FuzzedDataProvider&, int, int);

}  // namespace fuzz::two_byte
