/// \file
/// Softmax cross-entropy with integer labels, an ignore label and smoothing.
#pragma once

#include "rdrop/detail/aliasing.hpp"
#include "rdrop/detail/errors.hpp"
#include "rdrop/detail/labels.hpp"
#include "rdrop/detail/parallel.hpp"
#include "rdrop/detail/rows.hpp"
#include "rdrop/detail/softmax_kernels.hpp"
#include "rdrop/reduction.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace rdrop {

/// Settings of CrossEntropy; the defaults are PyTorch's.
template <typename Scalar>
struct CrossEntropyOptions {
  /// Rows whose label equals this contribute nothing and are not counted.
  Eigen::Index ignore_index = -100;
  /// ε in [0, 1): the target is (1 − ε)·onehot(y) + ε/C.
  Scalar label_smoothing = Scalar(0);
  /// Sum over rows, or mean over the rows that are not ignored.
  Reduction reduction = Reduction::Mean;
};

namespace detail {
template <typename Scalar>
void check_smoothing(Scalar eps, const char* where) {
  if (!(eps >= Scalar(0) && eps < Scalar(1))) {
    fail(where, "argument 'label_smoothing' is " + std::to_string(eps) + "; expected a value in [0, 1)");
  }
}
}  // namespace detail

/// CE(x, y) = log Σ_j exp(x_j) − Σ_j t_j x_j with t = (1 − ε)·onehot(y) + ε/C,
/// from logits x (one row per sample, classes contiguous) and integer labels.
/// Gradient: softmax(x) − t. Matches PyTorch's F.cross_entropy with
/// ignore_index and label_smoothing, except that a mean over zero rows is 0.
template <typename Scalar>
class CrossEntropy {
  static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                "rdrop: Scalar must be float or double");

 public:
  /// Throws std::invalid_argument when label_smoothing is outside [0, 1) or
  /// reduction names no Reduction.
  explicit CrossEntropy(CrossEntropyOptions<Scalar> options = {}) : options_(options) {
    detail::check_smoothing(options_.label_smoothing, "CrossEntropy::CrossEntropy");
    detail::check_reduction(options_.reduction, "CrossEntropy::CrossEntropy");
  }

  /// The options it was made with.
  const CrossEntropyOptions<Scalar>& options() const { return options_; }

  /// The reduced cross-entropy of `logits` (N x C) against `labels` (N).
  template <typename X, typename Y>
  Scalar Evaluate(const X& logits, const Y& labels) const {
    return run(logits, labels, no_grad(), no_values(), "CrossEntropy::Evaluate");
  }

  /// Writes the gradient of the reduced loss into `gradient` (resized if it
  /// can be, else it must have the logits' shape). `gradient` may be the
  /// logits themselves (in place, exact); any other overlap with the
  /// logits throws std::invalid_argument.
  template <typename X, typename Y, typename G>
  void Gradient(const X& logits, const Y& labels, G&& gradient) const {
    run(logits, labels, &gradient, no_values(), "CrossEntropy::Gradient");
  }

  /// Evaluate and Gradient in one sweep.
  template <typename X, typename Y, typename G>
  Scalar EvaluateWithGradient(const X& logits, const Y& labels, G&& gradient) const {
    return run(logits, labels, &gradient, no_values(), "CrossEntropy::EvaluateWithGradient");
  }

  /// The loss of every row, unreduced (0 for ignored rows), into a vector.
  template <typename X, typename Y, typename V>
  void EvaluatePerRow(const X& logits, const Y& labels, V&& values) const {
    run(logits, labels, no_grad(), &values, "CrossEntropy::EvaluatePerRow");
  }

 private:
  static detail::RowMajorMatrix<Scalar>* no_grad() { return nullptr; }
  static Eigen::Matrix<Scalar, Eigen::Dynamic, 1>* no_values() { return nullptr; }

  template <typename X, typename Y, typename G, typename V>
  Scalar run(const X& logits, const Y& labels_in, G* gradient, V* values, const char* where) const {
    using detail::Index;
    const detail::RowSource<Scalar> x(logits);
    const detail::Shape& shape = x.shape();
    if (x.rows().rows > 0 && x.rows().cols == 0) {
      detail::fail(where, "logits of shape " + shape.str() + " have no classes");
    }
    const std::vector<Index> labels =
        detail::per_row_labels(detail::read_labels(labels_in, where), shape, options_.ignore_index, where);
    std::optional<detail::RowSink<Scalar, G>> grad_sink;
    std::optional<detail::ValueSink<Scalar, V>> value_sink;
    if (gradient) {
      grad_sink.emplace(*gradient, shape, where, "gradient");
      detail::check_in_place(detail::footprint_of(*gradient), detail::footprint_of(logits), where, "gradient",
                             "logits");
    }
    if (values) value_sink.emplace(*values, shape.without_classes(), where, "values");

    const Index n = x.rows().rows, c = x.rows().cols;
    const auto counted = static_cast<Index>(std::count_if(labels.begin(), labels.end(), [](Index y) { return y >= 0; }));
    const Scalar scale = (options_.reduction == Reduction::Mean)
                             ? (counted > 0 ? Scalar(1) / Scalar(counted) : Scalar(0))
                             : Scalar(1);
    detail::Rows<Scalar> g{};
    if (grad_sink) g = grad_sink->open();
    // In place (the gradient over its own logits): each row is read from a copy.
    const bool in_place = grad_sink && g.data == x.rows().data;
    std::vector<Scalar> per_row(static_cast<std::size_t>(n));
    detail::parallel_ranges(n, n * c, 0, [&](Index begin, Index end) {
      for (Index i = begin; i < end; ++i) {
        const detail::CrossEntropyTarget<Scalar> t{labels[static_cast<std::size_t>(i)],
                                                   options_.label_smoothing, scale};
        Scalar* out = grad_sink ? g.row(i) : detail::thread_scratch<Scalar>(c, 0);
        const Scalar* row = detail::row_to_read(x.rows().row(i), c, detail::kInPlaceSlot, in_place);
        per_row[static_cast<std::size_t>(i)] = detail::cross_entropy_row(row, c, t, out);
      }
    });
    if (value_sink) std::copy(per_row.begin(), per_row.end(), value_sink->open());
    if (grad_sink) grad_sink->close();
    if (value_sink) value_sink->close();
    return scale * detail::ordered_sum(per_row);
  }

  CrossEntropyOptions<Scalar> options_;
};

}  // namespace rdrop
