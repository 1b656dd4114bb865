// R-Drop for regression: squared error against the target on both copies
// plus α times the squared distance between the copies.
#include "example_common.hpp"

int main() {
  const Eigen::Index B = 4, K = 2;  // 4 samples, 2 outputs each
  const Matrix outputs = Matrix::Random(2 * B, K);
  const Matrix targets = Matrix::Random(B, K);  // once per sample

  rdrop::RegressionOptions<double> options;
  options.alpha = 0.5;
  options.layout = rdrop::Layout::Stacked;          // copies: rows k and B+k
  options.normalization = rdrop::Normalization::Sum;  // Σ_r ‖f_r - y‖² + α Σ_k ‖a_k - b_k‖²
  const rdrop::RDropRegressionLoss<double> loss(options);

  Matrix grad;
  const double value = loss.EvaluateWithGradient(outputs, targets, grad);

  // The seed's general form with D = squared error, summed over samples,
  // and its gradient 2(f - y) + 2α(a - b) for the first copy.
  double expected = 0.0;
  Matrix expected_grad(2 * B, K);
  for (Eigen::Index k = 0; k < B; ++k) {
    const Eigen::RowVectorXd a = outputs.row(k), b = outputs.row(B + k), y = targets.row(k);
    expected += (a - y).squaredNorm() + (b - y).squaredNorm() + 0.5 * (a - b).squaredNorm();
    expected_grad.row(k) = 2.0 * (a - y) + 2.0 * 0.5 * (a - b);
    expected_grad.row(B + k) = 2.0 * (b - y) + 2.0 * 0.5 * (b - a);
  }
  check(std::abs(value - expected) < 1e-12, "value");
  check((grad - expected_grad).cwiseAbs().maxCoeff() < 1e-12, "gradient");

  // SquaredError is a divergence like any other; here on the two halves.
  const rdrop::SquaredError<double> d(rdrop::Reduction::Sum);
  const double between = d.Evaluate(rdrop::FirstCopy(outputs, rdrop::Layout::Stacked),
                                    rdrop::SecondCopy(outputs, rdrop::Layout::Stacked));
  options.alpha = 0.0;
  const double task_only = rdrop::RDropRegressionLoss<double>(options).Evaluate(outputs, targets);
  check(std::abs(value - (task_only + 0.5 * between)) < 1e-12, "loss = task + α D");

  std::printf("regression R-Drop loss %.6f\n", value);
  return exit_code();
}
