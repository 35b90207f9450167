#include "worker/hip_attention.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/parallel_for.h"
#include "common/status_macros.h"
#include "kernels/hip/bsa.h"
#include "kernels/hip/selection_recall.h"

namespace hipserve::worker {

using common::SequenceId;

void HipRecallSums::Add(double fixed_mass, double selected_mass, double oracle_mass) {
  fixed += fixed_mass;
  selected += selected_mass;
  oracle += oracle_mass;
  worst_selected = std::min(worst_selected, selected_mass);
  ++samples;
}

absl::StatusOr<std::unique_ptr<HipAttention>> HipAttention::Create(const HipAttentionOptions& o) {
  if (o.num_layers <= 0 || o.num_heads <= 0 || o.num_kv_heads <= 0 || o.head_dim <= 0 ||
      o.head_dim % 2 != 0 || o.num_heads % o.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("HipAttention: bad shape: layers ", o.num_layers,
                                                   ", heads ", o.num_heads, ", kv heads ",
                                                   o.num_kv_heads, ", head_dim ", o.head_dim));
  }
  RETURN_IF_ERROR(kernels::ValidateHipConfig(o.config));
  ASSIGN_OR_RETURN(kernels::RopeTable rope,
                   kernels::RopeTable::Create(o.rope, o.head_dim, o.config.n_window + 2));
  return std::unique_ptr<HipAttention>(new HipAttention(o, std::move(rope)));
}

int MaxRequestK(const kernels::HipConfig& c, int max_context) {
  if (c.num_stages() > 1) return c.stage_keep.back();
  const int block = c.block_size();
  return std::max(block, max_context / block * block);
}

HipAttention::LayerSpecs HipAttention::MakeLayerSpecs(const kernels::HipConfig& config,
                                                      int num_layers) {
  LayerSpecs s;
  kernels::HipConfig real = config;
  real.extend = false;
  for (int l = 0; l < num_layers; ++l) {
    s.ext.push_back(kernels::PruningSpecForLayer(config, l));
    s.real.push_back(kernels::PruningSpecForLayer(real, l));
  }
  return s;
}

const HipAttention::LayerSpecs& HipAttention::SpecsFor(int k) {
  if (k == options_.config.k) k = 0;
  std::unique_ptr<const LayerSpecs>& slot = specs_[k];
  if (slot == nullptr) {
    kernels::HipConfig c = options_.config;
    c.k = k;
    slot = std::make_unique<const LayerSpecs>(MakeLayerSpecs(c, options_.num_layers));
  }
  return *slot;
}

HipAttention::HipAttention(const HipAttentionOptions& options, kernels::RopeTable rope)
    : options_(options), rope_(std::move(rope)) {
  specs_[0] =
      std::make_unique<const LayerSpecs>(MakeLayerSpecs(options_.config, options_.num_layers));
  extend_min_tokens_ = options_.config.extend_min_tokens >= 0
                           ? options_.config.extend_min_tokens
                           : std::max(options_.pretrained_context, 0);
  recall_.resize(options_.num_layers);
}

absl::Status HipAttention::EnsureRope(int positions) {
  if (positions <= rope_.num_positions()) return absl::OkStatus();
  // Grow geometrically so that decode does not rebuild the table every step.
  return rope_.Reserve(std::max(positions, 2 * rope_.num_positions()));
}

HipStepInfo NextHipStep(const kernels::HipConfig& config, int start_pos, int num_tokens,
                        int64_t* next_decode_step, const std::vector<int>& refresh_interval,
                        bool ends_prompt) {
  HipStepInfo step;
  step.tail = ends_prompt;
  if (num_tokens == 1 && start_pos > 0) {
    step.decode = true;
    step.decode_step = (*next_decode_step)++;
    step.refresh_stage = kernels::DecodeRefreshStage(
        refresh_interval.empty() ? config.mask_refresh_interval : refresh_interval,
        step.decode_step);
  } else {
    *next_decode_step = 0;
  }
  return step;
}

void HipAttention::BeginStep(SequenceId seq, int start_pos, int num_tokens,
                             const std::vector<int>& refresh_interval, bool ends_prompt, int k) {
  SeqState& st = states_[seq];
  st.k = k == options_.config.k ? 0 : k;
  if (st.cache.empty()) {
    st.cache.resize(static_cast<size_t>(options_.num_layers) * options_.num_kv_heads);
  }
  st.step = NextHipStep(options_.config, start_pos, num_tokens, &st.next_decode_step,
                        refresh_interval, ends_prompt);
  if (!st.step.decode) std::fill(st.cache.begin(), st.cache.end(), nullptr);
}

absl::StatusOr<HipStepInfo> HipAttention::CurrentStep(SequenceId seq) const {
  auto it = states_.find(seq);
  if (it == states_.end()) {
    return absl::NotFoundError(absl::StrCat("HipAttention: no state for sequence ", seq.value()));
  }
  return it->second.step;
}

const std::vector<int32_t>* HipAttention::CachedBlocks(SequenceId seq, int layer,
                                                       int kv_head) const {
  auto it = states_.find(seq);
  if (it == states_.end() || layer < 0 || layer >= options_.num_layers || kv_head < 0 ||
      kv_head >= options_.num_kv_heads) {
    return nullptr;
  }
  const auto& entry =
      it->second.cache[static_cast<size_t>(layer) * options_.num_kv_heads + kv_head];
  return entry == nullptr ? nullptr : &entry->kept.back().starts;
}

absl::Status HipAttention::Run(SequenceId seq, int layer, const float* q, int num_q, int start_pos,
                               const float* k, const float* v, int num_kv, float* out) {
  auto it = states_.find(seq);
  if (it == states_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("HipAttention: BeginStep was not called for sequence ", seq.value()));
  }
  SeqState& st = it->second;
  if (layer < 0 || layer >= options_.num_layers || num_q <= 0 || start_pos < 0 ||
      start_pos + num_q != num_kv) {
    return absl::InvalidArgumentError(absl::StrCat("HipAttention: bad call: layer ", layer,
                                                   ", num_q ", num_q, ", start_pos ", start_pos,
                                                   ", num_kv ", num_kv));
  }
  if (st.step.decode && num_q != 1) {
    return absl::FailedPreconditionError("HipAttention: decode step with more than one query");
  }
  const kernels::HipConfig& cfg = options_.config;
  // Extension (HIP.md 5) only for sequences longer than extend_min_tokens_; the decision is
  // per step, so a sequence switches when it grows past the threshold (nothing cached depends
  // on positions: keys are stored un-rotated and the cached lists are plain key ranges).
  const bool extend = cfg.extend && num_kv > extend_min_tokens_;
  const LayerSpecs& specs = SpecsFor(st.k);
  const kernels::PruningSpec& spec = extend ? specs.ext[layer] : specs.real[layer];
  const int kvh = options_.num_kv_heads, d = options_.head_dim;
  const int group = options_.num_heads / kvh;
  const int block_size = cfg.block_size();
  const int max_blocks = spec.keep_tokens.back() / block_size;
  RETURN_IF_ERROR(EnsureRope(std::max(num_kv + 1, cfg.n_window + 2)));

  // Rows (queries sharing one selection), as [first, end) query indices of this step. Prefill:
  // blocks aligned to absolute multiples of block_q (so a chunk boundary at such a multiple
  // changes no block's selection), except the last tail_queries queries, which get one row
  // each (HipConfig::tail_queries). Decode: the one query.
  if (st.step.decode) {
    // One lookup per layer (every KV head follows the same schedule).
    const bool reuse = st.step.refresh_stage < 0 && st.cache[static_cast<size_t>(layer) * kvh];
    ++(reuse ? mask_cache_.hits : mask_cache_.misses);
  }
  const int tail = st.step.decode ? num_q : (st.step.tail ? std::min(num_q, cfg.tail_queries) : 0);
  std::vector<int32_t> q_pos(num_q), q_row(num_q);
  std::vector<std::pair<int, int>> row_queries;
  for (int i = 0; i < num_q; ++i) {
    q_pos[i] = start_pos + i;
    const bool own_row = i >= num_q - tail;
    if (own_row || row_queries.empty() || q_pos[i] % cfg.block_q == 0) {
      row_queries.emplace_back(i, i + 1);
    } else {
      row_queries.back().second = i + 1;
    }
    q_row[i] = static_cast<int32_t>(row_queries.size()) - 1;
  }
  const int rows = static_cast<int>(row_queries.size());
  std::vector<int32_t> block_starts(static_cast<size_t>(rows) * kvh * std::max(max_blocks, 1));
  std::vector<int32_t> block_counts(static_cast<size_t>(rows) * kvh, 0);

  // Mask estimation, one task per (row, KV head); tasks write disjoint plan entries and cache
  // slots, and the recall samples are summed in task order afterwards (deterministic).
  const int threads = common::ResolveThreads(options_.threads);
  std::vector<kernels::SelectionRecall> recall(options_.measure_recall ? rows * kvh : 0);
  auto mask_task = [&](int task) -> absl::Status {
    const int r = task / kvh, h = task % kvh;
    const auto [qa, qb] = row_queries[r];
    const kernels::CandidateRange range = kernels::CandidateRangeFor(cfg, q_pos[qb - 1]);
    kernels::MaskEstimationParams mp;
    mp.q_token_stride = int64_t{options_.num_heads} * d;
    mp.group = group;
    mp.head_dim = d;
    mp.k_token_stride = int64_t{kvh} * d;
    mp.num_kv = num_kv;
    mp.spec = &spec;
    mp.rope = &rope_;
    mp.num_q = qb - qa;
    mp.q_pos = q_pos.data() + qa;
    mp.range_begin = range.begin;
    mp.range_end = range.end;
    mp.q = q + qa * mp.q_token_stride + int64_t{h} * group * d;
    mp.k = k + int64_t{h} * d;
    const std::vector<int32_t>* blocks = nullptr;
    std::shared_ptr<const HeadCache>* cache = nullptr;
    if (st.step.decode) {
      cache = &st.cache[static_cast<size_t>(layer) * kvh + h];
      int stage = st.step.refresh_stage;
      if (*cache == nullptr) stage = 0;  // nothing to reuse or restart from
      if (stage < 0) blocks = &(*cache)->kept.back().starts;
      mp.start_stage = std::max(stage, 0);
      mp.start_input = mp.start_stage > 0 ? &(*cache)->kept[mp.start_stage - 1] : nullptr;
    } else {
      mp.start_stage = 0;
      mp.start_input = nullptr;
    }
    kernels::MaskEstimationResult result;
    if (blocks == nullptr) {
      RETURN_IF_ERROR(kernels::EstimateMaskRef(mp, &result));
      if (cache != nullptr) {
        auto fresh = std::make_shared<HeadCache>();
        fresh->kept = std::move(result.kept);
        for (int s = 0; s < mp.start_stage; ++s) fresh->kept[s] = (*cache)->kept[s];
        *cache = std::move(fresh);
        blocks = &(*cache)->kept.back().starts;
      } else {
        blocks = &result.kept.back().starts;
      }
    }
    const size_t plan = static_cast<size_t>(r) * kvh + h;
    const int count = std::min<int>(static_cast<int>(blocks->size()), max_blocks);
    block_counts[plan] = count;
    std::copy_n(blocks->begin(), count, block_starts.begin() + plan * std::max(max_blocks, 1));
    if (options_.measure_recall) {
      kernels::SelectionRecallParams rp;
      rp.q = q + (qb - 1) * mp.q_token_stride + int64_t{h} * group * d;
      rp.group = group;
      rp.head_dim = d;
      rp.pos = q_pos[qb - 1];
      rp.k = mp.k;
      rp.k_token_stride = mp.k_token_stride;
      rp.num_kv = num_kv;
      rp.blocks = blocks->data();
      rp.count = count;
      rp.block_size = block_size;
      rp.n_sink = cfg.n_sink;
      rp.n_window = cfg.n_window;
      rp.rope = &rope_;
      RETURN_IF_ERROR(kernels::MeasureSelectionRecall(rp, &recall[task]));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(common::ParallelFor(rows * kvh, threads, mask_task));
  for (int task = 0; task < static_cast<int>(recall.size()); ++task) {
    const kernels::SelectionRecall& rec = recall[task];
    recall_[layer].all.Add(rec.fixed, rec.selected, rec.oracle);
    if (task / kvh == rows - 1) recall_[layer].last.Add(rec.fixed, rec.selected, rec.oracle);
  }

  // BSA over slices of consecutive queries (each query's output depends only on its own plan
  // row, so slicing does not change any value).
  constexpr int kSliceQueries = 64;
  const int slices = (num_q + kSliceQueries - 1) / kSliceQueries;
  return common::ParallelFor(slices, threads, [&](int slice) {
    const int first = slice * kSliceQueries;
    const int n = std::min(kSliceQueries, num_q - first);
    const int64_t q_row_size = int64_t{options_.num_heads} * d;
    kernels::BsaParams bp;
    bp.q = q + first * q_row_size;
    bp.q_pos = q_pos.data() + first;
    bp.q_plan_row = q_row.data() + first;
    bp.num_q = n;
    bp.num_heads = options_.num_heads;
    bp.num_kv_heads = kvh;
    bp.head_dim = d;
    bp.k = k;
    bp.v = v;
    bp.num_kv = num_kv;
    bp.block_starts = block_starts.data();
    bp.block_counts = block_counts.data();
    bp.num_rows = rows;
    bp.max_blocks = std::max(max_blocks, 1);
    bp.block_size = block_size;
    bp.n_sink = cfg.n_sink;
    bp.n_window = cfg.n_window;
    bp.extend = extend;
    bp.rope = &rope_;
    bp.scale = 1.0f / std::sqrt(static_cast<float>(d));
    bp.out = out + first * q_row_size;
    return kernels::BsaRef(bp);
  });
}

HipAttention::Snapshot HipAttention::Save(const std::vector<SequenceId>& seqs) const {
  Snapshot snap;
  for (SequenceId seq : seqs) {
    auto it = states_.find(seq);
    snap.emplace_back(seq,
                      it == states_.end() ? nullptr : std::make_shared<const SeqState>(it->second));
  }
  return snap;
}

void HipAttention::Restore(const Snapshot& snapshot) {
  for (const auto& [seq, state] : snapshot) {
    if (state == nullptr) {
      states_.erase(seq);
    } else {
      states_[seq] = *state;
    }
  }
}

void HipAttention::Release(SequenceId seq) { states_.erase(seq); }

void HipAttention::ReleaseAll() { states_.clear(); }

}  // namespace hipserve::worker
