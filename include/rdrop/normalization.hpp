/// \file
/// The published ways of scaling the two terms of the R-Drop loss.
#pragma once

#include "rdrop/detail/errors.hpp"
#include "rdrop/terms.hpp"

#include <string>

namespace rdrop {

/// How an R-Drop loss scales its two terms. With 2B rows in B pairs, n
/// labeled rows (rows whose label is not the ignore label and that are not
/// masked; n = 2B when all are labeled), P unmasked pairs (P = B without a
/// mask), T_r the task loss of row r (cross-entropy) and D_k the divergence of
/// pair k (for SymmetricKL, D = ½[KL(p‖q) + KL(q‖p)]):
///
/// | value         | loss                                   |
/// |---------------|----------------------------------------|
/// | Paper         | Σ_r T_r + α Σ_k D_k                    |
/// | KerasCode     | Σ_r T_r / n + α Σ_k D_k / (2P)         |
/// | PyTorchReadme | Σ_r T_r / n + α Σ_k D_k                |
/// | Sum           | Σ_r T_r + α Σ_k D_k                    |
/// | Mean          | Σ_r T_r / n + α Σ_k D_k / P            |
/// | Fairseq       | (Σ_r T_r + α Σ_k D_k) / P              |
///
/// KerasCode is the seed's `mean(CE) + α/4 · mean(KL(p‖q) + KL(q‖p))` and
/// equals Paper / (2B) when every row is labeled. PyTorchReadme is the
/// official R-Drop README's `0.5·(CE1 + CE2) + α · 0.5·(ΣKL(q‖p) + ΣKL(p‖q))`.
/// Fairseq is the R-Drop translation criterion: summed (label-smoothed)
/// cross-entropy of both copies plus α times the summed symmetric KL, divided
/// by the unmasked tokens of one copy. Sum is numerically the Paper form,
/// named for code that normalizes itself. A mean over zero rows or pairs is
/// 0 (never NaN), so an all-unlabeled batch contributes its divergence only.
enum class Normalization {
  Paper,          ///< Σ_r T_r + α Σ_k D_k: the paper's objective
  KerasCode,      ///< Σ_r T_r / n + α Σ_k D_k / (2P): the seed's Keras code (the default)
  PyTorchReadme,  ///< Σ_r T_r / n + α Σ_k D_k: the official README's PyTorch snippet
  Sum,            ///< Σ_r T_r + α Σ_k D_k: Paper, named for code that normalizes itself
  Mean,           ///< Σ_r T_r / n + α Σ_k D_k / P
  Fairseq         ///< (Σ_r T_r + α Σ_k D_k) / P: fairseq's R-Drop criterion, P the tokens of one copy
};

namespace detail {

/// Throws for a Normalization value that names none (an int cast to it).
inline void check_normalization(Normalization n, const char* where) {
  switch (n) {
    case Normalization::Paper:
    case Normalization::KerasCode:
    case Normalization::PyTorchReadme:
    case Normalization::Sum:
    case Normalization::Mean:
    case Normalization::Fairseq:
      return;
  }
  fail(where, "argument 'normalization' is " + std::to_string(static_cast<int>(n)) +
                  "; expected one of Normalization::Paper, KerasCode, PyTorchReadme, Sum, Mean, Fairseq");
}

/// The factors applied to Σ task and Σ D under `normalization`.
template <typename Scalar>
struct TermScales {
  Scalar task;
  Scalar divergence;
};

template <typename Scalar>
TermScales<Scalar> term_scales(Normalization normalization, Scalar alpha, const RDropCounts& c) {
  const Scalar per_labeled = c.labeled_rows > 0 ? Scalar(1) / Scalar(c.labeled_rows) : Scalar(0);
  const Scalar per_pair = c.pairs > 0 ? Scalar(1) / Scalar(c.pairs) : Scalar(0);
  switch (normalization) {
    case Normalization::KerasCode:
      return {per_labeled, alpha * per_pair / Scalar(2)};
    case Normalization::PyTorchReadme:
      return {per_labeled, alpha};
    case Normalization::Mean:
      return {per_labeled, alpha * per_pair};
    case Normalization::Fairseq:
      return {per_pair, alpha * per_pair};
    case Normalization::Paper:
    case Normalization::Sum:
      break;
  }
  return {Scalar(1), alpha};
}

}  // namespace detail
}  // namespace rdrop
