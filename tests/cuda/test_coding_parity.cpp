// The GPU Huffman packer (kernels/huffman_pack.cu) against BitWriter + HuffmanEncoder: the same bytes for streams
// of awkward lengths (chunk edges at 4096 symbols, words shared between chunks) and alphabets up to 16-bit codes;
// bad symbols are refused. Skips itself without a device.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "cuda/cuda_test_support.h"
#include "coding/huffman_pack.h"
#include "coding/huffman_pack_cases.h"
#include "netquant/backend.h"
#include "netquant/error.h"

namespace nq::coding {
namespace {

bool quick() { return test::cuda_quick(); }  // NQ_CUDA_PARITY_QUICK=1: the sanitizer runs

TEST(CudaCodingParity, HuffmanPackEqualsBitWriter) {
  NQ_REQUIRE_CUDA();
  uint64_t seed = 5;
  for (const size_t n : {size_t{0}, size_t{1}, size_t{2}, size_t{31}, size_t{33}, size_t{4095}, size_t{4096},
                         size_t{4097}, size_t{12289}, size_t{1000003}})
    for (const uint32_t alphabet : {1u, 2u, 17u, 256u, 40000u}) {
      if (quick() && n > 20000) continue;
      const pack_cases::Stream s = pack_cases::make_stream(n, alphabet, ++seed);
      const HuffmanEncoder enc(s.lengths);
      EXPECT_EQ(cuda::huffman_pack(s.symbols.data(), n, enc.table(), s.bits), pack_cases::bitwriter_bytes(s))
          << "n=" << n << " alphabet=" << alphabet;
    }
}

TEST(CudaCodingParity, HuffmanPackRefusesSymbolsOutsideTheCode) {
  NQ_REQUIRE_CUDA();
  pack_cases::Stream s = pack_cases::make_stream(5000, 17, 1);
  const HuffmanEncoder enc(s.lengths);
  std::vector<int32_t> bad = s.symbols;
  bad[4321] = 17;  // past the alphabet
  EXPECT_THROW(cuda::huffman_pack(bad.data(), bad.size(), enc.table(), s.bits), Error);
  bad[4321] = -1;
  EXPECT_THROW(cuda::huffman_pack(bad.data(), bad.size(), enc.table(), s.bits), Error);
  EXPECT_THROW(cuda::huffman_pack(s.symbols.data(), s.symbols.size(), enc.table(), s.bits + 1), Error);
}

}  // namespace
}  // namespace nq::coding
