// Internal: the few collectives the sharded quantizer needs, each deterministic: integer sums are exact, and
// floating-point sums are folded in a fixed order (rank 0's partials first, then rank 1's, ...) so that the
// result has the same bits as folding all partials in one process, whatever the number of ranks.
// Collective over MPI_COMM_WORLD when the process group has more than one rank; plain local code otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace nq::dist {

// Exact integer sums over all ranks, in place (every rank gets the result).
void sum_in_place(std::vector<int64_t>& values);
int64_t sum(int64_t value);
// Σ of `value` over the ranks below this one (0 on rank 0).
int64_t exclusive_prefix_sum(int64_t value);
double min(double value);
double max(double value);

// total = ((0 + p_0) + p_1) + ... over every rank's partials in rank order (each rank's in its own order),
// entry by entry; `total` has `width` entries and is the same on every rank. Each partial has `width` entries.
// The ranks pass the running total along the chain 0 → 1 → ... → P−1, and the last one broadcasts it.
std::vector<double> ordered_fold(const std::vector<std::vector<double>>& partials, size_t width);
// The same chain with this rank's partials folded by `fold_mine(running)` (running += each partial, in order),
// for partials that touch few entries.
std::vector<double> ordered_fold(size_t width, const std::function<void(std::vector<double>&)>& fold_mine);

// Root (rank 0) receives every rank's bytes concatenated in rank order, handed to `sink(piece, length)` in that
// order (its own first); the other ranks send theirs. The root holds one piece of at most 64 MiB at a time, so a
// sink that writes straight into its destination (a model's indices) costs no second copy of the whole.
void gather_to_root(const uint8_t* data, size_t bytes, const std::function<void(const uint8_t*, size_t)>& sink);

}  // namespace nq::dist
