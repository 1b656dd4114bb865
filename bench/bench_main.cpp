// rdrop's benchmarks (Google Benchmark).
#include <rdrop/rdrop.hpp>

#include <benchmark/benchmark.h>

#include <random>

namespace {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

void BM_RDrop_Fused(benchmark::State& state) {
  const Eigen::Index pairs = state.range(0), classes = state.range(1);
  const Matrix logits = Matrix::Random(2 * pairs, classes) * 4.0f;
  const Eigen::VectorXi labels = Eigen::VectorXi::Zero(pairs);
  rdrop::RDropOptions<float> options;
  options.threads = static_cast<int>(state.range(2));
  const rdrop::RDropLoss<float> loss(options);
  Matrix grad(2 * pairs, classes);
  for (auto _ : state) {
    benchmark::DoNotOptimize(loss.EvaluateWithGradient(logits, labels, grad));
    benchmark::ClobberMemory();
  }
  const auto elements = static_cast<int64_t>(2 * pairs * classes);
  state.SetItemsProcessed(state.iterations() * elements);
  state.SetBytesProcessed(state.iterations() * elements * 2 * static_cast<int64_t>(sizeof(float)));
}
BENCHMARK(BM_RDrop_Fused)->Args({256, 10, 1})->Args({4096, 1000, 1})->Args({1024, 32000, 1});

}  // namespace

BENCHMARK_MAIN();
