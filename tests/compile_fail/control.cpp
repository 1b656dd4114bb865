// Must compile: the same calls with supported types, so that the other
// cases fail for their type alone and not for the set-up.
#include <rdrop/rdrop.hpp>

int main() {
  const Eigen::MatrixXf logits = Eigen::MatrixXf::Zero(4, 3);
  Eigen::Tensor<float, 2, Eigen::RowMajor> tensor(4, 3);
  tensor.setZero();
  const Eigen::VectorXi labels = Eigen::VectorXi::Zero(2);
  const rdrop::RDropLoss<float> loss;
  return static_cast<int>(loss.Evaluate(logits, labels) + loss.Evaluate(tensor, labels));
}
