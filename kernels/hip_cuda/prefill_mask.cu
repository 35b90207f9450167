// Host side of the HiP prefill mask estimation: validation, workspace layout, dispatch, launch.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/param_checks.h"
#include "kernels/hip_cuda/mask_key_source.h"
#include "kernels/hip_cuda/prefill_mask.h"
#include "kernels/hip_cuda/prefill_mask_kernel.cuh"
#include "kernels/hip_cuda/prefill_rep_kernel.cuh"
#include "kernels/hip_cuda/prefill_score_tc.cuh"

namespace hipserve::kernels {
namespace {

using internal::Aligned16;
using internal::CeilDiv;
using internal::CeilLog2;
using internal::Invalid;

namespace hm = hip_mask_internal;

constexpr char kFn[] = "HipPrefillMaskGpu";
constexpr int kScoreThreads = 128;  // exact kernel
constexpr int kRowTile = 64;        // scoring rows staged in shared memory at a time
constexpr int kSelectThreads = 1024;

int64_t Align16(int64_t bytes) { return (bytes + 15) / 16 * 16; }

int NumKv(const HipPrefillMaskGpuParams& p) { return p.q_offset + p.num_q; }
int FirstBlock(const HipPrefillMaskGpuParams& p) { return p.q_offset / p.block_q; }
int NumRows(const HipPrefillMaskGpuParams& p) {
  return (p.q_offset + p.num_q - 1) / p.block_q - FirstBlock(p) + 1;
}

// Chunks in stage s's input at most (stage 0: the last row has the largest candidate range).
int64_t MaxStageInput(const HipPrefillMaskGpuParams& p, int s) {
  const PruningSpec& spec = *p.spec;
  if (s == 0) {
    const int64_t range = std::max<int64_t>(0, int64_t{NumKv(p)} - 1 - spec.n_window - p.n_sink);
    return CeilDiv(range, spec.chunk_sizes[0]);
  }
  return int64_t{spec.keep_chunks(s - 1)} * (spec.chunk_sizes[s - 1] / spec.chunk_sizes[s]);
}

int64_t ScoreStride(const HipPrefillMaskGpuParams& p) {
  int64_t n = 1;
  for (int s = 0; s < p.spec->num_stages(); ++s) n = std::max(n, MaxStageInput(p, s));
  return (n + 3) / 4 * 4;
}

absl::Status ValidateShape(const HipPrefillMaskGpuParams& p) {
  if (p.num_q <= 0 || p.q_offset < 0 || int64_t{p.q_offset} + p.num_q >= (int64_t{1} << 30)) {
    return Invalid(kFn,
                   absl::StrCat("need num_q > 0, q_offset >= 0 and q_offset + num_q < 2^30; got ",
                                p.num_q, ", ", p.q_offset));
  }
  if (p.num_kv != 0 && (p.num_kv < NumKv(p) || p.num_kv >= (1 << 30))) {
    return Invalid(kFn,
                   absl::StrCat("num_kv must be 0 or in [q_offset + num_q, 2^30); got ", p.num_kv));
  }
  if (p.num_kv_heads <= 0 || p.num_kv_heads > 65535 || p.num_heads <= 0 ||
      p.num_heads % p.num_kv_heads != 0) {
    return Invalid(
        kFn, absl::StrCat("num_heads (", p.num_heads,
                          ") must be a positive multiple of num_kv_heads (", p.num_kv_heads, ")"));
  }
  const int group = p.num_heads / p.num_kv_heads;
  if (group > 8) {
    return Invalid(kFn, absl::StrCat("group size ", group, " is not supported (supported: 1..8)"));
  }
  if (p.head_dim != 64 && p.head_dim != 128) {
    return Invalid(kFn,
                   absl::StrCat("head_dim ", p.head_dim, " is not supported (supported: 64, 128)"));
  }
  if (p.block_q <= 0 || p.block_q > 1024) {
    return Invalid(kFn, absl::StrCat("block_q must be in [1, 1024], got ", p.block_q));
  }
  if (p.n_sink < 0) return Invalid(kFn, absl::StrCat("n_sink must be >= 0, got ", p.n_sink));
  if (p.spec == nullptr) return Invalid(kFn, "spec is null");
  const PruningSpec& s = *p.spec;
  const int stages = s.num_stages();
  if (stages < 1 || stages > kHipGpuMaxStages || static_cast<int>(s.keep_tokens.size()) != stages ||
      static_cast<int>(s.stride_q.size()) != stages) {
    return Invalid(
        kFn, absl::StrCat("spec must have 1..", kHipGpuMaxStages,
                          " stages with one keep_tokens and stride_q entry each; got ", stages));
  }
  if (s.n_window < 0) return Invalid(kFn, "spec.n_window must be >= 0");
  if (absl::Status st = PruningSpecRunsOnGpu(s, kFn); !st.ok()) return st;
  if (!s.later_stages.empty() && static_cast<int>(s.later_stages.size()) != stages - 1) {
    return Invalid(kFn, absl::StrCat("spec.later_stages must be empty or have ", stages - 1,
                                     " entries, got ", s.later_stages.size()));
  }
  for (int i = 0; i < stages; ++i) {
    if (s.representatives(i) == Stage1Representatives::kBlockMeans && s.mean_block_size <= 0) {
      return Invalid(kFn,
                     absl::StrCat("spec.mean_block_size must be > 0, got ", s.mean_block_size));
    }
  }
  for (int i = 0; i < stages; ++i) {
    if (s.chunk_sizes[i] <= 0 || s.keep_tokens[i] <= 0 ||
        s.keep_tokens[i] % s.chunk_sizes[i] != 0 || s.stride_q[i] <= 0 ||
        (i > 0 && s.chunk_sizes[i - 1] % s.chunk_sizes[i] != 0)) {
      return Invalid(kFn, absl::StrCat("spec stage ", i, " is inconsistent (chunk ",
                                       s.chunk_sizes[i], ", keep ", s.keep_tokens[i], ", stride_q ",
                                       s.stride_q[i], "); see ValidateHipConfig"));
    }
  }
  if (NumRows(p) > 65535) {
    return Invalid(
        kFn, absl::StrCat("the chunk spans ", NumRows(p), " query blocks; at most 65535 per call"));
  }
  if (MaxStageInput(p, 0) > (int64_t{1} << 24)) return Invalid(kFn, "too many stage-1 chunks");
  return absl::OkStatus();
}

int RopePositionsNeeded(const HipPrefillMaskGpuParams& p) {
  const PruningSpec& s = *p.spec;
  switch (s.positions) {
    case PruningPositions::kReal:
      return NumKv(p);
    case PruningPositions::kRelative:
      return s.n_window + 2;
    case PruningPositions::kChunkIndexed: {
      int64_t n = 0;
      for (int st = 0; st < s.num_stages(); ++st) n = std::max(n, MaxStageInput(p, st));
      return static_cast<int>(std::min<int64_t>(n + s.n_window + 1, NumKv(p)));
    }
  }
  return 0;
}

// Workspace layout, in order (each segment 16-byte aligned): kv_len [rows], block_count
// [rows * kvh], per stage starts [rows * kvh * keep_s] + count + range_end [rows * kvh], scores
// [rows * kvh * score_stride] fp32.
struct Layout {
  int64_t kv_len = 0, block_count = 0, scores = 0, total = 0;
  int64_t starts[kHipGpuMaxStages] = {}, count[kHipGpuMaxStages] = {},
          range_end[kHipGpuMaxStages] = {};
};

Layout LayoutFor(const HipPrefillMaskGpuParams& p) {
  const int64_t lists = int64_t{NumRows(p)} * p.num_kv_heads;
  Layout l;
  int64_t at = 0;
  auto take = [&](int64_t bytes) {
    const int64_t here = at;
    at += Align16(bytes);
    return here;
  };
  l.kv_len = take(int64_t{NumRows(p)} * 4);
  l.block_count = take(lists * 4);
  for (int s = 0; s < p.spec->num_stages(); ++s) {
    l.starts[s] = take(lists * p.spec->keep_chunks(s) * 4);
    l.count[s] = take(lists * 4);
    l.range_end[s] = take(lists * 4);
  }
  l.scores = take(lists * ScoreStride(p) * 4);
  l.total = at;
  return l;
}

// The filter-then-verify kernel's dynamic shared memory is > 48 KB: opt in (per call, since
// the attribute is per device; not a stream operation, so graph capture is unaffected). Ask for
// the largest carveout too (2 x 107 KB at head_dim 128 with 128 threads) rather than leave it to
// the driver's choice.
template <int HD, int TT>
absl::Status PrepareTcScore() {
  CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(hm::PrefillScoreTcKernel<HD, TT>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            hm::TcScoreSmem<HD, TT>::kBytes));
  CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(hm::PrefillScoreTcKernel<HD, TT>,
                                            cudaFuncAttributePreferredSharedMemoryCarveout,
                                            cudaSharedmemCarveoutMaxShared));
  return absl::OkStatus();
}

template <int HD, int TT>
absl::Status LaunchTcScore(const hm::StageArgs& a, const hm::PrefillArgs& pa, int64_t max_n,
                           int rows, int kv_heads, cudaStream_t stream) {
  if (absl::Status st = PrepareTcScore<HD, TT>(); !st.ok()) return st;
  const dim3 grid(static_cast<unsigned>(std::max<int64_t>(1, CeilDiv(max_n, TT / 2))), kv_heads,
                  rows);
  hm::PrefillScoreTcKernel<HD, TT><<<grid, TT, hm::TcScoreSmem<HD, TT>::kBytes, stream>>>(a, pa);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

// The resident-rows filter kernel (prefill_score_tc.cuh, PrefillScoreResKernel<HD, NG>): NG
// 64-row groups of shared memory, 1 block of 256 threads per SM.
template <int HD, int NG>
absl::Status LaunchResScore(const hm::StageArgs& a, const hm::PrefillArgs& pa, int64_t max_n,
                            int rows, int kv_heads, cudaStream_t stream) {
  constexpr int kBytes = hm::TcResSmem<HD, NG>::kBytes;
  CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(hm::PrefillScoreResKernel<HD, NG>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, kBytes));
  CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(hm::PrefillScoreResKernel<HD, NG>,
                                            cudaFuncAttributePreferredSharedMemoryCarveout,
                                            cudaSharedmemCarveoutMaxShared));
  const dim3 grid(static_cast<unsigned>(std::max<int64_t>(1, CeilDiv(max_n, 128))), kv_heads, rows);
  hm::PrefillScoreResKernel<HD, NG><<<grid, 256, kBytes, stream>>>(a, pa);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

// Scoring rows of stage s in any plan row, at most (a row has <= min(block_q, num_q) queries).
int MaxScoringRows(const HipPrefillMaskGpuParams& p, int s) {
  const int nq = std::min(p.block_q, p.num_q);
  const int stride = p.spec->stride_q[s];
  return (nq + stride - 1) / stride * (p.num_heads / p.num_kv_heads);
}

// Row groups (NG: 2 or 4) of the resident-rows kernel for stage s, or 0 for the tile / exact
// kernels (see HipPrefillMaskGpuParams::resident_rows). `smem_optin`: the device's largest
// dynamic shared memory per block.
int ResidentGroups(const HipPrefillMaskGpuParams& p, int s, int smem_optin) {
  if (!p.tensor_core_filter || p.resident_rows == 0) return 0;
  if (p.spec->representatives(s) != Stage1Representatives::kProbes) return 0;
  const int groups = (MaxScoringRows(p, s) + kRowTile - 1) / kRowTile;
  if (groups > 4) return 0;
  if (p.resident_rows == 1 && (groups <= 1 || IsTiered(p.tiered))) return 0;
  const int ng = groups <= 2 ? 2 : 4;
  const int bytes = p.head_dim == 128
                        ? (ng == 2 ? hm::TcResSmem<128, 2>::kBytes : hm::TcResSmem<128, 4>::kBytes)
                        : (ng == 2 ? hm::TcResSmem<64, 2>::kBytes : hm::TcResSmem<64, 4>::kBytes);
  return bytes <= smem_optin ? ng : 0;
}

absl::StatusOr<int> SmemOptin() {
  int dev = 0, bytes = 0;
  CUDA_RETURN_IF_ERROR(cudaGetDevice(&dev));
  CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  return bytes;
}

template <int HD>
absl::Status LaunchScore(const hm::StageArgs& a, const hm::PrefillArgs& pa, int64_t max_n, int rows,
                         int kv_heads, bool tc_filter, int tc_threads, int res_groups,
                         cudaStream_t stream) {
  if (res_groups == 2) return LaunchResScore<HD, 2>(a, pa, max_n, rows, kv_heads, stream);
  if (res_groups == 4) return LaunchResScore<HD, 4>(a, pa, max_n, rows, kv_heads, stream);
  if (tc_filter) {
    return tc_threads == 256 ? LaunchTcScore<HD, 256>(a, pa, max_n, rows, kv_heads, stream)
                             : LaunchTcScore<HD, 128>(a, pa, max_n, rows, kv_heads, stream);
  }
  constexpr int cpb = kScoreThreads / 2;
  const dim3 grid(static_cast<unsigned>(std::max<int64_t>(1, CeilDiv(max_n, cpb))), kv_heads, rows);
  hm::PrefillScoreKernel<HD, kScoreThreads, kRowTile><<<grid, kScoreThreads, 0, stream>>>(a, pa);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

// Stage representatives other than probes (prefill_rep_kernel.cuh): one launch of
// PrefillRepScoreKernel, and for page bounds a second one that merges the exact scores of an
// open last page's keys (only possible when n_window < page size: otherwise every page a
// candidate range reaches is full).
template <int HD, int C>
absl::Status LaunchRepKernel(const hm::StageArgs& a, const hm::PrefillArgs& pa,
                             const hm::PrefillRepArgs& ra, int64_t max_n, int rows, int kv_heads,
                             cudaStream_t stream) {
  constexpr int kBytes = hm::PrefillRepSmem<HD, C>::kBytes;
  CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(hm::PrefillRepScoreKernel<HD, C>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, kBytes));
  const dim3 grid(static_cast<unsigned>(std::max<int64_t>(1, CeilDiv(max_n, ra.cpb))), kv_heads,
                  rows);
  hm::PrefillRepScoreKernel<HD, C><<<grid, hm::kPrefillRepThreads, kBytes, stream>>>(a, pa, ra);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

int RepChunksPerBlock(int upc) {
  return std::clamp(2 * hm::kPrefillRepUnits / upc, 1, hm::kPrefillRepMaxCpb);
}

template <int HD>
absl::Status LaunchRepScore(const hm::StageArgs& a, const hm::PrefillArgs& pa,
                            const HipPrefillMaskGpuParams& p, int s, int64_t max_n, int rows,
                            cudaStream_t stream) {
  const PruningSpec& spec = *p.spec;
  const int c = spec.chunk_sizes[s];
  hm::PrefillRepArgs ra{};
  ra.num_kv = p.num_kv > 0 ? p.num_kv : NumKv(p);
  // Summary granularity (mask_estimation.h): stage 1 keeps kHipPageSize and mean_block_size,
  // later stages at most their chunk size.
  ra.page_size = s == 0 ? kHipPageSize : std::min(kHipPageSize, c);
  ra.mean_size = s == 0 ? spec.mean_block_size : std::min(spec.mean_block_size, c);
  const int g = ra.page_size;
  switch (spec.representatives(s)) {
    case Stage1Representatives::kExact:
      ra.kind = hm::kUnitKeys;
      ra.upc = c;
      break;
    case Stage1Representatives::kBlockMeans:
      ra.kind = hm::kUnitMeans;
      ra.upc = static_cast<int>(CeilDiv(c, ra.mean_size));
      break;
    case Stage1Representatives::kPageBound:
      ra.kind = hm::kUnitPages;
      // Chunk starts are n_sink + multiples of c: pages and chunks align when g divides both.
      ra.upc = c % g == 0 && p.n_sink % g == 0 ? c / g : (c - 1) / g + 2;
      break;
    case Stage1Representatives::kProbes:
      return Invalid(kFn, "internal: probes stage in LaunchRepScore");
  }
  ra.cpb = RepChunksPerBlock(ra.upc);
  if (ra.kind != hm::kUnitPages) {
    return LaunchRepKernel<HD, hm::kCmpDot>(a, pa, ra, max_n, rows, p.num_kv_heads, stream);
  }
  const absl::Status st =
      spec.positions == PruningPositions::kReal
          ? LaunchRepKernel<HD, hm::kCmpPairNorms>(a, pa, ra, max_n, rows, p.num_kv_heads, stream)
      : spec.positions == PruningPositions::kRelative
          ? LaunchRepKernel<HD, hm::kCmpBox>(a, pa, ra, max_n, rows, p.num_kv_heads, stream)
          : LaunchRepKernel<HD, hm::kCmpBoxUnrot>(a, pa, ra, max_n, rows, p.num_kv_heads, stream);
  if (!st.ok() || spec.n_window >= g) return st;
  ra.kind = hm::kUnitOpenKeys;
  ra.upc = g;
  ra.cpb = RepChunksPerBlock(ra.upc);
  return LaunchRepKernel<HD, hm::kCmpDot>(a, pa, ra, max_n, rows, p.num_kv_heads, stream);
}

template <int HD, int TT>
absl::StatusOr<int> TcBlocksPerSm() {
  if (absl::Status st = PrepareTcScore<HD, TT>(); !st.ok()) return st;
  int blocks = 0;
  CUDA_RETURN_IF_ERROR(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &blocks, hm::PrefillScoreTcKernel<HD, TT>, TT, hm::TcScoreSmem<HD, TT>::kBytes));
  return blocks;
}

}  // namespace

absl::StatusOr<int> HipPrefillMaskScoreBlocksPerSm(int head_dim, int threads) {
  if (threads != 128 && threads != 256)
    return Invalid(kFn, "filter_block_threads must be 128 or 256");
  if (head_dim == 128) {
    return threads == 256 ? TcBlocksPerSm<128, 256>() : TcBlocksPerSm<128, 128>();
  }
  if (head_dim == 64) {
    return threads == 256 ? TcBlocksPerSm<64, 256>() : TcBlocksPerSm<64, 128>();
  }
  return Invalid(kFn,
                 absl::StrCat("head_dim ", head_dim, " is not supported (supported: 64, 128)"));
}

absl::StatusOr<int> HipPrefillMaskResidentStages(const HipPrefillMaskGpuParams& p) {
  if (absl::Status s = ValidateShape(p); !s.ok()) return s;
  if (p.resident_rows < 0 || p.resident_rows > 2) {
    return Invalid(kFn, absl::StrCat("resident_rows must be 0, 1 or 2, got ", p.resident_rows));
  }
  absl::StatusOr<int> optin = SmemOptin();
  if (!optin.ok()) return optin.status();
  int bits = 0;
  for (int s = 0; s < p.spec->num_stages(); ++s) {
    if (ResidentGroups(p, s, *optin) != 0) bits |= 1 << s;
  }
  return bits;
}

absl::StatusOr<int> HipPrefillMaskRopePositions(const HipPrefillMaskGpuParams& p) {
  if (absl::Status s = ValidateShape(p); !s.ok()) return s;
  return RopePositionsNeeded(p);
}

absl::StatusOr<size_t> HipPrefillMaskWorkspaceBytes(const HipPrefillMaskGpuParams& p) {
  if (absl::Status s = ValidateShape(p); !s.ok()) return s;
  return static_cast<size_t>(LayoutFor(p).total);
}

absl::StatusOr<HipPrefillPlan> HipPrefillPlanFor(const HipPrefillMaskGpuParams& p) {
  if (absl::Status s = ValidateShape(p); !s.ok()) return s;
  const Layout l = LayoutFor(p);
  if (p.workspace == nullptr || p.workspace_bytes < static_cast<size_t>(l.total) ||
      !Aligned16(p.workspace)) {
    return Invalid(kFn, absl::StrCat("workspace of ", l.total,
                                     " bytes (16-byte aligned) needed, got ", p.workspace_bytes));
  }
  char* ws = static_cast<char*>(p.workspace);
  HipPrefillPlan plan;
  plan.num_rows = NumRows(p);
  plan.first_block = FirstBlock(p);
  plan.block_q = p.block_q;
  plan.num_kv_heads = p.num_kv_heads;
  const int last = p.spec->num_stages() - 1;
  plan.max_blocks = p.spec->keep_chunks(last);
  plan.block_size = p.spec->chunk_sizes[last];
  for (int s = 0; s <= last; ++s) {
    plan.stages.starts[s] = reinterpret_cast<int32_t*>(ws + l.starts[s]);
    plan.stages.count[s] = reinterpret_cast<int32_t*>(ws + l.count[s]);
    plan.stages.range_end[s] = reinterpret_cast<int32_t*>(ws + l.range_end[s]);
  }
  plan.block_starts = plan.stages.starts[last];
  plan.block_count = reinterpret_cast<int32_t*>(ws + l.block_count);
  return plan;
}

absl::StatusOr<HipPrefillPlan> HipPrefillMaskGpu(const HipPrefillMaskGpuParams& p,
                                                 void* stream_ptr) {
  absl::StatusOr<HipPrefillPlan> plan = HipPrefillPlanFor(p);
  if (!plan.ok()) return plan.status();
  const PruningSpec& spec = *p.spec;
  const int stages = spec.num_stages();
  if (p.q == nullptr || p.rope == nullptr) return Invalid(kFn, "q and rope must be non-null");
  if (p.filter_block_threads != 128 && p.filter_block_threads != 256) {
    return Invalid(
        kFn, absl::StrCat("filter_block_threads must be 128 or 256, got ", p.filter_block_threads));
  }
  if (p.resident_rows < 0 || p.resident_rows > 2) {
    return Invalid(kFn, absl::StrCat("resident_rows must be 0, 1 or 2, got ", p.resident_rows));
  }
  if (!Aligned16(p.q) || !Aligned16(p.rope))
    return Invalid(kFn, "q and rope must be 16-byte aligned");
  if (absl::Status st = hm::ValidateMaskKeySource(kFn, p.k_dtype, p.k, p.tiered, NumKv(p));
      !st.ok()) {
    return st;
  }
  const int needed = RopePositionsNeeded(p);
  if (p.rope_positions < needed) {
    return Invalid(kFn,
                   absl::StrCat("rope table covers ", p.rope_positions, " positions; ",
                                PruningPositionsName(spec.positions), " pruning needs ", needed));
  }
  int smem_optin = 0;
  if (p.tensor_core_filter && p.resident_rows != 0) {
    absl::StatusOr<int> optin = SmemOptin();
    if (!optin.ok()) return optin.status();
    smem_optin = *optin;
  }
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const Layout l = LayoutFor(p);
  char* ws = static_cast<char*>(p.workspace);
  int32_t* kv_len = reinterpret_cast<int32_t*>(ws + l.kv_len);
  const int rows = NumRows(p);
  const int lists = rows * p.num_kv_heads;

  hm::PrefillArgs pa{};
  pa.q = static_cast<const uint16_t*>(p.q);
  pa.q_offset = p.q_offset;
  pa.num_q = p.num_q;
  pa.block_q = p.block_q;
  pa.first_block = FirstBlock(p);
  pa.prefetch_keys = p.prefetch_keys ? 1 : 0;
  hm::PrefillRowLengthsKernel<<<static_cast<unsigned>(CeilDiv(rows, 256)), 256, 0, stream>>>(
      pa, rows, kv_len);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());

  hm::StageArgs a{};
  a.q = nullptr;  // the prefill score kernel reads queries through PrefillArgs
  a.keys = hm::MakeKeyArgs(p.k_dtype, p.k, p.tiered);
  a.kv_start = nullptr;
  a.kv_len = kv_len;
  a.rope = p.rope;
  a.seq_start_stage = nullptr;
  a.num_heads = p.num_heads;
  a.num_kv_heads = p.num_kv_heads;
  a.group = p.num_heads / p.num_kv_heads;
  a.n_sink = p.n_sink;
  a.n_window = spec.n_window;
  switch (spec.positions) {
    case PruningPositions::kReal:
      a.pos_mode = hm::kPosReal;
      break;
    case PruningPositions::kRelative:
      a.pos_mode = hm::kPosRelative;
      break;
    case PruningPositions::kChunkIndexed:
      a.pos_mode = hm::kPosChunkIndexed;
      break;
  }
  a.scores = reinterpret_cast<float*>(ws + l.scores);
  a.score_stride = static_cast<int>(ScoreStride(p));

  for (int s = 0; s < stages; ++s) {
    a.stage = s;
    a.chunk_size = spec.chunk_sizes[s];
    a.iterations = std::max(1, CeilLog2(spec.chunk_sizes[s]));
    a.keep = spec.keep_chunks(s);
    if (s > 0) {
      a.in_starts = plan->stages.starts[s - 1];
      a.in_count = plan->stages.count[s - 1];
      a.in_range_end = plan->stages.range_end[s - 1];
      a.in_stride = spec.keep_chunks(s - 1);
      a.split = spec.chunk_sizes[s - 1] / spec.chunk_sizes[s];
    }
    a.out_starts = plan->stages.starts[s];
    a.out_count = plan->stages.count[s];
    a.out_range_end = plan->stages.range_end[s];
    pa.stride_q = spec.stride_q[s];
    const int64_t max_n = MaxStageInput(p, s);
    if (max_n > a.keep && spec.representatives(s) != Stage1Representatives::kProbes) {
      const absl::Status st = p.head_dim == 128
                                  ? LaunchRepScore<128>(a, pa, p, s, max_n, rows, stream)
                                  : LaunchRepScore<64>(a, pa, p, s, max_n, rows, stream);
      if (!st.ok()) return st;
    } else if (max_n > a.keep) {  // otherwise no row has anything to score
      const int res_groups = ResidentGroups(p, s, smem_optin);
      const absl::Status st =
          p.head_dim == 128
              ? LaunchScore<128>(a, pa, max_n, rows, p.num_kv_heads, p.tensor_core_filter,
                                 p.filter_block_threads, res_groups, stream)
              : LaunchScore<64>(a, pa, max_n, rows, p.num_kv_heads, p.tensor_core_filter,
                                p.filter_block_threads, res_groups, stream);
      if (!st.ok()) return st;
    }
    hm::SelectKernel<kSelectThreads><<<dim3(p.num_kv_heads, rows), kSelectThreads, 0, stream>>>(a);
    CUDA_RETURN_IF_ERROR(cudaGetLastError());
  }
  hm::PrefillFinalizeKernel<<<static_cast<unsigned>(CeilDiv(lists, 256)), 256, 0, stream>>>(
      kv_len, plan->stages.starts[stages - 1], plan->stages.count[stages - 1],
      spec.keep_chunks(stages - 1), lists, p.num_kv_heads, const_cast<int32_t*>(plan->block_count));
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return plan;
}

}  // namespace hipserve::kernels
