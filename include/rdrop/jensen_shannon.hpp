// The Jensen–Shannon divergence between two softmax outputs.
#pragma once

#include "rdrop/divergence.hpp"

#include <Eigen/Core>

#include <cmath>
#include <limits>
#include <type_traits>

namespace rdrop {

/// JS(p, q) = ½ KL(p‖m) + ½ KL(q‖m), m = ½(p + q), p = softmax(a),
/// q = softmax(b): symmetric, bounded by log 2, an alternative D for R-Drop.
/// Computed from logits, log m = logaddexp(log p, log q) − log 2. Gradients
/// (the m terms cancel): with g = ½(log p − log m), ∂JS/∂a = p ⊙ (g − Σ p g);
/// likewise for b with h = ½(log q − log m). g and h depend only on
/// Δ = log p − log q, formed from the logits' differences so that it keeps
/// the relative precision of small Δ (near-equal copies): float gradients are
/// within a few 1e-6 of their largest entry (docs/jensen_shannon.md). Classes
/// at −inf in both rows contribute 0 (gradient exactly 0). Not fused: it
/// needs a log per element, unlike the KL.
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
    grad_a = t.p * (t.g - Parts::weighted_sum(t.p, t.g));
    grad_b = t.q * (t.h - Parts::weighted_sum(t.q, t.h));
    return t.value();
  }

 private:
  using Array = Eigen::Array<Scalar, 1, Eigen::Dynamic>;
  /// Sums over the classes: double for float rows, else Scalar.
  using Accumulator = std::conditional_t<(sizeof(Scalar) < sizeof(double)), double, Scalar>;

  struct Parts {
    Parts(const ConstRowMap<Scalar>& a, const ConstRowMap<Scalar>& b) {
      // log softmax(x) as (x − max) − log Σ exp(x − max): the shift is taken
      // from each logit before anything else, so adding a constant to every
      // logit (1e4, say) changes nothing beyond the rounding of x − max.
      // (x − (max + log Σ) would round max + log Σ at the logits' scale.)
      const Scalar max_a = a.maxCoeff(), max_b = b.maxCoeff();
      const Array shifted_a = a - max_a, shifted_b = b - max_b;
      const Scalar log_sum_a = std::log(shifted_a.exp().sum()), log_sum_b = std::log(shifted_b.exp().sum());
      log_p = shifted_a - log_sum_a;
      log_q = shifted_b - log_sum_b;
      // exp(−inf) is not exactly 0 in Eigen's vectorized float exp (it
      // clamps its argument at −88.7): a class at −inf gets p = 0 here, so
      // that its gradient is exactly 0.
      const Scalar inf = std::numeric_limits<Scalar>::infinity();
      p = (log_p == -inf).select(Array::Zero(a.size()), log_p.exp());
      q = (log_q == -inf).select(Array::Zero(b.size()), log_q.exp());
      // Everything below depends on Δ = log p − log q only. For near-equal
      // rows (R-Drop's copies) Δ is small, and log p − log q would carry the
      // rounding of each log softmax, of order ε·|log p| per class: far above
      // ε·|Δ|. Instead Δ_j = (a_j − b_j − (max_a − max_b)) − (log Σ_a − log Σ_b):
      // a_j − b_j is exact (or rounded at the scale of the small
      // difference) for near-equal logits, and the rounding of the constant
      // part is the same for every class, which the gradient's centring
      // (g − Σ p g) cancels to first order. Where the rows are far apart in
      // their own offsets (b = a − 1e4, say), a_j − b_j would round at that
      // offset's scale: there the shifted logits' difference, whose error
      // bound (ε·(|a_j − max_a| + |b_j − max_b|)) is then the smaller, is
      // taken. Classes at −inf give NaN or ±inf here, handled by own_term.
      const Array raw = a - b;
      const Array from_raw = raw - (max_a - max_b), from_shifted = shifted_a - shifted_b;
      const Array delta = (raw.abs() <= shifted_a.abs() + shifted_b.abs()).select(from_raw, from_shifted) -
                          (log_sum_a - log_sum_b);
      // With hi = max(log p, log q), log m is hi + log1p(exp(−|Δ|)) − log 2,
      // so log p − log m = min(0, Δ) + c and log q − log m = min(0, −Δ) + c
      // with c = log 2 − log1p(exp(−|Δ|)) = log1p(tanh(|Δ|/2)): in
      // [0, log 2], exactly 0 for Δ = 0, and accurate to the relative
      // precision of Δ. Equal rows give Δ = 0 exactly, hence exactly 0.
      abs_delta = delta.abs();
      tanh_half = (Scalar(0.5) * abs_delta).tanh();
      const Array c = tanh_half.log1p();
      g = own_term(log_p, delta.min(Scalar(0)), c);
      h = own_term(log_q, (-delta).min(Scalar(0)), c);
      both_empty = log_p.isInf() && log_q.isInf();
    }
    /// ½(log x − log m) where x > 0, 0 where x = 0 (0 · log 0 = 0).
    static Array own_term(const Array& log_x, const Array& below, const Array& c) {
      return (log_x.isInf()).select(Array::Zero(log_x.size()), Scalar(0.5) * (below + c));
    }
    /// Σ_j w_j x_j accumulated in double (float rows: a float sum over
    /// thousands of classes drifts by ~1e-5 of Σ|w x|, the gradient's own size).
    static Scalar weighted_sum(const Array& w, const Array& x) {
      return static_cast<Scalar>((w.template cast<Accumulator>() * x.template cast<Accumulator>()).sum());
    }
    /// Σ_j ½[p_j log(p_j/m_j) + q_j log(q_j/m_j)]. Not as Σ p g + q h: for
    /// near-equal rows those two terms are ±p|Δ|/4 and their sum p Δ²/8, so
    /// the value would keep only ε/|Δ| of relative precision. With
    /// t = tanh(|Δ|/2) = |p − q|/(p + q), a class's term is ¼(p + q)·φ with
    /// φ = (1 + t) log(1 + t) + (1 − t) log(1 − t), written without the
    /// cancellation: φ = t|Δ| + log1p(−t²) for |Δ| < 1 (terms of size Δ²/2
    /// and −Δ²/4), and φ = 2 log 2 − 2 log1p(e) − 2|Δ| e/(1 + e), e = exp(−|Δ|),
    /// above (where 1 − t² would round away); 2 log 2 where one of p, q is 0.
    /// φ ≥ 0, so the terms are clamped at 0 against rounding and the sum is
    /// never negative; classes at −inf in both rows contribute 0. (select,
    /// not max: a NaN term must stay NaN.)
    Scalar value() const {
      const Scalar two_log2 = Scalar(2) * std::log(Scalar(2));
      const Array small = tanh_half * abs_delta + (-tanh_half.square()).log1p();
      const Array e = (-abs_delta).exp();
      const Array large = two_log2 - Scalar(2) * e.log1p() - Scalar(2) * abs_delta * e / (Scalar(1) + e);
      const Array phi = abs_delta.isInf().select(Array::Constant(p.size(), two_log2),
                                                 (abs_delta < Scalar(1)).select(small, large));
      const Array terms = both_empty.select(Array::Zero(p.size()), Scalar(0.25) * (p + q) * phi);
      return static_cast<Scalar>(
          (terms < Scalar(0)).select(Array::Zero(terms.size()), terms).template cast<Accumulator>().sum());
    }

    Array log_p, log_q, p, q, g, h;
    Array abs_delta, tanh_half;  // |Δ| and tanh(|Δ|/2), for the value
    Eigen::Array<bool, 1, Eigen::Dynamic> both_empty;  // classes at −inf in both rows
  };
};

}  // namespace rdrop
