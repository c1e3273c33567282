// Importance-weighted scalar quantization: one API over every method (k-means, Hessian-weighted k-means,
// exact DP, uniform, iterative ECSQ, fixed binary/ternary/pow2/int codebooks, weighted entropy).
// References: Choi, El-Khamy & Lee 2017 (HW k-means, uniform, ECSQ); Wu 1991 / Grønlund et al. 2017 (exact
// 1-D DP); Carreira-Perpiñán & Idelbayev 2017 (fixed codebooks); Park, Ahn & Yoo 2017 (weighted entropy).
// Usage: the README section on `netquant quantize`.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "netquant/backend.h"
#include "netquant/index_array.h"
#include "netquant/tensor.h"

namespace nq {

enum class Method { kKmeans, kHwKmeans, kExact, kUniform, kEcsq, kBinary, kTernary, kPow2, kInt, kWentropy };

// One row per method; the CLI, the docs and the tests iterate over this table.
struct MethodTraits {
  Method method;
  const char* name;         // CLI spelling: "kmeans", "hw-kmeans", "exact", "uniform", "ecsq", "binary", ...
  const char* summary;
  bool uses_importance;     // false: the clustering ignores importance (kmeans, wentropy); pruning still uses it
  bool has_lambda;          // ecsq
  bool takes_k;             // the number of levels is a parameter (--k / --bits)
  bool supports_target;     // --target-bits / --target-ratio (ecsq: λ search; uniform: Δ search)
};
const std::vector<MethodTraits>& method_table();
const MethodTraits& method_traits(Method method);
Method parse_method(const std::string& name);  // throws kInvalidArgument listing the valid names

// The starting centres: kLinear evenly from the least to the greatest value of positive importance (a value of
// importance 0 adds nothing to the objective; all values when none has any), kKmeansPP D² sampling weighted by
// importance (seeded), kQuantile the weighted quantiles at (j + ½)/k.
enum class Init { kLinear, kKmeansPP, kQuantile };
Init parse_init(const std::string& name);
const char* init_name(Init init);

struct QuantizeParams {
  Method method = Method::kHwKmeans;
  int k = 16;                // levels (ecsq: k_max centres, started at HW k-means' answer); ignored by binary/ternary
  // Rate goals: at most one of lambda, target_bits and target_ratio is non-zero; lambda only with ecsq; step only
  // with uniform and no target. Those are kInvalidArgument, not ignored (k for binary/ternary, and the int and pow2
  // knobs for other methods, are still ignored).
  double lambda = 0.0;       // ecsq multiplier on the entropy (bits/weight) in J = D + λH
  double step = 0.0;         // uniform: cell width Δ; 0 = k cells cover max|w| where the importance is > 0
  // > 0: ecsq/uniform search λ or Δ so that the entropy of the weights quantized lands on this, in bits per kept
  // weight (with pruning QuantStats::entropy_bits_per_weight counts every weight: the target times kept / N there).
  double target_bits = 0.0;
  double target_ratio = 0.0; // > 0: the same for 32 / target_ratio bits (no codebook, table or positions counted)
  Init init = Init::kLinear;
  int max_iter = 100;        // Lloyd / ECSQ / wentropy sweeps
  double tol = 1e-7;         // stop when the objective decreases by less than tol (relative)
  uint64_t seed = 1234;      // kmeans++ and any other randomness
  bool int_symmetric = true; // int: symmetric grid around 0 (else asymmetric min/max grid)
  int int_bits = 4;          // int: grid bits
  int pow2_levels = 8;       // pow2: exponents per sign ({±a·2^-e}, e = 0..pow2_levels-1) plus nothing else
  int64_t exact_histogram_bins = 0;  // exact: 0 = auto (exact below 2^22 distinct values, else 2^20 bins)
  // kmeans / hw-kmeans / ecsq: start from these centres instead of `init` (a warm start, e.g. the previous
  // codebook in an LC run; ECSQ starts from them as they are, without HW k-means first); non-finite entries are
  // an error, duplicates are merged. ECSQ's code lengths still
  // start uniform (log2 of the number of centres).
  std::vector<double> initial_centers;
  Backend backend = Backend::kAuto;
};

struct IterationStats {
  int iteration;
  double objective;   // J = D + λH (D for λ = 0)
  double distortion;  // importance-weighted D = (1/N) Σ h (ŵ − w)²
  double entropy;     // bits per weight
  int clusters;       // non-empty clusters
};

struct QuantizeResult {
  std::vector<float> codebook;   // sorted ascending, non-empty clusters only
  std::vector<int32_t> indices;  // one per value, into codebook
  double hw_distortion = 0;      // (1/N) Σ h (ŵ − w)², h the importance the method clustered with (1 for kmeans)
  double mse = 0;                // (1/N) Σ (ŵ − w)²
  double entropy_bits = 0;       // −Σ p log2 p over used clusters
  double lambda = 0;             // the λ used (after a target search)
  double step = 0;               // uniform: the Δ used
  int iterations = 0;
  bool converged = false;
  double seconds = 0;
  Backend backend = Backend::kCpu;  // where it ran: problems under 16384 values run on the CPU even with cuda
  std::vector<IterationStats> history;
};

// Quantizes n values with optional importances (nullptr = all ones). Deterministic for a given seed/backend.
QuantizeResult quantize(const float* values, const float* importance, size_t n, const QuantizeParams& params);

// ECSQ (method ecsq at given λ, no target rate) at every λ of `lambdas` on the same values: one validation, one
// sort and starting codebook, and the iterations of all λ in lockstep, sharing each pass over the data (on CUDA,
// one launch per pass serves every λ still iterating). Result m equals quantize() with params.lambda =
// lambdas[m], bit for bit (seconds: the call's time shared out).
std::vector<QuantizeResult> quantize_lambdas(const float* values, const float* importance, size_t n,
                                             const QuantizeParams& params, const std::vector<double>& lambdas);

// ---- whole models ---------------------------------------------------------------------------------------
enum class ScopeKind { kGlobal, kTensor, kRow, kGroup };
struct Scope {
  ScopeKind kind = ScopeKind::kGlobal;
  int64_t group = 0;  // kGroup: weights per group, in [1, kMaxGroupSize)
};
// The largest group size + 1: the .nq format's limit (a group larger than a tensor is that tensor anyway).
constexpr int64_t kMaxGroupSize = int64_t{1} << 62;
Scope parse_scope(const std::string& text);  // "global" | "tensor" | "row" | "group:G"
std::string scope_to_string(const Scope& scope);

enum class ImportanceTransform { kNone, kSqrt, kNormalize };
ImportanceTransform parse_importance_transform(const std::string& name);

// How a target rate (QuantizeParams::target_bits / target_ratio) is met when the scope gives many codebooks.
// kPerProblem: every row, group or tensor searches its own λ (or Δ) to reach the target itself.
// kSharedLambda (ecsq): one λ for every problem, searched so that the model's entropy per kept weight reaches the
// target. Each problem then minimises D_j + λ·H_j at the same slope, so the model's bits go where they lower the
// importance-weighted distortion most (the Lagrangian rate allocation): at the same model rate its total
// distortion is lower than every problem at the same rate. Global scope (one problem) is the same either way.
enum class RateAllocation { kPerProblem, kSharedLambda };
RateAllocation parse_rate_allocation(const std::string& name);  // "per-problem" | "shared-lambda"
std::string rate_allocation_name(RateAllocation allocation);

struct ModelQuantizeParams {
  QuantizeParams quant;
  Scope scope;
  double prune = 0.0;  // fraction of weights with the smallest h·w² (|w| without importance, for any method) set to 0
  ImportanceTransform importance_transform = ImportanceTransform::kNone;  // other than kNone: needs an importance
  bool skip_1d = false;  // leave 1-D tensors (biases) in float
  // Tensors to quantize by name (empty = no filter): a tensor is quantized iff it is a non-empty float tensor,
  // not 1-D under skip_1d, its name matches include_regex (when given) and does not match exclude_regex (when
  // given). Matching is RE2's PartialMatch (RE2 syntax, linear time): the pattern may match anywhere in the name, as
  // grep does (anchor it with ^...$ for a whole name), e.g. exclude_regex = "embed|lm_head|norm". Tensors not
  // selected are kept in float as skip_1d keeps them (QuantizedTensor::quantized = false) and need no importance.
  // An invalid pattern, or patterns that leave no tensor to quantize, are kInvalidArgument.
  std::string include_regex;
  std::string exclude_regex;
  // Warm starts, one codebook per problem in codebook order (e.g. a previous QuantizedModel's codebooks):
  // problem j starts from initial_codebooks[j] (see QuantizeParams::initial_centers). Ignored unless there is
  // exactly one per problem.
  std::vector<std::vector<float>> initial_codebooks;
  // Row, group and tensor scopes: convert and quantize about this many weights at a time (whole tensors, at least
  // one), so that a model larger than memory streams through in waves; 0 = automatic (all at once when the
  // working copies fit in half the available memory). The result does not depend on it. Global scope takes the
  // whole model at once.
  int64_t batch_weights = 0;
  // With a target rate: see RateAllocation. kSharedLambda needs method ecsq and a target.
  RateAllocation rate_allocation = RateAllocation::kPerProblem;
};

// Statistics of a tensor or of the whole model (the report's keys).
struct QuantStats {
  int64_t params = 0;
  int64_t pruned = 0;
  int clusters = 0;                 // distinct levels used (max over problems for row/group scopes)
  double hw_distortion = 0;         // (1/N) Σ h (ŵ − w)², h the given importance (for every method), else 1
  double mse = 0;
  double entropy_bits_per_weight = 0;
  double fixed_bits_per_weight = 0; // ⌈log2 k⌉ (+ codebook share)
  double ratio_fixed = 0;           // Choi et al. eq. 2: N·32 / (N·⌈log2 k⌉ + k·32)
  double ratio_entropy = 0;         // same with the entropy in place of the code length
  double huffman_bits_per_weight = 0;  // filled by the coder (coding.h); 0 until then
  double ratio_huffman = 0;
  double ratio_file = 0;
  double lambda = 0;
  int iterations = 0;
  bool converged = true;
  double seconds = 0;
};

struct QuantizedTensor {
  std::string name;
  DType dtype = DType::kF32;     // the input's dtype (restored on dequantization)
  std::vector<int64_t> shape;
  bool quantized = true;         // false: kept in float (skip_1d, a name filter); `original` holds the values
  Tensor original;
  int64_t problem_size = 0;      // weights sharing one codebook: numel (global/tensor), row length, G
  int64_t first_codebook = 0;    // this tensor's first codebook in QuantizedModel::codebooks
  int64_t num_problems = 0;      // codebooks this tensor uses (global: 1 shared, tensor: 1, row: rows, group: ⌈n/G⌉)
  IndexArray indices;            // per weight, into codebooks[first_codebook + i / problem_size]; kPrunedIndex
  QuantStats stats;
};

// How a .nq file codes each quantized tensor's indices. kAuto: Huffman or rANS, whichever makes the tensor's payload
// smaller (rANS wins below about 1.5 bits per weight, where Huffman's one-bit floor per weight costs most); a file
// with any rANS tensor is .nq version 2. kHuffman: Huffman only, a version-1 file that any netquant reads. kRans:
// rANS for every tensor with a kept weight (tests and measurements).
// (parse_index_coder and index_coder_name are in coding.h.)
enum class IndexCoder { kAuto, kHuffman, kRans };

struct QuantizedModel {
  Method method = Method::kHwKmeans;
  Scope scope;
  std::vector<std::vector<float>> codebooks;  // global scope: exactly one, shared by every tensor
  std::vector<QuantizedTensor> tensors;
  QuantStats total;
  Backend backend = Backend::kCpu;
  int64_t waves = 1;  // how many waves the quantized tensors went through (ModelQuantizeParams::batch_weights)
  IndexCoder index_coder = IndexCoder::kAuto;  // how write_nq_file, serialize_nq and account_coding code indices

  // The dequantized weights, same names/shapes/dtypes as the input (pruned weights exactly 0).
  TensorSet dequantize() const;
};

// `importance` may be null (all ones). Names and shapes must match the model's (kShapeMismatch otherwise).
QuantizedModel quantize_model(const TensorSet& model, const TensorSet* importance, const ModelQuantizeParams& params);
// The model with exactly the weights quantize_model(model, importance, params) prunes set to +0: the fraction
// params.prune of the quantized weights with the smallest h·w² (with params.skip_1d, include_regex, exclude_regex
// and params.importance_transform as there; the method and k do not matter). Every other value keeps its bits, and
// every tensor its name, shape and dtype; the model's metadata is kept. The start of retraining a pruned net (TrainParams::keep_zeros):
// quantize_model with the same prune then prunes the same weights again, since they have the smallest h·w² (0),
// but for ties with kept weights whose (new) importance is exactly 0.
TensorSet prune_model(const TensorSet& model, const TensorSet* importance, const ModelQuantizeParams& params);
// The same tensors handed to `take` one at a time, in the model's order (a view of the input when nothing in it is
// pruned), so that a writer can stream a model larger than memory: the selection is converted at once when it
// fits in half the available memory (or params.batch_weights covers it), else the pruning cut is found in passes
// over the unconverted model and each tensor is converted on its own.
void prune_model_each(const TensorSet& model, const TensorSet* importance, const ModelQuantizeParams& params,
                      const std::function<void(Tensor)>& take);
// ECSQ at every λ of `lambdas` (params.quant.method ecsq, no target rate): one validation, pruning and split
// into problems, then each problem through quantize_lambdas. Model m equals quantize_model with
// params.quant.lambda = lambdas[m] (the sweep's batches of λ points).
std::vector<QuantizedModel> quantize_model_lambdas(const TensorSet& model, const TensorSet* importance,
                                                   const ModelQuantizeParams& params,
                                                   const std::vector<double>& lambdas);

}  // namespace nq
