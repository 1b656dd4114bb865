/// \file
/// R-Drop for multi-label outputs: one sigmoid per output node.
#pragma once

#include "rdrop/detail/errors.hpp"
#include "rdrop/detail/rows.hpp"
#include "rdrop/divergence.hpp"
#include "rdrop/layout.hpp"
#include "rdrop/normalization.hpp"
#include "rdrop/paired_loss.hpp"
#include "rdrop/row_target_loss.hpp"

#include <Eigen/Core>

#include <string>
#include <utility>

namespace rdrop {

namespace detail {
/// σ of a row, into an array of its own. Eigen computes σ one way in packets
/// and another in scalars (below −9 through exp, which its packet path
/// clamps), and in an assignment, which elements go by packets depends on
/// where the destination starts: σ assigned straight into a gradient row
/// would differ with the row's address (a strided or 2-byte gradient, by a
/// subnormal). A fresh array always starts aligned, so its packets fall on
/// the same elements wherever the gradient goes.
template <typename X>
Eigen::Array<typename X::Scalar, 1, Eigen::Dynamic> logistic_of(const X& x) {
  return x.logistic();
}
}  // namespace detail

/// Symmetric Bernoulli KL summed over output nodes, for sigmoid outputs:
/// with p = σ(u), q = σ(v) per node,
///   ½[KL(p‖q) + KL(q‖p)] = ½ (p − q)(u − v),
/// computed from the logits u, v (never from clipped probabilities), so
/// logits of any magnitude are exact. Gradients:
///   ∂/∂u = ½[p(1 − p)(u − v) + p − q],   ∂/∂v = ½[−q(1 − q)(u − v) − (p − q)].
/// This is the divergence the seed's readers needed for multi-label R-Drop:
/// a softmax KL over independent sigmoid nodes is not a divergence at all.
template <typename Scalar>
class BernoulliSymmetricKL : public PairedDivergence<BernoulliSymmetricKL<Scalar>, Scalar> {
 public:
  using PairedDivergence<BernoulliSymmetricKL<Scalar>, Scalar>::PairedDivergence;

  /// Σ over nodes of ½[KL(σ(u)‖σ(v)) + KL(σ(v)‖σ(u))]. Throws
  /// std::invalid_argument when the rows differ in length.
  Scalar EvaluatePair(ConstRowMap<Scalar> u, ConstRowMap<Scalar> v) const {
    detail::check_pair_lengths("BernoulliSymmetricKL::EvaluatePair", u, v);
    return Scalar(0.5) * ((u.logistic() - v.logistic()) * (u - v)).sum();
  }

  /// The same, with its gradients overwriting grad_u and grad_v (all four
  /// rows of one length).
  Scalar EvaluatePairWithGradient(ConstRowMap<Scalar> u, ConstRowMap<Scalar> v, RowMap<Scalar>& grad_u,
                                  RowMap<Scalar>& grad_v) const {
    detail::check_pair_lengths("BernoulliSymmetricKL::EvaluatePairWithGradient", u, v, grad_u.size(),
                               grad_v.size());
    // σ into arrays of their own first (see detail::logistic_of), then
    // p(1 − p) as σ(u)σ(−u): no cancellation in 1 − p for large u.
    const auto p = detail::logistic_of(u), q = detail::logistic_of(v);
    const auto pc = detail::logistic_of(-u), qc = detail::logistic_of(-v);
    grad_u = Scalar(0.5) * (p * pc * (u - v) + p - q);
    grad_v = Scalar(0.5) * (-(q * qc) * (u - v) - (p - q));
    return EvaluatePair(u, v);
  }
};

/// Settings of RDropMultiLabelLoss.
template <typename Scalar>
struct MultiLabelOptions {
  Scalar alpha = Scalar(1);                                 ///< weight of the divergence, ≥ 0
  Layout layout = Layout::Interleaved;                      ///< where the copies are
  Normalization normalization = Normalization::KerasCode;   ///< see Normalization
  int threads = 0;                                          ///< 0: rdrop::set_num_threads's value
};

/// R-Drop for multi-label classification: binary cross-entropy from logits
/// summed over the K output nodes of each row,
///   BCE(u, t) = Σ_j softplus(u_j) − t_j u_j   (gradient σ(u) − t),
/// on both copies, plus α · D between the copies (BernoulliSymmetricKL by
/// default). Targets are K-wide rows with values in [0, 1] (0/1 labels or
/// soft targets), given once per sample or once per row, as a Scalar matrix
/// or row-major tensor. The calls are those of PairedLoss.
template <typename Scalar, typename Divergence = BernoulliSymmetricKL<Scalar>>
class RDropMultiLabelLoss
    : public detail::RowTargetLoss<RDropMultiLabelLoss<Scalar, Divergence>, Scalar, Divergence> {
  using Base = detail::RowTargetLoss<RDropMultiLabelLoss<Scalar, Divergence>, Scalar, Divergence>;
  friend Base;
  friend class PairedLoss<RDropMultiLabelLoss<Scalar, Divergence>, Scalar>;

 public:
  /// Throws std::invalid_argument for α < 0 (or infinite, or NaN), threads < 0,
  /// or a layout or normalization that names no value of its enum.
  explicit RDropMultiLabelLoss(MultiLabelOptions<Scalar> options = {}, Divergence divergence = Divergence())
      : Base(std::move(divergence)), options_(options) {
    detail::check_common_options(options_, "RDropMultiLabelLoss::RDropMultiLabelLoss");
  }

  /// The options it was made with.
  const MultiLabelOptions<Scalar>& options() const { return options_; }

  /// Binary cross-entropy of one row of logits against one row of targets.
  static Scalar BinaryCrossEntropy(ConstRowMap<Scalar> u, ConstRowMap<Scalar> t) {
    // softplus(u) = max(u, 0) + log1p(exp(−|u|)): exact for any magnitude.
    return (u.cwiseMax(Scalar(0)) - t * u + (-u.abs()).exp().log1p()).sum();
  }

 private:
  static constexpr const char* name = "RDropMultiLabelLoss";

  static void check_target_row(Eigen::Index i, ConstRowMap<Scalar> target, const char* where) {
    if (!((target >= Scalar(0)) && (target <= Scalar(1))).all()) {
      detail::fail(where, "argument 'targets' row " + std::to_string(i) +
                              " has a value outside [0, 1] (or NaN); multi-label targets are probabilities");
    }
  }

  Scalar task_row(ConstRowMap<Scalar> u, ConstRowMap<Scalar> target, Scalar weight, Scalar* g) const {
    if (g) RowMap<Scalar>(g, u.size()) = weight * (detail::logistic_of(u) - target);
    return BinaryCrossEntropy(u, target);
  }

  MultiLabelOptions<Scalar> options_;
};

}  // namespace rdrop
