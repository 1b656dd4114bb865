// Results do not depend on the thread count: loss and gradients are bitwise
// identical for 1, 2, 3 and 4 threads, set per call (RDropOptions::threads,
// the kernels' `threads`) or globally (rdrop::set_num_threads). Built with
// OpenMP when it is found, so these runs really are parallel there.
#include <rdrop/kernels.hpp>
#include <rdrop/rdrop.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using Index = Eigen::Index;

template <typename S>
using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// 2B rows of logits, the copies of each sample close to each other; big
/// enough (2B·C ≥ 64k elements) that the sweeps do go parallel.
template <typename S>
Matrix<S> duplicated_logits(Index samples, Index classes, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> z(0.0, 2.0), noise(0.0, 0.3);
  Matrix<S> x(2 * samples, classes);
  for (Index i = 0; i < samples; ++i) {
    for (Index j = 0; j < classes; ++j) {
      const double base = z(rng);
      x(2 * i, j) = static_cast<S>(base + noise(rng));
      x(2 * i + 1, j) = static_cast<S>(base + noise(rng));
    }
  }
  return x;
}

Eigen::VectorXi random_labels(Index count, Index classes, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pick(0, static_cast<int>(classes) - 1);
  Eigen::VectorXi y(count);
  for (Index i = 0; i < count; ++i) y(i) = pick(rng);
  return y;
}

template <typename S>
bool same_bits(S a, S b) {
  return std::memcmp(&a, &b, sizeof(S)) == 0;
}

template <typename S>
bool same_bits(const Matrix<S>& a, const Matrix<S>& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(S)) == 0;
}

/// Restores the global thread setting when a test ends, pass or fail.
struct GlobalThreadsGuard {
  int saved = rdrop::num_threads();
  ~GlobalThreadsGuard() { rdrop::set_num_threads(saved); }
};

}  // namespace

TEMPLATE_TEST_CASE("RDropLoss is bitwise identical for 1-4 threads set per call", "[threads]", float, double) {
  using S = TestType;
  // 203 samples: an odd pair count, so the ranges of the threads differ in size.
  const Index samples = 203, classes = 331;
  const Matrix<S> x = duplicated_logits<S>(samples, classes, 1);
  Eigen::VectorXi y = random_labels(samples, classes, 2);
  y(5) = -100;  // an unlabeled sample: its divergence term stays
  const auto layout = GENERATE(rdrop::Layout::Interleaved, rdrop::Layout::Stacked);
  const double smoothing = GENERATE(0.0, 0.1);
  auto run = [&](int threads, Matrix<S>& g) {
    rdrop::RDropOptions<S> o;
    o.alpha = S(2.5);
    o.layout = layout;
    o.label_smoothing = static_cast<S>(smoothing);
    o.threads = threads;
    return rdrop::RDropLoss<S>(o).EvaluateWithGradient(x, y, g);
  };
  Matrix<S> g1;
  const S loss1 = run(1, g1);
  for (int threads : {2, 3, 4}) {
    CAPTURE(threads);
    Matrix<S> g;
    const S loss = run(threads, g);
    CHECK(same_bits(loss, loss1));
    CHECK(same_bits(g, g1));
  }
}

TEMPLATE_TEST_CASE("RDropLoss, SymmetricKL and CrossEntropy are bitwise identical for 1-4 global threads",
                   "[threads]", float, double) {
  using S = TestType;
  GlobalThreadsGuard guard;
  const Index samples = 150, classes = 500;
  const Matrix<S> x = duplicated_logits<S>(samples, classes, 3);
  const Eigen::VectorXi y = random_labels(samples, classes, 4);
  const Eigen::VectorXi y_rows = random_labels(2 * samples, classes, 5);
  struct Result {
    S loss, kl, ce;
    Matrix<S> g, ga, gb, gc;
  };
  auto run = [&](int threads) {
    rdrop::set_num_threads(threads);
    Result r;
    r.loss = rdrop::RDropLoss<S>().EvaluateWithGradient(x, y, r.g);
    r.kl = rdrop::SymmetricKL<S>().EvaluateWithGradient(rdrop::FirstCopy(x), rdrop::SecondCopy(x), r.ga, r.gb);
    r.ce = rdrop::CrossEntropy<S>().EvaluateWithGradient(x, y_rows, r.gc);
    return r;
  };
  const Result one = run(1);
  for (int threads : {2, 3, 4, 0}) {
    CAPTURE(threads);
    const Result r = run(threads);
    CHECK(same_bits(r.loss, one.loss));
    CHECK(same_bits(r.g, one.g));
    CHECK(same_bits(r.kl, one.kl));
    CHECK(same_bits(r.ga, one.ga));
    CHECK(same_bits(r.gb, one.gb));
    CHECK(same_bits(r.ce, one.ce));
    CHECK(same_bits(r.gc, one.gc));
  }
}

TEMPLATE_TEST_CASE("The raw-pointer kernels are bitwise identical for 1-4 threads", "[threads][kernels]", float,
                   double) {
  using S = TestType;
  const Index pairs = 301, classes = 257;
  const Matrix<S> x = duplicated_logits<S>(pairs, classes, 6);
  std::vector<Index> labels(static_cast<std::size_t>(pairs));
  for (Index i = 0; i < pairs; ++i) labels[static_cast<std::size_t>(i)] = (i * 7) % classes;
  const Index stride = 2 * classes;  // interleaved copies
  auto run = [&](int threads, Matrix<S>& g, std::vector<S>& values) {
    g.resize(2 * pairs, classes);
    values.resize(static_cast<std::size_t>(pairs));
    rdrop::kernels::RDropPairsOptions<S> o;
    o.ce_weight = S(1) / S(2 * pairs);
    o.kl_weight = S(0.75) / S(pairs);
    o.label_smoothing = S(0.1);
    o.threads = threads;
    const auto sums = rdrop::kernels::rdrop_pairs(pairs, classes, x.data(), stride, x.data() + classes, stride,
                                                  labels.data(), labels.data(), g.data(), stride,
                                                  g.data() + classes, stride, o);
    Matrix<S> gk(2 * pairs, classes);
    const S kl = rdrop::kernels::symmetric_kl_pairs(pairs, classes, x.data(), stride, x.data() + classes, stride,
                                                    gk.data(), stride, gk.data() + classes, stride,
                                                    S(1) / S(pairs), values.data(), threads);
    g += gk;  // deterministic too: both parts are
    return std::make_pair(sums.loss, kl);
  };
  Matrix<S> g1;
  std::vector<S> v1;
  const auto r1 = run(1, g1, v1);
  for (int threads : {2, 3, 4}) {
    CAPTURE(threads);
    Matrix<S> g;
    std::vector<S> v;
    const auto r = run(threads, g, v);
    CHECK(same_bits(r.first, r1.first));
    CHECK(same_bits(r.second, r1.second));
    CHECK(same_bits(g, g1));
    CHECK(std::memcmp(v.data(), v1.data(), v.size() * sizeof(S)) == 0);
  }
}

TEST_CASE("set_num_threads rejects negative counts and keeps the setting", "[threads]") {
  GlobalThreadsGuard guard;
  rdrop::set_num_threads(3);
  CHECK(rdrop::num_threads() == 3);
  CHECK_THROWS_AS(rdrop::set_num_threads(-1), std::invalid_argument);
  CHECK(rdrop::num_threads() == 3);
  rdrop::set_num_threads(0);
  CHECK(rdrop::num_threads() == 0);
}

#ifdef _OPENMP
TEST_CASE("With OpenMP the sweeps really split the pairs over the threads asked for", "[threads]") {
  // parallel_ranges is what every sweep runs on: with 3 threads and enough
  // work it hands out 3 disjoint ranges covering all items, from 3 threads.
  const Index count = 1000;
  std::vector<int> owner(static_cast<std::size_t>(count), -1);
  rdrop::detail::parallel_ranges(count, Index(1) << 20, 3, [&](Index begin, Index end) {
    for (Index i = begin; i < end; ++i) owner[static_cast<std::size_t>(i)] = omp_get_thread_num();
  });
  std::vector<int> seen;
  for (int o : owner) {
    REQUIRE(o >= 0);
    if (seen.empty() || seen.back() != o) seen.push_back(o);
  }
  CHECK(seen == std::vector<int>{0, 1, 2});
  // Little work: sequential on the calling thread.
  std::vector<int> small(10, -1);
  rdrop::detail::parallel_ranges(Index(10), Index(100), 3, [&](Index begin, Index end) {
    for (Index i = begin; i < end; ++i) small[static_cast<std::size_t>(i)] = omp_get_thread_num();
  });
  CHECK(small == std::vector<int>(10, 0));
}
#endif
