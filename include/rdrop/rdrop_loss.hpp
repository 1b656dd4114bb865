// The R-Drop loss over the 2B output rows of a duplicated batch.
#pragma once

#include "rdrop/cross_entropy.hpp"
#include "rdrop/detail/errors.hpp"
#include "rdrop/detail/labels.hpp"
#include "rdrop/detail/parallel.hpp"
#include "rdrop/detail/rows.hpp"
#include "rdrop/divergence.hpp"
#include "rdrop/layout.hpp"
#include "rdrop/normalization.hpp"
#include "rdrop/symmetric_kl.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace rdrop {

/// Settings of RDropLoss.
template <typename Scalar>
struct RDropOptions {
  /// Weight α ≥ 0 of the divergence term (0: plain cross-entropy on 2B rows).
  Scalar alpha = Scalar(1);
  /// Where the two copies of each sample are among the rows.
  Layout layout = Layout::Interleaved;
  /// How the two terms are scaled (see Normalization).
  Normalization normalization = Normalization::KerasCode;
  /// Rows with this label contribute no cross-entropy (their divergence
  /// term stays: the semi-supervised use of R-Drop).
  Eigen::Index ignore_index = -100;
  /// ε in [0, 1) for the cross-entropy targets.
  Scalar label_smoothing = Scalar(0);
  /// Threads for this loss's sweeps; 0 uses rdrop::set_num_threads's value.
  int threads = 0;
};

/// The R-Drop loss: cross-entropy on both copies of every sample plus
/// α · D(first copy, second copy), scaled as `normalization` says, with the
/// gradient for all 2B rows (neither copy is detached).
///
/// Logits are 2B x C (rows are samples, classes contiguous), or a row-major
/// tensor [2B, C] or [2B, T, C] whose copies pair up per sample (each of the
/// T time steps with its own). Labels are integers, once per sample (B, or
/// B·T) in pair order, or once per row (2B, or 2B·T).
///
/// Divergence is SymmetricKL by default (the paper's ½[KL(p‖q) + KL(q‖p)],
/// run on the fused paired sweep) or any type satisfying is_divergence_v.
template <typename Scalar, typename Divergence = SymmetricKL<Scalar>>
class RDropLoss {
  static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                "rdrop: Scalar must be float or double");
  static_assert(is_divergence_v<Divergence, Scalar>,
                "rdrop: RDropLoss's Divergence must define EvaluatePair and "
                "EvaluatePairWithGradient (see rdrop::is_divergence_v)");

 public:
  /// Throws std::invalid_argument for α < 0 (or NaN), ε outside [0, 1) or
  /// threads < 0.
  explicit RDropLoss(RDropOptions<Scalar> options = {}, Divergence divergence = Divergence())
      : options_(options), divergence_(std::move(divergence)) {
    if (!(options_.alpha >= Scalar(0))) {
      detail::fail("RDropLoss::RDropLoss", "argument 'alpha' is " + std::to_string(options_.alpha) +
                                               "; expected alpha >= 0");
    }
    detail::check_smoothing(options_.label_smoothing, "RDropLoss::RDropLoss");
    if (options_.threads < 0) {
      detail::fail("RDropLoss::RDropLoss", "argument 'threads' is " + std::to_string(options_.threads) +
                                               "; expected >= 0");
    }
  }

  const RDropOptions<Scalar>& options() const { return options_; }
  const Divergence& divergence() const { return divergence_; }

  /// The loss of the 2B rows.
  template <typename X, typename Y>
  Scalar Evaluate(const X& logits, const Y& labels) const {
    return run(logits, labels, no_grad(), no_values(), "RDropLoss::Evaluate");
  }

  /// Writes ∂loss/∂logits for all 2B rows into `gradient` (resized if it can
  /// be, else it must have the logits' shape).
  template <typename X, typename Y, typename G>
  void Gradient(const X& logits, const Y& labels, G&& gradient) const {
    run(logits, labels, &gradient, no_values(), "RDropLoss::Gradient");
  }

  /// Evaluate and Gradient in one fused sweep.
  template <typename X, typename Y, typename G>
  Scalar EvaluateWithGradient(const X& logits, const Y& labels, G&& gradient) const {
    return run(logits, labels, &gradient, no_values(), "RDropLoss::EvaluateWithGradient");
  }

  /// Unnormalized per-row losses ℓ_r = CE_r + (α/2)·D_k for row r of pair
  /// k: the two rows of a pair share its divergence, so Σ_r ℓ_r is the Paper
  /// form and their mean over 2B rows the KerasCode form.
  template <typename X, typename Y, typename V>
  void EvaluatePerRow(const X& logits, const Y& labels, V&& values) const {
    run(logits, labels, no_grad(), &values, "RDropLoss::EvaluatePerRow");
  }

 private:
  static detail::RowMajorMatrix<Scalar>* no_grad() { return nullptr; }
  static Eigen::Matrix<Scalar, Eigen::Dynamic, 1>* no_values() { return nullptr; }

  struct Scales {
    Scalar cross_entropy;
    Scalar divergence;
  };

  Scales scales(Eigen::Index labeled_rows, Eigen::Index pairs) const {
    const Scalar alpha = options_.alpha;
    const Scalar per_labeled = labeled_rows > 0 ? Scalar(1) / Scalar(labeled_rows) : Scalar(0);
    const Scalar per_pair = pairs > 0 ? Scalar(1) / Scalar(pairs) : Scalar(0);
    switch (options_.normalization) {
      case Normalization::KerasCode:
        return {per_labeled, alpha * per_pair / Scalar(2)};
      case Normalization::PyTorchReadme:
        return {per_labeled, alpha};
      case Normalization::Mean:
        return {per_labeled, alpha * per_pair};
      case Normalization::Paper:
      case Normalization::Sum:
        break;
    }
    return {Scalar(1), alpha};
  }

  template <typename X, typename Y, typename G, typename V>
  Scalar run(const X& logits, const Y& labels_in, G* gradient, V* values, const char* where) const {
    using detail::Index;
    const detail::RowSource<Scalar> x(logits);
    const detail::Shape& shape = x.shape();
    if (shape.dims[0] % 2 != 0) {
      detail::fail(where, "logits of shape " + shape.str() + " have an odd number (" +
                              std::to_string(shape.dims[0]) +
                              ") of rows; a duplicated batch has 2B rows");
    }
    if (x.rows().rows > 0 && x.rows().cols == 0) {
      detail::fail(where, "logits of shape " + shape.str() + " have no classes");
    }
    const std::vector<Index> labels = detail::paired_row_labels(
        detail::read_labels(labels_in, where), shape, options_.layout, options_.ignore_index, where);
    std::optional<detail::RowSink<Scalar, G>> grad_sink;
    std::optional<detail::ValueSink<Scalar, V>> value_sink;
    if (gradient) grad_sink.emplace(*gradient, shape, where, "gradient");
    if (values) value_sink.emplace(*values, shape.without_classes(), where, "values");

    const Index rows = x.rows().rows, c = x.rows().cols, pairs = rows / 2;
    const auto labeled = static_cast<Index>(
        std::count_if(labels.begin(), labels.end(), [](Index y) { return y >= 0; }));
    const Scales s = scales(labeled, pairs);
    detail::Rows<Scalar> g{};
    if (grad_sink) g = grad_sink->open();
    Scalar* row_values = value_sink ? value_sink->open() : nullptr;
    std::vector<Scalar> ce(static_cast<std::size_t>(pairs)), div(static_cast<std::size_t>(pairs));
    const Scalar half_alpha = options_.alpha / Scalar(2);
    detail::parallel_ranges(pairs, rows * c, options_.threads, [&](Index begin, Index end) {
      for (Index k = begin; k < end; ++k) {
        const detail::PairRows r = detail::pair_rows(options_.layout, k, rows, x.rows().group);
        const detail::CrossEntropyTarget<Scalar> ta{labels[static_cast<std::size_t>(r.first)],
                                                    options_.label_smoothing, s.cross_entropy};
        const detail::CrossEntropyTarget<Scalar> tb{labels[static_cast<std::size_t>(r.second)],
                                                    options_.label_smoothing, s.cross_entropy};
        const auto res = detail::divergence_pair(
            divergence_, x.rows().row(r.first), x.rows().row(r.second), c, s.divergence, ta, tb,
            grad_sink ? g.row(r.first) : nullptr, grad_sink ? g.row(r.second) : nullptr);
        ce[static_cast<std::size_t>(k)] = res.ce_first + res.ce_second;
        div[static_cast<std::size_t>(k)] = res.divergence;
        if (row_values) {
          const Scalar shared = options_.alpha > Scalar(0) ? half_alpha * res.divergence : Scalar(0);
          row_values[r.first] = res.ce_first + shared;
          row_values[r.second] = res.ce_second + shared;
        }
      }
    });
    if (grad_sink) grad_sink->close();
    if (value_sink) value_sink->close();
    Scalar total = s.cross_entropy * detail::ordered_sum(ce);
    if (options_.alpha > Scalar(0)) total += s.divergence * detail::ordered_sum(div);
    return total;
  }

  RDropOptions<Scalar> options_;
  Divergence divergence_;
};

}  // namespace rdrop
