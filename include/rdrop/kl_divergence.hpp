/// \file
/// KL(p‖q) between the softmax distributions of two logit rows.
#pragma once

#include "rdrop/divergence.hpp"

namespace rdrop {

/// KL(p‖q) = Σ_j p_j (log p_j − log q_j) with p = softmax(a), q = softmax(b),
/// computed from the logits. Gradients for both sides:
///   ∂/∂a = p ⊙ (log p − log q − KL(p‖q)),   ∂/∂b = q − p.
/// PyTorch spells it F.kl_div(log_softmax(b), softmax(a)). Classes at −inf
/// in both rows contribute 0; a class at −inf in b only makes it +inf.
template <typename Scalar>
class KLDivergence : public PairedDivergence<KLDivergence<Scalar>, Scalar> {
 public:
  using PairedDivergence<KLDivergence<Scalar>, Scalar>::PairedDivergence;

  /// KL(softmax(a) ‖ softmax(b)).
  Scalar EvaluatePair(ConstRowMap<Scalar> a, ConstRowMap<Scalar> b) const {
    return pair(a, b, nullptr, nullptr);
  }

  /// KL(softmax(a) ‖ softmax(b)), its gradients overwriting grad_a, grad_b.
  Scalar EvaluatePairWithGradient(ConstRowMap<Scalar> a, ConstRowMap<Scalar> b,
                                  RowMap<Scalar>& grad_a, RowMap<Scalar>& grad_b) const {
    detail::check_pair_lengths("KLDivergence::EvaluatePairWithGradient", a, b, grad_a.size(), grad_b.size());
    return pair(a, b, grad_a.data(), grad_b.data());
  }

 private:
  Scalar pair(const ConstRowMap<Scalar>& a, const ConstRowMap<Scalar>& b, Scalar* ga,
              Scalar* gb) const {
    detail::check_pair_lengths("KLDivergence::EvaluatePair", a, b);
    if (a.size() == 0) return Scalar(0);
    const detail::CrossEntropyTarget<Scalar> none{};
    return detail::divergence_pair(*this, a.data(), b.data(), a.size(), Scalar(1), none, none, ga, gb)
        .divergence;
  }
};

namespace detail {
template <typename Scalar>
struct softmax_kl_weights<KLDivergence<Scalar>> {
  static constexpr bool fused = true;
  static constexpr double pq = 1.0;
  static constexpr double qp = 0.0;
  static Scalar value(const SoftmaxPairValues<Scalar>& v) { return v.kl_pq; }
};
}  // namespace detail

}  // namespace rdrop
