// Internal helpers shared by models.cpp, trainer.cpp and hessian.cpp: flat <-> named parameters, batches.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "netquant/nn.h"
#include "nn/network.h"

namespace nq::nn {

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

// Checks that `data` fits `spec` (image shape, classes) and is not empty; `what` names it in messages.
void check_dataset(const NetSpec& spec, const Dataset& data, const std::string& what);

}  // namespace nq::nn
