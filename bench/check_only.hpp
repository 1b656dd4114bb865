// A benchmark binary built with RDROP_BENCHMARKS_CHECK_ONLY (unoptimized, by
// the test command, only to check that the benchmarks compile and link)
// refuses to run: its timings would mean nothing.
#pragma once

#include <cstdio>

namespace rdrop_bench {

/// True (after saying why on stderr) in a check-only build.
inline bool refuse_check_only_build([[maybe_unused]] const char* program) {
#ifdef RDROP_BENCH_CHECK_ONLY
  std::fprintf(stderr,
               "%s: built with RDROP_BENCHMARKS_CHECK_ONLY (unoptimized, only to check that the benchmarks compile "
               "and link); its timings would mean nothing: run the benchmarks with bench/run_bench.sh or "
               "bench/run_torch_bench.sh\n",
               program);
  return true;
#else
  return false;
#endif
}

}  // namespace rdrop_bench
