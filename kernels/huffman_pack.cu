// Huffman bit packing on the GPU (src/coding/huffman_pack.h): the stream of a tensor's indices as a scan of code
// lengths plus a scatter of codewords. Chunks of 4096 symbols: pass 1 sums each chunk's bits, a device scan turns
// the sums into chunk offsets, pass 2 has each CTA place its chunk's codewords into shared-memory words (OR, no
// overlaps) and store them — plain stores inside the chunk, OR into global memory for the two edge words it may
// share with its neighbours. The bytes equal BitWriter's (tests/cuda/test_coding_parity.cpp).
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_scan.cuh>

#include <vector>

#include "coding/huffman_pack.h"
#include "core/cuda_device.h"
#include "cuda_check.cuh"
#include "device_buffer.cuh"
#include "netquant/error.h"

namespace nq::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kItems = 16;
constexpr int kChunk = kThreads * kItems;                        // symbols per CTA
constexpr int kMaxChunkWords = (kChunk * 16 + 31) / 32 + 2;      // 16-bit codes at most, plus the edge words

// Length and codeword of symbol s; an invalid one (outside the table, or without a code) raises *bad, packs nothing.
__device__ __forceinline__ uint32_t lookup(int32_t s, const uint32_t* table, uint32_t alphabet, int* bad) {
  const uint32_t e = (s >= 0 && static_cast<uint32_t>(s) < alphabet) ? table[s] : 0u;
  if ((e >> 16) == 0) atomicExch(bad, 1);
  return e;
}

__global__ void __launch_bounds__(kThreads) chunk_bits_kernel(const int32_t* sym, size_t n, const uint32_t* table,
                                                              uint32_t alphabet, unsigned long long* chunk_bits,
                                                              int* bad) {
  using Reduce = cub::BlockReduce<unsigned long long, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  const size_t i0 = static_cast<size_t>(blockIdx.x) * kChunk;
  unsigned long long bits = 0;
  for (int t = threadIdx.x; t < kChunk; t += kThreads) {
    const size_t i = i0 + t;
    if (i < n) bits += lookup(sym[i], table, alphabet, bad) >> 16;
  }
  const unsigned long long total = Reduce(temp).Sum(bits);
  if (threadIdx.x == 0) chunk_bits[blockIdx.x] = total;
}

__global__ void __launch_bounds__(kThreads) pack_kernel(const int32_t* sym, size_t n, const uint32_t* table,
                                                        uint32_t alphabet, const unsigned long long* chunk_off,
                                                        uint32_t* words, int* bad) {
  using Scan = cub::BlockScan<uint32_t, kThreads>;
  __shared__ typename Scan::TempStorage temp;
  __shared__ uint32_t sw[kMaxChunkWords];
  const int tid = static_cast<int>(threadIdx.x);
  const size_t i0 = static_cast<size_t>(blockIdx.x) * kChunk;
  const unsigned long long base_bit = chunk_off[blockIdx.x];
  const uint32_t shift = static_cast<uint32_t>(base_bit & 31u);
  const unsigned long long base_word = base_bit >> 5;
  uint32_t entry[kItems];
  uint32_t mine = 0;
#pragma unroll
  for (int k = 0; k < kItems; ++k) {  // blocked: thread t packs symbols t·kItems …, in stream order
    const size_t i = i0 + static_cast<size_t>(tid) * kItems + k;
    entry[k] = i < n ? lookup(sym[i], table, alphabet, bad) : 0u;
    mine += entry[k] >> 16;
  }
  uint32_t offset, total;
  Scan(temp).ExclusiveSum(mine, offset, total);
  for (int w = tid; w < kMaxChunkWords; w += kThreads) sw[w] = 0u;
  __syncthreads();
  uint32_t at = shift + offset;
#pragma unroll
  for (int k = 0; k < kItems; ++k) {
    const int len = static_cast<int>(entry[k] >> 16);
    if (len == 0) continue;
    const coding::CodeMasks m = coding::code_masks(at, entry[k] & 0xffffu, len);
    atomicOr(&sw[at >> 5], coding::to_stream_order(m.first));
    if (m.second) atomicOr(&sw[(at >> 5) + 1], coding::to_stream_order(m.second));
    at += static_cast<uint32_t>(len);
  }
  __syncthreads();
  const uint32_t nw = (shift + total + 31u) / 32u;
  for (uint32_t w = tid; w < nw; w += kThreads) {
    if (w == 0 || w + 1 == nw) atomicOr(&words[base_word + w], sw[w]);  // may be shared with a neighbour chunk
    else words[base_word + w] = sw[w];
  }
}

}  // namespace

std::vector<uint8_t> huffman_pack(const int32_t* symbols, size_t n, const std::vector<uint32_t>& table,
                                  uint64_t total_bits) {
  bind_thread_device();
  if (n == 0) {
    NQ_CHECK(total_bits == 0, ErrorCode::kInternal, "huffman_pack: no symbols but " << total_bits << " bits");
    return {};
  }
  NQ_CHECK(symbols && !table.empty(), ErrorCode::kInvalidArgument, "huffman_pack: null symbols or empty table");
  const size_t nchunks = (n + kChunk - 1) / kChunk;
  NQ_CHECK(nchunks <= 0x7fffffffu, ErrorCode::kUnsupported, "huffman_pack: " << n << " symbols in one stream");
  DeviceBuffer<int32_t> dsym;
  DeviceBuffer<uint32_t> dtable, dwords;
  DeviceBuffer<unsigned long long> dbits(nchunks + 1), doff(nchunks + 1);
  DeviceBuffer<int> dbad(1);
  dsym.upload(symbols, n);
  dtable.upload(table.data(), table.size());
  NQ_CUDA_CHECK(cudaMemsetAsync(dbad.get(), 0, sizeof(int)));
  NQ_CUDA_CHECK(cudaMemsetAsync(dbits.get() + nchunks, 0, sizeof(unsigned long long)));
  const uint32_t alphabet = static_cast<uint32_t>(table.size());
  chunk_bits_kernel<<<static_cast<unsigned>(nchunks), kThreads>>>(dsym.get(), n, dtable.get(), alphabet, dbits.get(),
                                                                  dbad.get());
  NQ_CUDA_CHECK_LAUNCH("chunk_bits_kernel");
  // Exclusive scan over nchunks + 1 entries (the last, zero, entry receives the total).
  size_t temp_bytes = 0;
  NQ_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, temp_bytes, dbits.get(), doff.get(), nchunks + 1));
  DeviceBuffer<unsigned char> temp(temp_bytes);
  NQ_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temp.get(), temp_bytes, dbits.get(), doff.get(), nchunks + 1));
  unsigned long long device_total = 0;
  int bad = 0;
  NQ_CUDA_CHECK(cudaMemcpy(&device_total, doff.get() + nchunks, sizeof device_total, cudaMemcpyDeviceToHost));
  NQ_CUDA_CHECK(cudaMemcpy(&bad, dbad.get(), sizeof bad, cudaMemcpyDeviceToHost));
  NQ_CHECK(!bad, ErrorCode::kInternal, "huffman_pack: a symbol outside the code");
  NQ_CHECK(device_total == total_bits, ErrorCode::kInternal,
           "huffman_pack: the symbols need " << device_total << " bits, the caller expected " << total_bits);
  // The outputs are sized only now that total_bits is known to be the symbols' own (a wrong, huge value is the
  // internal error above, not an allocation failure).
  const size_t nbytes = static_cast<size_t>((total_bits + 7) / 8);
  const size_t nwords = static_cast<size_t>(total_bits / 32) + 2;
  std::vector<uint8_t> out(nbytes);
  dwords.allocate(nwords);
  NQ_CUDA_CHECK(cudaMemsetAsync(dwords.get(), 0, nwords * sizeof(uint32_t)));
  pack_kernel<<<static_cast<unsigned>(nchunks), kThreads>>>(dsym.get(), n, dtable.get(), alphabet, doff.get(),
                                                            dwords.get(), dbad.get());
  NQ_CUDA_CHECK_LAUNCH("pack_kernel");
  NQ_CUDA_CHECK(cudaMemcpy(out.data(), dwords.get(), nbytes, cudaMemcpyDeviceToHost));  // words hold stream bytes
  return out;
}

}  // namespace nq::cuda
