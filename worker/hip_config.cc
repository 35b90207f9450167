#include "worker/hip_config.h"

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace hipserve::worker {
namespace {

using kernels::HipConfig;
using kernels::HipLayerOverride;
using kernels::PruningPositions;
using kernels::Stage1Representatives;
using nlohmann::json;

absl::Status Bad(const std::string& key, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("hip config: ", key, ": ", what));
}

absl::StatusOr<int> GetInt(const json& v, const std::string& key) {
  if (!v.is_number_integer()) return Bad(key, absl::StrCat("expected an integer, got ", v.dump()));
  const int64_t x = v.get<int64_t>();
  if (x < std::numeric_limits<int>::min() || x > std::numeric_limits<int>::max()) {
    return Bad(key, absl::StrCat("value ", x, " out of range"));
  }
  return static_cast<int>(x);
}

absl::StatusOr<std::vector<int>> GetIntList(const json& v, const std::string& key) {
  if (!v.is_array()) return Bad(key, absl::StrCat("expected a list of integers, got ", v.dump()));
  std::vector<int> out;
  for (size_t i = 0; i < v.size(); ++i) {
    ASSIGN_OR_RETURN(int x, GetInt(v[i], absl::StrCat(key, "[", i, "]")));
    out.push_back(x);
  }
  return out;
}

absl::StatusOr<PruningPositions> GetPositions(const json& v, const std::string& key) {
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "relative") return PruningPositions::kRelative;
    if (s == "chunk_indexed") return PruningPositions::kChunkIndexed;
    if (s == "real") return PruningPositions::kReal;
  }
  return Bad(key,
             absl::StrCat("expected \"relative\", \"chunk_indexed\" or \"real\", got ", v.dump()));
}

absl::StatusOr<Stage1Representatives> GetRepresentatives(const json& v, const std::string& key) {
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "probes") return Stage1Representatives::kProbes;
    if (s == "page_bound") return Stage1Representatives::kPageBound;
    if (s == "block_means") return Stage1Representatives::kBlockMeans;
    if (s == "exact") return Stage1Representatives::kExact;
  }
  return Bad(key,
             absl::StrCat("expected \"probes\", \"page_bound\", \"block_means\" or \"exact\", got ",
                          v.dump()));
}

// "stage_representatives": one name for every stage, or a list with one name per stage.
absl::StatusOr<std::vector<Stage1Representatives>> GetStageRepresentatives(const json& v,
                                                                           const std::string& key,
                                                                           int stages) {
  std::vector<Stage1Representatives> out;
  if (v.is_string()) {
    ASSIGN_OR_RETURN(Stage1Representatives r, GetRepresentatives(v, key));
    out.assign(stages, r);
    return out;
  }
  if (!v.is_array()) {
    return Bad(key, absl::StrCat("expected a name or a list of names, got ", v.dump()));
  }
  for (size_t i = 0; i < v.size(); ++i) {
    ASSIGN_OR_RETURN(Stage1Representatives r,
                     GetRepresentatives(v[i], absl::StrCat(key, "[", i, "]")));
    out.push_back(r);
  }
  if (static_cast<int>(out.size()) != stages) {
    return Bad(key, absl::StrCat("expected one entry per stage (", stages, "), got ", out.size()));
  }
  return out;
}

absl::StatusOr<HipLayerOverride> GetOverride(const json& v, const std::string& key) {
  if (!v.is_object()) return Bad(key, absl::StrCat("expected an object, got ", v.dump()));
  HipLayerOverride o;
  bool has_layers = false;
  for (const auto& [name, value] : v.items()) {
    const std::string sub = absl::StrCat(key, ".", name);
    if (name == "layers") {
      ASSIGN_OR_RETURN(o.layers, GetIntList(value, sub));
      has_layers = true;
    } else if (name == "k") {
      ASSIGN_OR_RETURN(o.k, GetInt(value, sub));
    } else if (name == "pruning_positions") {
      ASSIGN_OR_RETURN(o.pruning_positions, GetPositions(value, sub));
    } else {
      return Bad(sub, "unknown key (known: layers, k, pruning_positions)");
    }
  }
  if (!has_layers) return Bad(key, "missing \"layers\"");
  return o;
}

}  // namespace

absl::StatusOr<HipConfig> ParseHipConfig(const std::string& text) {
  HipConfig c;
  if (absl::StripAsciiWhitespace(text).empty()) return c;
  json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return absl::InvalidArgumentError("hip config: not valid JSON");
  if (!root.is_object()) {
    return absl::InvalidArgumentError("hip config: expected a JSON object at the top level");
  }
  bool stage1_given = false;
  const json* stage_reps = nullptr;
  for (const auto& [key, value] : root.items()) {
    if (key == "n_sink") {
      ASSIGN_OR_RETURN(c.n_sink, GetInt(value, key));
    } else if (key == "n_window") {
      ASSIGN_OR_RETURN(c.n_window, GetInt(value, key));
    } else if (key == "block_q") {
      ASSIGN_OR_RETURN(c.block_q, GetInt(value, key));
    } else if (key == "extend_min_tokens") {
      ASSIGN_OR_RETURN(c.extend_min_tokens, GetInt(value, key));
    } else if (key == "tail_queries") {
      ASSIGN_OR_RETURN(c.tail_queries, GetInt(value, key));
    } else if (key == "k") {
      ASSIGN_OR_RETURN(c.k, GetInt(value, key));
    } else if (key == "chunk_sizes") {
      ASSIGN_OR_RETURN(c.chunk_sizes, GetIntList(value, key));
    } else if (key == "stage_keep") {
      ASSIGN_OR_RETURN(c.stage_keep, GetIntList(value, key));
    } else if (key == "stride_q") {
      ASSIGN_OR_RETURN(c.stride_q, GetIntList(value, key));
    } else if (key == "mask_refresh_interval") {
      ASSIGN_OR_RETURN(c.mask_refresh_interval, GetIntList(value, key));
    } else if (key == "extend") {
      if (!value.is_boolean()) return Bad(key, absl::StrCat("expected a bool, got ", value.dump()));
      c.extend = value.get<bool>();
    } else if (key == "pruning_positions") {
      ASSIGN_OR_RETURN(c.pruning_positions, GetPositions(value, key));
    } else if (key == "stage1_representatives") {
      ASSIGN_OR_RETURN(c.stage1_representatives, GetRepresentatives(value, key));
      stage1_given = true;
    } else if (key == "stage_representatives") {
      stage_reps = &value;  // needs chunk_sizes (the stage count): parsed after the loop
    } else if (key == "mean_block_size") {
      ASSIGN_OR_RETURN(c.mean_block_size, GetInt(value, key));
    } else if (key == "layer_overrides") {
      if (!value.is_array()) return Bad(key, absl::StrCat("expected a list, got ", value.dump()));
      c.layer_overrides.clear();
      for (size_t i = 0; i < value.size(); ++i) {
        ASSIGN_OR_RETURN(HipLayerOverride o, GetOverride(value[i], absl::StrCat(key, "[", i, "]")));
        c.layer_overrides.push_back(std::move(o));
      }
    } else {
      return Bad(key,
                 "unknown key (known: n_sink, n_window, block_q, tail_queries, chunk_sizes, "
                 "stage_keep, k, "
                 "stride_q, mask_refresh_interval, extend, extend_min_tokens, pruning_positions, "
                 "stage1_representatives, stage_representatives, mean_block_size, "
                 "layer_overrides)");
    }
  }
  if (stage_reps != nullptr) {
    const std::string key = "stage_representatives";
    if (c.chunk_sizes.empty()) return Bad(key, "chunk_sizes must not be empty");
    ASSIGN_OR_RETURN(std::vector<Stage1Representatives> reps,
                     GetStageRepresentatives(*stage_reps, key, c.num_stages()));
    if (stage1_given && reps[0] != c.stage1_representatives) {
      return Bad(key, absl::StrCat("stage 1 is \"", kernels::Stage1RepresentativesName(reps[0]),
                                   "\" but stage1_representatives is \"",
                                   kernels::Stage1RepresentativesName(c.stage1_representatives),
                                   "\" (give one of the two, or the same)"));
    }
    c.stage1_representatives = reps[0];
    c.later_stage_representatives.assign(reps.begin() + 1, reps.end());
  }
  RETURN_IF_ERROR(kernels::ValidateHipConfig(c));
  return c;
}

std::string HipConfigToJson(const HipConfig& c) {
  json j;
  j["n_sink"] = c.n_sink;
  j["n_window"] = c.n_window;
  j["block_q"] = c.block_q;
  j["tail_queries"] = c.tail_queries;
  j["chunk_sizes"] = c.chunk_sizes;
  j["stage_keep"] = c.stage_keep;
  j["k"] = c.k;
  j["stride_q"] = c.stride_q;
  j["mask_refresh_interval"] = c.mask_refresh_interval;
  j["extend"] = c.extend;
  j["extend_min_tokens"] = c.extend_min_tokens;
  j["pruning_positions"] = kernels::PruningPositionsName(c.pruning_positions);
  j["stage1_representatives"] = kernels::Stage1RepresentativesName(c.stage1_representatives);
  j["mean_block_size"] = c.mean_block_size;
  if (!c.later_stage_representatives.empty()) {  // absent = probes after stage 1 (the default)
    json reps = json::array();
    reps.push_back(kernels::Stage1RepresentativesName(c.stage1_representatives));
    for (Stage1Representatives r : c.later_stage_representatives) {
      reps.push_back(kernels::Stage1RepresentativesName(r));
    }
    j["stage_representatives"] = reps;
  }
  json overrides = json::array();
  for (const HipLayerOverride& o : c.layer_overrides) {
    overrides.push_back(
        {{"layers", o.layers},
         {"k", o.k},
         {"pruning_positions", kernels::PruningPositionsName(o.pruning_positions)}});
  }
  j["layer_overrides"] = overrides;
  return j.dump();
}

}  // namespace hipserve::worker
