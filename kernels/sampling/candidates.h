// Candidate sampling for a vocabulary split across tensor-parallel ranks: each rank reduces its
// shard of a logit row to a small record (its best `c` logits with their global ids, its finite
// count, max and normalisers), the records are gathered, and MergeCandidates samples from them
// the token SampleRef would sample from the whole row, bit for bit, or says it can't (the caller
// then gathers the whole row: the fallback). docs/TP.md "Sampling" has the why.
//
// When the merge settles a row (MergeCandidates returns a value):
//  - token: identical to SampleRef(full row, o).token, for every seed and sample index (same
//    comparator, same fp64 weights, summed in the same order, the same uniform).
//  - logprob: identical when no shard was truncated (the record holds every finite logit);
//    otherwise log_softmax is computed from the shards' normalisers, within a few fp64 ulps of
//    SampleRef's before the cast to float (the float can differ by one ulp, rarely).
// It returns nullopt (fallback) when exactness can't be proven from the records:
//  - a shard saw NaN or +inf, or every logit is -inf (SampleRef's errors come from the row);
//  - temperature > 0 with neither top_k nor top_p (SampleRef draws in id order over the whole
//    vocabulary; CandidatesNeeded says so before any record is made), top_k > c;
//  - top_p < 1 without top_k, when the nucleus is not inside the records' known prefix of the
//    sorted row or its boundary lies within the rounding uncertainty of the total weight
//    (the total is known from the shards' normalisers only to ~(vocab + 4096) * 2^-50).
// The options SampleRef has (temperature, top_k, top_p, seed, sample_index) are all covered:
// there is no min_p or repetition penalty in SamplingOptions.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/sampling/sampling.h"

namespace hipserve::kernels {

// The most candidates a record holds: top_k above it goes to the fallback; top_p alone uses it.
inline constexpr int kMaxSamplingCandidates = 256;

// Record of one shard's part of one logit row, in int32 words (so one collective of kInt32
// moves records of any content):
//   [0] finite: number of finite logits in the shard
//   [1] flags: 1 when a NaN or +inf was seen
//   [2] stored: candidates stored, min(c, finite)
//   [3] max: float bits of the shard's largest finite logit (-inf bits when finite == 0)
//   [4..5] double sum over finite l of exp(l - max)         (raw normaliser: logprobs)
//   [6..7] double sum over finite l of exp((l - max) / T)   (T = the row's temperature; 0 if T ==
//   0) [8 + 2j], [9 + 2j], j < c: global id and float bits of the j-th best finite logit (higher
//   logit first, equal logits lower id first: SampleRef's order); unused pairs are (-1, -inf).
inline constexpr int kCandidateHeaderWords = 8;
inline int CandidateRecordWords(int c) { return kCandidateHeaderWords + 2 * c; }

// Candidates a row with options `o` needs: 1 for greedy, top_k for top_k in
// [1, kMaxSamplingCandidates], kMaxSamplingCandidates for top_p alone; 0 when no record can
// settle the row (temperature sampling without top_k / top_p, or top_k above the cap): such a
// row goes to the fallback without a record being consulted.
int CandidatesNeeded(const SamplingOptions& o);

// CPU reference: writes the record of one shard row. logits: [cols] fp32 host, the shard's
// columns (global id of column i = id_begin + i). c in [1, kMaxSamplingCandidates];
// temperature >= 0 and finite. record: [CandidateRecordWords(c)] int32.
absl::Status CandidatesRef(const float* logits, int cols, int64_t id_begin, int c,
                           float temperature, int32_t* record);

// GPU version for a batch of rows, one block per row: the same records as CandidatesRef (words
// 0-3 and every pair identical) except the two sums, which are reduced in a fixed tree order
// (deterministic run to run) and agree with CandidatesRef's sequential sums to ~1e-13 relative.
struct CandidatesGpuParams {
  const float* logits = nullptr;        // [rows, row_stride] fp32, device
  int rows = 0;                         // > 0
  int cols = 0;                         // in [0, 2^24): the shard's columns (padding excluded)
  int64_t row_stride = 0;               // elements between rows; 0 = cols; else >= cols
  int64_t id_begin = 0;                 // global id of column 0; id_begin + cols < 2^31
  int c = 0;                            // in [1, kMaxSamplingCandidates]
  const float* temperatures = nullptr;  // [rows], device; >= 0 and finite (0: word 6..7 = 0)
  int32_t* records = nullptr;           // [rows, CandidateRecordWords(c)], device
};
// `stream` is a cudaStream_t (null = default). Asynchronous; CPU builds return
// UnimplementedError. InvalidArgument names the offending field.
absl::Status CandidatesGpu(const CandidatesGpuParams& p, void* stream);

// Samples row `o` from the records of all shards (shard_records[r]: rank r's record, each of
// CandidateRecordWords(c) words; the shards' ids together cover [0, vocab)). nullopt: the
// records can't settle the row exactly (see the top of this file): gather the row instead.
// InvalidArgument for bad options or malformed records.
absl::StatusOr<std::optional<SampleResult>> MergeCandidates(
    const std::vector<const int32_t*>& shard_records, int c, int vocab, const SamplingOptions& o);

}  // namespace hipserve::kernels
