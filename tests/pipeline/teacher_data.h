// Small seeded problems for the training pipelines' tests: a one-hidden-layer MLP over single-channel images, and
// images in [0, 1] labelled by a random linear teacher (learnable, not trivially).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "netquant/nn.h"
#include "netquant/pipeline.h"

namespace nq::test {

// rows×cols single-channel images, `classes` classes: flatten → fc1 (hidden) → ReLU → fc2 (classes).
inline Model teacher_mlp(const std::string& name, int rows, int cols, int hidden, int classes, uint64_t seed) {
  const std::string json = R"({"name":")" + name + R"(","input":[1,)" + std::to_string(rows) + "," +
                           std::to_string(cols) + R"(],"classes":)" + std::to_string(classes) +
                           R"(,"layers":[{"type":"flatten"},{"type":"linear","name":"fc1","out":)" +
                           std::to_string(hidden) + R"(},{"type":"relu"},{"type":"linear","name":"fc2","out":)" +
                           std::to_string(classes) + "}]}";
  return build_model_from_json(json, seed);
}

// n seeded images of rows×cols in [0, 1], each labelled by the argmax of a random linear teacher.
inline Dataset teacher_images(int64_t n, int rows, int cols, int classes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const int64_t pixels = int64_t{rows} * cols;
  std::vector<float> teacher(static_cast<size_t>(pixels * classes));
  for (float& v : teacher) v = g(rng);
  Dataset d;
  d.images = Tensor("images", DType::kF32, {n, 1, rows, cols});
  float* x = d.images.mutable_data_as<float>();
  for (int64_t i = 0; i < n; ++i) {
    double best = -1e30;
    int32_t label = 0;
    for (int64_t k = 0; k < pixels; ++k) x[i * pixels + k] = u(rng);
    for (int32_t c = 0; c < classes; ++c) {
      double s = 0;
      for (int64_t k = 0; k < pixels; ++k) s += teacher[size_t(c * pixels + k)] * (x[i * pixels + k] - 0.5);
      if (s > best) best = s, label = c;
    }
    d.labels.push_back(label);
  }
  d.num_classes = classes;
  return d;
}

}  // namespace nq::test
