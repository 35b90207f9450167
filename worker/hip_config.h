// HiP configuration from JSON (ConfigureRequest.hip_config_json, `--hip_config`).
//
// Keys (all optional; missing = HipConfig default; see kernels/hip/hip_params.h):
//   n_sink, n_window, block_q, k                          integers
//   chunk_sizes, stage_keep, stride_q, mask_refresh_interval  integer lists
//   extend                                                 bool
//   pruning_positions                                      "relative" | "chunk_indexed" | "real"
//   stage1_representatives          "probes" (default) | "page_bound" | "block_means" (HIP.md 2.1;
//                                   the two new ones are CPU-reference only so far)
//   mean_block_size                 integer: keys per block mean (divides chunk_sizes[0])
//   layer_overrides   list of {"layers": [int...], "k": int, "pruning_positions": str};
//                     given = replaces the default list ([] = no overrides); inside an entry
//                     a missing k / pruning_positions takes the HipLayerOverride default.
// Unknown keys, wrong types and invalid values are InvalidArgument naming the key.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "kernels/hip/hip_params.h"

namespace hipserve::worker {

// Empty or all-whitespace text = defaults. The result passes ValidateHipConfig(config).
absl::StatusOr<kernels::HipConfig> ParseHipConfig(const std::string& json);

// Compact JSON with every key; ParseHipConfig(HipConfigToJson(c)) == c.
std::string HipConfigToJson(const kernels::HipConfig& config);

}  // namespace hipserve::worker
