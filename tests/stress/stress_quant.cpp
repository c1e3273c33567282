// Randomized differential stress campaign of the CPU quantizer core: every check compares the library against an
// independent oracle (std::stable_sort, a brute-force fp64 argmin, long-double recomputations of the sums,
// brute-force optimal partitions, the plain per-row quantize()) on adversarial inputs (ties, ±0, denormals,
// importances over many decades, tiny steps, pruned rows). Built with the tests (target stress_quant), run by hand:
// it is a search for new bugs, not a pass/fail suite, and two classes of report are known limits rather than bugs
// (tests/stress/README.md).
//
//   build/tests/stress_quant [--check sort|opa|binned|quantize|uniform|rows|all] [--seconds S] [--seed BASE]
//                            [--one SEED] [--nofork]
//
// Each case runs in a forked child (--nofork: in process) and is seeded by BASE + i; a failure prints
// `FAIL <check> seed=<seed> ...`, and `--one <seed>` with the same --check replays exactly that case. A crash or a
// case over 300 s prints the case being run. The findings of its first campaign are regression tests in
// tests/quant/test_numeric_extremes.cpp.
#include <omp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "netquant/error.h"
#include "netquant/quantize.h"
#include "netquant/tensor.h"
#include "quant/binned_pass.h"
#include "quant/quant_ops.h"
#include "quant/quantizers.h"
#include "stress/campaign.h"

using namespace nq;

static bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }
static bool same_bits_f(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// ---------------------------------------------------------------------------------------------------------------
// Adversarial data.

static float random_finite_float(Rng& r) {
  for (;;) {
    uint32_t u = static_cast<uint32_t>(r());
    float f;
    std::memcpy(&f, &u, 4);
    if (std::isfinite(f)) return f;
  }
}

static const int kValueModes = 16;
static const char* value_mode_name(int m) {
  static const char* names[] = {"normal",   "student",  "few-distinct", "all-equal", "signed-zeros", "denormals",
                                "pos-1-2",  "neg-1-2",  "wide-exp",     "raw-bits",  "small-ints",   "ulp-cluster",
                                "sorted",   "reversed", "spike+wide",   "two-level"};
  return names[m];
}
// Values for mode m; `scale` keeps them in a sane range unless the mode says otherwise.
static std::vector<float> gen_values(Rng& r, size_t n, int mode) {
  std::vector<float> w(n);
  std::normal_distribution<double> N(0.0, 1.0);
  std::student_t_distribution<double> T(2.5);
  const double scale = std::pow(10.0, unif(r) * 8 - 6);
  switch (mode) {
    case 0: for (auto& x : w) x = static_cast<float>(scale * N(r)); break;
    case 1: for (auto& x : w) x = static_cast<float>(scale * T(r)); break;
    case 2: {
      const int m = static_cast<int>(irange(r, 1, 9));
      std::vector<float> pool(static_cast<size_t>(m));
      for (auto& p : pool) p = static_cast<float>(scale * N(r));
      if (unif(r) < 0.3) pool[0] = -0.0f;
      if (unif(r) < 0.3 && m > 1) pool[1] = 0.0f;
      for (auto& x : w) x = pick(r, pool);
      break;
    }
    case 3: {
      const float v = unif(r) < 0.3 ? (unif(r) < 0.5 ? 0.0f : -0.0f) : static_cast<float>(scale * N(r));
      std::fill(w.begin(), w.end(), v);
      break;
    }
    case 4: {
      const float d = std::numeric_limits<float>::denorm_min();
      const std::vector<float> pool = {0.0f, -0.0f, d, -d, 2 * d, 1e-30f, -1e-30f, 0.0f, -0.0f};
      for (auto& x : w) x = pick(r, pool);
      break;
    }
    case 5:
      for (auto& x : w) {
        uint32_t u = static_cast<uint32_t>(r()) & 0x807FFFFFu;  // exponent 0: denormal or zero
        std::memcpy(&x, &u, 4);
      }
      break;
    case 6: for (auto& x : w) x = static_cast<float>(1.0 + unif(r)) >= 2.0f ? 1.5f : static_cast<float>(1.0 + unif(r)); break;
    case 7: for (auto& x : w) { x = -static_cast<float>(1.0 + 0.999999 * unif(r)); } break;
    case 8:
      for (auto& x : w)
        x = static_cast<float>((unif(r) < 0.5 ? -1 : 1) * std::ldexp(1.0 + unif(r), static_cast<int>(irange(r, -140, 100))));
      break;
    case 9: for (auto& x : w) x = random_finite_float(r); break;
    case 10: for (auto& x : w) x = static_cast<float>(irange(r, -8, 8)); break;
    case 11: {
      const float base = static_cast<float>(scale * N(r));
      for (auto& x : w) {
        float v = base;
        for (int s = static_cast<int>(irange(r, -20, 20)); s != 0; s += s > 0 ? -1 : 1)
          v = std::nextafter(v, s > 0 ? 1e30f : -1e30f);
        x = v;
      }
      break;
    }
    case 12:
    case 13: {
      for (auto& x : w) x = static_cast<float>(scale * T(r));
      std::sort(w.begin(), w.end());
      if (mode == 13) std::reverse(w.begin(), w.end());
      break;
    }
    case 14: {  // most values within a few thousand ulps of one value, the rest wide: huge buckets
      const float base = static_cast<float>(scale * N(r));
      uint32_t bu;
      std::memcpy(&bu, &base, 4);
      for (auto& x : w) {
        if (unif(r) < 0.8) {
          uint32_t u = bu ^ static_cast<uint32_t>(irange(r, 0, 4095));
          std::memcpy(&x, &u, 4);
          if (!std::isfinite(x)) x = base;
        } else {
          x = static_cast<float>(scale * 100 * T(r));
        }
      }
      break;
    }
    default: {  // two levels and their float neighbours
      const float a = static_cast<float>(scale * N(r)), b = static_cast<float>(scale * N(r));
      for (auto& x : w) {
        float v = unif(r) < 0.5 ? a : b;
        if (unif(r) < 0.2) v = std::nextafter(v, unif(r) < 0.5 ? -1e30f : 1e30f);
        x = v;
      }
    }
  }
  return w;
}

static const int kImpModes = 9;
static const char* imp_mode_name(int m) {
  static const char* names[] = {"null", "ones", "gamma", "many-zeros", "all-zero", "extreme", "few-distinct", "neg-zero-mix", "zero-one"};
  return names[m];
}
// Importances (mode 0: none, returns empty).
static std::vector<float> gen_importance(Rng& r, size_t n, int mode) {
  std::vector<float> h;
  if (mode == 0) return h;
  h.resize(n);
  std::gamma_distribution<double> G(0.7, 2.0);
  const double zf = 0.5 + 0.49 * unif(r);
  switch (mode) {
    case 1: std::fill(h.begin(), h.end(), 1.0f); break;
    case 2: for (auto& x : h) x = static_cast<float>(G(r) + 1e-6); break;
    case 3: for (auto& x : h) x = unif(r) < zf ? 0.0f : static_cast<float>(G(r)); break;
    case 4: std::fill(h.begin(), h.end(), 0.0f); break;
    case 5:
      for (auto& x : h) x = unif(r) < 0.05 ? 0.0f : static_cast<float>(std::pow(10.0, unif(r) * 80 - 44));
      if (n > 0) h[0] = std::numeric_limits<float>::denorm_min();
      if (n > 1) h[1] = std::numeric_limits<float>::max();
      break;
    case 6: {
      const std::vector<float> pool = {0.5f, 1.0f, 2.0f, 1e-3f};
      for (auto& x : h) x = pick(r, pool);
      break;
    }
    case 7: for (auto& x : h) x = unif(r) < 0.3 ? -0.0f : static_cast<float>(G(r)); break;
    default: for (auto& x : h) x = unif(r) < 0.5 ? 0.0f : 1.0f; break;
  }
  return h;
}

static size_t gen_size(Rng& r, const std::vector<size_t>& special, size_t max_random) {
  const double u = unif(r);
  if (u < 0.5) {
    const size_t s = pick(r, special);
    const int64_t jitter = unif(r) < 0.5 ? 0 : irange(r, -2, 2);
    return static_cast<size_t>(std::max<int64_t>(0, static_cast<int64_t>(s) + jitter));
  }
  // log-uniform
  return static_cast<size_t>(std::exp(unif(r) * std::log(static_cast<double>(max_random))));
}

// ---------------------------------------------------------------------------------------------------------------
// Check 1: sort_pairs vs std::stable_sort by the numeric order (−0 before +0).
static bool order_less(float a, float b) {
  if (a < b) return true;
  if (a > b) return false;
  return a == 0.0f && std::signbit(a) && !std::signbit(b);  // equal: only −0 < +0
}

static void check_sort(uint64_t seed) {
  Rng r(seed);
  Failure f{"sort", seed};
  static const std::vector<size_t> special = {0,      1,      2,      7,      8,      63,      64,      65,     255,
                                              256,    3071,   3072,   3073,   4096,   65535,   65536,   65537,  131071,
                                              131072, 131073, 262144, 524289, 1u << 20, (1u << 20) + 1};
  size_t n = gen_size(r, special, 1u << 19);
  if (unif(r) < 0.03) n = (size_t{1} << 22) + static_cast<size_t>(irange(r, -3, 3));  // rare: 4M
  const int vm = static_cast<int>(irange(r, 0, kValueModes - 1));
  const int hm = static_cast<int>(irange(r, 0, 1)) == 0 ? 0 : 2;
  const int threads = static_cast<int>(irange(r, 1, 3));
  std::vector<float> w = gen_values(r, n, vm);
  std::vector<float> h = hm ? std::vector<float>(n) : std::vector<float>();
  for (size_t i = 0; i < h.size(); ++i) {  // h = a tag of the original position (exactly representable up to 2^24)
    h[i] = static_cast<float>(i % (1u << 24));
    if (i >= (1u << 24)) h[i] = std::ldexp(static_cast<float>(i >> 24), 30) + h[i];
  }
  char desc[256];
  snprintf(desc, sizeof desc, "n=%zu values=%s h=%s threads=%d", n, value_mode_name(vm), hm ? "tagged" : "null", threads);
  set_case("sort", seed, desc);
  std::vector<uint32_t> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = static_cast<uint32_t>(i);
  std::stable_sort(idx.begin(), idx.end(), [&](uint32_t a, uint32_t b) { return order_less(w[a], w[b]); });
  std::vector<float> ws(n, 12345.0f), hs(n, 12345.0f);
  omp_set_num_threads(threads);
  cpu::sort_pairs(w.data(), hm ? h.data() : nullptr, n, ws.data(), hs.data());
  omp_set_num_threads(2);
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    const float ew = w[idx[i]], eh = hm ? h[idx[i]] : 1.0f;
    if (!same_bits_f(ws[i], ew) || !same_bits_f(hs[i], eh)) {
      if (bad < 5)
        FAILF(f, "pos %zu: got (w=%a, h=%a) want (w=%a, h=%a)", i, static_cast<double>(ws[i]), static_cast<double>(hs[i]),
              static_cast<double>(ew), static_cast<double>(eh));
      ++bad;
    }
  }
  if (bad) FAILF(f, "%zu of %zu positions differ", bad, n);
  report(f, desc);
}

// ---------------------------------------------------------------------------------------------------------------
// Brute-force op (a): label = argmin_j h (w − c_j)² + λ l_j in fp64 (−ffp-contract=off), dead clusters skipped,
// ties to the lowest j, except that a value of importance 0 goes to the nearest of the tied clusters (then the
// lowest j). Written out independently of quant_formulas.h.
static int32_t brute_label(float w, double h, const std::vector<double>& c, const std::vector<double>& l, double lambda) {
  int32_t best = -1;
  double bc = 0;
  std::vector<double> cost(c.size(), std::numeric_limits<double>::infinity()), squared(c.size());
  for (size_t j = 0; j < c.size(); ++j) {
    if (!(l[j] < std::numeric_limits<double>::infinity())) continue;
    volatile double d = static_cast<double>(w) - c[j];
    volatile double dd = d * d;
    volatile double hdd = h * dd;
    volatile double rl = lambda * l[j];
    cost[j] = hdd + rl;
    squared[j] = dd;
    if (best < 0 || cost[j] < bc) { best = static_cast<int32_t>(j); bc = cost[j]; }
  }
  if (h == 0 && best >= 0)
    for (size_t j = 0; j < c.size(); ++j)
      if (cost[j] == bc && squared[j] < squared[static_cast<size_t>(best)]) best = static_cast<int32_t>(j);
  return best;
}

struct RefSums {  // long double sums from labels, and the sums of |terms| (rounding scales)
  std::vector<long double> sh, shw, sw, ash, ashw, asw;
  std::vector<int64_t> count;
  long double dist = 0, sq = 0, cost = 0;
};
static RefSums ref_sums(const std::vector<float>& w, const float* h, const std::vector<int32_t>& lab,
                        const std::vector<double>& c, const std::vector<double>& l, double lambda) {
  const size_t k = c.size();
  RefSums s;
  s.sh.assign(k, 0); s.shw.assign(k, 0); s.sw.assign(k, 0); s.ash.assign(k, 0); s.ashw.assign(k, 0); s.asw.assign(k, 0);
  s.count.assign(k, 0);
  for (size_t i = 0; i < w.size(); ++i) {
    const int j = lab[i];
    const long double hi = h ? h[i] : 1.0L, wi = w[i];
    s.sh[j] += hi; s.ash[j] += std::fabs(hi);
    s.shw[j] += hi * wi; s.ashw[j] += std::fabs(hi * wi);
    s.sw[j] += wi; s.asw[j] += std::fabs(wi);
    s.count[j]++;
    const long double d = wi - static_cast<long double>(c[j]);
    s.dist += hi * d * d;
    s.sq += d * d;
    s.cost += hi * d * d + static_cast<long double>(lambda) * l[j];
  }
  return s;
}

static bool near_ld(double got, long double want, long double scale, double rel) {
  if (std::isinf(want) || std::isinf(got)) return static_cast<long double>(got) == want;
  return std::fabs(static_cast<long double>(got) - want) <= rel * scale + 1e-300L;
}

// A random codebook for the values: centres strictly ascending (random picks from the data, linear, clustered,
// 1-ulp neighbours), code lengths of several shapes, maybe a dead cluster.
struct Codebook {
  std::vector<double> c, l;
  double lambda = 0;
  std::string desc;
};
static Codebook gen_codebook(Rng& r, const std::vector<float>& w, bool allow_dead) {
  Codebook cb;
  const int k = pick(r, std::vector<int>{1, 1, 2, 2, 3, 5, 8, 16, 31, 32, 33, 64, 65, 100, 256});
  double lo = 0, hi = 1;
  if (!w.empty()) {
    auto mm = std::minmax_element(w.begin(), w.end());
    lo = *mm.first; hi = *mm.second;
  }
  if (hi <= lo) { const double a = std::max(std::fabs(lo), 1e-30); lo -= a; hi += a; }
  const int cm = static_cast<int>(irange(r, 0, 5));
  std::vector<double>& c = cb.c;
  for (int j = 0; j < k; ++j) {
    double v;
    switch (cm) {
      case 0: v = k == 1 ? 0.5 * (lo + hi) : lo + (hi - lo) * j / (k - 1); break;        // linear over the range
      case 1: v = w.empty() ? unif(r) : static_cast<double>(w[static_cast<size_t>(irange(r, 0, static_cast<int64_t>(w.size()) - 1))]); break;  // on data values
      case 2: v = lo + (hi - lo) * unif(r); break;
      case 3: v = lo + (hi - lo) * (0.5 + 0.001 * (unif(r) - 0.5)); break;              // crowded in the middle
      case 4: v = (lo - 10 * (hi - lo)) + 21 * (hi - lo) * unif(r); break;              // far beyond the data
      default: v = lo + (hi - lo) * unif(r); if (j > 0 && unif(r) < 0.5) v = std::nextafter(c.back(), 1e300); break;
    }
    c.push_back(v);
  }
  std::sort(c.begin(), c.end());
  c.erase(std::unique(c.begin(), c.end()), c.end());
  // some centres exactly at float values / float midpoints
  const int km = static_cast<int>(c.size());
  std::vector<double>& l = cb.l;
  const int lm = static_cast<int>(irange(r, 0, 4));
  for (int j = 0; j < km; ++j) {
    switch (lm) {
      case 0: l.push_back(std::log2(static_cast<double>(km))); break;
      case 1: l.push_back(10 * unif(r)); break;
      case 2: l.push_back(1.0 + 0.3 * std::abs(j - km / 2)); break;
      case 3: l.push_back(j == 0 ? 0.0 : std::max(0.0, 6.0 - 0.4 * std::abs(j - km / 2))); break;  // far cluster free
      default: l.push_back(unif(r) < 0.3 ? 0.0 : 20 * unif(r)); break;
    }
  }
  if (allow_dead && km > 1 && unif(r) < 0.15) l[static_cast<size_t>(irange(r, 0, km - 1))] = std::numeric_limits<double>::infinity();
  double var = 0;
  if (!w.empty()) {
    double m = 0;
    for (float x : w) m += x;
    m /= static_cast<double>(w.size());
    for (float x : w) var += (x - m) * (x - m);
    var /= static_cast<double>(w.size());
  }
  if (!(var > 0) || !std::isfinite(var)) var = 1;
  const double u = unif(r);
  if (u < 0.25) cb.lambda = 0;
  else if (u < 0.35) cb.lambda = 1e-300;
  else if (u < 0.45) cb.lambda = 1e300 * unif(r);
  else cb.lambda = var * std::pow(10.0, unif(r) * 10 - 8);
  if (!std::isfinite(cb.lambda)) cb.lambda = 1e300;
  char d[200];
  snprintf(d, sizeof d, "k=%d cmode=%d lmode=%d lambda=%.17g", km, cm, lm, cb.lambda);
  cb.desc = d;
  return cb;
}

// Values placed exactly on midpoints of the codebook (as floats) and their neighbours.
static void place_on_midpoints(Rng& r, std::vector<float>& w, const std::vector<double>& c) {
  if (c.size() < 2) return;
  for (auto& x : w) {
    if (unif(r) < 0.5) continue;
    const size_t j = static_cast<size_t>(irange(r, 0, static_cast<int64_t>(c.size()) - 2));
    float v = static_cast<float>(0.5 * (c[j] + c[j + 1]));
    const double u = unif(r);
    if (u < 0.25) v = std::nextafter(v, -1e30f);
    else if (u < 0.5) v = std::nextafter(v, 1e30f);
    else if (u < 0.6) v = static_cast<float>(c[j]);
    if (std::isfinite(v)) x = v;
  }
}

// Check 2a: op (a) against brute force (labels exactly; sums to rounding), 1 vs 2 threads bitwise, labels on/off.
// Check 2b: the binned pass against op (a): identical counts, sums to rounding; the resident values (op (d)).
static double g_binned_max_rel[6] = {0, 0, 0, 0, 0, 0};
static long g_prec_prints = 0;  // worst relative errors seen (sum_h, sum_hw, sum_w, dist, sq, cost)

static void check_opa_binned(uint64_t seed, bool binned) {
  Rng r(seed);
  Failure f{binned ? "binned" : "opa", seed};
  static const std::vector<size_t> special = {1, 2, 3, 17, 63, 64, 255, 256, 1000, 4099, 16383, 16384, 16385, 65536, 65537, 100003, 200003};
  const size_t n = binned ? (unif(r) < 0.6 ? gen_size(r, special, 300000) : static_cast<size_t>(irange(r, 65536, 300000)))
                          : gen_size(r, special, 300000);
  const int vm = static_cast<int>(irange(r, 0, kValueModes - 1));
  const int hm = static_cast<int>(irange(r, 0, kImpModes - 1));
  std::vector<float> w = gen_values(r, n, vm);
  if (vm == 9 || vm == 8) {  // keep costs finite: the certificate and op (a) are only compared on finite costs
    for (auto& x : w) if (std::fabs(x) > 1e30f) x = std::copysign(1e30f, x);
  }
  std::vector<float> h = gen_importance(r, n, hm);
  for (auto& x : h) if (x < 0 || std::signbit(x)) x = std::fabs(x);  // ops take h >= 0 (−0 → +0 is still "0")
  Codebook cb = gen_codebook(r, w, true);
  if (unif(r) < 0.3) place_on_midpoints(r, w, cb.c);
  const size_t bins = pick(r, std::vector<size_t>{0, 0, 1, 7, 64, 256, 1000});
  const int k = static_cast<int>(cb.c.size());
  const float* hp = h.empty() ? nullptr : h.data();
  char desc[512];
  snprintf(desc, sizeof desc, "n=%zu values=%s importance=%s %s bins=%zu", n, value_mode_name(vm), imp_mode_name(hm),
           cb.desc.c_str(), bins);
  set_case(f.check, seed, desc);

  std::vector<int32_t> lab(n, -7), lab2(n, -7);
  quant::AssignAccum a1, a2, a3;
  omp_set_num_threads(2);
  cpu::assign_accumulate(w.data(), hp, n, cb.c.data(), cb.l.data(), k, cb.lambda, lab.data(), a1);
  if (!binned) {
    // brute-force labels
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
      const int32_t want = brute_label(w[i], hp ? hp[i] : 1.0, cb.c, cb.l, cb.lambda);
      if (lab[i] != want) {
        if (bad < 4) {
          FAILF(f, "value %zu w=%a h=%a: op(a) label %d, brute force %d", i, static_cast<double>(w[i]),
                hp ? static_cast<double>(hp[i]) : 1.0, lab[i], want);
        }
        ++bad;
      }
    }
    if (bad) FAILF(f, "%zu labels differ from the brute-force argmin", bad);
    // sums from the labels
    const RefSums s = ref_sums(w, hp, lab, cb.c, cb.l, cb.lambda);
    for (int j = 0; j < k; ++j) {
      if (a1.count[j] != s.count[j]) FAILF(f, "cluster %d count %" PRId64 " vs %" PRId64, j, a1.count[j], s.count[j]);
      if (!near_ld(a1.sum_h[j], s.sh[j], s.ash[j], 1e-12)) FAILF(f, "cluster %d sum_h %.17g vs %.17Lg", j, a1.sum_h[j], s.sh[j]);
      if (!near_ld(a1.sum_hw[j], s.shw[j], s.ashw[j], 1e-12)) FAILF(f, "cluster %d sum_hw %.17g vs %.17Lg", j, a1.sum_hw[j], s.shw[j]);
      if (!near_ld(a1.sum_w[j], s.sw[j], s.asw[j], 1e-12)) FAILF(f, "cluster %d sum_w %.17g vs %.17Lg", j, a1.sum_w[j], s.sw[j]);
    }
    if (!near_ld(a1.distortion, s.dist, s.dist, 1e-12)) FAILF(f, "distortion %.17g vs %.17Lg", a1.distortion, s.dist);
    if (!near_ld(a1.sq_error, s.sq, s.sq, 1e-12)) FAILF(f, "sq_error %.17g vs %.17Lg", a1.sq_error, s.sq);
    if (!near_ld(a1.cost, s.cost, s.cost, 1e-12)) FAILF(f, "cost %.17g vs %.17Lg", a1.cost, s.cost);
    // one thread, no labels: the same bits
    omp_set_num_threads(1);
    cpu::assign_accumulate(w.data(), hp, n, cb.c.data(), cb.l.data(), k, cb.lambda, nullptr, a2);
    omp_set_num_threads(2);
    bool same = a1.count == a2.count && same_bits(a1.distortion, a2.distortion) && same_bits(a1.sq_error, a2.sq_error) &&
                same_bits(a1.cost, a2.cost);
    for (int j = 0; j < k; ++j)
      same = same && same_bits(a1.sum_h[j], a2.sum_h[j]) && same_bits(a1.sum_hw[j], a2.sum_hw[j]) && same_bits(a1.sum_w[j], a2.sum_w[j]);
    if (!same) FAILF(f, "1 thread without labels differs in bits from 2 threads with labels (dist %.17g vs %.17g)", a1.distortion, a2.distortion);
    // segments = the fixed blocks: bitwise the same (the documented identity)
    if (n > 0) {
      const size_t blk = quant::accum_block_size(n);
      std::vector<size_t> seg;
      for (size_t e = blk; e < n; e += blk) seg.push_back(e);
      seg.push_back(n);
      std::vector<quant::AssignAccum> parts;
      cpu::assign_accumulate_segments(w.data(), hp, seg.data(), seg.size(), cb.c.data(), cb.l.data(), k, cb.lambda,
                                      lab2.data(), parts);
      quant::AssignAccum fold;
      fold.reset(k);
      for (const auto& p : parts) fold.add(p);
      bool s2 = lab2 == lab && fold.count == a1.count && same_bits(fold.distortion, a1.distortion) && same_bits(fold.cost, a1.cost);
      for (int j = 0; j < k; ++j) s2 = s2 && same_bits(fold.sum_hw[j], a1.sum_hw[j]);
      if (!s2) FAILF(f, "assign_accumulate_segments over the blocks differs from assign_accumulate");
    }
    report(f, desc);
    return;
  }

  // binned pass vs op (a)
  quant::AssignAccum got;
  size_t ones = 0;
  {
    const quant::BinnedValues bv(w.data(), hp, n, bins);
    if (bv.size() != n) FAILF(f, "binned size %zu != n", bv.size());
    bv.assign_accumulate(cb.c.data(), cb.l.data(), k, cb.lambda, got, &ones);
    // the same object again (scratch reuse) must give the same bits
    quant::AssignAccum again;
    bv.assign_accumulate(cb.c.data(), cb.l.data(), k, cb.lambda, again);
    bool same = again.count == got.count && same_bits(again.cost, got.cost) && same_bits(again.distortion, got.distortion);
    if (!same) FAILF(f, "a second pass on the same BinnedValues differs");
    // built from op (b1)'s sorted copy (what the ECSQ driver does): the same layout and the same bits
    std::vector<float> ws(n), hs(n);
    cpu::sort_pairs(w.data(), hp, n, ws.data(), hs.data());
    const quant::BinnedValues from_sorted(w.data(), hp, n, bins, quant::SortedView{ws.data(), hs.data()});
    bool layout = from_sorted.bins() == bv.bins() && from_sorted.size() == bv.size() &&
                  from_sorted.values().size() == bv.values().size();
    for (size_t i = 0; layout && i < bv.values().size(); ++i)
      layout = same_bits_f(from_sorted.values()[i], bv.values()[i]) && same_bits_f(from_sorted.importances()[i], bv.importances()[i]);
    if (!layout) FAILF(f, "BinnedValues from a sorted copy has another layout");
    quant::AssignAccum sorted_sums;
    from_sorted.assign_accumulate(cb.c.data(), cb.l.data(), k, cb.lambda, sorted_sums);
    same = sorted_sums.count == got.count && same_bits(sorted_sums.cost, got.cost) &&
           same_bits(sorted_sums.distortion, got.distortion);
    for (int j = 0; j < k; ++j)
      same = same && same_bits(sorted_sums.sum_hw[j], got.sum_hw[j]) && same_bits(sorted_sums.sum_w[j], got.sum_w[j]);
    if (!same) FAILF(f, "BinnedValues from a sorted copy gives other sums");
  }
  double tot_h = 0, tot_hw = 0, tot_w = 0;
  long double tot_d = 0, tot_sq = 0, tot_c = 0;
  for (size_t i = 0; i < n; ++i) {
    const double hi = hp ? hp[i] : 1.0;
    tot_h += hi;
    tot_hw += hi * std::fabs(w[i]);
    tot_w += std::fabs(w[i]);
  }
  (void)tot_d; (void)tot_sq; (void)tot_c;
  for (int j = 0; j < k; ++j) {
    if (got.count[j] != a1.count[j]) FAILF(f, "cluster %d count binned %" PRId64 " vs op(a) %" PRId64, j, got.count[j], a1.count[j]);
    const double e[3] = {std::fabs(got.sum_h[j] - a1.sum_h[j]) / (tot_h + 1e-300),
                         std::fabs(got.sum_hw[j] - a1.sum_hw[j]) / (tot_hw + 1e-300),
                         std::fabs(got.sum_w[j] - a1.sum_w[j]) / (tot_w + 1e-300)};
    const char* nm[3] = {"sum_h", "sum_hw", "sum_w"};
    const double gv[3] = {got.sum_h[j], got.sum_hw[j], got.sum_w[j]}, wv[3] = {a1.sum_h[j], a1.sum_hw[j], a1.sum_w[j]};
    for (int q = 0; q < 3; ++q) {
      if (std::isfinite(e[q])) g_binned_max_rel[q] = std::max(g_binned_max_rel[q], e[q]);
      if (!(e[q] <= 1e-10) && !(gv[q] == wv[q])) FAILF(f, "cluster %d %s binned %.17g vs op(a) %.17g (err/Σ|terms| %.3g)", j, nm[q], gv[q], wv[q], e[q]);
    }
  }
  const double sg[3] = {got.distortion, got.sq_error, got.cost}, sw[3] = {a1.distortion, a1.sq_error, a1.cost};
  double nat[3] = {0, 0, 0};
  {
    long double mh = 0, sh = 0, mw = 0;
    for (size_t i = 0; i < n; ++i) { const double hi = hp ? hp[i] : 1.0; if (hi > 0) { mh += hi * static_cast<long double>(w[i]); sh += hi; } mw += w[i]; }
    mh = sh > 0 ? mh / sh : 0; mw = n ? mw / n : 0;
    long double d = 0, q2 = 0, c2 = 0;
    for (size_t i = 0; i < n; ++i) {
      const long double hi = hp ? hp[i] : 1.0L;
      d += hi * (w[i] - mh) * (w[i] - mh);
      q2 += (w[i] - mw) * (w[i] - mw) + (hi > 0 ? 0.0L : static_cast<long double>(w[i]) * w[i]);
      const int j = lab[i];
      c2 += hi * (w[i] - static_cast<long double>(cb.c[j])) * (w[i] - static_cast<long double>(cb.c[j])) + static_cast<long double>(cb.lambda) * cb.l[j];
    }
    nat[0] = static_cast<double>(d); nat[1] = static_cast<double>(q2); nat[2] = static_cast<double>(c2 + d);
  }
  const char* sn[3] = {"distortion", "sq_error", "cost"};
  for (int q = 0; q < 3; ++q) {
    if (sg[q] == sw[q]) continue;
    const double e = std::fabs(sg[q] - sw[q]) / (std::fabs(sw[q]) + 1e-300);
    if (std::isfinite(e)) g_binned_max_rel[3 + q] = std::max(g_binned_max_rel[3 + q], e);
    // natural rounding scale: Σ h (w − mean)² (distortion), Σ w² + Σ (w − mean)² (sq_error: the zero-importance
    // group is expanded about 0), Σ|terms| (cost)
    const double es = std::fabs(sg[q] - sw[q]) / (std::max(std::fabs(sw[q]), nat[q]) + 1e-300);
    if (!(e <= 1e-9)) {
      ++g_cases[std::string("binned:precision>1e-9rel(") + sn[q] + ")"];
      if (g_prec_prints++ < 12)
        printf("NOTE binned-precision seed=%" PRIu64 " %s: %s binned %.17g vs op(a) %.17g (rel %.3g, rel to natural scale %.3g), %zu one by one\n",
               seed, desc, sn[q], sg[q], sw[q], e, es, ones);
    }
    if (!(es <= 1e-11)) FAILF(f, "%s binned %.17g vs op(a) %.17g (rel %.3g; %.3g of the natural scale %.3g), %zu values one by one", sn[q], sg[q], sw[q], e, es, nat[q], ones);
  }
  // op (d): resident values (binned for n >= 2^16) — labels and counts as op (a), multi = single bitwise
  if (n > 0) {
    auto rv = cpu::make_resident_values(w.data(), hp, n);
    quant::AssignAccum ra;
    rv->assign_accumulate(cb.c.data(), cb.l.data(), k, cb.lambda, ra);
    std::vector<int32_t> rl = rv->take_labels();
    if (rl != lab) FAILF(f, "resident values' labels differ from op (a)'s");
    if (ra.count != a1.count) FAILF(f, "resident values' counts differ from op (a)'s");
    quant::CodebookBatch books;
    books.add(cb.c.data(), cb.l.data(), k, cb.lambda);
    std::vector<double> l2 = cb.l;
    for (auto& x : l2) if (std::isfinite(x)) x = x * 0.5;
    books.add(cb.c.data(), l2.data(), k, cb.lambda * 3);
    std::vector<quant::AssignAccum> multi;
    rv->assign_accumulate_multi(books, multi);
    quant::AssignAccum single2;
    rv->assign_accumulate(cb.c.data(), l2.data(), k, cb.lambda * 3, single2);
    if (multi.size() != 2 || multi[0].count != ra.count || !same_bits(multi[0].cost, ra.cost) ||
        multi[1].count != single2.count || !same_bits(multi[1].cost, single2.cost) ||
        !same_bits(multi[1].distortion, single2.distortion))
      FAILF(f, "assign_accumulate_multi differs from assign_accumulate (cost %.17g vs %.17g)",
            multi.size() ? multi[0].cost : -1.0, ra.cost);
  }
  // binned with 1 thread: the same bits as with 2
  {
    omp_set_num_threads(1);
    const quant::BinnedValues bv(w.data(), hp, n, bins);
    quant::AssignAccum one;
    bv.assign_accumulate(cb.c.data(), cb.l.data(), k, cb.lambda, one);
    omp_set_num_threads(2);
    bool same = one.count == got.count && same_bits(one.cost, got.cost) && same_bits(one.distortion, got.distortion) &&
                same_bits(one.sq_error, got.sq_error);
    for (int j = 0; j < k; ++j) same = same && same_bits(one.sum_hw[j], got.sum_hw[j]) && same_bits(one.sum_w[j], got.sum_w[j]);
    if (!same) FAILF(f, "binned pass with 1 thread differs in bits from 2 threads");
  }
  report(f, desc);
}

// ---------------------------------------------------------------------------------------------------------------
// Check 3: nq::quantize.
struct Oracle {
  double hw = 0, mse = 0, ent = 0;
};
static Oracle recompute(const std::vector<float>& w, const float* h, const QuantizeResult& r) {
  Oracle o;
  long double d = 0, m = 0;
  std::vector<int64_t> cnt(r.codebook.size(), 0);
  for (size_t i = 0; i < w.size(); ++i) {
    const long double e = static_cast<long double>(r.codebook[static_cast<size_t>(r.indices[i])]) - w[i];
    m += e * e;
    d += (h ? h[i] : 1.0L) * e * e;
    cnt[static_cast<size_t>(r.indices[i])]++;
  }
  o.hw = static_cast<double>(d / w.size());
  o.mse = static_cast<double>(m / w.size());
  long double ent = 0;
  for (int64_t c : cnt)
    if (c > 0) {
      const long double p = static_cast<long double>(c) / w.size();
      ent -= p * std::log2(p);
    }
  o.ent = static_cast<double>(ent);
  return o;
}

static bool same_result(const QuantizeResult& a, const QuantizeResult& b, bool history, std::string& why) {
  if (a.codebook.size() != b.codebook.size()) { why = "codebook size " + std::to_string(a.codebook.size()) + " vs " + std::to_string(b.codebook.size()); return false; }
  for (size_t j = 0; j < a.codebook.size(); ++j)
    if (!same_bits_f(a.codebook[j], b.codebook[j])) { char t[128]; snprintf(t, sizeof t, "codebook[%zu] %a vs %a", j, (double)a.codebook[j], (double)b.codebook[j]); why = t; return false; }
  if (a.indices != b.indices) {
    size_t i = 0;
    while (i < a.indices.size() && i < b.indices.size() && a.indices[i] == b.indices[i]) ++i;
    why = "indices differ first at " + std::to_string(i);
    return false;
  }
  if (!same_bits(a.hw_distortion, b.hw_distortion)) { char t[128]; snprintf(t, sizeof t, "hw_distortion %.17g vs %.17g", a.hw_distortion, b.hw_distortion); why = t; return false; }
  if (!same_bits(a.mse, b.mse)) { why = "mse"; return false; }
  if (!same_bits(a.entropy_bits, b.entropy_bits)) { why = "entropy"; return false; }
  if (!same_bits(a.lambda, b.lambda)) { char t[128]; snprintf(t, sizeof t, "lambda %.17g vs %.17g", a.lambda, b.lambda); why = t; return false; }
  if (!same_bits(a.step, b.step)) { why = "step"; return false; }
  if (a.iterations != b.iterations) { why = "iterations " + std::to_string(a.iterations) + " vs " + std::to_string(b.iterations); return false; }
  if (a.converged != b.converged) { why = "converged"; return false; }
  if (history) {
    if (a.history.size() != b.history.size()) { why = "history size"; return false; }
    for (size_t i = 0; i < a.history.size(); ++i)
      if (!same_bits(a.history[i].objective, b.history[i].objective) || a.history[i].clusters != b.history[i].clusters) {
        why = "history " + std::to_string(i);
        return false;
      }
  }
  return true;
}

// Brute-force optimum of the weighted 1-D k-clustering over contiguous partitions of the sorted values (n ≤ 12),
// each cluster at its weighted mean (plain mean when weightless). Returns Σ h (w − c)² / n in long double.
static long double brute_optimum(const std::vector<float>& w, const float* h, int k) {
  const size_t n = w.size();
  std::vector<size_t> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return w[a] < w[b]; });
  std::vector<long double> ws(n), hs(n);
  for (size_t i = 0; i < n; ++i) { ws[i] = w[idx[i]]; hs[i] = h ? h[idx[i]] : 1.0L; }
  auto cost = [&](size_t a, size_t b) {  // [a, b)
    long double sh = 0, shw = 0, sw = 0;
    for (size_t i = a; i < b; ++i) { sh += hs[i]; shw += hs[i] * ws[i]; sw += ws[i]; }
    const long double c = sh > 0 ? shw / sh : sw / (b - a);
    long double d = 0;
    for (size_t i = a; i < b; ++i) d += hs[i] * (ws[i] - c) * (ws[i] - c);
    return d;
  };
  long double best = std::numeric_limits<long double>::infinity();
  // enumerate cut masks with at most k − 1 cuts
  const size_t cuts = n - 1;
  for (uint32_t mask = 0; mask < (1u << cuts); ++mask) {
    if (__builtin_popcount(mask) > k - 1) continue;
    long double d = 0;
    size_t a = 0;
    for (size_t i = 0; i < cuts; ++i)
      if (mask & (1u << i)) { d += cost(a, i + 1); a = i + 1; }
    d += cost(a, n);
    best = std::min(best, d);
  }
  return best / n;
}

static void check_quantize(uint64_t seed) {
  Rng r(seed);
  Failure f{"quantize", seed};
  const Method methods[] = {Method::kHwKmeans, Method::kKmeans, Method::kEcsq, Method::kUniform, Method::kExact};
  const Method m = methods[irange(r, 0, 4)];
  static const std::vector<size_t> special = {1, 2, 3, 4, 5, 8, 12, 64, 65, 255, 256, 257, 1000, 3072, 4096, 16384, 65536, 65537};
  size_t n = gen_size(r, special, 20000);
  if (unif(r) < 0.05) n = static_cast<size_t>(irange(r, 60000, 200000));
  if (n == 0) n = 1;
  const bool tiny = unif(r) < 0.2;
  if (tiny) n = static_cast<size_t>(irange(r, 1, 12));
  const int vm = static_cast<int>(irange(r, 0, kValueModes - 1));
  const int hm = static_cast<int>(irange(r, 0, kImpModes - 1));
  std::vector<float> w = gen_values(r, n, vm);
  std::vector<float> h = gen_importance(r, n, hm);
  const float* hp = h.empty() ? nullptr : h.data();
  QuantizeParams q;
  q.method = m;
  q.backend = Backend::kCpu;
  q.k = pick(r, std::vector<int>{1, 2, 3, 4, 5, 7, 8, 16, 32, 64, 256, 1000});
  if (tiny) q.k = static_cast<int>(irange(r, 1, 4));
  q.init = pick(r, std::vector<Init>{Init::kLinear, Init::kQuantile, Init::kKmeansPP});
  q.max_iter = pick(r, std::vector<int>{1, 2, 5, 100, 300});
  q.tol = pick(r, std::vector<double>{0.0, 1e-7, 1e-3});
  q.seed = r();
  double var = 0, mean = 0, amax = 0;
  for (float x : w) { mean += x; amax = std::max(amax, static_cast<double>(std::fabs(x))); }
  mean /= static_cast<double>(n);
  for (float x : w) var += (x - mean) * (x - mean);
  var /= static_cast<double>(n);
  if (!(var > 0) || !std::isfinite(var)) var = 1;
  if (m == Method::kEcsq) {
    q.lambda = unif(r) < 0.2 ? 0.0 : var * std::pow(10.0, unif(r) * 6 - 5);
    if (unif(r) < 0.15) {  // a target instead: one rate goal
      q.target_bits = 0.2 + 4 * unif(r);
      q.lambda = 0;
    }
  }
  if (m == Method::kUniform) {
    const double u = unif(r);
    if (u < 0.3) q.step = 0;
    else if (u < 0.8) q.step = std::max(amax, 1e-30) * std::pow(10.0, -unif(r) * 4);
    else q.target_bits = 0.2 + 4 * unif(r);
  }
  if ((m == Method::kHwKmeans || m == Method::kKmeans || m == Method::kEcsq) && unif(r) < 0.15) {
    const int c = unif(r) < 0.2 ? static_cast<int>(irange(r, 1, 6)) : static_cast<int>(irange(r, 1, std::max(1, q.k)));
    for (int j = 0; j < c; ++j) q.initial_centers.push_back(static_cast<double>(w[static_cast<size_t>(irange(r, 0, static_cast<int64_t>(n) - 1))]));
  }
  char desc[512];
  snprintf(desc, sizeof desc, "method=%s n=%zu values=%s importance=%s k=%d init=%s max_iter=%d tol=%g lambda=%.17g step=%.17g target_bits=%g warm=%zu kseed=%" PRIu64,
           method_traits(m).name, n, value_mode_name(vm), imp_mode_name(hm), q.k, init_name(q.init), q.max_iter, q.tol,
           q.lambda, q.step, q.target_bits, q.initial_centers.size(), q.seed);
  set_case("quantize", seed, desc);

  QuantizeResult r2, r1, r2b;
  try {
    omp_set_num_threads(2);
    r2 = quantize(w.data(), hp, n, q);
    r2b = quantize(w.data(), hp, n, q);
    omp_set_num_threads(1);
    r1 = quantize(w.data(), hp, n, q);
    omp_set_num_threads(2);
  } catch (const Error& e) {
    omp_set_num_threads(2);
    // A start of more distinct centres than k is refused (k-means and ECSQ never add centres).
    std::vector<double> start = q.initial_centers;
    std::sort(start.begin(), start.end());
    start.erase(std::unique(start.begin(), start.end()), start.end());
    const bool uses_start = m == Method::kKmeans || m == Method::kHwKmeans || m == Method::kEcsq;
    if (uses_start && start.size() > static_cast<size_t>(q.k) && e.code() == ErrorCode::kInvalidArgument) {
      ++g_cases["quantize:start>k-refused"];
      return;
    }
    FAILF(f, "threw nq::Error: %s", e.what());
    report(f, desc);
    return;
  } catch (const std::exception& e) {
    omp_set_num_threads(2);
    FAILF(f, "threw std::exception: %s", e.what());
    report(f, desc);
    return;
  }
  std::string why;
  if (!same_result(r2, r2b, true, why)) FAILF(f, "two runs differ: %s", why.c_str());
  if (!same_result(r2, r1, true, why)) FAILF(f, "1 vs 2 threads differ: %s", why.c_str());
  const QuantizeResult& res = r2;
  // structure
  if (res.indices.size() != n) { FAILF(f, "indices.size() %zu != n", res.indices.size()); report(f, desc); return; }
  const int K = static_cast<int>(res.codebook.size());
  bool ok = K >= 1;
  for (int j = 1; j < K; ++j) if (!(res.codebook[j - 1] < res.codebook[j])) { FAILF(f, "codebook not strictly ascending at %d: %a %a", j, (double)res.codebook[j - 1], (double)res.codebook[j]); ok = false; break; }
  for (int j = 0; j < K; ++j) if (!std::isfinite(res.codebook[j])) { FAILF(f, "codebook[%d] not finite", j); ok = false; }
  std::vector<int64_t> used(static_cast<size_t>(std::max(K, 0)), 0);
  for (size_t i = 0; i < n; ++i) {
    if (res.indices[i] < 0 || res.indices[i] >= K) { FAILF(f, "index %zu = %d out of [0, %d)", i, res.indices[i], K); ok = false; break; }
    used[static_cast<size_t>(res.indices[i])]++;
  }
  if (!ok) { report(f, desc); return; }
  for (int j = 0; j < K; ++j) if (used[j] == 0) FAILF(f, "codebook level %d (%a) unused", j, (double)res.codebook[j]);
  const bool takes_k = m != Method::kUniform && m != Method::kEcsq;
  if (takes_k && K > q.k) FAILF(f, "%d levels for k = %d", K, q.k);
  if (m == Method::kEcsq && K > q.k) FAILF(f, "ecsq: %d levels for k_max = %d", K, q.k);
  // statistics
  bool any_pos = false;
  if (hp) for (float x : h) any_pos = any_pos || x > 0;
  const float* hused = (method_traits(m).uses_importance && any_pos) ? hp : nullptr;
  const Oracle o = recompute(w, hused, res);
  auto rel = [](double a, double b) { return a == b ? 0.0 : std::fabs(a - b) / std::max(std::fabs(a), std::fabs(b)); };
  if (!(rel(res.hw_distortion, o.hw) <= 1e-9)) FAILF(f, "hw_distortion %.17g vs recomputed %.17g (rel %.3g)", res.hw_distortion, o.hw, rel(res.hw_distortion, o.hw));
  if (!(rel(res.mse, o.mse) <= 1e-9)) FAILF(f, "mse %.17g vs recomputed %.17g (rel %.3g)", res.mse, o.mse, rel(res.mse, o.mse));
  if (!(std::fabs(res.entropy_bits - o.ent) <= 1e-9)) FAILF(f, "entropy %.17g vs recomputed %.17g", res.entropy_bits, o.ent);
  if (m == Method::kEcsq && q.target_bits == 0 && !same_bits(res.lambda, q.lambda)) FAILF(f, "ecsq reported lambda %.17g != given %.17g", res.lambda, q.lambda);
  // nearest-level labels for the k-means family (labels_nearest), measured against the float codebook
  if (m == Method::kHwKmeans || m == Method::kKmeans) {
    size_t bad = 0, bad_far = 0;
    for (size_t i = 0; i < n; ++i) {
      const double wi = w[i];
      const double e = std::fabs(static_cast<double>(res.codebook[res.indices[i]]) - wi);
      double best = e;
      int bj = res.indices[i];
      for (int j = 0; j < K; ++j) {
        const double ej = std::fabs(static_cast<double>(res.codebook[j]) - wi);
        if (ej < best) { best = ej; bj = j; }
      }
      if (best < e) {
        // a label to the 2nd nearest level: allowed only as the float rounding of the double centres moves the
        // midpoint (within a float ulp of the neighbouring levels)
        const double gap = std::fabs(static_cast<double>(res.codebook[bj]) - res.codebook[res.indices[i]]);
        const double slack = 4 * std::max(std::fabs(res.codebook[bj]), std::fabs(res.codebook[res.indices[i]])) * 1.2e-7 + 1e-45;
        if (e - best > slack || gap == 0) {
          if (bad_far < 3)
            FAILF(f, "value %zu w=%a labelled level %d (%a, err %.9g) but level %d (%a, err %.9g) is nearer", i, wi,
                  res.indices[i], (double)res.codebook[res.indices[i]], e, bj, (double)res.codebook[bj], best);
          ++bad_far;
        }
        ++bad;
      }
    }
    if (bad_far) FAILF(f, "%zu values not at their nearest level (beyond float rounding), %zu in all", bad_far, bad);
    else if (bad) g_cases["quantize:near-midpoint-label-to-2nd-level(allowed)"] += static_cast<long>(bad);
  }
  // exact: no single value can be moved to another level with a gain beyond rounding (optimality)
  if (m == Method::kExact) {
    const long double total = static_cast<long double>(res.hw_distortion) * n;
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
      const double wi = w[i], hi = hused ? hused[i] : 1.0;
      const long double e = static_cast<long double>(res.codebook[res.indices[i]]) - wi;
      long double best = e * e;
      int bj = res.indices[i];
      for (int j = 0; j < K; ++j) {
        const long double ej = static_cast<long double>(res.codebook[j]) - wi;
        if (ej * ej < best) { best = ej * ej; bj = j; }
      }
      const long double gain = hi * (e * e - best);
      if (gain > 1e-9L * total + 1e-300L) {
        if (bad < 3) FAILF(f, "exact: value %zu w=%a h=%g labelled level %d (%a) but level %d (%a) is nearer; moving it gains %.3Lg of D·n=%.3Lg",
                           i, wi, hi, res.indices[i], (double)res.codebook[res.indices[i]], bj, (double)res.codebook[bj], gain, total);
        ++bad;
      }
    }
    if (bad) FAILF(f, "exact: %zu values could move to a nearer level with a real gain", bad);
  }
  // uniform: every value's level is the weighted mean of its Δ cell: value in cell m = floor(w/Δ + 1/2)
  if (m == Method::kUniform && res.step > 0) {
    // members of one level must all lie in one cell; cells of distinct levels distinct
    std::map<int, int64_t> cell_of_level;
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
      const double t = std::floor(static_cast<double>(w[i]) / res.step + 0.5);
      const int64_t cell = static_cast<int64_t>(std::max(-9e18, std::min(9e18, t)));
      auto it = cell_of_level.find(res.indices[i]);
      if (it == cell_of_level.end()) cell_of_level[res.indices[i]] = cell;
      else if (it->second != cell && q.step > 0 && q.target_bits == 0) {
        if (bad < 3) FAILF(f, "uniform: value %zu w=%a in cell %" PRId64 " shares level %d with cell %" PRId64 " (step %.17g)", i, (double)w[i], cell, res.indices[i], it->second, res.step);
        ++bad;
      }
    }
    if (q.step > 0 && !same_bits(res.step, q.step)) FAILF(f, "uniform step %.17g != given %.17g", res.step, q.step);
  }
  // exact ≤ hw-kmeans, and the brute-force optimum on tiny problems
  if (m == Method::kExact && n <= 5000) {
    QuantizeParams hq = q;
    hq.method = Method::kHwKmeans;
    hq.max_iter = 300;
    hq.tol = 0;
    // slack: exact is optimal for its fp64 centres; the result is measured against them rounded to float
    long double ulp2 = 0;
    for (size_t i = 0; i < n; ++i) { const long double u = std::fabs(static_cast<long double>(w[i])) * 1.2e-7L + 1e-45L; ulp2 += (hused ? hused[i] : 1.0L) * u * u; }
    ulp2 /= n;
    for (Init init : {Init::kLinear, Init::kQuantile, Init::kKmeansPP}) {
      hq.init = init;
      const QuantizeResult hk = quantize(w.data(), hp, n, hq);
      const double slack = static_cast<double>(ulp2 + 2 * std::sqrt(ulp2 * hk.hw_distortion));
      if (res.hw_distortion > hk.hw_distortion * (1 + 1e-9) + slack + 1e-300)
        FAILF(f, "exact D %.17g > hw-kmeans (%s) D %.17g", res.hw_distortion, init_name(init), hk.hw_distortion);
    }
    if (n <= 12) {
      const long double opt = brute_optimum(w, hused, q.k);
      // exact measures against float-rounded centres: allow their rounding (relative 1e-6 of the values' scale)
      long double scale = 0;
      for (size_t i = 0; i < n; ++i) scale += (hused ? hused[i] : 1.0L) * static_cast<long double>(w[i]) * w[i];
      scale /= n;
      if (static_cast<long double>(res.hw_distortion) > opt * (1 + 1e-9L) + 1e-12L * scale + 1e-300L)
        FAILF(f, "exact D %.17g > brute-force optimum %.17Lg", res.hw_distortion, opt);
    }
  }
  // quantize_lambdas = quantize at each λ, bit for bit
  if (m == Method::kEcsq && q.target_bits == 0 && n <= 20000) {
    std::vector<double> lams = {q.lambda, q.lambda * 2, 0.0, var * 1e-3};
    try {
      const auto rs = quantize_lambdas(w.data(), hp, n, q, lams);
      for (size_t i = 0; i < lams.size(); ++i) {
        QuantizeParams qi = q;
        qi.lambda = lams[i];
        const QuantizeResult one = quantize(w.data(), hp, n, qi);
        if (!same_result(rs[i], one, true, why)) FAILF(f, "quantize_lambdas[%zu] (lambda %.17g) differs from quantize: %s", i, lams[i], why.c_str());
      }
    } catch (const std::exception& e) {
      FAILF(f, "quantize_lambdas threw: %s", e.what());
    }
  }
  report(f, desc);
}

// Adversarial uniform steps: tiny Δ (w/Δ beyond int64), all on the 2^26 cell guard.
static void check_uniform_extremes(uint64_t seed) {
  Rng r(seed);
  Failure f{"uniform-extreme", seed};
  const size_t n = static_cast<size_t>(irange(r, 1, 50));
  std::vector<float> w = gen_values(r, n, static_cast<int>(irange(r, 0, 2)));
  if (unif(r) < 0.5) w[0] = 0.0f;
  QuantizeParams q;
  q.method = Method::kUniform;
  q.backend = Backend::kCpu;
  double amax = 0;
  for (float x : w) amax = std::max(amax, static_cast<double>(std::fabs(x)));
  if (amax == 0) amax = 1;
  q.step = amax * std::pow(10.0, -(5 + unif(r) * 300));
  if (!(q.step > 0)) q.step = 1e-300;
  char desc[256];
  snprintf(desc, sizeof desc, "n=%zu step=%.17g amax=%.9g", n, q.step, amax);
  set_case(f.check, seed, desc);
  try {
    const QuantizeResult res = quantize(w.data(), nullptr, n, q);
    // With cells finer than the spread of the values, distinct values must be in distinct cells.
    std::vector<float> sorted = w;
    std::sort(sorted.begin(), sorted.end());
    const size_t distinct = static_cast<size_t>(std::unique(sorted.begin(), sorted.end()) - sorted.begin());
    // Any two distinct values more than 2Δ apart must be in different levels
    double mind = std::numeric_limits<double>::infinity();
    for (size_t i = 1; i < distinct; ++i) mind = std::min(mind, static_cast<double>(sorted[i]) - sorted[i - 1]);
    if (distinct > 1 && mind > 2 * q.step && res.codebook.size() < distinct)
      FAILF(f, "uniform with step %.3g gave %zu levels for %zu distinct values (min gap %.3g): should have failed or kept them apart",
            q.step, res.codebook.size(), distinct, mind);
    const Oracle o = recompute(w, nullptr, res);
    if (std::fabs(res.mse - o.mse) > 1e-9 * std::max(o.mse, 1e-300)) FAILF(f, "mse %.17g vs %.17g", res.mse, o.mse);
  } catch (const Error& e) {
    // an error is the documented answer for too many cells
  } catch (const std::exception& e) {
    FAILF(f, "threw a non-nq exception: %s", e.what());
  }
  report(f, desc);
}

// ---------------------------------------------------------------------------------------------------------------
// Check 4: rows and groups.
static void check_rows(uint64_t seed) {
  Rng r(seed);
  Failure f{"rows", seed};
  const Method methods[] = {Method::kHwKmeans, Method::kKmeans, Method::kExact, Method::kEcsq};
  const Method m = methods[irange(r, 0, 3)];
  const int ntensors = static_cast<int>(irange(r, 1, 3));
  TensorSet model, imp;
  const int hm = static_cast<int>(irange(r, 1, kImpModes - 1));
  const bool use_imp = unif(r) < 0.7;
  std::ostringstream td;
  for (int t = 0; t < ntensors; ++t) {
    const int64_t R = irange(r, 1, 24), C = unif(r) < 0.1 ? irange(r, 1000, 5000) : irange(r, 1, 300);
    const int vm = static_cast<int>(irange(r, 0, kValueModes - 1));
    std::vector<float> w = gen_values(r, static_cast<size_t>(R * C), vm);
    for (auto& x : w) if (std::fabs(x) > 1e30f) x = std::copysign(1e30f, x);
    std::vector<float> h = gen_importance(r, static_cast<size_t>(R * C), hm);
    for (auto& x : h) x = std::fabs(x);
    if (R > 2 && unif(r) < 0.5) std::fill(h.begin() + C, h.begin() + 2 * C, 0.0f);  // a weightless row
    const std::string name = "t" + std::to_string(t) + ".weight";
    std::vector<int64_t> shape = {R, C};
    if (unif(r) < 0.15) shape = {R * C};  // 1-D
    model.add(Tensor::from_f32(name, shape, w));
    imp.add(Tensor::from_f32(name, shape, h));
    td << name << "[" << R << "x" << C << "," << value_mode_name(vm) << "] ";
  }
  ModelQuantizeParams p;
  p.quant.method = m;
  p.quant.backend = Backend::kCpu;
  p.quant.k = pick(r, std::vector<int>{1, 2, 3, 4, 5, 8, 16, 33});
  p.quant.init = pick(r, std::vector<Init>{Init::kLinear, Init::kQuantile, Init::kKmeansPP});
  p.quant.max_iter = pick(r, std::vector<int>{1, 3, 100});
  p.quant.tol = pick(r, std::vector<double>{0.0, 1e-7, 1e-3});
  if (m == Method::kEcsq) {
    p.quant.lambda = std::pow(10.0, unif(r) * 6 - 8);
    if (unif(r) < 0.2) p.quant.target_bits = 0.3 + 3 * unif(r);
  }
  const std::string scope = unif(r) < 0.5 ? "row" : "group:" + std::to_string(irange(r, 1, 700));
  p.scope = parse_scope(scope);
  p.prune = unif(r) < 0.3 ? 0.3 * unif(r) : 0.0;
  const bool warm = unif(r) < 0.2;
  char desc[1024];
  snprintf(desc, sizeof desc, "method=%s scope=%s k=%d init=%s max_iter=%d tol=%g lambda=%.17g target_bits=%g prune=%g imp=%s warm=%d tensors=%s",
           method_traits(m).name, scope.c_str(), p.quant.k, init_name(p.quant.init), p.quant.max_iter, p.quant.tol,
           p.quant.lambda, p.quant.target_bits, p.prune, use_imp ? imp_mode_name(hm) : "none", warm ? 1 : 0, td.str().c_str());
  set_case("rows", seed, desc);
  try {
    omp_set_num_threads(2);
    if (warm) {
      const QuantizedModel cold = quantize_model(model, use_imp ? &imp : nullptr, p);
      p.initial_codebooks.resize(cold.codebooks.size());
      // At most k centres: a larger start is refused (the quantize check covers that).
      std::vector<float> start = {-0.04f, -0.01f, 0.0f, 0.02f, 1.0f};
      start.resize(std::min<size_t>(start.size(), static_cast<size_t>(std::max(1, p.quant.k))));
      for (size_t j = 0; j < cold.codebooks.size(); j += 2) p.initial_codebooks[j] = start;
    }
    const QuantizedModel qm = quantize_model(model, use_imp ? &imp : nullptr, p);
    omp_set_num_threads(1);
    const QuantizedModel qm1 = quantize_model(model, use_imp ? &imp : nullptr, p);
    omp_set_num_threads(2);
    if (qm1.codebooks != qm.codebooks) FAILF(f, "1 vs 2 threads: codebooks differ");
    for (size_t t = 0; t < qm.tensors.size(); ++t) {
      if (qm1.tensors[t].indices != qm.tensors[t].indices) FAILF(f, "1 vs 2 threads: tensor %zu indices differ", t);
      const QuantizedTensor& qt = qm.tensors[t];
      if (!qt.quantized) continue;
      const std::vector<float> w = model[t].to_f32(), h = imp[t].to_f32();
      for (int64_t pr = 0; pr < qt.num_problems; ++pr) {
        std::vector<float> pw, ph;
        std::vector<size_t> where;
        const int64_t b = pr * qt.problem_size, e = std::min<int64_t>(b + qt.problem_size, qt.stats.params);
        for (int64_t i = b; i < e; ++i)
          if (qt.indices[static_cast<size_t>(i)] != kPrunedIndex) {
            pw.push_back(w[static_cast<size_t>(i)]);
            ph.push_back(h[static_cast<size_t>(i)]);
            where.push_back(static_cast<size_t>(i));
          }
        QuantizeParams qp = p.quant;
        const size_t j = static_cast<size_t>(qt.first_codebook + pr);
        if (warm && j < p.initial_codebooks.size() && !p.initial_codebooks[j].empty())
          qp.initial_centers.assign(p.initial_codebooks[j].begin(), p.initial_codebooks[j].end());
        if (pw.empty()) continue;
        const QuantizeResult one = quantize(pw.data(), use_imp ? ph.data() : nullptr, pw.size(), qp);
        if (qm.codebooks[j] != one.codebook) {
          FAILF(f, "tensor %zu problem %" PRId64 ": codebook differs from quantize() on the problem alone (%zu vs %zu levels)",
                t, pr, qm.codebooks[j].size(), one.codebook.size());
          continue;
        }
        for (size_t i = 0; i < where.size(); ++i)
          if (qt.indices[where[i]] != one.indices[i]) {
            FAILF(f, "tensor %zu problem %" PRId64 " value %zu: index %d vs quantize() %d", t, pr, i, qt.indices[where[i]], one.indices[i]);
            break;
          }
      }
    }
    // The batched row drivers directly (no pruning): bit for bit quantize() on each row, history aside.
    for (size_t t = 0; t < model.size(); ++t) {
      const std::vector<float> w = model[t].to_f32(), h = imp[t].to_f32();
      const int64_t n = static_cast<int64_t>(w.size());
      const int64_t G = p.scope.kind == ScopeKind::kGroup ? std::min<int64_t>(p.scope.group, n)
                                                           : (model[t].shape().size() > 1 ? model[t].shape()[1] : n);
      std::vector<int64_t> begin{0};
      while (begin.back() < n) begin.push_back(std::min(n, begin.back() + G));
      std::vector<const std::vector<float>*> nowarm;
      const float* hp = use_imp ? h.data() : nullptr;
      if (m == Method::kEcsq) {
        const auto sets = quant::quantize_rows_ecsq(w.data(), hp, begin, p.quant, Backend::kCpu, nowarm, {});
        for (size_t j = 0; j + 1 < begin.size(); ++j) {
          const QuantizeResult one = quantize(w.data() + begin[j], hp ? hp + begin[j] : nullptr,
                                              static_cast<size_t>(begin[j + 1] - begin[j]), p.quant);
          std::string why;
          if (!same_result(sets.at(0).at(j), one, false, why)) FAILF(f, "quantize_rows_ecsq tensor %zu row %zu differs from quantize(): %s", t, j, why.c_str());
        }
      } else {
        const auto rows = quant::quantize_rows_kmeans(w.data(), hp, begin, p.quant, Backend::kCpu, nowarm);
        if (rows.empty()) continue;  // not taken (kmeans++ etc.)
        for (size_t j = 0; j + 1 < begin.size(); ++j) {
          const QuantizeResult one = quantize(w.data() + begin[j], hp ? hp + begin[j] : nullptr,
                                              static_cast<size_t>(begin[j + 1] - begin[j]), p.quant);
          std::string why;
          if (!same_result(rows.at(j), one, false, why)) FAILF(f, "quantize_rows_kmeans tensor %zu row %zu differs from quantize(): %s", t, j, why.c_str());
        }
      }
    }
  } catch (const std::exception& e) {
    omp_set_num_threads(2);
    FAILF(f, "threw: %s", e.what());
  }
  report(f, desc);
}

// ---------------------------------------------------------------------------------------------------------------
#ifndef STRESS_NO_MAIN
int main(int argc, char** argv) {
  omp_set_num_threads(2);
  CampaignExtras binned_errors;  // the worst binned-pass relative errors seen, and how many were printed
  binned_errors.reset = [] {
    for (double& x : g_binned_max_rel) x = 0;
  };
  binned_errors.send = [] {
    std::string out;
    char b[64];
    for (int q = 0; q < 6; ++q) {
      snprintf(b, sizeof b, "M\t%d\t%.17g\n", q, g_binned_max_rel[q]);
      out += b;
    }
    return out + "Q\t" + std::to_string(g_prec_prints) + "\t\n";
  };
  binned_errors.take = [](const std::string& tag, const std::string& key, const std::string& value) {
    if (tag == "M") g_binned_max_rel[atoi(key.c_str())] = std::max(g_binned_max_rel[atoi(key.c_str())], atof(value.c_str()));
    if (tag == "Q") g_prec_prints = atol(key.c_str());
  };
  binned_errors.summary = [] {
    printf("binned: worst relative errors seen: sum_h %.3g sum_hw %.3g sum_w %.3g (of Σ|terms|), distortion %.3g "
           "sq_error %.3g cost %.3g\n",
           g_binned_max_rel[0], g_binned_max_rel[1], g_binned_max_rel[2], g_binned_max_rel[3], g_binned_max_rel[4],
           g_binned_max_rel[5]);
  };
  return run_campaign(argc, argv,
                      {{"sort", check_sort},
                       {"opa", [](uint64_t s) { check_opa_binned(s, false); }},
                       {"binned", [](uint64_t s) { check_opa_binned(s, true); }},
                       {"quantize", check_quantize},
                       {"uniform", check_uniform_extremes},
                       {"rows", check_rows}},
                      binned_errors);
}
#endif  // STRESS_NO_MAIN
