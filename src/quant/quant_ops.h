// Internal: the quantizers' data-parallel ops ("drivers once, ops twice"): one contract, a cpu:: and a cuda::
// implementation with identical signatures, and the single dispatch point (nq::quant::ops_*) the drivers call.
//
// Contract for every op (both backends):
// - Pointers are host pointers; n may be 0; inputs are finite (the drivers validate before calling).
// - `h == nullptr` means every importance is 1.
// - Results are bitwise deterministic for a given backend and input, independent of the thread/block count:
//   sums are formed per fixed block of `accum_block_size(n)` consecutive elements, each block in element order,
//   then the block partials are added in block order. (CPU vs CUDA may differ in the last bits of the fp64
//   sums; labels agree, exact cost ties included, which both resolve by quant_formulas.h.)
// - Costs and ties are evaluated with quant_formulas.h (assign_cost / better / closer_to_upper) only.
#pragma once

#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "netquant/backend.h"
#include "netquant/error.h"

namespace nq::quant {

// Elements per accumulation block: a function of n alone (so results do not depend on the thread count), at
// least 2^14 and at most 4096 blocks in all.
inline size_t accum_block_size(size_t n) {
  size_t b = size_t{1} << 14;
  while (n / b > 4096) b <<= 1;
  return b;
}

// Per-cluster sums of one assignment pass.
struct AssignAccum {
  std::vector<double> sum_h;     // Σ h over members (k entries)
  std::vector<double> sum_hw;    // Σ h·w
  std::vector<double> sum_w;     // Σ w (centres of weightless clusters fall back to the plain mean)
  std::vector<int64_t> count;    // members
  double distortion = 0;         // Σ h (w − c_label)²
  double sq_error = 0;           // Σ (w − c_label)²
  double cost = 0;               // Σ assign_cost(label) = distortion + λ Σ l_label
  void reset(int k) {
    sum_h.assign(static_cast<size_t>(k), 0.0);
    sum_hw.assign(static_cast<size_t>(k), 0.0);
    sum_w.assign(static_cast<size_t>(k), 0.0);
    count.assign(static_cast<size_t>(k), 0);
    distortion = sq_error = cost = 0;
  }
  // this += other, entry by entry (the fold step of an ordered reduction).
  void add(const AssignAccum& other) {
    for (size_t j = 0; j < sum_h.size(); ++j) {
      sum_h[j] += other.sum_h[j];
      sum_hw[j] += other.sum_hw[j];
      sum_w[j] += other.sum_w[j];
      count[j] += other.count[j];
    }
    distortion += other.distortion;
    sq_error += other.sq_error;
    cost += other.cost;
  }
};

// Several codebooks for one pass over the data (op (d') below): codebook m = centers / code_len entries
// [offsets[m], offsets[m + 1]) with its λ, each under op (a)'s contract.
struct CodebookBatch {
  std::vector<double> centers, code_len, lambda;
  std::vector<int> offsets{0};
  int size() const { return static_cast<int>(lambda.size()); }
  int k(int m) const { return offsets[static_cast<size_t>(m) + 1] - offsets[static_cast<size_t>(m)]; }
  // Empty again, keeping the capacity (a driver refills one batch every pass).
  void clear() {
    centers.clear();
    code_len.clear();
    lambda.clear();
    offsets.assign(1, 0);
  }
  // Room for codebooks of sizes ks (contents to be written, e.g. by several threads: codebook m's entries at
  // [offsets[m], offsets[m + 1]) of centers / code_len, its λ at lambda[m]); the capacity is kept.
  void shape(const std::vector<int>& ks) {
    offsets.resize(ks.size() + 1);
    offsets[0] = 0;
    for (size_t m = 0; m < ks.size(); ++m) offsets[m + 1] = offsets[m] + ks[m];
    centers.resize(static_cast<size_t>(offsets.back()));
    code_len.resize(static_cast<size_t>(offsets.back()));
    lambda.resize(ks.size());
  }
  void add(const double* c, const double* l, int k, double lam) {
    centers.insert(centers.end(), c, c + k);
    code_len.insert(code_len.end(), l, l + k);
    lambda.push_back(lam);
    offsets.push_back(offsets.back() + k);
  }
};

// (g) Pruning selection over several arrays read as one flat sequence (a model's tensors in order): score_i =
// quant::prune_score(w_i, h_i) — h_i·w_i·w_i in fp64 (h ≡ 1 when unweighted), |w_i| below every non-zero one where
// that is 0; mask[a][i] = 1 for the `count` smallest scores, ties at the threshold going to the earliest positions,
// 0 elsewhere.
struct PruneArrays {
  std::vector<const float*> w, h;  // h empty: unweighted
  std::vector<size_t> n;
  std::vector<uint8_t*> mask;
};

// Op (b1)'s output for the values of an op (d) call, when the caller has made it: w ascending by order key (stable),
// h alongside (ones for values without importance); both null when not at hand. Op (d) then groups the values
// into its importance bins by a stable scatter of these instead of sorting each bin again.
struct SortedView {
  const float* w = nullptr;
  const float* h = nullptr;
};

// (d) One problem's values held where its backend computes, for drivers that pass over them many times (the
// ECSQ iterations and the λ bisection around them): the CUDA backend uploads w and h once and keeps each pass's
// labels on the device, so a pass moves no data across PCIe and the labels cross once, at the end; the CPU
// backend reads w and h in place (they must outlive the object). Each pass is op (a) with labels written.
class ResidentValues {
 public:
  virtual ~ResidentValues() = default;
  virtual void assign_accumulate(const double* centers, const double* code_len, int k, double lambda,
                                 AssignAccum& out) = 0;
  // (d') Every codebook of `books` over one read of the values (a λ sweep's points in lockstep): out[m] (resized
  // to books.size()) = exactly what assign_accumulate returns for codebook m alone. Writes no labels (those of the
  // latest assign_accumulate stay). The CUDA backend runs all codebooks in one launch with each data block's CTAs
  // adjacent, so a block is read from HBM once and from L2 for the other codebooks; the CPU, compute-bound here,
  // runs them one after another.
  virtual void assign_accumulate_multi(const CodebookBatch& books, std::vector<AssignAccum>& out) = 0;
  // The labels of the latest pass (n entries; empty before the first pass). Moves them out.
  virtual std::vector<int32_t> take_labels() = 0;
  // The labels under this codebook (n entries), when its sums are not wanted: what take_labels returns after
  // assign_accumulate with it. The binned backends label with one op (a) pass and skip the binned pass itself.
  // Leaves no labels to take.
  virtual std::vector<int32_t> labels_for(const double* centers, const double* code_len, int k, double lambda) {
    AssignAccum unused;
    assign_accumulate(centers, code_len, k, lambda, unused);
    return take_labels();
  }
};

// (f) Many rows resident together, for the row/group ECSQ driver: every unfinished row (and λ) of a tensor
// shares each pass, so a pass over thousands of rows is one launch instead of thousands of tiny ones. Row r is
// values [row_begin[r], row_begin[r + 1]) of w (and h); `weighted` (nullable: every row weighted when h is given)
// says per row whether it uses h — a row whose importances are all 0 runs unweighted, as quantize() runs it.
// The CUDA backend uploads w and h once; the CPU backend reads them in place (they must outlive the object).
class ResidentRows {
 public:
  virtual ~ResidentRows() = default;
  // One pass: task i is row rows[i] (a row may appear in several tasks) under codebook i of `books`
  // (books.size() tasks, op (a)'s contract each). out[i] (out resized to the task count) is bit for bit what
  // op (a) of the same backend returns for that row alone. labels: nullptr (not written) or Σ_i len(rows[i])
  // entries, task i's labels starting after the lengths of the tasks before it.
  virtual void assign_accumulate(const int64_t* rows, const CodebookBatch& books, int32_t* labels,
                                 std::vector<AssignAccum>& out) = 0;
  // The same pass with one codebook for all `tasks` tasks (the sharded driver's blocks): exactly what
  // assign_accumulate returns for a batch holding that codebook once per task. This default builds that batch; the
  // CUDA backend checks, builds and uploads the codebook's table once instead of once per task.
  virtual void assign_accumulate_shared(const int64_t* rows, size_t tasks, const double* centers,
                                        const double* code_len, int k, double lambda, int32_t* labels,
                                        std::vector<AssignAccum>& out) {
    NQ_CHECK(k >= 1 && centers && code_len, ErrorCode::kInvalidArgument,
             "resident rows: a shared codebook of k = " << k << (centers && code_len ? "" : " (null)"));
    CodebookBatch books;
    for (size_t i = 0; i < tasks; ++i) books.add(centers, code_len, k, lambda);
    assign_accumulate(rows, books, labels, out);
  }
};

// (e) Many small problems (the rows or groups of a model) solved at once by the per-row k-means driver of
// row_lloyd.h, or with `exact` by the optimal 1-D k-means of exact_row.h: row r is values
// [row_begin[r], row_begin[r + 1]) of w (and h). For every row the result is bit for bit what nq::quantize returns
// before finalize on that row alone — kmeans / hw-kmeans (its k ≥ distinct shortcut, linear or quantile init or
// the given start, lloyd_sorted's iterations) or exact (the shortcut, or exact_dp: one iteration; init, max_iter,
// tol and warm starts do not apply).
struct RowsKmeansJob {
  const float* w = nullptr;
  const float* h = nullptr;            // nullptr: unweighted; a row whose importances are all 0 is solved unweighted
  const int64_t* row_begin = nullptr;  // rows + 1 ascending offsets, row_begin[0] = 0
  int64_t rows = 0;
  int k = 1;                           // ≥ 1
  int init = 0;                        // row_lloyd::InitRule (0 linear, 1 quantile) for rows without a start
  int max_iter = 1;                    // ≥ 1
  double tol = 0;
  // Optional warm starts (both or neither): row r starts from initial[r·k …] (initial_count[r] ≤ k centres,
  // ascending, distinct); a count of 0 means no start for that row.
  const double* initial = nullptr;
  const int32_t* initial_count = nullptr;
  bool exact = false;                  // the optimal clustering (method exact) instead of Lloyd's iterations
};
struct RowsKmeansOut {
  double* centers = nullptr;       // rows × k: row r's final centres (ascending) in its first center_count[r]
  int32_t* center_count = nullptr; // rows
  int32_t* labels = nullptr;       // one per value: the nearest final centre (quant_formulas.h nearest_center)
  int32_t* iterations = nullptr;   // rows
  uint8_t* converged = nullptr;    // rows
};
// Longest row op (e) accepts: the CPU's own driver keeps every prefix sum up to here (SortedData), which the
// row driver reproduces; the CUDA op is further limited by shared memory (kUnsupported beyond it).
constexpr int64_t kRowsKmeansMaxRow = int64_t{1} << 16;
// Longest row the CUDA op holds on chip (a row of 8192 with its sort storage and tables is ~113 KB of shared
// memory); with `exact` (one thread per row, scratch in device memory) kRowsKmeansMaxRow.
constexpr int64_t kRowsKmeansCudaMaxRow = 8192;
// Values of RowsKmeansJob::init (row_lloyd::InitRule).
constexpr int kRowsInitRules = 2;
// Both backends' argument checks; returns the longest row. Inline: the CUDA kernels library calls it and links
// without the quantizer library.
inline int64_t check_rows_kmeans_job(const RowsKmeansJob& job) {
  NQ_CHECK(job.rows >= 0 && job.k >= 1 && job.max_iter >= 1, ErrorCode::kInvalidArgument,
           "rows_kmeans: rows = " << job.rows << ", k = " << job.k << ", max_iter = " << job.max_iter);
  NQ_CHECK(job.init >= 0 && job.init < kRowsInitRules, ErrorCode::kInvalidArgument,
           "rows_kmeans: unknown init rule " << job.init);
  NQ_CHECK((job.initial == nullptr) == (job.initial_count == nullptr), ErrorCode::kInvalidArgument,
           "rows_kmeans: warm starts need both the centres and their counts");
  NQ_CHECK(job.rows == 0 || (job.w && job.row_begin && job.row_begin[0] == 0), ErrorCode::kInvalidArgument,
           "rows_kmeans: missing values or row offsets");
  int64_t n_max = 0;
  for (int64_t r = 0; r < job.rows; ++r) {
    const int64_t len = job.row_begin[r + 1] - job.row_begin[r];
    NQ_CHECK(len >= 0, ErrorCode::kInvalidArgument, "rows_kmeans: row " << r << " has negative length");
    n_max = std::max(n_max, len);
    if (job.initial_count)
      NQ_CHECK(job.initial_count[r] >= 0 && job.initial_count[r] <= job.k, ErrorCode::kInvalidArgument,
               "rows_kmeans: row " << r << " starts from " << job.initial_count[r] << " centres (k = " << job.k
                                   << ")");
  }
  NQ_CHECK(n_max <= kRowsKmeansMaxRow, ErrorCode::kUnsupported,
           "rows_kmeans: a row of " << n_max << " values exceeds " << kRowsKmeansMaxRow);
  return n_max;
}

}  // namespace nq::quant

// Both namespaces declare the same ops. The cuda:: versions copy in/out of device memory themselves; in a
// build without CUDA they throw ErrorCode::kUnavailable (src/quant/cuda_stubs.cpp).
#define NQ_QUANT_OPS_DECLARE                                                                                   \
  /* (a) Fused assign + accumulate (ECSQ and k-means, Choi et al. 2017 eq. 8 and §5.4).                     \
     centers[k]: strictly ascending. code_len[k]: l_j = −log2 p_j ≥ 0, or +inf for a dead cluster (never       \
     chosen); at least one finite. For each i: label_i = argmin_j assign_cost(w_i, h_i, c_j, l_j, λ), ties to \
     the lowest j (exactly the brute-force fp64 argmin), except that a weight of h_i = 0 takes the nearest of    \
     the tied centres first (quant::zero_importance_argmin). Accumulates into `out` (reset to k entries by the  \
     op): sums per label and the scalars. labels may be nullptr (not written). */                             \
  void assign_accumulate(const float* w, const float* h, size_t n, const double* centers,                     \
                         const double* code_len, int k, double lambda, int32_t* labels,                       \
                         ::nq::quant::AssignAccum& out);                                                       \
  /* (b1) Stable sort of (w, h) pairs by w ascending (−0 before +0). h == nullptr: h_sorted filled with 1.     \
     w_sorted/h_sorted have n entries and must not alias the inputs. */                                        \
  void sort_pairs(const float* w, const float* h, size_t n, float* w_sorted, float* h_sorted);                \
  /* (b2) Prefix sums at block granularity over sorted data, x = w − shift, all fp64:                          \
     ph[b] = Σ_{i < b·block} h_i, phx[b] = Σ h_i x_i, phx2[b] = Σ h_i x_i², b = 0..nb, nb = ceil(n / block),   \
     the last entry covering all n. CPU: each block summed in element order, the blocks added in order (so    \
     block = 1 gives the plain sequential prefix sums). CUDA: fixed reduction trees (deterministic, last-bit   \
     differences from the CPU). hs == nullptr means h ≡ 1. */                                                  \
  void prefix_sums(const float* ws, const float* hs, size_t n, double shift, size_t block, double* ph,        \
                   double* phx, double* phx2);                                                                 \
  /* (c) counts[j] = #{i : labels_i == j}, j < k; negative labels (kPrunedIndex) are skipped; a label ≥ k is   \
     an internal error. */                                                                                     \
  void label_histogram(const int32_t* labels, size_t n, int k, int64_t* counts);                              \
  /* (d) See ResidentValues; h == nullptr means every importance is 1; sorted: see SortedView. */             \
  std::unique_ptr<::nq::quant::ResidentValues> make_resident_values(const float* w, const float* h, size_t n,  \
                                                                    ::nq::quant::SortedView sorted = {});     \
  /* (f) See ResidentRows; rows + 1 ascending offsets from 0. */                                              \
  std::unique_ptr<::nq::quant::ResidentRows> make_resident_rows(const float* w, const float* h,               \
                                                                const int64_t* row_begin, int64_t rows,      \
                                                                const uint8_t* weighted);                    \
  /* (e) See RowsKmeansJob. */                                                                                  \
  void rows_kmeans(const ::nq::quant::RowsKmeansJob& job, const ::nq::quant::RowsKmeansOut& out);             \
  /* (g) See PruneArrays; 0 <= count <= the arrays' total. */                                                   \
  void select_pruned(const ::nq::quant::PruneArrays& arrays, int64_t count);

namespace nq::cpu {
NQ_QUANT_OPS_DECLARE

// (a') CPU only: (a) with caller-chosen segments instead of fixed blocks, for the sharded driver, whose segments
// must not depend on how the data is split across ranks. Segment s = [seg_end[s − 1], seg_end[s]) (from 0 for
// s = 0; seg_end ascending, empty segments allowed); out[s] = the sums of its members in element order, from
// zero. assign_accumulate is this with blocks of accum_block_size(n) folded in order, so the two agree bitwise.
void assign_accumulate_segments(const float* w, const float* h, const size_t* seg_end, size_t nseg,
                                const double* centers, const double* code_len, int k, double lambda, int32_t* labels,
                                std::vector<::nq::quant::AssignAccum>& out);
}  // namespace nq::cpu
namespace nq::cuda {
NQ_QUANT_OPS_DECLARE
}  // namespace nq::cuda

namespace nq::quant {

// Problems smaller than this run on the host even when the CUDA backend is selected: a row or group of a few
// thousand values costs less on one core than the device allocations, copies and launches around it, and the
// row/group drivers run thousands of them from OpenMP workers at once.
constexpr size_t kCudaMinProblem = size_t{1} << 14;
// The backend a problem of n values runs on, given the resolved backend of the call.
inline Backend problem_backend(Backend resolved, size_t n) {
  return resolved == Backend::kCuda && n < kCudaMinProblem ? Backend::kCpu : resolved;
}

// The one dispatch point: `backend` must be resolved (kCpu or kCuda), see resolve_backend().
void ops_assign_accumulate(Backend backend, const float* w, const float* h, size_t n, const double* centers,
                           const double* code_len, int k, double lambda, int32_t* labels, AssignAccum& out);
void ops_sort_pairs(Backend backend, const float* w, const float* h, size_t n, float* w_sorted, float* h_sorted);
void ops_prefix_sums(Backend backend, const float* ws, const float* hs, size_t n, double shift, size_t block,
                     double* ph, double* phx, double* phx2);
void ops_label_histogram(Backend backend, const int32_t* labels, size_t n, int k, int64_t* counts);
std::unique_ptr<ResidentValues> ops_make_resident_values(Backend backend, const float* w, const float* h, size_t n,
                                                         SortedView sorted = {});
std::unique_ptr<ResidentRows> ops_make_resident_rows(Backend backend, const float* w, const float* h,
                                                     const int64_t* row_begin, int64_t rows, const uint8_t* weighted);
void ops_rows_kmeans(Backend backend, const RowsKmeansJob& job, const RowsKmeansOut& out);
void ops_select_pruned(Backend backend, const PruneArrays& arrays, int64_t count);

// Entropy in bits of a histogram: −Σ p log2 p over non-empty bins (p = count / total).
double histogram_entropy(const int64_t* counts, int k);

}  // namespace nq::quant
