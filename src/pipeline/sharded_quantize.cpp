// Sharded global quantization over MPI ranks (one rank works too): each rank reads a contiguous run of fixed
// blocks of the quantized weights by byte range, and every pass of Lloyd / ECSQ reduces its per-block
// statistics in block order across the ranks, so the result does not depend on the number of ranks.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>

#include "netquant/distributed.h"
#include "netquant/error.h"
#include "netquant/io.h"
#include "netquant/progress.h"
#include "pipeline/collectives.h"
#include "quant/model_stats.h"
#include "quant/model_values.h"
#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"
#include "quant/quantizers.h"
#include "quant/tensor_selector.h"

namespace nq {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// A fixed block of one quantized tensor: the unit of ownership and of every ordered sum. Blocks never span
// tensors, and their size depends only on the total weight count, so they are the same for any rank count.
struct Block {
  size_t tensor;         // ordinal among the quantized tensors
  int64_t begin, end;    // flat element range in that tensor
  uint64_t position;     // global position of `begin` in the concatenated quantized weights
};

// The `kth` smallest (1-based) of every rank's keys, exactly: four rounds of 16-bit digit histograms summed over
// the ranks pin it down.
uint64_t select_kth_smallest(const std::vector<uint64_t>& keys, int64_t kth) {
  uint64_t prefix = 0;
  for (int shift = 48; shift >= 0; shift -= 16) {
    const uint64_t high = shift == 48 ? 0 : ~uint64_t{0} << (shift + 16);
    std::vector<int64_t> hist(size_t{1} << 16, 0);
    for (const uint64_t u : keys)
      if ((u & high) == prefix) ++hist[(u >> shift) & 0xffff];
    dist::sum_in_place(hist);
    int64_t below = 0;
    size_t d = 0;
    while (d + 1 < hist.size() && below + hist[d] < kth) below += hist[d++];
    kth -= below;
    prefix |= static_cast<uint64_t>(d) << shift;
  }
  return prefix;
}

struct TensorInfo {
  const SafetensorsEntry* entry;
  const SafetensorsEntry* importance;  // null when the importance is not read
  int64_t numel;
};

// What one rank holds after loading: its blocks' weights (raw, in order), importances and pruning mask.
struct Shard {
  std::vector<Block> blocks;
  std::vector<float> w, h;          // raw elements of the owned blocks, concatenated in block order
  std::vector<uint8_t> pruned;
  std::vector<size_t> raw_end;      // per owned block: end of its raw elements in w
  std::vector<float> kept_w, kept_h;
  std::vector<size_t> kept_end;     // per owned block: end of its kept elements in kept_w (the op's segments)
};

void check_params(const ModelQuantizeParams& params) {
  const QuantizeParams& q = params.quant;
  const MethodTraits& traits = method_traits(q.method);
  NQ_CHECK(params.scope.kind == ScopeKind::kGlobal, ErrorCode::kUnsupported,
           "sharded quantization shares one codebook over the model (--scope global), got --scope "
               << scope_to_string(params.scope));
  NQ_CHECK(q.method == Method::kKmeans || q.method == Method::kHwKmeans || q.method == Method::kEcsq,
           ErrorCode::kUnsupported, "sharded quantization supports kmeans, hw-kmeans and ecsq, not " << traits.name);
  NQ_CHECK(q.init == Init::kLinear, ErrorCode::kUnsupported,
           "sharded quantization starts from --init linear (" << init_name(q.init)
                                                               << " needs the sorted weights on one rank)");
}

// Reads this rank's blocks (each from the file its entry names), validates them and applies the importance
// transform (as quantize_model does); the importance is read when `weighted`.
void load_shard(bool weighted, const std::vector<TensorInfo>& tensors, const ModelQuantizeParams& params,
                Shard& s) {
  size_t b = 0;
  while (b < s.blocks.size()) {
    // The owned blocks of one tensor are contiguous: read them with one ranged read.
    size_t e = b;
    while (e < s.blocks.size() && s.blocks[e].tensor == s.blocks[b].tensor) ++e;
    const TensorInfo& t = tensors[s.blocks[b].tensor];
    const int64_t first = s.blocks[b].begin, count = s.blocks[e - 1].end - first;
    const std::vector<float> w = read_safetensors_range(*t.entry, first, count).to_f32();
    for (size_t i = 0; i < w.size(); ++i)
      NQ_CHECK(std::isfinite(w[i]), ErrorCode::kInvalidArgument,
               t.entry->file << ": tensor '" << t.entry->name << "': weight " << first + static_cast<int64_t>(i)
                             << " is not finite (" << w[i] << ")");
    s.w.insert(s.w.end(), w.begin(), w.end());
    if (weighted) {
      std::vector<float> h = read_safetensors_range(*t.importance, first, count).to_f32();
      for (size_t i = 0; i < h.size(); ++i) {
        NQ_CHECK(std::isfinite(h[i]) && h[i] >= 0, ErrorCode::kInvalidArgument,
                 t.importance->file << ": importance of tensor '" << t.entry->name << "': value "
                                    << first + static_cast<int64_t>(i) << " is " << h[i]
                                    << " (must be finite and >= 0)");
        if (params.importance_transform == ImportanceTransform::kSqrt) h[i] = std::sqrt(h[i]);
      }
      s.h.insert(s.h.end(), h.begin(), h.end());
    }
    for (size_t k = b; k < e; ++k)
      s.raw_end.push_back(s.w.size() - static_cast<size_t>(s.blocks[e - 1].end - s.blocks[k].end));
    b = e;
  }
  if (weighted && params.importance_transform == ImportanceTransform::kNormalize) {
    // Mean 1 per tensor: the tensor's Σh in element order per block, the blocks folded in order across the
    // ranks (each rank sums its blocks before the chain reaches it).
    std::vector<double> block_sums(s.blocks.size(), 0.0);
    for (size_t k = 0, i = 0; k < s.blocks.size(); ++k)
      for (; i < s.raw_end[k]; ++i) block_sums[k] += s.h[i];
    const std::vector<double> sums = dist::ordered_fold(tensors.size(), [&](std::vector<double>& total) {
      for (size_t k = 0; k < s.blocks.size(); ++k) total[s.blocks[k].tensor] += block_sums[k];
    });
    size_t i = 0;
    for (size_t k = 0; k < s.blocks.size(); ++k) {
      const size_t t = s.blocks[k].tensor;
      const double scale = quant::normalize_scale(tensors[t].numel, sums[t]);
      for (; i < s.raw_end[k]; ++i) s.h[i] = quant::normalize_importance(s.h[i], scale);
    }
  }
}

// Model-wide pruning exactly as quantize_model: the `to_prune` smallest scores (quant::prune_score: h·w², w²
// without importance, and |w| where that is 0), ties in flat order. The scores are non-negative doubles, compared
// by their bits as the other cuts do (some are subnormal: no flush-to-zero mode can merge them then).
void prune_shard(int64_t to_prune, Shard& s) {
  s.pruned.assign(s.w.size(), 0);
  if (to_prune <= 0) return;
  std::vector<uint64_t> score(s.w.size());
  for (size_t i = 0; i < s.w.size(); ++i) {
    const double v = quant::prune_score(s.w[i], s.h.empty() ? 1.0 : static_cast<double>(s.h[i]));
    std::memcpy(&score[i], &v, sizeof v);
  }
  const uint64_t thr = select_kth_smallest(score, to_prune);
  int64_t below = 0, ties = 0;
  for (const uint64_t v : score) {
    below += v < thr;
    ties += v == thr;
  }
  const int64_t ties_to_prune = to_prune - dist::sum(below);
  int64_t tie = dist::exclusive_prefix_sum(ties);  // ties on lower ranks come first in flat order
  for (size_t i = 0; i < score.size(); ++i) {
    if (score[i] < thr) s.pruned[i] = 1;
    if (score[i] == thr) s.pruned[i] = tie++ < ties_to_prune;
  }
}

// Lloyd iterations on the sorted blocks: every owned block is sorted once (with fp64 prefix sums), then an
// iteration costs k binary searches per block — the in-process sorted driver's scheme, per fixed block so that
// the block statistics, folded in block order across the ranks, do not depend on the rank count. Assignment:
// the nearest centre (closer_to_upper, ties to the lower one), as lloyd_sorted; update: h-weighted means (plain
// means where a cluster's Σh is 0), empty clusters dropped; stops when no block's boundaries move or the
// objective (distortion at the assigning centres) falls by less than tol (relative). With q.backend CUDA the
// blocks are sorted and summed on the device (blocks under 16384 values on the host, as everywhere); the iterations
// read the host copies either way.
quant::RawResult sorted_blocks_lloyd(const Shard& s, const std::vector<double>& init, int64_t n_total,
                                     const QuantizeParams& q, const std::function<void()>& on_iteration,
                                     double& compute_seconds, double& communication_seconds) {
  const bool weighted = !s.kept_h.empty();
  auto t0 = Clock::now();
  std::vector<quant::SortedData> sorted;
  sorted.reserve(s.kept_end.size());
  for (size_t b = 0, begin = 0; b < s.kept_end.size(); begin = s.kept_end[b++]) {
    quant::Problem p;
    p.w = s.kept_w.data() + begin;
    p.h = weighted ? s.kept_h.data() + begin : nullptr;
    p.n = s.kept_end[b] - begin;
    p.backend = quant::problem_backend(q.backend, p.n);
    sorted.emplace_back(p, quant::SortedData::kBlock);  // every block stays alive: 24 B per 64 values, not per value
  }
  compute_seconds += seconds_since(t0);
  quant::RawResult out;
  out.converged = false;
  std::vector<double> c = init;
  std::vector<std::vector<size_t>> bounds(sorted.size()), prev(sorted.size());
  std::vector<std::vector<double>> part(sorted.size());  // per block, reused across iterations
  double prev_obj = quant::infinity();
  for (int it = 1; it <= std::max(1, q.max_iter); ++it) {
    t0 = Clock::now();
    const size_t k = c.size();
    // Per block: the clusters' index ranges, then Σh, Σh·w, Σw (only where Σh = 0: the plain-mean fallback),
    // Σh (w − c_j)² and counts. 4k doubles per block, folded in block order.
    for (auto& pb : part) pb.assign(4 * k, 0.0);
    std::vector<int64_t> counts(k, 0);
    int64_t moved = 0;
    for (size_t b = 0; b < sorted.size(); ++b) {
      const quant::SortedData& sd = sorted[b];
      std::vector<size_t>& bd = bounds[b];
      bd.assign(k + 1, 0);
      bd[k] = sd.size();
      for (size_t j = 1; j < k; ++j) bd[j] = std::max(bd[j - 1], sd.boundary(c[j - 1], c[j]));
      moved += bd != prev[b];
      const double shift = sd.shift();
      for (size_t j = 0; j < k; ++j) {
        const size_t a = bd[j], e = bd[j + 1];
        if (a == e) continue;
        counts[j] += static_cast<int64_t>(e - a);
        const quant::SortedData::Sums r = sd.range(a, e);
        const double d = c[j] - shift;  // Σ h (x − d)² with x = w − shift
        part[b][j] = r.s0;
        part[b][k + j] = r.s1 + shift * r.s0;
        if (!(r.s0 > 0))
          for (size_t i = a; i < e; ++i) part[b][2 * k + j] += sd.w()[i];
        part[b][3 * k + j] = std::max(0.0, r.s2 - 2.0 * d * r.s1 + d * d * r.s0);
      }
    }
    compute_seconds += seconds_since(t0);
    t0 = Clock::now();
    const std::vector<double> total = dist::ordered_fold(part, 4 * k);
    counts.push_back(moved);  // one exact reduction for both
    dist::sum_in_place(counts);
    moved = counts.back();
    counts.pop_back();
    communication_seconds += seconds_since(t0);
    if (moved == 0) {  // no block's assignment changed: a fixed point
      out.converged = true;
      break;
    }
    prev.swap(bounds);
    double dist_sum = 0;
    std::vector<double> next;
    std::vector<int64_t> live_counts;
    for (size_t j = 0; j < k; ++j) {
      dist_sum += total[3 * k + j];
      if (counts[j] == 0) continue;
      next.push_back(total[j] > 0 ? total[k + j] / total[j] : total[2 * k + j] / static_cast<double>(counts[j]));
      live_counts.push_back(counts[j]);
    }
    const double obj = dist_sum / static_cast<double>(n_total);
    const int live = static_cast<int>(live_counts.size());
    out.history.push_back({it, obj, obj, quant::histogram_entropy(live_counts.data(), live), live});
    out.iterations = it;
    on_iteration();
    // A dropped cluster changes k, so boundaries are compared only while the count stays.
    if (next.size() != k) for (auto& pb : prev) pb.clear();
    // Means of interval clusters are ascending; rounding can still make two equal: merge them.
    std::sort(next.begin(), next.end());
    next.erase(std::unique(next.begin(), next.end()), next.end());
    c.swap(next);
    if (prev_obj < quant::infinity() && (prev_obj - obj) <= q.tol * prev_obj) {
      out.converged = true;
      break;
    }
    prev_obj = obj;
  }
  out.centers = c;
  return out;
}

// The whole job; quantize_model_sharded runs it so that a failure on any rank ends every rank.
QuantizedModel run_sharded(const std::string& model_path, const std::string& importance_path,
                           const ModelQuantizeParams& params, ShardedQuantizeInfo* info) {
  const auto t_start = Clock::now();
  check_params(params);  // what the sharded driver cannot run (exit 3) first
  quant::check_model_params(params, !importance_path.empty());
  const ProcessGroup& group = process_group();
  ShardedQuantizeInfo stats;
  stats.ranks = group.size;
  QuantizeParams qp = params.quant;
  // Each rank's GPU when every rank has one (auto) or when asked (cuda): ECSQ's passes run there over the blocks
  // held on the device, k-means sorts its blocks there (and makes their prefix sums and the final labels). All
  // ranks must agree: the per-block sums of the two backends differ in the last bits.
  qp.backend = Backend::kCpu;
  if (params.quant.backend != Backend::kCpu) {
    const bool here = resolve_backend(params.quant.backend) == Backend::kCuda;
    if (dist::min(here ? 1.0 : 0.0) > 0) qp.backend = Backend::kCuda;
  }
  // The clustering uses the importance when the method does; pruning ranks by h·w² and hw_distortion weighs the
  // errors by it whenever it is given (as quantize_model), so it is read whenever it is given.
  const bool read_importance = !importance_path.empty();
  const bool weighted = read_importance && method_traits(qp.method).uses_importance;

  // ---- the layout: quantized tensors, fixed blocks, this rank's run of blocks ----
  const std::vector<SafetensorsEntry> entries = read_safetensors_entries(model_path);
  std::vector<SafetensorsEntry> imp_entries;
  if (read_importance) imp_entries = read_safetensors_entries(importance_path);
  std::vector<TensorInfo> tensors;
  std::vector<int> ordinal(entries.size(), -1);  // entry -> quantized ordinal
  const quant::TensorSelector select(params);  // quantize_model's rule, name filters included
  size_t eligible = 0;
  for (size_t e = 0; e < entries.size(); ++e) {
    const SafetensorsEntry& t = entries[e];
    const int64_t numel = shape_numel(t.shape);
    eligible += select.eligible(t.dtype, t.shape);
    if (!select.quantizes(t.name, t.dtype, t.shape)) continue;
    const SafetensorsEntry* imp = nullptr;
    if (read_importance) {
      for (const auto& c : imp_entries)
        if (c.name == t.name) imp = &c;
      quant::check_importance_layout(t.name, t.shape, imp ? &imp->shape : nullptr, imp ? imp->dtype : DType::kF32,
                                     "--importance " + importance_path);
    }
    ordinal[e] = static_cast<int>(tensors.size());
    tensors.push_back({&t, imp, numel});
  }
  select.check_selection(tensors.size(), eligible);
  uint64_t total_n = 0;
  for (const auto& t : tensors) total_n += static_cast<uint64_t>(t.numel);
  const uint64_t block = quant::accum_block_size(total_n);
  // Rank r owns the blocks that start in [total·r/P, total·(r+1)/P).
  auto bound = [&](int r) {
    return static_cast<uint64_t>(static_cast<unsigned __int128>(total_n) * static_cast<unsigned>(r) /
                                 static_cast<unsigned>(group.size));
  };
  const uint64_t own_lo = bound(group.rank), own_hi = bound(group.rank + 1);
  Shard shard;
  uint64_t position = 0;
  for (size_t t = 0; t < tensors.size(); ++t) {
    for (int64_t b = 0; b < tensors[t].numel; b += static_cast<int64_t>(block)) {
      const uint64_t at = position + static_cast<uint64_t>(b);
      if (at >= own_lo && at < own_hi)
        shard.blocks.push_back({t, b, std::min(tensors[t].numel, b + static_cast<int64_t>(block)), at});
    }
    position += static_cast<uint64_t>(tensors[t].numel);
  }

  // ---- load, prune, compact ----
  load_shard(read_importance, tensors, params, shard);
  stats.local_weights = static_cast<int64_t>(shard.w.size());
  prune_shard(static_cast<int64_t>(std::floor(params.prune * static_cast<double>(total_n))), shard);
  {
    size_t i = 0;
    for (size_t k = 0; k < shard.blocks.size(); ++k) {
      for (; i < shard.raw_end[k]; ++i) {
        if (shard.pruned[i]) continue;
        shard.kept_w.push_back(shard.w[i]);
        if (weighted) shard.kept_h.push_back(shard.h[i]);
      }
      shard.kept_end.push_back(shard.kept_w.size());
    }
  }
  const size_t n_local = shard.kept_w.size();
  const int64_t n_kept = dist::sum(static_cast<int64_t>(n_local));
  stats.load_seconds = seconds_since(t_start);

  // ---- the pass: the local op over this rank's blocks, then the blocks folded in order over the ranks ----
  const float* hk = weighted ? shard.kept_h.data() : nullptr;
  std::vector<quant::AssignAccum> parts;
  // On CUDA the blocks are op (f)'s rows, resident on the device; each pass runs every block under one shared
  // codebook (its table built and uploaded once). A block's sums are op (a)'s on that block alone, so they do not
  // depend on the split either.
  std::unique_ptr<quant::ResidentRows> device_blocks;
  std::vector<int64_t> block_rows;
  auto local_pass = [&](const double* centers, const double* code_len, int k, double lambda, int32_t* labels) {
    if (!device_blocks) {
      cpu::assign_accumulate_segments(shard.kept_w.data(), hk, shard.kept_end.data(), shard.kept_end.size(), centers,
                                      code_len, k, lambda, labels, parts);
      return;
    }
    device_blocks->assign_accumulate_shared(block_rows.data(), block_rows.size(), centers, code_len, k, lambda,
                                            labels, parts);
  };
  if (qp.method == Method::kEcsq && qp.backend == Backend::kCuda) {  // k-means needs only per-block device memory
    std::vector<int64_t> begin{0};
    for (const size_t e : shard.kept_end) begin.push_back(static_cast<int64_t>(e));
    for (size_t b = 0; b < shard.kept_end.size(); ++b) block_rows.push_back(static_cast<int64_t>(b));
    bool fits = true;
    try {
      device_blocks = quant::ops_make_resident_rows(Backend::kCuda, shard.kept_w.data(), hk, begin.data(),
                                                    static_cast<int64_t>(shard.kept_end.size()), nullptr);
      // One labelled pass with k centres takes the passes' device memory too (labels, the workspace of the
      // largest codebook), so that running out shows here and not in the middle of the search.
      const std::vector<double> c = quant::linear_centers(-1.0, 1.0, qp.k);
      const std::vector<double> l(c.size(), 1.0);
      std::vector<int32_t> scratch(n_local);
      local_pass(c.data(), l.data(), static_cast<int>(c.size()), 0.0, scratch.data());
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kOutOfMemory) throw;
      fits = false;
    }
    // Every rank learns whether all shards fit their GPUs: with auto they all fall back to the host together.
    if (dist::min(fits ? 1.0 : 0.0) == 0.0) {
      NQ_CHECK(params.quant.backend != Backend::kCuda, ErrorCode::kOutOfMemory,
               "sharded ecsq: a rank's blocks do not fit its GPU's memory (this rank: "
                   << n_local << " weights); use more ranks or --backend cpu");
      device_blocks.reset();
      qp.backend = Backend::kCpu;
    }
  }
  std::optional<Progress> progress;  // rank 0 draws it
  if (group.is_root()) progress.emplace("quantize (sharded)", qp.max_iter);
  auto fold_pass = [&](const double* centers, const double* code_len, int k, double lambda, int32_t* labels,
                       quant::AssignAccum& out) {
    auto t0 = Clock::now();
    local_pass(centers, code_len, k, lambda, labels);
    stats.compute_seconds += seconds_since(t0);
    t0 = Clock::now();
    const size_t ku = static_cast<size_t>(k);
    const std::vector<double> total = dist::ordered_fold(3 * ku + 3, [&](std::vector<double>& run) {
      for (const quant::AssignAccum& a : parts) {
        for (size_t j = 0; j < ku; ++j) {
          run[j] += a.sum_h[j];
          run[ku + j] += a.sum_hw[j];
          run[2 * ku + j] += a.sum_w[j];
        }
        run[3 * ku] += a.distortion;
        run[3 * ku + 1] += a.sq_error;
        run[3 * ku + 2] += a.cost;
      }
    });
    out.reset(k);
    for (const quant::AssignAccum& a : parts)
      for (size_t j = 0; j < ku; ++j) out.count[j] += a.count[j];
    dist::sum_in_place(out.count);
    for (size_t j = 0; j < ku; ++j) {
      out.sum_h[j] = total[j];
      out.sum_hw[j] = total[ku + j];
      out.sum_w[j] = total[2 * ku + j];
    }
    out.distortion = total[3 * ku];
    out.sq_error = total[3 * ku + 1];
    out.cost = total[3 * ku + 2];
    stats.communication_seconds += seconds_since(t0);
    ++stats.passes;
    if (progress) progress->update(std::min(stats.passes, qp.max_iter), "pass " + std::to_string(stats.passes));
  };
  std::vector<int32_t> pass_labels;  // this rank's labels of the latest pass (CPU)
  quant::CodebookBatch latest_pass;  // the codebook of the latest pass (CUDA: its labels are made on request)
  quant::AssignPass pass;
  if (!device_blocks) {
    pass.run = [&](const double* centers, const double* code_len, int k, double lambda, quant::AssignAccum& out) {
      pass_labels.resize(n_local);
      fold_pass(centers, code_len, k, lambda, pass_labels.data(), out);
    };
    pass.take_labels = [&] { return std::move(pass_labels); };
  } else {
    // Labels stay on the device until asked for; then one local pass over the latest codebook writes them (the
    // assignment is deterministic, so they are that pass's labels).
    pass.run = [&](const double* centers, const double* code_len, int k, double lambda, quant::AssignAccum& out) {
      fold_pass(centers, code_len, k, lambda, nullptr, out);
      latest_pass.clear();
      latest_pass.add(centers, code_len, k, lambda);
    };
    pass.take_labels = [&] {
      std::vector<int32_t> labels(n_local);
      NQ_ASSERT(latest_pass.size() == 1);
      local_pass(latest_pass.centers.data(), latest_pass.code_len.data(), latest_pass.k(0), latest_pass.lambda[0],
                 labels.data());
      return labels;
    };
  }

  // ---- the method ----
  quant::RawResult raw;
  std::vector<float> codebook;
  std::vector<int32_t> remap;
  std::vector<int64_t> level_counts;
  if (n_kept > 0) {
    // The span of --init linear over every rank's values (quant::linear_span's rule).
    quant::ValueRange range = quant::value_range(shard.kept_w.data(), hk, n_local);
    range.lo = dist::min(range.lo);
    range.hi = dist::max(range.hi);
    range.wlo = dist::min(range.wlo);
    range.whi = dist::max(range.whi);
    double lo = 0, hi = 0;
    range.span(lo, hi);
    std::vector<double> init = quant::linear_centers(lo, hi, qp.k);
    std::sort(init.begin(), init.end());
    init.erase(std::unique(init.begin(), init.end()), init.end());
    if (qp.method == Method::kEcsq) {
      // ECSQ starts where the in-process driver does (quant::ecsq_init): at the HW k-means centres of the linear
      // start, here by Lloyd on the sorted blocks. Those iterations are not passes over the data: uncounted.
      init = sorted_blocks_lloyd(shard, init, n_kept, quant::ecsq_start_params(qp, static_cast<size_t>(n_kept)), [] {}, stats.compute_seconds,
                                 stats.communication_seconds)
                 .centers;
      // D0 = the weighted variance: one pass for the weighted mean, one for the scatter around it.
      const double zero = 0.0;
      quant::AssignAccum a;
      fold_pass(&zero, &zero, 1, 0.0, nullptr, a);
      const double mean = a.sum_h[0] > 0 ? a.sum_hw[0] / a.sum_h[0] : a.sum_w[0] / static_cast<double>(a.count[0]);
      fold_pass(&mean, &zero, 1, 0.0, nullptr, a);
      raw = quant::ecsq_search(pass, static_cast<size_t>(n_kept), n_local, init, a.distortion / n_kept, qp);
    } else {
      // Lloyd on the sorted blocks, then nearest-level labels over the final centres (one streaming pass), as
      // the in-process sorted k-means driver hands back.
      raw = sorted_blocks_lloyd(
          shard, init, n_kept, qp,
          [&] {
            ++stats.passes;
            if (progress)
              progress->update(std::min(stats.passes, qp.max_iter), "iteration " + std::to_string(stats.passes));
          },
          stats.compute_seconds, stats.communication_seconds);
      const auto t0 = Clock::now();
      quant::Problem local;
      local.w = shard.kept_w.data();
      local.n = n_local;
      local.backend = quant::problem_backend(qp.backend, n_local);
      try {
        raw.labels = quant::nearest_labels(local, raw.centers);
      } catch (const Error& e) {  // a shard beyond the device's memory: the host's labels (the same rule, exact)
        if (local.backend != Backend::kCuda || e.code() != ErrorCode::kOutOfMemory) throw;
        local.backend = Backend::kCpu;
        raw.labels = quant::nearest_labels(local, raw.centers);
        stats.ranks_labelled_on_host = 1;
      }
      stats.compute_seconds += seconds_since(t0);
      const auto t_sum = Clock::now();
      stats.ranks_labelled_on_host = static_cast<int>(dist::sum(int64_t{stats.ranks_labelled_on_host}));
      stats.communication_seconds += seconds_since(t_sum);
    }
    // As quant::finalize, with the centres' weighted members of every rank. The condition is the same on every rank
    // (a rank holding no weights has no importances either, but must still join the sum).
    if (raw.zero_importance == quant::RawResult::ZeroImportance::kNearestWeighted && weighted) {
      std::vector<int64_t> members(raw.centers.size(), 0);
      quant::count_weighted_members(hk, raw.labels.data(), n_local, static_cast<int>(members.size()), members.data());
      dist::sum_in_place(members);
      quant::relabel_zero_importance(shard.kept_w.data(), hk, n_local, raw.centers, members, raw.labels.data());
    }
    std::vector<int64_t> counts(raw.centers.size(), 0);
    cpu::label_histogram(raw.labels.data(), raw.labels.size(), static_cast<int>(counts.size()), counts.data());
    dist::sum_in_place(counts);
    const quant::LevelMap levels = quant::round_levels(raw.centers, counts);
    codebook = levels.codebook;
    remap = levels.remap;
    level_counts.assign(codebook.size(), 0);
    for (size_t j = 0; j < counts.size(); ++j)
      if (remap[j] >= 0) level_counts[static_cast<size_t>(remap[j])] += counts[j];
  }

  if (progress) progress->finish();

  // ---- indices and error sums, gathered on rank 0 ----
  // Indices travel at the codebook's width (one byte per weight up to 255 levels), the width every rank's and
  // the root's IndexArrays take, so the root receives the model's indices straight into its tensors: 1 byte per
  // weight there, not the 4 of an int32 gather plus a narrowed copy.
  const auto t_final = Clock::now();
  const int32_t max_index = codebook.empty() ? 0 : static_cast<int32_t>(codebook.size()) - 1;
  IndexArray indices(shard.w.size(), max_index);  // max_index picks the width; every entry is written below
  {
    size_t kept = 0;
    for (size_t i = 0; i < shard.w.size(); ++i)
      indices.set(i, shard.pruned[i] ? kPrunedIndex : remap[static_cast<size_t>(raw.labels[kept++])]);
  }
  // Error sums per block (element order), then folded per tensor in block order across the ranks.
  std::vector<double> block_err(2 * shard.blocks.size(), 0.0);
  for (size_t k = 0, i = 0; k < shard.blocks.size(); ++k) {
    double d = 0, m = 0;
    for (; i < shard.raw_end[k]; ++i) {
      const int32_t index = indices[i];
      const float q = index == kPrunedIndex ? 0.0f : codebook[static_cast<size_t>(index)];
      const double e = static_cast<double>(q) - shard.w[i];
      m += e * e;
      d += (read_importance ? static_cast<double>(shard.h[i]) : 1.0) * e * e;
    }
    block_err[2 * k] = d;
    block_err[2 * k + 1] = m;
  }
  // The shard's values, labels and device copy are done with: free them before the root takes the model.
  device_blocks.reset();
  std::vector<int32_t>().swap(raw.labels);
  for (auto* v : {&shard.w, &shard.h, &shard.kept_w, &shard.kept_h}) std::vector<float>().swap(*v);
  std::vector<uint8_t>().swap(shard.pruned);
  stats.compute_seconds += seconds_since(t_final);
  const auto t_reduce = Clock::now();
  const std::vector<double> error_sums = dist::ordered_fold(2 * tensors.size(), [&](std::vector<double>& run) {
    for (size_t k = 0; k < shard.blocks.size(); ++k) {
      run[2 * shard.blocks[k].tensor] += block_err[2 * k];
      run[2 * shard.blocks[k].tensor + 1] += block_err[2 * k + 1];
    }
  });
  // The root's quantized tensors, in flat order: the gathered bytes fill them one after another.
  std::vector<IndexArray> tensor_indices;
  if (group.is_root())
    for (const TensorInfo& t : tensors) tensor_indices.emplace_back(static_cast<size_t>(t.numel), max_index);
  {
    size_t tensor = 0, filled = 0;  // bytes of tensor_indices[tensor] received so far
    auto sink = [&](const uint8_t* piece, size_t len) {
      while (len > 0) {
        NQ_ASSERT(tensor < tensor_indices.size());
        IndexArray& dest = tensor_indices[tensor];
        const size_t take = std::min(len, dest.bytes() - filled);
        dest.visit_mutable([&](auto* data, auto) { std::memcpy(reinterpret_cast<uint8_t*>(data) + filled, piece, take); });
        piece += take;
        len -= take;
        filled += take;
        if (filled == dest.bytes()) ++tensor, filled = 0;
      }
    };
    indices.visit([&](const auto* data, auto) {
      dist::gather_to_root(reinterpret_cast<const uint8_t*>(data), indices.bytes(), sink);
    });
    NQ_ASSERT(tensor == tensor_indices.size() && filled == 0);  // quantized tensors are never empty
  }
  stats.communication_seconds += seconds_since(t_reduce);
  stats.max_compute_seconds = dist::max(stats.compute_seconds);
  if (info) *info = stats;

  QuantizedModel out;
  out.method = qp.method;
  out.scope = params.scope;
  out.backend = qp.backend;
  if (!group.is_root()) return out;

  // ---- rank 0: the whole model ----
  if (!tensors.empty()) out.codebooks.push_back(codebook);
  std::vector<quant::TensorErrorSums> errors;
  for (size_t e = 0; e < entries.size(); ++e) {
    const SafetensorsEntry& entry = entries[e];
    QuantizedTensor qt;
    qt.name = entry.name;
    qt.dtype = entry.dtype;
    qt.shape = entry.shape;
    const int64_t numel = shape_numel(entry.shape);
    if (ordinal[e] < 0) {
      qt.quantized = false;
      auto flat = std::make_shared<Tensor>(read_safetensors_range(entry, 0, numel));
      qt.original = Tensor::view(entry.name, entry.dtype, entry.shape, flat->data(), flat);
      errors.push_back({});
    } else {
      qt.problem_size = numel;
      qt.first_codebook = 0;
      qt.num_problems = 1;
      const size_t o = static_cast<size_t>(ordinal[e]);
      qt.indices = std::move(tensor_indices[o]);
      errors.push_back({error_sums[2 * o], error_sums[2 * o + 1]});
    }
    out.tensors.push_back(std::move(qt));
  }
  std::vector<quant::ProblemSummary> problems;
  if (!tensors.empty()) {
    quant::ProblemSummary p;
    p.iterations = raw.iterations;
    p.converged = raw.converged;
    p.lambda = raw.lambda;
    p.seconds = seconds_since(t_start);
    p.levels = static_cast<int>(codebook.size());
    const int levels = static_cast<int>(codebook.size());
    p.entropy_bits = levels == 0 ? 0.0 : quant::histogram_entropy(level_counts.data(), levels);
    p.kept = n_kept;
    problems.push_back(p);
  }
  quant::fill_model_stats(out, errors, problems, static_cast<int64_t>(total_n));
  out.total.seconds = seconds_since(t_start);
  return out;
}

}  // namespace

QuantizedModel quantize_model_sharded(const std::string& model_path, const std::string& importance_path,
                                      const ModelQuantizeParams& params, ShardedQuantizeInfo* info) {
  QuantizedModel out;
  run_or_abort_job([&] { out = run_sharded(model_path, importance_path, params, info); });
  return out;
}

}  // namespace nq
