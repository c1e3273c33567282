// Op (e) on the GPU: per-row weighted k-means, one CTA per row (kernels/rows_kmeans.cuh). The CTA loads its row,
// sorts (w, h) in shared memory with CUB's stable BlockRadixSort on the same order keys as the CPU sort, then runs
// row_lloyd.h's driver — the code the CPU op runs, with the block as its team — so each row's result is bit for
// bit the host's. HBM is read once per row and written once with the labels; every Lloyd iteration is k binary
// searches and O(k) prefix-sum arithmetic on chip.
#include <cub/block/block_radix_sort.cuh>

#include <algorithm>
#include <climits>
#include <type_traits>
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

// CTAs per SM the register budget must allow. A row's Lloyd iterations are latency-bound (k searches, then
// O(k) steps on one thread, between barriers), so rows resident side by side are the throughput. Rows of 4096
// (kItems = 16) need ~58 KB of shared memory, so 3 CTAs fit in an SM's 228 KB, but the sort's 16 keys and values
// per thread took 120 registers unbounded, which allows 2; bounded to 3 CTAs, ptxas (CUDA 13, sm_90) fits 80
// registers with 40 bytes of spills in the sort. The shorter instances are bounded at what they reached
// unbounded (48 and 58 registers: 5 and 4 CTAs) — an explicit bound of 1 let them grow to 92 — and rows of 8192
// are held to one CTA per SM by shared memory anyway.
template <int kItems>
constexpr int kMinResidentCtas = kItems <= 4 ? 5 : kItems <= 8 ? 4 : kItems <= 16 ? 3 : 1;

template <int kItems>
__global__ void __launch_bounds__(kThreads, kMinResidentCtas<kItems>) rows_kmeans_kernel(RowsParams p) {
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

// Checks that a row of n_max values fits the device's shared memory and opts the kernel into it; returns the
// dynamic shared memory of one CTA.
template <int kItems>
size_t prepare_rows_kernel(int n_max, int k) {
  const size_t smem = RowsLayout<kItems>::bytes(n_max, k);
  int dev = 0, optin = 0;
  NQ_CUDA_CHECK(cudaGetDevice(&dev));
  NQ_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  NQ_CHECK(smem <= static_cast<size_t>(optin), ErrorCode::kUnsupported,
           "rows_kmeans: rows of " << n_max << " values with k = " << k << " need " << smem
                                   << " bytes of shared memory; this device offers " << optin);
  // The device's ceiling, not this call's size: the setting is shared by every host thread (see set_smem).
  NQ_CUDA_CHECK(cudaFuncSetAttribute(rows_kmeans_kernel<kItems>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin));
  return smem;
}

template <int kItems>
void launch_rows(const RowsParams& p, CUstream_st* stream) {
  const size_t smem = prepare_rows_kernel<kItems>(p.n_max, p.job.k);
  // One CTA per row (the hardware balances rows of uneven cost); the kernel strides beyond the grid limit.
  const int64_t grid = std::min<int64_t>(p.job.rows, INT_MAX);
  rows_kmeans_kernel<kItems><<<static_cast<unsigned>(grid), kThreads, smem, stream>>>(p);
  NQ_CUDA_CHECK_LAUNCH("rows_kmeans_kernel");
}

template <int kItems>
int resident_ctas(int n_max, int k) {
  const size_t smem = prepare_rows_kernel<kItems>(n_max, k);
  int ctas = 0;
  NQ_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&ctas, rows_kmeans_kernel<kItems>, kThreads, smem));
  return ctas;
}

// Calls op(std::integral_constant<int, kItems>) for the kernel instance that holds rows of up to n_max values.
template <class Op>
auto with_row_kernel(int64_t n_max, Op op) {
  if (n_max <= 4 * kThreads) return op(std::integral_constant<int, 4>{});
  if (n_max <= 8 * kThreads) return op(std::integral_constant<int, 8>{});
  if (n_max <= 16 * kThreads) return op(std::integral_constant<int, 16>{});
  return op(std::integral_constant<int, 32>{});
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
  with_row_kernel(max_row_len, [&](auto items) { launch_rows<decltype(items)::value>(p, stream); });
}

int rows_kmeans_resident_ctas(int64_t max_row_len, int k) {
  bind_thread_device();
  NQ_CHECK(max_row_len >= 1 && max_row_len <= quant::kRowsKmeansCudaMaxRow && k >= 1, ErrorCode::kInvalidArgument,
           "rows_kmeans_resident_ctas: rows of " << max_row_len << " values, k = " << k);
  const int n_max = static_cast<int>(max_row_len);
  return with_row_kernel(max_row_len, [&](auto items) { return resident_ctas<decltype(items)::value>(n_max, k); });
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
  dc.download(c.data(), nc);  // cudaMemcpy synchronizes with the thread's default stream
  dcount.download(out.center_count, rows);
  for (size_t r = 0; r < rows; ++r)  // leave the caller's slots past each row's centres untouched
    std::copy(c.begin() + r * job.k, c.begin() + r * job.k + out.center_count[r], out.centers + r * job.k);
  dlabels.download(out.labels, n);
  diters.download(out.iterations, rows);
  dconv.download(out.converged, rows);
}

}  // namespace nq::cuda
