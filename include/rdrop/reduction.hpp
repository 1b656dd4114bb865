/// \file
/// How the stand-alone loss functors reduce per-row values to one number.
#pragma once

#include "rdrop/detail/errors.hpp"

#include <string>

namespace rdrop {

/// Reduction applied by `Evaluate` of the stand-alone functors
/// (CrossEntropy, KLDivergence, SymmetricKL, PairedDivergence).
/// Per-row values are always available through `EvaluatePerRow`.
enum class Reduction {
  /// Sum over rows (cross-entropy) or pairs (divergences).
  Sum,
  /// Mean over counted rows: cross-entropy divides by the rows whose label is
  /// not the ignore label (PyTorch's `reduction='mean'`), divergences by the
  /// number of pairs (PyTorch's `reduction='batchmean'`). A mean over zero
  /// rows is 0, never NaN.
  Mean,
};

namespace detail {
/// Throws for a Reduction value that names none (an int cast to it).
inline void check_reduction(Reduction r, const char* where) {
  if (r != Reduction::Sum && r != Reduction::Mean) {
    fail(where, "argument 'reduction' is " + std::to_string(static_cast<int>(r)) +
                    "; expected Reduction::Sum or Reduction::Mean");
  }
}
}  // namespace detail

}  // namespace rdrop
