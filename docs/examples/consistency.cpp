// MeasureConsistency: how far the dropout-off prediction is from the
// Monte-Carlo average of dropout-on predictions, the gap R-Drop closes.
#include "example_common.hpp"

#include <cstdint>
#include <stdexcept>

int main() {
  const Matrix x = Matrix::Random(200, 8);  // 200 samples, 8 features
  Eigen::VectorXi y(200);
  for (Eigen::Index i = 0; i < y.size(); ++i) y(i) = x(i, 0) > 0.0 ? 1 : (x(i, 1) > 0.0 ? 2 : 0);
  y(7) = -1;  // an unlabeled row: measured, but not in the accuracies
  const Matrix w = 3.0 * Matrix::Random(8, 3);  // a linear "model", logits = dropout(x) w

  // forward(rows, dropout_on): each dropout-on call must draw fresh masks.
  const rdrop::Dropout<double> dropout(0.5, /*seed=*/7);
  std::uint64_t step = 0;
  auto forward = [&](const auto& rows, bool on) {
    if (!on) return Matrix(rows * w);
    Matrix h;
    dropout.Forward(rows, h, step++);
    return Matrix(h * w);
  };

  rdrop::ConsistencyOptions options;
  options.passes = 20;
  options.batch_rows = 64;  // forward sees at most 64 rows at a time
  const rdrop::ConsistencyReport<double> report = rdrop::MeasureConsistency(forward, x, y, options);
  check(report.samples == 200 && report.labeled == 199 && report.passes == 20, "counts");
  check(report.kl > 0.0, "dropout leaves a gap between MC average and dropout-off");
  check(report.agreement > 0.0 && report.agreement <= 1.0, "agreement is a fraction");
  check(step == 20 * 4, "K dropout-on calls per batch of rows");

  // Without dropout the two predictions coincide: no gap.
  auto deterministic = [&](const auto& rows, bool) { return Matrix(rows * w); };
  const auto none = rdrop::MeasureConsistency(deterministic, x, y, options);
  check(none.kl < 1e-12 && none.agreement == 1.0, "no dropout, no gap");
  check(none.mc_accuracy == none.deterministic_accuracy, "same predictions, same accuracy");

  // Bad settings throw std::invalid_argument.
  options.passes = 0;
  try {
    rdrop::MeasureConsistency(forward, x, y, options);
    check(false, "passes = 0 throws");
  } catch (const std::invalid_argument& e) {
    std::printf("%s\n", e.what());
  }

  std::printf("KL(MC average ‖ dropout-off) = %.4f nats, accuracy %.3f (MC) vs %.3f (dropout off)\n",
              report.kl, report.mc_accuracy, report.deterministic_accuracy);
  return exit_code();
}
