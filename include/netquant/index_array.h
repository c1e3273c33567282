// Per-weight codebook indices of a quantized tensor, stored in the narrowest of 1, 2 or 4 bytes per weight that
// holds the largest index of its codebooks (a pruned weight, kPrunedIndex, is that width's all-ones pattern). A
// 16-level model takes one byte per weight instead of four: at LLM scale the indices are most of what a
// quantization run or a read .nq holds (4 bytes per weight were 28 GB for a 7 B-parameter model).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <vector>

namespace nq {

constexpr int32_t kPrunedIndex = -1;  // index of a pruned weight (its value is exactly 0)

class IndexArray {
 public:
  IndexArray() = default;
  IndexArray(size_t n, int32_t value) { assign(n, value); }
  // The values of `v` at the narrowest width that holds its largest.
  explicit IndexArray(const std::vector<int32_t>& v);
  IndexArray(std::initializer_list<int32_t> v) : IndexArray(std::vector<int32_t>(v)) {}

  // n copies of `value`, at the narrowest width that holds it.
  void assign(size_t n, int32_t value);
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  int width() const { return width_; }  // bytes per index: 1, 2 or 4
  size_t bytes() const { return size_ * static_cast<size_t>(width_); }
  // The largest index a width holds (its all-ones pattern is kPrunedIndex).
  static int32_t max_index_of_width(int width) { return width == 1 ? 0xFE : width == 2 ? 0xFFFE : INT32_MAX; }
  // The narrowest width (bytes per index) that holds `max_index`.
  static int width_for(int32_t max_index);

  int32_t operator[](size_t i) const {
    if (width_ == 1) return u8_[i] == 0xFF ? kPrunedIndex : static_cast<int32_t>(u8_[i]);
    if (width_ == 2) return u16_[i] == 0xFFFF ? kPrunedIndex : static_cast<int32_t>(u16_[i]);
    return i32_[i];
  }
  // Writes index i; `value` must be kPrunedIndex or fit the width (hold_index first). Threads may set
  // different entries at once.
  void set(size_t i, int32_t value) {
    if (width_ == 1) u8_[i] = value == kPrunedIndex ? uint8_t{0xFF} : static_cast<uint8_t>(value);
    else if (width_ == 2) u16_[i] = value == kPrunedIndex ? uint16_t{0xFFFF} : static_cast<uint16_t>(value);
    else i32_[i] = value;
  }
  // Writable element for serial code (building a model by hand, tests): assigning widens the storage when the
  // value needs it. Parallel writers call hold_index once, then set().
  class Reference {
   public:
    Reference(IndexArray& a, size_t i) : a_(a), i_(i) {}
    operator int32_t() const { return static_cast<const IndexArray&>(a_)[i_]; }  // NOLINT: reads as the value
    Reference& operator=(int32_t value) {
      if (!a_.holds(value)) a_.hold_index(value);
      a_.set(i_, value);
      return *this;
    }
    Reference& operator=(const Reference& other) { return *this = static_cast<int32_t>(other); }

   private:
    IndexArray& a_;
    size_t i_;
  };
  Reference operator[](size_t i) { return {*this, i}; }
  // Appends (widening when needed); resize() adds zeros.
  void push_back(int32_t value);
  void resize(size_t n);

  // Widens the storage (a copy) when `max_index` does not fit the current width; never narrows.
  void hold_index(int32_t max_index);
  bool holds(int32_t value) const { return value == kPrunedIndex || (value >= 0 && value <= max_index_of_width(width_)); }

  std::vector<int32_t> to_vector() const;
  int64_t count(int32_t value) const;

  // f(data, pruned): the raw array (const uint8_t*, const uint16_t* or const int32_t*) and the value that marks
  // a pruned weight in it, for loops that would otherwise branch on the width per element.
  template <class F>
  decltype(auto) visit(F&& f) const {
    if (width_ == 1) return f(u8_.data(), uint8_t{0xFF});
    if (width_ == 2) return f(u16_.data(), uint16_t{0xFFFF});
    return f(i32_.data(), kPrunedIndex);
  }

  // The same with the raw array writable, for decoders that fill it directly (values must fit the width).
  template <class F>
  decltype(auto) visit_mutable(F&& f) {
    if (width_ == 1) return f(u8_.data(), uint8_t{0xFF});
    if (width_ == 2) return f(u16_.data(), uint16_t{0xFFFF});
    return f(i32_.data(), kPrunedIndex);
  }

  class const_iterator {
   public:
    using iterator_category = std::random_access_iterator_tag;
    using value_type = int32_t;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = int32_t;
    const_iterator() = default;
    const_iterator(const IndexArray* a, size_t i) : a_(a), i_(i) {}
    int32_t operator*() const { return (*a_)[i_]; }
    int32_t operator[](difference_type d) const { return (*a_)[i_ + static_cast<size_t>(d)]; }
    const_iterator& operator++() { ++i_; return *this; }
    const_iterator operator++(int) { const_iterator t = *this; ++i_; return t; }
    const_iterator& operator--() { --i_; return *this; }
    const_iterator operator--(int) { const_iterator t = *this; --i_; return t; }
    const_iterator& operator+=(difference_type d) { i_ = static_cast<size_t>(static_cast<difference_type>(i_) + d); return *this; }
    const_iterator& operator-=(difference_type d) { return *this += -d; }
    friend const_iterator operator+(const_iterator it, difference_type d) { return it += d; }
    friend const_iterator operator+(difference_type d, const_iterator it) { return it += d; }
    friend const_iterator operator-(const_iterator it, difference_type d) { return it -= d; }
    friend difference_type operator-(const const_iterator& a, const const_iterator& b) {
      return static_cast<difference_type>(a.i_) - static_cast<difference_type>(b.i_);
    }
    friend bool operator==(const const_iterator& a, const const_iterator& b) { return a.i_ == b.i_; }
    friend bool operator!=(const const_iterator& a, const const_iterator& b) { return a.i_ != b.i_; }
    friend bool operator<(const const_iterator& a, const const_iterator& b) { return a.i_ < b.i_; }
    friend bool operator>(const const_iterator& a, const const_iterator& b) { return a.i_ > b.i_; }
    friend bool operator<=(const const_iterator& a, const const_iterator& b) { return a.i_ <= b.i_; }
    friend bool operator>=(const const_iterator& a, const const_iterator& b) { return a.i_ >= b.i_; }

   private:
    const IndexArray* a_ = nullptr;
    size_t i_ = 0;
  };
  using value_type = int32_t;
  using iterator = const_iterator;
  const_iterator begin() const { return {this, 0}; }
  const_iterator end() const { return {this, size_}; }

  // Equal values, whatever the widths.
  friend bool operator==(const IndexArray& a, const IndexArray& b);
  friend bool operator!=(const IndexArray& a, const IndexArray& b) { return !(a == b); }
  friend bool operator==(const IndexArray& a, const std::vector<int32_t>& b);
  friend bool operator!=(const IndexArray& a, const std::vector<int32_t>& b) { return !(a == b); }

 private:
  size_t size_ = 0;
  int width_ = 1;
  std::vector<uint8_t> u8_;    // width 1
  std::vector<uint16_t> u16_;  // width 2
  std::vector<int32_t> i32_;   // width 4
};

}  // namespace nq
