#!/usr/bin/env bash
# The GPU check in as few device calls as possible: the binaries prebuilt here (bench/gpu/prebuild.sh) or, without
# them, configure for sm_90 (H100/H200) and build (incremental when the build folder survived a previous call);
# then the phases asked for, and a short table last.
#   bench/gpu/run_gpu_bench.sh [all|test|sanitize|bench|profile]...   (default: all = test sanitize bench)
#     test      the CUDA parity tests (CPU as the oracle)
#     sanitize  compute-sanitizer memcheck, racecheck and synccheck on a reduced parity run, in nine pieces each
#               capped at NQ_GPU_SANITIZE_LIMIT s (default: the step limit; 60 fits the nine in one call)
#     bench     the GPU benchmarks (nq_gpu_bench)
#     profile   Nsight Compute on one fused assign + accumulate pass at N = 1e8 in five settings (k = 16 at λ = 0
#               in the default and the per-warp form, k = 16 at λ > 0, k = 32 at λ = 0, k = 256 at λ > 0):
#               throughput, occupancy, warp stalls and the hottest source lines,
#               one report each (ncu_*.txt), their headline figures in the summary; not part of `all`, and run
#               before the other phases when asked for (its steps are short, and it is what the fused pass waits on)
# The device tool allows 600 s per call: with the prebuilt bundle `test bench` fits one call and `sanitize` another;
# building there, `test` alone fits with the build and `sanitize bench` a second call that reuses it. Every step is
# capped (NQ_GPU_STEP_LIMIT seconds, default 150; the build 330). Logs go to $OUT/gpu_logs when $OUT is set (the
# device tool returns that folder even from a call that ran out of time), else to $BUILD/gpu_logs.
# Env: NQ_GPU_BUILD_DIR (default <repo>/build-gpu), NQ_CUDA_ARCH (90), NQ_GPU_BENCH_ARGS.
# Carry with the call: .gpu-prebuilt (bench/gpu/prebuild.sh, run here after the last change), used when it matches
# the sources; and .gpu-deps (bench/gpu/fetch_deps.sh) for the build there otherwise: the device image has CUDA,
# CMake, ninja and a compiler but not the Debian -dev packages the build finds (unpacked under the build folder).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${NQ_GPU_BUILD_DIR:-$ROOT/build-gpu}
ARCH=${NQ_CUDA_ARCH:-90}
LOGS=${OUT:+$OUT/gpu_logs}
LOGS=${LOGS:-$BUILD/gpu_logs}
LIMIT=${NQ_GPU_STEP_LIMIT:-150}
mkdir -p "$LOGS"
export PATH=/usr/local/cuda/bin:$PATH
declare -a SUMMARY

PHASES=("$@")
[ ${#PHASES[@]} -eq 0 ] && PHASES=(all)
want() {  # `all` is every phase but profile
  local p
  for p in "${PHASES[@]}"; do { [ "$p" = all ] && [ "$1" != profile ]; } || [ "$p" = "$1" ] && return 0; done
  return 1
}

summary() {
  echo
  echo "================ netquant GPU summary ($(head -n 2 "$LOGS/device.txt" 2>/dev/null | tail -n 1)) ================"
  printf '%s\n' "${SUMMARY[@]}"
  if [ -s "$LOGS/bench.txt" ]; then
    echo "---- benchmarks (median of repetitions; %copy = effective bandwidth / measured d2d copy bandwidth)"
    cat "$LOGS/bench.txt"
  fi
}

step() {  # step LIMIT NAME LOGFILE COMMAND...: runs for at most LIMIT s, records PASS/FAIL with the exit status
  local limit=$1 name=$2 log=$3
  shift 3
  echo "== $name" >&2
  local t0=$SECONDS
  timeout "$limit" "$@" >"$log" 2>&1
  local rc=$?
  [ $rc -eq 124 ] && echo "(step stopped after $limit s)" >>"$log"
  if [ $rc -eq 0 ]; then SUMMARY+=("$(printf '%-28s PASS (%d s)' "$name" $((SECONDS - t0)))")
  else SUMMARY+=("$(printf '%-28s FAIL (rc=%d, %d s, see %s)' "$name" "$rc" $((SECONDS - t0)) "$log")"); tail -n 30 "$log" >&2; fi
  return $rc
}

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv \
  >"$LOGS/device.txt" 2>&1 || true

# A bundle prebuilt on the development machine (bench/gpu/prebuild.sh, carried as .gpu-prebuilt): used when it was
# built from exactly these sources and its binaries load here; else the build below.
BIN=""
LIBS=""
if [ -f "$ROOT/.gpu-prebuilt/bundle.tar.xz" ]; then
  . "$ROOT/bench/gpu/source_hash.sh"
  PRE=$BUILD/prebuilt
  rm -rf "$PRE"
  mkdir -p "$PRE"
  if ! tar -C "$PRE" -xJf "$ROOT/.gpu-prebuilt/bundle.tar.xz"; then
    SUMMARY+=("$(printf '%-28s unusable (cannot unpack); building here' 'prebuilt bundle')")
  elif [ "$(cat "$PRE/ARCH" 2>/dev/null)" != "$ARCH" ]; then
    SUMMARY+=("$(printf '%-28s built for sm_%s, not sm_%s; building here' 'prebuilt bundle' "$(cat "$PRE/ARCH" 2>/dev/null)" "$ARCH")")
  elif [ "$(nq_source_files_present "$ROOT")" != "$(cat "$PRE/SOURCE_FILES")" ]; then
    SUMMARY+=("$(printf '%-28s stale (source files added or removed since bench/gpu/prebuild.sh); building here' 'prebuilt bundle')")
  elif [ "$(nq_source_hash "$ROOT" <"$PRE/SOURCE_FILES")" != "$(cat "$PRE/SOURCE_HASH")" ]; then
    SUMMARY+=("$(printf '%-28s stale (the sources changed since bench/gpu/prebuild.sh); building here' 'prebuilt bundle')")
  else
    # cuBLAS comes from the device's CUDA: its toolkit folders, else a Python package that ships it.
    CUBLAS_DIR=""
    for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
      [ -e "$d/libcublas.so.13" ] && { CUBLAS_DIR=$d; break; }
    done
    if [ -z "$CUBLAS_DIR" ]; then
      found=$(timeout 20 find / -xdev -name 'libcublas.so.13' -print -quit 2>/dev/null)
      [ -n "$found" ] && CUBLAS_DIR=$(dirname "$found")
    fi
    LIBS=$PRE/lib${CUBLAS_DIR:+:$CUBLAS_DIR}
    # The binaries load, and open cuBLAS (it is opened on first use, not linked: kernels/cublas_library.cu).
    if LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$PRE/bin/test_cuda" \
        --gtest_filter='CublasLibrary.*' >"$LOGS/prebuilt_check.log" 2>&1; then
      BIN=$PRE/bin
      export LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
      cp "$PRE/BUILD_INFO" "$LOGS/prebuilt_info.txt"
      SUMMARY+=("$(printf '%-28s used: %s' 'prebuilt bundle' "$(tail -n 1 "$PRE/BUILD_INFO")")")
    else
      SUMMARY+=("$(printf '%-28s does not load here (see prebuilt_check.log); building here' 'prebuilt bundle')")
    fi
  fi
fi

if [ -z "$BIN" ]; then
  # Carried dependencies (bench/gpu/fetch_deps.sh): unpacked under the build folder, never into /.
  DEPS_ARGS=()
  if compgen -G "$ROOT/.gpu-deps/*.deb" >/dev/null; then
    P=$BUILD/deps
    mkdir -p "$P"
    unpack() {  # dpkg-deb where the image has it, else binutils' ar + tar (Debian 12 packages hold data.tar.xz)
      if command -v dpkg-deb >/dev/null; then dpkg-deb -x "$1" "$P"; else ar p "$1" data.tar.xz | tar -xJ -C "$P"; fi
    }
    for f in "$ROOT"/.gpu-deps/*.deb; do unpack "$f" || { echo "cannot unpack $f" >&2; exit 1; }; done
    # Absolute links (zlib's libz.so -> /lib/...) would resolve on the device's own /: point them into the prefix.
    while IFS= read -r link; do
      target=$(readlink "$link")
      [ -e "$P$target" ] && ln -sfn "$P$target" "$link"
    done < <(find "$P" -type l -lname '/*')
    U=$P/usr
    L=$U/lib/x86_64-linux-gnu
    DEPS_ARGS=(-DCMAKE_PREFIX_PATH="$U" -DGTest_DIR="$L/cmake/GTest" -DCLI11_DIR="$U/share/cmake/CLI11"
               -Dnlohmann_json_DIR="$U/share/cmake/nlohmann_json" -DZLIB_ROOT="$U"
               -DBLAS_openblas_LIBRARY="$L/openblas-pthread/libopenblas.so"
               -DNQ_CBLAS_INCLUDE_DIR="$U/include/x86_64-linux-gnu/openblas-pthread"
               -DNQ_RE2_INCLUDE_DIR="$U/include" -DNQ_RE2_LIBRARY="$L/libre2.so")
    export LD_LIBRARY_PATH="$L/openblas-pthread:$L:$P/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  GEN=()
  [ -f "$BUILD/CMakeCache.txt" ] || { command -v ninja >/dev/null && GEN=(-G Ninja); }
  step "$LIMIT" configure "$LOGS/configure.log" cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DNQ_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DNQ_BUILD_GPU_BENCH=ON -DNQ_BUILD_TESTS=ON -DNQ_MPI=OFF \
    -DNQ_BUILD_PYTHON=OFF "${DEPS_ARGS[@]}" || { summary; exit 1; }
  step 330 build "$LOGS/build.log" cmake --build "$BUILD" --target test_cuda nq_gpu_bench -j "$(nproc)" \
    || { summary; exit 1; }
  mkdir -p "$BUILD/bin"
  ln -sf "$BUILD/tests/test_cuda" "$BUILD/bin/test_cuda"
  ln -sf "$BUILD/nq_gpu_bench" "$BUILD/bin/nq_gpu_bench"
  BIN=$BUILD/bin
fi
TEST=$BIN/test_cuda
# Register use and spills of every kernel (the performance targets: read -Xptxas -v / the SASS). The executable holds
# every kernel; cuobjdump is on the device image (not in every toolkit install).
if command -v cuobjdump >/dev/null; then
  cuobjdump -res-usage "$(readlink -f "$TEST")" >"$LOGS/res_usage.txt" 2>&1 || true
fi
if [ -s "$LOGS/res_usage.txt" ]; then
  SPILLS=$(grep -o 'STACK:[0-9]*' "$LOGS/res_usage.txt" | awk -F: '$2>0' | wc -l)
  SUMMARY+=("$(printf '%-28s %s kernel(s) with stack frames (spills), details in res_usage.txt' 'register/stack check' "$SPILLS")")
else
  SUMMARY+=("$(printf '%-28s skipped: no cuobjdump' 'register/stack check')")
fi

if want profile; then  # first: five short steps, and the reading the fused pass waits on
  # --clock-control none: leave the clocks as they are (the device tool's rule); -lineinfo is in the build, so the
  # source counters name lines of assign_block.cuh. The first launch is the warm-up pass.
  NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | tail -n 1)
  if [ -n "$NCU" ]; then
    for cfg in "16 0 default" "16 0 per-warp" "16 1e-5 default" "32 0 default" "256 1e-5 default"; do
      set -- $cfg
      step "$LIMIT" "ncu fused k=$1 lambda=$2 $3" "$LOGS/ncu_k$1_l$2_$3.txt" "$NCU" --clock-control none \
        --kernel-name regex:assign_accumulate_kernel --launch-skip 1 --launch-count 1 --set detailed \
        --section SourceCounters --import-source yes "$BIN/nq_gpu_bench" --fused "$1" "$2" 1e8 "$3"
      SUMMARY+=("$(grep -E '^ +(Duration|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Registers Per Thread|Achieved Occupancy|Issue Slots Busy|No Eligible) ' \
        "$LOGS/ncu_k$1_l$2_$3.txt" | awk '{$1=$1; print "    " $0}')")
    done
  else
    SUMMARY+=("$(printf '%-28s skipped: no ncu on this machine' 'profile')")
  fi
fi
if want test; then
  step "$LIMIT" "parity tests (full)" "$LOGS/test_cuda.log" "$TEST" --gtest_brief=1
fi
if want sanitize; then
  # A reduced parity run under the sanitizers (they slow kernels 10-100x), in pieces of a few suites each, every
  # piece capped on its own: a piece that runs out of time loses only itself (one whole-suite run per tool did not
  # finish in 130 s on the H200). NQ_GPU_SANITIZE_LIMIT caps each piece (default: the step limit).
  SLIMIT=${NQ_GPU_SANITIZE_LIMIT:-$LIMIT}
  sanitize() {  # sanitize TOOL NAME FILTER
    local extra=()
    [ "$1" = memcheck ] && extra=(--leak-check full)
    step "$SLIMIT" "$1 $2" "$LOGS/$1_$2.log" env NQ_CUDA_PARITY_QUICK=1 compute-sanitizer --tool "$1" "${extra[@]}" \
      --error-exitcode 9 "$TEST" --gtest_brief=1 --gtest_filter="$3"
  }
  Q=CudaQuantParity
  sanitize memcheck quant-ops "$Q.AssignAccumulate*:$Q.FusedPassForms*:$Q.Unweighted*:$Q.MultiCodebook*:$Q.Resident*:$Q.SelectPruned*:$Q.DeviceEntry*"
  sanitize memcheck quant-sorted "$Q.SortPairs*:$Q.Prefix*:$Q.LabelHistogram*:$Q.RowsKmeans*:$Q.EcsqDriver*:$Q.QuantizeLambdas*"
  sanitize memcheck coding 'CudaCodingParity.*'
  sanitize memcheck nn 'CudaNnParity/0.*:CudaNnDeterminism.*:Builtin/CudaNnModelParity.*/lenet300'
  sanitize memcheck model-paths 'CudaModelParity.*'
  sanitize racecheck assign "$Q.AssignAccumulateMatchesCpu:$Q.FusedPassFormsAgree:$Q.MultiCodebook*:$Q.ResidentRowsEqual*"
  sanitize racecheck rows "$Q.RowsKmeansEqualsTheCpuOpBitForBit:$Q.RowsKmeansShortRows*:$Q.LabelHistogram*"
  sanitize racecheck scans "$Q.Prefix*:$Q.SelectPruned*:CudaCodingParity.*"
  sanitize synccheck all "$Q.AssignAccumulateMatchesCpu:$Q.ResidentRowsEqual*:$Q.RowsKmeans*:CudaCodingParity.*"
fi
if want bench; then
  step "$LIMIT" "benchmarks" "$LOGS/bench.txt" "$BIN/nq_gpu_bench" ${NQ_GPU_BENCH_ARGS:-}
fi
summary
