#!/usr/bin/env bash
# The whole test suite in one command: install what is missing, build with tests, run ctest (and pytest).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/tools/setup.sh"
"$root/tools/build.sh" -DNQ_BUILD_TESTS=ON
cd "$root/build"
ctest --output-on-failure -j "$(nproc)" "$@"
