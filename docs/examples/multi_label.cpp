// Multi-label R-Drop: binary cross-entropy per output node on both copies
// plus α times the symmetric Bernoulli KL between the copies.
#include "example_common.hpp"

#include <stdexcept>

namespace {

double sigmoid(double u) { return 1.0 / (1.0 + std::exp(-u)); }

// KL between Bernoulli(p) and Bernoulli(q), from probabilities.
double bernoulli_kl(double p, double q) {
  return p * std::log(p / q) + (1.0 - p) * std::log((1.0 - p) / (1.0 - q));
}

// The loss written out: KerasCode = Σ_r BCE_r / 2B + α Σ_k D_k / 2B with
// D_k = Σ_j ½[KL(p_j‖q_j) + KL(q_j‖p_j)] over the K nodes.
double reference(const Matrix& logits, const Matrix& targets, double alpha) {
  const Eigen::Index B = logits.rows() / 2;
  double bce = 0.0, d = 0.0;
  for (Eigen::Index k = 0; k < B; ++k) {
    for (Eigen::Index j = 0; j < logits.cols(); ++j) {
      const double t = targets(k, j);
      for (const Eigen::Index r : {2 * k, 2 * k + 1}) {
        const double p = sigmoid(logits(r, j));
        bce -= t * std::log(p) + (1.0 - t) * std::log(1.0 - p);
      }
      const double p = sigmoid(logits(2 * k, j)), q = sigmoid(logits(2 * k + 1, j));
      d += 0.5 * (bernoulli_kl(p, q) + bernoulli_kl(q, p));
    }
  }
  return bce / double(2 * B) + alpha * d / double(2 * B);
}

}  // namespace

int main() {
  const Eigen::Index B = 3, K = 4;  // 3 samples, 4 independent labels each
  const Matrix logits = 2.0 * Matrix::Random(2 * B, K);
  Matrix targets(B, K);  // once per sample; soft targets in [0, 1] are fine too
  targets << 1, 0, 0, 1,  //
      0, 0, 1, 0,         //
      1, 1, 0, 0.5;

  rdrop::MultiLabelOptions<double> options;
  options.alpha = 4.0;  // Layout::Interleaved, Normalization::KerasCode
  const rdrop::RDropMultiLabelLoss<double> loss(options);

  Matrix grad;
  const double value = loss.EvaluateWithGradient(logits, targets, grad);
  check(std::abs(value - reference(logits, targets, 4.0)) < 1e-12, "value = formula");

  const double worst =
      gradient_error([&](const Matrix& x) { return reference(x, targets, 4.0); }, logits, grad);
  check(worst < 1e-8, "gradient = finite differences");

  // The divergence alone, from logits: ½ Σ_j (p_j - q_j)(u_j - v_j). Exact
  // for logits where probabilities round to 0 or 1 and clipping would fail.
  Matrix u(1, 2), v(1, 2);
  u << 40.0, -40.0;
  v << -40.0, 40.0;
  const double d = rdrop::BernoulliSymmetricKL<double>().Evaluate(u, v);
  check(std::abs(d - 80.0) < 1e-12, "Bernoulli symmetric KL of logits ±40");

  // Targets must be probabilities.
  Matrix bad = targets;
  bad(0, 0) = 2.0;
  try {
    loss.Evaluate(logits, bad);
    check(false, "a target outside [0, 1] throws");
  } catch (const std::invalid_argument& e) {
    std::printf("%s\n", e.what());
  }

  std::printf("multi-label R-Drop loss %.6f, gradient error %.2e\n", value, worst);
  return exit_code();
}
