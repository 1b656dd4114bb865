// The published ways of scaling the two terms of the R-Drop loss.
#pragma once

namespace rdrop {

/// How RDropLoss scales its two terms. With B pairs (2B rows), n labeled rows
/// (rows whose label is not the ignore label; n = 2B when all are labeled),
/// CE_r the cross-entropy of row r and D_k the divergence of pair k
/// (for SymmetricKL, D = ½[KL(p‖q) + KL(q‖p)]):
///
/// | value         | loss                                   |
/// |---------------|----------------------------------------|
/// | Paper         | Σ_r CE_r + α Σ_k D_k                   |
/// | KerasCode     | Σ_r CE_r / n + α Σ_k D_k / (2B)        |
/// | PyTorchReadme | Σ_r CE_r / n + α Σ_k D_k               |
/// | Sum           | Σ_r CE_r + α Σ_k D_k                   |
/// | Mean          | Σ_r CE_r / n + α Σ_k D_k / B           |
///
/// KerasCode is the seed's `mean(CE) + α/4 · mean(KL(p‖q) + KL(q‖p))` and
/// equals Paper / (2B) when every row is labeled. PyTorchReadme is the
/// official R-Drop README's `0.5·(CE1 + CE2) + α · 0.5·(ΣKL(q‖p) + ΣKL(p‖q))`.
/// Sum is numerically the Paper form, named for code that normalizes
/// itself. A mean over zero labeled rows is 0 (never NaN), so an all-unlabeled
/// batch contributes its divergence term only.
enum class Normalization { Paper, KerasCode, PyTorchReadme, Sum, Mean };

}  // namespace rdrop
