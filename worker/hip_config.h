// HiP configuration from JSON (ConfigureRequest.hip_config_json, `--hip_config`).
//
// Keys (all optional; missing = HipConfig default; see kernels/hip/hip_params.h):
//   n_sink, n_window, block_q, k                          integers
//   chunk_sizes, stage_keep, stride_q, mask_refresh_interval  integer lists
//   extend                                                 bool
//   pruning_positions                                      "relative" | "chunk_indexed" | "real"
//   stage1_representatives          "probes" (default) | "page_bound" | "block_means" | "exact"
//                                   (HIP.md 2.1; CPU reference, GPU decode and prefill masks)
//   stage_representatives           the same names, for every pruning stage:
//                                   one name (all stages) or a list with one per stage, e.g.
//                                   ["page_bound", "page_bound", "exact"]; entry 0 is stage 1
//                                   (must agree with stage1_representatives if both are given);
//                                   absent = stage1_representatives, then probes (the default;
//                                   docs/HIP_NOTES.md 7). CPU and CUDA backends.
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
