// Model::PrefillLogits: logits for every appended position (accuracy tools, reference checks).
// Kept apart from model.cc: it reuses Forward through the capture_hidden_ hook and applies the
// output norm and LM head itself.
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cpu_gemv/gemv.h"
#include "kernels/rmsnorm/rmsnorm.h"
#include "worker/model.h"

namespace hipserve::worker {

absl::StatusOr<std::vector<float>> Model::PrefillLogits(SequenceId seq,
                                                        const std::vector<int32_t>& tokens,
                                                        int start_pos) {
  if (weights_.world_size != 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "PrefillLogits needs a single-rank model, this one is rank ", weights_.rank, " of ",
        weights_.world_size));
  }
  const ModelDims& d = weights_.dims;
  StepBatch batch;
  SeqStep step;
  step.seq = seq;
  step.tokens = tokens;
  step.start_pos = start_pos;
  step.sample = false;
  batch.work.push_back(std::move(step));
  std::vector<float> hidden;
  capture_hidden_ = &hidden;
  absl::StatusOr<std::vector<SampledToken>> r = Step(batch);
  capture_hidden_ = nullptr;
  if (!r.ok()) return r.status();
  const int rows = static_cast<int>(tokens.size());
  if (static_cast<int64_t>(hidden.size()) != int64_t{rows} * d.hidden) {
    return absl::InternalError("PrefillLogits: hidden states were not captured");
  }
  kernels::RmsNormParams n;
  n.in = hidden.data();
  n.weight = weights_.output_norm.data();
  n.out = hidden.data();
  n.residual = nullptr;
  n.rows = rows;
  n.dim = d.hidden;
  n.eps = d.rms_eps;
  RETURN_IF_ERROR(kernels::RmsNormRef(n));
  std::vector<float> logits(int64_t{rows} * d.vocab_size);
  kernels::CpuMatmulParams g;
  g.a = hidden.data();
  g.b = lm_head_.data();
  g.b_type = lm_head_.type;
  g.c = logits.data();
  g.m = rows;
  g.n = lm_head_.n;
  g.k = lm_head_.k;
  RETURN_IF_ERROR(kernels::CpuMatmul(g));
  return logits;
}

}  // namespace hipserve::worker
