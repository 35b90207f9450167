// Test-only helpers: deterministic bf16 KV data and expected read-back values.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "kvstore/fp8_e5m2.h"

namespace hipserve::kvstore::testing {

// [n][heads][head_dim] bf16 bits, finite, fixed seed.
inline std::vector<uint16_t> RandomBf16(int64_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<uint16_t> out(count);
  for (auto& x : out) x = FloatToBf16(dist(rng));
  return out;
}

inline uint16_t Fp8Round(uint16_t b) { return Fp8E5m2ToBf16(Bf16ToFp8E5m2(b)); }

// Rows [begin, begin+n) of head `h` from a [tokens][heads][hd] buffer, optionally fp8-rounded.
inline std::vector<uint16_t> Slice(const std::vector<uint16_t>& all, int heads, int hd, int h,
                                   int64_t begin, int64_t n, bool fp8) {
  std::vector<uint16_t> out(n * hd);
  for (int64_t t = 0; t < n; ++t) {
    for (int i = 0; i < hd; ++i) {
      const uint16_t x = all[((begin + t) * heads + h) * hd + i];
      out[t * hd + i] = fp8 ? Fp8Round(x) : x;
    }
  }
  return out;
}

}  // namespace hipserve::kvstore::testing
