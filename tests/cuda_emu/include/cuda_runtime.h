// The CUDA runtime as the host emulation of tests/cuda_emu provides it (README.md there): what kernels/ uses of
// the language (qualifiers, built-in indices, intrinsics, atomics, vector types) and of the runtime API.
// Threads of a block run as fibers with real barrier semantics: __syncthreads, __syncwarp and the warp collectives
// block a fiber until every live thread of the block, or every lane the mask names, arrives. NQ_EMU_ORDER
// (fwd | rev | rand[:seed]) orders the warps and lanes, so a missing barrier shows as a result that depends on the
// order. Shared and device memory start as 0xff bytes (NaN, −1).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>

#ifndef __CUDACC__
#define __CUDACC__ 1
#endif
#ifndef __CUDA_ARCH__
#define __CUDA_ARCH__ 900
#endif
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __align__(n) alignas(n)
using std::max;
using std::min;

typedef enum {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
  cudaErrorNoDevice = 100
} cudaError_t;
typedef cudaError_t cudaError;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
struct CUstream_st;
typedef CUstream_st* cudaStream_t;
// The calling thread's default stream, as the runtime spells it (launches here run at once, whatever the stream).
#define cudaStreamPerThread ((cudaStream_t)0x2)
struct CUevent_st;
typedef CUevent_st* cudaEvent_t;
struct cudaDeviceProp {
  char name[256];
  int major, minor;
  size_t totalGlobalMem;
  int multiProcessorCount;
  size_t sharedMemPerBlock;
};

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct uint3 { unsigned x, y, z; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) int4 { int x, y, z, w; };
inline int4 make_int4(int a, int b, int c, int d) { return {a, b, c, d}; }

namespace nq_emu {
struct Coords { uint3 bi{0, 0, 0}, ti{0, 0, 0}, gd{1, 1, 1}, bd{1, 1, 1}; };
Coords& coords();
// Barriers and warp collectives (emu_runtime.cpp).
void syncthreads();
int syncthreads_or(int pred);
void syncwarp(unsigned mask);
// Every lane of the warp in `mask` posts `bytes` bytes; afterwards `all` holds the 32 lanes' posts.
void warp_exchange(unsigned mask, const void* mine, size_t bytes, void* all32);
void* dyn_smem();
uint64_t block_generation();
[[noreturn]] void fail(const char* fmt, ...);
void launch(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, const void* kernel, const char* name,
            void (*body)(void*), void* ctx);
bool is_device_ptr(const void* p, size_t bytes);
// Block-shared storage for a `__shared__` declaration: 0xff-filled at its first touch in each block.
template <class T>
struct SharedSlot {
  alignas(16) unsigned char bytes[sizeof(T)];
  uint64_t gen = ~uint64_t{0};
  T& get() {
    if (gen != block_generation()) {
      std::memset(bytes, 0xff, sizeof(T));
      gen = block_generation();
    }
    return *reinterpret_cast<T*>(bytes);
  }
};
}  // namespace nq_emu

#define blockIdx (::nq_emu::coords().bi)
#define threadIdx (::nq_emu::coords().ti)
#define gridDim (::nq_emu::coords().gd)
#define blockDim (::nq_emu::coords().bd)

inline void __syncthreads() { nq_emu::syncthreads(); }
inline int __syncthreads_or(int p) { return nq_emu::syncthreads_or(p); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { nq_emu::syncwarp(mask); }
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  static_assert(sizeof(T) <= 16, "shuffle size");
  T all[32];
  nq_emu::warp_exchange(mask, &v, sizeof(T), all);
  const unsigned lane = nq_emu::coords().ti.x & 31u;
  const unsigned seg = lane / width * width;
  const unsigned src = lane + delta;
  if (src >= seg + width) return v;
  if (!(mask >> src & 1u)) nq_emu::fail("__shfl_down_sync: lane %u reads lane %u outside the mask %08x", lane, src, mask);
  return all[src];
}
template <class T>
unsigned __match_any_sync(unsigned mask, T v) {
  T all[32];
  nq_emu::warp_exchange(mask, &v, sizeof(T), all);
  unsigned m = 0;
  for (unsigned l = 0; l < 32; ++l)
    if ((mask >> l & 1u) && all[l] == v) m |= 1u << l;
  return m;
}
inline int __ffs(unsigned x) { return __builtin_ffs(static_cast<int>(x)); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(unsigned x) { return x ? __builtin_clz(x) : 32; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline long long __double_as_longlong(double d) { long long u; std::memcpy(&u, &d, 8); return u; }
inline double __longlong_as_double(long long u) { double d; std::memcpy(&d, &u, 8); return d; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
// Loads and stores through cache hints: a vector type at an address it is not aligned to faults on the device.
template <class T>
void nq_emu_check_aligned(const T* p, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % alignof(T) != 0)
    nq_emu::fail("%s: misaligned address %p for a %zu-byte access", what, static_cast<const void*>(p), alignof(T));
}
template <class T> T __ldg(const T* p) { nq_emu_check_aligned(p, "__ldg"); return *p; }
template <class T> T __ldcs(const T* p) { nq_emu_check_aligned(p, "__ldcs"); return *p; }
template <class T> void __stcs(T* p, T v) { nq_emu_check_aligned(p, "__stcs"); *p = v; }
[[noreturn]] inline void __trap() { nq_emu::fail("__trap()"); }
template <class T> T atomicAdd(T* p, T v) { T o = *p; *p = o + v; return o; }
template <class T> T atomicOr(T* p, T v) { T o = *p; *p = o | v; return o; }
template <class T> T atomicExch(T* p, T v) { T o = *p; *p = v; return o; }
template <class T> T atomicMax(T* p, T v) { T o = *p; *p = o > v ? o : v; return o; }
template <class T> T atomicMin(T* p, T v) { T o = *p; *p = o < v ? o : v; return o; }

// Runtime API (emu_runtime.cpp).
cudaError_t cudaMalloc(void** p, size_t n);
template <class T> cudaError_t cudaMalloc(T** p, size_t n) { return cudaMalloc(reinterpret_cast<void**>(p), n); }
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocHost(void** p, size_t n);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemset(void* p, int v, size_t n);
cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t s = nullptr);
cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind k);
cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind k, cudaStream_t st = nullptr);
cudaError_t cudaStreamSynchronize(cudaStream_t);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d);
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int d);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaFuncSetAttribute(const void* f, cudaFuncAttribute a, int v);
template <class... A> cudaError_t cudaFuncSetAttribute(void (*f)(A...), cudaFuncAttribute a, int v) { return cudaFuncSetAttribute((const void*)f, a, v); }
// The emulation knows no register counts: CTAs per SM as bounded by threads and shared memory only.
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, const void* f, int threads, size_t smem);
template <class... A> cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, void (*f)(A...), int threads, size_t smem) { return cudaOccupancyMaxActiveBlocksPerMultiprocessor(n, (const void*)f, threads, smem); }
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorName(cudaError_t);
const char* cudaGetErrorString(cudaError_t);

// A <<<grid, block, smem, stream>>> launch, as convert.py writes it.
template <class F>
void nq_emu_launch(const void* kernel, const char* name, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                   F&& body) {
  nq_emu::launch(grid, block, smem, stream, kernel, name, [](void* f) { (*static_cast<std::remove_reference_t<F>*>(f))(); },
                 const_cast<void*>(static_cast<const void*>(&body)));
}
template <class F>
void nq_emu_launch(const void* kernel, const char* name, dim3 grid, dim3 block, size_t smem, F&& body) {
  nq_emu_launch(kernel, name, grid, block, smem, nullptr, body);
}
template <class F>
void nq_emu_launch(const void* kernel, const char* name, dim3 grid, dim3 block, F&& body) {
  nq_emu_launch(kernel, name, grid, block, 0, nullptr, body);
}
