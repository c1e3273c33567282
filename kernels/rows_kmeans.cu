// Op (e) on the GPU: per-row weighted k-means, one CTA per row (kernels/rows_kmeans.cuh). The CTA loads its row,
// sorts (w, h) in shared memory with CUB's stable BlockRadixSort on the same order keys as the CPU sort, then runs
// row_lloyd.h's driver — the code the CPU op runs, with the block as its team — so each row's result is bit for
// bit the host's. HBM is read once per row and written once with the labels; every Lloyd iteration is k binary
// searches and O(k) prefix-sum arithmetic on chip.
#include <cub/block/block_radix_sort.cuh>

#include <algorithm>
#include <climits>
#include <vector>

#include "core/cuda_device.h"
#include "cuda_check.cuh"
#include "device_buffer.cuh"
#include "netquant/error.h"
#include "quant/quant_formulas.h"
#include "quant/row_lloyd.h"
#include "rows_exact.cuh"
#include "rows_kmeans.cuh"

namespace nq::cuda {
namespace {

namespace qf = ::nq::quant;
namespace rl = ::nq::quant::row_lloyd;

constexpr int kThreads = 256;

// row_lloyd's team: the thread block.
struct BlockTeam {
  __host__ __device__ int rank() const {
#if defined(__CUDA_ARCH__)
    return static_cast<int>(threadIdx.x);
#else
    return 0;
#endif
  }
  __host__ __device__ int size() const { return kThreads; }
  __host__ __device__ void sync() const {
#if defined(__CUDA_ARCH__)
    __syncthreads();
#endif
  }
};

struct RowsParams {
  quant::RowsKmeansJob job;
  quant::RowsKmeansOut out;
  int n_max;
};

template <int kItems>
struct RowsLayout {
  using Sort = cub::BlockRadixSort<uint32_t, kThreads, kItems, float>;
  // The sort storage lives in the region of the prefix tables, which are built only after the sort.
  static size_t bytes(int n_max, int k) { return rl::workspace_bytes(n_max, k, sizeof(typename Sort::TempStorage)); }
};

template <int kItems>
__global__ void __launch_bounds__(kThreads) rows_kmeans_kernel(RowsParams p) {
  using L = RowsLayout<kItems>;
  extern __shared__ __align__(16) unsigned char smem[];
  auto& sort_temp = *reinterpret_cast<typename L::Sort::TempStorage*>(smem);
  const rl::Workspace ws = rl::carve_workspace(smem, p.n_max, p.job.k, sizeof(typename L::Sort::TempStorage));
  const rl::Params params{p.job.k, static_cast<rl::InitRule>(p.job.init), p.job.max_iter, p.job.tol};
  const BlockTeam team;
  const int tid = static_cast<int>(threadIdx.x);
  const size_t k = static_cast<size_t>(p.job.k);

  for (int64_t row = blockIdx.x; row < p.job.rows; row += gridDim.x) {
    const int64_t begin = p.job.row_begin[row];
    const int n = static_cast<int>(p.job.row_begin[row + 1] - begin);
    if (n > p.n_max) __trap();  // a caller's max_row_len below a real row: the workspace would overflow
    const float* wr = p.job.w + begin;
    const float* hr = p.job.h ? p.job.h + begin : nullptr;
    __syncthreads();  // the previous row is done with the workspace
    if (n == 0) {
      if (tid == 0) {
        p.out.center_count[row] = 0;
        p.out.iterations[row] = 0;
        p.out.converged[row] = 1;
      }
      continue;
    }
    // Blocked load (thread t holds positions t·kItems …): the sort is stable in that order, which is the row's
    // order, as on the CPU. Padding sorts last (the largest key) and never reaches the workspace.
    uint32_t keys[kItems];
    float vals[kItems];
    int positive = 0;
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int idx = tid * kItems + i;
      keys[i] = idx < n ? qf::float_order_key(wr[idx]) : 0xffffffffu;
      vals[i] = idx < n ? (hr ? hr[idx] : 1.0f) : 0.0f;
      positive |= idx < n && vals[i] > 0.0f;
    }
    // A row whose importances are all zero is solved unweighted, as nq::quantize does.
    if (hr && !__syncthreads_or(positive)) {
#pragma unroll
      for (int i = 0; i < kItems; ++i) vals[i] = 1.0f;
    }
    typename L::Sort(sort_temp).Sort(keys, vals);
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int idx = tid * kItems + i;
      if (idx < n) {
        ws.ws[idx] = qf::float_from_order_key(keys[i]);
        ws.hs[idx] = vals[i];
      }
    }
    int given_k = 0;
    if (p.job.initial_count) {
      given_k = p.job.initial_count[row];
      for (int j = tid; j < given_k; j += kThreads) ws.c[j] = p.job.initial[static_cast<size_t>(row) * k + j];
    }
    __syncthreads();  // sorted row and starts in place; the sort storage may now become the prefix tables
    rl::solve(team, ws, n, params, given_k);
    const int kc = ws.st->k;
    for (int j = tid; j < kc; j += kThreads) p.out.centers[static_cast<size_t>(row) * k + j] = ws.c[j];
    if (tid == 0) {
      p.out.center_count[row] = kc;
      p.out.iterations[row] = ws.st->iterations;
      p.out.converged[row] = static_cast<uint8_t>(ws.st->converged);
    }
    for (int i = tid; i < n; i += kThreads) p.out.labels[begin + i] = qf::nearest_center(wr[i], ws.c, kc);
  }
}

template <int kItems>
void launch_rows(const RowsParams& p, CUstream_st* stream) {
  const size_t smem = RowsLayout<kItems>::bytes(p.n_max, p.job.k);
  int dev = 0, optin = 0;
  NQ_CUDA_CHECK(cudaGetDevice(&dev));
  NQ_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  NQ_CHECK(smem <= static_cast<size_t>(optin), ErrorCode::kUnsupported,
           "rows_kmeans: rows of " << p.n_max << " values with k = " << p.job.k << " need " << smem
                                   << " bytes of shared memory; this device offers " << optin);
  // The device's ceiling, not this call's size: the setting is shared by every host thread (see set_smem).
  NQ_CUDA_CHECK(cudaFuncSetAttribute(rows_kmeans_kernel<kItems>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin));
  // One CTA per row (the hardware balances rows of uneven cost); the kernel strides beyond the grid limit.
  const int64_t grid = std::min<int64_t>(p.job.rows, INT_MAX);
  rows_kmeans_kernel<kItems><<<static_cast<unsigned>(grid), kThreads, smem, stream>>>(p);
  NQ_CUDA_CHECK_LAUNCH("rows_kmeans_kernel");
}

}  // namespace

void rows_kmeans_device(const quant::RowsKmeansJob& job, const quant::RowsKmeansOut& out, int64_t max_row_len,
                        CUstream_st* stream) {
  bind_thread_device();
  if (job.exact) return rows_exact_device(job, out, max_row_len, stream);  // one thread per row (rows_exact.cu)
  NQ_CHECK(max_row_len <= quant::kRowsKmeansCudaMaxRow, ErrorCode::kUnsupported,
           "rows_kmeans: rows of " << max_row_len << " values exceed the on-chip limit of "
                                   << quant::kRowsKmeansCudaMaxRow);
  if (job.rows == 0) return;
  const RowsParams p{job, out, static_cast<int>(std::max<int64_t>(max_row_len, 1))};
  if (max_row_len <= 4 * kThreads) launch_rows<4>(p, stream);
  else if (max_row_len <= 8 * kThreads) launch_rows<8>(p, stream);
  else if (max_row_len <= 16 * kThreads) launch_rows<16>(p, stream);
  else launch_rows<32>(p, stream);
}

void rows_kmeans(const quant::RowsKmeansJob& job, const quant::RowsKmeansOut& out) {
  bind_thread_device();
  const int64_t n_max = quant::check_rows_kmeans_job(job);
  if (job.rows == 0) return;
  const size_t rows = static_cast<size_t>(job.rows), n = static_cast<size_t>(job.row_begin[job.rows]);
  const size_t nc = rows * static_cast<size_t>(job.k);
  DeviceBuffer<float> dw, dh;
  DeviceBuffer<int64_t> dbegin;
  DeviceBuffer<double> dinit, dc(nc);
  DeviceBuffer<int32_t> dinit_count, dcount(rows), dlabels(n), diters(rows);
  DeviceBuffer<uint8_t> dconv(rows);
  dw.upload(job.w, n);
  if (job.h) dh.upload(job.h, n);
  dbegin.upload(job.row_begin, rows + 1);
  if (job.initial_count) {
    dinit.upload(job.initial, nc);
    dinit_count.upload(job.initial_count, rows);
  }
  quant::RowsKmeansJob dj = job;
  dj.w = dw.get();
  dj.h = job.h ? dh.get() : nullptr;
  dj.row_begin = dbegin.get();
  dj.initial = job.initial_count ? dinit.get() : nullptr;
  dj.initial_count = job.initial_count ? dinit_count.get() : nullptr;
  const quant::RowsKmeansOut dout{dc.get(), dcount.get(), dlabels.get(), diters.get(), dconv.get()};
  rows_kmeans_device(dj, dout, n_max, nullptr);  // checks the row length for the chosen kernel
  // Download only each row's written centres' slots would need a gather; the whole rows × k block is small.
  std::vector<double> c(nc);
  dc.download(c.data(), nc);  // cudaMemcpy synchronizes with the default stream
  dcount.download(out.center_count, rows);
  for (size_t r = 0; r < rows; ++r)  // leave the caller's slots past each row's centres untouched
    std::copy(c.begin() + r * job.k, c.begin() + r * job.k + out.center_count[r], out.centers + r * job.k);
  dlabels.download(out.labels, n);
  diters.download(out.iterations, rows);
  dconv.download(out.converged, rows);
}

}  // namespace nq::cuda
