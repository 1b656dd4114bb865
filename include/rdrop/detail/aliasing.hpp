// Where an argument's elements lie in memory, so that an output that
// overlaps an input is either the exact in-place case (the gradient written
// over its own logits, element for element) or refused before anything is
// written.
#pragma once

#include "rdrop/detail/errors.hpp"
#include "rdrop/detail/parallel.hpp"
#include "rdrop/detail/rows.hpp"
#include "rdrop/detail/storage.hpp"

#include <Eigen/Core>

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

namespace rdrop::detail {

/// The elements of a matrix-like argument with storage: rows × cols at
/// data + i·row_stride + j·col_stride (in elements), as the kernels see it
/// (a rank-3 tensor [B, T, C] is B·T rows of C). `known` is false for
/// expressions without storage, which rdrop evaluates into a copy of its
/// own before writing any output.
struct Footprint {
  bool known = false;
  std::uintptr_t data = 0;
  Index rows = 0, cols = 0, row_stride = 0, col_stride = 0;
  std::size_t element = 0;  ///< bytes per element

  bool empty() const { return !known || rows == 0 || cols == 0; }
  std::uintptr_t begin() const { return data; }
  /// One past the last byte (strides are never negative in Eigen).
  std::uintptr_t end() const {
    return data + static_cast<std::uintptr_t>((rows - 1) * row_stride + (cols - 1) * col_stride + 1) * element;
  }
};

template <typename T>
Footprint footprint_of(const T& x) {
  using U = std::remove_cv_t<std::remove_reference_t<T>>;
  Footprint f;
  if constexpr (is_tensor_v<U>) {
    const Shape s = shape_of(x);
    f = {true, reinterpret_cast<std::uintptr_t>(x.data()), s.rows(), s.cols(), s.cols(), 1, sizeof(typename U::Scalar)};
  } else if constexpr (is_eigen_dense_v<U>) {
    if constexpr ((U::Flags & Eigen::DirectAccessBit) != 0) {
      f = {true,       reinterpret_cast<std::uintptr_t>(x.data()), x.rows(), x.cols(), x.rowStride(), x.colStride(),
           sizeof(typename U::Scalar)};
    }
  }
  return f;
}

/// Whether two footprints share a byte (conservatively: whether their byte
/// ranges meet, so interleaved but disjoint views count as overlapping).
inline bool overlap(const Footprint& a, const Footprint& b) {
  if (a.empty() || b.empty()) return false;
  return a.begin() < b.end() && b.begin() < a.end();
}

/// Whether every element (i, j) of both lies at the same address: the one
/// overlap that an in-place computation can serve exactly.
inline bool same_elements(const Footprint& a, const Footprint& b) {
  return a.known && b.known && a.data == b.data && a.rows == b.rows && a.cols == b.cols &&
         a.element == b.element && (a.rows <= 1 || a.row_stride == b.row_stride) &&
         (a.cols <= 1 || a.col_stride == b.col_stride);
}

/// Checks an output against an input it may overwrite in place: no
/// overlap, or the exact in-place case (same elements, same order), pass;
/// any other overlap (shifted, partial, another element order) throws.
/// Whether a sweep then runs in place it sees from its row pointers.
inline void check_in_place(const Footprint& output, const Footprint& input, const char* where,
                           const char* output_name, const char* input_name) {
  if (!overlap(output, input) || same_elements(output, input)) return;
  fail(where, std::string("argument '") + output_name + "' overlaps '" + input_name +
                  "' without being the same elements in the same order; write the gradient either over "
                  "the very same " + input_name + " (in place) or into memory of its own");
}

/// Checks that an output shares no memory with an input it must not overwrite.
inline void check_disjoint(const Footprint& output, const Footprint& input, const char* where,
                           const char* output_name, const char* input_name) {
  if (overlap(output, input)) {
    fail(where, std::string("argument '") + output_name + "' overlaps '" + input_name +
                    "', which is read while it is written; give it memory of its own");
  }
}

/// Scratch slots for the copies that in-place sweeps read from: apart from
/// the kernels' own (0 to 3).
inline constexpr int kInPlaceSlot = 4;

/// A copy of row `x` (n elements) in the calling thread's scratch `slot`,
/// at the same offset from a 64-byte boundary as `x`: Eigen's vectorized
/// reductions start at the first aligned element, so the copy is summed in
/// the same order and in-place results are bitwise those of out-of-place.
template <typename Scalar>
const Scalar* aligned_like_copy(const Scalar* x, Index n, int slot) {
  constexpr std::uintptr_t line = 64;
  constexpr Index pad = static_cast<Index>(line / sizeof(Scalar));
  Scalar* base = thread_scratch<Scalar>(n + pad, slot);
  const std::uintptr_t want = reinterpret_cast<std::uintptr_t>(x) % line;
  const std::uintptr_t have = reinterpret_cast<std::uintptr_t>(base) % line;
  const std::uintptr_t shift = (want + line - have) % line;
  Scalar* copy = base + shift / sizeof(Scalar);
  if (n > 0) std::memcpy(copy, x, static_cast<std::size_t>(n) * sizeof(Scalar));
  return copy;
}

/// The row a sweep reads: `x` itself, or, when its gradient overwrites it
/// (in place), a copy in scratch `slot` (see aligned_like_copy).
template <typename Scalar>
const Scalar* row_to_read(const Scalar* x, Index n, int slot, bool in_place) {
  return in_place ? aligned_like_copy(x, n, slot) : x;
}

/// Scratch slots of the float gradient rows of staged 2-byte rows (apart
/// from the kernels' and the in-place copies').
inline constexpr int kStagedGradientSlot = 6;

/// Rows stored as In (logits) and Out (gradient) for code that computes on
/// Scalar rows only: read() gives a logits row as Scalar (row_to_read, or
/// the row widened into the in-place copy slots), gradient() the Scalar row
/// to write (the gradient row itself, or a scratch row when Out is a 2-byte
/// type) and write() rounds that scratch row into the gradient row. The
/// results are then those of Scalar rows holding the widened logits, the
/// gradient rounded once.
template <typename Scalar, typename In, typename Out>
class StagedRows {
 public:
  explicit StagedRows(Index cols) : cols_(cols) {}

  /// `copy`: 0 or 1, the row's copy in its pair; `in_place`: the gradient
  /// overwrites this row (a 2-byte row is always read from its widened copy).
  const Scalar* read(const In* x, int copy, bool in_place) const {
    if constexpr (std::is_same_v<In, Scalar>) {
      return row_to_read(x, cols_, kInPlaceSlot + copy, in_place);
    } else {
      Scalar* w = thread_scratch<Scalar>(cols_, kInPlaceSlot + copy);
      widen_row(x, cols_, w);
      return w;
    }
  }
  Scalar* gradient(Out* g, int copy) const {
    if constexpr (std::is_same_v<Out, Scalar>) {
      (void)copy;
      return g;
    } else {
      return g != nullptr ? thread_scratch<Scalar>(cols_, kStagedGradientSlot + copy) : nullptr;
    }
  }
  void write(const Scalar* staged, Out* g) const {
    if constexpr (!std::is_same_v<Out, Scalar>) {
      if (g != nullptr) narrow_row(staged, cols_, g);
    } else {
      (void)staged;
      (void)g;
    }
  }

 private:
  Index cols_;
};

}  // namespace rdrop::detail
