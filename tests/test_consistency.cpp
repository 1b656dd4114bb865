// rdrop::MeasureConsistency against a case worked out by hand.
#include <rdrop/consistency.hpp>
#include <rdrop/dropout.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

namespace {

template <typename S>
using RowMatrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A fake model over 3 rows and 3 classes. Logits are log-probabilities plus
// a per-row shift (softmax ignores it), so the distributions are exact:
//
// row  dropout off (d)     dropout-on pass 1   pass 2            MC mean m (K = 2)
//  0   (.5, .25, .25)      (.8, .1, .1)        (.2, .4, .4)      (.5, .25, .25)
//  1   (.6, .2, .2)        (.1, .8, .1)        (.1, .6, .3)      (.1, .7, .2)
//  2   (1/3, 1/3, 1/3)     uniform             uniform           uniform
//
// KL(m ‖ d): row 0: 0;  row 1: .1 ln(.1/.6) + .7 ln(.7/.2) + .2 ln(1) = 0.6977581310;
// row 2: 0.  Mean over 3 rows: 0.2325860437.
// Labels (0, 1, -1): row 2 is unlabeled. argmax m = (0, 1, 0), argmax d = (0, 0, 0)
// (ties go to the first class), so MC accuracy 2/2, dropout-off accuracy 1/2,
// agreement 2/3.
template <typename S>
struct FakeModel {
  int calls_on = 0;
  int calls_off = 0;

  static RowMatrix<S> logits(const double (&p)[3][3]) {
    RowMatrix<S> out(3, 3);
    for (int r = 0; r < 3; ++r) {
      for (int c = 0; c < 3; ++c) out(r, c) = static_cast<S>(std::log(p[r][c]) + 3.0 * r - 1.0);
    }
    return out;
  }

  template <typename X>
  RowMatrix<S> operator()(const X& x, bool dropout) {
    static const double off[3][3] = {{.5, .25, .25}, {.6, .2, .2}, {1. / 3, 1. / 3, 1. / 3}};
    static const double on1[3][3] = {{.8, .1, .1}, {.1, .8, .1}, {1. / 3, 1. / 3, 1. / 3}};
    static const double on2[3][3] = {{.2, .4, .4}, {.1, .6, .3}, {1. / 3, 1. / 3, 1. / 3}};
    // The input's first column says which rows were passed (batching).
    RowMatrix<S> all = dropout ? logits(calls_on++ % 2 == 0 ? on1 : on2) : logits(off);
    if (!dropout) ++calls_off;
    RowMatrix<S> rows(x.rows(), 3);
    for (Eigen::Index i = 0; i < x.rows(); ++i) rows.row(i) = all.row(static_cast<Eigen::Index>(x(i, 0)));
    return rows;
  }
};

}  // namespace

TEMPLATE_TEST_CASE("MeasureConsistency matches the hand-computed case", "[consistency]", float, double) {
  using S = TestType;
  const S tol = std::is_same_v<S, float> ? S(2e-6) : S(1e-12);
  const RowMatrix<S> input = (RowMatrix<S>(3, 1) << 0, 1, 2).finished();
  const Eigen::VectorXi labels = (Eigen::VectorXi(3) << 0, 1, -1).finished();
  FakeModel<S> model;
  rdrop::ConsistencyOptions options;
  options.passes = 2;
  auto forward = [&model](const auto& x, bool dropout) { return model(x, dropout); };
  const rdrop::ConsistencyReport<S> report = rdrop::MeasureConsistency(forward, input, labels, options);
  CHECK(report.kl == Approx(0.6977581310239519 / 3).epsilon(tol).margin(tol));
  CHECK(report.mc_accuracy == S(1));
  CHECK(report.deterministic_accuracy == S(0.5));
  CHECK(report.agreement == Approx(2.0 / 3));
  CHECK(report.samples == 3);
  CHECK(report.labeled == 2);
  CHECK(report.passes == 2);
  CHECK(model.calls_on == 2);
  CHECK(model.calls_off == 1);

  // Batch by batch (rows 0-1, then 2): the same report.
  FakeModel<S> batched_model;
  auto batched_forward = [&batched_model](const auto& x, bool dropout) { return batched_model(x, dropout); };
  options.batch_rows = 2;
  const auto batched = rdrop::MeasureConsistency(batched_forward, input, labels, options);
  CHECK(batched.kl == Approx(report.kl).epsilon(tol));
  CHECK(batched.mc_accuracy == report.mc_accuracy);
  CHECK(batched.deterministic_accuracy == report.deterministic_accuracy);
  CHECK(batched_model.calls_off == 2);
}

TEMPLATE_TEST_CASE("A model without dropout has no consistency gap", "[consistency]", float, double) {
  using S = TestType;
  const RowMatrix<S> x = RowMatrix<S>::Random(50, 7) * S(3);
  const Eigen::VectorXi labels = Eigen::VectorXi::Zero(50);
  const auto report = rdrop::MeasureConsistency([](const auto& in, bool) { return RowMatrix<S>(in); }, x, labels);
  CHECK(report.kl == Approx(0).margin(std::is_same_v<S, float> ? 1e-6 : 1e-12));
  CHECK(report.mc_accuracy == report.deterministic_accuracy);
  CHECK(report.agreement == S(1));
  CHECK(report.passes == 10);
}

TEMPLATE_TEST_CASE("Dropout logits give a positive gap that shrinks with the dropout rate", "[consistency]", float,
                   double) {
  using S = TestType;
  const RowMatrix<S> x = RowMatrix<S>::Random(200, 10) * S(4);
  const Eigen::VectorXi labels = Eigen::VectorXi::Zero(200);
  const auto gap = [&](S p) {
    const rdrop::Dropout<S> dropout(p, 5);
    std::uint64_t step = 0;
    const auto forward = [&](const auto& in, bool on) {
      RowMatrix<S> out = in;
      if (on) dropout.Forward(in, out, ++step);
      return out;
    };
    rdrop::ConsistencyOptions options;
    options.passes = 16;
    return rdrop::MeasureConsistency(forward, x, labels, options).kl;
  };
  const S small = gap(S(0.1)), large = gap(S(0.5));
  CHECK(small > S(0));
  CHECK(large > small);
}

TEST_CASE("MeasureConsistency rejects bad arguments", "[consistency]") {
  using Catch::Matchers::Contains;
  const RowMatrix<double> x = RowMatrix<double>::Zero(4, 3);
  const Eigen::VectorXi labels = Eigen::VectorXi::Zero(4);
  const auto identity = [](const auto& in, bool) { return RowMatrix<double>(in); };
  rdrop::ConsistencyOptions options;
  options.passes = 0;
  CHECK_THROWS_WITH(rdrop::MeasureConsistency(identity, x, labels, options), Contains("'passes'"));
  options.passes = 1;
  options.batch_rows = -1;
  CHECK_THROWS_WITH(rdrop::MeasureConsistency(identity, x, labels, options), Contains("'batch_rows'"));
  CHECK_THROWS_WITH(rdrop::MeasureConsistency(identity, x, Eigen::VectorXi::Zero(3)), Contains("'labels'"));
  const Eigen::VectorXi too_large = (Eigen::VectorXi(4) << 0, 1, 3, 0).finished();
  CHECK_THROWS_WITH(rdrop::MeasureConsistency(identity, x, too_large), Contains("'labels'") && Contains("[0, 3)"));
  const auto wrong_rows = [](const auto&, bool) { return RowMatrix<double>::Zero(2, 3).eval(); };
  CHECK_THROWS_WITH(rdrop::MeasureConsistency(wrong_rows, x, labels), Contains("'forward'") && Contains("2 x 3"));
  const auto changing = [](const auto&, bool on) { return RowMatrix<double>::Zero(4, on ? 5 : 3).eval(); };
  CHECK_THROWS_WITH(rdrop::MeasureConsistency(changing, x, labels), Contains("4 x 5"));
}

TEST_CASE("Without labeled rows the accuracies are NaN", "[consistency]") {
  const RowMatrix<float> x = RowMatrix<float>::Random(5, 4);
  const Eigen::VectorXi unlabeled = Eigen::VectorXi::Constant(5, -1);
  const auto report = rdrop::MeasureConsistency([](const auto& in, bool) { return RowMatrix<float>(in); }, x, unlabeled);
  CHECK(report.labeled == 0);
  CHECK(std::isnan(report.mc_accuracy));
  CHECK(std::isnan(report.deterministic_accuracy));
  CHECK(report.kl == Approx(0).margin(1e-6));
}
