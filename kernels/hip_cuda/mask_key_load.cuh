// Device side of "where the HiP mask score kernels read their probe keys" (decode and prefill):
// contiguous bf16 keys, contiguous fp8 e5m2 keys, or a TieredKvSource (mask cache rows through
// the slot table, absent tokens straight from the fp8 cold pages in mapped host memory). The
// addressing and the fp8 decode are kernels/attention_cuda/kv_access.cuh's, the same the BSA
// decode kernel uses; this file only adds the packing into the score kernels' register layout.
//
// Exactness: every e5m2 value is a bf16 value (5-bit exponent, 2-bit mantissa), so a decoded
// fp8 key is repacked into bf16 pairs without rounding. The score kernels then see exactly the
// values Bf16ToFloat(kvstore::Fp8E5m2ToBf16(code)) that a CPU reference run on the decoded keys
// sees, and the kept lists stay bit-identical to EstimateMaskRef's.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/attention_cuda/kv_access.cuh"
#include "kernels/attention_cuda/kv_source.h"
#include "kernels/cuda/bf16_pack.cuh"

namespace hipserve::kernels::hip_mask_internal {

enum KeySource : int { kKeysBf16 = 0, kKeysFp8 = 1, kKeysTiered = 2 };

// Probe-key source of a score kernel.
struct KeyArgs {
  // Contiguous keys (source kKeysBf16 / kKeysFp8): [rows, num_kv_heads, hd] elements, device.
  const uint8_t* k;
  int source;     // KeySource
  bool bank_fp8;  // kKeysTiered: bank rows are fp8 e5m2 (else bf16); cold rows are always fp8
  TieredKvSource tiered;  // kKeysTiered only; bank_v is never read
};

// Builds the source from the public params' fields (host side). IsTiered(tiered) selects the
// tiered source.
inline KeyArgs MakeKeyArgs(KvDtype dtype, const void* k, const TieredKvSource& tiered) {
  KeyArgs ka{};
  const bool fp8 = dtype == KvDtype::kFp8E5m2;
  ka.k = static_cast<const uint8_t*>(k);
  ka.bank_fp8 = fp8;
  ka.tiered = tiered;
  // kv_access::TieredRow also forms the (unused) V address; keep it a valid pointer.
  if (ka.tiered.bank_v == nullptr) ka.tiered.bank_v = ka.tiered.bank_k;
  ka.source = IsTiered(tiered) ? kKeysTiered : (fp8 ? kKeysFp8 : kKeysBf16);
  return ka;
}

// The tiered table rows of (batch entry b, KV head h) (kv_access::TieredListRows), or nulls for
// contiguous keys. Computed once per thread block.
__device__ __forceinline__ kv_access::TieredRows ProbeRows(const KeyArgs& ka, int b,
                                                           int num_kv_heads, int h) {
  if (ka.source != kKeysTiered) return {nullptr, nullptr};
  return kv_access::TieredListRows(ka.tiered, b, num_kv_heads, h);
}

// Loads the probe key of token `t` as packed bf16 pairs: element 2i in the low half of kw[i].
//   contiguous: element row `key_row` (= kv row * num_kv_heads + KV head) of ka.k;
//   tiered:     token t of the slot / page table rows `rows` (ProbeRows).
// Device rows use the read-only path, cold rows plain 8-byte loads (the page is only 8-byte
// aligned). In tiered mode lanes of a warp may take different branches (hit / miss).
template <int HD>
__device__ __forceinline__ void LoadProbeKey(const KeyArgs& ka, const kv_access::TieredRows& rows,
                                             int64_t key_row, int32_t t, uint32_t (&kw)[HD / 2]) {
  const uint8_t* p;
  bool fp8 = ka.source == kKeysFp8;
  bool host = false;
  if (ka.source == kKeysTiered) {
    const kv_access::RowRef r =
        kv_access::TieredRow<HD>(ka.tiered, rows.slots, rows.pages, t, 0, ka.bank_fp8);
    p = r.k;
    fp8 = r.fp8;
    host = r.host;
  } else {
    p = ka.k + key_row * HD * (fp8 ? 1 : 2);
  }
  // Raw words first, then an in-place expansion for fp8 rows, so that the loaded row and its
  // bf16 form share the kw registers. fp8 rows (bank, contiguous or cold page) all use the
  // same plain 8-byte load (the cold page is only 8-byte aligned), so a warp whose lanes mix
  // hits and misses runs one load instruction; bf16 rows (device memory only) use read-only
  // 16-byte loads. (Choosing the load per lane inside one loop, as kv_access::LoadRef8 does,
  // keeps both candidates live: 255 registers and spills in the head_dim 128 kernel.)
  (void)host;
  if (fp8) {
#pragma unroll
    for (int v = 0; v < HD / 8; ++v) {
      const uint4 u = kv_access::LoadHostFp8x8(p + 8 * v);
      kw[2 * v] = u.x;
      kw[2 * v + 1] = u.y;
    }
  } else {
    const uint4* p4 = reinterpret_cast<const uint4*>(p);
#pragma unroll
    for (int v = 0; v < HD / 8; ++v) {
      const uint4 u = __ldg(p4 + v);
      kw[4 * v] = u.x;
      kw[4 * v + 1] = u.y;
      kw[4 * v + 2] = u.z;
      kw[4 * v + 3] = u.w;
    }
  }
  if (fp8) {  // raw word j (codes 4j..4j+3) -> kw[2j], kw[2j + 1]; descending j is in place
#pragma unroll
    for (int j = HD / 4 - 1; j >= 0; --j) {
      float f[8];
      kv_access::Fp8x8ToFloat(make_uint4(kw[j], 0u, 0u, 0u), f);
      kw[2 * j] = cuda_util::PackExactBf16x2(f[0], f[1]);
      kw[2 * j + 1] = cuda_util::PackExactBf16x2(f[2], f[3]);
    }
  }
}

// This lane's elements [elem, elem + 8) of token `t`'s key (`key_row` and `rows` as in
// LoadProbeKey), decoded exactly to fp32: bf16 as is, fp8 e5m2 through fp16 (the values
// LoadProbeKey packs). The summary scores (page bounds, block means) read keys this way: a team
// of head_dim / 8 lanes covers one row. Device rows use the read-only path, cold rows a plain
// 8-byte load; in tiered mode the lanes of a team read one token, so they take one branch.
template <int HD>
__device__ __forceinline__ void LoadKeyOctet(const KeyArgs& ka, const kv_access::TieredRows& rows,
                                             int64_t key_row, int32_t t, int elem, float (&f)[8]) {
  const uint8_t* p;
  bool fp8 = ka.source == kKeysFp8;
  bool host = false;
  if (ka.source == kKeysTiered) {
    const kv_access::RowRef r =
        kv_access::TieredRow<HD>(ka.tiered, rows.slots, rows.pages, t, elem, ka.bank_fp8);
    p = r.k;
    fp8 = r.fp8;
    host = r.host;
  } else {
    p = ka.k + (key_row * HD + elem) * (fp8 ? 1 : 2);
  }
  kv_access::ToFloat8(kv_access::LoadRef8(p, fp8, host), fp8, f);
}

}  // namespace hipserve::kernels::hip_mask_internal
