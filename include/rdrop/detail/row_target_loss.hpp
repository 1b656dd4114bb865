// The part that RDropMultiLabelLoss and RDropRegressionLoss share: targets
// that are rows as wide as the logits (probabilities, real values), given
// once per sample or once per row, a task loss computed row by row, and a
// divergence from the divergence concept.
#pragma once

#include "rdrop/detail/errors.hpp"
#include "rdrop/detail/paired_sweep.hpp"
#include "rdrop/detail/rows.hpp"
#include "rdrop/detail/task_pair.hpp"
#include "rdrop/divergence.hpp"
#include "rdrop/normalization.hpp"
#include "rdrop/paired_loss.hpp"

#include <Eigen/Core>

#include <memory>
#include <utility>
#include <vector>

namespace rdrop::detail {

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
  // reading the logits.
  static constexpr bool pair_in_place = false;

  template <typename Y>
  struct Targets {
    std::unique_ptr<RowSource<Scalar>> rows;
    std::vector<Index> row_of;  // logits row -> targets row
  };

  template <typename Y>
  void resolve(const Y& targets, const Shape& shape, const char* where, Targets<Y>& t) const {
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
