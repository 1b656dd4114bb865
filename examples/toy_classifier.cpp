// A small classifier trained with R-Drop: a one-hidden-layer MLP with dropout
// on synthetic Gaussian clusters, plain SGD. The model and the optimizer live
// here; the loss, its gradient and the batch duplication come from rdrop.
//
//   rdrop_toy_classifier [alpha] [epochs]
#include <rdrop/rdrop.hpp>

#include <Eigen/Core>

#include <cstdio>
#include <cstdlib>
#include <random>

namespace {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vector = Eigen::RowVectorXf;

constexpr int kFeatures = 16, kHidden = 64, kClasses = 5;

struct Data {
  Matrix x;
  Eigen::VectorXi y;
};

// Clusters with overlapping noise, so there is something to generalize.
Data make_data(int n, const Matrix& centers, std::mt19937& rng) {
  std::normal_distribution<float> noise(0.0f, 1.6f);
  std::uniform_int_distribution<int> cls(0, kClasses - 1);
  Data d{Matrix(n, kFeatures), Eigen::VectorXi(n)};
  for (int i = 0; i < n; ++i) {
    d.y(i) = cls(rng);
    for (int j = 0; j < kFeatures; ++j) d.x(i, j) = centers(d.y(i), j) + noise(rng);
  }
  return d;
}

struct Mlp {
  Matrix w1, w2;
  Vector b1, b2;
  explicit Mlp(std::mt19937& rng) {
    std::normal_distribution<float> init(0.0f, 1.0f);
    w1 = Matrix::NullaryExpr(kFeatures, kHidden, [&] { return init(rng) * 0.35f; });
    w2 = Matrix::NullaryExpr(kHidden, kClasses, [&] { return init(rng) * 0.18f; });
    b1 = Vector::Zero(kHidden);
    b2 = Vector::Zero(kClasses);
  }
};

float accuracy(const Mlp& m, const Data& d) {
  const Matrix h = ((d.x * m.w1).rowwise() + m.b1).cwiseMax(0.0f);
  const Matrix logits = (h * m.w2).rowwise() + m.b2;
  int correct = 0;
  for (Eigen::Index i = 0; i < logits.rows(); ++i) {
    Eigen::Index arg = 0;
    logits.row(i).maxCoeff(&arg);
    correct += (arg == d.y(i));
  }
  return static_cast<float>(correct) / static_cast<float>(d.x.rows());
}

}  // namespace

int main(int argc, char** argv) {
  const float alpha = argc > 1 ? std::strtof(argv[1], nullptr) : 4.0f;
  const int epochs = argc > 2 ? std::atoi(argv[2]) : 30;
  const float p_drop = 0.3f, lr = 0.1f;
  const int batch = 32;

  std::mt19937 rng(7);
  std::normal_distribution<float> center(0.0f, 1.0f);
  const Matrix centers = Matrix::NullaryExpr(kClasses, kFeatures, [&] { return center(rng); });
  const Data train = make_data(400, centers, rng), test = make_data(2000, centers, rng);
  Mlp m(rng);

  rdrop::RDropOptions<float> options;
  options.alpha = alpha;  // the seed's α; 0 gives plain dropout training
  const rdrop::RDropLoss<float> loss(options);
  std::bernoulli_distribution keep(1.0 - p_drop);

  for (int epoch = 1; epoch <= epochs; ++epoch) {
    float epoch_loss = 0.0f;
    int steps = 0;
    for (int start = 0; start + batch <= train.x.rows(); start += batch) {
      // (1) duplicate the batch: [a, a, b, b, ...]
      const Matrix x = rdrop::Duplicate(train.x.middleRows(start, batch));
      const Eigen::VectorXi y = train.y.segment(start, batch);
      // (2) one forward pass over 2B rows with dropout on: every row draws
      // its own mask, so the two copies of a sample differ.
      const Matrix pre = (x * m.w1).rowwise() + m.b1;
      const Matrix mask = Matrix::NullaryExpr(pre.rows(), pre.cols(), [&] {
        return keep(rng) ? 1.0f / (1.0f - p_drop) : 0.0f;
      });
      const Matrix h = pre.cwiseMax(0.0f).cwiseProduct(mask);
      const Matrix logits = (h * m.w2).rowwise() + m.b2;
      // (3) R-Drop loss and its gradient for all 2B rows
      Matrix grad;
      epoch_loss += loss.EvaluateWithGradient(logits, y, grad);
      ++steps;
      // (4) backpropagate through the model
      const Matrix dh = (grad * m.w2.transpose()).cwiseProduct(mask).cwiseProduct(
          (pre.array() > 0.0f).cast<float>().matrix());
      m.w2 -= lr * h.transpose() * grad;
      m.b2 -= lr * grad.colwise().sum();
      m.w1 -= lr * x.transpose() * dh;
      m.b1 -= lr * dh.colwise().sum();
    }
    if (epoch % 5 == 0 || epoch == epochs) {
      std::printf("epoch %3d  loss %.4f  train acc %.3f  test acc %.3f\n", epoch,
                  static_cast<double>(epoch_loss / static_cast<float>(steps)),
                  static_cast<double>(accuracy(m, train)), static_cast<double>(accuracy(m, test)));
    }
  }
  std::printf("test_accuracy=%.4f\n", static_cast<double>(accuracy(m, test)));
  return 0;
}
