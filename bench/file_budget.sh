#!/usr/bin/env bash
# A budget on the .nq file, on real data: LeNet-5 trained on Fashion-MNIST (3 epochs of Adam), its OBD Hessian over
# 5,000 images, ECSQ (k_max 64, biases in float). For each scope and target entropy R, the per-problem allocation
# (`--target-bits R`: every row or tensor at R) writes a .nq file of some size S; then `--target-size S` (one λ for
# the model, searched on the file's own size) writes a file of at most S bytes. Both are decompressed and evaluated
# on the 10,000 test images, so the two accuracies are at the same file budget. Prints a table: scope, R, the two
# file sizes, the two accuracies and the two quantize wall times; then, at four budgets, the accuracy each scope
# reaches.
# Usage: bench/file_budget.sh [NETQUANT] [WORKDIR]   (defaults: build/netquant, a fresh temporary directory)
set -euo pipefail
source "$(dirname "$0")/lenet5_fixture.sh" "$@"
timed() {  # runs "$@", prints its wall seconds
  local start; start=$(date +%s.%N)
  "$@" >/dev/null
  python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')"
}
echo "float model: test accuracy $(python3 -c "print(f'{$(accuracy w.safetensors) * 100:.2f}')")%, $(stat -c %s w.safetensors) bytes as safetensors"
echo "| scope | R | per-problem: file bytes, accuracy %, s | --target-size: file bytes, accuracy %, s |"
echo "|---|---|---|---|"
common=(w.safetensors --importance h.safetensors --method ecsq --k 64 --skip-1d -q)
for scope in row tensor group:256; do
  for bits in 1 1.5 2 3; do
    rm -f each.nq fit.nq
    t1=$(timed "$nq" quantize "${common[@]}" --scope "$scope" --target-bits "$bits" -o each.nq)
    size=$(stat -c %s each.nq)
    t2=$(timed "$nq" quantize "${common[@]}" --scope "$scope" --target-size "$size" -o fit.nq)
    a1=$(nq_accuracy each.nq)
    a2=$(nq_accuracy fit.nq)
    python3 -c "print(f'| $scope | $bits | $size, {$a1 * 100:.2f}, $t1 | $(stat -c %s fit.nq), {$a2 * 100:.2f}, $t2 |')"
  done
done
echo
echo "Which scope at a budget: --target-size B in each scope (accuracy %, file bytes; '-' = below that scope's floor)"
echo "| budget | tensor | group:256 | row |"
echo "|---|---|---|---|"
for budget in 60000 75000 100000 150000; do
  line="| $budget |"
  for scope in tensor group:256 row; do
    rm -f fit.nq
    if "$nq" quantize "${common[@]}" --scope "$scope" --target-size "$budget" -o fit.nq >/dev/null 2>&1; then
      line="$line $(python3 -c "print(f'{$(nq_accuracy fit.nq) * 100:.2f}')"), $(stat -c %s fit.nq) |"
    else
      line="$line - |"
    fi
  done
  echo "$line"
done
