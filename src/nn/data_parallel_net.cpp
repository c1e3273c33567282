// A built-in network run data-parallel over micro-batches (see data_parallel_net.h).
#include "nn/data_parallel_net.h"

#include <algorithm>

#include "core/iteration_errors.h"
#include "core/parallel_for.h"
#include "nn/model_internal.h"

namespace nq::nn {

struct DataParallelNet::Replica {
  Replica(const NetSpec& spec, Backend b) : net(spec, b, /*own_weights=*/false), loader(b), dz(b), grad(b) {}
  Network<float> net;
  BatchLoader loader;
  Buffer<float> dz, grad;  // grad: this micro-batch's output (gradient() writes the first one's to the caller's)
  int64_t count = 0;
};

int64_t DataParallelNet::micro_batch_size(int64_t params, int64_t forward_flops) {
  const int64_t per_image = std::max<int64_t>(1, 3 * forward_flops);  // forward, input and weight gradients
  return std::max(kMinMicroBatch, (kMinFlopsPerParam * params + per_image - 1) / per_image);
}

int DataParallelNet::micro_batches(int64_t count, int64_t micro_batch, Backend backend) {
  if (backend != Backend::kCpu) return 1;
  return static_cast<int>(std::min<int64_t>((count + micro_batch - 1) / micro_batch, kMaxMicroBatches));
}

DataParallelNet::DataParallelNet(const NetSpec& spec, Backend backend) : spec_(spec), backend_(backend) {
  replicas_.push_back(std::make_unique<Replica>(spec_, backend_));
  const Network<float>& net = replicas_.front()->net;
  micro_batch_ = micro_batch_size(net.num_params(), net.forward_flops_per_sample());
}

DataParallelNet::~DataParallelNet() = default;

int64_t DataParallelNet::num_params() const { return replicas_.front()->net.num_params(); }

void DataParallelNet::set_activation_hook(const Network<float>::ActivationHook& hook) {
  hook_ = hook;
  for (auto& r : replicas_) r->net.set_activation_hook(hook_);
}

void DataParallelNet::add_sums(int micro_batches, double* loss_sum, double* correct_sum) const {
  std::vector<float> v;
  for (int j = 0; j < micro_batches; ++j) {
    const Network<float>& net = replicas_[size_t(j)]->net;
    v.resize(static_cast<size_t>(net.batch()));
    if (loss_sum) {
      NQ_NN_OP(backend_, buffer_download, v.data(), net.sample_loss(), net.batch());
      for (float x : v) *loss_sum += x;
    }
    if (correct_sum) {
      NQ_NN_OP(backend_, buffer_download, v.data(), net.sample_correct(), net.batch());
      for (float x : v) *correct_sum += x;
    }
  }
}

template <class Work>
int DataParallelNet::run_micro_batches(const Dataset& data, const int64_t* idx, int64_t count, Work&& work) {
  NQ_CHECK(count > 0, ErrorCode::kInvalidArgument, "an empty batch");
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
    r.count = base + (j < extra ? 1 : 0);
    r.loader.load(spec_, data, idx + first, r.count);
    first += r.count;
  }
  if (backend_ != Backend::kCpu) {
    NQ_ASSERT(m == 1);
    work(*replicas_.front());
  } else if (m == 1) {
    // One OpenBLAS thread per GEMM, for a lone micro-batch too: OpenBLAS's results depend on its thread count.
    cpu::SingleThreadedBlas one_blas_thread(/*serial_caller=*/true);
    work(*replicas_.front());
  } else {
    cpu::SingleThreadedBlas one_blas_thread(/*serial_caller=*/false);
    IterationErrors errors;
    parallel_for(m, 1, [&](int64_t j) { errors.run(size_t(j), [&] { work(*replicas_[size_t(j)]); }); });
    errors.rethrow_first();
  }
  // The caller's weights need not outlive this call: no replica keeps a pointer to them.
  for (int j = 0; j < m; ++j) replicas_[size_t(j)]->net.use_external_weights(nullptr);
  return m;
}

void DataParallelNet::gradient(const float* weights, const Dataset& data, const int64_t* idx, int64_t count,
                               float* grad, double* loss_sum, double* correct_sum) {
  const int64_t np = num_params(), classes = spec_.num_classes;
  const int m = run_micro_batches(data, idx, count, [&](Replica& r) {
    r.net.use_external_weights(weights);
    r.net.forward(r.loader.x.data(), r.loader.y.data(), r.count);
    r.dz.ensure(r.count * classes);
    // Scaled by the whole batch (1/count): the micro-batches' gradients add up to the batch's mean.
    NQ_NN_OP(backend_, softmax_ce_backward, r.net.probs(), r.loader.y.data(), r.dz.data(), 1.0f / float(count),
             r.count, classes);
    float* out = grad;  // the first micro-batch writes the batch's gradient itself, the others their own share
    if (&r != replicas_.front().get()) {
      r.grad.ensure(np);
      out = r.grad.data();
    }
    r.net.backward(BackwardMode::kGradient, r.dz.data(), out);
  });
  if (m > 1) {  // host memory (the CPU backend): grad = g_0 + g_1 + ... in micro-batch order, in parameter chunks
    parallel_for_chunks(np, kElementwiseChunk, [&](int64_t i0, int64_t i1) {
      for (int j = 1; j < m; ++j) {
        const float* g = replicas_[size_t(j)]->grad.data();
        for (int64_t i = i0; i < i1; ++i) grad[i] += g[i];
      }
    });
  }
  add_sums(m, loss_sum, correct_sum);
}

void DataParallelNet::accumulate(const float* weights, const Dataset& data, const int64_t* idx, int64_t count,
                                 const BackwardPass& pass, std::vector<double>& sum) {
  const int64_t np = num_params();
  NQ_ASSERT(static_cast<int64_t>(sum.size()) == np);
  const int m = run_micro_batches(data, idx, count, [&](Replica& r) {
    r.net.use_external_weights(weights);
    r.net.forward(r.loader.x.data(), r.loader.y.data(), r.count);
    r.grad.resize(np);  // zeroed: the squared-gradient passes accumulate into it
    pass(r.net, r.loader.y.data(), r.dz, r.grad.data());
  });
  std::vector<float> host;  // off the CPU, the lone micro-batch's output downloaded
  const float* first = replicas_[0]->grad.data();
  if (backend_ != Backend::kCpu) {
    host = replicas_[0]->grad.download();
    first = host.data();
  }
  parallel_for_chunks(np, kElementwiseChunk, [&](int64_t i0, int64_t i1) {  // micro-batch order inside each chunk
    for (int j = 0; j < m; ++j) {
      const float* g = j == 0 ? first : replicas_[size_t(j)]->grad.data();
      for (int64_t i = i0; i < i1; ++i) sum[size_t(i)] += g[i];
    }
  });
}

void DataParallelNet::evaluate(const float* weights, const Dataset& data, const int64_t* idx, int64_t count,
                               double* loss_sum, double* correct_sum) {
  const int m = run_micro_batches(data, idx, count, [&](Replica& r) {
    r.net.use_external_weights(weights);
    r.net.forward(r.loader.x.data(), r.loader.y.data(), r.count);
  });
  add_sums(m, loss_sum, correct_sum);
}

}  // namespace nq::nn
