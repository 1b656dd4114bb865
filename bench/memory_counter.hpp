// A counting allocator for rdrop_bench: malloc, calloc, realloc, free and
// the aligned allocations are replaced for the whole binary (forwarding to
// glibc's own), so that every byte counts, Eigen's aligned buffers and its
// product's packing buffers included (they do not go through operator new).
// Bytes in use are tracked with malloc_usable_size; the peak is what a
// benchmark reports, beyond what was in use when it started to count.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>

namespace rdrop_bench {

/// Bytes allocated and not yet freed, program-wide.
std::int64_t bytes_in_use();

/// The peak of bytes_in_use() since the last reset_peak(), which sets it to
/// the bytes in use now.
std::int64_t peak_bytes();
void reset_peak();

/// Allocations since the program started.
std::int64_t allocations();

/// Google Benchmark's memory-manager hook on the counting allocator:
/// max_bytes_used is the peak beyond the bytes in use at Start().
class CountingMemoryManager : public benchmark::MemoryManager {
 public:
  void Start() override;
  void Stop(Result& result) override;
  // Google Benchmark 1.7 still declares the pointer form pure virtual.
  void Stop(Result* result) override { Stop(*result); }

 private:
  std::int64_t baseline_ = 0;
  std::int64_t allocations_ = 0;
};

}  // namespace rdrop_bench
