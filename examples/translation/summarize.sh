#!/usr/bin/env bash
# Summarizes the translation comparison (issue 24, item 6) from its raw
# results: every run directory under ROOT that holds an epochs.csv (written
# by rdrop_translation) and a train.log (written by compare.sh).
#
#   summarize.sh [--svg FILE] [--treatment LABEL] [--trend-epochs K] ROOT
#
# Prints a markdown report on stdout:
#   * one row per run: configuration, seed, epochs, best validation BLEU
#     (and its epoch), test BLEU, training hours;
#   * test BLEU mean ± std (sample std, n - 1) per configuration, over the
#     finished runs (a finished run: its train.log has a test_bleu=NUMBER line
#     after its last epoch line);
#   * the seed-by-seed difference of the treatment (default: the largest
#     alpha) minus every other configuration, with a 95 % t-interval
#     (mean ± t(0.975, n-1) · sd / sqrt(n), over the seeds both finished);
#   * the same at equal training time: for each seed the budget is the
#     smallest total training time (the train_cpu_seconds column summed, the
#     process's CPU time, so that waiting on a loaded or paused machine does
#     not count; train_seconds, the wall time, in CSVs without that column;
#     validation excluded either way) of that seed's finished runs; each run counts with
#     its best validation BLEU up to the epoch whose cumulative training
#     seconds are closest to the budget (the earlier epoch on a tie), as the
#     run would have selected its checkpoint had it stopped there;
#   * whether validation BLEU has stopped rising: per run, the least-squares
#     slope of validation BLEU against the epoch over its last K epochs
#     (--trend-epochs, default 10; all of them if fewer, none below 3), with
#     a 95 % t-interval (n - 2 degrees of freedom), and per configuration the
#     mean ± std of the finished runs' slopes.
# t quantiles come from a table up to 30 degrees of freedom; above, the
# normal's 1.96 (a window of more than 32 epochs, or more than 31 seeds).
# --svg FILE writes a plot of validation BLEU per epoch (a thin line per
# run, a thick one for the mean over the runs that reached that epoch, one
# colour per configuration), SVG drawn by awk (no gnuplot needed).
# POSIX awk only (Debian's default mawk).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
svg=""
treatment=""
trend_epochs=10
root=""
while (($#)); do
  case $1 in
    --svg) svg=${2:?--svg needs a file}; shift 2 ;;
    --treatment) treatment=${2:?--treatment needs a label, e.g. alpha=5}; shift 2 ;;
    --trend-epochs)
      trend_epochs=${2:?--trend-epochs needs a number of epochs}
      [[ $trend_epochs =~ ^[0-9]+$ ]] && ((10#$trend_epochs >= 3)) ||
        { echo "summarize.sh: --trend-epochs '$trend_epochs': a whole number of epochs, at least 3 (a slope and its interval need them)" >&2; exit 2; }
      trend_epochs=$((10#$trend_epochs)); shift 2 ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "summarize.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) [[ -z $root ]] || { echo "summarize.sh: one ROOT only" >&2; exit 2; }; root=$1; shift ;;
  esac
done
[[ -n $root ]] || { usage >&2; exit 2; }
[[ -d $root ]] || { echo "summarize.sh: no directory '$root'" >&2; exit 2; }

# One stream for awk: "R<TAB>run<TAB>finished<TAB>test_bleu" per run, then
# "E<TAB>run<TAB>csv row" per epoch.
stream() {
  local csv dir log finished bleu
  while IFS= read -r csv; do
    dir=$(dirname "$csv")
    log=$dir/train.log
    finished=0
    bleu=""
    if [[ -f $log ]]; then
      # Finished: a test_bleu= line after the last "epoch N/M:" line.
      bleu=$(awk '/^epoch [0-9]+\/[0-9]+:/ { b = "" } /^test_bleu=[0-9]/ { b = substr($0, 11) } END { print b }' "$log")
      [[ -n $bleu ]] && finished=1
    fi
    printf 'R\t%s\t%s\t%s\n' "${dir#"$root"/}" "$finished" "$bleu"
    awk -v run="${dir#"$root"/}" 'NR > 1 && NF { printf "E\t%s\t%s\n", run, $0 }' "$csv"
  done < <(find "$root" -name epochs.csv -type f | LC_ALL=C sort)
}

stream | awk -F'\t' -v svg="$svg" -v treatment="$treatment" -v K="$trend_epochs" '
function tq(df) {  # two-sided 95 % quantile of Student t (1.96, the normal quantile, above 30 df)
  if (df >= 1 && df <= 30) return T[df]
  return 1.96
}
function label_of(alpha, single) { return single == 1 ? "single-pass" : "alpha=" alpha }
function fmt(x) { return sprintf("%.2f", x) }
function sfmt(x) { return sprintf("%+.2f", x) }
# mean and sample std of the n values v[1..n] -> M, S
function stats(v, n,    i, s, ss) {
  s = 0; for (i = 1; i <= n; ++i) s += v[i]
  M = s / n
  ss = 0; for (i = 1; i <= n; ++i) ss += (v[i] - M) * (v[i] - M)
  S = n > 1 ? sqrt(ss / (n - 1)) : 0
}
# "mean ± std" of v[1..n]; mf, sf: printf formats of the two (default %.2f)
function mean_std(v, n, mf, sf) {
  if (n == 0) return "-"
  if (mf == "") mf = "%.2f"
  if (sf == "") sf = "%.2f"
  stats(v, n)
  return n > 1 ? sprintf(mf, M) " ± " sprintf(sf, S) : sprintf(mf, M) " (n = 1)"
}
function interval(v, n,    h) {  # paired differences
  if (n == 0) return "- | - | 0"
  stats(v, n)
  if (n == 1) return sfmt(M) " | (n = 1: no interval) | 1"
  h = tq(n - 1) * S / sqrt(n)
  return sfmt(M) " | [" sfmt(M - h) ", " sfmt(M + h) "] | " n
}
# Least-squares slope of validation BLEU over the last K epochs of run r (all if
# fewer) -> TB (BLEU per epoch), TH (95 % half-width), TM (epochs used);
# 0 when fewer than 3 epochs (an interval needs a residual degree of freedom).
function trend(r,    m, e, x, xm, ym, sxx, sxy, sse, d) {
  m = ne[r] < K ? ne[r] : K; TM = m
  if (m < 3) return 0
  xm = 0; ym = 0
  for (e = ne[r] - m + 1; e <= ne[r]; ++e) { xm += ep[r, e]; ym += vb[r, e] }
  xm /= m; ym /= m
  sxx = 0; sxy = 0
  for (e = ne[r] - m + 1; e <= ne[r]; ++e) { x = ep[r, e] - xm; sxx += x * x; sxy += x * (vb[r, e] - ym) }
  TB = sxy / sxx
  sse = 0
  for (e = ne[r] - m + 1; e <= ne[r]; ++e) { d = vb[r, e] - ym - TB * (ep[r, e] - xm); sse += d * d }
  TH = tq(m - 2) * sqrt(sse / (m - 2) / sxx)
  return 1
}
BEGIN {
  split("12.706 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262 2.228 2.201 2.179 2.160 2.145 2.131 2.120 2.110 2.101 2.093 2.086 2.080 2.074 2.069 2.064 2.060 2.056 2.052 2.048 2.045 2.042", T, " ")
  nruns = 0; ncfg = 0
}
$1 == "R" { ++nruns; run[nruns] = $2; idx[$2] = nruns; fin[nruns] = $3; test[nruns] = $4; ne[nruns] = 0; next }
$1 == "E" {
  r = idx[$2]; n = split($3, c, ",")
  if (n < 11) next
  # Every number finite: a NaN or inf would pass into means and the plot.
  for (k = 1; k <= n; ++k) if (c[k] !~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/) {
    printf "summarize.sh: %s/epochs.csv: field %d of epoch %s is \"%s\", not a finite number\n", $2, k, c[1], c[k] > "/dev/stderr"
    bad = 1; exit 1
  }
  if (ne[r] == 0) {
    lab = label_of(c[2] + 0, c[3] + 0); cfg[r] = lab; seed[r] = c[4] + 0
    if (!(lab in cfgi)) { ++ncfg; cfgi[lab] = ncfg; cfgname[ncfg] = lab; cfgalpha[ncfg] = c[3] == 1 ? -1 : c[2] + 0 }
  }
  e = ++ne[r]
  ep[r, e] = c[1] + 0; vb[r, e] = c[7] + 0; wall[r, e] = c[8] + 0; cpus[r, e] = n >= 12 ? c[12] + 0 : -1
  next
}
END {
  if (bad) exit 1
  if (nruns == 0) { print "no run found (no epochs.csv under the root)" > "/dev/stderr"; exit 1 }
  # Training time: CPU seconds when every run has them, else wall seconds
  # for all (never the CPU time of one run against the wall time of another).
  allcpu = 1
  for (r = 1; r <= nruns; ++r) for (e = 1; e <= ne[r]; ++e) if (cpus[r, e] < 0) allcpu = 0
  for (r = 1; r <= nruns; ++r) for (e = 1; e <= ne[r]; ++e)
    cum[r, e] = (e > 1 ? cum[r, e - 1] : 0) + (allcpu ? cpus[r, e] : wall[r, e])
  # One run per configuration and seed: a copy of a run would count twice.
  for (r = 1; r <= nruns; ++r) if (ne[r] > 0) {
    if ((cfg[r], seed[r]) in owner) {
      printf "summarize.sh: %s and %s are both %s, seed %d: one run per configuration and seed\n", run[owner[cfg[r], seed[r]]], run[r], cfg[r], seed[r] > "/dev/stderr"
      exit 1
    }
    owner[cfg[r], seed[r]] = r
  }
  # Configurations in order: single-pass, then the alphas ascending.
  for (i = 2; i <= ncfg; ++i) for (j = i; j > 1 && cfgalpha[j] < cfgalpha[j - 1]; --j) {
    t = cfgname[j]; cfgname[j] = cfgname[j - 1]; cfgname[j - 1] = t
    t = cfgalpha[j]; cfgalpha[j] = cfgalpha[j - 1]; cfgalpha[j - 1] = t
  }
  for (i = 1; i <= ncfg; ++i) cfgi[cfgname[i]] = i
  if (treatment == "") treatment = cfgname[ncfg]
  if (!(treatment in cfgi)) {
    s = ""; for (i = 1; i <= ncfg; ++i) s = s (i > 1 ? ", " : "") cfgname[i]
    print "summarize.sh: --treatment " treatment ": no such configuration (there are: " s ")" > "/dev/stderr"; exit 1
  }
  # Runs in order: seed, then configuration.
  for (r = 1; r <= nruns; ++r) order[r] = r
  for (i = 2; i <= nruns; ++i) for (j = i; j > 1; --j) {
    a = order[j]; b = order[j - 1]
    if (seed[a] < seed[b] || (seed[a] == seed[b] && cfgi[cfg[a]] < cfgi[cfg[b]])) { order[j] = b; order[j - 1] = a } else break
  }

  # Equal wall-clock time: per seed, the smallest total of the finished runs.
  for (r = 1; r <= nruns; ++r) if (fin[r] && ne[r] > 0) {
    tot = cum[r, ne[r]]
    if (!(seed[r] in budget) || tot < budget[seed[r]]) budget[seed[r]] = tot
  }
  for (r = 1; r <= nruns; ++r) {
    best[r] = -1; bestep[r] = 0
    for (e = 1; e <= ne[r]; ++e) if (vb[r, e] > best[r]) { best[r] = vb[r, e]; bestep[r] = ep[r, e] }
    if (fin[r] && ne[r] > 0) {
      B = budget[seed[r]]; k = 1
      for (e = 2; e <= ne[r]; ++e) {
        d1 = cum[r, e] - B; if (d1 < 0) d1 = -d1
        d0 = cum[r, k] - B; if (d0 < 0) d0 = -d0
        if (d1 < d0) k = e
      }
      eq[r] = -1; for (e = 1; e <= k; ++e) if (vb[r, e] > eq[r]) eq[r] = vb[r, e]
      eqep[r] = ep[r, k]; eqsec[r] = cum[r, k]
      have[cfg[r], seed[r]] = r
    }
  }

  print "### Runs"
  print ""
  print "| configuration | seed | epochs | best valid BLEU (epoch) | test BLEU | training hours | equal time: epoch, valid BLEU |"
  print "|---|---|---|---|---|---|---|"
  for (i = 1; i <= nruns; ++i) {
    r = order[i]
    if (ne[r] == 0) { print "| " run[r] " | | 0 | | | | |"; continue }
    printf "| %s | %d | %d | %s (%d) | %s | %.2f | %s |\n", cfg[r], seed[r], ep[r, ne[r]], fmt(best[r]), bestep[r],
      fin[r] ? test[r] : "unfinished", cum[r, ne[r]] / 3600, fin[r] ? eqep[r] ", " fmt(eq[r]) : "-"
  }
  print ""
  print "### Test BLEU (finished runs; mean ± sample std over seeds)"
  print ""
  print "| configuration | runs | test BLEU | valid BLEU at equal training time |"
  print "|---|---|---|---|"
  for (i = 1; i <= ncfg; ++i) {
    n = 0
    for (r = 1; r <= nruns; ++r) if (fin[r] && cfg[r] == cfgname[i]) { ++n; v[n] = test[r] + 0; w[n] = eq[r] }
    x = mean_std(v, n); y = mean_std(w, n)
    printf "| %s | %d | %s | %s |\n", cfgname[i], n, x, y
  }
  print ""
  print "### " treatment " minus each other configuration, seed by seed (95 % t-interval)"
  print ""
  print "| difference | test BLEU | 95 % interval | seeds | valid BLEU at equal training time | 95 % interval | seeds |"
  print "|---|---|---|---|---|---|---|"
  for (i = 1; i <= ncfg; ++i) {
    if (cfgname[i] == treatment) continue
    n = 0
    for (r = 1; r <= nruns; ++r) if (fin[r] && cfg[r] == treatment && ((cfgname[i], seed[r]) in have)) {
      o = have[cfgname[i], seed[r]]; ++n; v[n] = test[r] - test[o]; w[n] = eq[r] - eq[o]
    }
    x = interval(v, n); y = interval(w, n)
    printf "| %s - %s | %s | %s |\n", treatment, cfgname[i], x, y
  }
  print ""
  ns = 0
  for (sd in budget) { ++ns; sl[ns] = sd + 0 }
  for (i = 2; i <= ns; ++i) for (j = i; j > 1 && sl[j] < sl[j - 1]; --j) { t = sl[j]; sl[j] = sl[j - 1]; sl[j - 1] = t }
  s = ""
  for (i = 1; i <= ns; ++i) s = s (i > 1 ? ", " : "") "seed " sl[i] ": " sprintf("%.0f", budget[sl[i]]) " s"
  print "Equal training time: per seed, the budget is the shortest total training time (" (allcpu ? "CPU seconds, train_cpu_seconds" : "wall seconds, train_seconds: not every CSV has train_cpu_seconds") "; validation excluded) of its finished runs (" s "); each run counts with its best validation BLEU up to its epoch closest to that budget. t quantiles: 95 % two-sided, n - 1 degrees of freedom."
  print ""
  print "### Has validation BLEU stopped rising? Slope over the last " K " epochs"
  print ""
  print "| configuration | seed | epochs | slope (BLEU per epoch) | 95 % interval |"
  print "|---|---|---|---|---|"
  for (r = 1; r <= nruns; ++r) if (hastrend[r] = trend(r)) { slope[r] = TB; half[r] = TH; used[r] = TM }
  for (i = 1; i <= nruns; ++i) {
    r = order[i]
    if (ne[r] == 0) continue
    if (!hastrend[r]) { printf "| %s | %d | %d | (fewer than 3 epochs) | |\n", cfg[r], seed[r], ne[r]; continue }
    printf "| %s | %d | %d-%d | %+.3f | [%+.3f, %+.3f] |\n", cfg[r], seed[r], ep[r, ne[r] - used[r] + 1], ep[r, ne[r]], slope[r], slope[r] - half[r], slope[r] + half[r]
  }
  print ""
  print "| configuration | finished runs | mean slope ± std over seeds |"
  print "|---|---|---|"
  for (i = 1; i <= ncfg; ++i) {
    n = 0
    for (r = 1; r <= nruns; ++r) if (fin[r] && cfg[r] == cfgname[i] && hastrend[r]) { ++n; v[n] = slope[r] }
    printf "| %s | %d | %s |\n", cfgname[i], n, mean_std(v, n, "%+.3f", "%.3f")
  }
  print ""
  print "Slope: least squares of validation BLEU against the epoch over the last " K " epochs of each run (all of them if fewer); its interval is the slope ± t(0.975, m - 2) times its standard error, m the epochs used. An interval that holds 0 finds no rise."

  if (svg == "") exit 0
  # The plot.
  W = 760; H = 460; L = 60; R = 170; TP = 30; BT = 50
  pw = W - L - R; ph = H - TP - BT
  maxe = 1; maxb = 0
  for (r = 1; r <= nruns; ++r) for (e = 1; e <= ne[r]; ++e) {
    if (ep[r, e] > maxe) maxe = ep[r, e]
    if (vb[r, e] > maxb) maxb = vb[r, e]
  }
  ymax = 5 * (int(maxb / 5) + 1)
  split("#1f77b4 #d62728 #2ca02c #9467bd #ff7f0e #8c564b", colour, " ")
  printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H > svg
  printf "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H > svg
  printf "<text x=\"%d\" y=\"18\" text-anchor=\"middle\">validation BLEU per epoch (thin: one run; thick: mean over runs)</text>\n", L + pw / 2 > svg
  for (k = 0; k <= 5; ++k) {
    y = TP + ph - ph * k / 5
    printf "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, y, L + pw, y > svg
    printf "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", L - 6, y + 4, ymax * k / 5 > svg
  }
  step = maxe <= 10 ? 1 : maxe <= 20 ? 2 : maxe <= 50 ? 5 : 10
  for (e = step; e <= maxe; e += step) {
    x = L + (maxe > 1 ? pw * (e - 1) / (maxe - 1) : 0)
    printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", x, TP + ph + 16, e > svg
  }
  printf "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"black\"/>\n", L, TP, pw, ph > svg
  printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">epoch</text>\n", L + pw / 2, H - 12 > svg
  printf "<text transform=\"translate(16 %d) rotate(-90)\" text-anchor=\"middle\">BLEU</text>\n", TP + ph / 2 > svg
  for (i = 1; i <= ncfg; ++i) {
    col = colour[(i - 1) % 6 + 1]
    for (e = 1; e <= maxe; ++e) { sum[e] = 0; cnt[e] = 0 }
    for (r = 1; r <= nruns; ++r) if (cfg[r] == cfgname[i] && ne[r] > 0) {
      pts = ""
      for (e = 1; e <= ne[r]; ++e) {
        pts = pts sprintf("%.1f,%.1f ", L + (maxe > 1 ? pw * (ep[r, e] - 1) / (maxe - 1) : 0), TP + ph - ph * vb[r, e] / ymax)
        sum[ep[r, e]] += vb[r, e]; cnt[ep[r, e]]++
      }
      printf "<polyline class=\"run\" fill=\"none\" stroke=\"%s\" stroke-opacity=\"0.35\" stroke-width=\"1\" points=\"%s\"/>\n", col, pts > svg
    }
    pts = ""
    for (e = 1; e <= maxe; ++e) if (cnt[e] > 0)
      pts = pts sprintf("%.1f,%.1f ", L + (maxe > 1 ? pw * (e - 1) / (maxe - 1) : 0), TP + ph - ph * (sum[e] / cnt[e]) / ymax)
    printf "<polyline class=\"mean\" fill=\"none\" stroke=\"%s\" stroke-width=\"2.5\" points=\"%s\"/>\n", col, pts > svg
    y = TP + 20 * i
    printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2.5\"/>\n", L + pw + 12, y, L + pw + 36, y, col > svg
    printf "<text x=\"%d\" y=\"%d\">%s</text>\n", L + pw + 42, y + 4, cfgname[i] > svg
  }
  print "</svg>" > svg
}'
