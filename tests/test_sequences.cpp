// Sequences: rank-3 logits with padding given as a mask or a padding label,
// the fairseq normalization and label smoothing, and semi-supervised rows.
#include "support/reference.hpp"

#include <rdrop/detail/zero_fill.hpp>
#include <rdrop/rdrop.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace {
using ref::Index;
using ref::MatrixD;
using Tensor3d = Eigen::Tensor<double, 3, Eigen::RowMajor>;

// −Σ t log p with fairseq's target: 1 − ε on y, ε/(C − 1) elsewhere.
double fairseq_ce(const MatrixD& x, Index r, int y, double eps) {
  const auto lp = ref::log_softmax(x, r);
  const Index c = x.cols();
  long double ce = 0;
  for (Index j = 0; j < c; ++j) {
    const long double t = j == y ? 1.0L - eps : eps / static_cast<long double>(c - 1);
    ce -= t * lp[static_cast<std::size_t>(j)];
  }
  return static_cast<double>(ce);
}

struct SequenceBatch {
  Index b = 3, t = 5, c = 6;
  Tensor3d x;                                   // [2B, T, C], stacked copies
  Eigen::Tensor<int, 2, Eigen::RowMajor> y;     // [B, T]
  Eigen::Tensor<int, 2, Eigen::RowMajor> mask;  // [B, T], 0 = padding
  SequenceBatch() : x(2 * b, t, c), y(b, t), mask(b, t) {
    const MatrixD flat = ref::random_logits<double>(2 * b * t, c, 2.0, 301);
    std::copy(flat.data(), flat.data() + flat.size(), x.data());
    const Eigen::VectorXi labels = ref::random_labels(b * t, static_cast<int>(c), 302);
    std::copy(labels.data(), labels.data() + labels.size(), y.data());
    // Sentences of lengths 5, 3 and 2: the tail is padding.
    const Index length[] = {5, 3, 2};
    for (Index i = 0; i < b; ++i)
      for (Index s = 0; s < t; ++s) mask(i, s) = s < length[i] ? 1 : 0;
  }
  MatrixD rows() const { return Eigen::Map<const MatrixD>(x.data(), 2 * b * t, c); }
  Index first(Index i, Index s) const { return i * t + s; }
  Index second(Index i, Index s) const { return (b + i) * t + s; }
};

}  // namespace

TEST_CASE("Padding is skipped and the fairseq convention normalizes by unmasked tokens",
          "[sequence][fairseq]") {
  const SequenceBatch batch;
  const double alpha = 5.0, eps = 0.1;
  rdrop::RDropOptions<double> o;
  o.alpha = alpha;
  o.layout = rdrop::Layout::Stacked;
  o.normalization = rdrop::Normalization::Fairseq;
  o.label_smoothing = eps;
  o.smoothing_style = rdrop::SmoothingStyle::ExcludeTarget;
  const rdrop::RDropLoss<double> loss(o);
  Tensor3d g;
  const double v = loss.EvaluateWithGradient(batch.x, batch.y, batch.mask, g);

  const MatrixD x = batch.rows();
  double sum = 0;
  Index tokens = 0;
  for (Index i = 0; i < batch.b; ++i) {
    for (Index s = 0; s < batch.t; ++s) {
      if (!batch.mask(i, s)) continue;
      ++tokens;
      const Index a = batch.first(i, s), c = batch.second(i, s);
      sum += fairseq_ce(x, a, batch.y(i, s), eps) + fairseq_ce(x, c, batch.y(i, s), eps);
      sum += alpha * 0.5 * (ref::kl(x, a, x, c) + ref::kl(x, c, x, a));
    }
  }
  REQUIRE(tokens == 10);
  CHECK(v == Approx(sum / static_cast<double>(tokens)).epsilon(1e-12));
  const MatrixD grad = Eigen::Map<const MatrixD>(g.data(), x.rows(), x.cols());
  for (Index i = 0; i < batch.b; ++i)
    for (Index s = 0; s < batch.t; ++s)
      if (!batch.mask(i, s)) {
        CHECK(grad.row(batch.first(i, s)).isZero(0));
        CHECK(grad.row(batch.second(i, s)).isZero(0));
      }
  const rdrop::RDropCounts counts = loss.Count(batch.x, batch.y, batch.mask);
  CHECK(counts.pairs == 10);
  CHECK(counts.labeled_rows == 20);
  CHECK(counts.rows == 30);

  // The gradient of the masked loss, against central differences.
  const auto f = [&](const MatrixD& z) {
    Tensor3d zt(batch.x.dimensions());
    std::copy(z.data(), z.data() + z.size(), zt.data());
    return loss.Evaluate(zt, batch.y, batch.mask);
  };
  CHECK(ref::relative_error(grad, ref::numeric_gradient(f, x)) < 1e-6);

  // The same padding given as a label, the way fairseq's padding index works.
  rdrop::RDropOptions<double> op = o;
  op.padding_index = 1000;
  Eigen::Tensor<int, 2, Eigen::RowMajor> y_padded = batch.y;
  for (Index i = 0; i < batch.b; ++i)
    for (Index s = 0; s < batch.t; ++s)
      if (!batch.mask(i, s)) y_padded(i, s) = 1000;
  Tensor3d g_padded;
  CHECK(rdrop::RDropLoss<double>(op).EvaluateWithGradient(batch.x, y_padded, g_padded) == v);
  CHECK(std::equal(g.data(), g.data() + g.size(), g_padded.data()));
}

TEST_CASE("A per-row mask can drop one copy: its pair loses the divergence, the other copy keeps CE",
          "[sequence][mask]") {
  const Index b = 3, c = 4;
  const MatrixD x = ref::random_logits<double>(2 * b, c, 2.0, 310);
  const Eigen::VectorXi y = ref::random_labels(b, static_cast<int>(c), 311);
  Eigen::Matrix<bool, Eigen::Dynamic, 1> keep = Eigen::Matrix<bool, Eigen::Dynamic, 1>::Constant(2 * b, true);
  keep(3) = false;  // second copy of sample 1
  rdrop::RDropOptions<double> o;
  o.alpha = 2;
  o.normalization = rdrop::Normalization::Sum;
  const rdrop::RDropLoss<double> loss(o);
  MatrixD g;
  const double v = loss.EvaluateWithGradient(x, y, keep, g);
  double expected = 0;
  for (Index i = 0; i < b; ++i) {
    expected += ref::cross_entropy(x, 2 * i, y(i), 0);
    if (i == 1) continue;
    expected += ref::cross_entropy(x, 2 * i + 1, y(i), 0);
    expected += 2 * 0.5 * (ref::kl(x, 2 * i, x, 2 * i + 1) + ref::kl(x, 2 * i + 1, x, 2 * i));
  }
  CHECK(v == Approx(expected).epsilon(1e-12));
  CHECK(g.row(3).isZero(0));
  CHECK(ref::relative_error(g, ref::numeric_gradient([&](const MatrixD& z) { return loss.Evaluate(z, y, keep); }, x)) <
        1e-6);
}

TEMPLATE_TEST_CASE("Semi-supervised: unlabeled rows carry the divergence only", "[semi-supervised]", float,
                   double) {
  using S = TestType;
  const Index b = 6, c = 5;
  const auto x = ref::random_logits<S>(2 * b, c, 2.0, 320);
  Eigen::VectorXi y = ref::random_labels(b, static_cast<int>(c), 321);
  const bool all_unlabeled = GENERATE(false, true);
  if (all_unlabeled) {
    y.setConstant(-100);
  } else {
    y(0) = y(3) = y(4) = -100;
  }
  rdrop::RDropOptions<S> o;
  o.alpha = S(4);
  o.normalization = rdrop::Normalization::Mean;
  ref::Matrix<S> g;
  const S v = rdrop::RDropLoss<S>(o).EvaluateWithGradient(x, y, g);
  const MatrixD xd = x.template cast<double>();
  double ce = 0, sym = 0;
  Index labeled = 0;
  for (Index i = 0; i < b; ++i) {
    sym += 0.5 * (ref::kl(xd, 2 * i, xd, 2 * i + 1) + ref::kl(xd, 2 * i + 1, xd, 2 * i));
    if (y(i) < 0) continue;
    ce += ref::cross_entropy(xd, 2 * i, y(i), 0) + ref::cross_entropy(xd, 2 * i + 1, y(i), 0);
    labeled += 2;
  }
  const double expected = (labeled ? ce / static_cast<double>(labeled) : 0.0) + 4 * sym / static_cast<double>(b);
  CHECK(static_cast<double>(v) == Approx(expected).epsilon(ref::tolerance<S>()));
  REQUIRE(g.allFinite());
  if constexpr (std::is_same_v<S, double>) {
    const rdrop::RDropLoss<double> loss(o);
    CHECK(ref::relative_error(g, ref::numeric_gradient([&](const MatrixD& z) { return loss.Evaluate(z, y); }, xd)) <
          1e-6);
  }
}

TEST_CASE("Fairseq smoothing needs two classes; masks are checked", "[sequence][errors]") {
  rdrop::RDropOptions<double> o;
  o.label_smoothing = 0.1;
  o.smoothing_style = rdrop::SmoothingStyle::ExcludeTarget;
  const MatrixD one_class = MatrixD::Zero(2, 1);
  Eigen::VectorXi y = Eigen::VectorXi::Zero(1);
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(rdrop::RDropLoss<double>(o).Evaluate(one_class, y), Contains("at least 2 classes"));
  const MatrixD x = MatrixD::Zero(4, 3);
  Eigen::VectorXi y2 = Eigen::VectorXi::Zero(2);
  Eigen::VectorXi bad_mask = Eigen::VectorXi::Ones(3);
  MatrixD g = MatrixD::Constant(4, 3, 9.0);
  CHECK_THROWS_WITH(rdrop::RDropLoss<double>().EvaluateWithGradient(x, y2, bad_mask, g),
                    Contains("'mask' has 3 entries") && Contains("expected 2 (one per sample) or 4"));
  CHECK((g.array() == 9.0).all());
}

TEMPLATE_TEST_CASE("Zero-filling writes exactly the zeros asked for, at any alignment and length",
                   "[sequence][kernels]", float, double) {
  // detail::zero_fill streams long rows past the cache with an unaligned
  // head and tail; check every alignment and lengths around the threshold.
  using S = TestType;
  const Index threshold = static_cast<Index>(rdrop::detail::kStreamingZeroBytes / sizeof(S));
  for (const Index n : {Index(0), Index(1), Index(17), threshold - 1, threshold, threshold + 13}) {
    for (Index offset = 0; offset < 16; ++offset) {
      std::vector<S> buffer(static_cast<std::size_t>(n + 32), S(7));
      const bool streamed = rdrop::detail::zero_fill(buffer.data() + offset, n);
      rdrop::detail::streaming_fence();
      CHECK(streamed == (n >= threshold));
      for (Index i = 0; i < n + 32; ++i) {
        const bool inside = i >= offset && i < offset + n;
        if (buffer[static_cast<std::size_t>(i)] != (inside ? S(0) : S(7))) {
          FAIL("n " << n << " offset " << offset << ": element " << i << " is " << buffer[static_cast<std::size_t>(i)]);
        }
      }
    }
  }
}

TEST_CASE("Both line-zeroing paths (CLZERO, streaming stores) write exactly the lines asked for",
          "[sequence][kernels]") {
  // zero_fill takes one of them by CPUID; each is checked here on its own,
  // CLZERO only where the CPU has it (it faults elsewhere).
  using rdrop::detail::kZeroLineBytes;
  using LineFill = void (*)(unsigned char*, const unsigned char*);
  std::vector<std::pair<const char*, LineFill>> paths = {{"streaming stores", rdrop::detail::stream_zero_lines}};
  if (rdrop::detail::cpu_has_clzero()) paths.emplace_back("CLZERO", rdrop::detail::clzero_lines);
  INFO("CLZERO available: " << rdrop::detail::cpu_has_clzero());
  for (const auto& [name, fill] : paths) {
    for (const std::size_t lines : {std::size_t(0), std::size_t(1), std::size_t(7), std::size_t(600)}) {
      // Two guard lines on each side of the zeroed ones, in a line-aligned block.
      std::vector<unsigned char> storage((lines + 5) * kZeroLineBytes, 0xAB);
      const auto address = reinterpret_cast<std::uintptr_t>(storage.data());
      unsigned char* const block = storage.data() + (kZeroLineBytes - address % kZeroLineBytes) % kZeroLineBytes;
      unsigned char* const begin = block + 2 * kZeroLineBytes;
      fill(begin, begin + lines * kZeroLineBytes);
      rdrop::detail::streaming_fence();
      std::size_t wrong = 0;
      for (std::size_t i = 0; i < (lines + 4) * kZeroLineBytes; ++i) {
        const bool inside = i >= 2 * kZeroLineBytes && i < (lines + 2) * kZeroLineBytes;
        if (block[i] != (inside ? 0 : 0xAB)) {
          if (wrong++ == 0) UNSCOPED_INFO(name << ", " << lines << " lines: first wrong byte " << i << " is " << int(block[i]));
        }
      }
      CHECK(wrong == 0);
    }
  }
}

TEMPLATE_TEST_CASE("Masked rows of long vocabularies get exact zero gradients, the rest as unmasked",
                   "[sequence]", float, double) {
  // 10000 classes: masked gradient rows take the streaming zero-fill path.
  using S = TestType;
  const Index b = 2, t = 3, c = 10000;
  Eigen::Tensor<S, 3, Eigen::RowMajor> x(2 * b, t, c);
  const MatrixD flat = ref::random_logits<double>(2 * b * t, c, 2.0, 311);
  for (Index i = 0; i < flat.size(); ++i) x.data()[i] = static_cast<S>(flat.data()[i]);
  Eigen::Tensor<int, 2, Eigen::RowMajor> y(b, t), mask(b, t);
  for (Index i = 0; i < b; ++i)
    for (Index s = 0; s < t; ++s) {
      y(i, s) = static_cast<int>((i * 7 + s * 131) % c);
      mask(i, s) = (i == 0 || s == 0) ? 1 : 0;  // the second sentence has one token
    }
  rdrop::RDropOptions<S> o;
  o.alpha = S(2);
  o.layout = rdrop::Layout::Stacked;
  o.normalization = rdrop::Normalization::Sum;
  const rdrop::RDropLoss<S> loss(o);
  Eigen::Tensor<S, 3, Eigen::RowMajor> g(2 * b, t, c);
  g.setConstant(std::numeric_limits<S>::quiet_NaN());  // whatever was there before
  const S v = loss.EvaluateWithGradient(x, y, mask, g);

  // Reference: the four unmasked tokens as a plain interleaved batch.
  ref::Matrix<S> pairs(8, c);
  Eigen::VectorXi labels(8);
  Index row = 0;
  for (Index i = 0; i < b; ++i)
    for (Index s = 0; s < t; ++s) {
      if (!mask(i, s)) continue;
      for (Index j = 0; j < c; ++j) {
        pairs(row, j) = x(i, s, j);
        pairs(row + 1, j) = x(b + i, s, j);
      }
      labels(row) = labels(row + 1) = y(i, s);
      row += 2;
    }
  REQUIRE(row == 8);
  rdrop::RDropOptions<S> oi = o;
  oi.layout = rdrop::Layout::Interleaved;
  ref::Matrix<S> gi;
  const S vi = rdrop::RDropLoss<S>(oi).EvaluateWithGradient(pairs, labels, gi);
  CHECK(static_cast<double>(v) == Approx(static_cast<double>(vi)).epsilon(1e-6));
  row = 0;
  for (Index i = 0; i < b; ++i)
    for (Index s = 0; s < t; ++s) {
      for (Index j = 0; j < c; ++j) {
        const S ga = g(i, s, j), gb = g(b + i, s, j);
        if (!mask(i, s)) {
          if (ga != S(0) || gb != S(0)) FAIL("masked token (" << i << ", " << s << ") class " << j);
        } else if (ga != gi(row, j) || gb != gi(row + 1, j)) {
          FAIL("token (" << i << ", " << s << ") class " << j << ": " << ga << " vs " << gi(row, j));
        }
      }
      if (mask(i, s)) row += 2;
    }
}
