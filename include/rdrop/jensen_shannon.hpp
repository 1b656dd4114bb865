/// \file
/// The Jensen–Shannon divergence between two softmax outputs.
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
/// the relative precision of small Δ (near-equal copies): float gradients
/// were measured within 2.1e-6 of their largest entry (docs/jensen_shannon.md,
/// "Precision"). Classes at −inf in both rows contribute 0 (gradient exactly
/// 0). Not fused: it needs a log per element, unlike the KL.
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
    Parts::centred(t.p, t.g, grad_a);
    Parts::centred(t.q, t.h, grad_b);
    return t.value();
  }

 private:
  using Array = Eigen::Array<Scalar, 1, Eigen::Dynamic>;
  /// Sums over the classes: double for float rows, else Scalar.
  using Accumulator = std::conditional_t<(sizeof(Scalar) < sizeof(double)), double, Scalar>;

  struct Parts {
    Parts(const ConstRowMap<Scalar>& a, const ConstRowMap<Scalar>& b) {
      // log softmax(x) = (x − max) − log Σ exp(x − max): the shift is taken
      // from each logit before anything else, so adding a constant to every
      // logit (1e4, say) changes nothing beyond the rounding of x − max.
      // p = exp(x − max) / Σ, the sum accumulated in double (a float sum
      // over 32000 classes is off by ~3e-6, and so would be every p).
      const Scalar max_a = a.maxCoeff(), max_b = b.maxCoeff();
      shifted_a = a - max_a;
      shifted_b = b - max_b;
      p = shifted_a.exp();
      q = shifted_b.exp();
      const Accumulator sum_a = p.template cast<Accumulator>().sum(), sum_b = q.template cast<Accumulator>().sum();
      // log Σ_a − log Σ_b, the constant part of Δ below, rounded once.
      const Scalar level = static_cast<Scalar>(std::log(sum_a) - std::log(sum_b));
      p /= static_cast<Scalar>(sum_a);
      q /= static_cast<Scalar>(sum_b);
      // exp(−inf) is not exactly 0 in Eigen's vectorized float exp (it
      // clamps its argument at −88.7): a class at −inf gets p = 0 here, so
      // that its gradient is exactly 0. (Not around the exp: Eigen 3.4's
      // select is not vectorized, and would take the exp with it.)
      const Scalar inf = std::numeric_limits<Scalar>::infinity();
      p = (shifted_a == -inf).select(Array::Zero(a.size()), p);
      q = (shifted_b == -inf).select(Array::Zero(b.size()), q);
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
      delta = ((a - b).abs() <= shifted_a.abs() + shifted_b.abs())
                  .select((a - b) - (max_a - max_b), shifted_a - shifted_b) -
              level;
      // With hi = max(log p, log q), log m is hi + log1p(exp(−|Δ|)) − log 2,
      // so log p − log m = min(0, Δ) + c and log q − log m = min(0, −Δ) + c
      // with c = log 2 − log1p(exp(−|Δ|)) = log1p(tanh(|Δ|/2)): in
      // [0, log 2], exactly 0 for Δ = 0, and accurate to the relative
      // precision of Δ. Equal rows give Δ = 0 exactly, hence exactly 0.
      tanh_half = (Scalar(0.5) * delta.abs()).tanh();
      c = tanh_half.log1p();
      g = own_term(shifted_a, delta.min(Scalar(0)), c);
      h = own_term(shifted_b, (-delta).min(Scalar(0)), c);
    }
    /// ½(log x − log m) where x > 0, 0 where x = 0 (0 · log 0 = 0), from the
    /// row's shifted logits (−inf where x = 0).
    template <typename Below>
    static Array own_term(const Array& shifted, const Below& below, const Array& c) {
      return (shifted.isInf()).select(Array::Zero(shifted.size()), Scalar(0.5) * (below + c));
    }
    /// w ⊙ (x − Σ w x) for the probabilities w of a row and its terms x, in
    /// two passes: y = x − Σ w x, then w ⊙ (y − Σ w y). In exact arithmetic
    /// Σ w y = 0; here it takes back the error of the first sum from w's
    /// rounding, Σ w_j δ_j x_j, leaving Σ w_j δ_j (x_j − x̄): in a peaked row
    /// the first is ε·|x_top| against entries of size (1 − w_top). Sums in
    /// double (float rows: a float sum over thousands of classes drifts by
    /// ~1e-5 of Σ|w x|, the gradient's own size).
    static void centred(const Array& w, const Array& x, RowMap<Scalar>& out) {
      out = x - weighted_sum(w, x);
      out = w * (out - weighted_sum(w, out));
    }
    template <typename X>
    static Scalar weighted_sum(const Array& w, const Eigen::ArrayBase<X>& x) {
      return static_cast<Scalar>((w.template cast<Accumulator>() * x.template cast<Accumulator>()).sum());
    }
    /// Σ_j ½[p_j log(p_j/m_j) + q_j log(q_j/m_j)]. Not as Σ p g + q h: for
    /// near-equal rows those two terms are ±p|Δ|/4 and their sum p Δ²/8, so
    /// the value would keep only ε/|Δ| of relative precision. With
    /// t = tanh(|Δ|/2) = |p − q|/(p + q), a class's term is ¼(p + q)·φ with
    /// φ = (1 + t) log(1 + t) + (1 − t) log(1 − t), written without the
    /// cancellation: φ = t|Δ| + log1p(−t²) for |Δ| < 1 (terms of size Δ²/2
    /// and −Δ²/4), and above, where 1 − t² would round away,
    /// φ = 2 log 2 − 2 log1p(e) − 2|Δ| e/(1 + e) with e = exp(−|Δ|), that is
    /// 2c − |Δ|(1 − t) (c as in the constructor; the error of 1 − t, ~ε, is
    /// ≤ 17ε against φ ≥ 0.22); 2 log 2 where one of p, q is 0.
    /// φ ≥ 0, so the terms are clamped at 0 against rounding and the sum is
    /// never negative; classes at −inf in both rows contribute 0. (select,
    /// not max: a NaN term must stay NaN.)
    Scalar value() const {
      const Scalar two_log2 = Scalar(2) * std::log(Scalar(2));
      const auto abs_delta = delta.abs();
      const Array small = tanh_half * abs_delta + (-tanh_half.square()).log1p();
      const auto large = Scalar(2) * c - abs_delta * (Scalar(1) - tanh_half);
      const auto phi = abs_delta.isInf().select(Array::Constant(p.size(), two_log2),
                                                (abs_delta < Scalar(1)).select(small, large));
      const Array terms =
          (shifted_a.isInf() && shifted_b.isInf()).select(Array::Zero(p.size()), Scalar(0.25) * (p + q) * phi);
      return static_cast<Scalar>(
          (terms < Scalar(0)).select(Array::Zero(terms.size()), terms).template cast<Accumulator>().sum());
    }

    Array shifted_a, shifted_b, p, q, g, h;  // x − max(x) for a and b, softmaxes, terms
    Array delta, tanh_half, c;  // Δ, tanh(|Δ|/2) and log1p of it
  };
};

}  // namespace rdrop
