/// \file
/// The part that RDropMultiLabelLoss and RDropRegressionLoss share (namespace
/// detail: a building block for a loss with row targets, not API): targets
/// that are rows as wide as the logits (probabilities, real values), given
/// once per sample or once per row, a task loss computed row by row, and a
/// divergence from the divergence concept.
#pragma once

#include "rdrop/detail/errors.hpp"
#include "rdrop/detail/parallel.hpp"
#include "rdrop/detail/rows.hpp"
#include "rdrop/divergence.hpp"
#include "rdrop/layout.hpp"
#include "rdrop/normalization.hpp"
#include "rdrop/pair_plan.hpp"
#include "rdrop/paired_loss.hpp"

#include <Eigen/Core>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace rdrop::detail {

/// task_row(side, weight, grad_or_null) returns the task value of one row
/// (side 0: first copy, 1: second) and writes weight · ∂task into grad.
/// The divergence's gradient, scaled by `div_weight`, is added on top.
template <typename Scalar, typename D, typename TaskRow>
PairValues<Scalar> task_and_divergence(const D& d, const Scalar* a, const Scalar* b, Index n,
                                       Scalar task_weight, Scalar div_weight, TaskRow&& task_row,
                                       Scalar* ga, Scalar* gb) {
  PairValues<Scalar> v;
  v.task_first = task_row(0, task_weight, ga);
  v.task_second = task_row(1, task_weight, gb);
  const ConstRowMap<Scalar> ma(a, n), mb(b, n);
  if (ga == nullptr || div_weight == Scalar(0)) {
    v.divergence = d.EvaluatePair(ma, mb);
    return v;
  }
  RowMap<Scalar> da(thread_scratch<Scalar>(n, 2), n), db(thread_scratch<Scalar>(n, 3), n);
  v.divergence = d.EvaluatePairWithGradient(ma, mb, da, db);
  RowMap<Scalar>(ga, n) += div_weight * da;
  RowMap<Scalar>(gb, n) += div_weight * db;
  return v;
}

/// Maps every logits row to its targets row, checking the targets' shape:
/// [B or 2B (x T), K] against logits [2B (x T), K].
template <typename Scalar>
void resolve_target_rows(const ConstRows<Scalar>& tr, const Shape& target_shape, const Shape& shape,
                         Layout layout, const char* where, std::vector<Index>& row_of) {
  const Index rows = shape.rows(), pairs = rows / 2;
  if (tr.cols != shape.cols() || (tr.rows != rows && tr.rows != pairs)) {
    fail(where, "argument 'targets' has shape " + target_shape.str() + "; expected " + std::to_string(pairs) +
                    " (one per sample) or " + std::to_string(rows) + " (one per row) rows of " +
                    std::to_string(shape.cols()) + " values for logits of shape " + shape.str());
  }
  row_of.resize(static_cast<std::size_t>(rows));
  for (Index k = 0; k < pairs; ++k) {
    const PairRows r = pair_rows(layout, k, rows, shape.group());
    row_of[static_cast<std::size_t>(r.first)] = tr.rows == rows ? r.first : k;
    row_of[static_cast<std::size_t>(r.second)] = tr.rows == rows ? r.second : k;
  }
}

/// CRTP base between PairedLoss and a loss with row targets. Derived
/// provides options(), a static `name`, and (private, befriending this
/// class)
///   static void check_target_row(Index i, ConstRowMap<Scalar> row, const char* where);
///       throws through detail::fail for a target row the task cannot take;
///   Scalar task_row(ConstRowMap<Scalar> logits, ConstRowMap<Scalar> target,
///                   Scalar weight, Scalar* grad) const;
///       the task loss of one row, writing weight · ∂ into grad when not null.
template <typename Derived, typename Scalar, typename Divergence>
class RowTargetLoss : public PairedLoss<Derived, Scalar> {
  static_assert(is_divergence_v<Divergence, Scalar>,
                "rdrop: the Divergence must satisfy rdrop::is_divergence_v");
  friend class PairedLoss<Derived, Scalar>;

 protected:
  explicit RowTargetLoss(Divergence divergence) : divergence_(std::move(divergence)) {}

  // Task rows and divergences write gradient rows before they are done
  // reading the logits, and read Scalar rows: pairs are staged (copies in
  // place, 2-byte rows widened).
  static constexpr bool fused_pair = false;

  template <typename Y>
  struct Targets {
    std::unique_ptr<RowSource<Scalar>> rows;
    std::vector<Index> row_of;  // logits row -> targets row
  };

  template <typename Y>
  void resolve(const Y& targets, const Shape& shape, const char* where, Targets<Y>& t) const {
    static_assert(!(is_eigen_dense_v<Y> || is_tensor_v<Y>) || std::is_same_v<scalar_of_t<Y>, Scalar>,
                  "rdrop: targets must have the loss's Scalar type (float targets also for bfloat16 or "
                  "half logits)");
    t.rows = std::make_unique<RowSource<Scalar>>(targets);
    const ConstRows<Scalar>& tr = t.rows->rows();
    resolve_target_rows(tr, t.rows->shape(), shape, self().options().layout, where, t.row_of);
    for (Index i = 0; i < tr.rows; ++i) Derived::check_target_row(i, ConstRowMap<Scalar>(tr.row(i), tr.cols), where);
  }

  template <typename Y>
  void merge_keep(const Targets<Y>&, std::vector<char>&) const {}

  template <typename Y>
  std::vector<Index> row_targets(const Targets<Y>& t) const {
    return t.row_of;
  }

  template <typename Y>
  Scalar row(const Targets<Y>& t, const Scalar* x, Index cols, Index r, Scalar weight, Scalar* g) const {
    const ConstRowMap<Scalar> target(t.rows->rows().row(t.row_of[static_cast<std::size_t>(r)]), cols);
    return self().task_row(ConstRowMap<Scalar>(x, cols), target, weight, g);
  }

  template <typename Y>
  PairValues<Scalar> pair(const Targets<Y>& t, const Scalar* a, const Scalar* b, Index cols, const PairRows& r,
                          const TermScales<Scalar>& s, Scalar* ga, Scalar* gb) const {
    return task_and_divergence(
        divergence_, a, b, cols, s.task, s.divergence,
        [&](int side, Scalar w, Scalar* g) {
          return side == 0 ? row(t, a, cols, r.first, w, g) : row(t, b, cols, r.second, w, g);
        },
        ga, gb);
  }

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }

  Divergence divergence_;
};

}  // namespace rdrop::detail
