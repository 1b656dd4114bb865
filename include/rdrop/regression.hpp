// R-Drop for regression: squared error as the task loss and as the
// divergence between the two copies (the paper's appendix).
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

/// D(a, b) = Σ_j (a_j − b_j)², the squared Euclidean distance between two
/// output rows. Gradients 2(a − b) and 2(b − a). Symmetric, so the paper's
/// α/2 [D(f₂, f₁) + D(f₁, f₂)] is α · D.
template <typename Scalar>
class SquaredError : public PairedDivergence<SquaredError<Scalar>, Scalar> {
 public:
  using PairedDivergence<SquaredError<Scalar>, Scalar>::PairedDivergence;

  Scalar EvaluatePair(ConstRowMap<Scalar> a, ConstRowMap<Scalar> b) const { return (a - b).square().sum(); }

  Scalar EvaluatePairWithGradient(ConstRowMap<Scalar> a, ConstRowMap<Scalar> b, RowMap<Scalar>& grad_a,
                                  RowMap<Scalar>& grad_b) const {
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
class RDropRegressionLoss : public PairedLoss<RDropRegressionLoss<Scalar, Divergence>, Scalar> {
  static_assert(is_divergence_v<Divergence, Scalar>,
                "rdrop: the Divergence must satisfy rdrop::is_divergence_v");
  friend class PairedLoss<RDropRegressionLoss<Scalar, Divergence>, Scalar>;

 public:
  /// Throws std::invalid_argument for α < 0 (or infinite, or NaN) or threads < 0.
  explicit RDropRegressionLoss(RegressionOptions<Scalar> options = {}, Divergence divergence = Divergence())
      : options_(options), divergence_(std::move(divergence)) {
    detail::check_common_options(options_, "RDropRegressionLoss::RDropRegressionLoss");
  }

  const RegressionOptions<Scalar>& options() const { return options_; }

 private:
  static constexpr const char* name = "RDropRegressionLoss";

  template <typename Y>
  struct Targets {
    std::unique_ptr<detail::RowSource<Scalar>> rows;
    std::vector<Eigen::Index> row_of;
  };

  template <typename Y>
  void resolve(const Y& targets, const detail::Shape& shape, const char* where, Targets<Y>& t) const {
    t.rows = std::make_unique<detail::RowSource<Scalar>>(targets);
    const detail::ConstRows<Scalar>& tr = t.rows->rows();
    detail::resolve_target_rows(tr, t.rows->shape(), shape, options_.layout, where, t.row_of);
    for (Eigen::Index i = 0; i < tr.rows; ++i) {
      if (!ConstRowMap<Scalar>(tr.row(i), tr.cols).isFinite().all()) {
        detail::fail(where, "argument 'targets' row " + std::to_string(i) + " is not finite");
      }
    }
  }

  template <typename Y>
  void merge_keep(const Targets<Y>&, std::vector<char>&) const {}

  template <typename Y>
  std::vector<Eigen::Index> row_targets(const Targets<Y>& t) const {
    return t.row_of;
  }

  template <typename Y>
  Scalar row(const Targets<Y>& t, const detail::ConstRows<Scalar>& x, Eigen::Index r, Scalar weight,
             Scalar* g) const {
    const ConstRowMap<Scalar> f(x.row(r), x.cols);
    const ConstRowMap<Scalar> y(t.rows->rows().row(t.row_of[static_cast<std::size_t>(r)]), x.cols);
    if (g) RowMap<Scalar>(g, x.cols) = (Scalar(2) * weight) * (f - y);
    return (f - y).square().sum();
  }

  template <typename Y>
  detail::PairValues<Scalar> pair(const Targets<Y>& t, const detail::ConstRows<Scalar>& x,
                                  const detail::PairRows& r, const detail::TermScales<Scalar>& s, Scalar* ga,
                                  Scalar* gb) const {
    return detail::task_and_divergence(
        divergence_, x.row(r.first), x.row(r.second), x.cols, s.task, s.divergence,
        [&](int side, Scalar w, Scalar* g) { return row(t, x, side == 0 ? r.first : r.second, w, g); }, ga, gb);
  }

  RegressionOptions<Scalar> options_;
  Divergence divergence_;
};

}  // namespace rdrop
