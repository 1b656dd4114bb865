// Must not compile: a column-major Eigen::Tensor (the default layout) as logits.
#include <rdrop/rdrop.hpp>

int main() {
  Eigen::Tensor<float, 2> logits(4, 3);  // ColMajor
  logits.setZero();
  const Eigen::VectorXi labels = Eigen::VectorXi::Zero(2);
  return static_cast<int>(rdrop::RDropLoss<float>().Evaluate(logits, labels));
}
