// BM_RDrop_Sequence/<tokens>/<vocab>/<masked percent>/<threads> (issue 4's
// naming, no arg names nor /real_time suffix): the fused
// R-Drop sweep over a padded batch of sequences. Masked (padding) tokens are
// skipped, only their gradient rows are zeroed, so a batch with 25% padding
// should cost clearly less than one with none.
#include <rdrop/rdrop.hpp>

#include "wall_clock.hpp"

#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

namespace {

/// Logits, labels and gradient for one shape, allocated and filled once and
/// shared by every masked percentage: the runs compared then read and write
/// the very same pages (fresh 1 GB buffers per run made the times bimodal).
struct SequenceData {
  static constexpr Eigen::Index time = 64;  // 64-token sentences
  Eigen::Index batch = 0, vocab = 0;
  Eigen::Tensor<float, 3, Eigen::RowMajor> logits, grad;
  Eigen::Tensor<int, 2, Eigen::RowMajor> labels;

  SequenceData(Eigen::Index tokens, Eigen::Index v)
      : batch(tokens / time), vocab(v), logits(2 * batch, time, v), grad(2 * batch, time, v),
        labels(batch, time) {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(-4.0f, 4.0f);
    for (Eigen::Index i = 0; i < logits.size(); ++i) logits.data()[i] = u(rng);
    grad.setZero();  // first touch: page faults, not rdrop
    for (Eigen::Index i = 0; i < batch; ++i) {
      for (Eigen::Index t = 0; t < time; ++t) labels(i, t) = static_cast<int>((i * 131 + t * 31) % vocab);
    }
  }

  static SequenceData& of(Eigen::Index tokens, Eigen::Index vocab) {
    static std::unique_ptr<SequenceData> data;
    if (!data || data->batch != tokens / time || data->vocab != vocab) {
      data.reset();  // free the old shape first
      data = std::make_unique<SequenceData>(tokens, vocab);
    }
    return *data;
  }
};

void BM_RDrop_Sequence(benchmark::State& state) {
  const Eigen::Index tokens = state.range(0), vocab = state.range(1);
  const Eigen::Index masked_percent = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  SequenceData& d = SequenceData::of(tokens, vocab);
  const Eigen::Index time = SequenceData::time, batch = d.batch;
  // Padding fills the tails of the sentences.
  Eigen::Tensor<std::uint8_t, 2, Eigen::RowMajor> mask(batch, time);
  const Eigen::Index padded = time * masked_percent / 100;
  for (Eigen::Index i = 0; i < batch; ++i) {
    for (Eigen::Index t = 0; t < time; ++t) mask(i, t) = t < time - padded ? 1 : 0;
  }
  rdrop::RDropOptions<float> options;
  options.alpha = 5.0f;
  options.layout = rdrop::Layout::Stacked;
  options.normalization = rdrop::Normalization::Fairseq;
  options.label_smoothing = 0.1f;
  options.threads = threads;
  const rdrop::RDropLoss<float> loss(options);
  // Counted as the unmasked work would be, so that rates compare directly:
  // each logit read, its gradient written.
  const auto elements = static_cast<double>(2 * tokens * vocab);
  rdrop_bench::run_wall_clock(state, elements, 2 * sizeof(float), [&] {
    benchmark::DoNotOptimize(loss.EvaluateWithGradient(d.logits, d.labels, mask, d.grad));
  });
}
BENCHMARK(BM_RDrop_Sequence)
    ->Args({4096, 32000, 0, 1})
    ->Args({4096, 32000, 25, 1})
    ->Unit(benchmark::kMillisecond);

}  // namespace
