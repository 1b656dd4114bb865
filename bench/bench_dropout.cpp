// Dropout against the floor it cannot beat: a scaled copy of the same matrix
// (one read, one write, no randomness). Both report bytes read + written.
#include <rdrop/dropout.hpp>

#include "wall_clock.hpp"

#include <benchmark/benchmark.h>

#include <cstdint>

namespace {

using DropoutMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Each element read once and written once, per wall-clock second.
template <typename Body>
void run(benchmark::State& state, Eigen::Index rows, Eigen::Index cols, Body&& body) {
  rdrop_bench::run_wall_clock(state, static_cast<double>(rows * cols), 2 * sizeof(float), body);
}

// Args: rows, cols, threads.
void BM_Dropout(benchmark::State& state) {
  const Eigen::Index rows = state.range(0), cols = state.range(1);
  const DropoutMatrix input = DropoutMatrix::Random(rows, cols);
  DropoutMatrix output(rows, cols);
  const rdrop::Dropout<float> dropout(0.3f, 42, static_cast<int>(state.range(2)));
  std::uint64_t step = 0;
  run(state, rows, cols, [&] {
    dropout.Forward(input, output, step++);
    benchmark::DoNotOptimize(output.data());
  });
}
BENCHMARK(BM_Dropout)->Args({8192, 1024, 1})->Args({8192, 1024, 2})->Args({256, 512, 1});

// Args: rows, cols (always one thread: Eigen's assignment is sequential).
void BM_ScaledCopy(benchmark::State& state) {
  const Eigen::Index rows = state.range(0), cols = state.range(1);
  const DropoutMatrix input = DropoutMatrix::Random(rows, cols);
  DropoutMatrix output(rows, cols);
  const float scale = 1.0f / 0.7f;
  run(state, rows, cols, [&] {
    output.noalias() = input * scale;
    benchmark::DoNotOptimize(output.data());
  });
}
BENCHMARK(BM_ScaledCopy)->Args({8192, 1024})->Args({256, 512});

}  // namespace
