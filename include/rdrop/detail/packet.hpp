// A thin layer over Eigen's packet math so that one loop body serves the
// vectorized part of a row and its scalar tail.
#pragma once

#include <Eigen/Core>

#include <type_traits>

namespace rdrop::detail {

namespace pm = Eigen::internal;

template <typename Scalar>
using Packet = typename pm::packet_traits<Scalar>::type;

template <typename Scalar>
inline constexpr Eigen::Index packet_size =
    pm::unpacket_traits<Packet<Scalar>>::size;

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

/// Calls body(P{}, j) for j = 0, W, 2W, ... with P the packet type, then
/// body(Scalar{}, j) for the remaining tail. The body is a generic lambda, so
/// the same arithmetic runs in both widths.
template <typename Scalar, typename Body>
EIGEN_STRONG_INLINE void for_each_packet(Eigen::Index n, Body&& body) {
  constexpr Eigen::Index W = packet_size<Scalar>;
  Eigen::Index j = 0;
  if constexpr (W > 1) {
    for (; j + W <= n; j += W) body(Packet<Scalar>{}, j);
  }
  for (; j < n; ++j) body(Scalar{}, j);
}

/// A running sum with one packet lane per vector slot and a scalar for the
/// tail; the lanes also shorten the float rounding chains on long rows.
template <typename Scalar>
class SumAccumulator {
 public:
  template <typename P>
  EIGEN_STRONG_INLINE void add(const P& x) {
    if constexpr (std::is_same_v<P, Scalar>) {
      tail_ += x;
    } else {
      lanes_ = pm::padd(lanes_, x);
    }
  }
  Scalar total() const {
    if constexpr (packet_size<Scalar> > 1) {
      // Lane by lane rather than pm::predux: GCC 12 flags Eigen's AVX-512
      // predux with a false -Wmaybe-uninitialized.
      Scalar lanes[packet_size<Scalar>];
      pm::pstoreu(lanes, lanes_);
      Scalar s = tail_;
      for (Scalar v : lanes) s += v;
      return s;
    } else {
      return tail_;
    }
  }

 private:
  Packet<Scalar> lanes_ = pm::pset1<Packet<Scalar>>(Scalar(0));
  Scalar tail_ = Scalar(0);
};

/// x where keep is set, +0 elsewhere (a bitwise mask, so a NaN or infinity
/// in a dropped lane cannot leak through as it would with a multiply).
template <typename P>
EIGEN_STRONG_INLINE P keep_if(const P& keep, const P& x) {
  return pm::pand(keep, x);
}

}  // namespace rdrop::detail
