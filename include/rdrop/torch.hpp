/// \file
/// R-Drop for libtorch: the losses of rdrop as autograd functions on torch
/// tensors. Optional: rdrop/rdrop.hpp does not include this header; link
/// the CMake target rdrop::torch (created when find_package(Torch) succeeds).
///
///   at::Tensor loss = rdrop::torch::rdrop_loss(logits, labels, options);
///   loss.backward();  // gradients for both copies of every sample
///
/// Every function takes tensors on any device, all on one: on the CPU the
/// fused kernels run, elsewhere the same loss and analytic gradients in ATen
/// operations (Path; docs/torch.md has the table of devices and dtypes).
/// Each call follows torch's rules for the tensors it is given (docs/torch.md):
/// any strided view is read as its values; with grad mode off or nothing
/// requiring grad only the value is computed; the backward is differentiable
/// once (a double backward raises, as torch's once_differentiable); the
/// in-place variants refuse what torch's in-place ops refuse; 2-byte
/// gradients are rounded once, at the scale grad_output gives them.
///
/// Errors are c10::Error (TORCH_CHECK) for what torch users check with it
/// (definedness, device, dtype, rank, autograd rules), and
/// std::invalid_argument for shapes and values, naming the function, the
/// argument and the shapes.
#pragma once

#include "rdrop/rdrop.hpp"

#include <ATen/ATen.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/init.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any_value.h>
#include <torch/nn/pimpl.h>

#include <Eigen/Core>
#include <unsupported/Eigen/CXX11/Tensor>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

/// \namespace rdrop::torch
/// The losses of rdrop as libtorch autograd functions on torch tensors
/// (`rdrop/torch.hpp`, CMake target rdrop::torch).
namespace rdrop::torch {

/// The divergence between the two copies of RDropLoss.
enum class Divergence {
  SymmetricKL,   ///< ½[KL(p‖q) + KL(q‖p)], the paper's (fused sweep)
  KL,            ///< KL(p‖q), p the first copy (fused sweep)
  JensenShannon  ///< ½KL(p‖m) + ½KL(q‖m), m = ½(p + q)
};

/// Which implementation computes a loss.
enum class Path {
  Auto,   ///< the fused kernels on CPU tensors, the ATen path on any other device
  Fused,  ///< the fused kernels (CPU tensors only)
  ATen    ///< ATen operations on the tensors' own device: any device, same loss and analytic gradient
};

/// Which library multiplies linear_loss's matrices on the CPU's fused path.
enum class Products {
  Auto,   ///< 2-byte: ATen; float and double: the faster of the two, measured once per process (docs/torch.md)
  Eigen,  ///< rdrop's own (Eigen) products: float and double; bitwise the same for any thread count
  ATen    ///< torch's products (its BLAS; oneDNN for bfloat16), the fused kernels between them
};

/// The settings every rdrop::torch loss takes, set in torch's style, one
/// chained call each (as TORCH_ARG makes them:
/// `RDropLossOptions().alpha(4).label_smoothing(0.1)`), and read the same
/// way (`options.alpha()`). Defaults are those of the Eigen API's options.
/// Derived is the options class, which every setter returns, so that a
/// chain mixes these settings with the class's own.
template <typename Derived>
class LossSettings {
 public:
  /// Sets the weight α of the divergence (≥ 0).
  Derived& alpha(double value) { return set(alpha_, value); }
  /// The weight α of the divergence.
  double alpha() const noexcept { return alpha_; }
  /// α, to assign (`options.alpha() = …`), as TORCH_ARG gives it.
  double& alpha() noexcept { return alpha_; }
  /// Sets where the two copies of a sample are (see rdrop::Layout).
  Derived& layout(Layout value) { return set(layout_, value); }
  /// Where the two copies of a sample are.
  Layout layout() const noexcept { return layout_; }
  /// The layout, to assign (`options.layout() = …`), as TORCH_ARG gives it.
  Layout& layout() noexcept { return layout_; }
  /// Sets how the two terms are scaled (see rdrop::Normalization).
  Derived& normalization(Normalization value) { return set(normalization_, value); }
  /// How the two terms are scaled.
  Normalization normalization() const noexcept { return normalization_; }
  /// The normalization, to assign (`options.normalization() = …`), as TORCH_ARG gives it.
  Normalization& normalization() noexcept { return normalization_; }
  /// Sets the threads of the sweep (0: rdrop::set_num_threads's value).
  Derived& threads(int value) { return set(threads_, value); }
  /// The threads of the sweep (0: rdrop::set_num_threads's value).
  int threads() const noexcept { return threads_; }
  /// The threads, to assign (`options.threads() = …`), as TORCH_ARG gives it.
  int& threads() noexcept { return threads_; }
  /// Sets the factor the loss is multiplied by before backward (a loss
  /// scaler's scale). Read by the in-place variants only: they compute the
  /// gradient in the forward pass, so they write loss_scale · ∂loss/∂logits
  /// (2-byte logits: rounded once, at that size), and their backward
  /// expects grad_output == loss_scale (2-byte logits: any other
  /// grad_output throws; float and double: the gradient is rescaled). The
  /// out-of-place functions take the scale from grad_output and need no hint.
  Derived& loss_scale(double value) { return set(loss_scale_, value); }
  /// The loss scale of the in-place variants (1 by default).
  double loss_scale() const noexcept { return loss_scale_; }
  /// Sets the implementation (Path::Auto by default; Path::ATen runs the
  /// device-independent path on CPU tensors too).
  Derived& path(Path value) { return set(path_, value); }
  /// The implementation.
  Path path() const noexcept { return path_; }
  /// The loss scale, to assign (`options.loss_scale() = …`), as TORCH_ARG gives it.
  double& loss_scale() noexcept { return loss_scale_; }

 protected:
  /// Sets `field` and returns the options, for the next call of a chain.
  template <typename T>
  Derived& set(T& field, T value) {
    field = value;
    return static_cast<Derived&>(*this);
  }

 private:
  double alpha_ = RDropOptions<double>{}.alpha;
  Layout layout_ = RDropOptions<double>{}.layout;
  Normalization normalization_ = RDropOptions<double>{}.normalization;
  int threads_ = RDropOptions<double>{}.threads;
  double loss_scale_ = 1.0;
  Path path_ = Path::Auto;
};

/// LossSettings and the settings of a loss with integer labels: those of
/// rdrop::RDropOptions (ignore_index, padding_index, label smoothing and its
/// style) and the divergence.
template <typename Derived>
class RDropSettings : public LossSettings<Derived> {
 public:
  /// Sets the label whose rows carry no task term (−100 by default).
  Derived& ignore_index(std::int64_t value) { return this->set(ignore_index_, value); }
  /// The label whose rows carry no task term.
  std::int64_t ignore_index() const noexcept { return ignore_index_; }
  /// The ignore label, to assign (`options.ignore_index() = …`), as TORCH_ARG gives it.
  std::int64_t& ignore_index() noexcept { return ignore_index_; }
  /// Sets the padding label: its rows take no part at all (rdrop::no_padding: none).
  Derived& padding_index(std::int64_t value) { return this->set(padding_index_, value); }
  /// The padding label (rdrop::no_padding: none).
  std::int64_t padding_index() const noexcept { return padding_index_; }
  /// The padding label, to assign (`options.padding_index() = …`), as TORCH_ARG gives it.
  std::int64_t& padding_index() noexcept { return padding_index_; }
  /// Sets the label smoothing ε, in [0, 1).
  Derived& label_smoothing(double value) { return this->set(label_smoothing_, value); }
  /// The label smoothing ε.
  double label_smoothing() const noexcept { return label_smoothing_; }
  /// ε, to assign (`options.label_smoothing() = …`), as TORCH_ARG gives it.
  double& label_smoothing() noexcept { return label_smoothing_; }
  /// Sets how ε is spread (see rdrop::SmoothingStyle).
  Derived& smoothing_style(SmoothingStyle value) { return this->set(smoothing_style_, value); }
  /// How ε is spread.
  SmoothingStyle smoothing_style() const noexcept { return smoothing_style_; }
  /// The smoothing style, to assign (`options.smoothing_style() = …`), as TORCH_ARG gives it.
  SmoothingStyle& smoothing_style() noexcept { return smoothing_style_; }
  /// Sets the divergence between the two copies.
  Derived& divergence(Divergence value) { return this->set(divergence_, value); }
  /// The divergence between the two copies (the symmetric KL, as in the paper).
  Divergence divergence() const noexcept { return divergence_; }
  /// The divergence, to assign (`options.divergence() = …`), as TORCH_ARG gives it.
  Divergence& divergence() noexcept { return divergence_; }

 protected:
  /// Takes every setting of `other`, another options class's.
  template <typename Other>
  void assign(const RDropSettings<Other>& other) {
    this->alpha(other.alpha()).layout(other.layout()).normalization(other.normalization()).threads(other.threads());
    this->loss_scale(other.loss_scale()).path(other.path());
    ignore_index(other.ignore_index()).padding_index(other.padding_index());
    label_smoothing(other.label_smoothing()).smoothing_style(other.smoothing_style()).divergence(other.divergence());
  }

 private:
  std::int64_t ignore_index_ = RDropOptions<double>{}.ignore_index;
  std::int64_t padding_index_ = RDropOptions<double>{}.padding_index;
  double label_smoothing_ = RDropOptions<double>{}.label_smoothing;
  SmoothingStyle smoothing_style_ = RDropOptions<double>{}.smoothing_style;
  Divergence divergence_ = Divergence::SymmetricKL;
};

/// Settings of rdrop_loss and of the module RDropLoss (see RDropSettings).
class RDropLossOptions : public RDropSettings<RDropLossOptions> {
 public:
  RDropLossOptions() = default;
  /// From the Eigen API's options (divergence SymmetricKL, loss_scale 1).
  RDropLossOptions(const RDropOptions<double>& options)  // NOLINT(google-explicit-constructor)
  {
    alpha(options.alpha).layout(options.layout).normalization(options.normalization).threads(options.threads);
    ignore_index(options.ignore_index).padding_index(options.padding_index);
    label_smoothing(options.label_smoothing).smoothing_style(options.smoothing_style);
  }
  /// Every R-Drop setting of other options (those of linear_loss).
  template <typename Other>
  RDropLossOptions(const RDropSettings<Other>& options)  // NOLINT(google-explicit-constructor)
  {
    assign(options);
  }
};

/// Settings of multi_label_loss: those of rdrop::MultiLabelOptions and the
/// loss scale of the in-place variant (see LossSettings).
class MultiLabelLossOptions : public LossSettings<MultiLabelLossOptions> {
 public:
  MultiLabelLossOptions() = default;
  /// From the Eigen API's options (loss_scale 1).
  MultiLabelLossOptions(const MultiLabelOptions<double>& options)  // NOLINT(google-explicit-constructor)
  {
    alpha(options.alpha).layout(options.layout).normalization(options.normalization).threads(options.threads);
  }
};

/// Settings of regression_loss: those of rdrop::RegressionOptions and the
/// loss scale of the in-place variant (see LossSettings).
class RegressionLossOptions : public LossSettings<RegressionLossOptions> {
 public:
  RegressionLossOptions() = default;
  /// From the Eigen API's options (loss_scale 1).
  RegressionLossOptions(const RegressionOptions<double>& options)  // NOLINT(google-explicit-constructor)
  {
    alpha(options.alpha).layout(options.layout).normalization(options.normalization).threads(options.threads);
  }
};

/// Settings of linear_loss and of the module RDropLinearLoss: the R-Drop
/// settings (RDropSettings), rdrop::LinearLossOptions' chunk size
/// (accumulate is not offered: autograd accumulates) and which products the
/// CPU uses. loss_scale is read for 2-byte inputs only: their gradients are
/// computed in the forward pass at that scale, and a backward with another
/// grad_output computes them again at its own (rounded once either way).
class LinearLossTorchOptions : public RDropSettings<LinearLossTorchOptions> {
 public:
  LinearLossTorchOptions() = default;
  /// The R-Drop settings of other options (those of rdrop_loss), the
  /// default chunk size.
  template <typename Other>
  LinearLossTorchOptions(const RDropSettings<Other>& options)  // NOLINT(google-explicit-constructor)
  {
    assign(options);
  }
  /// Sets the bytes of logits and their gradient held at a time (see
  /// rdrop::LinearLossOptions::chunk_bytes).
  LinearLossTorchOptions& chunk_bytes(std::size_t value) { return set(chunk_bytes_, value); }
  /// The bytes of logits and their gradient held at a time; 256 MiB by
  /// default, as the Eigen API's.
  std::size_t chunk_bytes() const noexcept { return chunk_bytes_; }
  /// The chunk size, to assign (`options.chunk_bytes() = …`), as TORCH_ARG gives it.
  std::size_t& chunk_bytes() noexcept { return chunk_bytes_; }
  /// Sets the most pairs a chunk takes (see rdrop::LinearLossOptions::chunk_pairs).
  LinearLossTorchOptions& chunk_pairs(std::size_t value) { return set(chunk_pairs_, value); }
  /// The most pairs a chunk takes, however many chunk_bytes would hold; 512
  /// by default, as the Eigen API's.
  std::size_t chunk_pairs() const noexcept { return chunk_pairs_; }
  /// The most pairs a chunk takes, to assign, as TORCH_ARG gives it.
  std::size_t& chunk_pairs() noexcept { return chunk_pairs_; }
  /// Sets which library multiplies the matrices on the CPU's fused path.
  LinearLossTorchOptions& products(Products value) { return set(products_, value); }
  /// Which library multiplies the matrices on the CPU's fused path (Products::Auto by default).
  Products products() const noexcept { return products_; }
  /// The products' library, to assign (`options.products() = …`), as TORCH_ARG gives it.
  Products& products() noexcept { return products_; }

 private:
  std::size_t chunk_bytes_ = LinearLossOptions{}.chunk_bytes;
  std::size_t chunk_pairs_ = LinearLossOptions{}.chunk_pairs;
  Products products_ = Products::Auto;
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
  throw std::logic_error("unreachable: TORCH_CHECK(false) throws");
}

/// A Divergence value that names none of its enumerators (a cast int).
/// [[noreturn]], so that switches over Divergence end here at every
/// optimization level (GCC does not see that TORCH_CHECK(false) throws).
[[noreturn]] inline void unknown_divergence(Divergence d, const char* where) {
  TORCH_CHECK(false, where, ": argument 'divergence' is ", static_cast<int>(d),
              "; expected a value of rdrop::torch::Divergence");
  throw std::logic_error("unreachable: TORCH_CHECK(false) throws");
}

/// Throws unknown_divergence's error for a Divergence that names none of
/// its enumerators, before any path has read it.
inline void check_divergence(Divergence d, const char* where) {
  switch (d) {
    case Divergence::SymmetricKL:
    case Divergence::KL:
    case Divergence::JensenShannon:
      return;
  }
  unknown_divergence(d, where);
}

/// Throws std::invalid_argument unless loss_scale is a finite, non-zero
/// float: 2-byte gradients are made at it, and a backward compares it with
/// grad_output in float.
inline void check_loss_scale(double scale, const char* where) {
  if (!(std::isfinite(scale) && scale != 0 && std::abs(scale) <= static_cast<double>(std::numeric_limits<float>::max()))) {
    throw std::invalid_argument(std::string(where) + ": argument 'loss_scale' is " + std::to_string(scale) +
                                "; expected a finite, non-zero factor within float's range");
  }
}

inline void check_defined(const at::Tensor& t, const char* where, const char* name) {
  TORCH_CHECK(t.defined(), where, ": argument '", name, "' is an undefined tensor");
}

inline void check_strided(const at::Tensor& t, const char* where, const char* name) {
  check_defined(t, where, name);
  TORCH_CHECK(t.layout() == at::kStrided, where, ": argument '", name, "' must be a dense (strided) tensor");
}

/// A named tensor argument, for the device check.
struct Named {
  const char* name;
  const at::Tensor& tensor;
};

/// Every defined argument on the first one's device (torch's ops refuse a
/// mix too; rdrop names the two arguments that differ).
inline void check_one_device(const char* where, std::initializer_list<Named> arguments) {
  const Named& first = *arguments.begin();
  for (const Named& a : arguments) {
    if (!a.tensor.defined()) continue;
    TORCH_CHECK(a.tensor.device() == first.tensor.device(), where, ": arguments '", first.name, "' (on ",
                first.tensor.device(), ") and '", a.name, "' (on ", a.tensor.device(),
                ") are on different devices; expected every tensor on one device");
  }
}

inline bool is_two_byte(const at::Tensor& t) {
  return t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kHalf;
}

/// Whether a call needs a backward: grad mode on and an input requiring
/// grad. Otherwise only the value is computed (an evaluation loop pays for
/// no gradient).
inline bool wants_grad(std::initializer_list<at::Tensor> inputs) {
  if (!at::GradMode::is_enabled()) return false;
  for (const at::Tensor& t : inputs) {
    if (t.defined() && t.requires_grad()) return true;
  }
  return false;
}

inline std::string shape_str(at::IntArrayRef sizes) {
  std::ostringstream s;
  s << sizes;
  return s.str();
}

inline void check_rank(const at::Tensor& x, const char* where, const char* name, const char* expected) {
  TORCH_CHECK(x.dim() == 2 || x.dim() == 3, where, ": argument '", name, "' has shape ", x.sizes(), "; expected ",
              expected);
}

/// A tensor given once per sample or once per row of `x` ([2B, ...]): its
/// shape is x's with the first dimension B or 2B, and without x's last
/// dimension unless `with_last` (labels and masks drop the classes, row
/// targets keep them). An odd row count is left to rdrop, which names it.
inline void check_per_sample_or_row(const at::Tensor& t, const at::Tensor& x, bool with_last, const char* where,
                                    const char* name, const char* x_name) {
  if (x.size(0) % 2 != 0) return;
  std::vector<std::int64_t> per_row(x.sizes().begin(), x.sizes().end());
  if (!with_last) per_row.pop_back();
  std::vector<std::int64_t> per_sample = per_row;
  per_sample[0] /= 2;
  if (t.sizes() == at::IntArrayRef(per_sample) || t.sizes() == at::IntArrayRef(per_row)) return;
  throw std::invalid_argument(std::string(where) + ": argument '" + name + "' has shape " + shape_str(t.sizes()) +
                              "; expected " + shape_str(per_sample) + " (one per sample) or " + shape_str(per_row) +
                              " (one per row) for " + x_name + " of shape " + shape_str(x.sizes()));
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

/// Whether rank-2 `x` can be read in place as rows: each row's classes
/// contiguous and the rows disjoint, in order. (Eigen reads row i at
/// i · outer stride, and takes an outer stride of 0 to mean "packed".)
/// Stride-0, overlapping and transposed rows are copied first.
inline bool rows_in_place(const at::Tensor& x) {
  return x.numel() > 0 && (x.stride(1) == 1 || x.size(1) == 1) && (x.size(0) == 1 || x.stride(0) >= x.size(1));
}

/// A rank-2 or rank-3 tensor of logits (rank 3: [2B, T, C]) as rdrop reads
/// it, and a contiguous gradient of its shape as rdrop writes it (or none:
/// undefined): calls f(logits_view, gradient_view_or_null). Rank 2 rows
/// that rows_in_place accepts are read where they are; every other layout
/// is first made contiguous, so any view torch can express reads as its
/// values.
template <typename E, typename F>
decltype(auto) with_views(const at::Tensor& x, const at::Tensor& grad, F&& f) {
  if (x.dim() == 2) {
    const bool in_place = rows_in_place(x);
    const at::Tensor rows = in_place ? x : x.contiguous();
    const std::int64_t outer = in_place && x.size(0) > 1 ? x.stride(0) : rows.size(1);
    const StridedRows<E> view(data_of<E>(rows), rows.size(0), rows.size(1), Eigen::OuterStride<>(outer));
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

/// Labels (int64 or int32, shape checked by the caller, read in their
/// logical order) as rdrop reads them: calls f(vector_view).
template <typename F>
decltype(auto) with_labels(const at::Tensor& labels, const char* where, F&& f) {
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

/// The mask as a contiguous bool vector in its logical order (non-zero =
/// keep), or none.
inline at::Tensor mask_of(const at::Tensor& mask) {
  if (!mask.defined()) return mask;
  return mask.to(at::kBool).contiguous().view({-1});
}
using MaskView = Eigen::Map<const Eigen::Matrix<bool, Eigen::Dynamic, 1>>;
inline MaskView mask_view(const at::Tensor& mask) { return {mask.data_ptr<bool>(), mask.numel()}; }

/// loss.EvaluateWithGradient with or without a mask (Evaluate without a
/// gradient).
template <typename Loss, typename X, typename Y, typename G>
double evaluate(const Loss& loss, const X& x, const Y& y, const at::Tensor& mask, G* grad) {
  if (mask.defined()) {
    const MaskView m = mask_view(mask);
    return grad ? static_cast<double>(loss.EvaluateWithGradient(x, y, m, *grad)) : static_cast<double>(loss.Evaluate(x, y, m));
  }
  return grad ? static_cast<double>(loss.EvaluateWithGradient(x, y, *grad)) : static_cast<double>(loss.Evaluate(x, y));
}

template <typename S, typename Options>
RDropOptions<S> options_in(const Options& o) {
  RDropOptions<S> r;
  r.alpha = static_cast<S>(o.alpha());
  r.layout = o.layout();
  r.normalization = o.normalization();
  r.ignore_index = static_cast<Eigen::Index>(o.ignore_index());
  r.padding_index = static_cast<Eigen::Index>(o.padding_index());
  r.label_smoothing = static_cast<S>(o.label_smoothing());
  r.smoothing_style = o.smoothing_style();
  r.threads = o.threads();
  return r;
}

/// The loss value as a 0-dim tensor: in the logits' dtype for float and
/// double, in float for 2-byte logits (as autocast computes losses).
inline at::Tensor loss_tensor(double value, const at::Tensor& logits) {
  return at::scalar_tensor(value, logits.options().dtype(is_two_byte(logits) ? at::kFloat : logits.scalar_type()));
}

/// grad_output · saved: the saved gradient itself when grad_output is 1
/// (loss.backward()), else a scaled copy.
inline at::Tensor scaled(const at::Tensor& saved, const at::Tensor& grad_output) {
  if (grad_output.numel() == 1 && grad_output.item<double>() == 1.0) return saved;
  return saved * grad_output.to(saved.scalar_type());
}

/// A fresh contiguous tensor of x's shape and dtype for a gradient, so
/// that autograd can hand it on without a copy (AccumulateGrad steals a
/// gradient nobody else holds).
inline at::Tensor gradient_like(const at::Tensor& x) {
  return at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
}

/// Where the gradient of each differentiable input of a forward goes (its
/// grad_fn or grad accumulator; none where it requires no grad).
inline ::torch::autograd::edge_list edges_of(std::initializer_list<at::Tensor> inputs) {
  ::torch::autograd::edge_list edges;
  for (const at::Tensor& t : inputs) {
    edges.push_back(t.defined() && t.requires_grad() ? ::torch::autograd::impl::gradient_edge(t)
                                                     : ::torch::autograd::Edge());
  }
  return edges;
}

/// What a backward returns, made differentiable once: when the backward
/// runs with grad mode on (create_graph: a gradient penalty, a
/// Hessian-vector product), the gradients hang from a node that raises if
/// anything differentiates through them, as torch's once_differentiable
/// does. Unlike once_differentiable, it does not wait for grad_output to
/// require grad (rdrop's gradients depend on the logits, so a second
/// derivative through them is never 0), and the node leads back to the
/// forward's inputs, so that torch::autograd::grad(…, {logits}) reaches it
/// and raises instead of reporting the logits as unused.
inline ::torch::autograd::variable_list once_differentiable(::torch::autograd::variable_list grads,
                                                            const ::torch::autograd::edge_list& inputs,
                                                            const std::string& where) {
  if (!at::GradMode::is_enabled()) return grads;
  const auto refuse = std::make_shared<::torch::autograd::Error>(
      where +
          ": rdrop's backward is not differentiable (it is once_differentiable): no double backward, gradient "
          "penalty or Hessian-vector product through it",
      ::torch::autograd::edge_list(inputs));
  for (at::Tensor& g : grads) {
    if (!g.defined()) continue;
    g = g.detach();
    ::torch::autograd::create_gradient_edge(g, refuse);
  }
  return grads;
}

/// torch's own checks before an in-place op (check_inplace): no leaf that
/// requires grad, no view of one, and no view that autograd cannot rebase
/// (created in no-grad mode, one of several views of an op, ...).
inline void check_in_place(const at::Tensor& t, const char* where) {
  auto* view = ::torch::autograd::impl::get_view_autograd_meta(t);
  if (view != nullptr && view->has_bw_view()) {
    ::torch::autograd::handle_view_on_rebase(view);
    TORCH_CHECK(!t._base().is_leaf(), where,
                ": a view of a leaf Variable that requires grad is being used in an in-place operation.");
  }
  TORCH_CHECK(!t.is_leaf(), where, ": a leaf Variable that requires grad is being used in an in-place operation.");
  TORCH_CHECK(t.is_contiguous(), where, ": argument 'logits' must be contiguous to be overwritten by its gradient");
}

/// Non-tensor data a backward needs, kept in the autograd context.
template <typename T>
struct Held : ::torch::CustomClassHolder {
  explicit Held(T v) : value(std::move(v)) {}
  T value;
};
template <typename T>
c10::IValue hold(T v) {
  return c10::IValue::make_capsule(c10::make_intrusive<Held<T>>(std::move(v)));
}
template <typename T>
const T& held(const c10::IValue& v) {
  return static_cast<const Held<T>*>(v.toCapsule().get())->value;
}

/// The fused kernels' R-Drop loss of one chunk of linear_loss: logits z
/// [2n, V] (CPU, contiguous; float, double or 2-byte, which the kernels read
/// and write themselves, computing in float), the chunk's first copies then
/// its second (Stacked), with their labels (int64) and kept rows (bool),
/// normalized by the whole batch's `counts`; scale · its gradient written
/// over z (rounded once to z's dtype) when with_grad. Returns the chunk's
/// share of the loss.
template <typename Options>
double fused_chunk(const at::Tensor& z, const at::Tensor& labels, const at::Tensor& keep, const Options& o,
                   const RDropCounts& counts, bool with_grad, double scale, const char* where) {
  return dispatch<true>(z, where, "hidden", [&](auto tag) {
    using E = typename decltype(tag)::type;
    using S = rdrop::detail::compute_t<E>;
    RDropOptions<S> options = options_in<S>(o);
    options.layout = Layout::Stacked;
    const Eigen::Map<const RowMajor<E>> x(data_of<E>(z), z.size(0), z.size(1));
    Rows<E> g(mutable_data_of<E>(z), z.size(0), z.size(1));
    const Eigen::Map<const Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1>> y(labels.data_ptr<std::int64_t>(),
                                                                              labels.numel());
    const auto run = [&](const auto& loss) {
      return evaluate(loss.WithCounts(counts).WithGradientScale(static_cast<S>(scale)), x, y, keep,
                      with_grad ? &g : nullptr);
    };
    switch (o.divergence()) {
      case Divergence::SymmetricKL:
        return run(rdrop::RDropLoss<S>(options));
      case Divergence::KL:
        return run(rdrop::RDropLoss<S, KLDivergence<S>>(options));
      case Divergence::JensenShannon:
        return run(rdrop::RDropLoss<S, JensenShannon<S>>(options));
    }
    unknown_divergence(o.divergence(), where);
  });
}

namespace aten {

/// The rows of the two copies of x [2B, ...] in `layout`, each [B, ...].
inline std::pair<at::Tensor, at::Tensor> copies(const at::Tensor& x, Layout layout) {
  const int64_t b = x.size(0) / 2;
  if (layout == Layout::Stacked) return {x.narrow(0, 0, b), x.narrow(0, b, b)};
  return {x.slice(0, 0, x.size(0), 2), x.slice(0, 1, x.size(0), 2)};
}

/// Per-sample ([B, T]) or per-row ([2B, T]) values as the two copies' [B, T].
inline std::pair<at::Tensor, at::Tensor> per_copy(const at::Tensor& t, int64_t b, Layout layout) {
  if (t.size(0) == b) return {t, t};
  return copies(t, layout);
}

/// x·y where x is 0 (0·(±inf or NaN) would be NaN): the terms of a
/// distribution's own zero-probability classes drop out.
inline at::Tensor weighted(const at::Tensor& weight, const at::Tensor& value) {
  return at::where(weight == 0, at::zeros({}, weight.options()), weight * value);
}

/// The weights of the task sum and the divergence sum for `counts` (the
/// fused path's, rdrop::detail::term_scales).
template <typename Options>
rdrop::detail::TermScales<double> scales_of(const Options& o, const RDropCounts& counts) {
  return rdrop::detail::term_scales<double>(o.normalization(), o.alpha(), counts);
}

/// wt · task + wd · divergence (numbers or 0-dim tensors); the divergence
/// is left out at α = 0, as the fused path leaves it (0 · inf would be NaN).
template <typename T, typename Options>
T combine(const T& task, const T& divergence, const rdrop::detail::TermScales<double>& w, const Options& o) {
  if (o.alpha() > 0) return w.task * task + w.divergence * divergence;
  return w.task * task;
}

/// combine() of 0-dim tensors, read with one device synchronization.
template <typename Options>
double total(const at::Tensor& task, const at::Tensor& divergence, const rdrop::detail::TermScales<double>& w,
             const Options& o) {
  return combine(task, divergence, w, o).template item<double>();
}

/// What pair_terms computes: the task and divergence sums (0-dim tensors on
/// the logits' device) and the weighted gradients of the two copies.
struct PairTerms {
  at::Tensor task_sum, divergence_sum, grad_a, grad_b;
};

/// The smoothed target distribution's two values: `off` on every class,
/// `on` on the label.
struct TargetValues {
  double off, on;
};
template <typename Options>
TargetValues target_values(const Options& o, int64_t classes) {
  const double eps = o.label_smoothing();
  const bool exclude = o.smoothing_style() == SmoothingStyle::ExcludeTarget;
  const double off =
      exclude ? (classes > 1 ? eps / static_cast<double>(classes - 1) : 0.0) : eps / static_cast<double>(classes);
  return {off, exclude ? 1 - eps : 1 - eps + off};
}

/// pair_terms where every log-probability is finite (no −inf, inf or NaN
/// logit: the common case), in about a dozen passes over the logits: CE
/// from log p's row sum and its value at the label, the divergences'
/// gradients as softmax backwards (p ⊙ (g − Σ p g), one fused kernel),
/// each copy's gradient added up in place. Nothing here meets 0 · inf, so
/// nothing is guarded. lpa and lpb are turned into p and q in place: at
/// most three logit-sized tensors beside the logits are alive at once.
template <typename Options>
PairTerms finite_pair_terms(at::Tensor lpa, at::Tensor lpb, const at::Tensor& sum_a, const at::Tensor& sum_b,
                            const at::Tensor& ya, const at::Tensor& yb, const at::Tensor& la, const at::Tensor& lb,
                            const at::Tensor& kp, const Options& o, bool with_grad, double wt, double wd,
                            at::Tensor grad_a, at::Tensor grad_b) {
  const TargetValues q = target_values(o, lpa.size(-1));
  const double off = q.off, on = q.on;
  const at::Tensor zero = at::zeros({}, lpa.options());
  const at::Tensor ia = at::where(la, ya, at::zeros({}, ya.options())).unsqueeze(-1);
  const at::Tensor ib = at::where(lb, yb, at::zeros({}, yb.options())).unsqueeze(-1);
  // −Σ q log p = −(off · Σ log p + (on − off) · log p_y)
  const auto ce = [&](const at::Tensor& lp, const at::Tensor& sum, const at::Tensor& index) {
    return -(off * sum + (on - off) * lp.gather(-1, index).squeeze(-1));
  };
  PairTerms r;
  r.task_sum = at::where(la, ce(lpa, sum_a, ia), zero).sum() + at::where(lb, ce(lpb, sum_b, ib), zero).sum();
  const at::Tensor log_ratio = lpa - lpb;  // log p − log q
  const at::Tensor& pa = lpa.exp_();
  const at::Tensor& pb = lpb.exp_();
  const at::Tensor kl_ab = (pa * log_ratio).sum(-1);
  const bool symmetric = o.divergence() == Divergence::SymmetricKL;
  r.divergence_sum = at::where(kp, symmetric ? 0.5 * (kl_ab - (pb * log_ratio).sum(-1)) : kl_ab, zero).sum();
  if (!with_grad) return r;
  // Per-row weights [.., 1]: wt on the labeled rows, wd on the kept pairs.
  const auto column = [&](const at::Tensor& rows, double weight) {
    return (rows.to(lpa.scalar_type()) * weight).unsqueeze(-1);
  };
  const at::Tensor ta = column(la, wt), tb = column(lb, wt), dv = column(kp, wd);
  const auto softmax_backward = [&](at::Tensor& out, const at::Tensor& p) {
    if (out.defined()) return at::_softmax_backward_data_out(out, log_ratio, p, -1, p.scalar_type());
    return out = at::_softmax_backward_data(log_ratio, p, -1, p.scalar_type());
  };
  const auto product = [](at::Tensor& out, const at::Tensor& x, const at::Tensor& y) {
    if (out.defined()) return at::mul_out(out, x, y);
    return out = x * y;
  };
  if (wd == 0) {  // no divergence term: 0 · (its gradient) may be 0 · inf
    product(grad_a, pa, ta);
    product(grad_b, pb, tb);
  } else if (symmetric) {
    // ∂a = ½ (softmax_bwd(log p − log q, p) + p − q)
    // ∂b = −½ (softmax_bwd(log p − log q, q) + p − q)
    const at::Tensor half = 0.5 * dv;
    softmax_backward(grad_a, pa).mul_(half).addcmul_(pa, half + ta).addcmul_(pb, -half);
    softmax_backward(grad_b, pb).mul_(-half).addcmul_(pb, half + tb).addcmul_(pa, -half);
  } else {  // KL(p ‖ q): ∂a = softmax_bwd(log p − log q, p), ∂b = q − p
    softmax_backward(grad_a, pa).mul_(dv).addcmul_(pa, ta);
    product(grad_b, pb, dv + tb).addcmul_(pa, -dv);
  }
  // The task's wt · (p − target): less off everywhere, less (on − off) at
  // the label.
  const auto less_target = [&](at::Tensor& g, const at::Tensor& t, const at::Tensor& index) {
    if (off != 0) g.sub_(t * off);
    g.scatter_add_(-1, index, t * -(on - off));
  };
  less_target(grad_a, ta, ia);
  less_target(grad_b, tb, ib);
  r.grad_a = grad_a;
  r.grad_b = grad_b;
  return r;
}

/// pair_terms for any logits: −inf logits (a class ruled out), inf or NaN
/// (carried into the result, as torch carries them) and the Jensen-Shannon
/// divergence, every 0 · (±inf or NaN) of a zero-probability class guarded.
/// About twenty logit-sized temporaries: pair_terms gives it a few rows at
/// a time where a memory bound matters.
template <typename Options>
PairTerms guarded_pair_terms(const at::Tensor& lpa, const at::Tensor& lpb, const at::Tensor& ya, const at::Tensor& yb,
                             const at::Tensor& ka, const at::Tensor& kb, const at::Tensor& la, const at::Tensor& lb,
                             const at::Tensor& kp, const Options& o, bool with_grad, double wt, double wd,
                             const at::Tensor& grad_a, const at::Tensor& grad_b) {
  const int64_t c = lpa.size(-1);
  const at::Tensor pa = lpa.exp(), pb = lpb.exp();
  // The smoothed target distribution, made in the logits' dtype by one
  // scatter (no [.., C] one-hot of int64).
  const TargetValues q = target_values(o, c);
  const double off = q.off, on = q.on;
  const auto target = [&](const at::Tensor& yl, const at::Tensor& labeled) {
    return at::full(lpa.sizes(), off, lpa.options())
        .scatter_(-1, at::where(labeled, yl, at::zeros({}, yl.options())).unsqueeze(-1), on);
  };
  const at::Tensor qa = target(ya, la), qb = target(yb, lb);
  const at::Tensor zero = at::zeros({}, lpa.options());
  PairTerms r;
  r.task_sum = at::where(la, -weighted(qa, lpa).sum(-1), zero).sum() + at::where(lb, -weighted(qb, lpb).sum(-1), zero).sum();
  // log p − log q from the log-probabilities, each exact to a unit of its
  // own size (log_softmax shifts by the row's max first; a difference of
  // log-sum-exps would carry a unit of the largest logit's: 1e-3 at 1e4 in
  // float). A class ruled out in both copies gives NaN here, dropped by
  // `weighted` as p = 0.
  at::Tensor d, da, db;
  const at::Tensor log_ratio = lpa - lpb;
  const at::Tensor kl_ab_terms = weighted(pa, log_ratio), kl_ba_terms = weighted(pb, -log_ratio);
  // -p·expm1(-(log p − log q)) where the copies are close (no cancellation),
  // p − q where they are not (expm1 would overflow for a large log-ratio).
  const at::Tensor p_minus_q = at::where(log_ratio.abs() < 0.5, -pa * at::expm1(-log_ratio), pa - pb);
  switch (o.divergence()) {
    case Divergence::SymmetricKL: {
      const at::Tensor kl_ab = kl_ab_terms.sum(-1, true), kl_ba = kl_ba_terms.sum(-1, true);
      d = 0.5 * (kl_ab + kl_ba).squeeze(-1);
      da = 0.5 * (kl_ab_terms - weighted(pa, kl_ab.expand_as(pa)) + p_minus_q);
      db = 0.5 * (kl_ba_terms - weighted(pb, kl_ba.expand_as(pb)) - p_minus_q);
      break;
    }
    case Divergence::KL: {
      const at::Tensor kl_ab = kl_ab_terms.sum(-1, true);
      d = kl_ab.squeeze(-1);
      da = kl_ab_terms - weighted(pa, kl_ab.expand_as(pa));
      db = -p_minus_q;
      break;
    }
    case Divergence::JensenShannon: {
      // log ½(p + q) in log space: ½(p + q) underflows to 0 where p is the
      // least denormal and q is 0, and p · (log p − log 0) would be inf.
      const at::Tensor lm = at::logaddexp(lpa, lpb) - std::log(2.0);
      const at::Tensor ta = weighted(pa, lpa - lm), tb = weighted(pb, lpb - lm);
      const at::Tensor kla = ta.sum(-1, true), klb = tb.sum(-1, true);
      d = 0.5 * (kla + klb).squeeze(-1);
      da = 0.5 * (ta - weighted(pa, kla.expand_as(pa)));
      db = 0.5 * (tb - weighted(pb, klb.expand_as(pb)));
      break;
    }
  }
  r.divergence_sum = at::where(kp, d, zero).sum();
  if (with_grad) {
    const at::Tensor la1 = la.unsqueeze(-1), lb1 = lb.unsqueeze(-1), kp1 = kp.unsqueeze(-1);
    // A kept row without a label gets 0 · p, as the fused kernels and
    // torch's cross_entropy give it: NaN where its softmax is NaN.
    r.grad_a = at::where(la1, wt * (pa - qa), at::where(ka.unsqueeze(-1), pa * 0, zero));
    r.grad_b = at::where(lb1, wt * (pb - qb), at::where(kb.unsqueeze(-1), pb * 0, zero));
    if (wd != 0) {  // no divergence term: 0 · (its gradient) may be 0 · inf
      r.grad_a += at::where(kp1, wd * da, zero);
      r.grad_b += at::where(kp1, wd * db, zero);
    }
    if (grad_a.defined()) r.grad_a = grad_a.copy_(r.grad_a);
    if (grad_b.defined()) r.grad_b = grad_b.copy_(r.grad_b);
  }
  return r;
}


/// The task and divergence sums of pairs of logit rows a, b [..., C] (as
/// tensors on their device), and with weights (wt, wd, times scale) their
/// gradients: CE with smoothing on the labeled rows (la, lb), the divergence
/// on the kept pairs (kp; ka, kb: the kept rows). Where grad_a / grad_b
/// are given (a's and b's shape, the compute dtype; they may be a and b
/// themselves: only the log-probabilities are read after the first two
/// operations), the gradients are written into them and no more than three
/// logit-sized temporaries are made at once.
template <typename Options>
PairTerms pair_terms(const at::Tensor& a, const at::Tensor& bb, const at::Tensor& ya, const at::Tensor& yb,
                     const at::Tensor& ka, const at::Tensor& kb, const at::Tensor& la, const at::Tensor& lb,
                     const at::Tensor& kp, const Options& o, bool with_grad, double wt, double wd,
                     const at::Tensor& grad_a = {}, const at::Tensor& grad_b = {}) {
  at::Tensor lpa = at::log_softmax(a, -1), lpb = at::log_softmax(bb, -1);
  // A row's Σ log p is finite exactly when all its log p are (each ≤ 0):
  // the smoothing term needs the sums, and they decide the path.
  const at::Tensor sum_a = lpa.sum(-1), sum_b = lpb.sum(-1);
  if (o.divergence() != Divergence::JensenShannon &&
      (at::isfinite(sum_a).all() & at::isfinite(sum_b).all()).item<bool>()) {
    return finite_pair_terms(std::move(lpa), std::move(lpb), sum_a, sum_b, ya, yb, la, lb, kp, o, with_grad, wt, wd,
                             grad_a, grad_b);
  }
  if (!grad_a.defined()) {
    return guarded_pair_terms(lpa, lpb, ya, yb, ka, kb, la, lb, kp, o, with_grad, wt, wd, {}, {});
  }
  // A sixteenth of the rows at a time keeps the guarded path's temporaries
  // near one logit-sized tensor.
  const int64_t n = a.size(0), rows = std::max<int64_t>(1, (n + 15) / 16);
  PairTerms r;
  for (int64_t first = 0; first < n; first += rows) {
    const int64_t k = std::min(rows, n - first);
    const auto part = [&](const at::Tensor& x) { return x.narrow(0, first, k); };
    const PairTerms p = guarded_pair_terms(part(lpa), part(lpb), part(ya), part(yb), part(ka), part(kb), part(la),
                                           part(lb), part(kp), o, with_grad, wt, wd, part(grad_a), part(grad_b));
    r.task_sum = first == 0 ? p.task_sum : r.task_sum + p.task_sum;
    r.divergence_sum = first == 0 ? p.divergence_sum : r.divergence_sum + p.divergence_sum;
  }
  if (n == 0) r = guarded_pair_terms(lpa, lpb, ya, yb, ka, kb, la, lb, kp, o, with_grad, wt, wd, grad_a, grad_b);
  r.grad_a = grad_a;
  r.grad_b = grad_b;
  return r;
}

/// Each copy's labels [B, T], kept rows (the mask's, less padding), labeled
/// rows and kept pairs, on `device`.
struct Masks {
  at::Tensor ya, yb, ka, kb, la, lb, kp;
};
template <typename Options>
Masks masks(const at::Tensor& labels, const at::Tensor& mask, int64_t b, int64_t t, const at::Device& device,
            const Options& o) {
  const int64_t per_t = t > 0 ? -1 : b;  // T = 0: every tensor is empty, [B, 0]
  const at::Tensor y = labels.to(device).to(at::kLong).reshape({per_t, t});
  Masks m;
  std::tie(m.ya, m.yb) = per_copy(y, b, o.layout());
  m.ka = at::ones({b, t}, y.options().dtype(at::kBool));
  m.kb = m.ka;
  if (mask.defined()) std::tie(m.ka, m.kb) = per_copy(mask.to(device).reshape({per_t, t}), b, o.layout());
  if (o.padding_index() != rdrop::no_padding) {
    m.ka = m.ka & (m.ya != o.padding_index());
    m.kb = m.kb & (m.yb != o.padding_index());
  }
  m.la = m.ka & (m.ya != o.ignore_index());
  m.lb = m.kb & (m.yb != o.ignore_index());
  m.kp = m.ka & m.kb;
  return m;
}

/// The R-Drop loss of `logits` with analytic gradients in ATen operations, on
/// the logits' device: value, and scale · ∂loss/∂logits in `*grad` (the
/// logits' shape and dtype) when grad is not null. Float and double logits
/// compute in their dtype, 2-byte ones in float (rounded once).
template <typename Options>
double rdrop(const at::Tensor& logits, const at::Tensor& labels, const at::Tensor& mask, const Options& o,
             const RDropCounts& counts, at::Tensor* grad, double scale) {
  const at::NoGradGuard analytic;  // the gradients are written out: nothing for autograd to record
  const bool two_byte = logits.scalar_type() == at::kBFloat16 || logits.scalar_type() == at::kHalf;
  // Contiguous first: reductions over a strided view may add in another
  // order, and every layout of the same values must give the same bits.
  const at::Tensor x = logits.to(two_byte ? at::kFloat : logits.scalar_type()).contiguous();
  const int64_t rows = x.size(0), b = rows / 2, c = x.size(-1), t = x.dim() == 3 ? x.size(1) : 1;
  const auto [a, bb] = copies(x.reshape({rows, t, c}), o.layout());
  const Masks m = masks(labels, mask, b, t, x.device(), o);
  const auto w = scales_of(o, counts);
  const PairTerms r =
      pair_terms(a, bb, m.ya, m.yb, m.ka, m.kb, m.la, m.lb, m.kp, o, grad != nullptr, w.task, w.divergence);
  const double value = total(r.task_sum, r.divergence_sum, w, o);
  if (grad != nullptr) {
    const at::Tensor g =
        o.layout() == Layout::Stacked ? at::cat({r.grad_a, r.grad_b}, 0) : at::stack({r.grad_a, r.grad_b}, 1).reshape({rows, t, c});
    // The scale last, on the float gradient, as autograd scales a float one.
    *grad = (g * scale).reshape(logits.sizes()).to(logits.scalar_type());
  }
  return value;
}

/// The multi-label (binary cross-entropy + Bernoulli symmetric KL) or the
/// regression (squared error + squared distance) R-Drop loss in ATen
/// operations, as rdrop() for rdrop_loss.
template <typename Options>
double row_target(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& mask, const Options& o,
                  const RDropCounts& counts, bool multi_label, at::Tensor* grad, double scale) {
  const at::NoGradGuard analytic;  // the gradients are written out: nothing for autograd to record
  const bool two_byte = logits.scalar_type() == at::kBFloat16 || logits.scalar_type() == at::kHalf;
  const at::Tensor x = logits.to(two_byte ? at::kFloat : logits.scalar_type()).contiguous();
  const int64_t rows = x.size(0), b = rows / 2, k = x.size(-1), t = x.dim() == 3 ? x.size(1) : 1;
  const auto [u, v] = copies(x.reshape({rows, t, k}), o.layout());
  const int64_t per_t = t > 0 ? -1 : b;  // T = 0: every tensor is empty
  const auto [tu, tv] = per_copy(targets.to(x.scalar_type()).reshape({per_t, t, k}), b, o.layout());
  at::Tensor ku = at::ones({b, t}, x.options().dtype(at::kBool)), kv = ku;
  if (mask.defined()) std::tie(ku, kv) = per_copy(mask.to(x.device()).reshape({per_t, t}), b, o.layout());
  const at::Tensor kp = ku & kv, zero = at::zeros({}, x.options());
  at::Tensor task_u, task_v, grad_task_u, grad_task_v, d, du, dv;
  if (multi_label) {
    const at::Tensor su = at::sigmoid(u), sv = at::sigmoid(v);
    const auto bce = [](const at::Tensor& z, const at::Tensor& target) {
      return (at::clamp_min(z, 0) + at::log1p(at::exp(-z.abs())) - target * z).sum(-1);
    };
    task_u = bce(u, tu);
    task_v = bce(v, tv);
    grad_task_u = su - tu;
    grad_task_v = sv - tv;
    const at::Tensor diff = u - v, sdiff = su - sv;
    d = 0.5 * (sdiff * diff).sum(-1);
    du = 0.5 * (su * (1 - su) * diff + sdiff);
    dv = 0.5 * (-sv * (1 - sv) * diff - sdiff);
  } else {
    task_u = (u - tu).pow(2).sum(-1);
    task_v = (v - tv).pow(2).sum(-1);
    grad_task_u = 2 * (u - tu);
    grad_task_v = 2 * (v - tv);
    d = (u - v).pow(2).sum(-1);
    du = 2 * (u - v);
    dv = -du;
  }
  const at::Tensor task_sum = at::where(ku, task_u, zero).sum() + at::where(kv, task_v, zero).sum();
  const at::Tensor divergence_sum = at::where(kp, d, zero).sum();
  const auto w = scales_of(o, counts);
  const double wt = w.task, wd = w.divergence;
  if (grad != nullptr) {
    const at::Tensor ku3 = ku.unsqueeze(-1), kv3 = kv.unsqueeze(-1), kp3 = kp.unsqueeze(-1);
    at::Tensor gu = at::where(ku3, wt * grad_task_u, zero), gv = at::where(kv3, wt * grad_task_v, zero);
    if (wd != 0) {  // no divergence term: 0 · (its gradient) may be 0 · inf
      gu += at::where(kp3, wd * du, zero);
      gv += at::where(kp3, wd * dv, zero);
    }
    gu = gu * scale;
    gv = gv * scale;
    const at::Tensor g = o.layout() == Layout::Stacked ? at::cat({gu, gv}, 0) : at::stack({gu, gv}, 1).reshape({rows, t, k});
    *grad = g.reshape(logits.sizes()).to(logits.scalar_type());
  }
  return total(task_sum, divergence_sum, w, o);
}

/// How linear() turns a chunk's logits into its terms and their gradient.
enum class Sweep {
  ATen,  ///< pair_terms: ATen operations, any device
  Fused  ///< the fused kernels (fused_chunk): CPU, logits in any dtype they read
};

/// The linear loss of hidden [2B, D] or [2B, T, D], weight [V, D] and bias
/// [V] (or undefined), normalized by `counts` (the whole batch's), a chunk
/// of pairs at a time: each chunk's logits made by one ATen product,
/// turned into their gradient by `sweep` and projected back by two more
/// before the next chunk, so that no logits of the whole batch are held.
/// Products run in the inputs' dtype (2-byte: float accumulation, as torch
/// multiplies; half on the CPU, where torch has no half product: in
/// float), the loss and the logits' gradient computed in float (2-byte) or
/// the inputs' dtype (the fused sweep holds 2-byte logits and writes their
/// gradient over them in the product's dtype, rounded once, as the products
/// take it); ∂W and ∂b add up over the chunks in that compute dtype.
/// scale · the gradients are written into grad_* when they are defined.
template <typename Options>
double linear(const at::Tensor& h, const at::Tensor& w, const at::Tensor& bias, const at::Tensor& labels,
              const at::Tensor& mask, const Options& o, const RDropCounts& counts, Sweep sweep,
              const at::Tensor& grad_hidden, const at::Tensor& grad_weight, const at::Tensor& grad_bias, double scale,
              const char* where) {
  const at::NoGradGuard analytic;  // the gradients are written out: nothing for autograd to record
  // The products in the inputs' dtype as documented, also under autocast
  // (which would multiply float inputs in a 2-byte type).
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const at::ScalarType compute = is_two_byte(h) ? at::kFloat : h.scalar_type();
  const at::ScalarType product = h.scalar_type() == at::kHalf && h.device().is_cpu() ? at::kFloat : h.scalar_type();
  // The fused kernels read 2-byte logits and write their gradient over them
  // themselves, so the fused sweep's logits stay in the product's dtype: no
  // float copy of a 2-byte chunk to make, hold and round back (a third of
  // a bf16 step at 128256 classes).
  const at::ScalarType logits_type = sweep == Sweep::Fused ? product : compute;
  const int64_t rows = h.size(0), b = rows / 2, d = h.size(-1), t = h.dim() == 3 ? h.size(1) : 1, v = w.size(0);
  const int64_t pairs = b * t;
  const auto [ha3, hb3] = copies(h.reshape({rows, t, d}), o.layout());
  const at::Tensor ha = ha3.reshape({pairs, d}), hb = hb3.reshape({pairs, d});
  const Masks m = masks(labels, mask, b, t, h.device(), o);
  const at::Tensor ya = m.ya.reshape({-1}), yb = m.yb.reshape({-1}), ka = m.ka.reshape({-1}), kb = m.kb.reshape({-1}),
                   la = m.la.reshape({-1}), lb = m.lb.reshape({-1}), kp = m.kp.reshape({-1});
  // A row with no term (masked or padding, or unlabeled in a pair without
  // a divergence) has a zero gradient; its hidden state is left out of the
  // products, as the Eigen products leave it out: 0 · NaN in ∂W would be
  // NaN where leaving the sample out gives a number.
  const at::Tensor dead_a = at::logical_not(kp | la), dead_b = at::logical_not(kp | lb);
  const bool any_dead = pairs > 0 && (dead_a.any() | dead_b.any()).item<bool>();
  const auto scales = scales_of(o, counts);
  const bool with_grad = grad_hidden.defined();
  // A pair's share of the chunk: its two rows of logits (both sweeps write
  // their gradient over them; the ATen sweep makes up to two more of that
  // size, pair_terms) and, where the product's dtype differs, the
  // product's logits and gradient in it.
  const auto size_of = [](at::ScalarType type) { return static_cast<std::size_t>(c10::elementSize(type)); };
  const std::size_t per_pair = 2 * static_cast<std::size_t>(v) *
                               ((sweep == Sweep::Fused ? 1 : 3) * size_of(logits_type) +
                                (product == logits_type ? 0 : 2 * size_of(product)));
  // A 2-byte ∂W product ([V, D], added to the float sum) is made once a
  // chunk whatever its rows: it comes out of the budget first, so that a
  // bfloat16 step's peak stays within the chunk's bytes as a float one's.
  const std::size_t per_chunk = product == compute || !with_grad ? 0 : static_cast<std::size_t>(v * d) * size_of(product);
  const std::size_t budget = o.chunk_bytes() > per_chunk ? o.chunk_bytes() - per_chunk : 0;
  const int64_t chunk = static_cast<int64_t>(
      std::clamp<std::size_t>(budget / std::max<std::size_t>(per_pair, 1), 1, std::max<std::size_t>(o.chunk_pairs(), 1)));
  const at::Tensor wp = w.to(product), bp = bias.defined() ? bias.to(product) : bias;
  const at::Tensor wpt = wp.t();
  // The chunks' sums added up in double on the host (one read a chunk): a
  // float sum over thousands of chunks drifts by more than 1e-5.
  double task = 0, divergence = 0;
  double fused_value = 0;
  // Every chunk's product goes to one buffer (and a 2-byte ∂W product to
  // another): a fresh one a chunk is mapped and faulted in anew (glibc maps
  // what exceeds 32 MiB), half a second of a 6 s float step at
  // 5120 × 256 × 32000.
  const at::Tensor products = at::empty({2 * std::min(chunk, pairs), v}, w.options().dtype(product));
  at::Tensor gha, ghb, gw, gb, weight_product;
  if (with_grad) {
    if (product != compute) weight_product = at::empty({v, d}, w.options().dtype(product));
    gha = at::empty({pairs, d}, h.options());
    ghb = at::empty({pairs, d}, h.options());
    gw = at::zeros({v, d}, w.options().dtype(compute));
    if (bias.defined()) gb = at::zeros({v}, w.options().dtype(compute));
  }
  for (int64_t first = 0; first < pairs; first += chunk) {
    const int64_t n = std::min(chunk, pairs - first);
    // The chunk's first copies, then its second: [2n, D] and logits [2n, V].
    const at::Tensor hc = at::cat({ha.narrow(0, first, n), hb.narrow(0, first, n)}).to(product);  // a copy of its own
    if (any_dead) hc.masked_fill_(at::cat({dead_a.narrow(0, first, n), dead_b.narrow(0, first, n)}).unsqueeze(1), 0);
    at::Tensor zp = products.narrow(0, 0, 2 * n);
    if (bp.defined()) {
      at::addmm_out(zp, bp, hc, wpt);
    } else {
      at::mm_out(zp, hc, wpt);
    }
    const at::Tensor zc = zp.to(logits_type);
    at::Tensor gz;
    if (sweep == Sweep::Fused) {
      const at::Tensor y = at::cat({ya.narrow(0, first, n), yb.narrow(0, first, n)});
      const at::Tensor keep = at::cat({ka.narrow(0, first, n), kb.narrow(0, first, n)});
      fused_value += fused_chunk(zc, y, keep, o, counts, with_grad, scale, where);
      gz = zc;  // its gradient, written over it
    } else {
      // The gradient written over the logits, as the fused sweep writes it:
      // pair_terms reads them only before it writes its gradients.
      if (with_grad) gz = zc;
      const auto part = [&](const at::Tensor& x) { return x.narrow(0, first, n); };
      const PairTerms r = pair_terms(zc.narrow(0, 0, n), zc.narrow(0, n, n), part(ya), part(yb), part(ka), part(kb),
                                     part(la), part(lb), part(kp), o, with_grad, scale * scales.task,
                                     scale * scales.divergence, with_grad ? gz.narrow(0, 0, n) : at::Tensor(),
                                     with_grad ? gz.narrow(0, n, n) : at::Tensor());
      const at::Tensor sums = at::stack({r.task_sum, r.divergence_sum}).to(at::kCPU).to(at::kDouble);
      task += sums[0].item<double>();
      divergence += sums[1].item<double>();
    }
    if (with_grad) {
      const at::Tensor g = gz.to(product);
      const at::Tensor ghc = at::mm(g, wp);
      gha.narrow(0, first, n).copy_(ghc.narrow(0, 0, n));
      ghb.narrow(0, first, n).copy_(ghc.narrow(0, n, n));
      if (product == compute) {
        gw.addmm_(g.t(), hc);
      } else {  // a 2-byte product, added up in float
        gw.add_(at::mm_out(weight_product, g.t(), hc));
      }
      if (bias.defined()) gb.add_(gz.sum(0, false, compute));
    }
  }
  if (with_grad) {
    const at::Tensor ga3 = gha.reshape({b, t, d}), gb3 = ghb.reshape({b, t, d});
    const at::Tensor g = o.layout() == Layout::Stacked ? at::cat({ga3, gb3}, 0) : at::stack({ga3, gb3}, 1).reshape({rows, t, d});
    grad_hidden.copy_(g.reshape(grad_hidden.sizes()));
    grad_weight.copy_(gw);
    if (bias.defined()) grad_bias.copy_(gb);
  }
  if (sweep == Sweep::Fused) return fused_value;
  return combine(task, divergence, scales, o);
}

}  // namespace aten

/// What Path::Auto means on CPU tensors (set_default_path).
inline std::atomic<Path>& default_cpu_path() {
  static std::atomic<Path> path{Path::Fused};
  return path;
}

/// Whether `o` sends `logits` to the ATen path.
template <typename Options>
bool uses_aten(const Options& o, const at::Tensor& logits, const char* where, const char* name) {
  const bool cpu = logits.device().is_cpu();
  TORCH_CHECK(cpu || o.path() != Path::Fused, where, ": options.path() is Path::Fused, which runs on CPU tensors, and '",
              name, "' is on ", logits.device(), "; use Path::Auto or Path::ATen there");
  if (o.path() != Path::Auto) return o.path() == Path::ATen;
  return !cpu || default_cpu_path().load() == Path::ATen;
}

/// Calls f with `t` as rdrop reads it: a [.., T, C] tensor map for rank 3,
/// else a row-major matrix map, over `data` (null: the shape alone, for
/// Count).
template <typename S, typename F>
decltype(auto) as_eigen(const at::Tensor& t, const S* data, F&& f) {
  if (t.dim() == 3) return f(ConstTensor<S, 3>(data, t.size(0), t.size(1), t.size(2)));
  return f(Eigen::Map<const RowMajor<S>>(data, t.size(0), t.size(-1)));
}

/// loss.Count(args..., mask) with a mask, loss.Count(args...) without.
template <typename Loss, typename... Args>
RDropCounts count_rows(const Loss& loss, const at::Tensor& mask, const Args&... args) {
  return mask.defined() ? loss.Count(args..., mask_view(mask)) : loss.Count(args...);
}

/// The fused path's argument checks, with its messages, for the ATen path:
/// the dtypes, then rdrop::RDropLoss::Count on the logits' shape (no data)
/// and the labels and mask (brought to the CPU: one per row at most), which
/// checks the options, the row count, the shapes and every label. Returns
/// the counts the normalization divides by.
inline RDropCounts check_like_fused(const at::Tensor& logits, const at::Tensor& labels, const at::Tensor& mask,
                                    const RDropLossOptions& o, const char* where) {
  const at::Tensor cpu_labels = labels.to(at::kCPU), cpu_mask = mask.defined() ? mask.to(at::kCPU) : mask;
  return dispatch<true>(logits, where, "logits", [&](auto tag) {
    using S = rdrop::detail::compute_t<typename std::decay_t<decltype(tag)>::type>;
    const rdrop::RDropLoss<S> loss(options_in<S>(o));
    return with_labels(cpu_labels, where, [&](const auto& y) {
      return as_eigen<S>(logits, nullptr, [&](const auto& shape) { return count_rows(loss, cpu_mask, shape, y); });
    });
  });
}

/// The R-Drop loss (RDropLoss) of logits with integer labels.
struct RDropSpec {
  using Options = RDropLossOptions;
  static constexpr const char* targets_name = "labels";
  static constexpr bool targets_per_class = false;

  /// The loss of `logits`, and scale · its gradient written into `grad` (a
  /// contiguous tensor of the logits' shape, possibly the logits
  /// themselves) when grad is defined.
  static double run(const at::Tensor& logits, const at::Tensor& labels, const at::Tensor& mask, const Options& o,
                    const at::Tensor& grad, double scale, const char* where) {
    if (uses_aten(o, logits, where, "logits")) {
      const RDropCounts counts = check_like_fused(logits, labels, mask, o, where);
      at::Tensor g;
      const double value = aten::rdrop(logits, labels, mask, o, counts, grad.defined() ? &g : nullptr, scale);
      if (grad.defined()) grad.copy_(g);
      return value;
    }
    return dispatch<true>(logits, where, "logits", [&](auto tag) {
      using E = typename std::decay_t<decltype(tag)>::type;
      using S = rdrop::detail::compute_t<E>;
      const RDropOptions<S> options = options_in<S>(o);
      const auto s = static_cast<S>(scale);
      return with_labels(labels, where, [&](const auto& y) {
        return with_views<E>(logits, grad, [&](const auto& x, auto* g) {
          switch (o.divergence()) {
            case Divergence::SymmetricKL:
              return evaluate(rdrop::RDropLoss<S>(options).WithGradientScale(s), x, y, mask, g);
            case Divergence::KL:
              return evaluate(rdrop::RDropLoss<S, KLDivergence<S>>(options).WithGradientScale(s), x, y, mask, g);
            case Divergence::JensenShannon:
              return evaluate(rdrop::RDropLoss<S, JensenShannon<S>>(options).WithGradientScale(s), x, y, mask, g);
          }
          unknown_divergence(o.divergence(), where);
        });
      });
    });
  }
};

/// A task loss with row targets (multi-label, regression): Loss<S> is
/// RDropMultiLabelLoss or RDropRegressionLoss, Options the torch options.
template <template <typename, typename...> class Loss, template <typename> class EigenOptions, typename TorchOptions>
struct RowTargetSpec {
  using Options = TorchOptions;
  static constexpr const char* targets_name = "targets";
  static constexpr bool targets_per_class = true;

  /// The Eigen API's options of `o`.
  template <typename S>
  static EigenOptions<S> eigen_options(const Options& o) {
    EigenOptions<S> options;
    options.alpha = static_cast<S>(o.alpha());
    options.layout = o.layout();
    options.normalization = o.normalization();
    options.threads = o.threads();
    return options;
  }

  static double run(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& mask, const Options& o,
                    const at::Tensor& grad, double scale, const char* where) {
    if (uses_aten(o, logits, where, "logits")) {
      // The fused path's checks and messages (targets brought to the CPU for them).
      const at::Tensor cpu_targets = targets.to(at::kCPU), cpu_mask = mask.defined() ? mask.to(at::kCPU) : mask;
      const RDropCounts counts = dispatch<true>(logits, where, "logits", [&](auto tag) {
        using S = rdrop::detail::compute_t<typename std::decay_t<decltype(tag)>::type>;
        const Loss<S> loss(eigen_options<S>(o));
        const at::Tensor tc = cpu_targets.to(std::is_same_v<S, float> ? at::kFloat : at::kDouble).contiguous();
        return as_eigen<S>(logits, nullptr, [&](const auto& shape) {
          if constexpr (rdrop::detail::is_tensor_v<std::decay_t<decltype(shape)>>) {
            return count_rows(loss, cpu_mask, shape, ConstTensor<S, 3>(data_of<S>(tc), tc.size(0), tc.size(1), tc.size(2)));
          } else {
            return count_rows(loss, cpu_mask, shape, Eigen::Map<const RowMajor<S>>(data_of<S>(tc), tc.size(0), tc.size(1)));
          }
        });
      });
      at::Tensor g;
      const double value =
          aten::row_target(logits, targets, mask, o, counts, std::is_same_v<EigenOptions<double>, MultiLabelOptions<double>>,
                           grad.defined() ? &g : nullptr, scale);
      if (grad.defined()) grad.copy_(g);
      return value;
    }
    return dispatch<true>(logits, where, "logits", [&](auto tag) {
      using E = typename std::decay_t<decltype(tag)>::type;
      using S = rdrop::detail::compute_t<E>;
      const auto loss = Loss<S>(eigen_options<S>(o)).WithGradientScale(static_cast<S>(scale));
      // Targets in the loss's compute type (float for 2-byte logits).
      const at::Tensor t = targets.to(std::is_same_v<S, float> ? at::kFloat : at::kDouble).contiguous();
      return with_views<E>(logits, grad, [&](const auto& x, auto* g) {
        using X = std::decay_t<decltype(x)>;
        if constexpr (rdrop::detail::is_tensor_v<X>) {
          const ConstTensor<S, 3> y(data_of<S>(t), t.size(0), t.size(1), t.size(2));
          return evaluate(loss, x, y, mask, g);
        } else {
          const Eigen::Map<const RowMajor<S>> y(data_of<S>(t), t.size(0), t.size(1));
          return evaluate(loss, x, y, mask, g);
        }
      });
    });
  }
};

/// How a backward gets its gradient.
enum class Saved : std::int64_t {
  Gradient,   ///< computed in the forward pass, saved, scaled by grad_output
  Recompute,  ///< 2-byte logits: computed in the backward at grad_output's scale, rounded once
  InPlace     ///< computed in the forward pass over the logits, at loss_scale
};

/// A Spec's loss as an autograd function: forward(logits, targets, mask,
/// options, in_place, where). The caller (call) has checked the arguments
/// and decided that a backward is wanted.
template <typename Spec>
struct LossFunction : ::torch::autograd::Function<LossFunction<Spec>> {
  static constexpr std::size_t forward_arguments = 6;

  static at::Tensor forward(::torch::autograd::AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& targets,
                            const OptionalTensor& optional_mask, const typename Spec::Options& o, bool in_place,
                            const char* where) {
    const at::Tensor mask = value_of(optional_mask);
    Saved saved = Saved::Gradient;
    double value = 0;
    if (in_place) {
      saved = Saved::InPlace;
      value = Spec::run(logits, targets, mask, o, logits, o.loss_scale(), where);
      ::torch::autograd::impl::bump_version(logits);  // its values are now the gradient
      ctx->save_for_backward({logits});
    } else if (is_two_byte(logits)) {
      // Rounding the gradient here and scaling it in the backward would
      // round it twice; the backward computes it at its final size instead.
      saved = Saved::Recompute;
      value = Spec::run(logits, targets, mask, o, at::Tensor(), 1.0, where);
      ctx->save_for_backward({logits, targets, mask});
      ctx->saved_data["options"] = hold(o);
    } else {
      const at::Tensor grad = gradient_like(logits);
      value = Spec::run(logits, targets, mask, o, grad, 1.0, where);
      ctx->save_for_backward({grad});
    }
    ctx->saved_data["saved"] = static_cast<std::int64_t>(saved);
    ctx->saved_data["loss_scale"] = o.loss_scale();
    ctx->saved_data["where"] = std::string(where);
    ctx->saved_data["inputs"] = hold(edges_of({logits}));
    return loss_tensor(value, logits);
  }

  static ::torch::autograd::variable_list backward(::torch::autograd::AutogradContext* ctx,
                                                   ::torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const std::string where = ctx->saved_data["where"].toStringRef();
    const at::Tensor& grad_output = grad_outputs[0];
    at::Tensor grad;
    switch (static_cast<Saved>(ctx->saved_data["saved"].toInt())) {
      case Saved::Gradient:
        grad = scaled(saved[0], grad_output);
        break;
      case Saved::Recompute: {
        const at::Tensor& logits = saved[0];
        const auto& o = held<typename Spec::Options>(ctx->saved_data["options"]);
        const double scale = grad_output.item<double>();
        if (std::isfinite(scale)) {
          grad = gradient_like(logits);
          Spec::run(logits, saved[1], saved[2], o, grad, scale, where.c_str());
        } else {
          // Folded into the weights, inf would meet terms that cancel
          // (inf - inf = NaN): the float gradient times the scale instead,
          // as multiplying gives it (a loss scaler's overflow step).
          const at::Tensor wide = logits.to(at::kFloat);
          at::Tensor float_grad = gradient_like(wide);
          Spec::run(wide, saved[1], saved[2], o, float_grad, 1.0, where.c_str());
          grad = float_grad.mul_(scale).to(logits.scalar_type());
        }
        break;
      }
      case Saved::InPlace: {
        // loss_scale as grad_output holds it (float for 2-byte logits' losses).
        const double scale = grad_output.item<double>();
        const double written = at::scalar_tensor(ctx->saved_data["loss_scale"].toDouble(), grad_output.options()).item<double>();
        const at::Tensor in_logits = saved[0].detach();  // the logits' graph is not the gradient's
        if (scale == written) {
          grad = in_logits;
        } else {
          TORCH_CHECK(!is_two_byte(in_logits), where, ": the ", in_logits.scalar_type(),
                      " logits hold their gradient rounded at loss_scale ", written, ", and backward received "
                      "grad_output ", scale, ": scaling it now would round it twice. Set options.loss_scale(s) to the "
                      "factor the loss is multiplied by, or use the out-of-place function");
          grad = in_logits * (scale / written);
        }
        break;
      }
    }
    ::torch::autograd::variable_list out{std::move(grad)};
    out.resize(forward_arguments);
    return once_differentiable(std::move(out), held<::torch::autograd::edge_list>(ctx->saved_data["inputs"]), where);
  }
};

/// Checks a Spec's arguments, then computes its value only (no backward
/// wanted) or goes through LossFunction.
template <typename Spec>
at::Tensor call(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& mask,
                const typename Spec::Options& o, bool in_place, const char* where) {
  check_strided(logits, where, "logits");
  check_strided(targets, where, Spec::targets_name);
  if (mask.defined()) check_strided(mask, where, "mask");
  check_one_device(where, {{"logits", logits}, {Spec::targets_name, targets}, {"mask", mask}});
  check_rank(logits, where, "logits", "[2B, C] or [2B, T, C]");
  check_per_sample_or_row(targets, logits, Spec::targets_per_class, where, Spec::targets_name, "logits");
  if (mask.defined()) check_per_sample_or_row(mask, logits, false, where, "mask", "logits");
  if constexpr (std::is_same_v<Spec, RDropSpec>) check_divergence(o.divergence(), where);
  const at::Tensor m = mask_of(mask);
  if (!wants_grad({logits})) {
    TORCH_CHECK(!wants_grad({targets}), where, ": argument '", Spec::targets_name,
                "' requires grad; rdrop differentiates the logits only: pass ", Spec::targets_name, ".detach()");
    return loss_tensor(Spec::run(logits, targets, m, o, at::Tensor(), 1.0, where), logits);
  }
  TORCH_CHECK(!targets.requires_grad(), where, ": argument '", Spec::targets_name,
              "' requires grad; rdrop differentiates the logits only: pass ", Spec::targets_name, ".detach()");
  if (in_place) {
    check_in_place(logits, where);
    check_loss_scale(o.loss_scale(), where);
  }
  return LossFunction<Spec>::apply(logits, targets, OptionalTensor(m), o, in_place, where);
}

using MultiLabelSpec = RowTargetSpec<RDropMultiLabelLoss, MultiLabelOptions, MultiLabelLossOptions>;
using RegressionSpec = RowTargetSpec<RDropRegressionLoss, RegressionOptions, RegressionLossOptions>;

/// The chunk buffers of linear_loss, one per thread and scalar type, kept
/// between calls (a loss object is built per call; its buffers are these).
template <typename S>
std::shared_ptr<rdrop::detail::LinearWorkspace<S>>& linear_buffers() {
  thread_local std::shared_ptr<rdrop::detail::LinearWorkspace<S>> buffers =
      std::make_shared<rdrop::detail::LinearWorkspace<S>>();
  return buffers;
}

/// The gradients of linear_loss (all defined, or none: value only).
struct LinearGradients {
  at::Tensor hidden, weight, bias;
};

/// Whether ATen's matrix product (torch's BLAS) is faster than Eigen's for
/// S (float or double) here: measured once per process, on the first call
/// that asks, as the faster of three tries of a 128 × 256 by 256 × 1024
/// product each way (about a millisecond; 0.2 s where torch multiplies on
/// the reference BLAS). Constant inputs: the user's random state is left
/// alone.
template <typename S>
bool aten_products_faster() {
  static const bool faster = [] {
    const auto type = std::is_same_v<S, float> ? at::kFloat : at::kDouble;
    const at::Tensor a = at::full({128, 256}, 0.5, at::TensorOptions().dtype(type));
    const at::Tensor b = at::full({1024, 256}, 0.25, at::TensorOptions().dtype(type));
    at::Tensor out = at::empty({128, 1024}, at::TensorOptions().dtype(type));
    const Eigen::Map<const RowMajor<S>> ea(data_of<S>(a), 128, 256), eb(data_of<S>(b), 1024, 256);
    Rows<S> eo(mutable_data_of<S>(out), 128, 1024);
    const auto fastest = [](auto&& f) {
      f();  // warm up: first-call allocations and thread start
      double best = 1e30;
      for (int i = 0; i < 3; ++i) {
        const auto start = std::chrono::steady_clock::now();
        f();
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      }
      return best;
    };
    const double aten = fastest([&] { at::mm_out(out, a, b.t()); });
    const double eigen = fastest([&] { eo.noalias() = ea * eb.transpose(); });
    // Only torch on the reference BLAS (a thirtieth of Eigen's speed here)
    // loses to Eigen by more than two: a closer call is the probe's noise
    // and its thread counts (Eigen may run on OpenMP's threads, torch's
    // BLAS on one), and on the chunk's shapes an optimized BLAS wins.
    return aten < 2 * eigen;
  }();
  return faster;
}

/// Whether linear_loss's CPU fused path multiplies through ATen (see Products).
inline bool aten_products(const LinearLossTorchOptions& o, const at::Tensor& h, const char* where) {
  if (is_two_byte(h)) {
    TORCH_CHECK(o.products() != Products::Eigen, where, ": options.products() is Products::Eigen, which multiplies "
                "float and double; 'hidden' is ", h.scalar_type(), ": use Products::Auto or Products::ATen");
    return true;
  }
  if (o.products() != Products::Auto) return o.products() == Products::ATen;
  return h.scalar_type() == at::kFloat ? aten_products_faster<float>() : aten_products_faster<double>();
}

/// The fused path's checks and messages for linear_loss's ATen products, on
/// the shapes, labels and mask alone; returns the batch's counts.
inline RDropCounts check_linear_like_fused(const at::Tensor& h, const at::Tensor& w, const at::Tensor& labels,
                                           const at::Tensor& m, const LinearLossTorchOptions& o, const char* where) {
  const at::Tensor cpu_labels = labels.to(at::kCPU), cpu_mask = m.defined() ? m.to(at::kCPU) : m;
  return dispatch<true>(h, where, "hidden", [&](auto tag) {
    using S = rdrop::detail::compute_t<typename std::decay_t<decltype(tag)>::type>;
    LinearLossOptions linear;
    linear.chunk_bytes = o.chunk_bytes();
    linear.chunk_pairs = o.chunk_pairs();
    const rdrop::RDropLinearLoss<S> loss(options_in<S>(o), linear);
    const Eigen::Map<const RowMajor<S>> weight_shape(nullptr, w.size(0), w.size(1));
    return with_labels(cpu_labels, where, [&](const auto& y) {
      return as_eigen<S>(h, nullptr, [&](const auto& shape) { return count_rows(loss, cpu_mask, shape, weight_shape, y); });
    });
  });
}

/// The linear loss of hidden (contiguous), weight and bias (contiguous, or
/// undefined), with scale · its gradients written into `g` when they are
/// defined: chunks through ATen's products (the ATen path anywhere; on the
/// CPU with the fused kernels between the products when aten_products
/// says so), else rdrop::RDropLinearLoss (float and double, scale 1).
inline double linear_run(const at::Tensor& h, const at::Tensor& w, const at::Tensor& b, const at::Tensor& labels,
                         const at::Tensor& m, const LinearLossTorchOptions& o, const LinearGradients& g, double scale,
                         const char* where) {
  dispatch<true>(h, where, "hidden", [](auto) { return 0; });  // the dtype first, one message for every path
  const bool aten_path = uses_aten(o, h, where, "hidden");
  if (aten_path || aten_products(o, h, where)) {
    const RDropCounts counts = check_linear_like_fused(h, w, labels, m, o, where);
    return aten::linear(h, w, b, labels, m, o, counts, aten_path ? aten::Sweep::ATen : aten::Sweep::Fused, g.hidden,
                        g.weight, g.bias, scale, where);
  }
  return dispatch<false>(h, where, "hidden", [&](auto tag) {
    using S = typename std::decay_t<decltype(tag)>::type;
    LinearLossOptions linear;
    linear.chunk_bytes = o.chunk_bytes();
    linear.chunk_pairs = o.chunk_pairs();
    const Eigen::Map<const RowMajor<S>> wm(data_of<S>(w), w.size(0), w.size(1));
    const bool with_grad = g.hidden.defined();
    const auto run = [&](auto loss) {
      rdrop::detail::LinearLossAccess::share_workspace(loss, linear_buffers<S>());
      return with_labels(labels, where, [&](const auto& y) {
        return with_views<S>(h, g.hidden, [&](const auto& x, auto* gh) {
          const auto value_only = [&](const auto& bias_view) {
            return m.defined() ? static_cast<double>(loss.Evaluate(x, wm, bias_view, y, mask_view(m)))
                               : static_cast<double>(loss.Evaluate(x, wm, bias_view, y));
          };
          const auto with_gradients = [&](const auto& bias_view, auto&& grad_bias) {
            Rows<S> gw(mutable_data_of<S>(g.weight), g.weight.size(0), g.weight.size(1));
            if (m.defined()) {
              return static_cast<double>(loss.EvaluateWithGradient(x, wm, bias_view, y, mask_view(m), *gh, gw, grad_bias));
            }
            return static_cast<double>(loss.EvaluateWithGradient(x, wm, bias_view, y, *gh, gw, grad_bias));
          };
          if (b.defined()) {
            const Eigen::Map<const Eigen::Matrix<S, Eigen::Dynamic, 1>> bias_view(data_of<S>(b), b.numel());
            if (!with_grad) return value_only(bias_view);
            Eigen::Map<Eigen::Matrix<S, Eigen::Dynamic, 1>> gb(mutable_data_of<S>(g.bias), g.bias.numel());
            return with_gradients(bias_view, gb);
          }
          return with_grad ? with_gradients(no_bias, no_bias) : value_only(no_bias);
        });
      });
    };
    const RDropOptions<S> options = options_in<S>(o);
    switch (o.divergence()) {
      case Divergence::SymmetricKL:
        return run(rdrop::RDropLinearLoss<S>(options, linear));
      case Divergence::KL:
        return run(rdrop::RDropLinearLoss<S, KLDivergence<S>>(options, linear));
      case Divergence::JensenShannon:
        return run(rdrop::RDropLinearLoss<S, JensenShannon<S>>(options, linear));
    }
    unknown_divergence(o.divergence(), where);
  });
}

struct LinearLossFunction : ::torch::autograd::Function<LinearLossFunction> {
  static constexpr const char* where = "rdrop::torch::linear_loss";

  /// The three gradients (the inputs' shapes and dtypes) at `scale`, and the value.
  static std::pair<LinearGradients, double> run(const at::Tensor& h, const at::Tensor& w, const at::Tensor& b,
                                                const at::Tensor& labels, const at::Tensor& mask,
                                                const LinearLossTorchOptions& o, double scale) {
    const LinearGradients g{gradient_like(h), gradient_like(w), b.defined() ? gradient_like(b) : at::Tensor()};
    const double value = linear_run(h, w, b, labels, mask, o, g, scale, where);
    return {g, value};
  }

  static at::Tensor forward(::torch::autograd::AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                            const OptionalTensor& optional_bias, const at::Tensor& labels, const OptionalTensor& mask,
                            const LinearLossTorchOptions& o) {
    const at::Tensor h = hidden.contiguous(), w = weight.contiguous(), bias = value_of(optional_bias);
    const at::Tensor b = bias.defined() ? bias.contiguous() : bias;
    // 2-byte gradients are made at loss_scale and rounded once there.
    const double scale = is_two_byte(h) ? o.loss_scale() : 1.0;
    const auto [g, value] = run(h, w, b, labels, value_of(mask), o, scale);
    if (is_two_byte(h)) {
      ctx->save_for_backward({g.hidden, g.weight, g.bias, h, w, b, labels, value_of(mask)});
      ctx->saved_data["options"] = hold(o);
    } else {
      ctx->save_for_backward({g.hidden, g.weight, g.bias});
    }
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["inputs"] = hold(edges_of({hidden, weight, bias}));
    return loss_tensor(value, hidden);
  }

  static ::torch::autograd::variable_list backward(::torch::autograd::AutogradContext* ctx,
                                                   ::torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& grad_output = grad_outputs[0];
    ::torch::autograd::variable_list out{saved[0], saved[1], saved[2]};
    if (!is_two_byte(saved[0])) {
      for (at::Tensor& g : out) {
        if (g.defined()) g = scaled(g, grad_output);
      }
    } else {
      // loss_scale as grad_output holds it (float), so that an equal scale compares equal.
      const double made_at = at::scalar_tensor(ctx->saved_data["scale"].toDouble(), grad_output.options()).item<double>();
      const double wanted = grad_output.item<double>();
      if (wanted != made_at) {
        if (std::isfinite(wanted)) {
          // Made again at grad_output's scale: a rounded gradient rescaled
          // would be rounded twice (and lose what underflowed).
          const auto& o = held<LinearLossTorchOptions>(ctx->saved_data["options"]);
          const LinearGradients g = run(saved[3], saved[4], saved[5], saved[6], saved[7], o, wanted).first;
          out = {g.hidden, g.weight, g.bias};
        } else {
          // inf or NaN (a loss scaler's overflow step): what multiplying gives.
          for (at::Tensor& g : out) {
            if (g.defined()) g = (g.to(at::kFloat) * (wanted / made_at)).to(g.scalar_type());
          }
        }
      }
    }
    out.resize(6);
    return once_differentiable(std::move(out), held<::torch::autograd::edge_list>(ctx->saved_data["inputs"]), where);
  }
};

}  // namespace detail

/// The R-Drop loss of a duplicated batch (rdrop::RDropLoss) as a scalar
/// tensor with a gradient function: `logits` [2B, C] or [2B, T, C] (float,
/// double, bfloat16, half; copies placed as options.layout() says; any
/// strided view), `labels` int64 (or int32) once per sample ([B] or
/// [B, T]) or once per row ([2B] or [2B, T]), `mask` optional (any dtype,
/// non-zero = keep, the labels' shape). The gradient reaches both copies;
/// backward scales it by grad_output.
/// Memory: float and double save one gradient of the logits' size for the
/// backward; 2-byte logits save nothing but the inputs, and the backward
/// computes the gradient at grad_output's scale, rounded once (a second
/// sweep). With grad mode off or logits that do not require grad, only
/// the value is computed.
inline at::Tensor rdrop_loss(const at::Tensor& logits, const at::Tensor& labels, const RDropLossOptions& options = {},
                             const at::Tensor& mask = {}) {
  return detail::call<detail::RDropSpec>(logits, labels, mask, options, false, "rdrop::torch::rdrop_loss");
}

/// rdrop_loss that writes the gradient (times options.loss_scale()) over the
/// logits (contiguous) in the forward pass and keeps it there for the
/// backward: no logits-sized buffer. The logits' values are gone after
/// the call; their version counter is bumped, so an autograd node that
/// saved them for its own backward (e.g. a log_softmax taken for accuracy)
/// fails loudly rather than reading the gradient. Refuses what torch's
/// in-place ops refuse (a leaf that requires grad, a view of one, ...).
/// With grad mode off or logits that do not require grad, the logits are
/// left alone and only the value is computed.
inline at::Tensor rdrop_loss_(const at::Tensor& logits, const at::Tensor& labels, const RDropLossOptions& options = {},
                              const at::Tensor& mask = {}) {
  return detail::call<detail::RDropSpec>(logits, labels, mask, options, true, "rdrop::torch::rdrop_loss_");
}

/// The multi-label R-Drop loss (rdrop::RDropMultiLabelLoss): binary
/// cross-entropy from logits on both copies plus α·Bernoulli symmetric KL;
/// `targets` in [0, 1] with the logits' shape, once per sample ([B, K],
/// [B, T, K]) or per row ([2B, K], [2B, T, K]); they get no gradient (one
/// that requires grad is refused: pass targets.detach()). Memory and modes
/// as rdrop_loss.
inline at::Tensor multi_label_loss(const at::Tensor& logits, const at::Tensor& targets,
                                   const MultiLabelLossOptions& options = {}, const at::Tensor& mask = {}) {
  return detail::call<detail::MultiLabelSpec>(logits, targets, mask, options, false, "rdrop::torch::multi_label_loss");
}
/// multi_label_loss writing its gradient over the logits (see rdrop_loss_).
inline at::Tensor multi_label_loss_(const at::Tensor& logits, const at::Tensor& targets,
                                    const MultiLabelLossOptions& options = {}, const at::Tensor& mask = {}) {
  return detail::call<detail::MultiLabelSpec>(logits, targets, mask, options, true, "rdrop::torch::multi_label_loss_");
}

/// The regression R-Drop loss (rdrop::RDropRegressionLoss): squared error
/// on both copies plus α·squared distance between them; `targets` as for
/// multi_label_loss. Memory and modes as rdrop_loss.
inline at::Tensor regression_loss(const at::Tensor& outputs, const at::Tensor& targets,
                                  const RegressionLossOptions& options = {}, const at::Tensor& mask = {}) {
  return detail::call<detail::RegressionSpec>(outputs, targets, mask, options, false, "rdrop::torch::regression_loss");
}
/// regression_loss writing its gradient over the outputs (see rdrop_loss_).
inline at::Tensor regression_loss_(const at::Tensor& outputs, const at::Tensor& targets,
                                   const RegressionLossOptions& options = {}, const at::Tensor& mask = {}) {
  return detail::call<detail::RegressionSpec>(outputs, targets, mask, options, true, "rdrop::torch::regression_loss_");
}

/// The output layer fused with the R-Drop loss (rdrop::RDropLinearLoss):
/// the loss of logits hidden·weightᵀ + bias, never holding the logits.
/// `hidden` [2B, D] or [2B, T, D], `weight` [V, D], `bias` [V] or undefined
/// (none), one dtype: float, double, bfloat16 or half (2-byte: products in
/// that dtype with float accumulation, the loss and the logits' gradient in
/// float, gradients in the inputs' dtype, made at options.loss_scale());
/// any strided views, any device. `labels` and `mask` as for
/// rdrop_loss, shaped after `hidden`. Gradients for hidden, weight and
/// bias; the forward saves those three (the inputs' sizes, not the
/// logits'). The chunk buffers (at most options.chunk_bytes()) are kept per
/// thread and dtype between calls, as a loss object of the Eigen API
/// keeps them; release_linear_buffers() frees them.
inline at::Tensor linear_loss(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& bias,
                              const at::Tensor& labels, const LinearLossTorchOptions& options = {},
                              const at::Tensor& mask = {}) {
  constexpr const char* where = detail::LinearLossFunction::where;
  detail::check_strided(hidden, where, "hidden");
  detail::check_strided(weight, where, "weight");
  if (bias.defined()) detail::check_strided(bias, where, "bias");
  detail::check_strided(labels, where, "labels");
  if (mask.defined()) detail::check_strided(mask, where, "mask");
  detail::check_one_device(where,
                           {{"hidden", hidden}, {"weight", weight}, {"bias", bias}, {"labels", labels}, {"mask", mask}});
  TORCH_CHECK(weight.scalar_type() == hidden.scalar_type() && (!bias.defined() || bias.scalar_type() == hidden.scalar_type()),
              where, ": arguments 'hidden', 'weight' and 'bias' must have one dtype; got ", hidden.scalar_type(), ", ",
              weight.scalar_type(), bias.defined() ? ", " : "", bias.defined() ? c10::toString(bias.scalar_type()) : "");
  detail::check_rank(hidden, where, "hidden", "[2B, D] or [2B, T, D]");
  TORCH_CHECK(weight.dim() == 2, where, ": argument 'weight' has shape ", weight.sizes(), "; expected [V, D]");
  TORCH_CHECK(!bias.defined() || bias.dim() == 1, where, ": argument 'bias' has shape ", bias.sizes(), "; expected [V]");
  if (bias.defined() && bias.size(0) != weight.size(0)) {
    throw std::invalid_argument(std::string(where) + ": argument 'bias' has shape " + detail::shape_str(bias.sizes()) +
                                "; expected [" + std::to_string(weight.size(0)) + "], one entry per row of the weight " +
                                detail::shape_str(weight.sizes()));
  }
  detail::check_per_sample_or_row(labels, hidden, false, where, "labels", "hidden");
  if (mask.defined()) detail::check_per_sample_or_row(mask, hidden, false, where, "mask", "hidden");
  detail::check_divergence(options.divergence(), where);
  detail::check_loss_scale(options.loss_scale(), where);
  const at::Tensor m = detail::mask_of(mask);
  if (!detail::wants_grad({hidden, weight, bias})) {
    const at::Tensor b = bias.defined() ? bias.contiguous() : bias;
    return detail::loss_tensor(detail::linear_run(hidden.contiguous(), weight.contiguous(), b, labels, m, options,
                                                  detail::LinearGradients{}, 1.0, where),
                               hidden);
  }
  return detail::LinearLossFunction::apply(hidden, weight, detail::OptionalTensor(bias), labels,
                                           detail::OptionalTensor(m), options);
}

/// What Path::Auto runs on CPU tensors, process-wide: Path::Fused (the
/// default) or Path::ATen (e.g. to compare the two, as the tests do). Other
/// devices always take the ATen path.
inline void set_default_path(Path cpu_path) {
  TORCH_CHECK(cpu_path != Path::Auto, "rdrop::torch::set_default_path: argument 'cpu_path' must be Path::Fused or Path::ATen");
  detail::default_cpu_path().store(cpu_path);
}

/// Frees the calling thread's chunk buffers of linear_loss (float and
/// double); the next call allocates them again.
inline void release_linear_buffers() {
  detail::linear_buffers<float>() = std::make_shared<rdrop::detail::LinearWorkspace<float>>();
  detail::linear_buffers<double>() = std::make_shared<rdrop::detail::LinearWorkspace<double>>();
}

namespace detail {
/// A module whose forward takes (x, targets, mask = {}): what
/// FORWARD_HAS_DEFAULT_ARGS declares, so that torch::nn::Sequential and
/// AnyModule may call it with two arguments (the macro itself names
/// `torch::` unqualified, which inside rdrop::torch is this namespace).
template <typename Impl>
class OptionalMaskModule : public ::torch::nn::Cloneable<Impl> {
 public:
  bool _forward_has_default_args() override { return true; }
  unsigned int _forward_num_required_args() override { return 2; }
  std::vector<::torch::nn::AnyValue> _forward_populate_default_args(
      std::vector<::torch::nn::AnyValue>&& arguments) override {
    if (arguments.size() == 2) arguments.emplace_back(at::Tensor());
    return std::move(arguments);
  }
};
}  // namespace detail

/// rdrop_loss as a torch::nn::Module, as torch::nn::CrossEntropyLoss is
/// F::cross_entropy: `rdrop::torch::RDropLoss loss(RDropLossOptions().alpha(4));`
/// then `loss(logits, labels)` or `loss(logits, labels, mask)`. It holds no
/// parameters; its options are public, as torch's modules' are. It may sit
/// in a torch::nn::Sequential or AnyModule (called with or without the mask).
class RDropLossImpl : public detail::OptionalMaskModule<RDropLossImpl> {
 public:
  /// A loss with `options` (see rdrop_loss).
  explicit RDropLossImpl(RDropLossOptions options = {}) : options(std::move(options)) {}
  /// Nothing to reset: the loss has no parameters or buffers.
  void reset() override {}
  /// Writes "rdrop::torch::RDropLoss(alpha=…)".
  void pretty_print(std::ostream& stream) const override {
    stream << "rdrop::torch::RDropLoss(alpha=" << options.alpha() << ")";
  }
  /// rdrop_loss(logits, labels, options, mask).
  at::Tensor forward(const at::Tensor& logits, const at::Tensor& labels, const at::Tensor& mask = {}) {
    return rdrop_loss(logits, labels, options, mask);
  }
  /// The options of every call.
  RDropLossOptions options;
};
/// The module holder of RDropLossImpl, as TORCH_MODULE makes them (the
/// macro itself names `torch::`, which inside rdrop::torch is this namespace).
class RDropLoss : public ::torch::nn::ModuleHolder<RDropLossImpl> {
 public:
  using ::torch::nn::ModuleHolder<RDropLossImpl>::ModuleHolder;
  /// The module type it holds.
  using Impl = RDropLossImpl;
};

/// Settings of the module RDropLinearLoss: the output layer's sizes, as
/// torch::nn::LinearOptions gives them, whether it has a bias, and the
/// loss's settings.
class RDropLinearLossOptions {
 public:
  /// An output layer from `in_features` (D) to `out_features` (V classes).
  RDropLinearLossOptions(std::int64_t in_features, std::int64_t out_features)
      : in_features_(in_features), out_features_(out_features) {}
  /// Sets the hidden size D.
  RDropLinearLossOptions& in_features(std::int64_t value) { in_features_ = value; return *this; }
  /// The hidden size D.
  std::int64_t in_features() const noexcept { return in_features_; }
  /// D, to assign (`options.in_features() = …`), as TORCH_ARG gives it.
  std::int64_t& in_features() noexcept { return in_features_; }
  /// Sets the number of classes V.
  RDropLinearLossOptions& out_features(std::int64_t value) { out_features_ = value; return *this; }
  /// The number of classes V.
  std::int64_t out_features() const noexcept { return out_features_; }
  /// V, to assign (`options.out_features() = …`), as TORCH_ARG gives it.
  std::int64_t& out_features() noexcept { return out_features_; }
  /// Sets whether the layer has a bias (true by default).
  RDropLinearLossOptions& bias(bool value) { bias_ = value; return *this; }
  /// Whether the layer has a bias.
  bool bias() const noexcept { return bias_; }
  /// Whether there is a bias, to assign (`options.bias() = …`), as TORCH_ARG gives it.
  bool& bias() noexcept { return bias_; }
  /// Sets the loss's settings (see linear_loss).
  RDropLinearLossOptions& loss(LinearLossTorchOptions value) { loss_ = std::move(value); return *this; }
  /// The loss's settings.
  const LinearLossTorchOptions& loss() const noexcept { return loss_; }
  /// The loss's settings, to change in place (`options.loss().alpha(2)`).
  LinearLossTorchOptions& loss() noexcept { return loss_; }

 private:
  std::int64_t in_features_;
  std::int64_t out_features_;
  bool bias_ = true;
  LinearLossTorchOptions loss_;
};

/// The output layer fused with the R-Drop loss (linear_loss) as a
/// torch::nn::Module: it holds the layer's `weight` [V, D] and `bias` [V]
/// as registered parameters (optimizers, `parameters()`, `torch::save` and
/// `to()` see them; initialized as torch::nn::Linear initializes its own),
/// and `loss(hidden, labels)` gives the loss without holding the logits.
/// `logits(hidden)` gives hidden·weightᵀ + bias for prediction. A layer
/// whose weight is tied to another (an embedding) calls linear_loss instead.
class RDropLinearLossImpl : public detail::OptionalMaskModule<RDropLinearLossImpl> {
 public:
  /// The layer and loss of `options`; throws std::invalid_argument for a
  /// size below 1.
  explicit RDropLinearLossImpl(RDropLinearLossOptions options) : options(std::move(options)) {
    if (this->options.in_features() < 1 || this->options.out_features() < 1) {
      throw std::invalid_argument("rdrop::torch::RDropLinearLoss: in_features " +
                                  std::to_string(this->options.in_features()) + " and out_features " +
                                  std::to_string(this->options.out_features()) + "; expected both ≥ 1");
    }
    reset();
  }
  /// An output layer from `in_features` (D) to `out_features` (V classes),
  /// with a bias and the default loss settings, as torch::nn::Linear(in, out).
  RDropLinearLossImpl(std::int64_t in_features, std::int64_t out_features)
      : RDropLinearLossImpl(RDropLinearLossOptions(in_features, out_features)) {}
  /// Registers fresh parameters and initializes them (reset_parameters).
  void reset() override {
    weight = register_parameter("weight", ::torch::empty({options.out_features(), options.in_features()}));
    if (options.bias()) {
      bias = register_parameter("bias", ::torch::empty({options.out_features()}));
    } else {
      bias = register_parameter("bias", {}, /*requires_grad=*/false);
    }
    reset_parameters();
  }
  /// torch::nn::Linear's initialization: weight Kaiming-uniform with
  /// a = √5, bias uniform in ±1/√D.
  void reset_parameters() {
    ::torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
    if (bias.defined()) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(options.in_features()));
      ::torch::nn::init::uniform_(bias, -bound, bound);
    }
  }
  /// Writes "rdrop::torch::RDropLinearLoss(in_features=…, out_features=…, bias=…)".
  void pretty_print(std::ostream& stream) const override {
    stream << std::boolalpha << "rdrop::torch::RDropLinearLoss(in_features=" << options.in_features()
           << ", out_features=" << options.out_features() << ", bias=" << options.bias()
           << ", alpha=" << options.loss().alpha() << ")";
  }
  /// linear_loss(hidden, weight, bias, labels, options.loss(), mask).
  at::Tensor forward(const at::Tensor& hidden, const at::Tensor& labels, const at::Tensor& mask = {}) {
    return linear_loss(hidden, weight, bias, labels, options.loss(), mask);
  }
  /// The layer's logits hidden·weightᵀ + bias (for prediction: they are
  /// held, unlike in forward).
  at::Tensor logits(const at::Tensor& hidden) const { return at::linear(hidden, weight, bias); }

  /// The layer and loss settings.
  RDropLinearLossOptions options;
  /// The weight [V, D] (a registered parameter).
  at::Tensor weight;
  /// The bias [V], undefined where options.bias() is false (a registered parameter).
  at::Tensor bias;
};
/// The module holder of RDropLinearLossImpl, as TORCH_MODULE makes them.
class RDropLinearLoss : public ::torch::nn::ModuleHolder<RDropLinearLossImpl> {
 public:
  using ::torch::nn::ModuleHolder<RDropLinearLossImpl>::ModuleHolder;
  /// The module type it holds.
  using Impl = RDropLinearLossImpl;
};

}  // namespace rdrop::torch
