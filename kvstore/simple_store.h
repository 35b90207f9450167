// SimpleKvStore: the foundation's unpaged, host-only KV store (fp32, everything "hot").
//
// Owns one growable K and one V buffer per (sequence, layer), laid out
// [tokens][local_kv_heads][head_dim] fp32. The caller decides whether keys are rotated: the
// worker stores them without RoPE for HiP (HIP.md 5) and rotated (real positions) for dense.
// Thread-safety: all methods take an internal mutex; a View stays valid until the next
// Append/Free on the same sequence (single-writer per sequence is the caller's contract).
// Replaced by the paged, tiered store for long contexts; kept as the reference behaviour.
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/strong_id.h"

namespace hipserve::kvstore {

using common::LayerId;
using common::SequenceId;

struct SimpleKvStoreOptions {
  int num_layers = 0;                  // layers held per sequence (> 0)
  int num_kv_heads = 0;                // local KV heads (> 0)
  int head_dim = 0;                    // (> 0)
  int64_t max_tokens_total = 1 << 20;  // budget over all sequences; appends beyond fail
};

// Read-only window onto one (sequence, layer): k/v are [tokens][kv_heads][head_dim].
struct KvView {
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t tokens = 0;
};

class SimpleKvStore {
 public:
  static absl::StatusOr<SimpleKvStore*> Create(const SimpleKvStoreOptions& options);
  explicit SimpleKvStore(const SimpleKvStoreOptions& options) : options_(options) {}

  // Starts an empty sequence. AlreadyExists if it is live.
  absl::Status AddSequence(SequenceId seq);
  // Appends `n` tokens of K and V ([n][kv_heads][head_dim]) to one layer. Layer 0's length
  // counts toward the budget; other layers must not outgrow layer 0 + n.
  absl::Status Append(SequenceId seq, LayerId layer, const float* k, const float* v, int64_t n);
  absl::StatusOr<KvView> View(SequenceId seq, LayerId layer) const;
  // Tokens stored for the sequence (layer 0's count). NotFound when unknown.
  absl::StatusOr<int64_t> Length(SequenceId seq) const;
  // Truncates every layer to `tokens` (used to roll back a failed step).
  absl::Status Truncate(SequenceId seq, int64_t tokens);
  absl::Status Free(SequenceId seq);
  bool Contains(SequenceId seq) const;
  int64_t TokensInUse() const;
  int NumSequences() const;

 private:
  struct Layer {
    std::vector<float> k, v;
  };
  struct Sequence {
    std::vector<Layer> layers;
    int64_t length = 0;  // layer 0 tokens
  };
  int64_t TokenStride() const { return int64_t{options_.num_kv_heads} * options_.head_dim; }

  SimpleKvStoreOptions options_;
  mutable std::mutex mu_;
  absl::flat_hash_map<SequenceId, Sequence> seqs_;
  int64_t tokens_in_use_ = 0;
};

}  // namespace hipserve::kvstore
