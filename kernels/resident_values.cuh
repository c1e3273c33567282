// Op (d) on the device with its binned pass's bin count chosen by the caller (kernels/resident_values.cu): the GPU
// benchmark times one pass at several bin counts, since the host's plan grows with the bins and the device's share
// (the values left to op (a)) shrinks with them. The library itself calls make_resident_values (quant_ops.h).
#pragma once

#include <cstddef>
#include <memory>

#include "quant/quant_ops.h"

namespace nq::cuda {

// make_resident_values with the binned pass at `bins` importance bins (0: its default, about n / 16384, at most
// 256), whatever n and set_binned_pass_enabled say; op (a) passes only without room on the device for it.
std::unique_ptr<::nq::quant::ResidentValues> make_resident_values_binned(const float* w, const float* h, size_t n,
                                                                         size_t bins);

}  // namespace nq::cuda
