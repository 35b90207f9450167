// What SampleRef (sampling_ref.cc) and MergeCandidates (candidates_ref.cc) share: the candidate
// order, the fp64 weights, the top_p cut and the final draw. The merge's tokens equal
// SampleRef's only while both compute the same weights and sum them in the same order, so both
// call these (candidates_test.cc checks the two against each other).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace hipserve::kernels::sampling_internal {

struct Candidate {
  int32_t id;
  float logit;
};

// Higher logit first; equal logits (-0 == +0 included) -> lower id first (deterministic tie
// break).
inline bool Before(const Candidate& a, const Candidate& b) {
  return a.logit != b.logit ? a.logit > b.logit : a.id < b.id;
}

// Unnormalised probability exp((l - max) / T); computed this way so tiny T can't overflow.
struct Weight {
  double max_logit;
  double temperature;
  double operator()(const Candidate& c) const {
    return std::exp((static_cast<double>(c.logit) - max_logit) / temperature);
  }
};

// The nucleus of `cand` (sorted by Before): its shortest prefix whose weight reaches top_p of
// the total weight.
inline void KeepTopP(double top_p, const Weight& weight, std::vector<Candidate>* cand) {
  double total = 0.0;
  for (const Candidate& c : *cand) total += weight(c);
  const double target = top_p * total;
  double cum = 0.0;
  size_t keep = 0;
  while (keep < cand->size()) {
    cum += weight((*cand)[keep]);
    ++keep;
    if (cum >= target) break;
  }
  cand->resize(keep);
}

// The candidate that `uniform` (in [0, 1)) picks, each with probability weight / total weight;
// `cand` must not be empty.
inline const Candidate& Draw(const std::vector<Candidate>& cand, double uniform,
                             const Weight& weight) {
  double total = 0.0;
  for (const Candidate& c : cand) total += weight(c);
  const double target = uniform * total;
  double cum = 0.0;
  for (const Candidate& c : cand) {
    cum += weight(c);
    if (target < cum) return c;
  }
  return cand.back();  // rounding left target at the very top
}

}  // namespace hipserve::kernels::sampling_internal
