// The driver every paired loss shares (RDropLoss under each divergence,
// RDropMultiLabelLoss, RDropRegressionLoss; instantiated per Task in
// losses.cpp). A Task supplies the targets, the loss type and what the
// oracle needs to know about them. One input: a batch, the options, the
// task's targets, a mask; then, in this order, the constructor, the
// oracle's plan, the reference call, the terms and counts, other input
// kinds, other forms of targets and masks, other output kinds, and what
// the results must be.
#pragma once

#include "sequences_masks.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <vector>

namespace fuzz {

template <typename S>
struct CommonOptions {
  S alpha = 1;
  rdrop::Layout layout = rdrop::Layout::Interleaved;
  rdrop::Normalization normalization = rdrop::Normalization::KerasCode;
  int threads = 0;
};

template <typename S>
CommonOptions<S> draw_common(FuzzedDataProvider& in) {
  CommonOptions<S> o;
  o.alpha = draw_alpha<S>(in);
  o.layout = in.ConsumeBool() ? rdrop::Layout::Stacked : rdrop::Layout::Interleaved;
  o.normalization = static_cast<rdrop::Normalization>(in.ConsumeIntegralInRange(0, 5));
  const int threads[] = {0, 1, 2, 0, -1};
  o.threads = threads[in.ConsumeIntegralInRange(0, 4)];
  return o;
}

template <typename S>
bool common_valid(const CommonOptions<S>& o) {
  return o.alpha >= 0 && std::isfinite(o.alpha) && o.threads >= 0;
}

template <typename T>
long double target_max_of(const T& task) {
  if constexpr (T::squares) {
    return task.target_max();
  } else {
    (void)task;
    return 0;
  }
}

// What the oracle decides from the arguments alone, before any call.
struct Plan {
  bool valid = false;
  std::vector<char> has_task, padded;  // per row: carries a task term; is padding
  std::vector<char> keep;              // per row: kept by the mask
  bool twins_only = false;             // every pair holds two identical rows
};

template <typename S, typename Task>
Plan plan(const Batch<S>& b, const CommonOptions<S>& common, const Task& task, const MaskChoice<S>& mask) {
  const Index rows = b.rows(), group = b.rank == 3 ? b.t : 1;
  Plan p;
  p.valid = b.d0 % 2 == 0 && !(rows > 0 && b.c == 0);
  p.valid = p.valid && task.targets(b, p.has_task, p.padded);
  p.valid = p.valid && mask.fits(rows);
  p.keep = p.valid ? mask.kept_rows(rows, common.layout, group) : std::vector<char>(static_cast<std::size_t>(rows), 1);
  p.twins_only = [&] {
    if (b.d0 % 2 != 0) return false;  // no pairs to speak of
    for (Index k = 0; k < rows / 2; ++k) {
      const Pair pair = pair_of(common.layout, k, rows, group);
      if (!same_all(b.x.row(pair.first), b.x.row(pair.second))) return false;
    }
    return true;
  }();
  return p;
}

// The reference call on a matrix batch: row-major logits, resizable outputs
// prefilled with the sentinel. An invalid call leaves them untouched, and so
// does every other entry point; returns whether it threw. A valid one fills
// value, g and values, which Evaluate and Gradient reproduce bitwise.
template <typename Loss, typename S, typename Y, typename M>
bool matrix_reference(FuzzedDataProvider& in, const Loss& loss, const Batch<S>& b, const Y& y, const M* m, bool valid,
                      S& value, RowMat<S>& g, Vec<S>& values) {
  RowMat<S> gm = prefilled<RowMat<S>>(in);
  Vec<S> vm = prefilled<Vec<S>>(in);
  const Index gr = gm.rows(), gc = gm.cols(), vr = vm.rows();
  if (EXPECT(valid, value = ewg(loss, b.x, y, m, gm))) {
    FUZZ_REQUIRE(untouched(gm, gr, gc));
    EXPECT(false, per_row(loss, b.x, y, m, vm));
    FUZZ_REQUIRE(untouched(vm, vr, 1));
    EXPECT(false, grad(loss, b.x, y, m, gm));
    FUZZ_REQUIRE(untouched(gm, gr, gc));
    EXPECT(false, eval(loss, b.x, y, m));
    EXPECT(false, terms(loss, b.x, y, m));
    EXPECT(false, count(loss, b.x, y, m));
    return true;
  }
  g = gm;
  EXPECT(true, per_row(loss, b.x, y, m, vm));
  values = vm;
  FUZZ_REQUIRE(same(eval(loss, b.x, y, m), value));
  RowMat<S> g2;
  EXPECT(true, grad(loss, b.x, y, m, g2));
  FUZZ_REQUIRE(same_all(g2, g));
  return false;
}

// EvaluateTerms + Normalize and WithCounts(Count) give the value bitwise;
// identical copies have divergence exactly 0.
template <typename Task, typename Loss, typename S, typename Y, typename M>
void check_terms(const Loss& loss, const Batch<S>& b, const Y& y, const M* m, S value, const Plan& p,
                 const RowFacts<S>& f) {
  const auto t = terms(loss, b.x, y, m);
  const rdrop::RDropCounts counts = count(loss, b.x, y, m);
  FUZZ_REQUIRE(t.counts == counts);
  FUZZ_REQUIRE(same(loss.Normalize(t), value));
  FUZZ_REQUIRE(same(eval(loss.WithCounts(counts), b.x, y, m), value));
  if (p.twins_only && f.max_abs < 1e20L && !std::count(f.nan_or_pinf.begin(), f.nan_or_pinf.end(), 1) &&
      !std::count(f.ninf.begin(), f.ninf.end(), 1) && Task::exact_zero_on_twins) {
    FUZZ_REQUIRE(t.divergence_sum == S(0));  // D(p, p) = 0 exactly
  }
}

// Other input kinds give bitwise the same value and gradient.
template <typename Loss, typename S, typename Y, typename M>
void other_input_kinds(FuzzedDataProvider& in, const Loss& loss, const Batch<S>& b, const Y& y, const M* m, S value,
                       const RowMat<S>& g) {
  const Index rows = b.rows(), c = b.c;
  const int kind = in.ConsumeIntegralInRange(0, 3);
  RowMat<S> g_other;
  S v_other = 0;
  if (kind == 0) {
    const ColMat<S> xc = b.x;
    v_other = ewg(loss, xc, y, m, g_other);
  } else if (kind == 1) {
    RowMat<S> wide = RowMat<S>::Constant(rows, c + 3, std::numeric_limits<S>::quiet_NaN());
    wide.leftCols(c) = b.x;
    const ConstStridedMap<S> view(wide.data(), rows, c, Eigen::OuterStride<>(c + 3));
    v_other = ewg(loss, view, y, m, g_other);
  } else if (kind == 2) {
    const ColMat<S> per_column = b.x.transpose();
    v_other = ewg(loss, per_column.transpose(), y, m, g_other);
  } else {
    const Eigen::TensorMap<const Tensor<S, 2>> view(b.x.data(), rows, c);
    v_other = ewg(loss, view, y, m, g_other);
  }
  FUZZ_REQUIRE(same(v_other, value));
  FUZZ_REQUIRE(same_all(g_other, g));
}

// Other output kinds: the same numbers; those that cannot be resized must
// match, else the call throws and leaves them untouched.
template <typename Loss, typename S, typename Y, typename M>
void other_output_kinds(FuzzedDataProvider& in, const Loss& loss, const RowMat<S>& x, const Y& y, const M* m,
                        const RowMat<S>& g, const Vec<S>& values) {
  const Index rows = x.rows(), c = x.cols();
  const int kind = in.ConsumeIntegralInRange(0, 3);
  const Index want_r = in.ConsumeIntegralInRange(0, 7) == 0 ? rows + 2 : rows;
  const Index want_c = in.ConsumeIntegralInRange(0, 7) == 0 ? c + 1 : c;
  const bool fits = want_r == rows && want_c == c;
  if (kind == 0) {
    ColMat<S> gc = ColMat<S>::Constant(2, 5, sentinel<S>);
    EXPECT(true, ewg(loss, x, y, m, gc));
    FUZZ_REQUIRE(same_all(gc, g));
  } else if (kind == 1) {
    RowMat<S> buffer = RowMat<S>::Constant(want_r, want_c + 2, sentinel<S>);
    StridedMap<S> view(buffer.data(), want_r, want_c, Eigen::OuterStride<>(want_c + 2));
    EXPECT(fits, ewg(loss, x, y, m, view));
    if (fits) {
      FUZZ_REQUIRE(same_all(buffer.leftCols(c), g));
      FUZZ_REQUIRE(cols_from_are(buffer, c, sentinel<S>));  // padding untouched
    } else {
      FUZZ_REQUIRE((buffer.array() == sentinel<S>).all());
    }
  } else if (kind == 2) {
    ColMat<S> per_column = ColMat<S>::Constant(want_c, want_r, sentinel<S>);
    EXPECT(fits, ewg(loss, x, y, m, per_column.transpose()));
    if (fits) {
      FUZZ_REQUIRE(same_all(per_column.transpose(), g));
    } else {
      FUZZ_REQUIRE((per_column.array() == sentinel<S>).all());
    }
  } else {
    Vec<S> buffer = Vec<S>::Constant(want_r + 1, sentinel<S>);
    Eigen::Map<Vec<S>> view(buffer.data(), want_r);
    EXPECT(want_r == rows, per_row(loss, x, y, m, view));
    if (want_r == rows) {
      FUZZ_REQUIRE(same_all(view, values));
      FUZZ_REQUIRE(buffer(want_r) == sentinel<S>);
    } else {
      FUZZ_REQUIRE((buffer.array() == sentinel<S>).all());
    }
  }
}

// What the results must be. Rows that carry a term: task rows that are
// kept and not padding; both rows of a kept pair when α > 0.
template <typename Task, typename S>
void check_results(const Batch<S>& b, const CommonOptions<S>& common, const Task& task, const Plan& p,
                   const RowFacts<S>& f, S value, const RowMat<S>& g, const Vec<S>& values) {
  const Index rows = b.rows(), c = b.c, group = b.rank == 3 ? b.t : 1;
  const auto& keep = p.keep;
  const auto& padded = p.padded;
  const bool alpha_on = common.alpha > S(0);
  std::vector<char> contributes(static_cast<std::size_t>(rows), 0);
  bool poisoned = false, any_ninf = false;
  std::vector<char> pair_clean(static_cast<std::size_t>(rows / 2), 1);
  for (Index k = 0; k < rows / 2; ++k) {
    const Pair pair = pair_of(common.layout, k, rows, group);
    const auto a = static_cast<std::size_t>(pair.first), bb = static_cast<std::size_t>(pair.second);
    const bool kept = keep[a] && keep[bb] && !padded[a] && !padded[bb];
    for (std::size_t r : {a, bb}) {
      const bool row_kept = keep[r] && !padded[r];
      contributes[r] = (row_kept && p.has_task[r]) || (kept && alpha_on);
      if (contributes[r] && f.nan_or_pinf[r]) poisoned = true;
      if (contributes[r] && f.ninf[r]) any_ninf = true;
    }
    pair_clean[static_cast<std::size_t>(k)] = !f.nan_or_pinf[a] && !f.nan_or_pinf[bb] && !f.ninf[a] && !f.ninf[bb];
  }
  const bool in_bounds = bounded<S>(std::max(f.max_abs, target_max_of(task)), static_cast<long double>(common.alpha),
                                    rows, c, Task::squares);
  // (+inf is NaN for the softmax and sigmoid losses; squared errors may
  // keep it as +inf.)
  if (poisoned) FUZZ_REQUIRE(Task::squares ? !std::isfinite(value) : std::isnan(value));
  if (!poisoned && !any_ninf && in_bounds) {
    FUZZ_REQUIRE(std::isfinite(value));
    FUZZ_REQUIRE(value >= S(0));
  }
  for (Index k = 0; k < rows / 2; ++k) {
    const Pair pair = pair_of(common.layout, k, rows, group);
    for (Index r : {pair.first, pair.second}) {
      const auto ru = static_cast<std::size_t>(r);
      if (!keep[ru] || padded[ru]) {
        // Masked (or padding) rows are not read: gradient and value exactly 0.
        FUZZ_REQUIRE((g.row(r).array() == S(0)).all());
        FUZZ_REQUIRE(values(r) == S(0));
      } else if (pair_clean[static_cast<std::size_t>(k)] && in_bounds) {
        FUZZ_REQUIRE(all_finite(g.row(r)));
        FUZZ_REQUIRE(std::isfinite(values(r)));
        if (!contributes[ru]) FUZZ_REQUIRE((g.row(r).array() == S(0)).all());
      }
    }
  }
}

template <typename S, typename Task>
void fuzz_paired(FuzzedDataProvider& in, int profile) {
  const Batch<S> b = draw_batch<S>(in, profile, true);
  const CommonOptions<S> common = draw_common<S>(in);
  Task task;
  task.draw(in, common, b);
  MaskChoice<S> mask;
  mask.draw(in, b.rows());

  // The constructor.
  std::optional<typename Task::Loss> made;
  EXPECT(common_valid(common) && task.options_valid(), made.emplace(task.make()));
  if (!made) return;
  const auto& loss = *made;

  const Plan p = plan(b, common, task, mask);
  const RowFacts<S> f = facts(b.x);
  RowMat<S> g;  // the gradient as rows, whatever the output type
  S value = 0;
  Vec<S> values;
  const Eigen::VectorXi mask_ints = mask.as_ints();
  const Eigen::VectorXi* m = mask.present ? &mask_ints : nullptr;
  const auto& y = task.targets();
  if (b.rank == 3) {
    sequence_reference(loss, b, y, m, p.valid, value, g, values);
  } else if (!matrix_reference(in, loss, b, y, m, p.valid, value, g, values)) {
    check_terms<Task>(loss, b, y, m, value, p, f);
    other_input_kinds(in, loss, b, y, m, value, g);
  }
  if (b.rank == 2) {
    task.other_forms(loss, b.x, m, p.valid, value);
    mask.other_forms(loss, b.x, y, p.valid, value);
  }
  if (!p.valid) return;
  if (b.rank == 2) other_output_kinds(in, loss, b.x, y, m, g, values);

  if (verbose) std::fprintf(stderr, "%s rank %d d0 %ld t %ld\n", __PRETTY_FUNCTION__, b.rank, static_cast<long>(b.d0), static_cast<long>(b.t));
  note("alpha", static_cast<double>(common.alpha));
  note("layout (0 interleaved)", static_cast<double>(common.layout));
  note("normalization", static_cast<double>(common.normalization));
  note("value", static_cast<double>(value));
  task.describe();
  show("logits", b.x);
  show("targets", task.targets());
  show("mask", mask.as_ints());
  show("gradient", g);
  show("per-row values", values);
  check_results(b, common, task, p, f, value, g, values);
}

}  // namespace fuzz
