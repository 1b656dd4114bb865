// A thin layer over Eigen's packet math so that one loop body serves the
// vectorized part of a row and its tail, in whatever vector width the
// user's compiler flags give Eigen (SSE, AVX2, AVX-512, NEON, ...).
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <type_traits>

namespace rdrop::detail {

namespace pm = Eigen::internal;

// Packet types are only ever template arguments here where they were
// deduced: GCC's -Wignored-attributes fires when a typedef of a vector type
// (Packet4f, ...) is named as a template argument, and the headers must
// compile warning-free.

/// Eigen's widest packet for Scalar.
template <typename Scalar>
using Packet = typename pm::packet_traits<Scalar>::type;

template <typename Scalar>
inline constexpr Eigen::Index packet_size = pm::packet_traits<Scalar>::size;

/// Lanes of a (deduced) packet type; 1 for a plain scalar.
template <typename P>
inline constexpr Eigen::Index lanes_of = pm::unpacket_traits<P>::size;

/// Whether X is Scalar's widest packet (and that is wider than a scalar).
template <typename Scalar, typename X>
inline constexpr bool is_full_packet = packet_size<Scalar> > 1 && lanes_of<X> == packet_size<Scalar>;

template <typename P>
EIGEN_STRONG_INLINE auto half_of(const P&) {
  return typename pm::unpacket_traits<P>::half{};
}

/// Packets summed per block before the block joins the running total: long
/// float rows then round like many short sums (error ~ (64 + n/1024)·ε per
/// lane instead of n/16·ε).
inline constexpr Eigen::Index kBlockPackets = 64;

/// Loads one packet (or one scalar when P is the scalar type).
template <typename P, typename Scalar>
EIGEN_STRONG_INLINE P load(const Scalar* from) {
  if constexpr (std::is_same_v<P, Scalar>) {
    return *from;
  } else {
    return pm::ploadu<P>(from);
  }
}

template <typename P, typename Scalar>
EIGEN_STRONG_INLINE void store(Scalar* to, const P& x) {
  if constexpr (std::is_same_v<P, Scalar>) {
    *to = x;
  } else {
    pm::pstoreu(to, x);
  }
}

/// The tail of a row after its full packets: one half packet if it fits,
/// then one quarter packet, ... (Eigen's `half` chain), so that a 1000-class
/// row on AVX-512 ends with one 8-lane packet rather than 8 scalars.
template <Eigen::Index WiderLanes, typename P, typename Body>
EIGEN_STRONG_INLINE void tail_packets(const P& tag, Eigen::Index& j, Eigen::Index n, Body& body) {
  if constexpr (lanes_of<P> > 1 && lanes_of<P> < WiderLanes) {
    if (j + lanes_of<P> <= n) {
      body(tag, j);
      j += lanes_of<P>;
    }
    tail_packets<lanes_of<P>>(half_of(tag), j, n, body);
  }
}

/// The tail [begin, n) of a row whose full packets were handled elsewhere:
/// narrower packets, then scalars.
template <typename Scalar, typename Body>
EIGEN_STRONG_INLINE void for_each_tail(Eigen::Index begin, Eigen::Index n, Body&& body) {
  Eigen::Index j = begin;
  if constexpr (packet_size<Scalar> > 1) {
    tail_packets<packet_size<Scalar>>(half_of(Packet<Scalar>{}), j, n, body);
  }
  for (; j < n; ++j) body(Scalar{}, j);
}

/// Elements of a row of length n covered by full packets (all of them when
/// Eigen does not vectorize Scalar: the "packet" is then the scalar).
template <typename Scalar>
EIGEN_STRONG_INLINE Eigen::Index full_packets_end(Eigen::Index n) {
  return n - n % packet_size<Scalar>;
}

/// The last n mod W elements of a row, run as one full packet: loaded into
/// a packet whose other lanes hold a padding value, stored back lane by
/// lane. Tails then take the packet code (no scalar exp calls, one code
/// path), and lanes() tells the real lanes from the padding.
template <typename Scalar>
class PaddedTail {
  using P = Packet<Scalar>;
  static constexpr Eigen::Index W = packet_size<Scalar>;

 public:
  explicit PaddedTail(Eigen::Index n) : begin_(full_packets_end<Scalar>(n)), count_(n - begin_) {}

  Eigen::Index begin() const { return begin_; }
  bool empty() const { return count_ == 0; }

  P load(const Scalar* row, Scalar pad) const { return load_as(P{}, row, pad); }
  void store(Scalar* row, const P& x) const { store_as(row, x); }
  /// The same for rows stored in another type T (2-byte storage): each
  /// element converted by `widen(T) -> Scalar` on the way in and by
  /// `narrow(Scalar) -> T` on the way out.
  template <typename T, typename Widen>
  P load_converted(const T* row, Scalar pad, Widen widen) const {
    Scalar buffer[static_cast<std::size_t>(W)];
    for (Eigen::Index i = 0; i < W; ++i) buffer[i] = i < count_ ? widen(row[begin_ + i]) : pad;
    return pm::ploadu<P>(buffer);
  }
  template <typename T, typename Narrow>
  void store_converted(T* row, const P& x, Narrow narrow) const {
    Scalar buffer[static_cast<std::size_t>(W)];
    pm::pstoreu(buffer, x);
    for (Eigen::Index i = 0; i < count_; ++i) row[begin_ + i] = narrow(buffer[i]);
  }
  /// All bits set in the real lanes, zero in the padding.
  P lanes() const {
    return pm::pcmp_lt(pm::plset<P>(Scalar(0)), pm::pset1<P>(static_cast<Scalar>(count_)));
  }

 private:
  // Masked loads and stores where Eigen has them (AVX, AVX-512 float), a
  // copy through a small buffer elsewhere. (Q is deduced, see above.)
  template <typename Q>
  Q load_as(const Q&, const Scalar* row, Scalar pad) const {
    if constexpr (pm::unpacket_traits<Q>::masked_load_available) {
      using Mask = typename pm::unpacket_traits<Q>::mask_t;
      const Q x = pm::ploadu<Q>(row + begin_, static_cast<Mask>((Mask(1) << count_) - 1));
      if (pad == Scalar(0)) return x;  // masked-off lanes load as 0
      return pm::pselect(lanes(), x, pm::pset1<Q>(pad));
    } else {
      Scalar buffer[static_cast<std::size_t>(W)];
      for (Eigen::Index i = 0; i < W; ++i) buffer[i] = i < count_ ? row[begin_ + i] : pad;
      return pm::ploadu<Q>(buffer);
    }
  }
  template <typename Q>
  void store_as(Scalar* row, const Q& x) const {
    if constexpr (pm::unpacket_traits<Q>::masked_store_available) {
      using Mask = typename pm::unpacket_traits<Q>::mask_t;
      pm::pstoreu(row + begin_, x, static_cast<Mask>((Mask(1) << count_) - 1));
    } else {
      Scalar buffer[static_cast<std::size_t>(W)];
      pm::pstoreu(buffer, x);
      for (Eigen::Index i = 0; i < count_; ++i) row[begin_ + i] = buffer[i];
    }
  }

  Eigen::Index begin_;
  Eigen::Index count_;
};

struct NoFlush {
  EIGEN_STRONG_INLINE void operator()() const {}
};

/// Calls body(P{}, j) for j = 0, W, 2W, ... with P the widest packet type,
/// then body(H{}, j) with narrower packets and plain scalars for the tail.
/// The body is a generic lambda, so the same arithmetic runs in every
/// width. `flush` runs after every kBlockPackets full packets and after the
/// last of them (see SumAccumulator::flush).
template <typename Scalar, typename Body, typename Flush = NoFlush>
EIGEN_STRONG_INLINE void for_each_packet(Eigen::Index n, Body&& body, Flush&& flush = {}) {
  constexpr Eigen::Index W = packet_size<Scalar>;
  Eigen::Index j = 0;
  if constexpr (W > 1) {
    const Eigen::Index full = n - n % W;
    while (j < full) {
      const Eigen::Index stop = std::min(full, j + kBlockPackets * W);
      for (; j < stop; j += W) body(Packet<Scalar>{}, j);
      flush();
    }
  }
  for_each_tail<Scalar>(j, n, body);
}

namespace packet_detail {
template <Eigen::Index Width, typename Scalar, typename Op>
EIGEN_STRONG_INLINE void fold(Scalar* lanes, Op& op) {
  if constexpr (Width > 0) {
    for (Eigen::Index i = 0; i < Width; ++i) lanes[i] = op(lanes[i], lanes[i + Width]);
    fold<Width / 2>(lanes, op);
  }
}
}  // namespace packet_detail

/// op-reduction of the lanes of x as a fixed pairwise tree (lane i with
/// lane i + W/2, ...), unrolled at compile time: deterministic, short
/// dependency chains, and no use of Eigen's AVX-512 predux, which GCC 12
/// flags with a false -Wmaybe-uninitialized.
template <typename Scalar, typename P, typename Op>
EIGEN_STRONG_INLINE Scalar reduce_lanes(const P& x, Op op) {
  if constexpr (std::is_same_v<P, Scalar>) {
    return x;
  } else {
    Scalar lanes[lanes_of<P>];
    pm::pstoreu(lanes, x);
    packet_detail::fold<lanes_of<P> / 2>(lanes, op);
    return lanes[0];
  }
}

template <typename Scalar, typename P>
EIGEN_STRONG_INLINE Scalar sum_lanes(const P& x) {
  return reduce_lanes<Scalar>(x, [](Scalar l, Scalar r) { return l + r; });
}

/// A running sum with one lane per vector slot. Full packets go to a block
/// sum that flush() moves into the total (blocked summation keeps long float
/// rows accurate); narrower tail packets and scalars go to a scalar. The
/// order of every addition is fixed by the row length alone.
template <typename Scalar>
class SumAccumulator {
  using P = Packet<Scalar>;

 public:
  SumAccumulator() : block_(pm::pset1<P>(Scalar(0))), total_(block_) {}

  template <typename X>
  EIGEN_STRONG_INLINE void add(const X& x) {
    if constexpr (is_full_packet<Scalar, X>) {
      block_ = pm::padd(block_, x);
    } else {
      tail_ += sum_lanes<Scalar>(x);
    }
  }
  /// block_ += a·b, for full packets; a·b + tail otherwise.
  template <typename X>
  EIGEN_STRONG_INLINE void add_product(const X& a, const X& b) {
    if constexpr (is_full_packet<Scalar, X>) {
      block_ = pm::pmadd(a, b, block_);
    } else {
      tail_ += sum_lanes<Scalar>(pm::pmul(a, b));
    }
  }
  EIGEN_STRONG_INLINE void flush() {
    total_ = pm::padd(total_, block_);
    block_ = pm::pset1<P>(Scalar(0));
  }
  Scalar total() const {
    return sum_lanes<Scalar>(pm::padd(total_, block_)) + tail_;
  }

 private:
  P block_;
  P total_;
  Scalar tail_ = Scalar(0);
};

/// a·b − c and c − a·b (one fused instruction where the target has FMA).
/// The negation goes on c and b, never on a: a product feeding only
/// additions may be fused by the compiler (-ffp-contract), so a kernel keeps
/// a as a direct FMA operand where its rounding must stay as written.
template <typename P>
EIGEN_STRONG_INLINE P pmsub(const P& a, const P& b, const P& c) {
  return pm::pmadd(a, b, pm::pnegate(c));
}
template <typename P>
EIGEN_STRONG_INLINE P pnmadd(const P& a, const P& b, const P& c) {
  return pm::pmadd(a, pm::pnegate(b), c);
}

/// x where keep is set, +0 elsewhere (a bitwise mask, so a NaN or infinity
/// in a dropped lane cannot leak through as it would with a multiply).
template <typename P>
EIGEN_STRONG_INLINE P keep_if(const P& keep, const P& x) {
  return pm::pand(keep, x);
}

/// Asks for the cache line at p ahead of its use (no-op where unsupported).
EIGEN_STRONG_INLINE void prefetch_for_read(const void* p) {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p, 0, 3);
#else
  (void)p;
#endif
}

/// The same for a line about to be written: fetched in a writable state.
EIGEN_STRONG_INLINE void prefetch_for_write(void* p) {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p, 1, 3);
#else
  (void)p;
#endif
}

}  // namespace rdrop::detail
