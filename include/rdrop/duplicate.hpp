/// \file
/// Duplicating a batch for the two dropout passes, and zero-copy views of the
/// two copies inside a duplicated output.
#pragma once

#include "rdrop/detail/errors.hpp"
#include "rdrop/detail/rows.hpp"
#include "rdrop/layout.hpp"

#include <Eigen/Core>
#include <unsupported/Eigen/CXX11/Tensor>

#include <algorithm>
#include <string>
#include <type_traits>

namespace rdrop {

/// Returns the 2B-row batch for the R-Drop forward pass: every row of `x`
/// (inputs, a label vector, a mask) twice, placed as `layout` says. Keeps
/// the type of x's plain object (Matrix or Array, storage order).
template <typename Derived>
typename Derived::PlainObject Duplicate(const Eigen::DenseBase<Derived>& x,
                                        Layout layout = Layout::Interleaved) {
  using Plain = typename Derived::PlainObject;
  static_assert(Plain::RowsAtCompileTime == Eigen::Dynamic,
                "rdrop::Duplicate doubles the rows: pass a type with a dynamic number of rows "
                "(labels as a column vector such as Eigen::VectorXi)");
  detail::check_layout(layout, "Duplicate");
  const Eigen::Index n = x.rows();
  Plain out(2 * n, x.cols());
  // Nothing to copy; Eigen's row() of an N x 0 matrix offsets a null pointer.
  if (out.size() == 0) return out;
  for (Eigen::Index i = 0; i < n; ++i) {
    const detail::PairRows r = detail::pair_rows(layout, i, 2 * n, 1);
    out.row(r.first) = x.row(i);
    out.row(r.second) = x.row(i);
  }
  return out;
}

/// Duplicates a row-major tensor along its first (batch) dimension:
/// [B, ...] becomes [2B, ...], each sample's whole slab copied twice.
template <typename T, std::enable_if_t<detail::is_tensor_v<T>, int> = 0>
auto Duplicate(const T& x, Layout layout = Layout::Interleaved) {
  using Scalar = detail::scalar_of_t<T>;
  constexpr int rank = T::NumIndices;
  static_assert(rank >= 1, "rdrop::Duplicate needs a tensor of rank >= 1");
  static_assert(static_cast<int>(T::Layout) == static_cast<int>(Eigen::RowMajor),
                "rdrop::Duplicate: tensors must be RowMajor");
  detail::check_layout(layout, "Duplicate");
  Eigen::Tensor<Scalar, rank, Eigen::RowMajor, Eigen::Index> out;
  auto dims = x.dimensions();
  const Eigen::Index batch = dims[0];
  const Eigen::Index slab = batch > 0 ? x.size() / batch : 0;
  dims[0] = 2 * batch;
  out.resize(dims);
  for (Eigen::Index i = 0; i < batch; ++i) {
    const detail::PairRows r = detail::pair_rows(layout, i, 2 * batch, 1);
    std::copy(x.data() + i * slab, x.data() + (i + 1) * slab, out.data() + r.first * slab);
    std::copy(x.data() + i * slab, x.data() + (i + 1) * slab, out.data() + r.second * slab);
  }
  return out;
}

namespace detail {

template <typename M>
auto copy_view(M& m, Layout layout, int which, const char* where) {
  using T = std::remove_const_t<M>;
  static_assert((T::Flags & Eigen::DirectAccessBit) != 0,
                "rdrop: copy views need an object with direct storage access (Matrix, Array, "
                "Map, Ref, Block); evaluate expressions first");
  using Plain = Eigen::Matrix<typename T::Scalar, Eigen::Dynamic, Eigen::Dynamic,
                              T::IsRowMajor ? Eigen::RowMajor : Eigen::ColMajor>;
  using Target = std::conditional_t<std::is_const_v<M>, const Plain, Plain>;
  using View = Eigen::Map<Target, Eigen::Unaligned, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;
  check_layout(layout, where);
  const Eigen::Index rows = m.rows();
  if (rows % 2 != 0) {
    fail(where, "argument 'duplicated' has shape " + shape(rows, m.cols()) +
                    "; an odd number of rows cannot hold two copies");
  }
  // Distance in memory between consecutive rows, and between columns.
  const Eigen::Index row_step = T::IsRowMajor ? m.outerStride() : m.innerStride();
  const Eigen::Index col_step = T::IsRowMajor ? m.innerStride() : m.outerStride();
  const bool interleaved = layout == Layout::Interleaved;
  const Eigen::Index first_row = which == 0 ? 0 : (interleaved ? 1 : rows / 2);
  const Eigen::Index step = interleaved ? 2 * row_step : row_step;
  // No offset into an empty object: its data() may be null.
  auto* data = m.size() > 0 ? m.data() + first_row * row_step : m.data();
  return T::IsRowMajor ? View(data, rows / 2, m.cols(), Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(step, col_step))
                       : View(data, rows / 2, m.cols(), Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(col_step, step));
}

/// A view of a temporary Matrix would dangle at the end of the statement;
/// temporary views (Map, Block, Ref) are fine, they do not own their data.
template <typename M>
constexpr void check_not_temporary() {
  using T = std::remove_cv_t<std::remove_reference_t<M>>;
  static_assert(std::is_lvalue_reference_v<M> || !std::is_base_of_v<Eigen::PlainObjectBase<T>, T>,
                "rdrop: FirstCopy/SecondCopy of a temporary matrix would dangle; store the "
                "duplicated matrix in a variable first");
}

}  // namespace detail

/// Zero-copy view (a strided Eigen::Map, writable when `m` is) of the first
/// copy of every sample inside a duplicated 2B-row matrix: rows 0, 2, 4, ...
/// (Interleaved) or rows 0 .. B-1 (Stacked). Throws std::invalid_argument
/// for an odd number of rows or a layout that names no Layout.
template <typename M>
auto FirstCopy(M&& duplicated, Layout layout = Layout::Interleaved) {
  detail::check_not_temporary<M>();
  return detail::copy_view(duplicated, layout, 0, "FirstCopy");
}

/// Zero-copy view of the second copy: rows 1, 3, 5, ... (Interleaved) or
/// rows B .. 2B-1 (Stacked).
template <typename M>
auto SecondCopy(M&& duplicated, Layout layout = Layout::Interleaved) {
  detail::check_not_temporary<M>();
  return detail::copy_view(duplicated, layout, 1, "SecondCopy");
}

}  // namespace rdrop
