// Op (e) with `exact` on the device (called by cuda::rows_kmeans): the optimal 1-D k-means of every row.
#pragma once

#include <cstdint>

#include "quant/quant_ops.h"

namespace nq::cuda {

// job.exact is set; host pointers (copies in and out); n_max: the longest row (≤ quant::kRowsKmeansMaxRow).
void rows_exact(const quant::RowsKmeansJob& job, const quant::RowsKmeansOut& out, int64_t n_max);

}  // namespace nq::cuda
