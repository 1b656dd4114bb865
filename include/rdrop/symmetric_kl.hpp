/// \file
/// The symmetric KL ½[KL(p‖q) + KL(q‖p)]: R-Drop's divergence.
#pragma once

#include "rdrop/divergence.hpp"

namespace rdrop {

/// S = ½[KL(p‖q) + KL(q‖p)] = ½ Σ_j (p_j − q_j)(log p_j − log q_j) with
/// p = softmax(a), q = softmax(b): a sum of non-negative terms, computed
/// from logits. With d = log p − log q, the gradients are
///   ∂S/∂a = ½[p ⊙ (d − KL(p‖q)) + p − q],   ∂S/∂b = ½[q ⊙ (−d − KL(q‖p)) + q − p].
/// Neither side is detached. Classes at −inf in both rows contribute 0; a
/// class at −inf in one row only makes S = +inf (its true value) and the
/// gradient non-finite.
template <typename Scalar>
class SymmetricKL : public PairedDivergence<SymmetricKL<Scalar>, Scalar> {
 public:
  using PairedDivergence<SymmetricKL<Scalar>, Scalar>::PairedDivergence;

  /// ½[KL(p‖q) + KL(q‖p)] of one pair of logit rows.
  Scalar EvaluatePair(ConstRowMap<Scalar> a, ConstRowMap<Scalar> b) const {
    return pair(a, b, nullptr, nullptr);
  }

  /// The same, its gradients overwriting grad_a and grad_b.
  Scalar EvaluatePairWithGradient(ConstRowMap<Scalar> a, ConstRowMap<Scalar> b,
                                  RowMap<Scalar>& grad_a, RowMap<Scalar>& grad_b) const {
    detail::check_pair_lengths("SymmetricKL::EvaluatePairWithGradient", a, b, grad_a.size(), grad_b.size());
    return pair(a, b, grad_a.data(), grad_b.data());
  }

 private:
  Scalar pair(const ConstRowMap<Scalar>& a, const ConstRowMap<Scalar>& b, Scalar* ga,
              Scalar* gb) const {
    detail::check_pair_lengths("SymmetricKL::EvaluatePair", a, b);
    if (a.size() == 0) return Scalar(0);
    const detail::CrossEntropyTarget<Scalar> none{};
    return detail::divergence_pair(*this, a.data(), b.data(), a.size(), Scalar(1), none, none, ga, gb)
        .divergence;
  }
};

namespace detail {
template <typename Scalar>
struct softmax_kl_weights<SymmetricKL<Scalar>> {
  static constexpr bool fused = true;
  static constexpr double pq = 0.5;
  static constexpr double qp = 0.5;
  static Scalar value(const SoftmaxPairValues<Scalar>& v) { return v.symmetric; }
};
}  // namespace detail

}  // namespace rdrop
