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

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

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
  const at::Tensor rows = row_labels(y, o.layout);
  const at::Tensor ce = F::cross_entropy(logits, rows,
                                         F::CrossEntropyFuncOptions()
                                             .reduction(torch::kNone)
                                             .ignore_index(o.ignore_index)
                                             .label_smoothing(o.label_smoothing));
  const auto [a, b] = copies(logits, o.layout);
  const at::Tensor d = divergence_rows(a, b, o.divergence).sum();
  const double labeled = rows.ne(o.ignore_index).sum().item<double>();
  const double pairs = static_cast<double>(a.size(0));
  switch (o.normalization) {
    case Normalization::Paper:
    case Normalization::Sum:
      return ce.sum() + o.alpha * d;
    case Normalization::KerasCode:
      return ce.sum() / labeled + o.alpha * d / (2 * pairs);
    case Normalization::PyTorchReadme:
      return ce.sum() / labeled + o.alpha * d;
    case Normalization::Mean:
      return ce.sum() / labeled + o.alpha * d / pairs;
    case Normalization::Fairseq:
      return (ce.sum() + o.alpha * d) / pairs;
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
  o.layout = layout;
  o.normalization = norm;
  o.divergence = divergence;
  o.alpha = 0.7;
  o.label_smoothing = smoothing;
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
  o.layout = Layout::Stacked;  // fairseq concatenates the two copies
  o.normalization = Normalization::Fairseq;
  o.padding_index = pad;
  o.label_smoothing = eps;
  o.smoothing_style = rdrop::SmoothingStyle::ExcludeTarget;
  o.alpha = alpha;
  o.ignore_index = -100;

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
  o.divergence = divergence;
  o.label_smoothing = 0.05;
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
    o.alpha = 0.8;
    o.normalization = Normalization::Sum;
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
      return bce + o.alpha * 0.5 * (bern_kl(u, v) + bern_kl(v, u));
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
    o.alpha = 0.5;
    o.layout = Layout::Stacked;
    o.normalization = Normalization::Sum;
    const auto reference = [&](const at::Tensor& z) {
      const auto [u, v] = copies(z, Layout::Stacked);
      return (z - targets).pow(2).sum() + o.alpha * (u - v).pow(2).sum();
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
    o.alpha = 1.5;
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
                    Catch::Contains("argument 'labels' has 3 entries"));
  CHECK_THROWS_WITH(rdrop::torch::rdrop_loss(torch::randn({7, 5}), y), Catch::Contains("odd number"));
  CHECK_THROWS_WITH(rdrop::torch::rdrop_loss(x, torch::tensor({0, 1, 2, 9}, torch::kLong)), Catch::Contains("9"));
  CHECK_THROWS_WITH(rdrop::torch::linear_loss(torch::randn({8, 3}), torch::randn({5, 4}), at::Tensor(), y),
                    Catch::Contains("weight"));
  CHECK_THROWS_WITH(rdrop::torch::linear_loss(torch::randn({8, 3}).to(at::kBFloat16), torch::randn({5, 3}).to(at::kBFloat16),
                                              at::Tensor(), y),
                    Catch::Contains("argument 'hidden' has dtype"));
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
