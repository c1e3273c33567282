// CUDA ops of the 2-D convolution (nn_ops.h): im2col kernel + cuBLAS GEMM for forward and gradient; the OBD
// Hessian diagonal is the same computation with squared operands (Becker & LeCun 1988; LeCun et al. 1990);
// per-sample squared gradients use strided-batched GEMMs over chunks of samples. col2im is a gather (one thread
// per input pixel, kernel taps in the CPU's order): deterministic, no atomics.
#include <algorithm>

#include "cublas_handle.cuh"
#include "nn/nn_ops.h"
#include "nn_common.cuh"

namespace nq::nn::cuda {
namespace {

using ::nq::cuda::gemm;
using ::nq::cuda::gemm_batched;
using ::nq::cuda::kNnThreads;
using ::nq::cuda::nn_grid;
using ::nq::cuda::scratch;

// Device copy of the geometry (Conv2dShape's helpers are host-only).
struct Dims {
  int64_t n, c, h, w, oc, kh, kw, stride, pad, oh, ow, rows, ncols, L;
};

Dims dims_of(const Conv2dShape& s) {
  NQ_CHECK(s.n >= 0 && s.in_c > 0 && s.in_h > 0 && s.in_w > 0 && s.out_c > 0 && s.kh > 0 && s.kw > 0 &&
               s.stride > 0 && s.padding >= 0 && s.out_h() > 0 && s.out_w() > 0,
           ErrorCode::kInvalidArgument, "conv2d: invalid geometry");
  return {s.n, s.in_c, s.in_h, s.in_w, s.out_c, s.kh, s.kw, s.stride, s.padding, s.out_h(), s.out_w(),
          s.col_rows(), s.col_cols(), s.out_h() * s.out_w()};
}

// col[(c·kh+ky)·kw+kx, (i·oh+oy)·ow+ox] = x[i, c, oy·stride−pad+ky, ox·stride−pad+kx] (0 outside the image).
template <class T>
__global__ void im2col_kernel(const T* __restrict__ x, T* __restrict__ col, Dims d) {
  NQ_GRID_STRIDE(idx, d.rows * d.ncols) {
    const int64_t r = idx / d.ncols, j = idx % d.ncols;
    const int64_t c = r / (d.kh * d.kw), ky = (r / d.kw) % d.kh, kx = r % d.kw;
    const int64_t i = j / d.L, rem = j % d.L, oy = rem / d.ow, ox = rem % d.ow;
    const int64_t iy = oy * d.stride - d.pad + ky, ix = ox * d.stride - d.pad + kx;
    col[idx] = (iy >= 0 && iy < d.h && ix >= 0 && ix < d.w) ? x[((i * d.c + c) * d.h + iy) * d.w + ix] : T(0);
  }
}

// gx[i, c, iy, ix] = Σ_{ky, kx} gcol[(c·kh+ky)·kw+kx, column reading (iy, ix)], taps in (ky, kx) order.
template <class T>
__global__ void col2im_kernel(const T* __restrict__ gcol, T* __restrict__ gx, Dims d) {
  NQ_GRID_STRIDE(idx, d.n * d.c * d.h * d.w) {
    const int64_t ix = idx % d.w, iy = (idx / d.w) % d.h, c = (idx / (d.w * d.h)) % d.c, i = idx / (d.w * d.h * d.c);
    T acc = T(0);
    for (int64_t ky = 0; ky < d.kh; ++ky) {
      const int64_t ty = iy + d.pad - ky;
      if (ty < 0 || ty % d.stride != 0) continue;
      const int64_t oy = ty / d.stride;
      if (oy >= d.oh) continue;
      for (int64_t kx = 0; kx < d.kw; ++kx) {
        const int64_t tx = ix + d.pad - kx;
        if (tx < 0 || tx % d.stride != 0) continue;
        const int64_t ox = tx / d.stride;
        if (ox >= d.ow) continue;
        acc += gcol[((c * d.kh + ky) * d.kw + kx) * d.ncols + (i * d.oh + oy) * d.ow + ox];
      }
    }
    gx[idx] = acc;
  }
}

// [n, oc, L] → [oc, n·L]
template <class T>
__global__ void to_channel_major_kernel(const T* __restrict__ y, T* __restrict__ yt, Dims d) {
  NQ_GRID_STRIDE(idx, d.oc * d.ncols) {
    const int64_t o = idx / d.ncols, j = idx % d.ncols, i = j / d.L, l = j % d.L;
    yt[idx] = y[(i * d.oc + o) * d.L + l];
  }
}

// y[i, o, l] = yt[o, i·L + l] + b[o]
template <class T>
__global__ void from_channel_major_bias_kernel(const T* __restrict__ yt, const T* __restrict__ b, T* __restrict__ y,
                                               Dims d) {
  NQ_GRID_STRIDE(idx, d.n * d.oc * d.L) {
    const int64_t l = idx % d.L, o = (idx / d.L) % d.oc, i = idx / (d.L * d.oc);
    y[idx] = yt[(o * d.n + i) * d.L + l] + b[o];
  }
}

// sw[j] += Σ_s g[s, j]² over the chunk's samples in order (the CPU adds one sample at a time, same order).
template <class T>
__global__ void accumulate_squares_kernel(const T* __restrict__ g, T* __restrict__ sw, int64_t nw, int64_t samples) {
  NQ_GRID_STRIDE(j, nw) {
    T v = sw[j];
    for (int64_t s = 0; s < samples; ++s) {
      const T q = g[s * nw + j];
      v += q * q;
    }
    sw[j] = v;
  }
}

// The bias part of the per-sample squared gradients, sb[o] += (Σ_l gy[i, o, l])² over samples i in order, in two
// passes that keep the CPU's order of operations (and so the bits of a serial loop): first every (sample, channel)
// row sum in fp64, l in order, one thread per row (n·oc threads rather than oc); then per channel the samples in
// order, rounding to T after each as the CPU does.
template <class T>
__global__ void position_sums_kernel(const T* __restrict__ gy, double* __restrict__ sums, int64_t rows, int64_t L) {
  NQ_GRID_STRIDE(r, rows) {
    const T* src = gy + r * L;
    double acc = 0.0;
    for (int64_t l = 0; l < L; ++l) acc += src[l];
    sums[r] = acc;
  }
}

template <class T>
__global__ void bias_sqgrad_kernel(const double* __restrict__ sums, T* __restrict__ sb, int64_t n, int64_t oc) {
  NQ_GRID_STRIDE(o, oc) {
    T v = sb[o];
    for (int64_t i = 0; i < n; ++i) {
      const double acc = sums[i * oc + o];  // coalesced over o
      v = static_cast<T>(v + acc * acc);
    }
    sb[o] = v;
  }
}

template <class T>
void im2col(const T* x, T* col, const Dims& d) {
  if (d.rows * d.ncols == 0) return;
  im2col_kernel<T><<<nn_grid(d.rows * d.ncols), kNnThreads>>>(x, col, d);
  NQ_CUDA_CHECK_LAUNCH("im2col_kernel");
}

template <class T>
void col2im(const T* gcol, T* gx, const Dims& d) {
  if (d.n * d.c * d.h * d.w == 0) return;
  col2im_kernel<T><<<nn_grid(d.n * d.c * d.h * d.w), kNnThreads>>>(gcol, gx, d);
  NQ_CUDA_CHECK_LAUNCH("col2im_kernel");
}

template <class T>
void to_channel_major(const T* y, T* yt, const Dims& d) {
  if (d.oc * d.ncols == 0) return;
  to_channel_major_kernel<T><<<nn_grid(d.oc * d.ncols), kNnThreads>>>(y, yt, d);
  NQ_CUDA_CHECK_LAUNCH("to_channel_major_kernel");
}

template <class T>
void forward_impl(const T* x, const T* w, const T* b, T* y, T* col, const Conv2dShape& s) {
  const Dims d = dims_of(s);
  if (d.n == 0) return;
  im2col(x, col, d);
  T* yt = scratch<T>(0, d.oc * d.ncols);
  gemm(false, false, d.oc, d.ncols, d.rows, T(1), w, d.rows, col, d.ncols, T(0), yt, d.ncols);
  from_channel_major_bias_kernel<T><<<nn_grid(d.n * d.oc * d.L), kNnThreads>>>(yt, b, y, d);
  NQ_CUDA_CHECK_LAUNCH("from_channel_major_bias_kernel");
}

// gw = gy' colᵀ, gb = Σ gy, gx = col2im(wᵀ gy'); shared by the gradient and (squared operands) OBD.
template <class T>
void backward_impl(const T* col, const T* w, const T* gy, T* gx, T* gw, T* gb, const Dims& d) {
  if (d.n == 0) {  // no samples: zero parameter gradients, as the CPU GEMM with k = 0 leaves them
    NQ_CUDA_CHECK(cudaMemset(gw, 0, sizeof(T) * static_cast<size_t>(d.oc * d.rows)));
    NQ_CUDA_CHECK(cudaMemset(gb, 0, sizeof(T) * static_cast<size_t>(d.oc)));
    return;
  }
  T* gyt = scratch<T>(1, d.oc * d.ncols);
  to_channel_major(gy, gyt, d);
  gemm(false, true, d.oc, d.rows, d.ncols, T(1), gyt, d.ncols, col, d.ncols, T(0), gw, d.rows);
  ::nq::cuda::row_sums(gyt, gb, d.oc, d.ncols);
  if (gx) {
    T* gcol = scratch<T>(2, d.rows * d.ncols);
    gemm(true, false, d.rows, d.ncols, d.oc, T(1), w, d.rows, gyt, d.ncols, T(0), gcol, d.ncols);
    col2im(gcol, gx, d);
  }
}

template <class T>
void hessian_impl(const T* col, const T* w, const T* hy, T* hx, T* hw, T* hb, const Conv2dShape& s) {
  const Dims d = dims_of(s);
  T* col2 = scratch<T>(0, d.rows * d.ncols);
  ::nq::cuda::square_into(col, col2, d.rows * d.ncols);  // im2col(x)² == im2col(x²), padding zeros included
  T* w2 = nullptr;
  if (hx) {
    w2 = scratch<T>(3, d.oc * d.rows);
    ::nq::cuda::square_into(w, w2, d.oc * d.rows);
  }
  backward_impl<T>(col2, w2, hy, hx, hw, hb, d);
}

template <class T>
void sqgrad_impl(const T* col, const T* w, const T* gy, T* gx, T* sw, T* sb, const Conv2dShape& s) {
  const Dims d = dims_of(s);
  const int64_t nw = d.oc * d.rows;
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(d.n, (int64_t{1} << 24) / std::max<int64_t>(nw, 1)));
  T* gws = scratch<T>(0, chunk * nw);
  for (int64_t i0 = 0; i0 < d.n; i0 += chunk) {
    const int64_t cnt = std::min(chunk, d.n - i0);
    // Sample i: gws_i [oc, rows] = gy_i [oc, L] · col_iᵀ, col_i = columns i·L .. of col (leading dimension ncols).
    gemm_batched(false, true, d.oc, d.rows, d.L, T(1), gy + i0 * d.oc * d.L, d.L, d.oc * d.L, col + i0 * d.L,
                 d.ncols, d.L, T(0), gws, d.rows, nw, cnt);
    accumulate_squares_kernel<T><<<nn_grid(nw), kNnThreads>>>(gws, sw, nw, cnt);
    NQ_CUDA_CHECK_LAUNCH("accumulate_squares_kernel");
  }
  if (d.n > 0) {
    double* sums = scratch<double>(3, d.n * d.oc);  // slot 3: otherwise only hessian_impl's squared W
    position_sums_kernel<T><<<nn_grid(d.n * d.oc), kNnThreads>>>(gy, sums, d.n * d.oc, d.L);
    NQ_CUDA_CHECK_LAUNCH("position_sums_kernel");
    bias_sqgrad_kernel<T><<<nn_grid(d.oc), kNnThreads>>>(sums, sb, d.n, d.oc);
    NQ_CUDA_CHECK_LAUNCH("bias_sqgrad_kernel");
  }
  if (gx && d.n > 0) {
    T* gyt = scratch<T>(1, d.oc * d.ncols);
    to_channel_major(gy, gyt, d);
    T* gcol = scratch<T>(2, d.rows * d.ncols);
    gemm(true, false, d.rows, d.ncols, d.oc, T(1), w, d.rows, gyt, d.ncols, T(0), gcol, d.ncols);
    col2im(gcol, gx, d);
  }
}

}  // namespace

#define NQ_NN_CUDA_CONV2D(T)                                                                                  \
  void conv2d_forward(const T* x, const T* w, const T* b, T* y, T* col, const Conv2dShape& s) {             \
    forward_impl<T>(x, w, b, y, col, s);                                                                    \
  }                                                                                                         \
  void conv2d_backward(const T* col, const T* w, const T* gy, T* gx, T* gw, T* gb, const Conv2dShape& s) { \
    backward_impl<T>(col, w, gy, gx, gw, gb, dims_of(s));                                                   \
  }                                                                                                         \
  void conv2d_hessian_backward(const T* col, const T* w, const T* hy, T* hx, T* hw, T* hb,                 \
                               const Conv2dShape& s) {                                                      \
    hessian_impl<T>(col, w, hy, hx, hw, hb, s);                                                             \
  }                                                                                                         \
  void conv2d_backward_sqgrad(const T* col, const T* w, const T* gy, T* gx, T* sw, T* sb,                  \
                              const Conv2dShape& s) {                                                       \
    sqgrad_impl<T>(col, w, gy, gx, sw, sb, s);                                                              \
  }

NQ_NN_CUDA_CONV2D(float)
NQ_NN_CUDA_CONV2D(double)

}  // namespace nq::nn::cuda
