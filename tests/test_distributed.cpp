// Exact normalization across data-parallel workers: sums and counts
// all-reduced give the single-machine loss and gradient.
#include "support/reference.hpp"

#include <rdrop/rdrop.hpp>

#include <catch2/catch.hpp>

namespace {
using ref::Index;
using ref::MatrixD;
}  // namespace

TEST_CASE("Workers that all-reduce sums and counts get the whole-batch loss and gradient",
          "[distributed]") {
  const auto norm = GENERATE(rdrop::Normalization::KerasCode, rdrop::Normalization::PyTorchReadme,
                             rdrop::Normalization::Mean, rdrop::Normalization::Fairseq,
                             rdrop::Normalization::Paper);
  const Index b = 10, c = 7;
  // Interleaved, so that a worker's share is a contiguous block of whole pairs.
  const MatrixD x = ref::random_logits<double>(2 * b, c, 2.0, 401);
  Eigen::VectorXi y = ref::random_labels(b, static_cast<int>(c), 402);
  y(1) = y(6) = y(7) = -100;  // unlabeled, unevenly spread over the workers
  Eigen::VectorXi mask = Eigen::VectorXi::Ones(b);
  mask(8) = 0;
  rdrop::RDropOptions<double> o;
  o.alpha = 3;
  o.normalization = norm;
  o.label_smoothing = 0.05;
  const rdrop::RDropLoss<double> loss(o);
  MatrixD g_whole;
  const double whole = loss.EvaluateWithGradient(x, y, mask, g_whole);

  const Index bounds[] = {0, 2, 7, 10};  // three workers with 2, 5 and 3 samples
  rdrop::RDropCounts global;
  rdrop::RDropTerms<double> terms;
  for (int w = 0; w < 3; ++w) {
    const Index s = bounds[w], n = bounds[w + 1] - s;
    global += loss.Count(x.middleRows(2 * s, 2 * n), y.segment(s, n), mask.segment(s, n));
    terms += loss.EvaluateTerms(x.middleRows(2 * s, 2 * n), y.segment(s, n), mask.segment(s, n));
  }
  CHECK(global == loss.Count(x, y, mask));
  CHECK(loss.Normalize(terms) == Approx(whole).epsilon(1e-13));

  // Each worker's gradient under the global counts is its block of the whole.
  const rdrop::RDropLoss<double> shared = loss.WithCounts(global);
  double shares = 0;
  MatrixD g_stitched(2 * b, c);
  for (int w = 0; w < 3; ++w) {
    const Index s = bounds[w], n = bounds[w + 1] - s;
    MatrixD g;
    shares += shared.EvaluateWithGradient(x.middleRows(2 * s, 2 * n), y.segment(s, n), mask.segment(s, n), g);
    g_stitched.middleRows(2 * s, 2 * n) = g;
  }
  CHECK(shares == Approx(whole).epsilon(1e-13));
  CHECK((g_stitched - g_whole).cwiseAbs().maxCoeff() < 1e-15);
}
