// Selection recall: how much of dense attention's probability mass a HiP block selection keeps.
// A diagnostic for tuning and debugging the pruning stages (HIP.md 2), not a serving path.
//
// For one query at `pos` and one KV head, dense attention with real positions gives every key
// j <= pos a probability p_h(j) for each query head h of the group. The key set HiP attends
// (sink + selected blocks + window, BsaKeysForQuery) keeps mass sum_{j in set} p_h(j). The
// oracle keeps sink + window + the `count` candidate blocks (aligned to n_sink + k * block_size,
// as HiP's chunks are) with the largest group-summed mass. Masses are averaged over the group.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/hip/rope_table.h"

namespace hipserve::kernels {

struct SelectionRecallParams {
  const float* q = nullptr;  // [group][head_dim]: the query heads of one KV head, un-rotated
  int group = 0;             // > 0
  int head_dim = 0;          // > 0, even
  int32_t pos = 0;           // the query's real position (< num_kv)
  const float* k = nullptr;  // key j at k + j * k_token_stride, un-rotated
  int64_t k_token_stride = 0;
  int num_kv = 0;                   // > pos
  const int32_t* blocks = nullptr;  // selected block starts, ascending, unique
  int count = 0;
  int block_size = 0;  // > 0
  int n_sink = 0;
  int n_window = 0;
  // Covers [0, pos + 1). nullptr = logits without RoPE (synthetic data whose attention has no
  // positions, such as A1's needles).
  const RopeTable* rope = nullptr;
};

struct SelectionRecall {
  double fixed = 0;     // mass of sink + window
  double selected = 0;  // mass of the attended key set (fixed included)
  double oracle = 0;    // mass of sink + window + the best `count` candidate blocks
};

absl::Status MeasureSelectionRecall(const SelectionRecallParams& p, SelectionRecall* out);

}  // namespace hipserve::kernels
