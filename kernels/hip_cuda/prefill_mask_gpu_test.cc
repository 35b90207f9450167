// HiP PREFILL mask estimation on the GPU against the CPU reference EstimateMaskRef, run per
// (query block, KV head) exactly as worker/hip_attention.cc runs it: every stage's kept list
// (starts, count, range_end) and the final block list must be EXACTLY equal on the same bf16
// inputs. Every case runs both score kernels (tensor-core filter-then-verify, the default, and
// the exact one) and their whole workspaces (lists, counts and the last stage's chunk scores)
// must be equal byte for byte (the filter also with key prefetch off / 256-thread blocks).
// Adversarial inputs (near-tied, duplicated, huge, tiny, subnormal, fp16-range edges and non-finite
// values) stress the filter's error bound and its fallback. Workspaces poisoned (0xff) before each
// run. ctest label gpu; GTEST_SKIP without a device.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/device.h"
#include "kernels/dtype/bf16.h"
#include "kernels/hip/hip_params.h"
#include "kernels/hip/mask_estimation.h"
#include "kernels/hip/rope_table.h"
#include "kernels/hip_cuda/prefill_mask.h"
#include "kernels/testing/compare.h"
#include "kernels/testing/device_vec.h"

namespace hipserve::kernels {
namespace {

using testing::DeviceVec;

// kSmallOddStride: kSmall with stride_q {3, 5, 2}: group query counts 3 and 5 (the division
// path of the row averaging; powers of two take the exact-reciprocal product) besides 1, 2, 4.
enum class Spec { kSmall, kDefault, kLayer0, kSmallOddStride };
// Input data. Scales are powers of two, so scaled bf16 values stay exact.
enum class Data {
  kRandom,         // q, k uniform in [-1, 1]
  kAllEqualKeys,   // every key the same: every probe score ties
  kNearTieRows,    // every query = one base vector, 1 element in 16 moved by +-1 bf16 ulp
  kDuplicateRows,  // every query (token and head) the same: all scoring rows equal
  kLarge,          // q * 2^40, k * 2^20 (products ~2^60; norms past 2^15: exact fallback)
  kTiny,           // q * 2^-60, k * 2^-60 (products ~2^-120; the bound's floor dominates)
  kSubnormal,      // q * 2^-70, k * 2^-70 (subnormal products)
  kHuge,           // q * 2^62 (row norms past kTcNormMax: exact fallback everywhere)
  kNonFinite,      // some keys inf / NaN, one query inf (only filter == exact is checked)
  // The fp16 filter's edges: per-token power-of-two scales, q tokens from 2^-20 (fp16 subnormal
  // elements) to 2^14 (row norms past kTcNormMax = 2^15: those tiles fall back), keys from 2^-22
  // to 2^12 (key norms both sides of 2^15), so filtered and fallback probes / tiles mix.
  kMixedScale,
  // q * 2^-11 (some elements in the fp16 subnormal range, below 2^-14), k * 2^11 (key norms
  // ~2^13.7, just inside kTcNormMax): the filter runs with the subnormal conversion error.
  kHalfSubnormal,
  // Query tokens t with t % 37 == 3 scaled by 2^20 (their rows' norms are past kTcNormMax):
  // in the resident-rows kernel 1-2 of a block's four 64-row groups fall back to exact scoring
  // while the others filter; in the tile kernel, the tiles holding them.
  kSomeHugeTokens,
};

struct PrefillMaskCase {
  std::string name;
  int num_kv;  // keys so far = q_offset + num_q
  int num_q;   // the chunk's queries (the last num_q positions)
  int heads, kv_heads, head_dim;
  PruningPositions positions;
  Spec spec;
  Data data = Data::kRandom;
  // Every stage's representatives (entry 0 = stage 1; empty = probes everywhere).
  std::vector<Stage1Representatives> reps = {};
  int n_window = -1;  // >= 0: replaces the spec's n_window (0 / 8 leave the last page open)
  int mean_block_size = 16;
};

HipConfig ConfigFor(const PrefillMaskCase& c) {
  HipConfig cfg;
  if (c.spec == Spec::kSmall || c.spec == Spec::kSmallOddStride) {
    // (64, 16, 8) keeping (512, 128, 64): every stage scores at a few thousand keys.
    cfg.n_sink = 16;
    cfg.n_window = 64;
    cfg.chunk_sizes = {64, 16, 8};
    cfg.stage_keep = {512, 128};
    cfg.k = 64;
    cfg.stride_q = {4, 2, 1};
    if (c.spec == Spec::kSmallOddStride) cfg.stride_q = {3, 5, 2};
  }
  if (c.spec != Spec::kLayer0) cfg.layer_overrides.clear();
  cfg.extend = c.positions != PruningPositions::kReal;
  cfg.pruning_positions = cfg.extend ? c.positions : PruningPositions::kRelative;
  if (c.spec == Spec::kLayer0) cfg.layer_overrides[0].pruning_positions = c.positions;
  if (!c.reps.empty()) {
    cfg.stage1_representatives = c.reps[0];
    cfg.later_stage_representatives.assign(c.reps.begin() + 1, c.reps.end());
  }
  if (c.n_window >= 0) cfg.n_window = c.n_window;
  cfg.mean_block_size = c.mean_block_size;
  return cfg;
}

RopeConfig Llama3Rope() {
  RopeConfig rc;
  rc.theta = 500000.f;
  rc.scaling = RopeScaling::kLlama3;
  rc.factor = 8.f;
  rc.low_freq_factor = 1.f;
  rc.high_freq_factor = 4.f;
  rc.original_max_position = 8192;
  return rc;
}

std::vector<float> RandomBf16(int64_t n, uint64_t seed) {
  std::vector<float> v = testing::RandomVector(n, seed);
  RoundToBf16InPlace(v.data(), n);
  return v;
}

// Scales every element by 2^e (exact for bf16 values in range).
void ScaleBy(std::vector<float>* v, int e) {
  for (float& x : *v) x = std::ldexp(x, e);
}

int q_offset_of(const PrefillMaskCase& c) { return c.num_kv - c.num_q; }

// q [num_q, heads, d] and k [num_kv, kv_heads, d], bf16-exact, for the case's data kind.
void MakeData(const PrefillMaskCase& c, uint64_t seed, std::vector<float>* q,
              std::vector<float>* k) {
  const int d = c.head_dim;
  const int64_t qrow = int64_t{c.heads} * d, krow = int64_t{c.kv_heads} * d;
  *q = RandomBf16(c.num_q * qrow, seed + 1);
  *k = RandomBf16(c.num_kv * krow, seed + 2);
  switch (c.data) {
    case Data::kRandom:
      break;
    case Data::kAllEqualKeys:
      for (int64_t t = 1; t < c.num_kv; ++t) {
        std::copy(k->begin(), k->begin() + krow, k->begin() + t * krow);
      }
      break;
    case Data::kNearTieRows: {
      std::mt19937_64 rng(seed + 3);
      for (int64_t t = 0; t < c.num_q; ++t) {
        for (int64_t e = 0; e < qrow; ++e) {
          float x = (*q)[e % d];  // one base vector for every token and head
          const uint64_t r = rng();
          if ((r & 15) == 0 && x != 0.f) {  // +-1 ulp of bf16
            uint32_t bits;
            std::memcpy(&bits, &x, 4);
            bits += (r & 16) ? 0x10000u : 0xffff0000u;
            std::memcpy(&x, &bits, 4);
          }
          (*q)[t * qrow + e] = x;
        }
      }
      break;
    }
    case Data::kDuplicateRows:
      for (int64_t t = 0; t < c.num_q; ++t) {
        for (int64_t e = 0; e < qrow; ++e) (*q)[t * qrow + e] = (*q)[e % d];
      }
      break;
    case Data::kLarge:
      ScaleBy(q, 40);
      ScaleBy(k, 20);
      break;
    case Data::kTiny:
      ScaleBy(q, -60);
      ScaleBy(k, -60);
      break;
    case Data::kSubnormal:
      ScaleBy(q, -70);
      ScaleBy(k, -70);
      break;
    case Data::kHuge:
      ScaleBy(q, 62);
      break;
    case Data::kMixedScale: {
      for (int64_t t = 0; t < c.num_q; ++t) {
        const int e = -20 + static_cast<int>((t * 7) % 35);  // -20 .. 14
        for (int64_t i = 0; i < qrow; ++i) (*q)[t * qrow + i] = std::ldexp((*q)[t * qrow + i], e);
      }
      for (int64_t t = 0; t < c.num_kv; ++t) {
        const int e = -22 + static_cast<int>((t * 13) % 35);  // -22 .. 12
        for (int64_t i = 0; i < krow; ++i) (*k)[t * krow + i] = std::ldexp((*k)[t * krow + i], e);
      }
      break;
    }
    case Data::kHalfSubnormal:
      ScaleBy(q, -11);
      ScaleBy(k, 11);
      break;
    case Data::kSomeHugeTokens:
      for (int64_t t = 0; t < c.num_q; ++t) {
        if ((q_offset_of(c) + t) % 37 != 3) continue;
        for (int64_t i = 0; i < qrow; ++i) (*q)[t * qrow + i] = std::ldexp((*q)[t * qrow + i], 20);
      }
      break;
    case Data::kNonFinite: {
      const float inf = std::numeric_limits<float>::infinity();
      const float nan = std::numeric_limits<float>::quiet_NaN();
      for (int64_t t = 37; t < c.num_kv; t += 211)
        (*k)[t * krow + (t % krow)] = (t & 1) ? inf : nan;
      (*q)[(c.num_q / 3) * qrow + 5] = -inf;
      break;
    }
  }
}

class PrefillMaskGpuTest : public ::testing::TestWithParam<PrefillMaskCase> {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(PrefillMaskGpuTest, AllStagesEqualCpuReference) {
  const PrefillMaskCase& c = GetParam();
  const HipConfig cfg = ConfigFor(c);
  ASSERT_TRUE(ValidateHipConfig(cfg).ok()) << ValidateHipConfig(cfg);
  const PruningSpec spec = PruningSpecForLayer(cfg, c.spec == Spec::kLayer0 ? 0 : 5);
  const int d = c.head_dim, group = c.heads / c.kv_heads;
  const int q_offset = c.num_kv - c.num_q;
  uint64_t seed = 1469598103934665603ull;  // FNV-1a of the case name: fixed per case
  for (char ch : c.name) seed = (seed ^ static_cast<unsigned char>(ch)) * 1099511628211ull;

  std::vector<float> q, k;
  MakeData(c, seed, &q, &k);

  HipPrefillMaskGpuParams p;
  p.num_q = c.num_q;
  p.q_offset = q_offset;
  p.num_heads = c.heads;
  p.num_kv_heads = c.kv_heads;
  p.head_dim = d;
  p.block_q = cfg.block_q;
  p.n_sink = cfg.n_sink;
  p.spec = &spec;
  absl::StatusOr<int> npos = HipPrefillMaskRopePositions(p);
  ASSERT_TRUE(npos.ok()) << npos.status();
  absl::StatusOr<RopeTable> rope =
      RopeTable::Create(Llama3Rope(), d, std::max(c.num_kv + 1, cfg.n_window + 2));
  ASSERT_TRUE(rope.ok()) << rope.status();
  ASSERT_LE(*npos, rope->num_positions());
  DeviceVec<float> d_rope(HipRopeRows(*rope, *npos));
  DeviceVec<uint16_t> d_q(testing::ToBf16(q)), d_k(testing::ToBf16(k));
  absl::StatusOr<size_t> ws = HipPrefillMaskWorkspaceBytes(p);
  ASSERT_TRUE(ws.ok()) << ws.status();
  p.q = d_q.data();
  p.k = d_k.data();
  p.rope = d_rope.data();
  p.rope_positions = *npos;
  p.workspace_bytes = *ws;

  // The exact kernel first, then the filter (the default); both workspaces start poisoned.
  DeviceVec<uint8_t> d_ws_exact(std::vector<uint8_t>(*ws, 0xff));
  p.workspace = d_ws_exact.data();
  p.tensor_core_filter = false;
  ASSERT_TRUE(HipPrefillMaskGpu(p, nullptr).ok());
  DeviceVec<uint8_t> d_ws(std::vector<uint8_t>(*ws, 0xff));  // poison: -1 / NaN everywhere
  p.workspace = d_ws.data();
  p.tensor_core_filter = true;
  absl::StatusOr<HipPrefillPlan> plan = HipPrefillMaskGpu(p, nullptr);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  {
    std::vector<uint8_t> h_exact(*ws), h_tc(*ws);
    ASSERT_EQ(cudaMemcpy(h_exact.data(), d_ws_exact.data(), *ws, cudaMemcpyDeviceToHost),
              cudaSuccess);
    ASSERT_EQ(cudaMemcpy(h_tc.data(), d_ws.data(), *ws, cudaMemcpyDeviceToHost), cudaSuccess);
    int64_t first_diff = -1, diffs = 0;
    for (size_t i = 0; i < *ws; ++i) {
      if (h_exact[i] != h_tc[i]) {
        if (first_diff < 0) first_diff = static_cast<int64_t>(i);
        ++diffs;
      }
    }
    EXPECT_EQ(diffs, 0) << "filter and exact workspaces differ in " << diffs << " of " << *ws
                        << " bytes, first at byte " << first_diff;
  }
  // Which stages run the resident-rows kernel: by default (automatic) and forced (2: every
  // stage where it fits). Where the device has the shared memory for it (H100: 216 KB per block
  // at head_dim 128), every case has a stage of <= 256 scoring rows, so the forced variant below
  // must run it somewhere.
  absl::StatusOr<int> res_auto = HipPrefillMaskResidentStages(p);
  ASSERT_TRUE(res_auto.ok()) << res_auto.status();
  HipPrefillMaskGpuParams p_forced = p;
  p_forced.resident_rows = 2;
  absl::StatusOr<int> res_forced = HipPrefillMaskResidentStages(p_forced);
  ASSERT_TRUE(res_forced.ok()) << res_forced.status();
  {
    int dev = 0, optin = 0;
    ASSERT_EQ(cudaGetDevice(&dev), cudaSuccess);
    ASSERT_EQ(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev),
              cudaSuccess);
    if (optin >= 216 * 1024 && c.reps.empty()) {  // (other options: no probes stage, maybe)
      EXPECT_NE(*res_forced, 0) << "the resident kernel never ran";
    }
    std::printf("[ resident ] %s: stages on the resident-rows kernel: default 0x%x, forced 0x%x\n",
                c.name.c_str(), *res_auto, *res_forced);
  }
  // Performance-only variants of the filter leave the same workspace (the default above is
  // 256-thread blocks with key prefetch and resident rows where they pay): prefetch off;
  // 128-thread blocks with and without it; the tile kernel everywhere (resident_rows 0); the
  // resident kernel wherever it fits (2), with and without prefetch.
  for (int variant = 0; variant < 6; ++variant) {
    DeviceVec<uint8_t> d_ws_v(std::vector<uint8_t>(*ws, 0xff));
    HipPrefillMaskGpuParams pv = p;
    pv.workspace = d_ws_v.data();
    pv.prefetch_keys = variant == 1 || variant == 4;
    pv.filter_block_threads = variant == 0 || variant >= 3 ? 256 : 128;
    pv.resident_rows = variant == 3 ? 0 : variant >= 4 ? 2 : 1;
    ASSERT_TRUE(HipPrefillMaskGpu(pv, nullptr).ok());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<uint8_t> h_exact(*ws), h_v(*ws);
    ASSERT_EQ(cudaMemcpy(h_exact.data(), d_ws_exact.data(), *ws, cudaMemcpyDeviceToHost),
              cudaSuccess);
    ASSERT_EQ(cudaMemcpy(h_v.data(), d_ws_v.data(), *ws, cudaMemcpyDeviceToHost), cudaSuccess);
    int64_t diffs = 0;
    for (size_t i = 0; i < *ws; ++i) diffs += h_exact[i] != h_v[i];
    EXPECT_EQ(diffs, 0) << "filter variant (" << pv.filter_block_threads << " threads, prefetch "
                        << pv.prefetch_keys << ", resident_rows " << pv.resident_rows
                        << ") differs from the exact kernel in " << diffs << " bytes";
  }
  if (c.data == Data::kNonFinite) return;  // the reference is not defined on NaN scores

  const int rows = plan->num_rows;
  const int lists = rows * c.kv_heads;
  EXPECT_EQ(plan->first_block, q_offset / cfg.block_q);
  EXPECT_EQ(rows, (c.num_kv - 1) / cfg.block_q - q_offset / cfg.block_q + 1);

  auto to_host = [](const int32_t* ptr, int64_t n) {
    std::vector<int32_t> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), ptr, n * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  };
  const int stages = spec.num_stages();
  std::vector<std::vector<int32_t>> g_starts, g_count, g_end;
  for (int s = 0; s < stages; ++s) {
    g_starts.push_back(to_host(plan->stages.starts[s], int64_t{lists} * spec.keep_chunks(s)));
    g_count.push_back(to_host(plan->stages.count[s], lists));
    g_end.push_back(to_host(plan->stages.range_end[s], lists));
  }
  const std::vector<int32_t> g_final = to_host(plan->block_count, lists);

  std::vector<int32_t> q_pos(c.num_q);
  for (int i = 0; i < c.num_q; ++i) q_pos[i] = q_offset + i;
  int scored_lists = 0;
  for (int r = 0; r < rows; ++r) {
    const int blk = plan->first_block + r;
    const int qa = std::max(q_offset, blk * cfg.block_q) - q_offset;
    const int qb = std::min(c.num_kv, (blk + 1) * cfg.block_q) - q_offset;
    const CandidateRange range = CandidateRangeFor(cfg, q_pos[qb - 1]);
    for (int h = 0; h < c.kv_heads; ++h) {
      MaskEstimationParams mp;
      mp.q = q.data() + int64_t{qa} * c.heads * d + int64_t{h} * group * d;
      mp.q_token_stride = int64_t{c.heads} * d;
      mp.q_pos = q_pos.data() + qa;
      mp.num_q = qb - qa;
      mp.group = group;
      mp.head_dim = d;
      mp.k = k.data() + int64_t{h} * d;
      mp.k_token_stride = int64_t{c.kv_heads} * d;
      mp.num_kv = c.num_kv;
      mp.range_begin = range.begin;
      mp.range_end = range.end;
      mp.spec = &spec;
      mp.rope = &*rope;
      MaskEstimationResult ref;
      ASSERT_TRUE(EstimateMaskRef(mp, &ref).ok());
      const int list = r * c.kv_heads + h;
      const std::string what = absl::StrCat("row ", r, " kvh ", h);
      for (int s = 0; s < stages; ++s) {
        const std::vector<int32_t>& want = ref.kept[s].starts;
        ASSERT_EQ(g_count[s][list], static_cast<int>(want.size())) << what << " stage " << s;
        EXPECT_EQ(g_end[s][list], ref.kept[s].range_end) << what << " stage " << s;
        const int64_t at = int64_t{list} * spec.keep_chunks(s);
        const std::vector<int32_t> got(g_starts[s].begin() + at,
                                       g_starts[s].begin() + at + g_count[s][list]);
        EXPECT_EQ(got, want) << what << " stage " << s;
      }
      EXPECT_EQ(g_final[list], ref.count()) << what << " final count";
      if (ref.kept[stages - 1].starts.size() < SplitChunks(ref.kept[stages - 2], 8).starts.size()) {
        ++scored_lists;
      }
      bool means = false;  // a block mean of equal keys is a rounded sum / n: no exact ties
      for (int st = 0; st < spec.num_stages(); ++st) {
        means = means || spec.representatives(st) == Stage1Representatives::kBlockMeans;
      }
      if (c.data == Data::kAllEqualKeys && !means) {
        // Every score ties: the lowest positions win.
        for (int i = 0; i < ref.count(); ++i) {
          EXPECT_EQ(ref.block_starts()[i], cfg.n_sink + cfg.block_size() * i) << what;
        }
      }
    }
  }
  // The case must exercise selection in the last stage somewhere (a test that can fail).
  EXPECT_GT(scored_lists, 0) << "no list had anything to select in the last stage";
}

std::string Name(const ::testing::TestParamInfo<PrefillMaskCase>& info) { return info.param.name; }

constexpr PruningPositions kRel = PruningPositions::kRelative;
constexpr PruningPositions kReal = PruningPositions::kReal;
constexpr PruningPositions kChunk = PruningPositions::kChunkIndexed;

INSTANTIATE_TEST_SUITE_P(
    Cases, PrefillMaskGpuTest,
    ::testing::Values(
        // T = 4K, small spec (all stages select), whole prompt, every mode / group / head dim.
        PrefillMaskCase{"t4k_small_relative_g4", 4096 + 37, 4096 + 37, 8, 2, 128, kRel,
                        Spec::kSmall},
        PrefillMaskCase{"t4k_small_real_g4", 4096 + 37, 4096 + 37, 8, 2, 128, kReal, Spec::kSmall},
        PrefillMaskCase{"t4k_small_chunk_indexed_g4", 4096 + 37, 4096 + 37, 8, 2, 128, kChunk,
                        Spec::kSmall},
        PrefillMaskCase{"t4k_small_g1_hd64", 4096, 4096, 2, 2, 64, kRel, Spec::kSmall},
        PrefillMaskCase{"t4k_small_g2_real", 4096, 4096, 4, 2, 128, kReal, Spec::kSmall},
        PrefillMaskCase{"t4k_small_g3_chunk_indexed", 4096, 4096, 6, 2, 128, kChunk, Spec::kSmall},
        PrefillMaskCase{"t4k_small_g5", 4096, 4096, 5, 1, 128, kRel, Spec::kSmall},
        PrefillMaskCase{"t4k_small_g8_hd128", 4096, 4096, 16, 2, 128, kRel, Spec::kSmall},
        PrefillMaskCase{"t4k_small_g8_hd64_real", 4096, 4096, 8, 1, 64, kReal, Spec::kSmall},
        PrefillMaskCase{"t4k_small_ties", 4096, 4096, 8, 2, 128, kRel, Spec::kSmall,
                        Data::kAllEqualKeys},
        // Chunked prefill: partial query blocks at both ends of the chunk.
        PrefillMaskCase{"t4k_small_chunk_off2005", 3505, 1500, 8, 2, 128, kRel, Spec::kSmall},
        PrefillMaskCase{"t4k_small_odd_stride_rel", 4096 + 37, 4096 + 37, 8, 2, 128, kRel,
                        Spec::kSmallOddStride},
        PrefillMaskCase{"t4k_small_odd_stride_real_hd64", 4096, 3000, 8, 2, 64, kReal,
                        Spec::kSmallOddStride},
        PrefillMaskCase{"t4k_small_chunk_one_query", 4001, 1, 8, 2, 64, kChunk, Spec::kSmall},
        // Default "3K" preset.
        PrefillMaskCase{"t4k_default_relative", 4096, 4096, 8, 2, 128, kRel, Spec::kDefault},
        PrefillMaskCase{"t64k_relative_g4", 65536 + 77, 150, 8, 2, 128, kRel, Spec::kDefault},
        PrefillMaskCase{"t64k_real_g4", 65536, 130, 8, 2, 128, kReal, Spec::kDefault},
        PrefillMaskCase{"t64k_chunk_indexed_g4", 65536, 100, 8, 2, 128, kChunk, Spec::kDefault},
        PrefillMaskCase{"t64k_layer0_k4096", 65536, 64, 8, 2, 128, kChunk, Spec::kLayer0},
        PrefillMaskCase{"t64k_g8_hd64", 65536, 64, 8, 1, 64, kRel, Spec::kDefault},
        PrefillMaskCase{"t256k_relative_g4", 262144 + 5, 100, 4, 1, 128, kRel, Spec::kDefault},
        PrefillMaskCase{"t256k_real_g4", 262144, 64, 4, 1, 128, kReal, Spec::kDefault},
        PrefillMaskCase{"t256k_chunk_indexed_g4", 262144, 64, 4, 1, 128, kChunk, Spec::kDefault},
        // Adversarial data for the tensor-core filter (the exact-path comparison above is the
        // sharpest check: any score bit that differs fails it).
        PrefillMaskCase{"adv_near_tie_rows_rel", 4096, 4096, 8, 2, 128, kRel, Spec::kSmall,
                        Data::kNearTieRows},
        PrefillMaskCase{"adv_near_tie_rows_real_hd64", 4096, 4096, 8, 2, 64, kReal, Spec::kSmall,
                        Data::kNearTieRows},
        PrefillMaskCase{"adv_near_tie_rows_t64k", 65536, 200, 8, 2, 128, kChunk, Spec::kDefault,
                        Data::kNearTieRows},
        PrefillMaskCase{"adv_duplicate_rows", 4096, 4096, 8, 2, 128, kRel, Spec::kSmall,
                        Data::kDuplicateRows},
        PrefillMaskCase{"adv_all_equal_keys_g4_hd64", 4096, 4096, 4, 1, 64, kRel, Spec::kSmall,
                        Data::kAllEqualKeys},
        PrefillMaskCase{"adv_large", 4096, 4096, 8, 2, 128, kReal, Spec::kSmall, Data::kLarge},
        PrefillMaskCase{"adv_tiny", 4096, 4096, 8, 2, 128, kRel, Spec::kSmall, Data::kTiny},
        PrefillMaskCase{"adv_subnormal", 4096, 2000, 8, 2, 64, kRel, Spec::kSmall,
                        Data::kSubnormal},
        PrefillMaskCase{"adv_huge_fallback", 4096, 2000, 8, 2, 128, kChunk, Spec::kSmall,
                        Data::kHuge},
        PrefillMaskCase{"adv_non_finite", 4096, 4096, 8, 2, 128, kRel, Spec::kSmall,
                        Data::kNonFinite},
        PrefillMaskCase{"adv_mixed_scale", 4096, 4096, 8, 2, 128, kRel, Spec::kSmall,
                        Data::kMixedScale},
        PrefillMaskCase{"adv_mixed_scale_real_hd64", 4096, 3000, 8, 2, 64, kReal, Spec::kSmall,
                        Data::kMixedScale},
        PrefillMaskCase{"adv_half_subnormal", 4096, 4096, 8, 2, 128, kRel, Spec::kSmall,
                        Data::kHalfSubnormal},
        // For the resident-rows kernel (stage 2 of the default preset: 256 rows = 4 groups;
        // every case above runs it too, forced, wherever it fits): long ranges, the chunk-indexed
        // early-layer override, partial first / last query blocks (a chunk cut off the block
        // grid, a last block of 5 queries: 20 rows, 1 group), tokens that make some 64-row
        // groups fall back while others filter, and group 3 (192 rows, 3 of 4 groups).
        PrefillMaskCase{"res_t128k_relative_g4", 131072, 192, 8, 2, 128, kRel, Spec::kDefault},
        PrefillMaskCase{"res_t128k_layer0_chunk_partial", 131072 + 37, 130, 8, 2, 128, kChunk,
                        Spec::kLayer0},
        PrefillMaskCase{"res_t128k_real_partial", 131072 + 5, 79, 4, 1, 128, kReal, Spec::kDefault},
        PrefillMaskCase{"res_t32k_last_block_5q", 32768 + 5, 5, 8, 2, 128, kRel, Spec::kDefault},
        PrefillMaskCase{"res_t16k_mixed_scale", 16384, 512, 8, 2, 128, kRel, Spec::kDefault,
                        Data::kMixedScale},
        PrefillMaskCase{"res_t16k_some_huge_tokens", 16384, 512, 8, 2, 128, kRel, Spec::kDefault,
                        Data::kSomeHugeTokens},
        PrefillMaskCase{"res_t4k_small_some_huge_tokens_hd64", 4096, 4096, 8, 2, 64, kChunk,
                        Spec::kSmall, Data::kSomeHugeTokens},
        PrefillMaskCase{"res_t16k_near_tie_g3", 16384 + 11, 300, 6, 2, 128, kRel, Spec::kDefault,
                        Data::kNearTieRows},
        PrefillMaskCase{"res_t16k_huge_fallback_hd64", 16384, 256, 8, 2, 64, kReal, Spec::kDefault,
                        Data::kHuge}),
    Name);

// The stage representatives of docs/HIP_NOTES.md 7 (page_bound, block_means, exact; every stage
// and mixes with probes) through the prefill mask's PrefillRepScoreKernel: relative,
// chunk-indexed (the early-layer override, k = 4096) and real positions (the pair-norm bound);
// windows 0 and 8, which leave pages open at stages 1-3 (their keys scored exactly and merged);
// n_sink 16 (small spec), so stage-1 chunks straddle two pages; chunked prefill with partial first
// and last query blocks; GQA 1-8, head_dim 64 / 128; ties and adversarial scales; 64K and 128K
// with the "3K" preset (stage-1 pages / means over the whole range, exact over K1 = 32K keys at
// stage 2). fp8 and tiered keys: hip_cuda_gpu_test's PrefillRepresentatives/*.
using R = Stage1Representatives;
const std::vector<R> kPbAll = {R::kPageBound, R::kPageBound, R::kPageBound};
const std::vector<R> kBmAll = {R::kBlockMeans, R::kBlockMeans, R::kBlockMeans};
const std::vector<R> kExAll = {R::kExact, R::kExact, R::kExact};
const std::vector<R> kPbPbEx = {R::kPageBound, R::kPageBound, R::kExact};
const std::vector<R> kBmBmEx = {R::kBlockMeans, R::kBlockMeans, R::kExact};
const std::vector<R> kPrExEx = {R::kProbes, R::kExact, R::kExact};
const std::vector<R> kPbBmPr = {R::kPageBound, R::kBlockMeans, R::kProbes};

PrefillMaskCase Rep(std::string name, int num_kv, int num_q, int heads, int kv_heads, int hd,
                    PruningPositions pos, Spec spec, std::vector<R> reps, int n_window = -1,
                    Data data = Data::kRandom, int mean_block_size = 16) {
  PrefillMaskCase c{std::move(name), num_kv, num_q, heads, kv_heads, hd, pos, spec, data};
  c.reps = std::move(reps);
  c.n_window = n_window;
  c.mean_block_size = mean_block_size;
  return c;
}

INSTANTIATE_TEST_SUITE_P(
    Representatives, PrefillMaskGpuTest,
    ::testing::Values(
        Rep("pb_t4k_small_rel_g4", 4096 + 37, 4096 + 37, 8, 2, 128, kRel, Spec::kSmall, kPbAll),
        Rep("pb_t4k_small_chunk_g3", 4096, 4096, 6, 2, 128, kChunk, Spec::kSmall, kPbAll),
        Rep("pb_t4k_small_real_g8_hd64", 4096, 4096, 8, 1, 64, kReal, Spec::kSmall, kPbAll),
        Rep("bm_t4k_small_rel_g1_hd64", 4096, 4096, 2, 2, 64, kRel, Spec::kSmall, kBmAll),
        Rep("bm_t4k_small_chunk_g4", 4096 + 37, 4096 + 37, 8, 2, 128, kChunk, Spec::kSmall, kBmAll),
        Rep("bm8_t4k_small_real_g5", 4096, 4096, 5, 1, 128, kReal, Spec::kSmall, kBmAll, -1,
            Data::kRandom, 8),
        Rep("ex_t4k_small_rel_g4", 4096, 4096, 8, 2, 128, kRel, Spec::kSmall, kExAll),
        Rep("ex_t4k_small_real_hd64", 4096 + 37, 4096 + 37, 8, 2, 64, kReal, Spec::kSmall, kExAll),
        Rep("ex_t4k_small_chunk_g8", 4096, 4096, 16, 2, 128, kChunk, Spec::kSmall, kExAll),
        Rep("pbpbex_t4k_small_rel", 4096, 4096, 8, 2, 128, kRel, Spec::kSmall, kPbPbEx),
        Rep("bmbmex_t4k_small_chunk_hd64", 4096, 4096, 8, 2, 64, kChunk, Spec::kSmall, kBmBmEx),
        Rep("prexex_t4k_small_real", 4096, 4096, 8, 2, 128, kReal, Spec::kSmall, kPrExEx),
        Rep("pbbmpr_t4k_small_odd_stride", 4096 + 37, 4096 + 37, 8, 2, 128, kRel,
            Spec::kSmallOddStride, kPbBmPr),
        // Open pages (window 0 / 8): the last page a range reaches is not full.
        Rep("pb_t4k_small_w0_rel", 4096 + 37, 4096 + 37, 8, 2, 128, kRel, Spec::kSmall, kPbAll, 0),
        Rep("pb_t4k_small_w8_chunk", 4096 + 5, 4096 + 5, 8, 2, 128, kChunk, Spec::kSmall, kPbAll,
            8),
        Rep("pb_t4k_small_w0_real_hd64", 4096 + 3, 4096 + 3, 8, 2, 64, kReal, Spec::kSmall, kPbAll,
            0),
        Rep("bmbmex_t4k_small_w0_rel", 4096 + 37, 4096 + 37, 8, 2, 128, kRel, Spec::kSmall, kBmBmEx,
            0),
        // Chunked prefill: partial query blocks at both ends of the chunk.
        Rep("pbpbex_t4k_small_chunk_off2005", 3505, 1500, 8, 2, 128, kRel, Spec::kSmall, kPbPbEx),
        Rep("bm_t4k_small_one_query_chunk", 4001, 1, 8, 2, 64, kChunk, Spec::kSmall, kBmAll),
        // Data: every key equal (every bound / mean ties: the lowest positions win), scales.
        Rep("pb_t4k_small_ties", 4096, 4096, 8, 2, 128, kRel, Spec::kSmall, kPbAll, -1,
            Data::kAllEqualKeys),
        Rep("bm_t4k_small_ties_real", 4096, 4096, 8, 2, 128, kReal, Spec::kSmall, kBmAll, -1,
            Data::kAllEqualKeys),
        Rep("pbpbex_adv_mixed_scale", 4096, 4096, 8, 2, 128, kRel, Spec::kSmall, kPbPbEx, -1,
            Data::kMixedScale),
        Rep("bm_adv_near_tie_rows_chunk", 4096, 4096, 8, 2, 128, kChunk, Spec::kSmall, kBmAll, -1,
            Data::kNearTieRows),
        Rep("ex_adv_subnormal", 4096, 2000, 8, 2, 64, kRel, Spec::kSmall, kExAll, -1,
            Data::kSubnormal),
        // The "3K" preset: stage 1 prunes (page bounds / means over the whole range per row),
        // exact stage 2 over K1 = 32K keys, stage 3 over K2 = 8K.
        Rep("pbpbex_t64k_rel_g4", 65536 + 77, 150, 8, 2, 128, kRel, Spec::kDefault, kPbPbEx),
        Rep("bmbmex_t64k_real_g4", 65536, 130, 8, 2, 128, kReal, Spec::kDefault, kBmBmEx),
        Rep("pb_t64k_layer0_k4096", 65536, 64, 8, 2, 128, kChunk, Spec::kLayer0, kPbAll),
        Rep("bm_t64k_layer0_k4096_hd64", 65536 + 37, 100, 8, 1, 64, kChunk, Spec::kLayer0, kBmAll),
        Rep("prexex_t64k_chunk_g4", 65536, 100, 8, 2, 128, kChunk, Spec::kDefault, kPrExEx),
        Rep("pb_t128k_real_partial", 131072 + 5, 79, 4, 1, 128, kReal, Spec::kDefault, kPbAll),
        Rep("bm_t128k_rel_g4", 131072, 192, 8, 2, 128, kRel, Spec::kDefault, kBmAll),
        Rep("pbbmpr_t128k_layer0_partial", 131072 + 37, 130, 8, 2, 128, kChunk, Spec::kLayer0,
            kPbBmPr)),
    Name);

TEST(PrefillMaskGpuArgs, RejectsUnsupportedShapes) {
  PruningSpec spec = PruningSpecForLayer(HipConfig{}, 5);
  HipPrefillMaskGpuParams p;
  p.num_q = 128;
  p.q_offset = 4096;
  p.num_heads = 32;
  p.num_kv_heads = 8;
  p.head_dim = 96;
  p.spec = &spec;
  absl::StatusOr<size_t> ws = HipPrefillMaskWorkspaceBytes(p);
  if (ws.status().code() == absl::StatusCode::kUnimplemented) GTEST_SKIP() << "CPU build";
  EXPECT_EQ(ws.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ws.status().message().find("64, 128"), std::string::npos) << ws.status();
  p.head_dim = 128;
  p.num_heads = 80;  // group 10
  EXPECT_EQ(HipPrefillMaskWorkspaceBytes(p).status().code(), absl::StatusCode::kInvalidArgument);
  p.num_heads = 32;
  EXPECT_TRUE(HipPrefillMaskWorkspaceBytes(p).ok());
  p.block_q = 0;
  EXPECT_EQ(HipPrefillMaskWorkspaceBytes(p).status().code(), absl::StatusCode::kInvalidArgument);
  p.block_q = 64;
  // Null pointers / missing workspace are rejected before any launch.
  EXPECT_EQ(HipPrefillMaskGpu(p, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hipserve::kernels
