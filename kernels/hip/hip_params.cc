#include "kernels/hip/hip_params.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace hipserve::kernels {
namespace {

absl::Status Bad(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("hip config: ", what));
}

std::string List(const std::vector<int>& v) {
  return absl::StrCat("[", absl::StrJoin(v, ", "), "]");
}

bool KnownRepresentatives(Stage1Representatives r) {
  switch (r) {
    case Stage1Representatives::kProbes:
    case Stage1Representatives::kPageBound:
    case Stage1Representatives::kBlockMeans:
    case Stage1Representatives::kExact:
      return true;
  }
  return false;
}

absl::Status NotOnGpu(const std::string& who, const std::string& field, Stage1Representatives r,
                      HipGpuMaskPath path) {
  std::string have;
  for (Stage1Representatives x :
       {Stage1Representatives::kProbes, Stage1Representatives::kPageBound,
        Stage1Representatives::kBlockMeans, Stage1Representatives::kExact}) {
    if (HipGpuMaskImplements(path, 0, x)) {
      absl::StrAppend(&have, have.empty() ? "" : ", ", "'", Stage1RepresentativesName(x), "'");
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      who, ": ", field, " '", Stage1RepresentativesName(r), "' are not implemented by the GPU ",
      HipGpuMaskPathName(path), " mask (GPU ", HipGpuMaskPathName(path), ": ", have, ")"));
}

}  // namespace

const char* PruningPositionsName(PruningPositions p) {
  switch (p) {
    case PruningPositions::kReal:
      return "real";
    case PruningPositions::kRelative:
      return "relative";
    case PruningPositions::kChunkIndexed:
      return "chunk_indexed";
  }
  return "unknown";
}

const char* Stage1RepresentativesName(Stage1Representatives r) {
  switch (r) {
    case Stage1Representatives::kProbes:
      return "probes";
    case Stage1Representatives::kPageBound:
      return "page_bound";
    case Stage1Representatives::kBlockMeans:
      return "block_means";
    case Stage1Representatives::kExact:
      return "exact";
  }
  return "unknown";
}

absl::Status ValidateHipConfig(const HipConfig& c) {
  if (c.n_sink < 0) return Bad(absl::StrCat("n_sink must be >= 0, got ", c.n_sink));
  if (c.n_window < 0) return Bad(absl::StrCat("n_window must be >= 0, got ", c.n_window));
  if (c.block_q <= 0) return Bad(absl::StrCat("block_q must be > 0, got ", c.block_q));
  if (c.extend_min_tokens < -1) {
    return Bad(
        absl::StrCat("extend_min_tokens must be >= -1 (-1 = the model's pretrained "
                     "context), got ",
                     c.extend_min_tokens));
  }
  if (c.tail_queries < 0) {
    return Bad(absl::StrCat("tail_queries must be >= 0, got ", c.tail_queries));
  }
  const int stages = c.num_stages();
  if (stages == 0) return Bad("chunk_sizes must not be empty");
  for (int s = 0; s < stages; ++s) {
    if (c.chunk_sizes[s] <= 0) {
      return Bad(absl::StrCat("chunk_sizes[", s, "] must be > 0, got ", c.chunk_sizes[s]));
    }
    if (s > 0 && (c.chunk_sizes[s] >= c.chunk_sizes[s - 1] ||
                  c.chunk_sizes[s - 1] % c.chunk_sizes[s] != 0)) {
      return Bad(absl::StrCat("chunk_sizes ", List(c.chunk_sizes),
                              " must be strictly decreasing with each dividing the previous; "
                              "chunk_sizes[",
                              s, "] = ", c.chunk_sizes[s], " does not fit"));
    }
  }
  if (static_cast<int>(c.stage_keep.size()) != stages - 1) {
    return Bad(absl::StrCat("stage_keep ", List(c.stage_keep), " must have ", stages - 1,
                            " entries (one per stage but the last)"));
  }
  for (int s = 0; s + 1 < stages; ++s) {
    const int keep = c.stage_keep[s];
    if (keep <= 0 || keep % c.chunk_sizes[s] != 0) {
      return Bad(absl::StrCat("stage_keep[", s, "] = ", keep,
                              " must be a positive multiple of chunk_sizes[", s,
                              "] = ", c.chunk_sizes[s]));
    }
    if (s > 0 && keep > c.stage_keep[s - 1]) {
      return Bad(absl::StrCat("stage_keep ", List(c.stage_keep), " must be non-increasing"));
    }
  }
  const int last = c.chunk_sizes.back();
  const int max_k = stages > 1 ? c.stage_keep.back() : 0;
  auto check_k = [&](const std::string& name, int k) -> absl::Status {
    if (k <= 0 || k % last != 0) {
      return Bad(absl::StrCat(name, " = ", k,
                              " must be a positive multiple of the last chunk size ", last));
    }
    if (stages > 1 && k > max_k) {
      return Bad(absl::StrCat(name, " = ", k, " exceeds stage_keep[", stages - 2, "] = ", max_k));
    }
    return absl::OkStatus();
  };
  if (absl::Status s = check_k("k", c.k); !s.ok()) return s;
  if (static_cast<int>(c.stride_q.size()) != stages) {
    return Bad(absl::StrCat("stride_q ", List(c.stride_q), " must have ", stages, " entries"));
  }
  for (int s = 0; s < stages; ++s) {
    if (c.stride_q[s] <= 0) {
      return Bad(absl::StrCat("stride_q[", s, "] must be > 0, got ", c.stride_q[s]));
    }
  }
  if (static_cast<int>(c.mask_refresh_interval.size()) != stages) {
    return Bad(absl::StrCat("mask_refresh_interval ", List(c.mask_refresh_interval), " must have ",
                            stages, " entries"));
  }
  for (int s = 0; s < stages; ++s) {
    if (c.mask_refresh_interval[s] <= 0) {
      return Bad(absl::StrCat("mask_refresh_interval[", s, "] must be > 0, got ",
                              c.mask_refresh_interval[s]));
    }
  }
  std::set<int> seen;
  for (size_t i = 0; i < c.layer_overrides.size(); ++i) {
    const HipLayerOverride& o = c.layer_overrides[i];
    const std::string name = absl::StrCat("layer_overrides[", i, "]");
    if (o.layers.empty()) return Bad(name + ".layers must not be empty");
    for (int l : o.layers) {
      if (l < 0) return Bad(absl::StrCat(name, ".layers names layer ", l, " (< 0)"));
      if (!seen.insert(l).second) {
        return Bad(absl::StrCat(name, ".layers names layer ", l, " a second time"));
      }
    }
    if (absl::Status s = check_k(name + ".k", o.k); !s.ok()) return s;
  }
  if (!KnownRepresentatives(c.stage1_representatives)) {
    return Bad(absl::StrCat("stage1_representatives has an unknown value ",
                            static_cast<int>(c.stage1_representatives)));
  }
  if (!c.later_stage_representatives.empty()) {
    if (static_cast<int>(c.later_stage_representatives.size()) != stages - 1) {
      return Bad(absl::StrCat("stage_representatives must have ", stages,
                              " entries (one per stage), got ",
                              c.later_stage_representatives.size() + 1));
    }
    for (int s = 1; s < stages; ++s) {
      if (!KnownRepresentatives(c.later_stage_representatives[s - 1])) {
        return Bad(absl::StrCat("stage_representatives[", s, "] has an unknown value ",
                                static_cast<int>(c.later_stage_representatives[s - 1])));
      }
    }
  }
  if (c.mean_block_size <= 0 || c.chunk_sizes[0] % c.mean_block_size != 0) {
    return Bad(absl::StrCat("mean_block_size = ", c.mean_block_size,
                            " must be > 0 and divide chunk_sizes[0] = ", c.chunk_sizes[0]));
  }
  return absl::OkStatus();
}

PruningSpec PruningSpecForLayer(const HipConfig& c, int layer) {
  PruningSpec spec;
  spec.chunk_sizes = c.chunk_sizes;
  spec.keep_tokens = c.stage_keep;
  spec.stride_q = c.stride_q;
  spec.n_window = c.n_window;
  spec.stage1 = c.stage1_representatives;
  spec.mean_block_size = c.mean_block_size;
  spec.later_stages = c.later_stage_representatives;
  int k = c.k;
  spec.positions = c.pruning_positions;
  for (const HipLayerOverride& o : c.layer_overrides) {
    if (std::find(o.layers.begin(), o.layers.end(), layer) != o.layers.end()) {
      k = o.k;
      spec.positions = o.pruning_positions;
    }
  }
  if (!c.extend) spec.positions = PruningPositions::kReal;
  spec.keep_tokens.push_back(k);
  return spec;
}

const char* HipGpuMaskPathName(HipGpuMaskPath path) {
  return path == HipGpuMaskPath::kDecode ? "decode" : "prefill";
}

bool HipGpuMaskImplements(HipGpuMaskPath path, int stage, Stage1Representatives r) {
  (void)path;   // both paths implement every option (docs/HIP_NOTES.md 7, "GPU")
  (void)stage;  // at every stage
  return KnownRepresentatives(r);
}

absl::Status HipConfigRunsOnGpu(const HipConfig& c, HipGpuMaskPath path, const std::string& who) {
  if (!HipGpuMaskImplements(path, 0, c.stage1_representatives)) {
    return NotOnGpu(who, "stage1_representatives", c.stage1_representatives, path);
  }
  for (size_t i = 0; i < c.later_stage_representatives.size(); ++i) {
    const Stage1Representatives r = c.later_stage_representatives[i];
    if (!HipGpuMaskImplements(path, static_cast<int>(i) + 1, r)) {
      return NotOnGpu(who, absl::StrCat("stage_representatives[", i + 1, "]"), r, path);
    }
  }
  return absl::OkStatus();
}

absl::Status PruningSpecRunsOnGpu(const PruningSpec& spec, HipGpuMaskPath path,
                                  const std::string& who) {
  for (int s = 0; s < spec.num_stages(); ++s) {
    const Stage1Representatives r = s == 0 || s - 1 < static_cast<int>(spec.later_stages.size())
                                        ? spec.representatives(s)
                                        : Stage1Representatives::kProbes;
    if (!HipGpuMaskImplements(path, s, r)) {
      return NotOnGpu(who, absl::StrCat("spec stage ", s, " representatives"), r, path);
    }
  }
  return absl::OkStatus();
}

absl::Status PruningSpecRunsOnGpu(const PruningSpec& spec, const std::string& who) {
  return PruningSpecRunsOnGpu(spec, HipGpuMaskPath::kPrefill, who);
}

CandidateRange CandidateRangeFor(const HipConfig& c, int32_t last_pos) {
  CandidateRange r;
  r.begin = c.n_sink;
  r.end = std::max<int32_t>(c.n_sink, last_pos - c.n_window);
  return r;
}

int DecodeRefreshStage(const HipConfig& c, int64_t decode_step) {
  return DecodeRefreshStage(c.mask_refresh_interval, decode_step);
}

int DecodeRefreshStage(const std::vector<int>& interval, int64_t decode_step) {
  for (size_t s = 0; s < interval.size(); ++s) {
    if (decode_step % interval[s] == 0) return static_cast<int>(s);
  }
  return -1;
}

}  // namespace hipserve::kernels
