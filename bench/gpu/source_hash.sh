# Sourced by prebuild.sh and run_gpu_bench.sh: which sources a prebuilt bundle was built from, and their hash, so
# that the device side uses the bundle only for the very tree it was built from.
# The list is made where git is (the development machine) and travels in the bundle; the device copy has no .git,
# so it hashes the same list there: a file missing or changed gives another hash, and the script builds instead.

# nq_source_files ROOT: the files that go into test_cuda and nq_gpu_bench (tracked or new, not ignored), sorted.
nq_source_files() {
  git -C "$1" ls-files --cached --others --exclude-standard -- CMakeLists.txt cmake include src kernels tests \
    bench/gpu/gpu_bench.cu | LC_ALL=C sort -u
}

# nq_source_hash ROOT < LIST: one SHA-256 over every listed file's path and contents ("missing" for an absent one).
nq_source_hash() {
  local root=$1 f
  while IFS= read -r f; do
    if [ -f "$root/$f" ]; then printf '%s %s\n' "$(sha256sum <"$root/$f" | cut -d' ' -f1)" "$f"
    else printf 'missing %s\n' "$f"; fi
  done | sha256sum | cut -d' ' -f1
}
