#!/usr/bin/env bash
# Run on the development machine (Debian/Ubuntu, apt) before a GPU session. The device machine's CUDA image has
# nvcc, CMake, ninja and a host compiler but none of the Debian -dev packages the build finds (GoogleTest,
# OpenBLAS, CLI11, nlohmann/json, zlib headers, RE2), and it cannot download. This fetches those packages, without
# installing anything, into .gpu-deps/ (git-ignored); carry that folder with the device call, and
# bench/gpu/run_gpu_bench.sh unpacks it inside its build folder (never into /) and points CMake and the loader
# at it. Needs the apt lists (`apt-get update` once); no root.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dest="$root/.gpu-deps"
pkgs=(libgtest-dev libgmock-dev libopenblas0-pthread libopenblas-pthread-dev libgfortran5 libquadmath0
      libcli11-dev nlohmann-json3-dev zlib1g-dev zlib1g libre2-dev libre2-9)
rm -rf "$dest"
mkdir -p "$dest"
if ! (cd "$dest" && apt-get download "${pkgs[@]}"); then
  echo "error: apt-get download failed (run 'apt-get update' first; package names are Debian 12's)" >&2
  exit 1
fi
du -sh "$dest"
echo "carry .gpu-deps with the device call, e.g. run(command='bench/gpu/run_gpu_bench.sh', carry=['.gpu-deps'])"
