// A language model's head fused with R-Drop: the loss and all three
// gradients from the hidden states, the logits never held, and the weight
// tied to the token embedding, so that its gradient adds into the
// embedding's.
#include "example_common.hpp"

int main() {
  const Eigen::Index tokens = 48, hidden = 16, vocab = 500;  // 48 token positions, 2 copies each
  const FloatMatrix h = rdrop::Duplicate(FloatMatrix::Random(tokens, hidden));  // 2·48 rows, interleaved
  const FloatMatrix embedding = FloatMatrix::Random(vocab, hidden);          // V × D, tied to the head
  Eigen::VectorXi next(tokens);  // the next token at each position; 0 is padding
  for (Eigen::Index t = 0; t < tokens; ++t) next(t) = t < 40 ? static_cast<int>(1 + (t * 37) % (vocab - 1)) : 0;

  rdrop::RDropOptions<float> options;
  options.normalization = rdrop::Normalization::Fairseq;
  options.padding_index = 0;
  rdrop::LinearLossOptions linear;
  linear.chunk_bytes = 64 << 10;  // 64 KiB: 15 positions per chunk here (the default is 256 MiB)
  linear.accumulate = true;       // add ∂W into the embedding's gradient
  const rdrop::RDropLinearLoss<float> loss(options, linear);

  FloatMatrix grad_h = FloatMatrix::Zero(h.rows(), hidden);
  FloatMatrix grad_embedding = FloatMatrix::Zero(vocab, hidden);  // the embedding layer adds its part too
  const float value =
      loss.EvaluateWithGradient(h, embedding, rdrop::no_bias, next, grad_h, grad_embedding, rdrop::no_bias);
  check(loss.ChunkPairs(vocab, hidden) == 15, "chunks of 15 positions");

  // The same as the unfused pipeline: logits, RDropLoss, the products.
  const FloatMatrix logits = h * embedding.transpose();
  FloatMatrix g;
  const float want = loss.loss().EvaluateWithGradient(logits, next, g);
  check(std::abs(value - want) <= 1e-5f * want, "the value of the unfused pipeline");
  check((grad_h - g * embedding).cwiseAbs().maxCoeff() <= 1e-5f, "∂H = G·W");
  check((grad_embedding - g.transpose() * h).cwiseAbs().maxCoeff() <= 1e-5f, "∂W = Gᵀ·H");
  check(grad_h.bottomRows(16).isZero(0), "padding positions get no gradient");
  std::printf("loss %.6f (unfused %.6f)\n", static_cast<double>(value), static_cast<double>(want));
  return exit_code();
}
