// Host side of the dense prefill attention kernel: validation, dispatch over head_dim, launch.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/attention_cuda/prefill_attention.h"
#include "kernels/attention_cuda/prefill_attention_kernel.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/param_checks.h"

namespace hipserve::kernels {
namespace {

using internal::Aligned16;
using internal::CheckKvDtype;
using internal::Invalid;

namespace pi = prefill_attention_internal;
static_assert(pi::kBM == kPrefillBlockM && pi::kBN == kPrefillBlockN, "tile sizes out of sync");

constexpr char kFn[] = "DensePrefillAttentionGpu";

absl::Status Validate(const DensePrefillAttentionGpuParams& p) {
  if (p.head_dim != 64 && p.head_dim != 128) {
    return Invalid(kFn,
                   absl::StrCat("head_dim ", p.head_dim, " is not supported (supported: 64, 128)"));
  }
  if (absl::Status s = CheckKvDtype(kFn, p.kv_dtype); !s.ok()) return s;
  if (p.num_q <= 0) return Invalid(kFn, absl::StrCat("num_q must be > 0, got ", p.num_q));
  if (p.q_offset < 0) return Invalid(kFn, absl::StrCat("q_offset must be >= 0, got ", p.q_offset));
  if (int64_t{p.q_offset} + p.num_q > (int64_t{1} << 31) - 1) {
    return Invalid(kFn, "q_offset + num_q must fit in int32");
  }
  if (p.num_heads <= 0 || p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads != 0) {
    return Invalid(
        kFn, absl::StrCat("num_heads (", p.num_heads,
                          ") must be a positive multiple of num_kv_heads (", p.num_kv_heads, ")"));
  }
  if (p.num_heads > 65535) return Invalid(kFn, "num_heads must be <= 65535");
  if (!(p.scale > 0.f) || !std::isfinite(p.scale)) {
    return Invalid(kFn, absl::StrCat("scale must be finite and > 0, got ", p.scale));
  }
  if (p.q == nullptr || p.k == nullptr || p.v == nullptr || p.out == nullptr) {
    return Invalid(kFn, "q, k, v and out must be non-null");
  }
  if (!Aligned16(p.q) || !Aligned16(p.k) || !Aligned16(p.v) || !Aligned16(p.out)) {
    return Invalid(kFn, "q, k, v and out must be 16-byte aligned");
  }
  return absl::OkStatus();
}

// The instantiation set: head_dim {64, 128} x K/V {bf16, fp8 e5m2}.
template <int HD, bool FP8>
absl::Status Launch(const pi::KernelArgs& a, int num_heads, cudaStream_t stream) {
  constexpr int kSmem = pi::SmemBytes<HD>();
  static bool configured = false;  // benign race: every thread sets the same attribute
  if (!configured) {
    CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(pi::PrefillKernel<HD, FP8>,
                                              cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
    configured = true;
  }
  const dim3 grid(num_heads, a.num_q_tiles);
  pi::PrefillKernel<HD, FP8><<<grid, pi::kThreads, kSmem, stream>>>(a);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace

absl::Status DensePrefillAttentionGpu(const DensePrefillAttentionGpuParams& p, void* stream) {
  if (absl::Status s = Validate(p); !s.ok()) return s;
  pi::KernelArgs a{};
  a.q = static_cast<const uint16_t*>(p.q);
  a.k = p.k;
  a.v = p.v;
  a.out = static_cast<uint16_t*>(p.out);
  a.num_q = p.num_q;
  a.q_offset = p.q_offset;
  a.num_kv = p.q_offset + p.num_q;
  a.num_heads = p.num_heads;
  a.group = p.num_heads / p.num_kv_heads;
  a.q_row = p.num_heads * p.head_dim;
  a.kv_row = p.num_kv_heads * p.head_dim;
  a.num_q_tiles = (p.num_q + pi::kBM - 1) / pi::kBM;
  a.scale_log2 = p.scale * 1.4426950408889634f;
  if (a.num_q_tiles > 65535) {
    return Invalid(kFn, absl::StrCat("num_q ", p.num_q, " needs more than 65535 query tiles"));
  }
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const bool fp8 = p.kv_dtype == KvDtype::kFp8E5m2;
  if (p.head_dim == 64)
    return fp8 ? Launch<64, true>(a, p.num_heads, s) : Launch<64, false>(a, p.num_heads, s);
  return fp8 ? Launch<128, true>(a, p.num_heads, s) : Launch<128, false>(a, p.num_heads, s);
}

}  // namespace hipserve::kernels
