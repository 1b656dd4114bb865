#!/usr/bin/python3
"""Plain dropout against R-Drop on Fashion-MNIST: a sweep over alpha and
seeds, supervised and semi-supervised, with the classifier example
(rdrop_classifier).

Every (setting, alpha, seed) is one run of the classifier; alpha = 0 is plain
dropout. Prints a table per setting (mean ± std over seeds of the test
accuracy, the MC-average accuracy, the consistency KL and CPU seconds per
epoch; the paired difference to alpha = 0, seed by seed, with a 95 %
t-interval) and draws the test accuracy per epoch, one line per alpha, with
gnuplot. Everything lands in --out (default examples/results): one CSV and
log per run, runs.csv (one line per finished run), summary.md,
accuracy_per_epoch.dat and accuracy_per_epoch.png.

Resumable: a run whose log ends with its `test_accuracy=` line is not run
again (--fresh runs everything anew), so the sweep can be stopped and
started again at any time; a run another process is doing is skipped, so
two processes can share the sweep (--seeds in opposite orders). Niced in
the background:

    nice -n 19 examples/compare.py --classifier build/examples/rdrop_classifier

Standard library only. Runs are sequential and single-threaded by default
(--threads 1) so that the timings compare like with like.
"""

import argparse
import csv
import math
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom.
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def number_list(text, kind):
    return [kind(v) for v in text.split(",") if v.strip()]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classifier", default=os.path.join(HERE, "..", "build", "examples", "rdrop_classifier"),
                   help="path of the rdrop_classifier binary")
    p.add_argument("--epochs", type=int, default=20, help="epochs of every run (default 20)")
    p.add_argument("--seeds", default="1,2,3,4,5", help="comma-separated seeds (default 1,2,3,4,5)")
    p.add_argument("--alphas", default="0,0.5,1,2,4",
                   help="comma-separated alphas of the supervised setting; 0 is plain dropout (default 0,0.5,1,2,4)")
    p.add_argument("--semi-alphas", default="0,1,4",
                   help="comma-separated alphas of the semi-supervised setting (default 0,1,4; empty: skip it)")
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--labeled", type=int, default=1000, help="labels kept in the semi-supervised setting")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mc-passes", type=int, default=10)
    p.add_argument("--limit", type=int, default=0, help="training samples (0: all); for a quick try")
    p.add_argument("--data", default=None, help="Fashion-MNIST directory (the classifier's default if omitted)")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--fresh", action="store_true", help="run again the runs that already finished")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing; report the runs that finished (a partial sweep shows what it has)")
    return p.parse_args()


def settings_of(args):
    out = [("supervised", number_list(args.alphas, float))]
    semi = number_list(args.semi_alphas, float)
    if semi:
        out.append(("semi-supervised", semi))
    return out


def run_name(setting, alpha, seed):
    return f"{setting.replace('-', '')}_alpha{alpha:g}_seed{seed}".replace(".", "p")


def run_one(args, setting, alpha, seed):
    """Runs the classifier once (unless it finished before); returns its
    key=value summary and per-epoch rows, or None if it has not finished."""
    name = run_name(setting, alpha, seed)
    csv_path = os.path.join(args.out, name + ".csv")
    log_path = os.path.join(args.out, name + ".log")
    command = [args.classifier, "--alpha", f"{alpha:g}", "--dropout", str(args.dropout), "--epochs",
               str(args.epochs), "--batch", str(args.batch), "--seed", str(seed), "--threads", str(args.threads),
               "--mc-passes", str(args.mc_passes), "--csv", csv_path]
    if setting == "semi-supervised":
        command += ["--labeled", str(args.labeled)]
    if args.data:
        command += ["--data", args.data]
    if args.limit:
        command += ["--limit", str(args.limit)]
    done = finished(log_path, args.epochs)
    if args.report_only and not done:
        return None
    if not done and claimed(log_path + ".partial"):
        print(f"  {setting:16} alpha {alpha:<4g} seed {seed}: running in another process, skipped")
        return None
    if args.fresh or not done:
        print(f"  {setting:16} alpha {alpha:<4g} seed {seed} ...", end="", flush=True)
        start = time.time()
        partial = log_path + ".partial"  # a run stopped halfway leaves no finished-looking log
        with open(partial, "w") as log:
            log.write("$ " + " ".join(command) + "\n")
            log.flush()
            rc = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
        if rc != 0:
            sys.exit(f"\n{' '.join(command)} failed with exit code {rc}; see {partial}")
        os.replace(partial, log_path)
        print(f" {time.time() - start:.0f} s")
    summary = {}
    with open(log_path) as log:
        for line in log:
            key, sep, value = line.strip().partition("=")
            if sep and key.replace("_", "").isalnum():
                summary[key] = float(value)
    with open(csv_path) as f:
        epochs = list(csv.DictReader(f))
    return summary, epochs


def claimed(partial_path):
    """Whether another sweep process is running this run now: its partial log
    was written in the last five minutes (the classifier logs every epoch).
    Lets two processes share one sweep, e.g. one per core: --seeds 1,2,3,4,5
    and --seeds 5,4,3,2,1."""
    try:
        return time.time() - os.path.getmtime(partial_path) < 300
    except OSError:
        return False


def finished(log_path, epochs):
    if not os.path.exists(log_path):
        return False
    with open(log_path) as f:
        text = f.read()
    lines = text.strip().splitlines()
    return bool(lines) and lines[-1].startswith("test_accuracy=") and f"--epochs {epochs} " in lines[0]


def mean_std(values, digits):
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def paired_interval(differences):
    """Mean of the seed-by-seed differences and its 95 % t-interval half-width."""
    n = len(differences)
    m = statistics.mean(differences)
    if n < 2:
        return m, float("nan")
    t = T975[n - 2] if n - 1 <= len(T975) else 1.96
    return m, t * statistics.stdev(differences) / math.sqrt(n)


def report(args, settings, seeds, results):
    lines = []
    for setting, alphas in settings:
        lines.append(f"### {setting}\n")
        lines.append("| α | runs | test accuracy | Δ to α = 0 (95 % CI) | MC-average accuracy | consistency KL "
                     "| CPU s / epoch | s / epoch |")
        lines.append("|---|---|---|---|---|---|---|---|")
        base = {s: r for s, r in results.get((setting, 0.0), {}).items()}
        for alpha in alphas:
            runs = results.get((setting, alpha), {})
            if not runs:
                lines.append(f"| {alpha:g} | 0 | | | | | | |")
                continue
            fin = [r[0] for r in runs.values()]
            acc = [f["test_accuracy"] for f in fin]
            delta = ""
            common = [s for s in runs if s in base]
            if alpha != 0.0 and common:
                d = [runs[s][0]["test_accuracy"] - base[s][0]["test_accuracy"] for s in common]
                m, h = paired_interval(d)
                delta = f"{100 * m:+.2f} pt" + ("" if math.isnan(h) else f" ({100 * (m - h):+.2f}, {100 * (m + h):+.2f})")
                delta += "" if len(common) == len(seeds) else f" [{len(common)} seeds]"
            lines.append(
                f"| {alpha:g} | {len(fin)} | {mean_std(acc, 4)} | {delta} | {mean_std([f['mc_accuracy'] for f in fin], 4)} | "
                f"{mean_std([f['consistency_kl'] for f in fin], 4)} | "
                f"{mean_std([f['cpu_seconds_per_epoch'] for f in fin], 1)} | "
                f"{statistics.mean(f['seconds_per_epoch'] for f in fin):.1f} |")
        lines.append("")
    lines.append(
        f"Seeds {args.seeds}, {args.epochs} epochs, batch {args.batch}, dropout {args.dropout}, --threads "
        f"{args.threads}; semi-supervised: {args.labeled} labels (the other samples carry the KL term only). "
        f"Δ: the mean over seeds of (accuracy at α − accuracy at α = 0, same seed), in points, with a 95 % "
        f"Student-t interval. MC average over {args.mc_passes} dropout-on passes; consistency KL = "
        f"KL(MC average ‖ dropout-off prediction) on the test set.")
    return "\n".join(lines) + "\n"


def write_runs_csv(args, results):
    path = os.path.join(args.out, "runs.csv")
    keys = ["test_accuracy", "mc_accuracy", "consistency_kl", "seconds_per_epoch", "cpu_seconds_per_epoch",
            "loss_share"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["setting", "alpha", "seed", "epochs"] + keys)
        for (setting, alpha), runs in results.items():
            for seed, (fin, _) in sorted(runs.items()):
                w.writerow([setting, f"{alpha:g}", seed, args.epochs] + [fin.get(k, "") for k in keys])


def main():
    args = parse_args()
    if not args.report_only and not os.access(args.classifier, os.X_OK):
        sys.exit(f"no classifier binary at {args.classifier}; build the project first or pass --classifier")
    os.makedirs(args.out, exist_ok=True)
    seeds = number_list(args.seeds, int)
    settings = settings_of(args)
    total = sum(len(a) for _, a in settings) * len(seeds)
    print(f"{total} runs of {args.epochs} epochs, results in {args.out}")

    # Seed-major order: a sweep stopped halfway has every alpha for its first seeds.
    results = {}
    for seed in seeds:
        for setting, alphas in settings:
            for alpha in alphas:
                r = run_one(args, setting, alpha, seed)
                if r is not None:
                    results.setdefault((setting, alpha), {})[seed] = r

    text = report(args, settings, seeds, results)
    print()
    print(text)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(text)
    write_runs_csv(args, results)
    plot(args, settings, seeds, results)


def plot(args, settings, seeds, results):
    """Test accuracy per epoch, mean over seeds, one line per alpha, one panel per setting."""
    data_path = os.path.join(args.out, "accuracy_per_epoch.dat")
    with open(data_path, "w") as f:
        for setting, alphas in settings:
            f.write(f"# {setting}: epoch, then mean and std over seeds for alpha = "
                    f"{', '.join(f'{a:g}' for a in alphas)}\n")
            for e in range(args.epochs):
                cells = [str(e + 1)]
                for alpha in alphas:
                    runs = results.get((setting, alpha), {})
                    acc = [float(r[1][e]["test_accuracy"]) for r in runs.values() if len(r[1]) > e]
                    if acc:
                        cells += [f"{statistics.mean(acc):.5f}", f"{statistics.stdev(acc) if len(acc) > 1 else 0:.5f}"]
                    else:
                        cells += ["NaN", "NaN"]
                f.write(" ".join(cells) + "\n")
            f.write("\n\n")  # gnuplot: a new data block per setting
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        print(f"gnuplot not found (Debian: gnuplot-nox); the data is in {data_path}")
        return
    png = os.path.join(args.out, "accuracy_per_epoch.png")
    panels = []
    for index, (setting, alphas) in enumerate(settings):
        labels = f"{args.limit or 60000} labels" if setting == "supervised" else f"{args.labeled} labels"
        curves = []
        for j, alpha in enumerate(alphas):
            name = "dropout (alpha 0)" if alpha == 0 else f"R-Drop, alpha {alpha:g}"
            source = f'"{data_path}"' if j == 0 else '""'
            curves.append(f'{source} index {index} using 1:{2 + 2 * j} with linespoints lw 2 title "{name}"')
        panels.append(f'set title "{setting} ({labels})"\nplot ' + ", \\\n     ".join(curves))
    script = f"""
set terminal pngcairo size 1200,460 font ",10"
set output "{png}"
set multiplot layout 1,{len(settings)} title "Fashion-MNIST, MLP 784-512-512-10: test accuracy per epoch (mean over {len(seeds)} seeds)"
set xlabel "epoch"
set ylabel "test accuracy (dropout off)"
set key bottom right
set grid
set xrange [0.5:{args.epochs + 0.5}]
set xtics 2
{chr(10).join(panels)}
unset multiplot
"""
    subprocess.run([gnuplot], input=script, text=True, check=True)
    print(f"plot: {png}")


if __name__ == "__main__":
    main()
