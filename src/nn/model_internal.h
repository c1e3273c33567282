// Internal helpers shared by the nn drivers and the training pipelines: flat <-> named parameters, batches.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "netquant/nn.h"
#include "nn/network.h"

namespace nq::nn {

// A network description in build_model_from_json's format, parsed and checked (every layer fits its input, sizes
// within range, the last layer has `classes` outputs) without allocating its parameters: the part a fuzz target
// can run on any bytes.
NetSpec parse_net_spec(const std::string& json_text);

// Parameters from `weights` in param_layout order; every parameter must be present with its shape; tensors the
// net does not have are an error. `source` names the weights in messages.
template <class T>
std::vector<T> flatten_params(const NetSpec& spec, const TensorSet& weights, const std::string& source);

// Named F32 tensors (param_layout order) from a flat vector.
template <class T>
TensorSet unflatten_params(const NetSpec& spec, const std::vector<T>& flat);

// auto -> cuda when a device answers, else cpu; cuda without one -> kUnavailable.
inline Backend resolve_nn_backend(Backend b) { return resolve_backend(b); }

// Copies images idx[0..count) of `data` as T into `x` (n * input size) and their labels into `y`, checking
// that each image has the net's input shape and each label is a valid class.
template <class T>
void gather_batch(const NetSpec& spec, const Dataset& data, const int64_t* idx, int64_t count, std::vector<T>& x,
                  std::vector<int32_t>& y);

// Images idx[0..count) of a dataset, gathered on the host and uploaded to a backend.
struct BatchLoader {
  explicit BatchLoader(Backend b) : x(b), y(b) {}
  void load(const NetSpec& spec, const Dataset& data, const int64_t* idx, int64_t count) {
    gather_batch(spec, data, idx, count, hx, hy);
    x.upload(hx.data(), static_cast<int64_t>(hx.size()));
    y.upload(hy.data(), count);
  }
  std::vector<float> hx;
  std::vector<int32_t> hy;
  Buffer<float> x;
  Buffer<int32_t> y;
};

// auto -> cuda when a device answers, else cpu, with OpenBLAS on nq::num_threads() threads for the CPU; on
// cuda the process's device is made current on the calling thread.
Backend prepare_backend(Backend requested);

class DataParallelNet;
// Mean loss and accuracy over the first `limit` images of `data` (all when 0), in batches of `batch`, under
// `weights` (num_params() floats, backend memory) on the replicas (and their activation hook, if any).
EvalResult evaluate_net(DataParallelNet& replicas, const float* weights, const Dataset& data, int64_t limit,
                        int64_t batch);
// compute_gradients (nn.h) on replicas kept by the caller across calls (fine-tuning calls it once per step);
// `data` must fit the replicas' network (check_dataset).
TensorSet compute_gradients(DataParallelNet& replicas, const TensorSet& weights, const Dataset& data, int64_t chunk);

// Checks that `data` fits `spec` (image shape, classes) and is not empty; `what` names it in messages.
void check_dataset(const NetSpec& spec, const Dataset& data, const std::string& what);

}  // namespace nq::nn
