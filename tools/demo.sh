#!/usr/bin/env bash
# The main job in one command: install what is missing, build, and run `netquant demo` on Fashion-MNIST.
# Arguments go to `netquant demo` (e.g. --quick, --model lenet300, --backend cuda).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/tools/setup.sh"
"$root/tools/build.sh" -DNQ_BUILD_TESTS=OFF
exec "$root/build/netquant" demo "$@"
