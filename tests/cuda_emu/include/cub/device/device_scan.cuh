// Emulated CUB: everything is in emu_cub.h.
#pragma once
#include "../emu_cub.h"
