// Gathers ranges of device arrays into one contiguous run: the values the binned ECSQ pass leaves to op (a)
// (binned_pass.h), collected in the order the CPU collects them, so that op (a) sums the same sequence on both
// backends.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nq::cuda {

// spec (device, 2·ranges + 1 entries): src[r] = spec[r], the first position of range r in d_w / d_h; dst[r] =
// spec[ranges + r], where it lands in d_out_w / d_out_h, ascending, with spec[2·ranges] the total. Range r is
// dst[r + 1] − dst[r] values. Asynchronous on the calling thread's default stream.
void gather_ranges_device(const float* d_w, const float* d_h, const uint64_t* d_spec, size_t ranges, float* d_out_w,
                          float* d_out_h);

}  // namespace nq::cuda
