#!/usr/bin/env bash
# Training throughput of the data-parallel classifier (issue 15): samples per
# second of one epoch with 1 and with 2 MPI ranks of 1 thread each, run
# interleaved N times (default 3); prints every run and the best of each,
# and their ratio. The best, because on a shared VM a disturbance only ever
# slows a run down (see bench/README.md).
#   tools/mpi-throughput.sh [N] [build dir]     (needs build/examples/rdrop_classifier_mpi)
set -euo pipefail
runs=${1:-3}
build=${2:-build}
exe="$build/examples/rdrop_classifier_mpi"
[[ -x "$exe" ]] || { echo "mpi-throughput: $exe not built (cmake --build $build --target rdrop_classifier_mpi)" >&2; exit 2; }
# As root (as in CI) OpenMPI must be told that this is meant; containers
# often forbid its cross-memory attach.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
declare -A best=([1]=0 [2]=0)
for ((i = 1; i <= runs; ++i)); do
  for ranks in 1 2; do
    rate=$(mpirun -np "$ranks" "$exe" --threads 1 --epochs 1 --mc-passes 1 </dev/null 2>/dev/null |
           sed -n 's/^samples_per_second=//p')
    echo "run $i, $ranks rank(s): $rate samples/s"
    best[$ranks]=$(python3 -c "print(max($rate, ${best[$ranks]}))")
  done
done
echo "best: 1 rank ${best[1]} samples/s, 2 ranks ${best[2]} samples/s"
python3 -c "print(f'ratio 2 ranks / 1 rank: {${best[2]} / ${best[1]}:.2f} (target >= 1.6)')"
