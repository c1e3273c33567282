// Op (e) rows_kmeans on the device, for callers that already hold the data there (the GPU benchmark): one CTA
// per row, the row sorted and iterated in shared memory (the performance targets "per-row k-means"). The
// host-pointer entry cuda::rows_kmeans is declared with the other ops in src/quant/quant_ops.h.
#pragma once

#include <cstdint>

#include "quant/quant_ops.h"

// cudaStream_t without <cuda_runtime.h>, so plain C++ can include this header.
struct CUstream_st;

namespace nq::cuda {

// job/out as for quant_ops.h op (e), every pointer a device pointer; max_row_len: the longest row (the host
// cannot read row_begin), at most quant::kRowsKmeansCudaMaxRow (kRowsKmeansMaxRow with job.exact, which runs
// rows_exact_device). The job's arguments are not checked here (check_rows_kmeans_job checks a host copy).
// Asynchronous on `stream`.
void rows_kmeans_device(const quant::RowsKmeansJob& job, const quant::RowsKmeansOut& out, int64_t max_row_len,
                        CUstream_st* stream = nullptr);

// How many CTAs of the kernel rows_kmeans_device picks for rows of up to max_row_len values at k run side by
// side on one SM of the current device (the CUDA occupancy calculator): the rows in flight per SM.
int rows_kmeans_resident_ctas(int64_t max_row_len, int k);

}  // namespace nq::cuda
