// The declared instantiation set of the decode kernels, in one place: head_dim {64, 128} x
// K/V source x (group bound, keys per step) in {(4, 4), (8, 2)} for dense and
// {(4, 8), (4, 4), (8, 2)} for BSA. The source is the K/V element type of contiguous rows
// (bf16, fp8 e5m2) and, for BSA only, tiered reads (slot table -> bf16 / fp8 bank row or fp8
// cold page; the bank type is a block-uniform runtime value there). In-kernel RoPE is a
// block-uniform runtime option of the BSA kernels, branched on once per block (the key loop is
// compiled with and without it), so a 2-core build compiles 8 dense + 18 BSA decode kernels.
// Anything outside the set is InvalidArgument naming the supported values (decode_attention.cu's
// checks, kernels/cuda/param_checks.h for the dtype). Included only by decode_attention.cu.
#pragma once

#include <type_traits>

#include "kernels/attention_cuda/kv_source.h"

namespace hipserve::kernels::decode_attention_internal {

// Where a decode kernel instance reads K/V from: contiguous bf16 or fp8 e5m2 rows (k / v /
// kv_start), or a TieredKvSource (BSA only).
enum class KvSrc : int { kBf16 = 0, kFp8 = 1, kTiered = 2 };

// Keys per slot step of the instance: wide groups (5..8) always 2; dense 4; BSA 8 or 4
// (`bsa_keys`, already resolved).
inline int KeysPerStep(bool bsa, int group, int bsa_keys) {
  if (group > 4) return 2;
  return bsa ? bsa_keys : 4;
}

// Calls fn.template operator()<HD, MAXG, SRC, KU>() for the instance that serves the shape.
// Requires a validated shape (head_dim 64 / 128, group 1..8, a supported dtype); `ku` from
// KeysPerStep; `tiered` selects KvSrc::kTiered (whatever the bank dtype). kBsa = false never
// instantiates KU = 8 or kTiered.
template <bool kBsa, typename Fn>
auto DispatchDecode(int head_dim, int group, KvDtype dtype, bool tiered, int ku, Fn&& fn) {
  const bool fp8 = dtype == KvDtype::kFp8E5m2;
  auto by_src = [&](auto hd, auto maxg, auto ku_c) {
    constexpr int kHd = decltype(hd)::value, kMaxg = decltype(maxg)::value;
    constexpr int kKu = decltype(ku_c)::value;
    if constexpr (kBsa) {
      if (tiered) return fn.template operator()<kHd, kMaxg, KvSrc::kTiered, kKu>();
    }
    return fp8 ? fn.template operator()<kHd, kMaxg, KvSrc::kFp8, kKu>()
               : fn.template operator()<kHd, kMaxg, KvSrc::kBf16, kKu>();
  };
  auto by_dim = [&](auto maxg, auto ku_c) {
    if (head_dim == 64) return by_src(std::integral_constant<int, 64>{}, maxg, ku_c);
    return by_src(std::integral_constant<int, 128>{}, maxg, ku_c);
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
