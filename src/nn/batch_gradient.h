// Internal: the mean cross-entropy gradient of one training batch, data-parallel on the CPU.
//
// A batch of 64 images makes GEMMs too small for OpenBLAS's threads to pay (measured: 1.03-1.2x on 2 threads),
// and the im2col, pooling and softmax loops between them run on one thread. So on the CPU a batch is split into
// a fixed number of micro-batches, each run forward and backward by its own replica of the network (sharing the
// weights, one OpenBLAS thread each) on the host's threads, and their gradients are summed in micro-batch order.
// The number of micro-batches depends on the batch size alone, never on the thread count, so the result is
// bitwise the same for any --threads. On CUDA the whole batch is one micro-batch (one network, as before).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "netquant/nn.h"
#include "nn/network.h"

namespace nq::nn {

class BatchGradient {
 public:
  // A micro-batch's gradient costs a write and a summing read of every parameter, so a micro-batch carries at
  // least kMinFlopsPerParam FLOPs (forward and backward) per parameter, and at least kMinMicroBatch images.
  // Measured on 2 cores: LeNet-300-100 (6 FLOPs per parameter and image) gains 1.8x from 2 micro-batches of 32
  // and nothing reliable from 4 of 16; LeNet-5 (32 per parameter and image) 1.7x from 4 of 16.
  static constexpr int64_t kMinFlopsPerParam = 192;
  static constexpr int64_t kMinMicroBatch = 16;
  static constexpr int kMaxMicroBatches = 8;
  // Images per micro-batch for a network of `params` parameters and `forward_flops` FLOPs per image.
  static int64_t micro_batch_size(int64_t params, int64_t forward_flops);
  // How many micro-batches a batch of `count` images is split into: ceil(count / micro_batch), at most
  // kMaxMicroBatches; always 1 off the CPU.
  static int micro_batches(int64_t count, int64_t micro_batch, Backend backend);

  BatchGradient(const NetSpec& spec, Backend backend);
  ~BatchGradient();

  // Applied after every ReLU of every replica (see Network::set_activation_hook); it is called from several
  // threads at once, so it must not write shared state.
  void set_activation_hook(const Network<float>::ActivationHook& hook);

  // For images idx[0..count) of `data` under `weights` (num_params() floats, backend memory, read only): writes
  // d(mean loss)/dθ into `grad` (num_params() floats, backend memory) and adds the images' losses and correct
  // flags, in image order, to *loss_sum and *correct_sum (either may be null).
  void compute(const float* weights, const Dataset& data, const int64_t* idx, int64_t count, float* grad,
               double* loss_sum, double* correct_sum);

  int64_t num_params() const;
  Backend backend() const { return backend_; }

 private:
  struct Replica;
  NetSpec spec_;
  Backend backend_;
  int64_t micro_batch_ = kMinMicroBatch;
  std::vector<std::unique_ptr<Replica>> replicas_;
  Network<float>::ActivationHook hook_;
};

}  // namespace nq::nn
