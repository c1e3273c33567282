#!/usr/bin/env bash
# What the .nq index coder buys, on real data: LeNet-5 trained on Fashion-MNIST (3 epochs of Adam), its OBD Hessian
# over 5,000 images, ECSQ (k_max 64, biases in float).
#  1. The same quantized weights coded three ways: for each scope and target entropy R (`--target-bits R`), the file
#     bytes with `--coder huffman`, `rans` and `auto`, and a check that all three decompress to the same bytes.
#  2. The same file budget, two coders: `--target-size B` (one λ searched on the file's own size) with
#     `--coder huffman` and with `--coder auto`, decompressed and evaluated on the 10,000 test images.
# Usage: bench/index_coder.sh [NETQUANT] [WORKDIR]   (defaults: build/netquant, a fresh temporary directory)
set -euo pipefail
source "$(dirname "$0")/lenet5_fixture.sh" "$@"
common=(w.safetensors --importance h.safetensors --method ecsq --k 64 --skip-1d -q)
echo "float model: test accuracy $(python3 -c "print(f'{$(accuracy w.safetensors) * 100:.2f}')")%, $(stat -c %s w.safetensors) bytes as safetensors"
echo
echo "1. The same weights, three coders (file bytes; per-problem allocation at R bits of entropy per weight)"
echo "| scope | R | huffman | rans | auto | auto / huffman |"
echo "|---|---|---|---|---|---|"
for scope in tensor row group:256; do
  for bits in 0.25 0.5 1 2 3; do
    sizes=()
    for coder in huffman rans auto; do
      "$nq" quantize "${common[@]}" --scope "$scope" --target-bits "$bits" --coder "$coder" -o "c_$coder.nq" >/dev/null
      "$nq" decompress "c_$coder.nq" -o "d_$coder.safetensors" -q >/dev/null
      sizes+=("$(stat -c %s "c_$coder.nq")")
    done
    cmp -s d_huffman.safetensors d_rans.safetensors && cmp -s d_huffman.safetensors d_auto.safetensors ||
      { echo "error: the coders' files decompress to different weights ($scope, $bits)" >&2; exit 1; }
    python3 -c "print(f'| $scope | $bits | ${sizes[0]} | ${sizes[1]} | ${sizes[2]} | {${sizes[2]} / ${sizes[0]}:.3f} |')"
  done
done
rm -f c_*.nq d_*.safetensors
echo
echo "2. The same file budget: --target-size B (accuracy %, file bytes; '-' = below that scope's floor)"
echo "| budget | tensor, huffman | tensor, auto | row, huffman | row, auto |"
echo "|---|---|---|---|---|"
for budget in 20000 30000 45000 60000 75000; do
  line="| $budget |"
  for scope in tensor row; do
    for coder in huffman auto; do
      rm -f fit.nq
      if "$nq" quantize "${common[@]}" --scope "$scope" --target-size "$budget" --coder "$coder" -o fit.nq >/dev/null 2>&1; then
        line="$line $(python3 -c "print(f'{$(nq_accuracy fit.nq) * 100:.2f}')"), $(stat -c %s fit.nq) |"
      else
        line="$line - |"
      fi
    done
  done
  echo "$line"
done
