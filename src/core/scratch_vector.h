// Internal: std::vector whose resize leaves new elements uninitialised (default-initialised), for large scratch
// arrays that are written in full right after allocation. A value-initialised vector of 10^7 floats costs a
// single-threaded memset plus the page faults before the real (parallel) first write: measured at ~half of a
// 10^7-pair radix sort on the 2-core VM (bench/RESULTS.md "CPU quantizers"). Arrays of kHugePagesFrom bytes or
// more get a mapping of their own in huge pages (core/huge_pages.h): their first write then faults 2 MiB at a time.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/huge_pages.h"

namespace nq {

template <class T>
struct DefaultInitAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  DefaultInitAllocator() noexcept = default;
  template <class U>
  DefaultInitAllocator(const DefaultInitAllocator<U>&) noexcept {}  // NOLINT: rebinding copies, as std::allocator
  T* allocate(size_t n) {
    if (n > static_cast<size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
    if (kHugePageArrays && n * sizeof(T) >= kHugePagesFrom) return static_cast<T*>(allocate_huge(n * sizeof(T)));
    return std::allocator<T>::allocate(n);
  }
  void deallocate(T* p, size_t n) noexcept {
    if (kHugePageArrays && n * sizeof(T) >= kHugePagesFrom) return free_huge(p, n * sizeof(T));
    std::allocator<T>::deallocate(p, n);
  }
  template <class U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible<U>::value) {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

template <class T>
using ScratchVector = std::vector<T, DefaultInitAllocator<T>>;

}  // namespace nq
