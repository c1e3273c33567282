// Endian-explicit loads/stores and overflow-checked size arithmetic shared by the file parsers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

namespace nq::io {

inline uint16_t load_le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t load_le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
inline uint64_t load_le64(const uint8_t* p) {
  return static_cast<uint64_t>(load_le32(p)) | (static_cast<uint64_t>(load_le32(p + 4)) << 32);
}
inline uint32_t load_be32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | static_cast<uint32_t>(p[3]);
}

inline void store_le16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
inline void store_le32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void store_le64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// a * b without wrapping; false on overflow (hostile headers multiply attacker-chosen dims).
inline bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return false;
  *out = a * b;
  return true;
}

// Reverses the bytes of each of the `bytes / size` elements of `size` bytes in place (big- to little-endian and
// back: IDX data, big-endian .npy data).
inline void swap_element_bytes(uint8_t* data, size_t bytes, size_t size) {
  for (size_t i = 0; i + size <= bytes; i += size)
    for (size_t a = i, b = i + size - 1; a < b; ++a, --b) {
      const uint8_t t = data[a];
      data[a] = data[b];
      data[b] = t;
    }
}

// The byte order this machine stores numbers in; file formats here are little-endian except IDX.
inline bool host_is_little_endian() {
  const uint16_t probe = 1;
  return *reinterpret_cast<const uint8_t*>(&probe) == 1;
}

}  // namespace nq::io
