// Internal: whether this translation unit is built with AddressSanitizer (GCC defines __SANITIZE_ADDRESS__, Clang
// answers __has_feature), for the few places that must work differently under it.
#pragma once

namespace nq {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif

}  // namespace nq
