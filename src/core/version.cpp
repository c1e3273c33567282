// Library version string (also anchors the static library's own translation unit).
#include "netquant/version.h"

namespace nq {
const char* version() { return NQ_VERSION; }
}  // namespace nq
