// The example's model and optimizer: a ReLU MLP with dropout after every
// hidden layer, and Adam. They live in the example on purpose: rdrop brings
// the losses, the batch duplication and the dropout; the network is yours.
#pragma once

#include <rdrop/dropout.hpp>
#include <rdrop/duplicate.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace classifier {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowVector = Eigen::Matrix<float, 1, Eigen::Dynamic>;

/// One affine layer, y = x·W + b (x one sample per row).
struct Linear {
  Matrix w;
  RowVector b;
};

/// What a forward pass keeps for the backward pass.
struct ForwardCache {
  std::vector<Matrix> inputs;  // inputs[l]: what layer l saw (after dropout), l ≥ 1
  std::vector<Matrix> pre;     // pre[l]: layer l's output before its ReLU
  Matrix logits;
  bool duplicated_after_first = false;
  /// The row of the whole (duplicated) batch that this pass's first row is:
  /// a data-parallel worker's slice draws the dropout masks of its rows.
  std::uint64_t first_row = 0;
};

/// sizes[0] → sizes[1] → ... → sizes.back(): Linear, then ReLU and dropout
/// after every layer but the last.
class Mlp {
 public:
  Mlp(const std::vector<int>& sizes, float drop_probability, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
      // He initialization for ReLU layers; a smaller scale for the logits.
      const bool last = l + 2 == sizes.size();
      const float stddev = std::sqrt((last ? 1.0f : 2.0f) / static_cast<float>(sizes[l]));
      std::normal_distribution<float> init(0.0f, stddev);
      Linear layer{Matrix(sizes[l], sizes[l + 1]), RowVector::Zero(sizes[l + 1])};
      for (Eigen::Index i = 0; i < layer.w.size(); ++i) layer.w.data()[i] = init(rng);
      layers_.push_back(std::move(layer));
      // Each dropout site gets its own seed: two sites sharing one would
      // draw the same masks.
      if (!last) dropouts_.emplace_back(drop_probability, seed * 1000003u + 17u * (l + 1));
    }
    grads_ = layers_;
  }

  /// Logits of the rows of x; dropout on (masks of `step`) or off. Keeps in
  /// `cache` what Backward needs.
  ///
  /// duplicate_after_first: R-Drop's doubled batch, computed without
  /// doubling the first layer. Nothing random happens before the first
  /// dropout, so both copies of a sample have the same first-layer output:
  /// compute it for the B samples, then duplicate the activations
  /// (rdrop::Duplicate, interleaved) so that dropout and every later layer
  /// see 2B rows. Same mathematics as Forward(Duplicate(x)) (equal up to
  /// float rounding), and the first layer (60% of this MLP's arithmetic)
  /// costs what it costs without R-Drop.
  ///
  /// hidden_only: stop before the output layer and return its input (the
  /// last hidden layer's activations after dropout), for a loss that applies
  /// the output layer itself (rdrop::RDropLinearLoss).
  const Matrix& Forward(const Eigen::Ref<const Matrix>& x, bool dropout, std::uint64_t step,
                        ForwardCache& cache, bool duplicate_after_first = false, bool hidden_only = false) const {
    const std::size_t n = layers_.size();
    cache.inputs.resize(n);
    cache.pre.resize(n);
    cache.duplicated_after_first = duplicate_after_first;
    for (std::size_t l = 0; l < n; ++l) {
      if (hidden_only && l + 1 == n) return cache.inputs[l];
      const Linear& layer = layers_[l];
      Matrix& out = l + 1 < n ? cache.pre[l] : cache.logits;
      if (l == 0) {
        out.noalias() = x * layer.w;
      } else {
        out.noalias() = cache.inputs[l] * layer.w;
      }
      out.rowwise() += layer.b;
      if (l + 1 < n) {
        Matrix& next = cache.inputs[l + 1];
        if (l == 0 && duplicate_after_first) {
          next = rdrop::Duplicate(out.cwiseMax(0.0f));
        } else {
          next = out.cwiseMax(0.0f);
        }
        if (dropout) dropouts_[l].Forward(next, next, step, cache.first_row);
      }
    }
    return cache.logits;
  }

  /// Gradients of every weight from ∂loss/∂logits, for the Forward pass of
  /// `step` on x whose state is in `cache` (the dropout masks are drawn
  /// again from the step, not stored).
  void Backward(const Eigen::Ref<const Matrix>& x, const Matrix& grad_logits, std::uint64_t step,
                ForwardCache& cache) {
    backward_from(layers_.size() - 1, x, grad_logits, step, cache);
  }

  /// Backward from ∂loss/∂(input of the output layer), for a Forward with
  /// hidden_only; the output layer's own gradients are the caller's to set
  /// (output_gradient()).
  void BackwardFromHidden(const Eigen::Ref<const Matrix>& x, const Matrix& grad_hidden, std::uint64_t step,
                          ForwardCache& cache) {
    const std::size_t l = layers_.size() - 1;
    backward_from(l - 1, x, through_activation(l, grad_hidden, step, cache), step, cache);
  }

  std::vector<Linear>& layers() { return layers_; }
  const std::vector<Linear>& layers() const { return layers_; }
  std::vector<Linear>& gradients() { return grads_; }
  const std::vector<Linear>& gradients() const { return grads_; }
  /// The output layer's gradients, written by a fused loss.
  Linear& output_gradient() { return grads_.back(); }

 private:
  /// Gradients of layers l, l−1, ..., 0 from ∂loss/∂(output of layer l,
  /// before any ReLU).
  void backward_from(std::size_t top, const Eigen::Ref<const Matrix>& x, Matrix grad, std::uint64_t step,
                     ForwardCache& cache) {
    Matrix grad_input;
    for (std::size_t l = top + 1; l-- > 0;) {
      if (l == 0) {
        grads_[l].w.noalias() = x.transpose() * grad;
      } else {
        grads_[l].w.noalias() = cache.inputs[l].transpose() * grad;
      }
      grads_[l].b = grad.colwise().sum();
      if (l == 0) break;
      grad_input.noalias() = grad * layers_[l].w.transpose();
      grad = through_activation(l, grad_input, step, cache);
    }
  }

  /// From ∂loss/∂(input of layer l) to ∂loss/∂(output of layer l − 1
  /// before its ReLU): back through dropout, the duplication, the ReLU.
  Matrix through_activation(std::size_t l, const Matrix& grad_input, std::uint64_t step,
                            const ForwardCache& cache) const {
    Matrix grad_relu;
    dropouts_[l - 1].Backward(grad_input, grad_relu, step, cache.first_row);
    if (l == 1 && cache.duplicated_after_first) {
      // The first layer's output fed both copies: its gradient is the sum
      // over the two copies (zero-copy views of the 2B rows).
      Matrix summed = rdrop::FirstCopy(grad_relu) + rdrop::SecondCopy(grad_relu);
      grad_relu.swap(summed);
    }
    return (cache.pre[l - 1].array() > 0.0f).select(grad_relu.array(), 0.0f).matrix();
  }

  std::vector<Linear> layers_;
  std::vector<Linear> grads_;
  std::vector<rdrop::Dropout<float>> dropouts_;
};

/// Adam (Kingma & Ba), with the bias corrections folded into the step size.
class Adam {
 public:
  explicit Adam(float learning_rate, float beta1 = 0.9f, float beta2 = 0.999f, float epsilon = 1e-8f)
      : lr_(learning_rate), beta1_(beta1), beta2_(beta2), epsilon_(epsilon) {}

  void Step(std::vector<Linear>& params, const std::vector<Linear>& grads) {
    if (m_.empty()) {
      for (const Linear& p : params) {
        m_.push_back({Matrix::Zero(p.w.rows(), p.w.cols()), RowVector::Zero(p.b.size())});
        v_.push_back(m_.back());
      }
    }
    ++t_;
    const float correction1 = 1.0f - std::pow(beta1_, static_cast<float>(t_));
    const float correction2 = 1.0f - std::pow(beta2_, static_cast<float>(t_));
    const float step = lr_ * std::sqrt(correction2) / correction1;
    const float eps = epsilon_ * std::sqrt(correction2);
    for (std::size_t i = 0; i < params.size(); ++i) {
      update(params[i].w.array(), grads[i].w.array(), m_[i].w.array(), v_[i].w.array(), step, eps);
      update(params[i].b.array(), grads[i].b.array(), m_[i].b.array(), v_[i].b.array(), step, eps);
    }
  }

 private:
  template <typename P, typename G, typename M, typename V>
  void update(P&& p, const G& g, M&& m, V&& v, float step, float eps) const {
    m = beta1_ * m + (1.0f - beta1_) * g;
    v = beta2_ * v + (1.0f - beta2_) * g.square();
    p -= step * m / (v.sqrt() + eps);
  }

  float lr_, beta1_, beta2_, epsilon_;
  long t_ = 0;
  std::vector<Linear> m_, v_;
};

}  // namespace classifier
