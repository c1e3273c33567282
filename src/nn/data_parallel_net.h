// Internal: a built-in network run data-parallel on the CPU, for training gradients and for evaluation.
//
// A batch of 64 images makes GEMMs too small for OpenBLAS's threads to pay (measured: 1.03-1.2x on 2 threads),
// and the im2col, pooling and softmax loops between the GEMMs run on one thread while OpenBLAS's idle workers
// spin. So on the CPU a batch is split into micro-batches, each run by its own replica of the network (sharing
// the weights, one OpenBLAS thread each) on the host's threads; gradients are summed, and losses and correct
// flags added, in micro-batch order. The split depends on the batch size and the network alone, never on the
// thread count, so results are bitwise the same for any --threads. On CUDA a batch is one micro-batch (one
// network, as before).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "netquant/nn.h"
#include "nn/network.h"

namespace nq::nn {

class DataParallelNet {
 public:
  // A micro-batch's gradient costs a write and a summing read of every parameter, so the split aims at
  // micro-batches of micro_batch_size() images: the fewest that carry kMinFlopsPerParam FLOPs (forward and
  // backward) per parameter, and at least kMinMicroBatch. A batch of `count` images becomes ceil(count / size)
  // micro-batches of near-equal size (so some can hold fewer than `size`), at most kMaxMicroBatches: at most
  // that many threads work on one batch. Measured on 2 cores: LeNet-300-100 (6 FLOPs per parameter and image;
  // size 33) gains 1.8x from 2 micro-batches of 32 and nothing reliable from 4 of 16; LeNet-5 (32 per parameter
  // and image; size 16) 1.7x from 4 of 16.
  static constexpr int64_t kMinFlopsPerParam = 192;
  static constexpr int64_t kMinMicroBatch = 16;
  static constexpr int kMaxMicroBatches = 8;
  // Images per micro-batch for a network of `params` parameters and `forward_flops` FLOPs per image.
  static int64_t micro_batch_size(int64_t params, int64_t forward_flops);
  // How many micro-batches a batch of `count` images is split into: ceil(count / micro_batch), at most
  // kMaxMicroBatches; always 1 off the CPU.
  static int micro_batches(int64_t count, int64_t micro_batch, Backend backend);

  DataParallelNet(const NetSpec& spec, Backend backend);
  ~DataParallelNet();

  // Applied after every ReLU of every replica (see Network::set_activation_hook); it is called from several
  // threads at once, so it must not write shared state.
  void set_activation_hook(const Network<float>::ActivationHook& hook);

  // For images idx[0..count) of `data` under `weights` (num_params() floats, backend memory, read only): writes
  // d(mean loss)/dθ into `grad` (num_params() floats, backend memory) and adds the images' losses and correct
  // flags, in image order, to *loss_sum and *correct_sum (either may be null).
  void gradient(const float* weights, const Dataset& data, const int64_t* idx, int64_t count, float* grad,
                double* loss_sum, double* correct_sum);
  // After each micro-batch's forward pass, pass(net, labels, seed, out) runs its backward passes with `seed` a
  // scratch buffer and `out` num_params() zeros (backend memory); every micro-batch's `out` is then added to
  // `sum` (num_params() doubles) in micro-batch order. The curvature passes (OBD, Fisher, GGN) and whole-data
  // gradients, whose per-image seeds are not the mean-loss gradient's.
  using BackwardPass = std::function<void(Network<float>& net, const int32_t* labels, Buffer<float>& seed, float* out)>;
  void accumulate(const float* weights, const Dataset& data, const int64_t* idx, int64_t count,
                  const BackwardPass& pass, std::vector<double>& sum);
  // The forward pass alone: adds the images' losses and correct flags, in image order.
  void evaluate(const float* weights, const Dataset& data, const int64_t* idx, int64_t count, double* loss_sum,
                double* correct_sum);

  int64_t num_params() const;
  const NetSpec& spec() const { return spec_; }
  Backend backend() const { return backend_; }

 private:
  struct Replica;
  // Splits images idx[0..count) into micro-batches, gathers them, and runs work(replica) for each on the
  // threads (one OpenBLAS thread each); returns the number of micro-batches.
  template <class Work>
  int run_micro_batches(const Dataset& data, const int64_t* idx, int64_t count, Work&& work);
  void add_sums(int micro_batches, double* loss_sum, double* correct_sum) const;

  NetSpec spec_;
  Backend backend_;
  int64_t micro_batch_ = kMinMicroBatch;
  std::vector<std::unique_ptr<Replica>> replicas_;
  Network<float>::ActivationHook hook_;
};

}  // namespace nq::nn
