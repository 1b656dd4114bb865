// What every docs example shares: the matrix types, check() and the exit
// code, and the reference formulas that several pages write out. Each
// docs/examples/<page>.cpp includes it, so the example shows only its page.
#pragma once

#include <rdrop/rdrop.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>

// Examples use these names unqualified; the namespace keeps them apart from
// the names inside rdrop.
namespace example {

// Logits and gradients: one sample per row, as rdrop expects.
using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using FloatMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Row = Eigen::RowVectorXd;

// check() reports a failed expectation and counts it; main() ends with
// `return exit_code();`, non-zero when any check failed.
inline int failures = 0;
inline void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED: %s\n", what);
    ++failures;
  }
}
inline int exit_code() { return failures == 0 ? 0 : 1; }

// Equal up to rounding: relative error at most 1e-12.
inline bool close(double a, double b) { return std::abs(a - b) <= 1e-12 * (1.0 + std::abs(b)); }

// log softmax(x), with std::exp element by element: a -inf logit has
// probability exp(-inf) = 0 exactly.
inline Row log_softmax(const Row& x) {
  const double m = x.maxCoeff();
  const double s = (x.array() - m).unaryExpr([](double v) { return std::exp(v); }).sum();
  return x.array() - (m + std::log(s));
}
inline Row softmax(const Row& x) { return log_softmax(x).array().exp(); }

// KL(softmax(a) ‖ softmax(b)) = Σ_j p_j (log p_j - log q_j), terms with p_j = 0 left out.
inline double kl(const Row& a, const Row& b) {
  const Row la = log_softmax(a), lb = log_softmax(b);
  double s = 0.0;
  for (Eigen::Index j = 0; j < a.size(); ++j) {
    if (std::exp(la(j)) > 0.0) s += std::exp(la(j)) * (la(j) - lb(j));
  }
  return s;
}

// Largest gap between an analytic gradient and central differences of f.
template <typename F>
double gradient_error(F f, const Matrix& x, const Matrix& grad) {
  double worst = 0.0;
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    for (Eigen::Index j = 0; j < x.cols(); ++j) {
      Matrix plus = x, minus = x;
      plus(i, j) += 1e-6;
      minus(i, j) -= 1e-6;
      worst = std::max(worst, std::abs((f(plus) - f(minus)) / 2e-6 - grad(i, j)));
    }
  }
  return worst;
}

}  // namespace example
using namespace example;
