#include <rdrop/rdrop.hpp>

#include <cmath>

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Tensor3 = Eigen::Tensor<float, 3, Eigen::RowMajor>;

int main() {
  int failures = 0;
  const Matrix logits = Matrix::Random(8, 5);  // 2B = 8 rows (B = 4 samples, interleaved), 5 outputs
  Matrix grad;

  // Single-label classification: the paper's R-Drop.
  Eigen::VectorXi y(4);
  y << 0, 3, 1, 4;
  rdrop::RDropLoss<float>().EvaluateWithGradient(logits, y, grad);

  // Semi-supervised: unlabeled samples carry the KL term only.
  y(2) = -100;  // RDropOptions::ignore_index
  rdrop::RDropLoss<float>().EvaluateWithGradient(logits, y, grad);

  // Another divergence: Jensen-Shannon instead of the symmetric KL.
  rdrop::RDropLoss<float, rdrop::JensenShannon<float>>().EvaluateWithGradient(logits, y, grad);

  // Multi-label: one sigmoid per output; targets in [0, 1], once per sample.
  const Matrix targets = (Matrix::Random(4, 5).array() > 0.0f).cast<float>();
  rdrop::RDropMultiLabelLoss<float>().EvaluateWithGradient(logits, targets, grad);

  // Regression: squared error to the targets and between the copies.
  rdrop::RDropRegressionLoss<float>().EvaluateWithGradient(logits, Matrix::Random(4, 5), grad);

  // Sequences [2B, T, V] with padding, normalized as fairseq does.
  Tensor3 seq(4, 3, 5);  // B = 2 sentences of T = 3 tokens, stacked copies
  seq.setRandom();
  Eigen::Tensor<int, 2, Eigen::RowMajor> tokens(2, 3), keep(2, 3);
  tokens.setValues({{1, 2, 3}, {4, 0, 0}});
  keep.setValues({{1, 1, 1}, {1, 0, 0}});  // the second sentence has one token
  rdrop::RDropOptions<float> seq_options;
  seq_options.layout = rdrop::Layout::Stacked;
  seq_options.normalization = rdrop::Normalization::Fairseq;
  Tensor3 seq_grad;
  rdrop::RDropLoss<float>(seq_options).EvaluateWithGradient(seq, tokens, keep, seq_grad);
  failures += seq_grad(1, 1, 0) != 0.0f || seq_grad(3, 2, 4) != 0.0f;  // padding: gradient exactly 0

  // Data-parallel: all-reduce the counts, then each worker's share is exact.
  const rdrop::RDropLoss<float> loss;
  const rdrop::RDropCounts global = loss.Count(logits.topRows(4), y.head(2)) + loss.Count(logits.bottomRows(4), y.tail(2));
  const float shares = loss.WithCounts(global).Evaluate(logits.topRows(4), y.head(2)) +
                       loss.WithCounts(global).Evaluate(logits.bottomRows(4), y.tail(2));
  failures += std::abs(shares - loss.Evaluate(logits, y)) > 1e-5f;
  return failures;
}
