// CandidatesRef and MergeCandidates (candidates.h). The merge runs SampleRef's sorted-path
// arithmetic (sampling_ref.cc) through the same helpers (sampling_ref_internal.h): the tokens are
// identical only while both compute the same fp64 weights and sum them in the same order.
// candidates_test.cc checks the two against each other over many random rows and options.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/sampling/candidates.h"
#include "kernels/sampling/sampling_ref_internal.h"

namespace hipserve::kernels {
namespace {

using sampling_internal::Before;
using sampling_internal::Candidate;

float FloatOf(int32_t w) {
  float f;
  std::memcpy(&f, &w, 4);
  return f;
}
int32_t WordOf(float f) {
  int32_t w;
  std::memcpy(&w, &f, 4);
  return w;
}
double DoubleAt(const int32_t* words) {
  double d;
  std::memcpy(&d, words, 8);
  return d;
}
void PutDouble(double d, int32_t* words) { std::memcpy(words, &d, 8); }

bool ValidOptions(const SamplingOptions& o) {
  return o.temperature >= 0.f && std::isfinite(o.temperature) && o.top_p > 0.f && o.top_p <= 1.f &&
         o.top_k >= 0;
}

struct Shard {
  int finite = 0;
  int flags = 0;
  int stored = 0;
  float max = -INFINITY;
  double s1 = 0, st = 0;
  const int32_t* pairs = nullptr;
};

}  // namespace

int CandidatesNeeded(const SamplingOptions& o) {
  if (!ValidOptions(o)) return 0;  // the fallback's SampleRef reports the error
  if (o.temperature == 0.f) return 1;
  if (o.top_k > 0) return o.top_k <= kMaxSamplingCandidates ? o.top_k : 0;
  return o.top_p < 1.f ? kMaxSamplingCandidates : 0;
}

absl::Status CandidatesRef(const float* logits, int cols, int64_t id_begin, int c,
                           float temperature, int32_t* record) {
  if (logits == nullptr && cols > 0)
    return absl::InvalidArgumentError("Candidates: logits is null");
  if (record == nullptr) return absl::InvalidArgumentError("Candidates: record is null");
  if (cols < 0) {
    return absl::InvalidArgumentError(absl::StrCat("Candidates: cols must be >= 0, got ", cols));
  }
  if (c < 1 || c > kMaxSamplingCandidates) {
    return absl::InvalidArgumentError(
        absl::StrCat("Candidates: c must be in [1, ", kMaxSamplingCandidates, "], got ", c));
  }
  if (id_begin < 0 || id_begin + cols > INT32_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("Candidates: ids [", id_begin, ", ", id_begin + cols, ") are out of range"));
  }
  if (!(temperature >= 0.f) || !std::isfinite(temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Candidates: temperature must be finite and >= 0, got ", temperature));
  }
  std::vector<Candidate> cand;
  int flags = 0;
  float mx = -INFINITY;
  for (int i = 0; i < cols; ++i) {
    const float l = logits[i];
    if (std::isnan(l) || l == INFINITY) {
      flags = 1;
      continue;
    }
    if (l == -INFINITY) continue;
    if (cand.empty() || l > mx) mx = l;
    cand.push_back({static_cast<int32_t>(id_begin + i), l});
  }
  const int finite = static_cast<int>(cand.size());
  double s1 = 0, st = 0;
  for (const Candidate& x : cand) {
    s1 += std::exp(static_cast<double>(x.logit) - static_cast<double>(mx));
    if (temperature > 0.f) {
      st += std::exp((static_cast<double>(x.logit) - static_cast<double>(mx)) /
                     static_cast<double>(temperature));
    }
  }
  const int stored = std::min(c, finite);
  std::partial_sort(cand.begin(), cand.begin() + stored, cand.end(), Before);
  record[0] = finite;
  record[1] = flags;
  record[2] = stored;
  record[3] = WordOf(mx);
  PutDouble(s1, record + 4);
  PutDouble(st, record + 6);
  for (int j = 0; j < c; ++j) {
    record[kCandidateHeaderWords + 2 * j] = j < stored ? cand[j].id : -1;
    record[kCandidateHeaderWords + 2 * j + 1] = WordOf(j < stored ? cand[j].logit : -INFINITY);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<SampleResult>> MergeCandidates(
    const std::vector<const int32_t*>& shard_records, int c, int vocab, const SamplingOptions& o) {
  if (c < 1 || c > kMaxSamplingCandidates || vocab <= 0 || shard_records.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("MergeCandidates: c = ", c, ", vocab = ", vocab,
                                                   ", ", shard_records.size(), " shards"));
  }
  const int needed = CandidatesNeeded(o);
  if (needed == 0 || needed > c) return std::nullopt;

  std::vector<Shard> shards(shard_records.size());
  int64_t finite = 0;
  bool truncated = false;
  std::vector<Candidate> merged;
  for (size_t r = 0; r < shards.size(); ++r) {
    const int32_t* rec = shard_records[r];
    if (rec == nullptr) return absl::InvalidArgumentError("MergeCandidates: null record");
    Shard& s = shards[r];
    s.finite = rec[0];
    s.flags = rec[1];
    s.stored = rec[2];
    s.max = FloatOf(rec[3]);
    s.s1 = DoubleAt(rec + 4);
    s.st = DoubleAt(rec + 6);
    s.pairs = rec + kCandidateHeaderWords;
    if (s.finite < 0 || s.stored != std::min(c, s.finite)) {
      return absl::InvalidArgumentError(absl::StrCat("MergeCandidates: shard ", r, " record says ",
                                                     s.finite, " finite, ", s.stored, " stored"));
    }
    if (s.flags != 0) return std::nullopt;  // NaN / +inf: SampleRef names the index
    finite += s.finite;
    truncated = truncated || s.finite > s.stored;
    for (int j = 0; j < s.stored; ++j) {
      const Candidate x{s.pairs[2 * j], FloatOf(s.pairs[2 * j + 1])};
      if (x.id < 0 || x.id >= vocab || !std::isfinite(x.logit)) {
        return absl::InvalidArgumentError(absl::StrCat("MergeCandidates: shard ", r, " candidate ",
                                                       j, " has id ", x.id, " logit ", x.logit));
      }
      merged.push_back(x);
    }
  }
  if (finite == 0) return std::nullopt;  // SampleRef: "all logits are -inf"

  if (!truncated) {
    // Every finite logit is here and the rest are -inf: this is the row itself.
    std::vector<float> row(vocab, -INFINITY);
    for (const Candidate& x : merged) row[x.id] = x.logit;
    absl::StatusOr<SampleResult> r = SampleRef(row.data(), vocab, o);
    if (!r.ok()) return r.status();
    return std::optional<SampleResult>(*r);
  }

  std::sort(merged.begin(), merged.end(), Before);
  // The merged list equals the row's sorted order up to the first truncated shard's last
  // candidate (every logit a shard left out sorts after its own last candidate).
  size_t valid = merged.size();
  for (const Shard& s : shards) {
    if (s.finite <= s.stored) continue;
    const Candidate last{s.pairs[2 * (s.stored - 1)], FloatOf(s.pairs[2 * (s.stored - 1) + 1])};
    const size_t at = static_cast<size_t>(
        std::lower_bound(merged.begin(), merged.end(), last, Before) - merged.begin());
    valid = std::min(valid, at + 1);
  }

  const double max_logit = merged[0].logit;
  double z = 0;
  for (const Shard& s : shards) {
    if (s.finite > 0) z += std::exp(static_cast<double>(s.max) - max_logit) * s.s1;
  }
  const double log_z = max_logit + std::log(z);
  auto result = [&](const Candidate& x) {
    return std::optional<SampleResult>(
        SampleResult{x.id, static_cast<float>(static_cast<double>(x.logit) - log_z)});
  };
  if (o.temperature == 0.f) return result(merged[0]);

  // As SampleRef: unnormalised probabilities exp((l - max) / T).
  const double temperature = o.temperature;
  const sampling_internal::Weight weight{max_logit, temperature};
  std::vector<Candidate> cand;
  bool nucleus_done = false;
  if (o.top_k > 0) {
    // truncated: finite > c >= top_k, so SampleRef keeps the top_k best, all known.
    if (static_cast<size_t>(o.top_k) > valid) return std::nullopt;  // unreachable (valid >= c)
    cand.assign(merged.begin(), merged.begin() + o.top_k);
  } else {
    // top_p alone: SampleRef's total runs over every finite logit, known here only through the
    // shards' normalisers. Keep the nucleus only when its end is certain under both roundings.
    double estimate = 0;
    for (const Shard& s : shards) {
      if (s.finite > 0) {
        estimate += std::exp((static_cast<double>(s.max) - max_logit) / temperature) * s.st;
      }
    }
    // Each of the two totals (SampleRef's and the estimate) is within (n + 2048) * 2^-52 of the
    // exact sum (summation of n terms, exp and argument rounding with |argument| <= 745); the
    // margin takes twice that, and total >= 1 (the max's weight is exactly 1).
    const double delta = 4.0 * (static_cast<double>(finite) + 4096.0) * 0x1.0p-52;
    const double top_p = o.top_p;
    const double lo = top_p * estimate * (1.0 - delta) * (1.0 - 0x1.0p-52);
    const double hi = top_p * estimate * (1.0 + delta) * (1.0 + 0x1.0p-52);
    double cum = 0.0, before = 0.0;
    size_t keep = 0;
    while (keep < valid) {
      before = cum;
      cum += weight(merged[keep]);
      ++keep;
      if (cum >= hi) break;
    }
    if (!(cum >= hi) || (keep > 1 && !(before < lo))) return std::nullopt;
    cand.assign(merged.begin(), merged.begin() + keep);
    nucleus_done = true;
  }
  if (o.top_p < 1.f && !nucleus_done) {  // SampleRef's top_p over the top_k survivors
    sampling_internal::KeepTopP(o.top_p, weight, &cand);
  }
  return result(sampling_internal::Draw(cand, SamplingUniform(o.seed, o.sample_index), weight));
}

}  // namespace hipserve::kernels
