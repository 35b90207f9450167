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

// GPU version for a batch of rows, one block per row, same semantics as SampleRef: given the same
// fp32 logits and options it returns the same token (see "exactness" below) and a logprob within
// ~1e-5 of SampleRef's. `options` live in device memory so a decode step can be captured in a
// CUDA graph and replayed with new seeds / sample indices written in place.
//
// How: one pass finds the argmax (first max wins) and log-sum-exp. Non-greedy rows then pick the
// token by radix selection over 8-bit digits of a 64-bit key, no sort: the key is the logit's
// order-preserving bits (descending) then the id, i.e. SampleRef's sorted order, when top-k or
// top-p is on, and the plain id when neither is (SampleRef then draws in id order). Three
// selections, each a few passes over the row: the k-th key by count (top-k), the first key whose
// cumulative weight reaches top_p * total (top-p), and the key where the cumulative weight first
// exceeds u * total (the draw, u = SamplingUniform(seed, sample_index)). Weights are SampleRef's
// exp((l - max) / T), computed in fp64 and summed as 40-bit fixed point in 64-bit integers, so
// sums are exact and independent of thread order: the GPU is deterministic run to run.
// Exactness: the fixed-point weights differ from SampleRef's fp64 sums by < 2^-41 per token, so
// the two can disagree only when u * total lands within ~vocab * 2^-41 of a cumulative boundary
// (probability ~1e-8 per draw at vocab 128k), or on fp64 exp differing in its last ulp between
// host and device libm -- never on ties, which both break toward the lower id.
//
// Errors: the host checks pointers and sizes. Per-row problems (NaN or +inf logits, all -inf,
// options out of range) can't become a Status without a sync; such rows get token -1 and
// logprob NaN, exactly where SampleRef returns InvalidArgument.
struct SamplingGpuParams {
  const float* logits = nullptr;             // [batch, row_stride] fp32, device
  int batch = 0;                             // > 0
  int vocab = 0;                             // in (0, 2^24)
  int64_t row_stride = 0;                    // elements between rows; 0 = vocab; else >= vocab
  const SamplingOptions* options = nullptr;  // [batch], device (the host struct's layout)
  int32_t* tokens = nullptr;                 // [batch], device; -1 for an invalid row
  float* logprobs = nullptr;                 // [batch], device, or null
};
// `stream` is a cudaStream_t (null = default stream). Asynchronous; CPU builds return
// UnimplementedError. InvalidArgument names the offending field.
absl::Status SampleGpu(const SamplingGpuParams& p, void* stream);

}  // namespace hipserve::kernels
