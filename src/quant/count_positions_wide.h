// p = #{j : w > below[j]} for many values at once with AVX-512: the positions assign_accumulate's λ > 0 window
// search starts from (count_positions in quant_ops_cpu.cpp). Instead of comparing each value with every entry
// of the padded table, a branchless binary search: the table (16, 32 or 64 floats) lives in one, two or four
// registers and each probe looks it up per lane with a permute, so a value takes log2(size) + 1 probes instead of
// `size` compares. The same counts: below is non-decreasing, so w > below[j] holds exactly for j < p.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nq::cpu {

// lab[i] = #{j < size : w[i] > below[j]} (a NaN counts 0), for below non-decreasing (−inf and +inf allowed) and
// size 16, 32 or 64. Requires wide_window_available() (window_argmin_wide.h), which tests and benches switch off
// to compare with the compare-everything loop.
void wide_count_positions(const float* w, size_t n, const float* below, int size, int32_t* lab);

}  // namespace nq::cpu
