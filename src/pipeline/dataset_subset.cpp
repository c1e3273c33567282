// Sub-datasets by index: mini-batches for fine-tuning, test subsets for quick evaluation, the demo's validation split.
#include <cstring>
#include <utility>

#include "netquant/error.h"
#include "netquant/pipeline.h"

namespace nq {

Dataset dataset_subset(const Dataset& dataset, const std::vector<int64_t>& indices) {
  const auto& shape = dataset.images.shape();
  NQ_ASSERT(shape.size() == 4);
  const int64_t per = shape[1] * shape[2] * shape[3];
  Dataset out;
  out.num_classes = dataset.num_classes;
  out.images = Tensor(dataset.images.name(), DType::kF32,
                      {static_cast<int64_t>(indices.size()), shape[1], shape[2], shape[3]});
  const float* src = dataset.images.data_as<float>();
  float* dst = out.images.mutable_data_as<float>();
  out.labels.resize(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) {
    const int64_t j = indices[i];
    NQ_ASSERT(j >= 0 && j < dataset.size());
    std::memcpy(dst + static_cast<int64_t>(i) * per, src + j * per, static_cast<size_t>(per) * sizeof(float));
    out.labels[i] = dataset.labels[static_cast<size_t>(j)];
  }
  return out;
}

Dataset dataset_range(const Dataset& dataset, int64_t begin, int64_t end) {
  NQ_ASSERT(0 <= begin && begin <= end && end <= dataset.size());
  std::vector<int64_t> idx(static_cast<size_t>(end - begin));
  for (int64_t i = begin; i < end; ++i) idx[static_cast<size_t>(i - begin)] = i;
  return dataset_subset(dataset, idx);
}

ValidationSplit split_off_validation(Dataset train, int64_t validation_images, const std::string& source) {
  NQ_CHECK(validation_images >= 0, ErrorCode::kInvalidArgument,
           source << ": validation images: " << validation_images << " is negative");
  NQ_CHECK(validation_images < train.size(), ErrorCode::kInvalidArgument,
           source << ": " << validation_images << " validation images leave none of its " << train.size()
                  << " training images to train on");
  if (validation_images == 0) return {std::move(train), Dataset()};
  const int64_t split = train.size() - validation_images;
  return {dataset_range(train, 0, split), dataset_range(train, split, train.size())};
}

Dataset dataset_head(const Dataset& dataset, int64_t n) {
  if (n <= 0 || n >= dataset.size()) return dataset;
  return dataset_range(dataset, 0, n);
}

}  // namespace nq
