/// \file
/// Where the two copies of a sample sit inside a duplicated batch.
#pragma once

#include "rdrop/detail/errors.hpp"

#include <Eigen/Core>

#include <string>

namespace rdrop {

/// How a batch of B samples is duplicated into the 2B rows the model sees.
enum class Layout {
  /// [a, a, b, b, ...]: rows 2i and 2i+1 are the two copies of sample i
  /// (the Keras code form, `y[::2]` / `y[1::2]`).
  Interleaved,
  /// [a, b, ..., a, b, ...]: rows i and B+i are the two copies of sample i
  /// (`torch.cat([x, x])` / `chunk(2)`).
  Stacked,
};

namespace detail {

/// Throws for a Layout value that names no layout (an int cast to Layout).
inline void check_layout(Layout layout, const char* where) {
  if (layout != Layout::Interleaved && layout != Layout::Stacked) {
    fail(where, "argument 'layout' is " + std::to_string(static_cast<int>(layout)) +
                    "; expected Layout::Interleaved or Layout::Stacked");
  }
}

/// Row indices of the two copies of pair `k` among `rows` rows. `group` is the
/// number of consecutive rows that form one sample (T for [batch, time, C]
/// tensors, 1 for matrices): interleaving happens at sample granularity.
struct PairRows {
  Eigen::Index first;
  Eigen::Index second;
};

inline PairRows pair_rows(Layout layout, Eigen::Index k, Eigen::Index rows,
                          Eigen::Index group) {
  if (layout == Layout::Stacked) return {k, k + rows / 2};
  const Eigen::Index sample = k / group;
  const Eigen::Index first = 2 * sample * group + k % group;
  return {first, first + group};
}

}  // namespace detail
}  // namespace rdrop
