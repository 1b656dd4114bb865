// Counter-based dropout: a fresh mask per element and row, the same mask
// again in the backward pass without storing it, for any thread count.
#include "example_common.hpp"

#include <cstdint>

int main() {
  const rdrop::Dropout<float> dropout(0.3f, /*seed=*/42);  // p = 0.3, this layer's seed
  const FloatMatrix x = rdrop::Duplicate(FloatMatrix::Random(4, 64));  // 2B = 8 rows
  const std::uint64_t step = 17;                                       // e.g. the optimizer's step

  FloatMatrix h;
  dropout.Forward(x, h, step);  // h = mask ⊙ x / (1 - p), resized to x's shape
  const FloatMatrix mask = dropout.Mask(x.rows(), x.cols(), step);
  check(h == x.cwiseProduct(mask), "Forward multiplies by Mask");
  check(((mask.array() == 0.0f) || (mask.array() == dropout.scale())).all(), "mask is 0 or 1/(1-p)");
  check(mask.row(0) != mask.row(1), "the two copies of a sample get different masks");

  // Backward regenerates the same mask from (seed, step).
  const FloatMatrix upstream = FloatMatrix::Random(x.rows(), x.cols());
  FloatMatrix down;
  dropout.Backward(upstream, down, step);
  check(down == upstream.cwiseProduct(mask), "Backward uses forward's mask");

  // A new step draws new masks; the same step, the same mask again.
  check(dropout.Mask(x.rows(), x.cols(), step + 1) != mask, "new step, new mask");
  check(dropout.Mask(x.rows(), x.cols(), step) == mask, "deterministic");

  // In place, and the same bits for any thread count.
  FloatMatrix inplace = x;
  rdrop::Dropout<float>(0.3f, 42, /*threads=*/3).Forward(inplace, inplace, step);
  check(inplace == h, "in place, 3 threads: identical");

  // About 1 - p of a large mask is kept.
  const FloatMatrix big = dropout.Mask(1000, 1000, 0);
  const double kept = double((big.array() != 0.0f).count()) / 1e6;
  check(std::abs(kept - 0.7) < 0.005, "keep rate 1 - p");

  std::printf("kept %.4f of a 1000 x 1000 mask\n", kept);
  return exit_code();
}
