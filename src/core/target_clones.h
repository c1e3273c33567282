// NQ_TARGET_CLONES: compile a hot, exact loop (integer counts, comparisons — nothing whose rounding depends on
// the instruction set) for AVX-512 and AVX2 as well as the baseline, picked at load time by the CPU. The build
// targets plain x86-64 so that one binary runs everywhere; this keeps the wide vectors where they pay.
// GCC on x86-64 Linux only (the dispatch is a glibc ifunc); elsewhere the baseline code alone.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(__CUDACC__)
#define NQ_TARGET_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
// AVX2 and BMI2 (one-micro-op shifts by a register) but no AVX-512: for scalar integer loops that GCC would vectorise
// badly with AVX-512 (the rANS coder's, src/coding/rans.cpp).
#define NQ_TARGET_CLONES_V3 __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define NQ_TARGET_CLONES
#define NQ_TARGET_CLONES_V3
#endif
