# Sourced by the LeNet-5 benchmarks (rate_allocation.sh, file_budget.sh, index_coder.sh) with their arguments [NETQUANT] [WORKDIR]
# (defaults: build/netquant, a fresh temporary directory): sets `nq`, enters WORKDIR and makes there, once,
# w.safetensors (LeNet-5, 3 epochs of Adam on Fashion-MNIST, seed 1) and h.safetensors (its OBD Hessian over 5,000
# images); defines `accuracy WEIGHTS` (test accuracy on the 10,000 test images, as a fraction) and
# `nq_accuracy FILE.nq` (the same for a .nq file's weights).
set -euo pipefail
nq="$(realpath "${1:-$(dirname "${BASH_SOURCE[0]}")/../build/netquant}")"
work="${2:-$(mktemp -d)}"
mkdir -p "$work" && cd "$work"
[[ -f w.safetensors ]] || "$nq" train --model lenet5 -o w.safetensors --optimizer adam --epochs 3 --seed 1 -q
[[ -f h.safetensors ]] || "$nq" hessian --model lenet5 --weights w.safetensors -o h.safetensors --samples 5000 -q
accuracy() { "$nq" eval --model lenet5 --weights "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accuracy"])'; }
nq_accuracy() {
  "$nq" decompress "$1" -o d.safetensors -q >/dev/null
  accuracy d.safetensors
  rm -f d.safetensors
}
