/// \file
/// R-Drop from hidden states: the output projection fused with RDropLoss.
/// The logits of both copies are never held: the pairs are worked through in
/// chunks, each chunk's logits computed into one reused buffer, turned into
/// their gradient in place, and projected back to the hidden states and the
/// weight before the next chunk.
#pragma once

#include "rdrop/detail/aliasing.hpp"
#include "rdrop/detail/errors.hpp"
#include "rdrop/detail/parallel.hpp"
#include "rdrop/detail/rows.hpp"
#include "rdrop/normalization.hpp"
#include "rdrop/pair_plan.hpp"
#include "rdrop/paired_loss.hpp"
#include "rdrop/rdrop_loss.hpp"
#include "rdrop/symmetric_kl.hpp"
#include "rdrop/terms.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace rdrop {

/// Stands for the bias of a head without one (logits = H·Wᵀ), as the bias
/// argument and as its gradient.
struct NoBias {};
/// The NoBias value to pass: `loss.Evaluate(hidden, weight, rdrop::no_bias, labels)`.
inline constexpr NoBias no_bias{};

/// How RDropLinearLoss works through a batch.
struct LinearLossOptions {
  /// Bytes for one chunk's buffers: the logits of its 2P rows (overwritten
  /// by their gradient), its hidden states and their gradient,
  /// 2P·(V + 2D)·sizeof(Scalar) for P pairs, V classes, hidden size D.
  /// The chunk takes as many pairs as fit, up to chunk_pairs, and at least
  /// one. 256 MiB: 256 pairs at 128256 classes (D = 256), below which the
  /// products slow down (docs/linear_loss.md, "Choosing the chunk").
  std::size_t chunk_bytes = std::size_t(256) << 20;
  /// Add the gradients into the outputs instead of overwriting them (for
  /// accumulating micro-batches); the outputs must then have their shapes.
  bool accumulate = false;
  /// The most pairs a chunk takes, however many chunk_bytes would hold:
  /// 512 pairs (1024 rows) already run the products at the speed of the
  /// whole batch's; more would only hold more memory.
  std::size_t chunk_pairs = 512;
};

namespace detail {

// Lends chunk buffers owned elsewhere to a loss object; defined below.
struct LinearLossAccess;

/// The planning and sweeping steps of a PairedLoss, for losses fused with
/// what produces their logits.
struct PairedLossAccess {
  /// The batch's targets resolved and planned (PairedLoss::Resolved, a
  /// private type: callers hold it as auto).
  template <typename Loss, typename Scalar, typename Y, typename M>
  static auto resolve(const PairedLoss<Loss, Scalar>& loss, const Shape& logits, const Y& targets, const M* mask,
                      const char* where) {
    typename PairedLoss<Loss, Scalar>::template Resolved<Y> out;
    loss.resolve_batch_at(logits, targets, mask, where, out);
    return out;
  }

  template <typename Loss, typename Scalar>
  static RDropCounts counts_for(const PairedLoss<Loss, Scalar>& loss, const RDropCounts& own, const char* where) {
    return loss.counts_for(own, where);
  }

  template <typename Loss, typename Scalar, typename Batch, typename... Args>
  static void sweep(const PairedLoss<Loss, Scalar>& loss, const Batch& batch, Args&&... args) {
    loss.sweep_range(batch, std::forward<Args>(args)...);
  }
};

template <typename T>
inline constexpr bool is_no_bias_v = std::is_same_v<std::remove_cv_t<std::remove_reference_t<T>>, NoBias>;

/// The buffers of one chunk, kept between the calls of a loss object so
/// that a training loop does not fault fresh pages in every step (on this
/// project's VM a page fault costs about 10 µs: 0.16 s for 64 MiB).
template <typename Scalar>
struct LinearWorkspace {
  std::mutex busy;
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> storage;

  Scalar* reserve(Index n) {
    if (storage.size() < n) {
      storage.resize(0);  // free before allocating: never both at once
      storage.resize(n);
    }
    return storage.data();
  }
};

/// Splits [0, extent) into `blocks` nearly equal blocks whose boundaries are
/// multiples of 16 (whole SIMD packets and GEMM tiles) where possible.
struct Blocks {
  Index extent = 0;
  Index count = 1;
  Index width = 0;

  Blocks(Index n, Index blocks) : extent(n) {
    const Index wanted = std::max<Index>(1, std::min(blocks, n));
    width = std::max<Index>(16, ((n + wanted - 1) / wanted + 15) / 16 * 16);
    count = (n + width - 1) / width;
  }
  Index begin(Index b) const { return b * width; }
  Index size(Index b) const { return std::min(width, extent - begin(b)); }
};

}  // namespace detail

/// RDropLoss computed from the hidden states of both copies and an output
/// layer (weight W, V × D, as a linear layer stores it, and an optional bias
/// of V), without ever holding the logits H·Wᵀ + b of the batch: the pairs
/// are taken a chunk at a time (LinearLossOptions::chunk_bytes), and each
/// chunk's logits live only in one reused buffer.
///
/// `hidden` is 2N × D (an Eigen matrix, in `options.layout`) or a row-major
/// tensor [2B, D] or [2B, T, D], with N pairs of rows or of token positions
/// exactly as RDropLoss pairs the rows of its logits; `labels` and the
/// optional `mask` are those RDropLoss takes for the logits. Every option of
/// RDropLoss applies, and any divergence. The value is RDropLoss's on the
/// logits H·Wᵀ + b; EvaluateWithGradient writes ∂loss/∂H (the shape of
/// `hidden`), ∂loss/∂W (V × D) and ∂loss/∂b (V; or pass no_bias), or adds
/// into them with LinearLossOptions::accumulate.
///
/// Pairs with no term (both copies padding or masked) cost nothing: they are
/// never projected, and their rows of ∂loss/∂H are 0. The gradient of the
/// hidden states may be written over `hidden` itself (exactly: each chunk
/// reads its rows before writing them); any other overlap between an output
/// and an input or another output throws. Results are bitwise the same for
/// any thread count (the products are split into blocks that do not depend
/// on it; see docs/linear_loss.md).
template <typename Scalar, typename Divergence = SymmetricKL<Scalar>>
class RDropLinearLoss {
  friend struct detail::LinearLossAccess;
  using Loss = RDropLoss<Scalar, Divergence>;
  using Matrix = detail::RowMajorMatrix<Scalar>;
  using RowVector = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>;

 public:
  /// Throws std::invalid_argument where RDropLoss would, and for a
  /// chunk_bytes or chunk_pairs of 0.
  explicit RDropLinearLoss(RDropOptions<Scalar> options = {}, const LinearLossOptions& linear = {},
                           Divergence divergence = Divergence())
      : loss_(options, std::move(divergence)), linear_(linear) {
    if (linear_.chunk_bytes == 0) {
      detail::fail("RDropLinearLoss::RDropLinearLoss", "argument 'linear.chunk_bytes' is 0; expected > 0");
    }
    if (linear_.chunk_pairs == 0) {
      detail::fail("RDropLinearLoss::RDropLinearLoss", "argument 'linear.chunk_pairs' is 0; expected > 0");
    }
  }

  /// The R-Drop options it was made with.
  const RDropOptions<Scalar>& options() const { return loss_.options(); }
  /// The output-layer options (chunk size, accumulation) it was made with.
  const LinearLossOptions& linear_options() const { return linear_; }
  /// The loss applied to the logits of each chunk.
  const Loss& loss() const { return loss_; }

  /// Pairs per chunk for V classes and hidden size D (see chunk_bytes and
  /// chunk_pairs).
  Eigen::Index ChunkPairs(Eigen::Index classes, Eigen::Index hidden_size) const {
    const std::size_t per_pair = 2 * static_cast<std::size_t>(classes + 2 * hidden_size) * sizeof(Scalar);
    const std::size_t fit = linear_.chunk_bytes / std::max<std::size_t>(per_pair, 1);
    return static_cast<Eigen::Index>(std::clamp<std::size_t>(fit, 1, linear_.chunk_pairs));
  }

  /// The loss of the logits H·Wᵀ + b (bias: a vector of V, or no_bias).
  template <typename H, typename W, typename B, typename Y>
  Scalar Evaluate(const H& hidden, const W& weight, const B& bias, const Y& labels) const {
    NoGradients none;
    return run(hidden, weight, bias, labels, no_mask(), none, "Evaluate");
  }
  /// The loss of the unmasked rows (`mask` as in PairedLoss::Evaluate).
  template <typename H, typename W, typename B, typename Y, typename M>
  Scalar Evaluate(const H& hidden, const W& weight, const B& bias, const Y& labels, const M& mask) const {
    NoGradients none;
    return run(hidden, weight, bias, labels, &mask, none, "Evaluate");
  }

  /// The loss, and its gradients with respect to the hidden states, the
  /// weight and the bias (no_bias where there is none). Outputs that can be
  /// resized (Matrix, Tensor) are, unless accumulating; others must have
  /// the shape already.
  template <typename H, typename W, typename B, typename Y, typename GH, typename GW, typename GB>
  Scalar EvaluateWithGradient(const H& hidden, const W& weight, const B& bias, const Y& labels, GH&& grad_hidden,
                              GW&& grad_weight, GB&& grad_bias) const {
    Gradients<GH, GW, GB> out{grad_hidden, grad_weight, grad_bias};
    return run(hidden, weight, bias, labels, no_mask(), out, "EvaluateWithGradient");
  }
  /// The loss of the unmasked rows and its gradients (masked rows get 0).
  template <typename H, typename W, typename B, typename Y, typename M, typename GH, typename GW, typename GB>
  Scalar EvaluateWithGradient(const H& hidden, const W& weight, const B& bias, const Y& labels, const M& mask,
                              GH&& grad_hidden, GW&& grad_weight, GB&& grad_bias) const {
    Gradients<GH, GW, GB> out{grad_hidden, grad_weight, grad_bias};
    return run(hidden, weight, bias, labels, &mask, out, "EvaluateWithGradient");
  }

  /// What the normalization divides by (see PairedLoss::Count); the weight
  /// gives the number of classes.
  template <typename H, typename W, typename Y>
  RDropCounts Count(const H& hidden, const W& weight, const Y& labels) const {
    return count(hidden, weight, labels, no_mask());
  }
  /// What the normalization divides by, with a mask.
  template <typename H, typename W, typename Y, typename M>
  RDropCounts Count(const H& hidden, const W& weight, const Y& labels, const M& mask) const {
    return count(hidden, weight, labels, &mask);
  }

  /// A copy that normalizes by `global` counts (see PairedLoss::WithCounts).
  RDropLinearLoss WithCounts(const RDropCounts& global) const {
    RDropLinearLoss copy = *this;
    copy.loss_ = loss_.WithCounts(global);
    return copy;
  }

 private:
  static const Eigen::VectorXi* no_mask() { return nullptr; }

  // The three gradient outputs of a call, or none (Evaluate).
  template <typename GH, typename GW, typename GB>
  struct Gradients {
    GH& hidden;
    GW& weight;
    GB& bias;
  };
  struct NoGradients {};
  template <typename G>
  static constexpr bool has_gradients = !std::is_same_v<G, NoGradients>;

  static std::string method(const char* where) { return std::string("RDropLinearLoss::") + where; }

  /// The logits' shape: the hidden states' with the hidden size replaced
  /// by the number of classes. Checks the weight and bias against it.
  template <typename W, typename B>
  static detail::Shape logits_shape(const detail::Shape& hidden, const W& weight, const B& bias, const char* where) {
    static_assert(detail::is_eigen_dense_v<W>, "rdrop: the weight must be an Eigen matrix (V x D)");
    static_assert(std::is_same_v<typename W::Scalar, Scalar>, "rdrop: the weight's scalar type differs from the loss's");
    const Eigen::Index d = hidden.cols();
    if (weight.cols() != d) {
      detail::fail(where, "argument 'weight' has shape " + detail::shape(weight.rows(), weight.cols()) +
                              "; expected V x " + std::to_string(d) + " (V classes) for hidden states of shape " +
                              hidden.str());
    }
    if constexpr (!detail::is_no_bias_v<B>) {
      static_assert(detail::is_eigen_dense_v<B>, "rdrop: the bias must be an Eigen vector of V entries, or no_bias");
      static_assert(std::is_same_v<typename B::Scalar, Scalar>, "rdrop: the bias's scalar type differs from the loss's");
      if ((bias.rows() != 1 && bias.cols() != 1) || bias.size() != weight.rows()) {
        detail::fail(where, "argument 'bias' has shape " + detail::shape(bias.rows(), bias.cols()) + "; expected " +
                                std::to_string(weight.rows()) + " entries, one per row of the weight");
      }
    }
    if (hidden.dims[0] % 2 != 0) {
      detail::fail(where, "hidden states of shape " + hidden.str() + " have an odd number (" +
                              std::to_string(hidden.dims[0]) + ") of rows; a duplicated batch has 2B rows");
    }
    detail::Shape logits = hidden;
    logits.dims[static_cast<std::size_t>(logits.rank - 1)] = weight.rows();
    return logits;
  }

  template <typename H, typename W, typename Y, typename M>
  RDropCounts count(const H& hidden, const W& weight, const Y& labels, const M* mask) const {
    const std::string where = method("Count");
    const detail::Shape logits = logits_shape(detail::shape_of(hidden), weight, no_bias, where.c_str());
    const auto batch = detail::PairedLossAccess::resolve(loss_, logits, labels, mask, where.c_str());
    return batch.plan.counts;
  }

  /// Checks an output's type and shape (rows × cols, or the tensor dims of
  /// `want` for the hidden states' gradient); resizes it unless accumulating.
  template <typename G>
  void check_output(G& out, const detail::Shape& want, const char* where, const char* name) const {
    using T = std::remove_cv_t<std::remove_reference_t<G>>;
    detail::check_output_type<Scalar, T>();
    const detail::Shape have = detail::shape_of(out);
    bool fits;
    if constexpr (detail::is_tensor_v<T>) {
      fits = T::NumIndices == want.rank && have.dims == want.dims;
    } else if (want.rank == 1) {
      fits = (out.rows() == 1 || out.cols() == 1) && out.size() == want.dims[0];
    } else {
      fits = want.rank == 2 && out.rows() == want.rows() && out.cols() == want.cols();
    }
    const bool resizable = detail::is_resizable<T>() && !linear_.accumulate;
    if constexpr (detail::is_tensor_v<T>) {
      if (resizable && T::NumIndices == want.rank) fits = true;
    } else if (resizable) {
      // A dynamic vector for the bias, a dynamic matrix for the others.
      fits = want.rank == 1 ? T::IsVectorAtCompileTime && T::SizeAtCompileTime == Eigen::Dynamic
                            : want.rank == 2 && T::RowsAtCompileTime == Eigen::Dynamic &&
                                  T::ColsAtCompileTime == Eigen::Dynamic;
    }
    if (!fits) {
      detail::fail(where, std::string("argument '") + name + "' has shape " + have.str() + "; expected " + want.str() +
                              (linear_.accumulate ? " (accumulating: outputs are not resized)" : ""));
    }
  }

  template <typename G>
  static void resize_output(G& out, const detail::Shape& want) {
    using T = std::remove_cv_t<std::remove_reference_t<G>>;
    if constexpr (detail::is_resizable<T>()) {
      if constexpr (detail::is_tensor_v<T>) {
        std::array<Eigen::Index, static_cast<std::size_t>(T::NumIndices)> d{};
        for (std::size_t i = 0; i < d.size(); ++i) d[i] = want.dims[i];
        out.resize(d);
      } else if constexpr (T::IsVectorAtCompileTime) {
        out.resize(want.dims[0]);
      } else {
        out.resize(want.rows(), want.cols());
      }
    }
  }

  /// Row `row` of the hidden states' gradient set to (or, accumulating,
  /// increased by) the D values at `src`; 0 when `src` is null.
  template <typename G>
  void write_hidden_row(G& out, Eigen::Index row, const Scalar* src, Eigen::Index d) const {
    using T = std::remove_cv_t<std::remove_reference_t<G>>;
    using ConstRow = Eigen::Map<const RowVector>;
    if constexpr (detail::is_tensor_v<T>) {
      Eigen::Map<RowVector> dst(out.data() + row * d, d);
      if (src == nullptr) {
        if (!linear_.accumulate) dst.setZero();
      } else if (linear_.accumulate) {
        dst += ConstRow(src, d);
      } else {
        dst = ConstRow(src, d);
      }
    } else {
      if (src == nullptr) {
        if (!linear_.accumulate) out.row(row).setZero();
      } else if (linear_.accumulate) {
        out.row(row) += ConstRow(src, d);
      } else {
        out.row(row) = ConstRow(src, d);
      }
    }
  }

  template <typename Out, typename... Inputs>
  static void check_apart(const Out& out, const char* where, const char* name, const Inputs&... inputs) {
    const detail::Footprint f = detail::footprint_of(out);
    (detail::check_disjoint(f, detail::footprint_of(inputs.second), where, name, inputs.first), ...);
  }

  /// Checks the outputs' types and shapes, and their memory against the
  /// inputs and each other; all before anything is written.
  template <typename G, typename H, typename W, typename B, typename Y, typename M>
  void check_gradients(const G& out, const detail::Shape& hidden_shape, const H& hidden, const W& weight,
                       const B& bias, const Y& labels, const M* mask, const char* where) const {
    using GW = std::remove_cv_t<std::remove_reference_t<decltype(out.weight)>>;
    using GB = std::remove_cv_t<std::remove_reference_t<decltype(out.bias)>>;
    static_assert(detail::is_eigen_dense_v<GW>, "rdrop: grad_weight must be an Eigen matrix");
    static_assert(detail::is_no_bias_v<B> == detail::is_no_bias_v<GB>,
                  "rdrop: pass no_bias as grad_bias exactly when the bias is no_bias");
    check_output(out.hidden, hidden_shape, where, "grad_hidden");
    check_output(out.weight, weight_shape(weight.rows(), hidden_shape.cols()), where, "grad_weight");
    if constexpr (!detail::is_no_bias_v<GB>) {
      static_assert(detail::is_eigen_dense_v<GB>, "rdrop: grad_bias must be an Eigen vector, or no_bias");
      check_output(out.bias, bias_shape(weight.rows()), where, "grad_bias");
    }
    detail::check_in_place(detail::footprint_of(out.hidden), detail::footprint_of(hidden), where, "grad_hidden",
                           "hidden");
    const auto in = [](const char* n, const auto& x) { return std::pair<const char*, const decltype(x)&>(n, x); };
    check_apart(out.hidden, where, "grad_hidden", in("weight", weight), in("bias", bias), in("labels", labels));
    check_apart(out.weight, where, "grad_weight", in("hidden", hidden), in("weight", weight), in("bias", bias),
                in("labels", labels), in("grad_hidden", out.hidden));
    check_apart(out.bias, where, "grad_bias", in("hidden", hidden), in("weight", weight), in("bias", bias),
                in("labels", labels), in("grad_hidden", out.hidden), in("grad_weight", out.weight));
    if (mask) {
      check_apart(out.hidden, where, "grad_hidden", in("mask", *mask));
      check_apart(out.weight, where, "grad_weight", in("mask", *mask));
      check_apart(out.bias, where, "grad_bias", in("mask", *mask));
    }
  }

  static detail::Shape weight_shape(Eigen::Index v, Eigen::Index d) {
    detail::Shape s;
    s.dims = {v, d, 0};
    return s;
  }
  static detail::Shape bias_shape(Eigen::Index v) {
    detail::Shape s;
    s.rank = 1;
    s.dims = {v, 0, 0};
    return s;
  }

  /// Sizes the outputs; unless accumulating, zeroes ∂W and sets the rows of
  /// pairs without terms to 0 (their hidden states are never read, so this
  /// is safe in place too).
  template <typename G>
  void open_gradients(G& out, const detail::Shape& hidden_shape, Eigen::Index v, const detail::PairPlan& plan) const {
    const Eigen::Index d = hidden_shape.cols();
    resize_output(out.hidden, hidden_shape);
    resize_output(out.weight, weight_shape(v, d));
    if (!linear_.accumulate) out.weight.setZero();
    if constexpr (!detail::is_no_bias_v<decltype(out.bias)>) resize_output(out.bias, bias_shape(v));
    for (Eigen::Index k = 0; k < plan.pairs(); ++k) {
      if (detail::pair_has_terms(plan, k)) continue;
      const detail::PairRows r = plan.rows_of(k);
      write_hidden_row(out.hidden, r.first, nullptr, d);
      write_hidden_row(out.hidden, r.second, nullptr, d);
    }
  }

  /// ∂b set to (or increased by) `sum`, whatever the vector's orientation.
  template <typename GB>
  void close_bias(GB& out, const RowVector& sum) const {
    if constexpr (!detail::is_no_bias_v<GB>) {
      for (Eigen::Index j = 0; j < sum.size(); ++j) {
        if (linear_.accumulate) {
          out.coeffRef(j) += sum(j);
        } else {
          out.coeffRef(j) = sum(j);
        }
      }
    }
  }

  /// The products of one chunk: logits = H·Wᵀ + b by blocks of classes.
  template <typename W, typename B, typename X, typename HC>
  static void chunk_logits(X& x, const HC& hc, const W& weight, const B& bias, const detail::Blocks& classes,
                           int threads) {
    detail::parallel_blocks(classes.count, threads, [&](Eigen::Index b) {
      const Eigen::Index v0 = classes.begin(b), nv = classes.size(b);
      auto block = x.middleCols(v0, nv);
      if constexpr (detail::is_no_bias_v<B>) {
        block.noalias() = hc * weight.middleRows(v0, nv).transpose();
      } else {
        // Row by row: a replicate() expression is evaluated by coefficient.
        for (Eigen::Index i = 0; i < x.rows(); ++i) block.row(i) = bias.segment(v0, nv);
        block.noalias() += hc * weight.middleRows(v0, nv).transpose();
      }
    });
  }

  /// ∂H_c = G·W by blocks of hidden units; ∂W += Gᵀ·H_c and ∂b += Σ rows of
  /// G by blocks of classes.
  template <typename W, typename X, typename HC, typename GHC, typename GW>
  static void chunk_gradients(const X& g, const HC& hc, GHC& ghc, const W& weight, GW& grad_weight,
                              RowVector& bias_sum, const detail::Blocks& classes, const detail::Blocks& units,
                              int threads) {
    detail::parallel_blocks(units.count, threads, [&](Eigen::Index b) {
      const Eigen::Index d0 = units.begin(b), nd = units.size(b);
      ghc.middleCols(d0, nd).noalias() = g * weight.middleCols(d0, nd);
    });
    detail::parallel_blocks(classes.count, threads, [&](Eigen::Index b) {
      const Eigen::Index v0 = classes.begin(b), nv = classes.size(b);
      grad_weight.middleRows(v0, nv).noalias() += g.middleCols(v0, nv).transpose() * hc;
      if (bias_sum.size() > 0) bias_sum.segment(v0, nv) += g.middleCols(v0, nv).colwise().sum();
    });
  }

  template <typename H, typename W, typename B, typename Y, typename M, typename G>
  Scalar run(const H& hidden, const W& weight, const B& bias, const Y& labels, const M* mask, G& out,
             const char* where_) const {
    constexpr bool gradient = has_gradients<G>;
    const std::string name = method(where_);
    const char* where = name.c_str();
    // Check everything before writing anything.
    detail::RowSource<Scalar> h(hidden);
    const detail::Shape& hidden_shape = h.shape();
    const detail::Shape logits = logits_shape(hidden_shape, weight, bias, where);
    const auto batch = detail::PairedLossAccess::resolve(loss_, logits, labels, mask, where);
    const RDropCounts counts = detail::PairedLossAccess::counts_for(loss_, batch.plan.counts, where);
    if constexpr (gradient) check_gradients(out, hidden_shape, hidden, weight, bias, labels, mask, where);

    const RDropOptions<Scalar>& o = loss_.options();
    const detail::TermScales<Scalar> scales = detail::term_scales(o.normalization, o.alpha, counts);
    const detail::PairPlan& plan = batch.plan;
    const Eigen::Index v = weight.rows(), d = hidden_shape.cols();
    std::vector<Eigen::Index> live;  // pairs with a term, in order
    for (Eigen::Index k = 0; k < plan.pairs(); ++k) {
      if (detail::pair_has_terms(plan, k)) live.push_back(k);
    }
    std::vector<detail::PairValues<Scalar>> values(static_cast<std::size_t>(plan.pairs()));
    RowVector bias_row, bias_sum;
    if constexpr (!detail::is_no_bias_v<B>) bias_row = bias.reshaped(1, v);
    if constexpr (gradient) {
      open_gradients(out, hidden_shape, v, plan);
      if constexpr (!detail::is_no_bias_v<B>) bias_sum = RowVector::Zero(v);
    }

    const auto live_pairs = static_cast<Eigen::Index>(live.size());
    const Eigen::Index chunk = std::min(ChunkPairs(v, d), std::max<Eigen::Index>(live_pairs, 1));
    detail::LinearWorkspace<Scalar> own;
    std::unique_lock<std::mutex> lock(workspace_->busy, std::try_to_lock);
    detail::LinearWorkspace<Scalar>& ws = lock.owns_lock() ? *workspace_ : own;
    const Eigen::Index rows_max = 2 * chunk;
    Scalar* buffer = ws.reserve(rows_max * (v + (gradient ? 2 : 1) * d));
    Eigen::Map<Matrix> x(buffer, rows_max, v);                                        // logits, then gradient
    Eigen::Map<Matrix> hc(buffer + rows_max * v, rows_max, d);                        // hidden states
    Eigen::Map<Matrix> ghc(buffer + rows_max * (v + d), gradient ? rows_max : 0, d);  // and their gradient
    const detail::ConstRows<Scalar>& rows = h.rows();
    // Blocks of classes and of hidden units for the products; they depend on
    // the shapes only, never on the thread count.
    const detail::Blocks classes(v, (v + 2047) / 2048);
    const detail::Blocks units(d, std::min<Eigen::Index>(4, std::max<Eigen::Index>(1, d / 128)));

    for (Eigen::Index c0 = 0; c0 < live_pairs; c0 += chunk) {
      const Eigen::Index p = std::min(chunk, live_pairs - c0), n = 2 * p;
      const auto pair_at = [&](Eigen::Index i) { return live[static_cast<std::size_t>(c0 + i)]; };
      for (Eigen::Index i = 0; i < p; ++i) {
        const Eigen::Index k = pair_at(i);
        const detail::PairRows r = plan.rows_of(k);
        // A copy with no term (masked, in a pair without a divergence) has a
        // zero gradient and its hidden state stays out of the products:
        // 0 · NaN in ∂W would be NaN where leaving the row out gives a number.
        const auto copy = [&](Eigen::Index to, Eigen::Index row) {
          if (detail::row_has_terms(plan, k, row)) {
            hc.row(to) = Eigen::Map<const RowVector>(rows.row(row), d);
          } else {
            hc.row(to).setZero();
          }
        };
        copy(2 * i, r.first);
        copy(2 * i + 1, r.second);
      }
      auto xn = x.topRows(n);
      if constexpr (detail::is_no_bias_v<B>) {
        chunk_logits(xn, hc.topRows(n), weight, no_bias, classes, o.threads);
      } else {
        chunk_logits(xn, hc.topRows(n), weight, bias_row, classes, o.threads);
      }
      // The chunk's pairs through the loss, their gradient over their logits.
      detail::PairedLossAccess::sweep(
          loss_, batch, v, p, pair_at, scales, gradient,
          [&](Eigen::Index i, int copy, Eigen::Index) -> const Scalar* { return x.row(2 * i + copy).data(); },
          [&](Eigen::Index i, int copy) -> Scalar* { return gradient ? x.row(2 * i + copy).data() : nullptr; },
          values.data());
      if constexpr (gradient) {
        auto ghn = ghc.topRows(n);
        chunk_gradients(xn, hc.topRows(n), ghn, weight, out.weight, bias_sum, classes, units, o.threads);
        for (Eigen::Index i = 0; i < p; ++i) {
          const detail::PairRows r = plan.rows_of(pair_at(i));
          write_hidden_row(out.hidden, r.first, ghc.row(2 * i).data(), d);
          write_hidden_row(out.hidden, r.second, ghc.row(2 * i + 1).data(), d);
        }
      }
    }
    if constexpr (gradient) close_bias(out.bias, bias_sum);
    const RDropTerms<Scalar> t = detail::sum_terms(values, plan.counts);
    Scalar total = scales.task * t.task_sum;
    if (o.alpha > Scalar(0)) total += scales.divergence * t.divergence_sum;
    return total;
  }

  Loss loss_;
  LinearLossOptions linear_;
  // The chunk buffers (at most chunk_bytes), reused by the calls of this
  // object and its copies (WithCounts every step costs no allocation); a
  // call made while another holds them uses buffers of its own.
  std::shared_ptr<detail::LinearWorkspace<Scalar>> workspace_ = std::make_shared<detail::LinearWorkspace<Scalar>>();
};

namespace detail {
/// For callers that build a loss object per call (rdrop::torch::linear_loss)
/// but keep its chunk buffers between calls.
struct LinearLossAccess {
  template <typename Scalar, typename Divergence>
  static void share_workspace(RDropLinearLoss<Scalar, Divergence>& loss,
                              std::shared_ptr<LinearWorkspace<Scalar>> workspace) {
    loss.workspace_ = std::move(workspace);
  }
};
}  // namespace detail

}  // namespace rdrop
