#include "coordinator/tokenizer/test_data.h"

#include <fstream>

#include "absl/strings/str_cat.h"

namespace hipserve::coordinator::testing {

std::string TestDataPath(const std::string& name) {
  return absl::StrCat(HIPSERVE_TOKENIZER_TESTDATA, "/", name);
}

absl::StatusOr<nlohmann::json> LoadJson(const std::string& name) {
  const std::string path = TestDataPath(name);
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path));
  }
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::DataLossError(absl::StrCat("bad JSON in ", path));
  }
  return j;
}

absl::StatusOr<TokenizerSpec> LoadSmolLM2Spec() {
  auto j = LoadJson("smollm2_vocab.json");
  if (!j.ok()) {
    return j.status();
  }
  TokenizerSpec spec;
  spec.model = (*j)["model"].get<std::string>();
  spec.pre = (*j)["pre"].get<std::string>();
  spec.tokens = (*j)["tokens"].get<std::vector<std::string>>();
  spec.merges = (*j)["merges"].get<std::vector<std::string>>();
  spec.token_types = (*j)["token_types"].get<std::vector<int32_t>>();
  spec.bos_token_id = (*j)["bos_token_id"].get<int32_t>();
  spec.eos_token_ids = (*j)["eos_token_ids"].get<std::vector<int32_t>>();
  spec.add_bos = (*j)["add_bos"].get<bool>();
  spec.chat_template = (*j)["chat_template"].get<std::string>();
  return spec;
}

}  // namespace hipserve::coordinator::testing
