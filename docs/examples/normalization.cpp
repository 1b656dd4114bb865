// Every Normalization against its formula written out, the seed's question
// answered numerically (KerasCode = Paper / (2B), value and gradient), and
// fairseq's criterion on padded sequences.
#include "example_common.hpp"

namespace {

double loss(const Matrix& logits, const Eigen::VectorXi& y, double alpha, rdrop::Normalization n,
            Matrix* grad = nullptr) {
  rdrop::RDropOptions<double> options;
  options.alpha = alpha;
  options.normalization = n;
  const rdrop::RDropLoss<double> f(options);
  return grad ? f.EvaluateWithGradient(logits, y, *grad) : f.Evaluate(logits, y);
}

}  // namespace

int main() {
  using rdrop::Normalization;
  const int sizes[] = {1, 2, 5, 16};
  for (const int B : sizes) {
    for (const double alpha : {0.0, 0.5, 4.0}) {
      const Matrix logits = Matrix::Random(2 * B, 7);  // interleaved [a, a, b, b, ...]
      Eigen::VectorXi y(B);  // one label per sample
      for (int k = 0; k < B; ++k) y(k) = (5 * k + 3) % 7;

      // The pieces: CE of every row, KL in both directions for every pair.
      double ce_first = 0.0, ce_second = 0.0, kl_pq = 0.0, kl_qp = 0.0;
      for (int k = 0; k < B; ++k) {
        const Row a = logits.row(2 * k), b = logits.row(2 * k + 1);
        ce_first -= log_softmax(a)(y(k));
        ce_second -= log_softmax(b)(y(k));
        kl_pq += kl(a, b);
        kl_qp += kl(b, a);
      }
      const double ce_sum = ce_first + ce_second;
      const double d_sum = 0.5 * (kl_pq + kl_qp);  // Σ_k D_k, D = ½[KL(p‖q) + KL(q‖p)]

      // Paper: Σ_i [CE(a_i) + CE(b_i) + α/2 · (KL(p‖q) + KL(q‖p))].
      const double paper = ce_sum + alpha / 2.0 * (kl_pq + kl_qp);
      check(close(loss(logits, y, alpha, Normalization::Paper), paper), "Paper");
      check(close(loss(logits, y, alpha, Normalization::Sum), paper), "Sum");

      // KerasCode: K.mean(loss_ce) + K.mean(loss_kl) / 4 * alpha, where
      // loss_kl has one entry KL(p‖q) + KL(q‖p) per pair.
      const double keras = ce_sum / (2.0 * B) + (kl_pq + kl_qp) / B / 4.0 * alpha;
      check(close(loss(logits, y, alpha, Normalization::KerasCode), keras), "KerasCode");

      // PyTorchReadme: 0.5 * (CE1 + CE2) + α · (ΣKL(p‖q) + ΣKL(q‖p)) / 2,
      // CE1 and CE2 mean cross-entropies of the two passes, the KL sums.
      const double readme = 0.5 * (ce_first / B + ce_second / B) + alpha * (kl_pq + kl_qp) / 2.0;
      check(close(loss(logits, y, alpha, Normalization::PyTorchReadme), readme), "PyTorchReadme");

      // Mean: mean CE over labeled rows, mean divergence over pairs.
      const double mean = ce_sum / (2.0 * B) + alpha * d_sum / B;
      check(close(loss(logits, y, alpha, Normalization::Mean), mean), "Mean");

      // Fairseq: (Σ CE + α Σ D) / P, P the pairs (tokens of one copy).
      const double fairseq = (ce_sum + alpha * d_sum) / B;
      check(close(loss(logits, y, alpha, Normalization::Fairseq), fairseq), "Fairseq");

      // KerasCode = Paper / (2B), in value and in gradient.
      Matrix g_keras, g_paper;
      const double v_keras = loss(logits, y, alpha, Normalization::KerasCode, &g_keras);
      const double v_paper = loss(logits, y, alpha, Normalization::Paper, &g_paper);
      check(close(v_keras, v_paper / (2.0 * B)), "KerasCode value = Paper / 2B");
      check((g_keras - g_paper / (2.0 * B)).cwiseAbs().maxCoeff() < 1e-14,
            "KerasCode gradient = Paper gradient / 2B");
    }
  }

  // Unlabeled samples: the CE means divide by the n labeled rows only; the
  // divergence keeps dividing by the pair count.
  const Matrix logits = Matrix::Random(8, 3);
  Eigen::VectorXi y(4);
  y << 0, -100, 2, -100;  // samples 1 and 3 unlabeled: n = 4 of 2B = 8 rows
  const double ce_total = loss(logits, y, 0.0, Normalization::Sum);           // Σ_r CE_r
  const double d_total = loss(logits, y, 1.0, Normalization::Sum) - ce_total;  // Σ_k D_k
  check(close(loss(logits, y, 1.0, Normalization::KerasCode), ce_total / 4.0 + d_total / 8.0),
        "KerasCode with unlabeled samples: Σ CE / n + α Σ D / 2B");
  const Eigen::VectorXi none = Eigen::VectorXi::Constant(4, -100);
  check(loss(logits, none, 0.0, Normalization::Mean) == 0.0, "mean over zero labeled rows is 0");

  // fairseq's criterion on sequences: [2B, T, C] logits, padding tokens
  // (no CE, no divergence), smoothing 1 - eps on the label and eps/(C-1)
  // elsewhere, everything divided by the non-padding tokens of one copy.
  const int B = 2, T = 3, C = 5, pad = 1;
  Eigen::Tensor<double, 3, Eigen::RowMajor> seq(2 * B, T, C);
  seq.setRandom();
  Eigen::Tensor<int, 2, Eigen::RowMajor> tokens(B, T);  // target tokens, once per sample
  tokens.setValues({{3, 0, 2}, {4, pad, pad}});          // sample 1 has 2 padding steps
  rdrop::RDropOptions<double> options;
  options.alpha = 5.0;
  options.normalization = Normalization::Fairseq;
  options.padding_index = pad;
  options.label_smoothing = 0.1;
  options.smoothing_style = rdrop::SmoothingStyle::ExcludeTarget;
  const double fairseq_value = rdrop::RDropLoss<double>(options).Evaluate(seq, tokens);

  double total = 0.0;
  int kept = 0;
  for (int i = 0; i < B; ++i) {
    for (int t = 0; t < T; ++t) {
      if (tokens(i, t) == pad) continue;
      ++kept;
      Row a(C), b(C);
      for (int j = 0; j < C; ++j) {
        a(j) = seq(2 * i, t, j);  // interleaved: copies are samples 2i and 2i+1
        b(j) = seq(2 * i + 1, t, j);
      }
      for (const Row* row : {&a, &b}) {
        const Row lp = log_softmax(*row);
        const double nll = -lp(tokens(i, t));
        total += 0.9 * nll + 0.1 / (C - 1) * (-lp.sum() - nll);
      }
      total += 5.0 * 0.5 * (kl(a, b) + kl(b, a));
    }
  }
  check(close(fairseq_value, total / kept), "Fairseq with padding and fairseq's smoothing");

  std::printf("all normalizations match their formulas\n");
  return exit_code();
}
