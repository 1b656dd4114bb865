// Sequences and masks, as every paired loss takes them (the driver is
// paired.hpp): which rows form pair k in each Layout; a mask absent or as
// int, bool or Scalar values, once per sample or once per row, and the rows
// it keeps; the loss calls with or without a mask; and the reference call
// on a [d0, t, c] tensor, whose per-row values come back as a [d0, t]
// tensor.
#pragma once

#include "check.hpp"

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

namespace fuzz {

// The row indices of pair k, written out from the Layout documentation.
struct Pair {
  Index first, second;
};
inline Pair pair_of(rdrop::Layout layout, Index k, Index rows, Index group) {
  if (layout == rdrop::Layout::Stacked) return {k, k + rows / 2};
  const Index sample = k / group;
  const Index first = 2 * sample * group + k % group;
  return {first, first + group};
}

// Mask: absent, or an int / bool / float vector, per sample or per row.
template <typename S>
struct MaskChoice {
  bool present = false;
  int kind = 0;  // 0: VectorXi, 1: bool row vector, 2: Scalar vector
  std::vector<int> keep;

  void draw(FuzzedDataProvider& in, Index rows) {
    present = in.ConsumeIntegralInRange(0, 2) == 0;
    if (!present) return;
    kind = in.ConsumeIntegralInRange(0, 2);
    keep.resize(static_cast<std::size_t>(draw_count(in, rows)));
    for (int& k : keep) k = in.ConsumeIntegralInRange(0, 3) != 0;
  }

  Eigen::VectorXi as_ints() const {
    Eigen::VectorXi m(static_cast<Index>(keep.size()));
    for (Index i = 0; i < m.size(); ++i) m(i) = keep[static_cast<std::size_t>(i)] ? 3 : 0;
    return m;
  }

  // The oracle: a mask is given once per sample or once per row.
  bool fits(Index rows) const {
    const auto n = static_cast<Index>(keep.size());
    return !present || n == rows || n == rows / 2;
  }

  // Which rows it keeps, one flag per row; for a call that is valid.
  std::vector<char> kept_rows(Index rows, rdrop::Layout layout, Index group) const {
    std::vector<char> rows_kept(static_cast<std::size_t>(rows), 1);
    const auto n = static_cast<Index>(keep.size());
    for (Index i = 0; present && i < n; ++i) {
      if (n == rows) {
        rows_kept[static_cast<std::size_t>(i)] = keep[static_cast<std::size_t>(i)] != 0;
      } else {
        const Pair p = pair_of(layout, i, rows, group);
        rows_kept[static_cast<std::size_t>(p.first)] = rows_kept[static_cast<std::size_t>(p.second)] =
            keep[static_cast<std::size_t>(i)] != 0;
      }
    }
    return rows_kept;
  }

  // The same mask as bool or Scalar values gives the same value.
  template <typename Loss, typename Y>
  void other_forms(const Loss& loss, const RowMat<S>& x, const Y& y, bool valid, S value) const {
    if (!present) return;
    const auto n = static_cast<Index>(keep.size());
    S v = 0;
    if (kind == 1) {
      Eigen::Matrix<bool, 1, Eigen::Dynamic> m(n);
      for (Index i = 0; i < n; ++i) m(i) = keep[static_cast<std::size_t>(i)] != 0;
      EXPECT(valid, v = loss.Evaluate(x, y, m));
    } else if (kind == 2) {
      Vec<S> m(n);
      for (Index i = 0; i < n; ++i) m(i) = keep[static_cast<std::size_t>(i)] ? S(0.5) : S(0);
      EXPECT(valid, v = loss.Evaluate(x, y, m));
    } else {
      return;
    }
    if (valid) FUZZ_REQUIRE(same(v, value));
  }
};

// Each call of a paired loss, with the mask when there is one (m != null).
template <typename Loss, typename X, typename Y, typename M, typename G>
auto ewg(const Loss& loss, const X& x, const Y& y, const M* m, G&& g) {
  if (m) return loss.EvaluateWithGradient(x, y, *m, std::forward<G>(g));
  return loss.EvaluateWithGradient(x, y, std::forward<G>(g));
}
template <typename Loss, typename X, typename Y, typename M>
auto eval(const Loss& loss, const X& x, const Y& y, const M* m) {
  if (m) return loss.Evaluate(x, y, *m);
  return loss.Evaluate(x, y);
}
template <typename Loss, typename X, typename Y, typename M, typename V>
void per_row(const Loss& loss, const X& x, const Y& y, const M* m, V&& v) {
  if (m) {
    loss.EvaluatePerRow(x, y, *m, std::forward<V>(v));
  } else {
    loss.EvaluatePerRow(x, y, std::forward<V>(v));
  }
}
template <typename Loss, typename X, typename Y, typename M>
auto terms(const Loss& loss, const X& x, const Y& y, const M* m) {
  if (m) return loss.EvaluateTerms(x, y, *m);
  return loss.EvaluateTerms(x, y);
}
template <typename Loss, typename X, typename Y, typename M>
rdrop::RDropCounts count(const Loss& loss, const X& x, const Y& y, const M* m) {
  if (m) return loss.Count(x, y, *m);
  return loss.Count(x, y);
}
template <typename Loss, typename X, typename Y, typename M, typename G>
void grad(const Loss& loss, const X& x, const Y& y, const M* m, G&& g) {
  if (m) {
    loss.Gradient(x, y, *m, std::forward<G>(g));
  } else {
    loss.Gradient(x, y, std::forward<G>(g));
  }
}

template <typename S>
Tensor<S, 3> to_tensor3(const Batch<S>& b) {
  Tensor<S, 3> t(b.d0, b.t, b.c);
  std::copy(b.x.data(), b.x.data() + b.x.size(), t.data());
  return t;
}
template <typename S, int R>
RowMat<S> rows_of(const Tensor<S, R>& t, Index rows, Index cols) {
  RowMat<S> m(rows, cols);
  std::copy(t.data(), t.data() + t.size(), m.data());
  return m;
}

// The reference call on a sequence batch: a [d0, t, c] tensor in, the
// gradient resized from [1, 1, 1], per-row values from [1, 2] to [d0, t];
// a TensorMap gives the same value. On an invalid call, returns true after
// checking that the gradient is untouched; else fills value, g (as rows)
// and values.
template <typename Loss, typename S, typename Y, typename M>
bool sequence_reference(const Loss& loss, const Batch<S>& b, const Y& y, const M* m, bool valid, S& value,
                        RowMat<S>& g, Vec<S>& values) {
  const auto tensor = to_tensor3(b);
  Tensor<S, 3> gt(1, 1, 1);
  gt.setConstant(sentinel<S>);
  Tensor<S, 2> vt(1, 2);
  vt.setConstant(sentinel<S>);
  if (EXPECT(valid, value = ewg(loss, tensor, y, m, gt))) {
    FUZZ_REQUIRE(gt.dimension(0) == 1 && gt.dimension(2) == 1 && gt(0, 0, 0) == sentinel<S>);
    return true;
  }
  g = rows_of(gt, b.rows(), b.c);
  EXPECT(true, per_row(loss, tensor, y, m, vt));
  FUZZ_REQUIRE(vt.dimension(0) == b.d0 && vt.dimension(1) == b.t);
  values = Eigen::Map<const Vec<S>>(vt.data(), b.rows());
  FUZZ_REQUIRE(same(eval(loss, tensor, y, m), value));
  const Eigen::TensorMap<const Tensor<S, 3>> view(tensor.data(), b.d0, b.t, b.c);
  FUZZ_REQUIRE(same(eval(loss, view, y, m), value));
  return false;
}

}  // namespace fuzz
