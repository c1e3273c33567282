// Internal: the host drivers behind nq::quantize (one per method family) and the shared pieces they use: the
// sorted view of a problem, initial centres and the final compaction into a QuantizeResult.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/scratch_vector.h"
#include "netquant/quantize.h"
#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"

namespace nq::quant {

// One 1-D problem: n values, importances (nullptr = all ones), on a resolved backend.
struct Problem {
  const float* w = nullptr;
  const float* h = nullptr;
  size_t n = 0;
  Backend backend = Backend::kCpu;
};

// The values sorted once with their importances, and fp64 prefix sums of h, h·x, h·x² (x = w − shift) at block
// granularity: sums over any prefix [0, p) cost one table look-up plus < block() elements (in 1-D every cluster
// is an interval of the sorted values). By default small problems (rows, groups) keep every prefix (block 1: a
// Lloyd iteration is then k binary searches and 2k look-ups) and large ones every 64th (24 B per 64 values); a
// caller holding many at once (the sharded driver's blocks) asks for kBlock to keep the memory at that rate.
class SortedData {
 public:
  static constexpr size_t kBlock = 64;
  static constexpr size_t kFullPrefixMax = size_t{1} << 16;
  // prefix_block: 0 = the default rule above, else the block granularity of the prefix table.
  explicit SortedData(const Problem& p, size_t prefix_block = 0);
  size_t size() const { return ws_.size(); }
  const ScratchVector<float>& w() const { return ws_; }
  const ScratchVector<float>& h() const { return hs_; }
  double shift() const { return shift_; }
  // The number of distinct values: a parallel pass over them, made on demand (most problems only ask whether k
  // reaches it, which distinct_at_most answers from the first few values).
  size_t distinct() const;
  // Whether there are at most k distinct values (k levels then represent every value exactly), by a scan that
  // stops at the (k + 1)th.
  bool distinct_at_most(size_t k) const;
  using Sums = Moments;
  Sums prefix(size_t p) const;                  // sums over sorted positions [0, p)
  Sums range(size_t a, size_t b) const;          // over [a, b)
  // First sorted position whose value goes to c_hi rather than c_lo (λ = 0 nearest rule, ties low).
  size_t boundary(double c_lo, double c_hi) const;

 private:
  ScratchVector<float> ws_, hs_;  // written in full by the sort: no zero-fill first
  std::vector<double> p0_, p1_, p2_;
  double shift_ = 0;
  size_t block_ = kBlock;
};

// k centres evenly spaced from lo to hi (--init linear; [DC]: best for k-means); the midpoint when k = 1.
std::vector<double> linear_centers(double lo, double hi, int k);
// k_max initial centres, strictly ascending (duplicates removed, so possibly fewer than k).
std::vector<double> init_centers(const SortedData& s, int k, Init init, uint64_t seed);
// q.initial_centers sorted, duplicates merged (a warm start).
std::vector<double> warm_start(const QuantizeParams& q);
// The distinct sorted values (used when k ≥ distinct: exact representation).
std::vector<double> distinct_values(const SortedData& s);

// What a driver hands back: a centre per label (any order, unused entries allowed) and one label per value, or
// no labels and labels_nearest: every value goes to its nearest centre (λ = 0 rule; centres ascending), which
// finalize() labels in the pass that measures the errors.
struct RawResult {
  std::vector<double> centers;
  std::vector<int32_t> labels;
  bool labels_nearest = false;
  // Where finalize puts the values of zero importance, which the weighted objective lets sit anywhere
  // (relabel_zero_importance): as labelled, or on their nearest centre among those holding a value of positive
  // importance (ECSQ at λ = 0, whose argmin costs h·(w − c)² all tie at 0 for them: as HW k-means labels them), or
  // among those holding any value (exact, whose DP hands a run of them between two clusters to either whole; a
  // cluster of them alone is a level of its own at no cost in D).
  enum class ZeroImportance { kAsLabelled, kNearestWeighted, kNearestUsed };
  ZeroImportance zero_importance = ZeroImportance::kAsLabelled;
  int iterations = 0;
  bool converged = true;
  double lambda = 0;
  double step = 0;
  std::vector<IterationStats> history;
};

// The float codebook of a driver's centres: used ones (counts > 0) rounded to float, sorted, equal levels
// merged; remap[j] = the level of centre j (−1 when unused).
struct LevelMap {
  std::vector<float> codebook;
  std::vector<int32_t> remap;
};
LevelMap round_levels(const std::vector<double>& centers, const std::vector<int64_t>& counts);

// Rounds centres to float, drops unused ones, sorts and merges equal levels, relabels, and measures D, MSE and
// entropy against the float codebook (deterministic blocked sums).
QuantizeResult finalize(const Problem& p, RawResult raw);

// Labels of every value for ascending centres by the λ = 0 nearest rule (ties to the lower centre).
std::vector<int32_t> nearest_labels(const Problem& p, const std::vector<double>& centers);

// Values of zero importance after ECSQ at λ = 0 and exact (RawResult::ZeroImportance says why each needs it): ECSQ's
// argmin gives each its nearest live centre, which may be one that only such values hold (EcsqRun drops those and
// passes again, so this matters only where --max-iter stops it first), and exact's DP a run of them to either
// neighbour whole. They move to their nearest eligible centre (ties to the lower); the weighted distortion and the
// centres stay as they are. finalize does it for one problem, the sharded driver over every rank's counts.
// weighted_members[j] += how many of the values [0, n) of positive importance have label j (k entries).
void count_weighted_members(const float* h, const int32_t* labels, size_t n, int k, int64_t* weighted_members);
// Relabels the values of zero importance among [0, n) to the nearest centre j with eligible[j] > 0 (weighted
// members, or every member for exact); nothing when none is.
void relabel_zero_importance(const float* w, const float* h, size_t n, const std::vector<double>& centers,
                             const std::vector<int64_t>& eligible, int32_t* labels);

// nq::quantize's checks of its parameters (shared with the batched row drivers).
void check_quantize_params(const QuantizeParams& params);
// What every whole-model entry (quantize_model and its λ batches, the sharded driver, prune_model) checks before it
// reads a tensor: the pruned fraction, the wave size, the group size, an importance transform only with an importance,
// and, where a quantizer runs (with_quantizer), check_quantize_params.
void check_model_params(const ModelQuantizeParams& params, bool has_importance, bool with_quantizer = true);
// The checks of ECSQ at several given λ (quantize_lambdas and its model and row forms): method ecsq, no target
// rate, every λ finite and >= 0; `who` names the entry point in the message.
void check_lambda_batch(const QuantizeParams& params, const std::vector<double>& lambdas, const char* who);
// The row drivers' starting codebooks (nullptr or empty: none): every centre finite, as check_quantize_params
// requires of one problem's.
void check_warm_starts(const std::vector<const std::vector<float>*>& warm);
// Values [begin, end) of w as quantize() sees them: h only when some importance there is positive.
Problem row_problem(const float* w, const float* h, int64_t begin, int64_t end, Backend backend);
// The row drivers' slices: from row r0, as many rows as fit in `limit` values (at least one); returns the end row
// r1 and sets slice_begin to rows [r0, r1]'s offsets rebased to the slice's first value.
int64_t next_slice(const std::vector<int64_t>& row_begin, int64_t r0, int64_t limit,
                   std::vector<int64_t>& slice_begin);

// ---- drivers ----
RawResult lloyd_sorted(const SortedData& s, const QuantizeParams& q);    // kmeans, hw-kmeans
RawResult exact_dp(const Problem& p, const SortedData& s, const QuantizeParams& q);        // exact
RawResult uniform_quantize(const Problem& p, double step, int max_cells);                  // one Δ
RawResult uniform_driver(const Problem& p, const QuantizeParams& q);                       // Δ or target
// ECSQ's start from the sorted values: the starting codebook (ecsq_init) and the weighted variance D0, for
// ecsq_search (λ or target). Made apart from the search so that the sorted copy, which also lays out the passes'
// values (local_pass), is freed before the search runs.
struct EcsqStart {
  std::vector<double> init;
  double d0 = 0;
};
EcsqStart ecsq_start(const Problem& p, const SortedData& s, const QuantizeParams& q);

// kmeans / hw-kmeans / exact on many small problems at once through op (e) (the rows or groups of one tensor):
// problem j is values [row_begin[j], row_begin[j + 1]) of w (h: nullptr when unweighted), warm[j] (nullptr or
// empty: none; ignored by exact) its starting codebook. Returns exactly what nq::quantize returns for each problem alone (results[j].backend is
// `backend`; no per-iteration history, and the call's time shared out by size), or nothing when op (e) cannot
// take them there (kmeans++ init, exact with histogram bins, rows too long, a start with more than k levels, a
// codebook too large for the device): the caller then runs them one by one.
// slice_values: most values per op call (the rows go in slices; a row longer than that alone).
constexpr int64_t kRowsSliceValues = int64_t{1} << 26;
std::vector<QuantizeResult> quantize_rows_kmeans(const float* w, const float* h, const std::vector<int64_t>& row_begin,
                                                 const QuantizeParams& q, Backend backend,
                                                 const std::vector<const std::vector<float>*>& warm,
                                                 int64_t slice_values = kRowsSliceValues);

// One assign + accumulate pass over the whole problem, wherever its data lives: the op on values resident on this
// process's backend, or the sharded driver's pass (local op per rank + an ordered reduction). The labels of a
// pass stay where they were computed; take_labels moves out those of the latest pass (this process's values).
struct AssignPass {
  std::function<void(const double* centers, const double* code_len, int k, double lambda, AssignAccum& out)> run;
  // Several codebooks over one read of the data (ResidentValues::assign_accumulate_multi), no labels. local_pass
  // sets it (ecsq_iterate_lambdas needs it); the sharded driver's pass does not.
  std::function<void(const CodebookBatch& books, std::vector<AssignAccum>& out)> run_multi;
  std::function<std::vector<int32_t>()> take_labels;
  // The labels under a codebook whose sums are not wanted (ResidentValues::labels_for); null: run, then take_labels.
  std::function<std::vector<int32_t>(const double* centers, const double* code_len, int k, double lambda)> labels_for;
};

// One ECSQ run between passes: the codebook to pass next, and what each pass's sums make of it (the body of
// ECSQ's loop), so that runs at several λ, or of several rows, can share every pass.
class EcsqRun {
 public:
  EcsqRun(const std::vector<double>& init, double lambda, size_t n_total, const QuantizeParams& q);
  bool done() const { return done_; }
  double lambda() const { return out_.lambda; }
  const std::vector<double>& centers() const { return c_; }   // the codebook of the next pass
  const std::vector<double>& code_len() const { return l_; }
  void step(const AssignAccum& acc);  // consumes the pass over centers() / code_len()
  const std::vector<double>& last_centers() const { return last_c_; }  // the codebook of the latest pass
  const std::vector<double>& last_code_len() const { return last_l_; }
  RawResult take_result() {  // everything but the labels; centers: the means of the latest pass
    out_.centers = means_;
    if (!(out_.lambda > 0)) out_.zero_importance = RawResult::ZeroImportance::kNearestWeighted;
    return std::move(out_);
  }

 private:
  double tol_;
  int max_iter_;
  double n_;
  std::vector<double> c_, l_, last_c_, last_l_;
  std::vector<double> means_, nc_, cnt_;  // step's scratch (means_: the latest pass's centres)
  std::vector<int> order_;
  double prev_ = infinity();
  bool done_ = false;
  RawResult out_;

  void sort_live_clusters(const AssignAccum& acc);  // order_: the latest pass's live clusters by centre
  void take_next_codebook();                         // c_ and l_ = −log2 p from nc_ (centres) and cnt_ (counts)
  bool merge_equal_clusters(const AssignAccum& acc);  // the next codebook with neighbours merged, when that helps
};
// ecsq_search between passes: q.lambda alone, or for a target rate the runs of the λ search (λ = 0, then λ grown
// until the rate is reached, then bisection on log λ), every run an EcsqRun from the same start. A driver feeds it
// one pass at a time, so the rows of a tensor can search side by side and share their passes (op (f)).
class EcsqSearch {
 public:
  // init: the starting codebook (not empty); d0: the weighted variance (1/N) Σ h (w − mean)².
  EcsqSearch(std::vector<double> init, double d0, size_t n_total, const QuantizeParams& q);
  bool done() const { return done_; }
  const EcsqRun& run() const { return run_; }  // the run whose codebook the next pass uses (while !done())
  // Consumes the pass over run()'s codebook. True when that pass ended a run which is now the best one: its labels
  // are the result's, so a driver that keeps each pass's labels takes them now.
  bool step(const AssignAccum& acc);
  // The best run's codebook of its last pass with its λ: a pass over it gives the result's labels.
  const std::vector<double>& label_centers() const { return best_c_; }
  const std::vector<double>& label_code_len() const { return best_l_; }
  double label_lambda() const { return best_.lambda; }
  RawResult take_result() { return std::move(best_); }  // everything but the labels

 private:
  enum class Phase { kFixed, kZero, kGrow, kBisect };
  void start(double lambda);
  void finish_run();  // the current run ended: record it and move the search on
  void next_bisection();

  QuantizeParams q_;
  std::vector<double> init_;
  size_t n_total_;
  double rate_, d0_;
  Phase phase_;
  EcsqRun run_;
  RawResult best_;
  std::vector<double> best_c_, best_l_;
  double best_err_ = 0, lo_ = 0, hi_ = 0, mid_ = 0;
  int grow_ = 0, bisect_ = 0;
  bool done_ = false, became_best_ = false;
};

// Uploads p's values once (ResidentValues) and passes over them as often as the driver asks.
AssignPass local_pass(const Problem& p, SortedView sorted = {});
// The runs at every λ of `lambdas` from one start in lockstep: each pass (run_multi) serves all unfinished runs,
// then one labelled pass per run. Result m equals ecsq_search(…, q with λ = lambdas[m] and no target) bit for bit.
std::vector<RawResult> ecsq_iterate_lambdas(const AssignPass& pass, size_t n_total, size_t n_local,
                                            const std::vector<double>& init, const std::vector<double>& lambdas,
                                            const QuantizeParams& q);
// ECSQ's starting codebook for a problem: the warm start, every distinct value when k reaches them, else the
// centres lloyd_sorted(s, ecsq_start_params(q, s.size())) reaches from the init rule.
std::vector<double> ecsq_init(const SortedData& s, const QuantizeParams& q);
// The HW k-means that makes ECSQ's start on n values: q's init and seed, run to its fixed point (tol 0) within as
// many sorted iterations as q.max_iter ECSQ passes would cost (the sharded driver runs the same on its blocks).
QuantizeParams ecsq_start_params(const QuantizeParams& q, size_t n);
// q.lambda, or the target rate of q by bisection on log λ (EcsqSearch); d0: the weighted variance.
RawResult ecsq_search(const AssignPass& pass, size_t n_total, size_t n_local, const std::vector<double>& init,
                      double d0, const QuantizeParams& q);

// ECSQ (q.lambda or a target rate, or every λ of `lambdas` when given: no target then) on the rows or groups of one
// tensor through op (f): problem j is values [row_begin[j], row_begin[j + 1]) of w (h: nullptr when unweighted;
// both validated by the caller),
// warm[j] (nullptr or empty: none) its starting codebook. Every problem's search advances one pass at a time and
// all unfinished ones share each pass; a last pass labels them all. Returns sets[m][j] = what nq::quantize
// (quantize_lambdas for λ m) returns for problem j alone — bit for bit on the CPU; on CUDA every pass runs on the
// device, so a row under 2^14 values, which quantize() would run on the host, agrees with it to rounding (the two
// backends' sums differ in the last bits) — but results[j].backend is `backend` and the call's time is shared out
// by size. A row of kBinnedMinValues values or more, whose passes quantize() runs binned, is solved by quantize()
// itself (or quantize_lambdas). Rows go in slices of at most slice_values values per λ, one op (f) object and
// one lockstep each. This is the GPU's way (a pass is one launch over thousands of rows); on the CPU, quantize_model
// runs one quantize() per row on the host threads instead: a row then stays in cache through all its passes, no
// pass waits for the slowest row, and nothing is allocated per pass (1.5× faster on small groups, same bits).
std::vector<std::vector<QuantizeResult>> quantize_rows_ecsq(const float* w, const float* h,
                                                            const std::vector<int64_t>& row_begin,
                                                            const QuantizeParams& q, Backend backend,
                                                            const std::vector<const std::vector<float>*>& warm,
                                                            const std::vector<double>& lambdas,
                                                            int64_t slice_values = kRowsSliceValues);

// The importance tensor of weight tensor `name` must exist (importance_shape non-null), have its shape and a
// float dtype: kShapeMismatch / kInvalidArgument naming the tensor otherwise (quantize_model and the sharded one).
// `source` names the importance in the messages (the CLI passes "--importance FILE").
void check_importance_layout(const std::string& name, const std::vector<int64_t>& shape,
                             const std::vector<int64_t>* importance_shape, DType importance_dtype,
                             const std::string& source = "importance");

// Target rate in bits/weight from target_bits / target_ratio (0 when none).
double target_rate_bits(const QuantizeParams& q);

}  // namespace nq::quant
