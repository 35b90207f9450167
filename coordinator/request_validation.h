// Turns a public GenerateRequest into a SequenceRequest, or an INVALID_ARGUMENT status whose
// message names the offending field. Pure function of its inputs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/scheduler.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "hipserve/v1/generate.pb.h"

namespace hipserve::coordinator {

struct RequestLimits {
  int max_context = 0;           // model's (prompt + generated) limit
  int default_max_tokens = 256;  // when sampling.max_tokens is unset
  int max_tokens_limit = 1 << 20;
  int max_prompt_tokens = 1 << 30;
  int max_stop_strings = 16;
  std::string attention = "dense";  // modes this server runs
  // The server's HiP settings (--hip_config; used when attention == "hip"): the decode refresh
  // interval per stage (its size = the stage count), the final keep, the block size (the last
  // chunk size) and the keep of the stage before the last (0: one stage only).
  std::vector<int> hip_mask_refresh_interval = {96, 24, 8};
  int hip_k = 2048;
  int hip_block_size = 8;
  int hip_last_stage_keep = 8192;
};

// The largest hip.k a request may ask for (worker::MaxRequestK): hip_last_stage_keep, or with
// one stage max_context rounded down to the block size (at least one block).
int MaxRequestHipK(const RequestLimits& limits);

// Fills limits' hip_* fields from the server's --hip_config JSON (keys missing or unreadable
// keep the HipConfig defaults, which the limits' defaults equal).
void SetHipLimitsFromJson(const std::string& hip_config_json, RequestLimits* limits);

// Encodes the input (text, token ids or chat) into prompt token ids.
absl::StatusOr<std::vector<int32_t>> PromptTokens(const v1::GenerateRequest& request,
                                                  const Tokenizer& tokenizer);

absl::StatusOr<SequenceRequest> ToSequenceRequest(const v1::GenerateRequest& request,
                                                  const Tokenizer& tokenizer,
                                                  const RequestLimits& limits);

}  // namespace hipserve::coordinator
