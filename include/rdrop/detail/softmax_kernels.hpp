// Row kernels for softmax outputs: log-sum-exp, cross-entropy and the fused
// paired sweep (two log-sum-exps, both KL directions, cross-entropy on both
// copies and both gradient rows). Everything is computed from logits: one
// exp per element and copy, one log per row, no log of a probability.
// The public, documented entry points are in rdrop/kernels.hpp.
#pragma once

#include "rdrop/detail/packet.hpp"
#include "rdrop/detail/parallel.hpp"
#include "rdrop/detail/storage.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace rdrop::detail {

/// Per-row scalar work (log-sum-exps, gaps, gradient constants) runs in
/// double for float rows: it is O(1) per row and saves float digits where
/// nearly equal quantities are subtracted.
template <typename Scalar>
using Wide = std::conditional_t<std::is_same_v<Scalar, float>, double, Scalar>;

template <typename Scalar>
struct ShiftedExp {
  Scalar inv_sum;        ///< 1 / Σ exp(x − max): turns the stored exps into softmax
  Scalar shift;          ///< the max, by which the exps are shifted
  Wide<Scalar> log_sum;  ///< log Σ exp(x − shift): the log-sum-exp is shift + log_sum
};

/// Writes e_j = exp(x_j − max x) and returns what the row's log-sum-exp and
/// softmax need.
/// A row of all −inf has no distribution and yields NaN, as in PyTorch.
template <typename Scalar>
ShiftedExp<Scalar> shifted_exp(const Scalar* x, Eigen::Index n, Scalar* e) {
  const Scalar m = Eigen::Map<const Eigen::Array<Scalar, 1, Eigen::Dynamic>>(x, n).maxCoeff();
  SumAccumulator<Scalar> sum;
  for_each_packet<Scalar>(
      n,
      [&](auto tag, Eigen::Index j) {
        using P = decltype(tag);
        const P v = pm::pexp(pm::psub(load<P>(x + j), pm::pset1<P>(m)));
        store(e + j, v);
        sum.add(v);
      },
      [&] { sum.flush(); });
  const Scalar s = sum.total();
  const Wide<Scalar> log_sum = std::log(Wide<Scalar>(s));
  return {Scalar(1) / s, m, log_sum};
}

/// Σ_j (x_j − shift), needed only for the label-smoothing term. Shifted like
/// the exps: for large logits Σ x would round away the few units by which
/// the log-sum-exp exceeds the mean.
template <typename Scalar>
Scalar shifted_row_sum(const Scalar* x, Eigen::Index n, Scalar shift) {
  SumAccumulator<Scalar> sum;
  for_each_packet<Scalar>(
      n,
      [&](auto tag, Eigen::Index j) {
        using P = decltype(tag);
        sum.add(pm::psub(load<P>(x + j), pm::pset1<P>(shift)));
      },
      [&] { sum.flush(); });
  return sum.total();
}

/// What the cross-entropy of one row needs besides its log-sum-exp.
template <typename Scalar>
struct CrossEntropyTarget {
  Eigen::Index label = -1;  ///< < 0: the row carries no label
  Scalar smoothing = 0;     ///< ε: target (1−ε)·onehot + ε/C
  Scalar weight = 0;        ///< scale of this row's gradient
};

/// CE of a row whose log-sum-exp is shift + log_sum, with shifted_sum =
/// Σ (x − shift) (read only when ε ≠ 0), written as
/// (1−ε)(lse − x_y) + ε(lse − mean x), each part relative to the shift:
///   lse − x_y    = log_sum − (x_y − shift)
///   lse − mean x = log_sum − shifted_sum / C.
/// Both parts are ≥ 0 (lse ≥ max x ≥ mean x), so nothing cancels, and the
/// shift keeps them from being rounded at the scale of the logits (all
/// logits 1e30: lse − mean x = log C, not ±1e14). What rounding still leaves
/// below 0 is clamped: a cross-entropy is never negative. (NaN stays NaN.)
template <typename In, typename Scalar = compute_t<In>>
Scalar cross_entropy_from(const In* x, Eigen::Index n, Scalar shift, Wide<Scalar> log_sum,
                          Wide<Scalar> shifted_sum, const CrossEntropyTarget<Scalar>& t) {
  using W = Wide<Scalar>;
  if (t.label < 0) return Scalar(0);
  const auto non_negative = [](W v) { return v < W(0) ? W(0) : v; };
  W ce = (W(1) - W(t.smoothing)) * non_negative(log_sum - (W(widen(x[t.label])) - W(shift)));
  if (t.smoothing != Scalar(0)) ce += W(t.smoothing) * non_negative(log_sum - shifted_sum / static_cast<W>(n));
  return static_cast<Scalar>(ce);
}

/// CE of a row with the shifted exps `se` (from shifted_exp).
template <typename Scalar>
Scalar cross_entropy_value(const Scalar* x, Eigen::Index n, const ShiftedExp<Scalar>& se,
                           const CrossEntropyTarget<Scalar>& t) {
  if (t.label < 0) return Scalar(0);
  const Wide<Scalar> sum = t.smoothing != Scalar(0) ? Wide<Scalar>(shifted_row_sum(x, n, se.shift)) : 0;
  return cross_entropy_from(x, n, se.shift, se.log_sum, sum, t);
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
  Scalar ce_first = 0;   ///< CE(a, first target), 0 without a label
  Scalar ce_second = 0;  ///< CE(b, second target), 0 without a label
  Scalar kl_pq = 0;      ///< KL(p‖q)
  Scalar kl_qp = 0;      ///< KL(q‖p)
  Scalar symmetric = 0;  ///< ½[KL(p‖q) + KL(q‖p)]
};

/// Gradient weights of one pair. A zero KL weight removes that direction
/// from the gradient entirely, so its infinities cannot turn into NaN.
template <typename Scalar>
struct SoftmaxPairWeights {
  CrossEntropyTarget<Scalar> first;
  CrossEntropyTarget<Scalar> second;
  Scalar kl_pq = 0;
  Scalar kl_qp = 0;
};

/// Rows of the pair swept after this one (null: none known). The sweep
/// prefetches them while it computes, so that the next pair's memory traffic
/// overlaps this pair's arithmetic.
template <typename In, typename Out = In>
struct NextPair {
  const In* a = nullptr;
  const In* b = nullptr;
  Out* grad_a = nullptr;
  Out* grad_b = nullptr;
};

/// For sweeps called pair after pair without telling which pair comes next
/// (the functors' loops): the pair one step further along, where the step
/// between this call's rows and the previous call's on the same thread was
/// the same twice in a row (a software stride prefetcher). A wrong guess
/// only costs useless prefetches: prefetching never faults.
template <typename In, typename Out>
NextPair<In, Out> predicted_next_pair(const In* a, const In* b, Out* ga, Out* gb) {
  using U = std::uintptr_t;
  struct Record {
    U rows[4] = {0, 0, 0, 0};
    U steps[4] = {0, 0, 0, 0};
  };
  thread_local Record last;
  const U now[4] = {reinterpret_cast<U>(a), reinterpret_cast<U>(b), reinterpret_cast<U>(ga),
                    reinterpret_cast<U>(gb)};
  const int rows = ga != nullptr ? 4 : 2;
  bool steady = true;
  U steps[4] = {0, 0, 0, 0};
  for (int i = 0; i < rows; ++i) {
    steps[i] = now[i] - last.rows[i];
    steady = steady && steps[i] == last.steps[i] && steps[i] != 0;
    last.rows[i] = now[i];
    last.steps[i] = steps[i];
  }
  NextPair<In, Out> next;
  if (steady) {
    next.a = reinterpret_cast<const In*>(now[0] + steps[0]);
    next.b = reinterpret_cast<const In*>(now[1] + steps[1]);
    if (ga != nullptr) {
      next.grad_a = reinterpret_cast<Out*>(now[2] + steps[2]);
      next.grad_b = reinterpret_cast<Out*>(now[3] + steps[3]);
    }
  }
  return next;
}

namespace pair_sweep {

// Each pass is an explicit loop over full packets with its accumulators in
// local variables, so that they live in registers (a lambda capturing them
// by reference left them in memory, behind stores that may alias them),
// then the row's last partial packet, padded (see PaddedTail), through the
// same per-packet arithmetic. Sums are blocked (see kBlockPackets).

template <typename Scalar>
EIGEN_STRONG_INLINE Eigen::Index block_end(Eigen::Index start, Eigen::Index full) {
  return std::min(full, start + kBlockPackets * packet_size<Scalar>);
}

/// Up to four rows to pull into L1 during the exps pass, one line per
/// packet. Read prefetches serve the rows about to be written too: a line no
/// other core holds arrives exclusive, and the write needs no second trip.
struct Prefetch {
  const char* rows[4] = {nullptr, nullptr, nullptr, nullptr};
  Eigen::Index element[4] = {0, 0, 0, 0};  ///< bytes per element of each row
  int count = 0;

  template <typename T>
  void add(const T* row) {
    if (row != nullptr && count < 4) {
      rows[count] = reinterpret_cast<const char*>(row);
      element[count++] = static_cast<Eigen::Index>(sizeof(T));
    }
  }

  template <int Rows>
  EIGEN_STRONG_INLINE void at(Eigen::Index j) const {
    for (int r = 0; r < Rows; ++r) {
#if defined(__GNUC__) || defined(__clang__)
      __builtin_prefetch(rows[r] + j * element[r], 0, 3);
#else
      (void)j;
#endif
    }
  }
};

/// Calls f(std::integral_constant<int, rows>{}) for the prefetch plans in
/// use (0, 2 or 4 rows), so that each runs a compile-time variant.
template <typename F>
EIGEN_STRONG_INLINE decltype(auto) with_rows(int rows, F&& f) {
  if (rows >= 4) return f(std::integral_constant<int, 4>{});
  if (rows >= 2) return f(std::integral_constant<int, 2>{});
  return f(std::integral_constant<int, 0>{});
}

/// exp(x) for the sweep, whose arguments are logits minus a shift: Eigen's
/// exp, except for 16 floats under AVX-512, where the same Cephes
/// polynomial is scaled by 2^m with one VSCALEFPS instead of Eigen's clamps
/// and integer exponent arithmetic (14 instructions instead of 25; the
/// exps are most of the sweep's arithmetic). Same accuracy: the reduction
/// and polynomial are Eigen's; scalef rounds subnormal results correctly,
/// gives +inf above the float range and 0 far below it, and keeps NaN.
template <typename X>
EIGEN_ALWAYS_INLINE X sweep_exp(const X& x) {
#if defined(EIGEN_VECTORIZE_AVX512)
  if constexpr (std::is_same_v<typename pm::unpacket_traits<X>::type, float> && lanes_of<X> == 16) {
    // Clamped to [-104, 128] (exp is 0 below, inf above), NaN kept:
    // VMAXPS/VMINPS return their second operand when either is NaN.
    const __m512 c = _mm512_min_ps(_mm512_set1_ps(128.f), _mm512_max_ps(_mm512_set1_ps(-104.f), x));
    const __m512 m = _mm512_roundscale_ps(_mm512_mul_ps(c, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 r = _mm512_fmadd_ps(m, _mm512_set1_ps(-0.6931471805599453f), c);
    const __m512 r2 = _mm512_mul_ps(r, r);
    const __m512 r3 = _mm512_mul_ps(r2, r);
    __m512 y = _mm512_fmadd_ps(_mm512_set1_ps(1.9875691500E-4f), r, _mm512_set1_ps(1.3981999507E-3f));
    __m512 y1 = _mm512_fmadd_ps(_mm512_set1_ps(4.1665795894E-2f), r, _mm512_set1_ps(1.6666665459E-1f));
    const __m512 y2 = _mm512_add_ps(r, _mm512_set1_ps(1.f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073E-3f));
    y1 = _mm512_fmadd_ps(y1, r, _mm512_set1_ps(5.0000001201E-1f));
    y = _mm512_fmadd_ps(y, r3, y1);
    y = _mm512_fmadd_ps(y, r2, y2);
    return _mm512_scalef_ps(y, m);
  }
#endif
  return pm::pexp(x);
}

/// exp(x − max), and exactly 0 where x = −inf when Masked (Eigen's
/// non-AVX-512 exps give a tiny denormal there, which must not meet the NaN
/// of −inf − −inf later). A NaN logit keeps its NaN.
template <bool Masked, typename X>
EIGEN_ALWAYS_INLINE X shifted_exp_of(const X& x, const X& max, const X& minus_inf) {
  const X e = sweep_exp(pm::psub(x, max));
  if constexpr (Masked) {
    return pm::pandnot(e, pm::pcmp_eq(x, minus_inf));
  } else {
    (void)minus_inf;
    return e;
  }
}

/// What the exps pass learns about the two rows besides the exps.
template <typename Scalar>
struct ExpSums {
  Scalar exp_a = 0, exp_b = 0;  ///< Σ exp(x − shift)
  Scalar max_a = 0, max_b = 0;  ///< the true row maxima
  Scalar sum_a = 0, sum_b = 0;  ///< Σ (x − shift), when label smoothing needs it
};

/// The first pass: e = exp(x − shift) for both rows, stored into ea / eb,
/// with their sums, the rows' maxima (to check the shift afterwards) and,
/// WithSums, the sums of the shifted logits x − shift (see
/// cross_entropy_from). Two exps per element, the only ones of
/// the sweep.
template <bool Masked, bool WithSums, int PrefetchRows, typename In, typename Scalar = compute_t<In>>
ExpSums<Scalar> shifted_exps(const In* a, const In* b, Eigen::Index n, Scalar shift_a, Scalar shift_b, Scalar* ea,
                             Scalar* eb, const Prefetch& ahead) {
  using P = Packet<Scalar>;
  constexpr Scalar inf = std::numeric_limits<Scalar>::infinity();
  const auto max_of = [](Scalar l, Scalar r) { return std::max(l, r); };
  const Eigen::Index full = full_packets_end<Scalar>(n);
  const P zero = pm::pset1<P>(Scalar(0)), minus_inf = pm::pset1<P>(-inf);
  const P shift_a_p = pm::pset1<P>(shift_a), shift_b_p = pm::pset1<P>(shift_b);
  P total_a = zero, total_b = zero, max_a = minus_inf, max_b = minus_inf, xsum_a = zero,
    xsum_b = zero;
  for (Eigen::Index start = 0; start < full;) {
    const Eigen::Index stop = block_end<Scalar>(start, full);
    P block_a = zero, block_b = zero, xblock_a = zero, xblock_b = zero;
    for (Eigen::Index j = start; j < stop; j += packet_size<Scalar>) {
      ahead.template at<PrefetchRows>(j);
      const P va = load_widened<P>(a + j), vb = load_widened<P>(b + j);
      const P xa = shifted_exp_of<Masked>(va, shift_a_p, minus_inf);
      const P xb = shifted_exp_of<Masked>(vb, shift_b_p, minus_inf);
      pm::pstoreu(ea + j, xa);
      pm::pstoreu(eb + j, xb);
      block_a = pm::padd(block_a, xa);
      block_b = pm::padd(block_b, xb);
      max_a = pm::pmax(max_a, va);
      max_b = pm::pmax(max_b, vb);
      if constexpr (WithSums) {
        xblock_a = pm::padd(xblock_a, pm::psub(va, shift_a_p));
        xblock_b = pm::padd(xblock_b, pm::psub(vb, shift_b_p));
      }
    }
    total_a = pm::padd(total_a, block_a);
    total_b = pm::padd(total_b, block_b);
    if constexpr (WithSums) {
      xsum_a = pm::padd(xsum_a, xblock_a);
      xsum_b = pm::padd(xsum_b, xblock_b);
    }
    start = stop;
  }
  const PaddedTail<Scalar> tail(n);
  if (!tail.empty()) {
    // Padding: −inf for the maxima; its exps and logits masked to exact 0.
    const P keep = tail.lanes();
    const P va = tail_load(tail, a, -inf), vb = tail_load(tail, b, -inf);
    const P xa = keep_if(keep, shifted_exp_of<Masked>(va, shift_a_p, minus_inf));
    const P xb = keep_if(keep, shifted_exp_of<Masked>(vb, shift_b_p, minus_inf));
    tail.store(ea, xa);
    tail.store(eb, xb);
    total_a = pm::padd(total_a, xa);
    total_b = pm::padd(total_b, xb);
    max_a = pm::pmax(max_a, va);
    max_b = pm::pmax(max_b, vb);
    if constexpr (WithSums) {
      xsum_a = pm::padd(xsum_a, keep_if(keep, pm::psub(va, shift_a_p)));
      xsum_b = pm::padd(xsum_b, keep_if(keep, pm::psub(vb, shift_b_p)));
    }
  }
  ExpSums<Scalar> r;
  r.exp_a = sum_lanes<Scalar>(total_a);
  r.exp_b = sum_lanes<Scalar>(total_b);
  r.max_a = reduce_lanes<Scalar>(max_a, max_of);
  r.max_b = reduce_lanes<Scalar>(max_b, max_of);
  if constexpr (WithSums) {
    r.sum_a = sum_lanes<Scalar>(xsum_a);
    r.sum_b = sum_lanes<Scalar>(xsum_b);
  }
  return r;
}

/// A shift for the exps before the row max is known: the max of the row's
/// first packet, ≤ the row max. It is kept when the row max exceeds it by
/// less than `headroom` (then no exp nor their sum can overflow), which
/// saves a separate pass for the max; otherwise the exps are redone.
template <typename In, typename Scalar = compute_t<In>>
Scalar first_packet_max(const In* x, Eigen::Index n) {
  const auto max_of = [](Scalar l, Scalar r) { return std::max(l, r); };
  if (n >= packet_size<Scalar>) return reduce_lanes<Scalar>(load_widened<Packet<Scalar>>(x), max_of);
  Scalar r = widen(x[0]);
  for (Eigen::Index j = 1; j < n; ++j) r = std::max(r, widen(x[j]));
  return r;
}

template <typename Scalar>
Wide<Scalar> shift_headroom(Eigen::Index n) {
  using W = Wide<Scalar>;
  return std::log(W(std::numeric_limits<Scalar>::max())) - std::log(W(n)) - W(4);
}

/// One element's (or packet's) terms of the divergence sums; with
/// p = ea/Σea, q = eb/Σeb, d = a − b − gap (= log p − log q):
///   S    term (p − q)·d        ≥ 0
///   KLpq term p·d − (p − q)    ≥ 0
///   KLqp term (p − q) − q·d    ≥ 0
/// The ± (p − q) add Σ(p − q) = 0 in exact arithmetic and make every KL term
/// non-negative, so no sum cancels. (S keeps a relative error ~ε/|d|; each
/// KL alone an absolute error of a few ε, from the rounding of p and q.)
/// Masked (rows with −inf): p·d, q·d and (p − q)·d vanish where the
/// probability (or the difference) is exactly 0, so −inf − −inf = NaN stays
/// out; the exps are exactly 0 there (see shifted_exp_of).
template <typename X>
struct DivergenceTerms {
  X sym, pq, qp;
};

template <bool Masked, typename X>
EIGEN_ALWAYS_INLINE DivergenceTerms<X> divergence_terms(const X& a, const X& b, const X& ea,
                                                        const X& eb, const X& inv_a,
                                                        const X& inv_b, const X& gap) {
  using Scalar = typename pm::unpacket_traits<X>::type;
  const X p = pm::pmul(ea, inv_a);
  const X q = pm::pmul(eb, inv_b);
  const X d = pm::psub(pm::psub(a, b), gap);
  const X p_minus_q = pm::psub(p, q);
  if constexpr (Masked) {
    const X zero = pm::pset1<X>(Scalar(0));
    return {pm::pandnot(pm::pmul(p_minus_q, d), pm::pcmp_eq(p, q)),
            pm::psub(keep_if(pm::pcmp_lt(zero, p), pm::pmul(p, d)), p_minus_q),
            pm::psub(p_minus_q, keep_if(pm::pcmp_lt(zero, q), pm::pmul(q, d)))};
  } else {
    // p and q each feed an FMA as a direct operand, so no compiler fuses
    // their products into p − q: then p − q is exactly antisymmetric (the
    // symmetric KL of (a, b) and (b, a) agree bit for bit) and exactly 0 for
    // equal rows, whatever -ffp-contract says.
    return {pm::pmul(p_minus_q, d), pmsub(p, d, p_minus_q), pnmadd(q, d, p_minus_q)};
  }
}

template <typename Scalar>
struct DivergenceSums {
  Scalar sym = 0;  ///< Σ (p − q)·d = 2S
  Scalar pq = 0;   ///< KL(p‖q)
  Scalar qp = 0;   ///< KL(q‖p)
};

/// Pass 2: the divergence sums. KL(q‖p) is summed too rather than taken as
/// 2S − KL(p‖q): the gradient needs d + KL(q‖p) to cancel exactly for a
/// near one-hot q, which only the sum over the same rounded d gives.
template <bool Masked, typename In, typename Scalar = compute_t<In>>
DivergenceSums<Scalar> divergence_sums(const In* a, const In* b, const Scalar* ea, const Scalar* eb, Eigen::Index n,
                                       Scalar inv_a, Scalar inv_b, Scalar gap) {
  using P = Packet<Scalar>;
  const Eigen::Index full = full_packets_end<Scalar>(n);
  const P zero = pm::pset1<P>(Scalar(0));
  const P inv_a_p = pm::pset1<P>(inv_a), inv_b_p = pm::pset1<P>(inv_b), gap_p = pm::pset1<P>(gap);
  P total_sym = zero, total_pq = zero, total_qp = zero;
  for (Eigen::Index start = 0; start < full;) {
    const Eigen::Index stop = block_end<Scalar>(start, full);
    P block_sym = zero, block_pq = zero, block_qp = zero;
    for (Eigen::Index j = start; j < stop; j += packet_size<Scalar>) {
      const auto t = divergence_terms<Masked>(load_widened<P>(a + j), load_widened<P>(b + j),
                                              pm::ploadu<P>(ea + j), pm::ploadu<P>(eb + j),
                                              inv_a_p, inv_b_p, gap_p);
      block_sym = pm::padd(block_sym, t.sym);
      block_pq = pm::padd(block_pq, t.pq);
      block_qp = pm::padd(block_qp, t.qp);
    }
    total_sym = pm::padd(total_sym, block_sym);
    total_pq = pm::padd(total_pq, block_pq);
    total_qp = pm::padd(total_qp, block_qp);
    start = stop;
  }
  const PaddedTail<Scalar> tail(n);
  if (!tail.empty()) {
    // Zero-padded exps and logits: every term of a padding lane is exactly 0.
    const auto t = divergence_terms<Masked>(tail_load(tail, a, Scalar(0)), tail_load(tail, b, Scalar(0)),
                                            tail.load(ea, Scalar(0)), tail.load(eb, Scalar(0)),
                                            inv_a_p, inv_b_p, gap_p);
    total_sym = pm::padd(total_sym, t.sym);
    total_pq = pm::padd(total_pq, t.pq);
    total_qp = pm::padd(total_qp, t.qp);
  }
  DivergenceSums<Scalar> s;
  s.sym = sum_lanes<Scalar>(total_sym);
  s.pq = sum_lanes<Scalar>(total_pq);
  s.qp = sum_lanes<Scalar>(total_qp);
  // Every term is ≥ 0 in exact arithmetic; rounding may still leave a sum a
  // hair below 0 (near one-hot rows), and a divergence is never negative.
  // (NaN stays NaN.)
  const auto non_negative = [](Scalar x) { return x < Scalar(0) ? Scalar(0) : x; };
  s.sym = non_negative(s.sym);
  s.pq = non_negative(s.pq);
  s.qp = non_negative(s.qp);
  return s;
}

/// Constants of the finite-row gradient pass, with d = a − b − gap:
///   ga = ea·(a1·(d − KLpq) + a0) − (aq·eb + shift_a)
///   gb = eb·(b1·(d + KLqp) + b0) − (bp·ea + shift_b)
/// which is, expanded,
///   ga = w_pq·p⊙(d − KLpq) + w_qp·(p − q) + w_a·p − w_a·ε/C
///   gb = w_qp·q⊙(−d − KLqp) + w_pq·(q − p) + w_b·q − w_b·ε/C.
/// d − KLpq and d + KLqp are formed in the packet, not folded into the
/// constants: for a near one-hot p they cancel exactly (KLpq is summed from
/// the same rounded d), which keeps huge logits (|x| ~ 1e4) accurate.
template <typename Scalar>
struct GradientConstants {
  Scalar gap, kl_pq, kl_qp;
  Scalar a1, a0, aq, shift_a;
  Scalar b1, b0, bp, shift_b;
};

template <typename X>
struct GradientPacket {
  X gap, kl_pq, kl_qp, a1, a0, aq, shift_a, b1, b0, bp, shift_b;
};

/// The constants broadcast to the width of `tag` (deduced, see packet.hpp).
template <typename X, typename Scalar>
EIGEN_ALWAYS_INLINE GradientPacket<X> broadcast(const X&, const GradientConstants<Scalar>& k) {
  return {pm::pset1<X>(k.gap), pm::pset1<X>(k.kl_pq), pm::pset1<X>(k.kl_qp),
          pm::pset1<X>(k.a1),  pm::pset1<X>(k.a0),    pm::pset1<X>(k.aq),
          pm::pset1<X>(k.shift_a), pm::pset1<X>(k.b1), pm::pset1<X>(k.b0),
          pm::pset1<X>(k.bp),  pm::pset1<X>(k.shift_b)};
}

template <typename X>
struct GradientPair {
  X a, b;
};

template <typename X>
EIGEN_ALWAYS_INLINE GradientPair<X> gradient_of(const X& a, const X& b, const X& ea, const X& eb,
                                                const GradientPacket<X>& k) {
  const X d = pm::psub(pm::psub(a, b), k.gap);
  return {pmsub(ea, pm::pmadd(k.a1, pm::psub(d, k.kl_pq), k.a0), pm::pmadd(k.aq, eb, k.shift_a)),
          pmsub(eb, pm::pmadd(k.b1, pm::padd(d, k.kl_qp), k.b0), pm::pmadd(k.bp, ea, k.shift_b))};
}

/// The targets' one-hot parts, w·(1 − ε) at each row's label (label < 0:
/// none). The gradient passes subtract them in the lane of the label before
/// storing, so that a 2-byte gradient is rounded once, from the same float
/// that a float gradient holds.
template <typename Scalar>
struct LabelDeltas {
  Eigen::Index label_a = -1, label_b = -1;
  Scalar delta_a = 0, delta_b = 0;
};

/// g − delta in the lane of `label` when the packet starting at element j
/// holds it; g unchanged otherwise (the other lanes are not touched at all,
/// so −0 stays −0).
template <typename X, typename Scalar>
EIGEN_ALWAYS_INLINE X minus_at_label(const X& g, Eigen::Index j, Eigen::Index label, Scalar delta) {
  using U = std::make_unsigned_t<Eigen::Index>;
  if (static_cast<U>(label - j) >= static_cast<U>(lanes_of<X>)) return g;  // label < 0 wraps around
  if constexpr (std::is_same_v<X, Scalar>) {
    return g - delta;
  } else {
    const X in_lane = pm::pcmp_eq(pm::plset<X>(Scalar(0)), pm::pset1<X>(static_cast<Scalar>(label - j)));
    return pm::pselect(in_lane, pm::psub(g, pm::pset1<X>(delta)), g);
  }
}

/// Pass 3 on finite rows: both gradient rows from the logits and the exps
/// ea, eb (the gradient rows themselves, or scratch rows when the gradient
/// overwrites the logits or is stored in 2 bytes). Every element is read
/// before it is written.
template <typename In, typename Out, typename Scalar = compute_t<In>>
void gradients(const In* a, const In* b, const Scalar* ea, const Scalar* eb, Eigen::Index n,
               const GradientConstants<Scalar>& k, const LabelDeltas<Scalar>& t, Out* ga, Out* gb) {
  using P = Packet<Scalar>;
  const Eigen::Index full = full_packets_end<Scalar>(n);
  const auto kp = broadcast(P{}, k);
  // In locals: the compiler cannot tell that the stores leave them alone.
  const Eigen::Index label_a = t.label_a, label_b = t.label_b;
  const Scalar delta_a = t.delta_a, delta_b = t.delta_b;
  for (Eigen::Index j = 0; j < full; j += packet_size<Scalar>) {
    const auto out = gradient_of(load_widened<P>(a + j), load_widened<P>(b + j),
                                 pm::ploadu<P>(ea + j), pm::ploadu<P>(eb + j), kp);
    store_narrowed(ga + j, minus_at_label(out.a, j, label_a, delta_a));
    store_narrowed(gb + j, minus_at_label(out.b, j, label_b, delta_b));
  }
  const PaddedTail<Scalar> tail(n);
  if (!tail.empty()) {
    const auto out = gradient_of(tail_load(tail, a, Scalar(0)), tail_load(tail, b, Scalar(0)),
                                 tail.load(ea, Scalar(0)), tail.load(eb, Scalar(0)), kp);
    tail_store(tail, ga, minus_at_label(out.a, tail.begin(), t.label_a, t.delta_a));
    tail_store(tail, gb, minus_at_label(out.b, tail.begin(), t.label_b, t.delta_b));
  }
}

/// Pass 3 on rows with infinities, term by term with masks: a class at −inf
/// in both rows gets exactly the CE part; a zero KL weight drops its terms.
template <bool WithPQ, bool WithQP, typename In, typename Out, typename Scalar = compute_t<In>>
void masked_gradients(const In* a, const In* b, const Scalar* ea, const Scalar* eb, Eigen::Index n, Scalar inv_a,
                      Scalar inv_b, Scalar gap, Scalar kl_pq, Scalar kl_qp, Scalar w_pq, Scalar w_qp, Scalar wa,
                      Scalar wb, Scalar shift_a, Scalar shift_b, const LabelDeltas<Scalar>& t, Out* ga, Out* gb) {
  for_each_packet<Scalar>(n, [&](auto tag, Eigen::Index j) {
    using X = decltype(tag);
    const X zero = pm::pset1<X>(Scalar(0));
    const X p = pm::pmul(load<X>(ea + j), pm::pset1<X>(inv_a));
    const X q = pm::pmul(load<X>(eb + j), pm::pset1<X>(inv_b));
    X out_a = pm::psub(pm::pmul(pm::pset1<X>(wa), p), pm::pset1<X>(shift_a));
    X out_b = pm::psub(pm::pmul(pm::pset1<X>(wb), q), pm::pset1<X>(shift_b));
    if constexpr (WithPQ || WithQP) {
      const X d = pm::psub(pm::psub(load_widened<X>(a + j), load_widened<X>(b + j)), pm::pset1<X>(gap));
      const X p_minus_q = pm::psub(p, q);
      if constexpr (WithPQ) {
        const X own = keep_if(pm::pcmp_lt(zero, p), pm::pmul(p, pm::psub(d, pm::pset1<X>(kl_pq))));
        out_a = pm::pmadd(pm::pset1<X>(w_pq), own, out_a);
        out_b = pm::psub(out_b, pm::pmul(pm::pset1<X>(w_pq), p_minus_q));
      }
      if constexpr (WithQP) {
        const X own = keep_if(pm::pcmp_lt(zero, q),
                              pm::pnegate(pm::pmul(q, pm::padd(d, pm::pset1<X>(kl_qp)))));
        out_b = pm::pmadd(pm::pset1<X>(w_qp), own, out_b);
        out_a = pm::pmadd(pm::pset1<X>(w_qp), p_minus_q, out_a);
      }
    }
    store_narrowed(ga + j, minus_at_label(out_a, j, t.label_a, t.delta_a));
    store_narrowed(gb + j, minus_at_label(out_b, j, t.label_b, t.delta_b));
  });
}

/// Calls f(std::bool_constant<flag>{}), so that a runtime flag picks a
/// compile-time variant.
template <typename F>
EIGEN_STRONG_INLINE decltype(auto) with_flag(bool flag, F&& f) {
  if (flag) return f(std::true_type{});
  return f(std::false_type{});
}

/// Prefetch plan of fused_pair: short rows only; the current and the next
/// pair, 8 rows, then fit in 32 KiB of L1. Long rows stream well enough on
/// the hardware prefetchers, and pulling a whole next pair into L2 next to
/// the current one measured slower.
template <typename In, typename Out>
Prefetch prefetch_plan(Eigen::Index n, const NextPair<In, Out>& next, bool want_grad) {
  Prefetch ahead;
  if (n * static_cast<Eigen::Index>(sizeof(compute_t<In>)) > 4096) return ahead;
  ahead.add(next.a);
  ahead.add(next.b);
  if (want_grad) {
    ahead.add(next.grad_a);
    ahead.add(next.grad_b);
  }
  return ahead;
}

/// What passes 1 and 2 leave for the values and the gradient pass.
template <typename Scalar>
struct PairSums {
  ExpSums<Scalar> exp;
  DivergenceSums<Scalar> div;
  Scalar shift_a = 0, shift_b = 0;  ///< the exps' shifts
  Scalar inv_a = 0, inv_b = 0;      ///< 1 / Σ exps
  Scalar gap = 0;                   ///< lse(a) − lse(b)
  Wide<Scalar> log_exp_a = 0, log_exp_b = 0;
  bool masked = false;  ///< a row held ±inf or NaN: masked passes were used
};

/// Pass 1 (exps into ea, eb) and pass 2 (divergence sums), unmasked, or
/// masked when a row turns out to hold −inf (or +inf, or NaN).
template <typename In, typename Scalar = compute_t<In>>
PairSums<Scalar> exps_and_sums(const In* a, const In* b, Eigen::Index n, bool smoothing, const Prefetch& ahead,
                               Scalar* ea, Scalar* eb) {
  using W = Wide<Scalar>;
  PairSums<Scalar> s;
  s.shift_a = first_packet_max(a, n);
  s.shift_b = first_packet_max(b, n);
  auto exps = [&](auto masked) {
    constexpr bool Masked = decltype(masked)::value;
    with_rows(ahead.count, [&](auto rows) {
      constexpr int Rows = decltype(rows)::value;
      s.exp = smoothing ? shifted_exps<Masked, true, Rows>(a, b, n, s.shift_a, s.shift_b, ea, eb, ahead)
                        : shifted_exps<Masked, false, Rows>(a, b, n, s.shift_a, s.shift_b, ea, eb, ahead);
    });
  };
  auto sums_of_exps = [&](auto masked) {
    constexpr bool Masked = decltype(masked)::value;
    // lse_a − lse_b as (shift_a − shift_b) + (log Σea − log Σeb): close
    // copies (the R-Drop case) lose no digits to their large common
    // log-sum-exp, and swapping a and b negates it exactly.
    s.log_exp_a = std::log(W(s.exp.exp_a));
    s.log_exp_b = std::log(W(s.exp.exp_b));
    s.gap = static_cast<Scalar>((W(s.shift_a) - W(s.shift_b)) + (s.log_exp_a - s.log_exp_b));
    s.inv_a = Scalar(1) / s.exp.exp_a;
    s.inv_b = Scalar(1) / s.exp.exp_b;
    s.div = divergence_sums<Masked>(a, b, ea, eb, n, s.inv_a, s.inv_b, s.gap);
  };
  constexpr Scalar inf = std::numeric_limits<Scalar>::infinity();
  exps(std::false_type{});
  const W headroom = shift_headroom<Scalar>(n);
  s.masked = !(std::abs(s.exp.max_a) < inf && std::abs(s.exp.max_b) < inf);
  if (!s.masked && !(W(s.exp.max_a) - W(s.shift_a) < headroom && W(s.exp.max_b) - W(s.shift_b) < headroom)) {
    s.shift_a = s.exp.max_a;  // the guess was too low: redo with the maxima
    s.shift_b = s.exp.max_b;
    exps(std::false_type{});
  }
  if (!s.masked) {
    sums_of_exps(std::false_type{});
    s.masked = !(std::abs(s.div.sym) < inf && std::abs(s.div.pq) < inf && std::abs(s.div.qp) < inf);
  }
  if (s.masked) {
    s.shift_a = s.exp.max_a;
    s.shift_b = s.exp.max_b;
    exps(std::true_type{});
    sums_of_exps(std::true_type{});
  }
  return s;
}

/// Pass 3: both gradient rows from the logits, the exps and the sums, then
/// the targets' one-hot parts.
template <typename In, typename Out, typename Scalar = compute_t<In>>
void gradient_pass(const In* a, const In* b, const Scalar* ea, const Scalar* eb, Eigen::Index n,
                   const SoftmaxPairWeights<Scalar>& w, const PairSums<Scalar>& s, Out* ga, Out* gb) {
  using W = Wide<Scalar>;
  const Scalar wa = w.first.label >= 0 ? w.first.weight : Scalar(0);
  const Scalar wb = w.second.label >= 0 ? w.second.weight : Scalar(0);
  const W inv_c = W(1) / static_cast<W>(n);
  const Scalar shift_a = static_cast<Scalar>(W(wa) * W(w.first.smoothing) * inv_c);
  const Scalar shift_b = static_cast<Scalar>(W(wb) * W(w.second.smoothing) * inv_c);
  LabelDeltas<Scalar> t;
  if (wa != Scalar(0)) {
    t.label_a = w.first.label;
    t.delta_a = wa * (Scalar(1) - w.first.smoothing);
  }
  if (wb != Scalar(0)) {
    t.label_b = w.second.label;
    t.delta_b = wb * (Scalar(1) - w.second.smoothing);
  }
  if (!s.masked) {
    const W w_pq = w.kl_pq, w_qp = w.kl_qp;
    GradientConstants<Scalar> k;
    k.gap = s.gap;
    k.kl_pq = s.div.pq;
    k.kl_qp = s.div.qp;
    k.a1 = static_cast<Scalar>(w_pq * W(s.inv_a));
    k.a0 = static_cast<Scalar>((W(wa) + w_qp) * W(s.inv_a));
    k.aq = static_cast<Scalar>(w_qp * W(s.inv_b));
    k.shift_a = shift_a;
    k.b1 = static_cast<Scalar>(-w_qp * W(s.inv_b));
    k.b0 = static_cast<Scalar>((W(wb) + w_pq) * W(s.inv_b));
    k.bp = static_cast<Scalar>(w_pq * W(s.inv_a));
    k.shift_b = shift_b;
    gradients(a, b, ea, eb, n, k, t, ga, gb);
  } else {
    // A zero weight must not meet an infinite KL (0·inf = NaN): compiled out.
    with_flag(w.kl_pq != Scalar(0), [&](auto pq) {
      with_flag(w.kl_qp != Scalar(0), [&](auto qp) {
        masked_gradients<decltype(pq)::value, decltype(qp)::value>(a, b, ea, eb, n, s.inv_a, s.inv_b, s.gap,
                                                                   s.div.pq, s.div.qp, w.kl_pq, w.kl_qp, wa, wb,
                                                                   shift_a, shift_b, t, ga, gb);
      });
    });
  }
}

}  // namespace pair_sweep

/// The fused paired sweep over one pair of logit rows a, b (length n).
/// With p = softmax(a), q = softmax(b), d = log p − log q it returns both
/// cross-entropies, KL(p‖q), KL(q‖p) and their mean, and, when ga and gb are
/// not null, overwrites them with
///   ga = w_pq·p⊙(d − KL(p‖q)) + w_qp·(p − q) + w_a·(p − t_a)
///   gb = w_pq·(q − p) + w_qp·q⊙(−d − KL(q‖p)) + w_b·(q − t_b)
/// (t: the smoothed one-hot target; w_a, w_b: the targets' weights, 0 without
/// a label). ga and gb may be null together: values only.
///
/// Three passes over the pair, whose rows stay in L1 (or L2, for long rows)
/// between them: exps (two per element, stored in the gradient rows, shifted
/// by the max of each row's first packet unless the row max lies too far
/// above it, see first_packet_max), divergence sums, gradients. For short
/// rows the exps pass also prefetches the four rows of `next` into L1.
///
/// Finite rows take unmasked passes. A row holding −inf (or +inf, or NaN)
/// shows as a non-finite sum; the pair is then redone with masked passes:
/// classes at −inf in both rows contribute exactly 0, at −inf in one row
/// only they make the KL that divides by it +inf, its true value.
///
/// Rows stored as bfloat16 or half (In, Out) are widened to float as they
/// are loaded and the gradient is rounded once as it is stored (see
/// rdrop/detail/storage.hpp): the results are those of the float sweep on
/// the widened rows, bitwise, the gradient then rounded to Out.
template <typename In, typename Out, typename Scalar = compute_t<In>>
SoftmaxPairValues<Scalar> fused_pair(const In* a, const In* b, Eigen::Index n, const SoftmaxPairWeights<Scalar>& w,
                                     Out* ga, Out* gb, const NextPair<In, Out>& next = {}) {
  static_assert(std::is_same_v<compute_t<Out>, Scalar>, "rdrop: the gradient's compute type is the logits'");
  using W = Wide<Scalar>;
  namespace ps = pair_sweep;
  SoftmaxPairValues<Scalar> v;
  if (n <= 0) return v;
  const bool want_grad = ga != nullptr;
  // Where the exps go between the passes: the gradient rows, or scratch
  // rows when there is no gradient or it overwrites the logits (in place:
  // the logits must outlive the exps pass). Slots 0 and 1: a caller never
  // holds them across this call.
  // 2-byte gradient rows cannot hold float exps: scratch rows then too.
  const void *va = a, *vb = b, *vga = ga, *vgb = gb;
  const bool in_place = want_grad && (vga == va || vgb == vb || vga == vb || vgb == va);
  Scalar* ea = nullptr;
  Scalar* eb = nullptr;
  if constexpr (std::is_same_v<Out, Scalar>) {
    if (want_grad && !in_place) {
      ea = ga;
      eb = gb;
    }
  }
  if (ea == nullptr) {
    ea = thread_scratch<Scalar>(n, 0);
    eb = thread_scratch<Scalar>(n, 1);
  }
  const bool with_ce_a = w.first.label >= 0, with_ce_b = w.second.label >= 0;
  const bool smoothing = (with_ce_a && w.first.smoothing != Scalar(0)) ||
                         (with_ce_b && w.second.smoothing != Scalar(0));
  const ps::PairSums<Scalar> s =
      ps::exps_and_sums(a, b, n, smoothing, ps::prefetch_plan(n, next, want_grad), ea, eb);
  v.symmetric = Scalar(0.5) * s.div.sym;
  v.kl_pq = s.div.pq;
  v.kl_qp = s.div.qp;
  if (with_ce_a || with_ce_b) {
    // Each log-sum-exp from its own shift: lse_a − gap would cancel
    // catastrophically when one copy's logits dwarf the other's.
    v.ce_first = cross_entropy_from(a, n, s.shift_a, s.log_exp_a, W(s.exp.sum_a), w.first);
    v.ce_second = cross_entropy_from(b, n, s.shift_b, s.log_exp_b, W(s.exp.sum_b), w.second);
  }
  if (want_grad) ps::gradient_pass(a, b, ea, eb, n, w, s, ga, gb);
  return v;
}

/// The sweep with the KL directions chosen at compile time (the original
/// interface; fused_pair picks them from the weights).
template <bool WithPQ, bool WithQP, typename Scalar>
SoftmaxPairValues<Scalar> softmax_pair(const Scalar* a, const Scalar* b, Eigen::Index n,
                                       const SoftmaxPairWeights<Scalar>& w, Scalar* ga,
                                       Scalar* gb) {
  SoftmaxPairWeights<Scalar> chosen = w;
  if constexpr (!WithPQ) chosen.kl_pq = Scalar(0);
  if constexpr (!WithQP) chosen.kl_qp = Scalar(0);
  return fused_pair(a, b, n, chosen, ga, gb);
}

}  // namespace rdrop::detail
