// A pair of rows under a task loss computed row by row and a divergence
// given through the divergence concept: the path every non-fused R-Drop
// loss takes.
#pragma once

#include "rdrop/detail/errors.hpp"
#include "rdrop/detail/paired_sweep.hpp"
#include "rdrop/detail/rows.hpp"
#include "rdrop/layout.hpp"
#include "rdrop/detail/parallel.hpp"
#include "rdrop/divergence.hpp"

#include <Eigen/Core>

#include <string>
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

}  // namespace rdrop::detail
