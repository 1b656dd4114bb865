// Independent references for the tests: straightforward scalar formulas in
// double (long double where the inputs are extreme), written from the
// definitions rather than from rdrop's kernels, plus central differences.
#pragma once

#include <Eigen/Core>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <vector>

namespace ref {

using Index = Eigen::Index;
using MatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename S>
using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Uniform logits in [-scale, scale], reproducible.
template <typename S>
Matrix<S> random_logits(Index rows, Index cols, double scale, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-scale, scale);
  Matrix<S> m(rows, cols);
  for (Index i = 0; i < rows; ++i)
    for (Index j = 0; j < cols; ++j) m(i, j) = static_cast<S>(u(rng));
  return m;
}

inline Eigen::VectorXi random_labels(Index n, int classes, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> u(0, classes - 1);
  Eigen::VectorXi y(n);
  for (Index i = 0; i < n; ++i) y(i) = u(rng);
  return y;
}

/// log softmax of one row, long double, max-shifted.
inline std::vector<long double> log_softmax(const MatrixD& x, Index r) {
  const Index c = x.cols();
  long double m = -std::numeric_limits<long double>::infinity();
  for (Index j = 0; j < c; ++j) m = std::max(m, static_cast<long double>(x(r, j)));
  long double s = 0;
  for (Index j = 0; j < c; ++j) s += std::exp(static_cast<long double>(x(r, j)) - m);
  std::vector<long double> out(static_cast<std::size_t>(c));
  for (Index j = 0; j < c; ++j) out[static_cast<std::size_t>(j)] = static_cast<long double>(x(r, j)) - m - std::log(s);
  return out;
}

/// −Σ t_j log p_j with t = (1−ε)·onehot(y) + ε/C.
inline double cross_entropy(const MatrixD& x, Index r, int y, double eps) {
  const auto lp = log_softmax(x, r);
  const Index c = x.cols();
  long double ce = 0;
  for (Index j = 0; j < c; ++j) {
    const long double t = (j == y ? 1.0L - eps : 0.0L) + eps / static_cast<long double>(c);
    if (t != 0) ce -= t * lp[static_cast<std::size_t>(j)];
  }
  return static_cast<double>(ce);
}

/// KL(softmax(row ra of a) ‖ softmax(row rb of b)) = Σ p (log p − log q), 0·log 0 = 0.
inline double kl(const MatrixD& a, Index ra, const MatrixD& b, Index rb) {
  const auto lp = log_softmax(a, ra), lq = log_softmax(b, rb);
  long double s = 0;
  for (std::size_t j = 0; j < lp.size(); ++j) {
    const long double p = std::exp(lp[j]);
    if (p > 0) s += p * (lp[j] - lq[j]);
  }
  return static_cast<double>(s);
}

/// Jensen–Shannon ½KL(p‖m) + ½KL(q‖m), m = ½(p + q), of rows ra of a and rb of b,
/// in long double straight from the definition; 0·log 0 = 0.
inline double js(const MatrixD& a, Index ra, const MatrixD& b, Index rb) {
  const auto lp = log_softmax(a, ra), lq = log_softmax(b, rb);
  long double s = 0;
  for (std::size_t j = 0; j < lp.size(); ++j) {
    const long double p = std::exp(lp[j]), q = std::exp(lq[j]), m = (p + q) / 2;
    if (p > 0) s += p / 2 * std::log(p / m);
    if (q > 0) s += q / 2 * std::log(q / m);
  }
  return static_cast<double>(s);
}

/// ∂JS/∂a for the row pair of js(), by the chain rule through p = softmax(a):
/// ∂JS/∂p_j = ½ log(p_j / m_j), then ∂/∂a_i = p_i (∂_i − Σ_j p_j ∂_j).
inline std::vector<double> js_gradient_first(const MatrixD& a, Index ra, const MatrixD& b, Index rb) {
  const auto lp = log_softmax(a, ra), lq = log_softmax(b, rb);
  std::vector<long double> dp(lp.size());
  long double mean = 0;
  for (std::size_t j = 0; j < lp.size(); ++j) {
    const long double p = std::exp(lp[j]), q = std::exp(lq[j]);
    dp[j] = p > 0 ? std::log(p / ((p + q) / 2)) / 2 : 0;
    mean += p * dp[j];
  }
  std::vector<double> g(lp.size());
  for (std::size_t j = 0; j < lp.size(); ++j) g[j] = static_cast<double>(std::exp(lp[j]) * (dp[j] - mean));
  return g;
}

/// The paper's per-sample loss summed over samples:
/// Σ_i CE(a_i) + CE(b_i) + α/2 [KL(p_i‖q_i) + KL(q_i‖p_i)], where a_i and b_i
/// are rows first[i], second[i] of x and labels are per row (−1 = none).
inline double paper_loss(const MatrixD& x, const std::vector<Index>& first,
                         const std::vector<Index>& second, const std::vector<int>& row_label,
                         double alpha, double eps) {
  double total = 0;
  for (std::size_t i = 0; i < first.size(); ++i) {
    const Index a = first[i], b = second[i];
    if (row_label[static_cast<std::size_t>(a)] >= 0) total += cross_entropy(x, a, row_label[static_cast<std::size_t>(a)], eps);
    if (row_label[static_cast<std::size_t>(b)] >= 0) total += cross_entropy(x, b, row_label[static_cast<std::size_t>(b)], eps);
    total += alpha / 2 * (kl(x, a, x, b) + kl(x, b, x, a));
  }
  return total;
}

/// Central-difference gradient of f at x.
inline MatrixD numeric_gradient(const std::function<double(const MatrixD&)>& f, const MatrixD& x,
                                double h = 1e-6) {
  MatrixD g(x.rows(), x.cols());
  MatrixD probe = x;
  for (Index i = 0; i < x.rows(); ++i) {
    for (Index j = 0; j < x.cols(); ++j) {
      probe(i, j) = x(i, j) + h;
      const double up = f(probe);
      probe(i, j) = x(i, j) - h;
      const double down = f(probe);
      probe(i, j) = x(i, j);
      g(i, j) = (up - down) / (2 * h);
    }
  }
  return g;
}

/// mlpack's CheckGradient measure: ‖g − ĝ‖ / ‖g + ĝ‖ (0 when both vanish).
inline double relative_error(const MatrixD& g, const MatrixD& numeric) {
  const double denom = (g + numeric).norm();
  return denom == 0 ? (g - numeric).norm() : (g - numeric).norm() / denom;
}

/// Relative tolerance for comparing Scalar results with a double reference.
template <typename S>
constexpr double tolerance() {
  return std::is_same_v<S, float> ? 2e-5 : 1e-12;
}

}  // namespace ref
