// Uses the installed library through its umbrella header only, and checks what it computes against oracles
// written here: Hessian-weighted k-means must return a Lloyd fixed point (every index the nearest level, every
// level the importance-weighted mean of its members) with the distortion it reports; a model must survive the .nq
// round trip in memory. Exit status 0 when all hold; each failure prints what and where.
#include <netquant/netquant.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <vector>

namespace {

int failures = 0;
void expect(bool ok, const char* what, double got = 0, double want = 0) {
  if (ok) return;
  ++failures;
  std::fprintf(stderr, "FAIL: %s (got %.17g, want %.17g)\n", what, got, want);
}
bool close(double a, double b, double rel) { return std::fabs(a - b) <= rel * std::max(std::fabs(a), std::fabs(b)); }

}  // namespace

int main() {
  expect(std::strcmp(nq::version(), NQ_EXPECT_VERSION) == 0, "nq::version() is the installed package's version");

  // 4,099 heavy-tailed values with gamma importances (seeded; no value repeats, so no exact ties).
  const size_t n = 4099;
  std::mt19937_64 rng(20261206);
  std::student_t_distribution<float> t(3.0f);
  std::gamma_distribution<float> g(0.7f, 2.0f);
  std::vector<float> w(n), h(n);
  for (size_t i = 0; i < n; ++i) {
    w[i] = 0.05f * t(rng);
    h[i] = g(rng) + 1e-3f;
  }
  nq::QuantizeParams params;
  params.method = nq::Method::kHwKmeans;
  params.k = 7;
  params.max_iter = 1000;
  params.tol = 0;
  params.backend = nq::Backend::kCpu;
  const nq::QuantizeResult r = nq::quantize(w.data(), h.data(), n, params);
  const size_t k = r.codebook.size();
  expect(k == 7, "k levels", static_cast<double>(k), 7);
  expect(r.indices.size() == n, "one index per value", static_cast<double>(r.indices.size()), static_cast<double>(n));
  if (failures) return 1;

  std::vector<double> sum_h(k, 0.0), sum_hw(k, 0.0);
  double distortion = 0;
  for (size_t i = 0; i < n; ++i) {
    const int32_t j = r.indices[i];
    expect(j >= 0 && static_cast<size_t>(j) < k, "index within the codebook", j, static_cast<double>(k));
    if (j < 0 || static_cast<size_t>(j) >= k) return 1;
    size_t nearest = 0;  // brute force over the levels
    for (size_t c = 1; c < k; ++c)
      if (std::fabs(double(w[i]) - r.codebook[c]) < std::fabs(double(w[i]) - r.codebook[nearest])) nearest = c;
    const double gap =
        std::fabs(std::fabs(double(w[i]) - r.codebook[nearest]) - std::fabs(double(w[i]) - r.codebook[j]));
    // (Labels follow the nearest rule against the fp64 centres; the levels are those rounded to float, which can
    // move a value within an ulp of a midpoint to the other side.)
    const double ulps = 1e-6 * (std::fabs(r.codebook[j]) + std::fabs(r.codebook[nearest]));
    expect(static_cast<size_t>(j) == nearest || gap <= ulps, "index is the nearest level", j,
           static_cast<double>(nearest));
    sum_h[j] += h[i];
    sum_hw[j] += double(h[i]) * w[i];
    const double e = double(w[i]) - r.codebook[j];
    distortion += h[i] * e * e;
  }
  for (size_t j = 0; j < k; ++j)
    expect(close(r.codebook[j], sum_hw[j] / sum_h[j], 1e-6), "level is its members' weighted mean", r.codebook[j],
           sum_hw[j] / sum_h[j]);
  expect(close(r.hw_distortion, distortion / n, 1e-6), "reported distortion", r.hw_distortion, distortion / n);

  // A two-tensor model through quantize_model and the .nq bytes, in memory.
  nq::TensorSet model;
  model.add(nq::Tensor::from_f32("fc.weight", {37, 111}, std::vector<float>(w.begin(), w.begin() + 37 * 111)));
  model.add(nq::Tensor::from_f32("fc.bias", {37}, std::vector<float>(w.end() - 37, w.end())));
  nq::ModelQuantizeParams mp;
  mp.quant = params;
  mp.quant.method = nq::Method::kEcsq;
  mp.quant.k = 16;
  mp.quant.lambda = 1e-5;
  mp.scope = nq::parse_scope("row");
  nq::QuantizedModel q = nq::quantize_model(model, nullptr, mp);
  const std::vector<uint8_t> bytes = nq::serialize_nq(q);
  const nq::TensorSet direct = q.dequantize();
  const nq::TensorSet via_file = nq::parse_nq(bytes.data(), bytes.size(), "in memory").dequantize();
  expect(direct.size() == 2 && via_file.size() == 2, "two tensors both ways");
  for (const char* name : {"fc.weight", "fc.bias"}) {
    const nq::Tensor* a = direct.find(name);
    const nq::Tensor* b = via_file.find(name);
    expect(a && b && a->shape() == b->shape() && a->nbytes() == b->nbytes() &&
               std::memcmp(a->data(), b->data(), a->nbytes()) == 0,
           name);
  }
  // Row scope, k = 16: no row of the dequantized weight has more than 16 distinct values.
  if (const nq::Tensor* fc = direct.find("fc.weight")) {
    const float* v = fc->data_as<float>();
    for (int r = 0; r < 37; ++r) {
      std::set<float> levels(v + r * 111, v + (r + 1) * 111);
      expect(levels.size() <= 16, "a row has at most k levels", static_cast<double>(levels.size()), 16);
    }
  }
  try {
    nq::parse_nq(bytes.data(), bytes.size() / 2, "truncated");
    expect(false, "a truncated .nq is refused");
  } catch (const nq::Error& e) {
    expect(e.code() == nq::ErrorCode::kBadFile, "a truncated .nq is kBadFile", static_cast<double>(e.code()));
  }
  if (failures == 0) std::printf("consumer: netquant %s from the installed package: all checks pass\n", nq::version());
  return failures == 0 ? 0 : 1;
}
