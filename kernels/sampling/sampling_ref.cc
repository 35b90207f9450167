#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/sampling/sampling.h"
#include "kernels/sampling/sampling_ref_internal.h"

namespace hipserve::kernels {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

absl::Status ValidateOptions(const SamplingOptions& o) {
  if (!(o.temperature >= 0.f) || !std::isfinite(o.temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Sample: temperature must be finite and >= 0, got ", o.temperature));
  }
  if (!(o.top_p > 0.f && o.top_p <= 1.f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Sample: top_p must be in (0, 1], got ", o.top_p));
  }
  if (o.top_k < 0) {
    return absl::InvalidArgumentError(absl::StrCat("Sample: top_k must be >= 0, got ", o.top_k));
  }
  return absl::OkStatus();
}

using sampling_internal::Before;
using sampling_internal::Candidate;

}  // namespace

uint64_t SamplingRandomBits(uint64_t seed, uint64_t sample_index) {
  return SplitMix64(SplitMix64(seed) ^ SplitMix64(sample_index + 0x632BE59BD9B4E019ull));
}

double SamplingUniform(uint64_t seed, uint64_t sample_index) {
  return static_cast<double>(SamplingRandomBits(seed, sample_index) >> 11) * 0x1.0p-53;
}

absl::StatusOr<SampleResult> SampleRef(const float* logits, int vocab, const SamplingOptions& o) {
  if (logits == nullptr) return absl::InvalidArgumentError("Sample: logits is null");
  if (vocab <= 0)
    return absl::InvalidArgumentError(absl::StrCat("Sample: vocab must be > 0, got ", vocab));
  if (absl::Status s = ValidateOptions(o); !s.ok()) return s;

  // One pass: validate values, argmax (first max wins), count finite entries.
  int32_t argmax = -1;
  int finite = 0;
  for (int i = 0; i < vocab; ++i) {
    const float l = logits[i];
    if (std::isnan(l))
      return absl::InvalidArgumentError(absl::StrCat("Sample: logits[", i, "] is NaN"));
    if (l == INFINITY)
      return absl::InvalidArgumentError(absl::StrCat("Sample: logits[", i, "] is +inf"));
    if (l == -INFINITY) continue;
    ++finite;
    if (argmax < 0 || l > logits[argmax]) argmax = i;
  }
  if (finite == 0) return absl::InvalidArgumentError("Sample: all logits are -inf");
  const double max_logit = logits[argmax];
  double sum = 0.0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - max_logit);
  const double log_z = max_logit + std::log(sum);
  auto result = [&](int32_t token) {
    return SampleResult{token, static_cast<float>(logits[token] - log_z)};
  };
  if (o.temperature == 0.f) return result(argmax);

  std::vector<Candidate> cand;
  cand.reserve(finite);
  for (int i = 0; i < vocab; ++i) {
    if (logits[i] != -INFINITY) cand.push_back({i, logits[i]});
  }
  // Dividing by temperature > 0 doesn't change the order, so rank on raw logits.
  bool sorted = false;
  if (o.top_k > 0 && o.top_k < static_cast<int>(cand.size())) {
    std::partial_sort(cand.begin(), cand.begin() + o.top_k, cand.end(), Before);
    cand.resize(o.top_k);
    sorted = true;
  }
  const sampling_internal::Weight weight{max_logit, o.temperature};
  if (o.top_p < 1.f) {
    if (!sorted) std::sort(cand.begin(), cand.end(), Before);
    sampling_internal::KeepTopP(o.top_p, weight, &cand);
  }
  return result(sampling_internal::Draw(cand, SamplingUniform(o.seed, o.sample_index), weight).id);
}

}  // namespace hipserve::kernels
