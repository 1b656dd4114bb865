/// \file
/// The unnormalized parts of an R-Drop loss, for normalizing across workers.
#pragma once

#include <Eigen/Core>

namespace rdrop {

/// What the normalizations divide by. Counts depend on labels and masks
/// only, never on logits, so data-parallel workers can all-reduce them before
/// the forward pass is even done.
struct RDropCounts {
  /// Rows that carry a task-loss term (labeled and not masked).
  Eigen::Index labeled_rows = 0;
  /// Pairs that carry a divergence term (neither copy masked); for sequences,
  /// the unmasked tokens of one copy.
  Eigen::Index pairs = 0;
  /// Rows of the batch, masked or not (2B, or 2B·T).
  Eigen::Index rows = 0;

  /// Adds another worker's (or batch's) counts.
  RDropCounts& operator+=(const RDropCounts& other) {
    labeled_rows += other.labeled_rows;
    pairs += other.pairs;
    rows += other.rows;
    return *this;
  }
  /// The sum of two counts.
  friend RDropCounts operator+(RDropCounts a, const RDropCounts& b) { return a += b; }
  /// Equal in all three counts.
  friend bool operator==(const RDropCounts& a, const RDropCounts& b) {
    return a.labeled_rows == b.labeled_rows && a.pairs == b.pairs && a.rows == b.rows;
  }
};

/// Sums and counts of the two terms of an R-Drop loss, before any
/// normalization. Workers that all-reduce terms (+) and then normalize get
/// exactly the single-machine value.
template <typename Scalar>
struct RDropTerms {
  /// Σ of the task loss over labeled, unmasked rows.
  Scalar task_sum = Scalar(0);
  /// Σ of the divergence D over unmasked pairs (not yet multiplied by α).
  Scalar divergence_sum = Scalar(0);
  /// What the normalization divides by.
  RDropCounts counts;

  /// Adds another worker's (or batch's) sums and counts.
  RDropTerms& operator+=(const RDropTerms& other) {
    task_sum += other.task_sum;
    divergence_sum += other.divergence_sum;
    counts += other.counts;
    return *this;
  }
  /// The sum of two terms.
  friend RDropTerms operator+(RDropTerms a, const RDropTerms& b) { return a += b; }
};

}  // namespace rdrop
