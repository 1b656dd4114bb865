// A counting allocator for rdrop_bench: malloc, calloc, realloc, free and
// the aligned allocations are replaced for the whole binary (forwarding to
// glibc's own), so that every byte counts, Eigen's aligned buffers and its
// product's packing buffers included (they do not go through operator new).
// Bytes in use are tracked with malloc_usable_size; the peak is what a
// benchmark reports, beyond what was in use when it started to count.
#pragma once

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

}  // namespace rdrop_bench
