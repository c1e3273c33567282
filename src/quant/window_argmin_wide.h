// The exact ECSQ window search (assign_accumulate's λ > 0 labels) eight values at a time with AVX-512: the
// centre, rate and bound tables of up to 64 clusters live in registers and are looked up per lane by a
// two-table permute (vpermt2pd) instead of a gather. Each lane computes its costs with exactly the scalar
// operations of quant_ops_cpu.cpp (so the same bits), in ascending index order with a strict `<` (so ties go to
// the lowest index), and proves its answer with the same two lower bounds. A lane those bounds cannot settle is
// labelled by a vector scan over every centre (the exact argmin by definition); one that the vector code must
// not decide at all (see wide_window_labels) is handed back to the caller's scalar search.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nq::cpu {

// The per-pass tables, each of k entries (k ≤ kWideWindowMaxK): centres c (ascending), rates rl = λ·l_j (+inf
// for a dead cluster), and the bound rates rbl = λ·min_{i≤j} l_i, rbr = λ·min_{i≥j} l_i.
struct WideWindowTables {
  const double* c = nullptr;
  const double* rl = nullptr;
  const double* rbl = nullptr;
  const double* rbr = nullptr;
  int k = 0;
};

constexpr int kWideWindowMaxK = 64;

// True when the build has the wide path (GCC or Clang on x86-64), the CPU runs AVX-512F, and it has not been
// switched off.
bool wide_window_available();
// Switches the wide path off (false) or back on where the CPU has it: tests and benches compare both paths.
// Set it between passes, not during one.
void set_wide_window_enabled(bool enabled);

// lab[i] holds p_i = #{j : c_j < w_i} on entry. On return lab[i] is the label of (w_i, h_i) — from the window
// around p_i where its bounds settle it, else from the scan over every centre — or −1 − p_i for a value the
// vector code must not decide (h not in (0, +inf), w not finite, or every cost +inf): the caller's scalar search
// decides those. h null: h ≡ 1. Returns how many values were handed back (0: nothing left to do). Requires
// wide_window_available() and 1 ≤ t.k ≤ kWideWindowMaxK.
size_t wide_window_labels(const float* w, const float* h, size_t n, const WideWindowTables& t, int32_t* lab);

}  // namespace nq::cpu
