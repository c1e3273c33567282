// Test data for op (g) select_pruned (CPU test in tests/quant, device parity in tests/cuda): a few arrays of
// awkward sizes read as one flat sequence, with many exact score ties (rounded values, zeros, a constant array),
// and a brute-force oracle.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"

namespace nq::quant::prune_cases {

struct Model {
  std::vector<std::vector<float>> w, h;
  std::vector<std::vector<uint8_t>> mask;
  PruneArrays arrays(bool weighted) {
    PruneArrays a;
    mask.assign(w.size(), {});
    for (size_t t = 0; t < w.size(); ++t) {
      a.w.push_back(w[t].data());
      if (weighted) a.h.push_back(h[t].data());
      a.n.push_back(w[t].size());
      mask[t].assign(w[t].size(), 7);  // sentinel: the op must write every entry
      a.mask.push_back(mask[t].data());
    }
    return a;
  }
  size_t total() const {
    size_t n = 0;
    for (const auto& v : w) n += v.size();
    return n;
  }
};

inline Model make_model(const std::vector<size_t>& sizes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::student_t_distribution<double> t(3.0);
  std::uniform_int_distribution<int> small(0, 6);
  Model m;
  for (size_t a = 0; a < sizes.size(); ++a) {
    std::vector<float> w(sizes[a]), h(sizes[a]);
    for (size_t i = 0; i < sizes[a]; ++i) {
      double v = 0.05 * t(rng);
      if (a % 3 == 1) v = 0.01 * small(rng) - 0.03;  // heavy ties (and exact zeros)
      if (a % 3 == 2) v = -0.02;                      // a constant array
      w[i] = static_cast<float>(v);
      h[i] = static_cast<float>(a % 2 ? 1 + small(rng) : 0.5);  // few distinct importances: more ties
      if (i % 11 == 0) h[i] = i % 22 == 0 ? -0.0f : 0.0f;  // validation accepts −0: it must score as +0
    }
    m.w.push_back(std::move(w));
    m.h.push_back(std::move(h));
  }
  return m;
}

// The `count` smallest by (h·w², then |w| where h·w² is 0, then flat position), as masks. Written out apart from
// quant::prune_score, whose encoding of the second key it checks.
inline std::vector<std::vector<uint8_t>> brute_force(const Model& m, bool weighted, int64_t count) {
  struct Rank {
    double score;
    float magnitude;
    size_t at;
    bool operator<(const Rank& o) const {
      if (score != o.score) return score < o.score;
      if (magnitude != o.magnitude) return magnitude < o.magnitude;
      return at < o.at;
    }
  };
  std::vector<Rank> all;
  for (size_t t = 0, base = 0; t < m.w.size(); base += m.w[t].size(), ++t)
    for (size_t i = 0; i < m.w[t].size(); ++i) {
      const double w = m.w[t][i], h = weighted ? m.h[t][i] : 1.0;
      const double score = h * w * w;  // −0 compares equal to +0
      all.push_back({score, score == 0 ? std::fabs(m.w[t][i]) : 0.0f, base + i});
    }
  std::sort(all.begin(), all.end());
  std::vector<uint8_t> flat(all.size(), 0);
  for (int64_t r = 0; r < count; ++r) flat[all[static_cast<size_t>(r)].at] = 1;
  std::vector<std::vector<uint8_t>> out;
  for (size_t t = 0, base = 0; t < m.w.size(); base += m.w[t].size(), ++t)
    out.emplace_back(flat.begin() + static_cast<std::ptrdiff_t>(base),
                     flat.begin() + static_cast<std::ptrdiff_t>(base + m.w[t].size()));
  return out;
}

}  // namespace nq::quant::prune_cases
