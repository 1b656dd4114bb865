// Every accepted input and output kind gives the same result as the
// row-major fast path: column-major matrices, expressions, strided maps, Ref,
// and row-major tensors of rank 2 and 3; plus duplication and copy views.
#include "support/reference.hpp"

#include <rdrop/rdrop.hpp>

#include <catch2/catch.hpp>

namespace {
using ref::Index;
}

TEMPLATE_TEST_CASE("Column-major, expressions, Map, Ref and strided inputs", "[inputs]", float, double) {
  using S = TestType;
  using RowMajor = ref::Matrix<S>;
  using ColMajor = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  const Index b = 6, c = 5;
  const RowMajor x = ref::random_logits<S>(2 * b, c, 3.0, 17);
  const Eigen::VectorXi y = ref::random_labels(b, static_cast<int>(c), 18);
  rdrop::RDropOptions<S> o;
  o.alpha = S(2);
  const rdrop::RDropLoss<S> loss(o);
  RowMajor g;
  const S v = loss.EvaluateWithGradient(x, y, g);

  SECTION("column-major in and out") {
    const ColMajor xc = x;
    ColMajor gc;
    CHECK(loss.EvaluateWithGradient(xc, y, gc) == v);
    CHECK(RowMajor(gc) == g);
  }
  SECTION("a lazy expression") {
    const RowMajor half = x / S(2);
    CHECK(loss.Evaluate(half * S(2), y) == v);
  }
  SECTION("a strided Map over a wider buffer, gradient into a Map") {
    RowMajor wide = RowMajor::Constant(2 * b, c + 3, S(1e30));
    wide.leftCols(c) = x;
    const Eigen::Map<const RowMajor, 0, Eigen::OuterStride<>> view(wide.data(), 2 * b, c,
                                                                     Eigen::OuterStride<>(c + 3));
    RowMajor gwide = RowMajor::Constant(2 * b, c + 3, S(7));
    Eigen::Map<RowMajor, 0, Eigen::OuterStride<>> gview(gwide.data(), 2 * b, c, Eigen::OuterStride<>(c + 3));
    CHECK(loss.EvaluateWithGradient(view, y, gview) == v);
    CHECK(gwide.leftCols(c) == g);
    CHECK((gwide.rightCols(3).array() == S(7)).all());  // padding untouched
  }
  SECTION("Ref and a Block of a bigger matrix") {
    RowMajor big = ref::random_logits<S>(2 * b + 4, c, 1.0, 3);
    big.middleRows(2, 2 * b) = x;
    const Eigen::Ref<const RowMajor> r = big.middleRows(2, 2 * b);
    CHECK(loss.Evaluate(r, y) == v);
    ColMajor gbig = ColMajor::Zero(2 * b + 4, c);
    loss.Gradient(big.middleRows(2, 2 * b), y, gbig.middleRows(2, 2 * b));
    CHECK(RowMajor(gbig.middleRows(2, 2 * b)) == g);
    CHECK(gbig.topRows(2).isZero(0));
  }
  SECTION("rank-2 tensors and TensorMap") {
    Eigen::Tensor<S, 2, Eigen::RowMajor> t(2 * b, c);
    std::copy(x.data(), x.data() + x.size(), t.data());
    Eigen::Tensor<S, 2, Eigen::RowMajor> gt;
    CHECK(loss.EvaluateWithGradient(t, y, gt) == v);
    REQUIRE(gt.dimension(0) == 2 * b);
    CHECK(Eigen::Map<const RowMajor>(gt.data(), 2 * b, c) == g);
    const Eigen::TensorMap<const Eigen::Tensor<S, 2, Eigen::RowMajor>> tm(x.data(), 2 * b, c);
    CHECK(loss.Evaluate(tm, y) == v);
  }
}

TEMPLATE_TEST_CASE("Rank-3 tensors pair up per sample and time step", "[inputs][tensor]", float, double) {
  using S = TestType;
  const Index b = 3, t = 4, c = 6;
  const auto layout = GENERATE(rdrop::Layout::Interleaved, rdrop::Layout::Stacked);
  Eigen::Tensor<S, 3, Eigen::RowMajor> single(b, t, c);
  const ref::Matrix<S> flat = ref::random_logits<S>(b * t, c, 2.0, 23);
  std::copy(flat.data(), flat.data() + flat.size(), single.data());
  // Two "dropout" versions of the batch: the second copy slightly perturbed.
  Eigen::Tensor<S, 3, Eigen::RowMajor> x = rdrop::Duplicate(single, layout);
  REQUIRE(x.dimension(0) == 2 * b);
  const ref::Matrix<S> noise = ref::random_logits<S>(2 * b * t, c, 0.5, 24);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] += noise.data()[i];
  Eigen::Tensor<int, 2, Eigen::RowMajor> y(b, t);
  const Eigen::VectorXi yflat = ref::random_labels(b * t, static_cast<int>(c), 25);
  std::copy(yflat.data(), yflat.data() + yflat.size(), y.data());

  rdrop::RDropOptions<S> o;
  o.alpha = S(1.5);
  o.layout = layout;
  o.normalization = rdrop::Normalization::Paper;
  Eigen::Tensor<S, 3, Eigen::RowMajor> g;
  const S v = rdrop::RDropLoss<S>(o).EvaluateWithGradient(x, y, g);

  // Reference: pair (sample i, step s) of copy one with the same of copy two.
  const ref::MatrixD rows = Eigen::Map<const ref::Matrix<S>>(x.data(), 2 * b * t, c).template cast<double>();
  std::vector<Index> first, second;
  std::vector<int> labels(static_cast<std::size_t>(2 * b * t));
  for (Index i = 0; i < b; ++i) {
    for (Index s = 0; s < t; ++s) {
      const Index sample_a = layout == rdrop::Layout::Interleaved ? 2 * i : i;
      const Index sample_b = layout == rdrop::Layout::Interleaved ? 2 * i + 1 : b + i;
      first.push_back(sample_a * t + s);
      second.push_back(sample_b * t + s);
      labels[static_cast<std::size_t>(first.back())] = labels[static_cast<std::size_t>(second.back())] = y(i, s);
    }
  }
  CHECK(static_cast<double>(v) ==
        Approx(ref::paper_loss(rows, first, second, labels, 1.5, 0)).epsilon(ref::tolerance<S>()));
  REQUIRE(g.dimension(0) == 2 * b);
  REQUIRE(g.dimension(1) == t);
  REQUIRE(g.dimension(2) == c);

  Eigen::Tensor<S, 2, Eigen::RowMajor> per_row;
  rdrop::RDropLoss<S>(o).EvaluatePerRow(x, y, per_row);
  REQUIRE(per_row.dimension(0) == 2 * b);
  REQUIRE(per_row.dimension(1) == t);
  double sum = 0;
  for (Index i = 0; i < per_row.size(); ++i) sum += static_cast<double>(per_row.data()[i]);
  CHECK(sum == Approx(static_cast<double>(v)).epsilon(ref::tolerance<S>() * 10));
}

TEMPLATE_TEST_CASE("Duplicate and the copy views", "[duplicate]", float, double) {
  using S = TestType;
  using RowMajor = ref::Matrix<S>;
  using ColMajor = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  const RowMajor x = ref::random_logits<S>(3, 2, 1.0, 1);
  const RowMajor inter = rdrop::Duplicate(x);
  const RowMajor stacked = rdrop::Duplicate(x, rdrop::Layout::Stacked);
  for (Index i = 0; i < 3; ++i) {
    CHECK(inter.row(2 * i) == x.row(i));
    CHECK(inter.row(2 * i + 1) == x.row(i));
    CHECK(stacked.row(i) == x.row(i));
    CHECK(stacked.row(3 + i) == x.row(i));
  }
  Eigen::VectorXi y(3);
  y << 4, 5, 6;
  Eigen::VectorXi y2(6);
  y2 << 4, 4, 5, 5, 6, 6;
  CHECK(rdrop::Duplicate(y) == y2);
  y2 << 4, 5, 6, 4, 5, 6;
  CHECK(rdrop::Duplicate(y, rdrop::Layout::Stacked) == y2);

  // Views are zero-copy, writable, and work on column-major storage too.
  ColMajor m = ColMajor::Zero(4, 3);
  rdrop::SecondCopy(m).setOnes();
  CHECK(m.row(0).isZero(0));
  CHECK(m.row(1).isOnes(0));
  CHECK(m.row(3).isOnes(0));
  CHECK(rdrop::FirstCopy(m).data() == m.data());
  RowMajor r = RowMajor::Zero(4, 3);
  rdrop::SecondCopy(r, rdrop::Layout::Stacked).setOnes();
  CHECK(r.topRows(2).isZero(0));
  CHECK(r.bottomRows(2).isOnes(0));
  const RowMajor& cr = r;
  CHECK(rdrop::FirstCopy(cr, rdrop::Layout::Stacked).isZero(0));
  RowMajor odd(3, 2);
  CHECK_THROWS_AS(rdrop::FirstCopy(odd), std::invalid_argument);
}
