// Device-resident entry of the fused assign + accumulate op (quant_ops.h (a)): for callers that keep w/h on the
// GPU across Lloyd/ECSQ iterations (the benchmark, a future resident driver). The host-pointer op of
// quant_ops.h copies in and calls this.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "quant/quant_ops.h"

// cudaStream_t without <cuda_runtime.h>, so plain C++ (tests) can include this header.
struct CUstream_st;

namespace nq::cuda {

// d_w, d_h (nullable: h ≡ 1), d_labels (nullable: not written) are device pointers of n entries; centers and
// code_len are host arrays of k entries with the quant_ops.h contract. Results land in `out` (host) when the
// call returns. Bitwise reproducible for a given (n, k, inputs) on any GPU of the same architecture.
void assign_accumulate_device(const float* d_w, const float* d_h, size_t n, const double* centers,
                              const double* code_len, int k, double lambda, int32_t* d_labels,
                              ::nq::quant::AssignAccum& out, CUstream_st* stream = nullptr);

// Every codebook of `books` over the same device data (ResidentValues::assign_accumulate_multi): out[m] equals
// assign_accumulate_device for codebook m alone, bit for bit; no labels.
void assign_accumulate_multi_device(const float* d_w, const float* d_h, size_t n,
                                    const ::nq::quant::CodebookBatch& books,
                                    std::vector<::nq::quant::AssignAccum>& out, CUstream_st* stream = nullptr);

// How the fused passes of this process run: per-thread accumulators for k ≤ 32 (else per warp, grouped by
// label), and a float threshold table for k ≤ 32 (the λ = 0 labels, and the fp64 argmin's start at any λ; else the
// fp64 search). Both on by default. A benchmark's knob, for timing the forms against each other in one run: the
// accumulation form and its CTA size are part of the summation tree, so passes whose bits are compared must run
// under the same setting (the threshold table never changes a bit).
struct FusedStrategy {
  bool private_accumulators = true;
  bool threshold_table = true;
  // The per-thread form's warps a CTA (1–8), where k's accumulators fit; 0: the most that fit (the default). The
  // shared memory an SM holds bounds the warps it runs: fewer, smaller CTAs can fit more warps in all (on an H100,
  // k = 16 runs 12 warps an SM as 2 CTAs of 6, 15 as 3 CTAs of 5).
  int private_warps = 0;
};
void set_fused_strategy(const FusedStrategy& strategy);
FusedStrategy fused_strategy();

}  // namespace nq::cuda
