// Model::PrefillLogits: logits for every appended position (accuracy tools, reference checks).
// Runs the ordinary forward pass with every row's logits requested instead of sampling.
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/model.h"

namespace hipserve::worker {

absl::StatusOr<std::vector<float>> Model::PrefillLogits(SequenceId seq,
                                                        const std::vector<int32_t>& tokens,
                                                        int start_pos) {
  if (world_size_ != 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "PrefillLogits needs a single-rank model, this one is rank ", rank_, " of ", world_size_));
  }
  last_failed_.reset();
  StepBatch batch;
  SeqStep step;
  step.seq = seq;
  step.tokens = tokens;
  step.start_pos = start_pos;
  step.sample = false;
  batch.work.push_back(std::move(step));
  std::vector<float> logits;
  ASSIGN_OR_RETURN(std::vector<SampledToken> unused, RunStep(batch, /*all_logits=*/true, &logits));
  (void)unused;
  if (static_cast<int64_t>(logits.size()) !=
      int64_t{static_cast<int>(tokens.size())} * dims_.vocab_size) {
    return absl::InternalError("PrefillLogits: the logits were not produced");
  }
  return logits;
}

}  // namespace hipserve::worker
