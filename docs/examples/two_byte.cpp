// bfloat16 logits from a bf16 model: the loss computes in float, the
// gradient comes back in bfloat16 (rounded once) or in float.
#include "example_common.hpp"

#include <cstring>

using BF16Matrix = Eigen::Matrix<Eigen::bfloat16, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

int main() {
  const Eigen::Index B = 8, C = 1000;
  const FloatMatrix x = 3.0f * FloatMatrix::Random(2 * B, C);
  const BF16Matrix logits = x.cast<Eigen::bfloat16>();  // what a bf16 model emits
  const Eigen::VectorXi labels = Eigen::VectorXi::LinSpaced(B, 0, static_cast<int>(C) - 1);

  const rdrop::RDropLoss<float> loss;  // a float loss takes bf16 and half logits
  BF16Matrix grad;                     // a bf16 gradient: half the bytes
  const float value = loss.EvaluateWithGradient(logits, labels, grad);

  // Exactly the float loss of the logits widened to float, its gradient
  // rounded once to bfloat16 (nearest, ties to even).
  const FloatMatrix widened = logits.cast<float>();
  FloatMatrix grad_float;
  check(value == loss.EvaluateWithGradient(widened, labels, grad_float), "value of the widened logits");
  bool rounded_once = true;
  for (Eigen::Index i = 0; i < grad.size(); ++i) {
    const Eigen::bfloat16 want(grad_float.data()[i]);
    rounded_once = rounded_once && std::memcmp(&grad.data()[i], &want, sizeof want) == 0;
  }
  check(rounded_once, "gradient rounded once");

  // A float gradient of bf16 logits is the float gradient itself.
  FloatMatrix grad_wide;
  loss.Gradient(logits, labels, grad_wide);
  check(grad_wide == grad_float, "float gradient of bf16 logits");

  // In place: the gradient over the logits, bitwise the same.
  BF16Matrix in_place = logits;
  loss.Gradient(in_place, labels, in_place);
  check(std::memcmp(in_place.data(), grad.data(), sizeof(Eigen::bfloat16) * static_cast<std::size_t>(grad.size())) == 0,
        "in place");
  return exit_code();
}
