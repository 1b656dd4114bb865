// Must not compile: double logits given to a float loss.
#include <rdrop/rdrop.hpp>

int main() {
  const Eigen::MatrixXd logits = Eigen::MatrixXd::Zero(4, 3);
  const Eigen::VectorXi labels = Eigen::VectorXi::Zero(2);
  return static_cast<int>(rdrop::RDropLoss<float>().Evaluate(logits, labels));
}
