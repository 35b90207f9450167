// Streaming detokenizer for generated tokens.
#pragma once

#include <cstdint>
#include <string>

#include "coordinator/tokenizer/tokenizer.h"

namespace hipserve::coordinator {

// Turns token ids, fed one at a time, into complete UTF-8 text: a character split across
// tokens is held back until its last byte arrives; ill-formed bytes become U+FFFD (one per
// maximal subpart, as Unicode recommends). Holds a reference to the tokenizer, which must
// outlive it, and at most 3 pending bytes. Not thread-safe: one decoder per stream.
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& tokenizer);

  // Text that became complete with `id`; may be empty. Ids out of range add nothing.
  std::string Add(int32_t id);
  // The held-back bytes of an unfinished character, as U+FFFD; "" if none. The decoder can be
  // reused afterwards.
  std::string Flush();

 private:
  const Tokenizer& tokenizer_;
  std::string pending_;  // an incomplete prefix of a UTF-8 sequence (<= 3 bytes)
};

}  // namespace hipserve::coordinator
