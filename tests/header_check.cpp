// Instantiates every public entry point in float and double with every
// accepted input kind (and bfloat16 / half logits and gradients), so that -Wall -Wextra -Wpedantic -Wconversion -Werror
// sees all of the headers' template code. Built, not run.
#include <rdrop/rdrop.hpp>

#include <cstdint>

namespace {

template <typename Scalar>
Scalar instantiate_all() {
  using Eigen::Dynamic;
  using RowMajor = Eigen::Matrix<Scalar, Dynamic, Dynamic, Eigen::RowMajor>;
  using ColMajor = Eigen::Matrix<Scalar, Dynamic, Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Dynamic, 1>;
  RowMajor x = RowMajor::Random(4, 3);
  ColMajor xc = x;
  Eigen::VectorXi y = Eigen::VectorXi::Zero(2);
  Eigen::Matrix<long, Dynamic, 1> y_long = Eigen::Matrix<long, Dynamic, 1>::Zero(4);
  RowMajor g;
  ColMajor gc(4, 3);
  Vector values;
  Scalar total = 0;

  rdrop::RDropLoss<Scalar> loss;
  total += loss.Evaluate(x, y);
  total += loss.EvaluateWithGradient(x, y, g);
  total += loss.EvaluateWithGradient(xc, y_long, gc);
  loss.Gradient(Eigen::Map<const RowMajor>(x.data(), 4, 3), y, Eigen::Map<RowMajor>(g.data(), 4, 3));
  loss.EvaluatePerRow(Eigen::Ref<const RowMajor>(x), y, values);
  total += loss.Evaluate(x * Scalar(2), y);

  Eigen::Tensor<Scalar, 3, Eigen::RowMajor> t(2, 2, 3);
  t.setZero();
  Eigen::Tensor<Scalar, 3, Eigen::RowMajor> gt;
  Eigen::Tensor<Scalar, 2, Eigen::RowMajor> vt;
  Eigen::Tensor<int, 2, Eigen::RowMajor> yt(1, 2);
  yt.setZero();
  total += loss.EvaluateWithGradient(t, yt, gt);
  loss.EvaluatePerRow(Eigen::TensorMap<const Eigen::Tensor<Scalar, 3, Eigen::RowMajor>>(t.data(), 2, 2, 3), yt, vt);
  Eigen::Tensor<Scalar, 2, Eigen::RowMajor> t2(4, 3);
  t2.setZero();
  total += loss.Evaluate(t2, y);

  rdrop::CrossEntropy<Scalar> ce;
  total += ce.EvaluateWithGradient(x, y_long, g);
  ce.EvaluatePerRow(xc, y_long, values);
  rdrop::SymmetricKL<Scalar> sym;
  RowMajor ga, gb;
  total += sym.EvaluateWithGradient(rdrop::FirstCopy(x), rdrop::SecondCopy(x), ga, gb);
  rdrop::KLDivergence<Scalar> kl(rdrop::Reduction::Sum);
  total += kl.Evaluate(x, xc);
  kl.EvaluatePerRow(x, x, values);

  RowMajor doubled = rdrop::Duplicate(x, rdrop::Layout::Stacked);
  auto first = rdrop::FirstCopy(doubled, rdrop::Layout::Stacked);
  first.setZero();
  // Masks, terms and counts, and the other R-Drop losses and divergences.
  Eigen::VectorXi mask = Eigen::VectorXi::Ones(2);
  total += loss.EvaluateWithGradient(x, y, mask, g);
  const rdrop::RDropTerms<Scalar> terms = loss.EvaluateTerms(x, y, mask);
  total += loss.WithCounts(loss.Count(x, y) + terms.counts).Normalize(terms);
  RowMajor targets = RowMajor::Zero(2, 3);
  total += rdrop::RDropMultiLabelLoss<Scalar>().EvaluateWithGradient(x, targets, gc);
  total += rdrop::RDropRegressionLoss<Scalar>().EvaluateWithGradient(t, Eigen::Tensor<Scalar, 3, Eigen::RowMajor>(2, 2, 3).setZero(), gt);
  total += rdrop::RDropLoss<Scalar, rdrop::JensenShannon<Scalar>>().Evaluate(x, y);
  total += rdrop::JensenShannon<Scalar>().Evaluate(x, x);

  const rdrop::Dropout<Scalar> dropout(Scalar(0.3), 7);
  RowMajor dropped;
  dropout.Forward(x, dropped, 1);
  dropout.Backward(xc, gc, 1);
  total += dropout.Mask(4, 3, 1)(0, 0);
  std::uint64_t step = 0;
  auto forward = [&](const auto& in, bool on) {
    RowMajor o = in;
    if (on) dropout.Forward(in, o, ++step);
    return o;
  };
  rdrop::ConsistencyOptions consistency;
  consistency.passes = 2;
  consistency.batch_rows = 3;
  total += rdrop::MeasureConsistency(forward, x, Eigen::VectorXi::Zero(4), consistency).kl;

  // The fused linear loss: hidden states 4 x 3, weight 5 x 3, with and
  // without bias, row- and column-major, a tensor, accumulating.
  const RowMajor w = RowMajor::Random(5, 3);
  const Vector bias = Vector::Zero(5);
  RowMajor gh, gw;
  ColMajor gwc(5, 3);
  Vector gbias;
  const rdrop::RDropLinearLoss<Scalar> linear;
  total += linear.EvaluateWithGradient(x, w, bias, y, gh, gw, gbias);
  total += linear.EvaluateWithGradient(xc, w.transpose().transpose(), rdrop::no_bias, y, mask, gc, gwc, rdrop::no_bias);
  total += linear.Evaluate(t, w, bias, yt);
  total += rdrop::RDropLinearLoss<Scalar, rdrop::JensenShannon<Scalar>>({}, {1 << 20, true}).Evaluate(x, w, bias, y);
  total += static_cast<Scalar>(linear.Count(x, w, y).pairs + linear.ChunkPairs(5, 3));

  auto tensor_doubled = rdrop::Duplicate(t);
  total += tensor_doubled(0, 0, 0);
  return total;
}

/// Logits and gradients of a 2-byte type T in every loss of a float Scalar.
template <typename T>
float instantiate_two_byte() {
  using Eigen::Dynamic;
  using RowMajor = Eigen::Matrix<T, Dynamic, Dynamic, Eigen::RowMajor>;
  using ColMajor = Eigen::Matrix<T, Dynamic, Dynamic>;
  using Floats = Eigen::Matrix<float, Dynamic, Dynamic, Eigen::RowMajor>;
  const RowMajor x = Floats::Random(4, 3).cast<T>();
  const ColMajor xc = x;
  const Eigen::VectorXi y = Eigen::VectorXi::Zero(2);
  RowMajor g;
  ColMajor gc(4, 3);
  Floats gf;
  Eigen::VectorXf values;
  float total = 0;
  const rdrop::RDropLoss<float> loss;
  total += loss.EvaluateWithGradient(x, y, g);
  total += loss.EvaluateWithGradient(xc, y, gf);
  total += loss.EvaluateWithGradient(Eigen::Map<const RowMajor>(x.data(), 4, 3), y, Eigen::Map<RowMajor>(g.data(), 4, 3));
  loss.EvaluatePerRow(x, y, Eigen::VectorXi::Ones(4), values);
  Eigen::Tensor<T, 3, Eigen::RowMajor> t(2, 2, 3), gt;
  t.setZero();
  Eigen::Tensor<int, 2, Eigen::RowMajor> yt(1, 2);
  yt.setZero();
  total += loss.EvaluateWithGradient(t, yt, gt);
  total += rdrop::RDropLoss<float, rdrop::JensenShannon<float>>().EvaluateWithGradient(x, y, gc);
  total += rdrop::RDropLoss<float, rdrop::KLDivergence<float>>().EvaluateWithGradient(x, y, g);
  const Floats targets = Floats::Zero(2, 3);
  total += rdrop::RDropMultiLabelLoss<float>().EvaluateWithGradient(x, targets, g);
  total += rdrop::RDropRegressionLoss<float>().EvaluateWithGradient(x, targets, gf);
  RowMajor ga, gb;
  total += rdrop::SymmetricKL<float>().EvaluateWithGradient(x, x, ga, gb);
  total += rdrop::JensenShannon<float>().EvaluateWithGradient(x, x, ga, gb);
  total += rdrop::kernels::symmetric_kl_pairs(2, 3, x.data(), 3, x.data() + 6, 3, g.data(), 3, g.data() + 6, 3);
  total += rdrop::kernels::rdrop_pairs(2, 3, x.data(), 3, x.data() + 6, 3, nullptr, nullptr, g.data(), 3,
                                       g.data() + 6, 3).loss;
  return total;
}

}  // namespace

float header_check_bfloat16() { return instantiate_two_byte<Eigen::bfloat16>(); }
float header_check_half() { return instantiate_two_byte<Eigen::half>(); }
float header_check_float() { return instantiate_all<float>(); }
double header_check_double() { return instantiate_all<double>(); }
