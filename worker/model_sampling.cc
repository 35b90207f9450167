// Model::SampleSharded: sampling at world size > 1 from the vocabulary shards' candidates.
//
// 1. Each rank writes a candidate record per logit row (backend op Candidates: its best c logits
//    with global ids, its finite count, max and normalisers); c is the largest any row's options
//    need (kernels::CandidatesNeeded), so every rank picks the same width.
// 2. AllGather of the records (a few KB per row instead of the vocabulary shard).
// 3. Rank 0 merges each row (kernels::MergeCandidates): the same token as SampleRef on the whole
//    row, or "can't prove it" (fallback). Rows whose options need the whole row are fallback
//    rows from the start.
// 4. Rank 0 broadcasts which rows fall back (the decision uses fp64 libm math, so only one rank
//    makes it), the ranks pack those rows' logits and gather them, and rank 0 samples them with
//    the backend's ordinary Sample, as before this scheme.
// docs/TP.md "Sampling" explains why seeded results stay those of the whole row.
#include <algorithm>
#include <optional>
#include <vector>

#include "common/status_macros.h"
#include "kernels/sampling/candidates.h"
#include "worker/model.h"

namespace hipserve::worker {

using kernels::DType;

absl::Status Model::SampleSharded(const StepBuffers& b,
                                  const std::vector<kernels::SamplingOptions>& options,
                                  std::vector<kernels::SampleResult>* out) {
  ForwardBackend& be = *backend_;
  const int n = static_cast<int>(options.size());
  out->assign(n, kernels::SampleResult{});
  if (n == 0) return absl::OkStatus();
  std::vector<int> need(n);
  int c = 0;
  for (int i = 0; i < n; ++i) {
    need[i] = kernels::CandidatesNeeded(options[i]);
    c = std::max(c, need[i]);
  }
  std::vector<int32_t> fallback_mask(n, 1);
  if (c > 0) {
    const int words = kernels::CandidateRecordWords(c);
    std::vector<float> temperatures(n, 0.f);  // rows that need none: any valid value
    for (int i = 0; i < n; ++i) {
      if (need[i] > 0) temperatures[i] = options[i].temperature;
    }
    ASSIGN_OR_RETURN(Tensor local, be.Scratch(0, n, words, DType::kInt32));
    RETURN_IF_ERROR(be.Candidates(b.logits, c, temperatures, local));
    ASSIGN_OR_RETURN(Tensor all, be.Scratch(1, int64_t{world_size_} * n, words, DType::kInt32));
    RETURN_IF_ERROR(
        comm_->AllGather(local.data, local.numel(), DType::kInt32, all.data, be.stream()));
    ASSIGN_OR_RETURN(Tensor mask, be.Scratch(2, 1, n, DType::kInt32));
    if (rank_ == 0) {
      std::vector<int32_t> host(all.numel());
      RETURN_IF_ERROR(be.ToHost(all, host.data()));
      std::vector<const int32_t*> shards(world_size_);
      for (int i = 0; i < n; ++i) {
        if (need[i] == 0) continue;
        for (int r = 0; r < world_size_; ++r) {
          shards[r] = host.data() + (int64_t{r} * n + i) * words;
        }
        // A malformed record (a bug) falls back too: the whole row still gives the right token,
        // and returning here would leave the other ranks waiting in the broadcast.
        absl::StatusOr<std::optional<kernels::SampleResult>> m =
            kernels::MergeCandidates(shards, c, dims_.vocab_size, options[i]);
        if (m.ok() && m->has_value()) {
          (*out)[i] = **m;
          fallback_mask[i] = 0;
        }
      }
      RETURN_IF_ERROR(be.FromHost(fallback_mask.data(), mask));
    }
    RETURN_IF_ERROR(comm_->Broadcast(mask.data, n, DType::kInt32, 0, be.stream()));
    if (rank_ != 0) RETURN_IF_ERROR(be.ToHost(mask, fallback_mask.data()));
  }
  std::vector<int> rows;
  for (int i = 0; i < n; ++i) {
    if (fallback_mask[i] != 0) rows.push_back(i);
  }
  const int f = static_cast<int>(rows.size());
  sharded_stats_.candidate_rows += n - f;
  sharded_stats_.fallback_rows += f;
  if (f == 0) return absl::OkStatus();
  Tensor packed = b.logits;
  if (f < n) {
    ASSIGN_OR_RETURN(packed, be.Scratch(3, f, b.logits.cols, DType::kFloat32));
    RETURN_IF_ERROR(be.SelectRows(b.logits, rows, packed));
  }
  // b.gathered holds world_size * n rows of the shard width; the packed rows need fewer.
  const Tensor gathered{b.gathered.data, DType::kFloat32, int64_t{world_size_} * f, b.logits.cols};
  RETURN_IF_ERROR(
      comm_->AllGather(packed.data, packed.numel(), DType::kFloat32, gathered.data, be.stream()));
  if (rank_ != 0) return absl::OkStatus();
  std::vector<kernels::SamplingOptions> fallback_options;
  for (int i : rows) fallback_options.push_back(options[i]);
  ASSIGN_OR_RETURN(std::vector<kernels::SampleResult> r,
                   be.Sample(gathered, world_size_, dims_.vocab_size, fallback_options));
  for (int j = 0; j < f; ++j) (*out)[rows[j]] = r[j];
  return absl::OkStatus();
}

}  // namespace hipserve::worker
