// Op (e) with `exact` on the GPU: the optimal 1-D weighted k-means of many rows. The exact DP is a sequential
// divide and conquer, so the parallelism is across rows: every row is sorted by one segmented stable sort on the
// CPU's order keys, then one thread per row runs exact_row.h — the host's code — over a scratch slice in device
// memory, in waves that bound that scratch; a last pass labels the values, one CTA per row. Each row's result is
// bit for bit the host's.
#include <cub/device/device_segmented_sort.cuh>

#include <algorithm>
#include <vector>

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
constexpr size_t kScratchBudget = size_t{1} << 30;  // device scratch of one wave of rows

// Sort keys and importances of one row (one CTA): a row whose importances are all zero is solved unweighted.
__global__ void __launch_bounds__(kThreads) row_keys_kernel(const float* w, const float* h, const int64_t* begin,
                                                            uint32_t* keys, float* vals) {
  const int64_t b = begin[blockIdx.x], e = begin[blockIdx.x + 1];
  int positive = 0;
  if (h)
    for (int64_t i = b + threadIdx.x; i < e; i += kThreads) positive |= h[i] > 0.0f;
  const bool weighted = h && __syncthreads_or(positive);
  for (int64_t i = b + threadIdx.x; i < e; i += kThreads) {
    keys[i] = qf::float_order_key(w[i]);
    vals[i] = weighted ? h[i] : 1.0f;
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
  int distinct = 0;
  for (int i = 0; i < n; ++i) distinct += (i == 0 || ws[i] != ws[i - 1]);
  if (p.k >= distinct) {
    int m = 0;
    for (int i = 0; i < n; ++i)
      if (i == 0 || ws[i] != ws[i - 1]) c[m++] = ws[i];
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
                                                                int32_t* labels) {
  const int64_t r = blockIdx.x;
  const int m = count[r];
  const double* c = centers + r * k;
  const double* f = first_value + r * k;
  const bool dp = iterations[r] > 0;
  for (int64_t i = begin[r] + threadIdx.x; i < begin[r + 1]; i += kThreads)
    labels[i] = dp ? xr::label(w[i], f, m) : qf::nearest_center(w[i], c, m);
}

}  // namespace

void rows_exact(const quant::RowsKmeansJob& job, const quant::RowsKmeansOut& out, int64_t n_max) {
  bind_thread_device();
  NQ_CHECK(n_max <= quant::kRowsKmeansMaxRow, ErrorCode::kUnsupported,
           "rows_kmeans (exact): rows of " << n_max << " values exceed " << quant::kRowsKmeansMaxRow);
  const size_t rows = static_cast<size_t>(job.rows), n = static_cast<size_t>(job.row_begin[job.rows]);
  const size_t k = static_cast<size_t>(job.k);
  if (rows == 0) return;
  DeviceBuffer<float> dw, dh, vals_in(n), vals(n);
  DeviceBuffer<int64_t> dbegin;
  DeviceBuffer<uint32_t> keys_in(n), keys(n);
  DeviceBuffer<double> dc(rows * k), dfirst(rows * k);
  DeviceBuffer<int32_t> dcount(rows), diters(rows), dlabels(n);
  DeviceBuffer<uint8_t> dconv(rows);
  dw.upload(job.w, n);
  if (job.h) dh.upload(job.h, n);
  dbegin.upload(job.row_begin, rows + 1);
  if (n > 0) {
    row_keys_kernel<<<static_cast<unsigned>(rows), kThreads>>>(dw.get(), job.h ? dh.get() : nullptr, dbegin.get(),
                                                                keys_in.get(), vals_in.get());
    NQ_CUDA_CHECK_LAUNCH("row_keys_kernel");
    size_t temp_bytes = 0;
    NQ_CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairs(nullptr, temp_bytes, keys_in.get(), keys.get(),
                                                             vals_in.get(), vals.get(), static_cast<int64_t>(n),
                                                             static_cast<int64_t>(rows), dbegin.get(), dbegin.get() + 1));
    DeviceBuffer<unsigned char> temp(temp_bytes);
    NQ_CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairs(temp.get(), temp_bytes, keys_in.get(), keys.get(),
                                                             vals_in.get(), vals.get(), static_cast<int64_t>(n),
                                                             static_cast<int64_t>(rows), dbegin.get(), dbegin.get() + 1));
    keys_to_floats_kernel<<<static_cast<unsigned>((n + 255) / 256), 256>>>(keys.get(), n);
    NQ_CUDA_CHECK_LAUNCH("keys_to_floats_kernel");
  }
  const int nm = static_cast<int>(std::max<int64_t>(n_max, 1));
  const size_t per_row = xr::align8(xr::scratch_bytes(nm, job.k));
  const size_t wave = std::max<size_t>(1, std::min(rows, kScratchBudget / per_row));
  DeviceBuffer<unsigned char> scratch(wave * per_row);
  ExactParams p{reinterpret_cast<const float*>(keys.get()), vals.get(), dbegin.get(), 0, 0, job.k, nm, scratch.get(),
                per_row, dc.get(), dfirst.get(), dcount.get(), diters.get(), dconv.get()};
  for (size_t r0 = 0; r0 < rows; r0 += wave) {
    p.row0 = static_cast<int64_t>(r0);
    p.rows = static_cast<int64_t>(std::min(wave, rows - r0));
    exact_rows_kernel<<<static_cast<unsigned>((p.rows + 63) / 64), 64>>>(p);
    NQ_CUDA_CHECK_LAUNCH("exact_rows_kernel");
  }
  exact_labels_kernel<<<static_cast<unsigned>(rows), kThreads>>>(dw.get(), dbegin.get(), job.k, dc.get(), dfirst.get(),
                                                                  dcount.get(), diters.get(), dlabels.get());
  NQ_CUDA_CHECK_LAUNCH("exact_labels_kernel");
  std::vector<double> c(rows * k);
  dc.download(c.data(), c.size());
  dcount.download(out.center_count, rows);
  for (size_t r = 0; r < rows; ++r)  // leave the caller's slots past each row's centres untouched
    std::copy(c.begin() + r * k, c.begin() + r * k + out.center_count[r], out.centers + r * k);
  dlabels.download(out.labels, n);
  diters.download(out.iterations, rows);
  dconv.download(out.converged, rows);
}

}  // namespace nq::cuda
