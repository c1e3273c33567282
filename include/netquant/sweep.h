// Rate–distortion sweeps: quantize one model at many rate points (λ, k or bits), optionally evaluating each
// point with a task metric, and pick the best point meeting a target. Points are independent, so a sweep is a
// list of point specs that a single process or MPI ranks evaluate in any order (results are stored by index).
#pragma once

#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "netquant/quantize.h"
#include "netquant/tensor.h"

namespace nq {

// One rate point: the full quantizer configuration and the knob that distinguishes it in tables.
struct SweepPointSpec {
  ModelQuantizeParams params;
  std::string knob_name;  // "lambda", "k", "bits", "step"
  double knob = 0;
  IndexCoder coder = IndexCoder::kAuto;  // the .nq coding its ratio_file counts
};

// Task metrics of a quantized model (e.g. accuracy of a built-in network); NaN where not evaluated. `accuracy`
// and `loss` are on the test set, which no choice may see; the *_validation accuracies are on images held out of
// training for choosing a point (best_point_for_target prefers them).
struct TaskMetrics {
  double accuracy = std::numeric_limits<double>::quiet_NaN();
  double loss = std::numeric_limits<double>::quiet_NaN();
  double accuracy_finetuned = std::numeric_limits<double>::quiet_NaN();
  double loss_finetuned = std::numeric_limits<double>::quiet_NaN();
  double accuracy_validation = std::numeric_limits<double>::quiet_NaN();
  double accuracy_finetuned_validation = std::numeric_limits<double>::quiet_NaN();
};

struct SweepPoint {
  size_t index = 0;          // position in the spec list
  std::string method;
  std::string scope;
  std::string include, exclude;  // the tensor name filters (ModelQuantizeParams::include_regex / exclude_regex)
  std::string knob_name;
  double knob = 0;
  QuantStats stats;          // with the coding statistics (huffman bits, ratio_huffman, ratio_file)
  TaskMetrics metrics;
  bool duplicate_of_previous = false;  // collapsed to the same solution as the previous point of its method
};

// Called with the dequantized weights and the model; returns task metrics (may fine-tune internally).
using SweepEvaluator = std::function<TaskMetrics(const QuantizedModel& quantized, const TensorSet& dequantized)>;

// λ values log-spaced from lo to hi (n ≥ 1 points; n == 1 gives lo). Throws on lo ≤ 0 or hi < lo.
std::vector<double> log_space(double lo, double hi, int n);
// Parses "LO:HI:N" (log-spaced) or a comma list "a,b,c".
std::vector<double> parse_lambda_list(const std::string& text);
std::vector<int> parse_int_list(const std::string& text);  // "2,4,8" or "2:8" (inclusive range)

// A λ range spanning the interesting part of the RD curve for ECSQ on this model. By high-rate theory λ is the
// RD slope ≈ 2 ln2 · D(R); Hessian-weighted k-means probes at k = k_max and k = 2 give D at both ends
// (the low end is divided by 16 so the curve starts at the k-means rate).
std::pair<double, double> auto_lambda_range(const TensorSet& model, const TensorSet* importance,
                                            const ModelQuantizeParams& base);

// Evaluates one point (quantize, code-accounting, optional task evaluation). `quantized`, when given, receives
// the quantized model so callers can fine-tune or report it without quantizing again.
SweepPoint run_sweep_point(const TensorSet& model, const TensorSet* importance, const SweepPointSpec& spec,
                           size_t index, const SweepEvaluator& evaluate, QuantizedModel* quantized = nullptr);

// Most ECSQ λ points run_sweep quantizes together (see run_sweep).
constexpr int64_t kSweepLambdaBatch = 8;

// Points [begin, end) of a spec list, quantized together.
struct SweepBatch {
  size_t begin, end;
};
// The spec list cut into batches: runs of consecutive ECSQ points at given λ whose other settings are all equal,
// of at most max_batch (≤ kSweepLambdaBatch) points and ~2 GB of indices; every other point alone.
std::vector<SweepBatch> plan_sweep_batches(const TensorSet& model, const std::vector<SweepPointSpec>& specs,
                                           int64_t max_batch);
// The points of one batch (quantize_model_lambdas for a run of λ points), each equal to run_sweep_point alone.
std::vector<SweepPoint> run_sweep_batch(const TensorSet& model, const TensorSet* importance,
                                        const std::vector<SweepPointSpec>& specs, const SweepBatch& batch,
                                        const SweepEvaluator& evaluate);

// Runs every point in order on this process (with a progress bar), then marks collapsed duplicates. Consecutive
// ECSQ points that differ only in λ are quantized together (quantize_model_lambdas: one validation, pruning and
// sort, their passes shared — on CUDA one launch per pass for all of them), in batches of up to
// kSweepLambdaBatch whose indices fit ~2 GB; every point is what run_sweep_point gives for it alone.
std::vector<SweepPoint> run_sweep(const TensorSet& model, const TensorSet* importance,
                                  const std::vector<SweepPointSpec>& specs, const SweepEvaluator& evaluate);

// Same result as run_sweep, spread over the MPI ranks of process_group() with dynamic scheduling (points differ
// in cost): rank 0 hands out point indices from a dispatcher thread and also computes; results are gathered on
// rank 0 in index order. Returns the points on rank 0 and an empty vector on other ranks. A failing point on
// any rank aborts the whole job with a message naming the rank. Single process: run_sweep.
std::vector<SweepPoint> run_sweep_distributed(const TensorSet& model, const TensorSet* importance,
                                              const std::vector<SweepPointSpec>& specs, const SweepEvaluator& evaluate);

// Marks points whose (clusters, entropy, distortion) equal the previous point of the same method, scope and filters.
void mark_duplicates(std::vector<SweepPoint>& points);

// Best point meeting a target: among the points with entropy-coded bits/weight ≤ target_bits (if > 0) and
// ratio_huffman ≥ target_ratio (if > 0), the one with the highest score by target_criterion's measure, else (no
// measure) the lowest distortion. Ties go to the first point. -1 if none.
int best_point_for_target(const std::vector<SweepPoint>& points, double target_bits, double target_ratio);
// The accuracy best_point_for_target chooses by: the first of accuracy_finetuned_validation, accuracy_validation,
// accuracy_finetuned and accuracy that every point meeting the target has; nullptr when none (or no point meets it).
double TaskMetrics::*target_criterion(const std::vector<SweepPoint>& points, double target_bits,
                                      double target_ratio);

// CSV: one header line, one row per point; fixed columns (README), the name filters last (quoted as RFC 4180
// wants when a pattern holds a comma or a quote). No timings, so a distributed run's CSV is byte-identical to a
// single process's.
std::string sweep_to_csv(const std::vector<SweepPoint>& points);
std::string sweep_csv_header();

}  // namespace nq
