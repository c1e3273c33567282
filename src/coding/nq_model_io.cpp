// Whole-model reading (file or memory), inspection, dequantization and streaming decompression to safetensors.
#include <cstring>
#include <map>

#include <nlohmann/json.hpp>
#include <zlib.h>

#include "coding/codes_layout.h"
#include "coding/level_order.h"
#include "coding/nq_format.h"
#include "core/ordered_batches.h"
#include "core/string_util.h"
#include "netquant/atomic_file.h"
#include "netquant/error.h"
#include "netquant/io.h"
#include "quant/dequantize.h"

namespace nq::coding {

uint32_t read_nq_trailer(const NqSource& src, const NqDirectory& dir) {
  uint8_t tail[kNqTrailerSize];
  src.read(src.size() - kNqTrailerSize, kNqTrailerSize, tail);
  NQ_CHECK(std::memcmp(tail + 4, kNqEndMagic, 4) == 0, ErrorCode::kBadFile,
           dir.source << ": bad end marker (truncated or corrupt file)");
  return static_cast<uint32_t>(tail[0]) | (static_cast<uint32_t>(tail[1]) << 8) |
         (static_cast<uint32_t>(tail[2]) << 16) | (static_cast<uint32_t>(tail[3]) << 24);
}

Tensor dequantize_tensor(const QuantizedTensor& t, const std::vector<std::vector<float>>& codebooks, DType dtype) {
  if (!t.quantized) {
    if (t.original.dtype() == dtype || !dtype_is_float(t.original.dtype())) {
      Tensor copy = t.original;
      copy.set_name(t.name);
      return copy;
    }
    Tensor out = t.original.converted(dtype);
    out.set_name(t.name);
    return out;
  }
  return quant::dequantize_indices(t, codebooks, dtype);
}

namespace {

QuantizedModel read_model(const NqSource& src, const NqLimits& limits) {
  const NqDirectory dir = read_nq_directory(src);
  const uint32_t stored_crc = read_nq_trailer(src, dir);
  QuantizedModel model;
  model.method = dir.method;
  model.scope = dir.scope;
  if (dir.scope.kind == ScopeKind::kGlobal) model.codebooks.push_back(dir.global_codebook);
  uint32_t crc = dir.prefix_crc;
  uint64_t budget = limits.max_elements;
  // The coder that writes this file again as it is: Huffman for version 1; rANS when every tensor with a kept weight
  // has a rANS stream (what kRans writes); else auto, the one writer of mixed files.
  bool all_rans = true;
  for (const auto& rec : dir.records) {
    const auto payload = read_nq_payload(src, dir, rec);
    crc = crc32_update(crc, payload.data(), payload.size());
    PayloadLayout layout;
    QuantizedTensor t = decode_nq_payload(dir, rec, payload, model.codebooks, &layout, true, &budget);
    if (rec.quantized && rec.numel > rec.pruned) all_rans = all_rans && layout.rans;
    // Several codebooks may be stored by use (level_order.h): the model gets each back ascending, its indices with
    // it. (Decompressing needs no order: it only looks levels up.)
    if (dir.scope.kind != ScopeKind::kGlobal && t.quantized && t.num_problems > 1)
      restore_ascending_levels(t, model.codebooks);
    model.tensors.push_back(std::move(t));
  }
  NQ_CHECK(!kEnforceCrc || crc == stored_crc, ErrorCode::kBadFile, dir.source << ": file checksum mismatch (corrupt file)");
  for (auto& t : model.tensors) {
    t.stats.params = shape_numel(t.shape);
    const int64_t pruned = t.indices.count(kPrunedIndex);
    t.stats.pruned = pruned;
    model.total.params += t.stats.params;
    model.total.pruned += pruned;
  }
  model.index_coder = dir.version == kNqVersionHuffman ? IndexCoder::kHuffman
                      : all_rans                        ? IndexCoder::kRans
                                                        : IndexCoder::kAuto;
  fill_coding_stats(model, encode_nq(model));
  return model;
}



}  // namespace

}  // namespace nq::coding

namespace nq {

QuantizedModel parse_nq(const uint8_t* data, size_t size, const std::string& source, const NqLimits& limits) {
  const auto src = coding::memory_nq_source(data, size, source);
  return coding::read_model(*src, limits);
}

QuantizedModel read_nq_file(const std::string& path) {
  const auto src = coding::open_nq_file_source(path);
  return coding::read_model(*src, NqLimits{});
}

NqFileInfo describe_nq_file(const std::string& path) {
  using namespace coding;
  const auto src = open_nq_file_source(path);
  const NqDirectory dir = read_nq_directory(*src, true);
  NqFileInfo info;
  info.path = path;
  info.version = dir.version;
  info.flags = dir.flags;
  info.method = dir.method;
  info.scope = dir.scope;
  info.shared_table = dir.shared_table;
  info.global_k = static_cast<int>(dir.global_codebook.size());
  info.file_size = dir.file_size;
  info.header_bytes = dir.dir_end;
  info.header_crc_ok = dir.header_crc == dir.header_crc_computed;
  const uint32_t stored_crc = read_nq_trailer(*src, dir);
  uint32_t crc = dir.prefix_crc;
  std::vector<std::vector<float>> codebooks;
  for (const auto& rec : dir.records) {
    NqTensorInfo ti;
    ti.name = rec.name;
    ti.dtype = rec.dtype;
    ti.shape = rec.shape;
    ti.quantized = rec.quantized;
    ti.params = static_cast<int64_t>(rec.numel);
    ti.pruned = static_cast<int64_t>(rec.pruned);
    ti.problem_size = static_cast<int64_t>(rec.problem_size);
    ti.num_problems = static_cast<int64_t>(rec.num_problems);
    ti.payload_offset = rec.payload_offset;
    ti.payload_bytes = rec.payload_length;
    ti.shared_table = rec.quantized && dir.shared_table;
    const auto payload = read_nq_payload(*src, dir, rec, &ti.crc_ok);
    crc = crc32_update(crc, payload.data(), payload.size());
    PayloadLayout lay;
    try {
      decode_nq_payload(dir, rec, payload, codebooks, &lay, false, nullptr);
    } catch (const Error&) {
      if (ti.crc_ok) throw;  // a payload with a good checksum and a bad structure is a broken writer or a forgery
    }
    ti.max_k = rec.quantized ? lay.max_k : 0;
    ti.rans = lay.rans;
    ti.shared_table = ti.shared_table && !lay.rans;
    ti.index_bits = lay.index_bits;
    ti.table_bits = lay.table_bits;
    ti.codebook_bits = lay.codebook_bits;
    ti.position_bits = lay.position_bits;
    ti.gap_width = lay.gap_width;
    ti.record_bytes = rec.record_bytes;
    const double bytes = static_cast<double>(rec.payload_length + rec.record_bytes);  // as account_coding counts
    ti.bits_per_weight = rec.numel ? 8.0 * bytes / static_cast<double>(rec.numel) : 0;
    ti.ratio_file = bytes > 0 ? 4.0 * static_cast<double>(rec.numel) / bytes : 0;
    info.params += ti.params;
    info.tensors.push_back(std::move(ti));
  }
  info.file_crc_ok = crc == stored_crc;
  info.bits_per_weight = info.params ? 8.0 * static_cast<double>(info.file_size) / static_cast<double>(info.params) : 0;
  info.ratio_file = 4.0 * static_cast<double>(info.params) / static_cast<double>(info.file_size);
  return info;
}

void decompress_nq_file(const std::string& nq_path, const std::string& out_path, std::optional<DType> dtype,
                        DecompressLayout layout) {
  using namespace coding;
  check_output_not_input(out_path, {nq_path});
  // What is written, whatever the name says: refuse a misleading one (and a bare ".safetensors").
  const bool named_safetensors =
      out_path.size() > std::strlen(".safetensors") && has_extension(out_path, ".safetensors");
  NQ_CHECK(named_safetensors, ErrorCode::kInvalidArgument,
           out_path << ": decompress writes safetensors; name the output *.safetensors");
  if (dtype) NQ_CHECK(dtype_is_float(*dtype), ErrorCode::kInvalidArgument, "--dtype must be a float dtype");
  const bool codes = layout == DecompressLayout::kCodes;
  const auto src = open_nq_file_source(nq_path);
  const NqDirectory dir = read_nq_directory(*src);
  const uint32_t stored_crc = read_nq_trailer(*src, dir);

  // The safetensors header first, from the directory (and, for codes, each payload's codebooks: the table's width).
  auto out_dtype = [&](const NqRecord& rec) {
    if (!dtype || !dtype_is_float(rec.dtype)) return rec.dtype;
    return *dtype;
  };
  std::vector<CodesShape> code_shapes(dir.records.size());
  std::map<std::string, std::string> metadata;
  std::vector<std::pair<std::string, std::string>> outputs;  // (output, its tensor)
  if (!codes) {
    for (const auto& rec : dir.records) outputs.emplace_back(rec.name, rec.name);
    check_output_names(nq_path, outputs);
    // As `quantize -o OUT.safetensors` records it (finetune reads it back); the input's own __metadata__ is not
    // in a .nq file.
    metadata["netquant.quantize.method"] = method_traits(dir.method).name;
  } else {
    add_layout_metadata(metadata, dir.method, dir.scope);
    std::vector<std::vector<float>> unused;
    for (size_t i = 0; i < dir.records.size(); ++i) {
      const NqRecord& rec = dir.records[i];
      if (!rec.quantized) {
        outputs.emplace_back(rec.name, rec.name);
        continue;
      }
      PayloadLayout lay;
      decode_nq_payload(dir, rec, read_nq_payload(*src, dir, rec), unused, &lay, false, nullptr);
      const bool global = dir.scope.kind == ScopeKind::kGlobal;
      const auto levels = static_cast<int64_t>(global ? dir.global_codebook.size() : lay.codebook_bits / 32);
      code_shapes[i] = codes_shape(dir.source + ": tensor '" + rec.name + "'", static_cast<int64_t>(rec.numel),
                                   static_cast<int64_t>(rec.problem_size), static_cast<int64_t>(rec.num_problems),
                                   lay.max_k, levels, rec.pruned > 0);
      add_tensor_metadata(metadata, rec.name, static_cast<int64_t>(rec.problem_size), code_shapes[i]);
      outputs.emplace_back(codes_name(rec.name), rec.name);
      outputs.emplace_back(codebook_name(rec.name), rec.name);
    }
    check_output_names(nq_path, outputs);
  }
  std::vector<SafetensorsLayout> entries;
  uint64_t offset = 0;  // the data's size, checked against what is written
  auto add_entry = [&](const std::string& name, DType d, const std::vector<int64_t>& shape) {
    entries.push_back({name, d, shape});
    offset += static_cast<uint64_t>(shape_numel(shape)) * dtype_size(d);
  };
  for (size_t i = 0; i < dir.records.size(); ++i) {
    const NqRecord& rec = dir.records[i];
    if (codes && rec.quantized) {
      add_entry(codes_name(rec.name), code_shapes[i].codes_dtype, rec.shape);
      add_entry(codebook_name(rec.name), out_dtype(rec), {code_shapes[i].problems, code_shapes[i].columns});
    } else {
      add_entry(rec.name, out_dtype(rec), rec.shape);
    }
  }
  const std::string text = safetensors_header(entries, metadata);  // write_safetensors' header, byte for byte
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));

  AtomicFile out(out_path);
  out.write(len, 8);
  out.write(text);
  // Tensors are read, checked, decoded and dequantized on the threads in batches of about 64 M weights, then written
  // in order. A payload is used only once its own CRC matches the directory's, so the file's CRC is the directory
  // prefix's combined with those (zlib's crc32_combine).
  uint32_t crc = dir.prefix_crc;
  uint64_t written = 0;
  for_each_in_ordered_batches<std::vector<Tensor>>(
      dir.records.size(), uint64_t{1} << 26, [&](size_t i) { return dir.records[i].numel; },
      [&](size_t i) {
        const NqRecord& rec = dir.records[i];
        std::vector<std::vector<float>> codebooks;
        if (dir.scope.kind == ScopeKind::kGlobal) codebooks.push_back(dir.global_codebook);
        QuantizedTensor t = decode_nq_payload(dir, rec, read_nq_payload(*src, dir, rec), codebooks, nullptr, true,
                                              nullptr);
        std::vector<Tensor> made;
        if (codes && rec.quantized) {
          // Each row of the table ascending, as read_nq_file gives the codebooks (the file may store them by use).
          if (dir.scope.kind != ScopeKind::kGlobal && t.num_problems > 1) restore_ascending_levels(t, codebooks);
          made.push_back(tensor_codes(t, code_shapes[i]));
          made.push_back(tensor_codebook(t, codebooks, code_shapes[i], out_dtype(rec)));
        } else {
          made.push_back(dequantize_tensor(t, codebooks, out_dtype(rec)));
        }
        return made;
      },
      [&](size_t i, const std::vector<Tensor>& made) {
        const NqRecord& rec = dir.records[i];
        crc = static_cast<uint32_t>(crc32_combine64(crc, rec.payload_crc, static_cast<z_off64_t>(rec.payload_length)));
        for (const Tensor& t : made) {
          out.write(t.data(), t.nbytes());
          written += t.nbytes();
        }
      });
  NQ_ASSERT(written == offset);
  NQ_CHECK(!kEnforceCrc || crc == stored_crc, ErrorCode::kBadFile, nq_path << ": file checksum mismatch (corrupt file)");
  out.commit();
}

}  // namespace nq
