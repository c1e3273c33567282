// The order in which a .nq file stores the levels of each codebook of a tensor that has several (row and group
// scopes). One Huffman code serves all of a tensor's problems, so it fits them only where index i means the same
// thing in every row. Stored ascending it does not: index i is a different place in each row's distribution, and
// the tensor's histogram of indices is their blur (LeNet-5, ECSQ in row scope at 0.5 bits of entropy per weight:
// 2.26 coded bits per weight). By decreasing use within its problem, index i is every row's i-th most used level,
// and the code fits them all (1.22 bits). The order is the writer's choice: any order is a valid v1 file, and the
// reader gives these codebooks back ascending.
#pragma once

#include <cstdint>
#include <vector>

#include "netquant/quantize.h"

namespace nq::coding {

struct LevelOrder {
  std::vector<uint64_t> offset;   // problem c's levels at [offset[c], offset[c + 1]) of the arrays below
  std::vector<uint32_t> rank_of;  // a level's place in its problem's stored order
  std::vector<uint32_t> level_at; // the level stored at a place
  std::vector<uint64_t> counts;   // the tensor's kept weights by place (the histogram its Huffman code is made from)
  uint64_t pruned = 0;            // the tensor's pruned weights
};

// The order of `t`'s problems' levels, by decreasing use among its kept weights (ties: the lower level first, so
// unused levels come last in level order). Problems on the threads; the same for any thread count.
LevelOrder order_levels_by_use(const QuantizedTensor& t, const std::vector<std::vector<float>>& codebooks,
                               uint32_t alphabet);

// `t`'s indices with each level replaced by its place (pruned weights stay pruned), at the stored width.
template <class Index>
std::vector<Index> indices_by_place(const Index* indices, size_t n, Index pruned_index, uint64_t problem_size,
                                    const LevelOrder& order);

// The reader's side: every codebook of `t` (at codebooks[t.first_codebook ...]) put in ascending order (NaN last,
// equal values in stored order) and `t`'s indices moved with their levels. Codebooks already ascending, the common
// case of files from other writers, cost one look.
void restore_ascending_levels(QuantizedTensor& t, std::vector<std::vector<float>>& codebooks);

}  // namespace nq::coding
