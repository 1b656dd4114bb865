// The paired symmetric-KL and R-Drop benchmarks and the two rooflines they
// are judged against (issue 3), in float and in 2-byte storage (issue 13). Every benchmark is BM_<Name>/<pairs>/<classes>/<threads>
// and reports items_per_second (logit elements, 2·pairs·classes per call)
// and bytes_per_second (the bytes it must move at least), both per
// wall-clock second so that the two-thread runs are measured honestly.
#include <rdrop/kernels.hpp>
#include <rdrop/rdrop.hpp>

#include "wall_clock.hpp"

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <map>
#include <memory>
#include <random>
#include <utility>
#include <vector>

namespace {

using Scalar = float;
using Index = Eigen::Index;
using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Array = Eigen::Array<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ColumnArray = Eigen::Array<Scalar, Eigen::Dynamic, 1>;
using ConstRow = Eigen::Map<const Eigen::Array<Scalar, 1, Eigen::Dynamic>>;
using Row = Eigen::Map<Eigen::Array<Scalar, 1, Eigen::Dynamic>>;

/// Logits and a gradient stored in a 2-byte type T.
template <typename T>
struct TwoByte {
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> logits, grad;
};

/// Logits of a duplicated batch, stacked: rows [0, pairs) are the first copy
/// (a), rows [pairs, 2·pairs) the second (b), as torch.cat([x, x]) gives.
/// The copies differ by a little noise, like two dropout passes. One set per
/// shape, shared by every benchmark of that shape.
struct Data {
  Index pairs = 0;
  Index classes = 0;
  Matrix logits;
  Matrix grad;
  Eigen::VectorXi labels;
  /// The logits rounded to bfloat16 and half, and gradients of those types
  /// (made on first use: 2-byte benchmarks run on two shapes only).
  TwoByte<Eigen::bfloat16> bf16;
  TwoByte<Eigen::half> half;

  const Scalar* a() const { return logits.data(); }
  const Scalar* b() const { return logits.data() + pairs * classes; }
  Scalar* grad_a() { return grad.data(); }
  Scalar* grad_b() { return grad.data() + pairs * classes; }
  Eigen::Map<const Matrix> first() const { return {a(), pairs, classes}; }
  Eigen::Map<const Matrix> second() const { return {b(), pairs, classes}; }
  Eigen::Map<Matrix> grad_first() { return {grad_a(), pairs, classes}; }
  Eigen::Map<Matrix> grad_second() { return {grad_b(), pairs, classes}; }
};

Data& data_for(Index pairs, Index classes) {
  // Kept for the whole run (about 0.6 GB for the three shapes), so that
  // interleaved runs (--benchmark_enable_random_interleaving) do not rebuild
  // them.
  static std::map<std::pair<Index, Index>, std::unique_ptr<Data>> cache;
  std::unique_ptr<Data>& slot = cache[{pairs, classes}];
  if (!slot) {
    slot = std::make_unique<Data>();
    Data& d = *slot;
    d.pairs = pairs;
    d.classes = classes;
    std::srand(7);
    const Matrix base = Matrix::Random(pairs, classes) * Scalar(4);
    d.logits.resize(2 * pairs, classes);
    d.logits.topRows(pairs) = base + Scalar(0.1) * Matrix::Random(pairs, classes);
    d.logits.bottomRows(pairs) = base + Scalar(0.1) * Matrix::Random(pairs, classes);
    d.grad = Matrix::Zero(2 * pairs, classes);  // touched, so no page faults get timed
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> label(0, static_cast<int>(classes) - 1);
    d.labels.resize(pairs);
    for (Index i = 0; i < pairs; ++i) d.labels(i) = label(rng);
  }
  return *slot;
}

/// Runs `body` once per iteration; rates per wall-clock second (wall_clock.hpp).
template <typename Body>
void run(benchmark::State& state, const Data& d, int bytes_per_element, Body&& body) {
  const double elements = 2.0 * static_cast<double>(d.pairs) * static_cast<double>(d.classes);
  rdrop_bench::run_wall_clock(state, elements, bytes_per_element, std::forward<Body>(body));
}

Index arg(const benchmark::State& state, int i) { return static_cast<Index>(state.range(i)); }

template <typename T>
TwoByte<T>& two_byte(Data& d) {
  TwoByte<T>& t = [&]() -> TwoByte<T>& {
    if constexpr (std::is_same_v<T, Eigen::bfloat16>) {
      return d.bf16;
    } else {
      return d.half;
    }
  }();
  if (t.logits.size() == 0) {
    t.logits = d.logits.cast<T>();
    t.grad = t.logits;  // touched, so no page faults get timed
  }
  return t;
}

constexpr int kReadWrite = 2 * static_cast<int>(sizeof(Scalar));  // each logit read, its gradient written
constexpr int kReadOnly = static_cast<int>(sizeof(Scalar));
constexpr int kReadWrite2 = 2 * 2;  // the same in 2-byte elements

/// The fused paired symmetric KL, forward and backward, through the raw
/// pointer kernel: mean over pairs of ½[KL(p‖q) + KL(q‖p)] and both gradients.
void BM_PairedKL_Fused(benchmark::State& state) {
  Data& d = data_for(arg(state, 0), arg(state, 1));
  const int threads = static_cast<int>(state.range(2));
  const Index n = d.pairs, c = d.classes;
  const Scalar scale = Scalar(1) / static_cast<Scalar>(n);
  run(state, d, kReadWrite, [&] {
    benchmark::DoNotOptimize(rdrop::kernels::symmetric_kl_pairs(
        n, c, d.a(), c, d.b(), c, d.grad_a(), c, d.grad_b(), c, scale, nullptr, threads));
  });
}

/// BM_PairedKL_Fused on logits and gradients stored as T (bfloat16, half):
/// the same float arithmetic, half the bytes.
template <typename T>
void paired_kl_fused_two_byte(benchmark::State& state) {
  Data& d = data_for(arg(state, 0), arg(state, 1));
  TwoByte<T>& t = two_byte<T>(d);
  const int threads = static_cast<int>(state.range(2));
  const Index n = d.pairs, c = d.classes;
  const float scale = 1.f / static_cast<float>(n);
  const T* a = t.logits.data();
  T* g = t.grad.data();
  run(state, d, kReadWrite2, [&] {
    benchmark::DoNotOptimize(
        rdrop::kernels::symmetric_kl_pairs(n, c, a, c, a + n * c, c, g, c, g + n * c, c, scale, nullptr, threads));
  });
}
void BM_PairedKL_Fused_BF16(benchmark::State& state) { paired_kl_fused_two_byte<Eigen::bfloat16>(state); }
void BM_PairedKL_Fused_Half(benchmark::State& state) { paired_kl_fused_two_byte<Eigen::half>(state); }

/// Row-wise log-softmax, written the usual Eigen way.
Array log_softmax(const Eigen::Map<const Matrix>& x) {
  const ColumnArray max = x.array().rowwise().maxCoeff();
  const Array shifted = x.array().colwise() - max;
  const ColumnArray lse = shifted.exp().rowwise().sum().log();
  return shifted.colwise() - lse;
}

/// The same loss and gradients as BM_PairedKL_Fused, written as a user would
/// without rdrop: log-softmax, softmax, the two KL terms and the gradients
/// as separate Eigen expressions and temporaries (allocated, as local
/// temporaries are, on every call). Eigen runs coefficient-wise expressions
/// on one thread whatever Eigen::setNbThreads says, so the two-thread
/// variant shows what a user gets from that setting.
void BM_PairedKL_Unfused(benchmark::State& state) {
  Data& d = data_for(arg(state, 0), arg(state, 1));
  Eigen::setNbThreads(static_cast<int>(state.range(2)));
  const Scalar half_mean = Scalar(0.5) / static_cast<Scalar>(d.pairs);
  run(state, d, kReadWrite, [&] {
    const Array log_p = log_softmax(d.first());
    const Array log_q = log_softmax(d.second());
    const Array p = log_p.exp();
    const Array q = log_q.exp();
    const Array diff = log_p - log_q;
    const ColumnArray kl_pq = (p * diff).rowwise().sum();
    const ColumnArray kl_qp = -(q * diff).rowwise().sum();
    const Scalar loss = half_mean * (kl_pq + kl_qp).sum();
    d.grad_first().array() = half_mean * (p * (diff.colwise() - kl_pq) + p - q);
    d.grad_second().array() = half_mean * (q * ((-diff).colwise() - kl_qp) + q - p);
    benchmark::DoNotOptimize(loss);
  });
  Eigen::setNbThreads(0);
}

/// The temporaries of BM_PairedKL_UnfusedBuffers, allocated once.
struct UnfusedBuffers {
  Array shifted_p, shifted_q, log_p, log_q, p, q, diff;
  ColumnArray max, lse, kl_pq, kl_qp;
};

void log_softmax_into(const Eigen::Map<const Matrix>& x, UnfusedBuffers& t, Array& shifted, Array& out) {
  t.max = x.array().rowwise().maxCoeff();
  shifted = x.array().colwise() - t.max;
  t.lse = shifted.exp().rowwise().sum().log();
  out = shifted.colwise() - t.lse;
}

/// BM_PairedKL_Unfused with its temporaries allocated once and reused, as a
/// training loop that keeps its buffers would: the same expressions and
/// passes over memory, without the cost of fresh pages for every temporary
/// (which dominates BM_PairedKL_Unfused on this VM, where a page fault
/// costs tens of microseconds). Shown next to it for an honest comparison
/// of the arithmetic and memory traffic alone.
void BM_PairedKL_UnfusedBuffers(benchmark::State& state) {
  Data& d = data_for(arg(state, 0), arg(state, 1));
  Eigen::setNbThreads(static_cast<int>(state.range(2)));
  const Scalar half_mean = Scalar(0.5) / static_cast<Scalar>(d.pairs);
  UnfusedBuffers t;
  auto body = [&] {
    log_softmax_into(d.first(), t, t.shifted_p, t.log_p);
    log_softmax_into(d.second(), t, t.shifted_q, t.log_q);
    t.p = t.log_p.exp();
    t.q = t.log_q.exp();
    t.diff = t.log_p - t.log_q;
    t.kl_pq = (t.p * t.diff).rowwise().sum();
    t.kl_qp = -(t.q * t.diff).rowwise().sum();
    const Scalar loss = half_mean * (t.kl_pq + t.kl_qp).sum();
    d.grad_first().array() = half_mean * (t.p * (t.diff.colwise() - t.kl_pq) + t.p - t.q);
    d.grad_second().array() = half_mean * (t.q * ((-t.diff).colwise() - t.kl_qp) + t.q - t.p);
    benchmark::DoNotOptimize(loss);
  };
  body();  // allocates the buffers, untimed
  run(state, d, kReadWrite, body);
  Eigen::setNbThreads(0);
}

/// The whole R-Drop loss through the public functor: cross-entropy on both
/// copies + α·symmetric KL, gradient for all 2·pairs rows (stacked layout,
/// the Keras code's normalization).
void BM_RDrop_Fused(benchmark::State& state) {
  Data& d = data_for(arg(state, 0), arg(state, 1));
  rdrop::RDropOptions<Scalar> options;
  options.layout = rdrop::Layout::Stacked;
  options.threads = static_cast<int>(state.range(2));
  const rdrop::RDropLoss<Scalar> loss(options);
  run(state, d, kReadWrite, [&] {
    benchmark::DoNotOptimize(loss.EvaluateWithGradient(d.logits, d.labels, d.grad));
  });
}

/// BM_RDrop_Fused with bfloat16 logits and a bfloat16 gradient.
void BM_RDrop_Fused_BF16(benchmark::State& state) {
  Data& d = data_for(arg(state, 0), arg(state, 1));
  TwoByte<Eigen::bfloat16>& t = two_byte<Eigen::bfloat16>(d);
  rdrop::RDropOptions<Scalar> options;
  options.layout = rdrop::Layout::Stacked;
  options.threads = static_cast<int>(state.range(2));
  const rdrop::RDropLoss<Scalar> loss(options);
  run(state, d, kReadWrite2, [&] { benchmark::DoNotOptimize(loss.EvaluateWithGradient(t.logits, d.labels, t.grad)); });
}

/// The memory limit: read both rows of every pair once and write two
/// gradient rows, with trivial arithmetic; pairs split over threads exactly
/// as the kernels split them.
void BM_Roofline(benchmark::State& state) {
  Data& d = data_for(arg(state, 0), arg(state, 1));
  const int threads = static_cast<int>(state.range(2));
  const Index n = d.pairs, c = d.classes;
  run(state, d, kReadWrite, [&] {
    rdrop::detail::parallel_ranges(n, 2 * n * c, threads, [&](Index begin, Index end) {
      for (Index i = begin; i < end; ++i) {
        const ConstRow a(d.a() + i * c, c), b(d.b() + i * c, c);
        Row(d.grad_a() + i * c, c) = a - b;
        Row(d.grad_b() + i * c, c) = b - a;
      }
    });
  });
}

/// BM_Roofline in 2-byte elements: both rows of every pair read once and
/// copied into the two gradient rows (no arithmetic: a copy is the least
/// that reads two rows and writes two).
void BM_Roofline_BF16(benchmark::State& state) {
  Data& d = data_for(arg(state, 0), arg(state, 1));
  TwoByte<Eigen::bfloat16>& t = two_byte<Eigen::bfloat16>(d);
  const int threads = static_cast<int>(state.range(2));
  const Index n = d.pairs, c = d.classes;
  const auto row_bytes = static_cast<std::size_t>(c) * sizeof(Eigen::bfloat16);
  run(state, d, kReadWrite2, [&] {
    rdrop::detail::parallel_ranges(n, 2 * n * c, threads, [&](Index begin, Index end) {
      for (Index i = begin; i < end; ++i) {
        std::memcpy(static_cast<void*>(t.grad.data() + i * c), t.logits.data() + i * c, row_bytes);
        std::memcpy(static_cast<void*>(t.grad.data() + (n + i) * c), t.logits.data() + (n + i) * c, row_bytes);
      }
    });
  });
}

/// The arithmetic limit: two vectorized exps per element of each pair (one
/// per copy), summed per pair, nothing else.
void BM_ExpRoofline(benchmark::State& state) {
  Data& d = data_for(arg(state, 0), arg(state, 1));
  const int threads = static_cast<int>(state.range(2));
  const Index n = d.pairs, c = d.classes;
  std::vector<Scalar> per_pair(static_cast<std::size_t>(n));
  run(state, d, kReadOnly, [&] {
    rdrop::detail::parallel_ranges(n, 2 * n * c, threads, [&](Index begin, Index end) {
      for (Index i = begin; i < end; ++i) {
        const ConstRow a(d.a() + i * c, c), b(d.b() + i * c, c);
        per_pair[static_cast<std::size_t>(i)] = (a.exp() + b.exp()).sum();
      }
    });
    benchmark::DoNotOptimize(per_pair.data());
  });
}

/// Registered shape by shape, so that one data set serves every benchmark of
/// a shape (and runs whose times are compared sit next to each other).
const bool registered = [] {
  const std::pair<int64_t, int64_t> shapes[] = {{256, 10}, {4096, 1000}, {1024, 32000}};
  const std::pair<const char*, void (*)(benchmark::State&)> families[] = {
      {"BM_Roofline", BM_Roofline},         {"BM_ExpRoofline", BM_ExpRoofline},
      {"BM_PairedKL_Fused", BM_PairedKL_Fused}, {"BM_PairedKL_Unfused", BM_PairedKL_Unfused},
      {"BM_PairedKL_UnfusedBuffers", BM_PairedKL_UnfusedBuffers}, {"BM_RDrop_Fused", BM_RDrop_Fused}};
  // Logits and gradients in 2 bytes (issue 13), at the two larger shapes.
  const std::pair<const char*, void (*)(benchmark::State&)> two_byte_families[] = {
      {"BM_Roofline_BF16", BM_Roofline_BF16},
      {"BM_PairedKL_Fused_BF16", BM_PairedKL_Fused_BF16},
      {"BM_PairedKL_Fused_Half", BM_PairedKL_Fused_Half},
      {"BM_RDrop_Fused_BF16", BM_RDrop_Fused_BF16}};
  for (const auto& [pairs, classes] : shapes) {
    for (const auto& [name, function] : families) {
      for (int64_t threads : {1, 2}) {
        benchmark::RegisterBenchmark(name, function)->Args({pairs, classes, threads});
      }
    }
    if (classes < 1000) continue;
    for (const auto& [name, function] : two_byte_families) {
      for (int64_t threads : {1, 2}) {
        benchmark::RegisterBenchmark(name, function)->Args({pairs, classes, threads});
      }
    }
  }
  // The fused sweep on 32 pairs of 1000 classes (512 KB with the gradients),
  // which stay in L2 across calls: its arithmetic alone, without the memory
  // traffic of 4096 pairs, to set against BM_ExpRoofline/4096/1000/1 per
  // element (bench/README.md, "How the fused sweep spends its time").
  benchmark::RegisterBenchmark("BM_PairedKL_Fused", BM_PairedKL_Fused)->Args({32, 1000, 1});
  return true;
}();

}  // namespace
