// Duplicating a batch in both layouts, zero-copy views of the two copies,
// and the same loss from either layout.
#include "example_common.hpp"

int main() {
  using rdrop::Layout;
  const Eigen::Index B = 3;
  Matrix x(B, 2);  // three samples a, b, c with two features
  x << 1, 2,       //
      3, 4,        //
      5, 6;
  Eigen::VectorXi y(B);
  y << 0, 2, 1;

  // Interleaved: [a, a, b, b, c, c]. Stacked: [a, b, c, a, b, c].
  const Matrix xi = rdrop::Duplicate(x);  // Layout::Interleaved is the default
  const Matrix xs = rdrop::Duplicate(x, Layout::Stacked);
  check(xi.rows() == 2 * B && xs.rows() == 2 * B, "2B rows");
  for (Eigen::Index i = 0; i < B; ++i) {
    check(xi.row(2 * i) == x.row(i) && xi.row(2 * i + 1) == x.row(i), "interleaved rows");
    check(xs.row(i) == x.row(i) && xs.row(B + i) == x.row(i), "stacked rows");
  }
  // Labels and masks duplicate the same way (a vector keeps its type).
  const Eigen::VectorXi yi = rdrop::Duplicate(y);
  check(yi(0) == 0 && yi(1) == 0 && yi(4) == 1 && yi(5) == 1, "duplicated labels");

  // Tensors duplicate along their first dimension: [B, T, F] -> [2B, T, F].
  Eigen::Tensor<float, 3, Eigen::RowMajor> seq(B, 4, 2);
  seq.setRandom();
  const auto seq2 = rdrop::Duplicate(seq, Layout::Stacked);
  check(seq2.dimension(0) == 2 * B && seq2(B + 1, 3, 1) == seq(1, 3, 1), "duplicated tensor");

  // FirstCopy / SecondCopy: strided Eigen::Map views, no copy. With the
  // interleaved layout they are the seed's y_pred[::2] and y_pred[1::2].
  Matrix logits = Matrix::Random(2 * B, 5);  // stands for the model's output on xi
  auto first = rdrop::FirstCopy(logits);
  auto second = rdrop::SecondCopy(logits);
  check(first.rows() == B && first.data() == logits.data(), "first copy: rows 0, 2, 4");
  check(second.data() == logits.data() + 5, "second copy: rows 1, 3, 5");
  check(second.row(2) == logits.row(5), "second copy of sample 2 is row 5");
  second(0, 0) = 0.25;  // writable when the matrix is
  check(logits(1, 0) == 0.25, "views write through");

  // The views feed any pairwise functor, e.g. the symmetric KL of every pair.
  const rdrop::SymmetricKL<double> skl(rdrop::Reduction::Sum);
  const double d_views = skl.Evaluate(first, second);

  // The same pairs in the stacked layout give the same loss; the gradient
  // rows move with their logits rows.
  Matrix stacked(2 * B, 5);
  rdrop::FirstCopy(stacked, Layout::Stacked) = first;
  rdrop::SecondCopy(stacked, Layout::Stacked) = second;
  check(stacked.topRows(B) == first && stacked.bottomRows(B) == second, "stacked views are blocks");

  rdrop::RDropOptions<double> options;
  options.normalization = rdrop::Normalization::Sum;
  const rdrop::RDropLoss<double> interleaved_loss(options);
  options.layout = Layout::Stacked;
  const rdrop::RDropLoss<double> stacked_loss(options);

  Matrix gi, gs;
  const double vi = interleaved_loss.EvaluateWithGradient(logits, y, gi);
  const double vs = stacked_loss.EvaluateWithGradient(stacked, y, gs);
  check(vi == vs, "same loss in both layouts");
  check(rdrop::FirstCopy(gi) == rdrop::FirstCopy(gs, Layout::Stacked) &&
            rdrop::SecondCopy(gi) == rdrop::SecondCopy(gs, Layout::Stacked),
        "gradients permuted like the rows");

  // With alpha = 1 and Sum, the divergence part of the loss is Σ_k D_k.
  options.alpha = 0.0;
  const double ce_only = rdrop::RDropLoss<double>(options).Evaluate(stacked, y);
  check(std::abs(vs - ce_only - d_views) < 1e-12, "loss = CE + Σ D over the views");

  std::printf("interleaved and stacked agree: loss %.6f\n", vi);
  return exit_code();
}
