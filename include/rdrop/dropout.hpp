/// \file
/// Dropout with counter-based, seeded randomness: an independent mask for every
/// element of every row (so the two copies of a duplicated sample see
/// different masks), inverted scaling 1/(1 − p), and a backward pass that
/// regenerates the same mask instead of storing it.
///
/// The random bits. Element (r, c) of the mask drawn at training step `step`
/// by a dropout with seed `seed` is a pure function of (seed, step, r, c):
///
///   k      = splitmix64(splitmix64(splitmix64(seed) ^ step) ^ r)   (64 bits, once per row)
///   x      = lo32(k) + c · 0x9E3779B9                              (a Weyl sequence over columns)
///   x      = x ^ (x >> 16);  x = x · 0x21F0AAAD
///   x      = x ^ hi32(k)                                          (second half of the row key)
///   x      = x ^ (x >> 15);  x = x · 0x735A2D97;  x = x ^ (x >> 15)
///   keep   = (x >> 8) < round((1 − p) · 2^24)
///
/// splitmix64 is Steele, Lea & Flood's 64-bit mixer; the per-element rounds are
/// C. Wellons' two-multiply 32-bit hash ("hash-prospector", bias ≈ 0.02), with
/// the row key's high half injected between the rounds so that two rows cannot
/// produce the same (or column-shifted) stream unless all 64 key bits agree.
/// Since no state is carried from element to element, any thread count, any
/// partition of the rows and any SIMD width give bitwise identical masks, and
/// backward needs only (seed, step) to see forward's mask again.
///
/// Speed: the per-element hash is integer arithmetic on 8 lanes at a time
/// (GCC/Clang vector extensions, which compile to SSE2, AVX2 or AVX-512 as the
/// build allows), fused with the scaling into one pass over the data. Other
/// compilers run the same arithmetic one element at a time.
#pragma once

#include "rdrop/detail/errors.hpp"
#include "rdrop/detail/parallel.hpp"

#include <Eigen/Core>

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

/// 1 where the compiler vectorizes Dropout's mask loop (`#pragma omp simd`
/// without OpenMP: GCC 9 and later, clang), else 0. Set by the header.
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 9)
#define RDROP_DROPOUT_SIMD 1
#else
#define RDROP_DROPOUT_SIMD 0
#endif

namespace rdrop {

namespace detail {

/// SplitMix64's output function: a bijective 64-bit mixer.
constexpr std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// The 64-bit key of one mask row, split in the two halves the hash uses.
struct DropoutRowKey {
  std::uint32_t offset;  // starts the column Weyl sequence
  std::uint32_t tweak;   // injected between the two hash rounds
};

constexpr DropoutRowKey dropout_row_key(std::uint64_t seed, std::uint64_t step, std::uint64_t row) {
  const std::uint64_t k = splitmix64(splitmix64(splitmix64(seed) ^ step) ^ row);
  return {static_cast<std::uint32_t>(k), static_cast<std::uint32_t>(k >> 32)};
}

constexpr std::uint32_t kDropoutColumnStep = 0x9E3779B9u;
constexpr std::uint32_t kDropoutMultiplier1 = 0x21F0AAADu;
constexpr std::uint32_t kDropoutMultiplier2 = 0x735A2D97u;

/// The hash of the header comment on one 32-bit word or on a vector of them
/// (in place, by reference: passing wide vectors by value would change the
/// calling convention between SSE and AVX builds).
template <typename U>
inline void dropout_hash(U& x, std::uint32_t tweak) {
  x ^= x >> 16;
  x *= kDropoutMultiplier1;
  x ^= tweak;
  x ^= x >> 15;
  x *= kDropoutMultiplier2;
  x ^= x >> 15;
}

/// 24-bit keep threshold: keep when (bits >> 8) < threshold.
template <typename Scalar>
std::int32_t dropout_threshold(Scalar p) {
  const double keep = (1.0 - static_cast<double>(p)) * 16777216.0;
  return static_cast<std::int32_t>(keep + 0.5);
}

/// Whether element `col` of the row with key `key` is kept (the scalar form
/// of the vector loop below; both give the same bits).
inline bool dropout_keeps(DropoutRowKey key, std::uint32_t col, std::int32_t threshold) {
  std::uint32_t x = key.offset + col * kDropoutColumnStep;
  dropout_hash(x, key.tweak);
  return static_cast<std::int32_t>(x >> 8) < threshold;
}

#if RDROP_DROPOUT_SIMD
// One native register of 32-bit lanes: wider generic vectors make GCC split
// and spill them on SSE2.
#if defined(__AVX512F__)
constexpr int kDropoutLanes = 16;
#elif defined(__AVX2__)
constexpr int kDropoutLanes = 8;
#else
constexpr int kDropoutLanes = 4;
#endif
typedef std::uint32_t DropoutU32 __attribute__((vector_size(4 * kDropoutLanes)));
typedef std::int32_t DropoutI32 __attribute__((vector_size(4 * kDropoutLanes)));
typedef std::int64_t DropoutI64 __attribute__((vector_size(8 * kDropoutLanes)));
typedef float DropoutF32 __attribute__((vector_size(4 * kDropoutLanes)));
typedef double DropoutF64 __attribute__((vector_size(8 * kDropoutLanes)));
#endif

/// out[c] = keep(c) ? in[c] · scale : 0 for c in [0, cols). `in` may equal
/// `out`. A dropped element is +0 whatever its input (a bit mask, not a
/// multiply, so a NaN or infinity in a dropped unit does not leak through).
template <typename Scalar>
void dropout_row(const Scalar* in, Scalar* out, Eigen::Index cols, DropoutRowKey key, std::int32_t threshold,
                 Scalar scale) {
  Eigen::Index c = 0;
#if RDROP_DROPOUT_SIMD
  DropoutU32 column;
  for (int l = 0; l < kDropoutLanes; ++l) column[l] = static_cast<std::uint32_t>(l);
  const DropoutU32 start = key.offset + column * kDropoutColumnStep;
  const DropoutU32 stride = DropoutU32{} + static_cast<std::uint32_t>(kDropoutLanes) * kDropoutColumnStep;
  DropoutU32 weyl = start;
  for (; c + kDropoutLanes <= cols; c += kDropoutLanes, weyl += stride) {
    DropoutU32 x = weyl;
    dropout_hash(x, key.tweak);
    const DropoutI32 keep = reinterpret_cast<DropoutI32>(x >> 8) < threshold;
    if constexpr (std::is_same_v<Scalar, float>) {
      DropoutF32 v;
      std::memcpy(&v, in + c, sizeof v);
      v *= scale;
      const DropoutI32 kept = reinterpret_cast<DropoutI32>(v) & keep;
      std::memcpy(out + c, &kept, sizeof kept);
    } else {
      DropoutF64 v;
      std::memcpy(&v, in + c, sizeof v);
      v *= scale;
      const DropoutI64 kept = reinterpret_cast<DropoutI64>(v) & __builtin_convertvector(keep, DropoutI64);
      std::memcpy(out + c, &kept, sizeof kept);
    }
  }
#endif
  for (; c < cols; ++c) {
    out[c] = dropout_keeps(key, static_cast<std::uint32_t>(c), threshold) ? in[c] * scale : Scalar(0);
  }
}

template <typename T>
inline constexpr bool is_array_v = std::is_base_of_v<Eigen::ArrayBase<T>, T>;

template <typename T>
inline constexpr bool is_resizable_v = std::is_base_of_v<Eigen::PlainObjectBase<T>, T>;

/// Whether an object's rows are contiguous (row-major, inner stride 1) so
/// the kernel can read or write it in place.
template <typename T>
bool has_contiguous_rows(const T& m) {
  if constexpr ((T::Flags & Eigen::DirectAccessBit) != 0 && T::IsRowMajor) {
    return m.innerStride() == 1 || m.cols() <= 1;
  } else if constexpr ((T::Flags & Eigen::DirectAccessBit) != 0 && T::ColsAtCompileTime == 1) {
    return true;  // a column vector: every row is one element
  } else {
    (void)m;
    return false;
  }
}

/// Distance in memory between the starts of consecutive rows.
template <typename T>
Eigen::Index row_stride(const T& m) {
  if constexpr (T::IsRowMajor) {
    return m.outerStride();
  } else {
    return m.innerStride();
  }
}

}  // namespace detail

/// Inverted dropout with counter-based randomness (see the header comment
/// for the exact generator). Forward keeps each element with probability
/// 1 − p and scales it by 1/(1 − p); the mask is a pure function of
/// (seed, step, row, column), so
///  - every element of every row has its own draw: the two copies of a
///    duplicated sample get different masks;
///  - the same seed and step give the same mask for any thread count;
///  - Backward with the same step multiplies by exactly forward's mask
///    without storing it.
///
/// Give each dropout site of a model its own seed (two layers of the same
/// width sharing a seed would draw the same masks), and pass a new `step`
/// for every training step (e.g. the optimizer's step counter).
///
/// Accepts any Eigen dense matrix or array expression as input; row-major
/// storage is the fast path (other layouts go through a row-major copy).
/// Output may alias input (in-place dropout).
template <typename Scalar>
class Dropout {
  static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                "rdrop: Scalar must be float or double");

 public:
  /// Row-major matrix type Mask returns.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  /// Dropout with drop probability p in [0, 1) and the given seed. `threads`
  /// is the OpenMP thread count for the sweep over rows (0: the value set
  /// with rdrop::set_num_threads). Throws std::invalid_argument for p
  /// outside [0, 1) (or NaN) and for threads < 0.
  explicit Dropout(Scalar p, std::uint64_t seed = 0, int threads = 0)
      : p_(p), seed_(seed), threads_(threads) {
    if (!(p >= Scalar(0) && p < Scalar(1))) {
      detail::fail("Dropout::Dropout",
                   "argument 'p' is " + std::to_string(p) + "; expected a drop probability in [0, 1)");
    }
    if (threads < 0) {
      detail::fail("Dropout::Dropout", "argument 'threads' is " + std::to_string(threads) + "; expected >= 0");
    }
    scale_ = Scalar(1) / (Scalar(1) - p);
    threshold_ = detail::dropout_threshold(p);
  }

  /// The drop probability.
  Scalar p() const { return p_; }
  /// The factor 1/(1 − p) that kept elements are multiplied by.
  Scalar scale() const { return scale_; }
  /// The seed the masks are drawn from.
  std::uint64_t seed() const { return seed_; }
  /// The thread setting (0: the global one).
  int threads() const { return threads_; }

  /// output = mask(step) ⊙ input / (1 − p). `output` is resized when it is
  /// a Matrix or Array; a Map, Ref or block must already have input's shape
  /// (else std::invalid_argument, output untouched).
  ///
  /// `first_row`: the row of the whole batch that input's first row is,
  /// when a worker holds a slice of it (data-parallel training): the slice
  /// then gets exactly the masks of those rows of the whole batch.
  template <typename In, typename Out>
  void Forward(const Eigen::DenseBase<In>& input, Out&& output, std::uint64_t step,
               std::uint64_t first_row = 0) const {
    apply(input.derived(), output, step, first_row, "Dropout::Forward");
  }

  /// grad_input = mask(step) ⊙ grad_output / (1 − p): the gradient through
  /// Forward of the same step (the mask is regenerated, not stored).
  template <typename In, typename Out>
  void Backward(const Eigen::DenseBase<In>& grad_output, Out&& grad_input, std::uint64_t step,
                std::uint64_t first_row = 0) const {
    apply(grad_output.derived(), grad_input, step, first_row, "Dropout::Backward");
  }

  /// The multipliers Forward applies at `step` to a rows x cols input:
  /// 1/(1 − p) where kept, 0 where dropped (rows first_row, first_row + 1,
  /// ... of the whole batch).
  Matrix Mask(Eigen::Index rows, Eigen::Index cols, std::uint64_t step, std::uint64_t first_row = 0) const {
    if (rows < 0 || cols < 0) {
      detail::fail("Dropout::Mask", "arguments 'rows' and 'cols' are " + detail::shape(rows, cols) +
                                        "; expected non-negative sizes");
    }
    Matrix mask = Matrix::Ones(rows, cols);
    apply(mask, mask, step, first_row, "Dropout::Mask");
    return mask;
  }

 private:
  template <typename In, typename Out>
  void apply(const In& input, Out& output, std::uint64_t step, std::uint64_t first_row, const char* where) const {
    using O = std::remove_cv_t<std::remove_reference_t<Out>>;
    static_assert(std::is_same_v<typename In::Scalar, Scalar> && std::is_same_v<typename O::Scalar, Scalar>,
                  "rdrop::Dropout: input and output must have the dropout's Scalar type; convert with "
                  ".template cast<Scalar>()");
    const Eigen::Index rows = input.rows(), cols = input.cols();
    if constexpr (detail::is_resizable_v<O>) {
      // A fixed-size output of another shape makes resize() assert, so check first.
      if ((O::RowsAtCompileTime != Eigen::Dynamic && O::RowsAtCompileTime != rows) ||
          (O::ColsAtCompileTime != Eigen::Dynamic && O::ColsAtCompileTime != cols)) {
        shape_error(where, rows, cols, output.rows(), output.cols());
      }
      if (output.rows() != rows || output.cols() != cols) output.resize(rows, cols);
    } else if (output.rows() != rows || output.cols() != cols) {
      shape_error(where, rows, cols, output.rows(), output.cols());
    }
    if constexpr ((In::Flags & Eigen::DirectAccessBit) != 0 && (O::Flags & Eigen::DirectAccessBit) != 0) {
      if (detail::has_contiguous_rows(input) && detail::has_contiguous_rows(output)) {
        sweep(input.data(), detail::row_stride(input), output.data(), detail::row_stride(output), rows, cols,
              step, first_row);
        return;
      }
    }
    // Other layouts and expressions: through a row-major copy (which also
    // makes an output that overlaps the input in another layout safe).
    Matrix buffer = input.matrix();
    sweep(buffer.data(), cols, buffer.data(), cols, rows, cols, step, first_row);
    if constexpr (detail::is_array_v<O>) {
      output = buffer.array();
    } else {
      output = buffer;
    }
  }

  void sweep(const Scalar* in, Eigen::Index in_stride, Scalar* out, Eigen::Index out_stride, Eigen::Index rows,
             Eigen::Index cols, std::uint64_t step, std::uint64_t first_row) const {
    detail::parallel_ranges(rows, rows * cols, threads_, [&](Eigen::Index begin, Eigen::Index end) {
      for (Eigen::Index r = begin; r < end; ++r) {
        const detail::DropoutRowKey key =
            detail::dropout_row_key(seed_, step, first_row + static_cast<std::uint64_t>(r));
        detail::dropout_row(in + r * in_stride, out + r * out_stride, cols, key, threshold_, scale_);
      }
    });
  }

  [[noreturn]] static void shape_error(const char* where, Eigen::Index rows, Eigen::Index cols,
                                       Eigen::Index out_rows, Eigen::Index out_cols) {
    detail::fail(where, "output of shape " + detail::shape(out_rows, out_cols) +
                            " cannot hold the result for an input of shape " + detail::shape(rows, cols));
  }

  Scalar p_;
  Scalar scale_ = Scalar(1);
  std::int32_t threshold_ = 0;
  std::uint64_t seed_;
  int threads_;
};

}  // namespace rdrop
