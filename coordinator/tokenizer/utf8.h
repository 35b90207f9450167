// Internal to hipserve_tokenizer: small UTF-8 helpers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace hipserve::coordinator {

// Appends the UTF-8 encoding of code point `cp` (must be a valid scalar value).
void AppendUtf8(uint32_t cp, std::string* out);

// Length of the well-formed UTF-8 sequence at the start of `s` (1..4), or 0 if it is
// ill-formed, or -n if `s` is a well-formed but incomplete prefix of n bytes of a sequence
// (it might complete with more bytes). Follows Unicode Table 3-7.
int Utf8SequenceLength(absl::string_view s);

// Length of the maximal subpart of an ill-formed sequence at the start of `s` (>= 1): the
// bytes one U+FFFD replaces (Unicode "substitution of maximal subparts").
size_t Utf8MaximalSubpart(absl::string_view s);

// GPT-2 byte-level alphabet: byte -> code point, and the inverse (-1 for code points that are
// no byte's image).
uint32_t ByteToUnicode(uint8_t b);
int UnicodeToByte(uint32_t cp);

// Appends the well-formed part of `in` to `out`, each ill-formed maximal subpart as U+FFFD,
// and returns how many trailing bytes form an incomplete sequence (left unconsumed).
size_t AppendValidUtf8(absl::string_view in, std::string* out);
bool IsValidUtf8(absl::string_view s);

// Decodes the code point of a well-formed sequence of length `len` at `s`.
uint32_t DecodeUtf8(absl::string_view s, int len);

}  // namespace hipserve::coordinator
