// Learning-compression (LC) quantization of the built-in networks: an augmented Lagrangian that alternates SGD
// on the task loss plus a quadratic penalty (L step) with quantizing the shifted weights (C step), after
// Carreira-Perpiñán & Idelbayev, "Model compression as constrained optimization ... Part II: quantization" (2017).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "netquant/io.h"
#include "netquant/nn.h"
#include "netquant/quantize.h"

namespace nq {

struct LcStepStats {
  int step = -1;                 // -1: direct compression Θ = Π(w̄) before any L step
  double mu = 0;
  double lr = 0;                 // the (clipped) learning rate of the step's first epoch
  double violation = 0;          // ‖w − Δ(Θ)‖₂ after the C step (over the quantized tensors)
  double relative_violation = 0; // violation / ‖w‖₂
  double train_loss = 0;         // mean task loss over the L step's last epoch (NaN for step -1)
  double penalty = 0;            // (μ/2)‖w − Δ(Θ) − λ/μ‖² after the C step
  double test_loss = 0;          // of the compressed net Δ(Θ) (NaN without test data)
  double test_accuracy = 0;      // of Δ(Θ)
  double test_accuracy_w = 0;    // of the L-step weights w (NaN for step -1: w is the reference)
  std::vector<float> codebook;   // the first problem's codebook
  double seconds = 0;            // wall time of the step
};

// Defaults are sized for a loaded 2-core CPU (minutes, not hours). The authors' LeNet300 example is
// μ0 = 9e-5, a = 1.1, 40 steps of 20 epochs over all 60,000 images (800 epochs): with only T·E = 12 epochs, μ has to
// reach O(1) within the run for the penalty to pull w onto Δ(Θ), so μ0 = 1e-3, a = 2 (μ_11 ≈ 2). Measured on
// LeNet-300-100: ‖w − Δ(Θ)‖ stays near its direct-compression value until μ ≈ 0.01 — the largest μ that μ0 = 9e-5,
// a = 1.5 reaches in 12 steps — and falls 30× by μ ≈ 2 (bench/RESULTS.md, "LC algorithm").
struct LcParams {
  ModelQuantizeParams compress;  // the C step Π: method, k/bits/λ, scope, importance transform, skip_1d
  double mu0 = 1e-3;             // μ_0
  double mu_factor = 2.0;        // a: μ_t = μ_0 · a^t
  int steps = 12;                // T (LC iterations)
  int epochs_per_step = 1;       // E: epochs of the L step
  double lr = 0.05;              // L-step learning rate, clipped to <= 1/μ_t
  double lr_decay = 0.98;        // lr multiplied by this after every L-step epoch (as the authors' schedule)
  double momentum = 0.9;         // Nesterov momentum (reset at the start of every L step)
  int64_t batch = 128;
  int64_t train_subset = 0;      // first N training images (0 = all)
  int64_t test_subset = 0;       // first N test images for the per-step log (0 = all)
  uint64_t seed = 1;             // mini-batch shuffles
  Backend backend = Backend::kAuto;
  bool progress = true;
  std::function<void(const LcStepStats&)> on_step;  // after each step (and once for direct compression)
};


struct LcResult {
  QuantizedModel compressed;         // final Θ; its dequantize() is the final net w = Δ(Θ)
  QuantizedModel direct;             // Θ = Π(w̄): direct compression of the reference weights
  std::vector<LcStepStats> history;  // history[0] is direct compression (step -1), then steps 0..T−1
  double seconds = 0;
};

// Runs LC from the trained weights of `model`. `importance` (optional, names/shapes of the weights) weights the
// C step's distortion (a derived variant: the L-step penalty stays unweighted). `test` may be null.
LcResult lc_compress(const Model& model, const Dataset& train, const Dataset* test, const TensorSet* importance,
                     const LcParams& params);

// ---- the pieces, exposed for tests and for custom loops -------------------------------------------------

// C step: Θ = Π(w − λ/μ) by quantize_model; `lambda` null means λ = 0, i.e. direct compression Π(w).
QuantizedModel lc_c_step(const TensorSet& w, const TensorSet* lambda, double mu, const TensorSet* importance,
                         const ModelQuantizeParams& params);

// The L-step penalty (μ/2) Σ (w − Δ − λ/μ)² over n values (fp64), and its gradient μ(w − Δ − λ/μ) ADDED to grad.
double lc_penalty(const float* w, const float* delta, const float* lambda, double mu, size_t n);
void lc_add_penalty_gradient(const float* w, const float* delta, const float* lambda, double mu, float* grad,
                             size_t n);

// The L-step objective on all of `data`: mean cross-entropy at weights `w` plus the penalty over the tensors named
// in `penalized` (their Δ and λ from `delta`/`lambda`), and its gradient (names/shapes of the model's parameters).
struct LcObjective {
  double value = 0;
  TensorSet gradient;
};
LcObjective lc_l_objective(const Model& model, const TensorSet& w, const TensorSet& delta, const TensorSet& lambda,
                           const std::vector<std::string>& penalized, double mu, const Dataset& data,
                           Backend backend = Backend::kAuto);

// ---- quantized-forward training with weighted-entropy quantization (Park, Ahn & Yoo, CVPR 2017) -----------
// Weights: a full-precision copy is trained; every forward pass uses its quantization (re-quantized before each
// step, straight-through gradient). Activations: every ReLU output is quantized (log-domain weighted-entropy levels,
// or the linear-grid baseline) with quantizers fitted on a calibration batch; straight-through gradient where the
// quantized value is > 0. CPU backend (the activation hook works on host memory). Biases stay in float.
enum class ActivationQuant { kNone, kLogWeightedEntropy, kLinear };
ActivationQuant parse_activation_quant(const std::string& name);  // "none" | "wentropy" | "linear"
const char* activation_quant_name(ActivationQuant kind);

struct QuantTrainParams {
  Method weight_method = Method::kWentropy;  // kWentropy (2^bits levels per tensor) or kInt (symmetric b-bit grid)
  int weight_bits = 3;
  ActivationQuant activation = ActivationQuant::kLogWeightedEntropy;
  int activation_bits = 3;
  int epochs = 1;
  int64_t batch = 64;
  double lr = 1e-4;                // Adam on the full-precision weights
  int64_t train_subset = 0;        // first N training images (0 = all)
  int64_t test_subset = 0;         // first N test images (0 = all)
  int64_t calibration_samples = 512;  // training images whose activations fit the activation quantizers
  int requantize_every = 1;        // re-quantize the weights every this many steps
  uint64_t seed = 1;
  bool progress = true;
};
struct QuantTrainResult {
  double float_accuracy = 0;       // the input model, no quantization
  double accuracy_before = 0;      // quantized weights and activations, before training
  double accuracy_after = 0;       // after training (final weights quantized, activations re-fitted)
  std::vector<std::string> activation_quantizers;  // one description per ReLU ("fsr -12 step 7", "delta 0.31")
  QuantizedModel weights;          // the final quantized weights
  std::vector<double> epoch_loss;  // mean training loss per epoch (quantized forward)
  double seconds = 0;
};
QuantTrainResult quantized_train(const Model& model, const Dataset& train, const Dataset& test,
                                 const QuantTrainParams& params);

}  // namespace nq
