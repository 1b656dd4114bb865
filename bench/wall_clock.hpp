// Rates per wall-clock second for rdrop_bench. Google Benchmark's own rates
// divide by the main thread's CPU time, which misstates runs whose work is
// done by other threads, and UseRealTime would append "/real_time" to the
// names, which must stay BM_<Name>/<args...>.
#pragma once

#include <benchmark/benchmark.h>

#include <chrono>

namespace rdrop_bench {

/// Runs `body` once untimed, then once per iteration, and reports
/// items_per_second (elements per call × calls per wall-clock second) and
/// bytes_per_second (those elements × bytes_per_element).
///
/// The untimed call is a warm-up: on this project's VM, memory left idle for
/// a few seconds is slow to touch again (host-side page work: a sequence
/// sweep over 2 GB took 250-330 ms after 20 s idle, 75 ms back to back), and
/// the long benchmarks run one iteration per repetition, with the rest of
/// the suite interleaved between them. A training loop reuses its buffers
/// every step, so the warm state is the one to time.
template <typename Body>
void run_wall_clock(benchmark::State& state, double elements_per_call, double bytes_per_element,
                    Body&& body) {
  body();
  benchmark::ClobberMemory();
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    body();
    benchmark::ClobberMemory();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double elements = static_cast<double>(state.iterations()) * elements_per_call;
  state.counters["items_per_second"] = benchmark::Counter(elements / seconds);
  state.counters["bytes_per_second"] = benchmark::Counter(
      elements * bytes_per_element / seconds, benchmark::Counter::kDefaults, benchmark::Counter::kIs1024);
}

}  // namespace rdrop_bench
