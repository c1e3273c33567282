// netquant public API (umbrella header): every header of include/netquant/. Never includes a CUDA header, nor
// anything beyond the C++ standard library, so a program needs only these headers and libnetquant (README,
// "Installing").
#pragma once

#include "netquant/activation_quant.h"
#include "netquant/atomic_file.h"
#include "netquant/backend.h"
#include "netquant/coding.h"
#include "netquant/distributed.h"
#include "netquant/dtype.h"
#include "netquant/error.h"
#include "netquant/index_array.h"
#include "netquant/io.h"
#include "netquant/lc.h"
#include "netquant/nn.h"
#include "netquant/pipeline.h"
#include "netquant/progress.h"
#include "netquant/quantize.h"
#include "netquant/sweep.h"
#include "netquant/tensor.h"
#include "netquant/version.h"
