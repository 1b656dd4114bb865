// Fuzz family "threads": the global thread setting (set_num_threads,
// num_threads); negative counts throw.
#include "check.hpp"

namespace fuzz::threads {

template <typename S>
void run(FuzzedDataProvider& in, int profile, int variant) {
  (void)profile;
  (void)variant;
  const int t = in.ConsumeIntegralInRange(-2, 3);
  EXPECT(t >= 0, rdrop::set_num_threads(t));
  if (t >= 0) FUZZ_REQUIRE(rdrop::num_threads() == t);
  rdrop::set_num_threads(0);
}

template void run<float>(FuzzedDataProvider&, int, int);
template void run<double>(FuzzedDataProvider&, int, int);

}  // namespace fuzz::threads
