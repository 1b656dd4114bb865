// Spanish -> English translation on the Bible with R-Drop (issue 24): a
// transformer encoder-decoder (model.hpp) trained on the data of
// prepare-data.sh, the loss rdrop::torch::linear_loss (the tied output
// layer fused with R-Drop's loss), greedy decoding detokenized as
// SentencePiece does (pieces.hpp), corpus BLEU as sacreBLEU (bleu.hpp).
// See README.md, "Training".
//
//   rdrop_translation --data DIR --run DIR [--alpha 5] [--single-pass] [--quick] ...
//
// Every batch is fed twice, stacked [x; x] (Layout::Stacked), with dropout
// on; the loss is fairseq's R-Drop criterion: label-smoothed cross-entropy
// (ε = 0.1, fairseq's convention) of both copies plus α times their
// symmetric KL, padding skipped, divided by the target tokens of one copy
// (Normalization::Fairseq). --alpha 0 keeps the same two-copy path;
// --single-pass trains the plain baseline (one copy, torch's own
// cross-entropy). A checkpoint after every epoch resumes a stopped run.
#include "../../bench/memory_counter.hpp"
#include "../common/cli.hpp"
#include "bleu.hpp"
#include "model.hpp"
#include "pieces.hpp"

#include <rdrop/torch.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <utility>
#include <vector>

namespace {

constexpr const char* kProgram = "rdrop_translation";

/// The flags shared by the examples (alpha, dropout, epochs, seed, threads,
/// data, csv, progress: examples/common/cli.hpp) and this program's own.
struct Settings : examples::CommonFlags {
  Settings() {
    data = "build/translation-data";
    alpha = 5.0;
    epochs = 30;
  }
  std::string run = "translation-run";
  bool single_pass = false;
  double attention_dropout = 0.0;
  double label_smoothing = 0.1;
  int64_t d_model = 256;
  int64_t ffn = 1024;
  int64_t heads = 4;
  int64_t encoder_layers = 3;
  int64_t decoder_layers = 3;
  bool pre_norm = true;
  double lr = 5e-4;
  long warmup = 4000;
  double weight_decay = 1e-4;
  long max_tokens = 4096;
  long max_len = 256;
  long limit = 0;        // training pairs used (0: all)
  long valid_limit = 0;  // validation pairs decoded for BLEU (0: all)
  std::string device = "cpu";
  bool quick = false;
  std::string detokenize;  // --detokenize FILE: print its ids decoded, exit
  // --measure-memory: peak memory of a training step, fused against explicit
  bool measure_memory = false;
  // --check-decoding: incremental greedy decoding against the full recompute
  bool check_decoding = false;
  int64_t vocab = 8000;
  long memory_batch = 64;
  long memory_length = 32;
  double memory_budget_gib = 4.0;
};

constexpr const char* kUsage =
    "usage: rdrop_translation [options]\n"
    "  --data DIR          output of prepare-data.sh (default build/translation-data)\n"
    "  --run DIR           checkpoints, per-epoch CSV, test output; an existing checkpoint\n"
    "                      there resumes the run (default translation-run)\n"
    "  --alpha A           weight of R-Drop's KL term; 0 keeps the two-copy path (default 5)\n"
    "  --single-pass       plain baseline: each batch fed once, torch's cross-entropy\n"
    "  --dropout P         dropout on embeddings and sub-layer outputs (default 0.3)\n"
    "  --attention-dropout P  dropout on attention weights (default 0)\n"
    "  --label-smoothing E fairseq's convention: 1-E on the label (default 0.1)\n"
    "  --d-model D --ffn F --heads H --encoder-layers N --decoder-layers N\n"
    "                      model size (default 256, 1024, 4, 3, 3)\n"
    "  --post-norm         post-norm layers (the original transformer); default pre-norm\n"
    "  --lr LR             peak learning rate (default 5e-4)\n"
    "  --warmup N          linear warm-up updates, then inverse square root (default 4000)\n"
    "  --weight-decay W    AdamW's decoupled weight decay, as fairseq's adam (default 1e-4)\n"
    "  --max-tokens N      tokens per batch, padding included, one copy (default 4096)\n"
    "  --max-len N         training pairs longer than N pieces on a side are left out (default 256)\n"
    "  --limit N           use the first N training pairs (default: all)\n"
    "  --valid-limit N     decode the first N validation pairs for BLEU (default: all)\n"
    "  --epochs N          train until epoch N (default 30)\n"
    "  --threads T         torch and rdrop threads (default: torch's default)\n"
    "  --seed S            initialization, batches and dropout (default 1)\n"
    "  --device cpu|cuda   where the model runs; the loss runs on the CPU (default cpu)\n"
    "  --progress / --no-progress  the progress bar on stderr (default: when a terminal)\n"
    "  --csv FILE          also write the per-epoch CSV (RUN/epochs.csv) to FILE\n"
    "  --detokenize FILE   print the ids of FILE (one sentence a line) as text and exit\n"
    "  --measure-memory    no training: the peak memory of one training step (forward and\n"
    "                      backward, both copies) with the fused output layer (linear_loss)\n"
    "                      and with an explicit one (at::linear + rdrop_loss), at --memory-batch\n"
    "                      sentences of --memory-length tokens (default 64, 32) and --vocab\n"
    "                      pieces (default 8000), and the largest batch of each in\n"
    "                      --memory-budget-gib (default 4); --data is not read\n"
    "  --check-decoding    no training: decode the validation pairs (--valid-limit) greedily\n"
    "                      with the run's checkpoint (or the initial model), incrementally\n"
    "                      and recomputing the whole prefix at each step; exit 1 where the\n"
    "                      two differ\n"
    "  --quick             a smoke run: 300 pairs, d=32, 1+1 layers, 5 epochs, 100\n"
    "                      validation pairs (other flags still apply after it)\n";

[[noreturn]] void usage_error(const std::string& message) { examples::usage_error(kProgram, kUsage, message); }

template <typename T>
T number(const std::string& flag, const std::string& text, T low, T high) {
  return examples::parse_number<T>(kProgram, kUsage, flag, text, low, high);
}

Settings parse_arguments(int argc, char** argv) {
  Settings s;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--quick") {
      s.quick = true;
      s.limit = 300;
      s.valid_limit = 100;
      s.d_model = 32;
      s.ffn = 64;
      s.heads = 2;
      s.encoder_layers = 1;
      s.decoder_layers = 1;
      s.epochs = 5;
      s.lr = 3e-3;
      s.warmup = 20;
      s.max_tokens = 1024;
      s.max_len = 128;
    }
  }
  examples::parse_arguments(
      argc, argv, kProgram, kUsage, s,
      [&](const std::string& flag) {
        if (flag == "--quick") {}  // applied above
        else if (flag == "--single-pass") s.single_pass = true;
        else if (flag == "--post-norm") s.pre_norm = false;
        else if (flag == "--measure-memory") s.measure_memory = true;
        else if (flag == "--check-decoding") s.check_decoding = true;
        else return false;
        return true;
      },
      [&](const std::string& flag, const std::string& value) {
        if (flag == "--run") s.run = value;
        else if (flag == "--detokenize") s.detokenize = value;
        else if (flag == "--attention-dropout") s.attention_dropout = number<double>(flag, value, 0, 0.99);
        else if (flag == "--label-smoothing") s.label_smoothing = number<double>(flag, value, 0, 0.99);
        else if (flag == "--d-model") s.d_model = number<int64_t>(flag, value, 2, 65536);
        else if (flag == "--ffn") s.ffn = number<int64_t>(flag, value, 1, 1 << 20);
        else if (flag == "--heads") s.heads = number<int64_t>(flag, value, 1, 1024);
        else if (flag == "--encoder-layers") s.encoder_layers = number<int64_t>(flag, value, 0, 1000);
        else if (flag == "--decoder-layers") s.decoder_layers = number<int64_t>(flag, value, 1, 1000);
        else if (flag == "--lr") s.lr = number<double>(flag, value, 0, 10);
        else if (flag == "--warmup") s.warmup = number<long>(flag, value, 0, 1L << 40);
        else if (flag == "--weight-decay") s.weight_decay = number<double>(flag, value, 0, 10);
        else if (flag == "--max-tokens") s.max_tokens = number<long>(flag, value, 1, 1L << 40);
        else if (flag == "--max-len") s.max_len = number<long>(flag, value, 1, 1000);
        else if (flag == "--limit") s.limit = number<long>(flag, value, 0, 1L << 40);
        else if (flag == "--valid-limit") s.valid_limit = number<long>(flag, value, 0, 1L << 40);
        else if (flag == "--vocab") s.vocab = number<int64_t>(flag, value, 8, 1 << 24);
        else if (flag == "--memory-batch") s.memory_batch = number<long>(flag, value, 1, 1L << 24);
        else if (flag == "--memory-length") s.memory_length = number<long>(flag, value, 2, 1000);
        else if (flag == "--memory-budget-gib") s.memory_budget_gib = number<double>(flag, value, 0.01, 1 << 20);
        else if (flag == "--device") {
          if (value != "cpu" && value != "cuda") usage_error("--device expects cpu or cuda, got '" + value + "'");
          s.device = value;
        } else return false;
        return true;
      });
  const bool alpha_given = std::any_of(argv + 1, argv + argc, [](const char* a) {
    return std::string(a) == "--alpha" || std::string(a).rfind("--alpha=", 0) == 0;
  });
  if (!(s.lr > 0)) usage_error("--lr must be positive: at 0 nothing is learned");
  if (s.d_model % s.heads != 0) {
    usage_error("--d-model (" + std::to_string(s.d_model) + ") must be a multiple of --heads (" +
                std::to_string(s.heads) + ")");
  }
  if (s.single_pass) {
    if (alpha_given && s.alpha != 0) usage_error("--single-pass trains without R-Drop's KL term: drop --alpha");
    s.alpha = 0;
  }
  return s;
}

// ---------------------------------------------------------------- data

using Sentence = std::vector<int64_t>;

struct Split {
  std::vector<Sentence> source, target;  // SentencePiece ids, no BOS/EOS
  std::vector<std::string> reference;     // clean English text (valid, test)
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error("cannot read '" + path +
                             "': prepare the data with examples/translation/prepare-data.sh (and pass --data)");
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<Sentence> ids_of(const std::string& text, const std::string& path, int64_t vocab) {
  std::vector<Sentence> out;
  for (const std::string& line : lines_of(text)) {
    Sentence s;
    std::istringstream words(line);
    for (long long id; words >> id;) {
      if (id < 0 || id >= vocab) {
        throw std::runtime_error("'" + path + "' line " + std::to_string(out.size() + 1) + " holds id " +
                                 std::to_string(id) + ", outside the tokenizer's " + std::to_string(vocab) + " pieces");
      }
      // "358abc", "1.5", "0x10": the number must end where its word does.
      const int next = words.peek();
      if (next != std::char_traits<char>::eof() && !std::isspace(next)) break;
      s.push_back(static_cast<int64_t>(id));
    }
    if (!words.eof()) {
      words.clear();
      std::string word;
      words >> word;
      throw std::runtime_error("'" + path + "' line " + std::to_string(out.size() + 1) +
                               " is not a line of piece ids (space-separated integers): it holds a word that is not "
                               "one, at or after '" + word + "'");
    }
    out.push_back(std::move(s));
  }
  return out;
}

/// FNV-1a, 64 bits.
std::uint64_t fnv1a(const unsigned char* bytes, std::size_t n, std::uint64_t h = 14695981039346656037ull) {
  for (std::size_t i = 0; i < n; ++i) {
    h ^= bytes[i];
    h *= 1099511628211ull;
  }
  return h;
}

std::uint64_t fnv1a(const std::string& bytes, std::uint64_t h = 14695981039346656037ull) {
  return fnv1a(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), h);
}

struct Data {
  Split train, valid, test;
  std::uint64_t hash = 0;
  long dropped_long = 0;
};

Data load_data(const Settings& s, int64_t vocab) {
  Data d;
  std::uint64_t h = fnv1a(read_file(s.data + "/spm.vocab"), fnv1a(read_file(s.data + "/spm.model")));
  for (const char* name : {"train", "valid", "test"}) {
    Split& split = std::string(name) == "train" ? d.train : std::string(name) == "valid" ? d.valid : d.test;
    const std::string base = s.data + "/" + name;
    const std::string es = read_file(base + ".es.ids"), en = read_file(base + ".en.ids");
    h = fnv1a(en, fnv1a(es, h));
    split.source = ids_of(es, base + ".es.ids", vocab);
    split.target = ids_of(en, base + ".en.ids", vocab);
    if (split.source.size() != split.target.size()) {
      throw std::runtime_error("'" + base + ".es.ids' and '" + base + ".en.ids' have different line counts");
    }
    if (std::string(name) != "train") {
      const std::string text = read_file(base + ".en");
      h = fnv1a(text, h);
      split.reference = lines_of(text);
      if (split.reference.size() != split.source.size()) {
        throw std::runtime_error("'" + base + ".en' and '" + base + ".es.ids' have different line counts");
      }
    }
  }
  d.hash = h;
  // The first --limit training pairs; pairs longer than --max-len left out;
  // empty sides (prepare-data.sh writes none) left out too.
  Split kept;
  const std::size_t n = s.limit > 0 ? std::min(d.train.source.size(), static_cast<std::size_t>(s.limit))
                                    : d.train.source.size();
  for (std::size_t i = 0; i < n; ++i) {
    const auto& a = d.train.source[i];
    const auto& b = d.train.target[i];
    if (a.empty() || b.empty() || static_cast<long>(a.size()) > s.max_len || static_cast<long>(b.size()) > s.max_len) {
      ++d.dropped_long;
      continue;
    }
    kept.source.push_back(a);
    kept.target.push_back(b);
  }
  d.train = std::move(kept);
  if (s.valid_limit > 0 && static_cast<std::size_t>(s.valid_limit) < d.valid.source.size()) {
    const auto m = static_cast<std::ptrdiff_t>(s.valid_limit);
    d.valid.source.resize(static_cast<std::size_t>(m));
    d.valid.target.resize(static_cast<std::size_t>(m));
    d.valid.reference.resize(static_cast<std::size_t>(m));
  }
  if (d.train.source.empty()) throw std::runtime_error("no training pair left (see --limit, --max-len)");
  // Without them, model selection and the final score would be BLEU 0 of nothing.
  if (d.valid.source.empty()) throw std::runtime_error("the validation split ('" + s.data + "/valid.*') is empty");
  if (d.test.source.empty()) throw std::runtime_error("the test split ('" + s.data + "/test.*') is empty");
  return d;
}

struct Specials {
  int64_t pad, bos, eos;
};

struct Batch {
  at::Tensor source;     // [B, S]: ids, EOS, padding
  at::Tensor target_in;  // [B, T]: BOS, ids, padding
  at::Tensor labels;     // [B, T]: ids, EOS, padding
  int64_t tokens = 0;    // target tokens (labels not padding)
};

Batch make_batch(const Split& split, const std::vector<std::size_t>& rows, const Specials& sp, const at::Device& device) {
  std::size_t s_len = 0, t_len = 0;
  for (std::size_t r : rows) {
    s_len = std::max(s_len, split.source[r].size() + 1);
    t_len = std::max(t_len, split.target[r].size() + 1);
  }
  const auto b = static_cast<int64_t>(rows.size());
  at::Tensor source = torch::full({b, static_cast<int64_t>(s_len)}, sp.pad, torch::kLong);
  at::Tensor target_in = torch::full({b, static_cast<int64_t>(t_len)}, sp.pad, torch::kLong);
  at::Tensor labels = torch::full({b, static_cast<int64_t>(t_len)}, sp.pad, torch::kLong);
  auto src = source.accessor<int64_t, 2>();
  auto tin = target_in.accessor<int64_t, 2>();
  auto lab = labels.accessor<int64_t, 2>();
  Batch out;
  for (int64_t i = 0; i < b; ++i) {
    const Sentence& x = split.source[rows[static_cast<std::size_t>(i)]];
    const Sentence& y = split.target[rows[static_cast<std::size_t>(i)]];
    for (std::size_t j = 0; j < x.size(); ++j) src[i][static_cast<int64_t>(j)] = x[j];
    src[i][static_cast<int64_t>(x.size())] = sp.eos;
    tin[i][0] = sp.bos;
    for (std::size_t j = 0; j < y.size(); ++j) {
      tin[i][static_cast<int64_t>(j + 1)] = y[j];
      lab[i][static_cast<int64_t>(j)] = y[j];
    }
    lab[i][static_cast<int64_t>(y.size())] = sp.eos;
    out.tokens += static_cast<int64_t>(y.size() + 1);
  }
  out.source = source.to(device);
  out.target_in = target_in.to(device);
  out.labels = labels;  // the loss runs on the CPU
  return out;
}

/// Groups `order` (rows sorted by length) into batches of at most
/// max_tokens tokens, padding included (rows × the longest side + 1).
std::vector<std::vector<std::size_t>> group(const Split& split, const std::vector<std::size_t>& order, long max_tokens) {
  std::vector<std::vector<std::size_t>> batches;
  std::vector<std::size_t> current;
  std::size_t longest = 0;
  for (std::size_t r : order) {
    const std::size_t len = std::max(split.source[r].size(), split.target[r].size()) + 1;
    const std::size_t l = std::max(longest, len);
    if (!current.empty() && static_cast<long>(l * (current.size() + 1)) > max_tokens) {
      batches.push_back(std::move(current));
      current.clear();
      longest = len;
    } else {
      longest = l;
    }
    current.push_back(r);
  }
  if (!current.empty()) batches.push_back(std::move(current));
  return batches;
}

/// Rows sorted by (source length, target length); ties in `order`'s order.
std::vector<std::size_t> by_length(const Split& split, std::vector<std::size_t> order) {
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return std::make_pair(split.source[a].size(), split.target[a].size()) <
           std::make_pair(split.source[b].size(), split.target[b].size());
  });
  return order;
}

std::vector<std::size_t> identity(std::size_t n) {
  std::vector<std::size_t> v(n);
  std::iota(v.begin(), v.end(), std::size_t(0));
  return v;
}

/// An epoch's batches: a random permutation (torch's generator) sorted
/// stably by length, grouped by tokens, the batches in random order.
std::vector<std::vector<std::size_t>> epoch_batches(const Split& split, long max_tokens) {
  const auto n = static_cast<int64_t>(split.source.size());
  const at::Tensor perm = torch::randperm(n, torch::kLong);
  const int64_t* p = perm.data_ptr<int64_t>();
  std::vector<std::size_t> order(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = static_cast<std::size_t>(p[i]);
  auto batches = group(split, by_length(split, order), max_tokens);
  const at::Tensor shuffle = torch::randperm(static_cast<int64_t>(batches.size()), torch::kLong);
  const int64_t* q = shuffle.data_ptr<int64_t>();
  std::vector<std::vector<std::size_t>> out(batches.size());
  for (std::size_t i = 0; i < batches.size(); ++i) out[i] = std::move(batches[static_cast<std::size_t>(q[i])]);
  return out;
}

// ---------------------------------------------------------------- loss

/// Label-smoothed cross-entropy of one copy, summed over target tokens, in
/// fairseq's convention (1 − ε on the label, ε/(V − 1) on each other
/// class): torch's cross-entropy with smoothing ε·V/(V − 1), which spreads
/// that over all V classes, gives exactly this.
at::Tensor single_copy_loss_sum(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& labels,
                                double epsilon, int64_t pad) {
  const int64_t v = weight.size(0);
  const at::Tensor logits = at::linear(hidden, weight).reshape({-1, v});
  namespace F = torch::nn::functional;
  return F::cross_entropy(logits, labels.to(logits.device()).reshape({-1}),
                          F::CrossEntropyFuncOptions()
                              .ignore_index(pad)
                              .label_smoothing(epsilon * static_cast<double>(v) / static_cast<double>(v - 1))
                              .reduction(torch::kSum));
}

double learning_rate(const Settings& s, long update) {
  // fairseq's inverse_sqrt: linear warm-up from 0 to --lr over --warmup
  // updates, then lr·sqrt(warmup/update). `update` counts from 1.
  if (s.warmup > 0 && update <= s.warmup) return s.lr * static_cast<double>(update) / static_cast<double>(s.warmup);
  return s.lr * std::sqrt(static_cast<double>(std::max(s.warmup, 1L)) / static_cast<double>(update));
}

// ---------------------------------------------------------------- evaluation

/// Validation loss: one copy, dropout off, per target token (nats).
double evaluate_loss(translation::Transformer& model, const Split& split, const Settings& s, const Specials& sp,
                     const at::Device& device) {
  torch::NoGradGuard no_grad;
  model->eval();
  double sum = 0;
  int64_t tokens = 0;
  for (const auto& rows : group(split, by_length(split, identity(split.source.size())), s.max_tokens)) {
    const Batch b = make_batch(split, rows, sp, device);
    const at::Tensor h = model->decode(b.target_in, model->encode(b.source));
    sum += single_copy_loss_sum(h, model->output_weight(), b.labels, s.label_smoothing, sp.pad).item<double>();
    tokens += b.tokens;
  }
  model->train();
  return tokens > 0 ? sum / static_cast<double>(tokens) : 0.0;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// Greedy decoding, dropout off: at most 1.5·|source| + 10 tokens
/// (without EOS), batches of max_tokens source tokens. Incremental (each
/// step runs the new position only, against the layers' caches) unless
/// `incremental` is false: then each step runs the decoder over the whole
/// prefix, quadratic in the length, which --check-decoding compares with.
std::vector<Sentence> greedy(translation::Transformer& model, const Split& split, const Settings& s, const Specials& sp,
                             const at::Device& device, bool incremental = true) {
  torch::NoGradGuard no_grad;
  model->eval();
  std::vector<Sentence> out(split.source.size());
  for (const auto& rows : group(split, by_length(split, identity(split.source.size())), s.max_tokens)) {
    const Batch b = make_batch(split, rows, sp, device);
    const translation::Encoded e = model->encode(b.source);
    const int64_t n = b.source.size(0);
    const int64_t limit = std::min<int64_t>(model->config.max_positions - 1, b.source.size(1) * 3 / 2 + 10);
    at::Tensor tokens = torch::full({n, 1}, sp.bos, torch::TensorOptions(torch::kLong).device(device));
    at::Tensor done = torch::zeros({n}, torch::TensorOptions(torch::kBool).device(device));
    translation::DecoderState state;
    for (int64_t step = 0; step < limit; ++step) {
      const at::Tensor last = incremental ? model->decode_step(tokens.select(1, -1), e, state)
                                          : model->decode(tokens, e).select(1, -1);
      at::Tensor next = at::linear(last, model->output_weight()).argmax(-1);
      next = torch::where(done, torch::full_like(next, sp.pad), next);
      tokens = torch::cat({tokens, next.unsqueeze(1)}, 1);
      done = done.logical_or(next.eq(sp.eos));
      if (done.all().item<bool>()) break;
    }
    const at::Tensor cpu = tokens.cpu();
    const auto t = cpu.accessor<int64_t, 2>();
    for (int64_t i = 0; i < n; ++i) {
      Sentence& hyp = out[rows[static_cast<std::size_t>(i)]];
      for (int64_t j = 1; j < cpu.size(1) && t[i][j] != sp.eos && t[i][j] != sp.pad; ++j) hyp.push_back(t[i][j]);
    }
  }
  model->train();
  return out;
}

/// --check-decoding: the incremental decoder against the full recompute,
/// token for token, on the split; prints both times.
int check_decoding(translation::Transformer& model, const Split& split, const Settings& s, const Specials& sp,
                   const at::Device& device) {
  auto start = std::chrono::steady_clock::now();
  const std::vector<Sentence> fast = greedy(model, split, s, sp, device, /*incremental=*/true);
  const double fast_seconds = seconds_since(start);
  start = std::chrono::steady_clock::now();
  const std::vector<Sentence> full = greedy(model, split, s, sp, device, /*incremental=*/false);
  const double full_seconds = seconds_since(start);
  std::size_t tokens = 0;
  for (std::size_t i = 0; i < full.size(); ++i) {
    tokens += full[i].size();
    if (fast[i] != full[i]) {
      std::size_t j = 0;
      while (j < fast[i].size() && j < full[i].size() && fast[i][j] == full[i][j]) ++j;
      std::printf("decoding check: sentence %zu differs from token %zu on (incremental %zu tokens, full %zu)\n", i + 1,
                  j + 1, fast[i].size(), full[i].size());
      return 1;
    }
  }
  std::printf("decoding check: %zu sentences, %zu tokens, the same from both decoders (incremental %.2f s, "
              "full recompute %.2f s)\n",
              full.size(), tokens, fast_seconds, full_seconds);
  return 0;
}

std::vector<std::string> detokenize(const translation::Pieces& pieces, const std::vector<Sentence>& ids) {
  std::vector<std::string> out;
  out.reserve(ids.size());
  for (const Sentence& s : ids) out.push_back(pieces.decode(s));
  return out;
}

double bleu_of(const std::vector<std::string>& hypotheses, const Split& split) {
  return bleu::corpus_bleu(hypotheses, split.reference).score;
}

// ---------------------------------------------------------------- checkpoints

using Fingerprint = std::vector<std::pair<std::string, std::string>>;

std::string text_of(double v) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.17g", v);
  return buffer;
}

/// What a checkpoint must match to be resumed: the flags that change the
/// model, the optimization or the data (not --epochs, --threads, --device,
/// --progress), and the data itself.
Fingerprint fingerprint(const Settings& s, const Data& d, int64_t vocab) {
  char hash[32];
  std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(d.hash));
  return {{"alpha", text_of(s.alpha)},
          {"single-pass", s.single_pass ? "yes" : "no"},
          {"dropout", text_of(s.dropout)},
          {"attention-dropout", text_of(s.attention_dropout)},
          {"label-smoothing", text_of(s.label_smoothing)},
          {"d-model", std::to_string(s.d_model)},
          {"ffn", std::to_string(s.ffn)},
          {"heads", std::to_string(s.heads)},
          {"encoder-layers", std::to_string(s.encoder_layers)},
          {"decoder-layers", std::to_string(s.decoder_layers)},
          {"norm", s.pre_norm ? "pre" : "post"},
          {"lr", text_of(s.lr)},
          {"warmup", std::to_string(s.warmup)},
          {"weight-decay", text_of(s.weight_decay)},
          {"max-tokens", std::to_string(s.max_tokens)},
          {"max-len", std::to_string(s.max_len)},
          {"limit", std::to_string(s.limit)},
          {"valid-limit", std::to_string(s.valid_limit)},
          {"seed", std::to_string(s.seed)},
          {"data: vocabulary", std::to_string(vocab)},
          {"data: training pairs", std::to_string(d.train.source.size())},
          {"data: validation pairs", std::to_string(d.valid.source.size())},
          {"data: test pairs", std::to_string(d.test.source.size())},
          {"data: hash of spm.model, spm.vocab, the .ids and the reference files", hash}};
}

std::string serialize(const Fingerprint& f) {
  std::string out;
  for (const auto& [k, v] : f) out += k + "=" + v + "\n";
  return out;
}

/// The keys whose values differ, "key: checkpoint X, this run Y" each.
std::vector<std::string> mismatches(const std::string& saved, const Fingerprint& now) {
  std::map<std::string, std::string> old;
  for (const std::string& line : lines_of(saved)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) old[line.substr(0, eq)] = line.substr(eq + 1);
  }
  std::vector<std::string> out;
  for (const auto& [k, v] : now) {
    const auto it = old.find(k);
    if (it == old.end()) out.push_back(k + ": not in the checkpoint, this run " + v);
    else if (it->second != v) out.push_back(k + ": checkpoint " + it->second + ", this run " + v);
  }
  return out;
}

struct State {
  int64_t epoch = 0;    // epochs done
  int64_t updates = 0;  // optimizer steps done
  double best_bleu = -1;
  int64_t best_epoch = 0;
  std::string csv;  // the per-epoch rows so far
};

const char* kCsvHeader =
    "epoch,alpha,single_pass,seed,train_loss,valid_loss,valid_bleu,train_seconds,seconds,updates,lr,train_cpu_seconds\n";

/// RUN/epochs.csv, and the --csv copy, from the rows so far.
void write_csv(const Settings& s, const std::string& csv_path, const State& st) {
  examples::write_file_atomically(csv_path, std::string(kCsvHeader) + st.csv);
  if (!s.csv.empty()) examples::write_file_atomically(s.csv, std::string(kCsvHeader) + st.csv);
}

void save_atomically(torch::serialize::OutputArchive& archive, const std::string& path) {
  const std::string tmp = path + ".tmp";
  archive.save_to(tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot rename '" + tmp + "' to '" + path + "'");
}

void write_meta(torch::serialize::OutputArchive& a, const std::string& fingerprint, const State& st) {
  a.write("meta_fingerprint", c10::IValue(fingerprint));
  a.write("meta_epoch", c10::IValue(st.epoch));
  a.write("meta_updates", c10::IValue(st.updates));
  a.write("meta_best_bleu", c10::IValue(st.best_bleu));
  a.write("meta_best_epoch", c10::IValue(st.best_epoch));
  a.write("meta_csv", c10::IValue(st.csv));
}

/// FNV-1a over tensors' bytes and integers, for the hashes a checkpoint
/// carries: libtorch 1.13 checks no checksum when it reads an archive, so a
/// damaged byte in a tensor would load silently.
class TensorHash {
 public:
  void add(const at::Tensor& t) {
    const at::Tensor c = t.detach().to(torch::kCPU).contiguous();
    h_ = fnv1a(static_cast<const unsigned char*>(c.data_ptr()), c.nbytes(), h_);
  }
  void add(std::int64_t v) { h_ = fnv1a(reinterpret_cast<const unsigned char*>(&v), sizeof v, h_); }
  std::string text() const {
    char text[32];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h_));
    return text;
  }

 private:
  std::uint64_t h_ = fnv1a(nullptr, 0);
};

/// The model's parameters and buffers, in order.
std::string model_hash(translation::Transformer& model) {
  TensorHash h;
  for (const auto& t : model->parameters()) h.add(t);
  for (const auto& t : model->buffers()) h.add(t);
  return h.text();
}

/// What else a resumed run continues from: AdamW's step counts and moments,
/// parameter by parameter, and the random generator's state.
std::string resume_state_hash(torch::optim::AdamW& optimizer, const at::Tensor& rng) {
  TensorHash h;
  for (auto& group : optimizer.param_groups()) {
    for (const auto& p : group.params()) {
      const auto it = optimizer.state().find(c10::guts::to_string(p.unsafeGetTensorImpl()));
      if (it == optimizer.state().end()) {
        h.add(std::int64_t{-1});  // no step taken yet
        continue;
      }
      const auto& st = static_cast<const torch::optim::AdamWParamState&>(*it->second);
      h.add(st.step());
      h.add(st.exp_avg());
      h.add(st.exp_avg_sq());
      if (st.max_exp_avg_sq().defined()) h.add(st.max_exp_avg_sq());
    }
  }
  h.add(rng);
  return h.text();
}

/// The default CPU generator's state, read under its lock.
at::Tensor cpu_rng_state() {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

/// Loads the model from an archive, refusing one whose tensors do not hash
/// to what was written (archives written before the hash are taken as they are).
void load_model(torch::serialize::InputArchive& a, const std::string& path, translation::Transformer& model) {
  model->load(a);
  c10::IValue v;
  if (a.try_read("meta_model_hash", v) && v.toStringRef() != model_hash(model)) {
    throw std::runtime_error("the model in '" + path +
                             "' is damaged (its tensors do not hash to what was written): delete it, or use another --run");
  }
}

void save_checkpoint(const std::string& path, translation::Transformer& model, torch::optim::AdamW& optimizer,
                     const std::string& fingerprint, const State& st) {
  torch::serialize::OutputArchive a;
  model->save(a);
  a.write("meta_model_hash", c10::IValue(model_hash(model)));
  torch::serialize::OutputArchive opt;
  optimizer.save(opt);
  a.write("meta_optimizer", opt);
  write_meta(a, fingerprint, st);
  const at::Tensor rng = cpu_rng_state();
  a.write("meta_rng", rng, /*is_buffer=*/true);
  a.write("meta_state_hash", c10::IValue(resume_state_hash(optimizer, rng)));
  save_atomically(a, path);
}

void save_model(const std::string& path, translation::Transformer& model, const std::string& fingerprint,
                const State& st) {
  torch::serialize::OutputArchive a;
  model->save(a);
  a.write("meta_model_hash", c10::IValue(model_hash(model)));
  write_meta(a, fingerprint, st);
  save_atomically(a, path);
}

/// Opens a checkpoint, naming it when torch cannot read it.
void load_archive(torch::serialize::InputArchive& a, const std::string& path, const at::Device& device) {
  try {
    a.load_from(path, device);
  } catch (const c10::Error& e) {
    throw std::runtime_error("cannot read '" + path + "' (" + e.what_without_backtrace() +
                             "): a damaged file; delete it, or use another --run");
  }
}

/// Reads a checkpoint's fingerprint and refuses (exit 1) one that does not
/// match this run, naming each difference.
void check_fingerprint(torch::serialize::InputArchive& a, const std::string& path, const Fingerprint& now) {
  c10::IValue v;
  if (!a.try_read("meta_fingerprint", v)) {
    std::fprintf(stderr, "%s: '%s' is not a checkpoint of this program (no fingerprint): refused\n", kProgram,
                 path.c_str());
    std::exit(1);
  }
  const auto diff = mismatches(v.toStringRef(), now);
  if (!diff.empty()) {
    std::fprintf(stderr, "%s: the checkpoint '%s' was written by a different run; refused:\n", kProgram, path.c_str());
    for (const auto& d : diff) std::fprintf(stderr, "  %s\n", d.c_str());
    std::fprintf(stderr, "Use the same flags and data, or another --run directory.\n");
    std::exit(1);
  }
}

State read_meta(torch::serialize::InputArchive& a) {
  State st;
  c10::IValue v;
  a.read("meta_epoch", v);
  st.epoch = v.toInt();
  a.read("meta_updates", v);
  st.updates = v.toInt();
  a.read("meta_best_bleu", v);
  st.best_bleu = v.toDouble();
  a.read("meta_best_epoch", v);
  st.best_epoch = v.toInt();
  a.read("meta_csv", v);
  st.csv = v.toStringRef();
  return st;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}


translation::ModelConfig model_config(const Settings& s, int64_t vocab, int64_t pad) {
  translation::ModelConfig config;
  config.vocab = vocab;
  config.d_model = s.d_model;
  config.ffn = s.ffn;
  config.heads = s.heads;
  config.encoder_layers = s.encoder_layers;
  config.decoder_layers = s.decoder_layers;
  config.dropout = s.dropout;
  config.attention_dropout = s.attention_dropout;
  config.pre_norm = s.pre_norm;
  config.pad = pad;
  return config;
}

// ---------------------------------------------------------------- memory

/// Peak bytes of one R-Drop training step (forward and backward of both
/// copies, stacked) beyond what was in use before it, counted by the
/// allocator of bench/memory_counter.cpp (every malloc of the process):
/// with the output layer fused into linear_loss, or explicit (at::linear,
/// then rdrop_loss on the logits). Sentences of `length` random pieces, no
/// padding.
std::int64_t step_peak_bytes(translation::Transformer& model, const Settings& s, bool fused, long batch, long length) {
  const int64_t v = model->config.vocab;
  const at::Tensor source = torch::randint(1, v, {batch, length}, torch::kLong);
  const at::Tensor target_in = torch::randint(1, v, {batch, length}, torch::kLong);
  const at::Tensor labels = torch::randint(1, v, {batch, length}, torch::kLong);
  const auto options = rdrop::torch::LinearLossTorchOptions()
                           .alpha(s.alpha)
                           .layout(rdrop::Layout::Stacked)
                           .normalization(rdrop::Normalization::Fairseq)
                           .padding_index(model->config.pad)
                           .label_smoothing(s.label_smoothing)
                           .smoothing_style(rdrop::SmoothingStyle::ExcludeTarget);
  model->zero_grad(/*set_to_none=*/true);
  rdrop::torch::release_linear_buffers();  // the fused loss's chunk buffers count too
  const std::int64_t before = rdrop_bench::bytes_in_use();
  rdrop_bench::reset_peak();
  {
    const at::Tensor h = model->decode(torch::cat({target_in, target_in}), model->encode(torch::cat({source, source})));
    const at::Tensor loss = fused ? rdrop::torch::linear_loss(h, model->output_weight(), {}, labels, options)
                                  : rdrop::torch::rdrop_loss(at::linear(h, model->output_weight()), labels, options);
    loss.backward();
  }
  const std::int64_t peak = rdrop_bench::peak_bytes() - before;
  model->zero_grad(/*set_to_none=*/true);
  rdrop::torch::release_linear_buffers();
  return peak;
}

/// The largest batch (sentences) whose step peaks within `budget` bytes
/// (0 when not even one sentence fits). The peak is close to affine in the
/// batch, so two small measurements predict it; the prediction is then
/// bracketed (steps from 1/256 of it, doubling) and bisected to the sentence.
long largest_batch(translation::Transformer& model, const Settings& s, bool fused, std::int64_t budget, long length,
                   std::int64_t* peak_at_largest) {
  const auto peak = [&](long b) { return step_peak_bytes(model, s, fused, b, length); };
  const long b1 = 8, b2 = 32;
  const double p1 = static_cast<double>(peak(b1)), p2 = static_cast<double>(peak(b2));
  const double per_sentence = std::max(1.0, (p2 - p1) / static_cast<double>(b2 - b1));
  const double predicted = (static_cast<double>(budget) - (p1 - per_sentence * b1)) / per_sentence;
  long guess = std::max(1L, static_cast<long>(predicted));
  long step = std::max(1L, guess / 256);
  long lo = 0, hi = 0;  // lo fits (0: nothing known to), hi does not
  std::int64_t lo_peak = 0;
  if (const std::int64_t p = peak(guess); p <= budget) {
    lo = guess;
    lo_peak = p;
    for (hi = lo + step;; step *= 2, hi = lo + step) {
      const std::int64_t q = peak(hi);
      if (q > budget) break;
      lo = hi;
      lo_peak = q;
    }
  } else {
    hi = guess;
    while (hi > 1) {
      const long candidate = std::max(1L, hi - step);
      const std::int64_t q = peak(candidate);
      if (q <= budget) {
        lo = candidate;
        lo_peak = q;
        break;
      }
      hi = candidate;
      step *= 2;
    }
    if (lo == 0) {
      *peak_at_largest = 0;
      return 0;
    }
  }
  while (hi - lo > 1) {
    const long mid = lo + (hi - lo) / 2;
    const std::int64_t q = peak(mid);
    if (q <= budget) {
      lo = mid;
      lo_peak = q;
    } else {
      hi = mid;
    }
  }
  *peak_at_largest = lo_peak;
  return lo;
}

int measure_memory(const Settings& s) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // each line as it is measured
  torch::manual_seed(s.seed);
  translation::Transformer model(model_config(s, s.vocab, /*pad=*/0));
  model->train();
  const double mib = 1024.0 * 1024.0;
  std::printf("memory: transformer d=%lld ffn=%lld heads=%lld layers %lld+%lld, vocabulary %lld, %ld pieces a "
              "sentence on both sides, each batch fed twice (stacked), alpha %g, %d threads\n",
              static_cast<long long>(s.d_model), static_cast<long long>(s.ffn), static_cast<long long>(s.heads),
              static_cast<long long>(s.encoder_layers), static_cast<long long>(s.decoder_layers),
              static_cast<long long>(s.vocab), s.memory_length, s.alpha, at::get_num_threads());
  const std::int64_t fused = step_peak_bytes(model, s, true, s.memory_batch, s.memory_length);
  const std::int64_t explicit_layer = step_peak_bytes(model, s, false, s.memory_batch, s.memory_length);
  std::printf("memory: batch of %ld sentences (%ld target tokens a copy): peak of a step %.1f MiB with the fused "
              "output layer (linear_loss), %.1f MiB with an explicit one (at::linear + rdrop_loss): %.2fx\n",
              s.memory_batch, s.memory_batch * s.memory_length, static_cast<double>(fused) / mib,
              static_cast<double>(explicit_layer) / mib,
              static_cast<double>(explicit_layer) / static_cast<double>(std::max<std::int64_t>(fused, 1)));
  const auto budget = static_cast<std::int64_t>(s.memory_budget_gib * 1024.0 * mib);
  std::int64_t fused_peak = 0, explicit_peak = 0;
  const long fused_batch = largest_batch(model, s, true, budget, s.memory_length, &fused_peak);
  const long explicit_batch = largest_batch(model, s, false, budget, s.memory_length, &explicit_peak);
  std::printf("memory: largest batch in %g GiB: %ld sentences with the fused output layer (peak %.1f MiB), %ld with "
              "an explicit one (peak %.1f MiB): %.2fx the batch\n",
              s.memory_budget_gib, fused_batch, static_cast<double>(fused_peak) / mib, explicit_batch,
              static_cast<double>(explicit_peak) / mib,
              static_cast<double>(fused_batch) / static_cast<double>(std::max(explicit_batch, 1L)));
  return 0;
}

int run(const Settings& s) {
  if (s.threads > 0) {
    at::set_num_threads(s.threads);
    rdrop::set_num_threads(s.threads);
  }
  if (s.measure_memory) return measure_memory(s);
  if (s.device == "cuda" && !torch::cuda::is_available()) {
    std::fprintf(stderr, "%s: --device cuda, but this libtorch has no usable CUDA device (torch::cuda::is_available() "
                 "is false); use --device cpu\n", kProgram);
    return 1;
  }
  const at::Device device(s.device == "cuda" ? torch::kCUDA : torch::kCPU);

  const translation::Pieces spm(s.data + "/spm.vocab");
  const Specials sp{spm.pad(), spm.bos(), spm.eos()};
  const int64_t vocab = spm.size();
  if (!s.detokenize.empty()) {
    for (const Sentence& ids : ids_of(read_file(s.detokenize), s.detokenize, vocab)) {
      std::printf("%s\n", spm.decode(ids).c_str());
    }
    return 0;
  }
  const Data data = load_data(s, vocab);
  const Fingerprint fp = fingerprint(s, data, vocab);
  const std::string fp_text = serialize(fp);

  torch::manual_seed(s.seed);
  translation::Transformer model(model_config(s, vocab, sp.pad));
  model->to(device);
  torch::optim::AdamW optimizer(model->parameters(), torch::optim::AdamWOptions(s.lr)
                                                         .betas(std::make_tuple(0.9, 0.98))
                                                         .eps(1e-8)
                                                         .weight_decay(s.weight_decay));
  long parameters = 0;
  for (const auto& p : model->parameters()) parameters += static_cast<long>(p.numel());

  std::printf("data: %zu training pairs (%ld left out as longer than %ld pieces), %zu validation (BLEU), %zu test; "
              "vocabulary %lld\n",
              data.train.source.size(), data.dropped_long, s.max_len, data.valid.source.size(),
              data.test.source.size(), static_cast<long long>(vocab));
  std::printf("model: transformer %lld+%lld layers, d=%lld, ffn %lld, %lld heads, %s-norm, dropout %g, %ld parameters "
              "(embeddings tied with the output layer)\n",
              static_cast<long long>(s.encoder_layers), static_cast<long long>(s.decoder_layers),
              static_cast<long long>(s.d_model), static_cast<long long>(s.ffn), static_cast<long long>(s.heads),
              s.pre_norm ? "pre" : "post", s.dropout, parameters);
  if (s.single_pass) {
    std::printf("loss: single pass, torch's label-smoothed cross-entropy (eps %g, fairseq's convention), per target token\n",
                s.label_smoothing);
  } else {
    std::printf("loss: R-Drop, each batch fed twice (stacked), rdrop::torch::linear_loss: label-smoothed CE of both "
                "copies + %g * symmetric KL, per target token of one copy (fairseq)\n", s.alpha);
  }
  std::printf("optimizer: AdamW (0.9, 0.98), weight decay %g, lr %g, %ld warm-up updates then inverse sqrt; "
              "%ld tokens a batch; device %s, %d threads\n",
              s.weight_decay, s.lr, s.warmup, s.max_tokens, s.device.c_str(), at::get_num_threads());
  std::fflush(stdout);

  if (!s.check_decoding && ::mkdir(s.run.c_str(), 0777) != 0 && !is_directory(s.run)) {
    std::fprintf(stderr, "%s: cannot create the run directory '%s'%s\n", kProgram, s.run.c_str(),
                 exists(s.run) ? ": a file of that name is there" : "");
    return 1;
  }
  const std::string checkpoint_path = s.run + "/checkpoint.pt", best_path = s.run + "/best.pt",
                    csv_path = s.run + "/epochs.csv";
  State st;
  if (exists(checkpoint_path)) {
    torch::serialize::InputArchive a;
    load_archive(a, checkpoint_path, device);
    check_fingerprint(a, checkpoint_path, fp);
    load_model(a, checkpoint_path, model);
    try {
      torch::serialize::InputArchive opt;
      a.read("meta_optimizer", opt);
      optimizer.load(opt);
    } catch (const std::exception& e) {  // e.g. its counts of groups and parameters changed
      const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
      throw std::runtime_error("cannot read the optimizer state in '" + checkpoint_path + "' (" +
                               (torch_error ? torch_error->what_without_backtrace() : e.what()) +
                               "): a damaged file; delete it, or use another --run");
    }
    st = read_meta(a);
    at::Tensor rng;
    a.read("meta_rng", rng, /*is_buffer=*/true);
    // Checkpoints written before this hash are taken as they are.
    c10::IValue v;
    if (a.try_read("meta_state_hash", v) && v.toStringRef() != resume_state_hash(optimizer, rng)) {
      throw std::runtime_error("the optimizer or random-generator state in '" + checkpoint_path +
                               "' is damaged (its tensors do not hash to what was written): delete it, or use "
                               "another --run");
    }
    if (st.epoch > s.epochs) {
      throw std::runtime_error("'" + checkpoint_path + "' has " + std::to_string(st.epoch) +
                               " epochs done, more than --epochs " + std::to_string(s.epochs) +
                               ": its best model may come from a later epoch; use --epochs " +
                               std::to_string(st.epoch) + " or more, or another --run");
    }
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(rng.cpu());
    }
    std::printf("resumed from '%s': %lld epochs done, %lld updates, best validation BLEU %.2f (epoch %lld)\n",
                checkpoint_path.c_str(), static_cast<long long>(st.epoch), static_cast<long long>(st.updates),
                st.best_bleu, static_cast<long long>(st.best_epoch));
  }
  // Now rather than after the first epoch: an unwritable --csv fails before
  // any training, and a run stopped between its checkpoint and its CSV gets
  // the rows the checkpoint holds.
  if (!s.check_decoding) write_csv(s, csv_path, st);

  if (s.check_decoding) return check_decoding(model, data.valid, s, sp, device);

  // The output layer is tied to the embeddings: linear_loss with the
  // embedding as its weight (the module RDropLinearLoss holds a weight of
  // its own).
  const auto options = rdrop::torch::LinearLossTorchOptions()
                           .alpha(s.alpha)
                           .layout(rdrop::Layout::Stacked)
                           .normalization(rdrop::Normalization::Fairseq)
                           .padding_index(sp.pad)
                           .label_smoothing(s.label_smoothing)
                           .smoothing_style(rdrop::SmoothingStyle::ExcludeTarget);

  examples::Progress progress(s.show_progress());
  for (int epoch = static_cast<int>(st.epoch) + 1; epoch <= s.epochs; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    // CPU time as well as wall time: the comparison's "equal compute" must
    // not count the time the process waited (a loaded machine, a SIGSTOP).
    const std::clock_t cpu_start = std::clock();
    // The CUDA generator (dropout on the device) is not checkpointed: it is
    // seeded from (seed, epoch), so a resumed run is reproducible too.
    if (device.is_cuda()) torch::cuda::manual_seed(s.seed * 1000003u + static_cast<std::uint64_t>(epoch));
    model->train();
    const auto batches = epoch_batches(data.train, s.max_tokens);
    double loss_sum = 0;  // Σ loss · tokens
    int64_t tokens = 0;
    double lr = 0;
    for (std::size_t k = 0; k < batches.size(); ++k) {
      const Batch b = make_batch(data.train, batches[k], sp, device);
      at::Tensor loss;
      if (s.single_pass) {
        const at::Tensor h = model->decode(b.target_in, model->encode(b.source));
        loss = single_copy_loss_sum(h, model->output_weight(), b.labels, s.label_smoothing, sp.pad) /
               static_cast<double>(b.tokens);
      } else {
        const at::Tensor source = torch::cat({b.source, b.source}), target_in = torch::cat({b.target_in, b.target_in});
        const at::Tensor h = model->decode(target_in, model->encode(source));  // [2B, T, D]
        // rdrop::torch computes on the CPU: on CUDA the hidden states and the
        // weight come over (autograd takes the gradients back).
        loss = rdrop::torch::linear_loss(h.to(torch::kCPU), model->output_weight().to(torch::kCPU), {}, b.labels,
                                         options);
      }
      lr = learning_rate(s, st.updates + 1);
      for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
      ++st.updates;
      loss_sum += loss.item<double>() * static_cast<double>(b.tokens);
      tokens += b.tokens;
      const double elapsed = seconds_since(start);
      char extra[64];
      std::snprintf(extra, sizeof extra, "loss %.3f", loss_sum / static_cast<double>(tokens));
      progress.update(epoch, s.epochs, static_cast<long>(k + 1), static_cast<long>(batches.size()), elapsed,
                      static_cast<double>(tokens) / elapsed, "tokens/s", extra);
    }
    progress.finish();
    const double train_seconds = seconds_since(start);
    const double train_cpu_seconds = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
    const double train_loss = tokens > 0 ? loss_sum / static_cast<double>(tokens) : 0.0;
    const double valid_loss = evaluate_loss(model, data.valid, s, sp, device);
    const double valid_bleu = bleu_of(detokenize(spm, greedy(model, data.valid, s, sp, device)), data.valid);
    const double seconds = seconds_since(start);
    st.epoch = epoch;
    char row[512];
    std::snprintf(row, sizeof row, "%d,%g,%d,%llu,%.6f,%.6f,%.4f,%.3f,%.3f,%lld,%.6g,%.3f\n", epoch, s.alpha,
                  s.single_pass ? 1 : 0, static_cast<unsigned long long>(s.seed), train_loss, valid_loss, valid_bleu,
                  train_seconds, seconds, static_cast<long long>(st.updates), lr, train_cpu_seconds);
    st.csv += row;
    if (valid_bleu > st.best_bleu) {
      st.best_bleu = valid_bleu;
      st.best_epoch = epoch;
      save_model(best_path, model, fp_text, st);
    }
    save_checkpoint(checkpoint_path, model, optimizer, fp_text, st);
    write_csv(s, csv_path, st);
    std::printf("epoch %d/%d: train_loss=%.4f valid_loss=%.4f valid_bleu=%.2f train_seconds=%.1f seconds=%.1f "
                "updates=%lld lr=%.3g\n",
                epoch, s.epochs, train_loss, valid_loss, valid_bleu, train_seconds, seconds,
                static_cast<long long>(st.updates), lr);
    std::fflush(stdout);
  }

  // The test set, once, with the checkpoint of the best validation BLEU.
  {
    torch::serialize::InputArchive a;
    load_archive(a, best_path, device);
    check_fingerprint(a, best_path, fp);
    load_model(a, best_path, model);
  }
  const std::vector<std::string> hypotheses = detokenize(spm, greedy(model, data.test, s, sp, device));
  std::string text;
  for (const auto& h : hypotheses) text += h + "\n";
  examples::write_file_atomically(s.run + "/test.hyp", text);
  std::printf("test: greedy decoding with epoch %lld's model (best validation BLEU %.2f); hypotheses in %s/test.hyp\n",
              static_cast<long long>(st.best_epoch), st.best_bleu, s.run.c_str());
  std::printf("test_bleu=%.2f\n", bleu_of(hypotheses, data.test));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // glibc serves a block over its mmap threshold (32 MiB at most) with a
  // fresh mmap and unmaps it on free: the single-pass baseline's logits
  // ([B, T, V], 1024 tokens x 8,000 x 4 B) and their gradients were
  // page-faulted in anew at every step, which doubled its training time
  // (20.0 s against 9.1 s on 1,000 pairs). Keep freed memory in the heap.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
  const Settings s = parse_arguments(argc, argv);
  try {
    return run(s);
  } catch (const c10::Error& e) {  // torch's own: its message without the C++ stack
    std::fprintf(stderr, "%s: %s\n", kProgram, e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", kProgram, e.what());
    return 1;
  }
}
