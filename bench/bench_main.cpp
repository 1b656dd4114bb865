// rdrop's benchmark binary: every bench/*.cpp registers its benchmarks and
// this file supplies the one main(). Run the whole suite with
// bench/run_bench.sh (see bench/README.md).
#include <benchmark/benchmark.h>

BENCHMARK_MAIN();
