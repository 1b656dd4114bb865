// rdrop/torch.hpp against torch's own composition of each loss, in the same
// process: values and autograd gradients for every option (layouts,
// normalizations, smoothing styles, ignore_index, divergences, padding and
// masks of [2B, T, V]), float and double, 2-byte logits, the multi-label,
// regression and fused linear losses; a finite-difference gradient check in
// double (what torch.autograd.gradcheck does: libtorch 1.13 has no C++
// gradcheck); grad_output, in place, strided logits and errors.
#define CATCH_CONFIG_MAIN
#include <rdrop/torch.hpp>

#include <catch2/catch.hpp>
#include <torch/torch.h>
#include <ATen/autocast_mode.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

// Under the sanitizers (RDROP_SANITIZE_TESTS): stop at the first report.
// libtorch keeps allocations for the process's life: leaks are not checked.
#if defined(__SANITIZE_ADDRESS__)
extern "C" const char* __asan_default_options() { return "detect_leaks=0:abort_on_error=1"; }
extern "C" const char* __ubsan_default_options() { return "print_stacktrace=1:halt_on_error=1"; }
#endif

namespace {

// RDROP_TORCH_TEST_PATH=aten runs the whole suite with Path::Auto meaning the
// ATen path on CPU tensors (CTest runs it both ways).
const bool aten_by_default = [] {
  const char* path = std::getenv("RDROP_TORCH_TEST_PATH");
  if (path == nullptr || std::string(path) != "aten") return false;
  rdrop::torch::set_default_path(rdrop::torch::Path::ATen);
  return true;
}();

namespace F = torch::nn::functional;
using rdrop::Layout;
using rdrop::Normalization;
using rdrop::torch::Divergence;

/// The two copies' rows of a duplicated batch [2B, ...] in `layout`.
std::pair<at::Tensor, at::Tensor> copies(const at::Tensor& x, Layout layout) {
  if (layout == Layout::Stacked) {
    const auto c = x.chunk(2, 0);
    return {c[0], c[1]};
  }
  return {x.slice(0, 0, x.size(0), 2), x.slice(0, 1, x.size(0), 2)};
}

/// Labels given once per sample, spread over the rows in `layout`.
at::Tensor row_labels(const at::Tensor& y, Layout layout) {
  return layout == Layout::Stacked ? at::cat({y, y}) : y.repeat_interleave(2);
}

/// KL(softmax(a) ‖ softmax(b)) per row, torch's kl_div with log targets.
at::Tensor kl_rows(const at::Tensor& a, const at::Tensor& b) {
  return F::kl_div(at::log_softmax(b, -1), at::log_softmax(a, -1),
                   F::KLDivFuncOptions().reduction(torch::kNone).log_target(true))
      .sum(-1);
}

at::Tensor divergence_rows(const at::Tensor& a, const at::Tensor& b, Divergence d) {
  switch (d) {
    case Divergence::SymmetricKL:
      return 0.5 * (kl_rows(a, b) + kl_rows(b, a));
    case Divergence::KL:
      return kl_rows(a, b);
    case Divergence::JensenShannon: {
      const at::Tensor p = at::softmax(a, -1), q = at::softmax(b, -1);
      const at::Tensor log_m = at::log(0.5 * (p + q));
      const auto opts = F::KLDivFuncOptions().reduction(torch::kNone);
      return 0.5 * (F::kl_div(log_m, p, opts) + F::kl_div(log_m, q, opts)).sum(-1);
    }
  }
  return {};
}

/// The R-Drop loss written in torch ops, as a user without rdrop would
/// (labels once per sample, rank-2 logits).
at::Tensor torch_rdrop(const at::Tensor& logits, const at::Tensor& y, const rdrop::torch::RDropLossOptions& o) {
  const at::Tensor rows = row_labels(y, o.layout());
  const at::Tensor ce = F::cross_entropy(logits, rows,
                                         F::CrossEntropyFuncOptions()
                                             .reduction(torch::kNone)
                                             .ignore_index(o.ignore_index())
                                             .label_smoothing(o.label_smoothing()));
  const auto [a, b] = copies(logits, o.layout());
  const at::Tensor d = divergence_rows(a, b, o.divergence()).sum();
  const double labeled = rows.ne(o.ignore_index()).sum().item<double>();
  const double pairs = static_cast<double>(a.size(0));
  switch (o.normalization()) {
    case Normalization::Paper:
    case Normalization::Sum:
      return ce.sum() + o.alpha() * d;
    case Normalization::KerasCode:
      return ce.sum() / labeled + o.alpha() * d / (2 * pairs);
    case Normalization::PyTorchReadme:
      return ce.sum() / labeled + o.alpha() * d;
    case Normalization::Mean:
      return ce.sum() / labeled + o.alpha() * d / pairs;
    case Normalization::Fairseq:
      return (ce.sum() + o.alpha() * d) / pairs;
  }
  return {};
}

double tolerance(at::ScalarType t) { return t == at::kDouble ? 1e-10 : 2e-5; }

/// Value and gradient of f at a copy of x that requires grad.
std::pair<at::Tensor, at::Tensor> value_and_grad(const at::Tensor& x, const std::function<at::Tensor(const at::Tensor&)>& f) {
  const at::Tensor leaf = x.detach().clone().requires_grad_(true);
  const at::Tensor v = f(leaf);
  v.backward();
  return {v.detach(), leaf.grad()};
}

bool close(const at::Tensor& got, const at::Tensor& want, double tol) {
  const at::Tensor g = got.to(at::kDouble), w = want.to(at::kDouble);
  const double scale = std::max(1.0, w.abs().max().item<double>());
  return (g - w).abs().max().item<double>() <= tol * scale;
}

at::Tensor logits_of(int64_t rows, int64_t classes, at::ScalarType dtype, uint64_t seed) {
  torch::manual_seed(seed);
  const at::Tensor base = 3 * torch::randn({rows / 2, classes}, torch::kDouble);
  return at::cat({base, base}).add(0.3 * torch::randn({rows, classes}, torch::kDouble)).to(dtype);
}

}  // namespace

TEST_CASE("rdrop_loss equals torch's composition for every layout, normalization, smoothing and divergence",
          "[torch]") {
  const auto dtype = GENERATE(at::kFloat, at::kDouble);
  const auto layout = GENERATE(Layout::Interleaved, Layout::Stacked);
  const auto norm = GENERATE(Normalization::KerasCode, Normalization::Paper, Normalization::PyTorchReadme,
                             Normalization::Sum, Normalization::Mean, Normalization::Fairseq);
  const auto divergence = GENERATE(Divergence::SymmetricKL, Divergence::KL, Divergence::JensenShannon);
  const double smoothing = GENERATE(0.0, 0.1);
  CAPTURE(c10::toString(dtype), static_cast<int>(layout), static_cast<int>(norm), static_cast<int>(divergence),
          smoothing);
  const int64_t b = 6, c = 11;
  const at::Tensor x = logits_of(2 * b, c, dtype, 3);
  at::Tensor y = torch::randint(0, c, {b}, torch::kLong);
  y[2] = -100;  // unlabeled: divergence only
  rdrop::torch::RDropLossOptions o;
  o.layout(layout);
  o.normalization(norm);
  o.divergence(divergence);
  o.alpha(0.7);
  o.label_smoothing(smoothing);
  const auto [value, grad] = value_and_grad(x, [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z, y, o); });
  const auto [want, want_grad] = value_and_grad(x, [&](const at::Tensor& z) { return torch_rdrop(z, y, o); });
  CHECK(value.scalar_type() == dtype);
  CHECK(close(value, want, tolerance(dtype)));
  CHECK(close(grad, want_grad, tolerance(dtype)));
}

TEST_CASE("A [2B, T, V] batch with padding and a mask equals the fairseq formula written in torch ops",
          "[torch][sequence]") {
  const auto dtype = GENERATE(at::kFloat, at::kDouble);
  const int64_t b = 3, t = 5, v = 13, pad = 1;
  torch::manual_seed(11);
  const at::Tensor base = 2 * torch::randn({b, t, v}, torch::kDouble);
  const at::Tensor x = at::cat({base, base}).add(0.2 * torch::randn({2 * b, t, v}, torch::kDouble)).to(dtype);
  at::Tensor target = torch::randint(2, v, {b, t}, torch::kLong);
  target.index_put_({0, 3}, pad);
  target.index_put_({0, 4}, pad);
  target.index_put_({2, 4}, pad);
  const double eps = 0.1, alpha = 5.0;
  rdrop::torch::RDropLossOptions o;
  o.layout(Layout::Stacked);  // fairseq concatenates the two copies
  o.normalization(Normalization::Fairseq);
  o.padding_index(pad);
  o.label_smoothing(eps);
  o.smoothing_style(rdrop::SmoothingStyle::ExcludeTarget);
  o.alpha(alpha);
  o.ignore_index(-100);

  // fairseq's label_smoothed_nll_loss and compute_kl_loss, summed over the
  // unpadded tokens and divided by their number (sample_size = ntokens).
  const auto fairseq = [&](const at::Tensor& z) {
    const at::Tensor targets = at::cat({target, target}).unsqueeze(-1);
    const at::Tensor lprobs = at::log_softmax(z, -1);
    const at::Tensor pad_mask = targets.eq(pad);
    at::Tensor nll = -lprobs.gather(-1, targets), smooth = -lprobs.sum(-1, true);
    nll = nll.masked_fill(pad_mask, 0.0);
    smooth = smooth.masked_fill(pad_mask, 0.0);
    const double eps_i = eps / static_cast<double>(v - 1);
    const at::Tensor ce = (1.0 - eps - eps_i) * nll.sum() + eps_i * smooth.sum();
    const auto halves = lprobs.chunk(2, 0);
    const auto opts = F::KLDivFuncOptions().reduction(torch::kNone).log_target(true);
    const at::Tensor token_pad = target.eq(pad).unsqueeze(-1);
    const at::Tensor p_loss = F::kl_div(halves[0], halves[1], opts).masked_fill(token_pad, 0.0).sum();
    const at::Tensor q_loss = F::kl_div(halves[1], halves[0], opts).masked_fill(token_pad, 0.0).sum();
    const double ntokens = target.ne(pad).sum().item<double>();
    return (ce + alpha * (p_loss + q_loss) / 2) / ntokens;
  };
  const auto [value, grad] = value_and_grad(x, [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z, target, o); });
  const auto [want, want_grad] = value_and_grad(x, fairseq);
  CHECK(close(value, want, tolerance(dtype)));
  CHECK(close(grad, want_grad, tolerance(dtype)));
  CHECK(grad.index({0, 3}).abs().max().item<double>() == 0.0);  // padded: exactly 0 for both copies
  CHECK(grad.index({b, 3}).abs().max().item<double>() == 0.0);

  // A mask removing token (1, 2) of both copies: as if it were padding.
  at::Tensor mask = torch::ones({b, t}, torch::kBool);
  mask.index_put_({1, 2}, false);
  at::Tensor padded = target.clone();
  padded.index_put_({1, 2}, pad);
  const auto [masked, masked_grad] =
      value_and_grad(x, [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z, target, o, mask); });
  const auto [as_pad, as_pad_grad] =
      value_and_grad(x, [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z, padded, o); });
  CHECK(close(masked, as_pad, 1e-12));
  CHECK(close(masked_grad, as_pad_grad, 1e-12));
}

TEST_CASE("Gradient check in double: the backward against central differences of the forward", "[torch][gradcheck]") {
  const auto divergence = GENERATE(Divergence::SymmetricKL, Divergence::KL, Divergence::JensenShannon);
  const int64_t b = 3, c = 5;
  const at::Tensor x = logits_of(2 * b, c, at::kDouble, 5);
  const at::Tensor y = torch::tensor({1, 4, 0}, torch::kLong);
  rdrop::torch::RDropLossOptions o;
  o.divergence(divergence);
  o.label_smoothing(0.05);
  const auto f = [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z, y, o); };
  const auto [value, grad] = value_and_grad(x, f);
  const double h = 1e-6;
  at::Tensor numeric = torch::zeros_like(x);
  for (int64_t i = 0; i < x.numel(); ++i) {
    at::Tensor up = x.clone(), down = x.clone();
    up.view({-1})[i] += h;
    down.view({-1})[i] -= h;
    numeric.view({-1})[i] = (f(up) - f(down)).item<double>() / (2 * h);
  }
  CHECK(close(grad, numeric, 1e-7));
}

TEST_CASE("grad_output, strided logits, int32 labels, 2-byte logits", "[torch]") {
  const int64_t b = 4, c = 9;
  const at::Tensor x = logits_of(2 * b, c, at::kFloat, 7);
  const at::Tensor y = torch::randint(0, c, {b}, torch::kLong);
  const auto [value, grad] = value_and_grad(x, [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z, y); });

  SECTION("backward honours grad_output") {
    const auto [v3, g3] =
        value_and_grad(x, [&](const at::Tensor& z) { return 3.0 * rdrop::torch::rdrop_loss(z, y) + z.sum() * 0.0; });
    CHECK(close(v3, 3.0 * value, 1e-6));
    CHECK(close(g3, 3.0 * grad, 1e-6));
  }
  SECTION("strided and transposed logits read as they are") {
    const at::Tensor wide = torch::zeros({2 * b, 2 * c});
    wide.slice(1, 0, c).copy_(x);
    const auto [v, g] = value_and_grad(wide, [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z.slice(1, 0, c), y); });
    CHECK(v.item<float>() == value.item<float>());
    CHECK(at::equal(g.slice(1, 0, c), grad));
    CHECK(g.slice(1, c, 2 * c).abs().max().item<float>() == 0.f);
    const at::Tensor t = x.t().contiguous();
    const auto [vt, gt] = value_and_grad(t, [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z.t(), y); });
    CHECK(vt.item<float>() == value.item<float>());
    CHECK(at::equal(gt.t(), grad));
  }
  SECTION("int32 labels") {
    CHECK(rdrop::torch::rdrop_loss(x, y.to(at::kInt)).item<float>() == value.item<float>());
  }
  SECTION("bfloat16 and half logits: float arithmetic, the gradient in the logits' dtype") {
    for (const auto dtype : {at::kBFloat16, at::kHalf}) {
      const at::Tensor x2 = x.to(dtype);
      const auto [v2, g2] = value_and_grad(x2, [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z, y); });
      CHECK(v2.scalar_type() == at::kFloat);
      CHECK(g2.scalar_type() == dtype);
      // Exactly the float loss of the widened logits, the gradient rounded once.
      const auto [vw, gw] = value_and_grad(x2.to(at::kFloat), [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z, y); });
      CHECK(v2.item<float>() == vw.item<float>());
      CHECK(at::equal(g2, gw.to(dtype)));
    }
  }
}

TEST_CASE("The in-place variant overwrites the logits with their gradient and refuses later readers",
          "[torch][in_place]") {
  const int64_t b = 4, c = 9;
  const at::Tensor x = logits_of(2 * b, c, at::kFloat, 9);
  const at::Tensor y = torch::randint(0, c, {b}, torch::kLong);
  const auto [value, grad] = value_and_grad(x, [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z, y); });

  // Logits produced by an op whose backward does not need them (a Linear).
  const at::Tensor h = torch::randn({2 * b, 5}), w = torch::randn({c, 5}).requires_grad_(true);
  const at::Tensor logits = at::matmul(h, w.t()).detach().copy_(x);
  const at::Tensor leaf = logits.clone().requires_grad_(true);
  const at::Tensor z = leaf * 1.0;  // a non-leaf to overwrite
  const at::Tensor loss = rdrop::torch::rdrop_loss_(z, y);
  CHECK(loss.item<float>() == value.item<float>());
  CHECK(at::equal(z.detach(), grad));  // the logits now hold the gradient
  loss.backward();
  CHECK(at::equal(leaf.grad(), grad));

  // A reader that saved the logits for its own backward fails loudly.
  const at::Tensor leaf2 = x.clone().requires_grad_(true);
  const at::Tensor z2 = leaf2 * 1.0;
  const at::Tensor probs = at::softmax(z2, -1);  // saves its output, not z2: fine
  const at::Tensor squares = z2 * z2;            // saves z2
  const at::Tensor total = rdrop::torch::rdrop_loss_(z2, y) + squares.sum();
  CHECK_THROWS_WITH(total.backward(), Catch::Contains("modified by an inplace operation"));
  (void)probs;
}

TEST_CASE("Multi-label, regression and the fused linear loss equal torch's composition", "[torch]") {
  const auto dtype = GENERATE(at::kFloat, at::kDouble);
  const int64_t b = 5, k = 7;
  const at::Tensor x = logits_of(2 * b, k, dtype, 13);
  torch::manual_seed(17);

  SECTION("multi-label: BCE with logits + alpha * Bernoulli symmetric KL") {
    const at::Tensor targets = torch::randint(0, 2, {b, k}).to(dtype);
    rdrop::torch::MultiLabelLossOptions o;
    o.alpha(0.8);
    o.normalization(Normalization::Sum);
    const auto reference = [&](const at::Tensor& z) {
      const at::Tensor bce = F::binary_cross_entropy_with_logits(
          z, targets.repeat_interleave(2, 0),
          F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kSum));
      const auto [u, v] = copies(z, Layout::Interleaved);
      const auto bern_kl = [](const at::Tensor& s, const at::Tensor& t) {
        const at::Tensor ls = at::log_sigmoid(s), lt = at::log_sigmoid(t), l1s = at::log_sigmoid(-s),
                         l1t = at::log_sigmoid(-t);
        return (at::sigmoid(s) * (ls - lt) + at::sigmoid(-s) * (l1s - l1t)).sum();
      };
      return bce + o.alpha() * 0.5 * (bern_kl(u, v) + bern_kl(v, u));
    };
    const auto [value, grad] =
        value_and_grad(x, [&](const at::Tensor& z) { return rdrop::torch::multi_label_loss(z, targets, o); });
    const auto [want, want_grad] = value_and_grad(x, reference);
    CHECK(close(value, want, tolerance(dtype)));
    CHECK(close(grad, want_grad, tolerance(dtype)));
  }
  SECTION("regression: squared error + alpha * squared distance") {
    const at::Tensor targets = torch::randn({2 * b, k}).to(dtype);
    rdrop::torch::RegressionLossOptions o;
    o.alpha(0.5);
    o.layout(Layout::Stacked);
    o.normalization(Normalization::Sum);
    const auto reference = [&](const at::Tensor& z) {
      const auto [u, v] = copies(z, Layout::Stacked);
      return (z - targets).pow(2).sum() + o.alpha() * (u - v).pow(2).sum();
    };
    const auto [value, grad] =
        value_and_grad(x, [&](const at::Tensor& z) { return rdrop::torch::regression_loss(z, targets, o); });
    const auto [want, want_grad] = value_and_grad(x, reference);
    CHECK(close(value, want, tolerance(dtype)));
    CHECK(close(grad, want_grad, tolerance(dtype)));
  }
  SECTION("the fused linear loss: gradients for hidden, weight and bias") {
    const int64_t d = 6, v = 17;
    const at::Tensor hidden = torch::randn({2 * b, d}).to(dtype);
    const at::Tensor weight = torch::randn({v, d}).to(dtype), bias = torch::randn({v}).to(dtype);
    const at::Tensor y = torch::randint(0, v, {b}, torch::kLong);
    rdrop::torch::LinearLossTorchOptions o;
    o.alpha(1.5);
    const auto run = [&](bool fused) {
      const at::Tensor h = hidden.clone().requires_grad_(true), w = weight.clone().requires_grad_(true),
                       bb = bias.clone().requires_grad_(true);
      const at::Tensor loss = fused ? rdrop::torch::linear_loss(h, w, bb, y, o)
                                    : torch_rdrop(at::matmul(h, w.t()) + bb, y, o);
      loss.backward();
      return std::vector<at::Tensor>{loss.detach(), h.grad(), w.grad(), bb.grad()};
    };
    const auto got = run(true), want = run(false);
    for (std::size_t i = 0; i < got.size(); ++i) CHECK(close(got[i], want[i], tolerance(dtype)));
    const at::Tensor no_bias_loss = rdrop::torch::linear_loss(hidden, weight, at::Tensor(), y, o);
    CHECK(close(no_bias_loss, torch_rdrop(at::matmul(hidden, weight.t()), y, o), tolerance(dtype)));
  }
}

TEST_CASE("Bad input throws errors naming the argument", "[torch][errors]") {
  const at::Tensor x = torch::randn({8, 5});
  const at::Tensor y = torch::randint(0, 5, {4}, torch::kLong);
  CHECK_THROWS_AS(rdrop::torch::rdrop_loss(x, y.to(at::kFloat)), c10::Error);
  CHECK_THROWS_WITH(rdrop::torch::rdrop_loss(x, y.to(at::kFloat)), Catch::Contains("argument 'labels' has dtype"));
  CHECK_THROWS_WITH(rdrop::torch::rdrop_loss(torch::randn({8}), y), Catch::Contains("argument 'logits' has shape"));
  CHECK_THROWS_WITH(rdrop::torch::rdrop_loss(x.to(at::kInt), y), Catch::Contains("argument 'logits' has dtype"));
  CHECK_THROWS_AS(rdrop::torch::rdrop_loss(x, torch::randint(0, 5, {3}, torch::kLong)), std::invalid_argument);
  CHECK_THROWS_WITH(rdrop::torch::rdrop_loss(x, torch::randint(0, 5, {3}, torch::kLong)),
                    Catch::Contains("argument 'labels' has shape [3]; expected [4] (one per sample) or [8] (one per row)"));
  CHECK_THROWS_WITH(rdrop::torch::rdrop_loss(torch::randn({7, 5}), y), Catch::Contains("odd number"));
  CHECK_THROWS_WITH(rdrop::torch::rdrop_loss(x, torch::tensor({0, 1, 2, 9}, torch::kLong)), Catch::Contains("9"));
  CHECK_THROWS_WITH(rdrop::torch::linear_loss(torch::randn({8, 3}), torch::randn({5, 4}), at::Tensor(), y),
                    Catch::Contains("weight"));
  CHECK_THROWS_WITH(rdrop::torch::linear_loss(torch::randn({8, 3}).to(at::kInt), torch::randn({5, 3}).to(at::kInt),
                                              at::Tensor(), y),
                    Catch::Contains("argument 'hidden' has dtype Int; expected float, double, bfloat16 or half"));
}

TEST_CASE("Edge inputs: an empty batch, logits near 1e4, a class at -inf", "[torch][edge]") {
  SECTION("an empty batch: loss 0, an empty gradient") {
    const at::Tensor x = torch::zeros({0, 5}, torch::requires_grad());
    const at::Tensor loss = rdrop::torch::rdrop_loss(x, torch::zeros({0}, torch::kLong));
    loss.backward();
    CHECK(loss.item<float>() == 0.f);
    CHECK(x.grad().sizes() == x.sizes());
  }
  SECTION("logits shifted by +-1e4: torch's composition of the same logits (both are shift-invariant)") {
    for (const double shift : {1e4, -1e4}) {
      const at::Tensor x = logits_of(8, 9, at::kDouble, 21) + shift;
      const at::Tensor y = torch::randint(0, 9, {4}, torch::kLong);
      const rdrop::torch::RDropLossOptions o;
      const auto [value, grad] = value_and_grad(x, [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z, y, o); });
      const auto [want, want_grad] = value_and_grad(x, [&](const at::Tensor& z) { return torch_rdrop(z, y, o); });
      CHECK(close(value, want, 1e-9));
      CHECK(close(grad, want_grad, 1e-9));
    }
  }
  SECTION("a class at -inf in both copies: finite loss, exactly 0 gradient there, the rest as without the class") {
    const at::Tensor finite = logits_of(8, 9, at::kFloat, 23);
    const at::Tensor x = at::cat({torch::full({8, 1}, -std::numeric_limits<float>::infinity()), finite}, 1);
    const at::Tensor y = torch::randint(1, 10, {4}, torch::kLong);
    const auto [value, grad] = value_and_grad(x, [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z, y); });
    const auto [want, want_grad] =
        value_and_grad(finite, [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z, y - 1); });
    CHECK(std::isfinite(value.item<float>()));
    CHECK(close(value, want, 1e-6));
    CHECK(grad.select(1, 0).abs().max().item<float>() == 0.f);
    CHECK(close(grad.slice(1, 1, 10), want_grad, 1e-6));
  }
}

// ---------------------------------------------------------------------------
// torch's rules: views, autograd modes, in place, shapes (issue 22).

namespace {

/// An as_strided layout of `sizes`: strides drawn per dimension among 0
/// (expanded), packed, overlapping (smaller than packed) and gapped
/// (larger), with an offset; `storage` is the smallest storage that holds it.
struct Layout2 {
  std::vector<int64_t> sizes, strides;
  int64_t offset = 0, storage = 1;
};

Layout2 draw_layout(const std::vector<int64_t>& sizes, std::mt19937& rng) {
  Layout2 l;
  l.sizes = sizes;
  l.strides.resize(sizes.size());
  int64_t packed = 1;
  for (std::size_t i = sizes.size(); i-- > 0;) {
    switch (std::uniform_int_distribution<int>(0, 4)(rng)) {
      case 0: l.strides[i] = 0; break;                                                              // expanded
      case 1: l.strides[i] = packed; break;                                                         // contiguous
      case 2: l.strides[i] = std::uniform_int_distribution<int64_t>(1, std::max<int64_t>(1, packed))(rng); break;  // overlapping
      case 3: l.strides[i] = packed + std::uniform_int_distribution<int64_t>(1, 3)(rng); break;    // gapped
      default: l.strides[i] = std::uniform_int_distribution<int64_t>(1, 9)(rng); break;           // anything
    }
    packed *= std::max<int64_t>(sizes[i], 1);
  }
  l.offset = std::uniform_int_distribution<int64_t>(0, 3)(rng);
  int64_t last = l.offset;
  bool empty = false;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    empty = empty || sizes[i] == 0;
    last += (std::max<int64_t>(sizes[i], 1) - 1) * l.strides[i];
  }
  l.storage = empty ? l.offset + 1 : last + 1;
  return l;
}

at::Tensor view_of(const at::Tensor& storage, const Layout2& l) {
  return storage.as_strided(l.sizes, l.strides, l.offset);
}

/// Value and gradient (w.r.t. the storage) of f applied to a view of a
/// storage that requires grad; `contiguous`: f gets the view's values made
/// contiguous instead, which is what every view must read as.
std::pair<at::Tensor, at::Tensor> through_view(const at::Tensor& values, const Layout2& l, bool contiguous,
                                               const std::function<at::Tensor(const at::Tensor&)>& f) {
  const at::Tensor storage = values.detach().clone().requires_grad_(true);
  const at::Tensor v = view_of(storage * 1, l);  // a view of a non-leaf: allowed in place
  const at::Tensor loss = f(contiguous ? v.contiguous() : v);
  loss.backward();
  return {loss.detach(), storage.grad()};
}

bool same(const at::Tensor& a, const at::Tensor& b) {
  return a.defined() == b.defined() && (!a.defined() || (a.sizes() == b.sizes() && at::equal(a, b)));
}

/// A grad_fn that raises when differentiated through.
template <typename F>
std::string second_derivative_error(F&& second) {
  try {
    second();
  } catch (const std::exception& e) {  // torch's Error node throws std::runtime_error
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("Every strided view reads as its values made contiguous: random as_strided layouts of logits, "
          "labels, targets and masks for every function",
          "[torch][views]") {
  std::mt19937 rng(2026);
  const int trials = 600;
  int compared = 0, refused_in_place = 0;
  for (int trial = 0; trial < trials; ++trial) {
    const int64_t b = std::uniform_int_distribution<int64_t>(0, 3)(rng);
    const int64_t c = std::uniform_int_distribution<int64_t>(1, 6)(rng);
    const bool rank3 = std::uniform_int_distribution<int>(0, 2)(rng) == 0;
    const int64_t t = rank3 ? std::uniform_int_distribution<int64_t>(1, 3)(rng) : 1;
    const int function = std::uniform_int_distribution<int>(0, 6)(rng);
    const bool per_row = std::uniform_int_distribution<int>(0, 1)(rng) == 1;
    const bool with_mask = std::uniform_int_distribution<int>(0, 1)(rng) == 1;
    const auto dtype = function <= 1 && std::uniform_int_distribution<int>(0, 3)(rng) == 0 ? at::kBFloat16 : at::kDouble;
    CAPTURE(trial, b, c, rank3, t, function, per_row, with_mask, c10::toString(dtype));

    std::vector<int64_t> x_sizes{2 * b}, row_sizes{per_row ? 2 * b : b};
    if (rank3) {
      x_sizes.push_back(t);
      row_sizes.push_back(t);
    }
    const int64_t width = function == 5 ? 4 : c;  // linear_loss: hidden size 4, c classes
    x_sizes.push_back(width);
    const Layout2 xl = draw_layout(x_sizes, rng), yl = draw_layout(row_sizes, rng), ml = draw_layout(row_sizes, rng);
    std::vector<int64_t> target_sizes = row_sizes;
    target_sizes.push_back(c);
    const Layout2 tl = draw_layout(target_sizes, rng);
    const Layout2 wl = draw_layout({c, 4}, rng);
    CAPTURE(xl.strides, yl.strides, ml.strides, tl.strides, wl.strides);

    torch::manual_seed(static_cast<uint64_t>(trial));
    const at::Tensor x_values = (2 * torch::randn({xl.storage}, torch::kDouble)).to(dtype);
    const at::Tensor labels = view_of(torch::randint(0, c, {yl.storage}, torch::kLong), yl);
    const at::Tensor mask = with_mask ? view_of(torch::randint(0, 3, {ml.storage}).to(torch::kFloat), ml) : at::Tensor();
    const at::Tensor targets = view_of(torch::rand({tl.storage}, torch::kDouble), tl);
    const at::Tensor weight = view_of(torch::randn({wl.storage}, torch::kDouble), wl);
    rdrop::torch::RDropLossOptions o;
    o.alpha(0.9);
    o.divergence(static_cast<Divergence>(trial % 3));
    o.layout(trial % 2 ? Layout::Stacked : Layout::Interleaved);
    const auto apply = [&](const at::Tensor& z, bool contiguous) -> at::Tensor {
      const at::Tensor y = contiguous ? labels.contiguous() : labels;
      const at::Tensor m = mask.defined() && contiguous ? mask.contiguous() : mask;
      switch (function) {
        case 0: return rdrop::torch::rdrop_loss(z, y, o, m);
        case 1: return rdrop::torch::rdrop_loss_(z, y, o, m);
        case 2: return rdrop::torch::multi_label_loss(z, contiguous ? targets.contiguous() : targets, {}, m);
        case 3: return rdrop::torch::regression_loss(z, contiguous ? targets.contiguous() : targets, {}, m);
        case 4: return rdrop::torch::regression_loss_(z, contiguous ? targets.contiguous() : targets, {}, m);
        case 5: {
          rdrop::torch::LinearLossTorchOptions lo;
          lo.alpha(0.9);
          return rdrop::torch::linear_loss(z, contiguous ? weight.contiguous() : weight, at::Tensor(), y, lo, m);
        }
        default: return rdrop::torch::rdrop_loss(z.transpose(0, 0), y, o, m);
      }
    };
    const bool in_place = function == 1 || function == 4;
    const auto want = through_view(x_values, xl, true, [&](const at::Tensor& z) { return apply(z, true); });
    if (in_place && !view_of(x_values, xl).is_contiguous()) {
      // Only a contiguous tensor can hold its own gradient: refused, untouched.
      const at::Tensor storage = x_values.clone();
      const at::Tensor v = view_of(storage, xl);
      const at::Tensor z = v.detach().requires_grad_(false);
      (void)z;
      const at::Tensor leaf = x_values.clone().requires_grad_(true);
      const at::Tensor nonleaf = leaf * 1;
      const at::Tensor before = nonleaf.detach().clone();
      CHECK_THROWS_WITH(apply(view_of(nonleaf, xl), false), Catch::Contains("must be contiguous"));
      CHECK(at::equal(nonleaf.detach(), before));
      ++refused_in_place;
      continue;
    }
    const auto got = through_view(x_values, xl, false, [&](const at::Tensor& z) { return apply(z, false); });
    CHECK(same(got.first, want.first));
    CHECK(same(got.second, want.second));
    ++compared;
  }
  CHECK(compared > trials / 2);
  CHECK(refused_in_place > 0);
}

TEST_CASE("Stride-0 and overlapping logits: the values torch holds, never memory past the storage", "[torch][views]") {
  const int64_t b = 3, c = 7;
  torch::manual_seed(3);
  const at::Tensor row = torch::randn({c}, torch::kDouble);
  const at::Tensor y = torch::randint(0, c, {b}, torch::kLong);
  const auto reference = [&](const at::Tensor& z) { return torch_rdrop(z, y, {}); };
  SECTION("one row expanded to 2B rows (the issue's 1.7e175)") {
    const auto [v, g] = value_and_grad(row, [&](const at::Tensor& r) { return rdrop::torch::rdrop_loss(r.expand({2 * b, c}), y); });
    const auto [want, want_g] = value_and_grad(row, [&](const at::Tensor& r) { return reference(r.expand({2 * b, c})); });
    CHECK(close(v, want, 1e-12));
    CHECK(close(g, want_g, 1e-12));
  }
  SECTION("an expanded row inside a bigger buffer, and unfold's overlapping rows") {
    const at::Tensor buffer = torch::randn({64}, torch::kDouble);
    const auto [v, g] = value_and_grad(buffer, [&](const at::Tensor& s) {
      return rdrop::torch::rdrop_loss(s.slice(0, 10, 10 + c).expand({2 * b, c}), y);
    });
    const auto [want, want_g] =
        value_and_grad(buffer, [&](const at::Tensor& s) { return reference(s.slice(0, 10, 10 + c).expand({2 * b, c})); });
    CHECK(close(v, want, 1e-12));
    CHECK(close(g, want_g, 1e-12));
    const auto [vu, gu] = value_and_grad(buffer, [&](const at::Tensor& s) {
      return rdrop::torch::rdrop_loss(s.unfold(0, c, 2).slice(0, 0, 2 * b), y);
    });
    const auto [wu, wgu] =
        value_and_grad(buffer, [&](const at::Tensor& s) { return reference(s.unfold(0, c, 2).slice(0, 0, 2 * b)); });
    CHECK(close(vu, wu, 1e-12));
    CHECK(close(gu, wgu, 1e-12));
  }
  SECTION("a [2B, 1] column expanded from one value") {
    const at::Tensor one = torch::randn({1, 1}, torch::kDouble);
    const at::Tensor yz = torch::zeros({b}, torch::kLong);
    const auto [v, g] = value_and_grad(one, [&](const at::Tensor& s) { return rdrop::torch::rdrop_loss(s.expand({2 * b, 1}), yz); });
    const auto [want, want_g] =
        value_and_grad(one, [&](const at::Tensor& s) { return torch_rdrop(s.expand({2 * b, 1}), yz, {}); });
    CHECK(close(v, want, 1e-12));
    CHECK(close(g, want_g, 1e-12));
  }
}

TEST_CASE("Differentiating through rdrop's backward raises, for every function; first-order gradients under "
          "create_graph stay exact",
          "[torch][double_backward]") {
  const int64_t b = 3, c = 5, d = 4;
  torch::manual_seed(8);
  const at::Tensor h = torch::randn({2 * b, d}, torch::kDouble);
  const at::Tensor y = torch::randint(0, c, {b}, torch::kLong);
  const at::Tensor targets = torch::rand({b, c}, torch::kDouble);
  using LossOf = std::function<at::Tensor(const at::Tensor& logits)>;
  const std::vector<std::pair<std::string, LossOf>> losses{
      {"rdrop_loss", [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z, y); }},
      {"rdrop_loss_", [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss_(z * 1, y); }},
      {"multi_label_loss", [&](const at::Tensor& z) { return rdrop::torch::multi_label_loss(z, targets); }},
      {"multi_label_loss_", [&](const at::Tensor& z) { return rdrop::torch::multi_label_loss_(z * 1, targets); }},
      {"regression_loss", [&](const at::Tensor& z) { return rdrop::torch::regression_loss(z, targets); }},
      {"regression_loss_", [&](const at::Tensor& z) { return rdrop::torch::regression_loss_(z * 1, targets); }},
      {"rdrop_loss bfloat16", [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z.to(at::kBFloat16), y); }},
  };
  for (const auto& [name, loss_of] : losses) {
    CAPTURE(name);
    const at::Tensor w = torch::randn({c, d}, torch::kDouble).requires_grad_(true);
    // A gradient penalty through a layer: ‖∂L/∂W‖² needs L's Hessian.
    const at::Tensor loss = loss_of(at::matmul(h, w.t()));
    const at::Tensor gw = torch::autograd::grad({loss}, {w}, {}, true, true)[0];
    const at::Tensor plain_w = w.detach().clone().requires_grad_(true);
    loss_of(at::matmul(h, plain_w.t())).backward();
    CHECK(close(gw.detach(), plain_w.grad(), 1e-15));  // create_graph changes nothing at first order
    const std::string error = second_derivative_error([&] { gw.pow(2).sum().backward(); });
    CHECK_THAT(error, Catch::Contains("once_differentiable") && Catch::Contains("rdrop::torch::"));
    // A Hessian-vector product on logits 2z (the in-place variant gave 4v).
    const at::Tensor z = torch::randn({2 * b, c}, torch::kDouble).requires_grad_(true);
    const at::Tensor gz = torch::autograd::grad({loss_of(2 * z)}, {z}, {}, true, true)[0];
    CHECK_THAT(second_derivative_error([&] { torch::autograd::grad({(gz * torch::ones_like(gz)).sum()}, {z}); }),
               Catch::Contains("once_differentiable"));
  }
  SECTION("linear_loss") {
    const at::Tensor w = torch::randn({c, d}, torch::kDouble).requires_grad_(true);
    const at::Tensor hh = h.clone().requires_grad_(true);
    const at::Tensor gw = torch::autograd::grad({rdrop::torch::linear_loss(hh, w, at::Tensor(), y)}, {w}, {}, true, true)[0];
    CHECK_THAT(second_derivative_error([&] { gw.pow(2).sum().backward(); }), Catch::Contains("once_differentiable"));
  }
}

TEST_CASE("2-byte gradients under loss scaling are rounded once: the float gradient scaled in float, then "
          "rounded to the logits' dtype",
          "[torch][two_byte]") {
  const auto dtype = GENERATE(at::kBFloat16, at::kHalf);
  const double scale = GENERATE(3.7, 1024.0);
  CAPTURE(c10::toString(dtype), scale);
  const int64_t b = 256, c = 1000;
  torch::manual_seed(12);
  const at::Tensor base = 4 * torch::randn({b, c});
  const at::Tensor x = at::cat({base, base + 0.05 * torch::randn({b, c})}).to(dtype);
  at::Tensor y = torch::randint(0, c, {b}, torch::kLong);
  y.slice(0, 0, b / 4).fill_(-100);  // unlabeled pairs: divergence only, small gradients
  rdrop::torch::RDropLossOptions o;
  o.layout(Layout::Stacked);
  o.normalization(Normalization::Mean);

  // The float gradient at the scale (rdrop's float sweep on the widened
  // logits, the scale in its weights: tests/test_two_byte.cpp checks it
  // against the exact gradient), rounded once to the 2-byte type: what the
  // adapter must deliver, bitwise.
  const at::Tensor xf = x.to(at::kFloat).contiguous();
  at::Tensor at_scale = torch::empty_like(xf);
  {
    using MatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const Eigen::Map<const MatrixF> xm(xf.data_ptr<float>(), xf.size(0), xf.size(1));
    Eigen::Map<MatrixF> gm(at_scale.data_ptr<float>(), xf.size(0), xf.size(1));
    const Eigen::Map<const Eigen::Matrix<int64_t, Eigen::Dynamic, 1>> ym(y.data_ptr<int64_t>(), y.numel());
    rdrop::RDropOptions<float> eo;
    eo.layout = o.layout();
    eo.normalization = o.normalization();
    rdrop::RDropLoss<float>(eo).WithGradientScale(static_cast<float>(scale)).Gradient(xm, ym, gm);
  }
  if (aten_by_default) {
    // The ATen path's own float gradient (of float logits) at the scale: its
    // float arithmetic differs from the fused sweep's, and "rounded once"
    // means once from that.
    at_scale = value_and_grad(xf, [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z, y, o); }).second * scale;
  }
  const at::Tensor once = at_scale.to(dtype);
  // Against the exact gradient (double, from the same 2-byte values) times
  // the scale: one rounding moves an entry by at most half a unit in its
  // last place, plus what float arithmetic is off by there. Rounding twice
  // moves entries further (bfloat16 at 3.7: 12.8 % of them before this was
  // fixed).
  const auto [dv, dg] = value_and_grad(x.to(at::kDouble), [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z, y, o); });
  const auto [fv, fg] = value_and_grad(xf, [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z, y, o); });
  const at::Tensor exact = dg * scale;
  const at::Tensor float_error = (at_scale.to(at::kDouble) - exact).abs();
  const int digits = dtype == at::kBFloat16 ? 8 : 11, min_exponent = dtype == at::kBFloat16 ? -126 : -14;
  // The unit of the larger of the two: rounding the float gradient moves it
  // by half a unit of its own binade, which may be the one above exact's.
  const at::Tensor exponent =
      at::floor(at::log2(at::maximum(exact.abs(), at_scale.to(at::kDouble).abs()))).clamp_min(min_exponent);
  const at::Tensor half_ulp = at::pow(2.0, exponent - digits);  // half of 2^(e - digits + 1)
  const at::Tensor bound = half_ulp + float_error + 1e-300;
  const auto beyond_one_rounding = [&](const at::Tensor& got) {
    return ((got.to(at::kDouble) - exact).abs() > bound).sum().item<int64_t>();
  };
  CHECK(beyond_one_rounding(once) == 0);  // the bound admits a correct rounding
  const auto rounded_once = [&](const at::Tensor& got) {
    CHECK(got.scalar_type() == dtype);
    CHECK(at::equal(got, once));
    CHECK(beyond_one_rounding(got) == 0);
  };

  SECTION("rdrop_loss: any grad_output") {
    const auto [v, g] = value_and_grad(x, [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z, y, o) * scale; });
    CHECK(v.item<double>() == Approx(fv.item<double>() * scale).epsilon(1e-6));
    CHECK(v.item<double>() == Approx(dv.item<double>() * scale).epsilon(1e-5));
    rounded_once(g);
    // Nothing flushed to 0 that one rounding keeps.
    const double smallest = dtype == at::kBFloat16 ? std::ldexp(1.0, -133) : std::ldexp(1.0, -24);
    CHECK((g.eq(0) & exact.abs().ge(smallest)).sum().item<int64_t>() == 0);
  }
  SECTION("a non-finite grad_output (a loss scaler's overflow step): the float gradient times it, rounded") {
    for (const double bad : {std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(),
                             std::numeric_limits<double>::quiet_NaN()}) {
      CAPTURE(bad);
      const auto [v, g] = value_and_grad(x, [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z, y, o) * bad; });
      const at::Tensor want = (fg * static_cast<float>(bad)).to(dtype);
      CHECK(at::equal(g.isnan(), want.isnan()));
      CHECK(at::equal(g.nan_to_num(0, 1, -1), want.nan_to_num(0, 1, -1)));  // ±inf and zeros where they are
      if (bad > 0) CHECK(g.isinf().sum().item<int64_t>() > 0);
    }
  }
  SECTION("rdrop_loss_: loss_scale announces the scale; another grad_output is refused") {
    rdrop::torch::RDropLossOptions scaled_o = o;
    scaled_o.loss_scale(scale);
    const at::Tensor leaf = x.clone().requires_grad_(true);
    const at::Tensor z = leaf * 1;
    (rdrop::torch::rdrop_loss_(z, y, scaled_o) * scale).backward();
    rounded_once(leaf.grad());

    const at::Tensor leaf2 = x.clone().requires_grad_(true);
    const at::Tensor z2 = leaf2 * 1;
    const at::Tensor wrong = rdrop::torch::rdrop_loss_(z2, y, o) * scale;  // loss_scale 1
    CHECK_THROWS_WITH(wrong.backward(), Catch::Contains("round it twice") && Catch::Contains("loss_scale"));
  }
}

TEST_CASE("In place refuses what torch's in-place ops refuse, leaving the logits untouched", "[torch][in_place]") {
  const int64_t b = 2, c = 5;
  const at::Tensor x = logits_of(2 * b, c, at::kFloat, 31);
  const at::Tensor y = torch::randint(0, c, {b}, torch::kLong);
  const at::Tensor targets = torch::rand({b, c});
  const auto refuses = [&](const at::Tensor& logits, const std::string& message) {
    const at::Tensor before = logits.detach().clone();
    CHECK_THROWS_WITH(rdrop::torch::rdrop_loss_(logits, y), Catch::Contains(message));
    CHECK_THROWS_WITH(rdrop::torch::multi_label_loss_(logits, targets), Catch::Contains(message));
    CHECK_THROWS_WITH(rdrop::torch::regression_loss_(logits, targets), Catch::Contains(message));
    CHECK(at::equal(logits.detach(), before));
    // torch's own in-place op refuses it too.
    CHECK_THROWS(logits.mul_(2));
  };
  SECTION("a leaf that requires grad") { refuses(x.clone().requires_grad_(true), "a leaf Variable that requires grad"); }
  SECTION("a view of a leaf that requires grad") {
    const at::Tensor leaf = x.clone().requires_grad_(true);
    refuses(leaf.view({2 * b, c}), "a view of a leaf Variable");
  }
  SECTION("one of several views returned by one op (chunk)") {
    const at::Tensor nonleaf = at::cat({x, x}).requires_grad_(true) * 1;
    refuses(nonleaf.chunk(2, 0)[0], "modified inplace");
  }
  SECTION("a view made in no-grad mode of a tensor that requires grad") {
    const at::Tensor nonleaf = x.clone().requires_grad_(true) * 1;
    at::Tensor view;
    {
      const torch::NoGradGuard no_grad;
      view = nonleaf.view({2 * b, c});
    }
    refuses(view, "no_grad mode");
  }
  SECTION("a loss_scale of 0 or infinity") {
    const at::Tensor z = x.clone().requires_grad_(true) * 1;
    const at::Tensor before = z.detach().clone();
    rdrop::torch::RDropLossOptions o;
    o.loss_scale(0);
    CHECK_THROWS_AS(rdrop::torch::rdrop_loss_(z, y, o), std::invalid_argument);
    o.loss_scale(std::numeric_limits<double>::infinity());
    CHECK_THROWS_WITH(rdrop::torch::rdrop_loss_(z, y, o), Catch::Contains("loss_scale"));
    CHECK(at::equal(z.detach(), before));
  }
  SECTION("float logits: a grad_output other than loss_scale rescales the gradient") {
    const auto [value, grad] = value_and_grad(x, [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z, y); });
    const at::Tensor leaf = x.clone().requires_grad_(true);
    (rdrop::torch::rdrop_loss_(leaf * 1, y) * 3.0).backward();
    CHECK(close(leaf.grad(), 3.0 * grad, 1e-6));
  }
}

TEST_CASE("Shapes are checked, not only counts; undefined tensors name the function and the argument; errors "
          "leave everything untouched",
          "[torch][errors]") {
  const int64_t b = 2, t = 3, c = 5;
  const at::Tensor x2 = torch::randn({2 * b, c});
  const at::Tensor x3 = torch::randn({2 * b, t, c});
  const auto invalid = [](auto&& f, const std::string& message) {
    CHECK_THROWS_AS(f(), std::invalid_argument);
    CHECK_THROWS_WITH(f(), Catch::Contains(message));
  };
  // A [B, 2] mask holds B·2 = 2B entries, but it is no per-row mask.
  invalid([&] { return rdrop::torch::rdrop_loss(x2, torch::zeros({b}, torch::kLong), {}, torch::ones({b, 2})); },
          "argument 'mask' has shape [2, 2]; expected [2] (one per sample) or [4] (one per row)");
  // [T, B] labels for [2B, T, C] logits.
  invalid([&] { return rdrop::torch::rdrop_loss(x3, torch::zeros({t, b}, torch::kLong)); },
          "argument 'labels' has shape [3, 2]; expected [2, 3] (one per sample) or [4, 3] (one per row)");
  // Flattened labels for a rank-3 batch.
  invalid([&] { return rdrop::torch::rdrop_loss(x3, torch::zeros({b * t}, torch::kLong)); }, "argument 'labels' has shape [6]");
  invalid([&] { return rdrop::torch::multi_label_loss(x2, torch::zeros({c, b})); }, "argument 'targets' has shape [5, 2]");
  invalid([&] { return rdrop::torch::regression_loss(x3, torch::zeros({b, c})); }, "argument 'targets' has shape [2, 5]");
  invalid([&] { return rdrop::torch::linear_loss(torch::randn({2 * b, 4}), torch::randn({c, 4}), at::Tensor(),
                                                 torch::zeros({2 * b, 1}, torch::kLong)); },
          "argument 'labels' has shape [4, 1]; expected [2] (one per sample) or [4] (one per row) for hidden");

  const at::Tensor undefined;
  const auto names = [](auto&& f, const std::string& function, const std::string& argument) {
    CHECK_THROWS_AS(f(), c10::Error);
    CHECK_THROWS_WITH(f(), Catch::Contains(function + ": argument '" + argument + "' is an undefined tensor"));
  };
  names([&] { return rdrop::torch::rdrop_loss(undefined, torch::zeros({b}, torch::kLong)); }, "rdrop::torch::rdrop_loss", "logits");
  names([&] { return rdrop::torch::rdrop_loss_(x2, undefined); }, "rdrop::torch::rdrop_loss_", "labels");
  names([&] { return rdrop::torch::multi_label_loss(x2, undefined); }, "rdrop::torch::multi_label_loss", "targets");
  names([&] { return rdrop::torch::regression_loss_(undefined, x2); }, "rdrop::torch::regression_loss_", "logits");
  names([&] { return rdrop::torch::linear_loss(torch::randn({4, 3}), undefined, at::Tensor(), torch::zeros({2}, torch::kLong)); },
        "rdrop::torch::linear_loss", "weight");
  names([&] { return rdrop::torch::linear_loss(torch::randn({4, 3}), torch::randn({5, 3}), at::Tensor(), undefined); },
        "rdrop::torch::linear_loss", "labels");

  SECTION("targets that require grad are refused (rdrop gives them no gradient)") {
    const at::Tensor logits = x2.clone().requires_grad_(true);
    CHECK_THROWS_WITH(rdrop::torch::regression_loss(logits, torch::rand({b, c}).requires_grad_(true)),
                      Catch::Contains("argument 'targets' requires grad"));
  }
  SECTION("an error in place leaves the logits and labels untouched") {
    const at::Tensor z = x2.clone().requires_grad_(true) * 1;
    const at::Tensor before = z.detach().clone();
    const at::Tensor bad = torch::tensor({0, 9}, torch::kLong);  // 9: out of range
    CHECK_THROWS_AS(rdrop::torch::rdrop_loss_(z, bad), std::invalid_argument);
    CHECK(at::equal(z.detach(), before));
    CHECK(at::equal(bad, torch::tensor({0, 9}, torch::kLong)));
  }
}

TEST_CASE("With grad mode off or nothing requiring grad, only the value is computed and the in-place variants "
          "leave the logits alone",
          "[torch][no_grad]") {
  const int64_t b = 3, c = 6;
  const at::Tensor x = logits_of(2 * b, c, at::kFloat, 41);
  const at::Tensor y = torch::randint(0, c, {b}, torch::kLong);
  const at::Tensor targets = torch::rand({b, c});
  const float want = rdrop::torch::rdrop_loss(x.clone().requires_grad_(true), y).item<float>();
  const auto untouched = [&](const at::Tensor& logits) {
    const at::Tensor before = logits.detach().clone();
    const at::Tensor loss = rdrop::torch::rdrop_loss_(logits, y);
    CHECK(loss.item<float>() == want);
    CHECK(!loss.requires_grad());
    CHECK(at::equal(logits.detach(), before));
    CHECK(!rdrop::torch::multi_label_loss_(logits, targets).requires_grad());
    CHECK(!rdrop::torch::regression_loss_(logits, targets).requires_grad());
    CHECK(at::equal(logits.detach(), before));
  };
  SECTION("NoGradGuard") {
    const torch::NoGradGuard no_grad;
    untouched(x.clone().requires_grad_(true));
    CHECK(!rdrop::torch::rdrop_loss(x.clone().requires_grad_(true), y).requires_grad());
    CHECK(!rdrop::torch::linear_loss(torch::randn({2 * b, 4}).requires_grad_(true), torch::randn({c, 4}), at::Tensor(), y)
               .requires_grad());
  }
  SECTION("InferenceMode") {
    const c10::InferenceMode inference;
    untouched(x.clone());
  }
  SECTION("logits that do not require grad") { untouched(x.clone()); }
  SECTION("the value-only linear_loss equals the training call's value") {
    const at::Tensor h = torch::randn({2 * b, 4}), w = torch::randn({c, 4}), bias = torch::randn({c});
    const float eval = rdrop::torch::linear_loss(h, w, bias, y).item<float>();
    const float train = rdrop::torch::linear_loss(h.clone().requires_grad_(true), w, bias, y).item<float>();
    CHECK(eval == train);
  }
}

TEST_CASE("Options in torch's style: each chained setter sets what it names, defaults are the Eigen API's",
          "[torch][options]") {
  using rdrop::torch::LinearLossTorchOptions;
  using rdrop::torch::RDropLossOptions;
  const RDropLossOptions defaults;
  const rdrop::RDropOptions<double> eigen;
  CHECK(defaults.alpha() == 1.0);
  CHECK(defaults.alpha() == eigen.alpha);
  CHECK(defaults.layout() == Layout::Interleaved);
  CHECK(defaults.normalization() == Normalization::KerasCode);
  CHECK(defaults.ignore_index() == -100);
  CHECK(defaults.padding_index() == rdrop::no_padding);
  CHECK(defaults.label_smoothing() == 0.0);
  CHECK(defaults.smoothing_style() == rdrop::SmoothingStyle::Uniform);
  CHECK(defaults.threads() == 0);
  CHECK(defaults.divergence() == Divergence::SymmetricKL);
  CHECK(defaults.loss_scale() == 1.0);
  // The Eigen API's chunk: 256 MiB, at most 512 pairs.
  CHECK(LinearLossTorchOptions().chunk_bytes() == (std::size_t(256) << 20));
  CHECK(LinearLossTorchOptions().chunk_pairs() == 512);
  CHECK(LinearLossTorchOptions().products() == rdrop::torch::Products::Auto);

  const auto o = RDropLossOptions()
                     .alpha(4)
                     .layout(Layout::Stacked)
                     .normalization(Normalization::Fairseq)
                     .ignore_index(-5)
                     .padding_index(0)
                     .label_smoothing(0.1)
                     .smoothing_style(rdrop::SmoothingStyle::ExcludeTarget)
                     .divergence(Divergence::KL)
                     .threads(2)
                     .loss_scale(8);
  CHECK(o.alpha() == 4.0);
  CHECK(o.layout() == Layout::Stacked);
  CHECK(o.normalization() == Normalization::Fairseq);
  CHECK(o.ignore_index() == -5);
  CHECK(o.padding_index() == 0);
  CHECK(o.label_smoothing() == 0.1);
  CHECK(o.smoothing_style() == rdrop::SmoothingStyle::ExcludeTarget);
  CHECK(o.divergence() == Divergence::KL);
  CHECK(o.threads() == 2);
  CHECK(o.loss_scale() == 8.0);

  // The derived class's own setting anywhere in a chain.
  const auto lo =
      LinearLossTorchOptions().chunk_bytes(1 << 20).alpha(2).layout(Layout::Stacked).chunk_bytes(1 << 16).chunk_pairs(9);
  CHECK(lo.chunk_bytes() == (1u << 16));
  CHECK(lo.chunk_pairs() == 9);
  CHECK(lo.alpha() == 2.0);
  const LinearLossTorchOptions from_rdrop = o;
  CHECK(from_rdrop.alpha() == 4.0);
  CHECK(from_rdrop.divergence() == Divergence::KL);
  CHECK(from_rdrop.padding_index() == 0);
  CHECK(from_rdrop.smoothing_style() == rdrop::SmoothingStyle::ExcludeTarget);
  CHECK(from_rdrop.chunk_bytes() == LinearLossTorchOptions().chunk_bytes());

  // From the Eigen API's options, every field carried over.
  rdrop::RDropOptions<double> e;
  e.alpha = 3;
  e.layout = Layout::Stacked;
  e.normalization = Normalization::Sum;
  e.ignore_index = 7;
  e.padding_index = 2;
  e.label_smoothing = 0.2;
  e.smoothing_style = rdrop::SmoothingStyle::ExcludeTarget;
  e.threads = 3;
  const RDropLossOptions from_eigen = e;
  CHECK(from_eigen.alpha() == 3.0);
  CHECK(from_eigen.layout() == Layout::Stacked);
  CHECK(from_eigen.normalization() == Normalization::Sum);
  CHECK(from_eigen.ignore_index() == 7);
  CHECK(from_eigen.padding_index() == 2);
  CHECK(from_eigen.label_smoothing() == 0.2);
  CHECK(from_eigen.smoothing_style() == rdrop::SmoothingStyle::ExcludeTarget);
  CHECK(from_eigen.threads() == 3);
  rdrop::MultiLabelOptions<double> m;
  m.alpha = 0.25;
  m.normalization = Normalization::Mean;
  const rdrop::torch::MultiLabelLossOptions from_multi = m;
  CHECK(from_multi.alpha() == 0.25);
  CHECK(from_multi.normalization() == Normalization::Mean);
  const auto r = rdrop::torch::RegressionLossOptions().alpha(0.5).layout(Layout::Stacked);
  CHECK(r.alpha() == 0.5);
  CHECK(r.layout() == Layout::Stacked);

  // Assigned through the reference accessor, as TORCH_ARG's.
  RDropLossOptions assigned;
  assigned.alpha() = 2.5;
  assigned.divergence() = Divergence::JensenShannon;
  CHECK(assigned.alpha() == 2.5);
  CHECK(assigned.divergence() == Divergence::JensenShannon);
}

TEST_CASE("The module RDropLoss is rdrop_loss: value and gradient against torch's composition", "[torch][modules]") {
  torch::manual_seed(11);
  const int64_t b = 5, c = 7;
  const auto o = rdrop::torch::RDropLossOptions().alpha(0.7).layout(Layout::Stacked).label_smoothing(0.1);
  rdrop::torch::RDropLoss criterion(o);
  CHECK(criterion->options.alpha() == 0.7);
  CHECK(criterion->parameters().empty());
  const at::Tensor logits = torch::randn({2 * b, c}, torch::kDouble);
  const at::Tensor y = torch::randint(0, c, {b}, torch::kLong);
  const at::Tensor x1 = logits.clone().requires_grad_(true), x2 = logits.clone().requires_grad_(true);
  const at::Tensor got = criterion(x1, y);
  const at::Tensor want = torch_rdrop(x2, y, o);
  got.backward();
  want.backward();
  CHECK(close(got.detach(), want.detach(), 1e-12));
  CHECK(close(x1.grad(), x2.grad(), 1e-12));
  // With a mask: the function's value.
  const at::Tensor mask = torch::tensor({1, 0, 1, 1, 0}, torch::kBool);
  CHECK(close(criterion(logits, y, mask), rdrop::torch::rdrop_loss(logits, y, o, mask), 0));
  std::ostringstream printed;
  printed << *criterion;
  CHECK(printed.str() == "rdrop::torch::RDropLoss(alpha=0.7)");
  // In AnyModule and Sequential, with and without the mask.
  torch::nn::AnyModule any(criterion);
  CHECK(close(any.forward(logits, y), rdrop::torch::rdrop_loss(logits, y, o), 0));
  CHECK(close(any.forward(logits, y, mask), rdrop::torch::rdrop_loss(logits, y, o, mask), 0));
  torch::nn::Sequential sequential(criterion);
  CHECK(close(sequential->forward(logits, y), rdrop::torch::rdrop_loss(logits, y, o), 0));
}

TEST_CASE("The module RDropLinearLoss holds its layer as parameters: initialized as torch::nn::Linear, trained by an "
          "optimizer, saved and loaded, its loss linear_loss's",
          "[torch][modules]") {
  const int64_t b = 4, d = 6, v = 11;
  const auto loss_options = rdrop::torch::LinearLossTorchOptions().alpha(1.5).layout(Layout::Stacked);
  torch::manual_seed(5);
  rdrop::torch::RDropLinearLoss head(rdrop::torch::RDropLinearLossOptions(d, v).loss(loss_options));
  torch::manual_seed(5);
  torch::nn::Linear linear(d, v);

  SECTION("parameters named and initialized as torch::nn::Linear's") {
    const auto params = head->named_parameters();
    REQUIRE(params.size() == 2);
    REQUIRE(params.contains("weight"));
    REQUIRE(params.contains("bias"));
    CHECK(params["weight"].sizes() == at::IntArrayRef({v, d}));
    CHECK(params["bias"].sizes() == at::IntArrayRef({v}));
    CHECK(at::equal(head->weight, linear->weight));
    CHECK(at::equal(head->bias, linear->bias));
    std::ostringstream printed;
    printed << *head;
    CHECK(printed.str() == "rdrop::torch::RDropLinearLoss(in_features=6, out_features=11, bias=true, alpha=1.5)");
  }
  SECTION("the loss and its gradients are linear_loss's and torch's composition's; logits() is the layer") {
    const at::Tensor hidden = torch::randn({2 * b, d});
    const at::Tensor y = torch::randint(0, v, {b}, torch::kLong);
    const at::Tensor h1 = hidden.clone().requires_grad_(true), h2 = hidden.clone().requires_grad_(true);
    const at::Tensor got = head(h1, y);
    const at::Tensor want = torch_rdrop(linear(h2), y, loss_options);
    got.backward();
    want.backward();
    CHECK(close(got.detach(), want.detach(), 1e-5));
    CHECK(close(h1.grad(), h2.grad(), 1e-5));
    CHECK(close(head->weight.grad(), linear->weight.grad(), 1e-5));
    CHECK(close(head->bias.grad(), linear->bias.grad(), 1e-5));
    CHECK(close(head->logits(hidden), linear(hidden).detach(), 0));
    // An optimizer sees and moves the parameters.
    const at::Tensor before = head->weight.detach().clone();
    torch::optim::SGD sgd(head->parameters(), torch::optim::SGDOptions(0.5));
    sgd.step();
    CHECK(close(head->weight.detach(), before - 0.5 * linear->weight.grad(), 1e-5));
  }
  SECTION("saved and loaded with torch::save and torch::load; cloned deeply; converted by to()") {
    std::stringstream stream;
    torch::save(head, stream);
    rdrop::torch::RDropLinearLoss loaded(rdrop::torch::RDropLinearLossOptions(d, v));
    CHECK_FALSE(at::equal(loaded->weight, head->weight));
    torch::load(loaded, stream);
    CHECK(at::equal(loaded->weight, head->weight));
    CHECK(at::equal(loaded->bias, head->bias));
    const auto copy = std::dynamic_pointer_cast<rdrop::torch::RDropLinearLossImpl>(head->clone());
    REQUIRE(copy);
    CHECK(at::equal(copy->weight, head->weight));
    CHECK(copy->weight.data_ptr() != head->weight.data_ptr());
    CHECK(copy->options.loss().alpha() == 1.5);
    head->to(torch::kDouble);
    CHECK(head->weight.scalar_type() == torch::kDouble);
    const at::Tensor value = head(torch::randn({2 * b, d}, torch::kDouble), torch::randint(0, v, {b}, torch::kLong));
    CHECK(value.scalar_type() == torch::kDouble);
  }
  SECTION("without a bias: one parameter, the loss of hidden·weightᵀ") {
    rdrop::torch::RDropLinearLoss bare(rdrop::torch::RDropLinearLossOptions(d, v).bias(false).loss(loss_options));
    CHECK(bare->named_parameters().size() == 1);
    CHECK_FALSE(bare->bias.defined());
    const at::Tensor hidden = torch::randn({2 * b, d});
    const at::Tensor y = torch::randint(0, v, {b}, torch::kLong);
    CHECK(close(bare(hidden, y), torch_rdrop(at::matmul(hidden, bare->weight.detach().t()), y, loss_options), 1e-5));
  }
  SECTION("made as torch::nn::Linear(in, out); its loss settings changed in place; in AnyModule") {
    rdrop::torch::RDropLinearLoss plain(d, v);
    CHECK(plain->weight.sizes() == at::IntArrayRef({v, d}));
    CHECK(plain->bias.defined());
    CHECK(plain->options.loss().alpha() == 1.0);
    plain->options.loss().alpha(3).layout(Layout::Stacked);
    const at::Tensor hidden = torch::randn({2 * b, d});
    const at::Tensor y = torch::randint(0, v, {b}, torch::kLong);
    const auto want = rdrop::torch::linear_loss(hidden, plain->weight, plain->bias, y,
                                                rdrop::torch::LinearLossTorchOptions().alpha(3).layout(Layout::Stacked));
    CHECK(close(plain(hidden, y), want, 0));
    torch::nn::AnyModule any(plain);
    CHECK(close(any.forward(hidden, y), want, 0));
  }
  SECTION("sizes below 1 are refused") {
    CHECK_THROWS_WITH(rdrop::torch::RDropLinearLoss(rdrop::torch::RDropLinearLossOptions(0, v)),
                      Catch::Contains("in_features 0 and out_features 11; expected both"));
    CHECK_THROWS_AS(rdrop::torch::RDropLinearLoss(rdrop::torch::RDropLinearLossOptions(d, -1)), std::invalid_argument);
  }
}

TEST_CASE("The ATen path (Path::ATen on CPU tensors) equals the fused kernels: every layout, normalization, "
          "divergence, smoothing style, padding, ignore label and mask",
          "[torch][aten]") {
  const int64_t b = 4, t = 3, c = 7;
  int trial = 0;
  for (const auto dtype : {at::kDouble, at::kFloat, at::kBFloat16}) {
    for (const Layout layout : {Layout::Interleaved, Layout::Stacked}) {
      for (const Normalization norm : {Normalization::Paper, Normalization::KerasCode, Normalization::PyTorchReadme,
                                       Normalization::Sum, Normalization::Mean, Normalization::Fairseq}) {
        for (const Divergence divergence : {Divergence::SymmetricKL, Divergence::KL, Divergence::JensenShannon}) {
          for (const auto style : {rdrop::SmoothingStyle::Uniform, rdrop::SmoothingStyle::ExcludeTarget}) {
            for (const bool sequence : {false, true}) {
              ++trial;
              torch::manual_seed(static_cast<uint64_t>(trial));
              const at::Tensor logits =
                  (sequence ? logits_of(2 * b * t, c, at::kDouble, static_cast<uint64_t>(trial)).reshape({2 * b, t, c})
                            : logits_of(2 * b, c, at::kDouble, static_cast<uint64_t>(trial)))
                      .to(dtype);
              const std::vector<int64_t> shape = sequence ? std::vector<int64_t>{b, t} : std::vector<int64_t>{b};
              at::Tensor y = torch::randint(0, c, shape, torch::kLong);
              y.view({-1})[0] = -100;  // an unlabeled sample: divergence only
              if (sequence) y.view({-1})[1] = 0;  // padding (index 0 below)
              const at::Tensor mask = torch::rand(shape).gt(0.2);
              const auto options = rdrop::torch::RDropLossOptions()
                                       .layout(layout)
                                       .normalization(norm)
                                       .divergence(divergence)
                                       .smoothing_style(style)
                                       .label_smoothing(0.1)
                                       .alpha(0.7)
                                       .padding_index(sequence ? 0 : rdrop::no_padding);
              const auto run = [&](rdrop::torch::Path path) {
                const at::Tensor x = logits.clone().requires_grad_(true);
                const at::Tensor value = rdrop::torch::rdrop_loss(x, y, rdrop::torch::RDropLossOptions(options).path(path), mask);
                value.backward();
                return std::make_pair(value.detach(), x.grad());
              };
              const auto fused = run(rdrop::torch::Path::Fused), aten = run(rdrop::torch::Path::ATen);
              const double tol = dtype == at::kDouble ? 1e-12 : dtype == at::kFloat ? 1e-5 : 1e-2;
              INFO("trial " << trial << " dtype " << dtype << " layout " << static_cast<int>(layout) << " norm "
                            << static_cast<int>(norm) << " divergence " << static_cast<int>(divergence) << " style "
                            << static_cast<int>(style) << " sequence " << sequence);
              CHECK(close(aten.first, fused.first, tol));
              CHECK(close(aten.second, fused.second, tol));
            }
          }
        }
      }
    }
  }
}

TEST_CASE("The ATen path of multi_label_loss and regression_loss equals the fused kernels", "[torch][aten]") {
  const int64_t b = 4, t = 3, k = 5;
  int trial = 0;
  for (const auto dtype : {at::kDouble, at::kFloat, at::kBFloat16}) {
    for (const Layout layout : {Layout::Interleaved, Layout::Stacked}) {
      for (const Normalization norm : {Normalization::Paper, Normalization::KerasCode, Normalization::PyTorchReadme,
                                       Normalization::Sum, Normalization::Mean, Normalization::Fairseq}) {
        for (const bool sequence : {false, true}) {
          for (const bool per_row : {false, true}) {
            ++trial;
            torch::manual_seed(static_cast<uint64_t>(100 + trial));
            const std::vector<int64_t> shape =
                sequence ? std::vector<int64_t>{2 * b, t, k} : std::vector<int64_t>{2 * b, k};
            const at::Tensor logits = (3 * torch::randn(shape, torch::kDouble)).to(dtype);
            std::vector<int64_t> target_shape = shape;
            if (!per_row) target_shape[0] = b;
            const at::Tensor targets = torch::rand(target_shape, torch::kDouble);
            std::vector<int64_t> mask_shape = sequence ? std::vector<int64_t>{target_shape[0], t}
                                                       : std::vector<int64_t>{target_shape[0]};
            const at::Tensor mask = torch::rand(mask_shape).gt(0.25);
            INFO("trial " << trial << " dtype " << dtype);
            const double tol = dtype == at::kDouble ? 1e-12 : dtype == at::kFloat ? 1e-5 : 1e-2;
            for (const bool multi_label : {true, false}) {
              const auto run = [&](rdrop::torch::Path path) {
                const at::Tensor x = logits.clone().requires_grad_(true);
                const at::Tensor value =
                    multi_label
                        ? rdrop::torch::multi_label_loss(
                              x, targets,
                              rdrop::torch::MultiLabelLossOptions().alpha(0.6).layout(layout).normalization(norm).path(path),
                              mask)
                        : rdrop::torch::regression_loss(
                              x, targets,
                              rdrop::torch::RegressionLossOptions().alpha(0.6).layout(layout).normalization(norm).path(path),
                              mask);
                value.backward();
                return std::make_pair(value.detach(), x.grad());
              };
              const auto fused = run(rdrop::torch::Path::Fused), aten = run(rdrop::torch::Path::ATen);
              CHECK(close(aten.first, fused.first, tol));
              CHECK(close(aten.second, fused.second, tol));
            }
          }
        }
      }
    }
  }
}

TEST_CASE("The ATen path of linear_loss, a chunk of pairs at a time, equals the fused kernels", "[torch][aten]") {
  const int64_t b = 5, t = 3, d = 6, v = 11;
  int trial = 0;
  for (const auto dtype : {at::kDouble, at::kFloat}) {
    for (const Layout layout : {Layout::Interleaved, Layout::Stacked}) {
      for (const Normalization norm : {Normalization::KerasCode, Normalization::Fairseq, Normalization::Sum}) {
        for (const Divergence divergence : {Divergence::SymmetricKL, Divergence::KL, Divergence::JensenShannon}) {
          for (const bool sequence : {false, true}) {
            for (const std::size_t chunk_bytes : {std::size_t(1), std::size_t(3000), std::size_t(64) << 20}) {
              for (const bool with_bias : {true, false}) {
                ++trial;
                torch::manual_seed(static_cast<uint64_t>(200 + trial));
                const at::Tensor hidden =
                    torch::randn(sequence ? std::vector<int64_t>{2 * b, t, d} : std::vector<int64_t>{2 * b, d}).to(dtype);
                const at::Tensor weight = torch::randn({v, d}).to(dtype), bias = torch::randn({v}).to(dtype);
                at::Tensor y = torch::randint(0, v, sequence ? std::vector<int64_t>{b, t} : std::vector<int64_t>{b},
                                              torch::kLong);
                y.view({-1})[0] = -100;
                if (sequence) y.view({-1})[1] = 0;
                const at::Tensor mask = torch::rand(y.sizes()).gt(0.2);
                const auto options = rdrop::torch::LinearLossTorchOptions()
                                         .layout(layout)
                                         .normalization(norm)
                                         .divergence(divergence)
                                         .label_smoothing(0.1)
                                         .alpha(1.3)
                                         .padding_index(sequence ? 0 : rdrop::no_padding)
                                         .chunk_bytes(chunk_bytes)
                                         // the large budget's chunks cut by chunk_pairs
                                         .chunk_pairs(chunk_bytes > 3000 ? 4 : 512);
                const auto run = [&](rdrop::torch::Path path) {
                  const at::Tensor h = hidden.clone().requires_grad_(true), w = weight.clone().requires_grad_(true),
                                   bb = bias.clone().requires_grad_(true);
                  const at::Tensor value = rdrop::torch::linear_loss(
                      h, w, with_bias ? bb : at::Tensor(), y, rdrop::torch::LinearLossTorchOptions(options).path(path), mask);
                  value.backward();
                  return std::vector<at::Tensor>{value.detach(), h.grad(), w.grad(),
                                                 with_bias ? bb.grad() : at::zeros({1}, dtype)};
                };
                const auto fused = run(rdrop::torch::Path::Fused), aten = run(rdrop::torch::Path::ATen);
                INFO("trial " << trial);
                const double tol = dtype == at::kDouble ? 1e-12 : 1e-5;
                for (std::size_t i = 0; i < fused.size(); ++i) CHECK(close(aten[i], fused[i], tol));
                // The fused path's two kinds of products: Eigen's, and ATen's
                // with the fused kernels between them.
                const auto other = options.products() == rdrop::torch::Products::Eigen ? rdrop::torch::Products::ATen
                                                                                        : rdrop::torch::Products::Eigen;
                const auto with_eigen = [&](rdrop::torch::Products products) {
                  const at::Tensor h = hidden.clone().requires_grad_(true), w = weight.clone().requires_grad_(true);
                  const at::Tensor value = rdrop::torch::linear_loss(
                      h, w, with_bias ? bias : at::Tensor(), y,
                      rdrop::torch::LinearLossTorchOptions(options).path(rdrop::torch::Path::Fused).products(products), mask);
                  value.backward();
                  return std::vector<at::Tensor>{value.detach(), h.grad(), w.grad()};
                };
                const auto eigen = with_eigen(rdrop::torch::Products::Eigen), aten_products = with_eigen(other);
                for (std::size_t i = 0; i < eigen.size(); ++i) {
                  CHECK(close(eigen[i], fused[i], tol));
                  CHECK(close(aten_products[i], fused[i], tol));
                }
              }
            }
          }
        }
      }
    }
  }
}

TEST_CASE("A class ruled out by a -inf bias: the ATen path's guarded sweep, a few rows at a time, equals the "
          "fused kernels and torch's composition",
          "[torch][aten][edge]") {
  // Its logits are -inf in every row, so every chunk leaves the ATen path's
  // finite sweep for the guarded one, which works through the chunk's rows
  // in blocks: 40 pairs make blocks of several rows.
  const int64_t b = 8, t = 5, d = 6, v = 9;
  const auto dtype = GENERATE(at::kDouble, at::kFloat);
  const Divergence divergence = GENERATE(Divergence::SymmetricKL, Divergence::KL, Divergence::JensenShannon);
  const std::size_t chunk_bytes = GENERATE(std::size_t(4000), std::size_t(64) << 20);
  torch::manual_seed(93);
  const at::Tensor hidden = torch::randn({2 * b, t, d}).to(dtype), weight = torch::randn({v, d}).to(dtype);
  at::Tensor bias = torch::randn({v}).to(dtype);
  bias[4] = -std::numeric_limits<double>::infinity();
  at::Tensor y = torch::randint(0, 4, {b, t}, torch::kLong);  // never the ruled-out class
  y[0][0] = -100;
  const auto options = rdrop::torch::LinearLossTorchOptions()
                           .layout(Layout::Stacked)
                           .normalization(Normalization::Sum)
                           .divergence(divergence)
                           .alpha(2.5)
                           .chunk_bytes(chunk_bytes);
  const auto run = [&](const std::function<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)>& loss) {
    const at::Tensor h = hidden.clone().requires_grad_(true), w = weight.clone().requires_grad_(true),
                     bb = bias.clone().requires_grad_(true);
    const at::Tensor value = loss(h, w, bb);
    value.backward();
    return std::vector<at::Tensor>{value.detach(), h.grad(), w.grad(), bb.grad()};
  };
  const auto with_path = [&](rdrop::torch::Path path) {
    return run([&](const at::Tensor& h, const at::Tensor& w, const at::Tensor& bb) {
      return rdrop::torch::linear_loss(h, w, bb, y, rdrop::torch::LinearLossTorchOptions(options).path(path));
    });
  };
  const auto fused = with_path(rdrop::torch::Path::Fused), aten = with_path(rdrop::torch::Path::ATen);
  // torch's own ops give NaN here (kl_div's 0 · (-inf - -inf)): its
  // reference is the same loss without the ruled-out class, whose softmax
  // share is exactly 0; autograd gives its weight row and bias 0.
  const at::Tensor kept = torch::tensor({0, 1, 2, 3, 5, 6, 7, 8}, torch::kLong);
  const auto composition = run([&](const at::Tensor& h, const at::Tensor& w, const at::Tensor& bb) {
    const at::Tensor logits = at::linear(h, w.index_select(0, kept), bb.index_select(0, kept));
    return torch_rdrop(logits.reshape({-1, v - 1}), y.reshape({-1}),
                       rdrop::torch::RDropLossOptions()
                           .layout(Layout::Stacked)
                           .normalization(Normalization::Sum)
                           .divergence(divergence)
                           .alpha(2.5));
  });
  const double tol = dtype == at::kDouble ? 1e-12 : 1e-5;
  for (std::size_t i = 0; i < fused.size(); ++i) {
    INFO("output " << i);
    CHECK(at::isfinite(aten[i]).all().item<bool>());
    CHECK(close(aten[i], fused[i], tol));
    CHECK(close(aten[i], composition[i], tol));
  }
  CHECK(aten[3][4].item<double>() == 0);  // nothing flows to the ruled-out class
}

TEST_CASE("2-byte linear_loss: bfloat16 and half hidden states and weights, products in that dtype, the loss in "
          "float, gradients in the inputs' dtype, near the float loss of the same values",
          "[torch][two_byte]") {
  const int64_t b = 6, t = 4, d = 24, v = 37;
  const auto dtype = GENERATE(at::kBFloat16, at::kHalf);
  const auto path = GENERATE(rdrop::torch::Path::Fused, rdrop::torch::Path::ATen);
  const bool with_bias = GENERATE(true, false);
  torch::manual_seed(71);
  // The 2-byte values, and the same values in float for the reference.
  const at::Tensor hidden = torch::randn({2 * b, t, d}).to(dtype), weight = (0.3 * torch::randn({v, d})).to(dtype);
  const at::Tensor bias = torch::randn({v}).to(dtype);
  at::Tensor y = torch::randint(1, v, {b, t}, torch::kLong);
  y.view({-1})[2] = 0;  // padding
  const auto options = rdrop::torch::LinearLossTorchOptions()
                           .alpha(2)
                           .label_smoothing(0.1)
                           .padding_index(0)
                           .normalization(Normalization::Fairseq)
                           .chunk_bytes(20000)
                           .chunk_pairs(5)  // several chunks on every path, the last one narrower
                           .path(path);
  const auto run = [&](at::ScalarType type, double grad_output, double loss_scale) {
    // Fresh leaves each run (to() of the same dtype returns the tensor itself).
    const at::Tensor h = hidden.to(type).clone().requires_grad_(true), w = weight.to(type).clone().requires_grad_(true);
    const at::Tensor bb = bias.to(type).clone().requires_grad_(true);
    const at::Tensor value = rdrop::torch::linear_loss(h, w, with_bias ? bb : at::Tensor(), y,
                                                       rdrop::torch::LinearLossTorchOptions(options).loss_scale(loss_scale));
    value.backward(torch::full({}, grad_output, value.options()));
    return std::vector<at::Tensor>{value.detach(), h.grad(), w.grad(), with_bias ? bb.grad() : at::zeros({1}, type)};
  };
  const auto reference = run(at::kFloat, 1, 1);
  const double tol = dtype == at::kBFloat16 ? 2e-2 : 4e-3;
  INFO(c10::toString(dtype) << (path == rdrop::torch::Path::ATen ? ", ATen path" : ", fused path")
                            << (with_bias ? ", bias" : ", no bias"));
  SECTION("value and gradients at scale 1, in the inputs' dtype (the value in float)") {
    const auto got = run(dtype, 1, 1);
    CHECK(got[0].scalar_type() == at::kFloat);
    for (std::size_t i = 1; i < got.size(); ++i) CHECK(got[i].scalar_type() == dtype);
    for (std::size_t i = 0; i < got.size(); ++i) {
      INFO("output " << i);
      CHECK(close(got[i], reference[i], tol));
    }
  }
  SECTION("under loss scaling: made at loss_scale in the forward, or again at grad_output's scale when it differs; "
          "the same gradients either way") {
    const double s = 4096;
    const auto hinted = run(dtype, s, s), unhinted = run(dtype, s, 1);
    for (std::size_t i = 1; i < hinted.size(); ++i) {
      INFO("gradient " << i);
      CHECK(at::equal(hinted[i], unhinted[i]));
      CHECK(close(hinted[i].to(at::kDouble) / s, reference[i], tol));
    }
  }
  SECTION("views: hidden states expanded from one position (stride 0) and overlapping, a transposed weight, read as "
          "the values they show") {
    const at::Tensor buffer = torch::randn({2 * b * t + d}).to(dtype), wt = weight.t().contiguous();
    const auto grads_of = [&](bool contiguous) {
      const at::Tensor base = buffer.clone().requires_grad_(true), w_base = wt.clone().requires_grad_(true);
      at::Tensor overlapping = base.unfold(0, d, 1).narrow(0, 0, 2 * b * t).view({2 * b, t, d});  // rows one apart
      at::Tensor w = w_base.t();
      if (contiguous) {
        overlapping = overlapping.contiguous();
        w = w.contiguous();
      }
      const at::Tensor value = rdrop::torch::linear_loss(overlapping, w, {}, y, options);
      value.backward();
      return std::vector<at::Tensor>{value.detach(), base.grad(), w_base.grad()};
    };
    const auto view = grads_of(false), copy = grads_of(true);
    for (std::size_t i = 0; i < view.size(); ++i) CHECK(at::equal(view[i], copy[i]));
    const at::Tensor one = hidden[0][0].clone().requires_grad_(true);
    const at::Tensor expanded = rdrop::torch::linear_loss(one.expand({2 * b, t, d}), weight, {}, y, options);
    const at::Tensor copied = rdrop::torch::linear_loss(one.expand({2 * b, t, d}).contiguous(), weight, {}, y, options);
    CHECK(at::equal(expanded, copied));
  }
  SECTION("differentiating through the backward raises") {
    const at::Tensor h = hidden.clone().requires_grad_(true);
    const at::Tensor value = rdrop::torch::linear_loss(h, weight, {}, y, options);
    const at::Tensor g = torch::autograd::grad({value}, {h}, {}, /*retain_graph=*/true, /*create_graph=*/true)[0];
    CHECK(g.scalar_type() == dtype);
    CHECK_THROWS_WITH(g.to(at::kFloat).sum().backward(), Catch::Contains("not differentiable"));
  }
}

TEST_CASE("2-byte linear_loss at the edges: a class ruled out by a -inf bias, logits near 1e4, an empty batch; "
          "the fused path (2-byte logits read and written by the kernels) against the ATen path (float logits)",
          "[torch][two_byte][edge]") {
  const int64_t b = 5, d = 8, v = 11, ruled_out = 4;
  const auto dtype = GENERATE(at::kBFloat16, at::kHalf);
  const double size = GENERATE(1.0, 1e3);  // at 1e3 the logits reach about 1e4
  torch::manual_seed(73);
  const at::Tensor hidden = torch::randn({2 * b, d}).to(dtype), weight = (size * torch::randn({v, d})).to(dtype);
  at::Tensor bias = torch::zeros({v});
  bias[ruled_out] = -std::numeric_limits<float>::infinity();
  bias = bias.to(dtype);
  at::Tensor y = torch::randint(0, v, {b}, torch::kLong);
  y = at::where(y == ruled_out, at::zeros_like(y), y);
  const auto options = rdrop::torch::LinearLossTorchOptions().alpha(1.5).chunk_pairs(2);  // chunks of 2, 2 and 1
  const auto run = [&](const at::Tensor& h0, const at::Tensor& labels, rdrop::torch::Path path) {
    const at::Tensor h = h0.clone().requires_grad_(true), w = weight.clone().requires_grad_(true),
                     bb = bias.clone().requires_grad_(true);
    const at::Tensor value = rdrop::torch::linear_loss(h, w, bb, labels, rdrop::torch::LinearLossTorchOptions(options).path(path));
    value.backward();
    return std::vector<at::Tensor>{value.detach(), h.grad(), w.grad(), bb.grad()};
  };
  INFO(c10::toString(dtype) << ", weight × " << size);
  const auto fused = run(hidden, y, rdrop::torch::Path::Fused), aten = run(hidden, y, rdrop::torch::Path::ATen);
  const double tol = dtype == at::kBFloat16 ? 2e-2 : 4e-3;
  for (std::size_t i = 0; i < fused.size(); ++i) {
    INFO("output " << i);
    CHECK(at::isfinite(fused[i]).all().item<bool>());
    CHECK(close(fused[i], aten[i], tol));
  }
  CHECK(fused[3][ruled_out].item<double>() == 0);  // nothing flows to the ruled-out class
  CHECK(fused[2][ruled_out].abs().max().item<double>() == 0);
  SECTION("value only: with grad mode off both paths give the value they give with gradients") {
    const torch::NoGradGuard no_grad;
    for (const auto& [path, expected] : {std::pair(rdrop::torch::Path::Fused, fused[0]), std::pair(rdrop::torch::Path::ATen, aten[0])}) {
      const at::Tensor value =
          rdrop::torch::linear_loss(hidden, weight, bias, y, rdrop::torch::LinearLossTorchOptions(options).path(path));
      CHECK_FALSE(value.requires_grad());
      CHECK(close(value, expected, 1e-6));
    }
  }
  SECTION("an empty batch: loss 0, empty and zero gradients, on both paths") {
    for (const auto path : {rdrop::torch::Path::Fused, rdrop::torch::Path::ATen}) {
      const auto empty = run(hidden.narrow(0, 0, 0), y.narrow(0, 0, 0), path);
      CHECK(empty[0].item<double>() == 0);
      CHECK(empty[1].numel() == 0);
      CHECK(empty[2].abs().max().item<double>() == 0);
      CHECK(empty[3].abs().max().item<double>() == 0);
    }
  }
}

TEST_CASE("linear_loss: a masked or padding row's hidden state never reaches the products, on every path and with "
          "either products (NaN there once made ∂W NaN)",
          "[torch][linear][mask]") {
  const auto dtype = GENERATE(at::kFloat, at::kDouble);
  const double junk = GENERATE(std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity());
  const int64_t b = 4, d = 3, v = 7, pad = 6;
  torch::manual_seed(91);
  const at::Tensor hidden = torch::randn({2 * b, d}, dtype), weight = torch::randn({v, d}, dtype),
                   bias = torch::randn({v}, dtype);
  const at::Tensor y = torch::randint(0, v - 1, {b}, torch::kLong);
  using rdrop::torch::Path;
  using rdrop::torch::Products;
  const auto run = [&](const at::Tensor& h0, const at::Tensor& labels, const at::Tensor& mask,
                       const rdrop::torch::LinearLossTorchOptions& o) {
    const at::Tensor h = h0.clone().requires_grad_(true), w = weight.clone().requires_grad_(true),
                     bb = bias.clone().requires_grad_(true);
    const at::Tensor value = rdrop::torch::linear_loss(h, w, bb, labels, o, mask);
    value.backward();
    return std::vector<at::Tensor>{value.detach(), h.grad(), w.grad(), bb.grad()};
  };
  // Interleaved rows 2k, 2k + 1: pair 2 is rows 4 and 5.
  at::Tensor dirty = hidden.clone();
  dirty[4].fill_(junk);
  dirty[5].fill_(junk);
  const at::Tensor kept = torch::tensor({0, 1, 3}, torch::kLong);
  const at::Tensor without = hidden.view({b, 2, d}).index_select(0, kept).reshape({-1, d});
  const auto settings = {std::pair(Path::Fused, Products::ATen), std::pair(Path::Fused, Products::Eigen),
                         std::pair(Path::ATen, Products::Auto)};
  for (const auto& [path, products] : settings) {
    const auto o = rdrop::torch::LinearLossTorchOptions().alpha(2).padding_index(pad).path(path).products(products);
    INFO(c10::toString(dtype) << ", junk " << junk << ", path " << static_cast<int>(path) << ", products "
                              << static_cast<int>(products));
    const auto left_out = run(without, y.index_select(0, kept), at::Tensor(), o);
    const double tol = dtype == at::kFloat ? 1e-5 : 1e-12;
    at::Tensor padded = y.clone();
    padded[2] = pad;
    // A loop, not SECTIONs: Catch2 runs a SECTION met again in a loop once.
    for (const bool by_mask : {true, false}) {
      INFO((by_mask ? "a per-sample mask" : "padding labels"));
      const auto got = by_mask ? run(dirty, y, torch::tensor({1, 1, 0, 1}), o) : run(dirty, padded, at::Tensor(), o);
      CHECK(close(got[0], left_out[0], tol));
      CHECK(close(got[2], left_out[2], tol));
      CHECK(close(got[3], left_out[3], tol));
      CHECK(close(got[1].view({b, 2, d}).index_select(0, kept), left_out[1].view({-1, 2, d}), tol));
      CHECK(got[1].narrow(0, 4, 2).abs().max().item<double>() == 0);
    }
  }
}

TEST_CASE("linear_loss refuses a loss_scale that is zero, not finite or beyond float, and both paths refuse a "
          "Divergence that names no enumerator",
          "[torch][linear][errors]") {
  const at::Tensor h = torch::randn({4, 3}).requires_grad_(true), w = torch::randn({5, 3});
  const at::Tensor y = torch::tensor({1, 4}, torch::kLong);
  for (const double bad : {0.0, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(), 1e40}) {
    INFO("loss_scale " << bad);
    for (const auto dtype : {at::kFloat, at::kBFloat16}) {
      CHECK_THROWS_WITH(rdrop::torch::linear_loss(h.to(dtype), w.to(dtype), {}, y,
                                                  rdrop::torch::LinearLossTorchOptions().loss_scale(bad)),
                        Catch::Contains("rdrop::torch::linear_loss: argument 'loss_scale' is"));
    }
  }
  const auto unknown = static_cast<rdrop::torch::Divergence>(7);
  for (const auto path : {rdrop::torch::Path::Fused, rdrop::torch::Path::ATen}) {
    CHECK_THROWS_WITH(rdrop::torch::linear_loss(h, w, {}, y, rdrop::torch::LinearLossTorchOptions().divergence(unknown).path(path)),
                      Catch::Contains("rdrop::torch::linear_loss: argument 'divergence' is 7"));
    CHECK_THROWS_WITH(rdrop::torch::rdrop_loss(torch::randn({4, 5}), y, rdrop::torch::RDropLossOptions().divergence(unknown).path(path)),
                      Catch::Contains("rdrop::torch::rdrop_loss: argument 'divergence' is 7"));
  }
  CHECK_FALSE(h.grad().defined());
}

TEST_CASE("Devices: tensors on two devices are refused naming both arguments; Path::Fused refuses a tensor off the "
          "CPU; Products::Eigen refuses 2-byte inputs",
          "[torch][errors][devices]") {
  // The meta device stands in for an accelerator: every libtorch build has it.
  const at::Device meta(at::kMeta);
  const at::Tensor x = torch::randn({8, 5});
  const at::Tensor y = torch::randint(0, 5, {4}, torch::kLong);
  const auto refused = [](auto&& f, const std::string& message) {
    CHECK_THROWS_AS(f(), c10::Error);
    CHECK_THROWS_WITH(f(), Catch::Contains(message));
  };
  refused([&] { return rdrop::torch::rdrop_loss(x, y.to(meta)); },
          "rdrop::torch::rdrop_loss: arguments 'logits' (on cpu) and 'labels' (on meta) are on different devices");
  refused([&] { return rdrop::torch::rdrop_loss_(x, y, {}, torch::ones({4}).to(meta)); },
          "arguments 'logits' (on cpu) and 'mask' (on meta)");
  refused([&] { return rdrop::torch::multi_label_loss(x.to(meta), torch::rand({4, 5})); },
          "arguments 'logits' (on meta) and 'targets' (on cpu)");
  refused([&] { return rdrop::torch::regression_loss(x, torch::rand({4, 5}).to(meta)); }, "'targets' (on meta)");
  const at::Tensor h = torch::randn({8, 3}), w = torch::randn({5, 3}), bias = torch::randn({5});
  refused([&] { return rdrop::torch::linear_loss(h, w.to(meta), bias, y); },
          "arguments 'hidden' (on cpu) and 'weight' (on meta)");
  refused([&] { return rdrop::torch::linear_loss(h, w, bias.to(meta), y); }, "'bias' (on meta)");
  refused([&] { return rdrop::torch::linear_loss(h, w, bias, y.to(meta)); }, "'labels' (on meta)");
  refused([&] { return rdrop::torch::linear_loss(h, w, bias, y, {}, torch::ones({4}).to(meta)); }, "'mask' (on meta)");
  refused([&] {
    return rdrop::torch::rdrop_loss(x.to(meta), y.to(meta), rdrop::torch::RDropLossOptions().path(rdrop::torch::Path::Fused));
  }, "options.path() is Path::Fused, which runs on CPU tensors, and 'logits' is on meta");
  refused([&] {
    return rdrop::torch::linear_loss(h.to(meta), w.to(meta), at::Tensor(), y.to(meta),
                                     rdrop::torch::LinearLossTorchOptions().path(rdrop::torch::Path::Fused));
  }, "'hidden' is on meta");
  refused([&] {
    return rdrop::torch::linear_loss(h.to(at::kBFloat16), w.to(at::kBFloat16), at::Tensor(), y,
                                     rdrop::torch::LinearLossTorchOptions()
                                         .path(rdrop::torch::Path::Fused)
                                         .products(rdrop::torch::Products::Eigen));
  }, "options.products() is Products::Eigen, which multiplies float and double; 'hidden' is BFloat16");
}

TEST_CASE("Found by a hostile review: autocast, empty vocabularies, far-apart copies, alpha 0 with -inf, T = 0, "
          "a bias of the wrong length, options converted with their path",
          "[torch][edge]") {
  using rdrop::torch::Path;
  using rdrop::torch::Products;
  SECTION("float linear_loss under CPU autocast multiplies in float, on every path") {
    torch::manual_seed(3);
    const at::Tensor h = torch::randn({8, 16}), w = torch::randn({40, 16}), b = torch::randn({40});
    const at::Tensor y = torch::randint(0, 40, {4}, torch::kLong);
    for (const auto& o : {rdrop::torch::LinearLossTorchOptions().path(Path::Fused).products(Products::ATen),
                          rdrop::torch::LinearLossTorchOptions().path(Path::ATen)}) {
      const auto run = [&](bool autocast) {
        const at::Tensor hh = h.clone().requires_grad_(true), ww = w.clone().requires_grad_(true);
        at::autocast::set_cpu_enabled(autocast);
        const at::Tensor value = rdrop::torch::linear_loss(hh, ww, b, y, o);
        at::autocast::set_cpu_enabled(false);
        value.backward();
        return std::vector<at::Tensor>{value.detach(), hh.grad(), ww.grad()};
      };
      const auto plain = run(false), autocast = run(true);
      for (std::size_t i = 0; i < plain.size(); ++i) CHECK(close(autocast[i], plain[i], 1e-6));
    }
  }
  SECTION("an empty batch with an empty vocabulary gives 0 on every path") {
    for (const auto products : {Products::ATen, Products::Eigen}) {
      for (const auto path : {Path::Fused, Path::ATen}) {
        const at::Tensor value = rdrop::torch::linear_loss(torch::randn({0, 4}), torch::randn({0, 4}), at::Tensor(),
                                                           torch::zeros({0}, torch::kLong),
                                                           rdrop::torch::LinearLossTorchOptions().products(products).path(path));
        CHECK(value.item<double>() == 0.0);
      }
    }
  }
  SECTION("copies far apart (log-ratio below -88 in float): finite gradients, as the fused path gives") {
    const at::Tensor x = torch::tensor({{0.0, -95.0}, {-95.0, 0.0}});
    const at::Tensor y = torch::zeros({1}, torch::kLong);
    const auto grad = [&](Path path) {
      const at::Tensor z = x.clone().requires_grad_(true);
      rdrop::torch::rdrop_loss(z, y, rdrop::torch::RDropLossOptions().path(path)).backward();
      return z.grad();
    };
    const at::Tensor fused = grad(Path::Fused), aten = grad(Path::ATen);
    CHECK(at::isfinite(aten).all().item<bool>());
    CHECK(close(aten, fused, 1e-6));
  }
  SECTION("alpha 0 with a class at -inf in one copy: the fused path's finite gradient") {
    const at::Tensor x = torch::tensor({{0.0, 1.0}, {0.5, -std::numeric_limits<double>::infinity()}}, torch::kFloat);
    const at::Tensor y = torch::zeros({1}, torch::kLong);
    const auto grad = [&](Path path) {
      const at::Tensor z = x.clone().requires_grad_(true);
      rdrop::torch::rdrop_loss(z, y, rdrop::torch::RDropLossOptions().alpha(0).path(path)).backward();
      return z.grad();
    };
    const at::Tensor fused = grad(Path::Fused), aten = grad(Path::ATen);
    CHECK_FALSE(at::isnan(aten).any().item<bool>());
    CHECK(close(aten, fused, 1e-6));
  }
  SECTION("T = 0: a loss of 0 on every path") {
    for (const auto path : {Path::Fused, Path::ATen}) {
      CHECK(rdrop::torch::rdrop_loss(torch::randn({4, 0, 5}), torch::zeros({2, 0}, torch::kLong),
                                     rdrop::torch::RDropLossOptions().path(path))
                .item<double>() == 0.0);
      CHECK(rdrop::torch::linear_loss(torch::randn({4, 0, 3}), torch::randn({5, 3}), at::Tensor(),
                                      torch::zeros({2, 0}, torch::kLong), rdrop::torch::LinearLossTorchOptions().path(path))
                .item<double>() == 0.0);
      CHECK(rdrop::torch::regression_loss(torch::randn({4, 0, 5}), torch::zeros({2, 0, 5}),
                                          rdrop::torch::RegressionLossOptions().path(path))
                .item<double>() == 0.0);
    }
  }
  SECTION("a bias whose length is not the weight's rows is refused on every path") {
    for (const auto path : {Path::Fused, Path::ATen}) {
      CHECK_THROWS_WITH(rdrop::torch::linear_loss(torch::randn({4, 3}), torch::randn({5, 3}), torch::randn({1}),
                                                  torch::zeros({2}, torch::kLong),
                                                  rdrop::torch::LinearLossTorchOptions().path(path)),
                        Catch::Contains("argument 'bias' has shape [1]; expected [5], one entry per row of the weight [5, 3]"));
    }
  }
  SECTION("options converted between rdrop_loss and linear_loss keep their path") {
    CHECK(rdrop::torch::LinearLossTorchOptions(rdrop::torch::RDropLossOptions().path(Path::ATen)).path() == Path::ATen);
    CHECK(rdrop::torch::RDropLossOptions(rdrop::torch::LinearLossTorchOptions().path(Path::Fused)).path() == Path::Fused);
  }
}

TEST_CASE("Found by a hostile review of the ATen sweeps: large logits beside a -inf, a denormal against 0 in "
          "Jensen-Shannon, NaN in an unlabeled row at alpha 0, the sum over many chunks",
          "[torch][aten][edge]") {
  using rdrop::torch::Path;
  const auto value_and_grads = [](const at::Tensor& x, const std::function<at::Tensor(const at::Tensor&)>& loss) {
    const at::Tensor z = x.clone().requires_grad_(true);
    const at::Tensor value = loss(z);
    value.backward();
    return std::pair<at::Tensor, at::Tensor>{value.detach(), z.grad()};
  };
  SECTION("logits near 1e4 with a -inf in a masked-out pair: the guarded sweep as exact as the finite one") {
    // log p - log q was a difference of log-sum-exps, each rounded to a unit
    // of the largest logit (1e-3 at 1e4 in float): 4.9e-4 off the fused path.
    torch::manual_seed(11);
    const int64_t b = 8, c = 10;
    const at::Tensor a = torch::randn({b, c}, torch::kDouble) * 2 + 1e4;
    at::Tensor x = at::cat({a, a + 1e-3 * torch::randn({b, c}, torch::kDouble)}).to(torch::kFloat);
    x[b - 1][0] = -std::numeric_limits<float>::infinity();
    const at::Tensor y = torch::randint(0, c, {b}, torch::kLong);
    at::Tensor mask = torch::ones({b}, torch::kLong);
    mask[b - 1] = 0;
    for (const Divergence divergence : {Divergence::KL, Divergence::SymmetricKL}) {
      const auto o = rdrop::torch::RDropLossOptions().layout(Layout::Stacked).divergence(divergence).normalization(
          Normalization::Sum);
      const auto run = [&](Path path) {
        return value_and_grads(x, [&](const at::Tensor& z) {
          return rdrop::torch::rdrop_loss(z, y, rdrop::torch::RDropLossOptions(o).path(path), mask);
        });
      };
      const auto [fused_value, fused_grad] = run(Path::Fused);
      const auto [aten_value, aten_grad] = run(Path::ATen);
      CHECK(close(aten_value, fused_value, 1e-5));
      CHECK(close(aten_grad, fused_grad, 1e-5));
    }
  }
  SECTION("Jensen-Shannon where one copy's probability is the least denormal and the other's 0") {
    // ½(p + q) rounded to 0: log 0 = -inf, and p · inf was an infinite loss.
    at::Tensor x = torch::zeros({4, 4}, torch::kFloat);
    x[0][1] = -101.9;  // p = 1.4e-45
    x[2][1] = -300;    // q = 0
    const at::Tensor y = torch::tensor({0, 2}, torch::kLong);
    const auto o = rdrop::torch::RDropLossOptions()
                       .layout(Layout::Stacked)
                       .divergence(Divergence::JensenShannon)
                       .normalization(Normalization::Sum);
    const auto run = [&](Path path) {
      return value_and_grads(
          x, [&](const at::Tensor& z) { return rdrop::torch::rdrop_loss(z, y, rdrop::torch::RDropLossOptions(o).path(path)); });
    };
    const auto [fused_value, fused_grad] = run(Path::Fused);
    const auto [aten_value, aten_grad] = run(Path::ATen);
    CHECK(at::isfinite(aten_grad).all().item<bool>());
    CHECK(close(aten_value, fused_value, 1e-6));
    CHECK(close(aten_grad, fused_grad, 1e-6));
  }
  SECTION("alpha 0: a kept row without a label that holds NaN gets NaN, as the fused path and cross_entropy give") {
    torch::manual_seed(13);
    at::Tensor x = torch::randn({4, 3});
    x[1][2] = std::numeric_limits<float>::quiet_NaN();
    const at::Tensor y = torch::tensor({0, -100, 2, 1}, torch::kLong);  // per row: row 1 unlabeled
    const auto grad = [&](Path path) {
      return value_and_grads(x, [&](const at::Tensor& z) {
               return rdrop::torch::rdrop_loss(z, y, rdrop::torch::RDropLossOptions().alpha(0).path(path));
             })
          .second;
    };
    const at::Tensor fused = grad(Path::Fused), aten = grad(Path::ATen);
    CHECK(at::equal(at::isnan(aten), at::isnan(fused)));
    CHECK(at::isnan(aten[1]).all().item<bool>());
    const at::Tensor finite = at::isfinite(fused);
    CHECK(close(aten.masked_select(finite), fused.masked_select(finite), 1e-6));
  }
  SECTION("linear_loss over 10000 chunks: the chunks' sums added in double") {
    // Added in a float tensor, the value drifted by 2e-6 relative.
    torch::manual_seed(16);
    const int64_t b = 10000, d = 4, v = 3;
    const at::Tensor h = torch::randn({2 * b, d}, torch::kDouble), w = torch::randn({v, d}, torch::kDouble) * 3;
    const at::Tensor y = torch::randint(0, v, {b}, torch::kLong);
    const auto o = rdrop::torch::LinearLossTorchOptions().chunk_pairs(1).normalization(Normalization::Sum);
    const double exact = rdrop::torch::linear_loss(h, w, {}, y, o).item<double>();
    const double aten =
        rdrop::torch::linear_loss(h.to(torch::kFloat), w.to(torch::kFloat), {}, y, rdrop::torch::LinearLossTorchOptions(o).path(Path::ATen))
            .item<double>();
    CHECK(std::abs(aten - exact) <= 5e-7 * std::abs(exact));
  }
}
