// CpuBackend: the reference ForwardBackend (fp32 activations, fp32 or bf16 linear weights,
// fp32 KV in kvstore::SimpleKvStore, dense or HiP attention on the CPU).
//
// Owns its weights (the ModelWeights it was created from), KV and HiP state. Thread-safety and
// lifetime as ForwardBackend.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "worker/forward_backend.h"
#include "worker/hip_attention.h"
#include "worker/model_options.h"
#include "worker/weights.h"

namespace hipserve::worker {

// Validates shapes against dims (shared by every backend's Create).
absl::Status CheckWeights(const ModelWeights& w);

// The HiP attention options of this rank's shard (both backends' HiP state is made from it).
HipAttentionOptions HipOptionsFor(const ModelWeights& w, const ModelOptions& options);

absl::StatusOr<std::unique_ptr<ForwardBackend>> MakeCpuBackend(ModelWeights weights,
                                                               const ModelOptions& options);

}  // namespace hipserve::worker
