#!/usr/bin/env bash
# Installs the PyPI peers of python/tests that Debian does not package: Hugging Face's safetensors (the format's
# reference reader and writer) and ckwrap (Ckmeans.1d.dp, the optimal 1-D k-means). They go into a folder of their
# own, never into the system's Python, as pinned binary wheels without dependencies (numpy is Debian's):
#   tools/test_peers.sh PYTHON   prints the folder to put on PYTHONPATH; installs there what is missing.
# The folder is a per-user cache, $NETQUANT_PEERS_DIR or ~/.cache/netquant/test-peers-<python version>, so a fresh
# clone reuses it. When pip cannot install a peer (no network, no wheel for this Python), the script says so on
# stderr and goes on: the peer's tests then skip, naming what is missing.
set -euo pipefail
py="${1:?usage: tools/test_peers.sh PYTHON}"
peers=(safetensors==0.8.0 ckwrap==1.2.3)

version="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
dir="${NETQUANT_PEERS_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/netquant/test-peers-$version}"
mkdir -p "$dir"

for requirement in "${peers[@]}"; do
  # pip records each install as NAME-VERSION.dist-info in the folder: present at the pinned version, nothing to do.
  [[ -d "$dir/${requirement/==/-}.dist-info" ]] && continue
  echo "netquant test peers: installing $requirement into $dir" >&2
  # (The root-user warning is silenced by its environment variable: pip before 22.1 has no such option.)
  if ! PIP_ROOT_USER_ACTION=ignore "$py" -m pip install --quiet --disable-pip-version-check --no-deps \
       --only-binary=:all: --upgrade --target "$dir" "$requirement" >&2; then
    echo "netquant test peers: could not install $requirement; its peer tests will be skipped" >&2
  fi
done
echo "$dir"
