// HiP block-sparse attention (HIP.md 3, positions HIP.md 5).
//
// Query i (head h, KV head h / group) attends, exactly once each, the keys
//   sink part:   [0, min(n_sink, pos + 1))
//   block part:  keys of its plan row's blocks [b, b + block_size) with
//                n_sink <= key < min(window_first, pos + 1), in ascending order
//   window part: [window_first, pos], window_first = max(pos - n_window, n_sink)
// with an fp32 online softmax (running max / sum / accumulator, tiles of 64 keys) in that order.
// Queries keep their real position. Keys are rotated at:
//   extend off: their real position;
//   extend on (streaming): window keys at their real position; the M sink + block keys, in
//     order, at E - M, ..., E - 1 with E = min(window_first, pos + 1), i.e. contiguous and
//     ending just before the window. When every candidate block is selected this is the
//     real position, so HiP equals dense attention.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/hip/rope_table.h"

namespace hipserve::kernels {

struct BsaParams {
  const float* q = nullptr;             // [num_q][num_heads][head_dim], un-rotated
  const int32_t* q_pos = nullptr;       // [num_q] real positions, each < num_kv
  const int32_t* q_plan_row = nullptr;  // [num_q] row of block_starts used by query i
  int num_q = 0;                        // > 0
  int num_heads = 0;                    // > 0, multiple of num_kv_heads
  int num_kv_heads = 0;                 // > 0
  int head_dim = 0;                     // > 0, even
  const float* k = nullptr;             // [num_kv][num_kv_heads][head_dim], un-rotated
  const float* v = nullptr;             // [num_kv][num_kv_heads][head_dim]
  int num_kv = 0;                       // > 0
  // The plan (mask estimation output): per (row, KV head) an ascending, unique list.
  const int32_t* block_starts = nullptr;  // [num_rows][num_kv_heads][max_blocks]
  const int32_t* block_counts = nullptr;  // [num_rows][num_kv_heads], each <= max_blocks
  int num_rows = 0;
  int max_blocks = 0;  // >= 0
  int block_size = 0;  // > 0 (the last chunk size)
  int n_sink = 0;      // >= 0
  int n_window = 0;    // >= 0
  bool extend = true;
  const RopeTable* rope = nullptr;  // covers [0, max(q_pos) + 1)
  float scale = 0.f;                // > 0, usually 1/sqrt(head_dim)
  float* out = nullptr;             // [num_q][num_heads][head_dim]; must not alias inputs
};

// CPU reference. InvalidArgument on bad parameters, including unsorted block lists.
absl::Status BsaRef(const BsaParams& p);

// The keys query position `pos` attends, in BSA order, with the position each is rotated at.
struct BsaKeySet {
  std::vector<int32_t> keys;
  std::vector<int32_t> rope_positions;
};
// `blocks` ascending and unique. Exposed for tests and for GPU planners.
void BsaKeysForQuery(int32_t pos, const int32_t* blocks, int count, int block_size, int n_sink,
                     int n_window, bool extend, BsaKeySet* out);

}  // namespace hipserve::kernels
