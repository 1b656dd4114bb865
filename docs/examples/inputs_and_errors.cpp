// One loss, many input and output types; errors that leave outputs
// untouched; the empty batch; NaN; thread counts.
#include "example_common.hpp"

#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// Runs f, expecting std::invalid_argument whose message contains `needle`.
template <typename F>
void expect_error(F f, const std::string& needle) {
  try {
    f();
    check(false, needle.c_str());
  } catch (const std::invalid_argument& e) {
    std::printf("%s\n", e.what());
    check(std::string(e.what()).find(needle) != std::string::npos, needle.c_str());
  }
}

}  // namespace

int main() {
  const Eigen::Index B = 3, C = 4;
  const rdrop::RDropLoss<double> loss;  // alpha 1, interleaved, KerasCode
  Eigen::VectorXi y(B);
  y << 1, 3, 0;

  // Logits in a buffer owned by someone else (a model, an engine).
  std::vector<double> buffer(static_cast<std::size_t>(2 * B * C));
  for (std::size_t i = 0; i < buffer.size(); ++i) buffer[i] = std::sin(double(i));
  const Eigen::Map<const Matrix> logits(buffer.data(), 2 * B, C);  // read in place

  Matrix grad;
  const double value = loss.EvaluateWithGradient(logits, y, grad);

  // Every accepted input type gives the same value.
  const Eigen::MatrixXd col_major = logits;  // column-major: read through a row-major copy
  const Eigen::Ref<const Matrix> ref(logits);
  const Eigen::TensorMap<Eigen::Tensor<const double, 2, Eigen::RowMajor>> tensor(buffer.data(), 2 * B, C);
  const Eigen::MatrixXd per_column = logits.transpose();  // one sample per column
  check(loss.Evaluate(col_major, y) == value, "column-major matrix");
  check(loss.Evaluate(ref, y) == value, "Eigen::Ref");
  check(loss.Evaluate(tensor, y) == value, "rank-2 TensorMap");
  check(loss.Evaluate(per_column.transpose(), y) == value, "an expression");
  check(loss.Evaluate(logits, y.cast<long>()) == value, "labels of another integer type");

  // Gradient outputs. Matrix, Array and Tensor are resized; Map, Ref, Block
  // and other views must already have the logits' shape.
  Eigen::MatrixXd grad_col(7, 7);  // any size: resized to 2B x C
  loss.Gradient(logits, y, grad_col);
  check(grad_col == grad, "column-major gradient");
  Eigen::MatrixXd grad_t(C, 2 * B);  // one sample per column: write through a transpose
  loss.Gradient(logits, y, grad_t.transpose());
  check(grad_t.transpose() == grad, "gradient into a transposed view");
  Eigen::Tensor<double, 2, Eigen::RowMajor> grad_tensor;
  loss.Gradient(tensor, y, grad_tensor);
  check(grad_tensor.dimension(0) == 2 * B && grad_tensor(4, 2) == grad(4, 2), "tensor gradient");

  // Errors: std::invalid_argument naming the argument and the shapes, thrown
  // before anything is written.
  Matrix untouched = Matrix::Constant(2 * B, C, 7.0);
  Eigen::Map<Matrix> wrong(untouched.data(), 2 * B, C - 1);
  expect_error([&] { loss.Gradient(logits, y, wrong); }, "argument 'gradient' has shape [6 x 3]; expected [6 x 4]");
  Eigen::VectorXi y_bad(B);
  y_bad << 1, 4, 0;  // 4 is not a class of C = 4
  expect_error([&] { loss.EvaluateWithGradient(logits, y_bad, untouched); }, "'labels' entry 1 is 4");
  expect_error([&] { loss.Evaluate(logits, Eigen::VectorXi::Zero(4)); }, "'labels' has 4 entries");
  expect_error([&] { loss.Evaluate(logits.topRows(5), y); }, "odd number (5) of rows");
  expect_error([] { rdrop::RDropOptions<double> o; o.alpha = -1.0; rdrop::RDropLoss<double> l(o); }, "'alpha'");
  expect_error([] { rdrop::CrossEntropyOptions<double> o; o.label_smoothing = 1.0; rdrop::CrossEntropy<double> c(o); },
               "'label_smoothing'");
  check(untouched.rows() == 2 * B && (untouched.array() == 7.0).all(), "outputs untouched on error");

  // An empty batch is valid: loss 0, gradient 0 x C.
  const Matrix empty(0, C);
  Matrix grad_empty = Matrix::Ones(2, 2);
  const double v_empty = loss.EvaluateWithGradient(empty, Eigen::VectorXi(0), grad_empty);
  check(v_empty == 0.0 && grad_empty.rows() == 0 && grad_empty.cols() == C, "empty batch");

  // NaN is not checked for: it propagates to the loss and to its own pair's
  // gradient rows; the other pairs' rows are unaffected.
  Matrix with_nan = logits;
  with_nan(1, 2) = std::numeric_limits<double>::quiet_NaN();  // pair 0 = rows 0 and 1
  Matrix grad_nan;
  check(std::isnan(loss.EvaluateWithGradient(with_nan, y, grad_nan)), "NaN loss");
  check(grad_nan.bottomRows(4) == grad.bottomRows(4), "other pairs unaffected by NaN");

  // Threads: any count gives bitwise identical results (OpenMP builds
  // split the pairs; small batches stay sequential).
  const Matrix large = Matrix::Random(512, 300);
  const Eigen::VectorXi y_large = Eigen::VectorXi::Constant(256, 7);
  rdrop::set_num_threads(2);  // global default for every rdrop sweep
  rdrop::RDropOptions<double> one, three;
  one.threads = 1;            // this loss only
  three.threads = 3;
  Matrix g1, g3;
  const double v1 = rdrop::RDropLoss<double>(one).EvaluateWithGradient(large, y_large, g1);
  const double v3 = rdrop::RDropLoss<double>(three).EvaluateWithGradient(large, y_large, g3);
  const double v_global = rdrop::RDropLoss<double>().Evaluate(large, y_large);
  check(v1 == v3 && v1 == v_global && g1 == g3, "bitwise identical for 1, 2 and 3 threads");
  rdrop::set_num_threads(0);  // back to OpenMP's default

  std::printf("loss %.6f from every input type\n", value);
  return exit_code();
}
