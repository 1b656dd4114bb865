// A user-defined divergence: half the squared distance between the two
// copies' softmax distributions. Derived from PairedDivergence it gets the
// matrix API; plugged into RDropLoss it replaces the symmetric KL.
#include "example_common.hpp"

// D(a, b) = ½ Σ_j (p_j - q_j)², p = softmax(a), q = softmax(b). With
// r = p - q:  ∂D/∂a = p ⊙ (r - ⟨p, r⟩),  ∂D/∂b = q ⊙ (⟨q, r⟩ - r).
template <typename Scalar>
class SoftmaxSquaredError
    : public rdrop::PairedDivergence<SoftmaxSquaredError<Scalar>, Scalar> {
 public:
  using Row = Eigen::Array<Scalar, 1, Eigen::Dynamic>;
  // Inherit the Reduction constructor (the default reduces by the mean).
  using rdrop::PairedDivergence<SoftmaxSquaredError<Scalar>, Scalar>::PairedDivergence;

  Scalar EvaluatePair(rdrop::ConstRowMap<Scalar> a, rdrop::ConstRowMap<Scalar> b) const {
    return Scalar(0.5) * (softmax(a) - softmax(b)).square().sum();
  }

  Scalar EvaluatePairWithGradient(rdrop::ConstRowMap<Scalar> a, rdrop::ConstRowMap<Scalar> b,
                                  rdrop::RowMap<Scalar>& grad_a,
                                  rdrop::RowMap<Scalar>& grad_b) const {
    const Row p = softmax(a), q = softmax(b), r = p - q;
    grad_a = p * (r - (p * r).sum());  // overwrite, do not accumulate
    grad_b = q * ((q * r).sum() - r);
    return Scalar(0.5) * r.square().sum();
  }

 private:
  static Row softmax(const rdrop::ConstRowMap<Scalar>& x) {
    const Row e = (x - x.maxCoeff()).exp();
    return e / e.sum();
  }
};

static_assert(rdrop::is_divergence_v<SoftmaxSquaredError<double>, double>);
static_assert(rdrop::is_divergence_v<SoftmaxSquaredError<float>, float>);
static_assert(!rdrop::is_divergence_v<rdrop::CrossEntropy<double>, double>);

namespace {

// The divergence written out once more, for the reference values.
double squared_error(const Row& a, const Row& b) { return 0.5 * (softmax(a) - softmax(b)).squaredNorm(); }

}  // namespace

int main() {
  const Eigen::Index B = 4, C = 5;
  const Matrix first = Matrix::Random(B, C), second = Matrix::Random(B, C);

  // Stand-alone: the matrix API comes from PairedDivergence.
  const SoftmaxSquaredError<double> d;  // Reduction::Mean
  Matrix g1, g2;
  const double value = d.EvaluateWithGradient(first, second, g1, g2);
  double ref = 0.0;
  for (Eigen::Index i = 0; i < B; ++i) ref += squared_error(first.row(i), second.row(i)) / double(B);
  check(std::abs(value - ref) < 1e-14, "value = mean over pairs");
  check(gradient_error([&](const Matrix& x) { return d.Evaluate(x, second); }, first, g1) < 1e-9,
        "gradient for the first argument");
  check(gradient_error([&](const Matrix& x) { return d.Evaluate(first, x); }, second, g2) < 1e-9,
        "gradient for the second argument");

  // Plugged into RDropLoss: CE on both copies + alpha · D(first copy, second copy).
  const Matrix logits = Matrix::Random(2 * B, C);  // interleaved
  Eigen::VectorXi y(B);
  y << 4, 0, 1, 1;
  rdrop::RDropOptions<double> options;
  options.alpha = 3.0;
  options.normalization = rdrop::Normalization::Sum;  // Σ CE + α Σ D
  const rdrop::RDropLoss<double, SoftmaxSquaredError<double>> loss(options);

  Matrix grad;
  const double total = loss.EvaluateWithGradient(logits, y, grad);
  rdrop::CrossEntropyOptions<double> ce_options;
  ce_options.reduction = rdrop::Reduction::Sum;
  const double ce = rdrop::CrossEntropy<double>(ce_options).Evaluate(logits, rdrop::Duplicate(y));
  const double div = SoftmaxSquaredError<double>(rdrop::Reduction::Sum)
                         .Evaluate(rdrop::FirstCopy(logits), rdrop::SecondCopy(logits));
  check(std::abs(total - (ce + 3.0 * div)) < 1e-12, "RDropLoss = Σ CE + α Σ D");
  check(gradient_error([&](const Matrix& x) { return loss.Evaluate(x, y); }, logits, grad) < 1e-8,
        "RDropLoss gradient with the user divergence");

  std::printf("user divergence %.6f, R-Drop loss with it %.6f\n", value, total);
  return exit_code();
}
