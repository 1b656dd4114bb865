// 2-byte storage (Eigen::bfloat16, Eigen::half) for float arithmetic: rows
// are widened to float in registers as they are loaded and rounded once
// when a result is stored, so a kernel reads and writes half the bytes of a
// float kernel and computes exactly what the float kernel computes.
//
// Widening is exact. Narrowing rounds to nearest, ties to even, keeps
// subnormals, overflows to ±inf, and turns a NaN into the quiet NaN of the
// same sign with the shortest payload (bf16 0x7fc0, half 0x7e00): every
// path below (AVX-512 with or without the BF16 and F16C instructions, AVX2,
// SSE, scalar) gives the same bits. That rule is why the BF16 instruction
// is corrected, not trusted: it flushes subnormals to zero and keeps NaN
// payloads.
#pragma once

#include "rdrop/detail/packet.hpp"

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(EIGEN_VECTORIZE_SSE2) || defined(EIGEN_VECTORIZE_AVX) || defined(EIGEN_VECTORIZE_AVX512)
#include <immintrin.h>
#endif

namespace rdrop::detail {

/// Whether T is one of the 2-byte floating types rdrop reads and writes.
template <typename T>
inline constexpr bool is_two_byte_v =
    std::is_same_v<std::remove_cv_t<T>, Eigen::bfloat16> || std::is_same_v<std::remove_cv_t<T>, Eigen::half>;

/// The type a kernel computes in for rows stored as T: float for the 2-byte
/// types, T itself otherwise.
template <typename T>
using compute_t = std::conditional_t<is_two_byte_v<T>, float, std::remove_cv_t<T>>;

/// Whether T may be a row's storage in a loss computing in Scalar: Scalar
/// itself, or a 2-byte type when Scalar is float.
template <typename T, typename Scalar>
inline constexpr bool is_storage_for_v =
    std::is_same_v<std::remove_cv_t<T>, Scalar> || (std::is_same_v<Scalar, float> && is_two_byte_v<T>);

namespace storage_detail {
inline std::uint32_t bits_of(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
inline std::uint16_t bits_of(Eigen::half x) { return Eigen::numext::bit_cast<std::uint16_t>(x); }

/// The canonical quiet NaN of each 2-byte type (sign bit clear).
template <typename T>
inline constexpr std::uint16_t kQuietNaN = std::is_same_v<T, Eigen::bfloat16> ? 0x7fc0 : 0x7e00;
}  // namespace storage_detail

/// x as float (exact); a float stays as it is.
template <typename T>
EIGEN_STRONG_INLINE compute_t<T> widen(T x) {
  if constexpr (is_two_byte_v<T>) {
    return static_cast<float>(x);
  } else {
    return x;
  }
}

/// x rounded to T as described at the top of this file (T = compute type:
/// unchanged).
template <typename T>
EIGEN_STRONG_INLINE T narrow(compute_t<T> x) {
  if constexpr (!is_two_byte_v<T>) {
    return x;
  } else {
    const std::uint32_t u = storage_detail::bits_of(x);
    std::uint16_t r;
    if (std::isnan(x)) {
      r = static_cast<std::uint16_t>(((u >> 16) & 0x8000u) | storage_detail::kQuietNaN<T>);
    } else if constexpr (std::is_same_v<T, Eigen::bfloat16>) {
      r = static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    } else {
      r = storage_detail::bits_of(Eigen::half(x));  // Eigen's RNE (F16C or bits)
    }
    return Eigen::numext::bit_cast<T>(r);
  }
}

namespace storage_detail {

/// Lanes of P converted through a small buffer, one scalar at a time.
template <typename P, typename T>
EIGEN_STRONG_INLINE P load_by_lanes(const T* from) {
  float lanes[lanes_of<P>];
  for (Eigen::Index i = 0; i < lanes_of<P>; ++i) lanes[i] = widen(from[i]);
  return pm::ploadu<P>(lanes);
}
template <typename T, typename P>
EIGEN_STRONG_INLINE void store_by_lanes(T* to, const P& x) {
  float lanes[lanes_of<P>];
  pm::pstoreu(lanes, x);
  for (Eigen::Index i = 0; i < lanes_of<P>; ++i) to[i] = narrow<T>(lanes[i]);
}

#if defined(EIGEN_VECTORIZE_AVX512)
/// 16 floats to bf16 bits (RNE, canonical NaN) in integer arithmetic.
EIGEN_STRONG_INLINE __m256i bf16_bits_avx512(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i high = _mm512_srli_epi32(u, 16);
  const __m512i lsb = _mm512_and_si512(high, _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  if (nan) {
    const __m512i quiet = _mm512_or_si512(_mm512_and_si512(high, _mm512_set1_epi32(0x8000)), _mm512_set1_epi32(0x7fc0));
    r = _mm512_mask_blend_epi32(nan, r, quiet);
  }
  return _mm512_cvtepi32_epi16(r);
}
#endif

#if defined(EIGEN_VECTORIZE_AVX2)
EIGEN_STRONG_INLINE __m128i bf16_bits_avx2(__m256 x) {
  const __m256i u = _mm256_castps_si256(x);
  const __m256i high = _mm256_srli_epi32(u, 16);
  const __m256i lsb = _mm256_and_si256(high, _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
  const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  if (_mm256_movemask_ps(nan) != 0) {
    const __m256i quiet = _mm256_or_si256(_mm256_and_si256(high, _mm256_set1_epi32(0x8000)), _mm256_set1_epi32(0x7fc0));
    r = _mm256_blendv_epi8(r, quiet, _mm256_castps_si256(nan));
  }
  // Every lane is < 2^16: unsigned saturation keeps it as it is.
  return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}
#endif

}  // namespace storage_detail

/// Loads one packet P of the compute type from `from` (or one scalar when P
/// is the compute type itself), widening 2-byte storage.
template <typename P, typename T>
EIGEN_STRONG_INLINE P load_widened(const T* from) {
  namespace sd = storage_detail;
  if constexpr (!is_two_byte_v<T>) {
    return load<P>(from);
  } else if constexpr (std::is_same_v<P, float>) {
    return widen(*from);
  } else {
    static_assert(std::is_same_v<typename pm::unpacket_traits<P>::type, float>, "2-byte rows compute in float");
    [[maybe_unused]] constexpr Eigen::Index L = lanes_of<P>;
    if constexpr (std::is_same_v<T, Eigen::bfloat16>) {
      // bf16 is the high half of a float: zero-extend and shift.
#if defined(EIGEN_VECTORIZE_AVX512)
      if constexpr (L == 16) {
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(from));
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
      }
#endif
#if defined(EIGEN_VECTORIZE_AVX2)
      if constexpr (L == 8) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(from));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
      }
#endif
#if defined(EIGEN_VECTORIZE_SSE2)
      if constexpr (L == 4) {
        const __m128i h = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(from));
        return _mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), h));
      }
#endif
      return sd::load_by_lanes<P>(from);
    } else {
#if defined(EIGEN_VECTORIZE_AVX512)
      if constexpr (L == 16) {
        return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(from)));
      }
#endif
#if defined(__F16C__)
      if constexpr (L == 8) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(from)));
      if constexpr (L == 4) return _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(from)));
#endif
      return sd::load_by_lanes<P>(from);
    }
  }
}

/// Stores packet (or scalar) x of the compute type at `to`, rounding to
/// 2-byte storage as described at the top of this file.
template <typename T, typename P>
EIGEN_STRONG_INLINE void store_narrowed(T* to, const P& x) {
  namespace sd = storage_detail;
  if constexpr (!is_two_byte_v<T>) {
    store(to, x);
  } else if constexpr (std::is_same_v<P, float>) {
    *to = narrow<T>(x);
  } else {
    [[maybe_unused]] constexpr Eigen::Index L = lanes_of<P>;
    [[maybe_unused]] auto* const out = reinterpret_cast<void*>(to);
    if constexpr (std::is_same_v<T, Eigen::bfloat16>) {
#if defined(EIGEN_VECTORIZE_AVX512)
      if constexpr (L == 16) {
#if defined(__AVX512BF16__) && defined(__AVX512DQ__) && defined(__AVX512BW__) && defined(__AVX512VL__)
        // The BF16 instruction, then the integer rounding for the lanes it
        // gets wrong (subnormal inputs, NaN payloads): rare in gradients.
        __m256i r;
        const __m256bh h = _mm512_cvtneps_pbh(x);
        std::memcpy(&r, &h, sizeof r);
        const __mmask16 fix = _mm512_fpclass_ps_mask(x, 0x01 | 0x20 | 0x80);  // QNaN, subnormal, SNaN
        if (fix) r = _mm256_mask_blend_epi16(fix, r, sd::bf16_bits_avx512(x));
        _mm256_storeu_si256(static_cast<__m256i*>(out), r);
#else
        _mm256_storeu_si256(static_cast<__m256i*>(out), sd::bf16_bits_avx512(x));
#endif
        return;
      }
#endif
#if defined(EIGEN_VECTORIZE_AVX2)
      if constexpr (L == 8) {
        _mm_storeu_si128(static_cast<__m128i*>(out), sd::bf16_bits_avx2(x));
        return;
      }
#endif
      sd::store_by_lanes(to, x);
    } else {
      // F16C rounds as required except for NaN payloads, which it keeps.
#if defined(EIGEN_VECTORIZE_AVX512)
      if constexpr (L == 16) {
        _mm256_storeu_si256(static_cast<__m256i*>(out), _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        if (_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q)) sd::store_by_lanes(to, x);
        return;
      }
#endif
#if defined(__F16C__)
      if constexpr (L == 8) {
        _mm_storeu_si128(static_cast<__m128i*>(out), _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        if (_mm256_movemask_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)) != 0) sd::store_by_lanes(to, x);
        return;
      }
      if constexpr (L == 4) {
        _mm_storel_epi64(static_cast<__m128i*>(out), _mm_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        if (_mm_movemask_ps(_mm_cmpunord_ps(x, x)) != 0) sd::store_by_lanes(to, x);
        return;
      }
#endif
      sd::store_by_lanes(to, x);
    }
  }
}

}  // namespace rdrop::detail

namespace rdrop::detail {

/// PaddedTail's load and store for rows stored as T (the compute type or a
/// 2-byte type).
template <typename Scalar, typename T>
EIGEN_STRONG_INLINE auto tail_load(const PaddedTail<Scalar>& tail, const T* row, Scalar pad) {
  if constexpr (std::is_same_v<T, Scalar>) {
    return tail.load(row, pad);
  } else {
    return tail.load_converted(row, pad, [](T x) { return widen(x); });
  }
}
template <typename Scalar, typename T, typename P>
EIGEN_STRONG_INLINE void tail_store(const PaddedTail<Scalar>& tail, T* row, const P& x) {
  if constexpr (std::is_same_v<T, Scalar>) {
    tail.store(row, x);
  } else {
    tail.store_converted(row, x, [](Scalar v) { return narrow<T>(v); });
  }
}

/// out[j] = widen(x[j]) for a row of n elements.
template <typename T>
void widen_row(const T* x, Eigen::Index n, compute_t<T>* out) {
  using C = compute_t<T>;
  const Eigen::Index full = full_packets_end<C>(n);
  Eigen::Index j = 0;
  for (; j < full; j += packet_size<C>) pm::pstoreu(out + j, load_widened<Packet<C>>(x + j));
  for (; j < n; ++j) out[j] = widen(x[j]);
}

/// out[j] = narrow<T>(x[j]) for a row of n elements.
template <typename T>
void narrow_row(const compute_t<T>* x, Eigen::Index n, T* out) {
  using C = compute_t<T>;
  const Eigen::Index full = full_packets_end<C>(n);
  Eigen::Index j = 0;
  for (; j < full; j += packet_size<C>) store_narrowed(out + j, pm::ploadu<Packet<C>>(x + j));
  for (; j < n; ++j) out[j] = narrow<T>(x[j]);
}

}  // namespace rdrop::detail
