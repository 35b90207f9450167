// ggml tensor types as stored in GGUF files: sizes, names, and dequantisation to fp32.
//
// Block layouts follow ggml (ggml-common.h); all multi-byte fields are little-endian.
// Stateless functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hipserve::worker::loader {

// Numeric values are ggml's `enum ggml_type` and appear verbatim in GGUF tensor infos.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
};

struct GgmlTypeInfo {
  const char* name;    // "Q4_1"
  int64_t block_size;  // elements per block (1 for plain types)
  int64_t type_size;   // bytes per block
  bool dequantizable;  // DequantizeGgml supports it
};

// Info for a known type id, or nullptr for an id this build does not know.
const GgmlTypeInfo* FindGgmlType(uint32_t type_id);
// "Q4_1", or "type#77" for unknown ids.
std::string GgmlTypeName(uint32_t type_id);
// Comma-separated names of the types DequantizeGgml supports.
std::string SupportedGgmlTypes();

// Bytes taken by `n` elements of `type` stored contiguously. InvalidArgument when n is
// negative, not a multiple of the block size, or the byte count would overflow int64.
absl::StatusOr<int64_t> GgmlBytes(uint32_t type_id, int64_t n);

// Decodes `n` elements (a multiple of the block size) of `type` from `src` (which must hold
// exactly GgmlBytes(type, n) bytes: `src_bytes`) into dst[0..n). Unimplemented for types
// without a decoder, InvalidArgument on a size mismatch. Never reads outside src.
absl::Status DequantizeGgml(uint32_t type_id, const uint8_t* src, size_t src_bytes, int64_t n,
                            float* dst);

// IEEE half / bfloat16 -> float (exact; subnormals, inf and NaN preserved).
float HalfToFloat(uint16_t h);
float Bf16ToFloat(uint16_t b);

}  // namespace hipserve::worker::loader
