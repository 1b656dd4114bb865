// R-Drop for libtorch: the losses of rdrop as autograd functions on torch
// tensors. Optional: rdrop/rdrop.hpp does not include this header; link
// the CMake target rdrop::torch (created when find_package(Torch) succeeds).
//
//   at::Tensor loss = rdrop::torch::rdrop_loss(logits, labels, options);
//   loss.backward();  // gradients for both copies of every sample
//
// The forward pass runs rdrop's fused sweep once, computing the loss and
// its gradient together, and saves that gradient (one tensor of the logits'
// size) for the backward pass, which scales it by grad_output. The
// in-place variants (name ending in `_`) write the gradient over the logits
// instead and save nothing more. CPU tensors of float, double, bfloat16 and
// half; contiguous or not; labels int64 (or int32). Errors are c10::Error
// (TORCH_CHECK) for what torch users check with it (device, dtype, rank),
// and std::invalid_argument from rdrop for shapes and values, naming the
// argument and the shapes.
#pragma once

#include "rdrop/rdrop.hpp"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/variable.h>

#include <Eigen/Core>
#include <unsupported/Eigen/CXX11/Tensor>

#include <cstdint>
#include <type_traits>
#include <utility>

namespace rdrop::torch {

/// The divergence between the two copies of RDropLoss.
enum class Divergence {
  SymmetricKL,   ///< ½[KL(p‖q) + KL(q‖p)], the paper's (fused sweep)
  KL,            ///< KL(p‖q), p the first copy (fused sweep)
  JensenShannon  ///< ½KL(p‖m) + ½KL(q‖m), m = ½(p + q)
};

/// Settings of rdrop_loss: those of rdrop::RDropOptions (α, layout,
/// normalization, ignore_index, padding_index, label smoothing and its
/// style, threads), and the divergence.
struct RDropLossOptions : RDropOptions<double> {
  Divergence divergence = Divergence::SymmetricKL;
};

/// Settings of multi_label_loss (rdrop::MultiLabelOptions).
using MultiLabelLossOptions = MultiLabelOptions<double>;
/// Settings of regression_loss (rdrop::RegressionOptions).
using RegressionLossOptions = RegressionOptions<double>;

/// Settings of linear_loss: the R-Drop settings and rdrop::LinearLossOptions'
/// chunk size (accumulate is not offered: autograd accumulates).
struct LinearLossTorchOptions : RDropLossOptions {
  std::size_t chunk_bytes = std::size_t(64) << 20;
};

namespace detail {

template <typename T>
struct Tag {
  using type = T;
};

/// Calls f(Tag<E>{}) with E the Eigen element type of `t`'s dtype: float,
/// double, and (when TwoByte) Eigen::bfloat16 / Eigen::half, which have
/// torch's BFloat16 / Half layout.
template <bool TwoByte, typename F>
decltype(auto) dispatch(const at::Tensor& t, const char* where, const char* name, F&& f) {
  constexpr bool two_byte = TwoByte;
  switch (t.scalar_type()) {
    case at::kFloat:
      return f(Tag<float>{});
    case at::kDouble:
      return f(Tag<double>{});
    case at::kBFloat16:
      if constexpr (TwoByte) return f(Tag<Eigen::bfloat16>{});
      break;
    case at::kHalf:
      if constexpr (TwoByte) return f(Tag<Eigen::half>{});
      break;
    default:
      break;
  }
  TORCH_CHECK(false, where, ": argument '", name, "' has dtype ", t.scalar_type(), "; expected float, double",
              two_byte ? ", bfloat16 or half" : "");
}

inline void check_cpu(const at::Tensor& t, const char* where, const char* name) {
  TORCH_CHECK(t.defined(), where, ": argument '", name, "' is an undefined tensor");
  TORCH_CHECK(t.device().is_cpu(), where, ": argument '", name, "' is on ", t.device(),
              "; rdrop computes on the CPU: move it with .cpu()");
  TORCH_CHECK(t.layout() == at::kStrided, where, ": argument '", name, "' must be a dense (strided) tensor");
}

template <typename E>
using RowMajor = Eigen::Matrix<E, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename E>
using StridedRows = Eigen::Map<const RowMajor<E>, 0, Eigen::OuterStride<>>;
template <typename E>
using Rows = Eigen::Map<RowMajor<E>>;
template <typename E, int Rank>
using ConstTensor = Eigen::TensorMap<const Eigen::Tensor<E, Rank, Eigen::RowMajor>>;
template <typename E, int Rank>
using MutableTensor = Eigen::TensorMap<Eigen::Tensor<E, Rank, Eigen::RowMajor>>;

template <typename E>
const E* data_of(const at::Tensor& t) {
  return reinterpret_cast<const E*>(t.data_ptr());
}
template <typename E>
E* mutable_data_of(const at::Tensor& t) {
  return reinterpret_cast<E*>(t.data_ptr());
}

/// A rank-2 or rank-3 tensor of logits (rank 3: [2B, T, C]) as rdrop reads
/// it, and a contiguous gradient of its shape as rdrop writes it: calls
/// f(logits_view, gradient_view). Rank 2 with contiguous classes is read in
/// place whatever its row stride; anything else is first made contiguous.
template <typename E, typename F>
decltype(auto) with_views(const at::Tensor& x, const at::Tensor& grad, const char* where, const char* name, F&& f) {
  TORCH_CHECK(x.dim() == 2 || x.dim() == 3, where, ": argument '", name, "' has shape ", x.sizes(),
              "; expected [2B, C] or [2B, T, C]");
  if (x.dim() == 2) {
    const at::Tensor rows = x.stride(1) == 1 || x.size(1) <= 1 ? x : x.contiguous();
    const StridedRows<E> view(data_of<E>(rows), rows.size(0), rows.size(1),
                              Eigen::OuterStride<>(std::max<std::int64_t>(rows.stride(0), rows.size(1))));
    if (!grad.defined()) return f(view, static_cast<Rows<E>*>(nullptr));
    Rows<E> g(mutable_data_of<E>(grad), grad.size(0), grad.size(1));
    return f(view, &g);
  }
  const at::Tensor c = x.contiguous();
  const ConstTensor<E, 3> view(data_of<E>(c), c.size(0), c.size(1), c.size(2));
  if (!grad.defined()) return f(view, static_cast<MutableTensor<E, 3>*>(nullptr));
  MutableTensor<E, 3> g(mutable_data_of<E>(grad), grad.size(0), grad.size(1), grad.size(2));
  return f(view, &g);
}

/// Labels (int64 or int32, any shape, flattened in order) as rdrop reads
/// them: calls f(vector_view).
template <typename F>
decltype(auto) with_labels(const at::Tensor& labels, const char* where, F&& f) {
  check_cpu(labels, where, "labels");
  const at::Tensor c = labels.contiguous();
  if (c.scalar_type() == at::kLong) {
    return f(Eigen::Map<const Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1>>(c.data_ptr<std::int64_t>(), c.numel()));
  }
  TORCH_CHECK(c.scalar_type() == at::kInt, where, ": argument 'labels' has dtype ", c.scalar_type(),
              "; expected int64 (or int32) class indices");
  return f(Eigen::Map<const Eigen::Matrix<std::int32_t, Eigen::Dynamic, 1>>(c.data_ptr<std::int32_t>(), c.numel()));
}

/// An optional tensor argument of a forward: autograd takes undefined
/// tensors only as c10::optional.
using OptionalTensor = c10::optional<at::Tensor>;
inline at::Tensor value_of(const OptionalTensor& t) { return t.has_value() ? *t : at::Tensor(); }

/// The mask as a bool vector (flattened; non-zero = keep), or none.
inline at::Tensor mask_of(const OptionalTensor& optional_mask, const char* where) {
  const at::Tensor mask = value_of(optional_mask);
  if (!mask.defined()) return mask;
  check_cpu(mask, where, "mask");
  return mask.to(at::kBool).contiguous().view({-1});
}
using MaskView = Eigen::Map<const Eigen::Matrix<bool, Eigen::Dynamic, 1>>;
inline MaskView mask_view(const at::Tensor& mask) { return {mask.data_ptr<bool>(), mask.numel()}; }

/// loss.EvaluateWithGradient with or without a mask.
template <typename Loss, typename X, typename Y, typename G>
double evaluate(const Loss& loss, const X& x, const Y& y, const at::Tensor& mask, G* grad) {
  if (mask.defined()) {
    const MaskView m = mask_view(mask);
    return grad ? static_cast<double>(loss.EvaluateWithGradient(x, y, m, *grad)) : static_cast<double>(loss.Evaluate(x, y, m));
  }
  return grad ? static_cast<double>(loss.EvaluateWithGradient(x, y, *grad)) : static_cast<double>(loss.Evaluate(x, y));
}

template <typename S>
RDropOptions<S> options_in(const RDropLossOptions& o) {
  RDropOptions<S> r;
  r.alpha = static_cast<S>(o.alpha);
  r.layout = o.layout;
  r.normalization = o.normalization;
  r.ignore_index = o.ignore_index;
  r.padding_index = o.padding_index;
  r.label_smoothing = static_cast<S>(o.label_smoothing);
  r.smoothing_style = o.smoothing_style;
  r.threads = o.threads;
  return r;
}

/// The R-Drop loss of `logits` with its gradient written into `grad` (a
/// contiguous tensor of the logits' shape, possibly the logits themselves)
/// or not at all (undefined grad).
inline double rdrop_forward(const at::Tensor& logits, const at::Tensor& labels, const at::Tensor& mask,
                            const RDropLossOptions& o, const at::Tensor& grad, const char* where) {
  return dispatch<true>(logits, where, "logits", [&](auto tag) {
    using E = typename std::decay_t<decltype(tag)>::type;
    using S = rdrop::detail::compute_t<E>;
    const RDropOptions<S> options = options_in<S>(o);
    return with_labels(labels, where, [&](const auto& y) {
      return with_views<E>(logits, grad, where, "logits", [&](const auto& x, auto* g) {
        switch (o.divergence) {
          case Divergence::SymmetricKL:
            return evaluate(RDropLoss<S>(options), x, y, mask, g);
          case Divergence::KL:
            return evaluate(RDropLoss<S, KLDivergence<S>>(options), x, y, mask, g);
          case Divergence::JensenShannon:
            return evaluate(RDropLoss<S, JensenShannon<S>>(options), x, y, mask, g);
        }
        TORCH_CHECK(false, where, ": argument 'divergence' is ", static_cast<int>(o.divergence),
                    "; expected a value of rdrop::torch::Divergence");
      });
    });
  });
}

/// The loss value as a 0-dim tensor: in the logits' dtype for float and
/// double, in float for 2-byte logits (as autocast computes losses).
inline at::Tensor loss_tensor(double value, const at::Tensor& logits) {
  const bool two_byte = logits.scalar_type() == at::kBFloat16 || logits.scalar_type() == at::kHalf;
  return at::scalar_tensor(value, logits.options().dtype(two_byte ? at::kFloat : logits.scalar_type()));
}

/// grad_output · saved: the saved gradient itself when grad_output is 1
/// (loss.backward()), else a scaled copy.
inline at::Tensor scaled(const at::Tensor& saved, const at::Tensor& grad_output) {
  if (grad_output.numel() == 1 && grad_output.item<double>() == 1.0) return saved;
  return saved * grad_output.to(saved.scalar_type());
}

/// The gradient buffer of the out-of-place forward: contiguous, the logits'
/// shape and dtype. A fresh tensor each call, so that autograd can hand it
/// on without a copy (AccumulateGrad steals a gradient nobody else holds).
inline at::Tensor gradient_like(const at::Tensor& x) {
  return at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
}

/// Undefined gradients for the non-differentiable arguments of a forward.
inline ::torch::autograd::variable_list with_nothing_else(at::Tensor grad, std::size_t others) {
  ::torch::autograd::variable_list out{std::move(grad)};
  out.resize(1 + others);
  return out;
}

struct RDropLossFunction : ::torch::autograd::Function<RDropLossFunction> {
  static at::Tensor forward(::torch::autograd::AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& labels,
                            const OptionalTensor& mask, const RDropLossOptions& options, bool in_place) {
    constexpr const char* where = "rdrop::torch::rdrop_loss";
    check_cpu(logits, where, "logits");
    const at::Tensor m = mask_of(mask, where);
    at::Tensor grad;
    if (in_place) {
      TORCH_CHECK(logits.is_contiguous(), "rdrop::torch::rdrop_loss_: argument 'logits' must be contiguous to be "
                                          "overwritten by its gradient");
      grad = logits;
    } else {
      grad = gradient_like(logits);
    }
    const double value = rdrop_forward(logits, labels, m, options, grad, where);
    if (in_place) ::torch::autograd::impl::bump_version(logits);  // its values are now the gradient
    ctx->save_for_backward({grad});
    return loss_tensor(value, logits);
  }
  static ::torch::autograd::variable_list backward(::torch::autograd::AutogradContext* ctx,
                                                   ::torch::autograd::variable_list grad_outputs) {
    return with_nothing_else(scaled(ctx->get_saved_variables()[0], grad_outputs[0]), 4);
  }
};

/// A task loss with row targets (multi-label, regression) as an autograd
/// function: Loss<S> is RDropMultiLabelLoss or RDropRegressionLoss.
template <template <typename, typename...> class Loss, template <typename> class Options>
struct RowTargetFunction : ::torch::autograd::Function<RowTargetFunction<Loss, Options>> {
  static at::Tensor forward(::torch::autograd::AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& targets,
                            const OptionalTensor& mask, const Options<double>& o, bool in_place, const char* where) {
    check_cpu(logits, where, "logits");
    check_cpu(targets, where, "targets");
    const at::Tensor m = mask_of(mask, where);
    if (in_place) TORCH_CHECK(logits.is_contiguous(), where, ": argument 'logits' must be contiguous to be overwritten");
    const at::Tensor grad = in_place ? logits : gradient_like(logits);
    const double value = dispatch<true>(logits, where, "logits", [&](auto tag) {
      using E = typename std::decay_t<decltype(tag)>::type;
      using S = rdrop::detail::compute_t<E>;
      Options<S> options;
      options.alpha = static_cast<S>(o.alpha);
      options.layout = o.layout;
      options.normalization = o.normalization;
      options.threads = o.threads;
      // Targets in the loss's compute type (float for 2-byte logits).
      const at::Tensor t = targets.to(std::is_same_v<S, float> ? at::kFloat : at::kDouble).contiguous();
      TORCH_CHECK(t.dim() == logits.dim(), where, ": argument 'targets' has shape ", t.sizes(),
                  "; expected the rank of the logits ", logits.sizes());
      return with_views<E>(logits, grad, where, "logits", [&](const auto& x, auto* g) {
        using X = std::decay_t<decltype(x)>;
        if constexpr (rdrop::detail::is_tensor_v<X>) {
          const ConstTensor<S, 3> y(data_of<S>(t), t.size(0), t.size(1), t.size(2));
          return evaluate(Loss<S>(options), x, y, m, g);
        } else {
          const Eigen::Map<const RowMajor<S>> y(data_of<S>(t), t.size(0), t.size(1));
          return evaluate(Loss<S>(options), x, y, m, g);
        }
      });
    });
    if (in_place) ::torch::autograd::impl::bump_version(logits);
    ctx->save_for_backward({grad});
    return loss_tensor(value, logits);
  }
  static ::torch::autograd::variable_list backward(::torch::autograd::AutogradContext* ctx,
                                                   ::torch::autograd::variable_list grad_outputs) {
    return with_nothing_else(scaled(ctx->get_saved_variables()[0], grad_outputs[0]), 5);
  }
};

struct LinearLossFunction : ::torch::autograd::Function<LinearLossFunction> {
  static at::Tensor forward(::torch::autograd::AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                            const OptionalTensor& optional_bias, const at::Tensor& labels, const OptionalTensor& mask,
                            const LinearLossTorchOptions& o) {
    constexpr const char* where = "rdrop::torch::linear_loss";
    const at::Tensor bias = value_of(optional_bias);
    check_cpu(hidden, where, "hidden");
    check_cpu(weight, where, "weight");
    if (bias.defined()) check_cpu(bias, where, "bias");
    TORCH_CHECK(weight.scalar_type() == hidden.scalar_type() && (!bias.defined() || bias.scalar_type() == hidden.scalar_type()),
                where, ": arguments 'hidden', 'weight' and 'bias' must have one dtype; got ", hidden.scalar_type(), ", ",
                weight.scalar_type(), bias.defined() ? ", " : "", bias.defined() ? c10::toString(bias.scalar_type()) : "");
    TORCH_CHECK(weight.dim() == 2, where, ": argument 'weight' has shape ", weight.sizes(), "; expected [V, D]");
    TORCH_CHECK(!bias.defined() || bias.dim() == 1, where, ": argument 'bias' has shape ", bias.sizes(), "; expected [V]");
    const at::Tensor m = mask_of(mask, where);
    const at::Tensor h = hidden.contiguous(), w = weight.contiguous();
    const at::Tensor b = bias.defined() ? bias.contiguous() : bias;
    at::Tensor gh = gradient_like(h), gw = gradient_like(w), gb = b.defined() ? gradient_like(b) : at::Tensor();
    const double value = dispatch<false>(hidden, where, "hidden", [&](auto tag) {
      using S = typename std::decay_t<decltype(tag)>::type;
      LinearLossOptions linear;
      linear.chunk_bytes = o.chunk_bytes;
      const Eigen::Map<const RowMajor<S>> wm(data_of<S>(w), w.size(0), w.size(1));
      Rows<S> gwm(mutable_data_of<S>(gw), gw.size(0), gw.size(1));
      const auto run = [&](const auto& loss) {
        return with_labels(labels, where, [&](const auto& y) {
          return with_views<S>(h, gh, where, "hidden", [&](const auto& x, auto* g) {
            const auto call = [&](const auto& bias_view, auto&& grad_bias) {
              if (m.defined()) {
                return static_cast<double>(loss.EvaluateWithGradient(x, wm, bias_view, y, mask_view(m), *g, gwm, grad_bias));
              }
              return static_cast<double>(loss.EvaluateWithGradient(x, wm, bias_view, y, *g, gwm, grad_bias));
            };
            if (b.defined()) {
              Eigen::Map<Eigen::Matrix<S, Eigen::Dynamic, 1>> gbm(mutable_data_of<S>(gb), gb.numel());
              return call(Eigen::Map<const Eigen::Matrix<S, Eigen::Dynamic, 1>>(data_of<S>(b), b.numel()), gbm);
            }
            return call(no_bias, no_bias);
          });
        });
      };
      const RDropOptions<S> options = options_in<S>(o);
      switch (o.divergence) {
        case Divergence::SymmetricKL:
          return run(RDropLinearLoss<S>(options, linear));
        case Divergence::KL:
          return run(RDropLinearLoss<S, KLDivergence<S>>(options, linear));
        case Divergence::JensenShannon:
          return run(RDropLinearLoss<S, JensenShannon<S>>(options, linear));
      }
      TORCH_CHECK(false, where, ": argument 'divergence' is ", static_cast<int>(o.divergence),
                  "; expected a value of rdrop::torch::Divergence");
    });
    ctx->save_for_backward({gh, gw, gb});
    return loss_tensor(value, hidden);
  }
  static ::torch::autograd::variable_list backward(::torch::autograd::AutogradContext* ctx,
                                                   ::torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    ::torch::autograd::variable_list out{scaled(saved[0], grad_outputs[0]), scaled(saved[1], grad_outputs[0]),
                                         saved[2].defined() ? scaled(saved[2], grad_outputs[0]) : at::Tensor()};
    out.resize(6);
    return out;
  }
};

}  // namespace detail

/// The R-Drop loss of a duplicated batch (rdrop::RDropLoss) as a scalar
/// tensor with a gradient function: `logits` [2B, C] or [2B, T, C] (float,
/// double, bfloat16, half; copies placed as options.layout says), `labels`
/// int64 once per sample (B or B·T) or once per row (2B or 2B·T), `mask`
/// optional (any dtype, non-zero = keep, once per sample or per row). The
/// gradient reaches both copies; backward scales it by grad_output.
/// Memory: the forward saves one gradient of the logits' size (in their
/// dtype) for the backward, and nothing else; see rdrop_loss_ for none.
inline at::Tensor rdrop_loss(const at::Tensor& logits, const at::Tensor& labels, const RDropLossOptions& options = {},
                             const at::Tensor& mask = {}) {
  return detail::RDropLossFunction::apply(logits, labels, detail::OptionalTensor(mask), options, false);
}

/// rdrop_loss that writes the gradient over the logits (contiguous) in the
/// forward pass and keeps it there for the backward: no logits-sized
/// buffer. The logits' values are gone after the call; their version
/// counter is bumped, so an autograd node that saved them for its own
/// backward (e.g. a log_softmax taken for accuracy) fails loudly rather
/// than reading the gradient.
inline at::Tensor rdrop_loss_(const at::Tensor& logits, const at::Tensor& labels, const RDropLossOptions& options = {},
                              const at::Tensor& mask = {}) {
  return detail::RDropLossFunction::apply(logits, labels, detail::OptionalTensor(mask), options, true);
}

/// The multi-label R-Drop loss (rdrop::RDropMultiLabelLoss): binary
/// cross-entropy from logits on both copies plus α·Bernoulli symmetric KL;
/// `targets` [B or 2B (x T), K] in [0, 1]. Memory as rdrop_loss.
inline at::Tensor multi_label_loss(const at::Tensor& logits, const at::Tensor& targets,
                                   const MultiLabelLossOptions& options = {}, const at::Tensor& mask = {}) {
  return detail::RowTargetFunction<RDropMultiLabelLoss, MultiLabelOptions>::apply(
      logits, targets, detail::OptionalTensor(mask), options, false, "rdrop::torch::multi_label_loss");
}
/// multi_label_loss writing its gradient over the logits (see rdrop_loss_).
inline at::Tensor multi_label_loss_(const at::Tensor& logits, const at::Tensor& targets,
                                    const MultiLabelLossOptions& options = {}, const at::Tensor& mask = {}) {
  return detail::RowTargetFunction<RDropMultiLabelLoss, MultiLabelOptions>::apply(
      logits, targets, detail::OptionalTensor(mask), options, true, "rdrop::torch::multi_label_loss_");
}

/// The regression R-Drop loss (rdrop::RDropRegressionLoss): squared error
/// on both copies plus α·squared distance between them; `targets` [B or 2B
/// (x T), K]. Memory as rdrop_loss.
inline at::Tensor regression_loss(const at::Tensor& outputs, const at::Tensor& targets,
                                  const RegressionLossOptions& options = {}, const at::Tensor& mask = {}) {
  return detail::RowTargetFunction<RDropRegressionLoss, RegressionOptions>::apply(
      outputs, targets, detail::OptionalTensor(mask), options, false, "rdrop::torch::regression_loss");
}
/// regression_loss writing its gradient over the outputs (see rdrop_loss_).
inline at::Tensor regression_loss_(const at::Tensor& outputs, const at::Tensor& targets,
                                   const RegressionLossOptions& options = {}, const at::Tensor& mask = {}) {
  return detail::RowTargetFunction<RDropRegressionLoss, RegressionOptions>::apply(
      outputs, targets, detail::OptionalTensor(mask), options, true, "rdrop::torch::regression_loss_");
}

/// The output layer fused with the R-Drop loss (rdrop::RDropLinearLoss):
/// the loss of logits hidden·weightᵀ + bias, never holding the logits.
/// `hidden` [2B, D] or [2B, T, D], `weight` [V, D], `bias` [V] or undefined
/// (none); float or double. Gradients for hidden, weight and bias; the
/// forward saves those three (the inputs' sizes, not the logits').
inline at::Tensor linear_loss(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& bias,
                              const at::Tensor& labels, const LinearLossTorchOptions& options = {},
                              const at::Tensor& mask = {}) {
  return detail::LinearLossFunction::apply(hidden, weight, detail::OptionalTensor(bias), labels,
                                           detail::OptionalTensor(mask), options);
}

}  // namespace rdrop::torch
