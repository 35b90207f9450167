// Test/bench helper: loads the committed reference data in tests/data/tokenizer (written by
// scripts/tokenizer/make_expected.py).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace hipserve::coordinator::testing {

// Path of `name` inside tests/data/tokenizer.
std::string TestDataPath(const std::string& name);
absl::StatusOr<nlohmann::json> LoadJson(const std::string& name);
// SmolLM2-135M-Instruct's tokenizer as worker rank 0 would send it (smollm2_vocab.json).
absl::StatusOr<TokenizerSpec> LoadSmolLM2Spec();

}  // namespace hipserve::coordinator::testing
