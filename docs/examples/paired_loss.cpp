// The calls every R-Drop loss shares: a mask, and the terms and counts that
// let data-parallel workers reproduce the single-machine loss exactly.
#include "example_common.hpp"

int main() {
  const Eigen::Index B = 6, C = 5;
  const Matrix logits = Matrix::Random(2 * B, C);  // interleaved: pair k = rows 2k, 2k+1
  Eigen::VectorXi y(B);
  y << 0, 4, -100, 2, 1, 3;  // sample 2 unlabeled
  rdrop::RDropOptions<double> options;
  options.alpha = 2.0;  // KerasCode: Σ CE / n + α Σ D / (2P)
  const rdrop::RDropLoss<double> loss(options);

  // A mask (non-zero = keep), once per sample or once per row, removes rows
  // entirely: the loss is that of the batch without them, and their
  // gradient rows are 0.
  Eigen::VectorXi keep(B);
  keep << 1, 1, 1, 0, 1, 1;  // drop sample 3 (rows 6 and 7)
  Matrix grad_masked;
  const double masked = loss.EvaluateWithGradient(logits, y, keep, grad_masked);
  Matrix without(2 * B - 2, C);
  without << logits.topRows(6), logits.bottomRows(4);
  Eigen::VectorXi y_without(B - 1);
  y_without << 0, 4, -100, 1, 3;
  Matrix grad_without;
  check(close(masked, loss.EvaluateWithGradient(without, y_without, grad_without)),
        "masked loss = loss without the masked sample");
  check(grad_masked.middleRows(6, 2).isZero(0.0), "masked rows get no gradient");
  check((grad_masked.topRows(6) - grad_without.topRows(6)).cwiseAbs().maxCoeff() < 1e-15,
        "other rows: the same gradient");

  // Terms and counts: the sums before normalization.
  const rdrop::RDropTerms<double> all = loss.EvaluateTerms(logits, y);
  check(all.counts.labeled_rows == 10 && all.counts.pairs == 6 && all.counts.rows == 12, "counts");
  check(close(loss.Normalize(all), loss.Evaluate(logits, y)), "Normalize(terms) = Evaluate");
  check(close(loss.Normalize(all),
              all.task_sum / 10.0 + 2.0 * all.divergence_sum / (2.0 * 6.0)),
        "KerasCode from the sums");

  // Two data-parallel workers, each with half of the batch (whole pairs).
  const Matrix x1 = logits.topRows(6), x2 = logits.bottomRows(6);
  const Eigen::VectorXi y1 = y.head(3), y2 = y.tail(3);

  // (a) Value only: all-reduce the terms, then normalize once.
  const rdrop::RDropTerms<double> reduced = loss.EvaluateTerms(x1, y1) + loss.EvaluateTerms(x2, y2);
  check(close(loss.Normalize(reduced), loss.Normalize(all)), "all-reduced terms");

  // (b) Training: all-reduce the counts (they need no logits), then each
  // worker's WithCounts loss is its share of the global loss and gradient.
  const rdrop::RDropCounts global = loss.Count(x1, y1) + loss.Count(x2, y2);
  check(global == all.counts, "all-reduced counts");
  Matrix g1, g2, g;
  const double share1 = loss.WithCounts(global).EvaluateWithGradient(x1, y1, g1);
  const double share2 = loss.WithCounts(global).EvaluateWithGradient(x2, y2, g2);
  const double single = loss.EvaluateWithGradient(logits, y, g);
  check(close(share1 + share2, single), "shares sum to the single-machine loss");
  check((g.topRows(6) - g1).cwiseAbs().maxCoeff() < 1e-15 &&
            (g.bottomRows(6) - g2).cwiseAbs().maxCoeff() < 1e-15,
        "each worker's gradient = its rows of the single-machine gradient");

  std::printf("loss %.6f = %.6f + %.6f\n", single, share1, share2);
  return exit_code();
}
