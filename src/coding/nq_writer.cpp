// Encodes a QuantizedModel as a .nq file: index streams (Huffman, or rANS in version 2), gap streams, directory, CRCs.
#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>
#include <unordered_set>

#include "coding/bit_io.h"
#include "coding/byte_stream.h"
#include "coding/huffman.h"
#include "coding/huffman_parallel.h"
#include "coding/huffman_pack.h"
#include "coding/level_order.h"
#include "coding/nq_format.h"
#include "coding/positions.h"
#include "coding/rans.h"
#include "core/index_scan.h"
#include "core/iteration_errors.h"
#include "core/mapped_pages.h"
#include "core/ordered_batches.h"
#include "io/mapped_file.h"
#include "netquant/atomic_file.h"
#include "netquant/error.h"

#include <zlib.h>

namespace nq::coding {

namespace {

// Index streams this long are packed on the GPU when the model was quantized there (below, the copies cost more
// than the CPU encoder's ~0.5 GB/s).
constexpr size_t kGpuPackMinSymbols = size_t{1} << 20;

const char* kApi = "write_nq_file";

// Work items over the quantized tensors' indices: consecutive chunks of at most kChunkWeights, in tensor order, so
// that one large tensor spreads over the threads as a model of many small ones does.
constexpr size_t kChunkWeights = size_t{1} << 22;
struct IndexChunk {
  size_t tensor = 0;
  size_t begin = 0, end = 0;
};
std::vector<IndexChunk> index_chunks(const QuantizedModel& model) {
  std::vector<IndexChunk> chunks;
  for (size_t ti = 0; ti < model.tensors.size(); ++ti) {
    const auto& t = model.tensors[ti];
    if (!t.quantized) continue;
    for (size_t b = 0; b < t.indices.size(); b += kChunkWeights)
      chunks.push_back({ti, b, std::min(t.indices.size(), b + kChunkWeights)});
  }
  return chunks;
}

// The model comes from our own quantizer or a library user: inconsistencies are API misuse.
void check_model(const QuantizedModel& model) {
  const bool global = model.scope.kind == ScopeKind::kGlobal;
  NQ_CHECK(model.tensors.size() <= 0xffffffffu, ErrorCode::kInvalidArgument, kApi << ": too many tensors");
  if (global)
    NQ_CHECK(model.codebooks.size() <= 1, ErrorCode::kInvalidArgument,
             kApi << ": global scope needs one shared codebook, the model has " << model.codebooks.size());
  static_assert(kNqMaxLevels == static_cast<int>(kMaxAlphabet) && kNqMaxLevels == static_cast<int>(kRansMaxAlphabet),
                "a codebook level is one Huffman or rANS symbol");
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
  std::unordered_set<std::string> names;  // a file names each tensor once, in UTF-8 (what the reader takes)
  for (const auto& t : model.tensors) {
    NQ_CHECK(names.insert(t.name).second, ErrorCode::kInvalidArgument,
             kApi << ": two tensors named '" << t.name << "'; a .nq file names each tensor once");
    NQ_CHECK(io::is_valid_utf8(t.name.data(), t.name.size()), ErrorCode::kInvalidArgument,
             kApi << ": tensor name '" << t.name << "' is not valid UTF-8 (.nq names, as safetensors', are UTF-8)");
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
  }
  // Every index in its problem's codebook (or pruned): chunks of the tensors on the threads, indices at their
  // stored width; the first offender of the first such tensor is named, whatever the thread count.
  const std::vector<IndexChunk> chunks = index_chunks(model);
  IterationErrors errors;
#pragma omp parallel for schedule(dynamic) if (chunks.size() > 1)
  for (int64_t ci = 0; ci < static_cast<int64_t>(chunks.size()); ++ci)
    errors.run(static_cast<size_t>(ci), [&] {
      const IndexChunk& ch = chunks[static_cast<size_t>(ci)];
      const QuantizedTensor& t = model.tensors[ch.tensor];
      const size_t size = static_cast<size_t>(t.problem_size);
      t.indices.visit([&](const auto* data, auto mark) {
        for (size_t i0 = ch.begin; i0 < ch.end;) {
          const size_t c = i0 / size, i1 = std::min(ch.end, (c + 1) * size);
          const size_t levels = model.codebooks[static_cast<size_t>(t.first_codebook) + c].size();
          const size_t i = first_index_outside(data, i0, i1, mark, levels);
          NQ_CHECK(i == i1, ErrorCode::kInvalidArgument,
                   kApi << ": tensor '" << t.name << "' index " << static_cast<int64_t>(data[i]) << " at " << i
                        << " outside its codebook of " << levels);
          i0 = i1;
        }
      });
    });
  errors.rethrow_first();
}

struct TensorPlan {
  uint32_t alphabet = 0;          // largest codebook of the tensor
  bool by_use = false;            // several codebooks: their levels stored by use (level_order.h), `order` holds it
  LevelOrder order;
  std::vector<uint64_t> counts;   // histogram of kept indices (by_use: of their places)
  uint64_t kept = 0, pruned = 0;
  std::vector<uint8_t> lengths;   // own table
  // rANS (version 2): the table, and the section's estimated bytes (UINT64_MAX where rANS is not an option).
  RansTable rans_table;
  uint64_t rans_estimate = UINT64_MAX;
  bool rans = false;              // chosen (make_payload may still fall back to Huffman on the exact size)
};

uint64_t paper_table_bits(const std::vector<uint8_t>& lengths) {
  uint64_t s = 0;
  for (uint8_t l : lengths) s += l;
  return s;
}

uint64_t bytes_of_bits(uint64_t bits) { return (bits + 7) / 8; }

// Bytes of a Huffman index section: its own table (unless shared), the stream's bit count and the stream.
uint64_t huffman_section_bytes(const std::vector<uint64_t>& counts, const std::vector<uint8_t>& lengths, bool own_table) {
  const uint64_t bits = huffman_stream_bits(counts, lengths);
  const uint64_t table = own_table ? varint_size(lengths.size()) + bytes_of_bits(code_lengths_bits(lengths)) : 0;
  return table + varint_size(bits) + bytes_of_bits(bits);
}

// Each tensor's coder and the file's version, under one choice of index tables (the shared table when
// `shared_lengths` is given). rANS where asked, or (auto) where its estimate, with a byte per rANS state
// to spare for the estimate's error, is below the Huffman section's exact size. Any rANS tensor makes the file
// version 2, whose payloads spend a byte each on naming their coder: auto keeps version 1 unless rANS saves more
// than that. `bytes` gets the index sections' planned size: rANS at its estimate plus the spare bytes, Huffman
// exactly, the shared table and the coder bytes included.
struct CoderChoice {
  uint16_t version = kNqVersionHuffman;
  uint64_t bytes = 0;
  std::vector<bool> rans;  // per tensor
};
CoderChoice choose_index_coders(const QuantizedModel& model, const std::vector<uint8_t>* shared_lengths,
                                const std::vector<TensorPlan>& plans) {
  CoderChoice c;
  c.rans.assign(plans.size(), false);
  bool any_rans = false;
  uint64_t saved = 0, quantized = 0, huffman_total = 0, chosen_total = 0;
  for (size_t ti = 0; ti < plans.size(); ++ti) {
    const TensorPlan& p = plans[ti];
    if (!model.tensors[ti].quantized) continue;
    ++quantized;
    const uint64_t huffman = huffman_section_bytes(p.counts, shared_lengths ? *shared_lengths : p.lengths, !shared_lengths);
    huffman_total += huffman;
    if (p.rans_estimate == UINT64_MAX) {
      chosen_total += huffman;
      continue;
    }
    const uint64_t rans = p.rans_estimate + kRansStates * rans_chunk_count(p.kept, kRansChunkSymbols);
    const bool use_rans = model.index_coder == IndexCoder::kRans || rans < huffman;
    if (use_rans) saved += huffman - std::min(huffman, rans);
    chosen_total += use_rans ? rans : huffman;
    c.rans[ti] = use_rans;
    any_rans = any_rans || use_rans;
  }
  if (model.index_coder == IndexCoder::kAuto && any_rans && saved <= quantized) {
    c.rans.assign(plans.size(), false);
    any_rans = false;
    chosen_total = huffman_total;
  }
  c.version = any_rans ? kNqVersionMax : kNqVersionHuffman;
  c.bytes = chosen_total + (any_rans ? quantized : 0);
  if (shared_lengths) c.bytes += varint_size(shared_lengths->size()) + bytes_of_bits(code_lengths_bits(*shared_lengths));
  return c;
}

void append_lengths_block(ByteWriter& w, const std::vector<uint8_t>& lengths) {
  BitWriter bw(code_lengths_bits(lengths));
  write_code_lengths(lengths, bw);
  const auto bytes = bw.finish();
  w.raw(bytes.data(), bytes.size());
}

}  // namespace

uint32_t crc32_update(uint32_t crc, const uint8_t* data, size_t n);

ModelEncoding encode_nq(const QuantizedModel& model, NqByteSink* sink) {
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
  for (const auto& t : model.tensors) any_quantized = any_quantized || t.quantized;
  // Each tensor's histogram, from chunks of its indices on the threads (integer counts, added atomically: the same
  // for any thread count), then its code lengths.
  for (size_t ti = 0; ti < nt; ++ti) {
    const auto& t = model.tensors[ti];
    if (!t.quantized) continue;
    auto& p = plans[ti];
    // Global scope: the shared codebook's size, even for an empty tensor that names no problem.
    if (global) p.alphabet = static_cast<uint32_t>(model.codebooks[0].size());
    for (int64_t c = 0; c < t.num_problems && !global; ++c)
      p.alphabet = std::max<uint32_t>(p.alphabet,
                                      static_cast<uint32_t>(model.codebooks[static_cast<size_t>(t.first_codebook + c)].size()));
    p.counts.assign(p.alphabet, 0);
    p.by_use = !global && t.num_problems > 1;
  }
  // Tensors of several codebooks: the histogram of the levels' places, per problem (level_order.h).
  for (size_t ti = 0; ti < nt; ++ti) {
    auto& p = plans[ti];
    if (!p.by_use) continue;
    p.order = order_levels_by_use(model.tensors[ti], model.codebooks, p.alphabet);
    p.counts = std::move(p.order.counts);
    p.pruned = p.order.pruned;
  }
  const std::vector<IndexChunk> chunks = index_chunks(model);
#pragma omp parallel for schedule(dynamic) if (chunks.size() > 1)
  for (int64_t ci = 0; ci < static_cast<int64_t>(chunks.size()); ++ci) {
    const IndexChunk& ch = chunks[static_cast<size_t>(ci)];
    const auto& t = model.tensors[ch.tensor];
    auto& p = plans[ch.tensor];
    if (p.by_use) continue;  // counted above
    std::vector<uint64_t> counts(p.alphabet, 0);
    bool outside = false;  // cannot happen: check_model has checked every index
    const uint64_t pruned = t.indices.visit([&](const auto* data, auto mark) {  // at the stored width
      return count_indices(data, ch.begin, ch.end, mark, counts.size(), counts.data(), outside);
    });
    for (size_t s = 0; s < counts.size(); ++s)
      if (counts[s]) {
#pragma omp atomic
        p.counts[s] += counts[s];
      }
#pragma omp atomic
    p.pruned += pruned;
  }
  IterationErrors plan_errors;
#pragma omp parallel for schedule(dynamic) if (nt > 1)
  for (int64_t tj = 0; tj < static_cast<int64_t>(nt); ++tj) plan_errors.run(static_cast<size_t>(tj), [&] {
    const auto& t = model.tensors[static_cast<size_t>(tj)];
    if (!t.quantized) return;
    auto& p = plans[static_cast<size_t>(tj)];
    p.kept = t.indices.size() - p.pruned;
    p.lengths = huffman_code_lengths(p.counts);
    if (model.index_coder != IndexCoder::kHuffman && p.kept > 0) {
      p.rans_table = rans_table_for(p.counts);
      p.rans_estimate =
          varint_size(p.alphabet) + rans_estimated_section_bytes(p.rans_table, p.counts, kRansChunkSymbols);
    }
  });
  plan_errors.rethrow_first();
  if (global)
    for (size_t ti = 0; ti < nt; ++ti)
      for (size_t s = 0; s < plans[ti].counts.size(); ++s) shared_counts[s] += plans[ti].counts[s];

  // Global scope: one shared Huffman table when that makes the file smaller (ties: per-tensor tables). The coders
  // are chosen under each choice of tables and the cheaper whole is kept: choosing the tables first, with each
  // tensor at its cheaper coder, could pick per-tensor tables for rANS that the version rule then drops, leaving
  // Huffman with the costlier tables (seen by stress_model: auto a few bytes over Huffman alone).
  std::vector<uint8_t> shared_lengths;
  CoderChoice coders = choose_index_coders(model, nullptr, plans);
  if (global && any_quantized) {
    shared_lengths = huffman_code_lengths(shared_counts);
    CoderChoice with_shared = choose_index_coders(model, &shared_lengths, plans);
    enc.shared_table = with_shared.bytes < coders.bytes;
    if (enc.shared_table) {
      coders = std::move(with_shared);
      enc.shared_table_paper = paper_table_bits(shared_lengths);
    }
  }
  for (size_t ti = 0; ti < nt; ++ti) plans[ti].rans = coders.rans[ti];
  const uint16_t version = coders.version;
  if (global && !model.codebooks.empty()) enc.global_codebook_bits = 32 * model.codebooks[0].size();

  // Header, global section and directory first, with each record's payload offset, size and checksum left
  // at zero: they are fixed-width fields, so the header's size is known before any payload is made, and the
  // payloads can go to the sink one tensor at a time (a model's file never has to be in memory at once).
  ByteWriter h;
  h.raw(kNqMagic, sizeof kNqMagic);
  h.u16(version);
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
    h.u64(0);  // payload offset, size and CRC32, patched below
    h.u64(0);
    h.u32(0);
    enc.tensors[ti].record_bytes = h.size() - start;
  }
  const uint64_t dir_end = h.size() + 4;  // + the header's CRC32
  if (sink) sink->header_space(dir_end);

  // Payloads, one tensor at a time.
  uint64_t offset = dir_end;
  uint32_t payloads_crc = 0;  // CRC32 of the payloads, back to back
  auto emit = [&](size_t ti, const uint8_t* data, size_t size) {
    h.patch_u64(offset_at[ti], offset);
    h.patch_u64(offset_at[ti] + 8, size);
    offset += size;
    enc.tensors[ti].payload_bytes = size;
    if (!sink) return;  // sizes only: no checksums
    const uint32_t crc = crc32_update(0, data, size);
    h.patch_u32(offset_at[ti] + 16, crc);
    payloads_crc = static_cast<uint32_t>(crc32_combine64(payloads_crc, crc, static_cast<z_off64_t>(size)));
    sink->payload(data, size);
  };
  // A quantized tensor's payload, and how many of its bytes were counted but not coded (no sink). Each call
  // touches only its own tensor's encoding record: tensors are coded on the threads, in batches.
  struct Payload {
    std::vector<uint8_t> bytes;
    uint64_t uncoded_bytes = 0;
  };
  auto make_payload = [&](size_t ti) {
    const auto& t = model.tensors[ti];
    auto& te = enc.tensors[ti];
    ByteWriter w;
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
        if (p.by_use) {
          const uint32_t* level = p.order.level_at.data() + p.order.offset[static_cast<size_t>(c)];
          for (size_t r = 0; r < cb.size(); ++r) w.f32(cb[level[r]]);
        } else {
          for (float v : cb) w.f32(v);
        }
        te.codebook_bits += 32 * cb.size();
      }
    }
    const std::vector<uint8_t>& lengths = enc.shared_table ? shared_lengths : p.lengths;
    te.index_table_paper = paper_table_bits(lengths);
    te.index_bits = huffman_stream_bits(p.counts, lengths);  // the paper's figure, whichever coder the file uses
    // Without a sink only the payload's size is wanted: a Huffman stream's bytes are counted from its bit count
    // (known from the histogram) instead of coded; a rANS stream is coded either way (its size is known only then).
    // The coders read the indices at their stored width; only the GPU packer takes int32 symbols.
    uint64_t uncoded_bytes = 0;
    // A pruned tensor's chunk layout, made once for the kept indices, the gap plan and the gap stream.
    const KeptLayout layout =
        p.pruned > 0 ? t.indices.visit([&](const auto* data, auto mark) { return kept_layout(data, t.indices.size(), mark); })
                     : KeptLayout{};
    // `use` gets the coded symbols: the kept weights' indices in order (by_use: their places).
    auto with_symbols = [&](auto&& use) {
      t.indices.visit([&](const auto* data, auto mark) {
        using Index = std::decay_t<decltype(*data)>;
        std::vector<Index> by_place;  // by_use: the indices as places (pruned ones kept as the mark)
        if (p.by_use)
          by_place = indices_by_place(data, t.indices.size(), mark, static_cast<uint64_t>(t.problem_size), p.order);
        const Index* coded = p.by_use ? by_place.data() : data;
        std::vector<Index> kept;  // the kept symbols, when some are pruned
        if (p.pruned > 0) kept = gather_kept(coded, t.indices.size(), mark, &layout);
        NQ_ASSERT(p.pruned == 0 || kept.size() == p.kept);
        use(p.pruned > 0 ? kept.data() : coded);
      });
    };
    // rANS where planned, unless its exact size does not beat the Huffman section after all.
    std::vector<uint8_t> rans_section;
    bool rans = p.rans;
    if (rans) {
      with_symbols([&](const auto* symbols) {
        rans_section = rans_encode(p.rans_table, symbols, p.kept, kRansChunkSymbols);
      });
      const uint64_t exact = varint_size(p.alphabet) + rans_table_bytes(p.rans_table) +
                             varint_size(rans_section.size()) + rans_section.size();
      rans = model.index_coder == IndexCoder::kRans ||
             exact < huffman_section_bytes(p.counts, lengths, !enc.shared_table);
    }
    if (version >= kNqVersionMax) w.u8(rans ? kIndexCoderRans : kIndexCoderHuffman);
    if (rans) {
      w.varint(p.alphabet);
      rans_write_table(w, p.rans_table);
      te.index_table_bits = 8 * rans_table_bytes(p.rans_table);
      w.varint(rans_section.size());
      w.raw(rans_section.data(), rans_section.size());
    } else {
      if (!enc.shared_table) {
        w.varint(p.alphabet);
        append_lengths_block(w, p.lengths);
        te.index_table_bits = 8 * bytes_of_bits(code_lengths_bits(p.lengths));
      }
      // Index stream of the kept weights, in order.
      w.varint(p.kept > 0 ? te.index_bits : 0);
      if (p.kept > 0 && !sink) {
        uncoded_bytes += bytes_of_bits(te.index_bits);
      } else if (p.kept > 0) {
        const HuffmanEncoder henc(lengths);
        const uint64_t bits = te.index_bits;
        std::vector<uint8_t> bytes;
        with_symbols([&](const auto* symbols) {
          if (model.backend == Backend::kCuda && p.kept >= kGpuPackMinSymbols) {
            const std::vector<int32_t> wide(symbols, symbols + p.kept);
            try {
              bytes = cuda::huffman_pack(wide.data(), wide.size(), henc.table(), bits);  // the same bytes (huffman_pack.h)
            } catch (const Error& e) {  // no room on the device: the host encoder below
              if (e.code() != ErrorCode::kOutOfMemory) throw;
            }
          }
          if (bytes.empty()) bytes = encode_stream_parallel(henc, symbols, static_cast<size_t>(p.kept), bits);
        });
        NQ_ASSERT(bytes.size() == bytes_of_bits(bits));
        w.raw(bytes.data(), bytes.size());
      }
    }
    // Positions of the kept weights.
    if (p.pruned > 0) {
      t.indices.visit([&](const auto* data, auto mark) {
        const GapPlan gp = plan_gaps(data, t.indices.size(), mark, &layout);
        w.u8(static_cast<uint8_t>(gp.width));
        append_lengths_block(w, gp.lengths);
        w.varint(gp.stream_bits);
        if (sink) {
          const auto bytes = encode_gaps(data, t.indices.size(), mark, gp, &layout);
          NQ_ASSERT(bytes.size() == bytes_of_bits(gp.stream_bits));
          w.raw(bytes.data(), bytes.size());
        } else {
          uncoded_bytes += bytes_of_bits(gp.stream_bits);
        }
        te.position_bits = gp.stream_bits;
        te.gap_table_bits = 8 * bytes_of_bits(gp.table_bits) + 8;
        te.gap_table_paper = paper_table_bits(gp.lengths);
      });
    }
    return Payload{std::move(w.bytes()), uncoded_bytes};
  };
  // Tensors coded on the threads in batches of about 64 M weights (the coders and the position plan are per tensor
  // and serial), emitted in order; a batch's payloads are what is held.
  for_each_in_ordered_batches<Payload>(
      nt, uint64_t{1} << 26, [&](size_t ti) { return static_cast<uint64_t>(shape_numel(model.tensors[ti].shape)); },
      [&](size_t ti) { return model.tensors[ti].quantized ? make_payload(ti) : Payload{}; },
      [&](size_t ti, Payload& pl) {
        const auto& t = model.tensors[ti];
        auto& te = enc.tensors[ti];
        te.quantized = t.quantized;
        te.params = shape_numel(t.shape);
        if (!t.quantized) {  // the tensor's own bytes, not a copy; pages of an input mapping given back once written
          emit(ti, static_cast<const uint8_t*>(t.original.data()), t.original.nbytes());
          if (sink) release_mapped_pages(t.original.data(), t.original.nbytes());
          return;
        }
        emit(ti, pl.bytes.data(), pl.bytes.size() + pl.uncoded_bytes);
      });

  // The header's patched fields, its CRC, and the trailer: the whole file's CRC from the header's and the
  // payloads' (zlib's crc32_combine), then the end magic.
  const uint64_t file_size = offset + kNqTrailerSize;
  h.patch_u64(dir_end_at, dir_end);
  h.patch_u64(file_size_at, file_size);
  h.u32(crc32_update(0, h.bytes().data(), h.size()));
  NQ_ASSERT(h.size() == dir_end);
  const uint32_t crc = static_cast<uint32_t>(
      crc32_combine64(crc32_update(0, h.bytes().data(), h.size()), payloads_crc, static_cast<z_off64_t>(offset - dir_end)));
  for (int i = 0; i < 4; ++i) enc.trailer[static_cast<size_t>(i)] = static_cast<uint8_t>(crc >> (8 * i));
  std::copy(kNqEndMagic, kNqEndMagic + 4, enc.trailer.begin() + 4);
  enc.header = std::move(h.bytes());
  enc.file_size = file_size;
  return enc;
}

}  // namespace nq::coding

namespace nq {

std::vector<uint8_t> serialize_nq(QuantizedModel& model) {
  struct ToMemory : coding::NqByteSink {
    std::vector<uint8_t> bytes;
    void header_space(uint64_t n) override { bytes.resize(static_cast<size_t>(n)); }
    void payload(const uint8_t* data, size_t size) override { bytes.insert(bytes.end(), data, data + size); }
  } out;
  const coding::ModelEncoding enc = coding::encode_nq(model, &out);
  std::copy(enc.header.begin(), enc.header.end(), out.bytes.begin());
  out.bytes.insert(out.bytes.end(), enc.trailer.begin(), enc.trailer.end());
  NQ_ASSERT(out.bytes.size() == enc.file_size);
  coding::fill_coding_stats(model, enc);
  return std::move(out.bytes);
}

// Streams the payloads to the file as they are made: the largest thing held is one tensor's payload.
void write_nq_file(const std::string& path, QuantizedModel& model) {
  struct ToFile : coding::NqByteSink {
    AtomicFile file;
    explicit ToFile(const std::string& p) : file(p) {}
    void header_space(uint64_t n) override {
      const std::vector<uint8_t> zeros(static_cast<size_t>(n), 0);
      file.write(zeros.data(), zeros.size());
    }
    void payload(const uint8_t* data, size_t size) override { file.write(data, size); }
  } out(path);
  const coding::ModelEncoding enc = coding::encode_nq(model, &out);
  out.file.write(enc.trailer.data(), enc.trailer.size());
  out.file.write_at(0, enc.header.data(), enc.header.size());
  NQ_ASSERT(out.file.bytes_written() == enc.file_size);
  out.file.commit();
  coding::fill_coding_stats(model, enc);
}

}  // namespace nq
