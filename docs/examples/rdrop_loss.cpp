// RDropLoss on a duplicated batch: value and gradient against the seed's
// Keras formula, labels per sample or per row, per-row values, an unlabeled
// sample, and a [2B, T, C] tensor.
#include "example_common.hpp"

namespace {

// The seed's Keras loss, written out: mean CE over the 2B rows plus
// alpha/4 times the mean over pairs of KL(p‖q) + KL(q‖p). Interleaved rows.
double keras_rdrop(const Matrix& logits, const Eigen::VectorXi& y, double alpha) {
  const Eigen::Index pairs = logits.rows() / 2;
  double ce = 0.0, kl2 = 0.0;
  for (Eigen::Index k = 0; k < pairs; ++k) {
    const Row a = logits.row(2 * k), b = logits.row(2 * k + 1);
    ce -= log_softmax(a)(y(k)) + log_softmax(b)(y(k));
    kl2 += kl(a, b) + kl(b, a);
  }
  return ce / double(2 * pairs) + kl2 / double(pairs) / 4.0 * alpha;
}

}  // namespace

int main() {
  const Eigen::Index B = 3, C = 4;
  const Matrix logits = Matrix::Random(2 * B, C);  // model output for [a, a, b, b, c, c]
  Eigen::VectorXi y(B);                            // one label per sample
  y << 2, 0, 3;

  rdrop::RDropOptions<double> options;
  options.alpha = 4.0;  // defaults: Layout::Interleaved, Normalization::KerasCode
  const rdrop::RDropLoss<double> loss(options);

  Matrix grad;  // resized to 2B x C
  const double value = loss.EvaluateWithGradient(logits, y, grad);
  check(std::abs(value - keras_rdrop(logits, y, 4.0)) < 1e-12, "value = Keras formula");

  // The gradient covers all 2B rows (neither copy is detached): compare
  // with central differences of the same formula.
  const double worst = gradient_error([&](const Matrix& x) { return keras_rdrop(x, y, 4.0); }, logits, grad);
  check(worst < 1e-8, "gradient = finite differences");

  // Labels once per row (2B entries) give the same loss.
  const Eigen::VectorXi y_rows = rdrop::Duplicate(y);
  check(loss.Evaluate(logits, y_rows) == value, "labels per row = labels per sample");

  // Per-row values l_r = CE_r + (alpha/2) D_k: their mean is the KerasCode
  // value, their sum the Paper value.
  Eigen::VectorXd per_row;
  loss.EvaluatePerRow(logits, y, per_row);
  check(per_row.size() == 2 * B, "one value per row");
  check(std::abs(per_row.mean() - value) < 1e-12, "mean of per-row values = loss");

  // Semi-supervised: sample 1 has no label. Its rows lose their CE term and
  // keep the divergence term, so the gradient of its rows still pulls them
  // together.
  Eigen::VectorXi y_semi = y;
  y_semi(1) = static_cast<int>(options.ignore_index);  // -100 by default
  Matrix grad_semi;
  loss.EvaluateWithGradient(logits, y_semi, grad_semi);
  check(grad_semi.row(2).norm() > 0.0, "unlabeled rows still get a gradient");
  check(std::abs(grad_semi.row(2).sum()) < 1e-12, "softmax gradient rows sum to 0");

  // Sequences: a row-major [2B, T, C] tensor pairs (2i, t) with (2i+1, t).
  // Its KerasCode loss is the mean over t of the losses of the T slices.
  const Eigen::Index T = 5;
  Eigen::Tensor<double, 3, Eigen::RowMajor> seq(2 * B, T, C);
  seq.setRandom();
  Eigen::Tensor<int, 2, Eigen::RowMajor> seq_labels(B, T);  // once per sample and step
  for (Eigen::Index i = 0; i < B; ++i) {
    for (Eigen::Index t = 0; t < T; ++t) seq_labels(i, t) = int((i + t) % C);
  }
  double slices = 0.0;
  for (Eigen::Index t = 0; t < T; ++t) {
    Matrix slice(2 * B, C);
    Eigen::VectorXi slice_labels(B);
    for (Eigen::Index r = 0; r < 2 * B; ++r) {
      for (Eigen::Index j = 0; j < C; ++j) slice(r, j) = seq(r, t, j);
    }
    for (Eigen::Index i = 0; i < B; ++i) slice_labels(i) = seq_labels(i, t);
    slices += loss.Evaluate(slice, slice_labels) / double(T);
  }
  Eigen::Tensor<double, 3, Eigen::RowMajor> seq_grad;  // resized to [2B, T, C]
  const double seq_value = loss.EvaluateWithGradient(seq, seq_labels, seq_grad);
  check(std::abs(seq_value - slices) < 1e-12, "[2B, T, C] loss = mean of slice losses");
  check(seq_grad.dimension(0) == 2 * B && seq_grad.dimension(1) == T && seq_grad.dimension(2) == C,
        "tensor gradient has the logits' shape");

  std::printf("R-Drop loss %.6f, gradient error %.2e\n", value, worst);
  return exit_code();
}
