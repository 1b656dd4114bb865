// Must not compile: integer logits.
#include <rdrop/rdrop.hpp>

int main() {
  const Eigen::MatrixXi logits = Eigen::MatrixXi::Zero(4, 3);
  const Eigen::VectorXi labels = Eigen::VectorXi::Zero(2);
  return static_cast<int>(rdrop::RDropLoss<float>().Evaluate(logits, labels));
}
