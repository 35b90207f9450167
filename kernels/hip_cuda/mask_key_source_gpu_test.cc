// HiP mask estimation (decode HipDecodeMaskGpu and prefill HipPrefillMaskGpu) reading its probe
// keys the way they are stored: contiguous fp8 e5m2 keys, and tiered keys (mask-cache bank rows,
// bf16 or fp8, through the slot table; absent tokens straight from fp8 cold pages in mapped
// pinned host memory). Every stage's kept list (starts, count, range_end; prefill also the
// final count) must EQUAL EstimateMaskRef's run on the decoded key values, for random hit rates
// 0 / 50 / 90 / 100 % (decode: also with every sequence's tables in its own allocation,
// TieredKvSource::entries). Bank rows no token maps to, the V half of the cold pages and the bytes
// around them are NaN, so a wrong read changes a score. ctest label gpu; GTEST_SKIP without a
// device.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/attention_cuda/decode_test_util.h"
#include "kernels/attention_cuda/kv_source.h"
#include "kernels/device.h"
#include "kernels/hip/hip_params.h"
#include "kernels/hip/mask_estimation.h"
#include "kernels/hip/rope_table.h"
#include "kernels/hip_cuda/mask_estimation.h"
#include "kernels/hip_cuda/prefill_mask.h"
#include "kernels/testing/compare.h"

namespace hipserve::kernels {
namespace {

using decode_test::DeviceBuffer;
using decode_test::KvTensor;
using decode_test::MappedHostBuffer;

constexpr uint16_t kBf16NaN = 0x7fc0;
constexpr uint8_t kFp8NaN = 0x7f;

enum class Src { kFp8, kTieredBf16Bank, kTieredFp8Bank };

struct KeySrcCase {
  std::string name;
  bool prefill = false;
  std::vector<int> lens;  // decode: one per sequence; prefill: {num_kv}
  int num_q = 0;          // prefill: the chunk's queries (the last num_q positions)
  int heads = 8, kv_heads = 2, head_dim = 128;
  Src src = Src::kFp8;
  double hit = 0;  // tiered: fraction of tokens in the mask cache
  bool small_spec = true;
  PruningPositions positions = PruningPositions::kRelative;
  // Every stage's representatives (entry 0 = stage 1; empty = probes).
  std::vector<Stage1Representatives> reps = {};
};

HipConfig ConfigFor(const KeySrcCase& c) {
  HipConfig cfg;
  if (c.small_spec) {  // (64, 16, 8) keeping (512, 128, 64): every stage selects at 4K
    cfg.n_sink = 16;
    cfg.n_window = 64;
    cfg.chunk_sizes = {64, 16, 8};
    cfg.stage_keep = {512, 128};
    cfg.k = 64;
    cfg.stride_q = {4, 2, 1};
  }
  cfg.layer_overrides.clear();
  cfg.extend = c.positions != PruningPositions::kReal;
  cfg.pruning_positions = cfg.extend ? c.positions : PruningPositions::kRelative;
  if (!c.reps.empty()) {
    cfg.stage1_representatives = c.reps[0];
    cfg.later_stage_representatives.assign(c.reps.begin() + 1, c.reps.end());
  }
  return cfg;
}

RopeConfig Llama3Rope() {
  RopeConfig rc;
  rc.theta = 500000.f;
  rc.scaling = RopeScaling::kLlama3;
  rc.factor = 8.f;
  return rc;
}

// The keys of one test: rows [rows][kv_heads][hd]; sequence b's token t is row kv_start[b] + t.
struct Keys {
  KvTensor k;  // values = the decoded fp8 keys (what the reference sees)
  std::vector<int64_t> kv_start;
  std::vector<int32_t> lens;
  int64_t rows = 0;
};

Keys MakeKeys(const KeySrcCase& c, uint64_t seed) {
  Keys k;
  int64_t row = c.prefill ? 0 : 5;  // decode: a few (NaN-free) rows before every sequence
  for (int len : c.lens) {
    k.kv_start.push_back(row);
    k.lens.push_back(len);
    row += len + (c.prefill ? 0 : 3);
  }
  k.rows = row;
  k.k = decode_test::MakeKv(k.rows * c.kv_heads * c.head_dim, seed, -1.f, 1.f, /*fp8=*/true);
  return k;
}

// Mask-cache bank (bf16 or fp8) holding a random `hit` fraction of the tokens at random rows,
// fp8 cold pages (K then V, 64 tokens each) in mapped host memory at shuffled places, and the
// slot / page tables, for lists b * kv_heads + h.
struct TieredKeys {
  std::unique_ptr<MappedHostBuffer> cold;
  std::unique_ptr<DeviceBuffer> bank, slots, pages;
  TieredKvSource src;
  int64_t hits = 0, total = 0;
};

void BuildTiered(const KeySrcCase& c, const Keys& keys, uint64_t seed, TieredKeys* f) {
  const int batch = static_cast<int>(keys.lens.size());
  const int d = c.head_dim, kvh_n = c.kv_heads;
  const int max_t = *std::max_element(keys.lens.begin(), keys.lens.end());
  const int64_t page_stride = (max_t + kKvPageTokens - 1) / kKvPageTokens + 1;  // one spare
  const int64_t slot_stride = max_t + 7;
  const int64_t page_bytes = int64_t{2} * kKvPageTokens * d;
  const int64_t n_pages = int64_t{batch} * kvh_n * page_stride;
  testing::Rng rng(seed);
  std::vector<int64_t> place(n_pages);
  std::iota(place.begin(), place.end(), 0);
  for (int64_t i = n_pages - 1; i > 0; --i) std::swap(place[i], place[rng.Next() % (i + 1)]);
  f->cold = std::make_unique<MappedHostBuffer>(n_pages * page_bytes);
  std::fill_n(f->cold->host(), n_pages * page_bytes, kFp8NaN);
  const bool fp8_bank = c.src == Src::kTieredFp8Bank;
  const int elem = fp8_bank ? 1 : 2;
  int64_t tokens = 0;
  for (int T : keys.lens) tokens += T;
  const int64_t sph = tokens + 16;  // bank rows per head
  std::vector<uint8_t> bank(kvh_n * sph * d * elem);
  if (fp8_bank) {
    std::fill(bank.begin(), bank.end(), kFp8NaN);
  } else {
    std::fill_n(reinterpret_cast<uint16_t*>(bank.data()), bank.size() / 2, kBf16NaN);
  }
  std::vector<int32_t> slots(int64_t{batch} * kvh_n * slot_stride, -1);
  std::vector<uint64_t> pages(n_pages, 0);
  const int64_t row = int64_t{kvh_n} * d;
  for (int h = 0; h < kvh_n; ++h) {
    std::vector<int32_t> free_rows(sph);
    std::iota(free_rows.begin(), free_rows.end(), static_cast<int32_t>(h * sph));
    for (int64_t i = sph - 1; i > 0; --i) std::swap(free_rows[i], free_rows[rng.Next() % (i + 1)]);
    int64_t used = 0;
    for (int b = 0; b < batch; ++b) {
      const int64_t list = int64_t{b} * kvh_n + h;
      for (int64_t p = 0; p < page_stride; ++p) {
        pages[list * page_stride + p] =
            f->cold->device_address() + place[list * page_stride + p] * page_bytes;
      }
      for (int t = 0; t < keys.lens[b]; ++t) {
        const int64_t src = (keys.kv_start[b] + t) * row + int64_t{h} * d;
        uint8_t* page =
            f->cold->host() + place[list * page_stride + t / kKvPageTokens] * page_bytes;
        std::copy_n(keys.k.fp8.data() + src, d, page + (t % kKvPageTokens) * d);
        ++f->total;
        const bool hit = c.hit >= 1.0 || (rng.Next() % 1000000) < c.hit * 1000000;
        if (!hit) {
          slots[list * slot_stride + t] = (rng.Next() & 1) ? -1 : -5;  // any negative: absent
          continue;
        }
        const int32_t r = free_rows[used++];
        slots[list * slot_stride + t] = r;
        ++f->hits;
        if (fp8_bank) {
          std::copy_n(keys.k.fp8.data() + src, d, bank.data() + int64_t{r} * d);
        } else {
          std::copy_n(keys.k.bf16.data() + src, d,
                      reinterpret_cast<uint16_t*>(bank.data()) + int64_t{r} * d);
        }
      }
    }
  }
  f->bank = std::make_unique<DeviceBuffer>(bank);
  f->slots = std::make_unique<DeviceBuffer>(slots);
  f->pages = std::make_unique<DeviceBuffer>(pages);
  f->src.bank_k = f->bank->get();
  f->src.bank_v = nullptr;  // the mask cache holds keys only
  f->src.slot_table = f->slots->get<int32_t>();
  f->src.slot_stride = slot_stride;
  f->src.cold_pages = f->pages->get<uint64_t>();
  f->src.page_stride = page_stride;
}

// Reference for one (query set, KV head) on the decoded keys.
MaskEstimationResult Reference(const KeySrcCase& c, const HipConfig& cfg, const PruningSpec& spec,
                               const RopeTable& rope, const Keys& keys, int b, int kvh,
                               const float* q, int64_t q_token_stride, const int32_t* q_pos,
                               int num_q) {
  const int group = c.heads / c.kv_heads;
  MaskEstimationParams p;
  p.q = q;
  p.q_token_stride = q_token_stride;
  p.q_pos = q_pos;
  p.num_q = num_q;
  p.group = group;
  p.head_dim = c.head_dim;
  p.k =
      keys.k.values.data() + keys.kv_start[b] * c.kv_heads * c.head_dim + int64_t{kvh} * c.head_dim;
  p.k_token_stride = int64_t{c.kv_heads} * c.head_dim;
  p.num_kv = keys.lens[b];
  const CandidateRange r = CandidateRangeFor(cfg, q_pos[num_q - 1]);
  p.range_begin = r.begin;
  p.range_end = r.end;
  p.spec = &spec;
  p.rope = &rope;
  MaskEstimationResult out;
  const absl::Status s = EstimateMaskRef(p, &out);
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

std::vector<int32_t> ToHostI32(const int32_t* ptr, int64_t n) {
  std::vector<int32_t> h(n);
  EXPECT_EQ(cudaMemcpy(h.data(), ptr, n * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

// Every stage's list of `list` against the reference; true when the last stage selected.
bool ExpectListsEqual(const HipDecodeMaskGpuState& st, const PruningSpec& spec, int64_t lists,
                      int list, const MaskEstimationResult& ref, const std::string& what) {
  for (int s = 0; s < spec.num_stages(); ++s) {
    const std::vector<int32_t> count = ToHostI32(st.count[s], lists);
    const std::vector<int32_t> end = ToHostI32(st.range_end[s], lists);
    const std::vector<int32_t> starts = ToHostI32(st.starts[s], lists * spec.keep_chunks(s));
    const std::vector<int32_t>& want = ref.kept[s].starts;
    EXPECT_EQ(count[list], static_cast<int>(want.size())) << what << " stage " << s;
    EXPECT_EQ(end[list], ref.kept[s].range_end) << what << " stage " << s;
    if (count[list] != static_cast<int>(want.size())) return false;
    const int64_t at = int64_t{list} * spec.keep_chunks(s);
    const std::vector<int32_t> got(starts.begin() + at, starts.begin() + at + count[list]);
    EXPECT_EQ(got, want) << what << " stage " << s;
  }
  const int last = spec.num_stages() - 1;
  return ref.kept[last].starts.size() <
         SplitChunks(ref.kept[last - 1], spec.chunk_sizes[last]).starts.size();
}

class MaskKeySourceGpuTest : public ::testing::TestWithParam<KeySrcCase> {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(MaskKeySourceGpuTest, ListsEqualCpuReferenceOnDecodedKeys) {
  const KeySrcCase& c = GetParam();
  const HipConfig cfg = ConfigFor(c);
  ASSERT_TRUE(ValidateHipConfig(cfg).ok()) << ValidateHipConfig(cfg);
  const PruningSpec spec = PruningSpecForLayer(cfg, 5);
  const uint64_t seed = decode_test::SeedOf(c.name);
  const int d = c.head_dim, group = c.heads / c.kv_heads;
  const Keys keys = MakeKeys(c, seed);
  const int max_t = *std::max_element(keys.lens.begin(), keys.lens.end());
  const int batch = static_cast<int>(keys.lens.size());
  const int nq = c.prefill ? c.num_q : batch;  // query tokens
  std::vector<float> q = testing::RandomVector(int64_t{nq} * c.heads * d, seed + 7);
  RoundToBf16InPlace(q.data(), static_cast<int64_t>(q.size()));
  DeviceBuffer d_q(decode_test::ToBf16Bits(q));

  std::unique_ptr<DeviceBuffer> d_k;
  TieredKeys tiered;
  if (c.src == Src::kFp8) {
    d_k = std::make_unique<DeviceBuffer>(keys.k.fp8);
  } else {
    BuildTiered(c, keys, seed + 3, &tiered);
    // The hit rate is what the case says (within sampling noise).
    const double rate = static_cast<double>(tiered.hits) / tiered.total;
    EXPECT_NEAR(rate, c.hit, 0.02) << tiered.hits << " of " << tiered.total;
  }
  const KvDtype dtype = c.src == Src::kTieredBf16Bank ? KvDtype::kBf16 : KvDtype::kFp8E5m2;
  absl::StatusOr<RopeTable> rope =
      RopeTable::Create(Llama3Rope(), d, std::max(max_t + 1, cfg.n_window + 2) + 8);
  ASSERT_TRUE(rope.ok()) << rope.status();

  HipDecodeMaskGpuState state;
  int64_t lists = 0;
  std::vector<std::unique_ptr<DeviceBuffer>> keep_alive;
  if (!c.prefill) {
    DeviceBuffer d_start(keys.kv_start), d_len(keys.lens);
    HipDecodeMaskGpuParams p;
    p.q = d_q.get();
    p.k = d_k ? d_k->get() : nullptr;
    p.k_dtype = dtype;
    p.tiered = tiered.src;
    p.kv_start = c.src == Src::kFp8 ? d_start.get<int64_t>() : nullptr;
    p.kv_len = d_len.get<int32_t>();
    p.batch = batch;
    p.num_heads = c.heads;
    p.num_kv_heads = c.kv_heads;
    p.head_dim = d;
    p.max_kv_len = max_t;
    p.n_sink = cfg.n_sink;
    p.spec = &spec;
    absl::StatusOr<int> npos = HipDecodeMaskRopePositions(p);
    ASSERT_TRUE(npos.ok()) << npos.status();
    ASSERT_LE(*npos, rope->num_positions());
    DeviceBuffer d_rope(HipRopeRows(*rope, *npos));
    p.rope = d_rope.get<float>();
    p.rope_positions = *npos;
    lists = int64_t{batch} * c.kv_heads;
    for (int s = 0; s < spec.num_stages(); ++s) {
      for (int64_t n : {lists * spec.keep_chunks(s), lists, lists}) {
        keep_alive.push_back(std::make_unique<DeviceBuffer>(std::vector<int32_t>(n, -1)));
      }
      state.starts[s] = keep_alive[keep_alive.size() - 3]->get<int32_t>();
      state.count[s] = keep_alive[keep_alive.size() - 2]->get<int32_t>();
      state.range_end[s] = keep_alive[keep_alive.size() - 1]->get<int32_t>();
    }
    p.state = state;
    absl::StatusOr<size_t> ws = HipDecodeMaskWorkspaceBytes(p);
    ASSERT_TRUE(ws.ok()) << ws.status();
    DeviceBuffer d_ws(std::vector<uint8_t>(*ws, 0xff));
    p.workspace = d_ws.get();
    p.workspace_bytes = *ws;
    // Tiered sources run twice: shared tables, then every sequence's tables in its own
    // allocation (TieredKvSource::entries); lists poisoned before each run.
    decode_test::PerEntryTiered per_entry;
    const bool tiered_src = c.src != Src::kFp8;
    if (tiered_src) decode_test::SplitTieredPerEntry(tiered.src, c.kv_heads, keys.lens, &per_entry);
    for (int run = 0; run < (tiered_src ? 2 : 1); ++run) {
      if (run == 1) p.tiered = per_entry.src;
      for (const auto& buf : keep_alive) {
        ASSERT_EQ(cudaMemset(buf->get(), 0xff, buf->bytes()), cudaSuccess);
      }
      const absl::Status st = HipDecodeMaskGpu(p, nullptr);
      ASSERT_TRUE(st.ok()) << st;
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      int selected = 0;
      for (int b = 0; b < batch; ++b) {
        const int32_t q_pos = keys.lens[b] - 1;
        for (int h = 0; h < c.kv_heads; ++h) {
          const MaskEstimationResult ref = Reference(
              c, cfg, spec, *rope, keys, b, h, q.data() + (int64_t{b} * c.heads + h * group) * d,
              int64_t{group} * d, &q_pos, 1);
          selected +=
              ExpectListsEqual(state, spec, lists, b * c.kv_heads + h, ref,
                               absl::StrCat(run ? "per-entry tables " : "", "b", b, " kvh", h));
        }
      }
      EXPECT_GT(selected, 0) << "no list had anything to select in the last stage";
    }
    return;
  }

  // Prefill: one sequence of num_kv = lens[0] keys, the chunk = the last num_q positions.
  const int num_kv = keys.lens[0];
  const int q_offset = num_kv - c.num_q;
  HipPrefillMaskGpuParams p;
  p.q = d_q.get();
  p.k = d_k ? d_k->get() : nullptr;
  p.k_dtype = dtype;
  p.tiered = tiered.src;
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
  ASSERT_LE(*npos, rope->num_positions());
  DeviceBuffer d_rope(HipRopeRows(*rope, *npos));
  p.rope = d_rope.get<float>();
  p.rope_positions = *npos;
  absl::StatusOr<size_t> ws = HipPrefillMaskWorkspaceBytes(p);
  ASSERT_TRUE(ws.ok()) << ws.status();
  DeviceBuffer d_ws(std::vector<uint8_t>(*ws, 0xff));  // poison: -1 / NaN everywhere
  p.workspace = d_ws.get();
  p.workspace_bytes = *ws;
  absl::StatusOr<HipPrefillPlan> plan = HipPrefillMaskGpu(p, nullptr);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  lists = int64_t{plan->num_rows} * c.kv_heads;
  const std::vector<int32_t> final_count = ToHostI32(plan->block_count, lists);
  std::vector<int32_t> q_pos(c.num_q);
  std::iota(q_pos.begin(), q_pos.end(), q_offset);
  int selected = 0;
  for (int r = 0; r < plan->num_rows; ++r) {
    const int blk = plan->first_block + r;
    const int qa = std::max(q_offset, blk * cfg.block_q) - q_offset;
    const int qb = std::min(num_kv, (blk + 1) * cfg.block_q) - q_offset;
    for (int h = 0; h < c.kv_heads; ++h) {
      const MaskEstimationResult ref = Reference(c, cfg, spec, *rope, keys, 0, h,
                                                 q.data() + (int64_t{qa} * c.heads + h * group) * d,
                                                 int64_t{c.heads} * d, q_pos.data() + qa, qb - qa);
      const std::string what = absl::StrCat("row ", r, " kvh ", h);
      selected += ExpectListsEqual(plan->stages, spec, lists, r * c.kv_heads + h, ref, what);
      EXPECT_EQ(final_count[r * c.kv_heads + h], ref.count()) << what << " final count";
    }
  }
  EXPECT_GT(selected, 0) << "no list had anything to select in the last stage";
}

std::string Name(const ::testing::TestParamInfo<KeySrcCase>& info) { return info.param.name; }

constexpr Src kFp8 = Src::kFp8;
constexpr Src kBf16Bank = Src::kTieredBf16Bank;
constexpr Src kFp8Bank = Src::kTieredFp8Bank;
constexpr PruningPositions kRel = PruningPositions::kRelative;
constexpr PruningPositions kReal = PruningPositions::kReal;
constexpr PruningPositions kChunk = PruningPositions::kChunkIndexed;

// Decode: T = 4K (small spec: all stages select), 64K and 256K (the "3K" preset); GQA 1..8,
// head_dim 64 / 128; every hit rate at every T across the two bank dtypes.
INSTANTIATE_TEST_SUITE_P(
    Decode, MaskKeySourceGpuTest,
    ::testing::Values(
        KeySrcCase{"fp8_t4k_b2_g4", false, {4096, 3001}, 0, 8, 2, 128, kFp8},
        KeySrcCase{"fp8_t4k_g8_hd64_real", false, {4096 + 3}, 0, 16, 2, 64, kFp8, 0, true, kReal},
        KeySrcCase{"fp8_t64k_g4", false, {65536 + 77}, 0, 16, 4, 128, kFp8, 0, false},
        KeySrcCase{"fp8_t256k_g4", false, {262144 + 5}, 0, 8, 2, 128, kFp8, 0, false},
        KeySrcCase{"bf16bank_t4k_b2_hit0", false, {4096, 2500}, 0, 8, 2, 128, kBf16Bank, 0.0},
        KeySrcCase{"bf16bank_t4k_b2_hit50", false, {4096, 2500}, 0, 8, 2, 128, kBf16Bank, 0.5},
        KeySrcCase{"bf16bank_t4k_b2_hit90", false, {4096, 2500}, 0, 8, 2, 128, kBf16Bank, 0.9},
        KeySrcCase{"bf16bank_t4k_b2_hit100", false, {4096, 2500}, 0, 8, 2, 128, kBf16Bank, 1.0},
        KeySrcCase{"fp8bank_t4k_g8_hd64_hit0", false, {4096}, 0, 16, 2, 64, kFp8Bank, 0.0},
        KeySrcCase{"fp8bank_t4k_g8_hd64_hit50", false, {4096}, 0, 16, 2, 64, kFp8Bank, 0.5},
        KeySrcCase{"fp8bank_t4k_g8_hd64_hit90_chunk",
                   false,
                   {4096 + 3},
                   0,
                   16,
                   2,
                   64,
                   kFp8Bank,
                   0.9,
                   true,
                   kChunk},
        KeySrcCase{"fp8bank_t4k_g8_hd64_hit100", false, {4096}, 0, 16, 2, 64, kFp8Bank, 1.0},
        KeySrcCase{
            "bf16bank_t64k_g2_hd64_hit0", false, {65536}, 0, 4, 2, 64, kBf16Bank, 0.0, false},
        KeySrcCase{
            "bf16bank_t64k_g4_hit90", false, {65536 + 3}, 0, 8, 2, 128, kBf16Bank, 0.9, false},
        KeySrcCase{"fp8bank_t64k_g1_hit50", false, {65536 + 3}, 0, 2, 2, 128, kFp8Bank, 0.5, false},
        KeySrcCase{"fp8bank_t64k_g4_hit100", false, {65536}, 0, 8, 2, 128, kFp8Bank, 1.0, false},
        KeySrcCase{"bf16bank_t256k_g4_hit50", false, {262144}, 0, 8, 2, 128, kBf16Bank, 0.5, false},
        KeySrcCase{
            "bf16bank_t256k_g4_hit100", false, {262144 + 5}, 0, 8, 2, 128, kBf16Bank, 1.0, false},
        KeySrcCase{
            "fp8bank_t256k_g4_hd64_hit0", false, {262144 + 5}, 0, 8, 2, 64, kFp8Bank, 0.0, false},
        KeySrcCase{"fp8bank_t256k_g4_hit90", false, {262144}, 0, 8, 2, 128, kFp8Bank, 0.9, false}),
    Name);

// Decode with the stage representatives of docs/HIP_NOTES.md 7 (page bounds and block means
// read every key of their pages / blocks through the tiered source, exact scores every key of
// the chunk): bf16 / fp8 banks at hit rates 0 / 50 / 100 %, relative, chunk-indexed and real
// positions, head_dim 64 / 128.
using R = Stage1Representatives;
INSTANTIATE_TEST_SUITE_P(
    DecodeRepresentatives, MaskKeySourceGpuTest,
    ::testing::Values(KeySrcCase{"pb_bf16bank_t4k_b2_hit50",
                                 false,
                                 {4096, 2500},
                                 0,
                                 8,
                                 2,
                                 128,
                                 kBf16Bank,
                                 0.5,
                                 true,
                                 kRel,
                                 {R::kPageBound, R::kPageBound, R::kPageBound}},
                      KeySrcCase{"bm_fp8bank_t4k_hd64_hit0_chunk",
                                 false,
                                 {4096 + 3},
                                 0,
                                 16,
                                 2,
                                 64,
                                 kFp8Bank,
                                 0.0,
                                 true,
                                 kChunk,
                                 {R::kBlockMeans, R::kBlockMeans, R::kBlockMeans}},
                      KeySrcCase{"pbpbex_fp8bank_t4k_hit90_real",
                                 false,
                                 {4096 + 3},
                                 0,
                                 8,
                                 2,
                                 128,
                                 kFp8Bank,
                                 0.9,
                                 true,
                                 kReal,
                                 {R::kPageBound, R::kPageBound, R::kExact}},
                      KeySrcCase{"ex_bf16bank_t4k_hd64_hit100",
                                 false,
                                 {4096},
                                 0,
                                 8,
                                 2,
                                 64,
                                 kBf16Bank,
                                 1.0,
                                 true,
                                 kRel,
                                 {R::kExact, R::kExact, R::kExact}},
                      KeySrcCase{"bm_fp8_t4k_b2",
                                 false,
                                 {4096, 3001},
                                 0,
                                 8,
                                 2,
                                 128,
                                 kFp8,
                                 0,
                                 true,
                                 kRel,
                                 {R::kBlockMeans, R::kBlockMeans, R::kBlockMeans}},
                      KeySrcCase{"pb_bf16bank_t64k_hit50",
                                 false,
                                 {65536 + 3},
                                 0,
                                 8,
                                 2,
                                 128,
                                 kBf16Bank,
                                 0.5,
                                 false,
                                 kRel,
                                 {R::kPageBound, R::kPageBound, R::kPageBound}},
                      KeySrcCase{"bmbmex_fp8bank_t64k_hit0_chunk",
                                 false,
                                 {65536},
                                 0,
                                 8,
                                 2,
                                 128,
                                 kFp8Bank,
                                 0.0,
                                 false,
                                 kChunk,
                                 {R::kBlockMeans, R::kBlockMeans, R::kExact}}),
    Name);

// Prefill (64-query blocks): T = 4K (whole prompt or a chunk, small spec) and 64K (a chunk of
// the last queries, the "3K" preset).
INSTANTIATE_TEST_SUITE_P(
    Prefill, MaskKeySourceGpuTest,
    ::testing::Values(
        KeySrcCase{"pre_fp8_t4k_g4", true, {4096 + 37}, 4096 + 37, 8, 2, 128, kFp8},
        KeySrcCase{"pre_fp8_t4k_g8_hd64_real", true, {4096}, 4096, 8, 1, 64, kFp8, 0, true, kReal},
        KeySrcCase{"pre_fp8_t64k_g4", true, {65536 + 77}, 150, 8, 2, 128, kFp8, 0, false},
        KeySrcCase{"pre_bf16bank_t4k_g4_hit0", true, {4096}, 4096, 8, 2, 128, kBf16Bank, 0.0},
        KeySrcCase{"pre_bf16bank_t4k_g4_hit50", true, {3505}, 1500, 8, 2, 128, kBf16Bank, 0.5},
        KeySrcCase{"pre_bf16bank_t4k_g4_hit90", true, {4096}, 4096, 8, 2, 128, kBf16Bank, 0.9},
        KeySrcCase{"pre_bf16bank_t4k_g4_hit100", true, {4096}, 4096, 8, 2, 128, kBf16Bank, 1.0},
        KeySrcCase{"pre_fp8bank_t4k_g8_hd64_hit0", true, {4096}, 4096, 16, 2, 64, kFp8Bank, 0.0},
        KeySrcCase{"pre_fp8bank_t4k_g8_hd64_hit50_chunk",
                   true,
                   {4096},
                   4096,
                   16,
                   2,
                   64,
                   kFp8Bank,
                   0.5,
                   true,
                   kChunk},
        KeySrcCase{"pre_fp8bank_t4k_g3_hd64_hit90", true, {4001}, 1000, 6, 2, 64, kFp8Bank, 0.9},
        KeySrcCase{"pre_fp8bank_t4k_g8_hd64_hit100", true, {4096}, 4096, 16, 2, 64, kFp8Bank, 1.0},
        KeySrcCase{
            "pre_bf16bank_t64k_g4_hit0", true, {65536}, 130, 8, 2, 128, kBf16Bank, 0.0, false},
        KeySrcCase{"pre_bf16bank_t64k_g4_hit90",
                   true,
                   {65536 + 77},
                   150,
                   8,
                   2,
                   128,
                   kBf16Bank,
                   0.9,
                   false},
        KeySrcCase{
            "pre_fp8bank_t64k_g8_hd64_hit50", true, {65536}, 64, 8, 1, 64, kFp8Bank, 0.5, false},
        KeySrcCase{
            "pre_fp8bank_t64k_g4_hit100", true, {65536}, 100, 8, 2, 128, kFp8Bank, 1.0, false}),
    Name);

// Prefill with the stage representatives (PrefillRepScoreKernel reads every key of its pages,
// blocks and chunks through LoadKeyOctet): contiguous fp8, bf16 / fp8 banks at hit rates
// 0 / 50 / 90 / 100 %, relative, chunk-indexed and real positions, head_dim 64 / 128, 4K (small
// spec) and 64K (the "3K" preset).
INSTANTIATE_TEST_SUITE_P(
    PrefillRepresentatives, MaskKeySourceGpuTest,
    ::testing::Values(KeySrcCase{"pre_pb_fp8_t4k_g4",
                                 true,
                                 {4096 + 37},
                                 4096 + 37,
                                 8,
                                 2,
                                 128,
                                 kFp8,
                                 0,
                                 true,
                                 kRel,
                                 {R::kPageBound, R::kPageBound, R::kPageBound}},
                      KeySrcCase{"pre_bmbmex_fp8_t4k_hd64_chunk",
                                 true,
                                 {4096},
                                 4096,
                                 8,
                                 1,
                                 64,
                                 kFp8,
                                 0,
                                 true,
                                 kChunk,
                                 {R::kBlockMeans, R::kBlockMeans, R::kExact}},
                      KeySrcCase{"pre_pb_bf16bank_t4k_hit50_real",
                                 true,
                                 {3505},
                                 1500,
                                 8,
                                 2,
                                 128,
                                 kBf16Bank,
                                 0.5,
                                 true,
                                 kReal,
                                 {R::kPageBound, R::kPageBound, R::kPageBound}},
                      KeySrcCase{"pre_ex_fp8bank_t4k_g8_hd64_hit90",
                                 true,
                                 {4096},
                                 4096,
                                 16,
                                 2,
                                 64,
                                 kFp8Bank,
                                 0.9,
                                 true,
                                 kRel,
                                 {R::kExact, R::kExact, R::kExact}},
                      KeySrcCase{"pre_bm_fp8bank_t4k_hit0_chunk",
                                 true,
                                 {4096 + 3},
                                 4096 + 3,
                                 8,
                                 2,
                                 128,
                                 kFp8Bank,
                                 0.0,
                                 true,
                                 kChunk,
                                 {R::kBlockMeans, R::kBlockMeans, R::kBlockMeans}},
                      KeySrcCase{"pre_pbpbex_bf16bank_t4k_hit100_chunk",
                                 true,
                                 {4096},
                                 4096,
                                 8,
                                 2,
                                 128,
                                 kBf16Bank,
                                 1.0,
                                 true,
                                 kChunk,
                                 {R::kPageBound, R::kPageBound, R::kExact}},
                      KeySrcCase{"pre_pbpbex_fp8_t64k_g4",
                                 true,
                                 {65536 + 77},
                                 150,
                                 8,
                                 2,
                                 128,
                                 kFp8,
                                 0,
                                 false,
                                 kRel,
                                 {R::kPageBound, R::kPageBound, R::kExact}},
                      KeySrcCase{"pre_bm_bf16bank_t64k_hit90_real",
                                 true,
                                 {65536},
                                 130,
                                 8,
                                 2,
                                 128,
                                 kBf16Bank,
                                 0.9,
                                 false,
                                 kReal,
                                 {R::kBlockMeans, R::kBlockMeans, R::kBlockMeans}},
                      KeySrcCase{"pre_pb_fp8bank_t64k_hd64_hit50_chunk",
                                 true,
                                 {65536},
                                 64,
                                 8,
                                 1,
                                 64,
                                 kFp8Bank,
                                 0.5,
                                 false,
                                 kChunk,
                                 {R::kPageBound, R::kPageBound, R::kPageBound}}),
    Name);

TEST(MaskKeySourceGpuArgs, RejectsBadKeySources) {
  PruningSpec spec = PruningSpecForLayer(HipConfig{}, 5);
  HipDecodeMaskGpuParams p;
  p.batch = 1;
  p.num_heads = 32;
  p.num_kv_heads = 8;
  p.head_dim = 128;
  p.max_kv_len = 4096;
  p.spec = &spec;
  absl::StatusOr<size_t> ws = HipDecodeMaskWorkspaceBytes(p);
  if (ws.status().code() == absl::StatusCode::kUnimplemented) GTEST_SKIP() << "CPU build";
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  ASSERT_TRUE(ws.ok());
  DeviceBuffer buf(1 << 20);
  int32_t* i32 = buf.get<int32_t>();
  p.q = buf.get();
  p.kv_len = i32;
  p.kv_start = reinterpret_cast<const int64_t*>(i32);
  p.rope = buf.get<float>();
  p.rope_positions = 1 << 16;
  for (int s = 0; s < 3; ++s) p.state.starts[s] = p.state.count[s] = p.state.range_end[s] = i32;
  p.workspace = buf.get();
  p.workspace_bytes = *ws;
  // No keys at all.
  absl::Status st = HipDecodeMaskGpu(p, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_NE(st.message().find("k must be non-null"), std::string::npos) << st;
  // Unknown dtype.
  p.k = buf.get();
  p.k_dtype = static_cast<KvDtype>(7);
  st = HipDecodeMaskGpu(p, nullptr);
  EXPECT_NE(st.message().find("bf16, fp8_e5m2"), std::string::npos) << st;
  p.k_dtype = KvDtype::kFp8E5m2;
  // Tiered tables too short for max_kv_len, or missing pieces.
  p.tiered.slot_table = i32;
  p.tiered.bank_k = buf.get();
  p.tiered.cold_pages = reinterpret_cast<const uint64_t*>(i32);
  p.tiered.slot_stride = 4095;
  p.tiered.page_stride = 64;
  st = HipDecodeMaskGpu(p, nullptr);
  EXPECT_NE(st.message().find("slot_stride"), std::string::npos) << st;
  p.tiered.slot_stride = 4096;
  p.tiered.page_stride = 63;
  st = HipDecodeMaskGpu(p, nullptr);
  EXPECT_NE(st.message().find("page_stride"), std::string::npos) << st;
  p.tiered.page_stride = 64;
  p.tiered.cold_pages = nullptr;
  st = HipDecodeMaskGpu(p, nullptr);
  EXPECT_NE(st.message().find("cold_pages"), std::string::npos) << st;
  // Per-entry tables replace the shared ones (their strides live on the device: unchecked);
  // the bank is still required.
  TieredKvSource per_entry;
  per_entry.entries = reinterpret_cast<const TieredKvTables*>(i32);
  p.tiered = per_entry;
  st = HipDecodeMaskGpu(p, nullptr);
  EXPECT_NE(st.message().find("bank_k"), std::string::npos) << st;

  HipPrefillMaskGpuParams pp;
  pp.num_q = 128;
  pp.q_offset = 4096;
  pp.num_heads = 32;
  pp.num_kv_heads = 8;
  pp.head_dim = 128;
  pp.spec = &spec;
  absl::StatusOr<size_t> pws = HipPrefillMaskWorkspaceBytes(pp);
  ASSERT_TRUE(pws.ok());
  DeviceBuffer pbuf(*pws + 64);
  pp.q = buf.get();
  pp.rope = buf.get<float>();
  pp.rope_positions = 1 << 16;
  pp.workspace = pbuf.get();
  pp.workspace_bytes = *pws;
  pp.tiered.slot_table = i32;
  pp.tiered.bank_k = buf.get();
  pp.tiered.cold_pages = reinterpret_cast<const uint64_t*>(i32);
  pp.tiered.slot_stride = 4096 + 127;  // num_kv = 4224
  pp.tiered.page_stride = 66;
  absl::StatusOr<HipPrefillPlan> plan = HipPrefillMaskGpu(pp, nullptr);
  EXPECT_NE(plan.status().message().find("slot_stride"), std::string::npos) << plan.status();
  pp.tiered.entries = reinterpret_cast<const TieredKvTables*>(i32);  // decode-only
  plan = HipPrefillMaskGpu(pp, nullptr);
  EXPECT_NE(plan.status().message().find("decode-only"), std::string::npos) << plan.status();
}

}  // namespace
}  // namespace hipserve::kernels
