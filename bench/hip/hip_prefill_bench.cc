// bench_hip_prefill: what it measures, how, and every flag are in kUsage at the end of this file
// (printed by --help).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "bench/bench_flags.h"
#include "bench/hip/hip_prefill_tiered_rows.h"
#include "bench/kernels/bench_check.h"
#include "bench/kernels/bench_timing.h"
#include "bench/kernels/fill_random.h"
#include "common/flags/flags.h"
#include "kernels/attention_cuda/bsa_prefill.h"
#include "kernels/attention_cuda/prefill_attention.h"
#include "kernels/hip/hip_params.h"
#include "kernels/hip/rope_table.h"
#include "kernels/hip_cuda/prefill_mask.h"

// Flags: see also kUsage at the end of the file (what each switch adds). '-' and '_' are
// interchangeable in names. The 0|1 switches take a value ("--exact 0"), as the run scripts do.
ABSL_FLAG(std::string, json, "", "Write the results as JSON to this file.");
ABSL_FLAG(int, reps, 10, "Timed calls at 128K (the median is reported), >= 1.");
ABSL_FLAG(int, reps_long, 3, "Timed full 1M passes (the median is reported), >= 1.");
ABSL_FLAG(int, t128k, 131072, "Prompt length of the one-chunk rows ('128K'), > 0.");
ABSL_FLAG(int, t1m, 1048576, "Prompt length of the chunked rows ('1M'), > 0.");
ABSL_FLAG(int, chunk, 32768, "Queries per chunk of the --t1m rows, in [1, --t1m].");
ABSL_FLAG(std::string, dense_1m, "full",
          "Dense 1M: full (every chunk timed), sample (a few chunks, extrapolated) or none.");
ABSL_FLAG(int, bsa_fp8, 1, "1: also time BSA alone at 128K with bf16 vs fp8 e5m2 K/V.");
ABSL_FLAG(int, bsa_tiered, 0, "1: add BSA-only rows reading tiered K/V (needs --bsa_fp8 1).");
ABSL_FLAG(int, exact, 1, "1: also time HiP at 128K with the exact score kernel.");
ABSL_FLAG(int, exact_1m, 0, "1: also one 1M pass with the exact score kernel.");
ABSL_FLAG(int, stages, 0, "1: also time the 128K mask cut to its first 1, 2, .. stages.");
ABSL_FLAG(int, prefetch_ab, 0, "1: also time the 128K mask with key prefetch off.");
ABSL_FLAG(int, threads_ab, 0,
          "1: also time the 128K mask with the other filter_block_threads (128 or 256).");
ABSL_FLAG(int, resident_ab, 0,
          "1: also time the mask with the tile kernel everywhere (resident_rows 0, the previous "
          "default) at 128K and in one 1M pass, and with the resident kernel on every stage (2) "
          "at 128K; each workspace checked equal to the default's.");
ABSL_FLAG(std::string, representatives, "probes",
          "Stage representatives (docs/HIP_NOTES.md 7): NAME (stage 1; later stages probes), "
          "NAME+all (every stage) or A/B/C (one per stage); NAME in probes, page_bound, "
          "block_means, exact.");
ABSL_FLAG(int, extend, 1,
          "1: context extension on (relative pruning positions, streaming BSA positions: HIP.md "
          "5); 0: real positions everywhere, what the server runs inside the model's pretrained "
          "window.");
ABSL_FLAG(int, layer, 8,
          "Layer whose pruning spec is timed, >= 0: the default config gives layers 0-2 k 4096 "
          "and chunk-indexed positions (with --extend 1), the others k 2048.");
ABSL_FLAG(std::string, commit, "unknown", "Commit recorded in the JSON.");

namespace hipserve::bench {
namespace {

struct Args {
  std::string json;
  int reps = 0;
  int extend = 1;
  int layer = 8;
  int reps_long = 0;
  int t128k = 0;
  int t1m = 0;
  int chunk = 0;
  std::string dense_1m;
  int bsa_fp8 = 0;
  int bsa_tiered = 0;
  int exact = 0;
  int exact_1m = 0;
  int stages = 0;
  int prefetch_ab = 0;
  int threads_ab = 0;
  int resident_ab = 0;
  std::string representatives;
  std::vector<kernels::Stage1Representatives> stage_reps;  // [stages], from --representatives
  std::string commit;
};

// --representatives into one option per stage of `stages`; false on a bad value.
bool ParseRepresentatives(const std::string& option, int stages,
                          std::vector<kernels::Stage1Representatives>* out) {
  using R = kernels::Stage1Representatives;
  auto one = [](const std::string& name, R* r) {
    for (R x : {R::kProbes, R::kPageBound, R::kBlockMeans, R::kExact}) {
      if (name == kernels::Stage1RepresentativesName(x)) {
        *r = x;
        return true;
      }
    }
    return false;
  };
  std::vector<std::string> names;
  const size_t plus = option.find("+all");
  if (plus != std::string::npos && plus + 4 == option.size()) {
    names.assign(stages, option.substr(0, plus));
  } else {
    size_t at = 0;
    while (true) {
      const size_t slash = option.find('/', at);
      names.push_back(option.substr(at, slash == std::string::npos ? slash : slash - at));
      if (slash == std::string::npos) break;
      at = slash + 1;
    }
    if (names.size() == 1) names.resize(stages, "probes");
  }
  if (static_cast<int>(names.size()) != stages) return false;
  out->assign(stages, R::kProbes);
  for (int i = 0; i < stages; ++i) {
    if (!one(names[i], &(*out)[i])) return false;
  }
  return true;
}

// The flags, range-checked (exits 2 naming the flag on a bad value).
Args ArgsFromFlags() {
  Args a;
  a.json = absl::GetFlag(FLAGS_json);
  a.reps = absl::GetFlag(FLAGS_reps);
  a.reps_long = absl::GetFlag(FLAGS_reps_long);
  a.t128k = absl::GetFlag(FLAGS_t128k);
  a.t1m = absl::GetFlag(FLAGS_t1m);
  a.chunk = absl::GetFlag(FLAGS_chunk);
  a.dense_1m = absl::GetFlag(FLAGS_dense_1m);
  a.bsa_fp8 = absl::GetFlag(FLAGS_bsa_fp8);
  a.bsa_tiered = absl::GetFlag(FLAGS_bsa_tiered);
  a.exact = absl::GetFlag(FLAGS_exact);
  a.exact_1m = absl::GetFlag(FLAGS_exact_1m);
  a.stages = absl::GetFlag(FLAGS_stages);
  a.prefetch_ab = absl::GetFlag(FLAGS_prefetch_ab);
  a.threads_ab = absl::GetFlag(FLAGS_threads_ab);
  a.resident_ab = absl::GetFlag(FLAGS_resident_ab);
  a.representatives = absl::GetFlag(FLAGS_representatives);
  a.extend = absl::GetFlag(FLAGS_extend);
  a.layer = absl::GetFlag(FLAGS_layer);
  a.commit = absl::GetFlag(FLAGS_commit);
  const bool reps_ok =
      ParseRepresentatives(a.representatives, kernels::HipConfig{}.num_stages(), &a.stage_reps);
  using flags::CheckFlag;
  ExitOnBadFlags(
      "bench_hip_prefill",
      {CheckFlag(a.reps >= 1, "reps", ">= 1", a.reps),
       CheckFlag(a.extend == 0 || a.extend == 1, "extend", "0 or 1", a.extend),
       CheckFlag(a.layer >= 0, "layer", ">= 0", a.layer),
       CheckFlag(a.reps_long >= 1, "reps_long", ">= 1", a.reps_long),
       CheckFlag(a.t128k > 0, "t128k", "> 0", a.t128k), CheckFlag(a.t1m > 0, "t1m", "> 0", a.t1m),
       CheckFlag(a.chunk > 0 && a.chunk <= a.t1m, "chunk", "in [1, --t1m]", a.chunk),
       CheckOneOf(a.dense_1m, {"full", "sample", "none"}, "dense_1m"),
       CheckSwitch(a.bsa_fp8, "bsa_fp8"), CheckSwitch(a.bsa_tiered, "bsa_tiered"),
       CheckFlag(a.bsa_tiered == 0 || a.bsa_fp8 == 1, "bsa_tiered", "0 with --bsa_fp8 0",
                 a.bsa_tiered),
       CheckSwitch(a.exact, "exact"), CheckSwitch(a.exact_1m, "exact_1m"),
       CheckSwitch(a.stages, "stages"), CheckSwitch(a.prefetch_ab, "prefetch_ab"),
       CheckSwitch(a.threads_ab, "threads_ab"), CheckSwitch(a.resident_ab, "resident_ab"),
       reps_ok ? absl::OkStatus()
               : absl::InvalidArgumentError(
                     "--representatives must be NAME, NAME+all or A/B/C (NAME in probes, "
                     "page_bound, block_means, exact), got '" +
                     a.representatives + "'")});
  return a;
}

constexpr int kHeads = 32, kKvHeads = 8, kHeadDim = 128;

struct Layer {
  void *q = nullptr, *k = nullptr, *v = nullptr, *out = nullptr;
  float* rope = nullptr;
  int rope_positions = 0;
  void* ws = nullptr;
  size_t ws_bytes = 0;
  kernels::HipConfig cfg;
  kernels::PruningSpec spec;
  bool tc_filter = true;  // HipPrefillMaskGpuParams::tensor_core_filter
  bool prefetch = true;   // HipPrefillMaskGpuParams::prefetch_keys
  int tc_threads = kernels::HipPrefillMaskGpuParams{}.filter_block_threads;  // the default
  int resident = kernels::HipPrefillMaskGpuParams{}.resident_rows;           // the default
};

kernels::HipPrefillMaskGpuParams MaskParams(const Layer& L, int q_offset, int num_q) {
  kernels::HipPrefillMaskGpuParams p;
  p.q = L.q;
  p.k = L.k;
  p.num_q = num_q;
  p.q_offset = q_offset;
  p.num_heads = kHeads;
  p.num_kv_heads = kKvHeads;
  p.head_dim = kHeadDim;
  p.block_q = L.cfg.block_q;
  p.n_sink = L.cfg.n_sink;
  p.spec = &L.spec;
  p.rope = L.rope;
  p.rope_positions = L.rope_positions;
  p.workspace = L.ws;
  p.workspace_bytes = L.ws_bytes;
  p.tensor_core_filter = L.tc_filter;
  p.prefetch_keys = L.prefetch;
  p.filter_block_threads = L.tc_threads;
  p.resident_rows = L.resident;
  return p;
}

// The mask workspace (all lists and the last stage's scores) on the host.
std::vector<uint8_t> WorkspaceCopy(const Layer& L, cudaStream_t s) {
  std::vector<uint8_t> h(L.ws_bytes);
  BENCH_CUDA(cudaMemcpyAsync(h.data(), L.ws, L.ws_bytes, cudaMemcpyDeviceToHost, s));
  BENCH_CUDA(cudaStreamSynchronize(s));
  return h;
}

int64_t BytesDiffering(const std::vector<uint8_t>& x, const std::vector<uint8_t>& y) {
  int64_t n = 0;
  for (size_t i = 0; i < x.size(); ++i) n += x[i] != y[i];
  return n;
}

void BsaChunk(const Layer& L, const kernels::HipPrefillPlan& plan, int q_offset, int num_q,
              const void* k, const void* v, kernels::KvDtype kv, cudaStream_t s);

// One HiP chunk: mask estimation then BSA. e_mid (optional) is recorded between the two.
void HipChunk(const Layer& L, int q_offset, int num_q, cudaStream_t s, cudaEvent_t e_mid) {
  absl::StatusOr<kernels::HipPrefillPlan> plan =
      kernels::HipPrefillMaskGpu(MaskParams(L, q_offset, num_q), s);
  BENCH_OK(plan.status());
  if (e_mid != nullptr) BENCH_CUDA(cudaEventRecord(e_mid, s));
  BsaChunk(L, *plan, q_offset, num_q, L.k, L.v, kernels::KvDtype::kBf16, s);
}

// The BSA params of one chunk on `plan`, with K/V `k`, `v` of dtype `kv`.
kernels::BsaPrefillGpuParams BsaParams(const Layer& L, const kernels::HipPrefillPlan& plan,
                                       int q_offset, int num_q, const void* k, const void* v,
                                       kernels::KvDtype kv) {
  kernels::BsaPrefillGpuParams b;
  b.q = L.q;
  b.k = k;
  b.v = v;
  b.kv_dtype = kv;
  b.out = L.out;
  b.num_q = num_q;
  b.q_offset = q_offset;
  b.num_heads = kHeads;
  b.num_kv_heads = kKvHeads;
  b.head_dim = kHeadDim;
  kernels::SetBsaPrefillPlan(plan, &b);
  b.n_sink = L.cfg.n_sink;
  b.n_window = L.cfg.n_window;
  b.extend = L.cfg.extend;
  b.rope = L.rope;
  b.rope_positions = L.rope_positions;
  b.scale = 1.f / std::sqrt(static_cast<float>(kHeadDim));
  return b;
}

// The BSA kernel of one chunk on `plan`, with K/V `k`, `v` of dtype `kv`.
void BsaChunk(const Layer& L, const kernels::HipPrefillPlan& plan, int q_offset, int num_q,
              const void* k, const void* v, kernels::KvDtype kv, cudaStream_t s) {
  BENCH_OK(kernels::BsaPrefillAttentionGpu(BsaParams(L, plan, q_offset, num_q, k, v, kv), s));
}

void DenseChunk(const Layer& L, int q_offset, int num_q, cudaStream_t s) {
  kernels::DensePrefillAttentionGpuParams p;
  p.q = L.q;
  p.k = L.k;
  p.v = L.v;
  p.out = L.out;
  p.num_q = num_q;
  p.q_offset = q_offset;
  p.num_heads = kHeads;
  p.num_kv_heads = kKvHeads;
  p.head_dim = kHeadDim;
  p.scale = 1.f / std::sqrt(static_cast<float>(kHeadDim));
  BENCH_OK(kernels::DensePrefillAttentionGpu(p, s));
}

// Dense causal FLOPs of queries [q_offset, q_offset + num_q): 4 * keys seen * D * H.
double DenseFlops(int q_offset, int num_q) {
  const double keys = double(num_q) * q_offset + double(num_q) * (num_q + 1) / 2;
  return 4.0 * keys * kHeadDim * kHeads;
}

int Main(const Args& a) {
  const auto [prop, driver] = QueryDevice(0);
  cudaStream_t s = NonBlockingStream();

  Layer L;
  int score_blocks_per_sm = 0, score_blocks_per_sm_256 = 0, resident_stages = 0;
  L.cfg = kernels::HipConfig{};  // "3K" preset, relative pruning positions, extend on
  L.cfg.extend = a.extend != 0;
  L.cfg.stage1_representatives = a.stage_reps[0];
  if (a.representatives != "probes") {
    L.cfg.later_stage_representatives.assign(a.stage_reps.begin() + 1, a.stage_reps.end());
  }
  L.spec = kernels::PruningSpecForLayer(L.cfg, a.layer);
  std::printf("stage representatives: %s; extend %d; layer %d (k %d, %s positions)\n",
              a.representatives.c_str(), a.extend, a.layer, L.spec.keep_tokens.back(),
              kernels::PruningPositionsName(L.spec.positions));
  const int max_t = std::max(a.t128k, a.t1m);
  const int max_q = std::max(a.t128k, a.chunk);
  const int64_t kv_elems = int64_t{max_t} * kKvHeads * kHeadDim;
  const int64_t q_elems = int64_t{max_q} * kHeads * kHeadDim;
  std::printf("device %s, %d SMs, L2 %.0f MB, driver %d; K and V %.2f GiB each, q %.2f GiB\n",
              prop.name, prop.multiProcessorCount, prop.l2CacheSize / 1e6, driver,
              kv_elems * 2 / 1073741824.0, q_elems * 2 / 1073741824.0);
  BENCH_CUDA(cudaMalloc(&L.k, kv_elems * 2));
  BENCH_CUDA(cudaMalloc(&L.v, kv_elems * 2));
  BENCH_CUDA(cudaMalloc(&L.q, q_elems * 2));
  BENCH_CUDA(cudaMalloc(&L.out, q_elems * 2));
  BENCH_CUDA(FillRandomBf16(L.k, kv_elems, 11, 2.f, s));
  BENCH_CUDA(FillRandomBf16(L.v, kv_elems, 22, 1.f, s));
  BENCH_CUDA(FillRandomBf16(L.q, q_elems, 33, 2.f, s));
  {
    kernels::RopeConfig rc;
    rc.theta = 500000.f;
    rc.scaling = kernels::RopeScaling::kLlama3;
    rc.factor = 8.f;
    absl::StatusOr<kernels::RopeTable> table = kernels::RopeTable::Create(rc, kHeadDim, max_t);
    BENCH_OK(table.status());
    const std::vector<float> rows = kernels::HipRopeRows(*table, max_t);
    BENCH_CUDA(cudaMalloc(&L.rope, rows.size() * sizeof(float)));
    BENCH_CUDA(
        cudaMemcpy(L.rope, rows.data(), rows.size() * sizeof(float), cudaMemcpyHostToDevice));
    L.rope_positions = max_t;
  }
  {
    size_t ws = 0;
    for (auto [off, n] : {std::pair<int, int>{0, a.t128k}, {a.t1m - a.chunk, a.chunk}}) {
      absl::StatusOr<size_t> b = kernels::HipPrefillMaskWorkspaceBytes(MaskParams(L, off, n));
      BENCH_OK(b.status());
      ws = std::max(ws, *b);
    }
    L.ws_bytes = ws;
    BENCH_CUDA(cudaMalloc(&L.ws, ws));
    std::printf("mask workspace %.1f MB\n", ws / 1e6);
    absl::StatusOr<int> bps = kernels::HipPrefillMaskScoreBlocksPerSm(kHeadDim, 128);
    BENCH_OK(bps.status());
    score_blocks_per_sm = *bps;
    bps = kernels::HipPrefillMaskScoreBlocksPerSm(kHeadDim, 256);
    BENCH_OK(bps.status());
    score_blocks_per_sm_256 = *bps;
    std::printf("filter score kernel: %d blocks of 128 threads or %d of 256 per SM\n",
                score_blocks_per_sm, score_blocks_per_sm_256);
    absl::StatusOr<int> res = kernels::HipPrefillMaskResidentStages(MaskParams(L, 0, a.t128k));
    BENCH_OK(res.status());
    resident_stages = *res;
    std::printf("stages on the resident-rows kernel (bit s = stage s): 0x%x\n", resident_stages);
  }
  BENCH_CUDA(cudaStreamSynchronize(s));

  // ---- 128K causal, one chunk.
  const int T = a.t128k;
  BENCH_CUDA(cudaMemsetAsync(L.out, 0xff, int64_t{T} * kHeads * kHeadDim * 2, s));
  for (int w = 0; w < 2; ++w) HipChunk(L, 0, T, s, nullptr);
  const int64_t bad_hip128 = CountNonFiniteBf16(L.out, int64_t{T} * kHeads * kHeadDim, s);
  std::vector<double> hip_ms, mask_ms, bsa_ms, dense_ms;
  cudaEvent_t e0, e1, e2;
  BENCH_CUDA(cudaEventCreate(&e0));
  BENCH_CUDA(cudaEventCreate(&e1));
  BENCH_CUDA(cudaEventCreate(&e2));
  // One HipChunk call timed: {mask ms, BSA ms}.
  auto time_chunk = [&](int q_offset, int num_q) {
    BENCH_CUDA(cudaEventRecord(e0, s));
    HipChunk(L, q_offset, num_q, s, e1);
    BENCH_CUDA(cudaEventRecord(e2, s));
    BENCH_CUDA(cudaEventSynchronize(e2));
    float m1 = 0, m2 = 0;
    BENCH_CUDA(cudaEventElapsedTime(&m1, e0, e1));
    BENCH_CUDA(cudaEventElapsedTime(&m2, e1, e2));
    return std::pair<float, float>{m1, m2};
  };
  auto time_hip128 = [&](int reps, std::vector<double>* hip, std::vector<double>* mask,
                         std::vector<double>* bsa) {
    for (int r = 0; r < reps; ++r) {
      const auto [m1, m2] = time_chunk(0, T);
      mask->push_back(m1);
      bsa->push_back(m2);
      hip->push_back(m1 + m2);
    }
  };
  time_hip128(a.reps, &hip_ms, &mask_ms, &bsa_ms);
  // Same run: the exact score kernel (the filter's reference), and the workspace check.
  std::vector<double> hipx_ms, maskx_ms, bsax_ms;
  int64_t ws_diff128 = -1;
  if (a.exact) {
    const std::vector<uint8_t> ws_tc = WorkspaceCopy(L, s);  // from the last filter call
    L.tc_filter = false;
    HipChunk(L, 0, T, s, nullptr);
    ws_diff128 = BytesDiffering(ws_tc, WorkspaceCopy(L, s));
    time_hip128(std::max(1, a.reps / 2), &hipx_ms, &maskx_ms, &bsax_ms);
    L.tc_filter = true;
  }
  // Mask alone with a performance variant of the filter (prefetch off / 256-thread blocks); its
  // workspace must equal the default's.
  const int kDefaultThreads = L.tc_threads;
  const int other_threads = kDefaultThreads == 256 ? 128 : 256;
  const int kDefaultResident = L.resident;
  auto time_variant = [&](const char* what, bool prefetch, int threads, double* ms, int64_t* diff,
                          int resident) {
    HipChunk(L, 0, T, s, nullptr);
    const std::vector<uint8_t> ws_default = WorkspaceCopy(L, s);
    L.prefetch = prefetch;
    L.tc_threads = threads;
    L.resident = resident;
    auto mask_only = [&] { BENCH_OK(kernels::HipPrefillMaskGpu(MaskParams(L, 0, T), s).status()); };
    mask_only();
    *diff = BytesDiffering(ws_default, WorkspaceCopy(L, s));
    std::vector<double> t;
    for (int r = 0; r < a.reps; ++r) t.push_back(TimeMs(s, mask_only));
    *ms = Median(t);
    L.prefetch = true;
    L.tc_threads = kDefaultThreads;
    L.resident = kDefaultResident;
    std::printf("  mask, %s: %.2f ms (workspace vs default: %lld bytes differ)\n", what, *ms,
                static_cast<long long>(*diff));
  };
  double mask_noprefetch_ms = 0, mask_t256_ms = 0;
  int64_t ws_diff_noprefetch = -1, ws_diff_t256 = -1;
  if (a.prefetch_ab) {
    time_variant("key prefetch off", false, kDefaultThreads, &mask_noprefetch_ms,
                 &ws_diff_noprefetch, kDefaultResident);
  }
  if (a.threads_ab) {
    const std::string what = std::to_string(other_threads) + "-thread filter blocks";
    time_variant(what.c_str(), true, other_threads, &mask_t256_ms, &ws_diff_t256, kDefaultResident);
  }
  double mask_tile_ms = 0, mask_res_all_ms = 0;
  int64_t ws_diff_tile = -1, ws_diff_res_all = -1;
  if (a.resident_ab) {
    time_variant("tile kernel everywhere (resident_rows 0, the previous default)", true,
                 kDefaultThreads, &mask_tile_ms, &ws_diff_tile, 0);
    time_variant("resident kernel on every stage (resident_rows 2)", true, kDefaultThreads,
                 &mask_res_all_ms, &ws_diff_res_all, 2);
  }
  // Mask time with only the first 1, 2, .. stages (cumulative).
  // Passes: the default; the other thread count (--threads_ab); the tile kernel everywhere
  // (--resident_ab).
  std::vector<double> stage_cum_ms, stage_cum_other_ms, stage_cum_tile_ms;
  for (int pass = 0; pass < (a.stages ? 3 : 0); ++pass) {
    if ((pass == 1 && !a.threads_ab) || (pass == 2 && !a.resident_ab)) continue;
    std::vector<double>& cum = pass == 0   ? stage_cum_ms
                               : pass == 1 ? stage_cum_other_ms
                                           : stage_cum_tile_ms;
    const int threads = pass == 1 ? other_threads : kDefaultThreads;
    for (int ns = 1; ns <= L.spec.num_stages(); ++ns) {
      Layer Ls = L;
      Ls.tc_threads = threads;
      Ls.resident = pass == 2 ? 0 : kDefaultResident;
      Ls.spec.chunk_sizes.resize(ns);
      Ls.spec.keep_tokens.resize(ns);
      Ls.spec.stride_q.resize(ns);
      auto mask_only = [&] {
        BENCH_OK(kernels::HipPrefillMaskGpu(MaskParams(Ls, 0, T), s).status());
      };
      mask_only();
      std::vector<double> t;
      for (int r = 0; r < a.reps; ++r) t.push_back(TimeMs(s, mask_only));
      cum.push_back(Median(t));
      std::printf(
          "  %d-thread filter%s, mask with stages 0..%d: %.2f ms (stage %d alone: %.2f ms)\n",
          threads, pass == 2 ? " (tile kernel everywhere)" : "", ns - 1, cum.back(), ns - 1,
          cum.back() - (ns > 1 ? cum[ns - 2] : 0.0));
    }
  }
  BENCH_CUDA(cudaMemsetAsync(L.out, 0xff, int64_t{T} * kHeads * kHeadDim * 2, s));
  for (int w = 0; w < 2; ++w) DenseChunk(L, 0, T, s);
  const int64_t bad_dense128 = CountNonFiniteBf16(L.out, int64_t{T} * kHeads * kHeadDim, s);
  for (int r = 0; r < a.reps; ++r) dense_ms.push_back(TimeMs(s, [&] { DenseChunk(L, 0, T, s); }));
  const double f128 = DenseFlops(0, T);
  const double hip128 = Median(hip_ms), dense128 = Median(dense_ms);
  std::printf("\n== %d causal (one chunk), median of %d\n", T, a.reps);
  std::printf("  dense flash      %10.2f ms  %6.1f TFLOP/s\n", dense128, f128 / dense128 / 1e9);
  std::printf("  HiP mask         %10.2f ms\n", Median(mask_ms));
  std::printf("  HiP BSA          %10.2f ms\n", Median(bsa_ms));
  std::printf("  HiP total        %10.2f ms  (eff %6.1f TFLOP/s)  dense/HiP = %.2fx (goal >= 5x)\n",
              hip128, f128 / hip128 / 1e9, dense128 / hip128);
  std::printf("  NaN outputs: HiP %lld, dense %lld\n", static_cast<long long>(bad_hip128),
              static_cast<long long>(bad_dense128));
  if (a.resident_ab) {
    std::printf(
        "  mask, tile kernel everywhere (resident_rows 0, the previous default): %.2f ms "
        "(default %.2f ms: tile/default = %.2fx; HiP with it %.2f ms, dense/HiP = %.2fx); "
        "workspace vs default: %lld bytes differ%s\n",
        mask_tile_ms, Median(mask_ms), mask_tile_ms / Median(mask_ms),
        mask_tile_ms + Median(bsa_ms), dense128 / (mask_tile_ms + Median(bsa_ms)),
        static_cast<long long>(ws_diff_tile),
        ws_diff_tile == 0 ? " (bit-identical)" : "  <-- MISMATCH");
    std::printf(
        "  mask, resident kernel on every stage (resident_rows 2): %.2f ms; workspace vs "
        "default: %lld bytes differ%s\n",
        mask_res_all_ms, static_cast<long long>(ws_diff_res_all),
        ws_diff_res_all == 0 ? " (bit-identical)" : "  <-- MISMATCH");
  }
  if (a.exact) {
    std::printf(
        "  exact score kernel (same run, median of %zu): HiP mask %.2f ms, BSA %.2f ms, "
        "total %.2f ms, dense/HiP = %.2fx; mask exact/filter = %.2fx\n",
        hipx_ms.size(), Median(maskx_ms), Median(bsax_ms), Median(hipx_ms),
        dense128 / Median(hipx_ms), Median(maskx_ms) / Median(mask_ms));
    std::printf("  mask workspace filter vs exact: %lld of %zu bytes differ%s\n",
                static_cast<long long>(ws_diff128), L.ws_bytes,
                ws_diff128 == 0 ? " (bit-identical)" : "  <-- MISMATCH");
  }

  // ---- BSA alone at T on one plan: bf16 vs fp8 e5m2 K/V, alternating call by call.
  double bsa_bf16_ms = 0, bsa_fp8_ms = 0;
  int64_t bad_bsa_fp8 = 0, bad_tiered = 0;
  std::vector<TieredBsaRow> tiered_rows;
  if (a.bsa_fp8) {
    const int64_t n = int64_t{T} * kKvHeads * kHeadDim;
    void *k8, *v8;
    BENCH_CUDA(cudaMalloc(&k8, n));
    BENCH_CUDA(cudaMalloc(&v8, n));
    BENCH_CUDA(FillRandomFp8E5m2(k8, n, 44, 2.f, s));
    BENCH_CUDA(FillRandomFp8E5m2(v8, n, 55, 1.f, s));
    absl::StatusOr<kernels::HipPrefillPlan> plan =
        kernels::HipPrefillMaskGpu(MaskParams(L, 0, T), s);
    BENCH_OK(plan.status());
    const auto bf16 = kernels::KvDtype::kBf16, fp8 = kernels::KvDtype::kFp8E5m2;
    BENCH_CUDA(cudaMemsetAsync(L.out, 0xff, int64_t{T} * kHeads * kHeadDim * 2, s));
    for (int w = 0; w < 2; ++w) BsaChunk(L, *plan, 0, T, k8, v8, fp8, s);
    bad_bsa_fp8 = CountNonFiniteBf16(L.out, int64_t{T} * kHeads * kHeadDim, s);
    BsaChunk(L, *plan, 0, T, L.k, L.v, bf16, s);
    std::vector<double> tb, tf;
    for (int r = 0; r < a.reps; ++r) {
      tb.push_back(TimeMs(s, [&] { BsaChunk(L, *plan, 0, T, L.k, L.v, bf16, s); }));
      tf.push_back(TimeMs(s, [&] { BsaChunk(L, *plan, 0, T, k8, v8, fp8, s); }));
    }
    bsa_bf16_ms = Median(tb);
    bsa_fp8_ms = Median(tf);
    std::printf(
        "  BSA only, bf16 K/V %8.2f ms; fp8 e5m2 K/V %8.2f ms; fp8/bf16 = %.3f "
        "(NaN outputs fp8: %lld)\n",
        bsa_bf16_ms, bsa_fp8_ms, bsa_fp8_ms / bsa_bf16_ms, static_cast<long long>(bad_bsa_fp8));
    if (a.bsa_tiered) {
      tiered_rows = TimeTieredBsa(BsaParams(L, *plan, 0, T, L.k, L.v, bf16), k8, v8,
                                  {1.0, 0.9, 0.5}, a.reps, s);
      for (const TieredBsaRow& r : tiered_rows) bad_tiered += r.nan;
    }
    BENCH_CUDA(cudaFree(k8));
    BENCH_CUDA(cudaFree(v8));
  }

  // ---- 1M in chunks.
  const int n_chunks = a.t1m / a.chunk;
  std::vector<std::vector<double>> hip_chunk(n_chunks), mask_chunk(n_chunks), dense_chunk(n_chunks);
  std::vector<double> hip_pass;
  BENCH_CUDA(cudaMemsetAsync(L.out, 0xff, int64_t{a.chunk} * kHeads * kHeadDim * 2, s));
  HipChunk(L, 0, a.chunk, s, nullptr);  // warm-up
  for (int r = 0; r < a.reps_long; ++r) {
    double total = 0;
    for (int c = 0; c < n_chunks; ++c) {
      const auto [m1, m2] = time_chunk(c * a.chunk, a.chunk);
      hip_chunk[c].push_back(m1 + m2);
      mask_chunk[c].push_back(m1);
      total += m1 + m2;
    }
    hip_pass.push_back(total);
  }
  const int64_t bad_hip1m = CountNonFiniteBf16(L.out, int64_t{a.chunk} * kHeads * kHeadDim, s);
  // One pass with the exact score kernel; the last chunk's workspace checked against the filter.
  std::vector<double> hipx_chunk(n_chunks), maskx_chunk(n_chunks);
  double hipx1m = 0;
  int64_t ws_diff1m = -1;
  if (a.exact_1m) {
    L.tc_filter = false;
    for (int c = 0; c < n_chunks; ++c) {
      const auto [m1, m2] = time_chunk(c * a.chunk, a.chunk);
      hipx_chunk[c] = m1 + m2;
      maskx_chunk[c] = m1;
      hipx1m += m1 + m2;
    }
    const std::vector<uint8_t> ws_exact = WorkspaceCopy(L, s);
    L.tc_filter = true;
    HipChunk(L, (n_chunks - 1) * a.chunk, a.chunk, s, nullptr);
    ws_diff1m = BytesDiffering(ws_exact, WorkspaceCopy(L, s));
  }
  // One pass with the tile kernel everywhere (the previous default); the last chunk's workspace
  // checked against the default's.
  std::vector<double> hipt_chunk(n_chunks), maskt_chunk(n_chunks);
  double hipt1m = 0;
  int64_t ws_diff_tile1m = -1;
  if (a.resident_ab) {
    L.resident = 0;
    for (int c = 0; c < n_chunks; ++c) {
      const auto [m1, m2] = time_chunk(c * a.chunk, a.chunk);
      hipt_chunk[c] = m1 + m2;
      maskt_chunk[c] = m1;
      hipt1m += m1 + m2;
    }
    const std::vector<uint8_t> ws_tile = WorkspaceCopy(L, s);
    L.resident = kDefaultResident;
    HipChunk(L, (n_chunks - 1) * a.chunk, a.chunk, s, nullptr);
    ws_diff_tile1m = BytesDiffering(ws_tile, WorkspaceCopy(L, s));
  }
  // Dense: full passes, or sampled chunks + linear extrapolation.
  std::vector<int> dense_sampled;
  double dense1m = 0;
  int dense_passes = 0;
  int64_t bad_dense1m = 0;
  if (a.dense_1m != "none") {
    BENCH_CUDA(cudaMemsetAsync(L.out, 0xff, int64_t{a.chunk} * kHeads * kHeadDim * 2, s));
    DenseChunk(L, 0, a.chunk, s);  // warm-up
    std::vector<int> which;
    if (a.dense_1m == "full") {
      for (int c = 0; c < n_chunks; ++c) which.push_back(c);
    } else {
      which = {0, n_chunks / 4, n_chunks / 2, 3 * n_chunks / 4, n_chunks - 1};
      which.erase(std::unique(which.begin(), which.end()), which.end());
    }
    dense_passes = a.dense_1m == "full" ? 1 : a.reps_long;
    for (int r = 0; r < dense_passes; ++r) {
      for (int c : which) {
        dense_chunk[c].push_back(TimeMs(s, [&] { DenseChunk(L, c * a.chunk, a.chunk, s); }));
      }
    }
    bad_dense1m = CountNonFiniteBf16(L.out, int64_t{a.chunk} * kHeads * kHeadDim, s);
    if (a.dense_1m == "full") {
      for (int c = 0; c < n_chunks; ++c) dense1m += Median(dense_chunk[c]);
    } else {
      dense_sampled = which;
      // Piecewise-linear interpolation over the chunk index between sampled chunks.
      for (int c = 0; c < n_chunks; ++c) {
        size_t j = 1;
        while (j + 1 < which.size() && which[j] < c) ++j;
        const int c0 = which[j - 1], c1 = which[j];
        const double t0 = Median(dense_chunk[c0]), t1 = Median(dense_chunk[c1]);
        dense1m += t0 + (t1 - t0) * (c - c0) / std::max(1, c1 - c0);
      }
    }
  }
  const double hip1m = Median(hip_pass);
  const double f1m = DenseFlops(0, n_chunks * a.chunk);
  std::printf("\n== %d in %d-query chunks (%d chunks)\n", n_chunks * a.chunk, a.chunk, n_chunks);
  std::printf("  HiP total        %10.1f ms  (median of %d full passes)\n", hip1m, a.reps_long);
  if (a.dense_1m != "none") {
    std::printf("  dense flash      %10.1f ms  %6.1f TFLOP/s  (%s)\n", dense1m, f1m / dense1m / 1e9,
                a.dense_1m == "full" ? "one full pass, every chunk timed"
                                     : "EXTRAPOLATED from sampled chunks");
    std::printf("  dense/HiP = %.2fx (goal >= 15x)\n", dense1m / hip1m);
  }
  if (a.exact_1m) {
    std::printf(
        "  exact score kernel (same run, one pass): HiP %.1f ms%s; HiP exact/filter = "
        "%.2fx\n",
        hipx1m,
        a.dense_1m != "none" ? (", dense/HiP = " + std::to_string(dense1m / hipx1m) + "x").c_str()
                             : "",
        hipx1m / hip1m);
    std::printf("  last chunk's mask workspace filter vs exact: %lld bytes differ%s\n",
                static_cast<long long>(ws_diff1m),
                ws_diff1m == 0 ? " (bit-identical)" : "  <-- MISMATCH");
  }
  if (a.resident_ab) {
    std::printf(
        "  tile kernel everywhere (resident_rows 0, the previous default; same run, one pass): "
        "HiP %.1f ms%s; HiP tile/default = %.2fx\n",
        hipt1m,
        a.dense_1m != "none" ? (", dense/HiP = " + std::to_string(dense1m / hipt1m) + "x").c_str()
                             : "",
        hipt1m / hip1m);
    std::printf("  last chunk's mask workspace tile vs default: %lld bytes differ%s\n",
                static_cast<long long>(ws_diff_tile1m),
                ws_diff_tile1m == 0 ? " (bit-identical)" : "  <-- MISMATCH");
    std::printf("  per chunk, tile kernel (ms):   c   HiP(mask)\n");
    for (int c = 0; c < n_chunks; c += std::max(1, n_chunks / 8)) {
      std::printf("                               %3d %8.2f(%7.2f)\n", c, hipt_chunk[c],
                  maskt_chunk[c]);
    }
  }
  std::printf("  per chunk (ms):   c   HiP(mask)   dense   exact HiP(mask)\n");
  for (int c = 0; c < n_chunks; c += std::max(1, n_chunks / 8)) {
    std::printf("                  %3d %8.2f(%7.2f) %8.2f  %8.2f(%7.2f)\n", c, Median(hip_chunk[c]),
                Median(mask_chunk[c]), dense_chunk[c].empty() ? 0.0 : Median(dense_chunk[c]),
                hipx_chunk[c], maskx_chunk[c]);
  }
  std::printf("  NaN outputs (last chunk): HiP %lld, dense %lld\n",
              static_cast<long long>(bad_hip1m), static_cast<long long>(bad_dense1m));

  if (!a.json.empty()) {
    std::string j = JsonDeviceHead("hip_prefill", prop, driver, /*with_l2=*/false);
    j += "  \"filter_block_threads\": " + std::to_string(L.tc_threads) + ",\n";
    j += "  \"score_kernel_blocks_per_sm\": " +
         std::to_string(L.tc_threads == 256 ? score_blocks_per_sm_256 : score_blocks_per_sm) +
         ",\n";
    j += JsonCommitDate(a.commit);
    j += "  \"representatives\": \"" + a.representatives + "\",\n";
    j += "  \"extend\": " + std::to_string(a.extend) + ", \"layer\": " + std::to_string(a.layer) +
         ", \"layer_k\": " + std::to_string(L.spec.keep_tokens.back()) + ",\n";
    j += "  \"shape\": {\"batch\": 1, \"heads\": 32, \"kv_heads\": 8, \"head_dim\": 128, "
         "\"dtype\": \"bf16\", \"chunk_sizes\": [256, 32, 8], \"keep\": [32768, 8192, " +
         std::to_string(L.spec.keep_tokens.back()) +
         "], "
         "\"stride_q\": [4, 4, 1], \"block_q\": 64, \"n_sink\": 256, \"n_window\": 1024, "
         "\"pruning_positions\": \"" +
         std::string(kernels::PruningPositionsName(L.spec.positions)) +
         "\", \"extend\": " + (a.extend ? "true" : "false") + ", \"rope\": \"llama3\"},\n";
    char buf[1024];
    std::snprintf(buf, sizeof(buf),
                  "  \"t128k\": {\"T\": %d, \"reps\": %d, \"dense_ms\": %.3f, \"dense_tflops\": "
                  "%.1f, \"hip_ms\": %.3f, \"hip_mask_ms\": %.3f, \"hip_bsa_ms\": %.3f, "
                  "\"ratio_dense_over_hip\": %.3f, \"goal_ratio\": 5, \"nan_hip\": %lld, "
                  "\"nan_dense\": %lld},\n",
                  T, a.reps, dense128, f128 / dense128 / 1e9, hip128, Median(mask_ms),
                  Median(bsa_ms), dense128 / hip128, static_cast<long long>(bad_hip128),
                  static_cast<long long>(bad_dense128));
    j += buf;
    if (a.exact) {
      std::snprintf(buf, sizeof(buf),
                    "  \"t128k_exact_score_kernel\": {\"reps\": %zu, \"hip_ms\": %.3f, "
                    "\"hip_mask_ms\": %.3f, \"hip_bsa_ms\": %.3f, \"ratio_dense_over_hip\": "
                    "%.3f, \"mask_exact_over_filter\": %.3f, \"workspace_bytes_differing\": "
                    "%lld},\n",
                    hipx_ms.size(), Median(hipx_ms), Median(maskx_ms), Median(bsax_ms),
                    dense128 / Median(hipx_ms), Median(maskx_ms) / Median(mask_ms),
                    static_cast<long long>(ws_diff128));
      j += buf;
    }
    if (a.prefetch_ab) {
      std::snprintf(buf, sizeof(buf),
                    "  \"t128k_mask_no_prefetch\": {\"reps\": %d, \"mask_ms\": %.3f, "
                    "\"workspace_bytes_differing\": %lld},\n",
                    a.reps, mask_noprefetch_ms, static_cast<long long>(ws_diff_noprefetch));
      j += buf;
    }
    if (a.threads_ab) {
      std::snprintf(buf, sizeof(buf),
                    "  \"t128k_mask_other_thread_blocks\": {\"threads\": %d, \"reps\": %d, "
                    "\"mask_ms\": %.3f, \"blocks_per_sm\": %d, "
                    "\"workspace_bytes_differing\": %lld},\n",
                    other_threads, a.reps, mask_t256_ms,
                    other_threads == 256 ? score_blocks_per_sm_256 : score_blocks_per_sm,
                    static_cast<long long>(ws_diff_t256));
      j += buf;
    }
    if (!stage_cum_ms.empty()) {
      j += "  \"t128k_mask_first_stages_ms\": " + JsonNumbers(stage_cum_ms) + ",\n";
    }
    j += "  \"resident_stages\": " + std::to_string(resident_stages) + ",\n";
    if (a.resident_ab) {
      std::snprintf(buf, sizeof(buf),
                    "  \"t128k_mask_tile_kernel\": {\"resident_rows\": 0, \"reps\": %d, "
                    "\"mask_ms\": %.3f, \"workspace_bytes_differing\": %lld},\n"
                    "  \"t128k_mask_resident_every_stage\": {\"resident_rows\": 2, \"reps\": "
                    "%d, \"mask_ms\": %.3f, \"workspace_bytes_differing\": %lld},\n",
                    a.reps, mask_tile_ms, static_cast<long long>(ws_diff_tile), a.reps,
                    mask_res_all_ms, static_cast<long long>(ws_diff_res_all));
      j += buf;
      std::snprintf(
          buf, sizeof(buf),
          "  \"t1m_tile_kernel\": {\"resident_rows\": 0, \"passes\": 1, \"hip_ms\": "
          "%.1f, \"ratio_dense_over_hip\": %.3f, \"last_chunk_workspace_bytes_differing\": "
          "%lld, \"chunk_mask_ms\": ",
          hipt1m, dense1m > 0 ? dense1m / hipt1m : 0.0, static_cast<long long>(ws_diff_tile1m));
      j += buf + JsonNumbers(maskt_chunk) + "},\n";
    }
    if (!stage_cum_tile_ms.empty()) {
      j +=
          "  \"t128k_mask_first_stages_tile_kernel_ms\": " + JsonNumbers(stage_cum_tile_ms) + ",\n";
    }
    if (!stage_cum_other_ms.empty()) {
      j += "  \"t128k_mask_first_stages_other_threads_ms\": " + JsonNumbers(stage_cum_other_ms) +
           ",\n";
    }
    if (a.exact_1m) {
      std::snprintf(buf, sizeof(buf),
                    "  \"t1m_exact_score_kernel\": {\"passes\": 1, \"hip_ms\": %.1f, "
                    "\"ratio_dense_over_hip\": %.3f, \"hip_exact_over_filter\": %.3f, "
                    "\"last_chunk_workspace_bytes_differing\": %lld, \"chunk_mask_ms\": ",
                    hipx1m, dense1m > 0 ? dense1m / hipx1m : 0.0, hipx1m / hip1m,
                    static_cast<long long>(ws_diff1m));
      j += buf + JsonNumbers(maskx_chunk) + "},\n";
    }
    if (a.bsa_fp8) {
      std::snprintf(buf, sizeof(buf),
                    "  \"t128k_bsa_kv_dtype\": {\"T\": %d, \"reps\": %d, \"bsa_bf16_ms\": "
                    "%.3f, \"bsa_fp8_e5m2_ms\": %.3f, \"fp8_over_bf16\": %.4f, "
                    "\"nan_fp8\": %lld},\n",
                    T, a.reps, bsa_bf16_ms, bsa_fp8_ms, bsa_fp8_ms / bsa_bf16_ms,
                    static_cast<long long>(bad_bsa_fp8));
      j += buf;
    }
    if (!tiered_rows.empty()) {
      j += "  \"t128k_bsa_tiered\": {\"T\": " + std::to_string(T) +
           ", \"reps\": " + std::to_string(a.reps) + ", \"rows\": " + TieredRowsJson(tiered_rows) +
           "},\n";
    }
    std::snprintf(buf, sizeof(buf),
                  "  \"t1m\": {\"T\": %d, \"chunk\": %d, \"hip_passes\": %d, \"hip_ms\": %.1f, "
                  "\"dense_mode\": \"%s\", \"dense_passes\": %d, \"dense_ms\": %.1f, "
                  "\"dense_extrapolated\": %s, \"ratio_dense_over_hip\": %.3f, \"goal_ratio\": "
                  "15, \"nan_hip\": %lld, \"nan_dense\": %lld,\n    \"chunks\": [",
                  n_chunks * a.chunk, a.chunk, a.reps_long, hip1m, a.dense_1m.c_str(), dense_passes,
                  dense1m, a.dense_1m == "sample" ? "true" : "false",
                  dense1m > 0 ? dense1m / hip1m : 0.0, static_cast<long long>(bad_hip1m),
                  static_cast<long long>(bad_dense1m));
    j += buf;
    for (int c = 0; c < n_chunks; ++c) {
      std::snprintf(buf, sizeof(buf), "%s{\"c\": %d, \"hip_ms\": %.3f, \"mask_ms\": %.3f%s}",
                    c ? ", " : "", c, Median(hip_chunk[c]), Median(mask_chunk[c]),
                    dense_chunk[c].empty()
                        ? ""
                        : (", \"dense_ms\": " + std::to_string(Median(dense_chunk[c]))).c_str());
      j += buf;
    }
    j += "]}\n}\n";
    if (!WriteTextFile(a.json, j)) return 1;
  }
  const int64_t bad =
      bad_hip128 + bad_dense128 + bad_hip1m + bad_dense1m + bad_bsa_fp8 + bad_tiered;
  // 4: the filter (or a performance knob) changed a score or a list.
  if (ws_diff128 > 0 || ws_diff1m > 0 || ws_diff_noprefetch > 0 || ws_diff_t256 > 0 ||
      ws_diff_tile > 0 || ws_diff_res_all > 0 || ws_diff_tile1m > 0) {
    return 4;
  }
  return bad == 0 ? 0 : 3;
}

}  // namespace
}  // namespace hipserve::bench

namespace {

constexpr char kUsage[] =
    R"(bench_hip_prefill (K4): HiP prefill on the GPU (HipPrefillMaskGpu + BsaPrefillAttentionGpu, the
"3K" preset, relative pruning positions, streaming BSA positions, Llama 3.1 RoPE rotated
in-kernel from un-rotated keys) against our dense flash causal prefill
(DensePrefillAttentionGpu) in the same run, "8B layer" (32 query heads, 8 KV heads, head dim
128, bf16, batch 1):
  - 128K causal, one call each (the whole prompt is one chunk);
  - 1M in 32K-query chunks (chunk c: q_offset = 32K c over the 32K (c + 1) keys so far),
    timed chunk by chunk with CUDA events inside full passes; the total is the sum.
Method (shared/BENCHMARKS.md): CUDA events on one stream, warm-up, median of --reps (128K) and
of --reps_long full passes (1M; multi-second, so fewer, printed and in the JSON); random bf16
data; outputs NaN-poisoned before and checked after. Dense TFLOP/s counts the causal half
(4 * sum over queries of keys seen * head_dim * heads); HiP's "eff" TFLOP/s divides the same
dense FLOPs by HiP's time. If --dense_1m sample, dense 1M is timed on a few chunks and
extrapolated (linear in the chunk index, which dense cost is); the output says so.
--bsa_fp8 1 (default) also times the BSA kernel alone at 128K on one plan with bf16 K/V and
with fp8 e5m2 K/V (random codes), alternating call by call, and prints fp8's time over bf16's.
--bsa_tiered 1 (needs --bsa_fp8 1; default 0) adds BSA-only rows at 128K reading K/V through a
tiered source (bf16 and fp8 banks at 100 / 90 / 50% hits, misses from fp8 pages in mapped
host memory) with the all-hot time of the same dtype from the same run
(hip_prefill_tiered_rows.h).
The mask runs with the tensor-core filter-then-verify score kernel (the default). --exact 1
(default) also times HiP at 128K with the exact score kernel (HipPrefillMaskGpuParams::
tensor_core_filter = false) in the same run, and --exact_1m 1 (default 0) one 1M pass with it;
each also checks that both kernels leave byte-identical mask workspaces (lists and scores).

  bench_hip_prefill [--json out.json] [--reps 10] [--reps_long 3] [--t128k 131072]
                    [--t1m 1048576] [--chunk 32768] [--dense_1m full|sample|none]
                    [--bsa_fp8 0|1] [--bsa_tiered 0|1] [--exact 0|1] [--exact_1m 0|1]
                    [--stages 0|1] [--prefetch_ab 0|1] [--threads_ab 0|1] [--resident_ab 0|1]
                    [--representatives probes|NAME+all|A/B/C] [--commit SHA]
--prefetch_ab 1 / --threads_ab 1 also time the 128K mask with HipPrefillMaskGpuParams::
prefetch_keys off / the other filter_block_threads value (128 or 256; median of --reps) and
check that the workspace equals the default run's; with --stages 1, --threads_ab 1 also
times the stage cuts with the other value.
--resident_ab 1 also times the mask with HipPrefillMaskGpuParams::resident_rows = 0 (the tile
kernel on every stage: the default before the resident-rows kernel) at 128K (median of --reps)
and in one full 1M pass (per chunk, after the default passes), and with resident_rows = 2 (the
resident kernel on every stage it fits) at 128K; each workspace must equal the default's (exit
code 4 otherwise); with --stages 1 it also times the stage cuts with resident_rows = 0.
--stages 1 also times the 128K mask alone with the spec cut to its first 1, 2, .. stages
(median of --reps each): successive differences are the stages' own times (score + select).
)";

}  // namespace

int main(int argc, char** argv) {
  hipserve::flags::ParseProgramFlagsOrExit(argc, argv, kUsage, __FILE__);
  return hipserve::bench::Main(hipserve::bench::ArgsFromFlags());
}
