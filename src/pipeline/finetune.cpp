// Fine-tuning of shared values: the assignment stays, each codebook entry moves by Adam (or SGD with momentum) on the
// mean (or sum) of its members' loss gradients (Choi et al. 2017; Han et al., Deep Compression, eq. 3).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include "netquant/error.h"
#include "netquant/pipeline.h"
#include "netquant/progress.h"
#include "nn/data_parallel_net.h"
#include "nn/model_internal.h"

namespace nq {

FinetuneResult finetune_shared_values(const Model& model, QuantizedModel& q, const Dataset& train,
                                      const FinetuneParams& params) {
  NQ_CHECK(params.epochs >= 0, ErrorCode::kInvalidArgument, "fine-tuning: --epochs must be >= 0, got " << params.epochs);
  NQ_CHECK(params.batch > 0, ErrorCode::kInvalidArgument, "fine-tuning: --batch must be > 0, got " << params.batch);
  NQ_CHECK(params.lr > 0 && std::isfinite(params.lr), ErrorCode::kInvalidArgument,
           "fine-tuning: --lr must be > 0, got " << params.lr);
  NQ_CHECK(params.momentum >= 0 && params.momentum < 1, ErrorCode::kInvalidArgument,
           "fine-tuning: --momentum must be in [0, 1), got " << params.momentum);
  const auto start = std::chrono::steady_clock::now();
  FinetuneResult result;
  const Dataset data = dataset_head(train, params.train_subset);
  const int64_t n = data.size();
  NQ_CHECK(n > 0, ErrorCode::kInvalidArgument, "fine-tuning: no training images");

  // Flat view of every codebook entry, with Adam's moments (m, v) or SGD's momentum buffer (m).
  std::vector<size_t> cb_offset(q.codebooks.size() + 1, 0);
  for (size_t c = 0; c < q.codebooks.size(); ++c) cb_offset[c + 1] = cb_offset[c] + q.codebooks[c].size();
  const size_t num_centers = cb_offset.back();
  std::vector<double> m(num_centers, 0), v(num_centers, 0), grad(num_centers), count(num_centers);
  const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  int64_t step = 0;

  nn::check_dataset(model.spec(), data, "fine-tuning data");
  nn::DataParallelNet replicas(model.spec(), nn::prepare_backend(params.backend));  // kept across the steps
  std::mt19937_64 rng(params.seed);
  std::vector<int64_t> order(static_cast<size_t>(n));
  const int64_t batches_per_epoch = (n + params.batch - 1) / params.batch;
  Progress progress("fine-tune", batches_per_epoch * params.epochs);
  for (int epoch = 0; epoch < params.epochs; ++epoch) {
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    for (int64_t b = 0; b < batches_per_epoch; ++b) {
      const int64_t lo = b * params.batch, hi = std::min(n, lo + params.batch);
      const Dataset batch = dataset_subset(data, std::vector<int64_t>(order.begin() + lo, order.begin() + hi));
      const TensorSet weights = q.dequantize();
      const TensorSet g = nn::compute_gradients(replicas, weights, batch, params.batch);

      std::fill(grad.begin(), grad.end(), 0.0);
      std::fill(count.begin(), count.end(), 0.0);
      for (const auto& t : q.tensors) {
        if (!t.quantized) continue;
        const auto gt = g.at(t.name).to_f32();
        for (size_t i = 0; i < t.indices.size(); ++i) {
          const int32_t idx = t.indices[i];
          if (idx == kPrunedIndex) continue;
          const size_t c = static_cast<size_t>(t.first_codebook + static_cast<int64_t>(i) / t.problem_size);
          const size_t flat = cb_offset[c] + static_cast<size_t>(idx);
          grad[flat] += gt[i];
          count[flat] += 1;
        }
      }
      ++step;
      const double bc1 = 1 - std::pow(beta1, static_cast<double>(step));
      const double bc2 = 1 - std::pow(beta2, static_cast<double>(step));
      for (size_t c = 0; c < q.codebooks.size(); ++c) {
        for (size_t j = 0; j < q.codebooks[c].size(); ++j) {
          const size_t flat = cb_offset[c] + j;
          if (count[flat] == 0) continue;
          const double gj = params.average_gradients ? grad[flat] / count[flat] : grad[flat];
          double update = 0;
          if (params.optimizer == OptimizerKind::kSgd) {
            m[flat] = params.momentum * m[flat] + gj;
            update = params.lr * m[flat];
          } else {
            m[flat] = beta1 * m[flat] + (1 - beta1) * gj;
            v[flat] = beta2 * v[flat] + (1 - beta2) * gj * gj;
            update = params.lr * (m[flat] / bc1) / (std::sqrt(v[flat] / bc2) + eps);
          }
          q.codebooks[c][j] = static_cast<float>(q.codebooks[c][j] - update);
        }
      }
      progress.update(epoch * batches_per_epoch + b + 1);
    }
    // Training loss at the end of the epoch on (up to) 2,000 of its images: a cheap, fixed yardstick.
    Model current = model;
    current.set_weights(q.dequantize());
    EvalParams ep;
    ep.backend = params.backend;
    result.epoch_loss.push_back(evaluate(current, dataset_head(data, 2000), ep).loss);
  }
  progress.finish();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace nq
