// Row kernels for softmax outputs: log-sum-exp, cross-entropy and the fused
// paired sweep (two log-sum-exps, both KL directions, cross-entropy on both
// copies and both gradient rows). Everything is computed from logits: one
// exp per element and copy, one log per row, no log of a probability.
#pragma once

#include "rdrop/detail/packet.hpp"

#include <Eigen/Core>

#include <cmath>
#include <limits>

namespace rdrop::detail {

template <typename Scalar>
struct ShiftedExp {
  Scalar lse;      ///< log Σ exp(x)
  Scalar inv_sum;  ///< 1 / Σ exp(x − max): turns the stored exps into softmax
  Scalar max;      ///< max x
  Scalar log_sum;  ///< log Σ exp(x − max), so lse = max + log_sum
};

/// Writes e_j = exp(x_j − max x) and returns the row's log-sum-exp.
/// A row of all −inf has no distribution and yields NaN, as in PyTorch.
template <typename Scalar>
ShiftedExp<Scalar> shifted_exp(const Scalar* x, Eigen::Index n, Scalar* e) {
  const Scalar m = Eigen::Map<const Eigen::Array<Scalar, 1, Eigen::Dynamic>>(x, n).maxCoeff();
  SumAccumulator<Scalar> sum;
  for_each_packet<Scalar>(n, [&](auto tag, Eigen::Index j) {
    using P = decltype(tag);
    const P xj = load<P>(x + j);
    // Eigen's pexp clamps its argument, so exp(-inf) comes out as a tiny
    // positive number; masked classes must have probability exactly 0.
    const P v = pm::pandnot(pm::pexp(pm::psub(xj, pm::pset1<P>(m))),
                            pm::pcmp_eq(xj, pm::pset1<P>(-std::numeric_limits<Scalar>::infinity())));
    store(e + j, v);
    sum.add(v);
  });
  const Scalar s = sum.total();
  const Scalar log_s = std::log(s);
  return {m + log_s, Scalar(1) / s, m, log_s};
}

/// Σ_j x_j, needed only for the label-smoothing term.
template <typename Scalar>
Scalar row_sum(const Scalar* x, Eigen::Index n) {
  return Eigen::Map<const Eigen::Array<Scalar, 1, Eigen::Dynamic>>(x, n).sum();
}

/// What the cross-entropy of one row needs besides its log-sum-exp.
template <typename Scalar>
struct CrossEntropyTarget {
  Eigen::Index label = -1;  ///< < 0: the row carries no label
  Scalar smoothing = 0;     ///< ε: target (1−ε)·onehot + ε/C
  Scalar weight = 0;        ///< scale of this row's gradient
};

/// CE of a row, written as (1−ε)(lse − x_y) + ε(lse − mean x): both parts
/// are non-negative, so nothing cancels; lse − x_y is taken as
/// (max − x_y) + log_sum so that logits near 1e4 do not round it in float.
template <typename Scalar>
Scalar cross_entropy_value(const Scalar* x, Eigen::Index n, const ShiftedExp<Scalar>& se,
                           const CrossEntropyTarget<Scalar>& t) {
  if (t.label < 0) return Scalar(0);
  Scalar ce = (Scalar(1) - t.smoothing) * ((se.max - x[t.label]) + se.log_sum);
  if (t.smoothing != Scalar(0)) {
    ce += t.smoothing * ((se.max - row_sum(x, n) / static_cast<Scalar>(n)) + se.log_sum);
  }
  return ce;
}

/// Cross-entropy of one row. When `grad` is not null it must hold the row's
/// shifted exps (from shifted_exp) and receives weight · (softmax − target).
template <typename Scalar>
Scalar cross_entropy_row(const Scalar* x, Eigen::Index n, const CrossEntropyTarget<Scalar>& t,
                         Scalar* e_then_grad) {
  const ShiftedExp<Scalar> se = shifted_exp(x, n, e_then_grad);
  const Scalar value = cross_entropy_value(x, n, se, t);
  Eigen::Map<Eigen::Array<Scalar, 1, Eigen::Dynamic>> g(e_then_grad, n);
  if (t.label < 0 || t.weight == Scalar(0)) {
    g.setZero();
  } else {
    g = g * (t.weight * se.inv_sum) - t.weight * t.smoothing / static_cast<Scalar>(n);
    g(t.label) -= t.weight * (Scalar(1) - t.smoothing);
  }
  return value;
}

/// Values of one pair of softmax rows p = softmax(a), q = softmax(b).
template <typename Scalar>
struct SoftmaxPairValues {
  Scalar ce_first = 0;
  Scalar ce_second = 0;
  Scalar kl_pq = 0;      ///< KL(p‖q)
  Scalar kl_qp = 0;      ///< KL(q‖p)
  Scalar symmetric = 0;  ///< ½[KL(p‖q) + KL(q‖p)]
};

/// Gradient weights of one pair; a zero-weight KL direction is compiled out
/// (see softmax_pair) so that its infinities cannot turn into NaN.
template <typename Scalar>
struct SoftmaxPairWeights {
  CrossEntropyTarget<Scalar> first;
  CrossEntropyTarget<Scalar> second;
  Scalar kl_pq = 0;
  Scalar kl_qp = 0;
};

/// The fused paired sweep. `ga` and `gb` (length n, never null) first receive
/// the shifted exps of a and b, then the gradients
///   ga = w_pq·p⊙(d − KL(p‖q)) + w_qp·(p − q) + w_a·(p − t_a)
///   gb = w_pq·(q − p) + w_qp·q⊙(−d − KL(q‖p)) + w_b·(q − t_b)
/// with d = log p − log q. Passes over the pair: max, exp (two exps per
/// element), sums, gradient; a row of 32k floats stays in L2 between them.
/// Classes at −inf in both rows contribute exactly 0; at −inf in one row
/// only they make the KL that divides by it +inf, its true value.
template <bool WithPQ, bool WithQP, typename Scalar>
SoftmaxPairValues<Scalar> softmax_pair(const Scalar* a, const Scalar* b, Eigen::Index n,
                                       const SoftmaxPairWeights<Scalar>& w, Scalar* ga,
                                       Scalar* gb) {
  const ShiftedExp<Scalar> sa = shifted_exp(a, n, ga);
  const ShiftedExp<Scalar> sb = shifted_exp(b, n, gb);
  // log p − log q = (a − b) − gap; the gap is formed from the maxima and the
  // O(1) log-sums, not from two log-sum-exps already rounded at |x| ~ 1e4.
  const Scalar lse_gap = (sa.max - sb.max) + (sa.log_sum - sb.log_sum);

  // p·d, q·d and (p − q)·d vanish where the probability (or the difference)
  // is exactly 0; masking keeps −inf − −inf = NaN out of them. The KL sums
  // carry + (q − p) and + (p − q): they add 0 in exact arithmetic and make
  // every term non-negative, so small divergences keep their digits.
  SumAccumulator<Scalar> acc_pq, acc_qp, acc_sym;
  for_each_packet<Scalar>(n, [&](auto tag, Eigen::Index j) {
    using P = decltype(tag);
    const P zero = pm::pset1<P>(Scalar(0));
    const P p = pm::pmul(load<P>(ga + j), pm::pset1<P>(sa.inv_sum));
    const P q = pm::pmul(load<P>(gb + j), pm::pset1<P>(sb.inv_sum));
    const P d = pm::psub(pm::psub(load<P>(a + j), load<P>(b + j)), pm::pset1<P>(lse_gap));
    const P p_minus_q = pm::psub(p, q);
    acc_sym.add(pm::pandnot(pm::pmul(p_minus_q, d), pm::pcmp_eq(p, q)));
    if constexpr (WithPQ) {
      acc_pq.add(pm::psub(keep_if(pm::pcmp_lt(zero, p), pm::pmul(p, d)), p_minus_q));
    }
    if constexpr (WithQP) {
      acc_qp.add(pm::padd(keep_if(pm::pcmp_lt(zero, q), pm::pnegate(pm::pmul(q, d))), p_minus_q));
    }
  });

  SoftmaxPairValues<Scalar> v;
  v.symmetric = Scalar(0.5) * acc_sym.total();
  v.kl_pq = WithPQ ? acc_pq.total() : Scalar(0);
  v.kl_qp = WithQP ? acc_qp.total() : Scalar(0);
  v.ce_first = cross_entropy_value(a, n, sa, w.first);
  v.ce_second = cross_entropy_value(b, n, sb, w.second);

  const Scalar wa = w.first.label < 0 ? Scalar(0) : w.first.weight;
  const Scalar wb = w.second.label < 0 ? Scalar(0) : w.second.weight;
  const Scalar inv_c = Scalar(1) / static_cast<Scalar>(n);
  const Scalar shift_a = wa * w.first.smoothing * inv_c;
  const Scalar shift_b = wb * w.second.smoothing * inv_c;
  const Scalar kl_pq = v.kl_pq;
  const Scalar kl_qp = v.kl_qp;
  for_each_packet<Scalar>(n, [&](auto tag, Eigen::Index j) {
    using P = decltype(tag);
    const P zero = pm::pset1<P>(Scalar(0));
    const P p = pm::pmul(load<P>(ga + j), pm::pset1<P>(sa.inv_sum));
    const P q = pm::pmul(load<P>(gb + j), pm::pset1<P>(sb.inv_sum));
    P out_a = pm::psub(pm::pmul(pm::pset1<P>(wa), p), pm::pset1<P>(shift_a));
    P out_b = pm::psub(pm::pmul(pm::pset1<P>(wb), q), pm::pset1<P>(shift_b));
    if constexpr (WithPQ || WithQP) {
      const P d = pm::psub(pm::psub(load<P>(a + j), load<P>(b + j)), pm::pset1<P>(lse_gap));
      const P p_minus_q = pm::psub(p, q);
      if constexpr (WithPQ) {
        const P own = keep_if(pm::pcmp_lt(zero, p), pm::pmul(p, pm::psub(d, pm::pset1<P>(kl_pq))));
        out_a = pm::pmadd(pm::pset1<P>(w.kl_pq), own, out_a);
        out_b = pm::psub(out_b, pm::pmul(pm::pset1<P>(w.kl_pq), p_minus_q));
      }
      if constexpr (WithQP) {
        const P own = keep_if(pm::pcmp_lt(zero, q),
                              pm::pnegate(pm::pmul(q, pm::padd(d, pm::pset1<P>(kl_qp)))));
        out_b = pm::pmadd(pm::pset1<P>(w.kl_qp), own, out_b);
        out_a = pm::pmadd(pm::pset1<P>(w.kl_qp), p_minus_q, out_a);
      }
    }
    store(ga + j, out_a);
    store(gb + j, out_b);
  });
  if (wa != Scalar(0)) ga[w.first.label] -= wa * (Scalar(1) - w.first.smoothing);
  if (wb != Scalar(0)) gb[w.second.label] -= wb * (Scalar(1) - w.second.smoothing);
  return v;
}

}  // namespace rdrop::detail
