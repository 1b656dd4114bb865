// rdrop's benchmark binary: every bench/*.cpp registers its benchmarks and
// this file supplies the one main() (BENCHMARK_MAIN's, refusing a
// check-only build). Run the whole suite with bench/run_bench.sh (see
// bench/README.md).
#include <benchmark/benchmark.h>

#include "check_only.hpp"

int main(int argc, char** argv) {
  if (rdrop_bench::refuse_check_only_build(argv[0])) return 2;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
