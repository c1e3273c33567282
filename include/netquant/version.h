// netquant version.
#pragma once

namespace nq {
const char* version();  // "0.1.0"
}  // namespace nq
