/// \file
/// The divergence concept: what R-Drop puts between the two copies' outputs.
#pragma once

#include "rdrop/detail/aliasing.hpp"
#include "rdrop/detail/errors.hpp"
#include "rdrop/detail/parallel.hpp"
#include "rdrop/detail/rows.hpp"
#include "rdrop/detail/softmax_kernels.hpp"
#include "rdrop/kernels.hpp"
#include "rdrop/reduction.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace rdrop {

/// One row of logits, read-only, as the divergence concept receives it.
template <typename Scalar>
using ConstRowMap = Eigen::Map<const Eigen::Array<Scalar, 1, Eigen::Dynamic>>;

/// One writable row, for the divergence concept's gradients.
template <typename Scalar>
using RowMap = Eigen::Map<Eigen::Array<Scalar, 1, Eigen::Dynamic>>;

namespace detail {

template <typename D, typename Scalar, typename = void>
struct has_pair_value : std::false_type {};
template <typename D, typename Scalar>
struct has_pair_value<D, Scalar,
                      std::void_t<decltype(std::declval<const D&>().EvaluatePair(
                          std::declval<ConstRowMap<Scalar>>(), std::declval<ConstRowMap<Scalar>>()))>>
    : std::is_convertible<decltype(std::declval<const D&>().EvaluatePair(
                              std::declval<ConstRowMap<Scalar>>(),
                              std::declval<ConstRowMap<Scalar>>())),
                          Scalar> {};

template <typename D, typename Scalar, typename = void>
struct has_pair_gradient : std::false_type {};
template <typename D, typename Scalar>
struct has_pair_gradient<
    D, Scalar,
    std::void_t<decltype(std::declval<const D&>().EvaluatePairWithGradient(
        std::declval<ConstRowMap<Scalar>>(), std::declval<ConstRowMap<Scalar>>(),
        std::declval<RowMap<Scalar>&>(), std::declval<RowMap<Scalar>&>()))>>
    : std::is_convertible<decltype(std::declval<const D&>().EvaluatePairWithGradient(
                              std::declval<ConstRowMap<Scalar>>(),
                              std::declval<ConstRowMap<Scalar>>(), std::declval<RowMap<Scalar>&>(),
                              std::declval<RowMap<Scalar>&>())),
                          Scalar> {};

/// Built-in softmax divergences are w_pq·KL(p‖q) + w_qp·KL(q‖p) and run on
/// the fused paired sweep; user divergences go through the concept.
template <typename D>
struct softmax_kl_weights {
  static constexpr bool fused = false;
};

}  // namespace detail

/// True when D is a divergence over Scalar rows: it has
///   Scalar EvaluatePair(ConstRowMap<Scalar> a, ConstRowMap<Scalar> b) const;
///   Scalar EvaluatePairWithGradient(ConstRowMap<Scalar> a, ConstRowMap<Scalar> b,
///                                   RowMap<Scalar>& grad_a, RowMap<Scalar>& grad_b) const;
/// where a and b are the two copies' logit rows and the gradients are
/// overwritten with ∂D/∂a and ∂D/∂b.
template <typename D, typename Scalar>
inline constexpr bool is_divergence_v =
    detail::has_pair_value<D, Scalar>::value && detail::has_pair_gradient<D, Scalar>::value;

namespace detail {

/// Throws unless the pair's rows (and its gradient rows, when given) all
/// have one length: a divergence reads its two rows element by element.
template <typename A, typename B>
void check_pair_lengths(const char* where, const A& a, const B& b, Index grad_a = -1, Index grad_b = -1) {
  const Index n = a.size();
  if (b.size() != n || (grad_a >= 0 && grad_a != n) || (grad_b >= 0 && grad_b != n)) {
    std::string what = "rows must all have the same length; got a: " + std::to_string(a.size()) +
                       ", b: " + std::to_string(b.size());
    if (grad_a >= 0) what += ", grad_a: " + std::to_string(grad_a) + ", grad_b: " + std::to_string(grad_b);
    fail(where, what);
  }
}

/// D(a, b) for one pair, plus `weight`·∂D into ga/gb when they are given;
/// the built-in softmax divergences also fold in the cross-entropy targets.
template <typename D, typename Scalar>
struct PairResult {
  Scalar divergence = 0;
  Scalar ce_first = 0;
  Scalar ce_second = 0;
};

/// In, Out: the rows' storage; 2-byte rows only for the fused divergences
/// (the others are given widened rows, see StagedRows).
template <typename D, typename In, typename Out, typename Scalar = compute_t<In>>
PairResult<D, Scalar> divergence_pair(const D& d, const In* a, const In* b, Index n, Scalar weight,
                                      const CrossEntropyTarget<Scalar>& ce_a, const CrossEntropyTarget<Scalar>& ce_b,
                                      Out* ga, Out* gb) {
  PairResult<D, Scalar> r;
  if constexpr (softmax_kl_weights<D>::fused) {
    // The fused sweep (rdrop/kernels.hpp); null gradients: values only.
    // The callers loop over pairs at a fixed step: the next pair's rows are
    // predicted from that step and prefetched during this sweep.
    kernels::PairWeights<Scalar> w;
    w.first = ce_a;
    w.second = ce_b;
    w.kl_pq = weight * Scalar(softmax_kl_weights<D>::pq);
    w.kl_qp = weight * Scalar(softmax_kl_weights<D>::qp);
    const kernels::PairValues<Scalar> v = fused_pair(a, b, n, w, ga, gb, predicted_next_pair(a, b, ga, gb));
    r.divergence = softmax_kl_weights<D>::value(v);
    r.ce_first = v.ce_first;
    r.ce_second = v.ce_second;
  } else {
    static_assert(std::is_same_v<In, Scalar> && std::is_same_v<Out, Scalar>, "rdrop: internal: unstaged 2-byte rows");
    const bool want_grad = ga != nullptr;
    Scalar* sa = want_grad ? ga : thread_scratch<Scalar>(n, 0);
    Scalar* sb = want_grad ? gb : thread_scratch<Scalar>(n, 1);
    r.ce_first = cross_entropy_row(a, n, ce_a, sa);
    r.ce_second = cross_entropy_row(b, n, ce_b, sb);
    const ConstRowMap<Scalar> ma(a, n), mb(b, n);
    if (!want_grad) {
      r.divergence = d.EvaluatePair(ma, mb);
    } else if (weight == Scalar(0)) {
      r.divergence = d.EvaluatePair(ma, mb);
    } else {
      RowMap<Scalar> da(thread_scratch<Scalar>(n, 2), n), db(thread_scratch<Scalar>(n, 3), n);
      r.divergence = d.EvaluatePairWithGradient(ma, mb, da, db);
      RowMap<Scalar>(ga, n) += weight * da;
      RowMap<Scalar>(gb, n) += weight * db;
    }
  }
  return r;
}

}  // namespace detail

/// Gives a divergence over pairs of rows the matrix-level API of a loss
/// functor. A divergence derives from PairedDivergence<Itself, Scalar> and
/// defines EvaluatePair and EvaluatePairWithGradient (see is_divergence_v);
/// it then also has, for two logit matrices of equal shape whose row i forms
/// pair i:
///   Scalar Evaluate(first, second);
///   void   Gradient(first, second, grad_first, grad_second);
///   Scalar EvaluateWithGradient(first, second, grad_first, grad_second);
///   void   EvaluatePerRow(first, second, values);
/// reduced by Reduction::Sum or Reduction::Mean (over pairs).
template <typename Derived, typename Scalar>
class PairedDivergence {
  static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                "rdrop: Scalar must be float or double");

 public:
  /// Reduces by the mean over pairs.
  PairedDivergence() = default;
  /// Throws std::invalid_argument for a value that names no Reduction.
  explicit PairedDivergence(Reduction reduction) : reduction_(reduction) {
    detail::check_reduction(reduction, "PairedDivergence::PairedDivergence");
  }

  /// How the per-pair values are reduced to one number.
  Reduction reduction() const { return reduction_; }

  /// The reduced divergence of the pairs (row i of `first`, row i of `second`).
  template <typename XA, typename XB>
  Scalar Evaluate(const XA& first, const XB& second) const {
    return run(first, second, no_grad(), no_grad(), no_values(), "Evaluate");
  }

  /// Writes the gradients of the reduced divergence with respect to both
  /// inputs; each output is resized if it can be, else must match. Each
  /// gradient may be its own input (grad_first = first, grad_second =
  /// second: in place, exact); any other overlap among the four arguments
  /// throws std::invalid_argument.
  template <typename XA, typename XB, typename GA, typename GB>
  void Gradient(const XA& first, const XB& second, GA&& grad_first, GB&& grad_second) const {
    run(first, second, &grad_first, &grad_second, no_values(), "Gradient");
  }

  /// Evaluate and Gradient in one sweep.
  template <typename XA, typename XB, typename GA, typename GB>
  Scalar EvaluateWithGradient(const XA& first, const XB& second, GA&& grad_first,
                              GB&& grad_second) const {
    return run(first, second, &grad_first, &grad_second, no_values(), "EvaluateWithGradient");
  }

  /// The divergence of every pair, unreduced, into `values` (a vector).
  template <typename XA, typename XB, typename V>
  void EvaluatePerRow(const XA& first, const XB& second, V&& values) const {
    run(first, second, no_grad(), no_grad(), &values, "EvaluatePerRow");
  }

 private:
  static detail::RowMajorMatrix<Scalar>* no_grad() { return nullptr; }
  static Eigen::Matrix<Scalar, Eigen::Dynamic, 1>* no_values() { return nullptr; }

  template <typename XA, typename XB, typename GA, typename GB, typename V>
  Scalar run(const XA& first, const XB& second, GA* grad_first, GB* grad_second, V* values,
             const char* where) const {
    static_assert(is_divergence_v<Derived, Scalar>,
                  "rdrop: a PairedDivergence must define EvaluatePair and "
                  "EvaluatePairWithGradient (see rdrop::is_divergence_v)");
    using detail::Index;
    // Storage: Scalar, or for a float divergence bfloat16 / half (both
    // inputs alike, both gradients alike).
    using In = detail::storage_of_t<Scalar, XA>;
    using Out = detail::storage_of_t<Scalar, GA>;
    static_assert(std::is_same_v<In, detail::storage_of_t<Scalar, XB>>,
                  "rdrop: 'first' and 'second' must have the same scalar type");
    static_assert(std::is_same_v<Out, detail::storage_of_t<Scalar, GB>>,
                  "rdrop: 'grad_first' and 'grad_second' must have the same scalar type");
    const detail::RowSource<In> a(first), b(second);
    if (!(a.shape().dims == b.shape().dims) || a.shape().rank != b.shape().rank) {
      detail::fail(where, "arguments 'first' " + a.shape().str() + " and 'second' " +
                              b.shape().str() + " must have the same shape");
    }
    if (a.rows().rows > 0 && a.rows().cols == 0) {
      detail::fail(where, "logits of shape " + a.shape().str() + " have no classes");
    }
    // Check every output before writing any.
    std::optional<detail::RowSink<Out, GA>> sink_a;
    std::optional<detail::RowSink<Out, GB>> sink_b;
    std::optional<detail::ValueSink<Scalar, V>> sink_v;
    if (grad_first) sink_a.emplace(*grad_first, a.shape(), where, "grad_first");
    if (grad_second) sink_b.emplace(*grad_second, a.shape(), where, "grad_second");
    if (grad_first) check_gradient_memory(first, second, *grad_first, *grad_second, where);
    if (values) sink_v.emplace(*values, a.shape().without_classes(), where, "values");

    const Index n = a.rows().rows, c = a.rows().cols;
    const Scalar scale = (reduction_ == Reduction::Mean && n > 0) ? Scalar(1) / Scalar(n) : Scalar(1);
    detail::Rows<Out> ga{}, gb{};
    if (sink_a) {
      ga = sink_a->open();
      gb = sink_b->open();
    }
    Scalar* out_values = sink_v ? sink_v->open() : nullptr;
    std::vector<Scalar> per_pair(static_cast<std::size_t>(n));
    const Derived& self = static_cast<const Derived&>(*this);
    const detail::CrossEntropyTarget<Scalar> none{};
    // Gradients over their own inputs (in place): the fused sweep handles
    // that itself; other divergences read their rows from copies.
    constexpr bool fused = detail::softmax_kl_weights<Derived>::fused;
    const auto same = [](const void* x, const void* y) { return x == y; };
    const bool copy = sink_a && !fused && (same(ga.data, a.rows().data) || same(gb.data, b.rows().data));
    const detail::StagedRows<Scalar, In, Out> staged(c);
    detail::parallel_ranges(n, n * c, 0, [&](Index begin, Index end) {
      for (Index i = begin; i < end; ++i) {
        Out* const row_a = sink_a ? ga.row(i) : nullptr;
        Out* const row_b = sink_a ? gb.row(i) : nullptr;
        Scalar& value = per_pair[static_cast<std::size_t>(i)];
        if constexpr (fused) {
          // The fused sweep reads 2-byte rows itself and is exact in place.
          value = detail::divergence_pair(self, a.rows().row(i), b.rows().row(i), c, scale, none, none, row_a, row_b)
                      .divergence;
        } else {
          Scalar* const sa = staged.gradient(row_a, 0);
          Scalar* const sb = staged.gradient(row_b, 1);
          value = detail::divergence_pair(self, staged.read(a.rows().row(i), 0, copy),
                                          staged.read(b.rows().row(i), 1, copy), c, scale, none, none, sa, sb)
                      .divergence;
          staged.write(sa, row_a);
          staged.write(sb, row_b);
        }
      }
    });
    if (out_values) std::copy(per_pair.begin(), per_pair.end(), out_values);
    if (sink_a) {
      sink_a->close();
      sink_b->close();
    }
    if (sink_v) sink_v->close();
    return scale * detail::ordered_sum(per_pair);
  }

  /// grad_first may be `first` itself and grad_second `second` itself (in
  /// place, exact); every other overlap among the four throws.
  template <typename XA, typename XB, typename GA, typename GB>
  static void check_gradient_memory(const XA& first, const XB& second, const GA& grad_first, const GB& grad_second,
                                    const char* where) {
    const detail::Footprint fa = detail::footprint_of(first), fb = detail::footprint_of(second);
    const detail::Footprint ga = detail::footprint_of(grad_first), gb = detail::footprint_of(grad_second);
    detail::check_disjoint(gb, ga, where, "grad_second", "grad_first");
    detail::check_disjoint(ga, fb, where, "grad_first", "second");
    detail::check_disjoint(gb, fa, where, "grad_second", "first");
    detail::check_in_place(ga, fa, where, "grad_first", "first");
    detail::check_in_place(gb, fb, where, "grad_second", "second");
  }

  Reduction reduction_ = Reduction::Mean;
};

}  // namespace rdrop
