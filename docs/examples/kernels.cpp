// The fused kernels on raw pointers with row strides, for logits that live
// in your own buffers: the same numbers as the Eigen-facing functors.
#include <rdrop/kernels.hpp>

#include "example_common.hpp"

#include <vector>

int main() {
  using rdrop::kernels::Index;
  const Index B = 5, C = 7, stride = 8;  // rows padded to 8 scalars
  // An engine's output buffer: 2B interleaved rows [a0, b0, a1, b1, ...].
  std::vector<double> out(static_cast<std::size_t>(2 * B * stride), 0.0);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = std::cos(0.7 * double(i));
  std::vector<Index> labels = {3, 0, 6, 2, 2};
  const double alpha = 4.0;

  // Pair i: a = out + 2i·stride, b = a + stride, so each copy has row stride 2·stride.
  std::vector<double> grad(out.size(), 0.0);
  rdrop::kernels::RDropPairsOptions<double> options;
  options.ce_weight = 1.0;    // the Paper form: Σ CE + α Σ S
  options.kl_weight = alpha;
  const rdrop::kernels::RDropPairsSums<double> sums = rdrop::kernels::rdrop_pairs(
      B, C, out.data(), 2 * stride, out.data() + stride, 2 * stride, labels.data(), labels.data(),
      grad.data(), 2 * stride, grad.data() + stride, 2 * stride, options);

  // The same with RDropLoss on a Map over the buffer (outer stride 8).
  const Eigen::Map<const Matrix, 0, Eigen::OuterStride<>> logits(out.data(), 2 * B, C,
                                                               Eigen::OuterStride<>(stride));
  rdrop::RDropOptions<double> o;
  o.alpha = alpha;
  o.normalization = rdrop::Normalization::Paper;
  Matrix g;
  const Eigen::VectorXi y = Eigen::Map<const Eigen::Matrix<Index, Eigen::Dynamic, 1>>(labels.data(), B).cast<int>();
  const double value = rdrop::RDropLoss<double>(o).EvaluateWithGradient(logits, y, g);
  check(std::abs(sums.loss - value) < 1e-12, "rdrop_pairs = RDropLoss (Paper)");
  const Eigen::Map<const Matrix, 0, Eigen::OuterStride<>> g_kernel(grad.data(), 2 * B, C,
                                                                 Eigen::OuterStride<>(stride));
  check((g_kernel - g).cwiseAbs().maxCoeff() < 1e-12, "same gradient");

  // The symmetric KL alone, mean over pairs: grad_scale = 1/B, divide by B.
  std::vector<double> s(static_cast<std::size_t>(B));
  Matrix ga(B, C), gb(B, C);
  const double mean = rdrop::kernels::symmetric_kl_pairs(
                          B, C, out.data(), 2 * stride, out.data() + stride, 2 * stride, ga.data(), C,
                          gb.data(), C, 1.0 / double(B), s.data()) /
                      double(B);
  Matrix fa, fb;
  const double functor = rdrop::SymmetricKL<double>().EvaluateWithGradient(
      rdrop::FirstCopy(logits), rdrop::SecondCopy(logits), fa, fb);
  check(std::abs(mean - functor) < 1e-12, "symmetric_kl_pairs = SymmetricKL (Mean)");
  check((ga - fa).cwiseAbs().maxCoeff() < 1e-12 && (gb - fb).cwiseAbs().maxCoeff() < 1e-12,
        "same gradients");

  // One pair, values only (null gradients).
  const double s0 = rdrop::kernels::symmetric_kl_pair(out.data(), out.data() + stride, C, nullptr, nullptr);
  check(s0 == s[0], "one pair = the first per-pair value");

  std::printf("R-Drop loss %.6f (CE %.6f, S %.6f)\n", sums.loss, sums.cross_entropy, sums.symmetric_kl);
  return exit_code();
}
