#include "worker/model_source.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/builtin_model.h"

namespace hipserve::worker {

absl::StatusOr<LoadedSource> LoadModelSource(const std::string& model, uint64_t seed) {
  LoadedSource src;
  if (model == kBuiltinTiny) {
    BuiltinModelOptions o;
    if (seed != 0) o.seed = seed;
    ASSIGN_OR_RETURN(src.weights, MakeBuiltinModel(o));
    // Byte tokenizer: ids 0..255 are bytes, then <|endoftext|>, <|im_start|>, <|im_end|>.
    // The coordinator rebuilds the table itself (raw bytes are not valid proto strings).
    src.tokenizer.set_model("byte");
    src.tokenizer.set_bos_token_id(-1);
    src.tokenizer.add_eos_token_ids(256);
    src.tokenizer.add_eos_token_ids(258);
    return src;
  }
  if (model.empty()) return absl::InvalidArgumentError("--model is empty");
  return absl::UnimplementedError(absl::StrCat(
      "model '", model, "': loading model files is not wired yet; use ", kBuiltinTiny));
}

}  // namespace hipserve::worker
