// R-Drop on libtorch tensors, forward and backward (issue 14): the official
// R-Drop code's form in torch ops, the fastest torch compositions found, the
// rdrop::torch adapter, and rdrop's Eigen call on the same buffers. Every
// benchmark is BM_Torch_<Form>/<pairs>/<classes>/<threads> and reports
// items_per_second (logit elements, 2·pairs·classes per call) per
// wall-clock second. Stacked layout (torch.cat([x, x])), α = 1, the
// Keras-code normalization (mean cross-entropy + α/4 · mean of both KLs
// over the duplicated batch) in every form.
#include <rdrop/rdrop.hpp>
#include <rdrop/torch.hpp>

#include "../check_only.hpp"
#include "../memory_counter.hpp"
#include "../wall_clock.hpp"

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <dlfcn.h>
#include <malloc.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <utility>

namespace {

namespace F = torch::nn::functional;
constexpr double kAlpha = 1.0;

struct Data {
  at::Tensor logits;  // [2·pairs, classes] float, stacked copies
  at::Tensor labels;  // [2·pairs] int64, per row
  at::Tensor labels_per_sample;  // [pairs]
};

Data& data_for(int64_t pairs, int64_t classes) {
  static std::map<std::pair<int64_t, int64_t>, std::unique_ptr<Data>> cache;
  std::unique_ptr<Data>& slot = cache[{pairs, classes}];
  if (!slot) {
    slot = std::make_unique<Data>();
    torch::manual_seed(7);
    const at::Tensor base = 4 * torch::rand({pairs, classes}) - 2;
    slot->logits = at::cat({base, base}).add_(0.1 * torch::randn({2 * pairs, classes})).contiguous();
    slot->labels_per_sample = torch::randint(0, classes, {pairs}, torch::kLong);
    slot->labels = at::cat({slot->labels_per_sample, slot->labels_per_sample});
  }
  return *slot;
}

/// Counters of this repetition alone (Google Benchmark 1.7's memory
/// manager is not per repetition): peak_bytes, the most memory in use
/// during the timed calls beyond what was in use before them, and
/// allocations per call.
template <typename Timed>
void with_memory_counters(benchmark::State& state, Timed&& timed) {
  const std::int64_t before = rdrop_bench::bytes_in_use(), allocations = rdrop_bench::allocations();
  rdrop_bench::reset_peak();
  timed();
  state.counters["peak_bytes"] = benchmark::Counter(static_cast<double>(rdrop_bench::peak_bytes() - before));
  state.counters["allocations_per_call"] = benchmark::Counter(
      static_cast<double>(rdrop_bench::allocations() - allocations) / static_cast<double>(std::max<int64_t>(state.iterations(), 1)));
}

template <typename Body>
void run(benchmark::State& state, Body&& body) {
  const int64_t pairs = state.range(0), classes = state.range(1);
  const int threads = static_cast<int>(state.range(2));
  at::set_num_threads(threads);
  rdrop::set_num_threads(threads);
  Data& d = data_for(pairs, classes);
  with_memory_counters(state, [&] {
    rdrop_bench::run_wall_clock(state, 2.0 * static_cast<double>(pairs * classes), 8.0, [&] { body(d); });
  });
}

/// The official R-Drop code: cross-entropy + α·(KL(p‖q) + KL(q‖p))/2 with
/// kl_div(log_softmax(·), softmax(·)), under autograd; scaled here to the
/// Keras-code normalization like the other forms.
void BM_Torch_Official(benchmark::State& state) {
  run(state, [](const Data& d) {
    const at::Tensor x = d.logits.detach().requires_grad_(true);
    const at::Tensor ce = F::cross_entropy(x, d.labels);
    const auto halves = x.chunk(2, 0);
    const auto opts = F::KLDivFuncOptions().reduction(torch::kNone);
    const at::Tensor p_loss = F::kl_div(at::log_softmax(halves[0], -1), at::softmax(halves[1], -1), opts).sum();
    const at::Tensor q_loss = F::kl_div(at::log_softmax(halves[1], -1), at::softmax(halves[0], -1), opts).sum();
    const at::Tensor loss = ce + kAlpha / 4 * (p_loss + q_loss) / static_cast<double>(halves[0].size(0));
    loss.backward();
    benchmark::DoNotOptimize(x.grad().data_ptr());
  });
}

/// Log-softmax once per row, reused by nll_loss and by kl_div with log
/// targets, under autograd.
void BM_Torch_LogTarget(benchmark::State& state) {
  run(state, [](const Data& d) {
    const at::Tensor x = d.logits.detach().requires_grad_(true);
    const at::Tensor lp = at::log_softmax(x, -1);
    const at::Tensor ce = F::nll_loss(lp, d.labels);
    const auto halves = lp.chunk(2, 0);
    const auto opts = F::KLDivFuncOptions().reduction(torch::kSum).log_target(true);
    const at::Tensor kl = F::kl_div(halves[0], halves[1], opts) + F::kl_div(halves[1], halves[0], opts);
    const at::Tensor loss = ce + kAlpha / 4 * kl / static_cast<double>(halves[0].size(0));
    loss.backward();
    benchmark::DoNotOptimize(x.grad().data_ptr());
  });
}

/// No autograd: the loss and its analytic gradient in torch ops,
///   ∂/∂a = (p − onehot)/n + w·[p⊙(d − KL(p‖q)) + p − q],  d = log p − log q
/// (and symmetrically for b), w = α/(4·pairs).
void BM_Torch_Analytic(benchmark::State& state) {
  run(state, [](const Data& d) {
    torch::NoGradGuard no_grad;
    const at::Tensor lp = at::log_softmax(d.logits, -1);
    const at::Tensor p = lp.exp();
    const auto lh = lp.chunk(2, 0), ph = p.chunk(2, 0);
    const at::Tensor diff = lh[0] - lh[1];  // log p − log q
    const at::Tensor kl_pq = (ph[0] * diff).sum(-1, true), kl_qp = -(ph[1] * diff).sum(-1, true);
    const double n = static_cast<double>(d.logits.size(0)), w = kAlpha / (4 * static_cast<double>(ph[0].size(0)));
    const at::Tensor ce = -lp.gather(1, d.labels.unsqueeze(1)).sum() / n;
    const at::Tensor loss = ce + w * (kl_pq.sum() + kl_qp.sum());
    at::Tensor grad = p / n;
    grad.scatter_add_(1, d.labels.unsqueeze(1), at::full({d.logits.size(0), 1}, -1.0 / n));
    const auto gh = grad.chunk(2, 0);
    const at::Tensor p_minus_q = ph[0] - ph[1];
    gh[0].add_(w * (ph[0] * (diff - kl_pq) + p_minus_q));
    gh[1].add_(w * (ph[1] * (-diff - kl_qp) - p_minus_q));
    benchmark::DoNotOptimize(loss.data_ptr());
    benchmark::DoNotOptimize(grad.data_ptr());
  });
}

/// The options every adapter form uses: stacked copies, α = kAlpha.
rdrop::torch::RDropLossOptions adapter_options() {
  return rdrop::torch::RDropLossOptions().layout(rdrop::Layout::Stacked).alpha(kAlpha);
}

/// The adapter: rdrop::torch::rdrop_loss forward, loss.backward().
void BM_Torch_Adapter(benchmark::State& state) {
  run(state, [](const Data& d) {
    const at::Tensor x = d.logits.detach().requires_grad_(true);
    rdrop::torch::rdrop_loss(x, d.labels_per_sample, adapter_options()).backward();
    benchmark::DoNotOptimize(x.grad().data_ptr());
  });
}

/// rdrop's Eigen call (one fused sweep, value and gradient together) on
/// the buffers of `logits` (float or bfloat16, element type E) into `grad`.
template <typename E>
float eigen_call(const at::Tensor& logits, const at::Tensor& grad, const Data& d) {
  using Matrix = Eigen::Matrix<E, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::Map<const Matrix> x(reinterpret_cast<const E*>(logits.data_ptr()), logits.size(0), logits.size(1));
  Eigen::Map<Matrix> g(reinterpret_cast<E*>(grad.data_ptr()), grad.size(0), grad.size(1));
  const Eigen::Map<const Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1>> y(d.labels_per_sample.data_ptr<std::int64_t>(),
                                                                           d.labels_per_sample.numel());
  rdrop::RDropOptions<float> o;
  o.layout = rdrop::Layout::Stacked;
  o.alpha = static_cast<float>(kAlpha);
  return rdrop::RDropLoss<float>(o).EvaluateWithGradient(x, y, g);
}

/// rdrop's Eigen call on the same buffers, the gradient into a buffer kept
/// across calls: what the adapter costs without torch around it.
void BM_Torch_EigenCall(benchmark::State& state) {
  static at::Tensor grad;
  run(state, [](const Data& d) {
    if (!grad.defined() || grad.sizes() != d.logits.sizes()) grad = at::empty_like(d.logits);
    benchmark::DoNotOptimize(eigen_call<float>(d.logits, grad, d));
  });
}

/// An evaluation call: rdrop_loss under NoGradGuard, on logits that
/// require grad (as a model's output does): the value only.
void BM_Torch_AdapterEval(benchmark::State& state) {
  run(state, [](const Data& d) {
    const at::Tensor x = d.logits.detach().requires_grad_(true);
    const torch::NoGradGuard no_grad;
    benchmark::DoNotOptimize(rdrop::torch::rdrop_loss(x, d.labels_per_sample, adapter_options()).item<float>());
  });
}

/// bfloat16 logits through the adapter, the loss scaled by 1024 before
/// backward: the forward computes the value, the backward the gradient at
/// the scale, rounded once (two sweeps).
void BM_Torch_AdapterBF16(benchmark::State& state) {
  static std::map<const Data*, at::Tensor> bf16;
  run(state, [](const Data& d) {
    at::Tensor& logits = bf16[&d];
    if (!logits.defined()) logits = d.logits.to(at::kBFloat16);
    const at::Tensor x = logits.detach().requires_grad_(true);
    (rdrop::torch::rdrop_loss(x, d.labels_per_sample, adapter_options()) * 1024.0).backward();
    benchmark::DoNotOptimize(x.grad().data_ptr());
  });
}

/// rdrop's one fused sweep on the same bfloat16 logits (value and gradient
/// together, into a kept buffer): what the forward did before the
/// gradient was computed at grad_output's scale.
void BM_Torch_EigenCallBF16(benchmark::State& state) {
  static std::map<const Data*, std::pair<at::Tensor, at::Tensor>> bf16;
  run(state, [](const Data& d) {
    auto& [logits, grad] = bf16[&d];
    if (!logits.defined()) {
      logits = d.logits.to(at::kBFloat16);
      grad = at::empty_like(logits);
    }
    benchmark::DoNotOptimize(eigen_call<Eigen::bfloat16>(logits, grad, d));
  });
}

/// One training step of the fused output layer, linear_loss forward and
/// backward, BM_Torch_Linear{Reused,Fresh}/<pairs>/<hidden>/<vocab>/<threads>:
/// Reused keeps the chunk buffers between steps (the adapter's behaviour),
/// Fresh frees them after every step (what it did before). Run it with
/// RDROP_BENCH_GLIBC_DEFAULTS=1 to see what fresh pages cost a loop that
/// has not tuned malloc.
template <bool Fresh>
void linear_step(benchmark::State& state) {
  const int64_t pairs = state.range(0), hidden = state.range(1), vocab = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  at::set_num_threads(threads);
  rdrop::set_num_threads(threads);
  static std::map<std::pair<int64_t, int64_t>, std::pair<at::Tensor, at::Tensor>> cache;
  auto& [h, w] = cache[{pairs * 1000003 + hidden, vocab}];
  if (!h.defined()) {
    torch::manual_seed(5);
    const at::Tensor base = torch::randn({pairs, hidden});
    h = at::cat({base, base + 0.1 * torch::randn({pairs, hidden})});
    w = 0.05 * torch::randn({vocab, hidden});
  }
  const at::Tensor y = torch::randint(0, vocab, {pairs}, torch::kLong);
  const auto o = rdrop::torch::LinearLossTorchOptions().layout(rdrop::Layout::Stacked);
  rdrop::torch::release_linear_buffers();  // each repetition starts without buffers, whichever ran before
  with_memory_counters(state, [&] {
    rdrop_bench::run_wall_clock(state, 2.0 * static_cast<double>(pairs * vocab), 4.0, [&] {
      const at::Tensor hh = h.detach().requires_grad_(true), ww = w.detach().requires_grad_(true);
      rdrop::torch::linear_loss(hh, ww, at::Tensor(), y, o).backward();
      benchmark::DoNotOptimize(ww.grad().data_ptr());
      if (Fresh) rdrop::torch::release_linear_buffers();
    });
  });
}
void BM_Torch_LinearReused(benchmark::State& state) { linear_step<false>(state); }
void BM_Torch_LinearFresh(benchmark::State& state) { linear_step<true>(state); }

/// One training step of an output layer with R-Drop, forward and backward,
/// from hidden states [2·pairs, hidden] and a weight [vocab, hidden] in
/// float or bfloat16 (Stacked copies, α = kAlpha, no bias),
/// BM_TorchLinear_<Form>_<dtype>/<pairs>/<hidden>/<vocab>/<threads>:
///   Fused         rdrop::torch::linear_loss (Path::Auto: products as
///                 Products::Auto picks them, no logits of the batch held);
///   FusedEigen    the same with Products::Eigen (float);
///   ATenPath      the same with Path::ATen forced on the CPU;
///   Composition   at::linear, then the LogTarget form under autograd (the
///                 fastest autograd form above), 2-byte logits taken to float;
///   ProductsOnly  the step's three products alone: H·Wᵀ, G·W and Gᵀ·H.
/// peak_bytes is this repetition's own (with_memory_counters).
enum class LinearForm { Fused, FusedEigen, ATenPath, Composition, ProductsOnly };

/// at::set_num_threads reaches OpenBLAS's OpenMP build but not its pthread
/// build, which takes every core unless told otherwise (Debian's libtorch
/// multiplies through whichever libblas.so.3 is installed). Tells it, so
/// that a benchmark's thread count holds for its products too.
void set_blas_threads(int threads) {
  using SetThreads = void (*)(int);
  if (auto* set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(threads);
}

template <LinearForm Form, bool BF16>
void BM_TorchLinear(benchmark::State& state) {
  const int64_t pairs = state.range(0), hidden = state.range(1), vocab = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  at::set_num_threads(threads);
  rdrop::set_num_threads(threads);
  set_blas_threads(threads);
  const auto dtype = BF16 ? at::kBFloat16 : at::kFloat;
  at::Tensor h, w, y, g;
  {
    torch::manual_seed(5);
    const at::Tensor base = torch::randn({pairs, hidden});
    h = at::cat({base, base + 0.1 * torch::randn({pairs, hidden})}).to(dtype);
    w = (0.05 * torch::randn({vocab, hidden})).to(dtype);
    y = torch::randint(0, vocab, {pairs}, torch::kLong);
    if (Form == LinearForm::ProductsOnly) g = (1e-3 * torch::randn({2 * pairs, vocab})).to(dtype);
  }
  // What earlier benchmarks freed goes back to the system first: with the
  // heap kept (main() below) and a few arenas' worth of freed gigabytes
  // from the compositions, the interleaved run grew past the VM's 24 GiB
  // and was killed. The untimed warm-up call faults the pages in again.
  malloc_trim(0);
  auto o = rdrop::torch::LinearLossTorchOptions().layout(rdrop::Layout::Stacked).alpha(kAlpha);
  if (Form == LinearForm::FusedEigen) o.products(rdrop::torch::Products::Eigen);
  if (Form == LinearForm::ATenPath) o.path(rdrop::torch::Path::ATen);
  // The chunk's limits from the environment, to choose their defaults by
  // measurement (bench/README.md); unset: the library's defaults.
  if (const char* pairs_env = std::getenv("RDROP_BENCH_CHUNK_PAIRS")) o.chunk_pairs(std::stoull(pairs_env));
  if (const char* bytes_env = std::getenv("RDROP_BENCH_CHUNK_BYTES")) o.chunk_bytes(std::stoull(bytes_env));
  rdrop::torch::release_linear_buffers();
  with_memory_counters(state, [&] {
    rdrop_bench::run_wall_clock(state, 2.0 * static_cast<double>(pairs * vocab), 4.0, [&] {
      if constexpr (Form == LinearForm::ProductsOnly) {
        torch::NoGradGuard no_grad;
        benchmark::DoNotOptimize(at::mm(h, w.t()).data_ptr());
        benchmark::DoNotOptimize(at::mm(g, w).data_ptr());
        benchmark::DoNotOptimize(at::mm(g.t(), h).data_ptr());
        return;
      }
      const at::Tensor hh = h.detach().requires_grad_(true), ww = w.detach().requires_grad_(true);
      if constexpr (Form == LinearForm::Composition) {
        const at::Tensor lp = at::log_softmax(at::linear(hh, ww).to(at::kFloat), -1);
        const at::Tensor ce = F::nll_loss(lp, at::cat({y, y}));
        const auto halves = lp.chunk(2, 0);
        const auto opts = F::KLDivFuncOptions().reduction(torch::kSum).log_target(true);
        const at::Tensor kl = F::kl_div(halves[0], halves[1], opts) + F::kl_div(halves[1], halves[0], opts);
        (ce + kAlpha / 4 * kl / static_cast<double>(pairs)).backward();
      } else {
        rdrop::torch::linear_loss(hh, ww, at::Tensor(), y, o).backward();
      }
      benchmark::DoNotOptimize(ww.grad().data_ptr());
      benchmark::DoNotOptimize(hh.grad().data_ptr());
    });
  });
}

const bool registered = [] {
  const std::pair<int64_t, int64_t> shapes[] = {{4096, 1000}, {1024, 32000}};
  const std::pair<const char*, void (*)(benchmark::State&)> forms[] = {
      {"BM_Torch_Official", BM_Torch_Official}, {"BM_Torch_LogTarget", BM_Torch_LogTarget},
      {"BM_Torch_Analytic", BM_Torch_Analytic}, {"BM_Torch_Adapter", BM_Torch_Adapter},
      {"BM_Torch_EigenCall", BM_Torch_EigenCall}, {"BM_Torch_AdapterEval", BM_Torch_AdapterEval},
      {"BM_Torch_AdapterBF16", BM_Torch_AdapterBF16}, {"BM_Torch_EigenCallBF16", BM_Torch_EigenCallBF16}};
  for (const auto& [pairs, classes] : shapes) {
    for (const auto& [name, function] : forms) {
      for (int64_t threads : {1, 2}) {
        benchmark::RegisterBenchmark(name, function)->Args({pairs, classes, threads});
      }
    }
  }
  for (int64_t threads : {1, 2}) {
    benchmark::RegisterBenchmark("BM_Torch_LinearReused", BM_Torch_LinearReused)->Args({512, 256, 32000, threads});
    benchmark::RegisterBenchmark("BM_Torch_LinearFresh", BM_Torch_LinearFresh)->Args({512, 256, 32000, threads});
  }
  using L = LinearForm;
  const std::pair<const char*, void (*)(benchmark::State&)> linear_forms[] = {
      {"BM_TorchLinear_Fused_float", BM_TorchLinear<L::Fused, false>},
      {"BM_TorchLinear_Fused_bf16", BM_TorchLinear<L::Fused, true>},
      {"BM_TorchLinear_FusedEigen_float", BM_TorchLinear<L::FusedEigen, false>},
      {"BM_TorchLinear_ATenPath_float", BM_TorchLinear<L::ATenPath, false>},
      {"BM_TorchLinear_Composition_float", BM_TorchLinear<L::Composition, false>},
      {"BM_TorchLinear_Composition_bf16", BM_TorchLinear<L::Composition, true>},
      {"BM_TorchLinear_ProductsOnly_float", BM_TorchLinear<L::ProductsOnly, false>},
      {"BM_TorchLinear_ProductsOnly_bf16", BM_TorchLinear<L::ProductsOnly, true>}};
  for (const auto& [pairs, vocab] : {std::pair<int64_t, int64_t>{5120, 32000}, {1280, 128256}}) {
    for (const auto& [name, function] : linear_forms) {
      for (int64_t threads : {1, 2}) benchmark::RegisterBenchmark(name, function)->Args({pairs, 256, vocab, threads});
    }
  }
  return true;
}();

/// The BLAS torch multiplies with, for the run's context: OpenBLAS's
/// configuration (USE_OPENMP for its OpenMP build) or that it is another.
std::string blas_in_use() {
  at::mm(at::ones({2, 2}), at::ones({2, 2}));  // loads the BLAS where torch loads it lazily
  using GetConfig = char* (*)();
  if (auto* config = reinterpret_cast<GetConfig>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) return config();
  return "not OpenBLAS (e.g. the reference BLAS: see docs/torch.md, \"Which BLAS\")";
}

}  // namespace

// Freed memory stays in the heap for every form alike: glibc otherwise
// serves each allocation above 32 MiB with fresh pages (mmap), and on the
// benchmark VM a page fault costs about 10 us, 0.6 s for one gradient of
// 1024 x 32000 x 2 floats, more than any form's arithmetic. A training
// loop allocating the same tensors every step wants the same setting.
int main(int argc, char** argv) {
  if (rdrop_bench::refuse_check_only_build(argv[0])) return 2;
  if (std::getenv("RDROP_BENCH_GLIBC_DEFAULTS") == nullptr) {
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("blas", blas_in_use());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
