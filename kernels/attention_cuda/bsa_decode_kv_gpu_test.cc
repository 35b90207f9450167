// BSA decode reading K/V the way the serving system stores them (ctest -L gpu):
//   - in-kernel RoPE with rewritten positions, against BsaRef (kernels/hip/bsa.h) on the same
//     (decoded) values, both extend modes;
//   - fp8 e5m2 K/V;
//   - tiered reads (slot table -> bf16 / fp8 bank row, or fp8 page in mapped host memory):
//     random hit / miss patterns must give bit-identical outputs to the all-hot path on the
//     same decoded values, and match BsaRef; likewise with every sequence's tables in its own
//     allocation (TieredKvSource::entries).
// Pass rule (CONVENTIONS): max and mean error <= 2x those of a naive bf16 implementation (bf16
// scores / probabilities / output over the same rotated keys) + a rounding atol; no NaN.
// Fixed seeds per case; outputs and partition workspaces are poisoned with NaN before each run.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/attention_cuda/decode_attention.h"
#include "kernels/attention_cuda/decode_test_util.h"
#include "kernels/device.h"
#include "kernels/hip/bsa.h"
#include "kernels/hip/rope_table.h"
#include "kernels/hip_cuda/mask_estimation.h"
#include "kernels/testing/compare.h"

namespace hipserve::kernels {
namespace {

using decode_test::DeviceBuffer;
using decode_test::KvTensor;
using decode_test::MappedHostBuffer;

constexpr uint16_t kBf16NaN = 0x7fc0;
constexpr int kGapRows = 3;  // NaN rows before every sequence: out-of-range reads show as NaN

struct BsaKvCase {
  std::string name;
  int heads, kv_heads, head_dim;
  std::vector<int> lens;  // one per sequence
  bool rope = true;       // in-kernel RoPE (false: keys as stored; tiered-vs-direct check only)
  bool extend = true;
  KvDtype dtype = KvDtype::kBf16;  // direct K/V dtype, or the bank dtype when tiered
  double hit = -1;                 // tiered: fraction of tokens in the bank; < 0: not tiered
  int n_sink = 256;
  int n_window = 1024;  // BsaRef's n_window, passed to the GPU unchanged
  int max_blocks = 256;
  int block_shift = 0;  // block starts are 8 * i + block_shift
  int num_splits = 0;
  int keys_per_step = 0;  // BsaDecodeGpuParams::keys_per_step (0 = automatic)
};

RopeConfig Llama3Rope() {
  RopeConfig rc;
  rc.theta = 500000.f;
  rc.scaling = RopeScaling::kLlama3;
  rc.factor = 8.f;
  return rc;
}

// Random distinct blocks anywhere in [0, T) (they may overlap the sink, the window, run past
// T), sorted; unused entries hold garbage that must not be read.
void DrawBlocks(const BsaKvCase& c, uint64_t seed, std::vector<int32_t>* starts,
                std::vector<int32_t>* counts) {
  const int batch = static_cast<int>(c.lens.size());
  starts->assign(std::max<int64_t>(int64_t{batch} * c.kv_heads * c.max_blocks, 1), -123456);
  counts->assign(int64_t{batch} * c.kv_heads, 0);
  testing::Rng rng(seed);
  for (int b = 0; b < batch; ++b) {
    const int n_cand = std::max(0, (c.lens[b] - c.block_shift + 7) / 8);
    for (int h = 0; h < c.kv_heads; ++h) {
      std::vector<int> idx(n_cand);
      std::iota(idx.begin(), idx.end(), 0);
      const int want = c.max_blocks / 2 + static_cast<int>(rng.Next() % (c.max_blocks / 2 + 1));
      const int cnt = std::min(want, n_cand);
      for (int i = 0; i < cnt; ++i) std::swap(idx[i], idx[i + rng.Next() % (n_cand - i)]);
      std::sort(idx.begin(), idx.begin() + cnt);
      int32_t* row = starts->data() + (int64_t{b} * c.kv_heads + h) * c.max_blocks;
      for (int i = 0; i < cnt; ++i) row[i] = idx[i] * 8 + c.block_shift;
      (*counts)[b * c.kv_heads + h] = cnt;
    }
  }
}

// The tiered source of one test: fp8 cold pages in mapped host memory (pages placed in a
// shuffled order), a bank of the case's dtype holding a random `hit` fraction of the tokens at
// random rows (other rows NaN), and the slot table.
struct TieredFixture {
  std::unique_ptr<MappedHostBuffer> cold;
  std::unique_ptr<DeviceBuffer> bank_k, bank_v, slots, pages;
  TieredKvSource src;
  int64_t hits = 0, total = 0;
};

void BuildTiered(const BsaKvCase& c, const KvTensor& k, const KvTensor& v,
                 const std::vector<int64_t>& kv_start, uint64_t seed, TieredFixture* f) {
  const int batch = static_cast<int>(c.lens.size());
  const int d = c.head_dim, kvh_n = c.kv_heads;
  const int max_t = *std::max_element(c.lens.begin(), c.lens.end());
  const int64_t page_stride = (max_t + kKvPageTokens - 1) / kKvPageTokens;
  const int64_t page_bytes = int64_t{2} * kKvPageTokens * d;  // fp8 K then V
  const int64_t n_pages = int64_t{batch} * kvh_n * page_stride;
  testing::Rng rng(seed);
  std::vector<int64_t> place(n_pages);
  std::iota(place.begin(), place.end(), 0);
  for (int64_t i = n_pages - 1; i > 0; --i) std::swap(place[i], place[rng.Next() % (i + 1)]);
  f->cold = std::make_unique<MappedHostBuffer>(n_pages * page_bytes);
  std::fill_n(f->cold->host(), n_pages * page_bytes, uint8_t{0x7f});  // fp8 NaN
  const int64_t row = int64_t{kvh_n} * d;
  const bool fp8_bank = c.dtype == KvDtype::kFp8E5m2;
  const int elem = fp8_bank ? 1 : 2;
  int64_t tokens = 0;
  for (int T : c.lens) tokens += T;
  const int64_t sph = tokens;  // slots per head: room for every token of the batch
  std::vector<uint8_t> bank_k(kvh_n * sph * d * elem), bank_v(bank_k.size());
  // Rows that no token maps to are NaN: a wrong read shows.
  if (fp8_bank) {
    std::fill(bank_k.begin(), bank_k.end(), uint8_t{0x7f});
    std::fill(bank_v.begin(), bank_v.end(), uint8_t{0x7f});
  } else {
    uint16_t* bk = reinterpret_cast<uint16_t*>(bank_k.data());
    uint16_t* bv = reinterpret_cast<uint16_t*>(bank_v.data());
    std::fill_n(bk, bank_k.size() / 2, kBf16NaN);
    std::fill_n(bv, bank_v.size() / 2, kBf16NaN);
  }
  std::vector<int32_t> slots(int64_t{batch} * kvh_n * max_t, -1);
  std::vector<uint64_t> pages(n_pages, 0);
  for (int h = 0; h < kvh_n; ++h) {
    std::vector<int32_t> free_rows(sph);
    std::iota(free_rows.begin(), free_rows.end(), static_cast<int32_t>(h * sph));
    int64_t used = 0;
    for (int64_t i = sph - 1; i > 0; --i) std::swap(free_rows[i], free_rows[rng.Next() % (i + 1)]);
    for (int b = 0; b < batch; ++b) {
      const int64_t list = int64_t{b} * kvh_n + h;
      for (int64_t p = 0; p < page_stride; ++p) {
        pages[list * page_stride + p] =
            f->cold->device_address() + place[list * page_stride + p] * page_bytes;
      }
      for (int t = 0; t < c.lens[b]; ++t) {
        const int64_t src = (kv_start[b] + t) * row + int64_t{h} * d;
        uint8_t* page =
            f->cold->host() + place[list * page_stride + t / kKvPageTokens] * page_bytes;
        std::copy_n(k.fp8.data() + src, d, page + (t % kKvPageTokens) * d);
        std::copy_n(v.fp8.data() + src, d, page + (kKvPageTokens + t % kKvPageTokens) * d);
        ++f->total;
        const bool hit = c.hit >= 1.0 || (rng.Next() % 1000000) < c.hit * 1000000;
        if (!hit) {
          slots[list * max_t + t] = (rng.Next() & 1) ? -1 : -7;  // any negative is absent
          continue;
        }
        const int32_t r = free_rows[used++];
        slots[list * max_t + t] = r;
        ++f->hits;
        if (fp8_bank) {
          std::copy_n(k.fp8.data() + src, d, bank_k.data() + int64_t{r} * d);
          std::copy_n(v.fp8.data() + src, d, bank_v.data() + int64_t{r} * d);
        } else {
          std::copy_n(k.bf16.data() + src, d,
                      reinterpret_cast<uint16_t*>(bank_k.data()) + int64_t{r} * d);
          std::copy_n(v.bf16.data() + src, d,
                      reinterpret_cast<uint16_t*>(bank_v.data()) + int64_t{r} * d);
        }
      }
    }
  }
  f->bank_k = std::make_unique<DeviceBuffer>(bank_k);
  f->bank_v = std::make_unique<DeviceBuffer>(bank_v);
  f->slots = std::make_unique<DeviceBuffer>(slots);
  f->pages = std::make_unique<DeviceBuffer>(pages);
  f->src.bank_k = f->bank_k->get();
  f->src.bank_v = f->bank_v->get();
  f->src.slot_table = f->slots->get<int32_t>();
  f->src.slot_stride = max_t;
  f->src.cold_pages = f->pages->get<uint64_t>();
  f->src.page_stride = page_stride;
}

class BsaDecodeKvGpuTest : public ::testing::TestWithParam<BsaKvCase> {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

// Runs the kernel with a poisoned output and workspace; returns the bf16 output bits.
std::vector<uint16_t> RunBsa(BsaDecodeGpuParams bp, int64_t out_n, void* out) {
  const absl::StatusOr<size_t> ws = BsaDecodeAttentionWorkspaceBytes(bp);
  EXPECT_TRUE(ws.ok()) << ws.status();
  if (!ws.ok()) return {};
  DeviceBuffer d_ws(*ws);
  EXPECT_EQ(cudaMemset(d_ws.get(), 0xff, d_ws.bytes()), cudaSuccess);  // NaN partials
  const std::vector<uint16_t> poison(out_n, kBf16NaN);
  EXPECT_EQ(cudaMemcpy(out, poison.data(), out_n * 2, cudaMemcpyHostToDevice), cudaSuccess);
  bp.attn.workspace = *ws > 0 ? d_ws.get() : nullptr;
  bp.attn.workspace_bytes = *ws;
  const absl::Status s = BsaDecodeAttentionGpu(bp, nullptr);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<uint16_t> h(out_n);
  EXPECT_EQ(cudaMemcpy(h.data(), out, out_n * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

TEST_P(BsaDecodeKvGpuTest, MatchesBsaRef) {
  const BsaKvCase& c = GetParam();
  const int batch = static_cast<int>(c.lens.size());
  const int d = c.head_dim;
  const int group = c.heads / c.kv_heads;
  const int64_t row = int64_t{c.kv_heads} * d;
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  const uint64_t seed = decode_test::SeedOf(c.name);
  const bool tiered = c.hit >= 0;
  const bool fp8_values = tiered || c.dtype == KvDtype::kFp8E5m2;
  const int max_t = *std::max_element(c.lens.begin(), c.lens.end());

  std::vector<int64_t> kv_start(batch);
  int64_t rows = 0;
  for (int b = 0; b < batch; ++b) {
    rows += kGapRows;
    kv_start[b] = rows;
    rows += c.lens[b];
  }
  KvTensor k = decode_test::MakeKv(rows * row, seed + 1, -2.f, 2.f, fp8_values);
  KvTensor v = decode_test::MakeKv(rows * row, seed + 2, -1.f, 1.f, fp8_values);
  for (int b = 0; b < batch; ++b) {  // NaN gap rows (direct path)
    for (int64_t i = (kv_start[b] - kGapRows) * row; i < kv_start[b] * row; ++i) {
      k.values[i] = v.values[i] = NAN;
      k.bf16[i] = v.bf16[i] = kBf16NaN;
      if (fp8_values) k.fp8[i] = v.fp8[i] = 0x7f;
    }
  }
  std::vector<float> q = testing::RandomVector(int64_t{batch} * c.heads * d, seed + 3, -2.f, 2.f);
  RoundToBf16InPlace(q.data(), static_cast<int64_t>(q.size()));
  const int64_t out_n = int64_t{batch} * c.heads * d;
  std::vector<int32_t> starts, counts;
  DrawBlocks(c, seed + 4, &starts, &counts);

  absl::StatusOr<RopeTable> table = RopeTable::Create(Llama3Rope(), d, max_t);
  ASSERT_TRUE(table.ok()) << table.status();

  // References: BsaRef (fp32, rotated keys) per sequence; the naive bf16 one over the same key
  // set and rope positions (BsaKeysForQuery).
  std::vector<double> ref(out_n), naive(out_n);
  if (c.rope) {
    for (int b = 0; b < batch; ++b) {
      const int T = c.lens[b];
      const int32_t pos = T - 1, plan_row = 0;
      std::vector<float> out32 = testing::Poisoned(int64_t{c.heads} * d);
      BsaParams rp;
      rp.q = q.data() + int64_t{b} * c.heads * d;
      rp.q_pos = &pos;
      rp.q_plan_row = &plan_row;
      rp.num_q = 1;
      rp.num_heads = c.heads;
      rp.num_kv_heads = c.kv_heads;
      rp.head_dim = d;
      rp.k = k.values.data() + kv_start[b] * row;
      rp.v = v.values.data() + kv_start[b] * row;
      rp.num_kv = T;
      rp.block_starts = starts.data() + int64_t{b} * c.kv_heads * c.max_blocks;
      rp.block_counts = counts.data() + int64_t{b} * c.kv_heads;
      rp.num_rows = 1;
      rp.max_blocks = c.max_blocks;
      rp.block_size = kBsaBlockSize;
      rp.n_sink = c.n_sink;
      rp.n_window = c.n_window;
      rp.extend = c.extend;
      rp.rope = &*table;
      rp.scale = scale;
      rp.out = out32.data();
      ASSERT_TRUE(BsaRef(rp).ok());
      std::copy(out32.begin(), out32.end(), ref.begin() + int64_t{b} * c.heads * d);
      for (int kvh = 0; kvh < c.kv_heads; ++kvh) {
        const int64_t list = int64_t{b} * c.kv_heads + kvh;
        BsaKeySet set;
        BsaKeysForQuery(pos, starts.data() + list * c.max_blocks, counts[list], kBsaBlockSize,
                        c.n_sink, c.n_window, c.extend, &set);
        const size_t n = set.keys.size();
        std::vector<float> krot(n * d);
        std::vector<const float*> kp(n), vp(n);
        for (size_t j = 0; j < n; ++j) {
          const int64_t off = (kv_start[b] + set.keys[j]) * row + int64_t{kvh} * d;
          table->Rotate(k.values.data() + off, set.rope_positions[j], krot.data() + j * d);
          kp[j] = krot.data() + j * d;
          vp[j] = v.values.data() + off;
        }
        std::vector<float> qrot(d);
        for (int g = 0; g < group; ++g) {
          const int64_t o = (int64_t{b} * c.heads + kvh * group + g) * d;
          table->Rotate(q.data() + o, pos, qrot.data());
          decode_test::NaiveBf16Attend(qrot.data(), kp, vp, d, scale, naive.data() + o);
        }
      }
    }
  }

  // Device inputs.
  const std::vector<float> rope_rows = HipRopeRows(*table, max_t);
  DeviceBuffer d_rope(rope_rows);
  DeviceBuffer d_q(decode_test::ToBf16Bits(q));
  const bool fp8_direct = c.dtype == KvDtype::kFp8E5m2;
  std::unique_ptr<DeviceBuffer> dk, dv;
  if (fp8_direct) {
    dk = std::make_unique<DeviceBuffer>(k.fp8);
    dv = std::make_unique<DeviceBuffer>(v.fp8);
  } else {
    dk = std::make_unique<DeviceBuffer>(k.bf16);
    dv = std::make_unique<DeviceBuffer>(v.bf16);
  }
  DeviceBuffer d_start(kv_start), d_len(c.lens), d_starts(starts), d_counts(counts);
  DeviceBuffer d_out(out_n * sizeof(uint16_t));
  BsaDecodeGpuParams bp;
  bp.attn.q = d_q.get();
  bp.attn.k = dk->get();
  bp.attn.v = dv->get();
  bp.attn.kv_dtype = c.dtype;
  bp.attn.out = d_out.get();
  bp.attn.kv_start = d_start.get<int64_t>();
  bp.attn.kv_len = d_len.get<int32_t>();
  bp.attn.batch = batch;
  bp.attn.num_heads = c.heads;
  bp.attn.num_kv_heads = c.kv_heads;
  bp.attn.head_dim = d;
  bp.attn.max_kv_len = max_t;
  bp.attn.scale = scale;
  bp.attn.num_splits = c.num_splits;
  bp.keys_per_step = c.keys_per_step;
  bp.block_starts = d_starts.get<int32_t>();
  bp.block_count = d_counts.get<int32_t>();
  bp.max_blocks = c.max_blocks;
  bp.n_sink = c.n_sink;
  bp.n_window = c.n_window;
  if (c.rope) {
    bp.rope = d_rope.get<float>();
    bp.rope_positions = max_t;
    bp.extend = c.extend;
  }

  const std::vector<uint16_t> direct = RunBsa(bp, out_n, d_out.get());
  ASSERT_EQ(static_cast<int64_t>(direct.size()), out_n);
  EXPECT_EQ(RunBsa(bp, out_n, d_out.get()), direct) << "two runs differ";
  std::vector<uint16_t> result = direct;
  if (tiered) {
    TieredFixture f;
    BuildTiered(c, k, v, kv_start, seed + 5, &f);
    BsaDecodeGpuParams tp = bp;
    tp.tiered = f.src;
    tp.attn.k = tp.attn.v = nullptr;  // must not be read
    tp.attn.kv_start = nullptr;
    result = RunBsa(tp, out_n, d_out.get());
    int64_t diff = 0;
    for (int64_t i = 0; i < out_n; ++i) diff += result[i] != direct[i];
    EXPECT_EQ(diff, 0) << "tiered output differs from the all-hot path in " << diff << " of "
                       << out_n << " values (hits " << f.hits << " / " << f.total << ")";
    // The same tables, every sequence's in its own allocation with its own strides
    // (TieredKvSource::entries, the batched decode of sequences with separate tables).
    decode_test::PerEntryTiered pe;
    decode_test::SplitTieredPerEntry(f.src, c.kv_heads, c.lens, &pe);
    tp.tiered = pe.src;
    const std::vector<uint16_t> per_entry = RunBsa(tp, out_n, d_out.get());
    diff = 0;
    for (int64_t i = 0; i < out_n; ++i) diff += per_entry[i] != direct[i];
    EXPECT_EQ(diff, 0) << "per-entry tables: output differs from the all-hot path in " << diff
                       << " of " << out_n << " values";
  }

  std::vector<float> got(out_n);
  Bf16ToFloatArray(result.data(), got.data(), out_n);
  if (!c.rope) {
    for (float x : got) ASSERT_FALSE(std::isnan(x)) << c.name;
    return;
  }
  // atol: 2^-16, below a bf16 rounding step of any output of magnitude >= 2^-8.
  EXPECT_TRUE(testing::MatchesReference(got, naive, ref, 0x1.0p-16)) << c.name;
  EXPECT_LT(decode_test::RelL2(got, ref), 5e-3) << c.name;
}

std::vector<BsaKvCase> Cases() {
  std::vector<BsaKvCase> v;
  auto add = [&](BsaKvCase c) { v.push_back(c); };
  BsaKvCase c;
  c.heads = 32, c.kv_heads = 8, c.head_dim = 128;
  // RoPE, bf16, "8B layer" heads.
  c.name = "rope_ext_t1", c.lens = {1};
  add(c);
  c.name = "rope_ext_t100_b2_small", c.lens = {100, 9}, c.n_sink = 16, c.n_window = 31;
  c.max_blocks = 5;
  add(c);
  c.name = "rope_ext_t4097_b2", c.lens = {4097, 3000}, c.n_sink = 256, c.n_window = 1024;
  c.max_blocks = 64;
  add(c);
  c.name = "rope_off_t4097_b2", c.extend = false;
  add(c);
  c.extend = true;
  c.name = "rope_ext_t65536_b3_forced5", c.lens = {65536, 2000, 40000}, c.max_blocks = 256;
  c.num_splits = 5;
  add(c);
  c.num_splits = 0;
  c.name = "rope_ext_t32768_forced1", c.lens = {32768}, c.num_splits = 1;
  add(c);
  c.num_splits = 0;
  // Other group sizes / head dims.
  c.name = "rope_ext_hd64_g3_shift3", c.heads = 9, c.kv_heads = 3, c.head_dim = 64;
  c.lens = {2000, 700}, c.n_sink = 16, c.n_window = 63, c.max_blocks = 20, c.block_shift = 3;
  add(c);
  c.name = "rope_off_hd64_g3_shift3", c.extend = false;
  add(c);
  c.extend = true, c.block_shift = 0;
  c.name = "rope_ext_mha_hd64", c.heads = 4, c.kv_heads = 4, c.head_dim = 64, c.lens = {3000};
  c.n_sink = 64, c.n_window = 255, c.max_blocks = 40;
  add(c);
  c.name = "rope_ext_g8_no_sink_window0", c.heads = 16, c.kv_heads = 2, c.head_dim = 128;
  c.lens = {5000}, c.n_sink = 0, c.n_window = 0, c.max_blocks = 40;
  add(c);
  c.name = "rope_ext_g5_hd64", c.heads = 10, c.kv_heads = 2, c.head_dim = 64, c.lens = {9000};
  c.n_sink = 256, c.n_window = 1024, c.max_blocks = 128;
  add(c);
  c.name = "rope_ext_g2_sink_gt_t", c.heads = 4, c.kv_heads = 2, c.head_dim = 128;
  c.lens = {200, 300}, c.n_sink = 256, c.n_window = 16, c.max_blocks = 8;
  add(c);
  c.name = "rope_ext_t262144_g8", c.heads = 16, c.kv_heads = 2, c.head_dim = 128;
  c.lens = {262144}, c.n_sink = 256, c.n_window = 1024, c.max_blocks = 256;
  add(c);
  c.name = "rope_off_t262144_g4_hd64", c.heads = 8, c.kv_heads = 2, c.head_dim = 64;
  c.extend = false;
  add(c);
  c.extend = true;
  // fp8 e5m2 K/V.
  c.dtype = KvDtype::kFp8E5m2;
  c.name = "fp8_rope_ext_t65536", c.heads = 32, c.kv_heads = 8, c.head_dim = 128;
  c.lens = {65536};
  add(c);
  c.name = "fp8_rope_off_hd64_g3_b2", c.heads = 9, c.kv_heads = 3, c.head_dim = 64;
  c.lens = {4097, 100}, c.extend = false, c.max_blocks = 64;
  add(c);
  c.extend = true;
  c.name = "fp8_rope_ext_g8_t262144", c.heads = 16, c.kv_heads = 2, c.head_dim = 128;
  c.lens = {262144}, c.max_blocks = 256;
  add(c);
  // Tiered: bank dtype x hit rate.
  c.name = "tiered_fp8bank_hit50_t65536", c.heads = 32, c.kv_heads = 8, c.head_dim = 128;
  c.lens = {65536}, c.hit = 0.5;
  add(c);
  c.name = "tiered_bf16bank_hit90_b2", c.dtype = KvDtype::kBf16, c.lens = {20000, 5000};
  c.hit = 0.9;
  add(c);
  c.name = "tiered_bf16bank_hit0_hd64_g3", c.heads = 9, c.kv_heads = 3, c.head_dim = 64;
  c.lens = {3000, 100}, c.n_sink = 16, c.n_window = 63, c.max_blocks = 20, c.hit = 0;
  add(c);
  c.name = "tiered_fp8bank_hit100_small", c.dtype = KvDtype::kFp8E5m2, c.lens = {100, 9};
  c.max_blocks = 5, c.hit = 1.0;
  add(c);
  c.name = "tiered_bf16bank_hit50_norope_g8", c.dtype = KvDtype::kBf16, c.heads = 16;
  c.kv_heads = 2, c.head_dim = 128, c.lens = {7000}, c.n_sink = 256, c.n_window = 1024;
  c.max_blocks = 64, c.hit = 0.5, c.rope = false;
  add(c);
  c.rope = true;
  // The 4-keys-per-step instances (large batches): forced, and chosen automatically by a batch
  // whose (sequence, KV head) pairs fill the SMs (17 x 8 = 136 >= 132 on H100 / H200).
  c.keys_per_step = 4;
  c.name = "ku4_rope_ext_t65536_b2", c.heads = 32, c.kv_heads = 8, c.lens = {65536, 3000};
  c.hit = -1, c.max_blocks = 256;
  add(c);
  c.name = "ku4_fp8_rope_off_hd64_g3", c.heads = 9, c.kv_heads = 3, c.head_dim = 64;
  c.lens = {4097, 100}, c.extend = false, c.max_blocks = 64;
  add(c);
  c.name = "ku4_tiered_bf16bank_hit60_b2", c.dtype = KvDtype::kBf16, c.heads = 32, c.kv_heads = 8;
  c.head_dim = 128, c.lens = {20000, 777}, c.extend = true, c.hit = 0.6;
  add(c);
  c.keys_per_step = 0;
  c.name = "auto_b17_rope_ext", c.hit = -1, c.lens.assign(17, 0);
  for (int b = 0; b < 17; ++b) c.lens[b] = 1500 + 97 * b;
  c.max_blocks = 64;
  add(c);
  c.name = "auto_b17_fp8_tiered_hit50", c.dtype = KvDtype::kFp8E5m2, c.hit = 0.5;
  add(c);
  c.name = "tiered_fp8bank_hit30_t262144_g8", c.dtype = KvDtype::kFp8E5m2, c.lens = {262144};
  c.heads = 16, c.kv_heads = 2, c.head_dim = 128, c.max_blocks = 256, c.hit = 0.3;
  add(c);
  return v;
}

INSTANTIATE_TEST_SUITE_P(Cases, BsaDecodeKvGpuTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<BsaKvCase>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace hipserve::kernels
