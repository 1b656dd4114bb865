// The Jensen–Shannon divergence between two softmax outputs.
#pragma once

#include "rdrop/divergence.hpp"

#include <Eigen/Core>

#include <cmath>

namespace rdrop {

/// JS(p, q) = ½ KL(p‖m) + ½ KL(q‖m), m = ½(p + q), p = softmax(a),
/// q = softmax(b): symmetric, bounded by log 2, an alternative D for R-Drop.
/// Computed from logits, log m = logaddexp(log p, log q) − log 2. Gradients
/// (the m terms cancel): with g = ½(log p − log m), ∂JS/∂a = p ⊙ (g − Σ p g);
/// likewise for b with h = ½(log q − log m). Classes at −inf in both rows
/// contribute 0. Not fused: it needs a log per element, unlike the KL.
template <typename Scalar>
class JensenShannon : public PairedDivergence<JensenShannon<Scalar>, Scalar> {
 public:
  using PairedDivergence<JensenShannon<Scalar>, Scalar>::PairedDivergence;

  Scalar EvaluatePair(ConstRowMap<Scalar> a, ConstRowMap<Scalar> b) const {
    const Parts t(a, b);
    return t.value();
  }

  Scalar EvaluatePairWithGradient(ConstRowMap<Scalar> a, ConstRowMap<Scalar> b, RowMap<Scalar>& grad_a,
                                  RowMap<Scalar>& grad_b) const {
    const Parts t(a, b);
    const Array g = t.own_term(t.log_p), h = t.own_term(t.log_q);
    grad_a = t.p * (g - (t.p * g).sum());
    grad_b = t.q * (h - (t.q * h).sum());
    return t.value();
  }

 private:
  using Array = Eigen::Array<Scalar, 1, Eigen::Dynamic>;

  static Scalar log_sum_exp(const ConstRowMap<Scalar>& x) {
    const Scalar m = x.maxCoeff();
    return m + std::log((x - m).exp().sum());
  }

  struct Parts {
    Parts(const ConstRowMap<Scalar>& a, const ConstRowMap<Scalar>& b)
        : log_p(a - log_sum_exp(a)), log_q(b - log_sum_exp(b)), p(log_p.exp()), q(log_q.exp()) {
      const Array hi = log_p.max(log_q);
      // logaddexp − log 2; where both are −inf, m = 0 too.
      log_m = (hi.isInf()).select(hi, hi + (-(log_p - log_q).abs()).exp().log1p() - Scalar(std::log(2.0)));
    }
    /// ½(log x − log m) where x > 0, 0 where x = 0 (0 · log 0 = 0).
    Array own_term(const Array& log_x) const {
      return (log_x.isInf()).select(Array::Zero(log_x.size()), Scalar(0.5) * (log_x - log_m));
    }
    Scalar value() const { return (p * own_term(log_p)).sum() + (q * own_term(log_q)).sum(); }

    Array log_p, log_q, p, q, log_m;
  };
};

}  // namespace rdrop
