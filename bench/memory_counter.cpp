// The counting allocator of memory_counter.hpp. glibc exports its allocator
// as __libc_malloc and friends; defining malloc and the others in the
// executable puts these in front of it for every library of the process.
#include "memory_counter.hpp"

#include <malloc.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>

extern "C" {
void* __libc_malloc(std::size_t size);
void* __libc_calloc(std::size_t count, std::size_t size);
void* __libc_realloc(void* p, std::size_t size);
void* __libc_memalign(std::size_t alignment, std::size_t size);
void __libc_free(void* p);
}

namespace {

std::atomic<std::int64_t> in_use{0};
std::atomic<std::int64_t> peak{0};
std::atomic<std::int64_t> count{0};

void note_allocation(void* p) {
  if (p == nullptr) return;
  const auto size = static_cast<std::int64_t>(malloc_usable_size(p));
  count.fetch_add(1, std::memory_order_relaxed);
  const std::int64_t now = in_use.fetch_add(size, std::memory_order_relaxed) + size;
  std::int64_t seen = peak.load(std::memory_order_relaxed);
  while (now > seen && !peak.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
  }
}

void note_free(void* p) {
  if (p == nullptr) return;
  in_use.fetch_sub(static_cast<std::int64_t>(malloc_usable_size(p)), std::memory_order_relaxed);
}

}  // namespace

extern "C" {

void* malloc(std::size_t size) {
  void* p = __libc_malloc(size);
  note_allocation(p);
  return p;
}

void* calloc(std::size_t n, std::size_t size) {
  void* p = __libc_calloc(n, size);
  note_allocation(p);
  return p;
}

void* realloc(void* old, std::size_t size) {
  note_free(old);
  void* p = __libc_realloc(old, size);
  // A failed realloc keeps the old block.
  note_allocation(p != nullptr || size == 0 ? p : old);
  return p;
}

void free(void* p) {
  note_free(p);
  __libc_free(p);
}

void* memalign(std::size_t alignment, std::size_t size) {
  void* p = __libc_memalign(alignment, size);
  note_allocation(p);
  return p;
}

void* aligned_alloc(std::size_t alignment, std::size_t size) { return memalign(alignment, size); }

int posix_memalign(void** out, std::size_t alignment, std::size_t size) {
  if (alignment < sizeof(void*) || (alignment & (alignment - 1)) != 0) return EINVAL;
  void* p = memalign(alignment, size);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

}  // extern "C"

namespace rdrop_bench {

std::int64_t bytes_in_use() { return in_use.load(); }
std::int64_t peak_bytes() { return peak.load(); }
void reset_peak() { peak.store(in_use.load()); }
std::int64_t allocations() { return count.load(); }

}  // namespace rdrop_bench
