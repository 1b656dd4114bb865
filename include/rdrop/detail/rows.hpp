// Adapters from the accepted input and output types (Eigen dense matrices and
// expressions, Map, Ref, row-major Tensor / TensorMap of rank 2 or 3) to the
// one form the kernels use: rows of contiguous classes with a row stride.
#pragma once

#include "rdrop/detail/errors.hpp"
#include "rdrop/detail/storage.hpp"

#include <Eigen/Core>
#include <unsupported/Eigen/CXX11/Tensor>

#include <array>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

namespace rdrop::detail {

using Eigen::Index;

template <typename T>
struct is_tensor : std::false_type {};
template <typename S, int R, int O, typename I>
struct is_tensor<Eigen::Tensor<S, R, O, I>> : std::true_type {};
template <typename P, int O, template <class> class M>
struct is_tensor<Eigen::TensorMap<P, O, M>> : std::true_type {};

template <typename T>
inline constexpr bool is_tensor_v = is_tensor<std::remove_cv_t<std::remove_reference_t<T>>>::value;

// Deduction through a base pointer: also recognizes types such as
// VectorBlock whose CRTP base names another type (Block).
template <typename D>
std::true_type dense_base_test(const Eigen::DenseBase<D>*);
std::false_type dense_base_test(...);

template <typename T>
inline constexpr bool is_eigen_dense_v =
    decltype(dense_base_test(std::declval<std::remove_cv_t<std::remove_reference_t<T>>*>()))::value;

template <typename T>
using scalar_of_t = std::remove_const_t<typename std::remove_reference_t<T>::Scalar>;

/// The element type in which a loss computing in Scalar reads (or writes)
/// the rows of X: X's own scalar when it is Scalar or, for a float loss,
/// Eigen::bfloat16 or Eigen::half; Scalar otherwise (the checks below then
/// stop compilation with a readable message).
template <typename Scalar, typename X, typename = void>
struct storage_of {
  using type = Scalar;
};
template <typename Scalar, typename X>
struct storage_of<Scalar, X, std::enable_if_t<is_eigen_dense_v<X> || is_tensor_v<X>>> {
  using type = std::conditional_t<is_storage_for_v<scalar_of_t<X>, Scalar>, scalar_of_t<X>, Scalar>;
};
template <typename Scalar, typename X>
using storage_of_t = typename storage_of<Scalar, X>::type;

/// Stops compilation, readably, on logits that rdrop cannot read as rows.
template <typename Scalar, typename X>
constexpr void check_logits_type() {
  static_assert(is_eigen_dense_v<X> || is_tensor_v<X>,
                "rdrop: logits must be an Eigen dense matrix/expression, Map, Ref, or a "
                "row-major Eigen::Tensor/TensorMap of rank 2 or 3");
  if constexpr (is_eigen_dense_v<X> || is_tensor_v<X>) {
    static_assert(std::is_floating_point_v<scalar_of_t<X>> || is_two_byte_v<scalar_of_t<X>>,
                  "rdrop: logits must be float, double, Eigen::bfloat16 or Eigen::half; integer logits "
                  "are not supported");
    static_assert(is_storage_for_v<scalar_of_t<X>, Scalar>,
                  "rdrop: the logits' scalar type differs from the loss's Scalar; convert "
                  "with .template cast<Scalar>() or use a loss of the logits' type (bfloat16 and "
                  "half logits go to a float loss)");
  }
  if constexpr (is_tensor_v<X>) {
    using T = std::remove_cv_t<std::remove_reference_t<X>>;
    static_assert(static_cast<int>(T::Layout) == static_cast<int>(Eigen::RowMajor),
                  "rdrop: Eigen::Tensor logits must be RowMajor so that the classes of a "
                  "row are contiguous; column-major tensors are not supported");
    static_assert(T::NumIndices == 2 || T::NumIndices == 3,
                  "rdrop: tensor logits must have rank 2 [rows, classes] or rank 3 "
                  "[batch, time, classes]");
  }
}

/// The logical shape of an argument: rank 1 (per-row values), 2 or 3.
struct Shape {
  int rank = 2;
  std::array<Index, 3> dims{0, 0, 0};

  /// Rows seen by the kernels: the product of all dimensions but the last.
  Index rows() const {
    if (rank == 1) return dims[0];
    return rank == 2 ? dims[0] : dims[0] * dims[1];
  }
  Index cols() const { return rank == 1 ? 1 : dims[static_cast<std::size_t>(rank - 1)]; }
  /// Consecutive rows that make up one sample (time steps of a sequence).
  Index group() const { return rank == 3 ? dims[1] : 1; }
  /// Shape of the per-row values: this shape without its class dimension.
  Shape without_classes() const {
    Shape s;
    s.rank = rank == 3 ? 2 : 1;
    s.dims = {dims[0], rank == 3 ? dims[1] : 0, 0};
    return s;
  }
  std::string str() const {
    std::ostringstream s;
    s << '[';
    for (int i = 0; i < rank; ++i) s << (i ? " x " : "") << dims[static_cast<std::size_t>(i)];
    s << ']';
    return s.str();
  }
};

template <typename X>
Shape shape_of(const X& x) {
  Shape s;
  if constexpr (is_tensor_v<X>) {
    s.rank = static_cast<int>(std::remove_reference_t<X>::NumIndices);
    for (int i = 0; i < s.rank; ++i) s.dims[static_cast<std::size_t>(i)] = x.dimension(static_cast<std::size_t>(i));
  } else {
    s.dims = {x.rows(), x.cols(), 0};
  }
  return s;
}

/// Read-only rows: row i starts at data + i * stride, classes contiguous.
template <typename Scalar>
struct ConstRows {
  const Scalar* data = nullptr;
  Index rows = 0;
  Index cols = 0;
  Index stride = 0;
  Index group = 1;
  const Scalar* row(Index i) const { return data + i * stride; }
};

/// Writable rows, same addressing.
template <typename Scalar>
struct Rows {
  Scalar* data = nullptr;
  Index stride = 0;
  Scalar* row(Index i) const { return data + i * stride; }
};

template <typename Scalar>
using RowMajorMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Logits as rows of Scalar (the storage type: float, double, or a 2-byte
/// type). Row-major data with contiguous classes is read in place;
/// anything else (column-major, strided classes, lazy expressions) is first
/// evaluated into a row-major copy owned by this object.
template <typename Scalar>
class RowSource {
 public:
  template <typename X>
  explicit RowSource(const X& x) : shape_(shape_of(x)) {
    check_logits_type<compute_t<Scalar>, X>();
    // The rest only for readable logits: no further errors after the message.
    if constexpr (is_eigen_dense_v<X> || is_tensor_v<X>) {
      if constexpr (std::is_same_v<scalar_of_t<X>, Scalar>) read(x);
    }
  }
  RowSource(const RowSource&) = delete;
  RowSource& operator=(const RowSource&) = delete;

  const ConstRows<Scalar>& rows() const { return view_; }
  const Shape& shape() const { return shape_; }

 private:
  template <typename X>
  void read(const X& x) {
    view_.rows = shape_.rows();
    view_.cols = shape_.cols();
    view_.group = shape_.group();
    if constexpr (is_tensor_v<X>) {
      view_.data = x.data();
      view_.stride = view_.cols;
    } else {
      using T = std::remove_cv_t<std::remove_reference_t<X>>;
      if constexpr ((T::Flags & Eigen::DirectAccessBit) != 0 && T::IsRowMajor) {
        if (x.innerStride() == 1) {
          view_.data = x.data();
          view_.stride = x.outerStride();
          return;
        }
      }
      copy_ = x;
      view_.data = copy_.data();
      view_.stride = view_.cols;
    }
  }

  Shape shape_;
  ConstRows<Scalar> view_;
  RowMajorMatrix<Scalar> copy_;
};

template <typename T>
struct is_plain_tensor : std::false_type {};
template <typename S, int R, int O, typename I>
struct is_plain_tensor<Eigen::Tensor<S, R, O, I>> : std::true_type {};

/// Whether an output may be resized by rdrop (Matrix, Array, Tensor) or must
/// already have the right shape (Map, Ref, Block, TensorMap).
template <typename T>
constexpr bool is_resizable() {
  if constexpr (is_tensor_v<T>) {
    return is_plain_tensor<T>::value;
  } else {
    return std::is_base_of_v<Eigen::PlainObjectBase<T>, T>;
  }
}

/// Stops compilation, readably, on an output rdrop cannot write: a gradient
/// (TwoByte) may also be bfloat16 or half for a float loss.
template <typename Scalar, typename T, bool TwoByte = false>
constexpr void check_output_type() {
  static_assert(is_eigen_dense_v<T> || is_tensor_v<T>,
                "rdrop: outputs must be Eigen dense matrices/vectors, Map, Ref, or "
                "row-major Eigen::Tensor/TensorMap");
  if constexpr (is_eigen_dense_v<T> || is_tensor_v<T>) {
    if constexpr (TwoByte) {
      static_assert(is_storage_for_v<scalar_of_t<T>, Scalar>,
                    "rdrop: the gradient's scalar type must be the loss's Scalar (or, for a float "
                    "loss, Eigen::bfloat16 or Eigen::half)");
    } else {
      static_assert(std::is_same_v<scalar_of_t<T>, Scalar>,
                    "rdrop: the output's scalar type differs from the loss's Scalar");
    }
  }
  if constexpr (is_tensor_v<T>) {
    static_assert(static_cast<int>(T::Layout) == static_cast<int>(Eigen::RowMajor),
                  "rdrop: Eigen::Tensor outputs must be RowMajor");
  }
}

/// A gradient output of the logits' shape, of element type Scalar (the
/// storage type: float, double, or a 2-byte type). The constructor only
/// checks; open() resizes and hands out rows to write; close() copies back
/// when the output could not be written in place (column-major or strided).
template <typename Scalar, typename G>
class RowSink {
  using T = std::remove_cv_t<std::remove_reference_t<G>>;

 public:
  RowSink(G& out, const Shape& want, const char* where, const char* name)
      : out_(out), want_(want) {
    check_output_type<compute_t<Scalar>, T, true>();
    if (!fits()) {
      fail(where, std::string("argument '") + name + "' has shape " + shape_of(out_).str() +
                      "; expected " + want_.str());
    }
  }

  Rows<Scalar> open() {
    if constexpr (is_tensor_v<T>) {
      if constexpr (is_resizable<T>()) {
        std::array<Index, static_cast<std::size_t>(T::NumIndices)> d{};
        for (std::size_t i = 0; i < d.size(); ++i) d[i] = want_.dims[i];
        out_.resize(d);
      }
      return {out_.data(), want_.cols()};
    } else {
      if constexpr (is_resizable<T>()) out_.resize(want_.rows(), want_.cols());
      if constexpr ((T::Flags & Eigen::DirectAccessBit) != 0 && T::IsRowMajor) {
        if (out_.innerStride() == 1) return {out_.data(), out_.outerStride()};
      }
      scratch_.resize(want_.rows(), want_.cols());
      use_scratch_ = true;
      return {scratch_.data(), want_.cols()};
    }
  }

  void close() {
    if constexpr (is_eigen_dense_v<T>) {
      if (use_scratch_) out_ = scratch_;
    }
  }

 private:
  bool fits() const {
    if constexpr (is_tensor_v<T>) {
      if (T::NumIndices != want_.rank) return false;
      return is_resizable<T>() || shape_of(out_).dims == want_.dims;
    } else {
      if constexpr (is_resizable<T>()) {
        return (T::RowsAtCompileTime == Eigen::Dynamic || T::RowsAtCompileTime == want_.rows()) &&
               (T::ColsAtCompileTime == Eigen::Dynamic || T::ColsAtCompileTime == want_.cols());
      }
      return out_.rows() == want_.rows() && out_.cols() == want_.cols();
    }
  }

  G& out_;
  Shape want_;
  RowMajorMatrix<Scalar> scratch_;
  bool use_scratch_ = false;
};

/// Per-row values: an Eigen vector of N entries (column or row vector), or a
/// row-major tensor of the logits' shape without the class dimension.
template <typename Scalar, typename V>
class ValueSink {
  using T = std::remove_cv_t<std::remove_reference_t<V>>;

 public:
  ValueSink(V& out, const Shape& want, const char* where, const char* name)
      : out_(out), want_(want) {
    check_output_type<Scalar, T>();
    if (!fits()) {
      fail(where, std::string("argument '") + name + "' has shape " + shape_of(out_).str() +
                      "; expected " + std::to_string(want_.rows()) +
                      " values (one per row of the logits, " + want_.str() + ")");
    }
  }

  Scalar* open() {
    if constexpr (is_tensor_v<T>) {
      if constexpr (is_resizable<T>()) {
        std::array<Index, static_cast<std::size_t>(T::NumIndices)> d{};
        for (std::size_t i = 0; i < d.size(); ++i) d[i] = want_.dims[i];
        out_.resize(d);
      }
      return out_.data();
    } else {
      if constexpr (is_resizable<T>()) out_.resize(count());
      if constexpr ((T::Flags & Eigen::DirectAccessBit) != 0) {
        if (out_.innerStride() == 1) return out_.data();
      }
      scratch_.resize(count());
      use_scratch_ = true;
      return scratch_.data();
    }
  }

  void close() {
    if constexpr (is_eigen_dense_v<T>) {
      if (use_scratch_) {
        for (Index i = 0; i < count(); ++i) out_.coeffRef(i) = scratch_(i);
      }
    }
  }

 private:
  Index count() const { return want_.rank == 1 ? want_.dims[0] : want_.dims[0] * want_.dims[1]; }

  bool fits() const {
    if constexpr (is_tensor_v<T>) {
      if (T::NumIndices != want_.rank) return false;
      return is_resizable<T>() || shape_of(out_).dims == want_.dims;
    } else {
      static_assert(T::IsVectorAtCompileTime || T::RowsAtCompileTime == Eigen::Dynamic ||
                        T::ColsAtCompileTime == Eigen::Dynamic,
                    "rdrop: per-row values go into an Eigen vector");
      if constexpr (is_resizable<T>()) {
        static_assert(T::IsVectorAtCompileTime,
                      "rdrop: per-row values go into an Eigen vector (VectorX / RowVectorX)");
        return T::SizeAtCompileTime == Eigen::Dynamic || T::SizeAtCompileTime == count();
      }
      return (out_.rows() == 1 || out_.cols() == 1) && out_.size() == count();
    }
  }

  V& out_;
  Shape want_;
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> scratch_;
  bool use_scratch_ = false;
};

}  // namespace rdrop::detail
