// Host side of the decode attention kernels: validation, partition plan, dispatch, launch.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/attention_cuda/decode_attention.h"
#include "kernels/attention_cuda/decode_attention_kernel.cuh"
#include "kernels/attention_cuda/decode_dispatch.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/param_checks.h"

namespace hipserve::kernels {
namespace {

namespace di = decode_attention_internal;

constexpr int kMaxGroup = 8;
constexpr int kChunkAlign = 32;      // keys covered by one block step (HD 128, 4 keys/slot)
constexpr int kMinChunk = 128;       // fewer keys per partition costs more in the merge
constexpr int kMaxBsaChunk = 16384;  // bounds the block list slice kept in shared memory

struct Plan {
  int keys_per_step = 4;  // KU of the instance (decode_dispatch.cuh)
  int num_splits = 1;
  int chunk = 0;
  int logical_len = 0;  // longest key list over (sequence, KV head)
  size_t workspace_bytes = 0;
};

using internal::Aligned16;
using internal::CeilDiv;
using internal::Invalid;

absl::Status ValidateShape(const char* fn, const DecodeAttentionGpuParams& p) {
  if (p.batch <= 0) return Invalid(fn, absl::StrCat("batch must be > 0, got ", p.batch));
  if (p.num_heads <= 0 || p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads != 0) {
    return Invalid(fn, absl::StrCat("num_heads (", p.num_heads,
                                    ") must be a positive multiple of "
                                    "num_kv_heads (",
                                    p.num_kv_heads, ")"));
  }
  const int group = p.num_heads / p.num_kv_heads;
  if (group > kMaxGroup) {
    return Invalid(fn, absl::StrCat("group size num_heads / num_kv_heads = ", group,
                                    " is not supported (supported: 1..", kMaxGroup, ")"));
  }
  if (p.head_dim != 64 && p.head_dim != 128) {
    return Invalid(fn,
                   absl::StrCat("head_dim ", p.head_dim, " is not supported (supported: 64, 128)"));
  }
  if (p.max_kv_len <= 0) {
    return Invalid(fn, absl::StrCat("max_kv_len must be > 0, got ", p.max_kv_len));
  }
  if (!(p.scale > 0.f) || !std::isfinite(p.scale)) {
    return Invalid(fn, absl::StrCat("scale must be finite and > 0, got ", p.scale));
  }
  if (p.num_splits < 0 || p.num_splits > kDecodeMaxSplits) {
    return Invalid(
        fn, absl::StrCat("num_splits must be in [0, ", kDecodeMaxSplits, "], got ", p.num_splits));
  }
  if (p.batch > 65535 || p.num_kv_heads > 65535) {
    return Invalid(fn, "batch and num_kv_heads must be <= 65535");
  }
  return internal::CheckKvDtype(fn, p.kv_dtype);
}

absl::Status ValidateBsaShape(const char* fn, const BsaDecodeGpuParams& p) {
  if (absl::Status s = ValidateShape(fn, p.attn); !s.ok()) return s;
  if (p.max_blocks < 0)
    return Invalid(fn, absl::StrCat("max_blocks must be >= 0, got ", p.max_blocks));
  if (p.n_sink < 0) return Invalid(fn, absl::StrCat("n_sink must be >= 0, got ", p.n_sink));
  if (p.n_window < 0) return Invalid(fn, absl::StrCat("n_window must be >= 0, got ", p.n_window));
  if (p.rope != nullptr && p.rope_positions < p.attn.max_kv_len) {
    return Invalid(fn,
                   absl::StrCat("rope table covers ", p.rope_positions, " positions, max_kv_len ",
                                p.attn.max_kv_len, " needs as many"));
  }
  if (p.tiered.slot_table != nullptr && p.tiered.entries == nullptr) {
    const TieredKvSource& t = p.tiered;  // per-entry strides are in device memory: unchecked
    if (t.slot_stride < p.attn.max_kv_len) {
      return Invalid(fn, absl::StrCat("tiered.slot_stride ", t.slot_stride, " < max_kv_len ",
                                      p.attn.max_kv_len));
    }
    const int64_t pages = (int64_t{p.attn.max_kv_len} + kKvPageTokens - 1) / kKvPageTokens;
    if (t.page_stride < pages) {
      return Invalid(fn, absl::StrCat("tiered.page_stride ", t.page_stride, " < ", pages,
                                      " pages of max_kv_len ", p.attn.max_kv_len));
    }
  }
  return absl::OkStatus();
}

// `tiered`: K/V come from a TieredKvSource, so k, v and kv_start are not read.
absl::Status ValidatePointers(const char* fn, const DecodeAttentionGpuParams& p,
                              bool tiered = false) {
  if (p.q == nullptr || p.out == nullptr || p.kv_len == nullptr ||
      (!tiered && (p.k == nullptr || p.v == nullptr || p.kv_start == nullptr))) {
    return Invalid(fn, tiered ? "q, out and kv_len must be non-null"
                              : "q, k, v, out, kv_start and kv_len must be non-null");
  }
  if (!Aligned16(p.q) || !Aligned16(p.out) || (!tiered && (!Aligned16(p.k) || !Aligned16(p.v)))) {
    return Invalid(fn, "q, k, v and out must be 16-byte aligned");
  }
  return absl::OkStatus();
}

absl::Status ValidateBsaOptions(const char* fn, const BsaDecodeGpuParams& p) {
  if (p.rope != nullptr && !Aligned16(p.rope)) return Invalid(fn, "rope must be 16-byte aligned");
  if (IsTiered(p.tiered)) return internal::CheckTieredKvPointers(fn, p.tiered);
  return absl::OkStatus();
}

absl::StatusOr<int> SmCount() {
  int device = 0;
  CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  int sms = 0;
  CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

// Resident blocks per SM of the kernel that this shape dispatches to (cached per instance).
// Tiered shapes ask the contiguous instance of the same dtype, so their partition plan (and
// hence their results) equals the all-hot one.
template <bool BSA>
struct BlocksPerSm {
  template <int HD, int MAXG, di::KvSrc SRC, int KU>
  absl::StatusOr<int> operator()() const {
    static int cached = 0;  // benign race: every thread computes the same value
    if (cached > 0) return cached;
    int n = 0;
    CUDA_RETURN_IF_ERROR(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &n, di::DecodeKernel<HD, MAXG, BSA, SRC, KU>, di::kThreads, BSA ? 2048 * sizeof(int) : 0));
    cached = std::max(n, 1);
    return cached;
  }
};

template <bool BSA>
absl::StatusOr<int> BlocksPerSmFor(const DecodeAttentionGpuParams& p, int ku) {
  return di::DispatchDecode<BSA>(p.head_dim, p.num_heads / p.num_kv_heads, p.kv_dtype,
                                 /*tiered=*/false, ku, BlocksPerSm<BSA>{});
}

// BSA keys per step: the requested 4 / 8, or automatically 4 when the (sequence, KV head)
// pairs alone fill the SMs (large batches), else 8.
absl::StatusOr<int> BsaKeysPerStep(const char* fn, const BsaDecodeGpuParams& p) {
  if (p.keys_per_step == 4 || p.keys_per_step == 8) return p.keys_per_step;
  if (p.keys_per_step != 0) {
    return Invalid(fn, absl::StrCat("keys_per_step ", p.keys_per_step,
                                    " is not supported (supported: 0 = auto, 4, 8)"));
  }
  absl::StatusOr<int> sms = SmCount();
  if (!sms.ok()) return sms.status();
  return int64_t{p.attn.batch} * p.attn.num_kv_heads >= *sms ? 4 : 8;
}

template <bool BSA>
absl::StatusOr<Plan> MakePlan(const char* fn, const DecodeAttentionGpuParams& p,
                              int64_t logical_len, int bsa_keys = 8) {
  Plan plan;
  plan.keys_per_step = di::KeysPerStep(BSA, p.num_heads / p.num_kv_heads, bsa_keys);
  if (logical_len > (int64_t{1} << 30)) return Invalid(fn, "key list too long");
  plan.logical_len = static_cast<int>(logical_len);
  int splits = p.num_splits;
  if (splits == 0) {
    absl::StatusOr<int> sms = SmCount();
    if (!sms.ok()) return sms.status();
    absl::StatusOr<int> per_sm = BlocksPerSmFor<BSA>(p, plan.keys_per_step);
    if (!per_sm.ok()) return per_sm.status();
    // About one full wave of blocks over all (sequence, KV head) pairs: of the two split
    // counts around target / units, the one with less time per key counted in whole waves
    // (waves / splits); ties go to fewer splits (less merging). E.g. 256 pairs on 396 resident
    // blocks: 1 split (one wave) rather than 2 (two waves, the second one 30% full).
    const int64_t units = int64_t{p.batch} * p.num_kv_heads;
    const int64_t target = int64_t{*sms} * *per_sm;
    const int64_t lo = std::max<int64_t>(1, target / units), hi = CeilDiv(target, units);
    auto cost = [&](int64_t n) {  // waves / n, compared as fractions
      return std::pair<int64_t, int64_t>(CeilDiv(units * n, target), n);
    };
    const auto [wl, nl] = cost(lo);
    const auto [wh, nh] = cost(hi);
    int64_t s = wh * nl < wl * nh ? hi : lo;
    s = std::min<int64_t>(s, CeilDiv(logical_len, kMinChunk));
    splits = static_cast<int>(std::clamp<int64_t>(s, 1, kDecodeMaxSplits));
  }
  int64_t chunk = CeilDiv(CeilDiv(logical_len, splits), kChunkAlign) * kChunkAlign;
  if (BSA) chunk = std::min<int64_t>(chunk, kMaxBsaChunk);
  const int64_t actual = CeilDiv(logical_len, chunk);
  if (actual > kDecodeMaxSplits) {
    return Invalid(fn, absl::StrCat("key list of ", logical_len, " keys needs ", actual,
                                    " partitions (> ", kDecodeMaxSplits, ")"));
  }
  plan.num_splits = static_cast<int>(actual);
  plan.chunk = static_cast<int>(chunk);
  if (plan.num_splits > 1) {
    const int64_t parts = int64_t{p.batch} * p.num_heads * plan.num_splits;
    plan.workspace_bytes =
        static_cast<size_t>(parts) * (p.head_dim * sizeof(float) + sizeof(float2));
  }
  return plan;
}

int64_t BsaLogicalLen(const BsaDecodeGpuParams& p) {
  return std::min<int64_t>(p.n_sink, p.attn.max_kv_len) + int64_t{p.max_blocks} * kBsaBlockSize +
         std::min<int64_t>(int64_t{p.n_window} + 1, p.attn.max_kv_len);
}

template <bool BSA>
struct Launch {
  const di::KernelArgs& a;
  const DecodeAttentionGpuParams& p;
  int dyn_smem;
  cudaStream_t stream;

  template <int HD, int MAXG, di::KvSrc SRC, int KU>
  absl::Status operator()() const {
    const dim3 grid(a.num_splits, p.num_kv_heads, p.batch);
    di::DecodeKernel<HD, MAXG, BSA, SRC, KU><<<grid, di::kThreads, dyn_smem, stream>>>(a);
    CUDA_RETURN_IF_ERROR(cudaGetLastError());
    if (a.num_splits > 1) {
      di::MergeKernel<HD><<<p.batch * p.num_heads, di::kMergeThreads, 0, stream>>>(
          a.ws_acc, a.ws_ml, a.out, a.num_splits);
      CUDA_RETURN_IF_ERROR(cudaGetLastError());
    }
    return absl::OkStatus();
  }
};

template <bool BSA>
absl::Status Dispatch(const di::KernelArgs& a, const DecodeAttentionGpuParams& p, const Plan& plan,
                      int dyn_smem, cudaStream_t stream, bool tiered = false) {
  return di::DispatchDecode<BSA>(p.head_dim, a.group, p.kv_dtype, tiered, plan.keys_per_step,
                                 Launch<BSA>{a, p, dyn_smem, stream});
}

absl::StatusOr<di::KernelArgs> CommonArgs(const char* fn, const DecodeAttentionGpuParams& p,
                                          const Plan& plan) {
  if (plan.workspace_bytes > 0) {
    if (p.workspace == nullptr || p.workspace_bytes < plan.workspace_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(fn, ": workspace of ", plan.workspace_bytes,
                                                     " bytes needed, got ", p.workspace_bytes,
                                                     " (null: ", p.workspace == nullptr, ")"));
    }
    if (!Aligned16(p.workspace)) return Invalid(fn, "workspace must be 16-byte aligned");
  }
  di::KernelArgs a{};
  a.q = static_cast<const uint16_t*>(p.q);
  a.k = static_cast<const uint8_t*>(p.k);
  a.v = static_cast<const uint8_t*>(p.v);
  a.out = static_cast<uint16_t*>(p.out);
  a.kv_start = p.kv_start;
  a.kv_len = p.kv_len;
  a.num_heads = p.num_heads;
  a.num_kv_heads = p.num_kv_heads;
  a.group = p.num_heads / p.num_kv_heads;
  a.scale_log2 = p.scale * 1.4426950408889634f;
  a.num_splits = plan.num_splits;
  a.chunk = plan.chunk;
  if (plan.num_splits > 1) {
    a.ws_acc = static_cast<float*>(p.workspace);
    a.ws_ml = reinterpret_cast<float2*>(static_cast<char*>(p.workspace) +
                                        static_cast<size_t>(p.batch) * p.num_heads *
                                            plan.num_splits * p.head_dim * sizeof(float));
  }
  return a;
}

constexpr char kDenseFn[] = "DenseDecodeAttentionGpu";
constexpr char kBsaFn[] = "BsaDecodeAttentionGpu";

}  // namespace

absl::StatusOr<size_t> DenseDecodeAttentionWorkspaceBytes(const DecodeAttentionGpuParams& p) {
  if (absl::Status s = ValidateShape(kDenseFn, p); !s.ok()) return s;
  absl::StatusOr<Plan> plan = MakePlan<false>(kDenseFn, p, p.max_kv_len);
  if (!plan.ok()) return plan.status();
  return plan->workspace_bytes;
}

absl::StatusOr<size_t> BsaDecodeAttentionWorkspaceBytes(const BsaDecodeGpuParams& p) {
  if (absl::Status s = ValidateBsaShape(kBsaFn, p); !s.ok()) return s;
  absl::StatusOr<int> ku = BsaKeysPerStep(kBsaFn, p);
  if (!ku.ok()) return ku.status();
  absl::StatusOr<Plan> plan = MakePlan<true>(kBsaFn, p.attn, BsaLogicalLen(p), *ku);
  if (!plan.ok()) return plan.status();
  return plan->workspace_bytes;
}

absl::Status DenseDecodeAttentionGpu(const DecodeAttentionGpuParams& p, void* stream) {
  if (absl::Status s = ValidateShape(kDenseFn, p); !s.ok()) return s;
  if (absl::Status s = ValidatePointers(kDenseFn, p); !s.ok()) return s;
  absl::StatusOr<Plan> plan = MakePlan<false>(kDenseFn, p, p.max_kv_len);
  if (!plan.ok()) return plan.status();
  absl::StatusOr<di::KernelArgs> a = CommonArgs(kDenseFn, p, *plan);
  if (!a.ok()) return a.status();
  return Dispatch<false>(*a, p, *plan, 0, static_cast<cudaStream_t>(stream));
}

absl::Status BsaDecodeAttentionGpu(const BsaDecodeGpuParams& p, void* stream) {
  if (absl::Status s = ValidateBsaShape(kBsaFn, p); !s.ok()) return s;
  const bool tiered = IsTiered(p.tiered);
  if (absl::Status s = ValidatePointers(kBsaFn, p.attn, tiered); !s.ok()) return s;
  if (absl::Status s = ValidateBsaOptions(kBsaFn, p); !s.ok()) return s;
  if (p.block_count == nullptr || (p.max_blocks > 0 && p.block_starts == nullptr)) {
    return Invalid(kBsaFn, "block_count (and block_starts when max_blocks > 0) must be non-null");
  }
  absl::StatusOr<int> ku = BsaKeysPerStep(kBsaFn, p);
  if (!ku.ok()) return ku.status();
  absl::StatusOr<Plan> plan = MakePlan<true>(kBsaFn, p.attn, BsaLogicalLen(p), *ku);
  if (!plan.ok()) return plan.status();
  absl::StatusOr<di::KernelArgs> a = CommonArgs(kBsaFn, p.attn, *plan);
  if (!a.ok()) return a.status();
  a->block_starts = p.block_starts;
  a->block_count = p.block_count;
  a->max_blocks = p.max_blocks;
  a->n_sink = p.n_sink;
  a->n_window = p.n_window;
  a->rope = p.rope;
  a->extend = p.extend;
  a->bank_fp8 = p.attn.kv_dtype == KvDtype::kFp8E5m2;
  a->src = p.tiered;
  // A partition of `chunk` logical keys touches at most chunk / 8 + 2 blocks.
  a->block_smem = plan->chunk / kBsaBlockSize + 2;
  return Dispatch<true>(*a, p.attn, *plan, a->block_smem * static_cast<int>(sizeof(int)),
                        static_cast<cudaStream_t>(stream), tiered);
}

}  // namespace hipserve::kernels
