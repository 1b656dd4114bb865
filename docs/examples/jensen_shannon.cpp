// JensenShannon: the bounded, symmetric alternative to the symmetric KL,
// stand-alone and as the divergence of RDropLoss.
#include "example_common.hpp"

#include <limits>

namespace {

// JS(p, q) = ½ KL(p‖m) + ½ KL(q‖m), m = ½(p + q), from probabilities.
double js(const Row& a, const Row& b) {
  const Row p = softmax(a), q = softmax(b), m = 0.5 * (p + q);
  double s = 0.0;
  for (Eigen::Index j = 0; j < p.size(); ++j) {
    if (p(j) > 0.0) s += 0.5 * p(j) * std::log(p(j) / m(j));
    if (q(j) > 0.0) s += 0.5 * q(j) * std::log(q(j) / m(j));
  }
  return s;
}

}  // namespace

int main() {
  const Eigen::Index B = 3, C = 6;
  const Matrix a = 3.0 * Matrix::Random(B, C), b = 3.0 * Matrix::Random(B, C);

  const rdrop::JensenShannon<double> jsd(rdrop::Reduction::Sum);
  Matrix ga, gb;
  const double value = jsd.EvaluateWithGradient(a, b, ga, gb);
  double ref = 0.0;
  for (Eigen::Index i = 0; i < B; ++i) ref += js(a.row(i), b.row(i));
  check(std::abs(value - ref) < 1e-12, "JS value");
  check(std::abs(jsd.Evaluate(b, a) - value) < 1e-12, "symmetric");

  double worst = 0.0;
  for (Eigen::Index i = 0; i < B; ++i) {
    for (Eigen::Index j = 0; j < C; ++j) {
      Row plus = a.row(i), minus = a.row(i);
      plus(j) += 1e-6;
      minus(j) -= 1e-6;
      worst = std::max(worst, std::abs((js(plus, b.row(i)) - js(minus, b.row(i))) / 2e-6 - ga(i, j)));
    }
  }
  check(worst < 1e-8, "gradient = finite differences");

  // Bounded by log 2, even for disjoint distributions.
  Matrix far_a(1, 2), far_b(1, 2);
  far_a << 50.0, -50.0;
  far_b << -50.0, 50.0;
  const double bound = jsd.Evaluate(far_a, far_b);
  check(bound <= std::log(2.0) && bound > std::log(2.0) - 1e-12, "JS <= log 2");

  // A class at -inf in both rows contributes nothing.
  const double inf = std::numeric_limits<double>::infinity();
  Matrix ma(1, 3), mb(1, 3);
  ma << 0.3, -inf, 1.0;
  mb << -0.2, -inf, 0.4;
  Row ra(2), rb(2);
  ra << 0.3, 1.0;
  rb << -0.2, 0.4;
  check(std::abs(jsd.Evaluate(ma, mb) - js(ra, rb)) < 1e-12, "-inf in both rows");

  // As the divergence of R-Drop.
  const Matrix logits = Matrix::Random(2 * B, C);
  Eigen::VectorXi y(B);
  y << 5, 0, 2;
  rdrop::RDropOptions<double> options;
  options.normalization = rdrop::Normalization::Sum;
  const rdrop::RDropLoss<double, rdrop::JensenShannon<double>> loss(options);
  options.alpha = 0.0;
  const double ce = rdrop::RDropLoss<double>(options).Evaluate(logits, y);
  const double d = jsd.Evaluate(rdrop::FirstCopy(logits), rdrop::SecondCopy(logits));
  check(std::abs(loss.Evaluate(logits, y) - (ce + d)) < 1e-12, "R-Drop with JS: Σ CE + α Σ JS");

  std::printf("JS %.6f, gradient error %.2e\n", value, worst);
  return exit_code();
}
