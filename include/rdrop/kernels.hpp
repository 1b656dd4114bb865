/// \file
/// Low-level fused kernels on raw pointers: the paired symmetric KL (value
/// and both gradients) and the whole R-Drop pair sweep (cross-entropy on both
/// copies + weighted KL, both gradients), one pair or many pairs with row
/// strides. The Eigen-facing functors (SymmetricKL, KLDivergence, RDropLoss)
/// run on these; use them directly when your logits live in your own buffers.
///
/// Conventions shared by every kernel here:
///  - a pair is two logit rows a (first copy) and b (second copy) of the same
///    length `classes`, classes contiguous; p = softmax(a), q = softmax(b);
///  - row i of a batch starts at base + i·stride (stride ≥ classes); a
///    gradient row may be its own input row (grad_a = a, grad_b = b: in
///    place, bitwise the out-of-place result), and may not otherwise overlap
///    inputs or other gradient rows;
///  - everything is computed from logits (two exp per element, one log per
///    row, no log of a probability); float or double; in float, the symmetric
///    KL, the cross-entropies and the gradients stay within 1e-5 relative of
///    a double computation up to 32000 classes (tests/test_kernels.cpp); each
///    KL direction alone carries an absolute error of a few float ε;
///  - −inf logits are valid: a class at −inf in both rows contributes exactly
///    0, at −inf in one row only it makes the divergence +inf (its true value);
///  - gradient pointers may be null together: values only, no gradient pass;
///  - rows may also be stored as Eigen::bfloat16 or Eigen::half (logits and
///    gradients alike): the kernels then compute in float, widening each
///    element as it is loaded and rounding each gradient element once, to
///    nearest even, as it is stored; values and gradients are bitwise those
///    of the float kernel on the widened rows, the gradient then rounded
///    (rdrop/detail/storage.hpp);
///  - batches run in parallel over pairs when built with OpenMP (`threads`: 0
///    = rdrop::set_num_threads's value), and the results are bitwise identical
///    for any thread count: each pair is computed the same way whichever
///    thread runs it, and per-pair values are summed in pair order.
#pragma once

#include "rdrop/detail/parallel.hpp"
#include "rdrop/detail/softmax_kernels.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <vector>

/// \namespace rdrop::kernels
/// The fused R-Drop sweeps on raw pointers with row strides, for code that
/// holds its logits outside Eigen.
namespace rdrop::kernels {

/// Sizes, counts and strides: Eigen's index type (std::ptrdiff_t).
using Index = Eigen::Index;

namespace detail_ {
// Keeps an argument out of template deduction, so that `nullptr` or a
// double literal can be passed where Scalar* or Scalar is expected.
template <typename T>
struct non_deduced {
  using type = T;
};
template <typename T>
using non_deduced_t = typename non_deduced<T>::type;
}  // namespace detail_

/// A row's cross-entropy target: label (< 0: none), smoothing ε (target
/// (1 − ε)·onehot + ε/C) and the weight of its gradient.
template <typename Scalar>
using CrossEntropyTarget = detail::CrossEntropyTarget<Scalar>;

/// What the pair sweep puts into the gradients: both rows' cross-entropy
/// targets and the weights of ∂KL(p‖q) and ∂KL(q‖p). A zero weight drops that
/// term entirely (its infinities cannot turn into NaN).
template <typename Scalar>
using PairWeights = detail::SoftmaxPairWeights<Scalar>;

/// What the pair sweep returns: ce_first, ce_second (0 without a label),
/// kl_pq = KL(p‖q), kl_qp = KL(q‖p) and symmetric = ½[kl_pq + kl_qp].
template <typename Scalar>
using PairValues = detail::SoftmaxPairValues<Scalar>;

/// Rows of the pair you will sweep after this one (a, b, grad_a, grad_b;
/// any may be null): rdrop_pair prefetches them while it computes, so that
/// their memory traffic overlaps its arithmetic. The batch kernels below
/// pass it themselves.
template <typename T>
using NextPair = detail::NextPair<T>;

/// Element types the kernels read and write: float, double, Eigen::bfloat16
/// and Eigen::half (the last two computed in float).
template <typename T>
inline constexpr bool is_kernel_type_v =
    std::is_same_v<T, float> || std::is_same_v<T, double> || detail::is_two_byte_v<T>;

/// What the kernels compute in for rows of T: float for the 2-byte types.
template <typename T>
using compute_t = detail::compute_t<T>;

/// The fused R-Drop sweep of one pair: both cross-entropies, both KL
/// directions, and, into grad_a / grad_b (length `classes`, or both null),
///   grad_a = w.kl_pq·p⊙(d − KL(p‖q)) + w.kl_qp·(p − q) + w_a·(p − t_a)
///   grad_b = w.kl_pq·(q − p) + w.kl_qp·q⊙(−d − KL(q‖p)) + w_b·(q − t_b)
/// with d = log p − log q, t the smoothed one-hot targets and w_a, w_b the
/// targets' weights (0 for a row without a label). For the R-Drop loss
/// CE(a) + CE(b) + α·½[KL(p‖q) + KL(q‖p)] use kl_pq = kl_qp = α/2, weights 1.
template <typename T, typename Scalar = compute_t<T>>
PairValues<Scalar> rdrop_pair(const T* a, const T* b, Index classes,
                              const detail_::non_deduced_t<PairWeights<Scalar>>& weights,
                              detail_::non_deduced_t<T>* grad_a, detail_::non_deduced_t<T>* grad_b,
                              const detail_::non_deduced_t<NextPair<T>>& next = {}) {
  static_assert(is_kernel_type_v<T>, "rdrop::kernels: rows must be float, double, Eigen::bfloat16 or Eigen::half");
  return detail::fused_pair(a, b, classes, weights, grad_a, grad_b, next);
}

/// S = ½[KL(p‖q) + KL(q‖p)] of one pair of logit rows; when grad_a and
/// grad_b are given, writes grad_scale·∂S/∂a and grad_scale·∂S/∂b:
///   ∂S/∂a = ½[p⊙(d − KL(p‖q)) + p − q],   ∂S/∂b = ½[q⊙(−d − KL(q‖p)) + q − p].
template <typename T, typename Scalar = compute_t<T>>
Scalar symmetric_kl_pair(const T* a, const T* b, Index classes, detail_::non_deduced_t<T>* grad_a,
                         detail_::non_deduced_t<T>* grad_b, detail_::non_deduced_t<Scalar> grad_scale = Scalar(1)) {
  PairWeights<Scalar> w;
  w.kl_pq = w.kl_qp = Scalar(0.5) * grad_scale;
  return rdrop_pair(a, b, classes, w, grad_a, grad_b).symmetric;
}

namespace detail_ {
/// Runs sweep(i, next) for every pair i of [0, pairs) over the threads, where
/// next points at the rows of the pair the same thread sweeps after i.
template <typename T, typename Sweep>
void for_each_pair(Index pairs, Index classes, const T* a, Index a_stride, const T* b, Index b_stride, T* grad_a,
                   Index grad_a_stride, T* grad_b, Index grad_b_stride, int threads, Sweep&& sweep) {
  rdrop::detail::parallel_ranges(pairs, 2 * pairs * classes, threads, [&](Index begin, Index end) {
    for (Index i = begin; i < end; ++i) {
      NextPair<T> next;
      if (i + 1 < end) {
        next.a = a + (i + 1) * a_stride;
        next.b = b + (i + 1) * b_stride;
        if (grad_a) {
          next.grad_a = grad_a + (i + 1) * grad_a_stride;
          next.grad_b = grad_b + (i + 1) * grad_b_stride;
        }
      }
      sweep(i, next);
    }
  });
}
}  // namespace detail_

/// Σ_i S_i over `pairs` pairs, pair i being the rows a + i·a_stride and
/// b + i·b_stride; writes grad_scale·∂S_i into the rows grad_a + i·grad_a_stride
/// and grad_b + i·grad_b_stride (both null: values only), and S_i into
/// values[i] when `values` is given. For the mean over pairs pass
/// grad_scale = 1/pairs and divide the result by pairs.
template <typename T, typename Scalar = compute_t<T>>
Scalar symmetric_kl_pairs(Index pairs, Index classes, const T* a, Index a_stride, const T* b, Index b_stride,
                          detail_::non_deduced_t<T>* grad_a, Index grad_a_stride, detail_::non_deduced_t<T>* grad_b,
                          Index grad_b_stride, detail_::non_deduced_t<Scalar> grad_scale = Scalar(1),
                          detail_::non_deduced_t<Scalar>* values = nullptr, int threads = 0) {
  static_assert(is_kernel_type_v<T>, "rdrop::kernels: rows must be float, double, Eigen::bfloat16 or Eigen::half");
  if (pairs <= 0 || classes <= 0) return Scalar(0);
  std::vector<Scalar> per_pair(static_cast<std::size_t>(pairs));
  PairWeights<Scalar> w;
  w.kl_pq = w.kl_qp = Scalar(0.5) * grad_scale;
  detail_::for_each_pair(
      pairs, classes, a, a_stride, b, b_stride, grad_a, grad_a_stride, grad_b, grad_b_stride,
      threads, [&](Index i, const NextPair<T>& next) {
        per_pair[static_cast<std::size_t>(i)] =
            rdrop_pair(a + i * a_stride, b + i * b_stride, classes, w,
                       grad_a ? grad_a + i * grad_a_stride : nullptr,
                       grad_b ? grad_b + i * grad_b_stride : nullptr, next)
                .symmetric;
      });
  if (values) std::copy(per_pair.begin(), per_pair.end(), values);
  return rdrop::detail::ordered_sum(per_pair);
}

/// Settings of rdrop_pairs.
template <typename Scalar>
struct RDropPairsOptions {
  /// Weight of every labeled row's cross-entropy (e.g. 1 / labeled rows).
  Scalar ce_weight = Scalar(1);
  /// Weight of every pair's symmetric KL S_i (e.g. α, or α/2 / pairs for
  /// the Keras code form).
  Scalar kl_weight = Scalar(1);
  /// ε in [0, 1) of the cross-entropy targets.
  Scalar label_smoothing = Scalar(0);
  /// Threads for the sweep; 0 uses rdrop::set_num_threads's value.
  int threads = 0;
};

/// Sums returned by rdrop_pairs, each in pair order.
template <typename Scalar>
struct RDropPairsSums {
  Scalar cross_entropy = 0;  ///< Σ over labeled rows of CE
  Scalar symmetric_kl = 0;   ///< Σ over pairs of S_i
  Scalar loss = 0;           ///< ce_weight·cross_entropy + kl_weight·symmetric_kl
};

/// The whole R-Drop loss of `pairs` pairs in one fused sweep per pair:
///   loss = ce_weight·Σ_i [CE(a_i, y_a[i]) + CE(b_i, y_b[i])] + kl_weight·Σ_i S_i
/// and its gradient with respect to every row of both copies (neither copy
/// is detached) into grad_a / grad_b (both null: values only). labels_a[i]
/// and labels_b[i] are class indices; a negative label (or a null labels
/// pointer) means no cross-entropy for that row. values[i], when given,
/// receives pair i's PairValues. Labels are not range-checked here: they
/// must be < classes (the functors check them).
template <typename T, typename Scalar = compute_t<T>>
RDropPairsSums<Scalar> rdrop_pairs(Index pairs, Index classes, const T* a, Index a_stride, const T* b,
                                   Index b_stride, const Index* labels_a, const Index* labels_b,
                                   detail_::non_deduced_t<T>* grad_a, Index grad_a_stride,
                                   detail_::non_deduced_t<T>* grad_b, Index grad_b_stride,
                                   const detail_::non_deduced_t<RDropPairsOptions<Scalar>>& options = {},
                                   detail_::non_deduced_t<PairValues<Scalar>>* values = nullptr) {
  static_assert(is_kernel_type_v<T>, "rdrop::kernels: rows must be float, double, Eigen::bfloat16 or Eigen::half");
  RDropPairsSums<Scalar> sums;
  if (pairs <= 0 || classes <= 0) return sums;
  std::vector<Scalar> ce(static_cast<std::size_t>(pairs)), kl(static_cast<std::size_t>(pairs));
  detail_::for_each_pair(
      pairs, classes, a, a_stride, b, b_stride, grad_a, grad_a_stride, grad_b, grad_b_stride,
      options.threads, [&](Index i, const NextPair<T>& next) {
        PairWeights<Scalar> w;
        w.first = {labels_a ? labels_a[i] : -1, options.label_smoothing, options.ce_weight};
        w.second = {labels_b ? labels_b[i] : -1, options.label_smoothing, options.ce_weight};
        w.kl_pq = w.kl_qp = Scalar(0.5) * options.kl_weight;
        const PairValues<Scalar> v =
            rdrop_pair(a + i * a_stride, b + i * b_stride, classes, w,
                       grad_a ? grad_a + i * grad_a_stride : nullptr,
                       grad_b ? grad_b + i * grad_b_stride : nullptr, next);
        ce[static_cast<std::size_t>(i)] = v.ce_first + v.ce_second;
        kl[static_cast<std::size_t>(i)] = v.symmetric;
        if (values) values[i] = v;
      });
  sums.cross_entropy = rdrop::detail::ordered_sum(ce);
  sums.symmetric_kl = rdrop::detail::ordered_sum(kl);
  sums.loss = options.ce_weight * sums.cross_entropy + options.kl_weight * sums.symmetric_kl;
  return sums;
}

}  // namespace rdrop::kernels
