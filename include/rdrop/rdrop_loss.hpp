/// \file
/// The R-Drop loss for softmax outputs: cross-entropy on both copies plus
/// α · D between them (the symmetric KL by default).
#pragma once

#include "rdrop/cross_entropy.hpp"
#include "rdrop/detail/errors.hpp"
#include "rdrop/detail/labels.hpp"
#include "rdrop/detail/parallel.hpp"
#include "rdrop/detail/rows.hpp"
#include "rdrop/divergence.hpp"
#include "rdrop/layout.hpp"
#include "rdrop/normalization.hpp"
#include "rdrop/pair_plan.hpp"
#include "rdrop/paired_loss.hpp"
#include "rdrop/symmetric_kl.hpp"

#include <Eigen/Core>

#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace rdrop {

/// How label smoothing spreads ε over the classes.
enum class SmoothingStyle {
  /// PyTorch: target (1 − ε)·onehot(y) + ε/C (the label also gets ε/C).
  Uniform,
  /// fairseq's label_smoothed_cross_entropy: 1 − ε on the label and
  /// ε/(C − 1) on every other class.
  ExcludeTarget,
};

/// A label value that never occurs: the default of RDropOptions::padding_index.
inline constexpr Eigen::Index no_padding = std::numeric_limits<Eigen::Index>::min();

/// Settings of RDropLoss.
template <typename Scalar>
struct RDropOptions {
  /// Weight α ≥ 0 of the divergence term (0: plain cross-entropy on 2B rows).
  Scalar alpha = Scalar(1);
  /// Where the two copies of each sample are among the rows.
  Layout layout = Layout::Interleaved;
  /// How the two terms are scaled (see Normalization).
  Normalization normalization = Normalization::KerasCode;
  /// Rows with this label contribute no cross-entropy but keep their
  /// divergence term: unlabeled rows of semi-supervised R-Drop.
  Eigen::Index ignore_index = -100;
  /// Rows with this label are padding: no cross-entropy and no divergence,
  /// as fairseq does with its padding index. Off by default.
  Eigen::Index padding_index = no_padding;
  /// ε in [0, 1) for the cross-entropy targets.
  Scalar label_smoothing = Scalar(0);
  /// How ε is spread over the classes.
  SmoothingStyle smoothing_style = SmoothingStyle::Uniform;
  /// Threads for this loss's sweeps; 0 uses rdrop::set_num_threads's value.
  int threads = 0;
};

/// The R-Drop loss for single-label classification: cross-entropy on both
/// copies of every sample plus α · D(first copy, second copy), scaled as
/// `normalization` says, with the gradient for all 2B rows (neither copy is
/// detached). The calls (Evaluate, Gradient, EvaluateWithGradient,
/// EvaluatePerRow, EvaluateTerms, Count, Normalize, WithCounts, each with an
/// optional mask) are described in PairedLoss; the targets are integer
/// labels.
///
/// Divergence is SymmetricKL by default (the paper's ½[KL(p‖q) + KL(q‖p)],
/// run on the fused paired sweep together with the cross-entropy), or any
/// type satisfying is_divergence_v (KLDivergence, JensenShannon, a user's).
template <typename Scalar, typename Divergence = SymmetricKL<Scalar>>
class RDropLoss : public PairedLoss<RDropLoss<Scalar, Divergence>, Scalar> {
  static_assert(is_divergence_v<Divergence, Scalar>,
                "rdrop: RDropLoss's Divergence must define EvaluatePair and "
                "EvaluatePairWithGradient (see rdrop::is_divergence_v)");
  friend class PairedLoss<RDropLoss<Scalar, Divergence>, Scalar>;

 public:
  /// Throws std::invalid_argument for α < 0 (or infinite, or NaN), ε outside [0, 1),
  /// threads < 0, a layout, normalization or smoothing_style that names no
  /// value of its enum, or padding_index == ignore_index.
  explicit RDropLoss(RDropOptions<Scalar> options = {}, Divergence divergence = Divergence())
      : options_(options), divergence_(std::move(divergence)) {
    detail::check_common_options(options_, "RDropLoss::RDropLoss");
    detail::check_smoothing(options_.label_smoothing, "RDropLoss::RDropLoss");
    if (options_.smoothing_style != SmoothingStyle::Uniform &&
        options_.smoothing_style != SmoothingStyle::ExcludeTarget) {
      detail::fail("RDropLoss::RDropLoss", "argument 'smoothing_style' is " +
                                               std::to_string(static_cast<int>(options_.smoothing_style)) +
                                               "; expected SmoothingStyle::Uniform or SmoothingStyle::ExcludeTarget");
    }
    if (options_.padding_index == options_.ignore_index) {
      detail::fail("RDropLoss::RDropLoss", "argument 'padding_index' equals 'ignore_index' (" +
                                               std::to_string(options_.ignore_index) +
                                               "); a row cannot be both padding (no terms) and unlabeled "
                                               "(divergence only)");
    }
  }

  /// The options it was made with.
  const RDropOptions<Scalar>& options() const { return options_; }
  /// The divergence between the two copies.
  const Divergence& divergence() const { return divergence_; }

 private:
  static constexpr const char* name = "RDropLoss";
  // Pairs go to the fused sweep, which reads a pair's logits before it
  // writes their gradient (exact in place) and reads 2-byte rows itself.
  static constexpr bool fused_pair = detail::softmax_kl_weights<Divergence>::fused;

  template <typename Y>
  struct Targets {
    std::vector<Eigen::Index> row_label;  // -1: no cross-entropy
    std::vector<char> padded;             // per row; empty when no padding_index
    Scalar smoothing = Scalar(0);         // ε as the Uniform style's ε
  };

  template <typename Y>
  void resolve(const Y& labels, const detail::Shape& shape, const char* where, Targets<Y>& t) const {
    std::vector<Eigen::Index> given = detail::read_labels(labels, where);
    std::vector<char> padded_given;
    if (options_.padding_index != no_padding) {
      padded_given.resize(given.size());
      for (std::size_t i = 0; i < given.size(); ++i) {
        padded_given[i] = given[i] == options_.padding_index;
        if (padded_given[i]) given[i] = options_.ignore_index;
      }
    }
    t.row_label = detail::paired_row_labels(given, shape, options_.layout, options_.ignore_index, where);
    if (!padded_given.empty()) {
      // Spread the padding flags the way the labels were spread.
      t.padded.resize(t.row_label.size());
      const Eigen::Index n = shape.rows();
      if (static_cast<Eigen::Index>(padded_given.size()) == n) {
        t.padded = padded_given;
      } else {
        for (Eigen::Index k = 0; k < n / 2; ++k) {
          const detail::PairRows r = detail::pair_rows(options_.layout, k, n, shape.group());
          t.padded[static_cast<std::size_t>(r.first)] = t.padded[static_cast<std::size_t>(r.second)] =
              padded_given[static_cast<std::size_t>(k)];
        }
      }
    }
    const Eigen::Index c = shape.cols();
    t.smoothing = options_.label_smoothing;
    if (options_.smoothing_style == SmoothingStyle::ExcludeTarget && t.smoothing > Scalar(0)) {
      if (c < 2) {
        detail::fail(where, "label smoothing that excludes the target needs at least 2 classes; logits have shape " +
                                shape.str());
      }
      t.smoothing = t.smoothing * Scalar(c) / Scalar(c - 1);
    }
  }

  template <typename Y>
  void merge_keep(const Targets<Y>& t, std::vector<char>& keep) const {
    if (t.padded.empty()) return;
    if (keep.empty()) keep.assign(t.padded.size(), 1);
    for (std::size_t r = 0; r < keep.size(); ++r) keep[r] = keep[r] && !t.padded[r];
  }

  template <typename Y>
  std::vector<Eigen::Index> row_targets(const Targets<Y>& t) const {
    return t.row_label;
  }

  // In, Out: the rows' storage (Scalar, or 2-byte rows for the fused sweep).
  template <typename Y, typename In, typename Out>
  detail::PairValues<Scalar> pair(const Targets<Y>& t, const In* a, const In* b, Eigen::Index cols,
                                  const detail::PairRows& r, const detail::TermScales<Scalar>& s, Out* ga,
                                  Out* gb) const {
    const detail::CrossEntropyTarget<Scalar> ta{t.row_label[static_cast<std::size_t>(r.first)], t.smoothing, s.task};
    const detail::CrossEntropyTarget<Scalar> tb{t.row_label[static_cast<std::size_t>(r.second)], t.smoothing, s.task};
    const auto res = detail::divergence_pair(divergence_, a, b, cols, s.divergence, ta, tb, ga, gb);
    return {res.ce_first, res.ce_second, res.divergence};
  }

  template <typename Y>
  Scalar row(const Targets<Y>& t, const Scalar* x, Eigen::Index cols, Eigen::Index row, Scalar weight,
             Scalar* g) const {
    const detail::CrossEntropyTarget<Scalar> target{t.row_label[static_cast<std::size_t>(row)], t.smoothing, weight};
    return detail::cross_entropy_row(x, cols, target, g ? g : detail::thread_scratch<Scalar>(cols, 0));
  }

  RDropOptions<Scalar> options_;
  Divergence divergence_;
};

}  // namespace rdrop
