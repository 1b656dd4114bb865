// R-Drop for multi-label outputs: one sigmoid per output node.
#pragma once

#include "rdrop/detail/errors.hpp"
#include "rdrop/detail/rows.hpp"
#include "rdrop/detail/task_pair.hpp"
#include "rdrop/divergence.hpp"
#include "rdrop/layout.hpp"
#include "rdrop/normalization.hpp"
#include "rdrop/paired_loss.hpp"

#include <Eigen/Core>

#include <memory>
#include <string>
#include <vector>

namespace rdrop {

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

  /// Σ over nodes of ½[KL(σ(u)‖σ(v)) + KL(σ(v)‖σ(u))].
  Scalar EvaluatePair(ConstRowMap<Scalar> u, ConstRowMap<Scalar> v) const {
    return Scalar(0.5) * ((u.logistic() - v.logistic()) * (u - v)).sum();
  }

  /// The same, with its gradients overwriting grad_u and grad_v.
  Scalar EvaluatePairWithGradient(ConstRowMap<Scalar> u, ConstRowMap<Scalar> v, RowMap<Scalar>& grad_u,
                                  RowMap<Scalar>& grad_v) const {
    const auto p = u.logistic();
    const auto q = v.logistic();
    // p(1 − p) as σ(u)σ(−u): no cancellation in 1 − p for large u.
    grad_u = Scalar(0.5) * (p * (-u).logistic() * (u - v) + p - q);
    grad_v = Scalar(0.5) * (-(q * (-v).logistic()) * (u - v) - (p - q));
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
class RDropMultiLabelLoss : public PairedLoss<RDropMultiLabelLoss<Scalar, Divergence>, Scalar> {
  static_assert(is_divergence_v<Divergence, Scalar>,
                "rdrop: the Divergence must satisfy rdrop::is_divergence_v");
  friend class PairedLoss<RDropMultiLabelLoss<Scalar, Divergence>, Scalar>;

 public:
  /// Throws std::invalid_argument for α < 0 (or infinite, or NaN) or threads < 0.
  explicit RDropMultiLabelLoss(MultiLabelOptions<Scalar> options = {}, Divergence divergence = Divergence())
      : options_(options), divergence_(std::move(divergence)) {
    detail::check_common_options(options_, "RDropMultiLabelLoss::RDropMultiLabelLoss");
  }

  const MultiLabelOptions<Scalar>& options() const { return options_; }

  /// Binary cross-entropy of one row of logits against one row of targets.
  static Scalar BinaryCrossEntropy(ConstRowMap<Scalar> u, ConstRowMap<Scalar> t) {
    // softplus(u) = max(u, 0) + log1p(exp(−|u|)): exact for any magnitude.
    return (u.cwiseMax(Scalar(0)) - t * u + (-u.abs()).exp().log1p()).sum();
  }

 private:
  static constexpr const char* name = "RDropMultiLabelLoss";

  template <typename Y>
  struct Targets {
    std::unique_ptr<detail::RowSource<Scalar>> rows;
    std::vector<Eigen::Index> row_of;  // logits row -> targets row
  };

  template <typename Y>
  void resolve(const Y& targets, const detail::Shape& shape, const char* where, Targets<Y>& t) const {
    t.rows = std::make_unique<detail::RowSource<Scalar>>(targets);
    const detail::ConstRows<Scalar>& tr = t.rows->rows();
    detail::resolve_target_rows(tr, t.rows->shape(), shape, options_.layout, where, t.row_of);
    for (Eigen::Index i = 0; i < tr.rows; ++i) {
      const ConstRowMap<Scalar> target_row(tr.row(i), tr.cols);
      if (!((target_row >= Scalar(0)) && (target_row <= Scalar(1))).all()) {
        detail::fail(where, "argument 'targets' row " + std::to_string(i) +
                                " has a value outside [0, 1] (or NaN); multi-label targets are probabilities");
      }
    }
  }

 private:
  template <typename Y>
  void merge_keep(const Targets<Y>&, std::vector<char>&) const {}

  template <typename Y>
  std::vector<Eigen::Index> row_targets(const Targets<Y>& t) const {
    return t.row_of;
  }

  template <typename Y>
  Scalar row(const Targets<Y>& t, const detail::ConstRows<Scalar>& x, Eigen::Index r, Scalar weight,
             Scalar* g) const {
    const ConstRowMap<Scalar> u(x.row(r), x.cols);
    const ConstRowMap<Scalar> target(t.rows->rows().row(t.row_of[static_cast<std::size_t>(r)]), x.cols);
    if (g) RowMap<Scalar>(g, x.cols) = weight * (u.logistic() - target);
    return BinaryCrossEntropy(u, target);
  }

  template <typename Y>
  detail::PairValues<Scalar> pair(const Targets<Y>& t, const detail::ConstRows<Scalar>& x,
                                  const detail::PairRows& r, const detail::TermScales<Scalar>& s, Scalar* ga,
                                  Scalar* gb) const {
    return detail::task_and_divergence(
        divergence_, x.row(r.first), x.row(r.second), x.cols, s.task, s.divergence,
        [&](int side, Scalar w, Scalar* g) { return row(t, x, side == 0 ? r.first : r.second, w, g); }, ga, gb);
  }

  MultiLabelOptions<Scalar> options_;
  Divergence divergence_;
};

}  // namespace rdrop
