// A consumer of rdrop: one R-Drop loss on a tiny batch, checked against
// the value worked out by hand. Exits non-zero on a mismatch.
#include <rdrop/rdrop.hpp>

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
  std::printf("rdrop %s consumer: loss %.12f (expected %.12f): %s\n", rdrop::version, loss, want,
              ok ? "ok" : "MISMATCH");
  return ok ? 0 : 1;
}
