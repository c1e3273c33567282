// Op (e) with `exact` on the GPU: the optimal 1-D weighted k-means of many rows. The exact DP is a sequential
// divide and conquer, so the parallelism is across rows: every row is sorted by one segmented stable sort on the
// CPU's order keys, then one thread per row runs exact_row.h — the host's code — over a scratch slice in device
// memory, in waves that bound that scratch; a last pass labels the values, one CTA per row. Each row's result is
// bit for bit the host's.
#include <cub/device/device_segmented_sort.cuh>

#include <algorithm>

#include "core/cuda_device.h"
#include "cuda_check.cuh"
#include "device_buffer.cuh"
#include "netquant/error.h"
#include "quant/exact_row.h"
#include "quant/quant_formulas.h"
#include "rows_exact.cuh"

namespace nq::cuda {
namespace {

namespace qf = ::nq::quant;
namespace xr = ::nq::quant::exact_row;

constexpr int kThreads = 256;
constexpr size_t kScratchBudget = size_t{1} << 30;  // device scratch of one wave of rows, at least
// Rows launch one CTA each up to this grid, then stride (a grid's x dimension stops at 2^31 − 1).
constexpr int64_t kMaxRowGrid = int64_t{1} << 30;

// Sort keys and importances of one row (one CTA): a row whose importances are all zero is solved unweighted.
__global__ void __launch_bounds__(kThreads) row_keys_kernel(const float* w, const float* h, const int64_t* begin,
                                                            int64_t rows, uint32_t* keys, float* vals) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {  // block-uniform: the barrier below sees every thread
    const int64_t b = begin[r], e = begin[r + 1];
    int positive = 0;
    if (h)
      for (int64_t i = b + threadIdx.x; i < e; i += kThreads) positive |= h[i] > 0.0f;
    const bool weighted = h && __syncthreads_or(positive);
    for (int64_t i = b + threadIdx.x; i < e; i += kThreads) {
      keys[i] = qf::float_order_key(w[i]);
      vals[i] = weighted ? h[i] : 1.0f;
    }
  }
}

__global__ void keys_to_floats_kernel(uint32_t* keys, size_t n) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) reinterpret_cast<float*>(keys)[i] = qf::float_from_order_key(keys[i]);
}

struct ExactParams {
  const float* ws;  // sorted values (all rows)
  const float* hs;
  const int64_t* begin;
  int64_t row0, rows;  // this wave: rows [row0, row0 + rows)
  int k, n_max;
  unsigned char* scratch;  // rows × scratch_bytes(n_max, k)
  size_t scratch_bytes;
  double* centers;      // all rows × k
  double* first_value;  // all rows × k
  int32_t* count;
  int32_t* iterations;
  uint8_t* converged;
};

// One thread per row: nq::quantize's exact path (the k ≥ distinct shortcut, else exact_row::solve_row).
__global__ void exact_rows_kernel(ExactParams p) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= p.rows) return;
  const int64_t r = p.row0 + t;
  const int64_t b = p.begin[r];
  const int n = static_cast<int>(p.begin[r + 1] - b);
  const float* ws = p.ws + b;
  double* c = p.centers + r * p.k;
  p.converged[r] = 1;
  if (n == 0) {
    p.count[r] = 0;
    p.iterations[r] = 0;
    return;
  }
  if (const int m = qf::exact_representation(ws, n, p.k, c)) {
    p.count[r] = m;
    p.iterations[r] = 0;
    return;
  }
  const xr::Scratch s = xr::carve_scratch(p.scratch + static_cast<size_t>(t) * p.scratch_bytes, p.n_max, p.k);
  p.count[r] = xr::solve_row(s, ws, p.hs + b, n, p.k, c, p.first_value + r * p.k);
  p.iterations[r] = 1;
}

// Labels in the row's original order: nearest centre after the shortcut, else the cluster whose first value is
// the last one ≤ w (exact_dp's rule).
__global__ void __launch_bounds__(kThreads) exact_labels_kernel(const float* w, const int64_t* begin, int k,
                                                                const double* centers, const double* first_value,
                                                                const int32_t* count, const int32_t* iterations,
                                                                int64_t rows, int32_t* labels) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int m = count[r];
    const double* c = centers + r * k;
    const double* f = first_value + r * k;
    const bool dp = iterations[r] > 0;
    for (int64_t i = begin[r] + threadIdx.x; i < begin[r + 1]; i += kThreads)
      labels[i] = dp ? xr::label(w[i], f, m) : qf::nearest_center(w[i], c, m);
  }
}

}  // namespace

void rows_exact_device(const quant::RowsKmeansJob& job, const quant::RowsKmeansOut& out, int64_t max_row_len,
                       CUstream_st* stream) {
  bind_thread_device();
  NQ_CHECK(max_row_len <= quant::kRowsKmeansMaxRow, ErrorCode::kUnsupported,
           "rows_kmeans (exact): rows of " << max_row_len << " values exceed " << quant::kRowsKmeansMaxRow);
  const size_t rows = static_cast<size_t>(job.rows);
  if (rows == 0) return;
  int64_t total = 0;  // the values of all rows: the last offset, on the device
  NQ_CUDA_CHECK(cudaMemcpyAsync(&total, job.row_begin + rows, sizeof total, cudaMemcpyDeviceToHost, stream));
  NQ_CUDA_CHECK(cudaStreamSynchronize(stream));
  const size_t n = static_cast<size_t>(total);
  DeviceBuffer<float> vals_in(n), vals(n);
  DeviceBuffer<uint32_t> keys_in(n), keys(n);
  DeviceBuffer<double> first_value(rows * static_cast<size_t>(job.k));
  // CUB's temporary lives to the final synchronize like every other buffer here: freeing it while the sort may
  // still run is safe with cudaFree (it waits for the device) but not with a stream-ordered or pooled free.
  DeviceBuffer<unsigned char> temp;
  const unsigned row_grid = static_cast<unsigned>(std::min<int64_t>(job.rows, kMaxRowGrid));
  if (n > 0) {
    row_keys_kernel<<<row_grid, kThreads, 0, stream>>>(job.w, job.h, job.row_begin, job.rows, keys_in.get(),
                                                       vals_in.get());
    NQ_CUDA_CHECK_LAUNCH("row_keys_kernel");
    size_t temp_bytes = 0;
    NQ_CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairs(nullptr, temp_bytes, keys_in.get(), keys.get(),
                                                             vals_in.get(), vals.get(), static_cast<int64_t>(n),
                                                             static_cast<int64_t>(rows), job.row_begin,
                                                             job.row_begin + 1, stream));
    temp.allocate(temp_bytes);
    NQ_CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairs(temp.get(), temp_bytes, keys_in.get(), keys.get(),
                                                             vals_in.get(), vals.get(), static_cast<int64_t>(n),
                                                             static_cast<int64_t>(rows), job.row_begin,
                                                             job.row_begin + 1, stream));
    keys_to_floats_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(keys.get(), n);
    NQ_CUDA_CHECK_LAUNCH("keys_to_floats_kernel");
  }
  const int nm = static_cast<int>(std::max<int64_t>(max_row_len, 1));
  const size_t per_row = xr::align8(xr::scratch_bytes(nm, job.k));
  // Rows are solved one per thread, so a wave should hold enough rows to fill the device: the scratch may take a
  // quarter of the free memory when that is more than the fixed budget (long rows need ~68 bytes per value).
  size_t free_bytes = 0, total_bytes = 0;
  NQ_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const size_t budget = std::max(kScratchBudget, free_bytes / 4);
  const size_t wave = std::max<size_t>(1, std::min(rows, budget / per_row));
  DeviceBuffer<unsigned char> scratch(wave * per_row);
  ExactParams p{reinterpret_cast<const float*>(keys.get()), vals.get(), job.row_begin, 0, 0, job.k, nm,
                scratch.get(), per_row, out.centers, first_value.get(), out.center_count, out.iterations,
                out.converged};
  for (size_t r0 = 0; r0 < rows; r0 += wave) {
    p.row0 = static_cast<int64_t>(r0);
    p.rows = static_cast<int64_t>(std::min(wave, rows - r0));
    // Warps of 32 rows: a short wave of long rows still spreads over many SMs.
    exact_rows_kernel<<<static_cast<unsigned>((p.rows + 31) / 32), 32, 0, stream>>>(p);
    NQ_CUDA_CHECK_LAUNCH("exact_rows_kernel");
  }
  exact_labels_kernel<<<row_grid, kThreads, 0, stream>>>(job.w, job.row_begin, job.k, out.centers, first_value.get(),
                                                         out.center_count, out.iterations, job.rows, out.labels);
  NQ_CUDA_CHECK_LAUNCH("exact_labels_kernel");
  // The buffers above are freed on return: finish with them first.
  NQ_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace nq::cuda
