// RDropLinearLoss, the output projection fused with the loss, against the
// unfused pipeline a user would write (logits = H·Wᵀ + b, RDropLoss, then
// the three products), against central differences, and for its chunking,
// threads, in-place and accumulating outputs and errors.
#include "support/reference.hpp"

#include <rdrop/linear_loss.hpp>
#include <rdrop/rdrop.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

namespace {
using ref::Index;
using Catch::Matchers::Contains;

template <typename S>
using Matrix = ref::Matrix<S>;
template <typename S>
using Vector = Eigen::Matrix<S, Eigen::Dynamic, 1>;
template <typename S>
using Tensor3 = Eigen::Tensor<S, 3, Eigen::RowMajor>;

/// A linear head and a duplicated batch of hidden states.
template <typename S>
struct Head {
  Matrix<S> hidden;  // 2N x D
  Matrix<S> weight;  // V x D
  Vector<S> bias;    // V
};

template <typename S>
Head<S> random_head(Index pairs, Index d, Index v, unsigned seed) {
  Head<S> h;
  h.hidden = ref::random_logits<S>(2 * pairs, d, 1.0, seed);
  h.weight = ref::random_logits<S>(v, d, 1.0, seed + 1);
  h.bias = ref::random_logits<S>(v, 1, 0.5, seed + 2);
  return h;
}

/// The gradients of the three parameters.
template <typename S>
struct Grads {
  S value = 0;
  Matrix<S> hidden, weight;
  Vector<S> bias;
};

/// The unfused pipeline, as a user would build it from RDropLoss.
template <typename Loss, typename S, typename... MaskArg>
Grads<S> unfused(const Loss& loss, const Head<S>& h, bool with_bias, const Eigen::VectorXi& labels,
                 const MaskArg&... mask) {
  Matrix<S> logits = h.hidden * h.weight.transpose();
  if (with_bias) logits.rowwise() += h.bias.transpose();
  Matrix<S> g;
  Grads<S> out;
  out.value = loss.EvaluateWithGradient(logits, labels, mask..., g);
  out.hidden = g * h.weight;
  out.weight = g.transpose() * h.hidden;
  out.bias = with_bias ? Vector<S>(g.colwise().sum().transpose()) : Vector<S>::Zero(h.weight.rows());
  return out;
}

template <typename Linear, typename S, typename... MaskArg>
Grads<S> fused(const Linear& loss, const Head<S>& h, bool with_bias, const Eigen::VectorXi& labels,
               const MaskArg&... mask) {
  Grads<S> out;
  if (with_bias) {
    out.value = loss.EvaluateWithGradient(h.hidden, h.weight, h.bias, labels, mask..., out.hidden, out.weight, out.bias);
  } else {
    out.value = loss.EvaluateWithGradient(h.hidden, h.weight, rdrop::no_bias, labels, mask..., out.hidden,
                                          out.weight, rdrop::no_bias);
    out.bias = Vector<S>::Zero(h.weight.rows());
  }
  return out;
}

/// max |a − b| / max |b| (absolute below a scale of 1e-30).
template <typename A, typename B>
double relative(const A& a, const B& b) {
  if (a.size() != b.size()) return 1e30;
  if (a.size() == 0) return 0;
  const double scale = std::max(1e-30, static_cast<double>(b.cwiseAbs().maxCoeff()));
  return static_cast<double>((a - b).cwiseAbs().maxCoeff()) / scale;
}

template <typename S>
void check_close(const Grads<S>& got, const Grads<S>& want, double tol) {
  CHECK(std::abs(static_cast<double>(got.value - want.value)) <=
        tol * std::max(1.0, std::abs(static_cast<double>(want.value))));
  CHECK(relative(got.hidden, want.hidden) <= tol);
  CHECK(relative(got.weight, want.weight) <= tol);
  CHECK(relative(got.bias, want.bias) <= tol);
}

template <typename A, typename B>
bool same_bits(const A& a, const B& b) {
  if (a.size() != b.size()) return false;
  if (a.size() == 0) return true;
  return std::memcmp(a.data(), b.data(), sizeof(typename A::Scalar) * static_cast<std::size_t>(a.size())) == 0;
}

template <typename S>
bool same_bits(const Grads<S>& a, const Grads<S>& b) {
  return std::memcmp(&a.value, &b.value, sizeof(S)) == 0 && same_bits(a.hidden, b.hidden) &&
         same_bits(a.weight, b.weight) && same_bits(a.bias, b.bias);
}

/// chunk_bytes that give chunks of `pairs` pairs.
template <typename S>
std::size_t chunk_bytes(Index pairs, Index v, Index d) {
  return static_cast<std::size_t>(pairs * 2 * (v + 2 * d)) * sizeof(S);
}

template <typename S>
constexpr double equality_tolerance() {
  return std::is_same_v<S, float> ? 1e-5 : 1e-12;
}

// What the batch looks like beyond plain labels.
enum class Extra { None, PairMask, RowMask, Padding, Unlabeled, SmoothUniform, SmoothExclude };

template <typename S>
void check_against_unfused(rdrop::Layout layout, rdrop::Normalization normalization, Extra extra, bool with_bias,
                           Index chunk_pairs) {
  const Index pairs = 7, d = 6, v = 11;
  const Head<S> h = random_head<S>(pairs, d, v, 11);
  rdrop::RDropOptions<S> o;
  o.layout = layout;
  o.normalization = normalization;
  o.alpha = S(0.7);
  Eigen::VectorXi labels = ref::random_labels(pairs, static_cast<int>(v), 5);
  if (extra == Extra::Padding) {
    o.padding_index = 0;
    labels(1) = 0;
    labels(4) = 0;
  }
  if (extra == Extra::Unlabeled) labels(2) = labels(5) = -100;
  if (extra == Extra::SmoothUniform || extra == Extra::SmoothExclude) {
    o.label_smoothing = S(0.1);
    o.smoothing_style =
        extra == Extra::SmoothUniform ? rdrop::SmoothingStyle::Uniform : rdrop::SmoothingStyle::ExcludeTarget;
  }
  rdrop::LinearLossOptions lo;
  lo.chunk_bytes = chunk_bytes<S>(chunk_pairs, v, d);
  const rdrop::RDropLinearLoss<S> linear(o, lo);
  const rdrop::RDropLoss<S> loss(o);
  CAPTURE(layout, normalization, extra, with_bias, chunk_pairs);
  REQUIRE(linear.ChunkPairs(v, d) == chunk_pairs);
  const double tol = equality_tolerance<S>();
  if (extra == Extra::PairMask || extra == Extra::RowMask) {
    Eigen::VectorXi mask = Eigen::VectorXi::Ones(extra == Extra::PairMask ? pairs : 2 * pairs);
    mask(1) = 0;
    mask(4) = 0;
    check_close(fused(linear, h, with_bias, labels, mask), unfused(loss, h, with_bias, labels, mask), tol);
  } else {
    check_close(fused(linear, h, with_bias, labels), unfused(loss, h, with_bias, labels), tol);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("RDropLinearLoss equals the unfused pipeline for every option", "[linear]", float, double) {
  const auto layout = GENERATE(rdrop::Layout::Interleaved, rdrop::Layout::Stacked);
  const auto normalization =
      GENERATE(rdrop::Normalization::Paper, rdrop::Normalization::KerasCode, rdrop::Normalization::PyTorchReadme,
               rdrop::Normalization::Sum, rdrop::Normalization::Mean, rdrop::Normalization::Fairseq);
  const auto extra = GENERATE(Extra::None, Extra::PairMask, Extra::RowMask, Extra::Padding, Extra::Unlabeled,
                              Extra::SmoothUniform, Extra::SmoothExclude);
  const bool with_bias = GENERATE(true, false);
  // Chunks of 1 pair, of 3 (which does not divide 7) and of all of them.
  const Index chunk_pairs = GENERATE(1, 3, 7);
  check_against_unfused<TestType>(layout, normalization, extra, with_bias, chunk_pairs);
}

namespace {
template <typename S, typename Divergence>
void check_divergence(Index chunk_pairs) {
  const Index pairs = 5, d = 4, v = 9;
  const Head<S> h = random_head<S>(pairs, d, v, 21);
  const Eigen::VectorXi labels = ref::random_labels(pairs, static_cast<int>(v), 3);
  rdrop::RDropOptions<S> o;
  o.alpha = S(2);
  rdrop::LinearLossOptions lo;
  lo.chunk_bytes = chunk_bytes<S>(chunk_pairs, v, d);
  const rdrop::RDropLinearLoss<S, Divergence> linear(o, lo);
  const rdrop::RDropLoss<S, Divergence> loss(o);
  check_close(fused(linear, h, true, labels), unfused(loss, h, true, labels), equality_tolerance<S>());
}
}  // namespace

TEMPLATE_TEST_CASE("RDropLinearLoss takes any divergence", "[linear]", float, double) {
  const Index chunk_pairs = GENERATE(1, 2, 5);
  check_divergence<TestType, rdrop::KLDivergence<TestType>>(chunk_pairs);
  check_divergence<TestType, rdrop::JensenShannon<TestType>>(chunk_pairs);
  check_divergence<TestType, rdrop::SymmetricKL<TestType>>(chunk_pairs);
}

namespace {
template <typename S>
void check_sequences(rdrop::Layout layout, Index chunk_pairs) {
  // [2B, T, D] hidden states; labels [B, T] with padding, as fairseq.
  const Index b = 3, t = 4, d = 5, v = 8;
  Tensor3<S> hidden(2 * b, t, d);
  const Matrix<S> flat = ref::random_logits<S>(2 * b * t, d, 1.0, 31);
  std::copy(flat.data(), flat.data() + flat.size(), hidden.data());
  const Matrix<S> weight = ref::random_logits<S>(v, d, 1.0, 32);
  const Vector<S> bias = ref::random_logits<S>(v, 1, 0.5, 33);
  Eigen::Tensor<long, 2, Eigen::RowMajor> labels(b, t);
  const Eigen::VectorXi drawn = ref::random_labels(b * t, static_cast<int>(v - 1), 34);
  for (Index i = 0; i < b * t; ++i) labels.data()[i] = drawn(i) + 1;
  labels(0, 3) = labels(2, 2) = labels(2, 3) = 0;  // padding at the ends
  rdrop::RDropOptions<S> o;
  o.layout = layout;
  o.normalization = rdrop::Normalization::Fairseq;
  o.padding_index = 0;
  o.label_smoothing = S(0.1);
  o.smoothing_style = rdrop::SmoothingStyle::ExcludeTarget;
  rdrop::LinearLossOptions lo;
  lo.chunk_bytes = chunk_bytes<S>(chunk_pairs, v, d);
  const rdrop::RDropLinearLoss<S> linear(o, lo);

  // Unfused: the logits tensor [2B, T, V], RDropLoss, the products.
  Matrix<S> logits = (flat * weight.transpose()).rowwise() + bias.transpose();
  Eigen::TensorMap<Tensor3<S>> logits3(logits.data(), 2 * b, t, v);
  Tensor3<S> g3;
  const S want = rdrop::RDropLoss<S>(o).EvaluateWithGradient(logits3, labels, g3);
  const Eigen::Map<const Matrix<S>> g(g3.data(), 2 * b * t, v);
  const Matrix<S> want_hidden = g * weight;

  Tensor3<S> gh;
  Matrix<S> gw;
  Vector<S> gb;
  const S got = linear.EvaluateWithGradient(hidden, weight, bias, labels, gh, gw, gb);
  const double tol = equality_tolerance<S>();
  CHECK(std::abs(static_cast<double>(got - want)) <= tol * std::abs(static_cast<double>(want)));
  REQUIRE(gh.dimension(0) == 2 * b);
  REQUIRE(gh.dimension(2) == d);
  CHECK(relative(Eigen::Map<const Matrix<S>>(gh.data(), 2 * b * t, d), want_hidden) <= tol);
  CHECK(relative(gw, Matrix<S>(g.transpose() * flat)) <= tol);
  CHECK(relative(gb, Vector<S>(g.colwise().sum().transpose())) <= tol);
  // Padded positions (both copies padding) get a zero gradient.
  // Sample 0's first copy is row 0 in either layout.
  for (Index s = 0; s < d; ++s) CHECK(gh(0, 3, s) == S(0));
}
}  // namespace

TEMPLATE_TEST_CASE("RDropLinearLoss on [2B, T, D] hidden states with padding equals the unfused sequence loss",
                   "[linear]", float, double) {
  const auto layout = GENERATE(rdrop::Layout::Interleaved, rdrop::Layout::Stacked);
  const Index chunk_pairs = GENERATE(1, 4, 12);
  check_sequences<TestType>(layout, chunk_pairs);
}

TEST_CASE("RDropLinearLoss's three gradients match central differences", "[linear]") {
  using S = double;
  const Index pairs = 3, d = 4, v = 5;
  const Head<S> h = random_head<S>(pairs, d, v, 41);
  Eigen::VectorXi labels(2 * pairs);
  labels << 1, 4, 0, -100, 2, 2;  // per row; one copy unlabeled
  Eigen::VectorXi mask(2 * pairs);
  mask << 1, 1, 1, 1, 0, 1;  // one copy of the last pair masked
  rdrop::RDropOptions<S> o;
  o.alpha = 1.5;
  o.label_smoothing = 0.05;
  o.layout = GENERATE(rdrop::Layout::Interleaved, rdrop::Layout::Stacked);
  rdrop::LinearLossOptions lo;
  lo.chunk_bytes = chunk_bytes<S>(2, v, d);
  const rdrop::RDropLinearLoss<S> loss(o, lo);
  Grads<S> g;
  g.value = loss.EvaluateWithGradient(h.hidden, h.weight, h.bias, labels, mask, g.hidden, g.weight, g.bias);
  const auto value = [&](const Matrix<S>& hidden, const Matrix<S>& weight, const Vector<S>& bias) {
    return loss.Evaluate(hidden, weight, bias, labels, mask);
  };
  const ref::MatrixD num_hidden = ref::numeric_gradient([&](const ref::MatrixD& x) { return value(x, h.weight, h.bias); },
                                                        h.hidden, 1e-6);
  const ref::MatrixD num_weight = ref::numeric_gradient([&](const ref::MatrixD& x) { return value(h.hidden, x, h.bias); },
                                                        h.weight, 1e-6);
  const ref::MatrixD num_bias = ref::numeric_gradient(
      [&](const ref::MatrixD& x) { return value(h.hidden, h.weight, Vector<S>(x.transpose())); },
      ref::MatrixD(h.bias.transpose()), 1e-6);
  CHECK(ref::relative_error(g.hidden, num_hidden) < 1e-7);
  CHECK(ref::relative_error(g.weight, num_weight) < 1e-7);
  CHECK(ref::relative_error(ref::MatrixD(g.bias.transpose()), num_bias) < 1e-7);
  CHECK(g.value == Approx(loss.Evaluate(h.hidden, h.weight, h.bias, labels, mask)).epsilon(1e-14));
}

TEMPLATE_TEST_CASE("RDropLinearLoss is bitwise the same for any thread count", "[linear][threads]", float, double) {
  using S = TestType;
  // Big enough for several blocks of classes (V > 2048) and of hidden units
  // (D >= 256) and for the sweep to go parallel; chunks of 5 of 12 pairs.
  const Index pairs = 12, d = 260, v = 4100;
  const Head<S> h = random_head<S>(pairs, d, v, 51);
  const Eigen::VectorXi labels = ref::random_labels(pairs, static_cast<int>(v), 52);
  rdrop::LinearLossOptions lo;
  lo.chunk_bytes = chunk_bytes<S>(5, v, d);
  std::vector<Grads<S>> runs;
  for (int threads : {1, 2, 3}) {
    rdrop::RDropOptions<S> o;
    o.threads = threads;
    runs.push_back(fused(rdrop::RDropLinearLoss<S>(o, lo), h, true, labels));
  }
  CHECK(same_bits(runs[0], runs[1]));
  CHECK(same_bits(runs[0], runs[2]));
  check_close(runs[0], unfused(rdrop::RDropLoss<S>(), h, true, labels), std::is_same_v<S, float> ? 1e-4 : 1e-11);
}

TEMPLATE_TEST_CASE("RDropLinearLoss writes the hidden states' gradient over them exactly", "[linear][in-place]",
                   float, double) {
  using S = TestType;
  const Index pairs = 6, d = 5, v = 13;
  const Head<S> h = random_head<S>(pairs, d, v, 61);
  const Eigen::VectorXi labels = ref::random_labels(pairs, static_cast<int>(v), 62);
  rdrop::LinearLossOptions lo;
  lo.chunk_bytes = chunk_bytes<S>(4, v, d);
  const rdrop::RDropLinearLoss<S, rdrop::JensenShannon<S>> loss({}, lo);
  const Grads<S> out = fused(loss, h, true, labels);
  Matrix<S> inout = h.hidden, gw;
  Vector<S> gb;
  const S value = loss.EvaluateWithGradient(inout, h.weight, h.bias, labels, inout, gw, gb);
  CHECK(std::memcmp(&value, &out.value, sizeof value) == 0);
  CHECK(same_bits(inout, out.hidden));
  CHECK(same_bits(gw, out.weight));
  // Column-major hidden states, in place too.
  Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic> col = h.hidden;
  loss.EvaluateWithGradient(col, h.weight, h.bias, labels, col, gw, gb);
  CHECK(same_bits(Matrix<S>(col), out.hidden));
}

TEMPLATE_TEST_CASE("RDropLinearLoss accumulates into its outputs on request", "[linear]", float, double) {
  using S = TestType;
  const Index pairs = 4, d = 3, v = 6;
  const Head<S> h = random_head<S>(pairs, d, v, 71);
  const Eigen::VectorXi labels = ref::random_labels(pairs, static_cast<int>(v), 72);
  Eigen::VectorXi mask = Eigen::VectorXi::Ones(pairs);
  mask(2) = 0;
  const Grads<S> once = fused(rdrop::RDropLinearLoss<S>(), h, true, labels, mask);
  rdrop::LinearLossOptions lo;
  lo.accumulate = true;
  const rdrop::RDropLinearLoss<S> adding({}, lo);
  Matrix<S> gh = Matrix<S>::Constant(2 * pairs, d, S(1)), gw = Matrix<S>::Constant(v, d, S(2));
  Vector<S> gb = Vector<S>::Constant(v, S(3));
  adding.EvaluateWithGradient(h.hidden, h.weight, h.bias, labels, mask, gh, gw, gb);
  adding.EvaluateWithGradient(h.hidden, h.weight, h.bias, labels, mask, gh, gw, gb);
  const double tol = 10 * equality_tolerance<S>();
  CHECK(relative(gh, Matrix<S>((2 * once.hidden).array() + S(1))) <= tol);
  CHECK(relative(gw, Matrix<S>((2 * once.weight).array() + S(2))) <= tol);
  CHECK(relative(gb, Vector<S>((2 * once.bias).array() + S(3))) <= tol);
  // The masked pair's rows are left as they were.
  CHECK(gh.row(4).isConstant(S(1)));
  CHECK(gh.row(5).isConstant(S(1)));
  // Accumulating never resizes.
  Matrix<S> empty;
  CHECK_THROWS_WITH(adding.EvaluateWithGradient(h.hidden, h.weight, h.bias, labels, empty, gw, gb),
                    Contains("grad_hidden") && Contains("not resized"));
}

TEMPLATE_TEST_CASE("RDropLinearLoss's shares under WithCounts sum to the whole batch", "[linear][distributed]", float,
                   double) {
  using S = TestType;
  const Index pairs = 6, d = 4, v = 7;
  const Head<S> h = random_head<S>(pairs, d, v, 81);
  Eigen::VectorXi labels = ref::random_labels(pairs, static_cast<int>(v), 82);
  labels(1) = labels(2) = labels(3) = -100;  // the first worker holds more unlabeled samples
  rdrop::RDropOptions<S> o;
  o.layout = rdrop::Layout::Interleaved;
  const rdrop::RDropLinearLoss<S> loss(o);
  const Grads<S> whole = fused(loss, h, true, labels);
  Head<S> first = h, second = h;
  first.hidden = h.hidden.topRows(pairs);
  second.hidden = h.hidden.bottomRows(pairs);
  const Eigen::VectorXi y1 = labels.head(pairs / 2), y2 = labels.tail(pairs / 2);
  const rdrop::RDropCounts counts = loss.Count(first.hidden, h.weight, y1) + loss.Count(second.hidden, h.weight, y2);
  CHECK(counts == loss.Count(h.hidden, h.weight, labels));
  const auto global = loss.WithCounts(counts);
  const Grads<S> a = fused(global, first, true, y1), b = fused(global, second, true, y2);
  const double tol = 10 * equality_tolerance<S>();
  CHECK(std::abs(static_cast<double>(a.value + b.value - whole.value)) <= tol * std::abs(static_cast<double>(whole.value)));
  Matrix<S> stacked(2 * pairs, d);
  stacked << a.hidden, b.hidden;
  CHECK(relative(stacked, whole.hidden) <= tol);
  CHECK(relative(Matrix<S>(a.weight + b.weight), whole.weight) <= tol);
  CHECK(relative(Vector<S>(a.bias + b.bias), whole.bias) <= tol);
}

TEMPLATE_TEST_CASE("RDropLinearLoss reads any Eigen storage", "[linear]", float, double) {
  using S = TestType;
  const Index pairs = 5, d = 4, v = 9;
  const Head<S> h = random_head<S>(pairs, d, v, 91);
  const Eigen::VectorXi labels = ref::random_labels(pairs, static_cast<int>(v), 92);
  const rdrop::RDropLinearLoss<S> loss;
  const Grads<S> want = fused(loss, h, true, labels);
  using ColMajor = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  const ColMajor hidden = h.hidden, weight = h.weight;
  ColMajor gh, gw;
  Eigen::Matrix<S, 1, Eigen::Dynamic> gb;  // a row vector
  const Eigen::Matrix<S, 1, Eigen::Dynamic> bias = h.bias.transpose();
  const S value = loss.EvaluateWithGradient(hidden, weight, bias, labels, gh, gw, gb);
  const double tol = 10 * equality_tolerance<S>();
  CHECK(std::abs(static_cast<double>(value - want.value)) <= tol * std::abs(static_cast<double>(want.value)));
  CHECK(relative(Matrix<S>(gh), want.hidden) <= tol);
  CHECK(relative(Matrix<S>(gw), want.weight) <= tol);
  CHECK(relative(Vector<S>(gb.transpose()), want.bias) <= tol);
  // Maps of the right shape are written, not resized.
  Matrix<S> gh_storage(2 * pairs, d), gw_storage(v, d);
  Vector<S> gb_storage(v);
  Eigen::Map<Matrix<S>> gh_map(gh_storage.data(), 2 * pairs, d), gw_map(gw_storage.data(), v, d);
  Eigen::Map<Vector<S>> gb_map(gb_storage.data(), v);
  loss.EvaluateWithGradient(h.hidden, h.weight, h.bias, labels, gh_map, gw_map, gb_map);
  CHECK(same_bits(gh_storage, want.hidden));
  CHECK(same_bits(gw_storage, want.weight));
  CHECK(same_bits(gb_storage, want.bias));
}

TEMPLATE_TEST_CASE("RDropLinearLoss refuses bad input before writing anything", "[linear][errors]", float, double) {
  using S = TestType;
  const Index pairs = 3, d = 4, v = 5;
  const Head<S> h = random_head<S>(pairs, d, v, 101);
  const Eigen::VectorXi labels = ref::random_labels(pairs, static_cast<int>(v), 102);
  const rdrop::RDropLinearLoss<S> loss;
  Matrix<S> gh = Matrix<S>::Constant(2 * pairs, d, S(7)), gw = Matrix<S>::Constant(v, d, S(7));
  Vector<S> gb = Vector<S>::Constant(v, S(7));
  const auto untouched = [&] {
    return gh.isConstant(S(7)) && gw.isConstant(S(7)) && gb.isConstant(S(7)) && gh.rows() == 2 * pairs &&
           gw.rows() == v && gb.size() == v;
  };
  const Matrix<S> narrow = h.weight.leftCols(d - 1);
  CHECK_THROWS_WITH(loss.EvaluateWithGradient(h.hidden, narrow, h.bias, labels, gh, gw, gb),
                    Contains("'weight'") && Contains("5 x 3"));
  const Vector<S> short_bias = h.bias.head(v - 1);
  CHECK_THROWS_WITH(loss.EvaluateWithGradient(h.hidden, h.weight, short_bias, labels, gh, gw, gb),
                    Contains("'bias'"));
  Eigen::VectorXi out_of_range = labels;
  out_of_range(1) = static_cast<int>(v);
  CHECK_THROWS_WITH(loss.EvaluateWithGradient(h.hidden, h.weight, h.bias, out_of_range, gh, gw, gb),
                    Contains("label"));
  const Matrix<S> odd = h.hidden.topRows(2 * pairs - 1);
  CHECK_THROWS_WITH(loss.EvaluateWithGradient(odd, h.weight, h.bias, labels, gh, gw, gb), Contains("odd"));
  const Eigen::VectorXi bad_mask = Eigen::VectorXi::Ones(pairs + 1);
  CHECK_THROWS_WITH(loss.EvaluateWithGradient(h.hidden, h.weight, h.bias, labels, bad_mask, gh, gw, gb),
                    Contains("'mask'"));
  // Outputs that overlap inputs or each other.
  Matrix<S> weight = h.weight;
  CHECK_THROWS_WITH(loss.EvaluateWithGradient(h.hidden, weight, h.bias, labels, gh, weight, gb),
                    Contains("'grad_weight' overlaps 'weight'"));
  Vector<S> bias = h.bias;
  CHECK_THROWS_WITH(loss.EvaluateWithGradient(h.hidden, h.weight, bias, labels, gh, gw, bias),
                    Contains("'grad_bias' overlaps 'bias'"));
  Matrix<S> buffer(2 * pairs + 1, d);
  buffer.topRows(2 * pairs) = h.hidden;
  const Eigen::Map<const Matrix<S>> hidden(buffer.data(), 2 * pairs, d);
  CHECK_THROWS_WITH(loss.EvaluateWithGradient(hidden, h.weight, h.bias, labels,
                                              Eigen::Map<Matrix<S>>(buffer.data() + 1, 2 * pairs, d), gw, gb),
                    Contains("'grad_hidden' overlaps 'hidden'"));
  Matrix<S> both(v + 2 * pairs, d);
  CHECK_THROWS_WITH(loss.EvaluateWithGradient(h.hidden, h.weight, h.bias, labels, both.topRows(2 * pairs),
                                              Eigen::Map<Matrix<S>>(both.data() + d, v, d), gb),
                    Contains("'grad_weight' overlaps 'grad_hidden'"));
  // Wrong output shapes.
  Matrix<S> wrong(v, d);
  CHECK_THROWS_WITH(loss.EvaluateWithGradient(h.hidden, h.weight, h.bias, labels, wrong.topRows(2), gw, gb),
                    Contains("'grad_hidden'"));
  CHECK(untouched());
  CHECK_THROWS_WITH(rdrop::RDropLinearLoss<S>({}, rdrop::LinearLossOptions{0, false}), Contains("chunk_bytes"));
  CHECK_THROWS_WITH(rdrop::RDropLinearLoss<S>({}, rdrop::LinearLossOptions{1 << 20, false, 0}),
                    Contains("'linear.chunk_pairs' is 0"));
}

TEMPLATE_TEST_CASE("A chunk takes as many pairs as chunk_bytes holds, at most chunk_pairs and at least one",
                   "[linear]", float, double) {
  using S = TestType;
  const auto pairs_of = [](rdrop::LinearLossOptions lo, Index v, Index d) {
    return rdrop::RDropLinearLoss<S>({}, lo).ChunkPairs(v, d);
  };
  // The defaults, 256 MiB and 512 pairs: 2P·(V + 2D)·sizeof(S) bytes for P pairs.
  const Index bytes = Index(256) << 20, size = sizeof(S);
  CHECK(pairs_of({}, 128256, 256) == bytes / (2 * (128256 + 512) * size));  // 260 (float), 130 (double)
  CHECK(pairs_of({}, 32000, 256) == std::min<Index>(512, bytes / (2 * (32000 + 512) * size)));
  CHECK(pairs_of({}, 32000, 256) == 512);  // 1032 (float) and 516 (double) would fit
  CHECK(pairs_of({}, 10, 4) == 512);
  CHECK(pairs_of({std::size_t(1), false, 512}, 10, 4) == 1);
  CHECK(pairs_of({std::size_t(1) << 30, false, 7}, 10, 4) == 7);

  // Three pairs a chunk, by either limit: the same chunks, the same bits.
  const Index pairs = 8, d = 5, v = 9;
  const Head<S> h = random_head<S>(pairs, d, v, 12);
  const Eigen::VectorXi labels = ref::random_labels(pairs, static_cast<int>(v), 13);
  const rdrop::RDropLinearLoss<S> by_bytes({}, {chunk_bytes<S>(3, v, d), false, 512});
  const rdrop::RDropLinearLoss<S> by_pairs({}, {std::size_t(1) << 30, false, 3});
  REQUIRE(by_bytes.ChunkPairs(v, d) == 3);
  REQUIRE(by_pairs.ChunkPairs(v, d) == 3);
  CHECK(same_bits(fused(by_bytes, h, true, labels), fused(by_pairs, h, true, labels)));
}

TEMPLATE_TEST_CASE("RDropLinearLoss skips pairs without terms and handles empty batches", "[linear]", float, double) {
  using S = TestType;
  const Index pairs = 4, d = 3, v = 5;
  const Head<S> h = random_head<S>(pairs, d, v, 111);
  Eigen::VectorXi labels = ref::random_labels(pairs, static_cast<int>(v), 112);
  const Eigen::VectorXi mask = Eigen::VectorXi::Zero(pairs);
  const rdrop::RDropLinearLoss<S> loss;
  Grads<S> g = fused(loss, h, true, labels, mask);
  CHECK(g.value == S(0));
  CHECK(g.hidden.isZero(0));
  CHECK(g.weight.isZero(0));
  CHECK(g.bias.isZero(0));
  const Matrix<S> none(0, d);
  const Eigen::VectorXi no_labels(0);
  Matrix<S> gh, gw;
  Vector<S> gb;
  CHECK(loss.EvaluateWithGradient(none, h.weight, h.bias, no_labels, gh, gw, gb) == S(0));
  CHECK(gh.rows() == 0);
  CHECK(gw.rows() == v);
  CHECK(gw.isZero(0));
}

TEMPLATE_TEST_CASE("RDropLinearLoss: a row without terms never reaches the products, whatever its hidden state",
                   "[linear][mask]", float, double) {
  using S = TestType;
  const Index pairs = 4, d = 3, v = 5;
  const Head<S> h = random_head<S>(pairs, d, v, 131);
  const Eigen::VectorXi labels = ref::random_labels(pairs, static_cast<int>(v), 132);
  // Interleaved rows 2k, 2k + 1. A per-row mask hiding one copy of pair 1
  // (row 3): no divergence for that pair, row 2 keeps its task term, and
  // row 3 has no term at all, so its hidden state must not matter. A
  // per-sample mask hides pair 2 (rows 4, 5) entirely.
  Eigen::VectorXi row_mask = Eigen::VectorXi::Ones(2 * pairs);
  row_mask(3) = 0;
  Eigen::VectorXi sample_mask = Eigen::VectorXi::Ones(pairs);
  sample_mask(2) = 0;
  const rdrop::RDropLinearLoss<S> loss;
  for (const S junk : {std::numeric_limits<S>::quiet_NaN(), std::numeric_limits<S>::infinity(), S(1e30)}) {
    INFO("the masked rows' hidden states hold " << junk);
    Head<S> dirty = h, clean = h;
    dirty.hidden.row(3).setConstant(junk);
    clean.hidden.row(3).setZero();
    const Grads<S> got = fused(loss, dirty, true, labels, row_mask), want = fused(loss, clean, true, labels, row_mask);
    CHECK(std::isfinite(got.value));
    CHECK(got.weight.allFinite());
    CHECK(got.bias.allFinite());
    CHECK(got.hidden.allFinite());
    CHECK(got.hidden.row(3).isZero(0));
    check_close(got, want, 0);
    // The whole pair masked: the same as the batch without it.
    Head<S> dirty_pair = h;
    dirty_pair.hidden.row(4).setConstant(junk);
    dirty_pair.hidden.row(5).setConstant(junk);
    const Grads<S> masked = fused(loss, dirty_pair, true, labels, sample_mask);
    Head<S> without = h;
    without.hidden = Matrix<S>(2 * (pairs - 1), d);
    without.hidden << h.hidden.topRows(4), h.hidden.bottomRows(2);
    Eigen::VectorXi labels_without(pairs - 1);
    labels_without << labels.head(2), labels.tail(1);
    const Grads<S> left_out = fused(loss, without, true, labels_without);
    CHECK(masked.value == Approx(left_out.value).epsilon(1e-6));
    CHECK(masked.weight.isApprox(left_out.weight, S(1e-5)));
    CHECK(masked.bias.isApprox(left_out.bias, S(1e-5)));
    CHECK(masked.hidden.middleRows(4, 2).isZero(0));
  }
}

namespace {
template <typename S>
void check_extreme_logits() {
  const Index pairs = 4, d = 3, v = 6;
  Head<S> h = random_head<S>(pairs, d, v, 121);
  const Eigen::VectorXi labels = ref::random_labels(pairs, static_cast<int>(v - 1), 122);  // class v-1 never a label
  // Logits near 1e4: the loss is shift invariant, and the fused value and
  // gradients are those of the unfused pipeline on the same logits.
  Head<S> shifted = h;
  shifted.bias.array() += S(1e4);
  const Grads<S> near = fused(rdrop::RDropLinearLoss<S>(), shifted, true, labels);
  check_close(near, unfused(rdrop::RDropLoss<S>(), shifted, true, labels), equality_tolerance<S>());
  // A class made impossible by a −inf bias (in both copies): its gradient
  // is exactly 0, everything else that of the unfused pipeline, all finite.
  Head<S> impossible = h;
  impossible.bias(v - 1) = -std::numeric_limits<S>::infinity();
  const Grads<S> got = fused(rdrop::RDropLinearLoss<S>(), impossible, true, labels);
  const Grads<S> want = unfused(rdrop::RDropLoss<S>(), impossible, true, labels);
  CHECK(std::isfinite(got.value));
  CHECK(got.hidden.allFinite());
  CHECK(got.weight.allFinite());
  CHECK(got.bias(v - 1) == S(0));
  CHECK(got.weight.row(v - 1).isZero(0));
  check_close(got, want, equality_tolerance<S>());
}
}  // namespace

TEMPLATE_TEST_CASE("RDropLinearLoss is exact for logits near 1e4 and with a -inf class", "[linear]", float, double) {
  check_extreme_logits<TestType>();
}
