// Bad input throws std::invalid_argument naming the argument and the shapes,
// before any output is written; an empty batch is valid.
#include "support/reference.hpp"

#include <rdrop/rdrop.hpp>

#include <catch2/catch.hpp>

#include <limits>

namespace {
using ref::Index;
using Catch::Matchers::Contains;

template <typename S>
ref::Matrix<S> sentinel(Index r, Index c) {
  return ref::Matrix<S>::Constant(r, c, S(-12345));
}
}  // namespace

TEMPLATE_TEST_CASE("Invalid options are rejected at construction", "[errors]", float, double) {
  using S = TestType;
  rdrop::RDropOptions<S> o;
  o.alpha = S(-1);
  CHECK_THROWS_WITH(rdrop::RDropLoss<S>(o), Contains("alpha"));
  o.alpha = std::numeric_limits<S>::quiet_NaN();
  CHECK_THROWS_AS(rdrop::RDropLoss<S>(o), std::invalid_argument);
  o.alpha = S(1);
  o.label_smoothing = S(1);
  CHECK_THROWS_WITH(rdrop::RDropLoss<S>(o), Contains("label_smoothing") && Contains("[0, 1)"));
  o.label_smoothing = S(-0.1);
  CHECK_THROWS_AS(rdrop::RDropLoss<S>(o), std::invalid_argument);
  o.label_smoothing = S(0);
  o.threads = -2;
  CHECK_THROWS_WITH(rdrop::RDropLoss<S>(o), Contains("threads"));
  rdrop::CrossEntropyOptions<S> co;
  co.label_smoothing = S(1.5);
  CHECK_THROWS_WITH(rdrop::CrossEntropy<S>(co), Contains("label_smoothing"));
  CHECK_THROWS_AS(rdrop::set_num_threads(-1), std::invalid_argument);
}

TEMPLATE_TEST_CASE("Bad shapes and labels throw and leave outputs untouched", "[errors]", float, double) {
  using S = TestType;
  const rdrop::RDropLoss<S> loss;
  const ref::Matrix<S> x = ref::random_logits<S>(6, 4, 1.0, 1);
  auto g = sentinel<S>(6, 4);
  const auto untouched = g;

  SECTION("odd number of rows") {
    const ref::Matrix<S> odd = ref::random_logits<S>(5, 4, 1.0, 1);
    Eigen::VectorXi y = Eigen::VectorXi::Zero(2);
    auto g5 = sentinel<S>(5, 4);
    const auto g5_before = g5;
    CHECK_THROWS_WITH(loss.EvaluateWithGradient(odd, y, g5), Contains("odd") && Contains("[5 x 4]"));
    CHECK(g5 == g5_before);
  }
  SECTION("label count is neither B nor 2B") {
    Eigen::VectorXi y = Eigen::VectorXi::Zero(4);
    CHECK_THROWS_WITH(loss.EvaluateWithGradient(x, y, g),
                      Contains("'labels' has 4 entries") && Contains("3 (one per sample) or 6") &&
                          Contains("[6 x 4]"));
  }
  SECTION("label out of range") {
    Eigen::VectorXi y(3);
    y << 0, 4, 1;
    CHECK_THROWS_WITH(loss.EvaluateWithGradient(x, y, g), Contains("entry 1 is 4") && Contains("[0, 4)"));
    y << 0, -1, 1;
    CHECK_THROWS_WITH(loss.EvaluateWithGradient(x, y, g), Contains("entry 1 is -1"));
  }
  SECTION("labels that are a matrix") {
    Eigen::MatrixXi y = Eigen::MatrixXi::Zero(3, 2);
    CHECK_THROWS_WITH(loss.Evaluate(x, y), Contains("expected a vector"));
  }
  SECTION("gradient of the wrong fixed shape") {
    Eigen::VectorXi y = Eigen::VectorXi::Zero(3);
    ref::Matrix<S> wide = sentinel<S>(6, 5);
    Eigen::Map<ref::Matrix<S>> wrong(wide.data(), 6, 5);
    CHECK_THROWS_WITH(loss.EvaluateWithGradient(x, y, wrong),
                      Contains("'gradient' has shape [6 x 5]") && Contains("expected [6 x 4]"));
    CHECK((wide.array() == S(-12345)).all());
  }
  SECTION("per-row values of the wrong size") {
    Eigen::VectorXi y = Eigen::VectorXi::Zero(3);
    Eigen::Matrix<S, Eigen::Dynamic, 1> v = Eigen::Matrix<S, Eigen::Dynamic, 1>::Constant(4, S(3));
    Eigen::Map<Eigen::Matrix<S, Eigen::Dynamic, 1>> vm(v.data(), 4);
    CHECK_THROWS_WITH(loss.EvaluatePerRow(x, y, vm), Contains("'values'") && Contains("expected 6 values"));
    CHECK((v.array() == S(3)).all());
  }
  SECTION("rows without classes") {
    const ref::Matrix<S> empty_classes(4, 0);
    Eigen::VectorXi y = Eigen::VectorXi::Zero(2);
    CHECK_THROWS_WITH(loss.Evaluate(empty_classes, y), Contains("no classes"));
  }
  CHECK(g == untouched);
}

TEMPLATE_TEST_CASE("Other functors check their arguments too", "[errors]", float, double) {
  using S = TestType;
  const ref::Matrix<S> a = ref::random_logits<S>(4, 3, 1.0, 1);
  const ref::Matrix<S> b = ref::random_logits<S>(4, 2, 1.0, 2);
  auto ga = sentinel<S>(4, 3), gb = sentinel<S>(4, 3);
  const auto before = ga;
  CHECK_THROWS_WITH(rdrop::SymmetricKL<S>().EvaluateWithGradient(a, b, ga, gb),
                    Contains("'first' [4 x 3]") && Contains("'second' [4 x 2]"));
  CHECK(ga == before);
  CHECK(gb == before);
  Eigen::VectorXi y(4);
  y << 0, 1, 7, 2;
  CHECK_THROWS_WITH(rdrop::CrossEntropy<S>().EvaluateWithGradient(a, y, ga), Contains("entry 2 is 7"));
  CHECK(ga == before);
  Eigen::VectorXi short_y = Eigen::VectorXi::Zero(3);
  CHECK_THROWS_WITH(rdrop::CrossEntropy<S>().Evaluate(a, short_y), Contains("expected 4 (one per row)"));
}

TEMPLATE_TEST_CASE("An empty batch is valid: loss 0, empty gradient, no NaN", "[errors][empty]", float,
                   double) {
  using S = TestType;
  const ref::Matrix<S> x(0, 5);
  const Eigen::VectorXi y(0);
  for (const auto norm : {rdrop::Normalization::Paper, rdrop::Normalization::KerasCode,
                          rdrop::Normalization::PyTorchReadme, rdrop::Normalization::Mean}) {
    rdrop::RDropOptions<S> o;
    o.normalization = norm;
    ref::Matrix<S> g = ref::Matrix<S>::Ones(2, 2);
    CHECK(rdrop::RDropLoss<S>(o).EvaluateWithGradient(x, y, g) == S(0));
    CHECK(g.rows() == 0);
    CHECK(g.cols() == 5);
  }
  ref::Matrix<S> g;
  CHECK(rdrop::CrossEntropy<S>().EvaluateWithGradient(x, y, g) == S(0));
  CHECK(rdrop::SymmetricKL<S>().Evaluate(x, x) == S(0));
  // A batch whose rows are all ignored: the mean over zero labeled rows is 0.
  const ref::Matrix<S> x2 = ref::random_logits<S>(2, 3, 1.0, 3);
  Eigen::VectorXi ignored = Eigen::VectorXi::Constant(2, -100);
  CHECK(rdrop::CrossEntropy<S>().EvaluateWithGradient(x2, ignored, g) == S(0));
  CHECK(g.isZero(0));
}

TEMPLATE_TEST_CASE("Every divergence's per-pair calls check that the rows have one length", "[errors][divergence]",
                   float, double) {
  using S = TestType;
  using Row = Eigen::Array<S, 1, Eigen::Dynamic>;
  const Row a = Row::Constant(5, S(0.5)), b = Row::Constant(3, S(0.25));
  Row ga_store = Row::Constant(5, S(7)), gb_store = Row::Constant(5, S(7));
  const rdrop::ConstRowMap<S> ma(a.data(), a.size()), mb(b.data(), b.size()), ma_short(a.data(), 3);
  rdrop::RowMap<S> ga(ga_store.data(), 5), gb(gb_store.data(), 5), gb_short(gb_store.data(), 3);
  const auto check = [&](const auto& d, const char* name) {
    CAPTURE(name);
    CHECK_THROWS_WITH(d.EvaluatePair(ma, mb), Contains(name) && Contains("same length"));
    CHECK_THROWS_WITH(d.EvaluatePair(mb, ma), Contains("same length"));
    CHECK_THROWS_WITH(d.EvaluatePairWithGradient(ma, mb, ga, gb), Contains("same length"));
    CHECK_THROWS_WITH(d.EvaluatePairWithGradient(ma_short, mb, ga, gb), Contains("same length"));
    CHECK_THROWS_WITH(d.EvaluatePairWithGradient(ma, ma, ga, gb_short), Contains("same length"));
    CHECK((ga_store == S(7)).all());
    CHECK((gb_store == S(7)).all());
  };
  check(rdrop::SymmetricKL<S>(), "SymmetricKL");
  check(rdrop::KLDivergence<S>(), "KLDivergence");
  check(rdrop::JensenShannon<S>(), "JensenShannon");
  check(rdrop::BernoulliSymmetricKL<S>(), "BernoulliSymmetricKL");
  check(rdrop::SquaredError<S>(), "SquaredError");
  // Empty rows are a valid pair of nothing: 0, for every divergence (a
  // fuzzer finding: Jensen-Shannon took the max of an empty row).
  const rdrop::ConstRowMap<S> empty(a.data(), 0);
  rdrop::RowMap<S> no_grad(ga_store.data(), 0);
  CHECK(rdrop::JensenShannon<S>().EvaluatePair(empty, empty) == S(0));
  CHECK(rdrop::JensenShannon<S>().EvaluatePairWithGradient(empty, empty, no_grad, no_grad) == S(0));
  CHECK(rdrop::SymmetricKL<S>().EvaluatePair(empty, empty) == S(0));
  CHECK(rdrop::BernoulliSymmetricKL<S>().EvaluatePair(empty, empty) == S(0));
  CHECK(rdrop::SquaredError<S>().EvaluatePair(empty, empty) == S(0));
}

TEMPLATE_TEST_CASE("Enum values cast from out-of-range ints and contradictory labels are refused",
                   "[errors][options]", float, double) {
  using S = TestType;
  rdrop::RDropOptions<S> o;
  o.normalization = static_cast<rdrop::Normalization>(17);
  CHECK_THROWS_WITH(rdrop::RDropLoss<S>(o), Contains("'normalization'") && Contains("17"));
  o = {};
  o.layout = static_cast<rdrop::Layout>(-1);
  CHECK_THROWS_WITH(rdrop::RDropLoss<S>(o), Contains("'layout'"));
  o = {};
  o.smoothing_style = static_cast<rdrop::SmoothingStyle>(2);
  CHECK_THROWS_WITH(rdrop::RDropLoss<S>(o), Contains("'smoothing_style'"));
  o = {};
  o.padding_index = o.ignore_index;
  CHECK_THROWS_WITH(rdrop::RDropLoss<S>(o), Contains("'padding_index'") && Contains("'ignore_index'"));
  rdrop::MultiLabelOptions<S> m;
  m.layout = static_cast<rdrop::Layout>(2);
  CHECK_THROWS_WITH(rdrop::RDropMultiLabelLoss<S>(m), Contains("'layout'"));
  rdrop::RegressionOptions<S> r;
  r.normalization = static_cast<rdrop::Normalization>(6);
  CHECK_THROWS_WITH(rdrop::RDropRegressionLoss<S>(r), Contains("'normalization'"));
  rdrop::CrossEntropyOptions<S> c;
  c.reduction = static_cast<rdrop::Reduction>(5);
  CHECK_THROWS_WITH(rdrop::CrossEntropy<S>(c), Contains("'reduction'"));
  CHECK_THROWS_WITH(rdrop::SymmetricKL<S>(static_cast<rdrop::Reduction>(-3)), Contains("'reduction'"));
  const ref::Matrix<S> x = ref::random_logits<S>(4, 3, 1.0, 5);
  CHECK_THROWS_WITH(rdrop::Duplicate(x, static_cast<rdrop::Layout>(9)), Contains("'layout'"));
  CHECK_THROWS_WITH(rdrop::FirstCopy(x, static_cast<rdrop::Layout>(9)), Contains("'layout'"));
}

TEMPLATE_TEST_CASE("WithCounts refuses counts that cannot cover the batch", "[errors][distributed]", float, double) {
  using S = TestType;
  const ref::Matrix<S> x = ref::random_logits<S>(8, 5, 1.0, 6);
  const Eigen::VectorXi y = ref::random_labels(4, 5, 7);
  const rdrop::RDropLoss<S> loss;
  ref::Matrix<S> g = sentinel<S>(8, 5);
  // All-zero counts on a non-empty batch: once a silent loss of 0.
  CHECK_THROWS_WITH(loss.WithCounts(rdrop::RDropCounts{}).EvaluateWithGradient(x, y, g),
                    Contains("WithCounts") && Contains("have 0 where this batch has"));
  CHECK(g == sentinel<S>(8, 5));
  rdrop::RDropCounts no_labels = loss.Count(x, y);
  no_labels.labeled_rows = 0;
  CHECK_THROWS_AS(loss.WithCounts(no_labels).Evaluate(x, y), std::invalid_argument);
  // Fewer counts than the batch's own are a fixed divisor, not an error.
  rdrop::RDropCounts half = loss.Count(x, y);
  half.labeled_rows /= 2;
  CHECK(std::isfinite(loss.WithCounts(half).Evaluate(x, y)));
  rdrop::RDropCounts bad;
  bad.rows = 4;
  bad.labeled_rows = 5;
  CHECK_THROWS_WITH(loss.WithCounts(bad), Contains("'global'"));
  bad.labeled_rows = -1;
  CHECK_THROWS_WITH(loss.WithCounts(bad), Contains("'global'"));
  bad.labeled_rows = 0;
  bad.pairs = 3;
  CHECK_THROWS_WITH(loss.WithCounts(bad), Contains("'global'"));
  // Counts larger than the batch's own are a worker's share: fine, and empty counts on an empty batch too.
  const rdrop::RDropCounts twice = loss.Count(x, y) + loss.Count(x, y);
  CHECK(static_cast<double>(loss.WithCounts(twice).Evaluate(x, y)) ==
        Approx(static_cast<double>(loss.Evaluate(x, y)) / 2));
  CHECK(loss.WithCounts(rdrop::RDropCounts{}).Evaluate(ref::Matrix<S>(0, 5), Eigen::VectorXi(0)) == S(0));
}
