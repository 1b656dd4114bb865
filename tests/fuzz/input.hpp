// The input decoder every fuzz family shares: values (finite and moderate,
// extreme, or non-finite, by the input's profile), α/ε/p menus of valid and
// invalid choices, batches of logits with their logical shape, label and
// mask counts, and sentinel-filled outputs of random shape.
//
// FuzzedDataProvider takes integers (so every draw here) from the end of
// the input; a family that draws more keeps the order of its draws, or the
// committed corpus no longer decodes to what it covered.
#pragma once

#include <rdrop/rdrop.hpp>

#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>

namespace fuzz {

using Index = Eigen::Index;
template <typename S>
using RowMat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename S>
using ColMat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
template <typename S>
using Vec = Eigen::Matrix<S, Eigen::Dynamic, 1>;
template <typename S, int R>
using Tensor = Eigen::Tensor<S, R, Eigen::RowMajor>;
template <typename S>
using StridedMap = Eigen::Map<RowMat<S>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename S>
using ConstStridedMap = Eigen::Map<const RowMat<S>, Eigen::Unaligned, Eigen::OuterStride<>>;

// ---------------------------------------------------------------------------
// Values. A per-input profile keeps most inputs finite and moderate, so that
// the valid path is explored as often as the extreme ones.

enum Profile { kModerate = 0, kExtreme = 1, kNonFinite = 2 };

template <typename S>
S draw(FuzzedDataProvider& in, int profile) {
  using L = std::numeric_limits<S>;
  const auto b = in.ConsumeIntegral<std::uint8_t>();
  if (b < 200) return S(int(b) - 100) / S(16);  // [-6.25, 6.19], exact
  if (b < 220) {
    constexpr S common[] = {S(0), S(-0.0), S(1), S(-1), S(0.5)};
    return common[b % 5];
  }
  if (profile >= kExtreme && b < 236) {
    switch (b - 220) {
      case 0: return S(1e30);
      case 1: return S(-1e30);
      case 2: return S(1e4);
      case 3: return S(-1e4);
      case 4: return L::denorm_min();
      case 5: return -L::denorm_min();
      case 6: return L::min() / S(3);  // a denormal
      case 7: return L::max() / S(4);
      case 8: return -L::max() / S(4);
      case 9: return L::max();
      case 10: return L::lowest();
      case 11: return S(1e-30);
      case 12: return S(1e15);
      case 13: return S(-1e15);
      case 14: return L::min();
      default: return S(88.5);  // exp overflows in float beyond 88.7
    }
  }
  if (profile >= kNonFinite && b >= 236) {
    if (b < 244) return L::quiet_NaN();
    if (b < 250) return L::infinity();
    return -L::infinity();
  }
  return S(int(b) - 230) / S(4);
}

// α, ε, p and friends: valid and invalid choices.
template <typename S>
S draw_alpha(FuzzedDataProvider& in) {
  using L = std::numeric_limits<S>;
  const S menu[] = {S(1),    S(0),          S(0.5),           S(4),      S(100),       S(1e-30),
                    L::denorm_min(), S(1e6), S(-1), -L::denorm_min(), L::quiet_NaN(), L::infinity(),
                    S(1e30), S(2)};
  return menu[in.ConsumeIntegralInRange<std::size_t>(0, std::size(menu) - 1)];
}

template <typename S>
S draw_unit(FuzzedDataProvider& in) {  // ε, p: valid in [0, 1)
  using L = std::numeric_limits<S>;
  const S menu[] = {S(0),    S(0.1), S(0.5), S(0.9),          S(1) - L::epsilon(), L::denorm_min(), S(1),
                    S(-0.1), S(2),   L::quiet_NaN(), L::infinity(), -L::infinity(), S(0.25)};
  return menu[in.ConsumeIntegralInRange<std::size_t>(0, std::size(menu) - 1)];
}

// ---------------------------------------------------------------------------
// Logits: a batch as row-major rows plus its logical shape.

template <typename S>
struct Batch {
  int rank = 2;
  Index d0 = 0, t = 1, c = 0;  // [d0, c] or [d0, t, c]
  RowMat<S> x;                 // d0·t rows of c classes
  Index rows() const { return d0 * t; }
};

inline Index draw_classes(FuzzedDataProvider& in) {
  const Index menu[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 100, 513, 1031};
  const auto i = in.ConsumeIntegralInRange<std::size_t>(0, 40);
  return i < std::size(menu) ? menu[i] : Index(1 + i % 6);
}

template <typename S>
Batch<S> draw_batch(FuzzedDataProvider& in, int profile, bool allow_rank3) {
  Batch<S> b;
  b.rank = allow_rank3 && in.ConsumeIntegralInRange(0, 3) == 0 ? 3 : 2;
  b.d0 = in.ConsumeIntegralInRange<Index>(0, 9);
  b.t = b.rank == 3 ? in.ConsumeIntegralInRange<Index>(0, 3) : 1;
  b.c = draw_classes(in);
  if (b.c > 100 && b.rows() > 4) b.d0 = b.rank == 3 ? 2 : 4;  // keep executions fast
  b.x.resize(b.rows(), b.c);
  for (Index i = 0; i < b.x.rows(); ++i) {
    // Row patterns: free values, all equal, one dominant logit, a copy of
    // the row above (identical copies when it is the pair partner).
    const int pattern = in.ConsumeIntegralInRange(0, 7);
    for (Index j = 0; j < b.c; ++j) {
      if (pattern == 5) {
        b.x(i, j) = j == 0 ? draw<S>(in, profile) : b.x(i, 0);
      } else if (pattern == 6 && i > 0) {
        b.x(i, j) = b.x(i - 1, j);
      } else {
        b.x(i, j) = draw<S>(in, profile);
      }
    }
    if (pattern == 7 && b.c > 0) {
      b.x.row(i).setConstant(S(0.25));
      b.x(i, in.ConsumeIntegralInRange<Index>(0, b.c - 1)) = S(1e4);
    }
  }
  return b;
}

// Counts of labels or masks: once per sample, once per row, or anything.
inline Index draw_count(FuzzedDataProvider& in, Index rows) {
  switch (in.ConsumeIntegralInRange(0, 9)) {
    case 0: return in.ConsumeIntegralInRange<Index>(0, 12);
    case 1: case 2: case 3: case 4: return rows / 2;
    default: return rows;
  }
}

// ---------------------------------------------------------------------------
// Outputs: a resizable output prefilled with the sentinel, at a random
// shape, so that a call that must not write can be seen not to.

template <typename S>
constexpr S sentinel = S(-1234.5);

template <typename M>
M prefilled(FuzzedDataProvider& in) {
  const Index r = in.ConsumeIntegralInRange<Index>(0, 3), c = in.ConsumeIntegralInRange<Index>(0, 3);
  if constexpr (M::ColsAtCompileTime == 1) {
    return M::Constant(r, sentinel<typename M::Scalar>);
  } else {
    return M::Constant(r, c, sentinel<typename M::Scalar>);
  }
}

}  // namespace fuzz
