// Emulated CUB (block collectives through temp storage with barriers, device algorithms on the host).
#pragma once
#include <algorithm>
#include <iterator>
#include <numeric>
#include <vector>
#include "cuda_runtime.h"

namespace cub {
namespace emu {
template <class T>
std::vector<T>& scratch(size_t n) {
  static thread_local std::vector<T> v;
  if (v.size() < n) v.resize(n);
  return v;
}
inline int tid() { return static_cast<int>(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)); }
template <class T>
T poison() {
  T t;
  std::memset(static_cast<void*>(&t), 0xff, sizeof t);
  return t;
}
}  // namespace emu

template <class T, int N, int = 0, int = 0, int = 0>
class BlockReduce {
 public:
  struct TempStorage { T slots[N]; };
  explicit BlockReduce(TempStorage& t) : t_(t) {}
  template <class Op>
  T Reduce(T v, Op op) {
    const int me = emu::tid();
    if (static_cast<int>(blockDim.x * blockDim.y * blockDim.z) != N) nq_emu::fail("BlockReduce<%d> in a block of %u", N, blockDim.x);
    t_.slots[me] = v;
    __syncthreads();
    T r = emu::poison<T>();
    if (me == 0) {
      r = t_.slots[0];
      for (int i = 1; i < N; ++i) r = op(r, t_.slots[i]);
    }
    __syncthreads();
    return r;  // valid in thread 0 only, as in CUB
  }
  T Sum(T v) { return Reduce(v, [](const T& a, const T& b) { return a + b; }); }

 private:
  TempStorage& t_;
};

template <class T, int N, int = 0, int = 0, int = 0, int = 0>
class BlockScan {
 public:
  struct TempStorage { T warp_totals[N / 32 + 2]; };
  explicit BlockScan(TempStorage& t) : t_(t) {}

  template <int I, class Op>
  void InclusiveScan(T (&in)[I], T (&out)[I], Op op) { scan<I>(in, out, op, false, nullptr); }
  template <class Op>
  void InclusiveScan(T in, T& out, Op op) { T a[1] = {in}, b[1]; scan<1>(a, b, op, false, nullptr); out = b[0]; }
  void ExclusiveSum(T in, T& out) { T a[1] = {in}, b[1]; scan<1>(a, b, Plus(), true, nullptr); out = b[0]; }
  void ExclusiveSum(T in, T& out, T& aggregate) {
    T a[1] = {in}, b[1];
    scan<1>(a, b, Plus(), true, &aggregate);
    out = b[0];
  }
  template <int I>
  void ExclusiveSum(T (&in)[I], T (&out)[I]) { scan<I>(in, out, Plus(), true, nullptr); }
  template <int I>
  void InclusiveSum(T (&in)[I], T (&out)[I]) { scan<I>(in, out, Plus(), false, nullptr); }
  void InclusiveSum(T in, T& out) { T a[1] = {in}, b[1]; scan<1>(a, b, Plus(), false, nullptr); out = b[0]; }

 private:
  struct Plus { T operator()(const T& a, const T& b) const { return a + b; } };
  template <int I, class Op>
  void scan(const T (&in)[I], T (&out)[I], Op op, bool exclusive, T* aggregate) {
    const int me = emu::tid();
    if (static_cast<int>(blockDim.x * blockDim.y * blockDim.z) != N) nq_emu::fail("BlockScan<%d> in a block of %u", N, blockDim.x);
    std::vector<T>& buf = emu::scratch<T>(static_cast<size_t>(N) * I + 1);
    for (int i = 0; i < I; ++i) buf[static_cast<size_t>(me) * I + i] = in[i];
    t_.warp_totals[0] = emu::poison<T>();  // the storage is really used: a caller's overlap shows
    __syncthreads();
    if (me == 0) {
      const size_t m = static_cast<size_t>(N) * I;
      if (exclusive) {
        T run = T();
        for (size_t j = 0; j < m; ++j) {
          const T x = buf[j];
          buf[j] = run;
          run = j == 0 ? x : op(run, x);
        }
        buf[m] = run;
      } else {
        for (size_t j = 1; j < m; ++j) buf[j] = op(buf[j - 1], buf[j]);
        buf[m] = buf[m - 1];
      }
    }
    __syncthreads();
    for (int i = 0; i < I; ++i) out[i] = buf[static_cast<size_t>(me) * I + i];
    if (aggregate) *aggregate = buf[static_cast<size_t>(N) * I];
    __syncthreads();
  }
  TempStorage& t_;
};

template <class K, int N, int I, class V = int, int = 4, bool = true, int = 0, int = 0, int = 0>
class BlockRadixSort {
  static constexpr size_t kItem = sizeof(K) > sizeof(V) ? sizeof(K) : sizeof(V);
 public:
  struct TempStorage { alignas(16) unsigned char bytes[N * I * kItem + 64]; };
  explicit BlockRadixSort(TempStorage& t) : t_(t) {}
  void Sort(K (&keys)[I], V (&vals)[I], int begin_bit = 0, int end_bit = sizeof(K) * 8) {
    const int me = emu::tid();
    const size_t m = static_cast<size_t>(N) * I;
    if (static_cast<int>(blockDim.x * blockDim.y * blockDim.z) != N) nq_emu::fail("BlockRadixSort<%d> in a block of %u", N, blockDim.x);
    std::vector<K>& ks = emu::scratch<K>(m);
    std::vector<V>& vs = emu::scratch<V>(m);
    std::vector<size_t>& perm = emu::scratch<size_t>(m);
    K* tk = reinterpret_cast<K*>(t_.bytes);
    V* tv = reinterpret_cast<V*>(t_.bytes);
    for (int i = 0; i < I; ++i) tk[static_cast<size_t>(me) * I + i] = keys[i];
    __syncthreads();
    if (me == 0) std::copy(tk, tk + m, ks.begin());
    __syncthreads();
    for (int i = 0; i < I; ++i) tv[static_cast<size_t>(me) * I + i] = vals[i];
    __syncthreads();
    if (me == 0) {
      std::copy(tv, tv + m, vs.begin());
      const K mask = end_bit - begin_bit >= static_cast<int>(sizeof(K) * 8) ? ~K(0) : ((K(1) << (end_bit - begin_bit)) - 1) << begin_bit;
      std::iota(perm.begin(), perm.begin() + m, size_t{0});
      std::stable_sort(perm.begin(), perm.begin() + m, [&](size_t a, size_t b) { return (ks[a] & mask) < (ks[b] & mask); });
      for (size_t j = 0; j < m; ++j) tk[j] = ks[perm[j]];
    }
    __syncthreads();
    for (int i = 0; i < I; ++i) keys[i] = tk[static_cast<size_t>(me) * I + i];
    __syncthreads();
    if (me == 0)
      for (size_t j = 0; j < m; ++j) tv[j] = vs[perm[j]];
    __syncthreads();
    for (int i = 0; i < I; ++i) vals[i] = tv[static_cast<size_t>(me) * I + i];
    __syncthreads();
  }

 private:
  TempStorage& t_;
};

namespace emu {
inline cudaError_t temp_protocol(void* d_temp, size_t& bytes, size_t need) {
  if (!d_temp) { bytes = need; return cudaSuccess; }
  if (bytes < need) nq_emu::fail("CUB call with %zu temp bytes, %zu needed", bytes, need);
  if (!nq_emu::is_device_ptr(d_temp, need)) nq_emu::fail("CUB temp storage is not device memory");
  return cudaSuccess;
}
template <class T>
void need_dev(const T* p, size_t n, const char* what) {
  if (n && !nq_emu::is_device_ptr(p, n * sizeof(T))) nq_emu::fail("CUB %s: %p (%zu items) is not device memory", what, static_cast<const void*>(p), n);
}
}  // namespace emu

struct DeviceRadixSort {
  template <class K, class V, class NumT>
  static cudaError_t SortPairs(void* d_temp, size_t& bytes, const K* kin, K* kout, const V* vin, V* vout, NumT n,
                               int begin_bit = 0, int end_bit = sizeof(K) * 8, cudaStream_t = nullptr) {
    const size_t m = static_cast<size_t>(n);
    if (!d_temp) return emu::temp_protocol(d_temp, bytes, m * 8 + 256);
    emu::temp_protocol(d_temp, bytes, m * 8 + 256);
    emu::need_dev(kin, m, "keys_in"); emu::need_dev(kout, m, "keys_out");
    emu::need_dev(vin, m, "values_in"); emu::need_dev(vout, m, "values_out");
    const K mask = end_bit - begin_bit >= static_cast<int>(sizeof(K) * 8) ? ~K(0) : ((K(1) << (end_bit - begin_bit)) - 1) << begin_bit;
    std::vector<size_t> perm(m);
    std::iota(perm.begin(), perm.end(), size_t{0});
    std::stable_sort(perm.begin(), perm.end(), [&](size_t a, size_t b) { return (kin[a] & mask) < (kin[b] & mask); });
    std::vector<K> ks(m);
    std::vector<V> vs(m);
    for (size_t j = 0; j < m; ++j) { ks[j] = kin[perm[j]]; vs[j] = vin[perm[j]]; }
    std::copy(ks.begin(), ks.end(), kout);
    std::copy(vs.begin(), vs.end(), vout);
    return cudaSuccess;
  }
  template <class K, class NumT>
  static cudaError_t SortKeys(void* d_temp, size_t& bytes, const K* kin, K* kout, NumT n, int begin_bit = 0,
                              int end_bit = sizeof(K) * 8, cudaStream_t = nullptr) {
    const size_t m = static_cast<size_t>(n);
    if (!d_temp) return emu::temp_protocol(d_temp, bytes, m * 4 + 256);
    emu::temp_protocol(d_temp, bytes, m * 4 + 256);
    emu::need_dev(kin, m, "keys_in"); emu::need_dev(kout, m, "keys_out");
    const K mask = end_bit - begin_bit >= static_cast<int>(sizeof(K) * 8) ? ~K(0) : ((K(1) << (end_bit - begin_bit)) - 1) << begin_bit;
    std::vector<K> ks(kin, kin + m);
    std::stable_sort(ks.begin(), ks.end(), [&](K a, K b) { return (a & mask) < (b & mask); });
    std::copy(ks.begin(), ks.end(), kout);
    return cudaSuccess;
  }
};

struct DeviceScan {
  template <class In, class Out, class NumT>
  static cudaError_t ExclusiveSum(void* d_temp, size_t& bytes, In in, Out out, NumT n, cudaStream_t = nullptr) {
    const size_t m = static_cast<size_t>(n);
    if (!d_temp) return emu::temp_protocol(d_temp, bytes, 512);
    emu::temp_protocol(d_temp, bytes, 512);
    emu::need_dev(&in[0], m, "scan in"); emu::need_dev(&out[0], m, "scan out");
    using T = typename std::iterator_traits<In>::value_type;
    T run = T();
    for (size_t j = 0; j < m; ++j) {
      const T x = in[j];
      out[j] = run;
      run = run + x;
    }
    return cudaSuccess;
  }
};

struct DeviceSegmentedSort {
  template <class K, class V, class Off>
  static cudaError_t StableSortPairs(void* d_temp, size_t& bytes, const K* kin, K* kout, const V* vin, V* vout,
                                     long long num_items, long long num_segments, Off begin, Off end,
                                     cudaStream_t = nullptr) {
    const size_t m = static_cast<size_t>(num_items);
    if (!d_temp) return emu::temp_protocol(d_temp, bytes, m * 8 + 1024);
    emu::temp_protocol(d_temp, bytes, m * 8 + 1024);
    emu::need_dev(kin, m, "keys_in"); emu::need_dev(kout, m, "keys_out");
    emu::need_dev(vin, m, "values_in"); emu::need_dev(vout, m, "values_out");
    for (long long s = 0; s < num_segments; ++s) {
      const size_t a = static_cast<size_t>(begin[s]), b = static_cast<size_t>(end[s]);
      if (a > b || b > m) nq_emu::fail("segment %lld: [%zu, %zu) outside %zu items", s, a, b, m);
      std::vector<size_t> perm(b - a);
      std::iota(perm.begin(), perm.end(), a);
      std::stable_sort(perm.begin(), perm.end(), [&](size_t x, size_t y) { return kin[x] < kin[y]; });
      std::vector<K> ks(b - a);
      std::vector<V> vs(b - a);
      for (size_t j = 0; j < perm.size(); ++j) { ks[j] = kin[perm[j]]; vs[j] = vin[perm[j]]; }
      std::copy(ks.begin(), ks.end(), kout + a);
      std::copy(vs.begin(), vs.end(), vout + a);
    }
    return cudaSuccess;
  }
};

}  // namespace cub
