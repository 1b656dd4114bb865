// CrossEntropy with an ignored row and label smoothing, against
// -Σ_j t_j log softmax(x)_j written out, and its gradient softmax(x) - t.
#include "example_common.hpp"

namespace {

// Target of a row: (1 - eps) onehot(y) + eps / C.
Row target(Eigen::Index y, Eigen::Index classes, double eps) {
  Row t = Row::Constant(classes, eps / double(classes));
  t(y) += 1.0 - eps;
  return t;
}

}  // namespace

int main() {
  const Eigen::Index N = 5, C = 4;
  const double eps = 0.1;
  const Matrix logits = 3.0 * Matrix::Random(N, C);
  Eigen::VectorXi y(N);
  y << 3, -100, 0, 1, 1;  // row 1 carries the ignore label

  rdrop::CrossEntropyOptions<double> options;  // ignore_index -100, Reduction::Mean
  options.label_smoothing = eps;
  const rdrop::CrossEntropy<double> ce(options);

  Matrix grad;
  const double value = ce.EvaluateWithGradient(logits, y, grad);

  // Reference: mean over the 4 counted rows of -Σ_j t_j log p_j; gradient
  // (p - t) / 4 on counted rows, 0 on the ignored row.
  double sum = 0.0;
  Matrix expected = Matrix::Zero(N, C);
  for (Eigen::Index i = 0; i < N; ++i) {
    if (y(i) == -100) continue;
    const Row t = target(y(i), C, eps), lp = log_softmax(logits.row(i));
    sum -= (t.array() * lp.array()).sum();
    expected.row(i) = (lp.array().exp().matrix() - t) / 4.0;
  }
  check(std::abs(value - sum / 4.0) < 1e-12, "mean over counted rows");
  check((grad - expected).cwiseAbs().maxCoeff() < 1e-12, "gradient = (softmax - t) / n");
  check(grad.row(1).isZero(0.0), "ignored row gets no gradient");

  // Per-row values, unreduced: 0 for the ignored row.
  Eigen::VectorXd per_row;
  ce.EvaluatePerRow(logits, y, per_row);
  check(per_row(1) == 0.0 && std::abs(per_row.sum() - sum) < 1e-12, "per-row values");

  // Reduction::Sum adds the rows up instead.
  options.reduction = rdrop::Reduction::Sum;
  check(std::abs(rdrop::CrossEntropy<double>(options).Evaluate(logits, y) - sum) < 1e-12, "Sum");

  // Large logits are fine: everything goes through a max-shifted log-sum-exp.
  Matrix big(1, 3);
  big << 1e4, 0.0, -1e4;
  Eigen::VectorXi y_big(1);
  y_big << 1;
  const double v_big = rdrop::CrossEntropy<double>().Evaluate(big, y_big);
  check(std::abs(v_big - 1e4) < 1e-9, "CE of logits 1e4 is finite and exact");

  // A mean over zero counted rows is 0, not NaN.
  const Eigen::VectorXi all_ignored = Eigen::VectorXi::Constant(N, -100);
  check(ce.Evaluate(logits, all_ignored) == 0.0, "no counted rows: 0");

  std::printf("cross-entropy %.6f\n", value);
  return exit_code();
}
