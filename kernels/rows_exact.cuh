// Op (e) with `exact` on the device: the optimal 1-D k-means of every row, one thread per row.
#pragma once

#include <cstdint>

#include "quant/quant_ops.h"

// cudaStream_t without <cuda_runtime.h>, so plain C++ can include this header.
struct CUstream_st;

namespace nq::cuda {

// As rows_kmeans_device (kernels/rows_kmeans.cuh) for job.exact: device pointers, max_row_len the longest row
// (≤ quant::kRowsKmeansMaxRow); allocates its sort buffers and scratch, runs on `stream`.
void rows_exact_device(const quant::RowsKmeansJob& job, const quant::RowsKmeansOut& out, int64_t max_row_len,
                       CUstream_st* stream = nullptr);

}  // namespace nq::cuda
