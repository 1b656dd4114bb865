/// \file
/// R-Drop for regression: squared error as the task loss and as the
/// divergence between the two copies (the paper's appendix).
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

/// D(a, b) = Σ_j (a_j − b_j)², the squared Euclidean distance between two
/// output rows. Gradients 2(a − b) and 2(b − a). Symmetric, so the paper's
/// α/2 [D(f₂, f₁) + D(f₁, f₂)] is α · D.
template <typename Scalar>
class SquaredError : public PairedDivergence<SquaredError<Scalar>, Scalar> {
 public:
  using PairedDivergence<SquaredError<Scalar>, Scalar>::PairedDivergence;

  /// Σ_j (a_j − b_j)². Throws std::invalid_argument when the rows differ in length.
  Scalar EvaluatePair(ConstRowMap<Scalar> a, ConstRowMap<Scalar> b) const {
    detail::check_pair_lengths("SquaredError::EvaluatePair", a, b);
    return (a - b).square().sum();
  }

  /// The same, its gradients overwriting grad_a and grad_b (all four rows of one length).
  Scalar EvaluatePairWithGradient(ConstRowMap<Scalar> a, ConstRowMap<Scalar> b, RowMap<Scalar>& grad_a,
                                  RowMap<Scalar>& grad_b) const {
    detail::check_pair_lengths("SquaredError::EvaluatePairWithGradient", a, b, grad_a.size(), grad_b.size());
    grad_a = Scalar(2) * (a - b);
    grad_b = -grad_a;
    return EvaluatePair(a, b);
  }
};

/// Settings of RDropRegressionLoss.
template <typename Scalar>
struct RegressionOptions {
  Scalar alpha = Scalar(1);                                 ///< weight of the divergence, ≥ 0
  Layout layout = Layout::Interleaved;                      ///< where the copies are
  Normalization normalization = Normalization::KerasCode;   ///< see Normalization
  int threads = 0;                                          ///< 0: rdrop::set_num_threads's value
};

/// R-Drop for regression: per row the squared error Σ_j (f_j − y_j)² on both
/// copies plus α · D between the copies (SquaredError by default), i.e. the
/// seed's general form ‖y − f₁‖² + ‖y − f₂‖² + α/2 [D(f₂, f₁) + D(f₁, f₂)].
/// `logits` are the model's K outputs per row; targets are finite reals,
/// [B or 2B, K] as a Scalar matrix or row-major tensor. The calls are those
/// of PairedLoss.
template <typename Scalar, typename Divergence = SquaredError<Scalar>>
class RDropRegressionLoss
    : public detail::RowTargetLoss<RDropRegressionLoss<Scalar, Divergence>, Scalar, Divergence> {
  using Base = detail::RowTargetLoss<RDropRegressionLoss<Scalar, Divergence>, Scalar, Divergence>;
  friend Base;
  friend class PairedLoss<RDropRegressionLoss<Scalar, Divergence>, Scalar>;

 public:
  /// Throws std::invalid_argument for α < 0 (or infinite, or NaN), threads < 0,
  /// or a layout or normalization that names no value of its enum.
  explicit RDropRegressionLoss(RegressionOptions<Scalar> options = {}, Divergence divergence = Divergence())
      : Base(std::move(divergence)), options_(options) {
    detail::check_common_options(options_, "RDropRegressionLoss::RDropRegressionLoss");
  }

  /// The options it was made with.
  const RegressionOptions<Scalar>& options() const { return options_; }

 private:
  static constexpr const char* name = "RDropRegressionLoss";

  static void check_target_row(Eigen::Index i, ConstRowMap<Scalar> target, const char* where) {
    if (!target.isFinite().all()) {
      detail::fail(where, "argument 'targets' row " + std::to_string(i) + " is not finite");
    }
  }

  Scalar task_row(ConstRowMap<Scalar> f, ConstRowMap<Scalar> y, Scalar weight, Scalar* g) const {
    if (g) RowMap<Scalar>(g, f.size()) = (Scalar(2) * weight) * (f - y);
    return (f - y).square().sum();
  }

  RegressionOptions<Scalar> options_;
};

}  // namespace rdrop
