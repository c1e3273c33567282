#!/usr/bin/env bash
# One call on a GPU machine: configure for sm_90 (H100/H200), build, run the CUDA parity tests, run
# compute-sanitizer memcheck and racecheck on a reduced parity run, run the GPU benchmarks, and print a short
# table last. Logs land in $BUILD/gpu_logs/. Env: NQ_GPU_BUILD_DIR (default <repo>/build-gpu), NQ_CUDA_ARCH (90),
# NQ_GPU_BENCH_ARGS (e.g. --quick).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${NQ_GPU_BUILD_DIR:-$ROOT/build-gpu}
ARCH=${NQ_CUDA_ARCH:-90}
LOGS=$BUILD/gpu_logs
mkdir -p "$LOGS"
export PATH=/usr/local/cuda/bin:$PATH
declare -a SUMMARY

step() {  # step NAME LOGFILE COMMAND...: runs, records PASS/FAIL with the exit status
  local name=$1 log=$2
  shift 2
  echo "== $name" >&2
  "$@" >"$log" 2>&1
  local rc=$?
  if [ $rc -eq 0 ]; then SUMMARY+=("$(printf '%-28s PASS' "$name")")
  else SUMMARY+=("$(printf '%-28s FAIL (rc=%d, see %s)' "$name" "$rc" "$log")"); tail -n 30 "$log" >&2; fi
  return $rc
}

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv >"$LOGS/device.txt" 2>&1 || true
step configure "$LOGS/configure.log" cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DNQ_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DNQ_BUILD_GPU_BENCH=ON || { printf '%s\n' "${SUMMARY[@]}"; exit 1; }
step build "$LOGS/build.log" cmake --build "$BUILD" --target test_cuda nq_gpu_bench -j "$(nproc)" \
  || { printf '%s\n' "${SUMMARY[@]}"; exit 1; }
TEST=$BUILD/tests/test_cuda

# Register use and spills of every kernel (the performance targets: read -Xptxas -v / the SASS).
SPILLS=$(for o in "$BUILD"/kernels/CMakeFiles/nq_kernels.dir/*.o; do cuobjdump -res-usage "$o" 2>/dev/null; done \
  | tee "$LOGS/res_usage.txt" | grep -o 'STACK:[0-9]*' | awk -F: '$2>0' | wc -l)
SUMMARY+=("$(printf '%-28s %s kernel(s) with stack frames (spills), details in %s' 'register/stack check' "$SPILLS" "$LOGS/res_usage.txt")")

step "parity tests (full)" "$LOGS/test_cuda.log" "$TEST" --gtest_brief=1
# A reduced parity run under the sanitizers (they slow kernels 10-100x).
step "memcheck (reduced parity)" "$LOGS/memcheck.log" env NQ_CUDA_PARITY_QUICK=1 compute-sanitizer --tool memcheck \
  --leak-check full --error-exitcode 9 "$TEST" --gtest_brief=1 --gtest_filter='CudaQuantParity.*:CudaNnParity/0.*'
step "racecheck (reduced parity)" "$LOGS/racecheck.log" env NQ_CUDA_PARITY_QUICK=1 compute-sanitizer --tool racecheck \
  --error-exitcode 9 "$TEST" --gtest_brief=1 \
  --gtest_filter='CudaQuantParity.AssignAccumulate*:CudaQuantParity.Prefix*:CudaQuantParity.Segmented*:CudaQuantParity.LabelHistogram*'
step "synccheck (reduced parity)" "$LOGS/synccheck.log" env NQ_CUDA_PARITY_QUICK=1 compute-sanitizer --tool synccheck \
  --error-exitcode 9 "$TEST" --gtest_brief=1 --gtest_filter='CudaQuantParity.AssignAccumulateMatchesCpu:CudaQuantParity.Segmented*'
step "benchmarks" "$LOGS/bench.txt" "$BUILD/nq_gpu_bench" ${NQ_GPU_BENCH_ARGS:-}

echo
echo "================ netquant GPU summary ($(head -n 2 "$LOGS/device.txt" | tail -n 1)) ================"
printf '%s\n' "${SUMMARY[@]}"
echo "---- benchmarks (median of repetitions; %copy = effective bandwidth / measured d2d copy bandwidth)"
cat "$LOGS/bench.txt" 2>/dev/null
