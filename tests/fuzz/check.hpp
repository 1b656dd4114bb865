// What every fuzz family checks with: FUZZ_REQUIRE (abort() on a violated
// property), EXPECT (a call throws std::invalid_argument if and only if the
// oracle calls it invalid), bitwise comparison, untouched outputs, the
// finiteness facts of a batch and the bound under which results must be
// finite, and the FUZZ_RDROP_VERBOSE printing of what an input drew.
#pragma once

#include "input.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace fuzz {

// FUZZ_RDROP_VERBOSE=1 ./fuzz_rdrop crash-file prints what a target drew.
inline bool verbose = false;

template <typename M>
void show(const char* name, const M& m) {
  if (!verbose) return;
  std::fprintf(stderr, "%s [%ld x %ld]:\n", name, static_cast<long>(m.rows()), static_cast<long>(m.cols()));
  for (Index i = 0; i < m.rows(); ++i) {
    for (Index j = 0; j < m.cols(); ++j) std::fprintf(stderr, " %.9g", static_cast<double>(m(i, j)));
    std::fprintf(stderr, "\n");
  }
}
inline void note(const char* what, double v) {
  if (verbose) std::fprintf(stderr, "%s = %.9g\n", what, v);
}

[[noreturn]] inline void property_failed(const char* what, const char* file, int line) {
  std::fprintf(stderr, "fuzz_rdrop: property violated: %s (%s:%d)\n", what, file, line);
  std::abort();
}
#define FUZZ_REQUIRE(cond)                                            \
  do {                                                                \
    if (!(cond)) ::fuzz::property_failed(#cond, __FILE__, __LINE__); \
  } while (0)

// Runs `call`, which the oracle says is valid or not; returns whether it
// threw. Any exception but std::invalid_argument is a failure, and so is a
// disagreement with the oracle.
template <typename F>
bool expect(bool valid, F&& call, const char* file, int line) {
  try {
    call();
  } catch (const std::invalid_argument& e) {
    if (valid) {
      std::fprintf(stderr, "fuzz_rdrop: unexpected throw: %s\n", e.what());
      property_failed("a valid call threw", file, line);
    }
    if (std::string(e.what()).rfind("rdrop::", 0) != 0) property_failed("message starts with rdrop::", file, line);
    return true;
  } catch (...) {
    property_failed("an exception other than std::invalid_argument", file, line);
  }
  if (!valid) property_failed("an invalid call did not throw", file, line);
  return false;
}
#define EXPECT(valid, ...) ::fuzz::expect((valid), [&] { __VA_ARGS__; }, __FILE__, __LINE__)

// Whether call() threw std::invalid_argument (anything else escapes: a
// finding).
template <typename F>
bool throws(F&& call) {
  try {
    call();
  } catch (const std::invalid_argument&) {
    return true;
  }
  return false;
}

// Bitwise equal, or both NaN.
template <typename S>
bool same(S a, S b) {
  return (std::isnan(a) && std::isnan(b)) || a == b;
}
template <typename A, typename B>
bool same_all(const A& a, const B& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  for (Index i = 0; i < a.rows(); ++i)
    for (Index j = 0; j < a.cols(); ++j)
      if (!same(a(i, j), b(i, j))) return false;
  return true;
}

// Whether columns [from, end) of m all hold v. (Element by element: Eigen's
// block of an empty matrix offsets a null pointer.)
template <typename M, typename S>
bool cols_from_are(const M& m, Index from, S v) {
  for (Index i = 0; i < m.rows(); ++i)
    for (Index j = from; j < m.cols(); ++j)
      if (!(m(i, j) == v)) return false;
  return true;
}

// Whether an output made by prefilled() kept its shape and its sentinels.
template <typename M>
bool untouched(const M& m, Index rows, Index cols) {
  return m.rows() == rows && m.cols() == cols && (m.array() == sentinel<typename M::Scalar>).all();
}

template <typename S>
struct RowFacts {
  std::vector<char> nan_or_pinf;  // NaN or +inf: poisons everything it touches
  std::vector<char> ninf;         // -inf: valid, may give +inf or NaN
  long double max_abs = 0;        // over finite entries
};

template <typename S>
RowFacts<S> facts(const RowMat<S>& x) {
  RowFacts<S> f;
  f.nan_or_pinf.assign(static_cast<std::size_t>(x.rows()), 0);
  f.ninf.assign(static_cast<std::size_t>(x.rows()), 0);
  for (Index i = 0; i < x.rows(); ++i)
    for (Index j = 0; j < x.cols(); ++j) {
      const S v = x(i, j);
      if (std::isnan(v) || v == std::numeric_limits<S>::infinity()) {
        f.nan_or_pinf[static_cast<std::size_t>(i)] = 1;
      } else if (v == -std::numeric_limits<S>::infinity()) {
        f.ninf[static_cast<std::size_t>(i)] = 1;
      } else {
        f.max_abs = std::max(f.max_abs, std::fabs(static_cast<long double>(v)));
      }
    }
  return f;
}

// The finiteness guarantee: with every logit finite and |x| ≤ R, losses and
// gradients are bounded by about (1 + α)·rows·C·(4R + log C + 8) (squared
// errors: (2R + 1)² in place of the last factor); when that is below the
// largest Scalar / 16, every result must be finite. Beyond it the true
// value itself may overflow.
template <typename S>
bool bounded(long double r, long double alpha, Index rows, Index c, bool squares) {
  const long double per = squares ? (2 * r + 1) * (2 * r + 1) : 4 * r + 8 + std::log(static_cast<long double>(c + 2));
  const long double bound = (1 + alpha) * static_cast<long double>(rows + 2) * static_cast<long double>(c + 2) * per;
  return bound <= static_cast<long double>(std::numeric_limits<S>::max()) / 16;
}

template <typename M>
bool all_finite(const M& m) {
  for (Index i = 0; i < m.rows(); ++i)
    for (Index j = 0; j < m.cols(); ++j)
      if (!std::isfinite(m(i, j))) return false;
  return true;
}

// Calls f(divergence) with one of the five built-in divergences, drawn
// from the input (one draw, in this order: the families that use it keep
// their corpus decoding).
template <typename S, typename F>
void with_drawn_divergence(FuzzedDataProvider& in, F&& f) {
  switch (in.ConsumeIntegralInRange(0, 4)) {
    case 0: return f(rdrop::SymmetricKL<S>());
    case 1: return f(rdrop::KLDivergence<S>());
    case 2: return f(rdrop::JensenShannon<S>());
    case 3: return f(rdrop::BernoulliSymmetricKL<S>());
    default: return f(rdrop::SquaredError<S>());
  }
}

}  // namespace fuzz
