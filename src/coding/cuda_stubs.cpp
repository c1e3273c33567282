// CPU-only build: the CUDA coding ops (huffman_pack.h) exist and throw kUnavailable.
#include "coding/huffman_pack.h"

#include "netquant/error.h"

#if !NQ_HAVE_CUDA
namespace nq::cuda {
std::vector<uint8_t> huffman_pack(const int32_t*, size_t, const std::vector<uint32_t>&, uint64_t) {
  NQ_FAIL(ErrorCode::kUnavailable, "coding op huffman_pack: this netquant was built without CUDA");
}
}  // namespace nq::cuda
#endif
