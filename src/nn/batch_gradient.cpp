// The data-parallel batch gradient (see batch_gradient.h).
#include "nn/batch_gradient.h"

#include <algorithm>

#include "core/iteration_errors.h"
#include "core/parallel_for.h"
#include "nn/model_internal.h"

namespace nq::nn {

struct BatchGradient::Replica {
  Replica(const NetSpec& spec, Backend b) : net(spec, b), loader(b), dz(b), grad(b) {}
  Network<float> net;
  BatchLoader loader;
  Buffer<float> dz, grad;  // grad: this micro-batch's share (unused when it is the only one)
  int64_t first = 0, count = 0;
};

int64_t BatchGradient::micro_batch_size(int64_t params, int64_t forward_flops) {
  const int64_t per_image = std::max<int64_t>(1, 3 * forward_flops);  // forward, input and weight gradients
  return std::max(kMinMicroBatch, (kMinFlopsPerParam * params + per_image - 1) / per_image);
}

int BatchGradient::micro_batches(int64_t count, int64_t micro_batch, Backend backend) {
  if (backend != Backend::kCpu || count <= micro_batch) return 1;
  return static_cast<int>(std::min<int64_t>((count + micro_batch - 1) / micro_batch, kMaxMicroBatches));
}

BatchGradient::BatchGradient(const NetSpec& spec, Backend backend) : spec_(spec), backend_(backend) {
  replicas_.push_back(std::make_unique<Replica>(spec_, backend_));
  const Network<float>& net = replicas_.front()->net;
  micro_batch_ = micro_batch_size(net.num_params(), net.forward_flops_per_sample());
}

BatchGradient::~BatchGradient() = default;

int64_t BatchGradient::num_params() const { return replicas_.front()->net.num_params(); }

void BatchGradient::set_activation_hook(const Network<float>::ActivationHook& hook) {
  hook_ = hook;
  for (auto& r : replicas_) r->net.set_activation_hook(hook_);
}

namespace {

// Adds the per-image losses and correct flags of the network's last forward, in image order.
void add_sums(const Network<float>& net, double* loss_sum, double* correct_sum) {
  const int64_t n = net.batch();
  std::vector<float> v(static_cast<size_t>(n));
  if (loss_sum) {
    NQ_NN_OP(net.backend(), buffer_download, v.data(), net.sample_loss(), n);
    for (float x : v) *loss_sum += x;
  }
  if (correct_sum) {
    NQ_NN_OP(net.backend(), buffer_download, v.data(), net.sample_correct(), n);
    for (float x : v) *correct_sum += x;
  }
}

}  // namespace

void BatchGradient::compute(const float* weights, const Dataset& data, const int64_t* idx, int64_t count, float* grad,
                            double* loss_sum, double* correct_sum) {
  NQ_CHECK(count > 0, ErrorCode::kInvalidArgument, "gradient of an empty batch");
  const int m = micro_batches(count, micro_batch_, backend_);
  while (static_cast<int>(replicas_.size()) < m) {
    replicas_.push_back(std::make_unique<Replica>(spec_, backend_));
    replicas_.back()->net.set_activation_hook(hook_);
  }
  // Micro-batch j holds count / m images, one more for the first count % m. The images are gathered here, on
  // the calling thread, so that a bad label is reported as it would be without micro-batches.
  const int64_t base = count / m, extra = count % m;
  int64_t first = 0;
  for (int j = 0; j < m; ++j) {
    Replica& r = *replicas_[size_t(j)];
    r.first = first;
    r.count = base + (j < extra ? 1 : 0);
    first += r.count;
    r.loader.load(spec_, data, idx + r.first, r.count);
  }
  const int64_t classes = spec_.num_classes;
  auto run = [&](Replica& r, float* out) {
    r.net.use_external_weights(weights);
    r.net.forward(r.loader.x.data(), r.loader.y.data(), r.count);
    r.dz.ensure(r.count * classes);
    // Scaled by the whole batch (1/count): the micro-batches' gradients add up to the batch's mean.
    NQ_NN_OP(backend_, softmax_ce_backward, r.net.probs(), r.loader.y.data(), r.dz.data(), 1.0f / float(count),
             r.count, classes);
    r.net.backward(BackwardMode::kGradient, r.dz.data(), out);
  };
  if (backend_ != Backend::kCpu) {
    NQ_ASSERT(m == 1);
    run(*replicas_.front(), grad);
  } else {
    // One OpenBLAS thread per GEMM, for a lone micro-batch too: OpenBLAS's results depend on its thread count.
    cpu::SingleThreadedBlas one_blas_thread;
    if (m == 1) {
      run(*replicas_.front(), grad);
    } else {
      const int64_t np = num_params();
      IterationErrors errors(static_cast<size_t>(m));
      parallel_for(m, 1, [&](int64_t j) {
        Replica& r = *replicas_[size_t(j)];
        errors.run(size_t(j), [&] {
          r.grad.ensure(np);
          run(r, r.grad.data());
        });
      });
      errors.rethrow_first();
      // grad = g_0 + g_1 + ... in micro-batch order, whatever thread sums which parameters.
      constexpr int64_t kChunk = 16384;
      parallel_for((np + kChunk - 1) / kChunk, 1, [&](int64_t c) {
        const int64_t i0 = c * kChunk, i1 = std::min(np, i0 + kChunk);
        const float* g0 = replicas_[0]->grad.data();
        for (int64_t i = i0; i < i1; ++i) grad[i] = g0[i];
        for (int j = 1; j < m; ++j) {
          const float* g = replicas_[size_t(j)]->grad.data();
          for (int64_t i = i0; i < i1; ++i) grad[i] += g[i];
        }
      });
    }
  }
  for (int j = 0; j < m; ++j) add_sums(replicas_[size_t(j)]->net, loss_sum, correct_sum);
}

}  // namespace nq::nn
