#include "kernels/hip/bsa.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/attention/dense_attention.h"
#include "kernels/hip/mask_estimation.h"
#include "kernels/testing/compare.h"

namespace hipserve::kernels {
namespace {

using testing::MatchesReference;
using testing::Poisoned;
using testing::RandomVector;

// ---- Position rewrites (HIP.md 5), explicit small cases ----

struct KeySetCase {
  std::string name;
  int32_t pos;
  std::vector<int32_t> blocks;
  int block_size, n_sink, n_window;
  std::vector<int32_t> keys;
  std::vector<int32_t> extend_positions;  // with extend off the positions equal `keys`
};

class BsaKeySetTest : public ::testing::TestWithParam<KeySetCase> {};

TEST_P(BsaKeySetTest, KeysAndPositions) {
  const KeySetCase& c = GetParam();
  BsaKeySet on, off;
  BsaKeysForQuery(c.pos, c.blocks.data(), static_cast<int>(c.blocks.size()), c.block_size, c.n_sink,
                  c.n_window, /*extend=*/true, &on);
  BsaKeysForQuery(c.pos, c.blocks.data(), static_cast<int>(c.blocks.size()), c.block_size, c.n_sink,
                  c.n_window, /*extend=*/false, &off);
  EXPECT_EQ(on.keys, c.keys);
  EXPECT_EQ(on.rope_positions, c.extend_positions);
  EXPECT_EQ(off.keys, c.keys);
  EXPECT_EQ(off.rope_positions, c.keys);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BsaKeySetTest,
    ::testing::Values(
        // Sink {0,1} + blocks {4,5},{10,11} renumbered 11..16, ending right before the
        // window 17..20 (real positions, the query included).
        KeySetCase{"Streaming",
                   20,
                   {4, 10},
                   2,
                   2,
                   3,
                   {0, 1, 4, 5, 10, 11, 17, 18, 19, 20},
                   {11, 12, 13, 14, 15, 16, 17, 18, 19, 20}},
        // Blocks overlapping the sink ({0,1}) or the window ({9..12}) add only what is new.
        KeySetCase{"OverlapsCountOnce",
                   12,
                   {0, 8, 10},
                   2,
                   2,
                   3,
                   {0, 1, 8, 9, 10, 11, 12},
                   {6, 7, 8, 9, 10, 11, 12}},
        // Every candidate selected: rewritten positions are the real ones (HiP == dense).
        KeySetCase{"AllSelected",
                   13,
                   {2, 4, 6, 8},
                   2,
                   2,
                   3,
                   {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13},
                   {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}},
        // Query inside the sink: just the causal prefix.
        KeySetCase{"InsideSink", 1, {}, 8, 4, 3, {0, 1}, {0, 1}},
        // Window reaching into the sink: no candidates, no duplicates.
        KeySetCase{"WindowOverSink", 5, {}, 8, 4, 3, {0, 1, 2, 3, 4, 5}, {0, 1, 2, 3, 4, 5}},
        // Nothing selected: the sink moves up to the window.
        KeySetCase{
            "NoBlocks", 30, {}, 8, 2, 4, {0, 1, 26, 27, 28, 29, 30}, {24, 25, 26, 27, 28, 29, 30}},
        // A partial last block is cut at the window.
        KeySetCase{"BlockCutAtWindow",
                   20,
                   {14},
                   4,
                   2,
                   4,
                   {0, 1, 14, 15, 16, 17, 18, 19, 20},
                   {12, 13, 14, 15, 16, 17, 18, 19, 20}}),
    [](const ::testing::TestParamInfo<KeySetCase>& info) { return info.param.name; });

// ---- Numerics ----

constexpr int kHeadDim = 16;

struct AttnCase {
  std::string name;
  int num_kv;
  int num_q;  // queries at the last num_q positions
  int num_heads, num_kv_heads;
  int n_sink, n_window, block_size;
  bool extend;
  bool all_blocks;  // else every third candidate block
};

class BsaNumericsTest : public ::testing::TestWithParam<AttnCase> {
 protected:
  void SetUp() override {
    const AttnCase& c = GetParam();
    q_ = RandomVector(int64_t{c.num_q} * c.num_heads * kHeadDim, 1);
    k_ = RandomVector(int64_t{c.num_kv} * c.num_kv_heads * kHeadDim, 2);
    v_ = RandomVector(int64_t{c.num_kv} * c.num_kv_heads * kHeadDim, 3);
    auto rope = RopeTable::Create(RopeConfig{}, kHeadDim, c.num_kv + 1);
    ASSERT_TRUE(rope.ok());
    rope_ = std::make_unique<RopeTable>(*std::move(rope));
    for (int i = 0; i < c.num_q; ++i) {
      q_pos_.push_back(c.num_kv - c.num_q + i);
      q_row_.push_back(i);  // one plan row per query (decode-like)
    }
    // Plan: per query, the candidate blocks of [n_sink, pos - n_window); different KV heads
    // get different subsets so a head mix-up shows.
    max_blocks_ = c.num_kv / c.block_size + 1;
    starts_.assign(int64_t{c.num_q} * c.num_kv_heads * max_blocks_, -1);
    counts_.assign(int64_t{c.num_q} * c.num_kv_heads, 0);
    for (int i = 0; i < c.num_q; ++i) {
      const int32_t end = std::max(c.n_sink, q_pos_[i] - c.n_window);
      ChunkList all = ChunksOfRange(c.n_sink, end, c.block_size);
      for (int h = 0; h < c.num_kv_heads; ++h) {
        int n = 0;
        for (size_t b = 0; b < all.starts.size(); ++b) {
          if (c.all_blocks || (b + h) % 3 == 0) {
            starts_[(int64_t{i} * c.num_kv_heads + h) * max_blocks_ + n++] = all.starts[b];
          }
        }
        counts_[int64_t{i} * c.num_kv_heads + h] = n;
      }
    }
  }

  BsaParams Params(float* out) const {
    const AttnCase& c = GetParam();
    BsaParams p;
    p.q = q_.data();
    p.q_pos = q_pos_.data();
    p.q_plan_row = q_row_.data();
    p.num_q = c.num_q;
    p.num_heads = c.num_heads;
    p.num_kv_heads = c.num_kv_heads;
    p.head_dim = kHeadDim;
    p.k = k_.data();
    p.v = v_.data();
    p.num_kv = c.num_kv;
    p.block_starts = starts_.data();
    p.block_counts = counts_.data();
    p.num_rows = c.num_q;
    p.max_blocks = max_blocks_;
    p.block_size = c.block_size;
    p.n_sink = c.n_sink;
    p.n_window = c.n_window;
    p.extend = c.extend;
    p.rope = rope_.get();
    p.scale = 1.f / std::sqrt(static_cast<float>(kHeadDim));
    p.out = out;
    return p;
  }

  // fp64 attention over BsaKeysForQuery's keys (rotated with the table, as BSA does), and a
  // naive fp32 two-pass version of the same for the pass rule.
  void Reference(std::vector<double>* ref, std::vector<float>* naive) const {
    const AttnCase& c = GetParam();
    const int group = c.num_heads / c.num_kv_heads;
    ref->assign(q_.size(), 0.0);
    naive->assign(q_.size(), 0.f);
    std::vector<float> qr(kHeadDim), kr(kHeadDim);
    BsaKeySet set;
    for (int i = 0; i < c.num_q; ++i) {
      for (int h = 0; h < c.num_heads; ++h) {
        const int kh = h / group;
        const int64_t plan = int64_t{i} * c.num_kv_heads + kh;
        BsaKeysForQuery(q_pos_[i], starts_.data() + plan * max_blocks_, counts_[plan], c.block_size,
                        c.n_sink, c.n_window, c.extend, &set);
        rope_->Rotate(q_.data() + (int64_t{i} * c.num_heads + h) * kHeadDim, q_pos_[i], qr.data());
        const int n = static_cast<int>(set.keys.size());
        std::vector<double> s(n);
        std::vector<float> sf(n);
        double mx = -INFINITY;
        float mxf = -INFINITY;
        for (int j = 0; j < n; ++j) {
          rope_->Rotate(k_.data() + (int64_t{set.keys[j]} * c.num_kv_heads + kh) * kHeadDim,
                        set.rope_positions[j], kr.data());
          double dot = 0;
          float dotf = 0;
          for (int d = 0; d < kHeadDim; ++d) {
            dot += double{qr[d]} * kr[d];
            dotf += qr[d] * kr[d];
          }
          s[j] = dot / std::sqrt(double{kHeadDim});
          sf[j] = dotf * (1.f / std::sqrt(static_cast<float>(kHeadDim)));
          mx = std::max(mx, s[j]);
          mxf = std::max(mxf, sf[j]);
        }
        double sum = 0;
        float sumf = 0;
        std::vector<double> acc(kHeadDim, 0);
        std::vector<float> accf(kHeadDim, 0);
        for (int j = 0; j < n; ++j) {
          const double w = std::exp(s[j] - mx);
          const float wf = std::exp(sf[j] - mxf);
          sum += w;
          sumf += wf;
          const float* vj = v_.data() + (int64_t{set.keys[j]} * c.num_kv_heads + kh) * kHeadDim;
          for (int d = 0; d < kHeadDim; ++d) {
            acc[d] += w * vj[d];
            accf[d] += wf * vj[d];
          }
        }
        for (int d = 0; d < kHeadDim; ++d) {
          (*ref)[(int64_t{i} * c.num_heads + h) * kHeadDim + d] = acc[d] / sum;
          (*naive)[(int64_t{i} * c.num_heads + h) * kHeadDim + d] = accf[d] / sumf;
        }
      }
    }
  }

  std::vector<float> q_, k_, v_;
  std::unique_ptr<RopeTable> rope_;
  std::vector<int32_t> q_pos_, q_row_, starts_, counts_;
  int max_blocks_ = 0;
};

TEST_P(BsaNumericsTest, MatchesFp64OverItsKeySet) {
  std::vector<float> out = Poisoned(static_cast<int64_t>(q_.size()));
  ASSERT_TRUE(BsaRef(Params(out.data())).ok());
  std::vector<double> ref;
  std::vector<float> naive;
  Reference(&ref, &naive);
  EXPECT_TRUE(MatchesReference(out, naive, ref, 1e-6));
}

// With every candidate block selected BSA is dense attention (real positions either way).
class BsaDenseTest : public BsaNumericsTest {};

TEST_P(BsaDenseTest, AllBlocksEqualsDense) {
  const AttnCase& c = GetParam();
  ASSERT_TRUE(c.all_blocks);
  std::vector<float> out = Poisoned(static_cast<int64_t>(q_.size()));
  ASSERT_TRUE(BsaRef(Params(out.data())).ok());
  // Dense over keys rotated at real positions.
  std::vector<float> kr(k_.size()), qr(q_.size());
  for (int j = 0; j < c.num_kv; ++j) {
    for (int h = 0; h < c.num_kv_heads; ++h) {
      const int64_t o = (int64_t{j} * c.num_kv_heads + h) * kHeadDim;
      rope_->Rotate(k_.data() + o, j, kr.data() + o);
    }
  }
  for (int i = 0; i < c.num_q; ++i) {
    for (int h = 0; h < c.num_heads; ++h) {
      const int64_t o = (int64_t{i} * c.num_heads + h) * kHeadDim;
      rope_->Rotate(q_.data() + o, q_pos_[i], qr.data() + o);
    }
  }
  std::vector<float> dense = Poisoned(static_cast<int64_t>(q_.size()));
  DenseAttentionParams d;
  d.q = qr.data();
  d.k = kr.data();
  d.v = v_.data();
  d.out = dense.data();
  d.num_q = c.num_q;
  d.num_kv = c.num_kv;
  d.num_heads = c.num_heads;
  d.num_kv_heads = c.num_kv_heads;
  d.head_dim = kHeadDim;
  d.q_offset = c.num_kv - c.num_q;
  d.scale = 1.f / std::sqrt(static_cast<float>(kHeadDim));
  ASSERT_TRUE(DenseAttentionRef(d).ok());
  std::vector<double> ref;
  std::vector<float> naive;
  Reference(&ref, &naive);
  EXPECT_TRUE(MatchesReference(out, naive, ref, 1e-6));
  EXPECT_TRUE(MatchesReference(dense, naive, ref, 1e-6));
}

const AttnCase kDenseCases[] = {
    AttnCase{"DecodeAllExtend", 300, 1, 4, 2, 16, 32, 8, true, true},
    AttnCase{"DecodeAllReal", 300, 1, 4, 2, 16, 32, 8, false, true},
    AttnCase{"PrefillAllExtend", 150, 150, 4, 2, 8, 16, 8, true, true},
    AttnCase{"PrefillAllRealMha", 150, 150, 2, 2, 8, 16, 4, false, true},
    AttnCase{"PrefillAllPartialBlock", 157, 157, 4, 1, 5, 9, 8, true, true},
};

std::string AttnName(const ::testing::TestParamInfo<AttnCase>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Dense, BsaDenseTest, ::testing::ValuesIn(kDenseCases), AttnName);
INSTANTIATE_TEST_SUITE_P(Dense, BsaNumericsTest, ::testing::ValuesIn(kDenseCases), AttnName);

INSTANTIATE_TEST_SUITE_P(
    Sparse, BsaNumericsTest,
    ::testing::Values(AttnCase{"DecodeSparseExtend", 500, 1, 4, 1, 16, 32, 8, true, false},
                      AttnCase{"DecodeSparseReal", 500, 1, 4, 2, 16, 32, 8, false, false},
                      AttnCase{"PrefillSparseExtend", 260, 100, 6, 2, 4, 24, 8, true, false},
                      AttnCase{"LongDecodeSparse", 3000, 1, 4, 2, 64, 128, 8, true, false}),
    AttnName);

TEST(BsaTest, RejectsUnsortedBlocks) {
  std::vector<float> q = RandomVector(16, 1), k = RandomVector(64 * 16, 2),
                     v = RandomVector(64 * 16, 3), out(16);
  auto rope = RopeTable::Create(RopeConfig{}, 16, 64);
  ASSERT_TRUE(rope.ok());
  std::vector<int32_t> pos = {63}, row = {0}, starts = {16, 8}, counts = {2};
  BsaParams p;
  p.q = q.data();
  p.q_pos = pos.data();
  p.q_plan_row = row.data();
  p.num_q = 1;
  p.num_heads = 1;
  p.num_kv_heads = 1;
  p.head_dim = 16;
  p.k = k.data();
  p.v = v.data();
  p.num_kv = 64;
  p.block_starts = starts.data();
  p.block_counts = counts.data();
  p.num_rows = 1;
  p.max_blocks = 2;
  p.block_size = 8;
  p.n_sink = 4;
  p.n_window = 8;
  p.rope = &*rope;
  p.scale = 0.25f;
  p.out = out.data();
  EXPECT_EQ(BsaRef(p).code(), absl::StatusCode::kInvalidArgument);
  starts = {8, 16};
  EXPECT_TRUE(BsaRef(p).ok());
}

}  // namespace
}  // namespace hipserve::kernels
