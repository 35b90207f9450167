// HiP sparse attention configuration (HIP.md 2-6) and the small pure functions derived from it
// that every backend must agree on: per-layer budgets, candidate ranges, the decode refresh
// schedule. Parsing from JSON lives in worker/hip_config.h (kernels do not depend on JSON).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace hipserve::kernels {

// Positions used to rotate queries and probe keys while *scoring* chunks (HIP.md 5).
enum class PruningPositions {
  kReal,          // real positions (the only mode when HipConfig::extend is off)
  kRelative,      // query at n_window + 1, left probe at 0, right probe at 1
  kChunkIndexed,  // key at its chunk's index in the stage input; query at
                  // min(pos, n_chunks + n_window)
};

// "relative", "chunk_indexed", "real".
const char* PruningPositionsName(PruningPositions p);

// How a pruning stage scores a chunk (HIP.md 2.1; definitions in kernels/hip/mask_estimation.h).
// Stage 1 by HipConfig::stage1_representatives; later stages by
// HipConfig::later_stage_representatives (default: probes). GPU: HipGpuMaskImplements.
enum class Stage1Representatives {
  kProbes,      // binary descent over single probe keys (HIP.md 2)
  kPageBound,   // upper bound of q . k from the element-wise min / max of each page (stage 1:
                // 64 keys; later stages: min(64, chunk size) keys)
  kBlockMeans,  // the mean key of each mean_block_size-key block of the chunk (later stages:
                // blocks of min(mean_block_size, chunk size) keys)
  kExact,       // the exact max over the chunk's keys of the probe score (no summary)
};

// "probes", "page_bound", "block_means", "exact".
const char* Stage1RepresentativesName(Stage1Representatives r);

// Keys per page of the page-bound summaries (min / max per page and KV head); pages are aligned
// to absolute positions: page p holds keys [p * kHipPageSize, (p + 1) * kHipPageSize).
inline constexpr int kHipPageSize = 64;

// Replaces the budget / pruning positions of some layers (upstream: layers 0..2 get k = 4096
// and chunk-indexed positions because they behave like local attention).
struct HipLayerOverride {
  std::vector<int> layers;  // layer indices (>= 0, unique over all overrides)
  int k = 4096;             // final keep in tokens for these layers
  PruningPositions pruning_positions = PruningPositions::kChunkIndexed;
};

// Defaults are HIP.md's "3K" preset with the "flash" refresh intervals. The stage count is
// chunk_sizes.size() (3 by default); the per-stage lists must match it.
struct HipConfig {
  int n_sink = 256;     // first n_sink tokens are always attended (>= 0)
  int n_window = 1024;  // query i also attends [pos_i - n_window, pos_i] (>= 0)
  int block_q = 64;     // prefill queries sharing one selection (> 0); decode blocks are 1 query
  // Prefill: the last tail_queries queries of the prefill step that ends the prompt (the one
  // that samples; earlier chunks have none, so where they end changes nothing when the cuts
  // fall on multiples of block_q) get their own selection (query
  // blocks of one query, as in decode) instead of sharing their block's (>= 0; 0 = off). A
  // block's shared selection maxes raw scores over all its queries, so it can drop the keys
  // that only its last query needs, and the last prompt query produces the first generated
  // token (HIP.md 6: upstream runs the last 64 queries of a chunk near-dense). Costs
  // tail_queries single-query mask estimations per prompt and layer. See docs/HIP_NOTES.md.
  int tail_queries = 64;
  // Stage s splits its input into chunks of chunk_sizes[s] tokens; strictly decreasing, each
  // dividing the previous one. The last size is the BSA block size.
  std::vector<int> chunk_sizes = {256, 32, 8};
  // Tokens kept after stage s, s < stages - 1 (the last stage keeps `k`). Multiples of
  // chunk_sizes[s], non-increasing, and >= every layer's k.
  std::vector<int> stage_keep = {32768, 8192};
  int k = 2048;  // final keep in tokens (multiple of the last chunk size)
  // Scoring rows of stage s: the block's queries averaged in groups of stride_q[s] (>= 1).
  std::vector<int> stride_q = {4, 4, 1};
  // Decode: stage s is recomputed at decode steps i with i % interval[s] == 0 (>= 1 each).
  std::vector<int> mask_refresh_interval = {96, 24, 8};
  // Context extension (HIP.md 5): on = streaming BSA positions + layer pruning positions;
  // off = real positions everywhere.
  bool extend = true;
  // With extend on, a step uses the extension only when its sequence holds more than this many
  // keys; shorter steps use real positions, as with extend off (HIP.md 5 allows both inside
  // the pretrained window, and real positions select better there: docs/HIP_NOTES.md 2).
  // -1 = the model's pretrained context length (resolved by the worker), 0 = always. >= -1.
  int extend_min_tokens = -1;
  // Pruning positions of layers without an override (used only when extend is on).
  PruningPositions pruning_positions = PruningPositions::kRelative;
  std::vector<HipLayerOverride> layer_overrides = {
      HipLayerOverride{{0, 1, 2}, 4096, PruningPositions::kChunkIndexed}};
  // Stage-1 chunk scores (HIP.md 2.1), every layer. kProbes is HIP.md 2's binary descent; the
  // GPU decode and prefill masks implement every option (HipGpuMaskImplements); see
  // docs/HIP_NOTES.md 6 for measurements.
  Stage1Representatives stage1_representatives = Stage1Representatives::kProbes;
  // kBlockMeans: keys per mean block (> 0, dividing chunk_sizes[0]; HIP.md 2.1 names 8 or 16).
  int mean_block_size = 16;
  // Chunk scores of the stages after the first (issue 12: stage 2 misses short spans exactly as
  // stage 1 does): empty = probes (HIP.md 2, today's behaviour), else one entry per stage
  // s >= 1 (num_stages() - 1 entries). On the GPU: decode and prefill masks
  // (HipGpuMaskImplements); see docs/HIP_NOTES.md 7. JSON: "stage_representatives" lists all
  // stages.
  std::vector<Stage1Representatives> later_stage_representatives;

  int num_stages() const { return static_cast<int>(chunk_sizes.size()); }
  int block_size() const { return chunk_sizes.back(); }
};

// InvalidArgument naming the offending field and value. Overrides naming layers the model
// does not have are ignored (so the default list fits models with fewer than 3 layers).
absl::Status ValidateHipConfig(const HipConfig& config);

// What the pruning stages of one layer need (HIP.md 2), resolved from a HipConfig.
struct PruningSpec {
  std::vector<int> chunk_sizes;  // [stages]
  std::vector<int> keep_tokens;  // [stages]: tokens kept after each stage; last = layer's k
  std::vector<int> stride_q;     // [stages]
  PruningPositions positions = PruningPositions::kRelative;
  int n_window = 0;  // for the relative / chunk-indexed query placement
  Stage1Representatives stage1 = Stage1Representatives::kProbes;
  int mean_block_size = 16;  // kBlockMeans only
  // Stages s >= 1: empty = probes, else [stages - 1] (later_stages[s - 1] is stage s's).
  std::vector<Stage1Representatives> later_stages;

  int num_stages() const { return static_cast<int>(chunk_sizes.size()); }
  // How stage s scores its chunks.
  Stage1Representatives representatives(int s) const {
    if (s == 0) return stage1;
    if (later_stages.empty()) return Stage1Representatives::kProbes;
    return later_stages[s - 1];
  }
  // Chunks kept after stage s (keep_tokens[s] / chunk_sizes[s]).
  int keep_chunks(int s) const { return keep_tokens[s] / chunk_sizes[s]; }
};

// Layer `layer`'s spec: its override's k and positions if any, else the defaults; positions
// are kReal whenever extend is off. Assumes a valid config.
PruningSpec PruningSpecForLayer(const HipConfig& config, int layer);

// The GPU mask kernels a check is for (docs/HIP_NOTES.md 7, "GPU"):
//   kDecode:  HipDecodeMaskGpu (decode steps, and the prefill tail's one-query rows);
//   kPrefill: HipPrefillMaskGpu (64-query rows of a prefill step).
// Both implement every option at every stage (probes, page_bound, block_means, exact); the
// checks stay so that a future option, or one a path drops, is refused by name.
enum class HipGpuMaskPath { kDecode, kPrefill };

// "decode", "prefill".
const char* HipGpuMaskPathName(HipGpuMaskPath path);

// Whether `path`'s GPU kernels implement `r` at stage `stage` (0 = stage 1).
bool HipGpuMaskImplements(HipGpuMaskPath path, int stage, Stage1Representatives r);

// InvalidArgument naming the option, the stage and the path when `config` (or `spec`) asks for
// something `path`'s kernels do not implement, so that no GPU entry point silently runs another
// scorer in place of the configured one. `who` prefixes the message. A caller that runs both
// paths (CudaHipAttention) checks each where it runs it.
absl::Status HipConfigRunsOnGpu(const HipConfig& config, HipGpuMaskPath path,
                                const std::string& who);
absl::Status PruningSpecRunsOnGpu(const PruningSpec& spec, HipGpuMaskPath path,
                                  const std::string& who);
// The kPrefill check (what every GPU path implements): the form HipPrefillMaskGpu calls.
absl::Status PruningSpecRunsOnGpu(const PruningSpec& spec, const std::string& who);

// Candidate range [begin, end) of a query block whose last query sits at `last_pos`:
// [n_sink, max(n_sink, last_pos - n_window)). Keys at or after `end` are in the window of
// every query of the block (or causally masked), so nothing is lost between the two.
struct CandidateRange {
  int32_t begin = 0;
  int32_t end = 0;
};
CandidateRange CandidateRangeFor(const HipConfig& config, int32_t last_pos);

// Decode refresh schedule (HIP.md 4): the first stage s with step % interval[s] == 0, or -1
// when none matches (reuse the cached final block list). Step 0 always gives 0.
int DecodeRefreshStage(const HipConfig& config, int64_t decode_step);
// The same with explicit intervals (one per stage, each >= 1): a sequence's own schedule
// (per-request override, GenerateRequest.hip.mask_refresh_interval).
int DecodeRefreshStage(const std::vector<int>& mask_refresh_interval, int64_t decode_step);

}  // namespace hipserve::kernels
