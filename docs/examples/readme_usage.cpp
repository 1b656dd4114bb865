#include <rdrop/rdrop.hpp>

#include <random>

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

int main() {
  const Matrix x = Matrix::Random(8, 4);                           // B = 8 samples, 4 features
  const Eigen::VectorXi y = (x.col(0).array() > 0.0f).cast<int>();  // 2 classes
  Matrix w = Matrix::Zero(4, 2);                                    // the model: logits = dropout(x) w

  rdrop::RDropOptions<float> options;
  options.alpha = 4.0f;                         // weight of the symmetric KL term
  const rdrop::RDropLoss<float> loss(options);  // the seed's Keras form, interleaved rows

  std::mt19937 rng(1);
  std::bernoulli_distribution keep(0.8);  // dropout p = 0.2
  for (int step = 0; step < 100; ++step) {
    const Matrix x2 = rdrop::Duplicate(x);  // 2B rows: [a, a, b, b, ...]
    const Matrix mask = Matrix::NullaryExpr(x2.rows(), x2.cols(), [&] { return keep(rng) ? 1.25f : 0.0f; });
    const Matrix h = x2.cwiseProduct(mask);  // every row draws its own mask
    const Matrix logits = h * w;             // one forward pass over 2B rows

    Matrix grad;                                 // d loss / d logits, resized to 2B x C
    loss.EvaluateWithGradient(logits, y, grad);  // labels once per sample; returns the loss
    w -= 0.5f * h.transpose() * grad;            // backpropagate, SGD step
  }
  const Matrix out = x * w;  // predict with dropout off
  return ((out.col(1).array() > out.col(0).array()).cast<int>() == y.array()).all() ? 0 : 1;
}
