#!/usr/bin/env bash
# Builds rdrop_torch_bench (needs libtorch: Debian's libtorch-dev), runs the
# libtorch benchmarks of issue 14 with N interleaved repetitions, keeps the
# JSON in bench/results/ and prints a markdown table (fastest repetition and
# median of each) and the issue's ratios, taken of the fastest repetitions
# (the medians' beside them; bench/run_bench.sh says why).
#
#   bench/run_torch_bench.sh [--repetitions N] [--filter REGEX] [--build-dir DIR]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
build="$root/build-bench"
repetitions=3
filter="."
while [[ $# -gt 0 ]]; do
  case "$1" in
    --repetitions) repetitions="$2"; shift 2 ;;
    --filter) filter="$2"; shift 2 ;;
    --build-dir) build="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "run_torch_bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DRDROP_BUILD_TESTS=OFF \
      -DRDROP_BUILD_EXAMPLES=OFF -DRDROP_BUILD_BENCHMARKS=ON >/dev/null
if ! cmake --build "$build" --target rdrop_torch_bench -j"$(nproc)" >/dev/null; then
  echo "run_torch_bench.sh: cannot build rdrop_torch_bench (is libtorch-dev installed?)" >&2
  exit 1
fi

results="$here/results"
mkdir -p "$results"
stamp="$(date +%Y%m%d-%H%M%S)"
json="$results/torch_bench-$stamp.json"
table="$results/torch_table-$stamp.md"
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$build/bench/rdrop_torch_bench" --benchmark_filter="$filter" --benchmark_repetitions="$repetitions" \
  --benchmark_enable_random_interleaving=true --benchmark_display_aggregates_only=true \
  --benchmark_out="$json" --benchmark_out_format=json >&2

/usr/bin/python3 - "$json" "$table" <<'PY'
import json, sys
path, table_path = sys.argv[1:3]
report = json.load(open(path))
UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
runs, medians, order, peaks = {}, {}, [], {}
for b in report["benchmarks"]:
    name, t = b["run_name"], b["real_time"] * UNIT[b["time_unit"]]
    if b.get("run_type") == "aggregate":
        if b.get("aggregate_name") == "median":
            medians[name] = t
        continue
    if name not in runs:
        runs[name] = []
        order.append(name)
    runs[name].append(t)
    if "peak_bytes" in b:  # per repetition (bench_torch.cpp's own counter)
        peaks[name] = max(peaks.get(name, 0), b["peak_bytes"])
mins = {n: min(ts) for n, ts in runs.items()}
FORMS = ["Official", "LogTarget", "Analytic", "Adapter", "EigenCall"]
def key(name):
    parts = name.split("/")
    form = parts[0].replace("BM_Torch_", "")
    return (int(parts[2]) if len(parts) > 3 else 0, parts[3] if len(parts) > 3 else "",
            FORMS.index(form) if form in FORMS else len(FORMS), name)
order.sort(key=key)

def fmt(s):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"

ctx = report.get("context", {})
reps = report["benchmarks"][0].get("repetitions", "?")
out = [f"Run {ctx.get('date', '?')} on {ctx.get('num_cpus', '?')} CPUs; {reps} interleaved repetitions per "
       "benchmark, forward + backward, wall-clock time.", f"BLAS: {ctx.get('blas', '?')}.", "",
       "| benchmark | min | median | peak memory |", "|---|---:|---:|---:|"]
for n in order:
    peak = f"{peaks[n] / 2**20:.1f} MiB" if n in peaks else "-"
    out.append(f"| `{n}` | {fmt(mins[n])} | {fmt(medians[n]) if n in medians else '-'} | {peak} |")
checks = []
for shape in ("4096/1000", "1024/32000"):
    for threads in (1, 2):
        k = lambda form: f"BM_Torch_{form}/{shape}/{threads}"
        if not all(k(f) in mins for f in ("Official", "LogTarget", "Analytic", "Adapter", "EigenCall")):
            continue
        def ratios(t):
            fastest = min(t[k("LogTarget")], t[k("Analytic")])
            return (fastest / t[k("Adapter")], t[k("Official")] / t[k("Adapter")], t[k("Adapter")] / t[k("EigenCall")])
        by_min, by_median = ratios(mins), ratios(medians)
        for i, (what, op, target) in enumerate((("fastest torch form / adapter", ">=", 5.0),
                                                ("official form / adapter", ">=", 30.0),
                                                ("adapter / Eigen call", "<=", 1.2))):
            ok = by_min[i] >= target if op == ">=" else by_min[i] <= target
            checks.append(f"| {what}, {shape}, {threads} thread(s) | {by_min[i]:.2f} | {by_median[i]:.2f} | "
                          f"{op} {target:g} | {'pass' if ok else 'FAIL'} |")
if checks:
    out += ["", "| ratio (issue 14 targets) | of mins | of medians | target | |", "|---|---:|---:|---:|---|"] + checks
# Issue 22's figures: an evaluation call against a training call, the
# 2-byte gradient at grad_output's scale (two sweeps) against one fused
# sweep, linear_loss with its chunk buffers kept against freed every step.
costs = []
pairs22 = [("AdapterEval", "Adapter", "evaluation / training call"),
           ("AdapterBF16", "EigenCallBF16", "bf16 adapter, loss x 1024 / one fused bf16 sweep"),
           ("LinearReused", "LinearFresh", "linear_loss step, buffers kept / freed")]
for a, b, what in pairs22:
    for n in order:
        if not n.startswith(f"BM_Torch_{a}/"):
            continue
        m = n.replace(f"BM_Torch_{a}/", f"BM_Torch_{b}/", 1)
        if m not in mins:
            continue
        args = n.split("/", 1)[1]
        peak = f"{peaks[n] / 2**20:.1f} / {peaks[m] / 2**20:.1f} MiB" if n in peaks and m in peaks else "-"
        med = f"{medians[n] / medians[m]:.2f}" if n in medians and m in medians else "-"
        costs.append(f"| {what}, {args} | {mins[n] / mins[m]:.2f} | {med} | {peak} |")
if costs:
    out += ["", "| ratio (issue 22) | time, of mins | of medians | peak memory |", "|---|---:|---:|---:|"] + costs
# Issue 23's targets for the output layer from hidden states.
linear = []
for shape in ("5120/256/32000", "1280/256/128256"):
    for threads in (1, 2):
        k = lambda form: f"BM_TorchLinear_{form}/{shape}/{threads}"
        rows = (("float Fused / float ProductsOnly", "Fused_float", "ProductsOnly_float", 1.10, False),
                ("bf16 Fused / float Fused", "Fused_bf16", "Fused_float", 0.6, False),
                ("float Fused / float Composition, peak memory", "Fused_float", "Composition_float", 1 / 8, True),
                ("bf16 Fused / bf16 Composition, peak memory", "Fused_bf16", "Composition_bf16", 1 / 8, True),
                ("float ATen path / float Fused", "ATenPath_float", "Fused_float", 1.5, False),
                ("float ATen path / float Composition, peak memory", "ATenPath_float", "Composition_float", 1 / 8, True),
                ("float Fused, Eigen products / float Fused", "FusedEigen_float", "Fused_float", None, False),
                ("float Composition / float Fused", "Composition_float", "Fused_float", None, False))
        for what, a, b, target, memory in rows:
            if k(a) not in mins or k(b) not in mins:
                continue
            if memory:
                if k(a) not in peaks or k(b) not in peaks:
                    continue
                r_min = r_med = peaks[k(a)] / max(peaks[k(b)], 1)
            else:
                r_min = mins[k(a)] / mins[k(b)]
                r_med = medians[k(a)] / medians[k(b)] if k(a) in medians and k(b) in medians else float("nan")
            verdict = "-" if target is None else ("pass" if r_min <= target else "FAIL")
            linear.append(f"| {what}, {shape}, {threads} thread(s) | {r_min:.3f} | {r_med:.3f} | "
                          f"{'-' if target is None else f'<= {target:.3g}'} | {verdict} |")
if linear:
    out += ["", "| ratio (issue 23) | of mins | of medians | target | |", "|---|---:|---:|---:|---|"] + linear
text = "\n".join(out) + "\n"
open(table_path, "w").write(text)
print(text)
PY
echo "JSON:  $json" >&2
echo "table: $table" >&2
