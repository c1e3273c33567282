// Built-in networks benchmark: time of one OBD Hessian pass / one gradient pass over the same images (target
// <= 2x, the performance targets), Fisher and exact-GGN passes for comparison, and training throughput (images/s).
// Usage: bench_nn [data_dir] [samples=1000] [reps=5]. Medians of `reps` runs; ratios measured in the same run.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "netquant/backend.h"
#include "netquant/io.h"
#include "netquant/nn.h"
#include "netquant/progress.h"
#include "nn/blas_kernels.h"

namespace {

nq::Dataset first_images(const nq::Dataset& d, int64_t n) {
  nq::Dataset s;
  n = std::min(n, d.size());
  s.images = nq::Tensor("images", nq::DType::kF32, {n, 1, 28, 28});
  std::copy(d.images.data_as<float>(), d.images.data_as<float>() + n * 784, s.images.mutable_data_as<float>());
  s.labels.assign(d.labels.begin(), d.labels.begin() + n);
  return s;
}

template <class F>
double median_seconds(int reps, F&& f) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  nq::nn::cpu::restart_with_better_blas_kernels(argv);  // as the CLI does: the kernels this CPU can run
  const std::string dir = argc > 1 ? argv[1] : nq::default_data_dir();
  const int64_t samples = argc > 2 ? std::atoll(argv[2]) : 1000;
  const int reps = argc > 3 ? std::atoi(argv[3]) : 5;
  if (!std::filesystem::exists(dir)) {
    std::fprintf(stderr, "no dataset at %s\n", dir.c_str());
    return 2;
  }
  nq::set_progress_enabled(false);
  const nq::Dataset train = nq::load_mnist(dir, true);
  const nq::Dataset data = first_images(train, samples);
  std::printf("threads %d, %lld images per pass, batch 250, median of %d, OpenBLAS kernels %s\n",
              nq::num_threads(), static_cast<long long>(data.size()), reps, nq::nn::cpu::blas_core().c_str());
  std::printf("%-9s %10s %10s %10s %10s %8s %8s %8s %12s\n", "model", "grad s", "obd s", "fisher s", "ggn s",
              "obd/g", "fish/g", "ggn/g", "train img/s");
  for (const char* name : {"lenet300", "lenet5"}) {
    nq::Model m = nq::build_model(name, 1);
    nq::HessianParams hp;
    hp.samples = 0;
    hp.batch = 250;
    hp.backend = nq::Backend::kCpu;
    hp.progress = false;
    const double tg = median_seconds(reps, [&] { nq::compute_gradients(m, m.weights(), data, 250, nq::Backend::kCpu); });
    double th[3];
    int k = 0;
    for (nq::HessianMethod method : {nq::HessianMethod::kObd, nq::HessianMethod::kFisher, nq::HessianMethod::kGgn}) {
      hp.method = method;
      th[k++] = median_seconds(method == nq::HessianMethod::kGgn ? 1 : reps, [&] { nq::hessian_diagonal(m, data, hp); });
    }
    nq::TrainParams tp;
    tp.epochs = 1;
    tp.batch = 64;
    tp.train_subset = 20000;  // an epoch long enough that start-up (OpenBLAS threads still spinning from the passes above) does not dominate
    tp.backend = nq::Backend::kCpu;
    tp.progress = false;
    nq::Model mt = nq::build_model(name, 1);
    const nq::TrainResult r = nq::train(mt, train, nullptr, tp);
    std::printf("%-9s %10.4f %10.4f %10.4f %10.4f %8.2f %8.2f %8.2f %12.0f\n", name, tg, th[0], th[1], th[2],
                th[0] / tg, th[1] / tg, th[2] / tg, r.epochs[0].images_per_second);
  }
  return 0;
}
