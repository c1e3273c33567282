// Internal: large scratch arrays backed by transparent huge pages. A fresh 4 KiB page costs a fault and a kernel
// zero-fill before its first write, and on virtual machines that fault dominates any pass that writes a fresh
// array of 10^7 values: on the 2-core VM 40 MB of fresh 4 KiB pages took 32–44 ms to touch, the same 40 MB in
// 2 MiB pages 5.6–6.3 ms (bench/RESULTS.md "Fresh memory in huge pages"). Linux only: elsewhere these are plain
// allocations.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "core/sanitizers.h"

namespace nq {

// Allocations of at least this many bytes ask for huge pages; smaller ones are not worth a mapping of their own.
constexpr size_t kHugePagesFrom = size_t{4} << 20;

// Under AddressSanitizer, large scratch arrays stay on the heap, where it can see an overrun of them.
constexpr bool kHugePageArrays = !kAddressSanitizer;

// `bytes` of memory that reads as zero, aligned to 2 MiB, asked to be backed by huge pages
// (madvise(MADV_HUGEPAGE); the kernel may still give 4 KiB pages). Fresh pages come zeroed from the kernel, so
// nothing is written here. Throws std::bad_alloc when the memory cannot be had. Free it with free_huge(p, bytes),
// the same byte count.
void* allocate_huge(size_t bytes);
void free_huge(void* p, size_t bytes) noexcept;

// Asks for huge pages for the 2 MiB-aligned pages inside [p, p + bytes) that nothing has touched yet, for an
// array allocated elsewhere (a std::vector about to be filled); does nothing below kHugePagesFrom. Advice only:
// memory, contents and failure behaviour are unchanged.
void advise_huge_pages(void* p, size_t bytes) noexcept;

// One line for `netquant info`: whether large work arrays ask for huge pages here, and what the kernel does with
// the request (its transparent_hugepage mode).
std::string huge_pages_status();

// v = n copies of value. Storage that must be allocated for it is asked for huge pages before the fill first
// touches it (advise_huge_pages); storage v already has is filled in place.
template <class T>
void assign_advised(std::vector<T>& v, size_t n, const T& value) {
  if (v.capacity() < n) {
    std::vector<T>().swap(v);
    v.reserve(n);
    advise_huge_pages(v.data(), n * sizeof(T));
  }
  v.assign(n, value);
}

}  // namespace nq
