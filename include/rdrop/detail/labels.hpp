// Integer labels from any Eigen vector expression or integer tensor, checked
// against the logits and resolved to one label per logits row. (Labels and
// masks of a duplicated batch, which need its Layout: rdrop/pair_plan.hpp.)
#pragma once

#include "rdrop/detail/errors.hpp"
#include "rdrop/detail/rows.hpp"

#include <Eigen/Core>

#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace rdrop::detail {

/// Copies labels into Index values (the copy is N integers next to N·C
/// logits). Eigen vectors and expressions are read by coefficient, tensors
/// in their row-major order.
template <typename Y>
std::vector<Index> read_labels(const Y& labels, const char* where) {
  using T = std::remove_cv_t<std::remove_reference_t<Y>>;
  static_assert(is_eigen_dense_v<T> || is_tensor_v<T>,
                "rdrop: labels must be an Eigen integer vector (e.g. Eigen::VectorXi) or an "
                "integer Eigen::Tensor/TensorMap");
  using L = scalar_of_t<T>;
  static_assert(std::is_integral_v<L>, "rdrop: labels must have an integer scalar type");
  auto to_index = [](L v) -> Index {
    if constexpr (std::is_unsigned_v<L> && sizeof(L) >= sizeof(Index)) {
      // Out-of-range either way; keep it visible as such in the message.
      if (v > static_cast<L>(std::numeric_limits<Index>::max())) return std::numeric_limits<Index>::max();
    }
    return static_cast<Index>(v);
  };
  std::vector<Index> out;
  if constexpr (is_tensor_v<T>) {
    static_assert(static_cast<int>(T::Layout) == static_cast<int>(Eigen::RowMajor) ||
                      T::NumIndices <= 1,
                  "rdrop: tensor labels must be RowMajor");
    out.resize(static_cast<std::size_t>(labels.size()));
    for (Index i = 0; i < labels.size(); ++i) out[static_cast<std::size_t>(i)] = to_index(labels.data()[i]);
  } else {
    if (labels.rows() != 1 && labels.cols() != 1 && labels.size() != 0) {
      fail(where, "argument 'labels' has shape " + shape(labels.rows(), labels.cols()) +
                      "; expected a vector");
    }
    out.resize(static_cast<std::size_t>(labels.size()));
    for (Index i = 0; i < labels.size(); ++i) {
      out[static_cast<std::size_t>(i)] =
          to_index(labels.rows() == 1 ? labels.coeff(0, i) : labels.coeff(i, 0));
    }
  }
  return out;
}

/// Checks every label: a class in [0, classes) or the ignore label.
inline void check_label_values(const std::vector<Index>& labels, Index classes,
                               Index ignore_index, const char* where) {
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const Index y = labels[i];
    if (y == ignore_index || (y >= 0 && y < classes)) continue;
    fail(where, "argument 'labels' entry " + std::to_string(i) + " is " + std::to_string(y) +
                    "; expected a class in [0, " + std::to_string(classes) +
                    ") or the ignore label " + std::to_string(ignore_index));
  }
}

/// Labels one per row, the ignore label mapped to -1. The result has one
/// entry per logits row.
inline std::vector<Index> per_row_labels(std::vector<Index> labels, const Shape& logits,
                                         Index ignore_index, const char* where) {
  if (static_cast<Index>(labels.size()) != logits.rows()) {
    fail(where, "argument 'labels' has " + std::to_string(labels.size()) +
                    " entries; expected " + std::to_string(logits.rows()) +
                    " (one per row) for logits of shape " + logits.str());
  }
  check_label_values(labels, logits.cols(), ignore_index, where);
  for (Index& y : labels) {
    if (y == ignore_index) y = -1;
  }
  return labels;
}

}  // namespace rdrop::detail
