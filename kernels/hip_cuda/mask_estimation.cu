// Host side of the HiP decode mask estimation: validation, workspace sizing, dispatch, launch.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/param_checks.h"
#include "kernels/hip_cuda/mask_estimation.h"
#include "kernels/hip_cuda/mask_estimation_kernel.cuh"
#include "kernels/hip_cuda/mask_key_source.h"

namespace hipserve::kernels {
namespace {

using internal::Aligned16;
using internal::CeilDiv;
using internal::CeilLog2;
using internal::Invalid;

namespace hm = hip_mask_internal;

constexpr char kFn[] = "HipDecodeMaskGpu";
constexpr int kScoreThreads = 64;  // ~200 registers a thread: 10 warps an SM either way
constexpr int kSelectThreads = 1024;
constexpr int kExactThreads = 64;     // the score kernel's register budget (a key per lane)
constexpr int kSummaryThreads = 128;  // 4 warps = 4 chunks a block

// Chunks in stage s's input at most (stage 0: from max_kv_len).
int64_t MaxStageInput(const HipDecodeMaskGpuParams& p, int s) {
  const PruningSpec& spec = *p.spec;
  if (s == 0) {
    const int64_t range =
        std::max<int64_t>(0, int64_t{p.max_kv_len} - 1 - spec.n_window - p.n_sink);
    return CeilDiv(range, spec.chunk_sizes[0]);
  }
  return int64_t{spec.keep_chunks(s - 1)} * (spec.chunk_sizes[s - 1] / spec.chunk_sizes[s]);
}

absl::Status ValidateShape(const HipDecodeMaskGpuParams& p) {
  if (p.batch <= 0 || p.batch > 65535)
    return Invalid(kFn, absl::StrCat("batch must be in [1, 65535], got ", p.batch));
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
  if (p.max_kv_len <= 0)
    return Invalid(kFn, absl::StrCat("max_kv_len must be > 0, got ", p.max_kv_len));
  if (p.n_sink < 0) return Invalid(kFn, absl::StrCat("n_sink must be >= 0, got ", p.n_sink));
  if (p.spec == nullptr) return Invalid(kFn, "spec is null");
  const PruningSpec& s = *p.spec;
  const int stages = s.num_stages();
  if (stages < 1 || stages > kHipGpuMaxStages || static_cast<int>(s.keep_tokens.size()) != stages) {
    return Invalid(kFn, absl::StrCat("spec must have 1..", kHipGpuMaxStages,
                                     " stages with one keep_tokens entry each; got ", stages));
  }
  if (s.n_window < 0) return Invalid(kFn, "spec.n_window must be >= 0");
  if (absl::Status st = PruningSpecRunsOnGpu(s, HipGpuMaskPath::kDecode, kFn); !st.ok()) return st;
  for (int i = 0; i < stages; ++i) {
    if (s.representatives(i) == Stage1Representatives::kBlockMeans && s.mean_block_size <= 0) {
      return Invalid(kFn,
                     absl::StrCat("spec.mean_block_size must be > 0, got ", s.mean_block_size));
    }
  }
  for (int i = 0; i < stages; ++i) {
    if (s.chunk_sizes[i] <= 0 || s.keep_tokens[i] <= 0 ||
        s.keep_tokens[i] % s.chunk_sizes[i] != 0 ||
        (i > 0 && s.chunk_sizes[i - 1] % s.chunk_sizes[i] != 0)) {
      return Invalid(kFn,
                     absl::StrCat("spec stage ", i, " is inconsistent (chunk ", s.chunk_sizes[i],
                                  ", keep ", s.keep_tokens[i], "); see ValidateHipConfig"));
    }
  }
  if (int64_t{p.max_kv_len} + s.chunk_sizes[0] >= (int64_t{1} << 31)) {
    return Invalid(kFn, "max_kv_len too large for int32 positions");
  }
  if (p.start_stage < 0 || p.start_stage >= stages) {
    return Invalid(kFn, absl::StrCat("start_stage ", p.start_stage, " outside [0, ", stages, ")"));
  }
  return absl::OkStatus();
}

int RopePositionsNeeded(const HipDecodeMaskGpuParams& p) {
  const PruningSpec& s = *p.spec;
  switch (s.positions) {
    case PruningPositions::kReal:
      return p.max_kv_len;
    case PruningPositions::kRelative:
      return s.n_window + 2;
    case PruningPositions::kChunkIndexed: {
      int64_t n = 0;
      for (int st = 0; st < s.num_stages(); ++st) n = std::max(n, MaxStageInput(p, st));
      return static_cast<int>(std::min<int64_t>(n + s.n_window + 1, p.max_kv_len));
    }
  }
  return 0;
}

int64_t ScoreStride(const HipDecodeMaskGpuParams& p) {
  int64_t n = 1;
  for (int s = 0; s < p.spec->num_stages(); ++s) n = std::max(n, MaxStageInput(p, s));
  return (n + 3) / 4 * 4;
}

template <int HD, int MAXG>
absl::Status LaunchScore(const hm::StageArgs& a, int64_t max_n, int batch, int kv_heads,
                         cudaStream_t stream) {
  constexpr int cpb = kScoreThreads / (2 * MAXG);
  const dim3 grid(static_cast<unsigned>(std::max<int64_t>(1, CeilDiv(max_n, cpb))), kv_heads,
                  batch);
  hm::ScoreKernel<HD, MAXG, kScoreThreads><<<grid, kScoreThreads, 0, stream>>>(a);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

template <int HD, int MAXG>
absl::Status LaunchExact(const hm::StageArgs& a, int64_t max_n, int batch, int kv_heads,
                         cudaStream_t stream) {
  const int cpb = kExactThreads / a.exact_lanes;
  const dim3 grid(static_cast<unsigned>(std::max<int64_t>(1, CeilDiv(max_n, cpb))), kv_heads,
                  batch);
  hm::ExactScoreKernel<HD, MAXG, kExactThreads><<<grid, kExactThreads, 0, stream>>>(a);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

template <int HD, int MAXG>
absl::Status LaunchSummary(const hm::StageArgs& a, int64_t max_n, int batch, int kv_heads,
                           cudaStream_t stream) {
  constexpr int cpb = kSummaryThreads / 32;
  const dim3 grid(static_cast<unsigned>(std::max<int64_t>(1, CeilDiv(max_n, cpb))), kv_heads,
                  batch);
  hm::SummaryScoreKernel<HD, MAXG, kSummaryThreads><<<grid, kSummaryThreads, 0, stream>>>(a);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

template <int HD, int MAXG>
absl::Status LaunchStageScore(const hm::StageArgs& a, int64_t max_n, int batch, int kv_heads,
                              cudaStream_t stream) {
  switch (a.reps) {
    case hm::kRepExact:
      return LaunchExact<HD, MAXG>(a, max_n, batch, kv_heads, stream);
    case hm::kRepPageBound:
    case hm::kRepBlockMeans:
      return LaunchSummary<HD, MAXG>(a, max_n, batch, kv_heads, stream);
    default:
      return LaunchScore<HD, MAXG>(a, max_n, batch, kv_heads, stream);
  }
}

// The declared set: head_dim {64, 128} x group bound {4, 8}, each with the stage's scorer.
absl::Status DispatchScore(const hm::StageArgs& a, int64_t max_n, const HipDecodeMaskGpuParams& p,
                           cudaStream_t stream) {
  const bool wide = a.group > 4;
  if (p.head_dim == 128) {
    return wide ? LaunchStageScore<128, 8>(a, max_n, p.batch, p.num_kv_heads, stream)
                : LaunchStageScore<128, 4>(a, max_n, p.batch, p.num_kv_heads, stream);
  }
  return wide ? LaunchStageScore<64, 8>(a, max_n, p.batch, p.num_kv_heads, stream)
              : LaunchStageScore<64, 4>(a, max_n, p.batch, p.num_kv_heads, stream);
}

int RepKindOf(Stage1Representatives r) {
  switch (r) {
    case Stage1Representatives::kProbes:
      return hm::kRepProbes;
    case Stage1Representatives::kPageBound:
      return hm::kRepPageBound;
    case Stage1Representatives::kBlockMeans:
      return hm::kRepBlockMeans;
    case Stage1Representatives::kExact:
      return hm::kRepExact;
  }
  return hm::kRepProbes;
}

// Lanes per chunk of the exact scorer: the largest power of two <= min(chunk, 32).
int ExactLanes(int chunk_size) {
  int l = 1;
  while (l * 2 <= std::min(chunk_size, 32)) l *= 2;
  return l;
}

}  // namespace

absl::StatusOr<int> HipDecodeMaskRopePositions(const HipDecodeMaskGpuParams& p) {
  if (absl::Status s = ValidateShape(p); !s.ok()) return s;
  return RopePositionsNeeded(p);
}

absl::StatusOr<size_t> HipDecodeMaskWorkspaceBytes(const HipDecodeMaskGpuParams& p) {
  if (absl::Status s = ValidateShape(p); !s.ok()) return s;
  if (MaxStageInput(p, 0) > (int64_t{1} << 30)) return Invalid(kFn, "too many stage-1 chunks");
  return static_cast<size_t>(int64_t{p.batch} * p.num_kv_heads * ScoreStride(p) * sizeof(float));
}

absl::Status HipDecodeMaskGpu(const HipDecodeMaskGpuParams& p, void* stream_ptr) {
  if (absl::Status s = ValidateShape(p); !s.ok()) return s;
  const PruningSpec& spec = *p.spec;
  const int stages = spec.num_stages();
  const bool tiered = IsTiered(p.tiered);
  if (p.q == nullptr || p.kv_len == nullptr || p.rope == nullptr ||
      (!tiered && p.kv_start == nullptr)) {
    return Invalid(kFn, "q, kv_len, rope and (without a tiered source) kv_start must be non-null");
  }
  if (!Aligned16(p.q) || !Aligned16(p.rope))
    return Invalid(kFn, "q and rope must be 16-byte aligned");
  if (absl::Status st = hm::ValidateMaskKeySource(kFn, p.k_dtype, p.k, p.tiered, p.max_kv_len,
                                                  /*allow_entries=*/true);
      !st.ok()) {
    return st;
  }
  const int needed = RopePositionsNeeded(p);
  if (p.rope_positions < needed) {
    return Invalid(kFn,
                   absl::StrCat("rope table covers ", p.rope_positions, " positions; ",
                                PruningPositionsName(spec.positions), " pruning needs ", needed));
  }
  for (int s = std::max(0, p.start_stage - 1); s < stages; ++s) {
    if (p.state.starts[s] == nullptr || p.state.count[s] == nullptr ||
        p.state.range_end[s] == nullptr) {
      return Invalid(kFn, absl::StrCat("state lists of stage ", s, " must be non-null"));
    }
  }
  const size_t ws =
      static_cast<size_t>(int64_t{p.batch} * p.num_kv_heads * ScoreStride(p) * sizeof(float));
  if (p.workspace == nullptr || p.workspace_bytes < ws || !Aligned16(p.workspace)) {
    return Invalid(kFn, absl::StrCat("workspace of ", ws, " bytes (16-byte aligned) needed, got ",
                                     p.workspace_bytes));
  }
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const int group = p.num_heads / p.num_kv_heads;

  hm::StageArgs a{};
  a.q = static_cast<const uint16_t*>(p.q);
  a.keys = hm::MakeKeyArgs(p.k_dtype, p.k, p.tiered);
  a.kv_start = tiered ? nullptr : p.kv_start;
  a.kv_len = p.kv_len;
  a.rope = p.rope;
  a.seq_start_stage = p.seq_start_stage;
  a.num_heads = p.num_heads;
  a.num_kv_heads = p.num_kv_heads;
  a.group = group;
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
  a.scores = static_cast<float*>(p.workspace);
  a.score_stride = static_cast<int>(ScoreStride(p));

  for (int s = p.start_stage; s < stages; ++s) {
    a.stage = s;
    a.chunk_size = spec.chunk_sizes[s];
    a.iterations = std::max(1, CeilLog2(spec.chunk_sizes[s]));
    a.keep = spec.keep_chunks(s);
    // Summary granularity (mask_estimation.h): stage 1 keeps kHipPageSize and
    // mean_block_size, later stages at most their chunk size.
    a.reps = RepKindOf(spec.representatives(s));
    a.page_size = s == 0 ? kHipPageSize : std::min(kHipPageSize, spec.chunk_sizes[s]);
    a.mean_size =
        s == 0 ? spec.mean_block_size : std::min(spec.mean_block_size, spec.chunk_sizes[s]);
    a.exact_lanes = ExactLanes(spec.chunk_sizes[s]);
    if (s > 0) {
      a.in_starts = p.state.starts[s - 1];
      a.in_count = p.state.count[s - 1];
      a.in_range_end = p.state.range_end[s - 1];
      a.in_stride = spec.keep_chunks(s - 1);
      a.split = spec.chunk_sizes[s - 1] / spec.chunk_sizes[s];
    }
    a.out_starts = p.state.starts[s];
    a.out_count = p.state.count[s];
    a.out_range_end = p.state.range_end[s];
    const int64_t max_n = MaxStageInput(p, s);
    if (max_n > a.keep) {  // otherwise no sequence has anything to score
      if (absl::Status st = DispatchScore(a, max_n, p, stream); !st.ok()) return st;
    }
    hm::SelectKernel<kSelectThreads>
        <<<dim3(p.num_kv_heads, p.batch), kSelectThreads, 0, stream>>>(a);
    CUDA_RETURN_IF_ERROR(cudaGetLastError());
  }
  return absl::OkStatus();
}

}  // namespace hipserve::kernels
