#include "coordinator/tokenizer/incremental_decoder.h"

#include "coordinator/tokenizer/utf8.h"

namespace hipserve::coordinator {
namespace {

constexpr absl::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

}  // namespace

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}

std::string IncrementalDecoder::Add(int32_t id) {
  pending_ += tokenizer_.TokenText(id);
  std::string out;
  size_t keep = AppendValidUtf8(pending_, &out);
  pending_.erase(0, pending_.size() - keep);
  return out;
}

std::string IncrementalDecoder::Flush() {
  if (pending_.empty()) {
    return "";
  }
  pending_.clear();
  return std::string(kReplacement);  // an incomplete sequence is one maximal subpart
}

}  // namespace hipserve::coordinator
