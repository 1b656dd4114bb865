// Dropout against the floor it cannot beat: a scaled copy of the same matrix
// (one read, one write, no randomness). Both report bytes read + written.
#include <rdrop/dropout.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>

namespace {

using DropoutMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

void set_traffic(benchmark::State& state, Eigen::Index rows, Eigen::Index cols) {
  const auto elements = static_cast<int64_t>(rows * cols);
  state.SetItemsProcessed(state.iterations() * elements);
  state.SetBytesProcessed(state.iterations() * elements * 2 * static_cast<int64_t>(sizeof(float)));
}

// Args: rows, cols, threads.
void BM_Dropout(benchmark::State& state) {
  const Eigen::Index rows = state.range(0), cols = state.range(1);
  const DropoutMatrix input = DropoutMatrix::Random(rows, cols);
  DropoutMatrix output(rows, cols);
  const rdrop::Dropout<float> dropout(0.3f, 42, static_cast<int>(state.range(2)));
  std::uint64_t step = 0;
  for (auto _ : state) {
    dropout.Forward(input, output, step++);
    benchmark::DoNotOptimize(output.data());
    benchmark::ClobberMemory();
  }
  set_traffic(state, rows, cols);
}
BENCHMARK(BM_Dropout)->Args({8192, 1024, 1})->Args({8192, 1024, 2})->Args({256, 512, 1})->UseRealTime();

// Args: rows, cols (always one thread: Eigen's assignment is sequential).
void BM_ScaledCopy(benchmark::State& state) {
  const Eigen::Index rows = state.range(0), cols = state.range(1);
  const DropoutMatrix input = DropoutMatrix::Random(rows, cols);
  DropoutMatrix output(rows, cols);
  const float scale = 1.0f / 0.7f;
  for (auto _ : state) {
    output.noalias() = input * scale;
    benchmark::DoNotOptimize(output.data());
    benchmark::ClobberMemory();
  }
  set_traffic(state, rows, cols);
}
BENCHMARK(BM_ScaledCopy)->Args({8192, 1024})->Args({256, 512})->UseRealTime();

}  // namespace
