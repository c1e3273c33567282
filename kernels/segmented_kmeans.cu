// Per-row weighted k-means, one CTA per row (kernels/segmented_kmeans.cuh). In 1-D with λ = 0 every cluster is an
// interval of the sorted row (Choi et al. 2017 eq. 8: clusters are intervals in 1-D), so the row is sorted once in shared memory (CUB BlockRadixSort),
// prefix sums of h and h·w are formed once in fp64 (CUB BlockScan, a fixed tree), and each Lloyd iteration costs
// k binary searches for the cluster boundaries plus O(k) arithmetic — HBM is read only to load the row and to
// write the labels.
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <vector>

#include "core/cuda_device.h"
#include "cuda_check.cuh"
#include "device_buffer.cuh"
#include "netquant/error.h"
#include "quant/quant_formulas.h"
#include "segmented_kmeans.cuh"

namespace nq::cuda {
namespace {

namespace qf = ::nq::quant;

constexpr int kThreads = 256;

struct Pair {
  double h, hw;
};
struct PairSum {
  __device__ __forceinline__ Pair operator()(const Pair& a, const Pair& b) const { return {a.h + b.h, a.hw + b.hw}; }
};

struct SegParams {
  const float* w;
  const float* h;  // nullable
  int64_t rows;
  int len;
  int k;
  int iterations;
  double* centers;
  int32_t* labels;     // nullable
  double* distortion;  // nullable
};

// Index of the nearest centre among ascending c (equal centres allowed), exactly the brute-force argmin of
// fl((w − c_j)²) with ties to the lowest index: by monotone rounding the winner is c_{p−1} or c_p
// (p = count_below), except that centres further left may tie with c_{p−1} (equal or near-coincident centres),
// and a tie goes to the lowest of them.
__device__ __forceinline__ int nearest(float w, const double* c, int k) {
  int lo = qf::count_below(w, c, k);
  if (lo == k || (lo > 0 && !qf::closer_to_upper(w, c[lo - 1], c[lo]))) --lo;
  while (lo > 0 && !qf::closer_to_upper(w, c[lo - 1], c[lo])) --lo;  // ties with farther-left centres
  return lo;
}

__device__ __forceinline__ void sort_centers(double* c, int k) {  // one thread; k is small
  for (int i = 1; i < k; ++i) {
    const double v = c[i];
    int j = i - 1;
    while (j >= 0 && c[j] > v) { c[j + 1] = c[j]; --j; }
    c[j + 1] = v;
  }
}

template <int kItems>
struct SegLayout {
  using Sort = cub::BlockRadixSort<float, kThreads, kItems, float>;
  using Scan = cub::BlockScan<Pair, kThreads>;
  static constexpr size_t temp_bytes() {
    const size_t a = sizeof(typename Sort::TempStorage), b = sizeof(typename Scan::TempStorage);
    const size_t m = (a > b ? a : b) > kThreads / 32 * sizeof(double) ? (a > b ? a : b) : kThreads / 32 * sizeof(double);
    return (m + 15) & ~size_t{15};
  }
  // temp | ph (len+1) | phw (len+1) | c (k) | cnew (k) | ws (len floats) | hs (len floats) | starts (k+1 ints)
  static size_t bytes(int len, int k) {
    return temp_bytes() + sizeof(double) * (2 * static_cast<size_t>(len + 1) + 2 * static_cast<size_t>(k)) +
           2 * sizeof(float) * static_cast<size_t>(len) + sizeof(int) * static_cast<size_t>(k + 1);
  }
};

template <int kItems>
__global__ void __launch_bounds__(kThreads) segmented_kmeans_kernel(SegParams p) {
  using L = SegLayout<kItems>;
  extern __shared__ __align__(16) unsigned char smem[];
  auto& sort_temp = *reinterpret_cast<typename L::Sort::TempStorage*>(smem);
  auto& scan_temp = *reinterpret_cast<typename L::Scan::TempStorage*>(smem);
  double* warp_part = reinterpret_cast<double*>(smem);
  double* ph = reinterpret_cast<double*>(smem + L::temp_bytes());
  double* phw = ph + (p.len + 1);
  double* c = phw + (p.len + 1);
  double* cnew = c + p.k;
  float* ws = reinterpret_cast<float*>(cnew + p.k);
  float* hs = ws + p.len;  // the sorted importances: direct sums where prefix differences are ill-conditioned
  int* starts = reinterpret_cast<int*>(hs + p.len);
  const int tid = threadIdx.x, len = p.len, k = p.k;

  for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
    const float* wr = p.w + row * len;
    const float* hr = p.h ? p.h + row * len : nullptr;
    // Striped (coalesced) load; padding sorts last (+inf) with zero weight.
    float keys[kItems], vals[kItems];
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int idx = tid + i * kThreads;
      keys[i] = idx < len ? wr[idx] : __int_as_float(0x7f800000);
      vals[i] = idx < len ? (hr ? hr[idx] : 1.0f) : 0.0f;
    }
    for (int j = tid; j < k; j += kThreads) c[j] = p.centers[row * k + j];
    __syncthreads();  // previous row done with the shared arrays
    typename L::Sort(sort_temp).Sort(keys, vals);  // blocked arrangement: thread t holds t·kItems ..
    if (tid == 0) sort_centers(c, k);
    __syncthreads();
    Pair pr[kItems];
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int idx = tid * kItems + i;
      if (idx < len) {
        ws[idx] = keys[i];
        hs[idx] = vals[i];
      }
      const double hv = vals[i];
      pr[i] = {hv, hv * static_cast<double>(idx < len ? keys[i] : 0.0f)};  // padding: 0, not 0·inf
    }
    typename L::Scan(scan_temp).InclusiveScan(pr, pr, PairSum());
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int idx = tid * kItems + i;
      if (idx < len) {
        ph[idx + 1] = pr[i].h;
        phw[idx + 1] = pr[i].hw;
      }
    }
    if (tid == 0) {
      ph[0] = phw[0] = 0.0;
      starts[0] = 0;
      starts[k] = len;
    }
    __syncthreads();

    for (int it = 0; it < p.iterations; ++it) {
      // Cluster j starts at the first sorted weight whose nearest centre is ≥ j (nearest() is monotone in w).
      for (int j = 1 + tid; j < k; j += kThreads) {
        int lo = 0, hi = len;
        while (lo < hi) {
          const int mid = (lo + hi) >> 1;
          if (nearest(ws[mid], c, k) >= j) hi = mid; else lo = mid + 1;
        }
        starts[j] = lo;
      }
      __syncthreads();
      int moved = 0;
      for (int j = tid; j < k; j += kThreads) {
        const int s = starts[j], e = starts[j + 1];
        double v = c[j];
        if (e > s) {
          const double s0 = ph[e] - ph[s];
          if (s0 > 0 && s0 >= 0x1p-20 * ph[e]) {  // the difference keeps ≥ 32 good bits
            v = (phw[e] - phw[s]) / s0;
          } else {
            // A light cluster after heavy ones (importances spanning many decades): the prefix difference has
            // lost its bits, or even rounded to 0. Direct sums over the members, in order.
            double a = 0.0, b = 0.0, sw = 0.0;
            for (int i = s; i < e; ++i) {
              a = qf::fadd(a, static_cast<double>(hs[i]));
              b = qf::fadd(b, qf::fmul(static_cast<double>(hs[i]), static_cast<double>(ws[i])));
              sw = qf::fadd(sw, static_cast<double>(ws[i]));
            }
            v = a > 0 ? b / a : sw / (e - s);  // weightless members: their plain mean
          }
        }
        moved |= v != c[j];
        cnew[j] = v;
      }
      const int any = __syncthreads_or(moved);
      if (!any) break;
      if (tid == 0) {
        for (int j = 0; j < k; ++j) c[j] = cnew[j];
        sort_centers(c, k);  // an empty cluster's kept centre can be overtaken by a neighbour
      }
      __syncthreads();
    }

    // Labels in the original order, and the row's distortion (fixed tree: shuffles, then warps in order).
    double dist = 0.0;
    for (int idx = tid; idx < len; idx += kThreads) {
      const float wv = wr[idx];
      const double hv = hr ? static_cast<double>(hr[idx]) : 1.0;
      const int j = nearest(wv, c, k);
      if (p.labels) p.labels[row * len + idx] = j;
      const double d = qf::fadd(static_cast<double>(wv), -c[j]);
      dist = qf::fadd(dist, qf::fmul(hv, qf::fmul(d, d)));  // no FMA contraction: quant_formulas.h's rule
    }
    for (int off = 16; off > 0; off >>= 1) dist += __shfl_down_sync(0xffffffffu, dist, off);
    __syncthreads();  // the scan temp storage (aliased by warp_part) is no longer in use
    if ((tid & 31) == 0) warp_part[tid >> 5] = dist;
    __syncthreads();
    if (tid == 0 && p.distortion) {
      double s = 0.0;
      for (int v = 0; v < kThreads / 32; ++v) s += warp_part[v];
      p.distortion[row] = s;
    }
    for (int j = tid; j < k; j += kThreads) p.centers[row * k + j] = c[j];
  }
}

template <int kItems>
void launch_segmented(const SegParams& p, CUstream_st* stream) {
  const size_t smem = SegLayout<kItems>::bytes(p.len, p.k);
  int dev = 0, optin = 0, sms = 0;
  NQ_CUDA_CHECK(cudaGetDevice(&dev));
  NQ_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  NQ_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  NQ_CHECK(smem <= static_cast<size_t>(optin), ErrorCode::kUnsupported,
           "segmented k-means: a row of " << p.len << " weights with k = " << p.k << " needs " << smem
                                          << " bytes of shared memory; this device offers " << optin);
  NQ_CUDA_CHECK(cudaFuncSetAttribute(segmented_kmeans_kernel<kItems>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(smem)));
  const int64_t grid = std::min<int64_t>(p.rows, static_cast<int64_t>(sms) * 64);
  segmented_kmeans_kernel<kItems><<<static_cast<unsigned>(grid), kThreads, smem, stream>>>(p);
  NQ_CUDA_CHECK_LAUNCH("segmented_kmeans_kernel");
}

}  // namespace

void segmented_kmeans_device(const float* d_w, const float* d_h, int64_t rows, int64_t row_len, int k,
                             int iterations, double* d_centers, int32_t* d_labels, double* d_distortion,
                             CUstream_st* stream) {
  bind_thread_device();
  NQ_CHECK(rows >= 0 && row_len >= 1, ErrorCode::kInvalidArgument,
           "segmented k-means: bad shape " << rows << " x " << row_len);
  NQ_CHECK(k >= 1 && iterations >= 0, ErrorCode::kInvalidArgument,
           "segmented k-means: k = " << k << ", iterations = " << iterations);
  NQ_CHECK(row_len <= kSegmentedKmeansMaxRow, ErrorCode::kUnsupported,
           "segmented k-means: rows of " << row_len << " weights exceed the on-chip limit of "
                                         << kSegmentedKmeansMaxRow);
  if (rows == 0) return;
  const SegParams p{d_w, d_h, rows, static_cast<int>(row_len), k, iterations, d_centers, d_labels, d_distortion};
  if (row_len <= 4 * kThreads) launch_segmented<4>(p, stream);
  else if (row_len <= 16 * kThreads) launch_segmented<16>(p, stream);
  else launch_segmented<32>(p, stream);
}

void segmented_kmeans(const float* w, const float* h, int64_t rows, int64_t row_len, int k, int iterations,
                      double* centers, int32_t* labels, double* distortion) {
  bind_thread_device();
  NQ_CHECK(rows >= 0 && row_len >= 1 && k >= 1, ErrorCode::kInvalidArgument,
           "segmented k-means: bad shape " << rows << " x " << row_len << ", k = " << k);
  if (rows == 0) return;
  const size_t n = static_cast<size_t>(rows) * static_cast<size_t>(row_len);
  const size_t nc = static_cast<size_t>(rows) * static_cast<size_t>(k);
  DeviceBuffer<float> dw, dh;
  DeviceBuffer<double> dc, dd(distortion ? static_cast<size_t>(rows) : 0);
  DeviceBuffer<int32_t> dl(labels ? n : 0);
  dw.upload(w, n);
  if (h) dh.upload(h, n);
  dc.upload(centers, nc);
  segmented_kmeans_device(dw.get(), h ? dh.get() : nullptr, rows, row_len, k, iterations, dc.get(),
                          labels ? dl.get() : nullptr, distortion ? dd.get() : nullptr, 0);
  dc.download(centers, nc);  // cudaMemcpy synchronizes with the default stream
  if (labels) dl.download(labels, n);
  if (distortion) dd.download(distortion, static_cast<size_t>(rows));
}

}  // namespace nq::cuda
