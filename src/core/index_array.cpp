#include "netquant/index_array.h"

#include <algorithm>
#include <type_traits>

#include "core/huge_pages.h"
#include "netquant/error.h"

namespace nq {

int IndexArray::width_for(int32_t max_index) {
  if (max_index <= max_index_of_width(1)) return 1;
  if (max_index <= max_index_of_width(2)) return 2;
  return 4;
}

IndexArray::IndexArray(const std::vector<int32_t>& v) {
  int32_t top = 0;
  for (const int32_t x : v) {
    NQ_CHECK(x >= kPrunedIndex, ErrorCode::kInvalidArgument, "index array: index " << x << " is negative");
    top = std::max(top, x);
  }
  assign(v.size(), top);  // at top's width at once: no widening copy
  for (size_t i = 0; i < v.size(); ++i) set(i, v[i]);
}

void IndexArray::assign(size_t n, int32_t value) {
  NQ_CHECK(value >= kPrunedIndex, ErrorCode::kInvalidArgument, "index array: index " << value << " is negative");
  u8_.clear();
  u16_.clear();
  i32_.clear();
  u8_.shrink_to_fit();
  u16_.shrink_to_fit();
  i32_.shrink_to_fit();
  size_ = n;
  width_ = width_for(value);
  // (A model's indices: large and fresh, so asked for huge pages: core/huge_pages.h.)
  if (width_ == 1) assign_advised(u8_, n, value == kPrunedIndex ? uint8_t{0xFF} : static_cast<uint8_t>(value));
  if (width_ == 2) assign_advised(u16_, n, value == kPrunedIndex ? uint16_t{0xFFFF} : static_cast<uint16_t>(value));
  if (width_ == 4) assign_advised(i32_, n, value);
}

void IndexArray::hold_index(int32_t max_index) {
  const int want = width_for(max_index);
  if (want <= width_) return;
  IndexArray wider;
  wider.size_ = size_;
  wider.width_ = want;
  if (want == 2) wider.u16_.resize(size_);
  if (want == 4) wider.i32_.resize(size_);
  for (size_t i = 0; i < size_; ++i) wider.set(i, (*this)[i]);
  *this = std::move(wider);
}

void IndexArray::push_back(int32_t value) {
  NQ_CHECK(value >= kPrunedIndex, ErrorCode::kInvalidArgument, "index array: index " << value << " is negative");
  if (!holds(value)) hold_index(value);
  if (width_ == 1) u8_.push_back(0);
  if (width_ == 2) u16_.push_back(0);
  if (width_ == 4) i32_.push_back(0);
  ++size_;
  set(size_ - 1, value);
}

void IndexArray::resize(size_t n) {
  u8_.resize(width_ == 1 ? n : 0);
  u16_.resize(width_ == 2 ? n : 0);
  i32_.resize(width_ == 4 ? n : 0);
  size_ = n;
}

std::vector<int32_t> IndexArray::to_vector() const {
  std::vector<int32_t> v(size_);
  for (size_t i = 0; i < size_; ++i) v[i] = (*this)[i];
  return v;
}

int64_t IndexArray::count(int32_t value) const {
  if (!holds(value)) return 0;
  return visit([&](const auto* data, auto pruned) {
    using T = std::remove_cv_t<std::remove_pointer_t<decltype(data)>>;
    const T raw = value == kPrunedIndex ? pruned : static_cast<T>(value);
    return static_cast<int64_t>(std::count(data, data + size_, raw));
  });
}

bool operator==(const IndexArray& a, const IndexArray& b) {
  if (a.size_ != b.size_) return false;
  if (a.width_ == b.width_) {
    if (a.width_ == 1) return a.u8_ == b.u8_;
    if (a.width_ == 2) return a.u16_ == b.u16_;
    return a.i32_ == b.i32_;
  }
  for (size_t i = 0; i < a.size_; ++i)
    if (a[i] != b[i]) return false;
  return true;
}

bool operator==(const IndexArray& a, const std::vector<int32_t>& b) {
  if (a.size_ != b.size()) return false;
  for (size_t i = 0; i < a.size_; ++i)
    if (a[i] != b[i]) return false;
  return true;
}

}  // namespace nq
