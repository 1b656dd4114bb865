// R-Drop on Fashion-MNIST: an MLP 784-512-512-10 with dropout after each
// hidden layer, trained with Adam, either with plain dropout (--alpha 0) or
// with R-Drop (--alpha > 0: every sample fed twice, cross-entropy on both
// copies + alpha * symmetric KL between them). The model and the optimizer
// live in this example (mlp.hpp); the loss, the batch duplication and the
// dropout come from rdrop.
//
//   rdrop_classifier [--alpha A] [--dropout P] [--epochs N] [--batch B] [--lr LR]
//                    [--seed S] [--labeled N] [--limit N] [--threads T]
//                    [--csv FILE] [--data DIR] [--mc-passes K] [--fused-head]
//                    [--duplicate-input]
//
// Its last line is `test_accuracy=<value>`.
#include "../common/cli.hpp"
#include "idx.hpp"
#include "mlp.hpp"

#include <rdrop/rdrop.hpp>
#ifdef RDROP_CLASSIFIER_MPI
#include <rdrop/mpi.hpp>
#endif

#include <Eigen/Core>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <numeric>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using classifier::Matrix;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// CPU time of the process (all threads): with --threads 1 on a busy
// machine, a steadier measure of the work than wall time.
double cpu_seconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

constexpr const char* kProgram = "rdrop_classifier";

/// The flags shared by the examples (alpha, dropout, epochs, seed, threads,
/// data, csv, progress: examples/common/cli.hpp) and this program's own.
struct Settings : examples::CommonFlags {
  Settings() { data = "/usr/share/datasets/fashion-mnist"; }
  int batch = 128;
  float lr = 1e-3f;
  long labeled = 0;  // 0: every training label is kept
  long limit = 0;    // 0: every training sample
  int mc_passes = 10;
  bool duplicate_input = false;  // R-Drop: double the input rows, not the first layer's output
  bool fused_head = false;       // R-Drop: the output layer through rdrop::RDropLinearLoss
  long max_steps = 0;            // 0: train every step of every epoch
  std::string save_params;       // write the trained parameters here
  std::string compare_params;    // compare the trained parameters with these
  double compare_tolerance = -1;  // fail when the relative difference exceeds it (< 0: report only)
  bool local_counts = false;      // MPI: each rank normalizes by its own counts (no all-reduce)
};

constexpr const char* kUsage =
    "usage: rdrop_classifier [options]\n"
    "  --alpha A      weight of the R-Drop KL term; 0 trains plain dropout (default 1)\n"
    "  --dropout P    drop probability after each hidden layer (default 0.3)\n"
    "  --epochs N     passes over the training set (default 10)\n"
    "  --batch B      samples per step; R-Drop feeds each twice (default 128)\n"
    "  --lr LR        Adam learning rate (default 0.001)\n"
    "  --seed S       seed of initialization, shuffling, dropout and label choice (default 1)\n"
    "  --labeled N    keep only N training labels; the other samples contribute\n"
    "                 the KL term only (semi-supervised; default: all labels)\n"
    "  --limit N      use only the first N training samples (default: all)\n"
    "  --threads T    threads for the matrix products and rdrop (default: all cores)\n"
    "  --csv FILE     write per-epoch metrics to FILE\n"
    "  --progress / --no-progress  the progress bar on stderr (default: when a terminal)\n"
    "  --data DIR     Fashion-MNIST directory (default /usr/share/datasets/fashion-mnist)\n"
    "  --mc-passes K  dropout-on passes of the final consistency measurement (default 10)\n"
    "  --fused-head   R-Drop: train the output layer inside the loss (rdrop::RDropLinearLoss),\n"
    "                 which never holds the logits; same results as without, to float rounding\n"
    "  --max-steps N  stop training after N steps (default: all epochs)\n"
    "  --save-params FILE     write the trained weights to FILE (raw floats)\n"
    "  --compare-params FILE  print how far the weights are from weights saved before:\n"
    "                 param_rel_diff= (all of them as one vector, relative) and\n"
    "                 param_max_rel_diff= (the worst tensor, relative to its largest entry)\n"
    "  --compare-tolerance X  and exit with status 2 when param_rel_diff exceeds X\n"
#ifdef RDROP_CLASSIFIER_MPI
    "  --local-counts each rank normalizes by its own batch share's counts and the\n"
    "                 gradients are averaged (what a user without WithCounts does)\n"
    "Data-parallel: start with mpirun -np K; --batch stays the global batch.\n"
#endif
    "  --duplicate-input  R-Drop: feed the duplicated input through every layer instead\n"
    "                 of duplicating the first layer's output (same result, slower)\n";

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
        if (flag == "--duplicate-input") s.duplicate_input = true;
        else if (flag == "--fused-head") s.fused_head = true;
        else if (flag == "--local-counts") s.local_counts = true;
        else return false;
        return true;
      },
      [&](const std::string& flag, const std::string& value) {
        if (flag == "--batch") s.batch = number<int>(flag, value, 1, 1 << 20);
        else if (flag == "--lr") s.lr = number<float>(flag, value, 0.0f, 10.0f);
        else if (flag == "--labeled") s.labeled = number<long>(flag, value, 0, 1L << 40);
        else if (flag == "--limit") s.limit = number<long>(flag, value, 0, 1L << 40);
        else if (flag == "--mc-passes") s.mc_passes = number<int>(flag, value, 1, 100000);
        else if (flag == "--max-steps") s.max_steps = number<long>(flag, value, 0, 1L << 40);
        else if (flag == "--save-params") s.save_params = value;
        else if (flag == "--compare-params") s.compare_params = value;
        else if (flag == "--compare-tolerance") s.compare_tolerance = number<double>(flag, value, 0.0, 1e30);
        else return false;
        return true;
      });
  return s;
}

/// Samples as rows of standardized pixels, with their labels.
struct Dataset {
  Matrix x;
  Eigen::VectorXi y;
};

Dataset load(const std::string& images_path, const std::string& labels_path) {
  const idx::Images images = idx::read_images(images_path);
  const std::vector<std::uint8_t> labels = idx::read_labels(labels_path);
  if (images.rows != 28 || images.cols != 28) {
    throw idx::IdxError(images_path, "images are " + std::to_string(images.rows) + " x " +
                                         std::to_string(images.cols) + ", expected 28 x 28");
  }
  if (labels.size() != images.count) {
    throw idx::IdxError(labels_path, "holds " + std::to_string(labels.size()) + " labels for " +
                                         std::to_string(images.count) + " images in '" + images_path + "'");
  }
  Dataset d{Matrix(static_cast<Eigen::Index>(images.count), 784), Eigen::VectorXi(static_cast<Eigen::Index>(images.count))};
  // Fashion-MNIST's pixel mean and standard deviation (training set).
  const float mean = 0.2860f, inv_std = 1.0f / 0.3530f;
  for (std::size_t i = 0; i < images.pixels.size(); ++i) {
    d.x.data()[i] = (static_cast<float>(images.pixels[i]) / 255.0f - mean) * inv_std;
  }
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] > 9) throw idx::IdxError(labels_path, "label " + std::to_string(labels[i]) + " at index " + std::to_string(i) + " is not a class in [0, 9]");
    d.y(static_cast<Eigen::Index>(i)) = labels[i];
  }
  return d;
}

/// Accuracy of the dropout-off model, in batches.
double accuracy(const classifier::Mlp& model, const Dataset& d) {
  classifier::ForwardCache cache;
  long correct = 0;
  const Eigen::Index chunk = 1000;
  for (Eigen::Index first = 0; first < d.x.rows(); first += chunk) {
    const Eigen::Index n = std::min(chunk, d.x.rows() - first);
    const Matrix& logits = model.Forward(d.x.middleRows(first, n), false, 0, cache);
    for (Eigen::Index r = 0; r < n; ++r) {
      Eigen::Index best = 0;
      logits.row(r).maxCoeff(&best);
      correct += best == d.y(first + r);
    }
  }
  return d.x.rows() > 0 ? static_cast<double>(correct) / static_cast<double>(d.x.rows()) : 0.0;
}

/// Every weight and bias, layer by layer, as raw floats.
void save_parameters(const classifier::Mlp& model, const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  for (const classifier::Linear& l : model.layers()) {
    out.write(reinterpret_cast<const char*>(l.w.data()), static_cast<std::streamsize>(l.w.size() * 4));
    out.write(reinterpret_cast<const char*>(l.b.data()), static_cast<std::streamsize>(l.b.size() * 4));
  }
  if (!out) throw std::runtime_error("cannot write '" + path + "'");
}

/// How far the model's parameters are from those saved by save_parameters:
/// as one vector, ‖θ − θ_saved‖ / ‖θ_saved‖ (`norm`); and tensor by tensor,
/// the largest difference relative to that tensor's largest magnitude
/// (`worst`, stricter: a tensor of small values counts as much as any).
struct ParameterDifference {
  double norm = 0;
  double worst = 0;
};

ParameterDifference parameter_difference(const classifier::Mlp& model, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  double worst = 0, diff_squares = 0, squares = 0;
  const auto compare = [&](const float* p, Eigen::Index n) {
    std::vector<float> saved(static_cast<std::size_t>(n));
    in.read(reinterpret_cast<char*>(saved.data()), static_cast<std::streamsize>(n * 4));
    if (!in) throw std::runtime_error("'" + path + "' does not hold this model's parameters");
    double diff = 0, scale = 0;
    for (Eigen::Index i = 0; i < n; ++i) {
      const double want = static_cast<double>(saved[static_cast<std::size_t>(i)]);
      const double d = std::abs(static_cast<double>(p[i]) - want);
      diff = std::max(diff, d);
      scale = std::max(scale, std::abs(want));
      diff_squares += d * d;
      squares += want * want;
    }
    worst = std::max(worst, scale > 0 ? diff / scale : diff);
  };
  for (const classifier::Linear& l : model.layers()) {
    compare(l.w.data(), l.w.size());
    compare(l.b.data(), l.b.size());
  }
  return {squares > 0 ? std::sqrt(diff_squares / squares) : std::sqrt(diff_squares), worst};
}

}  // namespace

int main(int argc, char** argv) {
#ifdef RDROP_CLASSIFIER_MPI
  // Data-parallel (mpirun -np K): every rank builds the same global batch,
  // trains on its slice of it, and all take the same Adam step; rank 0
  // evaluates and prints.
  MPI_Init(&argc, &argv);
  struct Finalize {
    ~Finalize() { MPI_Finalize(); }
  } finalize;
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  if (rank != 0 && std::freopen("/dev/null", "w", stdout) == nullptr) return 1;
#else
  const int rank = 0, ranks = 1;
#endif
  const Settings s = parse_arguments(argc, argv);
  if (s.threads > 0) {
    Eigen::setNbThreads(s.threads);
    rdrop::set_num_threads(s.threads);
  }

  Dataset train, test;
  try {
    train = load(s.data + "/train-images-idx3-ubyte.gz", s.data + "/train-labels-idx1-ubyte.gz");
    test = load(s.data + "/t10k-images-idx3-ubyte.gz", s.data + "/t10k-labels-idx1-ubyte.gz");
  } catch (const idx::IdxError& e) {
    idx::report_missing_data("rdrop_classifier", e);
    return 1;
  }
  if (s.limit > 0 && s.limit < train.x.rows()) {
    train.x.conservativeResize(s.limit, Eigen::NoChange);
    train.y.conservativeResize(s.limit);
  }
  const Eigen::Index n_train = train.x.rows();

  // Semi-supervised: only `labeled` samples, chosen by the seed, keep their
  // labels. Every step then takes a quarter of its batch from this labeled
  // pool (cycled, reshuffled on each pass) and the rest from the whole
  // training set with the labels hidden, which adds only the KL term.
  // Plain dropout (alpha 0) cannot use unlabeled rows, so it trains on the
  // labeled quarter alone: both methods see the same labeled samples.
  constexpr int kUnlabeled = -100;
  const bool semi = s.labeled > 0 && s.labeled < n_train;
  std::vector<Eigen::Index> pool;
  if (semi) {
    if (s.batch < 2) usage_error("--labeled needs --batch >= 2 (a labeled and an unlabeled part)");
    std::vector<Eigen::Index> all(static_cast<std::size_t>(n_train));
    std::iota(all.begin(), all.end(), Eigen::Index(0));
    std::mt19937_64 label_rng(s.seed ^ 0x5eed1abe1ULL);
    std::shuffle(all.begin(), all.end(), label_rng);
    pool.assign(all.begin(), all.begin() + s.labeled);
  }
  const long kept_labels = semi ? s.labeled : static_cast<long>(n_train);
  const Eigen::Index pool_per_step = semi ? std::max(1, s.batch / 4) : 0;
  const Eigen::Index stream_per_step = s.batch - pool_per_step;
  std::mt19937_64 pool_rng(s.seed ^ 0x9001ULL);
  std::size_t pool_next = pool.size();  // reshuffle before the first use

  const bool rdrop_mode = s.alpha > 0;
  if (s.fused_head && !rdrop_mode) usage_error("--fused-head trains R-Drop's output layer: it needs --alpha > 0");
  if (ranks > 1 && !rdrop_mode) usage_error("data-parallel training (mpirun) is for R-Drop: it needs --alpha > 0");
  std::printf("Fashion-MNIST: %ld training samples (%ld labeled), %ld test samples\n", static_cast<long>(n_train),
              kept_labels, static_cast<long>(test.x.rows()));
  if (semi) {
    std::printf("semi-supervised: each step %ld labeled samples from the pool + %ld with hidden labels%s\n",
                static_cast<long>(pool_per_step), static_cast<long>(stream_per_step),
                rdrop_mode ? "" : " (unused by plain dropout)");
  }
  char method[64];
  if (rdrop_mode) {
    std::snprintf(method, sizeof method, "R-Drop alpha %g (each batch fed twice)", static_cast<double>(s.alpha));
  } else {
    std::snprintf(method, sizeof method, "plain dropout (alpha 0)");
  }
  std::printf("MLP 784-512-512-10, dropout %.2f, Adam lr %g, batch %d, %s\n", static_cast<double>(s.dropout),
              static_cast<double>(s.lr), s.batch, method);

  classifier::Mlp model({784, 512, 512, 10}, static_cast<float>(s.dropout), s.seed);
  classifier::Adam adam(s.lr);
  rdrop::RDropOptions<float> rdrop_options;
  rdrop_options.alpha = static_cast<float>(s.alpha);
  rdrop_options.ignore_index = kUnlabeled;
  const rdrop::RDropLoss<float> rdrop_loss(rdrop_options);
  const rdrop::RDropLinearLoss<float> fused_head_loss(rdrop_options);
  rdrop::CrossEntropyOptions<float> ce_options;
  ce_options.ignore_index = kUnlabeled;
  const rdrop::CrossEntropy<float> plain_loss(ce_options);

  std::optional<examples::CsvLog> csv;
  try {
    csv.emplace(rank == 0 ? s.csv : std::string(),
                "epoch,alpha,dropout,seed,labeled,train_loss,test_accuracy,epoch_seconds,epoch_cpu_seconds,"
                "loss_seconds,steps");
  } catch (const std::runtime_error& e) {
    std::fprintf(stderr, "%s: %s\n", kProgram, e.what());
    return 1;
  }
  examples::Progress progress(rank == 0 && s.show_progress());
  std::vector<Eigen::Index> order(static_cast<std::size_t>(n_train));
  std::iota(order.begin(), order.end(), Eigen::Index(0));
  std::mt19937_64 shuffle_rng(s.seed);
  classifier::ForwardCache cache;
  Matrix batch_x, local_x, doubled_x, grad, grad_hidden;
  Eigen::VectorXi local_y;
  // The loss of this rank's slice as its share of the global batch's loss:
  // normalized by the counts of the whole batch, all-reduced before the
  // backward pass (--local-counts: by the slice's own counts, the mistake
  // WithCounts exists to avoid).
  const auto share = [&](const auto& loss, const rdrop::RDropCounts& own) {
#ifdef RDROP_CLASSIFIER_MPI
    if (ranks > 1 && !s.local_counts) return loss.WithCounts(rdrop::mpi::AllReduce(own, MPI_COMM_WORLD));
#endif
    (void)own;
    return loss;
  };
  Eigen::VectorXi batch_y;
  std::uint64_t step = 0;
  long steps_total = 0, samples_total = 0;
  double train_seconds = 0.0, train_cpu_seconds = 0.0, loss_seconds_total = 0.0, last_accuracy = 0.0;

  for (int epoch = 1; epoch <= s.epochs; ++epoch) {
    std::shuffle(order.begin(), order.end(), shuffle_rng);
    const auto epoch_start = Clock::now();
    const double epoch_cpu_start = cpu_seconds();
    double loss_sum = 0.0, loss_seconds = 0.0;
    long steps = 0;
    for (Eigen::Index first = 0; first < n_train; first += stream_per_step) {
      if (s.max_steps > 0 && steps_total >= s.max_steps) break;
      const Eigen::Index from_stream = std::min(stream_per_step, n_train - first);
      // Rows of this step: the stream's samples (unlabeled when semi), then
      // the labeled pool's; plain dropout in the semi-supervised setting
      // keeps only the labeled ones.
      const Eigen::Index stream_rows = semi && !rdrop_mode ? 0 : from_stream;
      const Eigen::Index b = stream_rows + pool_per_step;
      batch_x.resize(b, 784);
      batch_y.resize(b);
      for (Eigen::Index i = 0; i < stream_rows; ++i) {
        const Eigen::Index k = order[static_cast<std::size_t>(first + i)];
        batch_x.row(i) = train.x.row(k);
        batch_y(i) = semi ? kUnlabeled : train.y(k);
      }
      for (Eigen::Index i = stream_rows; i < b; ++i) {
        if (pool_next == pool.size()) {
          std::shuffle(pool.begin(), pool.end(), pool_rng);
          pool_next = 0;
        }
        const Eigen::Index k = pool[pool_next++];
        batch_x.row(i) = train.x.row(k);
        batch_y(i) = train.y(k);
      }
      ++step;
      // This rank's slice of the global batch: samples [lo, hi).
      const Eigen::Index lo = b * rank / ranks, hi = b * (rank + 1) / ranks;
      local_x = batch_x.middleRows(lo, hi - lo);
      local_y = batch_y.segment(lo, hi - lo);
      float loss = 0.0f;
      if (rdrop_mode) {
        // R-Drop: rows [a, a, b, b, ...], one forward pass, and the two
        // copies of each sample draw different dropout masks.
        // By default the first layer runs once per sample and its output is
        // duplicated (the same maths: nothing random comes before the first
        // dropout); --duplicate-input doubles the input rows instead.
        const bool share_first = !s.duplicate_input;
        if (!share_first) doubled_x = rdrop::Duplicate(local_x);
        const Matrix& x_rows = share_first ? local_x : doubled_x;
        cache.first_row = static_cast<std::uint64_t>(2 * lo);  // interleaved: sample i is rows 2i, 2i + 1
        if (s.fused_head) {
          // The output layer (logits = h·W + b, W stored in × out) inside
          // the loss: the fused loss takes W as out × in, its transpose.
          const Matrix& hidden = model.Forward(x_rows, true, step, cache, share_first, /*hidden_only=*/true);
          const classifier::Linear& head = model.layers().back();
          classifier::Linear& head_grad = model.output_gradient();
          const auto loss_start = Clock::now();
          const auto step_loss = share(fused_head_loss, fused_head_loss.Count(hidden, head.w.transpose(), local_y));
          loss = step_loss.EvaluateWithGradient(hidden, head.w.transpose(), head.b, local_y, grad_hidden,
                                                head_grad.w.transpose(), head_grad.b);
          loss_seconds += seconds_since(loss_start);
          model.BackwardFromHidden(x_rows, grad_hidden, step, cache);
        } else {
          const Matrix& logits = model.Forward(x_rows, true, step, cache, share_first);
          const auto loss_start = Clock::now();
          loss = share(rdrop_loss, rdrop_loss.Count(logits, local_y)).EvaluateWithGradient(logits, local_y, grad);
          loss_seconds += seconds_since(loss_start);
          model.Backward(x_rows, grad, step, cache);
        }
      } else {
        const Matrix& logits = model.Forward(batch_x, true, step, cache);
        const auto loss_start = Clock::now();
        loss = plain_loss.EvaluateWithGradient(logits, batch_y, grad);
        loss_seconds += seconds_since(loss_start);
        model.Backward(batch_x, grad, step, cache);
      }
#ifdef RDROP_CLASSIFIER_MPI
      if (ranks > 1) {
        // The gradients of the shares add up to the global batch's (a sum,
        // not a mean); with --local-counts they are averaged, as a user
        // without WithCounts would.
        const float weight = s.local_counts ? 1.0f / static_cast<float>(ranks) : 1.0f;
        for (classifier::Linear& g : model.gradients()) {
          rdrop::mpi::AllReduceSum(g.w, MPI_COMM_WORLD);
          rdrop::mpi::AllReduceSum(g.b, MPI_COMM_WORLD);
          if (weight != 1.0f) {
            g.w *= weight;
            g.b *= weight;
          }
        }
        loss = weight * rdrop::mpi::AllReduceSum(loss, MPI_COMM_WORLD);
      }
#endif
      adam.Step(model.layers(), model.gradients());
      loss_sum += static_cast<double>(loss);
      ++steps;
      ++steps_total;
      samples_total += static_cast<long>(b);
      const double elapsed = seconds_since(epoch_start);
      progress.update(epoch, s.epochs, static_cast<long>(first + from_stream), static_cast<long>(n_train), elapsed,
                      static_cast<double>(first + from_stream) / elapsed, "samples/s",
                      examples::format("loss %.4f", loss_sum / static_cast<double>(steps)));
    }
    const double epoch_seconds = seconds_since(epoch_start);
    const double epoch_cpu_seconds = cpu_seconds() - epoch_cpu_start;
    progress.finish();
    train_seconds += epoch_seconds;
    train_cpu_seconds += epoch_cpu_seconds;
    loss_seconds_total += loss_seconds;
    if (rank == 0) last_accuracy = accuracy(model, test);  // the other ranks print nothing
    const double mean_loss = steps > 0 ? loss_sum / static_cast<double>(steps) : 0.0;
    std::printf("epoch %d/%d  loss %.4f  test accuracy %.4f  %.1f s  %.0f samples/s  loss+gradient %.2f%% of step time\n",
                epoch, s.epochs, mean_loss, last_accuracy, epoch_seconds,
                static_cast<double>(n_train) / epoch_seconds, 100.0 * loss_seconds / epoch_seconds);
    std::fflush(stdout);
    csv->row(examples::format("%d,%g,%g,%llu,%ld,%.6f,%.6f,%.4f,%.4f,%.6f,%ld", epoch, s.alpha, s.dropout,
                             static_cast<unsigned long long>(s.seed), kept_labels, mean_loss, last_accuracy,
                             epoch_seconds, epoch_cpu_seconds, loss_seconds, steps));
    if (s.max_steps > 0 && steps_total >= s.max_steps) break;
  }

  int status = 0;
  if (!s.save_params.empty() && rank == 0) save_parameters(model, s.save_params);
  if (!s.compare_params.empty() && rank == 0) {
    const ParameterDifference diff = parameter_difference(model, s.compare_params);
    std::printf("param_max_rel_diff=%.3e\n", diff.worst);
    std::printf("param_rel_diff=%.3e\n", diff.norm);
    if (s.compare_tolerance >= 0 && !(diff.norm <= s.compare_tolerance)) {
      std::fprintf(stderr, "rdrop_classifier: parameters differ by %.3e relative, more than %.3e\n", diff.norm,
                   s.compare_tolerance);
      status = 2;
    }
  }

  // The consistency gap on the test set: K dropout-on passes averaged
  // against the dropout-off prediction.
  std::uint64_t mc_step = std::uint64_t{1} << 40;  // apart from the training steps
  classifier::ForwardCache mc_cache;
  auto forward = [&](const auto& x, bool dropout) -> Matrix {
    return model.Forward(x, dropout, dropout ? mc_step++ : 0, mc_cache);
  };
  rdrop::ConsistencyOptions consistency_options;
  consistency_options.passes = s.mc_passes;
  consistency_options.batch_rows = 2000;
  rdrop::ConsistencyReport<float> report;
  if (rank == 0) report = rdrop::MeasureConsistency(forward, test.x, test.y, consistency_options);

  std::printf("test accuracy (dropout off):        %.4f\n", static_cast<double>(report.deterministic_accuracy));
  std::printf("MC-average accuracy (K=%d):          %.4f\n", s.mc_passes, static_cast<double>(report.mc_accuracy));
  std::printf("consistency KL(MC average || off):  %.5f\n", static_cast<double>(report.kl));
  std::printf("training: %.2f s per epoch, loss+gradient %.2f%% of step time\n", train_seconds / s.epochs,
              100.0 * loss_seconds_total / train_seconds);
  std::printf("mc_accuracy=%.4f\n", static_cast<double>(report.mc_accuracy));
  std::printf("consistency_kl=%.6f\n", static_cast<double>(report.kl));
  std::printf("seconds_per_epoch=%.3f\n", train_seconds / s.epochs);
  std::printf("cpu_seconds_per_epoch=%.3f\n", train_cpu_seconds / s.epochs);
  std::printf("loss_share=%.5f\n", loss_seconds_total / train_seconds);
  std::printf("samples_per_second=%.1f\n", static_cast<double>(samples_total) / train_seconds);
  std::printf("ranks=%d\n", ranks);
  std::printf("test_accuracy=%.4f\n", static_cast<double>(report.deterministic_accuracy));
  return status;
}
