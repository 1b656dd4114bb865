// Zeroing gradient rows that take no part in the loss (masked tokens,
// unlabeled rows of masked pairs). A masked row is only ever written, so
// long rows skip the read an ordinary store makes of the line it
// overwrites: with AMD's CLZERO (one instruction per 64-byte line, no read)
// where the CPU has it, else with streaming (non-temporal) stores. On the
// 2-core EPYC (Zen 5) VM, zeroing 1 GB in 256 KB rows measured 25-35 GB/s
// with CLZERO, 24 GB/s with streaming stores and 20 GB/s with memset; it
// took BM_RDrop_Sequence's 25 % padded batch from 0.87 to 0.81 of the
// unpadded one (bench/results/table-20261129-074430.md).
#pragma once

#include "rdrop/detail/storage.hpp"

#include <Eigen/Core>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__SSE2__) || defined(_M_X64)  // every x86-64 target; AVX and AVX-512 imply SSE2
#include <immintrin.h>
#define RDROP_DETAIL_HAS_STREAMING_STORES 1
#else
#define RDROP_DETAIL_HAS_STREAMING_STORES 0
#endif

// CLZERO is issued with inline assembly and chosen at run time (CPUID), so
// that it serves every build, not only -march=znver*: GCC and Clang on x86-64.
#if RDROP_DETAIL_HAS_STREAMING_STORES && defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define RDROP_DETAIL_HAS_CLZERO 1
#else
#define RDROP_DETAIL_HAS_CLZERO 0
#endif

namespace rdrop::detail {

/// Rows at least this long are zeroed without reading them first. Shorter
/// rows are likely still in cache when the caller reads the gradient, and
/// there a cached store is cheaper.
inline constexpr std::size_t kStreamingZeroBytes = std::size_t(32) << 10;

/// The granule of the line-zeroing paths: a cache line.
inline constexpr std::size_t kZeroLineBytes = 64;

/// Whether this CPU has CLZERO (CPUID Fn8000_0008 EBX bit 0), asked once.
inline bool cpu_has_clzero() {
#if RDROP_DETAIL_HAS_CLZERO
  static const bool has = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(0x80000008u, &eax, &ebx, &ecx, &edx) != 0 && (ebx & 1u) != 0;
  }();
  return has;
#else
  return false;
#endif
}

/// Zeroes the 64-byte-aligned lines [begin, end) with CLZERO. Only call it
/// when cpu_has_clzero(); like streaming stores it is weakly ordered (see
/// streaming_fence).
// NOLINTNEXTLINE(readability-non-const-parameter): CLZERO writes through begin, out of the tool's sight
inline void clzero_lines(unsigned char* begin, const unsigned char* end) {
#if RDROP_DETAIL_HAS_CLZERO
  for (; begin < end; begin += kZeroLineBytes) __asm__ __volatile__("clzero" : : "a"(begin) : "memory");
#else
  std::memset(begin, 0, static_cast<std::size_t>(end - begin));
#endif
}

/// Zeroes the 64-byte-aligned lines [begin, end) with the widest streaming
/// store the compiler allows (whole lines with AVX-512 were 25 % faster than
/// 16-byte stores).
inline void stream_zero_lines(unsigned char* begin, const unsigned char* end) {
#if RDROP_DETAIL_HAS_STREAMING_STORES
#if defined(__AVX512F__)
  using Vector = __m512i;
  const Vector zero = _mm512_setzero_si512();
  const auto stream = [&](unsigned char* p) { _mm512_stream_si512(reinterpret_cast<Vector*>(p), zero); };
#elif defined(__AVX__)
  using Vector = __m256i;
  const Vector zero = _mm256_setzero_si256();
  const auto stream = [&](unsigned char* p) { _mm256_stream_si256(reinterpret_cast<Vector*>(p), zero); };
#else
  using Vector = __m128i;
  const Vector zero = _mm_setzero_si128();
  const auto stream = [&](unsigned char* p) { _mm_stream_si128(reinterpret_cast<Vector*>(p), zero); };
#endif
  for (; begin < end; begin += sizeof(Vector)) stream(begin);
#else
  std::memset(begin, 0, static_cast<std::size_t>(end - begin));
#endif
}

/// Writes n zeros at row. Returns whether the lines were written without
/// being read (CLZERO or streaming stores), in which case the caller must
/// call streaming_fence() before another thread reads the row.
template <typename Scalar>
bool zero_fill(Scalar* row, Eigen::Index n) {
  // +0.0 is all-zero bits in IEEE float and double, bfloat16 and half.
  static_assert(std::numeric_limits<Scalar>::is_iec559 || is_two_byte_v<Scalar>,
                "rdrop: needs IEEE 754 floating point");
  const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(Scalar);
#if RDROP_DETAIL_HAS_STREAMING_STORES
  if (bytes >= kStreamingZeroBytes) {
    // Whole lines only; the partial lines at both ends take ordinary stores.
    auto* const first = reinterpret_cast<unsigned char*>(row);
    unsigned char* const last = first + bytes;
    const std::size_t head = (kZeroLineBytes - reinterpret_cast<std::uintptr_t>(first) % kZeroLineBytes) % kZeroLineBytes;
    unsigned char* const lines_end = last - reinterpret_cast<std::uintptr_t>(last) % kZeroLineBytes;
    std::memset(first, 0, head);
    if (cpu_has_clzero()) {
      clzero_lines(first + head, lines_end);
    } else {
      stream_zero_lines(first + head, lines_end);
    }
    std::memset(lines_end, 0, static_cast<std::size_t>(last - lines_end));
    return true;
  }
#endif
  std::memset(static_cast<void*>(row), 0, bytes);
  return false;
}

/// Orders earlier non-temporal stores and CLZEROs before any later store
/// (and so before the end of a parallel region): they are weakly ordered,
/// and an OpenMP barrier need not drain them.
inline void streaming_fence() {
#if RDROP_DETAIL_HAS_STREAMING_STORES
  _mm_sfence();
#endif
}

}  // namespace rdrop::detail
