// netquant public API (umbrella header). Never includes a CUDA header.
#pragma once

#include "netquant/atomic_file.h"
#include "netquant/backend.h"
#include "netquant/dtype.h"
#include "netquant/error.h"
#include "netquant/progress.h"
#include "netquant/tensor.h"
#include "netquant/version.h"
