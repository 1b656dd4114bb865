/// \file
/// The API every R-Drop loss shares: one call over the 2B output rows of a
/// duplicated batch gives the loss and the gradient for all of them.
#pragma once

#include "rdrop/detail/aliasing.hpp"
#include "rdrop/detail/errors.hpp"
#include "rdrop/detail/labels.hpp"
#include "rdrop/detail/rows.hpp"
#include "rdrop/layout.hpp"
#include "rdrop/normalization.hpp"
#include "rdrop/pair_plan.hpp"
#include "rdrop/terms.hpp"

#include <Eigen/Core>

#include <cmath>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace rdrop {

namespace detail {
// Gives the fused losses built on a PairedLoss (RDropLinearLoss) its
// planning and sweeping steps; defined with them.
struct PairedLossAccess;

/// Checks the options every R-Drop loss has (alpha, threads, layout,
/// normalization). An infinite
/// α is refused too: it would turn every loss into inf or NaN (inf · 0).
template <typename Options>
void check_common_options(const Options& o, const char* where) {
  if (!(o.alpha >= 0 && std::isfinite(o.alpha))) {
    fail(where, "argument 'alpha' is " + std::to_string(o.alpha) + "; expected a finite alpha >= 0");
  }
  if (o.threads < 0) {
    fail(where, "argument 'threads' is " + std::to_string(o.threads) + "; expected >= 0");
  }
  check_layout(o.layout, where);
  check_normalization(o.normalization, where);
}

/// "(labeled_rows L, pairs P, rows R)" for messages about counts.
inline std::string counts_str(const RDropCounts& c) {
  return "(labeled_rows " + std::to_string(c.labeled_rows) + ", pairs " + std::to_string(c.pairs) + ", rows " +
         std::to_string(c.rows) + ")";
}
}  // namespace detail

/// Base of RDropLoss, RDropMultiLabelLoss and RDropRegressionLoss: a task
/// loss on both copies of every sample plus α · D(first copy, second copy),
/// scaled by the options' Normalization, with gradients for all 2B rows
/// (neither copy is detached).
///
/// `logits` is 2B x C (rows are samples, classes contiguous), or a row-major
/// tensor [2B, C] or [2B, T, C] whose copies pair up per sample (each of the
/// T steps with its own). `targets` are given once per sample (B, or B·T,
/// in pair order) or once per row (2B, or 2B·T). The optional `mask` (any
/// vector, non-zero = keep), once per sample or per row, removes rows
/// entirely: a masked row has no task term, and a pair with a masked row
/// has no divergence term; masked pairs are skipped, their gradient is 0.
///
/// Every call checks all of its arguments before writing any output and
/// throws std::invalid_argument naming the argument and the shapes.
template <typename Derived, typename Scalar>
class PairedLoss {
  static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                "rdrop: Scalar must be float or double");
  friend struct detail::PairedLossAccess;

 public:
  /// The loss of the 2B rows.
  template <typename X, typename Y>
  Scalar Evaluate(const X& logits, const Y& targets) const {
    return run(logits, targets, no_mask(), no_grad(), no_values(), nullptr, "Evaluate");
  }
  /// The loss of the unmasked rows.
  template <typename X, typename Y, typename M>
  Scalar Evaluate(const X& logits, const Y& targets, const M& mask) const {
    return run(logits, targets, &mask, no_grad(), no_values(), nullptr, "Evaluate");
  }

  /// Writes ∂loss/∂logits for all rows into `gradient`, which is resized if
  /// it can be (Matrix, Tensor) and must have the logits' shape otherwise.
  /// `gradient` may be the logits themselves (in place: it saves a
  /// logits-sized buffer, and value and gradient are bitwise those of an
  /// out-of-place call); any other overlap with the logits (shifted,
  /// partial, another element order) or with the targets throws.
  template <typename X, typename Y, typename G>
  void Gradient(const X& logits, const Y& targets, G&& gradient) const {
    run(logits, targets, no_mask(), &gradient, no_values(), nullptr, "Gradient");
  }
  /// ∂loss/∂logits of the unmasked rows (masked rows get 0).
  template <typename X, typename Y, typename M, typename G>
  void Gradient(const X& logits, const Y& targets, const M& mask, G&& gradient) const {
    run(logits, targets, &mask, &gradient, no_values(), nullptr, "Gradient");
  }

  /// Evaluate and Gradient in one sweep.
  template <typename X, typename Y, typename G>
  Scalar EvaluateWithGradient(const X& logits, const Y& targets, G&& gradient) const {
    return run(logits, targets, no_mask(), &gradient, no_values(), nullptr, "EvaluateWithGradient");
  }
  /// Evaluate and Gradient with a mask, in one sweep.
  template <typename X, typename Y, typename M, typename G>
  Scalar EvaluateWithGradient(const X& logits, const Y& targets, const M& mask, G&& gradient) const {
    return run(logits, targets, &mask, &gradient, no_values(), nullptr, "EvaluateWithGradient");
  }

  /// Unnormalized per-row losses ℓ_r = T_r + (α/2)·D_k for row r of pair k:
  /// the two rows of a pair share its divergence, so Σ_r ℓ_r is the Paper
  /// form and, with every row labeled, their mean the KerasCode form.
  /// `values` is a vector of 2B entries (or a tensor [2B, T]).
  template <typename X, typename Y, typename V>
  void EvaluatePerRow(const X& logits, const Y& targets, V&& values) const {
    run(logits, targets, no_mask(), no_grad(), &values, nullptr, "EvaluatePerRow");
  }
  /// Per-row losses with a mask (masked rows get 0).
  template <typename X, typename Y, typename M, typename V>
  void EvaluatePerRow(const X& logits, const Y& targets, const M& mask, V&& values) const {
    run(logits, targets, &mask, no_grad(), &values, nullptr, "EvaluatePerRow");
  }

  /// The sums and counts behind the loss, unnormalized: workers of a
  /// data-parallel job all-reduce them (operator+) and call Normalize.
  template <typename X, typename Y>
  RDropTerms<Scalar> EvaluateTerms(const X& logits, const Y& targets) const {
    RDropTerms<Scalar> t;
    run(logits, targets, no_mask(), no_grad(), no_values(), &t, "EvaluateTerms");
    return t;
  }
  /// The sums and counts of the unmasked rows.
  template <typename X, typename Y, typename M>
  RDropTerms<Scalar> EvaluateTerms(const X& logits, const Y& targets, const M& mask) const {
    RDropTerms<Scalar> t;
    run(logits, targets, &mask, no_grad(), no_values(), &t, "EvaluateTerms");
    return t;
  }

  /// What the normalization divides by, from targets and mask alone (the
  /// logits give only the shape): all-reduce these across workers before
  /// the backward pass and pass the sum to WithCounts.
  template <typename X, typename Y>
  RDropCounts Count(const X& logits, const Y& targets) const {
    Resolved<Y> b;
    resolve_batch(detail::shape_of(logits), targets, no_mask(), "Count", b);
    return b.plan.counts;
  }
  /// What the normalization divides by, with a mask.
  template <typename X, typename Y, typename M>
  RDropCounts Count(const X& logits, const Y& targets, const M& mask) const {
    Resolved<Y> b;
    resolve_batch(detail::shape_of(logits), targets, &mask, "Count", b);
    return b.plan.counts;
  }

  /// The loss of (all-reduced) terms under this loss's normalization.
  Scalar Normalize(const RDropTerms<Scalar>& terms) const { return normalize(terms, terms.counts); }

  /// A copy of this loss that normalizes by `global` counts instead of each
  /// batch's own: on every worker, its value and gradient are that worker's
  /// share of the global loss, so the shares sum to the single-machine loss
  /// and gradient exactly.
  ///
  /// Throws std::invalid_argument for counts that no batch has (negative,
  /// more labeled rows than rows, more pairs than half the rows); a call on
  /// a batch that has labeled rows, pairs or rows where `global` counts 0
  /// throws too (RDropCounts{} on a non-empty batch would make its loss
  /// silently 0). Counts need not be a sum over workers: fixed counts give
  /// every batch the same divisor (see docs/normalization.md).
  Derived WithCounts(const RDropCounts& global) const {
    const std::string where = method("WithCounts");
    if (global.labeled_rows < 0 || global.pairs < 0 || global.rows < 0 || global.labeled_rows > global.rows ||
        global.pairs > global.rows / 2) {
      detail::fail(where.c_str(), "argument 'global' " + detail::counts_str(global) +
                                      " is no batch's counts; expected 0 <= labeled_rows <= rows and "
                                      "0 <= pairs <= rows / 2");
    }
    Derived copy = derived();
    static_cast<PairedLoss&>(copy).fixed_counts_ = global;
    return copy;
  }

  /// A copy of this loss whose gradients are `scale` · ∂loss/∂logits, the
  /// scale applied to the terms' weights in the compute type, before the
  /// gradient is stored: 2-byte gradients (bfloat16, half) are rounded once,
  /// at the scaled size. This is loss scaling for mixed precision: with
  /// `scale` the factor a loss scaler multiplies the loss by, small
  /// gradients that would round to 0 in half at size 1 keep their digits.
  /// Values (Evaluate, EvaluatePerRow, EvaluateTerms) are not scaled. Any
  /// scale is taken, as a multiplication would: 0 gives zero gradients,
  /// a negative one flips their sign, a non-finite one makes them
  /// non-finite.
  Derived WithGradientScale(Scalar scale) const {
    Derived copy = derived();
    static_cast<PairedLoss&>(copy).gradient_scale_ = scale;
    return copy;
  }
  /// The factor set by WithGradientScale (1 by default).
  Scalar gradient_scale() const { return gradient_scale_; }

 protected:
  PairedLoss() = default;

 private:
  static const Eigen::VectorXi* no_mask() { return nullptr; }
  static detail::RowMajorMatrix<Scalar>* no_grad() { return nullptr; }
  static Eigen::Matrix<Scalar, Eigen::Dynamic, 1>* no_values() { return nullptr; }

  const Derived& derived() const { return static_cast<const Derived&>(*this); }

  // A batch's targets resolved and its plan made: all that is known before
  // a logit is read (and all that Count needs).
  template <typename Y>
  struct Resolved {
    typename Derived::template Targets<Y> targets;
    detail::PairPlan plan;
  };

  // The logits as rows (of their storage type In) and their resolved batch;
  // built in place since the row view may own a copy of the logits.
  template <typename In, typename Y>
  struct Planned {
    template <typename X>
    explicit Planned(const X& logits) : x(logits) {}
    detail::RowSource<In> x;
    Resolved<Y> batch;
  };

  static std::string method(const char* where) { return std::string(Derived::name) + "::" + where; }

  /// Checks the targets and mask against logits of shape `shape` and plans
  /// the batch. `where_` is the calling method's name.
  template <typename Y, typename M>
  void resolve_batch(const detail::Shape& shape, const Y& targets, const M* mask, const char* where_,
                     Resolved<Y>& out) const {
    resolve_batch_at(shape, targets, mask, method(where_).c_str(), out);
  }

  /// resolve_batch, with the full name of the caller for the messages.
  template <typename Y, typename M>
  void resolve_batch_at(const detail::Shape& shape, const Y& targets, const M* mask, const char* where,
                        Resolved<Y>& out) const {
    if (shape.dims[0] % 2 != 0) {
      detail::fail(where, "logits of shape " + shape.str() + " have an odd number (" +
                              std::to_string(shape.dims[0]) + ") of rows; a duplicated batch has 2B rows");
    }
    if (shape.rows() > 0 && shape.cols() == 0) {
      detail::fail(where, "logits of shape " + shape.str() + " have no classes");
    }
    const auto& o = derived().options();
    derived().resolve(targets, shape, where, out.targets);
    std::vector<char> keep;
    if (mask) keep = detail::paired_row_mask(*mask, shape, o.layout, where);
    derived().merge_keep(out.targets, keep);
    out.plan = detail::make_plan(shape, o.layout, derived().row_targets(out.targets), keep);
  }

  Scalar normalize(const RDropTerms<Scalar>& t, const RDropCounts& counts) const {
    const auto& o = derived().options();
    const detail::TermScales<Scalar> s = detail::term_scales(o.normalization, o.alpha, counts);
    Scalar total = s.task * t.task_sum;
    // α = 0 drops the divergence even where it is infinite (0·inf is NaN).
    if (o.alpha > Scalar(0)) total += s.divergence * t.divergence_sum;
    return total;
  }

  // run = check (plan, outputs, memory), sweep, write the per-row values,
  // normalize.
  template <typename X, typename Y, typename M, typename G, typename V>
  Scalar run(const X& logits, const Y& targets, const M* mask, G* gradient, V* values,
             RDropTerms<Scalar>* terms, const char* where_) const {
    const std::string where = method(where_);
    using In = detail::storage_of_t<Scalar, X>;
    using Out = detail::storage_of_t<Scalar, G>;
    Planned<In, Y> p(logits);
    resolve_batch(p.x.shape(), targets, mask, where_, p.batch);
    std::optional<detail::RowSink<Out, G>> grad_sink;
    std::optional<detail::ValueSink<Scalar, V>> value_sink;
    if (gradient) {
      grad_sink.emplace(*gradient, p.x.shape(), where.c_str(), "gradient");
      check_gradient_memory(*gradient, logits, targets, where.c_str());
    }
    if (values) value_sink.emplace(*values, p.x.shape().without_classes(), where.c_str(), "values");
    const RDropCounts counts = counts_for(p.batch.plan.counts, where.c_str());

    const auto& o = derived().options();
    // The sweep's weights scale only the gradient; the values come out
    // unweighted and are normalized below.
    detail::TermScales<Scalar> scales = detail::term_scales(o.normalization, o.alpha, counts);
    scales.task *= gradient_scale_;
    scales.divergence *= gradient_scale_;
    detail::Rows<Out> g{};
    if (grad_sink) g = grad_sink->open();
    const std::vector<detail::PairValues<Scalar>> per_pair = sweep(p, scales, grad_sink ? &g : nullptr);
    if (value_sink) write_values(p.batch.plan, per_pair, value_sink->open());
    if (grad_sink) grad_sink->close();
    if (value_sink) value_sink->close();
    const RDropTerms<Scalar> t = detail::sum_terms(per_pair, p.batch.plan.counts);
    if (terms) *terms = t;
    return normalize(t, counts);
  }

  /// The gradient may be written over the logits themselves (in place,
  /// element for element); any other overlap with the logits, or any
  /// overlap with the targets, throws.
  template <typename G, typename X, typename Y>
  static void check_gradient_memory(const G& gradient, const X& logits, const Y& targets, const char* where) {
    const detail::Footprint g = detail::footprint_of(gradient);
    detail::check_in_place(g, detail::footprint_of(logits), where, "gradient", "logits");
    detail::check_disjoint(g, detail::footprint_of(targets), where, "gradient", "targets");
  }

  /// The counts to normalize by: the batch's own, or those given to
  /// WithCounts. A count of 0 where this batch has terms would divide them
  /// by nothing (a silent loss of 0): it throws.
  RDropCounts counts_for(const RDropCounts& own, const char* where) const {
    if (!fixed_counts_) return own;
    const RDropCounts& global = *fixed_counts_;
    if ((own.labeled_rows > 0 && global.labeled_rows == 0) || (own.pairs > 0 && global.pairs == 0) ||
        (own.rows > 0 && global.rows == 0)) {
      detail::fail(where, "the counts given to WithCounts " + detail::counts_str(global) +
                              " have 0 where this batch has " + detail::counts_str(own) +
                              "; pass the sum of every worker's Count (all-reduced)");
    }
    return global;
  }

  /// Every active pair through derived().pair, every task-carrying row of an
  /// inactive pair through derived().row. Gradient rows written over their
  /// own logits read those logits from a copy, so that every loss and
  /// divergence (a user's too) is exact in place.
  template <typename In, typename Y, typename Out>
  std::vector<detail::PairValues<Scalar>> sweep(const Planned<In, Y>& p, const detail::TermScales<Scalar>& scales,
                                                const detail::Rows<Out>* g) const {
    const detail::ConstRows<In>& x = p.x.rows();
    const detail::PairPlan& plan = p.batch.plan;
    std::vector<detail::PairValues<Scalar>> values(static_cast<std::size_t>(plan.pairs()));
    sweep_range(
        p.batch, x.cols, plan.pairs(), [](Eigen::Index k) { return k; }, scales,
        g != nullptr && static_cast<const void*>(g->data) == static_cast<const void*>(x.data),
        [&](Eigen::Index, int, Eigen::Index row) { return x.row(row); },
        [&](Eigen::Index k, int copy) -> Out* {
          if (!g) return nullptr;
          const detail::PairRows r = plan.rows_of(k);
          return g->row(copy == 0 ? r.first : r.second);
        },
        values.data());
    return values;
  }

  /// The sweep over the pairs pair_at(i), i in [0, count), of a resolved
  /// batch, wherever their rows are: x_row(i, copy, row) gives the logits of
  /// copy 0 or 1 of the i-th pair (plan row `row`), g_row(i, copy) its
  /// gradient row or null; values[k] receives pair k's values. `in_place`:
  /// the gradient rows are the logits rows.
  ///
  /// Rows stored in 2 bytes reach the fused sweep as they are (it converts
  /// in registers). Every other pair and row is staged: its logits widened
  /// into scratch rows, its gradient computed into float scratch rows and
  /// rounded once into the 2-byte row (see detail::StagedRows).
  template <typename Y, typename PairAt, typename XRow, typename GRow>
  void sweep_range(const Resolved<Y>& b, Eigen::Index cols, Eigen::Index count, PairAt&& pair_at,
                   const detail::TermScales<Scalar>& scales, bool in_place, XRow&& x_row, GRow&& g_row,
                   detail::PairValues<Scalar>* values) const {
    using In = std::remove_cv_t<std::remove_pointer_t<decltype(x_row(Eigen::Index{}, 0, Eigen::Index{}))>>;
    using Out = std::remove_pointer_t<decltype(g_row(Eigen::Index{}, 0))>;
    // The fused sweep (Derived::fused_pair) keeps its exps apart from the
    // logits and reads 2-byte rows by itself; every other pair is staged,
    // from copies when its gradient overwrites its logits.
    const detail::StagedRows<Scalar, In, Out> staged(cols);
    detail::sweep_pairs<Scalar>(
        b.plan, count, pair_at, cols, derived().options().threads, g_row,
        [&](Eigen::Index i, Eigen::Index, const detail::PairRows& r, Out* ga, Out* gb) {
          if constexpr (Derived::fused_pair) {
            return derived().pair(b.targets, x_row(i, 0, r.first), x_row(i, 1, r.second), cols, r, scales, ga, gb);
          } else {
            Scalar* sa = staged.gradient(ga, 0);
            Scalar* sb = staged.gradient(gb, 1);
            const auto v = derived().pair(b.targets, staged.read(x_row(i, 0, r.first), 0, in_place),
                                          staged.read(x_row(i, 1, r.second), 1, in_place), cols, r, scales, sa, sb);
            staged.write(sa, ga);
            staged.write(sb, gb);
            return v;
          }
        },
        [&](Eigen::Index i, int copy, Eigen::Index row, Out* grow) {
          Scalar* s = staged.gradient(grow, copy);
          const Scalar v =
              derived().row(b.targets, staged.read(x_row(i, copy, row), copy, in_place), cols, row, scales.task, s);
          staged.write(s, grow);
          return v;
        },
        values);
  }

  /// ℓ_r = T_r + (α/2)·D_k for the two rows r of every pair k.
  void write_values(const detail::PairPlan& plan, const std::vector<detail::PairValues<Scalar>>& per_pair,
                    Scalar* out) const {
    const Scalar alpha = derived().options().alpha;
    const Scalar half_alpha = alpha > Scalar(0) ? alpha / Scalar(2) : Scalar(0);
    for (Eigen::Index k = 0; k < plan.pairs(); ++k) {
      const detail::PairRows r = plan.rows_of(k);
      const detail::PairValues<Scalar>& v = per_pair[static_cast<std::size_t>(k)];
      const bool shares = half_alpha > Scalar(0) && plan.pair_active[static_cast<std::size_t>(k)];
      const Scalar shared = shares ? half_alpha * v.divergence : Scalar(0);
      out[r.first] = v.task_first + shared;
      out[r.second] = v.task_second + shared;
    }
  }

  std::optional<RDropCounts> fixed_counts_;
  Scalar gradient_scale_ = Scalar(1);
};

}  // namespace rdrop
