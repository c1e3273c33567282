#!/usr/bin/env bash
# Rate allocation on real data: LeNet-5 trained on Fashion-MNIST (3 epochs of Adam), its OBD Hessian over 5,000
# images, then ECSQ (k_max 64, biases in float) at model-wide target entropies with `--rate-allocation per-problem`
# (every row or tensor at the target) and `shared-lambda` (one λ for the model), each dequantized model evaluated
# on the 10,000 test images. Prints a table: scope, target, allocation, the model's entropy per weight, its
# importance-weighted distortion, the Huffman-coded ratio (.nq, codebooks and tables included), test accuracy and
# the quantize command's wall time.
# Usage: bench/rate_allocation.sh [NETQUANT] [WORKDIR]   (defaults: build/netquant, a fresh temporary directory)
set -euo pipefail
source "$(dirname "$0")/lenet5_fixture.sh" "$@"
echo "float model: test accuracy $(accuracy w.safetensors)"
echo "| scope | target bits | allocation | entropy bits/weight | hw-distortion | ratio (Huffman) | accuracy % | seconds |"
echo "|---|---|---|---|---|---|---|---|"
for scope in row tensor; do
  for bits in 0.5 0.75 1 1.5 2; do
    for alloc in per-problem shared-lambda; do
      start=$(date +%s.%N)
      "$nq" quantize w.safetensors --importance h.safetensors --method ecsq --k 64 --scope "$scope" --skip-1d \
        --target-bits "$bits" --rate-allocation "$alloc" -o q.safetensors --report r.json -q >/dev/null
      secs=$(python3 -c "print($(date +%s.%N) - $start)")
      python3 - "$scope" "$bits" "$alloc" "$(accuracy q.safetensors)" "$secs" <<'PY'
import json, sys
t = json.load(open("r.json"))["total"]
scope, bits, alloc, acc, secs = sys.argv[1:]
print(f"| {scope} | {bits} | {alloc} | {t['entropy_bits_per_weight']:.3f} | {t['hw_distortion']:.3g} | "
      f"{t['ratio_huffman']:.2f} | {float(acc) * 100:.2f} | {float(secs):.1f} |")
PY
    done
  done
done
