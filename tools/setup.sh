#!/usr/bin/env bash
# Installs the Debian packages netquant builds, tests and demos with. Idempotent; quiet when all is present.
# Usage: tools/setup.sh [--bench] [--test]   (--bench adds FAISS, a peer of bench/; --test adds what only the tests
# use: PyTorch, the autograd peer of python/tests/test_torch*.py, and pip, which tools/test_peers.sh runs;
# scikit-learn, the k-means peer of both bench/ and python/tests/test_sklearn_peer.py, is always installed)
set -euo pipefail

packages=(cmake g++ make pkg-config libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev libre2-dev nlohmann-json3-dev
          libopenblas-dev zlib1g-dev dataset-fashion-mnist python3-numpy python3-matplotlib python3-pytest
          libopenmpi-dev openmpi-bin clang libclang-rt-14-dev pybind11-dev python3-dev python3-sklearn)
for option in "$@"; do
  case "$option" in
    --bench) packages+=(python3-faiss) ;;
    --test) packages+=(python3-torch python3-pip) ;;
    *) echo "error: tools/setup.sh: unknown option '$option' (expected --bench or --test)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "netquant setup: installing ${missing[*]}" >&2
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "error: need root (or sudo) to install: ${missing[*]}" >&2; exit 2; }
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
# Packages that a distribution lacks (e.g. python3-faiss) are skipped with a note instead of failing the setup.
installable=()
for p in "${missing[@]}"; do
  if apt-cache show "$p" >/dev/null 2>&1; then installable+=("$p"); else echo "netquant setup: $p is not available here, skipped" >&2; fi
done
[[ ${#installable[@]} -gt 0 ]] && "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${installable[@]}" >/dev/null
echo "netquant setup: done" >&2
