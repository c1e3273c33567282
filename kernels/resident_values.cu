// quant_ops.h (d) on the device: one problem's w and h uploaded once, for the drivers that pass over them many times
// (the ECSQ iterations, the λ bisection around them, a sweep's λ in lockstep).
//
// Small problems (or with the binned pass switched off, or without room for it): every pass is op (a) over the
// resident values, writing its labels into a device array that is downloaded only when the driver asks.
//
// From kBinnedMinValues values: every pass is the binned pass (binned_pass.h), split as BinnedPlan splits it. The
// host plans it: per importance bin, the envelopes and the corner certificates, with the certified runs summed from
// host prefix sums, exactly the CPU's code. The device then runs op (a) over the values left, about 1% on
// heavy-tailed weights, gathered in the CPU's order from a resident copy of the binned layout. A pass thus reads a
// small fraction of the values on the device instead of all of them, and its counts are the CPU's; its sums differ
// from the CPU's only as op (a)'s do. The labels of the latest pass are made when asked, by one op (a) pass with
// its codebook (the same argmin).
#include <cuda_runtime.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "assign_accumulate.cuh"
#include "core/cuda_device.h"
#include "resident_values.cuh"
#include "cuda_check.cuh"
#include "device_buffer.cuh"
#include "gather_ranges.cuh"
#include "netquant/error.h"
#include "quant/binned_pass.h"
#include "quant/lazy_labels.h"
#include "quant/quant_ops.h"

namespace nq::cuda {
namespace {

// Device bytes per value the binned path adds to the resident w and h: its copy of the binned layout (8) and, at
// most, the gather of half the values (4: a plan leaving more is a whole pass); twice that must be free.
constexpr size_t kBinnedDeviceBytesPerValue = 12;

bool device_has_room(size_t n) {
  size_t free_bytes = 0, total_bytes = 0;
  NQ_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return free_bytes / 2 >= n * kBinnedDeviceBytesPerValue;
}

class CudaResidentValues final : public quant::LazyLabelsValues {
 public:
  // bins < 0: the binned pass where use_binned_pass says so, at its default bin count; bins ≥ 0: the binned pass
  // at that many bins (0: the default), whatever the size and the switch. Either way only with room on the device.
  CudaResidentValues(const float* w, const float* h, size_t n, int64_t bins, quant::SortedView sorted) : n_(n) {
    NQ_CHECK(n == 0 || w != nullptr, ErrorCode::kInvalidArgument, "resident values: null weights");
    dw_.upload(w, n);
    if (h) dh_.upload(h, n);
    const bool binned = bins < 0 ? quant::use_binned_pass(n) : n > 0;
    if (binned && device_has_room(n)) {
      binned_ =
          std::make_unique<quant::BinnedValues>(w, h, n, static_cast<size_t>(std::max<int64_t>(0, bins)), sorted);
      dbw_.upload(binned_->values().data(), binned_->values().size());
      dbh_.upload(binned_->importances().data(), binned_->importances().size());
    } else {
      dl_.allocate(n);
    }
  }

 private:
  const float* h() const { return dh_.size() ? dh_.get() : nullptr; }

  bool binned() const override { return binned_ != nullptr; }

  void pass_all(const double* centers, const double* code_len, int k, double lambda,
                quant::AssignAccum& out) override {
    if (dl_.size() < n_) dl_.allocate(n_);  // the binned path holds the labels' array only while labelling
    assign_accumulate_device(dw_.get(), h(), n_, centers, code_len, k, lambda, dl_.get(), out);
    has_labels_ = true;
  }

  void pass_all_multi(const quant::CodebookBatch& books, std::vector<quant::AssignAccum>& out) override {
    assign_accumulate_multi_device(dw_.get(), h(), n_, books, out);
  }

  std::vector<int32_t> move_labels() override {
    std::vector<int32_t> labels(has_labels_ ? n_ : 0);
    if (has_labels_) dl_.download(labels.data(), n_);
    has_labels_ = false;
    if (binned_) dl_.allocate(0);
    return labels;
  }

  void pass_binned(const double* centers, const double* code_len, int k, double lambda,
                   quant::AssignAccum& out) override {
    const quant::BinnedPlan plan = binned_->plan(centers, code_len, k, lambda);
    if (plan.whole) {
      assign_accumulate_device(dw_.get(), h(), n_, centers, code_len, k, lambda, nullptr, out);
      return;
    }
    quant::AssignAccum rest;
    if (plan.left_values) {
      const size_t ranges = plan.left.size();
      spec_.resize(2 * ranges + 1);
      uint64_t at = 0;
      for (size_t r = 0; r < ranges; ++r) {
        spec_[r] = plan.left[r].first;
        spec_[ranges + r] = at;
        at += plan.left[r].second - plan.left[r].first;
      }
      spec_[2 * ranges] = at;
      dspec_.upload(spec_.data(), spec_.size());
      if (dgw_.size() < plan.left_values) {  // grow-only: a sweep's passes leave similar counts
        dgw_.allocate(plan.left_values + plan.left_values / 4);
        dgh_.allocate(dgw_.size());
      }
      gather_ranges_device(dbw_.get(), dbh_.get(), dspec_.get(), ranges, dgw_.get(), dgh_.get());
      assign_accumulate_device(dgw_.get(), dgh_.get(), plan.left_values, centers, code_len, k, lambda, nullptr,
                               rest);
    }
    quant::BinnedValues::finish(plan, rest, out);
  }

  size_t n_;
  DeviceBuffer<float> dw_, dh_;
  DeviceBuffer<int32_t> dl_;  // labels: every pass's without the binned path; while labelling with it
  bool has_labels_ = false;
  // The binned path (problems of kBinnedMinValues values or more).
  std::unique_ptr<quant::BinnedValues> binned_;
  DeviceBuffer<float> dbw_, dbh_;  // its layout on the device
  std::vector<uint64_t> spec_;     // a pass's ranges (gather_ranges.cuh), and on the device
  DeviceBuffer<uint64_t> dspec_;
  DeviceBuffer<float> dgw_, dgh_;  // the values gathered for op (a)
};

}  // namespace

std::unique_ptr<quant::ResidentValues> make_resident_values(const float* w, const float* h, size_t n,
                                                            quant::SortedView sorted) {
  bind_thread_device();
  return std::make_unique<CudaResidentValues>(w, h, n, -1, sorted);
}

std::unique_ptr<quant::ResidentValues> make_resident_values_binned(const float* w, const float* h, size_t n,
                                                                   size_t bins) {
  bind_thread_device();
  return std::make_unique<CudaResidentValues>(w, h, n, static_cast<int64_t>(bins), quant::SortedView{});
}

}  // namespace nq::cuda
