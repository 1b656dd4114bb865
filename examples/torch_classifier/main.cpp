// R-Drop on Fashion-MNIST with libtorch: a torch::nn MLP 784-512-512-10
// with torch::nn::Dropout after each hidden layer, trained with Adam, either
// with plain dropout (--alpha 0: torch's cross-entropy) or with R-Drop
// through rdrop/torch.hpp (--alpha > 0: every sample fed twice,
// cross-entropy on both copies + alpha * symmetric KL between them, the
// gradient from rdrop's autograd function). The flags and the last line
// (`test_accuracy=<value>`) are those of the Eigen classifier
// (examples/classifier), except the ones about its own model code.
//
//   rdrop_torch_classifier [--alpha A] [--dropout P] [--epochs N] [--batch B] [--lr LR]
//                          [--seed S] [--labeled N] [--limit N] [--threads T] [--csv FILE]
//                          [--data DIR] [--mc-passes K] [--max-steps N] [--fused-head]
#include "../classifier/idx.hpp"
#include "../common/cli.hpp"

#include <rdrop/rdrop.hpp>
#include <rdrop/torch.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr const char* kProgram = "rdrop_torch_classifier";

/// The flags shared by the examples (alpha, dropout, epochs, seed, threads,
/// data, csv, progress: examples/common/cli.hpp) and this program's own.
struct Settings : examples::CommonFlags {
  Settings() { data = "/usr/share/datasets/fashion-mnist"; }
  int batch = 128;
  double lr = 1e-3;
  long labeled = 0;  // 0: every training label is kept
  long limit = 0;    // 0: every training sample
  int mc_passes = 10;
  long max_steps = 0;
  bool fused_head = false;
};

constexpr const char* kUsage =
    "usage: rdrop_torch_classifier [options]\n"
    "  --alpha A      weight of the R-Drop KL term; 0 trains plain dropout (default 1)\n"
    "  --dropout P    drop probability after each hidden layer (default 0.3)\n"
    "  --epochs N     passes over the training set (default 10)\n"
    "  --batch B      samples per step; R-Drop feeds each twice (default 128)\n"
    "  --lr LR        Adam learning rate (default 0.001)\n"
    "  --seed S       seed of initialization, shuffling, dropout and label choice (default 1)\n"
    "  --labeled N    keep only N training labels; the other samples contribute\n"
    "                 the KL term only (semi-supervised; default: all labels)\n"
    "  --limit N      use only the first N training samples (default: all)\n"
    "  --threads T    threads for torch and rdrop (default: torch's default)\n"
    "  --csv FILE     write per-epoch metrics to FILE\n"
    "  --progress / --no-progress  the progress bar on stderr (default: when a terminal)\n"
    "  --data DIR     Fashion-MNIST directory (default /usr/share/datasets/fashion-mnist)\n"
    "  --mc-passes K  dropout-on passes averaged for the final Monte-Carlo accuracy (default 10)\n"
    "  --max-steps N  stop training after N steps (default: all epochs)\n"
    "  --fused-head   R-Drop: the output layer inside the loss (rdrop::torch::linear_loss),\n"
    "                 which never holds the logits\n";

[[noreturn]] void usage_error(const std::string& message) { examples::usage_error(kProgram, kUsage, message); }

template <typename T>
T number(const std::string& flag, const std::string& text, T low, T high) {
  return examples::parse_number<T>(kProgram, kUsage, flag, text, low, high);
}

Settings parse_arguments(int argc, char** argv) {
  Settings s;
  examples::parse_arguments(
      argc, argv, kProgram, kUsage, s,
      [&](const std::string& flag) {
        if (flag == "--fused-head") {
          s.fused_head = true;
          return true;
        }
        if (flag == "--duplicate-input" || flag == "--local-counts") {
          usage_error(flag + " belongs to the Eigen classifier (rdrop_classifier), whose model code it concerns");
        }
        return false;
      },
      [&](const std::string& flag, const std::string& value) {
        if (flag == "--batch") s.batch = number<int>(flag, value, 1, 1 << 20);
        else if (flag == "--lr") s.lr = number<double>(flag, value, 0, 10);
        else if (flag == "--labeled") s.labeled = number<long>(flag, value, 0, 1L << 40);
        else if (flag == "--limit") s.limit = number<long>(flag, value, 0, 1L << 40);
        else if (flag == "--mc-passes") s.mc_passes = number<int>(flag, value, 1, 100000);
        else if (flag == "--max-steps") s.max_steps = number<long>(flag, value, 0, 1L << 40);
        else if (flag == "--save-params" || flag == "--compare-params" || flag == "--compare-tolerance") {
          usage_error(flag + " belongs to the Eigen classifier (rdrop_classifier), whose model code it concerns");
        } else return false;
        return true;
      });
  return s;
}

struct Dataset {
  at::Tensor x;  // [N, 784] float, standardized
  at::Tensor y;  // [N] int64
};

Dataset load(const std::string& images_path, const std::string& labels_path) {
  const idx::Images images = idx::read_images(images_path);
  const std::vector<std::uint8_t> labels = idx::read_labels(labels_path);
  if (images.rows != 28 || images.cols != 28 || labels.size() != images.count) {
    throw idx::IdxError(images_path, "is not a 28 x 28 image set matching '" + labels_path + "'");
  }
  const auto n = static_cast<int64_t>(images.count);
  at::Tensor x = torch::empty({n, 784});
  at::Tensor y = torch::empty({n}, torch::kLong);
  float* px = x.data_ptr<float>();
  for (std::size_t i = 0; i < images.pixels.size(); ++i) {
    px[i] = (static_cast<float>(images.pixels[i]) / 255.0f - 0.2860f) / 0.3530f;
  }
  int64_t* py = y.data_ptr<int64_t>();
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] > 9) throw idx::IdxError(labels_path, "holds a label outside [0, 9]");
    py[i] = labels[i];
  }
  return {x, y};
}

/// The MLP: body (784-512-512 with ReLU and dropout) and output layer. The
/// output layer is rdrop's RDropLinearLoss module: its weight and bias are
/// parameters like torch::nn::Linear's (initialized the same way), its
/// logits() is the layer, and called with labels it is the fused R-Drop loss.
struct MlpImpl : torch::nn::Module {
  MlpImpl(double p, const rdrop::torch::LinearLossTorchOptions& loss) {
    body = register_module("body", torch::nn::Sequential(torch::nn::Linear(784, 512), torch::nn::ReLU(),
                                                         torch::nn::Dropout(p), torch::nn::Linear(512, 512),
                                                         torch::nn::ReLU(), torch::nn::Dropout(p)));
    head = register_module("head", rdrop::torch::RDropLinearLoss(rdrop::torch::RDropLinearLossOptions(512, 10).loss(loss)));
  }
  at::Tensor forward(const at::Tensor& x) { return head->logits(body->forward(x)); }
  torch::nn::Sequential body{nullptr};
  rdrop::torch::RDropLinearLoss head{nullptr};
};
TORCH_MODULE(Mlp);

double accuracy(Mlp& model, const Dataset& d) {
  torch::NoGradGuard no_grad;
  model->eval();
  const at::Tensor predicted = model->forward(d.x).argmax(1);
  model->train();
  return predicted.eq(d.y).to(torch::kDouble).mean().item<double>();
}

/// Accuracy of the average of K dropout-on predictions.
double mc_accuracy(Mlp& model, const Dataset& d, int passes) {
  torch::NoGradGuard no_grad;
  at::Tensor mean = torch::zeros({d.x.size(0), 10});
  for (int k = 0; k < passes; ++k) mean += at::softmax(model->forward(d.x), 1);
  return mean.argmax(1).eq(d.y).to(torch::kDouble).mean().item<double>();
}

}  // namespace

int main(int argc, char** argv) {
  const Settings s = parse_arguments(argc, argv);
  if (s.threads > 0) {
    at::set_num_threads(s.threads);
    rdrop::set_num_threads(s.threads);
  }
  torch::manual_seed(s.seed);
  Dataset train, test;
  try {
    train = load(s.data + "/train-images-idx3-ubyte.gz", s.data + "/train-labels-idx1-ubyte.gz");
    test = load(s.data + "/t10k-images-idx3-ubyte.gz", s.data + "/t10k-labels-idx1-ubyte.gz");
  } catch (const idx::IdxError& e) {
    idx::report_missing_data("rdrop_torch_classifier", e);
    return 1;
  }
  if (s.limit > 0 && s.limit < train.x.size(0)) {
    train.x = train.x.slice(0, 0, s.limit);
    train.y = train.y.slice(0, 0, s.limit);
  }
  const int64_t n = train.x.size(0);
  constexpr int64_t kUnlabeled = -100;
  // Semi-supervised: only `labeled` samples, chosen by the seed, keep their
  // labels; the others carry the KL term only (plain dropout ignores them).
  at::Tensor labels = train.y.clone();
  if (s.labeled > 0 && s.labeled < n) labels.index_put_({torch::randperm(n).slice(0, s.labeled)}, kUnlabeled);
  const bool rdrop_mode = s.alpha > 0;
  if (s.fused_head && !rdrop_mode) usage_error("--fused-head trains R-Drop's output layer: it needs --alpha > 0");
  std::printf("Fashion-MNIST: %ld training samples (%ld labeled), %ld test samples\n", static_cast<long>(n),
              static_cast<long>(labels.ne(kUnlabeled).sum().item<int64_t>()), static_cast<long>(test.x.size(0)));
  std::printf("torch::nn MLP 784-512-512-10, dropout %.2f, Adam lr %g, batch %d, %s\n", s.dropout, s.lr, s.batch,
              rdrop_mode ? "R-Drop through rdrop::torch (each batch fed twice)" : "plain dropout (alpha 0)");

  const auto options = rdrop::torch::RDropLossOptions().alpha(s.alpha).ignore_index(kUnlabeled);
  Mlp model(s.dropout, options);
  rdrop::torch::RDropLoss rdrop_loss(options);
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(s.lr));
  std::optional<examples::CsvLog> csv;
  try {
    csv.emplace(s.csv, "epoch,alpha,dropout,seed,labeled,train_loss,test_accuracy,epoch_seconds,steps");
  } catch (const std::runtime_error& e) {
    std::fprintf(stderr, "%s: %s\n", kProgram, e.what());
    return 1;
  }
  examples::Progress progress(s.show_progress());

  long steps_total = 0;
  for (int epoch = 1; epoch <= s.epochs; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    const at::Tensor order = torch::randperm(n);
    double loss_sum = 0;
    long steps = 0;
    for (int64_t first = 0; first < n; first += s.batch) {
      if (s.max_steps > 0 && steps_total >= s.max_steps) break;
      const at::Tensor rows = order.slice(0, first, std::min<int64_t>(n, first + s.batch));
      const at::Tensor x = train.x.index_select(0, rows), y = labels.index_select(0, rows);
      at::Tensor loss;
      if (rdrop_mode) {
        // Rows [a, a, b, b, ...]: the two copies of a sample draw different
        // dropout masks in one forward pass.
        const at::Tensor doubled = x.repeat_interleave(2, 0);
        if (s.fused_head) {
          loss = model->head(model->body->forward(doubled), y);
        } else {
          loss = rdrop_loss(model->forward(doubled), y);
        }
      } else {
        loss = torch::nn::functional::cross_entropy(model->forward(x), y,
                                                    torch::nn::functional::CrossEntropyFuncOptions().ignore_index(kUnlabeled));
      }
      adam.zero_grad();
      loss.backward();
      adam.step();
      loss_sum += loss.item<double>();
      ++steps;
      ++steps_total;
      const long done = static_cast<long>(std::min<int64_t>(n, first + s.batch));
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      progress.update(epoch, s.epochs, done, static_cast<long>(n), elapsed, static_cast<double>(done) / elapsed,
                      "samples/s", examples::format("loss %.4f", loss_sum / static_cast<double>(steps)));
    }
    progress.finish();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double acc = accuracy(model, test);
    const double train_loss = steps > 0 ? loss_sum / static_cast<double>(steps) : 0.0;
    std::printf("epoch %d: train_loss=%.4f test_accuracy=%.4f seconds=%.1f\n", epoch, train_loss, acc, seconds);
    std::fflush(stdout);
    csv->row(examples::format("%d,%g,%g,%llu,%ld,%.6f,%.6f,%.3f,%ld", epoch, s.alpha, s.dropout,
                              static_cast<unsigned long long>(s.seed), s.labeled, train_loss, acc, seconds, steps));
  }
  std::printf("mc_accuracy=%.4f (%d dropout-on passes averaged)\n", mc_accuracy(model, test, s.mc_passes), s.mc_passes);
  std::printf("test_accuracy=%.4f\n", accuracy(model, test));
  return 0;
}
