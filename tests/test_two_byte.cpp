// Logits and gradients stored as Eigen::bfloat16 or Eigen::half: the losses
// compute in float, and must give what the float loss gives on the logits
// widened to float, the gradient rounded once (bitwise for the fused sweep,
// to float rounding for the staged losses), and agree with the independent
// double references to the 2-byte type's precision. Every conversion path
// (AVX-512 BF16, F16C, AVX2, SSE, scalar) is checked by tests/paths.
#include <rdrop/rdrop.hpp>

#include <catch2/catch.hpp>
#include <unsupported/Eigen/CXX11/Tensor>

#include "support/reference.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

namespace {

using Index = Eigen::Index;
using ref::MatrixD;
template <typename T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixF = Matrix<float>;

template <typename T>
Matrix<T> narrowed(const MatrixF& x) {
  return x.template cast<T>();
}

template <typename T>
MatrixF widened(const Matrix<T>& x) {
  return x.template cast<float>();
}

/// Bits of a float or 2-byte value, for bitwise comparisons (every NaN as one).
template <typename T>
std::uint32_t bits_of(T x) {
  if (Eigen::numext::isnan(x)) return 0xffffffffu;
  if constexpr (sizeof(T) == 4) {
    std::uint32_t u;
    std::memcpy(&u, &x, 4);
    return u;
  } else {
    return Eigen::numext::bit_cast<std::uint16_t>(x);
  }
}

/// Elements of `got` whose bits differ from the float gradient `want`
/// rounded to T by Eigen's own scalar conversion (nearest, ties to even).
template <typename T>
Index bits_differing(const Matrix<T>& got, const MatrixF& want) {
  REQUIRE(got.rows() == want.rows());
  REQUIRE(got.cols() == want.cols());
  Index bad = 0;
  for (Index i = 0; i < got.rows(); ++i)
    for (Index j = 0; j < got.cols(); ++j) bad += bits_of(got(i, j)) != bits_of(T(want(i, j)));
  return bad;
}

bool same_value(float a, float b) { return bits_of(a) == bits_of(b); }

/// Logits of B pairs in `layout`: a base row plus a little noise per copy,
/// shifted by `shift`; with minus_inf, class 0 of every pair is −inf in
/// both copies.
MatrixF pair_logits(Index b, Index c, float shift, bool minus_inf, unsigned seed) {
  const MatrixF base = ref::random_logits<float>(b, c, 3.0, seed);
  const MatrixF noise = ref::random_logits<float>(2 * b, c, 0.3, seed + 1);
  MatrixF x(2 * b, c);
  for (Index i = 0; i < 2 * b; ++i) x.row(i) = base.row(i % b) + noise.row(i);
  x.array() += shift;
  if (minus_inf) x.col(0).setConstant(-std::numeric_limits<float>::infinity());
  return x;
}

struct PairIndex {
  std::vector<Index> first, second;
};

PairIndex pairs_of(rdrop::Layout layout, Index b) {
  PairIndex p;
  for (Index i = 0; i < b; ++i) {
    p.first.push_back(layout == rdrop::Layout::Interleaved ? 2 * i : i);
    p.second.push_back(layout == rdrop::Layout::Interleaved ? 2 * i + 1 : b + i);
  }
  return p;
}

}  // namespace

TEMPLATE_TEST_CASE("2-byte logits: the R-Drop loss is the float loss of the widened logits, the gradient rounded once",
                   "[two_byte][rdrop]", Eigen::bfloat16, Eigen::half) {
  using T = TestType;
  const auto layout = GENERATE(rdrop::Layout::Interleaved, rdrop::Layout::Stacked);
  const float shift = GENERATE(0.f, 1e4f, -1e4f);
  const bool minus_inf = GENERATE(false, true);
  const Index c = GENERATE(Index(7), Index(40), Index(1000));
  CAPTURE(static_cast<int>(layout), shift, minus_inf, c);
  const Index b = 5;
  const Matrix<T> x = narrowed<T>(pair_logits(b, c, shift, minus_inf, 11));
  const MatrixF xf = widened(x);
  Eigen::VectorXi y = ref::random_labels(b, static_cast<int>(c), 3);
  if (minus_inf) y(0) = 1;  // never the −inf class (its cross-entropy is inf)
  y(1) = -100;              // ignore_index: divergence only

  rdrop::RDropOptions<float> o;
  o.layout = layout;
  o.alpha = 0.7f;
  o.label_smoothing = minus_inf ? 0.f : 0.1f;

  const auto check = [&](const auto& loss) {
    MatrixF g_float;
    const float want = loss.EvaluateWithGradient(xf, y, g_float);
    Matrix<T> g;
    CHECK(same_value(loss.EvaluateWithGradient(x, y, g), want));
    CHECK(bits_differing(g, g_float) == 0);
    MatrixF g_wide;  // a float gradient of 2-byte logits: the float gradient itself
    CHECK(same_value(loss.EvaluateWithGradient(x, y, g_wide), want));
    CHECK(bits_differing(g_wide, g_float) == 0);
    CHECK(same_value(loss.Evaluate(x, y), want));
  };
  SECTION("symmetric KL") { check(rdrop::RDropLoss<float>(o)); }
  SECTION("KL(p || q)") { check(rdrop::RDropLoss<float, rdrop::KLDivergence<float>>(o)); }
}

TEMPLATE_TEST_CASE("2-byte logits: the R-Drop loss agrees with the double reference to the type's precision",
                   "[two_byte][rdrop][reference]", Eigen::bfloat16, Eigen::half) {
  using T = TestType;
  const auto layout = GENERATE(rdrop::Layout::Interleaved, rdrop::Layout::Stacked);
  const float shift = GENERATE(0.f, 1e4f, -1e4f);
  const bool minus_inf = GENERATE(false, true);
  CAPTURE(static_cast<int>(layout), shift, minus_inf);
  const Index b = 3, c = 9;
  const Matrix<T> x = narrowed<T>(pair_logits(b, c, shift, minus_inf, 5));
  const MatrixD xd = widened(x).template cast<double>();  // the reference sees the same logits
  const Eigen::VectorXi y = (Eigen::VectorXi(b) << 4, 1, 8).finished();
  const double alpha = 0.7;
  rdrop::RDropOptions<float> o;
  o.layout = layout;
  o.alpha = static_cast<float>(alpha);
  o.normalization = rdrop::Normalization::Paper;  // Σ over samples

  const PairIndex p = pairs_of(layout, b);
  std::vector<int> labels(static_cast<std::size_t>(2 * b));
  for (Index i = 0; i < b; ++i) {
    labels[static_cast<std::size_t>(p.first[static_cast<std::size_t>(i)])] = y(i);
    labels[static_cast<std::size_t>(p.second[static_cast<std::size_t>(i)])] = y(i);
  }
  const auto loss_of = [&](const MatrixD& z) { return ref::paper_loss(z, p.first, p.second, labels, alpha, 0); };
  const double want = loss_of(xd);
  const MatrixD want_grad = ref::numeric_gradient(loss_of, xd, std::abs(shift) > 0 ? 1e-4 : 1e-6);

  Matrix<T> g;
  const float got = rdrop::RDropLoss<float>(o).EvaluateWithGradient(x, y, g);
  CHECK(static_cast<double>(got) == Approx(want).epsilon(2e-5));
  // Each element rounded once: half an ulp of T, plus the float sweep's and
  // the central difference's own errors.
  const double ulp = std::is_same_v<T, Eigen::bfloat16> ? 0x1p-8 : 0x1p-11;
  const double floor = 1e-5 * want_grad.cwiseAbs().maxCoeff();
  for (Index i = 0; i < x.rows(); ++i) {
    for (Index j = 0; j < c; ++j) {
      const double gij = static_cast<double>(static_cast<float>(g(i, j)));
      CAPTURE(i, j, gij, want_grad(i, j));
      CHECK(std::abs(gij - want_grad(i, j)) <= ulp * std::abs(want_grad(i, j)) + floor);
      if (minus_inf && j == 0) CHECK(bits_of(g(i, j)) == 0u);  // exactly +0 at a class −inf in both copies
    }
  }
}

TEMPLATE_TEST_CASE("2-byte logits: every loss, divergence and input kind of the float path",
                   "[two_byte][inputs]", Eigen::bfloat16, Eigen::half) {
  using T = TestType;
  const Index b = 4, c = 33;
  const Matrix<T> x = narrowed<T>(pair_logits(b, c, 2.f, false, 21));
  const MatrixF xf = widened(x);
  const Eigen::VectorXi y = ref::random_labels(b, static_cast<int>(c), 9);
  // Staged losses (the divergence concept, task rows) compute on widened
  // copies of the rows: equal to the float loss up to float rounding.
  const auto close = [](float got, float want) { return Approx(static_cast<double>(want)).epsilon(1e-6) == got; };
  const auto gradient_close = [](const auto& got, const MatrixF& want) {
    const MatrixF g = got.template cast<float>();
    const bool bf16 = std::is_same_v<typename std::decay_t<decltype(got)>::Scalar, Eigen::bfloat16>;
    const float ulp = bf16 ? 0x1p-8f : 0x1p-11f;
    // half's subnormals (below 2^-14) are spaced 2^-24 apart.
    const float floor = std::max(1e-6f * want.cwiseAbs().maxCoeff(), bf16 ? 0.f : 0x1p-25f);
    return ((g - want).array().abs() <= ulp * want.array().abs() + floor).all();
  };

  SECTION("Jensen-Shannon divergence") {
    const rdrop::RDropLoss<float, rdrop::JensenShannon<float>> loss;
    MatrixF gf;
    Matrix<T> g;
    const float want = loss.EvaluateWithGradient(xf, y, gf);
    CHECK(close(loss.EvaluateWithGradient(x, y, g), want));
    CHECK(gradient_close(g, gf));
  }
  SECTION("multi-label") {
    MatrixF targets = (ref::random_logits<float>(b, c, 1.0, 4).array() > 0.f).cast<float>();
    const rdrop::RDropMultiLabelLoss<float> loss;
    MatrixF gf;
    Matrix<T> g;
    const float want = loss.EvaluateWithGradient(xf, targets, gf);
    CHECK(close(loss.EvaluateWithGradient(x, targets, g), want));
    CHECK(gradient_close(g, gf));
  }
  SECTION("regression") {
    const MatrixF targets = ref::random_logits<float>(2 * b, c, 1.0, 6);
    const rdrop::RDropRegressionLoss<float> loss;
    MatrixF gf;
    Matrix<T> g;
    const float want = loss.EvaluateWithGradient(xf, targets, gf);
    CHECK(close(loss.EvaluateWithGradient(x, targets, g), want));
    CHECK(gradient_close(g, gf));
  }
  SECTION("a [2B, T, V] sequence tensor with padding and a mask") {
    const Index steps = 3;
    const Matrix<T> seq = narrowed<T>(pair_logits(b * steps, c, 0.f, false, 8));
    const MatrixF seqf = widened(seq);
    const Eigen::TensorMap<const Eigen::Tensor<T, 3, Eigen::RowMajor>> xt(seq.data(), 2 * b, steps, c);
    const Eigen::TensorMap<const Eigen::Tensor<float, 3, Eigen::RowMajor>> xtf(seqf.data(), 2 * b, steps, c);
    Eigen::VectorXi tokens = ref::random_labels(b * steps, static_cast<int>(c), 2);
    tokens(steps - 1) = 0;  // padding
    Eigen::VectorXi mask = Eigen::VectorXi::Ones(2 * b * steps);
    mask(4) = 0;
    rdrop::RDropOptions<float> o;
    o.layout = rdrop::Layout::Stacked;
    o.padding_index = 0;
    o.normalization = rdrop::Normalization::Fairseq;
    const rdrop::RDropLoss<float> loss(o);
    Eigen::Tensor<float, 3, Eigen::RowMajor> gf;
    Eigen::Tensor<T, 3, Eigen::RowMajor> g;
    const float want = loss.EvaluateWithGradient(xtf, tokens, mask, gf);
    CHECK(same_value(loss.EvaluateWithGradient(xt, tokens, mask, g), want));
    const Eigen::Map<const Matrix<T>> gm(g.data(), 2 * b * steps, c);
    const Eigen::Map<const MatrixF> gfm(gf.data(), 2 * b * steps, c);
    CHECK(bits_differing<T>(gm, gfm) == 0);
    Eigen::Tensor<float, 2, Eigen::RowMajor> per_row;
    loss.EvaluatePerRow(xt, tokens, mask, per_row);
    CHECK(per_row.dimension(0) == 2 * b);
    CHECK(per_row.dimension(1) == steps);
  }
  SECTION("column-major logits, expressions, Map and Ref; strided and column-major gradients") {
    const rdrop::RDropLoss<float> loss;
    MatrixF gf;
    const float want = loss.EvaluateWithGradient(xf, y, gf);
    const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic> col_major = x;
    Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic> g_col;
    CHECK(same_value(loss.EvaluateWithGradient(col_major, y, g_col), want));
    CHECK(bits_differing<T>(Matrix<T>(g_col), gf) == 0);
    Matrix<T> g;
    CHECK(same_value(loss.EvaluateWithGradient(x.leftCols(c), y, g), want));  // a Block
    CHECK(same_value(loss.EvaluateWithGradient(x * T(1), y, g), want));     // a lazy expression
    const Eigen::Map<const Matrix<T>> map(x.data(), x.rows(), x.cols());
    const Eigen::Ref<const Matrix<T>> r(x);
    CHECK(same_value(loss.EvaluateWithGradient(map, y, g), want));
    CHECK(same_value(loss.EvaluateWithGradient(r, y, g), want));
    Matrix<T> wide(2 * b, c + 5);
    auto block = wide.leftCols(c);
    loss.Gradient(x, y, block);
    CHECK(bits_differing<T>(Matrix<T>(block), gf) == 0);
  }
  SECTION("the divergence functors") {
    const rdrop::SymmetricKL<float> skl;
    const Matrix<T> first = x.topRows(b), second = x.bottomRows(b);
    const MatrixF ff = widened(first), sf = widened(second);
    MatrixF gaf, gbf;
    Matrix<T> ga, gb;
    const float want = skl.EvaluateWithGradient(ff, sf, gaf, gbf);
    CHECK(same_value(skl.EvaluateWithGradient(first, second, ga, gb), want));
    CHECK(bits_differing(ga, gaf) == 0);
    CHECK(bits_differing(gb, gbf) == 0);
    const rdrop::JensenShannon<float> js;
    const float want_js = js.EvaluateWithGradient(ff, sf, gaf, gbf);
    CHECK(close(js.EvaluateWithGradient(first, second, ga, gb), want_js));
    CHECK(gradient_close(ga, gaf));
  }
  SECTION("the raw kernels") {
    MatrixF gf(2 * b, c);
    Matrix<T> g(2 * b, c);
    const float want = rdrop::kernels::symmetric_kl_pairs(b, c, xf.data(), c, xf.data() + b * c, c, gf.data(), c,
                                                          gf.data() + b * c, c, 0.25f);
    const float got = rdrop::kernels::symmetric_kl_pairs(b, c, x.data(), c, x.data() + b * c, c, g.data(), c,
                                                         g.data() + b * c, c, 0.25f);
    CHECK(same_value(got, want));
    CHECK(bits_differing(g, gf) == 0);
  }
}

TEMPLATE_TEST_CASE("2-byte logits: in place and on any thread count, bitwise; overlaps of other types throw",
                   "[two_byte][in_place][threads][errors]", Eigen::bfloat16, Eigen::half) {
  using T = TestType;
  const Index b = 64, c = 300;
  const Matrix<T> x = narrowed<T>(pair_logits(b, c, 1.f, false, 31));
  const Eigen::VectorXi y = ref::random_labels(b, static_cast<int>(c), 1);
  rdrop::RDropOptions<float> o;
  o.threads = 1;
  Matrix<T> g;
  const float want = rdrop::RDropLoss<float>(o).EvaluateWithGradient(x, y, g);
  o.threads = 2;
  Matrix<T> g2;
  CHECK(same_value(rdrop::RDropLoss<float>(o).EvaluateWithGradient(x, y, g2), want));
  CHECK((g2.template cast<float>().array() == g.template cast<float>().array()).all());

  const auto in_place = [&](const auto& loss) {
    Matrix<T> out;
    const float out_value = loss.EvaluateWithGradient(x, y, out);
    Matrix<T> z = x;
    CHECK(same_value(loss.EvaluateWithGradient(z, y, z), out_value));
    Index bad = 0;
    for (Index i = 0; i < z.size(); ++i) bad += bits_of(z.data()[i]) != bits_of(out.data()[i]);
    CHECK(bad == 0);
  };
  SECTION("fused") { in_place(rdrop::RDropLoss<float>()); }
  SECTION("staged") { in_place(rdrop::RDropLoss<float, rdrop::JensenShannon<float>>()); }

  SECTION("a 2-byte gradient over float logits, or a float one over 2-byte logits, throws, writing nothing") {
    MatrixF xf = widened(x);
    const MatrixF before = xf;
    Eigen::Map<Matrix<T>> over_float(reinterpret_cast<T*>(xf.data()), 2 * b, c);
    CHECK_THROWS_WITH(rdrop::RDropLoss<float>().Gradient(xf, y, over_float),
                      Catch::Contains("argument 'gradient' overlaps 'logits'"));
    CHECK((xf.array() == before.array()).all());
    Matrix<T> wide(2 * b, 2 * c);
    wide.leftCols(c) = x;
    const Eigen::Map<const Matrix<T>, 0, Eigen::OuterStride<>> logits(wide.data(), 2 * b, c, Eigen::OuterStride<>(2 * c));
    Eigen::Map<MatrixF> over_two_byte(reinterpret_cast<float*>(wide.data()), 2 * b, c);
    CHECK_THROWS_WITH(rdrop::RDropLoss<float>().Gradient(logits, y, over_two_byte),
                      Catch::Contains("argument 'gradient' overlaps 'logits'"));
  }
}

TEMPLATE_TEST_CASE("2-byte logits: an empty batch gives 0 and an empty gradient", "[two_byte][edge]", Eigen::bfloat16,
                   Eigen::half) {
  using T = TestType;
  const Matrix<T> x(0, 7);
  const Eigen::VectorXi y(0);
  Matrix<T> g;
  CHECK(rdrop::RDropLoss<float>().EvaluateWithGradient(x, y, g) == 0.f);
  CHECK(g.rows() == 0);
  CHECK(g.cols() == 7);
  CHECK(rdrop::SymmetricKL<float>().Evaluate(x, x) == 0.f);
}

namespace {

/// Entries of `got` (2-byte) further from `exact` than one rounding to T
/// allows (half a unit in the last place of `exact`), beyond what the
/// float computation rounded was already off by at that entry
/// (`float_error`).
template <typename T>
Index beyond_one_rounding(const Matrix<T>& got, const MatrixD& exact, const MatrixD& float_error) {
  const int digits = std::is_same_v<T, Eigen::bfloat16> ? 8 : 11;
  const int min_exponent = std::is_same_v<T, Eigen::bfloat16> ? -126 : -14;
  Index bad = 0;
  for (Index i = 0; i < got.rows(); ++i) {
    for (Index j = 0; j < got.cols(); ++j) {
      const double e = exact(i, j);
      const double exponent = e == 0 ? min_exponent : std::max<double>(std::floor(std::log2(std::abs(e))), min_exponent);
      const double half_ulp = std::ldexp(1.0, static_cast<int>(exponent) - digits);
      bad += std::abs(static_cast<double>(static_cast<float>(got(i, j))) - e) > half_ulp + float_error(i, j);
    }
  }
  return bad;
}

}  // namespace

TEMPLATE_TEST_CASE("WithGradientScale: 2-byte gradients at the loss scale, rounded once; values unscaled",
                   "[two_byte][gradient_scale]", Eigen::bfloat16, Eigen::half) {
  using T = TestType;
  const float scale = GENERATE(3.7f, 1024.f, -0.5f);
  CAPTURE(scale);
  const Index b = 64, c = 300;
  const Matrix<T> x = narrowed<T>(pair_logits(b, c, 0.f, false, 17));
  const MatrixF xf = widened(x);
  Eigen::VectorXi y = ref::random_labels(b, static_cast<int>(c), 5);
  y.head(b / 4).setConstant(-100);  // divergence only: small gradients
  rdrop::RDropOptions<float> o;
  o.alpha = 2.f;
  o.normalization = rdrop::Normalization::Mean;
  const rdrop::RDropLoss<float> loss(o);
  const rdrop::RDropLoss<float> scaled = loss.WithGradientScale(scale);
  CHECK(loss.gradient_scale() == 1.f);
  CHECK(scaled.gradient_scale() == scale);
  CHECK(scaled.WithCounts(scaled.Count(x, y)).gradient_scale() == scale);  // kept by copies

  Matrix<T> g;
  CHECK(same_value(scaled.EvaluateWithGradient(x, y, g), loss.Evaluate(x, y)));
  // The float sweep at the scale on the widened logits, rounded once: bitwise.
  MatrixF gf;
  scaled.EvaluateWithGradient(xf, y, gf);
  CHECK(bits_differing(g, gf) == 0);

  // Against the exact scaled gradient (the double loss, checked against
  // finite differences in test_losses.cpp): within one rounding.
  rdrop::RDropOptions<double> od;
  od.alpha = 2.0;
  od.normalization = rdrop::Normalization::Mean;
  MatrixD gd;
  rdrop::RDropLoss<double>(od).EvaluateWithGradient(xf.cast<double>(), y, gd);
  const MatrixD exact = gd * static_cast<double>(scale);
  const MatrixD float_error = (gf.cast<double>() - exact).cwiseAbs();
  CHECK(beyond_one_rounding(g, exact, float_error) == 0);
  if (scale == 3.7f) {
    // Rounding at scale 1 and scaling afterwards (twice) breaks the bound:
    // the check can tell.
    Matrix<T> g_unscaled;
    loss.EvaluateWithGradient(x, y, g_unscaled);
    const Matrix<T> twice = (widened(g_unscaled) * static_cast<float>(T(scale))).template cast<T>();
    CHECK(beyond_one_rounding(twice, exact, float_error) > 0);
  }
}

TEST_CASE("WithGradientScale on float and double logits: the gradient times the scale, the value unchanged",
          "[gradient_scale]") {
  const MatrixF x = pair_logits(6, 9, 0.f, false, 23);
  const Eigen::VectorXi y = ref::random_labels(6, 9, 7);
  const rdrop::RDropLoss<float, rdrop::JensenShannon<float>> loss;
  MatrixF g, g2, g3;
  const float v = loss.EvaluateWithGradient(x, y, g);
  CHECK(same_value(loss.WithGradientScale(2.f).EvaluateWithGradient(x, y, g2), v));
  CHECK((g2 - 2.f * g).cwiseAbs().maxCoeff() <= 4e-7f * g.cwiseAbs().maxCoeff());
  loss.WithGradientScale(0.f).Gradient(x, y, g3);
  CHECK(g3.cwiseAbs().maxCoeff() == 0.f);
  const MatrixD xd = x.cast<double>();
  MatrixD gd, gd2;
  const rdrop::RDropRegressionLoss<double> regression;
  const MatrixD targets = MatrixD::Random(6, 9);
  regression.EvaluateWithGradient(xd, targets, gd);
  regression.WithGradientScale(-0.25).EvaluateWithGradient(xd, targets, gd2);
  CHECK((gd2 + 0.25 * gd).cwiseAbs().maxCoeff() == 0.0);  // a power of two: exact
}
