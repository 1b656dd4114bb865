// libFuzzer harness over rdrop's public API (clang++ -fsanitize=fuzzer,
// address,undefined; see tests/fuzz/run_fuzz.sh). One binary; the input
// picks the scalar type (float or double), a value profile, and a family
// from the table below; the family picks what to call and with what:
// shapes (0 rows, 1 class, odd row counts, long rows), layouts,
// normalizations, labels, masks, α, ε, and logits that may hold NaN, ±inf,
// ±1e30, ±1e4 above the rest, huge finite values and denormals (the
// decoder: input.hpp).
//
// An independent oracle decides from the arguments alone whether a call is
// valid. The properties checked (abort() on a violation; check.hpp):
//  - no crash, no sanitizer report, no exception other than
//    std::invalid_argument;
//  - a call throws if and only if the oracle calls it invalid, and then
//    leaves every output exactly as it was (shape and contents);
//  - valid, finite, bounded input (see `bounded`) gives a finite loss,
//    finite gradients, finite per-row values and a non-negative loss;
//  - a NaN or +inf in a row that takes part in the loss makes the loss NaN
//    (the documented contract, docs/inputs_and_errors.md); masked rows are
//    never read: their gradient is exactly 0, whatever they hold; rows of
//    pairs without non-finite values keep a finite gradient;
//  - every input kind (row-major, column-major, strided Map, transposed
//    view, TensorMap) and output kind gives bitwise the same results, and
//    Evaluate, EvaluateWithGradient, EvaluateTerms + Normalize and
//    WithCounts(Count) agree bitwise;
//  - identical copies have divergence exactly 0;
//  - in place equals out of place; per-pair calls check row lengths;
//    Jensen-Shannon is shift invariant (safety.cpp);
//  - RDropLinearLoss throws exactly when RDropLoss on its logits does,
//    agrees with that unfused pipeline, and is bitwise the same for any
//    thread count and in place (linear.cpp);
//  - bfloat16 and half logits give what the float loss gives on the logits
//    widened to float, the gradient rounded once: they throw exactly when it
//    does, bitwise for the softmax KL divergences, up to float rounding for
//    the staged losses, bitwise in place and for another thread count
//    (two_byte.cpp).
//
// FUZZ_RDROP_STATS=1 prints at exit how many executions each family had.
#include "check.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace fuzz {

// A family: one file, <family>.cpp, defining run<S>(in, profile, variant)
// in namespace fuzz::<family> for float and double. It gets `slots` of the
// dispatcher's choices (its share of the inputs) and is told which one
// (variant 0 .. slots - 1). Adding a family: its file, its declaration and
// its row below. (Appending a row changes what every input decodes to:
// re-merge the corpus, tests/fuzz/README.md.)
using Run = void (*)(FuzzedDataProvider& in, int profile, int variant);
namespace losses { template <typename S> void run(FuzzedDataProvider&, int, int); }
namespace divergences { template <typename S> void run(FuzzedDataProvider&, int, int); }
namespace kernels { template <typename S> void run(FuzzedDataProvider&, int, int); }
namespace dropout { template <typename S> void run(FuzzedDataProvider&, int, int); }
namespace duplicate { template <typename S> void run(FuzzedDataProvider&, int, int); }
namespace threads { template <typename S> void run(FuzzedDataProvider&, int, int); }
namespace safety { template <typename S> void run(FuzzedDataProvider&, int, int); }
namespace linear { template <typename S> void run(FuzzedDataProvider&, int, int); }
namespace two_byte { template <typename S> void run(FuzzedDataProvider&, int, int); }

struct Family {
  const char* name;
  int slots;
  Run run_float, run_double;
};
// losses: variants 0-2 SymmetricKL, 3 KL, 4 JS, 5 multi-label, 6 regression,
// 7 CrossEntropy; dropout: 0 Dropout, 1 MeasureConsistency; safety: 0 in-place
// gradients, 1 per-pair row lengths, 2 Jensen-Shannon shift invariance;
// two_byte (bfloat16 for float, half for double): 0-1 SymmetricKL, 2 KL,
// 3 JS, 4 multi-label, 5 regression, 6 the divergence functors.
constexpr Family families[] = {
    {"losses", 8, losses::run<float>, losses::run<double>},
    {"divergences", 1, divergences::run<float>, divergences::run<double>},
    {"kernels", 2, kernels::run<float>, kernels::run<double>},
    {"dropout", 2, dropout::run<float>, dropout::run<double>},
    {"duplicate", 1, duplicate::run<float>, duplicate::run<double>},
    {"threads", 1, threads::run<float>, threads::run<double>},
    {"safety", 3, safety::run<float>, safety::run<double>},
    {"linear", 2, linear::run<float>, linear::run<double>},
    {"two_byte", 7, two_byte::run<float>, two_byte::run<double>},
};
constexpr std::size_t family_count = sizeof(families) / sizeof(families[0]);

// Executions per family, printed at exit with FUZZ_RDROP_STATS=1.
struct Hits {
  long n[family_count] = {};
  ~Hits() {
    if (!std::getenv("FUZZ_RDROP_STATS")) return;
    for (std::size_t i = 0; i < family_count; ++i) std::fprintf(stderr, "family %s: %ld executions\n", families[i].name, n[i]);
  }
};
inline Hits hits;

constexpr int total_slots() {
  int n = 0;
  for (const Family& f : families) n += f.slots;
  return n;
}

}  // namespace fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::verbose = std::getenv("FUZZ_RDROP_VERBOSE") != nullptr;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const bool as_double = in.ConsumeBool();
  const int profile = in.ConsumeIntegralInRange(0, 3) % 3;  // moderate twice as often
  int slot = in.ConsumeIntegralInRange(0, fuzz::total_slots() - 1);
  for (std::size_t i = 0; i < fuzz::family_count; ++i) {
    const fuzz::Family& f = fuzz::families[i];
    if (slot < f.slots) {
      ++fuzz::hits.n[i];
      if (fuzz::verbose) std::fprintf(stderr, "family %s, variant %d\n", f.name, slot);
      (as_double ? f.run_double : f.run_float)(in, profile, slot);
      break;
    }
    slot -= f.slots;
  }
  return 0;
}
