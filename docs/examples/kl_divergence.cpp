// KLDivergence and SymmetricKL: values and gradients against the formulas
// written out, their properties, and the conventions for -inf logits.
#include "example_common.hpp"

#include <limits>

namespace {

double max_abs(const Matrix& m) { return m.cwiseAbs().maxCoeff(); }

}  // namespace

int main() {
  const Eigen::Index B = 4, C = 6;
  const Matrix a = 2.0 * Matrix::Random(B, C), b = 2.0 * Matrix::Random(B, C);

  // KLDivergence: Reduction::Mean (the default) is PyTorch's 'batchmean'.
  const rdrop::KLDivergence<double> kl_mean;
  Matrix ga, gb;
  const double v = kl_mean.EvaluateWithGradient(a, b, ga, gb);
  double ref = 0.0;
  Matrix ea(B, C), eb(B, C);
  for (Eigen::Index i = 0; i < B; ++i) {
    const double k = kl(a.row(i), b.row(i));
    ref += k / double(B);
    const Row lp = log_softmax(a.row(i)), lq = log_softmax(b.row(i));
    const Row p = lp.array().exp(), q = lq.array().exp();
    // ∂/∂a = p ⊙ (log p - log q - KL),  ∂/∂b = q - p   (each / B for the mean)
    ea.row(i) = (p.array() * (lp - lq).array() - p.array() * k).matrix() / double(B);
    eb.row(i) = (q - p) / double(B);
  }
  check(std::abs(v - ref) < 1e-12, "KL value");
  check(max_abs(ga - ea) < 1e-12 && max_abs(gb - eb) < 1e-12, "KL gradients for both sides");
  check(kl_mean.Evaluate(a, a) == 0.0, "KL(p‖p) = 0 exactly");

  // SymmetricKL: ½[KL(p‖q) + KL(q‖p)], here summed over pairs.
  const rdrop::SymmetricKL<double> skl(rdrop::Reduction::Sum);
  Eigen::VectorXd per_pair;
  skl.EvaluatePerRow(a, b, per_pair);
  for (Eigen::Index i = 0; i < B; ++i) {
    const double s = 0.5 * (kl(a.row(i), b.row(i)) + kl(b.row(i), a.row(i)));
    check(std::abs(per_pair(i) - s) < 1e-12 && per_pair(i) >= 0.0, "symmetric KL per pair");
  }
  Matrix sa, sb, ta, tb;
  const double s_ab = skl.EvaluateWithGradient(a, b, sa, sb);
  const double s_ba = skl.EvaluateWithGradient(b, a, tb, ta);
  check(std::abs(s_ab - s_ba) < 1e-12, "S(a, b) = S(b, a)");
  check(max_abs(sa - ta) < 1e-12 && max_abs(sb - tb) < 1e-12, "gradients swap with the arguments");
  check(max_abs(sa.rowwise().sum()) < 1e-12, "softmax gradient rows sum to 0");

  // Logits of magnitude 1e4 stay finite (max-shifted log-sum-exp).
  Matrix big_a(1, 3), big_b(1, 3);
  big_a << 1e4, 0.0, -1e4;
  big_b << 0.0, 1e4, -1e4;
  const double big = rdrop::KLDivergence<double>().Evaluate(big_a, big_b);
  check(std::abs(big - 1e4) < 1e-6, "KL of logits 1e4 is finite and exact");

  // -inf logits (masked classes). A class at -inf in both rows contributes 0:
  // the result equals that of the rows without it.
  const double inf = std::numeric_limits<double>::infinity();
  Matrix ma = a.topRows(1), mb = b.topRows(1);
  ma(0, 1) = -inf;
  mb(0, 1) = -inf;
  Matrix mga, mgb;
  const double masked = skl.EvaluateWithGradient(ma, mb, mga, mgb);
  Row ra(C - 1), rb(C - 1);
  ra << ma(0, 0), ma.block(0, 2, 1, C - 2);
  rb << mb(0, 0), mb.block(0, 2, 1, C - 2);
  check(std::abs(masked - 0.5 * (kl(ra, rb) + kl(rb, ra))) < 1e-12, "-inf in both rows: 0");
  check(mga.allFinite() && mgb.allFinite() && mga(0, 1) == 0.0 && mgb(0, 1) == 0.0,
        "-inf in both rows: finite gradient, 0 at the masked class");

  // At -inf in b only: q_j = 0 < p_j, so KL(p‖q) = +inf, its true value.
  Matrix only_b = b.topRows(1);
  only_b(0, 1) = -inf;
  check(rdrop::KLDivergence<double>().Evaluate(a.topRows(1), only_b) == inf, "KL(p‖q), q_j = 0: +inf");
  check(skl.Evaluate(a.topRows(1), only_b) == inf, "symmetric KL, one -inf: +inf");
  // At -inf in a only: p_j = 0, so KL(p‖q) leaves class j out and stays finite.
  Matrix only_a = a.topRows(1);
  only_a(0, 1) = -inf;
  const double kl_a = rdrop::KLDivergence<double>().Evaluate(only_a, b.topRows(1));
  check(std::abs(kl_a - kl(only_a.row(0), b.row(0))) < 1e-12, "KL(p‖q), p_j = 0: finite");

  std::printf("KL %.6f, symmetric KL %.6f\n", v, s_ab);
  return exit_code();
}
