// HiP decode step of one attention layer as CUDA graphs (HIP.md 4; issue "Decode as CUDA graphs
// (one per batch size bucket and refresh mode); no host sync inside a step").
//
// One HipDecodeGraphs object serves one layer (its KV cache, its PruningSpec). At Create it
// allocates every device buffer for the largest bucket and captures one graph per
// (batch bucket, refresh mode): bucket in options.batch_buckets, mode in {BSA only, from stage
// S-1, ..., from stage 0} (S = HiP stages). A graph is HipDecodeMaskGpu from the mode's stage
// (with the per-sequence seq_start_stage array, so each sequence restarts from its own stage)
// followed by BsaDecodeAttentionGpu over the last stage's lists. Afterwards a step allocates
// nothing and never waits for the GPU (see Run for the one bounded exception).
//
// Slots: the sequences of a step occupy slots [0, batch); a slot's cached mask lists
// (mask_state()) persist across steps and across buckets (slot b of every bucket is the same
// memory). Keep a sequence in the same slot, or MoveSlot it. A slot's first step (a new
// sequence, or any slot used as padding since) must recompute from stage 0; Run rejects
// anything else with InvalidArgument. Rows [batch, bucket) are padding (decode_graph_plan.h:
// 1-token rows at KV row 0 that no mask stage touches); their output rows are garbage-free but
// must be ignored, and their last-stage block counts are zeroed when they stop being real.
//
// Grid sizes are fixed at capture from options.max_kv_len (the capacity); shorter sequences are
// handled in-kernel (stage-1 score blocks past a sequence's chunks exit at once), so a capacity
// far above the real lengths costs some empty blocks (create one object per length range).
//
// Ownership: owns its device buffers, pinned staging, events, capture stream and graphs (freed
// by the destructor, which synchronises the device first). Borrows K, V and the RoPE table
// (HipDecodeGraphTensors), which must outlive it and stay at the same addresses.
// Thread-safety: none; one thread drives an object, and its steps must be enqueued on one
// stream at a time (they share buffers). CPU builds: Create returns UnimplementedError.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/hip/hip_params.h"
#include "kernels/hip_cuda/mask_estimation.h"

namespace hipserve::kernels {

struct HipDecodeGraphOptions {
  int num_heads = 0;     // query heads, multiple of num_kv_heads, group 1..8
  int num_kv_heads = 0;  // > 0
  int head_dim = 0;      // 64 or 128
  // HiP config (validated with ValidateHipConfig) and this layer's index: the layer's
  // PruningSpec, n_sink, n_window (BSA attends [T - n_window - 1, T), as BsaRef) and extend.
  HipConfig config;
  int layer = 0;
  int max_kv_len = 0;   // capacity: every step's kv_len <= this (> 0)
  int64_t kv_rows = 0;  // rows of K and V; every kv_start + kv_len <= kv_rows
  std::vector<int> batch_buckets = {1, 2, 4, 8, 16, 32};  // strictly increasing
  // true: K is stored un-rotated and BSA rotates keys in-kernel (HIP.md 5; the rope table must
  // then cover max_kv_len positions). false: BSA uses K as stored (the mask always rotates).
  bool bsa_rope = true;
  // Passed to BsaDecodeGpuParams (0 = automatic per bucket, from the bucket size).
  int bsa_num_splits = 0;
  int bsa_keys_per_step = 0;
  // Pinned host staging slots for the per-step lengths (Run waits only when the host is more
  // than this many steps ahead of the GPU). >= 1.
  int staging_depth = 16;
};

// Borrowed device tensors (16-byte aligned).
struct HipDecodeGraphTensors {
  const void* k = nullptr;      // [kv_rows, num_kv_heads, head_dim] bf16
  const void* v = nullptr;      // [kv_rows, num_kv_heads, head_dim] bf16
  const float* rope = nullptr;  // HipRopeRows layout, [rope_positions, head_dim] fp32
  int rope_positions = 0;       // >= the mask's need, and >= max_kv_len when bsa_rope
};

// One decode step. Host arrays are read during Run only.
struct HipDecodeStep {
  int batch = 0;                      // real sequences, in slots [0, batch); <= max bucket
  const int32_t* kv_len = nullptr;    // host [batch]: tokens incl. the new one, in [1, max_kv_len]
  const int64_t* kv_start = nullptr;  // host [batch]: KV row of token 0, >= 0
  const int32_t* start_stage = nullptr;  // host [batch]: -1 (reuse) or 0..S-1 (SeqStartStages)
  // Device [batch, num_heads, head_dim] bf16 queries (un-rotated), copied into q_buffer();
  // null: the caller already wrote rows [0, batch) of q_buffer() on the step's stream.
  const void* q = nullptr;
  // Device [batch, num_heads, head_dim] bf16: rows [0, batch) of out_buffer() are copied here;
  // null: read out_buffer() (valid until the next step on the stream).
  void* out = nullptr;
};

class HipDecodeGraphs {
 public:
  virtual ~HipDecodeGraphs() = default;

  // Enqueues one step on `stream` (a cudaStream_t): upload of the lengths and start stages
  // (pinned staging ring -> one async copy), zeroing of block counts of slots that just became
  // padding, the q copy, one graph launch, the out copy. No host synchronisation, except that
  // reusing a staging slot waits for the copy made staging_depth steps earlier. Validates the
  // step on the host first (InvalidArgument naming the field; nothing enqueued then).
  virtual absl::Status Run(const HipDecodeStep& step, void* stream) = 0;
  // The same step with the same kernels launched one by one instead of the graph (for tests and
  // the eager-vs-graph benchmark). Same buffers, same results bit for bit.
  virtual absl::Status RunEager(const HipDecodeStep& step, void* stream) = 0;
  // Copies slot `from`'s cached lists to slot `to` (device copies on `stream`), e.g. when a
  // scheduler compacts its batch; `to` then continues `from`'s refresh schedule.
  virtual absl::Status MoveSlot(int from, int to, void* stream) = 0;

  // Bucket size a batch runs in (InvalidArgument when batch is outside [1, max bucket]).
  virtual absl::StatusOr<int> BucketFor(int batch) const = 0;
  virtual int num_graphs() const = 0;
  virtual int max_batch() const = 0;
  virtual int num_stages() const = 0;
  // Device buffers (owned; fixed addresses for the object's lifetime).
  virtual void* q_buffer() const = 0;    // [max_batch, num_heads, head_dim] bf16
  virtual void* out_buffer() const = 0;  // [max_batch, num_heads, head_dim] bf16
  // Per-slot lists (layout of mask_estimation.h with batch = max_batch); the last stage's are
  // the BSA block lists.
  virtual const HipDecodeMaskGpuState& mask_state() const = 0;
};

// Validates options and tensors (InvalidArgument naming the field), allocates, and captures
// every graph on an internal stream of the current device.
absl::StatusOr<std::unique_ptr<HipDecodeGraphs>> CreateHipDecodeGraphs(
    const HipDecodeGraphOptions& options, const HipDecodeGraphTensors& tensors);

}  // namespace hipserve::kernels
