// Fuzz family "duplicate": Duplicate, FirstCopy and SecondCopy in both
// layouts, on matrices of either storage order and on label vectors.
#include "check.hpp"


namespace fuzz::duplicate {
namespace {

// Duplicate, FirstCopy, SecondCopy.

template <typename S>
void fuzz_duplicate(FuzzedDataProvider& in, int profile) {
  const Batch<S> b = draw_batch<S>(in, profile, false);
  const rdrop::Layout layout = in.ConsumeBool() ? rdrop::Layout::Stacked : rdrop::Layout::Interleaved;
  const RowMat<S> d = rdrop::Duplicate(b.x, layout);
  FUZZ_REQUIRE(d.rows() == 2 * b.x.rows() && d.cols() == b.x.cols());
  FUZZ_REQUIRE(same_all(rdrop::FirstCopy(d, layout), b.x) && same_all(rdrop::SecondCopy(d, layout), b.x));
  const ColMat<S> dc = rdrop::Duplicate(ColMat<S>(b.x), layout);
  FUZZ_REQUIRE(same_all(dc, d));
  FUZZ_REQUIRE(same_all(rdrop::FirstCopy(dc, layout), b.x) && same_all(rdrop::SecondCopy(dc, layout), b.x));
  // An odd number of rows cannot hold two copies.
  const bool odd = b.x.rows() % 2 != 0;
  EXPECT(!odd, (void)rdrop::FirstCopy(b.x, layout));
  EXPECT(!odd, (void)rdrop::SecondCopy(b.x, layout));
  const Eigen::VectorXi y = Eigen::VectorXi::LinSpaced(b.x.rows(), 0, static_cast<int>(b.x.rows()));
  const Eigen::VectorXi yy = rdrop::Duplicate(y, layout);
  FUZZ_REQUIRE(rdrop::FirstCopy(yy, layout) == y && rdrop::SecondCopy(yy, layout) == y);
}

}  // namespace

template <typename S>
void run(FuzzedDataProvider& in, int profile, int variant) {
  (void)variant;
  fuzz_duplicate<S>(in, profile);
}

template void run<float>(FuzzedDataProvider&, int, int);
template void run<double>(FuzzedDataProvider&, int, int);

}  // namespace fuzz::duplicate
