/// \file
/// The machinery every R-Drop loss shares (namespace detail: building blocks
/// for a loss, not API): labels and masks of a duplicated batch spread over
/// its rows, which rows and pairs take part, the pass over pairs (skipping
/// masked ones), and the reduction of their values in a fixed order. It sits
/// beside the public headers because it speaks their vocabulary (Layout,
/// RDropCounts, RDropTerms); rdrop/detail/ is the numeric layer below.
#pragma once

#include "rdrop/detail/errors.hpp"
#include "rdrop/detail/labels.hpp"
#include "rdrop/detail/parallel.hpp"
#include "rdrop/detail/rows.hpp"
#include "rdrop/detail/zero_fill.hpp"
#include "rdrop/layout.hpp"
#include "rdrop/terms.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace rdrop::detail {

/// Labels of a duplicated batch, given once per sample (rows/2 entries, in
/// pair order) or once per row; returned one per row, ignore label as -1.
inline std::vector<Index> paired_row_labels(const std::vector<Index>& labels,
                                            const Shape& logits, Layout layout,
                                            Index ignore_index, const char* where) {
  const Index rows = logits.rows();
  const Index pairs = rows / 2;
  const auto given = static_cast<Index>(labels.size());
  if (given == rows) return per_row_labels(labels, logits, ignore_index, where);
  if (given != pairs) {
    fail(where, "argument 'labels' has " + std::to_string(given) + " entries; expected " +
                    std::to_string(pairs) + " (one per sample) or " + std::to_string(rows) +
                    " (one per row) for logits of shape " + logits.str());
  }
  check_label_values(labels, logits.cols(), ignore_index, where);
  std::vector<Index> out(static_cast<std::size_t>(rows));
  for (Index k = 0; k < pairs; ++k) {
    const PairRows r = pair_rows(layout, k, rows, logits.group());
    const Index y = labels[static_cast<std::size_t>(k)];
    out[static_cast<std::size_t>(r.first)] = out[static_cast<std::size_t>(r.second)] =
        (y == ignore_index) ? -1 : y;
  }
  return out;
}

/// A keep-mask (non-zero = keep) from any Eigen vector or tensor of bool,
/// integer or floating type, given once per pair (rows/2, in pair order) or
/// once per row; returned once per row.
template <typename M>
std::vector<char> paired_row_mask(const M& mask, const Shape& logits, Layout layout, const char* where) {
  using T = std::remove_cv_t<std::remove_reference_t<M>>;
  static_assert(is_eigen_dense_v<T> || is_tensor_v<T>,
                "rdrop: a mask must be an Eigen vector or an Eigen::Tensor/TensorMap (non-zero = keep)");
  using V = scalar_of_t<T>;
  static_assert(std::is_arithmetic_v<V>, "rdrop: a mask must hold bool, integer or floating values");
  std::vector<char> given;
  if constexpr (is_tensor_v<T>) {
    static_assert(static_cast<int>(T::Layout) == static_cast<int>(Eigen::RowMajor) || T::NumIndices <= 1,
                  "rdrop: tensor masks must be RowMajor");
    given.resize(static_cast<std::size_t>(mask.size()));
    for (Index i = 0; i < mask.size(); ++i) given[static_cast<std::size_t>(i)] = mask.data()[i] != V(0);
  } else {
    if (mask.rows() != 1 && mask.cols() != 1 && mask.size() != 0) {
      fail(where, "argument 'mask' has shape " + shape(mask.rows(), mask.cols()) + "; expected a vector");
    }
    given.resize(static_cast<std::size_t>(mask.size()));
    for (Index i = 0; i < mask.size(); ++i) {
      given[static_cast<std::size_t>(i)] = (mask.rows() == 1 ? mask.coeff(0, i) : mask.coeff(i, 0)) != V(0);
    }
  }
  const Index rows = logits.rows(), pairs = rows / 2;
  const auto n = static_cast<Index>(given.size());
  if (n == rows) return given;
  if (n != pairs) {
    fail(where, "argument 'mask' has " + std::to_string(n) + " entries; expected " + std::to_string(pairs) +
                    " (one per sample) or " + std::to_string(rows) + " (one per row) for logits of shape " +
                    logits.str());
  }
  std::vector<char> out(static_cast<std::size_t>(rows));
  for (Index k = 0; k < pairs; ++k) {
    const PairRows r = pair_rows(layout, k, rows, logits.group());
    out[static_cast<std::size_t>(r.first)] = out[static_cast<std::size_t>(r.second)] = given[static_cast<std::size_t>(k)];
  }
  return out;
}

/// Which rows carry a task term and which pairs a divergence term, resolved
/// from labels and masks before any logit is read.
struct PairPlan {
  Layout layout = Layout::Interleaved;
  Index rows = 0;
  Index group = 1;
  /// Per row: the class (or 0 for tasks without classes) when the row carries
  /// a task term, -1 when it does not (ignored label, or masked).
  std::vector<Index> row_target;
  /// Per pair: whether its divergence is computed (neither copy masked).
  std::vector<char> pair_active;
  RDropCounts counts;

  Index pairs() const { return rows / 2; }
  PairRows rows_of(Index k) const { return pair_rows(layout, k, rows, group); }
};

/// `row_target`: per row, -1 for no task term; `row_keep`: per row mask (an
/// empty vector keeps every row). A masked row has neither term, and its
/// pair has no divergence.
inline PairPlan make_plan(const Shape& shape, Layout layout, std::vector<Index> row_target,
                          const std::vector<char>& row_keep) {
  PairPlan plan;
  plan.layout = layout;
  plan.rows = shape.rows();
  plan.group = shape.group();
  plan.row_target = std::move(row_target);
  if (!row_keep.empty()) {
    for (std::size_t r = 0; r < plan.row_target.size(); ++r) {
      if (!row_keep[r]) plan.row_target[r] = -1;
    }
  }
  plan.pair_active.assign(static_cast<std::size_t>(plan.pairs()), 1);
  if (!row_keep.empty()) {
    for (Index k = 0; k < plan.pairs(); ++k) {
      const PairRows r = plan.rows_of(k);
      plan.pair_active[static_cast<std::size_t>(k)] = static_cast<char>(
          row_keep[static_cast<std::size_t>(r.first)] && row_keep[static_cast<std::size_t>(r.second)]);
    }
  }
  plan.counts.rows = plan.rows;
  plan.counts.labeled_rows = static_cast<Index>(
      std::count_if(plan.row_target.begin(), plan.row_target.end(), [](Index t) { return t >= 0; }));
  plan.counts.pairs = static_cast<Index>(std::count(plan.pair_active.begin(), plan.pair_active.end(), 1));
  return plan;
}

template <typename Scalar>
struct PairValues {
  Scalar task_first = Scalar(0);
  Scalar task_second = Scalar(0);
  Scalar divergence = Scalar(0);
};

/// Runs, for the pairs k = pair_at(i), i in [0, count): pair_fn(i, k, rows,
/// grad_first, grad_second) when k is active, and row_fn(i, copy, row,
/// grad_row) on the task-carrying rows (copy 0 or 1) of inactive ones,
/// storing each pair's values in values[k]; rows with no term get a zero
/// gradient without being read. grad_row(i, copy) gives the gradient row of
/// that copy, or null when no gradient is wanted. A whole batch runs its
/// pairs in order with rows where the plan puts them; a chunk of a fused
/// loss runs some of them with rows of its own.
template <typename Scalar, typename PairAt, typename GradRow, typename PairFn, typename RowFn>
void sweep_pairs(const PairPlan& plan, Index count, PairAt&& pair_at, Index cols, int threads, GradRow&& grad_row,
                 PairFn&& pair_fn, RowFn&& row_fn, PairValues<Scalar>* values) {
  const Index work = count * 2 * cols;
  parallel_ranges(count, work, threads, [&](Index begin, Index end) {
    bool streamed = false;
    for (Index i = begin; i < end; ++i) {
      const Index k = pair_at(i);
      const PairRows r = plan.rows_of(k);
      auto* const ga = grad_row(i, 0);
      auto* const gb = grad_row(i, 1);
      PairValues<Scalar>& v = values[k];
      if (plan.pair_active[static_cast<std::size_t>(k)]) {
        v = pair_fn(i, k, r, ga, gb);
        continue;
      }
      // A masked pair: no divergence; a copy that is still labeled keeps its
      // task term (a per-row mask may mask one copy only).
      v = PairValues<Scalar>{};
      if (plan.row_target[static_cast<std::size_t>(r.first)] >= 0) {
        v.task_first = row_fn(i, 0, r.first, ga);
      } else if (ga) {
        streamed |= zero_fill(ga, cols);
      }
      if (plan.row_target[static_cast<std::size_t>(r.second)] >= 0) {
        v.task_second = row_fn(i, 1, r.second, gb);
      } else if (gb) {
        streamed |= zero_fill(gb, cols);
      }
    }
    if (streamed) streaming_fence();
  });
}

/// Whether `row`, a copy of pair k, has any term (its pair's divergence, or
/// its own label): a row without one has a zero gradient.
inline bool row_has_terms(const PairPlan& plan, Index k, Index row) {
  return plan.pair_active[static_cast<std::size_t>(k)] || plan.row_target[static_cast<std::size_t>(row)] >= 0;
}

/// Whether pair k has any term (a divergence, or a labeled copy): a pair
/// without one has a zero gradient and need not be computed at all.
inline bool pair_has_terms(const PairPlan& plan, Index k) {
  const PairRows r = plan.rows_of(k);
  return row_has_terms(plan, k, r.first) || row_has_terms(plan, k, r.second);
}

/// Σ task and Σ divergence over pairs, in pair order, compensated in double
/// (see CompensatedSum): bitwise the same for any thread count.
template <typename Scalar>
RDropTerms<Scalar> sum_terms(const std::vector<PairValues<Scalar>>& values, const RDropCounts& counts) {
  CompensatedSum task, divergence;
  for (const PairValues<Scalar>& v : values) {
    task.add(static_cast<double>(v.task_first));
    task.add(static_cast<double>(v.task_second));
    divergence.add(static_cast<double>(v.divergence));
  }
  RDropTerms<Scalar> t;
  t.task_sum = static_cast<Scalar>(task.total());
  t.divergence_sum = static_cast<Scalar>(divergence.total());
  t.counts = counts;
  return t;
}

}  // namespace rdrop::detail
