// bfloat16 logits go to a float loss (which computes in float); a double
// loss refuses them.
#include <rdrop/rdrop.hpp>

int main() {
  Eigen::Matrix<Eigen::bfloat16, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> x(4, 3);
  x.setZero();
  Eigen::VectorXi y = Eigen::VectorXi::Zero(2);
  return static_cast<int>(rdrop::RDropLoss<double>().Evaluate(x, y));
}
