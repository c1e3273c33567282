// nq::quantize_model: the model's skeleton and validation, model-wide pruning, then the quantized tensors in waves
// (converted, split into problems by scope — global / tensor / row / group —, run in parallel and deterministically,
// scattered into narrow indices) and the statistics.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <numeric>
#include <string>

#include "core/iteration_errors.h"
#include "core/kept_mask.h"
#include "core/memory_info.h"
#include "core/parallel_for.h"
#include "core/scratch_vector.h"
#include "netquant/error.h"
#include "netquant/progress.h"
#include "netquant/quantize.h"
#include "quant/dequantize.h"
#include "quant/model_stats.h"
#include "quant/model_values.h"
#include "quant/problem_memory.h"
#include "quant/prune_cut.h"
#include "quant/quantizers.h"
#include "quant/shared_lambda_search.h"
#include "quant/tensor_selector.h"

namespace nq {

namespace quant {

void check_importance_layout(const std::string& name, const std::vector<int64_t>& shape,
                             const std::vector<int64_t>* importance_shape, DType importance_dtype,
                             const std::string& source) {
  NQ_CHECK(importance_shape != nullptr, ErrorCode::kShapeMismatch,
           source << " has no tensor '" << name << "' (every quantized tensor needs one)");
  NQ_CHECK(*importance_shape == shape, ErrorCode::kShapeMismatch,
           source << ": tensor '" << name << "' has shape " << shape_to_string(*importance_shape)
                  << ", the weight has " << shape_to_string(shape));
  NQ_CHECK(dtype_is_float(importance_dtype), ErrorCode::kInvalidArgument,
           source << ": tensor '" << name << "' has non-float dtype " << dtype_name(importance_dtype));
}

void check_model_params(const ModelQuantizeParams& params, bool has_importance, bool with_quantizer) {
  NQ_CHECK(params.prune >= 0 && params.prune < 1, ErrorCode::kInvalidArgument,
           "prune fraction must be in [0, 1), got " << params.prune);
  NQ_CHECK(params.scope.kind != ScopeKind::kGroup || (params.scope.group > 0 && params.scope.group < kMaxGroupSize),
           ErrorCode::kInvalidArgument,
           "group scope needs a group size in [1, 2^62), got " << params.scope.group);
  NQ_CHECK(params.batch_weights >= 0, ErrorCode::kInvalidArgument,
           "batch_weights must be >= 0, got " << params.batch_weights);
  NQ_CHECK(has_importance || params.importance_transform == ImportanceTransform::kNone, ErrorCode::kInvalidArgument,
           "an importance transform transforms the importance, and none was given");
  if (with_quantizer) check_quantize_params(params.quant);
}

}  // namespace quant

namespace {

// A stretch of a wave's converted values.
struct Values {
  float* ptr = nullptr;
  size_t n = 0;
  float* data() const { return ptr; }
  size_t size() const { return n; }
  float& operator[](size_t i) const { return ptr[i]; }
};

// A wave's tensor, converted: weights and importance as the problems see them (quant/model_values.h), in the
// wave's buffers back to back, so that a global problem over unpruned tensors is one array and needs no gathered
// copy (8 bytes per weight).
struct Prepared {
  size_t tensor;  // index in QuantizedModel::tensors
  size_t source;  // index in the run's sources
  Values w, h;    // h empty: no importance
};

// One problem: a list of (tensor, flat range) pieces; pruned weights are skipped.
struct Piece { size_t prep; int64_t begin, end; };
struct ProblemSpec { std::vector<Piece> pieces; };

// Consecutive quantized tensors [first, last) (indices into the sources) converted and quantized together.
struct Wave { size_t first, last; };

// Bytes per weight of a wave beyond the model's own indices: its float32 weights and importance, and each λ's
// result indices until they are scattered (sorting and Lloyd scratch are per problem, a row at a time).
constexpr double kWaveBytesPerWeight = 8;
constexpr double kResultBytesPerWeight = 4;

// The weights per wave: the caller's batch_weights, else everything at once when the wave and the models' indices
// fit in half the available memory (or it is unknown), else what does. Global scope is one problem: one wave.
int64_t wave_weights(const ModelQuantizeParams& params, int64_t total_n, size_t sets) {
  if (params.scope.kind == ScopeKind::kGlobal) return total_n;
  if (params.batch_weights > 0) return params.batch_weights;
  const double available = static_cast<double>(available_memory_bytes());
  const double per_weight = kWaveBytesPerWeight + kResultBytesPerWeight * static_cast<double>(sets);
  const double indices = 4.0 * static_cast<double>(sets) * static_cast<double>(total_n);  // at their widest
  if (available == 0 || indices + per_weight * static_cast<double>(total_n) <= available / 2) return total_n;
  return std::max<int64_t>(int64_t{1} << 20, static_cast<int64_t>((available / 2 - indices) / per_weight));
}

// Consecutive tensors up to `budget` weights per wave (a larger tensor is a wave by itself).
std::vector<Wave> plan_waves(const std::vector<quant::ValueSource>& sources, int64_t budget) {
  std::vector<Wave> waves;
  int64_t filled = 0;
  for (size_t s = 0; s < sources.size(); ++s) {
    if (waves.empty() || filled + sources[s].size() > budget) {
      waves.push_back({s, s});
      filled = 0;
    }
    waves.back().last = s + 1;
    filled += sources[s].size();
  }
  return waves;
}

// A set of problem results of one wave into `out` (the model, its pruned weights marked): indices scattered,
// codebooks appended (the wave's problems follow the previous waves' in codebook order), each tensor's error sums
// into `errors` and each problem's summary onto `summaries`. hw_distortion weighs the errors by the importance
// whenever one is given (h_weighted_errors), whether or not the method clustered with it: one metric across
// methods, as a sweep compares them. Consumes the results: each one's indices are released once scattered and its
// codebook moves into the model, so that with many small problems (rows, groups) their copies never coexist.
void scatter_wave(QuantizedModel& out, std::vector<QuantizeResult>& results, const std::vector<Prepared>& prep,
                  const std::vector<ProblemSpec>& problems, bool h_weighted_errors,
                  std::vector<quant::TensorErrorSums>& errors, std::vector<quant::ProblemSummary>& summaries) {
  for (const QuantizeResult& r : results) summaries.push_back(quant::ProblemSummary::of(r));
  // Each tensor's indices as wide as its largest codebook needs (before the parallel scatter: widening copies).
  for (size_t j = 0; j < problems.size(); ++j) {
    const int32_t top = std::max<int32_t>(0, static_cast<int32_t>(results[j].codebook.size()) - 1);
    for (const Piece& pc : problems[j].pieces) out.tensors[prep[pc.prep].tensor].indices.hold_index(top);
  }
#pragma omp parallel for schedule(static) if (problems.size() > 1)
  for (int64_t jj = 0; jj < static_cast<int64_t>(problems.size()); ++jj) {  // problems cover disjoint ranges
    const size_t j = static_cast<size_t>(jj);
    QuantizeResult& r = results[j];
    size_t pos = 0;
    for (const Piece& pc : problems[j].pieces) {
      auto& idx = out.tensors[prep[pc.prep].tensor].indices;
      for (int64_t i = pc.begin; i < pc.end; ++i)
        if (idx[i] != kPrunedIndex) idx.set(static_cast<size_t>(i), r.indices[pos++]);
    }
    std::vector<int32_t>().swap(r.indices);
  }
  out.codebooks.reserve(out.codebooks.size() + results.size());
  for (QuantizeResult& r : results) out.codebooks.push_back(std::move(r.codebook));
  // Error sums per tensor: fixed chunks summed in parallel, then added in chunk order (thread-count independent).
  constexpr int64_t kChunk = 1 << 16;
  for (const auto& p : prep) {
    const QuantizedTensor& qt = out.tensors[p.tensor];
    const int64_t n = static_cast<int64_t>(p.w.size());
    const int64_t nchunks = (n + kChunk - 1) / kChunk;
    std::vector<double> pd(static_cast<size_t>(nchunks)), pm(static_cast<size_t>(nchunks));
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (int64_t c = 0; c < nchunks; ++c) {
      const int64_t i1 = std::min(n, (c + 1) * kChunk);
      double d = 0, m = 0;
      for (int64_t i = c * kChunk; i < i1;) {
        // One problem's stretch at a time: its codebook is fixed, no division per element.
        const int64_t problem = i / qt.problem_size;
        const int64_t end = std::min(i1, (problem + 1) * qt.problem_size);
        const std::vector<float>& cb = out.codebooks[static_cast<size_t>(qt.first_codebook + problem)];
        for (; i < end; ++i) {
          const int32_t idx = qt.indices[static_cast<size_t>(i)];
          const double e = static_cast<double>(idx == kPrunedIndex ? 0.0f : cb[static_cast<size_t>(idx)]) - p.w[i];
          m += e * e;
          d += (h_weighted_errors ? static_cast<double>(p.h[i]) : 1.0) * e * e;
        }
      }
      pd[static_cast<size_t>(c)] = d;
      pm[static_cast<size_t>(c)] = m;
    }
    double d = 0, m = 0;
    for (int64_t c = 0; c < nchunks; ++c) {
      d += pd[static_cast<size_t>(c)];
      m += pm[static_cast<size_t>(c)];
    }
    errors[p.tensor] = {d, m};
  }
}

// quantize_model, or with `lambdas` non-empty ECSQ at each of them (quantize_model_lambdas): one model out per λ.
// The quantized tensors go through in waves (wave_weights): each wave is converted, pruned by the model-wide rule,
// split into problems, solved and scattered before the next is converted. Problems never span waves (only global
// scope spans tensors, and it is one wave), so the result is the same for any wave size.
std::vector<QuantizedModel> quantize_model_impl(const TensorSet& model, const TensorSet* importance,
                                                const ModelQuantizeParams& params, const std::vector<double>& lambdas) {
  const auto t0 = std::chrono::steady_clock::now();  // (its callers check the parameters: check_model_params)
  QuantizedModel out;
  out.method = params.quant.method;
  out.scope = params.scope;
  out.backend = resolve_backend(params.quant.backend);
  QuantizeParams qp = params.quant;
  qp.backend = out.backend;
  const bool weighted = importance != nullptr && method_traits(qp.method).uses_importance;

  // ---- the model's skeleton: which tensors are quantized, their problems and codebooks ----
  const quant::TensorSelector select(params);  // the name patterns compiled once, not per tensor
  const std::vector<char> chosen = select.choose(model);  // before any conversion: an empty selection fails fast
  std::vector<quant::ValueSource> sources;
  std::vector<size_t> source_tensor;  // each source's index in out.tensors
  for (size_t ti = 0; ti < model.size(); ++ti) {
    const Tensor& t = model[ti];
    QuantizedTensor qt;
    qt.name = t.name();
    qt.dtype = t.dtype();
    qt.shape = t.shape();
    qt.stats.params = t.numel();
    if (!chosen[ti]) {
      qt.quantized = false;
      qt.original = t;
      out.tensors.push_back(std::move(qt));
      continue;
    }
    const Tensor* it = nullptr;
    if (importance) {
      it = importance->find(t.name());
      quant::check_importance_layout(t.name(), t.shape(), it ? &it->shape() : nullptr,
                                     it ? it->dtype() : DType::kF32);
    }
    sources.emplace_back(t, it, params.importance_transform);
    source_tensor.push_back(out.tensors.size());
    qt.indices.assign(static_cast<size_t>(t.numel()), 0);
    out.tensors.push_back(std::move(qt));
  }
  int64_t total_n = 0;
  for (const auto& s : sources) total_n += s.size();
  int64_t total_problems = 0;
  for (size_t si = 0; si < sources.size(); ++si) {
    QuantizedTensor& qt = out.tensors[source_tensor[si]];
    const int64_t n = sources[si].size();
    int64_t size = n;
    if (params.scope.kind == ScopeKind::kRow) size = qt.shape.empty() || qt.shape[0] == 0 ? n : n / qt.shape[0];
    if (params.scope.kind == ScopeKind::kGroup) size = std::min<int64_t>(params.scope.group, n);
    size = std::max<int64_t>(size, 1);
    qt.problem_size = params.scope.kind == ScopeKind::kGlobal ? n : size;
    qt.num_problems = params.scope.kind == ScopeKind::kGlobal ? 1 : (n + size - 1) / size;
    qt.first_codebook = params.scope.kind == ScopeKind::kGlobal ? 0 : total_problems;
    if (params.scope.kind != ScopeKind::kGlobal) total_problems += qt.num_problems;
  }
  if (params.scope.kind == ScopeKind::kGlobal) total_problems = 1;
  const size_t nsets = lambdas.empty() ? 1 : lambdas.size();
  if (params.scope.kind != ScopeKind::kGlobal) {
    // Rows or groups of a few values: refuse up front what cannot fit (quant/problem_memory.h).
    quant::ProblemLoad load;
    load.sets = nsets;
    load.scope = scope_to_string(params.scope);
    for (size_t si = 0; si < sources.size(); ++si) {
      const QuantizedTensor& qt = out.tensors[source_tensor[si]];
      load.problems += qt.num_problems;
      load.codebook_bytes +=
          static_cast<double>(qt.num_problems) * quant::extra_codebook_bytes(params.quant.k, qt.problem_size);
      if (qt.num_problems <= load.busiest_problems) continue;
      load.busiest = qt.name;
      load.busiest_problems = qt.num_problems;
      load.busiest_size = qt.problem_size;
    }
    quant::check_problem_memory(load, available_memory_bytes());
  }
  const std::vector<Wave> waves = plan_waves(sources, wave_weights(params, total_n, nsets));

  // ---- pruning: the fraction `prune` of all quantized weights with the smallest h·w² (w² without importance;
  // where it is 0, the smallest |w| first: quant::prune_score) ----
  // The importance ranks the weights whenever it is given, also for a method whose clustering ignores it (kmeans,
  // wentropy): pruning is its own step, so every method given the same importance prunes the same weights. In one
  // wave, op (g) selects over the converted model (on the device for large models quantized there); in several,
  // the same cut is found over the unconverted model, range by range (quant/prune_cut.h).
  const int64_t to_prune = static_cast<int64_t>(std::floor(params.prune * static_cast<double>(total_n)));
  quant::PruneCut cut;
  // Input pages of memory-mapped files are given back once read (core/mapped_pages.h): nothing reads a quantized
  // tensor's input again after its wave's conversion, so the resident set is the run's own memory.
  for (quant::ValueSource& s : sources) s.release_pages_after_reading();
  if (waves.size() > 1) {
    for (const quant::ValueSource& s : sources) s.check_all();  // every tensor's values before any work
    if (to_prune > 0) cut = quant::find_prune_cut(sources, to_prune);
  }

  // One model per λ, sharing the skeleton; every wave fills each.
  std::vector<QuantizedModel> models;
  for (size_t m = 0; m + 1 < nsets; ++m) models.push_back(out);
  models.push_back(std::move(out));
  QuantizedModel& marks = models.back();  // where the problems read which weights are pruned (all models agree)
  std::vector<std::vector<quant::TensorErrorSums>> errors(
      nsets, std::vector<quant::TensorErrorSums>(marks.tensors.size()));
  std::vector<std::vector<quant::ProblemSummary>> summaries(nsets);
  Progress progress("quantize", total_problems);
  int64_t done = 0;

  for (size_t wi = 0; wi < waves.size(); ++wi) {
    const Wave& wave = waves[wi];
    const std::string status =
        waves.size() > 1 ? "wave " + std::to_string(wi + 1) + " of " + std::to_string(waves.size()) : std::string();
    // ---- convert the wave's tensors, back to back ----
    std::vector<Prepared> prep(wave.last - wave.first);
    size_t wave_n = 0;
    for (size_t k = 0; k < prep.size(); ++k) wave_n += static_cast<size_t>(sources[wave.first + k].size());
    ScratchVector<float> wave_w(wave_n), wave_h(importance ? wave_n : 0);
    for (size_t k = 0, at = 0; k < prep.size(); ++k) {
      const quant::ValueSource& src = sources[wave.first + k];
      const size_t n = static_cast<size_t>(src.size());
      prep[k].source = wave.first + k;
      prep[k].tensor = source_tensor[wave.first + k];
      prep[k].w = {wave_w.data() + at, n};
      if (importance) prep[k].h = {wave_h.data() + at, n};
      src.convert_all(prep[k].w.data(), prep[k].h.data());
      at += n;
    }
    if (to_prune > 0) {
      std::vector<std::vector<uint8_t>> masks(prep.size());
      for (size_t k = 0; k < prep.size(); ++k) masks[k].resize(prep[k].w.size());
      if (waves.size() > 1) {
        for (size_t k = 0; k < prep.size(); ++k)
          quant::mark_pruned(cut, prep[k].source, prep[k].w.data(), importance ? prep[k].h.data() : nullptr,
                             static_cast<int64_t>(prep[k].w.size()), masks[k].data());
      } else {  // op (g): on the device for large models quantized there (no N-entry score array on the host)
        quant::PruneArrays arrays;
        for (size_t k = 0; k < prep.size(); ++k) {
          arrays.w.push_back(prep[k].w.data());
          if (importance) arrays.h.push_back(prep[k].h.data());
          arrays.n.push_back(prep[k].w.size());
          arrays.mask.push_back(masks[k].data());
        }
        const Backend where = quant::problem_backend(marks.backend, static_cast<size_t>(total_n));
        try {
          quant::ops_select_pruned(where, arrays, to_prune);
        } catch (const Error& e) {  // a model larger than the device's memory: the host selects (same mask)
          if (where != Backend::kCuda || e.code() != ErrorCode::kOutOfMemory) throw;
          quant::ops_select_pruned(Backend::kCpu, arrays, to_prune);
        }
      }
      for (QuantizedModel& m : models)
        for (size_t k = 0; k < prep.size(); ++k) {
          IndexArray& idx = m.tensors[prep[k].tensor].indices;
          const uint8_t* mask = masks[k].data();
          // At the stored width and branch-free (the mask is data); threads write distinct entries.
          idx.visit_mutable([&](auto* data, auto mark) {
            parallel_for_chunks(static_cast<int64_t>(masks[k].size()), kInlineLoopMax, [&](int64_t i0, int64_t i1) {
              for (int64_t i = i0; i < i1; ++i) data[i] = mask[i] ? mark : data[i];
            });
          });
        }
    }

    // ---- the wave's problems by scope; problem j of the wave is the model's problem first_problem + j ----
    std::vector<ProblemSpec> problems;
    int64_t first_problem = 0;
    if (params.scope.kind == ScopeKind::kGlobal) {
      problems.emplace_back();
      for (size_t k = 0; k < prep.size(); ++k)
        problems[0].pieces.push_back({k, 0, static_cast<int64_t>(prep[k].w.size())});
    } else {
      first_problem = marks.tensors[prep.front().tensor].first_codebook;
      for (size_t k = 0; k < prep.size(); ++k) {
        const QuantizedTensor& qt = marks.tensors[prep[k].tensor];
        const int64_t n = static_cast<int64_t>(prep[k].w.size()), size = qt.problem_size;
        for (int64_t b = 0; b < n; b += size) problems.push_back({{{k, b, std::min(n, b + size)}}});
      }
    }
    const bool warm_given = static_cast<int64_t>(params.initial_codebooks.size()) == total_problems;

    // ---- run: problems are independent; each result lands in its own slot (deterministic) ----
    // sets[m][j]: problem j's result for λ m (one set without `lambdas`).
    std::vector<std::vector<QuantizeResult>> sets(nsets, std::vector<QuantizeResult>(problems.size()));
    std::vector<QuantizeResult>& results = sets[0];
    // Quantizes (w, h, n) as problem j: one quantize(), or quantize_lambdas() into every set.
    auto solve = [&](size_t j, const float* w, const float* h, size_t n, const QuantizeParams& q) {
      if (lambdas.empty()) {
        results[j] = quantize(w, h, n, q);
        return;
      }
      std::vector<QuantizeResult> r = quantize_lambdas(w, h, n, q, lambdas);
      for (size_t m = 0; m < nsets; ++m) sets[m][j] = std::move(r[m]);
    };
    auto run_one = [&](size_t j) {
      QuantizeParams warm;
      const std::vector<float>* initial =
          warm_given ? &params.initial_codebooks[static_cast<size_t>(first_problem) + j] : nullptr;
      const bool warm_start = initial && !initial->empty();
      if (warm_start) {
        warm = qp;
        warm.initial_centers.assign(initial->begin(), initial->end());
      }
      const QuantizeParams& q = warm_start ? warm : qp;
      // Unpruned stretches adjacent in the wave's buffers (a row, a group, a lone tensor, or global scope's whole
      // tensors back to back): quantize them in place, no copy.
      const std::vector<Piece>& pieces = problems[j].pieces;
      auto none_pruned = [&](const IndexArray& idx, int64_t b, int64_t e) {
        if (to_prune == 0) return true;  // nothing in the model is pruned: no scan
        return idx.visit([&](const auto* data, auto mark) { return std::find(data + b, data + e, mark) == data + e; });
      };
      bool in_place = true;
      for (size_t k = 0; k < pieces.size() && in_place; ++k) {
        const Piece& pc = pieces[k];
        const Prepared& p = prep[pc.prep];
        in_place = none_pruned(marks.tensors[p.tensor].indices, pc.begin, pc.end) &&
                   (k == 0 || (pieces[k - 1].end == static_cast<int64_t>(prep[pieces[k - 1].prep].w.size()) &&
                               pc.begin == 0 &&
                               prep[pieces[k - 1].prep].w.data() + pieces[k - 1].end == p.w.data()));
      }
      if (in_place) {
        const Piece& first = pieces.front();
        size_t len = 0;
        for (const Piece& pc : pieces) len += static_cast<size_t>(pc.end - pc.begin);
        solve(j, prep[first.prep].w.data() + first.begin, weighted ? prep[first.prep].h.data() + first.begin : nullptr,
              len, q);
        return;
      }
      std::vector<float> w, h;
      size_t len = 0;
      for (const Piece& pc : problems[j].pieces) len += static_cast<size_t>(pc.end - pc.begin);
      w.reserve(len);
      if (weighted) h.reserve(len);
      for (const Piece& pc : problems[j].pieces) {
        const Prepared& p = prep[pc.prep];
        const auto& idx = marks.tensors[p.tensor].indices;
        for (int64_t i = pc.begin; i < pc.end; ++i) {
          if (idx[i] == kPrunedIndex) continue;
          w.push_back(p.w[i]);
          if (weighted) h.push_back(p.h[i]);
        }
      }
      solve(j, w.data(), weighted ? h.data() : nullptr, w.size(), q);
    };
    // Rows and groups of k-means (Lloyd or exact) and ECSQ: each tensor's problems at once, with the same results
    // as one quantize() per problem. k-means through op (e) (on the GPU one CTA per row with the whole Lloyd driver
    // on chip, or one thread per row for exact); ECSQ on the GPU through op (f) (every row's search shares each
    // launch). What op (e) cannot take, and ECSQ on the CPU, run below.
    std::vector<char> solved(problems.size(), 0);
    const bool by_rows = params.scope.kind == ScopeKind::kRow || params.scope.kind == ScopeKind::kGroup;
    const bool sorted_path =
        qp.method == Method::kKmeans || qp.method == Method::kHwKmeans || qp.method == Method::kExact;
    const bool rows_ecsq = qp.method == Method::kEcsq && marks.backend == Backend::kCuda;  // see quantize_rows_ecsq
    if (by_rows && ((lambdas.empty() && sorted_path) || rows_ecsq)) {
      for (const Prepared& p : prep) {
        const QuantizedTensor& qt = marks.tensors[p.tensor];
        const size_t first = static_cast<size_t>(qt.first_codebook - first_problem);
        const size_t count = static_cast<size_t>(qt.num_problems);
        // Rows' offsets into the values: the rows' own bounds, or (with pruning) each row's kept count summed,
        // the counts made on the threads; the kept values are gathered only when some are pruned.
        std::vector<int64_t> begin(count + 1, 0);
        auto each_row = [&](auto&& f) {
          parallel_for(static_cast<int64_t>(count), 1, [&](int64_t r) {
            const Piece& pc = problems[first + static_cast<size_t>(r)].pieces[0];
            qt.indices.visit([&](const auto* idx, auto mark) { f(static_cast<size_t>(r), pc, idx, mark); });
          });
        };
        if (to_prune > 0) {
          each_row([&](size_t r, const Piece& pc, const auto* idx, auto mark) {
            int64_t kept = 0;
            for (int64_t i = pc.begin; i < pc.end; ++i) kept += idx[i] != mark;
            begin[r + 1] = kept;
          });
          for (size_t r = 0; r < count; ++r) begin[r + 1] += begin[r];
        } else {
          for (size_t r = 0; r < count; ++r) begin[r + 1] = problems[first + r].pieces[0].end;
        }
        const bool pruned = begin[count] < static_cast<int64_t>(p.w.size());
        ScratchVector<float> gw, gh;
        if (pruned) {
          gw.resize(static_cast<size_t>(begin[count]));
          if (weighted) gh.resize(gw.size());
          each_row([&](size_t r, const Piece& pc, const auto* idx, auto mark) {
            size_t at = static_cast<size_t>(begin[r]);
            for_each_kept(idx, static_cast<size_t>(pc.begin), static_cast<size_t>(pc.end), mark, [&](size_t i) {
              gw[at] = p.w[i];
              if (weighted) gh[at] = p.h[i];
              ++at;
            });
          });
        }
        std::vector<const std::vector<float>*> warm;
        if (warm_given)
          for (size_t j = first; j < first + count; ++j)
            warm.push_back(&params.initial_codebooks[static_cast<size_t>(first_problem) + j]);
        // Every value of the tensor pruned: its rows are all empty, but the ops still want the arrays to exist.
        if (pruned && gw.empty()) {
          gw.push_back(0.0f);
          if (weighted) gh.push_back(0.0f);
        }
        const float* w = pruned ? gw.data() : p.w.data();
        const float* h = weighted ? (pruned ? gh.data() : p.h.data()) : nullptr;
        if (rows_ecsq) {  // op (f): every row's search (and λ) shares each pass
          std::vector<std::vector<QuantizeResult>> r;
          try {
            r = quant::quantize_rows_ecsq(w, h, begin, qp, marks.backend, warm, lambdas);
          } catch (const Error& e) {  // rows beyond the device's memory: one by one below
            if (e.code() != ErrorCode::kOutOfMemory) throw;
            continue;
          }
          for (size_t m = 0; m < nsets; ++m)
            for (size_t j = 0; j < count; ++j) sets[m][first + j] = std::move(r[m][j]);
        } else {  // op (e)
          std::vector<QuantizeResult> r = quant::quantize_rows_kmeans(w, h, begin, qp, marks.backend, warm);
          if (r.empty()) continue;
          for (size_t j = 0; j < count; ++j) results[first + j] = std::move(r[j]);
        }
        std::fill(solved.begin() + static_cast<ptrdiff_t>(first),
                  solved.begin() + static_cast<ptrdiff_t>(first + count), char{1});
        done += static_cast<int64_t>(count);
        progress.update(done, status);
      }
    }
    std::vector<size_t> rest;
    for (size_t j = 0; j < problems.size(); ++j)
      if (!solved[j]) rest.push_back(j);
    if (problems.size() == 1 && rest.size() == 1) {
      run_one(0);  // one big problem: the ops parallelise inside
      progress.update(++done, status);
    } else {
      // Many small problems (rows, groups) go out in chunks, and progress is counted atomically and shown by one
      // thread: per-problem scheduling and a lock per problem were a visible share of short groups' time.
      const int64_t chunk =
          std::max<int64_t>(1, static_cast<int64_t>(rest.size()) / (64 * std::max(1, omp_get_max_threads())));
      std::atomic<int64_t> finished{done};
      IterationErrors failures;  // an error may not leave the region: the first problem's is rethrown
#pragma omp parallel for schedule(dynamic, chunk)
      for (int64_t jj = 0; jj < static_cast<int64_t>(rest.size()); ++jj) {
        failures.run(static_cast<size_t>(jj), [&] { run_one(rest[static_cast<size_t>(jj)]); });
        const int64_t now = finished.fetch_add(1, std::memory_order_relaxed) + 1;
        if (omp_get_thread_num() == 0) progress.update(now, status);
      }
      failures.rethrow_first();
      done = finished.load();
    }

    // ---- scatter indices, codebooks and error sums into every λ's model; the wave's values are freed ----
    for (size_t m = 0; m < nsets; ++m)
      scatter_wave(models[m], sets[m], prep, problems, importance != nullptr, errors[m], summaries[m]);
  }
  progress.finish();

  for (size_t m = 0; m < nsets; ++m) {
    quant::fill_model_stats(models[m], errors[m], summaries[m], total_n);
    models[m].total.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    models[m].waves = static_cast<int64_t>(std::max<size_t>(1, waves.size()));
  }
  return models;
}

}  // namespace

QuantizedModel quantize_model(const TensorSet& model, const TensorSet* importance, const ModelQuantizeParams& params) {
  quant::check_model_params(params, importance != nullptr);  // also before a shared-λ search takes its goal apart
  if (quant::wants_shared_lambda(params)) return quant::quantize_model_shared_lambda(model, importance, params);
  return std::move(quantize_model_impl(model, importance, params, {}).front());
}

std::vector<QuantizedModel> quantize_model_lambdas(const TensorSet& model, const TensorSet* importance,
                                                   const ModelQuantizeParams& params,
                                                   const std::vector<double>& lambdas) {
  quant::check_lambda_batch(params.quant, lambdas, "quantize_model_lambdas");
  quant::check_model_params(params, importance != nullptr);
  if (lambdas.empty()) return {};
  return quantize_model_impl(model, importance, params, lambdas);
}


TensorSet QuantizedModel::dequantize() const {
  TensorSet set;
  for (const QuantizedTensor& qt : tensors) {
    if (!qt.quantized) {
      Tensor t = qt.original;
      t.set_name(qt.name);
      set.add(std::move(t));
      continue;
    }
    set.add(quant::dequantize_indices(qt, codebooks, qt.dtype));
  }
  return set;
}

}  // namespace nq
