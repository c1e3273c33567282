// Hessian diagonals against float64 oracles: OBD is exact for the last layer; the exact GGN equals the
// diagonal built from explicit Jacobians and (for these piecewise-linear nets) the exact Hessian diagonal from
// finite differences of gradients; Fisher equals the mean of squared per-sample gradients; the OBD recursion's
// error against the exact diagonal is measured and bounded.
#include <gtest/gtest.h>

#include <numeric>

#include <cstdio>

#include "netquant/nn.h"
#include "nn/model_internal.h"
#include "nn_test_util.h"

namespace nq::nn::test {
namespace {

NetSpec mlp() { return make_spec(1, 2, 3, 4, {flatten(), linear("fc1", 5), relu(), linear("fc2", 6), relu(), linear("fc3", 4)}); }
NetSpec cnn() {
  return make_spec(2, 6, 6, 3,
                   {conv("conv1", 3, 3, 1, 1), maxpool(2), conv("conv2", 2, 2, 1, 0), relu(), flatten(),
                    linear("fc1", 3)});
}

// Exact Hessian diagonal of the mean loss: central differences of the backprop gradient (verified separately).
std::vector<double> exact_diagonal(Problem& prob) {
  std::vector<double> h(prob.w.size());
  for (size_t i = 0; i < h.size(); ++i) {
    auto gi = [&](const std::vector<double>& w) { return prob.gradient(w)[i]; };
    h[i] = central_diff(gi, prob.w, i, 1e-5);
  }
  return h;
}

// GGN diagonal from explicit per-sample Jacobians J (classes x params, by finite differences of the logits):
// (1/n) sum_n sum_ab J[a,i] (diag(p) - p p^T)[a,b] J[b,i].
std::vector<double> explicit_ggn(Problem& prob) {
  const int64_t c = prob.net.num_classes();
  const size_t np = prob.w.size();
  std::vector<double> h(np, 0.0);
  for (int64_t s = 0; s < prob.n; ++s) {
    const std::vector<double> z = prob.logits(prob.w, s);
    double zmax = z[0], sum = 0;
    for (double v : z) zmax = std::max(zmax, v);
    std::vector<double> p(static_cast<size_t>(c));
    for (int64_t k = 0; k < c; ++k) sum += p[size_t(k)] = std::exp(z[size_t(k)] - zmax);
    for (double& v : p) v /= sum;
    for (size_t i = 0; i < np; ++i) {
      std::vector<double> wp = prob.w, wm = prob.w;
      wp[i] += 1e-6, wm[i] -= 1e-6;
      const auto zp = prob.logits(wp, s), zm = prob.logits(wm, s);
      std::vector<double> j(static_cast<size_t>(c));
      for (int64_t k = 0; k < c; ++k) j[size_t(k)] = (zp[size_t(k)] - zm[size_t(k)]) / 2e-6;
      double q = 0;
      for (int64_t a = 0; a < c; ++a)
        for (int64_t b = 0; b < c; ++b)
          q += j[size_t(a)] * ((a == b ? p[size_t(a)] : 0.0) - p[size_t(a)] * p[size_t(b)]) * j[size_t(b)];
      h[i] += q / double(prob.n);
    }
  }
  return h;
}

TEST(Hessian, ObdIsExactForLastLayer) {
  for (const NetSpec& spec : {mlp(), cnn()}) {
    Problem prob(spec, 7, 3);
    const auto obd = prob.obd(prob.w);
    const auto exact = exact_diagonal(prob);
    const auto& last_w = prob.net.params()[prob.net.params().size() - 2];
    const auto& last_b = prob.net.params().back();
    int64_t positive = 0;  // a unit dead for every sample has zero curvature: allowed, but not for most
    for (int64_t i = last_w.offset; i < last_b.offset + last_b.numel; ++i) {
      ASSERT_NEAR(obd[size_t(i)], exact[size_t(i)], 1e-6 * (1 + std::abs(exact[size_t(i)])))
          << "parameter " << i << " of the last layer";
      positive += exact[size_t(i)] > 0;
    }
    EXPECT_GT(positive, (last_b.offset + last_b.numel - last_w.offset) / 2) << "degenerate test problem";
  }
}

TEST(Hessian, GgnMatchesExplicitJacobiansAndExactDiagonal) {
  for (const NetSpec& spec : {mlp(), cnn()}) {
    Problem prob(spec, 5, 11);
    const auto ggn = prob.sqgrad(prob.w, /*ggn=*/true);
    const auto jac = explicit_ggn(prob);
    EXPECT_LT(rel_max_error(ggn, jac), 1e-6);
    // ReLU / max-pool / linear nets are linear in each single weight, so the exact diagonal has no
    // second-derivative-of-the-network term: it equals the GGN diagonal.
    const auto exact = exact_diagonal(prob);
    EXPECT_LT(rel_max_error(ggn, exact), 1e-5);
  }
}

TEST(Hessian, ObdRecursionErrorAgainstExactDiagonalIsBounded) {
  // OBD drops the off-diagonal curvature of the hidden pre-activations; measure what that costs.
  for (const char* name : {"mlp", "cnn"}) {
    const NetSpec spec = std::string(name) == "mlp" ? mlp() : cnn();
    double num = 0, den = 0, cos_num = 0, na = 0, nb = 0;
    for (uint64_t seed : {1, 2, 3}) {
      Problem prob(spec, 16, seed);
      const auto obd = prob.obd(prob.w);
      const auto exact = prob.sqgrad(prob.w, true);  // == exact diagonal (previous test)
      for (size_t i = 0; i < obd.size(); ++i) {
        num += (obd[i] - exact[i]) * (obd[i] - exact[i]);
        den += exact[i] * exact[i];
        cos_num += obd[i] * exact[i], na += obd[i] * obd[i], nb += exact[i] * exact[i];
        ASSERT_GE(obd[i], 0.0);
      }
    }
    const double rel = std::sqrt(num / den), cosine = cos_num / std::sqrt(na * nb);
    std::printf("[ measure  ] %s: OBD vs exact diagonal: relative L2 error %.3f, cosine %.4f\n",
                name, rel, cosine);
    RecordProperty("obd_relative_error", std::to_string(rel));
    EXPECT_LT(rel, 0.6);
    EXPECT_GT(cosine, 0.85);
  }
}

TEST(Hessian, FisherIsMeanOfSquaredPerSampleGradients) {
  for (const NetSpec& spec : {mlp(), cnn()}) {
    Problem prob(spec, 6, 5);
    const auto fisher = prob.sqgrad(prob.w, /*ggn=*/false);
    std::vector<double> oracle(prob.w.size(), 0.0);
    for (int64_t s = 0; s < prob.n; ++s) {
      const auto g = prob.gradient(prob.w, s, 1);  // one sample: its own gradient
      for (size_t i = 0; i < g.size(); ++i) oracle[i] += g[i] * g[i] / double(prob.n);
    }
    EXPECT_LT(rel_max_error(fisher, oracle), 1e-12);
  }
}

// The public float32 driver (batches, float64 accumulation, mean over samples) against the float64 oracle.
TEST(Hessian, PublicDriverMatchesFloat64Oracle) {
  const char* json = R"({"name":"tiny","input":[2,6,6],"classes":3,"layers":[
    {"type":"conv2d","name":"conv1","out":3,"kernel":3,"padding":1},{"type":"maxpool2d","kernel":2},
    {"type":"conv2d","name":"conv2","out":2,"kernel":2},{"type":"relu"},{"type":"flatten"},
    {"type":"linear","name":"fc1","out":3}]})";
  Model model = build_model_from_json(json, 7);
  const int64_t n = 37;
  Problem prob(model.spec(), n, 21);
  Dataset data;
  data.num_classes = 3;
  data.images = Tensor("images", DType::kF32, {n, 2, 6, 6});
  float* img = data.images.mutable_data_as<float>();
  for (size_t i = 0; i < prob.x.size(); ++i) {
    img[i] = static_cast<float>(prob.x[i]);
    prob.x[i] = img[i];  // both see the same float inputs
  }
  data.labels = prob.y;
  const auto wf = flatten_params<float>(model.spec(), model.weights(), "w");
  prob.w.assign(wf.begin(), wf.end());
  const int saved_threads = num_threads();
  // Batches of 10 (4 batches, the last one partial) and of 37 (one batch in 3 data-parallel micro-batches), on 1
  // and 2 threads: the same bits for either thread count.
  for (int64_t batch : {10, 37}) {
    for (HessianMethod m : {HessianMethod::kObd, HessianMethod::kFisher, HessianMethod::kGgn}) {
      SCOPED_TRACE(std::string(hessian_method_name(m)) + ", batch " + std::to_string(batch));
      HessianParams hp;
      hp.method = m;
      hp.samples = 0;
      hp.batch = batch;
      hp.backend = Backend::kCpu;
      std::vector<double> first;
      for (int threads : {1, 2}) {
        set_num_threads(threads);
        const TensorSet h = hessian_diagonal(model, data, hp);
        const auto got = flatten_params<double>(model.spec(), h, "h");
        const auto want = m == HessianMethod::kObd ? prob.obd(prob.w) : prob.sqgrad(prob.w, m == HessianMethod::kGgn);
        EXPECT_LT(rel_max_error(got, want), 1e-4);
        EXPECT_EQ(h.metadata().at("netquant.importance"), hessian_method_name(m));
        if (first.empty()) first = got;
        else EXPECT_EQ(got, first) << "differs between 1 and 2 threads";
      }
    }
    // And the gradient hook.
    const TensorSet g = compute_gradients(model, model.weights(), data, batch == 10 ? 8 : batch, Backend::kCpu);
    EXPECT_LT(rel_max_error(flatten_params<double>(model.spec(), g, "g"), prob.gradient(prob.w)), 1e-4);
  }
  set_num_threads(saved_threads);

  // samples = 23 of the 37 images: the mean over the first 23, which is the whole driver on a copy of just those
  // (not a sum over 23 divided by all 37), and the metadata says 23.
  const int64_t head_n = 23;
  std::vector<int64_t> first(static_cast<size_t>(head_n));
  std::iota(first.begin(), first.end(), int64_t{0});
  const Dataset head = images_of(data, first);
  for (HessianMethod m : {HessianMethod::kObd, HessianMethod::kFisher, HessianMethod::kGgn}) {
    SCOPED_TRACE(std::string(hessian_method_name(m)) + ", samples " + std::to_string(head_n));
    HessianParams hp;
    hp.method = m;
    hp.batch = 10;
    hp.backend = Backend::kCpu;
    hp.samples = head_n;
    const TensorSet part = hessian_diagonal(model, data, hp);
    hp.samples = 0;
    const TensorSet whole = hessian_diagonal(model, head, hp);
    EXPECT_EQ(flatten_params<double>(model.spec(), part, "h"), flatten_params<double>(model.spec(), whole, "h"));
    EXPECT_EQ(part.metadata().at("netquant.samples"), std::to_string(head_n));
  }
}

}  // namespace
}  // namespace nq::nn::test
