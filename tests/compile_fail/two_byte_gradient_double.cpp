// A double loss writes double gradients only: a half gradient is refused.
#include <rdrop/rdrop.hpp>

int main() {
  Eigen::MatrixXd x = Eigen::MatrixXd::Zero(4, 3);
  Eigen::Matrix<Eigen::half, Eigen::Dynamic, Eigen::Dynamic> g;
  Eigen::VectorXi y = Eigen::VectorXi::Zero(2);
  rdrop::RDropLoss<double>().Gradient(x, y, g);
  return 0;
}
