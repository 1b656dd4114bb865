// A consumer of rdrop: one R-Drop loss on a tiny batch, checked against
// the value worked out by hand. Exits non-zero on a mismatch. Linking
// rdrop::rdrop (or using rdrop.pc) must not change how the consumer's own
// code runs: no OpenMP, so Eigen's products stay single-threaded, and the
// consumer's language standard is its own.
#include <rdrop/rdrop.hpp>

#ifdef _OPENMP
#error "rdrop::rdrop turned on OpenMP in its consumer; only rdrop::openmp may"
#endif
#if defined(RDROP_CONSUMER_CXX) && __cplusplus < RDROP_CONSUMER_CXX
#error "rdrop changed the consumer's C++ standard"
#endif

#include <cmath>
#include <cstdio>

int main() {
  using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  // Two samples of two classes, duplicated in place ([a, a, b, b]); both
  // copies agree, so the divergence is 0 and the loss is the mean CE.
  Matrix logits(4, 2);
  logits << 0, 0, 0, 0, 1, 1, 1, 1;
  Eigen::VectorXi labels(2);
  labels << 0, 1;
  Matrix grad;
  const double loss = rdrop::RDropLoss<double>().EvaluateWithGradient(logits, labels, grad);
  const double want = std::log(2.0);  // CE of two equal logits
  const bool ok = std::abs(loss - want) < 1e-12 && grad.rows() == 4 && std::abs(grad(0, 0) + 0.125) < 1e-12;
  // The consumer's model: a product large enough for Eigen to split it
  // over threads if it were built with OpenMP.
  const Eigen::MatrixXf w = Eigen::MatrixXf::Random(256, 256);
  const Eigen::MatrixXf h = w * w;
  const bool single = Eigen::nbThreads() == 1 && h.allFinite();
  std::printf("rdrop %s consumer (C++ %ld): loss %.12f (expected %.12f), Eigen threads %d: %s\n", rdrop::version,
              static_cast<long>(__cplusplus), loss, want, Eigen::nbThreads(), ok && single ? "ok" : "MISMATCH");
  return ok && single ? 0 : 1;
}
