// BM_RDrop_Sequence/<tokens>/<vocab>/<masked percent>/<threads>: the fused
// R-Drop sweep over a padded batch of sequences. Masked (padding) tokens are
// skipped, only their gradient rows are zeroed, so a batch with 25% padding
// should cost clearly less than one with none.
#include <rdrop/rdrop.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

namespace {

void BM_RDrop_Sequence(benchmark::State& state) {
  const Eigen::Index tokens = state.range(0), vocab = state.range(1);
  const Eigen::Index masked_percent = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  // 64-token sentences; padding fills the tails of the sentences.
  const Eigen::Index time = 64, batch = tokens / time;
  Eigen::Tensor<float, 3, Eigen::RowMajor> logits(2 * batch, time, vocab);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-4.0f, 4.0f);
  for (Eigen::Index i = 0; i < logits.size(); ++i) logits.data()[i] = u(rng);
  Eigen::Tensor<int, 2, Eigen::RowMajor> labels(batch, time);
  Eigen::Tensor<std::uint8_t, 2, Eigen::RowMajor> mask(batch, time);
  const Eigen::Index padded = time * masked_percent / 100;
  for (Eigen::Index i = 0; i < batch; ++i) {
    for (Eigen::Index t = 0; t < time; ++t) {
      labels(i, t) = static_cast<int>((i * 131 + t * 31) % vocab);
      mask(i, t) = t < time - padded ? 1 : 0;
    }
  }
  rdrop::RDropOptions<float> options;
  options.alpha = 5.0f;
  options.layout = rdrop::Layout::Stacked;
  options.normalization = rdrop::Normalization::Fairseq;
  options.label_smoothing = 0.1f;
  options.threads = threads;
  const rdrop::RDropLoss<float> loss(options);
  Eigen::Tensor<float, 3, Eigen::RowMajor> grad(2 * batch, time, vocab);
  // One untimed call: the first touch of a 1 GB gradient is page faults, not rdrop.
  benchmark::DoNotOptimize(loss.EvaluateWithGradient(logits, labels, mask, grad));
  for (auto _ : state) {
    benchmark::DoNotOptimize(loss.EvaluateWithGradient(logits, labels, mask, grad));
    benchmark::ClobberMemory();
  }
  // Counted as the unmasked work would be, so that rates compare directly.
  const auto elements = static_cast<std::int64_t>(2 * tokens * vocab);
  state.SetItemsProcessed(state.iterations() * elements);
  state.SetBytesProcessed(state.iterations() * elements * 2 * static_cast<std::int64_t>(sizeof(float)));
}
BENCHMARK(BM_RDrop_Sequence)
    ->ArgNames({"tokens", "vocab", "masked", "threads"})
    ->Args({4096, 32000, 0, 1})
    ->Args({4096, 32000, 25, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
