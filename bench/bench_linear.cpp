// R-Drop from hidden states (issue 12): the output projection fused with
// the loss (rdrop::RDropLinearLoss) against the same result built from
// RDropLoss and Eigen products, and against the three products alone.
// Every benchmark is BM_LinearRDrop_<Variant>/<pairs>/<hidden>/<vocab>/<threads>
// and reports, besides its time:
//   peak_extra_MiB  the most memory it held at once beyond its inputs
//                   (hidden states, weight, bias, labels) and outputs (the
//                   three gradients), counted by the allocator of
//                   memory_counter.hpp: the buffers a variant keeps between
//                   calls (its logits, the fused loss's chunk) are created in
//                   the benchmark and counted too. A counter of each
//                   repetition, right in every JSON entry.
//   items_per_second  logits (2·pairs·vocab) per wall-clock second.
#include <rdrop/linear_loss.hpp>
#include <rdrop/rdrop.hpp>

#include "memory_counter.hpp"
#include "wall_clock.hpp"

#include <benchmark/benchmark.h>

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <tuple>

namespace {

using Scalar = float;
using Index = Eigen::Index;
using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

/// Hidden states of a duplicated batch (interleaved copies that differ a
/// little, like two dropout passes), an output layer, labels, and the
/// gradient outputs. One set per shape, kept for the whole run.
struct Head {
  Matrix hidden, weight;
  Vector bias;
  Eigen::VectorXi labels;
  Matrix grad_hidden, grad_weight;
  Vector grad_bias;
};

Head& head_for(Index pairs, Index hidden, Index vocab) {
  static std::map<std::tuple<Index, Index, Index>, std::unique_ptr<Head>> cache;
  std::unique_ptr<Head>& slot = cache[{pairs, hidden, vocab}];
  if (!slot) {
    slot = std::make_unique<Head>();
    Head& h = *slot;
    std::srand(11);
    const Matrix base = Matrix::Random(pairs, hidden);
    h.hidden.resize(2 * pairs, hidden);
    for (Index k = 0; k < pairs; ++k) {
      h.hidden.row(2 * k) = base.row(k) + Scalar(0.1) * Matrix::Random(1, hidden);
      h.hidden.row(2 * k + 1) = base.row(k) + Scalar(0.1) * Matrix::Random(1, hidden);
    }
    // Logits of a few units, as a trained head gives.
    h.weight = Matrix::Random(vocab, hidden) * Scalar(4.0 / std::sqrt(static_cast<double>(hidden)));
    h.bias = Vector::Random(vocab);
    std::mt19937 rng(11);
    std::uniform_int_distribution<int> label(0, static_cast<int>(vocab) - 1);
    h.labels.resize(pairs);
    for (Index i = 0; i < pairs; ++i) h.labels(i) = label(rng);
    // Touched now, so that no page fault of an output gets timed.
    h.grad_hidden = Matrix::Zero(2 * pairs, hidden);
    h.grad_weight = Matrix::Zero(vocab, hidden);
    h.grad_bias = Vector::Zero(vocab);
  }
  return *slot;
}

Index arg(const benchmark::State& state, int i) { return static_cast<Index>(state.range(i)); }

/// Runs `body` (after `setup`, which creates what the variant keeps between
/// calls) and reports time, logits per second and peak_extra_MiB.
template <typename Setup>
void run(benchmark::State& state, Setup&& setup) {
  Head& h = head_for(arg(state, 0), arg(state, 1), arg(state, 2));
  const int threads = static_cast<int>(state.range(3));
  Eigen::setNbThreads(threads);
  rdrop_bench::reset_peak();
  const std::int64_t before = rdrop_bench::bytes_in_use();
  {
    auto body = setup(h, threads);
    const double logits = 2.0 * static_cast<double>(h.hidden.rows() / 2) * static_cast<double>(h.weight.rows());
    rdrop_bench::run_wall_clock(state, logits, 2 * sizeof(Scalar), body);
  }
  state.counters["peak_extra_MiB"] =
      static_cast<double>(rdrop_bench::peak_bytes() - before) / static_cast<double>(1 << 20);
  Eigen::setNbThreads(0);
}

/// RDropLinearLoss with its default chunk budget: loss and the three
/// gradients, the logits never held whole.
void BM_LinearRDrop_Fused(benchmark::State& state) {
  run(state, [](Head& h, int threads) {
    rdrop::RDropOptions<Scalar> o;
    o.threads = threads;
    auto loss = std::make_shared<rdrop::RDropLinearLoss<Scalar>>(o);
    return [&h, loss] {
      benchmark::DoNotOptimize(
          loss->EvaluateWithGradient(h.hidden, h.weight, h.bias, h.labels, h.grad_hidden, h.grad_weight, h.grad_bias));
    };
  });
}

/// The same result from today's parts, as a careful user builds it: the
/// logits of the whole batch into a buffer kept between calls, RDropLoss
/// writing their gradient over them (in place), then the products; Eigen
/// threads the products (Eigen::setNbThreads), rdrop the sweep.
void BM_LinearRDrop_Unfused(benchmark::State& state) {
  run(state, [](Head& h, int threads) {
    rdrop::RDropOptions<Scalar> o;
    o.threads = threads;
    auto logits = std::make_shared<Matrix>(h.hidden.rows(), h.weight.rows());
    logits->setZero();
    return [&h, logits, loss = rdrop::RDropLoss<Scalar>(o)] {
      Matrix& x = *logits;
      x.noalias() = h.hidden * h.weight.transpose();
      x.rowwise() += h.bias.transpose();
      benchmark::DoNotOptimize(loss.EvaluateWithGradient(x, h.labels, x));
      h.grad_hidden.noalias() = x * h.weight;
      h.grad_weight.noalias() = x.transpose() * h.hidden;
      h.grad_bias = x.colwise().sum().transpose();
    };
  });
}

/// Only the three products of the same shapes (logits, ∂H, ∂W) into a
/// logits buffer kept between calls: the floor for any implementation.
void BM_LinearRDrop_GemmOnly(benchmark::State& state) {
  run(state, [](Head& h, int) {
    auto logits = std::make_shared<Matrix>(h.hidden.rows(), h.weight.rows());
    logits->setZero();
    return [&h, logits] {
      Matrix& x = *logits;
      x.noalias() = h.hidden * h.weight.transpose();
      h.grad_hidden.noalias() = x * h.weight;
      h.grad_weight.noalias() = x.transpose() * h.hidden;
      benchmark::ClobberMemory();
    };
  });
}

// The shapes of issue 12: vocabularies of 32000 and 128256 (Llama 3's), the
// unfused logits of both copies 1.25 GiB (5 and 10 times the fused loss's
// chunk of 260 and 512 pairs), hidden size 256; 1 and 2 threads.
void shapes(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2}) {
    b->Args({5120, 256, 32000, threads});
    b->Args({1280, 256, 128256, threads});
  }
}

// Memory against tokens: the fused loss's peak stays put while the unfused
// logits grow with the batch (hidden size 64 keeps these quick).
void tokens(benchmark::internal::Benchmark* b) {
  for (int pairs : {256, 512, 1024, 2048, 4096}) b->Args({pairs, 64, 32000, 1});
}

BENCHMARK(BM_LinearRDrop_Fused)->Apply(shapes)->Apply(tokens)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LinearRDrop_Unfused)->Apply(shapes)->Apply(tokens)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LinearRDrop_GemmOnly)->Apply(shapes)->Unit(benchmark::kMillisecond);

// No Google Benchmark memory manager: in 1.7.1 its result is not per
// repetition (interleaved repetitions' JSON held 0 or garbage such as
// 7236844123925471090 for max_bytes_used), while peak_extra_MiB is a
// counter of each repetition's own run.

}  // namespace
