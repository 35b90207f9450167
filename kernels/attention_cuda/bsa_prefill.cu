// Host side of the HiP BSA prefill attention: validation, dispatch over head_dim, launch.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/attention_cuda/bsa_prefill.h"
#include "kernels/attention_cuda/bsa_prefill_kernel.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/param_checks.h"

namespace hipserve::kernels {
namespace {

using internal::Aligned16;
using internal::CheckKvDtype;
using internal::Invalid;

namespace bi = bsa_prefill_internal;
static_assert(bi::kBM == kBsaPrefillBlockQ, "query tile must be one plan row");

constexpr char kFn[] = "BsaPrefillAttentionGpu";
constexpr int kMaxListInts = 16384;  // sink + selected keys per plan row (64 KiB of smem)

// k / v, or the tiered source (which replaces them).
absl::Status ValidateKvPointers(const BsaPrefillGpuParams& p) {
  const TieredKvSource& t = p.tiered;
  if (t.entries != nullptr) return Invalid(kFn, "tiered.entries (per-entry tables) is decode-only");
  if (t.slot_table == nullptr) {
    if (p.k == nullptr || p.v == nullptr) return Invalid(kFn, "k and v must be non-null");
    if (!Aligned16(p.k) || !Aligned16(p.v)) return Invalid(kFn, "k and v must be 16-byte aligned");
    return absl::OkStatus();
  }
  if (absl::Status s = internal::CheckTieredKvPointers(kFn, t); !s.ok()) return s;
  const int64_t num_kv = int64_t{p.q_offset} + p.num_q;
  const int64_t pages = (num_kv + kKvPageTokens - 1) / kKvPageTokens;
  if (t.slot_stride < num_kv || t.page_stride < pages) {
    return Invalid(
        kFn, absl::StrCat("tiered: slot_stride ", t.slot_stride, " / page_stride ", t.page_stride,
                          " must be >= num_kv ", num_kv, " / ", pages, " pages"));
  }
  return absl::OkStatus();
}

absl::Status Validate(const BsaPrefillGpuParams& p) {
  if (p.head_dim != 64 && p.head_dim != 128) {
    return Invalid(kFn,
                   absl::StrCat("head_dim ", p.head_dim, " is not supported (supported: 64, 128)"));
  }
  if (absl::Status s = CheckKvDtype(kFn, p.kv_dtype); !s.ok()) return s;
  if (p.num_q <= 0 || p.q_offset < 0 || int64_t{p.q_offset} + p.num_q >= (int64_t{1} << 30)) {
    return Invalid(kFn, absl::StrCat("need num_q > 0, q_offset >= 0, q_offset + num_q < 2^30; got ",
                                     p.num_q, ", ", p.q_offset));
  }
  if (p.num_heads <= 0 || p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads != 0 ||
      p.num_heads > 65535) {
    return Invalid(kFn, absl::StrCat("num_heads (", p.num_heads,
                                     ") must be a positive multiple of num_kv_heads (",
                                     p.num_kv_heads, "), at most 65535"));
  }
  const int first_block = p.q_offset / kBsaPrefillBlockQ;
  const int rows = (p.q_offset + p.num_q - 1) / kBsaPrefillBlockQ - first_block + 1;
  if (p.first_block != first_block || p.num_rows != rows) {
    return Invalid(kFn, absl::StrCat("plan geometry (first_block ", p.first_block, ", num_rows ",
                                     p.num_rows, ") does not match 64-query blocks of the chunk (",
                                     first_block, ", ", rows, ")"));
  }
  if (rows > 65535) return Invalid(kFn, "more than 65535 query blocks in one call");
  if (p.max_blocks < 0 || p.block_size <= 0 || p.n_sink < 0 || p.n_window < 0) {
    return Invalid(kFn, "need max_blocks >= 0, block_size > 0, n_sink >= 0, n_window >= 0");
  }
  if (int64_t{p.n_sink} + int64_t{p.max_blocks} * p.block_size > kMaxListInts) {
    return Invalid(kFn, absl::StrCat("n_sink + max_blocks * block_size must be <= ", kMaxListInts));
  }
  if (p.max_blocks > 0 && (p.block_starts == nullptr || p.block_count == nullptr)) {
    return Invalid(kFn, "block_starts / block_count are null");
  }
  if (!(p.scale > 0.f) || !std::isfinite(p.scale)) {
    return Invalid(kFn, absl::StrCat("scale must be finite and > 0, got ", p.scale));
  }
  if (absl::Status s = ValidateKvPointers(p); !s.ok()) return s;
  if (p.q == nullptr || p.out == nullptr || p.rope == nullptr) {
    return Invalid(kFn, "q, out and rope must be non-null");
  }
  if (!Aligned16(p.q) || !Aligned16(p.out) || !Aligned16(p.rope)) {
    return Invalid(kFn, "q, out and rope must be 16-byte aligned");
  }
  if (p.rope_positions < p.q_offset + p.num_q) {
    return Invalid(kFn, absl::StrCat("rope table covers ", p.rope_positions, " positions; need ",
                                     p.q_offset + p.num_q));
  }
  return absl::OkStatus();
}

// The instantiation set: head_dim {64, 128} x K/V {bf16, fp8 e5m2, tiered (bank dtype at run
// time)}.
template <int HD, bi::KvPath PATH>
absl::Status Launch(const bi::BsaArgs& a, cudaStream_t stream) {
  const int smem = bi::TileBytes<HD>() + a.list_cap * 4;
  CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(bi::BsaPrefillKernel<HD, PATH>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const dim3 grid(a.num_heads, a.num_rows);
  bi::BsaPrefillKernel<HD, PATH><<<grid, bi::kThreads, smem, stream>>>(a);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace

absl::Status BsaPrefillAttentionGpu(const BsaPrefillGpuParams& p, void* stream) {
  if (absl::Status s = Validate(p); !s.ok()) return s;
  bi::BsaArgs a{};
  a.q = static_cast<const uint16_t*>(p.q);
  a.k = p.k;
  a.v = p.v;
  a.tiered = p.tiered;
  a.bank_fp8 = p.kv_dtype == KvDtype::kFp8E5m2 ? 1 : 0;
  a.out = static_cast<uint16_t*>(p.out);
  a.block_starts = p.block_starts;
  a.block_count = p.block_count;
  a.rope = p.rope;
  a.num_q = p.num_q;
  a.q_offset = p.q_offset;
  a.num_heads = p.num_heads;
  a.num_kv_heads = p.num_kv_heads;
  a.group = p.num_heads / p.num_kv_heads;
  a.q_row = p.num_heads * p.head_dim;
  a.kv_row = p.num_kv_heads * p.head_dim;
  a.num_rows = p.num_rows;
  a.first_block = p.first_block;
  a.max_blocks = p.max_blocks;
  a.block_size = p.block_size;
  a.n_sink = p.n_sink;
  a.n_window = p.n_window;
  a.extend = p.extend ? 1 : 0;
  // L holds at most min(n_sink, pos + 1) + max_blocks * block_size keys; 4-int aligned.
  a.list_cap = (p.n_sink + p.max_blocks * p.block_size + 3) / 4 * 4;
  a.scale_log2 = p.scale * 1.4426950408889634f;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  using bi::KvPath;
  const KvPath path = p.tiered.slot_table != nullptr    ? KvPath::kTiered
                      : p.kv_dtype == KvDtype::kFp8E5m2 ? KvPath::kFp8
                                                        : KvPath::kBf16;
  switch (path) {
    case KvPath::kBf16:
      return p.head_dim == 64 ? Launch<64, KvPath::kBf16>(a, s) : Launch<128, KvPath::kBf16>(a, s);
    case KvPath::kFp8:
      return p.head_dim == 64 ? Launch<64, KvPath::kFp8>(a, s) : Launch<128, KvPath::kFp8>(a, s);
    case KvPath::kTiered:
      return p.head_dim == 64 ? Launch<64, KvPath::kTiered>(a, s)
                              : Launch<128, KvPath::kTiered>(a, s);
  }
  return Invalid(kFn, "unknown K/V path");
}

}  // namespace hipserve::kernels
