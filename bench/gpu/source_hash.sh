# Sourced by prebuild.sh and run_gpu_bench.sh: which sources a prebuilt bundle was built from, and their hash, so
# that the device side uses the bundle only for the very tree it was built from.
# The list is made where git is (the development machine) and travels in the bundle; the device copy has no .git,
# so it hashes the same list there: a file missing or changed gives another hash, and the script builds instead.

NQ_SOURCE_PATHS=(CMakeLists.txt cmake include src kernels tests bench/gpu/gpu_bench.cu)

# nq_source_files ROOT: the files that go into test_cuda and nq_gpu_bench (tracked or new, not ignored), sorted.
nq_source_files() {
  git -C "$1" ls-files --cached --others --exclude-standard -- "${NQ_SOURCE_PATHS[@]}" | LC_ALL=C sort -u
}

# nq_source_files_present ROOT: the same paths' files as they are on disk (on the device: the copied tree, which
# holds no ignored files), so that a file added or removed since the bundle was built is noticed too (CMake globs
# the sources, so a new file changes the build).
nq_source_files_present() {
  (cd "$1" && find "${NQ_SOURCE_PATHS[@]}" -type f 2>/dev/null | LC_ALL=C sort -u)
}

# nq_source_hash ROOT < LIST: one SHA-256 over every listed file's path and contents ("missing" for an absent one).
nq_source_hash() {
  local root=$1 f
  while IFS= read -r f; do
    if [ -f "$root/$f" ]; then printf '%s %s\n' "$(sha256sum <"$root/$f" | cut -d' ' -f1)" "$f"
    else printf 'missing %s\n' "$f"; fi
  done | sha256sum | cut -d' ' -f1
}
