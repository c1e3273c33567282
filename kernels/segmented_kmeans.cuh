// Per-row (per-group) Hessian-weighted k-means on the GPU: one CTA per row, the row kept in shared memory and all
// Lloyd iterations run on chip (the performance targets "per-row k-means"). Not part of quant_ops.h yet: the quantizer
// driver's row/group scopes can call it directly (CUDA builds only, see kernels/segmented_kmeans.cu).
#pragma once

#include <cstdint>

// cudaStream_t without <cuda_runtime.h>, so plain C++ (tests) can include this header.
struct CUstream_st;

namespace nq::cuda {

// Largest row length the kernel accepts (the row must fit in shared memory with its fp64 prefix sums).
constexpr int64_t kSegmentedKmeansMaxRow = 8192;

// rows × row_len weights w (row-major, contiguous) with importances h (nullptr: h ≡ 1). centers: rows × k,
// in: the initial codebook of each row (any order; sorted on entry), out: the final codebook, ascending.
// Each iteration assigns every weight to its nearest centre (the brute-force argmin of fl((w − c_j)²), ties to
// the lowest index; equal centres allowed: all but the first of them stay empty) and moves each centre to the
// h-weighted mean of its members (plain mean when their Σh = 0; an empty cluster keeps its centre); stops early
// when no centre moves. labels (rows × row_len, nullable): the nearest
// centre of each weight under the final codebook; distortion (rows, nullable): Σ h (w − c_label)² per row.
// Deterministic (fixed reduction trees, no float atomics). Throws kUnsupported when row_len exceeds
// kSegmentedKmeansMaxRow or the device's shared memory.
// Host pointers; copies in and out.
void segmented_kmeans(const float* w, const float* h, int64_t rows, int64_t row_len, int k, int iterations,
                      double* centers, int32_t* labels, double* distortion);
// Device pointers (w, h, centers, labels, distortion all on the device); asynchronous on `stream`.
void segmented_kmeans_device(const float* d_w, const float* d_h, int64_t rows, int64_t row_len, int k,
                             int iterations, double* d_centers, int32_t* d_labels, double* d_distortion,
                             CUstream_st* stream = nullptr);

}  // namespace nq::cuda
