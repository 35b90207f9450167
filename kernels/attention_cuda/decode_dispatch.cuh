// The declared instantiation set of the decode kernels, in one place: head_dim {64, 128} x
// KV dtype {bf16, fp8 e5m2} x (group bound, keys per step) in {(4, 4), (8, 2)} for dense and
// {(4, 8), (4, 4), (8, 2)} for BSA. In-kernel RoPE and tiered reads are block-uniform runtime
// options of the BSA kernels, not template parameters, so a 2-core build compiles 20 decode
// kernels. Anything outside the set is InvalidArgument naming
// the supported values. Included only by decode_attention.cu.
#pragma once

#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/attention_cuda/kv_source.h"

namespace hipserve::kernels::decode_attention_internal {

inline absl::Status CheckKvDtype(const char* fn, KvDtype d) {
  switch (d) {
    case KvDtype::kBf16:
    case KvDtype::kFp8E5m2:
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(fn, ": kv_dtype ", static_cast<int>(d),
                                                 " is not supported (supported: bf16, fp8_e5m2)"));
}

// Keys per slot step of the instance: wide groups (5..8) always 2; dense 4; BSA 8 or 4
// (`bsa_keys`, already resolved).
inline int KeysPerStep(bool bsa, int group, int bsa_keys) {
  if (group > 4) return 2;
  return bsa ? bsa_keys : 4;
}

// Calls fn.template operator()<HD, MAXG, FP8, KU>() for the instance that serves the shape.
// Requires a validated shape (head_dim 64 / 128, group 1..8, a supported dtype); `ku` from
// KeysPerStep. kBsa = false never instantiates KU = 8.
template <bool kBsa, typename Fn>
auto DispatchDecode(int head_dim, int group, KvDtype dtype, int ku, Fn&& fn) {
  const bool fp8 = dtype == KvDtype::kFp8E5m2;
  auto by_dim = [&](auto maxg, auto ku_c) {
    constexpr int kMaxg = decltype(maxg)::value, kKu = decltype(ku_c)::value;
    if (head_dim == 64) {
      return fp8 ? fn.template operator()<64, kMaxg, true, kKu>()
                 : fn.template operator()<64, kMaxg, false, kKu>();
    }
    return fp8 ? fn.template operator()<128, kMaxg, true, kKu>()
               : fn.template operator()<128, kMaxg, false, kKu>();
  };
  using I2 = std::integral_constant<int, 2>;
  using I4 = std::integral_constant<int, 4>;
  using I8 = std::integral_constant<int, 8>;
  if (group > 4) return by_dim(I8{}, I2{});
  if constexpr (kBsa) {
    if (ku == 8) return by_dim(I4{}, I8{});
  }
  return by_dim(I4{}, I4{});
}

}  // namespace hipserve::kernels::decode_attention_internal
