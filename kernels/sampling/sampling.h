// Next-token sampling: greedy, temperature, top-k, top-p, seeded.
//
// Processing order: temperature -> top_k -> top_p -> draw.
//  - temperature == 0 is greedy: argmax of the logits, ties go to the lowest id; top_k, top_p
//    and seed are then ignored.
//  - temperature > 0 divides the logits. top_k > 0 keeps the k highest (ties broken toward the
//    lower id). top_p < 1 then keeps the smallest prefix of the remaining tokens, sorted by
//    probability (renormalised over the top-k survivors), whose cumulative probability reaches
//    top_p (always at least one token). One uniform number is drawn from the survivors.
//  - Randomness is counter based: the uniform is a pure function of (seed, sample_index)
//    (SamplingUniform), so the same (seed, sample_index, logits, options) always gives the
//    same token, whatever else is in the batch and on any thread. Callers advance
//    sample_index by one per generated token of a sequence.
//  - Logits of -inf are masked tokens. NaN or +inf logits, or all -inf, are InvalidArgument.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"

namespace hipserve::kernels {

struct SamplingOptions {
  float temperature = 0.f;    // >= 0; 0 = greedy (argmax, ties -> lowest id)
  float top_p = 1.f;          // in (0, 1]; 1 = off
  int top_k = 0;              // >= 0; 0 = off
  uint64_t seed = 0;          // the sequence's RNG stream
  uint64_t sample_index = 0;  // position in this sequence's RNG stream
};

struct SampleResult {
  int32_t token = 0;
  // Log-probability of `token` under the raw model distribution, log_softmax(logits) (before
  // temperature / top-k / top-p), as the OpenAI-style logprobs field reports it.
  float logprob = 0.f;
};

// CPU reference. logits: [vocab] fp32, host memory.
absl::StatusOr<SampleResult> SampleRef(const float* logits, int vocab, const SamplingOptions& o);

// 64 random bits for (seed, sample_index): splitmix64 finaliser applied to both, combined.
uint64_t SamplingRandomBits(uint64_t seed, uint64_t sample_index);
// Uniform in [0, 1) with 53 random bits, from SamplingRandomBits.
double SamplingUniform(uint64_t seed, uint64_t sample_index);

}  // namespace hipserve::kernels
