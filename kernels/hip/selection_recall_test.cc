#include "kernels/hip/selection_recall.h"

#include <gtest/gtest.h>

#include <vector>

#include "kernels/testing/compare.h"

namespace hipserve::kernels {
namespace {

using testing::RandomVector;

constexpr int kGroup = 2, kHeadDim = 16, kTokens = 200, kSink = 8, kWindow = 16, kBlock = 4;

struct Fixture {
  std::vector<float> q = RandomVector(int64_t{kGroup} * kHeadDim, 1);
  std::vector<float> k = RandomVector(int64_t{kTokens} * kHeadDim, 2);
  RopeTable rope = RopeTable::Create(RopeConfig{}, kHeadDim, kTokens).value();

  SelectionRecallParams Params(const std::vector<int32_t>& blocks) const {
    SelectionRecallParams p;
    p.q = q.data();
    p.group = kGroup;
    p.head_dim = kHeadDim;
    p.pos = kTokens - 1;
    p.k = k.data();
    p.k_token_stride = kHeadDim;
    p.num_kv = kTokens;
    p.blocks = blocks.data();
    p.count = static_cast<int>(blocks.size());
    p.block_size = kBlock;
    p.n_sink = kSink;
    p.n_window = kWindow;
    p.rope = &rope;
    return p;
  }
};

std::vector<int32_t> AllCandidateBlocks() {
  std::vector<int32_t> b;
  for (int32_t s = kSink; s < kTokens - 1 - kWindow; s += kBlock) b.push_back(s);
  return b;
}

TEST(SelectionRecallTest, EveryBlockKeepsAllMass) {
  Fixture f;
  const std::vector<int32_t> blocks = AllCandidateBlocks();
  SelectionRecall r;
  ASSERT_TRUE(MeasureSelectionRecall(f.Params(blocks), &r).ok());
  EXPECT_NEAR(r.selected, 1.0, 1e-9);
  EXPECT_NEAR(r.oracle, 1.0, 1e-9);
  EXPECT_GT(r.fixed, 0.0);
  EXPECT_LT(r.fixed, 1.0);
}

// A key made to dominate the query: a selection without its block loses most of the mass, the
// oracle (same block count) keeps it, and selecting its block keeps it too.
TEST(SelectionRecallTest, MissingTheNeedleShows) {
  Fixture f;
  constexpr int kNeedle = 101;  // block [100, 104)
  // k = 40 * (rotation back of the query to the needle's position): q . R(p)k large.
  for (int c = 0; c < kHeadDim; ++c) f.q[kHeadDim + c] = f.q[c];  // both group heads alike
  std::vector<float> qr(kHeadDim), back(kHeadDim);
  f.rope.Rotate(f.q.data(), kTokens - 1, qr.data());
  // Rotating by -p: apply the inverse rotation through the table's transpose.
  const int half = kHeadDim / 2;
  std::vector<float> unit(kHeadDim, 0.f), cs(kHeadDim);
  for (int i = 0; i < half; ++i) unit[i] = 1.f;
  f.rope.Rotate(unit.data(), kNeedle, cs.data());
  for (int i = 0; i < half; ++i) {
    back[i] = qr[i] * cs[i] + qr[i + half] * cs[i + half];
    back[i + half] = qr[i + half] * cs[i] - qr[i] * cs[i + half];
  }
  for (int c = 0; c < kHeadDim; ++c) f.k[kNeedle * kHeadDim + c] = 40.f * back[c];
  std::vector<int32_t> without;
  for (int32_t b : AllCandidateBlocks()) {
    if (b != 100 && without.size() < 5) without.push_back(b);
  }
  SelectionRecall miss, hit;
  ASSERT_TRUE(MeasureSelectionRecall(f.Params(without), &miss).ok());
  std::vector<int32_t> with = without;
  with.back() = 100;
  std::sort(with.begin(), with.end());
  ASSERT_TRUE(MeasureSelectionRecall(f.Params(with), &hit).ok());
  EXPECT_LT(miss.selected, 0.6);
  EXPECT_GT(miss.oracle, 0.9);
  EXPECT_GT(hit.selected, 0.9);
  EXPECT_NEAR(hit.oracle, miss.oracle, 1e-12);
  EXPECT_GE(miss.selected, miss.fixed);
}

// rope = nullptr: logits are plain q . k (A1's attention); a key along the query dominates
// only without rotation.
TEST(SelectionRecallTest, NoRopeScoresUnrotatedKeys) {
  Fixture f;
  for (int c = 0; c < kHeadDim; ++c) f.q[kHeadDim + c] = f.q[c];
  for (int c = 0; c < kHeadDim; ++c) f.k[101 * kHeadDim + c] = 40.f * f.q[c];
  std::vector<int32_t> with = {100};
  SelectionRecallParams p = f.Params(with);
  p.rope = nullptr;
  SelectionRecall plain;
  ASSERT_TRUE(MeasureSelectionRecall(p, &plain).ok());
  EXPECT_GT(plain.selected, 0.9);
  EXPECT_NEAR(plain.oracle, plain.selected, 1e-9);
  SelectionRecall rotated;
  ASSERT_TRUE(MeasureSelectionRecall(f.Params(with), &rotated).ok());
  EXPECT_LT(rotated.selected, plain.selected);
}

TEST(SelectionRecallTest, RejectsBadInput) {
  Fixture f;
  SelectionRecallParams p = f.Params({});
  p.pos = kTokens;  // not < num_kv
  SelectionRecall r;
  EXPECT_EQ(MeasureSelectionRecall(p, &r).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MeasureSelectionRecall(f.Params({}), nullptr).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hipserve::kernels
