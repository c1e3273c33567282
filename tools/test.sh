#!/usr/bin/env bash
# The whole test suite in one command: install what is missing, build with tests, run ctest (and pytest).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/tools/setup.sh" --test
"$root/tools/build.sh" -DNQ_BUILD_TESTS=ON
cd "$root/build"
ctest --output-on-failure -j "$(nproc)" "$@"

# pytest over the Python package (python/tests), with the interpreter the module was built for: Debian's
# /usr/bin/python3 when it imports numpy, else the first python3 that does. Missing pieces fail loudly.
py=""
for cand in /usr/bin/python3 "$(command -v python3 || true)"; do
  if [[ -n "$cand" && -x "$cand" ]] && "$cand" -c "import numpy" 2>/dev/null; then py="$cand"; break; fi
done
[[ -n "$py" ]] || { echo "error: no python3 that imports numpy (apt-get install python3-numpy)" >&2; exit 1; }
"$py" -c "import pytest" 2>/dev/null || { echo "error: $py cannot import pytest (apt-get install python3-pytest)" >&2; exit 1; }
compgen -G "$root/build/python/netquant/_core*.so" >/dev/null ||
  { echo "error: the Python module was not built (needs pybind11-dev and python3-dev; see cmake's 'netquant: Python package' line)" >&2; exit 1; }
# The PyPI peers (safetensors, ckwrap) live in a cache folder of their own; see tools/test_peers.sh.
peers="$("$root/tools/test_peers.sh" "$py")"
rc=0
PYTHONPATH="$root/build/python:$peers" NETQUANT_CLI="$root/build/netquant" "$py" -m pytest -q -p no:cacheprovider "$root/python/tests" || rc=$?
[[ $rc -eq 5 ]] && echo "error: pytest collected no tests in python/tests" >&2
exit $rc
