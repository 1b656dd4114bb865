/// \file
/// The train/predict gap of dropout that R-Drop closes (source text,
/// "consistency"): a model trained with dropout is an ensemble of sub-models,
/// whose right prediction is the Monte-Carlo average of the sub-models'
/// distributions, E_ε[softmax f(x, ε)]; yet one usually predicts with the
/// dropout-off model softmax f(x, E[ε]). MeasureConsistency measures how far
/// the two are apart, KL(MC average ‖ dropout-off prediction), and how
/// accurate each is.
#pragma once

#include "rdrop/detail/errors.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>

namespace rdrop {

/// Settings of MeasureConsistency.
struct ConsistencyOptions {
  /// K ≥ 1: dropout-on passes averaged into the Monte-Carlo prediction.
  int passes = 10;
  /// Rows handed to the forward function per call (0: all rows in one call);
  /// bounds the memory of the activations for large inputs.
  Eigen::Index batch_rows = 0;
};

/// What MeasureConsistency found. Accuracies count only rows with a label
/// ≥ 0 (negative labels mark unlabeled rows) and are NaN when there are none.
template <typename Scalar>
struct ConsistencyReport {
  /// Mean over all rows of KL(m ‖ d) in nats, m the average of the K
  /// dropout-on softmax distributions and d the dropout-off softmax.
  Scalar kl = Scalar(0);
  /// Accuracy of argmax m (the MC-average prediction).
  Scalar mc_accuracy = Scalar(0);
  /// Accuracy of argmax d (the dropout-off prediction).
  Scalar deterministic_accuracy = Scalar(0);
  /// Fraction of rows where argmax m equals argmax d.
  Scalar agreement = Scalar(0);
  /// Rows measured.
  Eigen::Index samples = 0;
  /// Rows with a label ≥ 0, over which the accuracies are taken.
  Eigen::Index labeled = 0;
  /// K, the dropout-on passes that were averaged.
  int passes = 0;
};

namespace detail {

/// Index of the first largest entry of a row (ties go to the lower class,
/// as numpy's and PyTorch's argmax do).
template <typename Row>
Eigen::Index first_argmax(const Row& row) {
  Eigen::Index best = 0;
  for (Eigen::Index c = 1; c < row.size(); ++c) {
    if (row(c) > row(best)) best = c;
  }
  return best;
}

/// log Σ_c exp(row_c), max-shifted. Scalar loops on purpose: rows are short
/// here, and GCC 12 flags Eigen's AVX-512 reductions with false
/// -Wmaybe-uninitialized warnings.
/// Returned as its two parts, so that log p_c = (row_c − top) − log_sum
/// never carries the rounding of top + log_sum (ε·|top|, 5e-4 for float
/// logits near 1e4).
template <typename Scalar>
struct LogSumExp {
  Scalar top;
  Scalar log_sum;
  Scalar log_softmax(Scalar x) const { return (x - top) - log_sum; }
};

template <typename Scalar>
LogSumExp<Scalar> log_sum_exp(const Scalar* row, Eigen::Index n) {
  Scalar top = row[0];
  for (Eigen::Index c = 1; c < n; ++c) top = row[c] > top ? row[c] : top;
  Scalar sum = Scalar(0);
  for (Eigen::Index c = 0; c < n; ++c) sum += std::exp(row[c] - top);
  return {top, std::log(sum)};
}

/// Adds softmax(logits) row by row into `sum` (−inf logits give
/// probability 0).
template <typename Matrix>
void add_softmax(const Matrix& logits, Matrix& sum) {
  for (Eigen::Index r = 0; r < logits.rows(); ++r) {
    const auto* row = logits.data() + r * logits.cols();
    const auto lse = log_sum_exp(row, logits.cols());
    for (Eigen::Index c = 0; c < logits.cols(); ++c) sum(r, c) += std::exp(lse.log_softmax(row[c]));
  }
}

inline void check_consistency_arguments(const ConsistencyOptions& options, Eigen::Index labels,
                                        Eigen::Index rows, const char* where) {
  if (options.passes < 1) {
    fail(where, "argument 'passes' is " + std::to_string(options.passes) + "; expected >= 1");
  }
  if (options.batch_rows < 0) {
    fail(where, "argument 'batch_rows' is " + std::to_string(options.batch_rows) + "; expected >= 0");
  }
  if (labels != rows) {
    fail(where, "argument 'labels' has " + std::to_string(labels) + " entries; expected one per input row (" +
                    std::to_string(rows) + ")");
  }
}

/// Running totals of MeasureConsistency, in double and in row order: the
/// result does not depend on batching.
struct ConsistencyTally {
  double kl_sum = 0.0;
  Eigen::Index mc_correct = 0, det_correct = 0, agree = 0, labeled = 0;
};

/// Adds rows [first, first + off.rows()) to the tally: KL(mean ‖ softmax(off))
/// per row, the two argmaxes against each other and against the labels.
template <typename Matrix, typename Labels>
void tally_rows(const Matrix& off, const Matrix& mean, const Labels& labels, Eigen::Index first,
                ConsistencyTally& tally, const char* where) {
  using Scalar = typename Matrix::Scalar;
  const Eigen::Index classes = off.cols();
  for (Eigen::Index r = 0; r < off.rows(); ++r) {
    const Scalar* d = off.data() + r * classes;
    const auto lse = log_sum_exp(d, classes);
    Scalar kl = Scalar(0);
    for (Eigen::Index c = 0; c < classes; ++c) {
      const Scalar mc = mean(r, c);
      if (mc > Scalar(0)) kl += mc * (std::log(mc) - lse.log_softmax(d[c]));
    }
    tally.kl_sum += static_cast<double>(kl);
    const Eigen::Index mc_class = first_argmax(mean.row(r));
    const Eigen::Index det_class = first_argmax(off.row(r));
    tally.agree += mc_class == det_class;
    const auto label = static_cast<std::int64_t>(labels(first + r));
    if (label >= static_cast<std::int64_t>(classes)) {
      fail(where, "argument 'labels' has " + std::to_string(label) + " at row " + std::to_string(first + r) +
                      "; expected a class in [0, " + std::to_string(classes) + ") or a negative value for unlabeled");
    }
    if (label >= 0) {
      ++tally.labeled;
      tally.mc_correct += mc_class == label;
      tally.det_correct += det_class == label;
    }
  }
}

}  // namespace detail

/// Measures the consistency gap of a dropout model on `input` (one sample
/// per row) with labels `labels` (an Eigen vector of integers, one per row;
/// negative = unlabeled).
///
/// `forward(x, dropout)` must return the logits (rows × C, any Eigen dense
/// expression of float or double) of the rows `x` with dropout on
/// (`dropout == true`) or off. It is called with `input` itself, or with
/// blocks `input.middleRows(...)` when options.batch_rows splits the input,
/// so take the argument as a template, an Eigen::Ref or a const Matrix&.
/// Every dropout-on call must draw fresh masks (e.g. advance the step of
/// rdrop::Dropout on each call): K identical masks would measure nothing.
///
/// For each row: d = softmax(dropout-off logits), m = (1/K) Σ_k
/// softmax(dropout-on logits_k), KL(m ‖ d) = Σ_c m_c (log m_c − log d_c)
/// with log d from the logits (terms with m_c = 0 are 0). The report holds
/// its mean, the accuracies of argmax m and argmax d, and their agreement.
///
/// Throws std::invalid_argument (naming the argument) for passes < 1,
/// batch_rows < 0, a label count other than input.rows(), a label ≥ C, or
/// forward results of the wrong shape.
template <typename Forward, typename Input, typename Labels>
auto MeasureConsistency(Forward&& forward, const Eigen::DenseBase<Input>& input,
                        const Eigen::DenseBase<Labels>& labels, ConsistencyOptions options = {}) {
  const Input& x = input.derived();
  using Result = std::decay_t<decltype(forward(x, false))>;
  using Scalar = typename Result::Scalar;
  static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                "rdrop::MeasureConsistency: forward must return float or double logits");
  static_assert(std::is_integral_v<typename Labels::Scalar> && Labels::IsVectorAtCompileTime,
                "rdrop::MeasureConsistency: labels must be a vector of integers (e.g. Eigen::VectorXi)");
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const char* where = "MeasureConsistency";

  const Eigen::Index rows = x.rows();
  detail::check_consistency_arguments(options, labels.size(), rows, where);

  ConsistencyReport<Scalar> report;
  report.samples = rows;
  report.passes = options.passes;
  detail::ConsistencyTally tally;
  Eigen::Index classes = -1;
  const Eigen::Index batch = options.batch_rows > 0 ? options.batch_rows : rows;

  auto evaluate = [&](const auto& rows_in, Eigen::Index first) {
    const Eigen::Index n = rows_in.rows();
    auto checked = [&](auto&& logits, const char* mode) {
      Matrix m = std::forward<decltype(logits)>(logits);
      if (classes < 0) classes = m.cols();
      if (m.rows() != n || m.cols() != classes || classes == 0) {
        detail::fail(where, std::string("argument 'forward' returned logits of shape ") +
                                detail::shape(m.rows(), m.cols()) + " with dropout " + mode +
                                " for a batch of " + std::to_string(n) + " rows; expected " +
                                detail::shape(n, classes > 0 ? classes : 1) + " (rows x classes)");
      }
      return m;
    };
    const Matrix off = checked(forward(rows_in, false), "off");
    Matrix mean = Matrix::Zero(n, classes);
    for (int k = 0; k < options.passes; ++k) detail::add_softmax(checked(forward(rows_in, true), "on"), mean);
    const Scalar inverse_passes = Scalar(1) / static_cast<Scalar>(options.passes);
    for (Eigen::Index i = 0; i < mean.size(); ++i) mean.data()[i] *= inverse_passes;

    detail::tally_rows(off, mean, labels.derived(), first, tally, where);
  };
  // (A label >= C is caught as its row is reached: C is known only once
  // forward has run.)
  if (batch >= rows) {
    evaluate(x, 0);
  } else {
    for (Eigen::Index first = 0; first < rows; first += batch) {
      evaluate(x.middleRows(first, std::min(batch, rows - first)), first);
    }
  }

  const auto per_row = [&](double value, Eigen::Index count) {
    return count > 0 ? static_cast<Scalar>(value / static_cast<double>(count))
                     : std::numeric_limits<Scalar>::quiet_NaN();
  };
  report.labeled = tally.labeled;
  report.kl = rows > 0 ? per_row(tally.kl_sum, rows) : Scalar(0);
  report.mc_accuracy = per_row(static_cast<double>(tally.mc_correct), report.labeled);
  report.deterministic_accuracy = per_row(static_cast<double>(tally.det_correct), report.labeled);
  report.agreement = rows > 0 ? per_row(static_cast<double>(tally.agree), rows) : Scalar(0);
  return report;
}

}  // namespace rdrop
