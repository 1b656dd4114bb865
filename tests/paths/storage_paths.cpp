// One program, compiled once per instruction set (see tests/CMakeLists.txt:
// AVX-512 with the BF16 and F16C instructions, AVX2 with and without F16C,
// SSE2, no vectorization), so that every conversion path of
// rdrop/detail/storage.hpp runs. Each build checks that
//  1. narrowing float -> bf16 / half agrees with a reference rounding
//     written here in double arithmetic (nearest, ties to even, subnormals,
//     overflow, NaN), for a wide sample of float bit patterns;
//  2. the fused sweep on 2-byte rows gives, bitwise, what the float sweep
//     of the same build gives on the rows widened to float, the gradient
//     rounded once (logits near 0 and near ±1e4, −inf classes, every row
//     length up to two packets and a long one, gradients in 2 bytes and
//     in float, in place);
//  3. the float sweep of the build (its exps are this instruction set's)
//     agrees with a long double reference to float precision.
// No test framework: it is compiled five times, and must stay quick to build.
#include <rdrop/kernels.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok && ++failures <= 20) std::printf("FAILED: %s\n", what.c_str());
}

template <typename T>
std::uint16_t bits(T x) {
  return Eigen::numext::bit_cast<std::uint16_t>(x);
}

/// Round-to-nearest-even of x to a format with `mantissa` stored bits,
/// smallest normal exponent `min_exp` and largest finite value `max`,
/// computed in double (exact for every float input): scale to an integer
/// grid, round with nearbyint (the default mode: ties to even), scale back.
double reference_round(double x, int mantissa, int min_exp, double max) {
  if (x == 0 || std::isinf(x)) return x;
  int e = 0;
  std::frexp(std::abs(x), &e);  // |x| = m·2^e, m in [0.5, 1)
  const int exponent = std::max(e - 1, min_exp);
  const double ulp = std::ldexp(1.0, exponent - mantissa);
  const double r = std::nearbyint(std::abs(x) / ulp) * ulp;
  return std::copysign(r > max ? std::numeric_limits<double>::infinity() : r, x);
}

template <typename T>
double reference(float x) {
  if constexpr (std::is_same_v<T, Eigen::bfloat16>) {
    return reference_round(x, 7, -126, std::ldexp(255.0, 120));
  } else {
    return reference_round(x, 10, -14, 65504.0);
  }
}

/// Narrowing of `count` floats through the packet path (full packets) and
/// the scalar path, each element checked against the reference.
template <typename T>
void check_narrowing(const std::vector<float>& xs, const char* name) {
  namespace d = rdrop::detail;
  using P = d::Packet<float>;
  constexpr Eigen::Index W = d::packet_size<float>;
  std::vector<T> packet_out(xs.size()), scalar_out(xs.size());
  const auto n = static_cast<Eigen::Index>(xs.size());
  Eigen::Index j = 0;
  for (; j + W <= n; j += W) d::store_narrowed(packet_out.data() + j, d::load<P>(xs.data() + j));
  for (; j < n; ++j) packet_out[static_cast<std::size_t>(j)] = d::narrow<T>(xs[static_cast<std::size_t>(j)]);
  for (std::size_t i = 0; i < xs.size(); ++i) scalar_out[i] = d::narrow<T>(xs[i]);
  std::size_t bad = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const float x = xs[i];
    const std::uint16_t p = bits(packet_out[i]), s = bits(scalar_out[i]);
    bool ok = p == s;
    if (std::isnan(x)) {
      const std::uint16_t quiet = std::is_same_v<T, Eigen::bfloat16> ? 0x7fc0 : 0x7e00;
      ok = ok && p == (std::signbit(x) ? quiet | 0x8000 : quiet);
    } else {
      const double got = static_cast<double>(static_cast<float>(packet_out[i]));
      const double want = reference<T>(x);
      ok = ok && got == want && std::signbit(got) == std::signbit(want);
      // Widening the result back is exact: narrowing it again is the identity.
      ok = ok && bits(d::narrow<T>(d::widen(packet_out[i]))) == p;
    }
    if (!ok && ++bad <= 5) {
      std::uint32_t u;
      std::memcpy(&u, &x, 4);
      check(false, std::string(name) + " narrowing of float bits " + std::to_string(u) + ": packet " +
                       std::to_string(p) + ", scalar " + std::to_string(s));
    }
  }
  check(bad == 0, std::string(name) + ": " + std::to_string(bad) + " narrowings differ from the reference");
}

std::vector<float> float_sample() {
  std::vector<float> xs;
  // Every 251st bit pattern (all exponents, both signs, NaNs and infinities),
  // plus every pattern near the rounding boundaries of both formats.
  for (std::uint64_t u = 0; u < (std::uint64_t(1) << 32); u += 251) {
    const auto v = static_cast<std::uint32_t>(u);
    float x;
    std::memcpy(&x, &v, 4);
    xs.push_back(x);
  }
  for (std::uint32_t high : {0x0000u, 0x0001u, 0x007fu, 0x0080u, 0x3f80u, 0x477fu, 0x7f7fu, 0x7f80u, 0x7fc0u,
                             0x8001u, 0xbf80u, 0xff7fu}) {
    for (std::uint32_t low : {0x0000u, 0x0001u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu}) {
      const std::uint32_t v = (high << 16) | low;
      float x;
      std::memcpy(&x, &v, 4);
      xs.push_back(x);
    }
  }
  // Half's rounding boundaries: subnormal ties, the largest finite, overflow.
  for (double v : {0x1p-25, 0x1.8p-24, 0x1p-24, 0x1.8p-14, 65504.0, 65519.0, 65520.0, 0x1.ffcp15, 1.0 + 0x1p-11,
                   1.0 + 0x1.8p-10}) {
    xs.push_back(static_cast<float>(v));
    xs.push_back(static_cast<float>(-v));
  }
  return xs;
}

template <typename T>
std::vector<T> narrowed(const std::vector<float>& x) {
  std::vector<T> r(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) r[i] = T(x[i]);
  return r;
}

template <typename T>
std::vector<float> widened(const std::vector<T>& x) {
  std::vector<float> r(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) r[i] = static_cast<float>(x[i]);
  return r;
}

bool same_bits(float x, float y) {
  std::uint32_t a, b;
  std::memcpy(&a, &x, 4);
  std::memcpy(&b, &y, 4);
  return a == b || (std::isnan(x) && std::isnan(y));
}

/// KL(p‖q), KL(q‖p), CE(a) against the target (1 − ε)·onehot(la) + ε/n, and
/// the gradient of w_pq·KL(p‖q) + w_qp·KL(q‖p) + w·CE(a) + (terms of b) with
/// respect to a, in long double from the definitions (softmax, logs, the
/// chain rule through p = softmax(a)); finite rows.
struct Reference {
  long double kl_pq = 0, kl_qp = 0, ce_a = 0;
  std::vector<long double> grad_a;
};

Reference reference_pair(const std::vector<float>& a, const std::vector<float>& b, Eigen::Index la,
                         long double eps, long double w, long double w_pq, long double w_qp) {
  const std::size_t n = a.size();
  const auto log_softmax = [n](const std::vector<float>& x) {
    long double m = x[0], s = 0;
    for (float v : x) m = std::max(m, static_cast<long double>(v));
    for (float v : x) s += std::exp(static_cast<long double>(v) - m);
    std::vector<long double> r(n);
    for (std::size_t j = 0; j < n; ++j) r[j] = static_cast<long double>(x[j]) - m - std::log(s);
    return r;
  };
  const std::vector<long double> lp = log_softmax(a), lq = log_softmax(b);
  Reference r;
  const auto target = [&](std::size_t j) {
    return (j == static_cast<std::size_t>(la) ? 1 - eps : 0) + eps / static_cast<long double>(n);
  };
  for (std::size_t j = 0; j < n; ++j) r.ce_a -= target(j) * lp[j];
  // ∂/∂p_j of the loss (KL(q‖p) and CE(a) depend on a through p only).
  std::vector<long double> dp(n);
  for (std::size_t j = 0; j < n; ++j) {
    const long double p = std::exp(lp[j]), q = std::exp(lq[j]);
    r.kl_pq += p * (lp[j] - lq[j]);
    r.kl_qp += q * (lq[j] - lp[j]);
    dp[j] = w_pq * (lp[j] - lq[j] + 1) - w_qp * q / p - w * target(j) / p;
  }
  long double mean = 0;
  for (std::size_t j = 0; j < n; ++j) mean += std::exp(lp[j]) * dp[j];
  r.grad_a.resize(n);
  for (std::size_t j = 0; j < n; ++j) r.grad_a[j] = std::exp(lp[j]) * (dp[j] - mean);
  return r;
}

/// The fused sweep on 2-byte rows against the float sweep on the widened rows.
template <typename In, typename Out>
void check_sweep(const char* name, Eigen::Index n, float shift, bool minus_inf, std::mt19937& rng) {
  namespace d = rdrop::detail;
  std::normal_distribution<float> normal(0.f, 2.f);
  std::vector<float> af(static_cast<std::size_t>(n)), bf(static_cast<std::size_t>(n));
  for (Eigen::Index j = 0; j < n; ++j) {
    const float x = normal(rng);
    af[static_cast<std::size_t>(j)] = shift + x;
    bf[static_cast<std::size_t>(j)] = shift + x + 0.3f * normal(rng);
  }
  if (minus_inf) {
    const float inf = std::numeric_limits<float>::infinity();
    af[0] = bf[0] = -inf;                                   // in both rows
    if (n > 2) bf[static_cast<std::size_t>(n / 2)] = -inf;  // in one row only
  }
  const std::vector<In> a = narrowed<In>(af), b = narrowed<In>(bf);
  const std::vector<float> wa = widened(a), wb = widened(b);
  d::SoftmaxPairWeights<float> w;
  w.first = {n > 3 ? 3 : 0, 0.1f, 0.25f};
  w.second = {n > 1 ? n - 1 : 0, 0.f, 0.25f};
  w.kl_pq = 0.7f;
  w.kl_qp = minus_inf ? 0.f : 0.3f;  // one-row −inf: KL(q‖p) = inf must stay out
  std::vector<float> fa(wa.size()), fb(wb.size());
  const auto want = d::fused_pair(wa.data(), wb.data(), n, w, fa.data(), fb.data());
  if (!minus_inf && shift == 0.f && n > 3 && std::is_same_v<In, float>) {
    const Reference r = reference_pair(wa, wb, w.first.label, 0.1L, 0.25L, 0.7L, 0.3L);
    const auto close = [](long double got, long double want, long double scale) {
      return std::abs(got - want) <= 1e-5L * scale;
    };
    long double norm = 0;
    for (long double g : r.grad_a) norm = std::max(norm, std::abs(g));
    std::size_t bad = 0;
    for (std::size_t j = 0; j < wa.size(); ++j) bad += !close(fa[j], r.grad_a[j], norm);
    check(close(want.kl_pq, r.kl_pq, r.kl_pq) && close(want.kl_qp, r.kl_qp, r.kl_qp) &&
              close(want.ce_first, r.ce_a, r.ce_a) && bad == 0,
          std::string(name) + " n=" + std::to_string(n) + ": the float sweep differs from the reference");
  }
  std::vector<Out> ga(a.size()), gb(b.size());
  const auto got = d::fused_pair(a.data(), b.data(), n, w, ga.data(), gb.data());
  const std::string what = std::string(name) + " n=" + std::to_string(n) + " shift=" + std::to_string(shift) +
                           (minus_inf ? " -inf" : "");
  check(same_bits(got.ce_first, want.ce_first) && same_bits(got.ce_second, want.ce_second) &&
            same_bits(got.kl_pq, want.kl_pq) && same_bits(got.kl_qp, want.kl_qp) &&
            same_bits(got.symmetric, want.symmetric),
        what + ": values differ from the float sweep");
  std::size_t bad = 0;
  for (std::size_t j = 0; j < a.size(); ++j) {
    if constexpr (std::is_same_v<Out, float>) {
      bad += !same_bits(ga[j], fa[j]) || !same_bits(gb[j], fb[j]);
    } else {
      bad += bits(ga[j]) != bits(d::narrow<Out>(fa[j])) || bits(gb[j]) != bits(d::narrow<Out>(fb[j]));
    }
  }
  check(bad == 0, what + ": " + std::to_string(bad) + " gradient elements differ from the float sweep, rounded");
  if constexpr (std::is_same_v<In, Out>) {
    // In place: the gradient over the logits, bitwise the same.
    std::vector<In> ia = a, ib = b;
    const auto in_place = d::fused_pair(ia.data(), ib.data(), n, w, ia.data(), ib.data());
    bad = 0;
    for (std::size_t j = 0; j < a.size(); ++j) bad += bits(ia[j]) != bits(ga[j]) || bits(ib[j]) != bits(gb[j]);
    check(bad == 0 && same_bits(in_place.kl_pq, got.kl_pq), what + ": in place differs");
  }
}

template <typename In, typename Out>
void check_sweeps(const char* name) {
  std::mt19937 rng(7);
  std::vector<Eigen::Index> lengths;
  for (Eigen::Index n = 1; n <= 2 * rdrop::detail::packet_size<float> + 3; ++n) lengths.push_back(n);
  lengths.push_back(1000);
  lengths.push_back(4099);
  for (Eigen::Index n : lengths) {
    for (float shift : {0.f, 1e4f, -1e4f}) {
      check_sweep<In, Out>(name, n, shift, false, rng);
      check_sweep<In, Out>(name, n, shift, true, rng);
    }
  }
}

}  // namespace

/// Whether this CPU runs what the build was compiled for (else the test is
/// skipped: exit code 77).
bool cpu_supports_build() {
#if defined(__x86_64__) || defined(__i386__)
#if defined(RDROP_PATH_REQUIRES_AVX512)
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
      !__builtin_cpu_supports("avx512dq") || !__builtin_cpu_supports("avx512vl"))
    return false;
#endif
#if defined(RDROP_PATH_REQUIRES_AVX2)
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return false;
#endif
#if defined(__F16C__)
  if (!__builtin_cpu_supports("f16c")) return false;
#endif
#endif
  return true;
}

int main() {
  if (!cpu_supports_build()) {
    std::printf("%s: this CPU lacks the instructions of this build; skipped\n", RDROP_PATH_NAME);
    return 77;
  }
  const std::vector<float> xs = float_sample();
  check_narrowing<Eigen::bfloat16>(xs, "bf16");
  check_narrowing<Eigen::half>(xs, "half");
  check_sweeps<Eigen::bfloat16, Eigen::bfloat16>("bf16 -> bf16");
  check_sweeps<Eigen::bfloat16, float>("bf16 -> float");
  check_sweeps<Eigen::half, Eigen::half>("half -> half");
  check_sweeps<Eigen::half, float>("half -> float");
  check_sweeps<float, Eigen::bfloat16>("float -> bf16");
  std::printf("%s: %d failure(s), %zu narrowings, packet of %d floats\n", RDROP_PATH_NAME, failures, xs.size(),
              static_cast<int>(rdrop::detail::packet_size<float>));
  return failures == 0 ? 0 : 1;
}
