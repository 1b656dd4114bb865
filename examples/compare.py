#!/usr/bin/python3
"""Plain dropout against R-Drop on Fashion-MNIST, several seeds, supervised
and semi-supervised, with the classifier example (rdrop_classifier).

Prints a table (mean ± std over seeds of the test accuracy, the MC-average
accuracy and the consistency KL; seconds per epoch) and draws the test
accuracy per epoch of both methods with gnuplot. Everything lands in
--out (default examples/results): one CSV and log per run, summary.md,
accuracy_per_epoch.png.

    nice -n 10 examples/compare.py --classifier build/examples/rdrop_classifier

Standard library only. Runs are sequential and single-threaded by default
(--threads 1) so that the timings compare like with like.
"""

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classifier", default=os.path.join(HERE, "..", "build", "examples", "rdrop_classifier"),
                   help="path of the rdrop_classifier binary")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    p.add_argument("--alpha", type=float, default=1.0, help="R-Drop's alpha (the baseline uses 0)")
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--labeled", type=int, default=1000, help="labels kept in the semi-supervised setting")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mc-passes", type=int, default=10)
    p.add_argument("--limit", type=int, default=0, help="training samples (0: all); for a quick try")
    p.add_argument("--data", default=None, help="Fashion-MNIST directory (the classifier's default if omitted)")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--resume", action="store_true", help="reuse the results of runs that already finished")
    return p.parse_args()


SETTINGS = [("supervised", None), ("semi-supervised", "labeled")]
METHODS = [("dropout", 0.0), ("R-Drop", None)]


def run_one(args, setting, method, alpha, seed):
    """Runs the classifier once; returns its key=value summary and per-epoch rows."""
    name = f"{setting}_{method}_seed{seed}".replace("-", "").lower()
    csv_path = os.path.join(args.out, name + ".csv")
    log_path = os.path.join(args.out, name + ".log")
    command = [args.classifier, "--alpha", str(alpha), "--dropout", str(args.dropout), "--epochs", str(args.epochs),
               "--batch", str(args.batch), "--seed", str(seed), "--threads", str(args.threads),
               "--mc-passes", str(args.mc_passes), "--csv", csv_path]
    if setting == "semi-supervised":
        command += ["--labeled", str(args.labeled)]
    if args.data:
        command += ["--data", args.data]
    if args.limit:
        command += ["--limit", str(args.limit)]
    if not (args.resume and finished(log_path)):
        print(f"  {setting:16} {method:8} seed {seed} ...", end="", flush=True)
        start = time.time()
        with open(log_path, "w") as log:
            log.write("$ " + " ".join(command) + "\n")
            log.flush()
            rc = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
        if rc != 0:
            sys.exit(f"\n{' '.join(command)} failed with exit code {rc}; see {log_path}")
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


def finished(log_path):
    if not os.path.exists(log_path):
        return False
    with open(log_path) as f:
        lines = f.read().strip().splitlines()
    return bool(lines) and lines[-1].startswith("test_accuracy=")


def mean_std(values, digits):
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main():
    args = parse_args()
    if not os.access(args.classifier, os.X_OK):
        sys.exit(f"no classifier binary at {args.classifier}; build the project first or pass --classifier")
    os.makedirs(args.out, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{len(SETTINGS) * len(METHODS) * len(seeds)} runs of {args.epochs} epochs, results in {args.out}")

    results = {}
    for setting, _ in SETTINGS:
        for method, alpha in METHODS:
            a = args.alpha if alpha is None else alpha
            results[(setting, method)] = [run_one(args, setting, method, a, seed) for seed in seeds]

    header = ("| setting | method | test accuracy | MC-average accuracy | consistency KL | s / epoch | CPU s / epoch |\n"
              "|---|---|---|---|---|---|---|")
    rows = []
    for setting, _ in SETTINGS:
        for method, alpha in METHODS:
            runs = results[(setting, method)]
            label = f"{method} (α = {args.alpha:g})" if alpha is None else f"{method} (α = 0)"
            acc = [r[0]["test_accuracy"] for r in runs]
            mc = [r[0]["mc_accuracy"] for r in runs]
            kl = [r[0]["consistency_kl"] for r in runs]
            sec = [r[0]["seconds_per_epoch"] for r in runs]
            cpu = [r[0]["cpu_seconds_per_epoch"] for r in runs]
            rows.append(f"| {setting} | {label} | {mean_std(acc, 4)} | {mean_std(mc, 4)} | {mean_std(kl, 4)} | "
                        f"{statistics.mean(sec):.1f} | {statistics.mean(cpu):.1f} |")
    shares = [r[0]["loss_share"] for runs in results.values() for r in runs]
    sup_base = statistics.mean(r[0]["cpu_seconds_per_epoch"] for r in results[("supervised", "dropout")])
    sup_rdrop = statistics.mean(r[0]["cpu_seconds_per_epoch"] for r in results[("supervised", "R-Drop")])
    notes = [
        f"{len(seeds)} seeds ({args.seeds}), {args.epochs} epochs, batch {args.batch}, dropout {args.dropout}, "
        f"--threads {args.threads}; semi-supervised: {args.labeled} labels. MC average over "
        f"{args.mc_passes} dropout-on passes; consistency KL = KL(MC average ‖ dropout-off prediction) "
        f"on the test set.",
        f"Supervised epoch time, R-Drop / dropout (CPU time): {sup_rdrop / sup_base:.2f}x. "
        f"Loss + gradient: at most {100 * max(shares):.2f}% of the step time.",
    ]
    table = "\n".join([header] + rows)
    print()
    print(table)
    print()
    for n in notes:
        print(n)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(table + "\n\n" + "\n\n".join(notes) + "\n")

    plot(args, results, seeds)


def plot(args, results, seeds):
    """Test accuracy per epoch, mean ± std over seeds, one panel per setting."""
    data_path = os.path.join(args.out, "accuracy_per_epoch.dat")
    with open(data_path, "w") as f:
        for setting, _ in SETTINGS:
            f.write(f"# {setting}: epoch, dropout mean, std, R-Drop mean, std\n")
            for e in range(args.epochs):
                cells = [str(e + 1)]
                for method, _ in METHODS:
                    acc = [float(r[1][e]["test_accuracy"]) for r in results[(setting, method)]]
                    cells += [f"{statistics.mean(acc):.5f}", f"{statistics.stdev(acc) if len(acc) > 1 else 0:.5f}"]
                f.write(" ".join(cells) + "\n")
            f.write("\n\n")  # gnuplot: a new data block per setting
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        print(f"gnuplot not found (Debian: gnuplot-nox); the data is in {data_path}")
        return
    png = os.path.join(args.out, "accuracy_per_epoch.png")
    script = f"""
set terminal pngcairo size 1100,420 font ",10"
set output "{png}"
set multiplot layout 1,2 title "Fashion-MNIST, MLP 784-512-512-10: test accuracy per epoch (mean ± std over {len(seeds)} seeds)"
set xlabel "epoch"
set ylabel "test accuracy (dropout off)"
set key bottom right
set grid
set xrange [0.5:{args.epochs + 0.5}]
set xtics 1
set title "supervised ({args.limit or 60000} labels)"
plot "{data_path}" index 0 using 1:2:3 with yerrorlines lw 2 title "dropout", \\
     "" index 0 using 1:4:5 with yerrorlines lw 2 title "R-Drop (alpha {args.alpha:g})"
set title "semi-supervised ({args.labeled} labels)"
plot "{data_path}" index 1 using 1:2:3 with yerrorlines lw 2 title "dropout", \\
     "" index 1 using 1:4:5 with yerrorlines lw 2 title "R-Drop (alpha {args.alpha:g})"
unset multiplot
"""
    subprocess.run([gnuplot], input=script, text=True, check=True)
    print(f"plot: {png}")


if __name__ == "__main__":
    main()
