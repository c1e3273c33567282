// Internal: the layer ops of the built-in networks, declared once for cpu:: and identically for cuda::.
//
// "Drivers once, ops twice": Network<T> (network.h), the trainer and the Hessian driver are host code written
// once; everything that touches activation or parameter memory is an op below. cpu:: lives in src/nn/*.cpp
// (OpenMP + OpenBLAS), cuda:: in kernels/ (src/nn/cuda_stubs.cpp throws kUnavailable in CPU-only builds).
// All pointers of one call live on the same backend (host memory for cpu::, device memory for cuda::).
//
// Conventions for every op:
//  - T is float (training, CLI) or double (finite-difference tests); both are instantiated on both backends.
//  - Row-major, batch first: activations [n, features] or [n, c, h, w]; Linear weights [out, in]; Conv2d
//    weights [out, in, kh, kw] (PyTorch layouts).
//  - "gradient" buffers g* hold dL/d(.); "Hessian" buffers h* hold the Gauss-Newton diagonal d2L/d(.)2 of the
//    recursion of Becker & LeCun (1988) / LeCun, Denker & Solla (1990, "Optimal Brain Damage").
//  - Parameter-gradient outputs are OVERWRITTEN (not accumulated) unless the op's name says accumulate.
//  - An input-gradient pointer (gx / hx) may be null: the first layer does not need it.
//  - Threads and determinism (cpu::): the GEMMs carry the work and run on OpenBLAS threads
//    (sync_blas_threads() = nq::num_threads()); the elementwise, im2col and reduction loops between them run on
//    the calling thread, because OpenMP workers spinning between GEMMs fight OpenBLAS's own threads for the
//    cores (measured: 10x slower on a loaded 2-core machine). Every sum has a fixed order, so results are bitwise
//    reproducible run to run for the same thread count; OpenBLAS's last bits can change with its thread count.
//    Training does not use OpenBLAS's threads: data_parallel_net.h runs micro-batches on the OpenMP threads with
//    one OpenBLAS thread each, which makes trained weights independent of the thread count. The optimizer steps
//    are elementwise and run on the OpenMP threads.
#pragma once

#include <cstdint>
#include <vector>

#include "netquant/backend.h"
#include "netquant/error.h"

namespace nq::nn {

// Geometry of a 2-D convolution or pooling window on [n, c, h, w] inputs.
struct Conv2dShape {
  int64_t n = 0;                  // batch
  int64_t in_c = 0, in_h = 0, in_w = 0;
  int64_t out_c = 0;              // conv: output channels; pooling: = in_c
  int64_t kh = 0, kw = 0;
  int64_t stride = 1, padding = 0;
  int64_t out_h() const { return (in_h + 2 * padding - kh) / stride + 1; }
  int64_t out_w() const { return (in_w + 2 * padding - kw) / stride + 1; }
  int64_t col_rows() const { return in_c * kh * kw; }        // rows of the im2col matrix
  int64_t col_cols() const { return n * out_h() * out_w(); }  // columns: (sample, oy, ox)
};

// Memory ops (float, double, int32_t): buffer_alloc returns zero-filled memory (tag only selects the overload).
#define NQ_NN_DECLARE_MEMORY_OPS(T)                                \
  T* buffer_alloc(int64_t count, T tag);                           \
  void buffer_free(T* p);                                          \
  void buffer_upload(T* dst, const T* host_src, int64_t count);    \
  void buffer_download(T* host_dst, const T* src, int64_t count);  \
  void buffer_fill(T* p, int64_t count, T value);

#define NQ_NN_DECLARE_OPS(T)                                                                                       \
  /* ---- Linear: y = x W^T + b; x [n,in], W [out,in], b [out], y [n,out] ---- */                                  \
  void linear_forward(const T* x, const T* w, const T* b, T* y, int64_t n, int64_t in, int64_t out);             \
  /* gW = gy^T x, gb = sum_n gy, gx = gy W (gx may be null) */                                                   \
  void linear_backward(const T* x, const T* w, const T* gy, T* gx, T* gw, T* gb, int64_t n, int64_t in,          \
                       int64_t out);                                                                             \
  /* OBD: hW[o,i] = sum_n hy[n,o] x[n,i]^2; hb[o] = sum_n hy[n,o]; hx[n,i] = sum_o W[o,i]^2 hy[n,o] */           \
  void linear_hessian_backward(const T* x, const T* w, const T* hy, T* hx, T* hw, T* hb, int64_t n,              \
                               int64_t in, int64_t out);                                                         \
  /* Per-sample squared gradients, accumulated: sw[o,i] += sum_n (gy[n,o] x[n,i])^2, sb[o] += sum_n gy[n,o]^2;  \
     also gx = gy W as in linear_backward (gx may be null). Used by the Fisher and exact-GGN diagonals. */       \
  void linear_backward_sqgrad(const T* x, const T* w, const T* gy, T* gx, T* sw, T* sb, int64_t n, int64_t in,   \
                              int64_t out);                                                                      \
  /* ---- Conv2d (cross-correlation like PyTorch); x [n,in_c,in_h,in_w], W [out_c,in_c,kh,kw], b [out_c],         \
     y [n,out_c,out_h,out_w]. col [col_rows, col_cols] is the im2col matrix of x, written by forward and read    \
     by the backward ops (the caller keeps it). ---- */                                                          \
  void conv2d_forward(const T* x, const T* w, const T* b, T* y, T* col, const Conv2dShape& s);                   \
  /* gW = gy' col^T, gb = sum gy, gx = col2im(W^T gy') where gy' is gy as [out_c, n*out_h*out_w] */              \
  void conv2d_backward(const T* col, const T* w, const T* gy, T* gx, T* gw, T* gb, const Conv2dShape& s);        \
  /* OBD: hW = hy' (col^2)^T (weights shared over positions: summed), hb = sum hy, hx = col2im((W^2)^T hy') */   \
  void conv2d_hessian_backward(const T* col, const T* w, const T* hy, T* hx, T* hw, T* hb,                       \
                               const Conv2dShape& s);                                                            \
  /* Per-sample squared gradients, accumulated: sw += sum_n (gy'_n col_n^T)^2, sb += sum_n (sum_pos gy_n)^2;     \
     gx as in conv2d_backward (may be null). */                                                                  \
  void conv2d_backward_sqgrad(const T* col, const T* w, const T* gy, T* gx, T* sw, T* sb, const Conv2dShape& s); \
  /* ---- ReLU: y = max(x, 0). backward: gx = gy * 1[y>0]; the OBD form is the same mask applied to H          \
     (Gauss-Newton: f'(a)^2 = 1[a>0], f'' dropped). In-place (gx == gy) is allowed. ---- */                      \
  void relu_forward(const T* x, T* y, int64_t count);                                                            \
  void relu_backward(const T* y, const T* gy, T* gx, int64_t count);                                             \
  /* ---- MaxPool2d (no padding; out_c = in_c): y = max over each window; arg [n*c*out_h*out_w] holds the       \
     flat index into x of the first maximum (lowest index wins ties). backward routes gy (or H) to the arg-max   \
     position; overlapping windows add. gx is overwritten. ---- */                                               \
  void maxpool2d_forward(const T* x, T* y, int32_t* arg, const Conv2dShape& s);                                  \
  void maxpool2d_backward(const int32_t* arg, const T* gy, T* gx, const Conv2dShape& s);                         \
  /* ---- Softmax cross-entropy over C classes; z [n,C] logits, labels [n] in [0,C).                           \
     forward: p = softmax(z) (max-shifted), loss[n] = -log p[label], correct[n] = 1 if argmax z (lowest index on \
     ties) == label else 0. ---- */                                                                              \
  void softmax_ce_forward(const T* z, const int32_t* labels, T* p, T* loss, T* correct, int64_t n, int64_t c);   \
  /* dz = scale (p - onehot(label)); scale = 1/B for a mean loss, 1 for per-sample gradients. */                 \
  void softmax_ce_backward(const T* p, const int32_t* labels, T* gz, T scale, int64_t n, int64_t c);             \
  /* OBD output curvature: hz = scale p (1 - p) (the diagonal of diag(p) - p p^T). */                            \
  void softmax_ce_hessian(const T* p, T* hz, T scale, int64_t n, int64_t c);                                     \
  /* Column k of the factor S (S S^T = diag(p) - p p^T): gz[n,:] = sqrt(p[n,k]) (e_k - p[n,:]). Exact GGN. */    \
  void softmax_ce_factor_column(const T* p, T* gz, int64_t k, int64_t n, int64_t c);                             \
  /* ---- optimizers (elementwise on count parameters) ---- */                                                   \
  /* SGD, PyTorch semantics: g' = g + wd w; v = momentum v + g'; w -= lr v (v unused when momentum == 0). */     \
  void sgd_step(T* w, const T* g, T* v, int64_t count, double lr, double momentum, double weight_decay);         \
  /* Adam (Kingma & Ba), PyTorch semantics with L2 weight decay added to g; step t >= 1 for bias correction. */  \
  void adam_step(T* w, const T* g, T* m, T* v, int64_t count, double lr, double beta1, double beta2, double eps, \
                 double weight_decay, int64_t t);                                                                \
  /* Retraining a pruned net: g[i] = 0 where keep[i] == 0, else unchanged (a select, so a non-finite g there     \
     becomes 0 too). Before a step, it leaves those weights and their optimizer state where they are. */         \
  void mask_gradient(T* g, const T* keep, int64_t count);

namespace cpu {
NQ_NN_DECLARE_MEMORY_OPS(float)
NQ_NN_DECLARE_MEMORY_OPS(double)
NQ_NN_DECLARE_MEMORY_OPS(int32_t)
NQ_NN_DECLARE_OPS(float)
NQ_NN_DECLARE_OPS(double)
// OpenBLAS threads for the GEMMs (keeps them equal to nq::num_threads() so results stay reproducible).
void sync_blas_threads();
// OpenBLAS on one thread for a scope, then back to what it was: for GEMMs issued from several threads at once
// (the data-parallel micro-batches of data_parallel_net.h), where OpenBLAS's own pool would only contend, and
// for results that must not depend on the thread count. `serial_caller`: the scope issues its GEMMs from this
// thread, outside any OpenMP parallel region. The pthreads build of OpenBLAS gets its pool set to one thread.
// The OpenMP build runs one thread inside a parallel region by itself and otherwise follows the caller's OpenMP
// thread count (and its openblas_set_num_threads would change that count for netquant's own loops too), so for
// it only a serial caller's OpenMP count is set to one.
class SingleThreadedBlas {
 public:
  explicit SingleThreadedBlas(bool serial_caller);
  ~SingleThreadedBlas();
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int previous_blas_ = 1;    // pthreads OpenBLAS: its pool's thread count before the scope
  int previous_openmp_ = 0;  // OpenMP OpenBLAS, serial caller: the OpenMP thread count before (0: untouched)
};
}  // namespace cpu

namespace cuda {
NQ_NN_DECLARE_MEMORY_OPS(float)
NQ_NN_DECLARE_MEMORY_OPS(double)
NQ_NN_DECLARE_MEMORY_OPS(int32_t)
NQ_NN_DECLARE_OPS(float)
NQ_NN_DECLARE_OPS(double)
}  // namespace cuda

// The one dispatch point: runs cpu::op or cuda::op with the same arguments.
#define NQ_NN_OP(backend, op, ...) \
  ((backend) == ::nq::Backend::kCuda ? ::nq::nn::cuda::op(__VA_ARGS__) : ::nq::nn::cpu::op(__VA_ARGS__))

// A typed array on one backend (host memory for kCpu, device memory for kCuda), zero-filled on resize; ensure()
// reuses the allocation for any size up to the largest held.
template <class T>
class Buffer {
 public:
  explicit Buffer(Backend backend = Backend::kCpu) : backend_(backend) {}
  // A copy of host values on the backend (e.g. a network's flat parameters).
  Buffer(Backend backend, const std::vector<T>& host) : backend_(backend) {
    upload(host.data(), static_cast<int64_t>(host.size()));
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept : backend_(o.backend_), data_(o.data_), size_(o.size_), capacity_(o.capacity_) {
    o.data_ = nullptr, o.size_ = o.capacity_ = 0;
  }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      backend_ = o.backend_, data_ = o.data_, size_ = o.size_, capacity_ = o.capacity_;
      o.data_ = nullptr, o.size_ = o.capacity_ = 0;
    }
    return *this;
  }
  ~Buffer() { release(); }

  void resize(int64_t count) {  // contents are zero afterwards
    if (count == size_) {
      if (count) NQ_NN_OP(backend_, buffer_fill, data_, count, T(0));
      return;
    }
    release();
    if (count > 0) data_ = NQ_NN_OP(backend_, buffer_alloc, count, T(0));
    size_ = capacity_ = count;
  }
  // Makes the size `count`: contents kept when it is unchanged, unspecified otherwise (every caller writes what it
  // reads), and no new allocation up to the largest size held. Replicas alternate between training and evaluation
  // batches and a last partial batch; on CUDA each reallocation would also synchronise the device.
  void ensure(int64_t count) {
    if (count == size_) return;
    if (count <= capacity_) {
      size_ = count;
      return;
    }
    resize(count);
  }
  void upload(const T* host, int64_t count) {
    ensure(count);
    if (count) NQ_NN_OP(backend_, buffer_upload, data_, host, count);
  }
  std::vector<T> download() const {
    std::vector<T> host(static_cast<size_t>(size_));
    if (size_) NQ_NN_OP(backend_, buffer_download, host.data(), data_, size_);
    return host;
  }
  T* data() { return data_; }
  const T* data() const { return data_; }
  int64_t size() const { return size_; }
  Backend backend() const { return backend_; }

 private:
  void release() {
    if (data_) NQ_NN_OP(backend_, buffer_free, data_);
    data_ = nullptr;
    size_ = capacity_ = 0;
  }
  Backend backend_;
  T* data_ = nullptr;
  int64_t size_ = 0;
  int64_t capacity_ = 0;  // elements allocated at data_ (≥ size_)
};

}  // namespace nq::nn
