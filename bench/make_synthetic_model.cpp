// Writes a synthetic model for the scale-out benchmarks: N weights (Student-t, 4 degrees of freedom, scale 0.05:
// heavy-tailed like trained layers) split over T tensors of awkward sizes, and a Gamma(0.8) importance file.
// Usage: make_synthetic_model N T OUT_DIR   (writes OUT_DIR/model.safetensors and OUT_DIR/importance.safetensors)
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "netquant/error.h"
#include "netquant/io.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s N TENSORS OUT_DIR\n", argv[0]);
    return 2;
  }
  const int64_t n = std::atoll(argv[1]);
  const int tensors = std::atoi(argv[2]);
  const std::string dir = argv[3];
  if (n < tensors || tensors < 1) {
    std::fprintf(stderr, "error: need N >= TENSORS >= 1\n");
    return 2;
  }
  try {
    std::mt19937_64 rng(2026);
    std::student_t_distribution<float> heavy(4.0f);
    std::gamma_distribution<float> gamma(0.8f, 1.0f);
    nq::TensorSet model, importance;
    int64_t left = n;
    for (int t = 0; t < tensors; ++t) {
      // Uneven sizes: tensor t gets a share proportional to (t + 1), the last one the rest.
      const int64_t size = t + 1 == tensors ? left : std::max<int64_t>(1, 2 * n * (t + 1) / (tensors * (tensors + 1)));
      left -= size;
      std::vector<float> w(static_cast<size_t>(size)), h(w.size());
      for (auto& v : w) v = 0.05f * heavy(rng);
      for (auto& v : h) v = gamma(rng);
      const std::string name = "layer" + std::to_string(t) + ".weight";
      model.add(nq::Tensor::from_f32(name, {size}, w));
      importance.add(nq::Tensor::from_f32(name, {size}, h));
    }
    nq::write_safetensors(dir + "/model.safetensors", model);
    nq::write_safetensors(dir + "/importance.safetensors", importance);
  } catch (const nq::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 3;
  }
  return 0;
}
