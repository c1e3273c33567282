// A network run on batches of changing size keeps its buffers (Buffer::ensure reuses an allocation up to the
// largest size held, leaving stale values of earlier, larger batches in it): every output must still be what a
// fresh network, whose buffers start zeroed, gives for the same batch — bit for bit. An op that read a value it had
// not written would differ.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "nn/network.h"
#include "nn/nn_test_util.h"

namespace nq::nn {
namespace {

template <class T>
void expect_same_bits(const T* a, const T* b, int64_t n, const char* what, int64_t batch) {
  for (int64_t i = 0; i < n; ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) {
      ADD_FAILURE() << what << " differs at " << i << " of " << n << " (batch " << batch << "): " << a[i] << " vs "
                    << b[i];
      return;
    }
}

TEST(NetworkReuse, BuffersKeptAcrossBatchSizesChangeNoBit) {
  // Padding and a stride below the kernel (im2col's border columns), a max-pool, two linear layers.
  namespace t = test;
  const NetSpec spec = t::make_spec(3, 11, 10, 6,
                                    {t::conv("c1", 5, 3, 1, 2), t::relu(), t::maxpool(3, 2), t::conv("c2", 4, 2, 2, 1),
                                     t::relu(), t::flatten(), t::linear("f1", 9), t::relu(), t::linear("f2", 6)});
  Network<float> reused(spec);
  std::mt19937_64 rng(31);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(reused.num_params()));
  for (float& v : w) v = 0.4f * normal(rng);
  reused.set_weights(w);
  const int64_t np = reused.num_params(), c = spec.num_classes;
  for (const int64_t n : {64, 17, 100, 1, 33, 100, 5}) {
    std::vector<float> x(static_cast<size_t>(n * reused.input_size()));
    for (float& v : x) v = normal(rng);
    std::vector<int32_t> y(static_cast<size_t>(n));
    for (int32_t& v : y) v = static_cast<int32_t>(rng() % static_cast<uint64_t>(c));
    std::vector<float> seed(static_cast<size_t>(n * c));
    for (float& v : seed) v = normal(rng);
    std::vector<float> start(static_cast<size_t>(np));  // where kSqGrad accumulates from
    for (float& v : start) v = std::abs(normal(rng));

    Network<float> fresh(spec);
    fresh.set_weights(w);
    for (Network<float>* net : {&reused, &fresh}) net->forward(x.data(), y.data(), n);
    expect_same_bits(reused.logits(), fresh.logits(), n * c, "logits", n);
    expect_same_bits(reused.probs(), fresh.probs(), n * c, "probabilities", n);
    expect_same_bits(reused.sample_loss(), fresh.sample_loss(), n, "losses", n);
    expect_same_bits(reused.sample_correct(), fresh.sample_correct(), n, "correct flags", n);
    for (const BackwardMode mode : {BackwardMode::kGradient, BackwardMode::kHessian, BackwardMode::kSqGrad}) {
      std::vector<float> a = start, b = start;
      reused.backward(mode, seed.data(), a.data());
      fresh.backward(mode, seed.data(), b.data());
      expect_same_bits(a.data(), b.data(), np, mode == BackwardMode::kGradient ? "gradient"
                                               : mode == BackwardMode::kHessian ? "Hessian diagonal"
                                                                                 : "squared gradients", n);
    }
  }
}

}  // namespace
}  // namespace nq::nn
