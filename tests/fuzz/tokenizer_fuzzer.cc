// libFuzzer target: the tokenizers (byte, byte-level BPE, SentencePiece-style BPE). The first
// byte picks the tokenizer and the mode; the rest is either text to encode or token ids to
// decode. Checked: encoded ids are in the vocabulary; the byte tokenizer and printable ASCII
// round-trip; streaming decode (IncrementalDecoder) equals the tokens' texts with ill-formed
// UTF-8 replaced.
// Seeds: corpus/tokenizer.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common/logging.h"
#include "coordinator/tokenizer/incremental_decoder.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_tokenizers.h"

namespace {

using hipserve::coordinator::IncrementalDecoder;
using hipserve::coordinator::SanitizeUtf8;
using hipserve::coordinator::Tokenizer;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "tokenizer_fuzzer: %s\n", what);
  __builtin_trap();
}

bool PrintableAscii(const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

// Streaming decode = the tokens' texts, ill-formed UTF-8 replaced; Decode = the same bytes
// except that "llama" drops the dummy-prefix space of the first piece.
void CheckStreaming(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  IncrementalDecoder dec(tok);
  std::string streamed, pieces;
  for (int32_t id : ids) {
    streamed += dec.Add(id);
    pieces += tok.TokenText(id);
  }
  streamed += dec.Flush();
  if (streamed != SanitizeUtf8(pieces)) Fail("streamed decode != SanitizeUtf8(token texts)");
  if (tok.spec().model != "llama" && tok.Decode(ids) != pieces) Fail("Decode != token texts");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  hipserve::common::SetMinLogLevel(hipserve::common::LogLevel::kFatal);
  (void)hipserve::fuzz::GetTokenizers();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const Tokenizer& tok = hipserve::fuzz::GetTokenizers().Pick(mode & 3);
  const bool add_special = mode & 4;
  const bool parse_special = mode & 8;
  const bool decode_mode = mode & 16;
  ++data;
  --size;
  if (!decode_mode) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    const std::vector<int32_t> ids = tok.Encode(text, add_special, parse_special);
    if (!tok.Validate(ids).ok()) Fail("Encode produced an id outside the vocabulary");
    const std::string back = tok.Decode(ids);
    if (!add_special && !parse_special) {
      if (tok.spec().model == "byte" && back != text) Fail("byte round trip");
      if (tok.spec().model != "byte" && PrintableAscii(text) && back != text) {
        Fail("round trip of printable ASCII");
      }
    }
    CheckStreaming(tok, ids);
    return 0;
  }
  // Ids: 2 bytes each, spread a little past both ends of the vocabulary.
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 1 < size; i += 2) {
    uint16_t v;
    std::memcpy(&v, data + i, 2);
    ids.push_back(static_cast<int32_t>(v % (tok.vocab_size() + 8)) - 4);
  }
  bool in_range = true;
  for (int32_t id : ids) in_range = in_range && id >= 0 && id < tok.vocab_size();
  if (tok.Validate(ids).ok() != in_range) Fail("Validate disagrees with the vocabulary range");
  (void)tok.Decode(ids);
  for (int32_t id : ids) {
    (void)tok.TokenText(id);
    if (id >= 0 && id < tok.vocab_size()) (void)tok.RawToken(id);
  }
  CheckStreaming(tok, ids);
  return 0;
}
