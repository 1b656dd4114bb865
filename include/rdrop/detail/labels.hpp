// Integer labels from any Eigen vector expression or integer tensor, checked
// against the logits and resolved to one label per logits row.
#pragma once

#include "rdrop/detail/errors.hpp"
#include "rdrop/detail/rows.hpp"
#include "rdrop/layout.hpp"

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

/// Labels of a duplicated batch, given once per sample (rows/2 entries, in
/// pair order) or once per row; returned one per row, ignore label as -1.
inline std::vector<Index> paired_row_labels(const std::vector<Index>& labels,
                                            const Shape& logits, Layout layout,
                                            Index ignore_index, const char* where) {
  const Index rows = logits.rows();
  const Index pairs = rows / 2;
  const auto given = static_cast<Index>(labels.size());
  if (given == rows) return per_row_labels(labels, logits, ignore_index, where);
  if (given != pairs) {
    fail(where, "argument 'labels' has " + std::to_string(given) + " entries; expected " +
                    std::to_string(pairs) + " (one per sample) or " + std::to_string(rows) +
                    " (one per row) for logits of shape " + logits.str());
  }
  check_label_values(labels, logits.cols(), ignore_index, where);
  std::vector<Index> out(static_cast<std::size_t>(rows));
  for (Index k = 0; k < pairs; ++k) {
    const PairRows r = pair_rows(layout, k, rows, logits.group());
    const Index y = labels[static_cast<std::size_t>(k)];
    out[static_cast<std::size_t>(r.first)] = out[static_cast<std::size_t>(r.second)] =
        (y == ignore_index) ? -1 : y;
  }
  return out;
}

}  // namespace rdrop::detail

namespace rdrop::detail {

/// A keep-mask (non-zero = keep) from any Eigen vector or tensor of bool,
/// integer or floating type, given once per pair (rows/2, in pair order) or
/// once per row; returned once per row.
template <typename M>
std::vector<char> paired_row_mask(const M& mask, const Shape& logits, Layout layout, const char* where) {
  using T = std::remove_cv_t<std::remove_reference_t<M>>;
  static_assert(is_eigen_dense_v<T> || is_tensor_v<T>,
                "rdrop: a mask must be an Eigen vector or an Eigen::Tensor/TensorMap (non-zero = keep)");
  using V = scalar_of_t<T>;
  static_assert(std::is_arithmetic_v<V>, "rdrop: a mask must hold bool, integer or floating values");
  std::vector<char> given;
  if constexpr (is_tensor_v<T>) {
    static_assert(static_cast<int>(T::Layout) == static_cast<int>(Eigen::RowMajor) || T::NumIndices <= 1,
                  "rdrop: tensor masks must be RowMajor");
    given.resize(static_cast<std::size_t>(mask.size()));
    for (Index i = 0; i < mask.size(); ++i) given[static_cast<std::size_t>(i)] = mask.data()[i] != V(0);
  } else {
    if (mask.rows() != 1 && mask.cols() != 1 && mask.size() != 0) {
      fail(where, "argument 'mask' has shape " + shape(mask.rows(), mask.cols()) + "; expected a vector");
    }
    given.resize(static_cast<std::size_t>(mask.size()));
    for (Index i = 0; i < mask.size(); ++i) {
      given[static_cast<std::size_t>(i)] = (mask.rows() == 1 ? mask.coeff(0, i) : mask.coeff(i, 0)) != V(0);
    }
  }
  const Index rows = logits.rows(), pairs = rows / 2;
  const auto n = static_cast<Index>(given.size());
  if (n == rows) return given;
  if (n != pairs) {
    fail(where, "argument 'mask' has " + std::to_string(n) + " entries; expected " + std::to_string(pairs) +
                    " (one per sample) or " + std::to_string(rows) + " (one per row) for logits of shape " +
                    logits.str());
  }
  std::vector<char> out(static_cast<std::size_t>(rows));
  for (Index k = 0; k < pairs; ++k) {
    const PairRows r = pair_rows(layout, k, rows, logits.group());
    out[static_cast<std::size_t>(r.first)] = out[static_cast<std::size_t>(r.second)] = given[static_cast<std::size_t>(k)];
  }
  return out;
}

}  // namespace rdrop::detail
