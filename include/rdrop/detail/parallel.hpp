// Static partition of independent items over OpenMP threads, and per-thread
// scratch rows. Each item is computed identically whatever the partition, and
// callers reduce per-item results in item order, so results do not depend on
// the thread count.
#pragma once

#include "rdrop/detail/thread_count.hpp"

#include <Eigen/Core>

#include <cmath>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace rdrop::detail {

/// Calls body(begin, end) on disjoint ranges covering [0, count). `threads`
/// 0 means the global setting; `work` (elements touched) below about 64k
/// runs sequentially since a parallel region would cost more than it saves.
template <typename Body>
void parallel_ranges(Eigen::Index count, Eigen::Index work, int threads, Body&& body) {
#ifdef _OPENMP
  int t = threads > 0 ? threads : global_thread_count();
  if (t <= 0) t = omp_get_max_threads();
  if (t > 1 && count > 1 && work >= (Eigen::Index(1) << 16)) {
#pragma omp parallel num_threads(t)
    {
      const Eigen::Index nt = omp_get_num_threads();
      const Eigen::Index id = omp_get_thread_num();
      body(count * id / nt, count * (id + 1) / nt);
    }
    return;
  }
#else
  (void)work;
  (void)threads;
#endif
  body(Eigen::Index(0), count);
}

/// Calls body(block) for every block in [0, blocks) on up to `threads`
/// threads (0: the global setting), each block one or more Eigen products
/// of its own. Eigen runs them single-threaded: its own threading re-blocks
/// a product by its thread count, which would change the rounding, and
/// rdrop's results must not depend on the thread count. A block is computed
/// the same way whichever thread takes it.
template <typename Body>
void parallel_blocks(Eigen::Index blocks, int threads, Body&& body) {
#ifdef _OPENMP
  int t = threads > 0 ? threads : global_thread_count();
  if (t <= 0) t = omp_get_max_threads();
  if (t > blocks) t = static_cast<int>(blocks > 0 ? blocks : 1);
  // A region even for one thread: inside it omp_set_num_threads(1) sets
  // this task's thread limit, which is what Eigen::nbThreads() reports
  // unless the program called Eigen::setNbThreads.
#pragma omp parallel num_threads(t)
  {
    omp_set_num_threads(1);
    const Eigen::Index nt = omp_get_num_threads();
    const Eigen::Index id = omp_get_thread_num();
    for (Eigen::Index b = blocks * id / nt; b < blocks * (id + 1) / nt; ++b) body(b);
  }
#else
  (void)threads;
  for (Eigen::Index b = 0; b < blocks; ++b) body(b);
#endif
}

/// A scratch row of at least n scalars for the calling thread; `slot`
/// separates buffers that are live at the same time.
template <typename Scalar>
Scalar* thread_scratch(Eigen::Index n, int slot) {
  thread_local std::vector<Scalar> buffers[8];
  std::vector<Scalar>& b = buffers[slot];
  if (static_cast<Eigen::Index>(b.size()) < n) b.resize(static_cast<std::size_t>(n));
  return b.data();
}

/// A running sum in double with Neumaier's compensation: the sum of n
/// float or double terms keeps its relative accuracy for any n (a float
/// accumulator over 2^21 per-pair losses drifted by 0.6 %). Terms are added
/// in the caller's order, so the result is bitwise the same for any thread
/// count. Infinite and NaN terms propagate as in plain summation.
class CompensatedSum {
 public:
  void add(double x) {
    const double t = sum_ + x;
    if (std::isfinite(t)) {
      // The low-order part lost by sum_ + x, whichever term is larger.
      compensation_ += std::abs(sum_) >= std::abs(x) ? (sum_ - t) + x : (x - t) + sum_;
    }
    sum_ = t;
  }
  double total() const { return std::isfinite(sum_) ? sum_ + compensation_ : sum_; }

 private:
  double sum_ = 0;
  double compensation_ = 0;
};

/// Σ values in index order, compensated (see CompensatedSum).
template <typename Scalar>
Scalar ordered_sum(const std::vector<Scalar>& values) {
  CompensatedSum s;
  for (Scalar v : values) s.add(static_cast<double>(v));
  return static_cast<Scalar>(s.total());
}

}  // namespace rdrop::detail
