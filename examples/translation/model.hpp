// A small transformer encoder-decoder in libtorch for the translation
// example: fairseq's transformer layout (Vaswani et al. 2017) with
//
// * one embedding matrix [V, D] for source tokens, target tokens and the
//   output layer (the weight the trainer passes to rdrop::torch::linear_loss),
//   initialized N(0, D^-1/2) with the padding row zero, scaled by sqrt(D);
// * fairseq's sinusoidal positions (sin half, cos half), not learned;
// * pre-norm layers by default (LayerNorm before each sub-layer, one more
//   at the end of each stack: fairseq's --*-normalize-before), post-norm
//   (the original transformer, fairseq's default) with pre_norm = false;
// * dropout on the embeddings and on each sub-layer's output before the
//   residual sum, attention dropout separately (fairseq's --dropout and
//   --attention-dropout); ReLU feed-forward.
//
// libtorch 1.13's torch::nn::TransformerEncoderLayer / DecoderLayer are
// post-norm only (no norm_first), so the layers are written here around
// torch::nn::MultiheadAttention (sequence-first: [T, B, D]).
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

namespace translation {

struct ModelConfig {
  int64_t vocab = 8000;
  int64_t d_model = 256;
  int64_t ffn = 1024;
  int64_t heads = 4;
  int64_t encoder_layers = 3;
  int64_t decoder_layers = 3;
  double dropout = 0.3;
  double attention_dropout = 0.0;
  bool pre_norm = true;
  int64_t pad = 0;
  int64_t max_positions = 1024;
};

/// fairseq's SinusoidalPositionalEmbedding table [max_positions, D]:
/// sin(pos · ω_i) in the first half of the columns, cos in the second,
/// ω_i = 10000^(−i/(D/2−1)).
inline at::Tensor sinusoidal_positions(int64_t max_positions, int64_t d) {
  const int64_t half = d / 2;
  const double step = std::log(10000.0) / static_cast<double>(half > 1 ? half - 1 : 1);
  const at::Tensor freq = torch::exp(torch::arange(half, torch::kFloat) * -step);
  const at::Tensor angles = torch::arange(max_positions, torch::kFloat).unsqueeze(1) * freq.unsqueeze(0);
  at::Tensor table = torch::cat({torch::sin(angles), torch::cos(angles)}, 1);
  if (d % 2 == 1) table = torch::cat({table, torch::zeros({max_positions, 1})}, 1);
  return table;
}

struct FeedForwardImpl : torch::nn::Module {
  FeedForwardImpl(int64_t d, int64_t ffn) {
    fc1 = register_module("fc1", torch::nn::Linear(d, ffn));
    fc2 = register_module("fc2", torch::nn::Linear(ffn, d));
  }
  at::Tensor forward(const at::Tensor& x) { return fc2(torch::relu(fc1(x))); }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(FeedForward);

inline torch::nn::MultiheadAttention attention(const ModelConfig& c) {
  return torch::nn::MultiheadAttention(
      torch::nn::MultiheadAttentionOptions(c.d_model, c.heads).dropout(c.attention_dropout));
}

inline torch::nn::LayerNorm layer_norm(const ModelConfig& c) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model}));
}

/// x + dropout(f(norm(x))) (pre-norm) or norm(x + dropout(f(x))) (post-norm).
template <typename F>
at::Tensor sublayer(bool pre_norm, torch::nn::LayerNorm& norm, torch::nn::Dropout& dropout, const at::Tensor& x, F&& f) {
  if (pre_norm) return x + dropout(f(norm(x)));
  return norm(x + dropout(f(x)));
}

struct EncoderLayerImpl : torch::nn::Module {
  explicit EncoderLayerImpl(const ModelConfig& c) : pre_norm(c.pre_norm) {
    self_attention = register_module("self_attention", attention(c));
    feed_forward = register_module("feed_forward", FeedForward(c.d_model, c.ffn));
    norm1 = register_module("norm1", layer_norm(c));
    norm2 = register_module("norm2", layer_norm(c));
    dropout = register_module("dropout", torch::nn::Dropout(c.dropout));
  }
  /// x [S, B, D]; padding [B, S] bool, true at padding.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& padding) {
    at::Tensor y = sublayer(pre_norm, norm1, dropout, x, [&](const at::Tensor& h) {
      return std::get<0>(self_attention->forward(h, h, h, padding, /*need_weights=*/false));
    });
    return sublayer(pre_norm, norm2, dropout, y, [&](const at::Tensor& h) { return feed_forward(h); });
  }
  bool pre_norm;
  torch::nn::MultiheadAttention self_attention{nullptr};
  FeedForward feed_forward{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Dropout dropout{nullptr};
};
TORCH_MODULE(EncoderLayer);

struct DecoderLayerImpl : torch::nn::Module {
  explicit DecoderLayerImpl(const ModelConfig& c) : pre_norm(c.pre_norm) {
    self_attention = register_module("self_attention", attention(c));
    cross_attention = register_module("cross_attention", attention(c));
    feed_forward = register_module("feed_forward", FeedForward(c.d_model, c.ffn));
    norm1 = register_module("norm1", layer_norm(c));
    norm2 = register_module("norm2", layer_norm(c));
    norm3 = register_module("norm3", layer_norm(c));
    dropout = register_module("dropout", torch::nn::Dropout(c.dropout));
  }
  /// x [T, B, D]; causal [T, T] float (−inf above the diagonal); memory
  /// [S, B, D]; memory_padding [B, S] bool. Target padding needs no mask:
  /// it sits after every real token, which the causal mask keeps it from.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& causal, const at::Tensor& memory,
                     const at::Tensor& memory_padding) {
    at::Tensor y = sublayer(pre_norm, norm1, dropout, x, [&](const at::Tensor& h) {
      return std::get<0>(self_attention->forward(h, h, h, {}, /*need_weights=*/false, causal));
    });
    y = sublayer(pre_norm, norm2, dropout, y, [&](const at::Tensor& h) {
      return std::get<0>(cross_attention->forward(h, memory, memory, memory_padding, /*need_weights=*/false));
    });
    return sublayer(pre_norm, norm3, dropout, y, [&](const at::Tensor& h) { return feed_forward(h); });
  }
  /// One position, for decoding: x [1, B, D] is the layer's input at the
  /// next position; cache [t, B, D] holds what self-attention attended to at
  /// the t positions before it (their normalized inputs, pre-norm) and gets
  /// this position's. Causality makes the earlier positions' inputs final,
  /// so the output equals forward()'s at this position without recomputing
  /// the prefix.
  at::Tensor step(const at::Tensor& x, at::Tensor& cache, const at::Tensor& memory, const at::Tensor& memory_padding) {
    at::Tensor y = sublayer(pre_norm, norm1, dropout, x, [&](const at::Tensor& h) {
      cache = cache.defined() ? torch::cat({cache, h}) : h;
      return std::get<0>(self_attention->forward(h, cache, cache, {}, /*need_weights=*/false));
    });
    y = sublayer(pre_norm, norm2, dropout, y, [&](const at::Tensor& h) {
      return std::get<0>(cross_attention->forward(h, memory, memory, memory_padding, /*need_weights=*/false));
    });
    return sublayer(pre_norm, norm3, dropout, y, [&](const at::Tensor& h) { return feed_forward(h); });
  }
  bool pre_norm;
  torch::nn::MultiheadAttention self_attention{nullptr}, cross_attention{nullptr};
  FeedForward feed_forward{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  torch::nn::Dropout dropout{nullptr};
};
TORCH_MODULE(DecoderLayer);

struct Encoded {
  at::Tensor memory;   // [S, B, D]
  at::Tensor padding;  // [B, S] bool
};

/// What incremental decoding keeps between positions: one self-attention
/// cache per decoder layer, and the next position.
struct DecoderState {
  std::vector<at::Tensor> caches;
  int64_t position = 0;
};

struct TransformerImpl : torch::nn::Module {
  explicit TransformerImpl(const ModelConfig& c) : config(c) {
    embedding = register_module(
        "embedding", torch::nn::Embedding(torch::nn::EmbeddingOptions(c.vocab, c.d_model).padding_idx(c.pad)));
    {
      torch::NoGradGuard no_grad;
      embedding->weight.normal_(0, 1.0 / std::sqrt(static_cast<double>(c.d_model)));
      embedding->weight[c.pad].zero_();
    }
    positions = register_buffer("positions", sinusoidal_positions(c.max_positions, c.d_model));
    dropout = register_module("dropout", torch::nn::Dropout(c.dropout));
    encoder = register_module("encoder", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.encoder_layers; ++i) encoder->push_back(EncoderLayer(c));
    decoder = register_module("decoder", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.decoder_layers; ++i) decoder->push_back(DecoderLayer(c));
    if (c.pre_norm) {
      encoder_norm = register_module("encoder_norm", layer_norm(c));
      decoder_norm = register_module("decoder_norm", layer_norm(c));
    }
  }

  /// The tied weight [V, D]: embeddings and output layer.
  const at::Tensor& output_weight() const { return embedding->weight; }

  /// tokens [B, T] at positions first, first + 1, ... ->
  /// dropout(sqrt(D)·E[tokens] + positions) as [T, B, D].
  at::Tensor embed(const at::Tensor& tokens, int64_t first = 0) {
    const int64_t end = first + tokens.size(1);
    TORCH_CHECK(end <= config.max_positions, "sequence of ", end, " tokens, longer than the model's ",
                config.max_positions, " positions");
    const at::Tensor x =
        embedding(tokens) * std::sqrt(static_cast<double>(config.d_model)) + positions.slice(0, first, end);
    return dropout(x).transpose(0, 1);
  }

  /// source [B, S] (padded with config.pad).
  Encoded encode(const at::Tensor& source) {
    Encoded e{embed(source), source.eq(config.pad)};
    for (const auto& layer : *encoder) e.memory = layer->as<EncoderLayer>()->forward(e.memory, e.padding);
    if (config.pre_norm) e.memory = encoder_norm(e.memory);
    return e;
  }

  /// target_in [B, T] (BOS first) -> the decoder's last hidden states [B, T, D].
  at::Tensor decode(const at::Tensor& target_in, const Encoded& e) {
    const int64_t t = target_in.size(1);
    const at::Tensor causal =
        torch::full({t, t}, -std::numeric_limits<float>::infinity(), target_in.options().dtype(torch::kFloat)).triu(1);
    at::Tensor x = embed(target_in);
    for (const auto& layer : *decoder) x = layer->as<DecoderLayer>()->forward(x, causal, e.memory, e.padding);
    if (config.pre_norm) x = decoder_norm(x);
    return x.transpose(0, 1);
  }

  /// Incremental decoding: tokens [B] at the state's next position -> the
  /// decoder's last hidden state there [B, D], as decode() gives it for the
  /// whole prefix (equal up to rounding), in time linear in the prefix.
  at::Tensor decode_step(const at::Tensor& tokens, const Encoded& e, DecoderState& state) {
    if (state.caches.empty()) state.caches.resize(decoder->size());
    at::Tensor x = embed(tokens.unsqueeze(1), state.position);  // [1, B, D]
    std::size_t i = 0;
    for (const auto& layer : *decoder) x = layer->as<DecoderLayer>()->step(x, state.caches[i++], e.memory, e.padding);
    if (config.pre_norm) x = decoder_norm(x);
    ++state.position;
    return x.squeeze(0);
  }

  ModelConfig config;
  torch::nn::Embedding embedding{nullptr};
  at::Tensor positions;
  torch::nn::Dropout dropout{nullptr};
  torch::nn::ModuleList encoder{nullptr}, decoder{nullptr};
  torch::nn::LayerNorm encoder_norm{nullptr}, decoder_norm{nullptr};
};
TORCH_MODULE(Transformer);

}  // namespace translation
