// rdrop::Dropout: mask statistics, scaling, per-row independence (the two
// copies of a duplicated sample differ), determinism across thread counts,
// backward through forward's mask, the documented generator, and errors.
#include <rdrop/dropout.hpp>
#include <rdrop/duplicate.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>

namespace {

template <typename S>
using RowMatrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Inputs without zeros, so that "output is zero" means "dropped".
template <typename S>
RowMatrix<S> nonzero_input(Eigen::Index rows, Eigen::Index cols) {
  RowMatrix<S> x(rows, cols);
  for (Eigen::Index r = 0; r < rows; ++r) {
    for (Eigen::Index c = 0; c < cols; ++c) x(r, c) = S(1) + S(0.001) * static_cast<S>((r * 131 + c * 17) % 997);
  }
  return x;
}

template <typename S>
double kept_fraction(const RowMatrix<S>& y) {
  return static_cast<double>((y.array() != S(0)).count()) / static_cast<double>(y.size());
}

// The generator exactly as dropout.hpp's header comment states it, one
// element at a time with no SIMD: the vector path must give these bits.
std::uint64_t reference_splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

bool reference_keep(std::uint64_t seed, std::uint64_t step, std::uint64_t row, std::uint32_t col, double p) {
  const std::uint64_t k = reference_splitmix64(reference_splitmix64(reference_splitmix64(seed) ^ step) ^ row);
  std::uint32_t x = static_cast<std::uint32_t>(k) + col * 0x9E3779B9u;
  x ^= x >> 16;
  x *= 0x21F0AAADu;
  x ^= static_cast<std::uint32_t>(k >> 32);
  x ^= x >> 15;
  x *= 0x735A2D97u;
  x ^= x >> 15;
  const auto threshold = static_cast<std::uint32_t>((1.0 - p) * 16777216.0 + 0.5);
  return (x >> 8) < threshold;
}

}  // namespace

TEMPLATE_TEST_CASE("Dropout keeps a fraction 1 - p of the elements", "[dropout]", float, double) {
  using S = TestType;
  const RowMatrix<S> x = nonzero_input<S>(256, 1024);
  for (const double p : {0.05, 0.1, 0.3, 0.5, 0.9}) {
    CAPTURE(p);
    const rdrop::Dropout<S> dropout(static_cast<S>(p), 1234);
    RowMatrix<S> y;
    dropout.Forward(x, y, 7);
    // 5 standard deviations of a binomial proportion over 262144 draws.
    const double tolerance = 5.0 * std::sqrt(p * (1.0 - p) / static_cast<double>(x.size()));
    CHECK(std::abs(kept_fraction(y) - (1.0 - p)) < tolerance);
    // Every row keeps about 1 - p too (no row is starved or flooded).
    for (Eigen::Index r = 0; r < y.rows(); ++r) {
      const double row_kept = static_cast<double>((y.row(r).array() != S(0)).count()) / 1024.0;
      REQUIRE(std::abs(row_kept - (1.0 - p)) < 6.0 * std::sqrt(p * (1.0 - p) / 1024.0));
    }
  }
}

TEMPLATE_TEST_CASE("Kept elements are scaled by 1/(1 - p), dropped ones are exactly 0", "[dropout]", float,
                   double) {
  using S = TestType;
  const RowMatrix<S> x = nonzero_input<S>(33, 77);
  const rdrop::Dropout<S> dropout(S(0.25), 5);
  REQUIRE(dropout.scale() == S(1) / (S(1) - S(0.25)));
  RowMatrix<S> y;
  dropout.Forward(x, y, 3);
  for (Eigen::Index i = 0; i < x.size(); ++i) {
    const S out = y.data()[i];
    REQUIRE((out == S(0) || out == x.data()[i] * dropout.scale()));
  }
  // Inverted dropout is unbiased: a mask averages to 1.
  const RowMatrix<S> ones = RowMatrix<S>::Ones(512, 512);
  RowMatrix<S> mean = RowMatrix<S>::Zero(512, 512);
  dropout.Forward(ones, mean, 11);
  CHECK(std::abs(mean.template cast<double>().mean() - 1.0) < 0.01);
}

TEMPLATE_TEST_CASE("p = 0 is the identity", "[dropout]", float, double) {
  using S = TestType;
  const RowMatrix<S> x = RowMatrix<S>::Random(20, 45);
  RowMatrix<S> y;
  rdrop::Dropout<S>(S(0), 99).Forward(x, y, 1);
  CHECK(y == x);
}

TEMPLATE_TEST_CASE("The two copies of a duplicated sample get different masks", "[dropout]", float, double) {
  using S = TestType;
  const RowMatrix<S> x = nonzero_input<S>(64, 256);
  for (const rdrop::Layout layout : {rdrop::Layout::Interleaved, rdrop::Layout::Stacked}) {
    const RowMatrix<S> doubled = rdrop::Duplicate(x, layout);
    RowMatrix<S> y;
    rdrop::Dropout<S>(S(0.3), 8).Forward(doubled, y, 1);
    const auto first = rdrop::FirstCopy(y, layout);
    const auto second = rdrop::SecondCopy(y, layout);
    for (Eigen::Index i = 0; i < x.rows(); ++i) {
      const auto kept_first = (first.row(i).array() != S(0));
      const auto kept_second = (second.row(i).array() != S(0));
      // Independent masks: they disagree on 2p(1-p) = 42% of the elements.
      const double disagree = static_cast<double>((kept_first != kept_second).count()) / 256.0;
      REQUIRE(disagree > 0.25);
      REQUIRE(disagree < 0.6);
    }
  }
}

TEMPLATE_TEST_CASE("Masks do not repeat across steps, seeds, rows or columns", "[dropout]", float, double) {
  using S = TestType;
  const rdrop::Dropout<S> a(S(0.5), 1), b(S(0.5), 2);
  const RowMatrix<S> m1 = a.Mask(128, 128, 1), m2 = a.Mask(128, 128, 2), m3 = b.Mask(128, 128, 1);
  const auto agreement = [](const RowMatrix<S>& u, const RowMatrix<S>& v) {
    return static_cast<double>(((u.array() != S(0)) == (v.array() != S(0))).count()) / static_cast<double>(u.size());
  };
  CHECK(agreement(m1, a.Mask(128, 128, 1)) == 1.0);  // same seed and step: same mask
  // Independent masks with p = 0.5 agree on half of the elements.
  CHECK(std::abs(agreement(m1, m2) - 0.5) < 0.02);
  CHECK(std::abs(agreement(m1, m3) - 0.5) < 0.02);
  // Neighbouring rows and columns are uncorrelated: both kept a quarter of the time.
  const auto kept = (m1.array() != S(0)).template cast<double>();
  const double rows_both = (kept.topRows(127) * kept.bottomRows(127)).mean();
  const double cols_both = (kept.leftCols(127) * kept.rightCols(127)).mean();
  CHECK(std::abs(rows_both - 0.25) < 0.02);
  CHECK(std::abs(cols_both - 0.25) < 0.02);
}

TEMPLATE_TEST_CASE("The mask is the documented generator, for every row length", "[dropout]", float, double) {
  using S = TestType;
  const double p = 0.3;
  const rdrop::Dropout<S> dropout(static_cast<S>(p), 0xC0FFEE);
  // Column counts around the SIMD widths exercise the vector body and the tail.
  for (const Eigen::Index cols : {1, 3, 4, 7, 8, 15, 16, 17, 33, 100}) {
    const RowMatrix<S> mask = dropout.Mask(9, cols, 42);
    for (Eigen::Index r = 0; r < mask.rows(); ++r) {
      for (Eigen::Index c = 0; c < cols; ++c) {
        const bool keep = reference_keep(0xC0FFEE, 42, static_cast<std::uint64_t>(r), static_cast<std::uint32_t>(c), p);
        REQUIRE((mask(r, c) != S(0)) == keep);
      }
    }
  }
}

TEMPLATE_TEST_CASE("A slice of a batch given its first row gets that slice's masks", "[dropout]", float, double) {
  using S = TestType;
  const double p = 0.3;
  const rdrop::Dropout<S> dropout(static_cast<S>(p), 99);
  const Eigen::Index rows = 12, cols = 21;
  const RowMatrix<S> x = nonzero_input<S>(rows, cols);
  RowMatrix<S> whole, whole_back;
  dropout.Forward(x, whole, 3);
  dropout.Backward(x, whole_back, 3);
  // Two workers' slices, [0, 5) and [5, 12), against the generator itself.
  for (const Eigen::Index first : {0, 5}) {
    const Eigen::Index n = first == 0 ? 5 : rows - 5;
    RowMatrix<S> part, part_back;
    dropout.Forward(x.middleRows(first, n), part, 3, static_cast<std::uint64_t>(first));
    dropout.Backward(x.middleRows(first, n), part_back, 3, static_cast<std::uint64_t>(first));
    CHECK(part == whole.middleRows(first, n));
    CHECK(part_back == whole_back.middleRows(first, n));
    const RowMatrix<S> mask = dropout.Mask(n, cols, 3, static_cast<std::uint64_t>(first));
    for (Eigen::Index r = 0; r < n; ++r) {
      for (Eigen::Index c = 0; c < cols; ++c) {
        const bool keep =
            reference_keep(99, 3, static_cast<std::uint64_t>(first + r), static_cast<std::uint32_t>(c), p);
        REQUIRE((mask(r, c) != S(0)) == keep);
      }
    }
  }
}

TEMPLATE_TEST_CASE("Same seed and step give the same mask for any thread count", "[dropout]", float, double) {
  using S = TestType;
  // Large enough for the sweep to go parallel (>= 64k elements).
  const RowMatrix<S> x = RowMatrix<S>::Random(600, 301);
  RowMatrix<S> reference;
  rdrop::Dropout<S>(S(0.4), 77, 1).Forward(x, reference, 5);
  for (const int threads : {2, 3, 4, 7}) {
    CAPTURE(threads);
    RowMatrix<S> y;
    rdrop::Dropout<S>(S(0.4), 77, threads).Forward(x, y, 5);
    REQUIRE(y == reference);
  }
}

TEMPLATE_TEST_CASE("Backward multiplies by forward's mask", "[dropout]", float, double) {
  using S = TestType;
  const RowMatrix<S> x = nonzero_input<S>(40, 37);
  const RowMatrix<S> g = nonzero_input<S>(40, 37).reverse();
  const rdrop::Dropout<S> dropout(S(0.35), 2024);
  RowMatrix<S> y, dx;
  dropout.Forward(x, y, 9);
  dropout.Backward(g, dx, 9);
  const RowMatrix<S> mask = dropout.Mask(40, 37, 9);
  for (Eigen::Index i = 0; i < x.size(); ++i) {
    REQUIRE((y.data()[i] != S(0)) == (dx.data()[i] != S(0)));
    REQUIRE(dx.data()[i] == g.data()[i] * mask.data()[i]);
    REQUIRE(y.data()[i] == x.data()[i] * mask.data()[i]);
  }
  // A different step is a different mask.
  RowMatrix<S> other;
  dropout.Backward(g, other, 10);
  CHECK(other != dx);
}

TEMPLATE_TEST_CASE("Storage order, expressions, views and in-place use give the same result", "[dropout]", float,
                   double) {
  using S = TestType;
  using ColMatrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  const RowMatrix<S> x = nonzero_input<S>(13, 21);
  const rdrop::Dropout<S> dropout(S(0.5), 3);
  RowMatrix<S> reference;
  dropout.Forward(x, reference, 4);

  ColMatrix col_out;
  dropout.Forward(ColMatrix(x), col_out, 4);
  CHECK(RowMatrix<S>(col_out) == reference);

  RowMatrix<S> from_expression;
  dropout.Forward(x * S(2), from_expression, 4);
  CHECK(from_expression == reference * S(2));

  Eigen::Array<S, Eigen::Dynamic, Eigen::Dynamic> array_out;
  dropout.Forward(x.array(), array_out, 4);
  CHECK(array_out.matrix() == reference);

  RowMatrix<S> in_place = x;
  dropout.Forward(in_place, in_place, 4);
  CHECK(in_place == reference);

  RowMatrix<S> storage = RowMatrix<S>::Zero(13, 21);
  Eigen::Map<RowMatrix<S>> view(storage.data(), 13, 21);
  dropout.Forward(x, view, 4);
  CHECK(storage == reference);

  // A block's rows are rows 0.. of the mask: masks follow the matrix given.
  RowMatrix<S> wide = RowMatrix<S>::Zero(13, 30);
  dropout.Forward(x, wide.leftCols(21), 4);
  CHECK(wide.leftCols(21) == reference);
}

TEMPLATE_TEST_CASE("Bad arguments throw std::invalid_argument and leave the output untouched", "[dropout]", float,
                   double) {
  using S = TestType;
  using Catch::Matchers::Contains;
  for (const S p : {S(-0.1), S(1), S(1.5), std::numeric_limits<S>::quiet_NaN()}) {
    CHECK_THROWS_AS(rdrop::Dropout<S>(p), std::invalid_argument);
  }
  CHECK_THROWS_WITH(rdrop::Dropout<S>(S(1)), Contains("'p'") && Contains("[0, 1)"));
  CHECK_THROWS_WITH(rdrop::Dropout<S>(S(0.5), 0, -1), Contains("'threads'"));

  const rdrop::Dropout<S> dropout(S(0.5), 1);
  const RowMatrix<S> x = RowMatrix<S>::Ones(4, 5);
  RowMatrix<S> storage = RowMatrix<S>::Constant(4, 6, S(-7));
  Eigen::Map<RowMatrix<S>> wrong(storage.data(), 4, 6);
  CHECK_THROWS_WITH(dropout.Forward(x, wrong, 1), Contains("4 x 6") && Contains("4 x 5"));
  CHECK_THROWS_AS(dropout.Backward(x, wrong, 1), std::invalid_argument);
  CHECK((storage.array() == S(-7)).all());
  Eigen::Matrix<S, 3, 5> fixed = Eigen::Matrix<S, 3, 5>::Constant(S(-7));
  CHECK_THROWS_AS(dropout.Forward(x, fixed, 1), std::invalid_argument);
  CHECK((fixed.array() == S(-7)).all());
  CHECK_THROWS_WITH(dropout.Mask(-1, 3, 0), Contains("rows"));
}

TEST_CASE("An empty matrix is valid", "[dropout]") {
  RowMatrix<float> empty(0, 8), out;
  rdrop::Dropout<float>(0.5f).Forward(empty, out, 0);
  CHECK(out.rows() == 0);
  CHECK(out.cols() == 8);
}
