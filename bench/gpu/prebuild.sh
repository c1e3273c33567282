#!/usr/bin/env bash
# Run on the development machine before a GPU session: builds test_cuda and nq_gpu_bench for sm_90 here (the CUDA
# 13 toolkit compiles without a device) and packs them, with the shared libraries they load that a CUDA image
# lacks (OpenBLAS, libgfortran, libquadmath, libgomp), into the ignored .gpu-prebuilt/bundle.tar.xz (~15 MB).
# Carry .gpu-prebuilt with the device call: bench/gpu/run_gpu_bench.sh then skips its configure and build (two
# minutes of a 15-minute lease, and the step most likely to fail on a foreign image) when the bundle was built
# from the same sources, and builds there as before otherwise.
#
# Left to the device machine: glibc (the binaries need GLIBC_2.34 at most), libstdc++ (GLIBCXX_3.4.29),
# the driver, and cuBLAS 13 (libcublas.so.13, libcublasLt.so.13; found under /usr/local/cuda or a Python
# package there, and opened when the nn ops first need it: kernels/cublas_library.cu). The CUDA runtime is linked
# statically.
#   bench/gpu/prebuild.sh            (env NQ_GPU_PREBUILD_DIR: build folder, default <repo>/build-gpu)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${NQ_GPU_PREBUILD_DIR:-$ROOT/build-gpu}
ARCH=${NQ_CUDA_ARCH:-90}
DEST=$ROOT/.gpu-prebuilt
export PATH=/usr/local/cuda/bin:$PATH
# shellcheck source=bench/gpu/source_hash.sh
. "$ROOT/bench/gpu/source_hash.sh"

GEN=()
[ -f "$BUILD/CMakeCache.txt" ] || { command -v ninja >/dev/null && GEN=(-G Ninja); }
cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DNQ_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
  -DNQ_BUILD_GPU_BENCH=ON -DNQ_BUILD_TESTS=ON -DNQ_MPI=OFF -DNQ_BUILD_PYTHON=OFF >/dev/null
cmake --build "$BUILD" --target test_cuda nq_gpu_bench -j "$(nproc)"

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin" "$STAGE/lib"
cp "$BUILD/tests/test_cuda" "$BUILD/nq_gpu_bench" "$STAGE/bin/"
# Every library the binaries load except glibc's own, libstdc++/libgcc_s and CUDA's (the device's must match its
# driver; cuBLAS alone is hundreds of MB).
ldd "$STAGE/bin/test_cuda" "$STAGE/bin/nq_gpu_bench" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
  while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
      libcuda.so*|libcublas*|libcudart*|libnvidia*) ;;
      *) cp -L "$lib" "$STAGE/lib/" ;;
    esac
  done
{
  echo "built $(date -u +%FT%TZ) on $(uname -n) for sm_$ARCH by $(nvcc --version | tail -n 1)"
  echo "git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (uncommitted changes)')"
} >"$STAGE/BUILD_INFO"
echo "$ARCH" >"$STAGE/ARCH"
nq_source_files "$ROOT" >"$STAGE/SOURCE_FILES"
nq_source_hash "$ROOT" <"$STAGE/SOURCE_FILES" >"$STAGE/SOURCE_HASH"

rm -rf "$DEST"
mkdir -p "$DEST"
tar -C "$STAGE" -cJf "$DEST/bundle.tar.xz" .
cp "$STAGE/SOURCE_HASH" "$STAGE/BUILD_INFO" "$DEST/"
du -sh "$DEST/bundle.tar.xz"
cat "$DEST/BUILD_INFO"
echo "carry .gpu-prebuilt (and .gpu-deps, for the fallback build) with the device call"
