// CUDA ops of 2-D max pooling (nn_ops.h): forward records the first arg-max; backward is a gather (one thread per
// input element, windows in increasing output order — the CPU's order), so overlapping windows add without atomics.
#include <limits>

#include "nn/nn_ops.h"
#include "nn_common.cuh"

namespace nq::nn::cuda {
namespace {

using ::nq::cuda::kNnThreads;
using ::nq::cuda::nn_grid;

struct PoolDims {
  int64_t planes, h, w, kh, kw, stride, pad, oh, ow;
};

PoolDims dims_of(const Conv2dShape& s) {
  NQ_CHECK(s.n >= 0 && s.in_c > 0 && s.in_h > 0 && s.in_w > 0 && s.kh > 0 && s.kw > 0 && s.stride > 0 &&
               s.padding >= 0 && s.out_h() > 0 && s.out_w() > 0,
           ErrorCode::kInvalidArgument, "max-pool: invalid geometry");
  NQ_CHECK(s.n * s.in_c * s.in_h * s.in_w <= std::numeric_limits<int32_t>::max(), ErrorCode::kInvalidArgument,
           "max-pool input of " << s.n * s.in_c * s.in_h * s.in_w << " values is too large for one batch");
  return {s.n * s.in_c, s.in_h, s.in_w, s.kh, s.kw, s.stride, s.padding, s.out_h(), s.out_w()};
}

template <class T>
__global__ void maxpool_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int32_t* __restrict__ arg,
                                       PoolDims d) {
  NQ_GRID_STRIDE(o, d.planes * d.oh * d.ow) {
    const int64_t ox = o % d.ow, oy = (o / d.ow) % d.oh, plane = o / (d.ow * d.oh);
    const int64_t base = plane * d.h * d.w;
    int64_t best = -1;
    T best_v = T(0);
    for (int64_t ky = 0; ky < d.kh; ++ky) {
      const int64_t iy = oy * d.stride - d.pad + ky;
      if (iy < 0 || iy >= d.h) continue;
      for (int64_t kx = 0; kx < d.kw; ++kx) {
        const int64_t ix = ox * d.stride - d.pad + kx;
        if (ix < 0 || ix >= d.w) continue;
        const int64_t idx = base + iy * d.w + ix;
        if (best < 0 || x[idx] > best_v) best = idx, best_v = x[idx];  // strict '>': first maximum wins
      }
    }
    y[o] = best_v;
    arg[o] = static_cast<int32_t>(best);
  }
}

template <class T>
__global__ void maxpool_backward_kernel(const int32_t* __restrict__ arg, const T* __restrict__ gy,
                                        T* __restrict__ gx, PoolDims d) {
  NQ_GRID_STRIDE(idx, d.planes * d.h * d.w) {
    const int64_t ix = idx % d.w, iy = (idx / d.w) % d.h, plane = idx / (d.w * d.h);
    // Outputs whose window covers (iy, ix): oy·stride − pad ≤ iy ≤ oy·stride − pad + kh − 1.
    const int64_t ty = iy + d.pad, tx = ix + d.pad;
    const int64_t oy0 = ty >= d.kh ? (ty - d.kh) / d.stride + 1 : 0, oy1 = min(d.oh - 1, ty / d.stride);
    const int64_t ox0 = tx >= d.kw ? (tx - d.kw) / d.stride + 1 : 0, ox1 = min(d.ow - 1, tx / d.stride);
    T acc = T(0);
    for (int64_t oy = oy0; oy <= oy1; ++oy)
      for (int64_t ox = ox0; ox <= ox1; ++ox) {
        const int64_t o = (plane * d.oh + oy) * d.ow + ox;
        if (arg[o] == idx) acc += gy[o];
      }
    gx[idx] = acc;
  }
}

template <class T>
void forward_impl(const T* x, T* y, int32_t* arg, const Conv2dShape& s) {
  const PoolDims d = dims_of(s);
  const int64_t count = d.planes * d.oh * d.ow;
  if (count == 0) return;
  maxpool_forward_kernel<T><<<nn_grid(count), kNnThreads>>>(x, y, arg, d);
  NQ_CUDA_CHECK_LAUNCH("maxpool_forward_kernel");
}

template <class T>
void backward_impl(const int32_t* arg, const T* gy, T* gx, const Conv2dShape& s) {
  const PoolDims d = dims_of(s);
  const int64_t count = d.planes * d.h * d.w;
  if (count == 0) return;
  maxpool_backward_kernel<T><<<nn_grid(count), kNnThreads>>>(arg, gy, gx, d);
  NQ_CUDA_CHECK_LAUNCH("maxpool_backward_kernel");
}

}  // namespace

#define NQ_NN_CUDA_POOL(T)                                                                                    \
  void maxpool2d_forward(const T* x, T* y, int32_t* arg, const Conv2dShape& s) { forward_impl<T>(x, y, arg, s); } \
  void maxpool2d_backward(const int32_t* arg, const T* gy, T* gx, const Conv2dShape& s) {                    \
    backward_impl<T>(arg, gy, gx, s);                                                                        \
  }

NQ_NN_CUDA_POOL(float)
NQ_NN_CUDA_POOL(double)

}  // namespace nq::nn::cuda
