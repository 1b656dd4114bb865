// The raw-pointer kernels (rdrop/kernels.hpp) against a straightforward
// double-precision reference written from the definitions, against central
// differences, with row strides, with −inf logits, and in float against
// double on rows of up to 32000 classes.
#include <rdrop/kernels.hpp>
#include <rdrop/rdrop.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace {

using Index = Eigen::Index;
using VecD = std::vector<double>;
constexpr double kInf = std::numeric_limits<double>::infinity();

// ---------------------------------------------------------------------------
// Reference, in double, straight from the definitions: log p by log-sum-exp,
// KL(p‖q) = Σ p (log p − log q) over classes where p > 0, CE = −Σ t log p.

VecD log_softmax(const VecD& x) {
  double m = -kInf;
  for (double v : x) m = std::max(m, v);
  double s = 0;
  for (double v : x) s += std::exp(v - m);
  const double lse = m + std::log(s);
  VecD out(x.size());
  for (std::size_t j = 0; j < x.size(); ++j) out[j] = x[j] - lse;
  return out;
}

double kl(const VecD& log_p, const VecD& log_q) {
  double s = 0;
  for (std::size_t j = 0; j < log_p.size(); ++j) {
    const double p = std::exp(log_p[j]);
    if (p > 0) s += p * (log_p[j] - log_q[j]);
  }
  return s;
}

struct RefPair {
  double kl_pq = 0, kl_qp = 0, sym = 0, ce_a = 0, ce_b = 0;
  VecD ga, gb;  ///< gradient of w_pq·KL(p‖q) + w_qp·KL(q‖p) + w_a·CE(a) + w_b·CE(b)
};

/// CE(x, y) with target (1 − ε)·onehot(y) + ε/C; its gradient is p − t.
double cross_entropy(const VecD& log_p, Index y, double eps) {
  const double c = static_cast<double>(log_p.size());
  double s = 0;
  for (std::size_t j = 0; j < log_p.size(); ++j) {
    const double t = (static_cast<Index>(j) == y ? 1 - eps : 0) + eps / c;
    s -= t * log_p[j];
  }
  return s;
}

/// The gradients by the chain rule through the softmax Jacobian
/// ∂p_j/∂a_k = p_j (δ_jk − p_k), written independently of the closed forms
/// the kernels use.
RefPair reference(const VecD& a, const VecD& b, double w_pq, double w_qp, Index ya, Index yb,
                  double eps, double wa, double wb) {
  const std::size_t n = a.size();
  const VecD lp = log_softmax(a), lq = log_softmax(b);
  RefPair r;
  r.kl_pq = kl(lp, lq);
  r.kl_qp = kl(lq, lp);
  r.sym = 0.5 * (r.kl_pq + r.kl_qp);
  r.ce_a = ya >= 0 ? cross_entropy(lp, ya, eps) : 0;
  r.ce_b = yb >= 0 ? cross_entropy(lq, yb, eps) : 0;
  VecD p(n), q(n);
  for (std::size_t j = 0; j < n; ++j) {
    p[j] = std::exp(lp[j]);
    q[j] = std::exp(lq[j]);
  }
  // ∂L/∂p_j and ∂L/∂q_j of L = w_pq Σ p (lp − lq) + w_qp Σ q (lq − lp) − Σ t_a lp − Σ t_b lq,
  // treating lp = log p: ∂(p log p)/∂p = log p + 1, ∂(−t log p)/∂p = −t/p.
  VecD dp(n, 0.0), dq(n, 0.0);
  const double c = static_cast<double>(n);
  for (std::size_t j = 0; j < n; ++j) {
    if (p[j] > 0) dp[j] += w_pq * (lp[j] - lq[j] + 1) + w_qp * (-q[j] / p[j]);
    if (q[j] > 0) dq[j] += w_qp * (lq[j] - lp[j] + 1) + w_pq * (-p[j] / q[j]);
    const double ta = ya >= 0 ? (static_cast<Index>(j) == ya ? 1 - eps : 0) + eps / c : 0;
    const double tb = yb >= 0 ? (static_cast<Index>(j) == yb ? 1 - eps : 0) + eps / c : 0;
    if (p[j] > 0) dp[j] -= wa * ta / p[j];
    if (q[j] > 0) dq[j] -= wb * tb / q[j];
  }
  // Σ_j dp_j · p_j (δ_jk − p_k), an n x n Jacobian product.
  auto chain = [n](const VecD& dx, const VecD& x) {
    VecD g(n, 0.0);
    for (std::size_t k = 0; k < n; ++k) {
      double s = 0;
      for (std::size_t j = 0; j < n; ++j) s += dx[j] * x[j] * ((j == k ? 1.0 : 0.0) - x[k]);
      g[k] = s;
    }
    return g;
  };
  r.ga = chain(dp, p);
  r.gb = chain(dq, q);
  return r;
}

/// The same quantities in O(n) from DESIGN.md's closed forms, in double:
///   ga = w_pq·p⊙(d − KLpq) + w_qp·(p − q) + w_a·(p − t_a), and the mirror.
RefPair closed_form(const VecD& a, const VecD& b, double w_pq, double w_qp, Index ya, Index yb,
                    double eps, double wa, double wb) {
  const std::size_t n = a.size();
  const VecD lp = log_softmax(a), lq = log_softmax(b);
  RefPair r;
  r.kl_pq = kl(lp, lq);
  r.kl_qp = kl(lq, lp);
  r.sym = 0.5 * (r.kl_pq + r.kl_qp);
  r.ce_a = ya >= 0 ? cross_entropy(lp, ya, eps) : 0;
  r.ce_b = yb >= 0 ? cross_entropy(lq, yb, eps) : 0;
  r.ga.assign(n, 0.0);
  r.gb.assign(n, 0.0);
  const double c = static_cast<double>(n);
  for (std::size_t j = 0; j < n; ++j) {
    const double p = std::exp(lp[j]), q = std::exp(lq[j]), d = lp[j] - lq[j];
    const double ta = ya >= 0 ? (static_cast<Index>(j) == ya ? 1 - eps : 0) + eps / c : 0;
    const double tb = yb >= 0 ? (static_cast<Index>(j) == yb ? 1 - eps : 0) + eps / c : 0;
    r.ga[j] = w_pq * p * (d - r.kl_pq) + w_qp * (p - q) + (ya >= 0 ? wa * (p - ta) : 0);
    r.gb[j] = w_qp * q * (-d - r.kl_qp) + w_pq * (q - p) + (yb >= 0 ? wb * (q - tb) : 0);
  }
  return r;
}

// ---------------------------------------------------------------------------

template <typename S>
std::vector<S> random_row(Index n, double scale, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> z(0.0, scale);
  std::vector<S> x(static_cast<std::size_t>(n));
  for (S& v : x) v = static_cast<S>(z(rng));
  return x;
}

/// A second dropout copy: a plus a little noise.
template <typename S>
std::vector<S> nearby_row(const std::vector<S>& a, double noise, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> z(0.0, noise);
  std::vector<S> b(a);
  for (S& v : b) v = static_cast<S>(static_cast<double>(v) + z(rng));
  return b;
}

template <typename S>
VecD to_double(const std::vector<S>& x) {
  return VecD(x.begin(), x.end());
}

template <typename S>
double tolerance() {
  return std::is_same_v<S, float> ? 2e-5 : 1e-11;
}

/// max_j |x_j − y_j| / max(max_j |y_j|, tiny): a row-wise relative error.
template <typename S>
double relative_error(const S* x, const VecD& y) {
  double diff = 0, scale = 1e-300;
  for (std::size_t j = 0; j < y.size(); ++j) {
    diff = std::max(diff, std::abs(static_cast<double>(x[j]) - y[j]));
    scale = std::max(scale, std::abs(y[j]));
  }
  return diff / scale;
}

double relative_error(double x, double y) { return std::abs(x - y) / std::max(std::abs(y), 1e-300); }

const Index kLengths[] = {1, 2, 3, 7, 8, 15, 16, 17, 31, 33, 63, 100, 1000, 1025, 1031};

}  // namespace

TEMPLATE_TEST_CASE("symmetric_kl_pair matches the double reference", "[kernels]", float, double) {
  using S = TestType;
  for (Index n : kLengths) {
    CAPTURE(n);
    const auto a = random_row<S>(n, 2.0, static_cast<unsigned>(n));
    const auto b = random_row<S>(n, 2.0, static_cast<unsigned>(n) + 1000);
    std::vector<S> ga(static_cast<std::size_t>(n)), gb(ga.size());
    const S scale = S(0.25);
    const S value = rdrop::kernels::symmetric_kl_pair(a.data(), b.data(), n, ga.data(), gb.data(), scale);
    const RefPair r = reference(to_double(a), to_double(b), 0.5, 0.5, -1, -1, 0, 0, 0);
    CHECK(relative_error(static_cast<double>(value), r.sym) < tolerance<S>() + 1e-6 * (n == 1));
    VecD want_a(r.ga), want_b(r.gb);
    for (double& v : want_a) v *= 0.25;
    for (double& v : want_b) v *= 0.25;
    if (n > 1) {
      CHECK(relative_error(ga.data(), want_a) < tolerance<S>());
      CHECK(relative_error(gb.data(), want_b) < tolerance<S>());
    }
    // Values only: the same value, bit for bit.
    CHECK(rdrop::kernels::symmetric_kl_pair(a.data(), b.data(), n, nullptr, nullptr) == value);
  }
}

TEMPLATE_TEST_CASE("rdrop_pair matches the double reference in every term", "[kernels]", float,
                   double) {
  using S = TestType;
  const double eps = GENERATE(0.0, 0.1);
  const double w_pq = GENERATE(0.0, 0.75);
  const double w_qp = GENERATE(0.0, 0.5);
  for (Index n : {Index(3), Index(17), Index(250)}) {
    CAPTURE(n, eps, w_pq, w_qp);
    const auto a = random_row<S>(n, 1.5, 11);
    const auto b = nearby_row(a, 0.3, 12);
    rdrop::kernels::PairWeights<S> w;
    w.first = {n - 1, static_cast<S>(eps), S(0.3)};
    w.second = {0, static_cast<S>(eps), S(0.7)};
    w.kl_pq = static_cast<S>(w_pq);
    w.kl_qp = static_cast<S>(w_qp);
    std::vector<S> ga(static_cast<std::size_t>(n)), gb(ga.size());
    const auto v = rdrop::kernels::rdrop_pair(a.data(), b.data(), n, w, ga.data(), gb.data());
    const RefPair r = reference(to_double(a), to_double(b), w_pq, w_qp, n - 1, 0, eps, 0.3, 0.7);
    CHECK(relative_error(v.kl_pq, r.kl_pq) < tolerance<S>());
    CHECK(relative_error(v.kl_qp, r.kl_qp) < tolerance<S>());
    CHECK(relative_error(v.symmetric, r.sym) < tolerance<S>());
    CHECK(relative_error(v.ce_first, r.ce_a) < tolerance<S>());
    CHECK(relative_error(v.ce_second, r.ce_b) < tolerance<S>());
    CHECK(relative_error(ga.data(), r.ga) < tolerance<S>());
    CHECK(relative_error(gb.data(), r.gb) < tolerance<S>());
  }
}

TEST_CASE("rdrop_pair gradients match central differences in double", "[kernels]") {
  const Index n = 23;
  const double eps = 0.1, alpha = 1.7, wa = 0.6, wb = 0.4;
  const auto a = random_row<double>(n, 2.0, 5);
  const auto b = nearby_row(a, 0.5, 6);
  rdrop::kernels::PairWeights<double> w;
  w.first = {4, eps, wa};
  w.second = {9, eps, wb};
  w.kl_pq = w.kl_qp = alpha / 2;
  // The scalar whose gradient the sweep writes.
  auto loss = [&](const std::vector<double>& x, const std::vector<double>& y) {
    const auto v = rdrop::kernels::rdrop_pair<double>(x.data(), y.data(), n, w, nullptr, nullptr);
    return wa * v.ce_first + wb * v.ce_second + alpha * v.symmetric;
  };
  std::vector<double> ga(static_cast<std::size_t>(n)), gb(ga.size());
  rdrop::kernels::rdrop_pair(a.data(), b.data(), n, w, ga.data(), gb.data());
  const double h = 1e-6;
  for (std::size_t k = 0; k < static_cast<std::size_t>(n); ++k) {
    auto ap = a, am = a, bp = b, bm = b;
    ap[k] += h;
    am[k] -= h;
    bp[k] += h;
    bm[k] -= h;
    CHECK(ga[k] == Approx((loss(ap, b) - loss(am, b)) / (2 * h)).margin(1e-8));
    CHECK(gb[k] == Approx((loss(a, bp) - loss(a, bm)) / (2 * h)).margin(1e-8));
  }
}

TEMPLATE_TEST_CASE("symmetric_kl_pairs honours row strides and leaves padding alone", "[kernels]",
                   float, double) {
  using S = TestType;
  const Index pairs = 7, c = 37;
  const Index sa = 41, sb = 64, sga = 40, sgb = 50;  // all ≥ c, all different
  const S sentinel = S(-12345);
  std::vector<S> a(static_cast<std::size_t>(pairs * sa), sentinel), b(static_cast<std::size_t>(pairs * sb), sentinel);
  for (Index i = 0; i < pairs; ++i) {
    const auto ra = random_row<S>(c, 2.0, static_cast<unsigned>(100 + i));
    const auto rb = nearby_row(ra, 0.4, static_cast<unsigned>(200 + i));
    std::copy(ra.begin(), ra.end(), a.begin() + i * sa);
    std::copy(rb.begin(), rb.end(), b.begin() + i * sb);
  }
  std::vector<S> ga(static_cast<std::size_t>(pairs * sga), sentinel), gb(static_cast<std::size_t>(pairs * sgb), sentinel);
  std::vector<S> values(static_cast<std::size_t>(pairs));
  const S scale = S(1) / S(pairs);
  const S total = rdrop::kernels::symmetric_kl_pairs(pairs, c, a.data(), sa, b.data(), sb, ga.data(), sga,
                                                     gb.data(), sgb, scale, values.data(), 2);
  double want_total = 0;
  for (Index i = 0; i < pairs; ++i) {
    CAPTURE(i);
    const VecD ra(a.begin() + i * sa, a.begin() + i * sa + c), rb(b.begin() + i * sb, b.begin() + i * sb + c);
    const RefPair r = reference(ra, rb, 0.5, 0.5, -1, -1, 0, 0, 0);
    want_total += r.sym;
    CHECK(relative_error(static_cast<double>(values[static_cast<std::size_t>(i)]), r.sym) < tolerance<S>());
    VecD want_a(r.ga), want_b(r.gb);
    for (double& v : want_a) v /= static_cast<double>(pairs);
    for (double& v : want_b) v /= static_cast<double>(pairs);
    CHECK(relative_error(ga.data() + i * sga, want_a) < tolerance<S>());
    CHECK(relative_error(gb.data() + i * sgb, want_b) < tolerance<S>());
    for (Index j = c; j < sga; ++j) CHECK(ga[static_cast<std::size_t>(i * sga + j)] == sentinel);
    for (Index j = c; j < sgb; ++j) CHECK(gb[static_cast<std::size_t>(i * sgb + j)] == sentinel);
  }
  CHECK(relative_error(static_cast<double>(total), want_total) < tolerance<S>());
}

TEMPLATE_TEST_CASE("rdrop_pairs = per-pair rdrop_pair, with strides, labels and values", "[kernels]",
                   float, double) {
  using S = TestType;
  const Index pairs = 6, c = 29, stride = 32;
  // Interleaved rows [a0, b0, a1, b1, ...] in one padded buffer.
  std::vector<S> x(static_cast<std::size_t>(2 * pairs * stride), S(0));
  for (Index r = 0; r < 2 * pairs; ++r) {
    const auto row = random_row<S>(c, 2.0, static_cast<unsigned>(300 + r));
    std::copy(row.begin(), row.end(), x.begin() + r * stride);
  }
  const std::vector<Index> labels_a = {3, -1, 28, 0, 5, -7};
  const std::vector<Index> labels_b = {3, 4, -1, 0, 5, 2};
  rdrop::kernels::RDropPairsOptions<S> o;
  o.ce_weight = S(0.1);
  o.kl_weight = S(0.6);
  o.label_smoothing = S(0.05);
  std::vector<S> g(x.size(), S(7));
  std::vector<rdrop::kernels::PairValues<S>> values(static_cast<std::size_t>(pairs));
  const auto sums = rdrop::kernels::rdrop_pairs(pairs, c, x.data(), 2 * stride, x.data() + stride, 2 * stride,
                                                labels_a.data(), labels_b.data(), g.data(), 2 * stride,
                                                g.data() + stride, 2 * stride, o, values.data());
  double ce = 0, sym = 0;
  for (Index i = 0; i < pairs; ++i) {
    CAPTURE(i);
    const S* a = x.data() + 2 * i * stride;
    const S* b = a + stride;
    rdrop::kernels::PairWeights<S> w;
    w.first = {labels_a[static_cast<std::size_t>(i)], o.label_smoothing, o.ce_weight};
    w.second = {labels_b[static_cast<std::size_t>(i)], o.label_smoothing, o.ce_weight};
    w.kl_pq = w.kl_qp = o.kl_weight / 2;
    std::vector<S> ga(static_cast<std::size_t>(c)), gb(ga.size());
    const auto v = rdrop::kernels::rdrop_pair(a, b, c, w, ga.data(), gb.data());
    // The batch runs the same sweep: identical bits.
    CHECK(values[static_cast<std::size_t>(i)].symmetric == v.symmetric);
    CHECK(values[static_cast<std::size_t>(i)].ce_first == v.ce_first);
    CHECK(values[static_cast<std::size_t>(i)].ce_second == v.ce_second);
    CHECK(std::equal(ga.begin(), ga.end(), g.begin() + 2 * i * stride));
    CHECK(std::equal(gb.begin(), gb.end(), g.begin() + (2 * i + 1) * stride));
    ce += static_cast<double>(v.ce_first) + static_cast<double>(v.ce_second);
    sym += static_cast<double>(v.symmetric);
    // And the reference.
    const RefPair r = reference(VecD(a, a + c), VecD(b, b + c), o.kl_weight / 2.0, o.kl_weight / 2.0,
                                labels_a[static_cast<std::size_t>(i)], labels_b[static_cast<std::size_t>(i)],
                                static_cast<double>(o.label_smoothing), 0.1, 0.1);
    CHECK(relative_error(ga.data(), r.ga) < tolerance<S>());
    CHECK(relative_error(gb.data(), r.gb) < tolerance<S>());
    for (Index j = c; j < stride; ++j) CHECK(g[static_cast<std::size_t>(2 * i * stride + j)] == S(7));
  }
  CHECK(relative_error(static_cast<double>(sums.cross_entropy), ce) < tolerance<S>());
  CHECK(relative_error(static_cast<double>(sums.symmetric_kl), sym) < tolerance<S>());
  CHECK(sums.loss == o.ce_weight * sums.cross_entropy + o.kl_weight * sums.symmetric_kl);
  // Null labels: the KL term alone.
  const auto kl_only = rdrop::kernels::rdrop_pairs<S>(pairs, c, x.data(), 2 * stride, x.data() + stride,
                                                      2 * stride, nullptr, nullptr, nullptr, 0, nullptr, 0, o);
  CHECK(kl_only.cross_entropy == S(0));
  CHECK(kl_only.symmetric_kl == sums.symmetric_kl);
}

TEMPLATE_TEST_CASE("Logits at -inf: both copies masked contribute 0, one copy makes KL +inf", "[kernels]",
                   float, double) {
  using S = TestType;
  const S inf = std::numeric_limits<S>::infinity();
  const Index n = 40;
  auto a = random_row<S>(n, 1.0, 1);
  auto b = nearby_row(a, 0.2, 2);
  for (Index j : {Index(3), Index(17), Index(33), Index(39)}) {
    a[static_cast<std::size_t>(j)] = -inf;
    b[static_cast<std::size_t>(j)] = -inf;
  }
  // The reference on the row without the masked classes.
  VecD ra, rb;
  for (Index j = 0; j < n; ++j) {
    if (std::isinf(a[static_cast<std::size_t>(j)])) continue;
    ra.push_back(static_cast<double>(a[static_cast<std::size_t>(j)]));
    rb.push_back(static_cast<double>(b[static_cast<std::size_t>(j)]));
  }
  rdrop::kernels::PairWeights<S> w;
  w.first = {0, S(0), S(1)};
  w.second = {0, S(0), S(1)};
  w.kl_pq = w.kl_qp = S(0.5);
  std::vector<S> ga(static_cast<std::size_t>(n)), gb(ga.size());
  const auto v = rdrop::kernels::rdrop_pair(a.data(), b.data(), n, w, ga.data(), gb.data());
  const RefPair r = reference(ra, rb, 0.5, 0.5, 0, 0, 0, 1, 1);
  CHECK(relative_error(v.symmetric, r.sym) < tolerance<S>());
  CHECK(relative_error(v.ce_first, r.ce_a) < tolerance<S>());
  std::size_t k = 0;
  for (Index j = 0; j < n; ++j) {
    const auto u = static_cast<std::size_t>(j);
    if (std::isinf(a[u])) {
      CHECK(ga[u] == S(0));
      CHECK(gb[u] == S(0));
    } else {
      CHECK(std::abs(static_cast<double>(ga[u]) - r.ga[k]) < 10 * tolerance<S>());
      CHECK(std::abs(static_cast<double>(gb[u]) - r.gb[k]) < 10 * tolerance<S>());
      ++k;
    }
  }
  // −inf in b only: KL(p‖q) = +inf (its true value); KL(q‖p) stays finite,
  // and with KL(p‖q)'s weight at 0 the gradient stays finite.
  b[5] = -inf;
  const auto one_sided = rdrop::kernels::rdrop_pair<S>(a.data(), b.data(), n, w, nullptr, nullptr);
  CHECK(one_sided.kl_pq == inf);
  CHECK(one_sided.symmetric == inf);
  CHECK(std::isfinite(one_sided.kl_qp));
  w.kl_pq = S(0);
  rdrop::kernels::rdrop_pair(a.data(), b.data(), n, w, ga.data(), gb.data());
  for (std::size_t j = 0; j < ga.size(); ++j) {
    CHECK(std::isfinite(ga[j]));
    CHECK(std::isfinite(gb[j]));
  }
}

TEMPLATE_TEST_CASE("Rows whose maximum lies far above their first elements", "[kernels]", float, double) {
  // The sweep shifts its exps by the max of a row's first packet and redoes
  // them with the true max when that is too far above (the sum could
  // overflow): both paths must give the reference.
  using S = TestType;
  const double far = std::is_same_v<S, float> ? 150.0 : 1500.0;
  for (double spread : {0.0, 30.0, far}) {
    CAPTURE(spread);
    const Index n = 70;
    auto a = random_row<S>(n, 1.0, 21);
    auto b = nearby_row(a, 0.3, 22);
    for (Index j = 0; j < 20; ++j) {
      a[static_cast<std::size_t>(j)] -= static_cast<S>(spread);
      b[static_cast<std::size_t>(j)] -= static_cast<S>(spread);
    }
    rdrop::kernels::PairWeights<S> w;
    w.first = {60, S(0.1), S(1)};
    w.second = {5, S(0.1), S(1)};
    w.kl_pq = w.kl_qp = S(0.5);
    std::vector<S> ga(static_cast<std::size_t>(n)), gb(ga.size());
    const auto v = rdrop::kernels::rdrop_pair(a.data(), b.data(), n, w, ga.data(), gb.data());
    const RefPair r = closed_form(to_double(a), to_double(b), 0.5, 0.5, 60, 5, 0.1, 1, 1);
    CHECK(relative_error(v.symmetric, r.sym) < tolerance<S>());
    CHECK(relative_error(v.ce_first, r.ce_a) < tolerance<S>());
    CHECK(relative_error(v.ce_second, r.ce_b) < tolerance<S>());
    CHECK(relative_error(ga.data(), r.ga) < tolerance<S>());
    CHECK(relative_error(gb.data(), r.gb) < tolerance<S>());
  }
}

TEST_CASE("Float fused results stay within 1e-5 relative of a double reference", "[kernels][accuracy]") {
  // Independent rows (divergences of order 1) and nearby rows (R-Drop's
  // two dropout copies, small divergences), up to 32000 classes.
  const double noise = GENERATE(0.0, 0.3);
  for (Index n : {Index(10), Index(1000), Index(4097), Index(32000)}) {
    CAPTURE(n, noise);
    const auto a = random_row<float>(n, 3.0, static_cast<unsigned>(n) + 1);
    const auto b = noise > 0 ? nearby_row(a, noise, 7) : random_row<float>(n, 3.0, static_cast<unsigned>(n) + 2);
    rdrop::kernels::PairWeights<float> wf;
    wf.first = {n / 3, 0.1f, 0.5f};
    wf.second = {n / 3, 0.1f, 0.5f};
    wf.kl_pq = wf.kl_qp = 0.5f;
    std::vector<float> gaf(static_cast<std::size_t>(n)), gbf(gaf.size());
    const auto vf = rdrop::kernels::rdrop_pair(a.data(), b.data(), n, wf, gaf.data(), gbf.data());
    // The reference: the closed forms in double on the same (float) inputs,
    // themselves checked against the chain-rule reference where that is cheap.
    const VecD ad = to_double(a), bd = to_double(b);
    const RefPair vd = closed_form(ad, bd, 0.5, 0.5, n / 3, n / 3, 0.1, 0.5, 0.5);
    if (n <= 1000) {
      const RefPair r = reference(ad, bd, 0.5, 0.5, n / 3, n / 3, 0.1, 0.5, 0.5);
      REQUIRE(relative_error(vd.sym, r.sym) < 1e-12);
      REQUIRE(relative_error(vd.ga.data(), r.ga) < 1e-11);
      REQUIRE(relative_error(vd.gb.data(), r.gb) < 1e-11);
    }
    CHECK(relative_error(static_cast<double>(vf.symmetric), vd.sym) < 1e-5);
    // Each KL direction alone carries an absolute error of a few ε (from
    // the rounding of p and q), so for nearby copies it is checked absolutely.
    if (noise == 0) {
      CHECK(relative_error(static_cast<double>(vf.kl_pq), vd.kl_pq) < 1e-5);
      CHECK(relative_error(static_cast<double>(vf.kl_qp), vd.kl_qp) < 1e-5);
    } else {
      CHECK(std::abs(static_cast<double>(vf.kl_pq) - vd.kl_pq) < 1e-6);
      CHECK(std::abs(static_cast<double>(vf.kl_qp) - vd.kl_qp) < 1e-6);
    }
    CHECK(relative_error(static_cast<double>(vf.ce_first), vd.ce_a) < 1e-5);
    CHECK(relative_error(static_cast<double>(vf.ce_second), vd.ce_b) < 1e-5);
    CHECK(relative_error(gaf.data(), vd.ga) < 1e-5);
    CHECK(relative_error(gbf.data(), vd.gb) < 1e-5);
    // The KL-only gradient, where no cross-entropy term dominates.
    wf.first.label = wf.second.label = -1;
    rdrop::kernels::rdrop_pair(a.data(), b.data(), n, wf, gaf.data(), gbf.data());
    const RefPair kd = closed_form(ad, bd, 0.5, 0.5, -1, -1, 0, 0, 0);
    CHECK(relative_error(gaf.data(), kd.ga) < 1e-5);
    CHECK(relative_error(gbf.data(), kd.gb) < 1e-5);
  }
}

TEMPLATE_TEST_CASE("Swapping the copies swaps the KL directions bit for bit; equal rows give 0",
                   "[kernels]", float, double) {
  using S = TestType;
  for (Index n : {Index(5), Index(16), Index(1000), Index(1031)}) {
    CAPTURE(n);
    const auto a = random_row<S>(n, 3.0, 31);
    const auto b = nearby_row(a, 0.2, 32);
    const S ab = rdrop::kernels::symmetric_kl_pair<S>(a.data(), b.data(), n, nullptr, nullptr);
    const S ba = rdrop::kernels::symmetric_kl_pair<S>(b.data(), a.data(), n, nullptr, nullptr);
    CHECK(ab == ba);
    rdrop::kernels::PairWeights<S> w;
    w.kl_pq = S(1);
    const auto v = rdrop::kernels::rdrop_pair<S>(a.data(), a.data(), n, w, nullptr, nullptr);
    CHECK(v.kl_pq == S(0));
    CHECK(v.kl_qp == S(0));
    CHECK(v.symmetric == S(0));
  }
}

TEMPLATE_TEST_CASE("The functors run the kernels: same bits", "[kernels]", float, double) {
  using S = TestType;
  using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Index pairs = 5, c = 21;
  Matrix a(pairs, c), b(pairs, c);
  for (Index i = 0; i < pairs; ++i) {
    const auto ra = random_row<S>(c, 2.0, static_cast<unsigned>(i + 40));
    const auto rb = nearby_row(ra, 0.3, static_cast<unsigned>(i + 50));
    for (Index j = 0; j < c; ++j) {
      a(i, j) = ra[static_cast<std::size_t>(j)];
      b(i, j) = rb[static_cast<std::size_t>(j)];
    }
  }
  Matrix fa, fb;
  const S functor = rdrop::SymmetricKL<S>(rdrop::Reduction::Sum).EvaluateWithGradient(a, b, fa, fb);
  Matrix ka(pairs, c), kb(pairs, c);
  const S kernel = rdrop::kernels::symmetric_kl_pairs(pairs, c, a.data(), c, b.data(), c, ka.data(), c,
                                                      kb.data(), c);
  CHECK(functor == kernel);
  CHECK(fa == ka);
  CHECK(fb == kb);
}
