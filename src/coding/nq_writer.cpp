// Encodes a QuantizedModel as a .nq file (version 1): Huffman tables, index and gap streams, directory, CRCs.
#include <algorithm>
#include <cstring>

#include "coding/bit_io.h"
#include "coding/byte_stream.h"
#include "coding/huffman.h"
#include "coding/huffman_pack.h"
#include "coding/nq_format.h"
#include "coding/positions.h"
#include "netquant/atomic_file.h"
#include "netquant/error.h"

namespace nq::coding {

namespace {

// Index streams this long are packed on the GPU when the model was quantized there (below, the copies cost more
// than the CPU encoder's ~0.5 GB/s).
constexpr size_t kGpuPackMinSymbols = size_t{1} << 20;

const char* kApi = "write_nq_file";

// The model comes from our own quantizer or a library user: inconsistencies are API misuse.
void check_model(const QuantizedModel& model) {
  const bool global = model.scope.kind == ScopeKind::kGlobal;
  NQ_CHECK(model.tensors.size() <= 0xffffffffu, ErrorCode::kInvalidArgument, kApi << ": too many tensors");
  if (global)
    NQ_CHECK(model.codebooks.size() <= 1, ErrorCode::kInvalidArgument,
             kApi << ": global scope needs one shared codebook, the model has " << model.codebooks.size());
  static_assert(kNqMaxLevels == static_cast<int>(kMaxAlphabet), "a codebook level is one Huffman symbol");
  for (size_t c = 0; c < model.codebooks.size(); ++c) {
    if (model.codebooks[c].size() <= kMaxAlphabet) continue;
    std::string user = "the model";  // the (first) tensor that uses codebook c, to name in the error
    for (const auto& t : model.tensors)
      if (t.quantized && (global || (static_cast<size_t>(t.first_codebook) <= c &&
                                     c < static_cast<size_t>(t.first_codebook + t.num_problems)))) {
        user = "tensor '" + t.name + "'";
        break;
      }
    NQ_FAIL(ErrorCode::kInvalidArgument, kApi << ": " << user << " has a codebook of " << model.codebooks[c].size()
                                              << " levels, and a .nq codebook holds at most " << kMaxAlphabet
                                              << " (quantize more coarsely, or write .safetensors)");
  }
  for (const auto& t : model.tensors)
    NQ_CHECK(!global || !t.quantized || model.codebooks.size() == 1, ErrorCode::kInvalidArgument,
             kApi << ": global scope without its shared codebook");
  for (const auto& t : model.tensors) {
    NQ_CHECK(t.name.size() <= kNqMaxNameBytes, ErrorCode::kInvalidArgument,
             kApi << ": tensor '" << t.name.substr(0, 40) << "...' has a name of " << t.name.size()
                  << " bytes; a .nq file holds names of at most " << kNqMaxNameBytes);
    NQ_CHECK(t.shape.size() <= kNqMaxNdim, ErrorCode::kInvalidArgument,
             kApi << ": tensor '" << t.name << "' has " << t.shape.size() << " dimensions");
    const int64_t numel = shape_numel(t.shape);
    if (!t.quantized) {
      NQ_CHECK(t.original.numel() == numel, ErrorCode::kInvalidArgument,
               kApi << ": tensor '" << t.name << "' kept in float holds " << t.original.numel()
                    << " values for shape " << shape_to_string(t.shape));
      continue;
    }
    NQ_CHECK(dtype_is_float(t.dtype), ErrorCode::kInvalidArgument,
             kApi << ": quantized tensor '" << t.name << "' has non-float dtype " << dtype_name(t.dtype));
    NQ_CHECK(static_cast<int64_t>(t.indices.size()) == numel, ErrorCode::kInvalidArgument,
             kApi << ": tensor '" << t.name << "' has " << t.indices.size() << " indices for " << numel << " weights");
    NQ_CHECK(t.num_problems >= 0 && t.first_codebook >= 0 &&
                 (global || static_cast<uint64_t>(t.first_codebook) + static_cast<uint64_t>(t.num_problems) <=
                                model.codebooks.size()),
             ErrorCode::kInvalidArgument, kApi << ": tensor '" << t.name << "' refers to missing codebooks");
    if (numel == 0) continue;
    NQ_CHECK(t.problem_size > 0 && t.num_problems > 0 && t.first_codebook >= 0, ErrorCode::kInvalidArgument,
             kApi << ": tensor '" << t.name << "' has no codebook layout");
    NQ_CHECK((t.num_problems - 1) * t.problem_size < numel && t.num_problems * t.problem_size >= numel,
             ErrorCode::kInvalidArgument,
             kApi << ": tensor '" << t.name << "': " << t.num_problems << " problems of " << t.problem_size
                  << " do not cover " << numel << " weights");
    if (global)
      NQ_CHECK(t.first_codebook == 0 && t.num_problems == 1, ErrorCode::kInvalidArgument,
               kApi << ": tensor '" << t.name << "' does not use the global codebook");
    NQ_CHECK(static_cast<uint64_t>(t.first_codebook) + static_cast<uint64_t>(t.num_problems) <= model.codebooks.size(),
             ErrorCode::kInvalidArgument, kApi << ": tensor '" << t.name << "' refers to missing codebooks");
    for (size_t i = 0; i < t.indices.size(); ++i) {
      const int32_t idx = t.indices[i];
      const auto& cb = model.codebooks[static_cast<size_t>(t.first_codebook) + i / static_cast<size_t>(t.problem_size)];
      NQ_CHECK(idx == kPrunedIndex || (idx >= 0 && static_cast<size_t>(idx) < cb.size()),
               ErrorCode::kInvalidArgument,
               kApi << ": tensor '" << t.name << "' index " << idx << " at " << i << " outside its codebook of "
                    << cb.size());
    }
  }
}

struct TensorPlan {
  uint32_t alphabet = 0;          // largest codebook of the tensor
  std::vector<uint64_t> counts;   // histogram of kept indices
  uint64_t kept = 0, pruned = 0;
  std::vector<uint8_t> lengths;   // own table
};

uint64_t paper_table_bits(const std::vector<uint8_t>& lengths) {
  uint64_t s = 0;
  for (uint8_t l : lengths) s += l;
  return s;
}

uint64_t bytes_of_bits(uint64_t bits) { return (bits + 7) / 8; }

void append_lengths_block(ByteWriter& w, const std::vector<uint8_t>& lengths) {
  BitWriter bw(code_lengths_bits(lengths));
  write_code_lengths(lengths, bw);
  const auto bytes = bw.finish();
  w.raw(bytes.data(), bytes.size());
}

}  // namespace

uint32_t crc32_update(uint32_t crc, const uint8_t* data, size_t n);

ModelEncoding encode_nq(const QuantizedModel& model) {
  check_model(model);
  const bool global = model.scope.kind == ScopeKind::kGlobal;
  const size_t nt = model.tensors.size();
  ModelEncoding enc;
  enc.tensors.resize(nt);

  // Histograms, per tensor and (global scope) shared.
  std::vector<TensorPlan> plans(nt);
  std::vector<uint64_t> shared_counts;
  if (global && !model.codebooks.empty()) shared_counts.assign(model.codebooks[0].size(), 0);
  bool any_quantized = false;
  for (size_t ti = 0; ti < nt; ++ti) {
    const auto& t = model.tensors[ti];
    if (!t.quantized) continue;
    any_quantized = true;
    auto& p = plans[ti];
    // Global scope: the shared codebook's size, even for an empty tensor that names no problem.
    if (global) p.alphabet = static_cast<uint32_t>(model.codebooks[0].size());
    for (int64_t c = 0; c < t.num_problems && !global; ++c)
      p.alphabet = std::max<uint32_t>(p.alphabet,
                                      static_cast<uint32_t>(model.codebooks[static_cast<size_t>(t.first_codebook + c)].size()));
    p.counts.assign(p.alphabet, 0);
    for (int32_t idx : t.indices) {
      if (idx == kPrunedIndex)
        ++p.pruned;
      else
        ++p.counts[static_cast<size_t>(idx)];
    }
    p.kept = t.indices.size() - p.pruned;
    p.lengths = huffman_code_lengths(p.counts);
    if (global)
      for (size_t s = 0; s < p.counts.size(); ++s) shared_counts[s] += p.counts[s];
  }

  // Global scope: one shared table when that makes the file smaller (ties: per-tensor tables).
  std::vector<uint8_t> shared_lengths;
  if (global && any_quantized) {
    shared_lengths = huffman_code_lengths(shared_counts);
    const uint64_t alpha = shared_lengths.size();
    uint64_t cost_shared = varint_size(alpha) + bytes_of_bits(code_lengths_bits(shared_lengths));
    uint64_t cost_own = 0;
    for (size_t ti = 0; ti < nt; ++ti) {
      if (!model.tensors[ti].quantized) continue;
      const auto& p = plans[ti];
      const uint64_t own_bits = huffman_stream_bits(p.counts, p.lengths);
      const uint64_t shared_bits = huffman_stream_bits(p.counts, shared_lengths);
      cost_shared += bytes_of_bits(shared_bits) + varint_size(shared_bits);
      cost_own += varint_size(alpha) + bytes_of_bits(code_lengths_bits(p.lengths)) + bytes_of_bits(own_bits) +
                  varint_size(own_bits);
    }
    enc.shared_table = cost_shared < cost_own;
    if (enc.shared_table) enc.shared_table_paper = paper_table_bits(shared_lengths);
  }
  if (global && !model.codebooks.empty()) enc.global_codebook_bits = 32 * model.codebooks[0].size();

  // Payloads.
  std::vector<std::vector<uint8_t>> payloads(nt);
  for (size_t ti = 0; ti < nt; ++ti) {
    const auto& t = model.tensors[ti];
    auto& te = enc.tensors[ti];
    te.quantized = t.quantized;
    te.params = shape_numel(t.shape);
    ByteWriter w;
    if (!t.quantized) {
      w.raw(t.original.data(), t.original.nbytes());
      payloads[ti] = std::move(w.bytes());
      te.payload_bytes = payloads[ti].size();
      continue;
    }
    const auto& p = plans[ti];
    // Codebooks (non-global scopes carry their own, so a tensor decodes from its payload alone).
    if (global) {
      w.varint(0);
      te.codebook_bits = enc.global_codebook_bits;
    } else {
      w.varint(static_cast<uint64_t>(t.num_problems));
      for (int64_t c = 0; c < t.num_problems; ++c) {
        const auto& cb = model.codebooks[static_cast<size_t>(t.first_codebook + c)];
        w.varint(cb.size());
        for (float v : cb) w.f32(v);
        te.codebook_bits += 32 * cb.size();
      }
    }
    const std::vector<uint8_t>& lengths = enc.shared_table ? shared_lengths : p.lengths;
    if (!enc.shared_table) {
      w.varint(p.alphabet);
      append_lengths_block(w, p.lengths);
      te.index_table_bits = 8 * bytes_of_bits(code_lengths_bits(p.lengths));
    }
    te.index_table_paper = paper_table_bits(lengths);
    // The coders take int32 symbols: this tensor's indices widened (one tensor at a time, not the model).
    const std::vector<int32_t> all = t.indices.to_vector();
    // Index stream of the kept weights, in order.
    if (p.kept > 0) {
      const HuffmanEncoder henc(lengths);
      const uint64_t bits = huffman_stream_bits(p.counts, lengths);
      std::vector<int32_t> kept;
      if (p.pruned > 0) {
        kept.reserve(p.kept);
        for (int32_t idx : all)
          if (idx != kPrunedIndex) kept.push_back(idx);
      }
      const int32_t* symbols = p.pruned > 0 ? kept.data() : all.data();
      const size_t nsym = p.pruned > 0 ? kept.size() : all.size();
      std::vector<uint8_t> bytes;
      if (model.backend == Backend::kCuda && nsym >= kGpuPackMinSymbols) {
        try {
          bytes = cuda::huffman_pack(symbols, nsym, henc.table(), bits);  // the same bytes (huffman_pack.h)
        } catch (const Error& e) {  // no room on the device: the host encoder below
          if (e.code() != ErrorCode::kOutOfMemory) throw;
        }
      }
      if (bytes.empty()) {
        BitWriter bw(bits);
        henc.encode(symbols, nsym, bw);
        NQ_ASSERT(bw.bit_count() == bits);
        bytes = bw.finish();
      }
      te.index_bits = bits;
      w.varint(te.index_bits);
      w.raw(bytes.data(), bytes.size());
    } else {
      w.varint(0);
    }
    // Positions of the kept weights.
    if (p.pruned > 0) {
      const GapPlan gp = plan_gaps(all.data(), all.size(), kPrunedIndex);
      w.u8(static_cast<uint8_t>(gp.width));
      append_lengths_block(w, gp.lengths);
      BitWriter bw(gp.stream_bits);
      encode_gaps(all.data(), all.size(), kPrunedIndex, gp, bw);
      NQ_ASSERT(bw.bit_count() == gp.stream_bits);
      const auto bytes = bw.finish();
      w.varint(gp.stream_bits);
      w.raw(bytes.data(), bytes.size());
      te.position_bits = gp.stream_bits;
      te.gap_table_bits = 8 * bytes_of_bits(gp.table_bits) + 8;
      te.gap_table_paper = paper_table_bits(gp.lengths);
    }
    payloads[ti] = std::move(w.bytes());
    te.payload_bytes = payloads[ti].size();
  }

  // Header, global section, directory.
  ByteWriter h;
  h.raw(kNqMagic, sizeof kNqMagic);
  h.u16(kNqVersion);
  h.u16(enc.shared_table ? kNqFlagSharedTable : 0);
  h.u8(static_cast<uint8_t>(model.method));
  h.u8(static_cast<uint8_t>(model.scope.kind));
  h.u16(0);
  h.u64(model.scope.kind == ScopeKind::kGroup ? static_cast<uint64_t>(model.scope.group) : 0);
  h.u32(static_cast<uint32_t>(nt));
  h.u32(0);
  const size_t dir_end_at = h.size();
  h.u64(0);  // directory end, patched below
  const size_t file_size_at = h.size();
  h.u64(0);  // file size, patched below
  NQ_ASSERT(h.size() == kNqHeaderSize);
  if (global) {
    const std::vector<float> empty;
    const auto& cb = model.codebooks.empty() ? empty : model.codebooks[0];
    h.varint(cb.size());
    for (float v : cb) h.f32(v);
    if (enc.shared_table) {
      h.varint(shared_lengths.size());
      append_lengths_block(h, shared_lengths);
    }
  }
  std::vector<size_t> offset_at(nt);
  for (size_t ti = 0; ti < nt; ++ti) {
    const auto& t = model.tensors[ti];
    const size_t start = h.size();
    h.varint(t.name.size());
    h.raw(t.name.data(), t.name.size());
    h.u8(static_cast<uint8_t>(t.quantized ? t.dtype : t.original.dtype()));
    h.u8(t.quantized ? kStorageQuantized : kStorageRaw);
    h.u8(static_cast<uint8_t>(t.shape.size()));
    for (int64_t d : t.shape) h.varint(static_cast<uint64_t>(d));
    if (t.quantized) {
      h.varint(static_cast<uint64_t>(t.problem_size));
      h.varint(static_cast<uint64_t>(t.num_problems));
      h.varint(plans[ti].pruned);
    }
    offset_at[ti] = h.size();
    h.u64(0);  // payload offset, patched below
    h.u64(payloads[ti].size());
    h.u32(crc32_update(0, payloads[ti].data(), payloads[ti].size()));
    enc.tensors[ti].record_bytes = h.size() - start;
  }
  const uint64_t dir_end = h.size() + 4;
  uint64_t offset = dir_end;
  for (size_t ti = 0; ti < nt; ++ti) {
    h.patch_u64(offset_at[ti], offset);
    offset += payloads[ti].size();
  }
  const uint64_t file_size = offset + kNqTrailerSize;
  h.patch_u64(dir_end_at, dir_end);
  h.patch_u64(file_size_at, file_size);
  h.u32(crc32_update(0, h.bytes().data(), h.size()));

  auto& out = h.bytes();
  out.reserve(static_cast<size_t>(file_size));
  for (auto& pl : payloads) {
    out.insert(out.end(), pl.begin(), pl.end());
    std::vector<uint8_t>().swap(pl);
  }
  const uint32_t crc = crc32_update(0, out.data(), out.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(crc >> (8 * i)));
  out.insert(out.end(), kNqEndMagic, kNqEndMagic + 4);
  NQ_ASSERT(out.size() == file_size);
  enc.file = std::move(out);
  return enc;
}

}  // namespace nq::coding

namespace nq {

std::vector<uint8_t> serialize_nq(QuantizedModel& model) {
  auto enc = coding::encode_nq(model);
  coding::fill_coding_stats(model, enc);
  return std::move(enc.file);
}

void write_nq_file(const std::string& path, QuantizedModel& model) {
  const auto bytes = serialize_nq(model);
  AtomicFile f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

}  // namespace nq
