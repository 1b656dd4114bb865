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

  /// JS(softmax(a), softmax(b)). Throws std::invalid_argument when the rows
  /// differ in length.
  Scalar EvaluatePair(ConstRowMap<Scalar> a, ConstRowMap<Scalar> b) const {
    detail::check_pair_lengths("JensenShannon::EvaluatePair", a, b);
    if (a.size() == 0) return Scalar(0);  // no classes: nothing to diverge (and no max to shift by)
    const Parts t(a, b);
    return t.value();
  }

  /// The same, its gradients overwriting grad_a and grad_b (all four rows
  /// of one length).
  Scalar EvaluatePairWithGradient(ConstRowMap<Scalar> a, ConstRowMap<Scalar> b, RowMap<Scalar>& grad_a,
                                  RowMap<Scalar>& grad_b) const {
    detail::check_pair_lengths("JensenShannon::EvaluatePairWithGradient", a, b, grad_a.size(), grad_b.size());
    if (a.size() == 0) return Scalar(0);
    const Parts t(a, b);
    grad_a = t.p * (t.g - (t.p * t.g).sum());
    grad_b = t.q * (t.h - (t.q * t.h).sum());
    return t.value();
  }

 private:
  using Array = Eigen::Array<Scalar, 1, Eigen::Dynamic>;

  /// log softmax(x) as (x − max) − log Σ exp(x − max): the shift is taken
  /// from each logit before anything else, so adding a constant to every
  /// logit (1e4, say) changes nothing beyond the rounding of x − max.
  /// (x − (max + log Σ) would round max + log Σ at the logits' scale.)
  static Array log_softmax(const ConstRowMap<Scalar>& x) {
    const Scalar m = x.maxCoeff();
    const Array shifted = x - m;
    return shifted - std::log(shifted.exp().sum());
  }

  struct Parts {
    Parts(const ConstRowMap<Scalar>& a, const ConstRowMap<Scalar>& b)
        : log_p(log_softmax(a)), log_q(log_softmax(b)), p(log_p.exp()), q(log_q.exp()) {
      // With hi = max(log p, log q) and Δ = log p − log q, log m is
      // hi + log1p(exp(−|Δ|)) − log 2, so log x − log m = (log x − hi) + c
      // with c = log 2 − log1p(exp(−|Δ|)) = log1p(tanh(|Δ|/2)): in
      // [0, log 2], exactly 0 for Δ = 0, and no large hi is added and taken
      // away again. Equal rows give exactly 0.
      const Array hi = log_p.max(log_q);
      const Array c = (Scalar(0.5) * (log_p - log_q).abs()).tanh().log1p();
      g = own_term(log_p, hi, c);
      h = own_term(log_q, hi, c);
    }
    /// ½(log x − log m) where x > 0, 0 where x = 0 (0 · log 0 = 0).
    static Array own_term(const Array& log_x, const Array& hi, const Array& c) {
      return (log_x.isInf()).select(Array::Zero(log_x.size()), Scalar(0.5) * ((log_x - hi) + c));
    }
    /// Σ_j ½[p_j log(p_j/m_j) + q_j log(q_j/m_j)]: every class's term is
    /// ≥ 0 (it is (p_j + q_j)·(log 2 − H(p_j/(p_j + q_j)))), so the terms are
    /// clamped at 0 against rounding and the sum is never negative. (select,
    /// not max: a NaN term must stay NaN.)
    Scalar value() const {
      const Array terms = p * g + q * h;
      return (terms < Scalar(0)).select(Array::Zero(terms.size()), terms).sum();
    }

    Array log_p, log_q, p, q, g, h;
  };
};

}  // namespace rdrop
