// Names of the index coders (IndexCoder, netquant/quantize.h) for the CLI, the Python module and reports.
#include "netquant/coding.h"
#include "netquant/error.h"

namespace nq {

IndexCoder parse_index_coder(const std::string& name) {
  if (name == "auto") return IndexCoder::kAuto;
  if (name == "huffman") return IndexCoder::kHuffman;
  if (name == "rans") return IndexCoder::kRans;
  NQ_FAIL(ErrorCode::kInvalidArgument, "unknown index coder '" << name << "' (expected auto, huffman or rans)");
}

const char* index_coder_name(IndexCoder coder) {
  switch (coder) {
    case IndexCoder::kAuto: return "auto";
    case IndexCoder::kHuffman: return "huffman";
    case IndexCoder::kRans: return "rans";
  }
  return "?";
}

}  // namespace nq
