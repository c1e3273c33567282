#!/usr/bin/env bash
# Strong scaling on one machine (CPU): a sharded global quantization and a distributed λ sweep on 1, 2 and 4
# MPI ranks (one OpenMP thread per rank), outputs checked byte-identical to the one-rank run, the communication
# share of each pass from the quantizer's own timers, and the measured per-hop cost of the ordered fold that
# the 64-rank model in bench/RESULTS.md is built from. Prints a table last.
# Usage: bench/mpi/run_mpi_scaling.sh [BUILD_DIR]   env: N (weights, default 3e7), SWEEP_N (2e6), RANKS ("1 2 4")
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-$here/../../build-bench}"
N="${N:-30000000}"
SWEEP_N="${SWEEP_N:-2000000}"
RANKS="${RANKS:-1 2 4}"
cmake -S "$here/../.." -B "$build" -DCMAKE_BUILD_TYPE=Release -DNQ_BUILD_BENCH=ON -DNQ_BUILD_TESTS=OFF -DNQ_CUDA=OFF \
  -DNQ_MPI=ON >/dev/null
cmake --build "$build" --target netquant_cli make_synthetic_model bench_ordered_fold -j"$(nproc)" >/dev/null
nq="$build/netquant"
work="$(mktemp -d /tmp/nq_mpi_bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/q" "$work/s"
"$build/make_synthetic_model" "$N" 7 "$work/q"
"$build/make_synthetic_model" "$SWEEP_N" 5 "$work/s"
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc --all) cores; $(mpirun --version | head -1)"
now() { date +%s.%N; }
rows=()
for p in $RANKS; do
  t0=$(now)
  mpirun --oversubscribe -np "$p" "$nq" quantize "$work/q/model.safetensors" --importance "$work/q/importance.safetensors" \
    --sharded --method hw-kmeans --k 16 --max-iter 30 -o "$work/q$p.nq" --report "$work/q$p.json" >/dev/null
  t1=$(now)
  mpirun --oversubscribe -np "$p" "$nq" sweep "$work/s/model.safetensors" --importance "$work/s/importance.safetensors" \
    --method ecsq --lambdas 1e-6:1e-3:16 --k 64 -q -o "$work/s$p.csv" >/dev/null
  t2=$(now)
  same_q=$(cmp -s "$work/q1.nq" "$work/q$p.nq" && echo yes || echo NO)
  same_s=$(cmp -s "$work/s1.csv" "$work/s$p.csv" && echo yes || echo NO)
  rows+=("$p $(echo "$t1 - $t0" | bc -l) $(echo "$t2 - $t1" | bc -l) $same_q $same_s $work/q$p.json")
done
folds=()
for p in $RANKS; do folds+=("$(mpirun --oversubscribe -np "$p" "$build/bench_ordered_fold" 2000 | tr '\n' ';')"); done
/usr/bin/python3 - "$N" "$SWEEP_N" "${folds[*]}" "${rows[@]}" <<'PY'
import json, re, sys
n, sweep_n, folds, rows = int(float(sys.argv[1])), int(float(sys.argv[2])), sys.argv[3], [r.split() for r in sys.argv[4:]]
print("\nordered fold (chain + broadcast), microseconds per fold:")
print("| ranks | k=16 (408 B) | k=256 (6.2 kB) |\n|---|---|---|")
for p in sorted({int(x) for x in re.findall(r"ranks=(\d+)", folds)}):
    us = {int(k): float(v) for k, v in re.findall(rf"ranks={p} k=(\d+) width_bytes=\d+ us_per_fold=([\d.]+)", folds)}
    print(f"| {p} | {us.get(16, float('nan')):.1f} | {us.get(256, float('nan')):.1f} |")
base_q, base_s = float(rows[0][1]), float(rows[0][2])
print(f"\nsharded hw-kmeans k=16, 30 passes max, N={n:.1e}; ecsq sweep 16 λ × k=64, N={sweep_n:.1e}; 1 thread/rank")
print("| ranks | quantize wall | speed-up | load (rank 0) | compute/pass (rank 0 / slowest) | communication/pass (rank 0, waiting included) | comm share | same .nq | sweep wall | speed-up | same CSV |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
hops = []
for p, tq, ts, sq, ss, rep in rows:
    s = json.load(open(rep))["sharded"]
    passes = s["passes"]
    comp, comm = s["compute_seconds"] / passes, s["communication_seconds"] / passes
    share = 100 * comm / (comp + comm)
    slow = s["max_compute_seconds"] / passes
    print(f"| {p} | {float(tq):.2f} s | {base_q/float(tq):.2f}× | {s['load_seconds']:.2f} s | {comp*1e3:.1f} / {slow*1e3:.1f} ms "
          f"| {comm*1e3:.2f} ms | {share:.1f}% | {sq} | {float(ts):.2f} s | {base_s/float(ts):.2f}× | {ss} |")
PY
