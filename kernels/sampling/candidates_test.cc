// CandidatesRef + MergeCandidates against SampleRef on the whole row: whenever the merge settles
// a row its token must equal SampleRef's (every seed), and its logprob too (bit for bit without
// truncation, within 1e-6 otherwise); the fallback must happen where exactness can't be shown.
#include "kernels/sampling/candidates.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/testing/compare.h"

namespace hipserve::kernels {
namespace {

float FloatOf(int32_t w) {
  float f;
  std::memcpy(&f, &w, 4);
  return f;
}

// Records of `row` split into `world` ceil-sized shards (the model's split: the last ones may be
// short or empty).
std::vector<std::vector<int32_t>> ShardRecords(const std::vector<float>& row, int world, int c,
                                               float temperature) {
  const int vocab = static_cast<int>(row.size());
  const int shard = (vocab + world - 1) / world;
  std::vector<std::vector<int32_t>> recs(world, std::vector<int32_t>(CandidateRecordWords(c)));
  for (int r = 0; r < world; ++r) {
    const int begin = std::min(vocab, r * shard);
    const int end = std::min(vocab, begin + shard);
    const absl::Status s =
        CandidatesRef(row.data() + begin, end - begin, begin, c, temperature, recs[r].data());
    EXPECT_TRUE(s.ok()) << s;
  }
  return recs;
}

struct Outcome {
  bool settled = false;
  bool truncated = false;
};

// Merges `row`'s records; when settled, checks against SampleRef. Returns what happened.
Outcome CheckRow(const std::vector<float>& row, int world, int c, const SamplingOptions& o,
                 const std::string& label) {
  const std::vector<std::vector<int32_t>> recs = ShardRecords(row, world, c, o.temperature);
  std::vector<const int32_t*> ptrs;
  Outcome out;
  for (const auto& r : recs) {
    ptrs.push_back(r.data());
    out.truncated = out.truncated || r[0] > r[2];
  }
  const absl::StatusOr<std::optional<SampleResult>> merged =
      MergeCandidates(ptrs, c, static_cast<int>(row.size()), o);
  EXPECT_TRUE(merged.ok()) << merged.status() << " " << label;
  if (!merged.ok() || !merged->has_value()) return out;
  out.settled = true;
  const absl::StatusOr<SampleResult> ref = SampleRef(row.data(), static_cast<int>(row.size()), o);
  EXPECT_TRUE(ref.ok()) << ref.status() << " " << label;
  if (!ref.ok()) return out;
  EXPECT_EQ((*merged)->token, ref->token)
      << label << " seed " << o.seed << " index " << o.sample_index;
  if (out.truncated) {
    EXPECT_NEAR((*merged)->logprob, ref->logprob, 1e-6 + 1e-7 * std::fabs(ref->logprob)) << label;
  } else {
    EXPECT_EQ((*merged)->logprob, ref->logprob) << label;
  }
  return out;
}

enum class Shape { kContinuous, kTies, kPeaked, kFlat };

std::vector<float> MakeRow(int vocab, Shape shape, double masked, testing::Rng& rng) {
  std::vector<float> row(vocab);
  for (int i = 0; i < vocab; ++i) {
    switch (shape) {
      case Shape::kContinuous:
        row[i] = rng.Uniform(-4.f, 4.f);
        break;
      case Shape::kTies:  // few distinct values, both zeros: ties everywhere
        row[i] = static_cast<float>(static_cast<int>(rng.Next() % 7) - 3) * 0.5f;
        if (row[i] == 0.f && (rng.Next() & 1)) row[i] = -0.f;
        break;
      case Shape::kPeaked:
        row[i] = rng.Uniform(-6.f, 2.f);
        break;
      case Shape::kFlat:
        row[i] = rng.Uniform(-0.01f, 0.01f);
        break;
    }
  }
  if (shape == Shape::kPeaked) {
    for (int j = 0; j < 1 + vocab / 400; ++j) row[rng.Next() % vocab] += rng.Uniform(4.f, 12.f);
  }
  if (masked > 0) {
    for (float& l : row) {
      if (rng.Uniform(0.f, 1.f) < masked) l = -INFINITY;
    }
    row[rng.Next() % vocab] = 1.f;
  }
  return row;
}

std::vector<SamplingOptions> OptionSets() {
  std::vector<SamplingOptions> sets;
  auto add = [&](float t, int k, float p) {
    SamplingOptions o;
    o.temperature = t;
    o.top_k = k;
    o.top_p = p;
    sets.push_back(o);
  };
  add(0.f, 0, 1.f);    // greedy
  add(0.f, 50, 0.5f);  // greedy ignores the rest
  for (float t : {0.3f, 1.f, 2.5f}) {
    add(t, 1, 1.f);
    add(t, 5, 1.f);
    add(t, 40, 1.f);
    add(t, 256, 1.f);
    add(t, 40, 0.8f);
    add(t, 0, 0.1f);
    add(t, 0, 0.5f);
    add(t, 0, 0.9f);
    add(t, 0, 0.99f);
  }
  return sets;
}

// Every shape x vocabulary x world x option set x a few seeds; c as the model picks it (the
// option set's need) and at the cap (a step's width is the max over its rows).
TEST(MergeCandidatesTest, SettledRowsEqualSampleRefOverRandomRows) {
  testing::Rng rng(12345);
  int settled = 0, settled_truncated = 0, fallbacks = 0, rows = 0;
  for (Shape shape : {Shape::kContinuous, Shape::kTies, Shape::kPeaked, Shape::kFlat}) {
    for (int vocab : {1, 7, 300, 1000, 5003}) {
      for (double masked : {0.0, 0.7}) {
        const std::vector<float> row = MakeRow(vocab, shape, masked, rng);
        for (int world : {1, 2, 3, 4}) {
          for (const SamplingOptions& base : OptionSets()) {
            const int need = CandidatesNeeded(base);
            ASSERT_GT(need, 0);
            for (int c : {need, kMaxSamplingCandidates}) {
              for (uint64_t seed : {1ull, 77ull, 123456789ull}) {
                SamplingOptions o = base;
                o.seed = seed;
                o.sample_index = seed * 3 + static_cast<uint64_t>(vocab);
                const std::string label =
                    absl::StrCat("shape ", static_cast<int>(shape), " vocab ", vocab, " masked ",
                                 masked, " world ", world, " T ", o.temperature, " k ", o.top_k,
                                 " p ", o.top_p, " c ", c);
                const Outcome r = CheckRow(row, world, c, o, label);
                ++rows;
                if (r.settled) {
                  ++settled;
                  if (r.truncated) ++settled_truncated;
                } else {
                  ++fallbacks;
                }
                if (::testing::Test::HasFailure()) return;
              }
            }
          }
        }
      }
    }
  }
  // The merge must do real work (truncated shards settled) and the fallback must happen too.
  EXPECT_GT(settled_truncated, rows / 3) << settled << " settled of " << rows;
  EXPECT_GT(fallbacks, 0);
  EXPECT_LT(fallbacks, rows / 5);
}

// 500 seeds on one row per option set: every settled draw equals SampleRef's, and whether a row
// settles does not depend on the seed. Only nuclei wider than the records fall back here.
TEST(MergeCandidatesTest, EverySeedDrawsSampleRefsToken) {
  testing::Rng rng(99);
  const std::vector<float> row = MakeRow(4000, Shape::kPeaked, 0.0, rng);
  int settled_sets = 0;
  for (const SamplingOptions& base : OptionSets()) {
    int settled = 0;
    for (uint64_t s = 0; s < 500; ++s) {
      SamplingOptions o = base;
      o.seed = 1000 + s;
      o.sample_index = s;
      settled += CheckRow(row, 3, CandidatesNeeded(o), o, "seeds").settled;
      if (::testing::Test::HasFailure()) return;
    }
    const std::string what =
        absl::StrCat("T ", base.temperature, " k ", base.top_k, " p ", base.top_p);
    EXPECT_TRUE(settled == 0 || settled == 500) << what << ": " << settled;
    if (base.top_k > 0 || (base.top_p <= 0.5f && base.temperature <= 1.f)) {
      EXPECT_EQ(settled, 500) << what;
    }
    settled_sets += settled == 500;
  }
  EXPECT_GE(settled_sets, static_cast<int>(OptionSets().size()) - 4);
}

// Temperature alone draws in id order over the whole vocabulary: never from records; nor do
// rows with NaN / +inf / all -inf (SampleRef's error names the index), invalid options, or top_k
// above the cap.
TEST(MergeCandidatesTest, RowsThatNeedTheWholeRowFallBack) {
  testing::Rng rng(7);
  std::vector<float> row = MakeRow(1000, Shape::kPeaked, 0.0, rng);
  SamplingOptions temp_only;
  temp_only.temperature = 0.8f;
  EXPECT_EQ(CandidatesNeeded(temp_only), 0);
  SamplingOptions big_k = temp_only;
  big_k.top_k = kMaxSamplingCandidates + 1;
  EXPECT_EQ(CandidatesNeeded(big_k), 0);
  SamplingOptions bad = temp_only;
  bad.top_p = 0.f;
  EXPECT_EQ(CandidatesNeeded(bad), 0);
  SamplingOptions greedy;
  for (const SamplingOptions& o : {temp_only, big_k, bad}) {
    EXPECT_FALSE(CheckRow(row, 2, kMaxSamplingCandidates, o, "a priori").settled);
  }
  EXPECT_TRUE(CheckRow(row, 2, 1, greedy, "greedy").settled);
  row[777] = std::nanf("");
  EXPECT_FALSE(CheckRow(row, 2, 1, greedy, "nan").settled);
  row[777] = INFINITY;
  EXPECT_FALSE(CheckRow(row, 2, 1, greedy, "inf").settled);
  std::fill(row.begin(), row.end(), -INFINITY);
  EXPECT_FALSE(CheckRow(row, 2, 1, greedy, "all -inf").settled);
  // A record with fewer than c candidates per shard needs c >= what the options ask.
  SamplingOptions k40 = temp_only;
  k40.top_k = 40;
  row = MakeRow(1000, Shape::kPeaked, 0.0, rng);
  EXPECT_FALSE(CheckRow(row, 2, 39, k40, "c < top_k").settled);
  EXPECT_TRUE(CheckRow(row, 2, 40, k40, "c == top_k").settled);
}

// top_p alone: a nucleus larger than what the records hold, and one whose end sits exactly on
// the target (within the total's rounding uncertainty), fall back; the same rows with a small
// enough nucleus settle.
TEST(MergeCandidatesTest, TopPFallsBackWhenTheNucleusIsNotProvable) {
  testing::Rng rng(3);
  SamplingOptions o;
  o.temperature = 1.f;
  o.top_p = 0.9f;
  // Flat: the 90% nucleus of 5000 near-equal logits is ~4500 tokens, more than 3 * 256.
  const std::vector<float> flat = MakeRow(5000, Shape::kFlat, 0.0, rng);
  EXPECT_FALSE(CheckRow(flat, 3, kMaxSamplingCandidates, o, "flat").settled);
  // Four equal logits hold all the mass (the rest underflow to weight 0): total = 4, top_p = 0.5
  // puts the target (2) exactly on the second token's cumulative weight.
  std::vector<float> four(600, -1e4f);
  for (int id : {5, 250, 301, 590}) four[id] = 10.f;
  o.top_p = 0.5f;
  const Outcome on_edge = CheckRow(four, 2, kMaxSamplingCandidates, o, "edge");
  EXPECT_TRUE(on_edge.truncated);
  EXPECT_FALSE(on_edge.settled);
  o.top_p = 0.6f;  // target 2.4: certainly after the third token
  EXPECT_TRUE(CheckRow(four, 2, kMaxSamplingCandidates, o, "clear").settled);
  // The same edge with top_k: the total is then exact, so it settles.
  o.top_p = 0.5f;
  o.top_k = 10;
  EXPECT_TRUE(CheckRow(four, 2, 10, o, "edge with top_k").settled);
}

TEST(CandidatesRefTest, RecordLayoutTiesZerosAndMasks) {
  // ids 10..17: two tied 2s, -0 and +0 tie, -inf skipped, NaN flagged.
  const std::vector<float> row = {1.f, 2.f, -INFINITY, 2.f, 0.f, -0.f, -3.f, std::nanf("")};
  std::vector<int32_t> rec(CandidateRecordWords(5));
  ASSERT_TRUE(CandidatesRef(row.data(), 8, 10, 5, 0.5f, rec.data()).ok());
  EXPECT_EQ(rec[0], 6);
  EXPECT_EQ(rec[1], 1);
  EXPECT_EQ(rec[2], 5);
  EXPECT_EQ(FloatOf(rec[3]), 2.f);
  double s1, st;
  std::memcpy(&s1, rec.data() + 4, 8);
  std::memcpy(&st, rec.data() + 6, 8);
  const double e1 = 2 + std::exp(-1.0) + 2 * std::exp(-2.0) + std::exp(-5.0);
  const double et = 2 + std::exp(-2.0) + 2 * std::exp(-4.0) + std::exp(-10.0);
  EXPECT_NEAR(s1, e1, 1e-14);
  EXPECT_NEAR(st, et, 1e-14);
  const std::vector<int32_t> ids = {11, 13, 10, 14, 15};
  for (int j = 0; j < 5; ++j) {
    EXPECT_EQ(rec[8 + 2 * j], ids[j]) << j;
    EXPECT_EQ(FloatOf(rec[9 + 2 * j]), row[ids[j] - 10]) << j;
  }
  EXPECT_TRUE(std::signbit(FloatOf(rec[9 + 2 * 4])));  // -0 kept as is
  // c above the finite count: unused pairs are (-1, -inf); T = 0 leaves the tempered sum 0.
  rec.assign(CandidateRecordWords(8), 0);
  ASSERT_TRUE(CandidatesRef(row.data(), 3, 0, 8, 0.f, rec.data()).ok());
  EXPECT_EQ(rec[0], 2);
  EXPECT_EQ(rec[2], 2);
  std::memcpy(&st, rec.data() + 6, 8);
  EXPECT_EQ(st, 0.0);
  EXPECT_EQ(rec[8 + 2 * 2], -1);
  EXPECT_EQ(FloatOf(rec[9 + 2 * 7]), -INFINITY);
  // An empty shard.
  ASSERT_TRUE(CandidatesRef(nullptr, 0, 0, 8, 1.f, rec.data()).ok());
  EXPECT_EQ(rec[0], 0);
  EXPECT_EQ(FloatOf(rec[3]), -INFINITY);
}

TEST(CandidatesRefTest, BadArgumentsAreInvalidArgument) {
  std::vector<float> row(4, 0.f);
  std::vector<int32_t> rec(CandidateRecordWords(kMaxSamplingCandidates + 1));
  EXPECT_FALSE(CandidatesRef(row.data(), 4, 0, 0, 1.f, rec.data()).ok());
  EXPECT_FALSE(CandidatesRef(row.data(), 4, 0, kMaxSamplingCandidates + 1, 1.f, rec.data()).ok());
  EXPECT_FALSE(CandidatesRef(row.data(), 4, 0, 2, -1.f, rec.data()).ok());
  EXPECT_FALSE(CandidatesRef(row.data(), 4, -1, 2, 1.f, rec.data()).ok());
  EXPECT_FALSE(CandidatesRef(row.data(), 4, 0, 2, 1.f, nullptr).ok());
  std::vector<const int32_t*> none;
  EXPECT_FALSE(MergeCandidates(none, 2, 4, SamplingOptions{}).ok());
  // A record whose stored count disagrees with min(c, finite) is malformed.
  ASSERT_TRUE(CandidatesRef(row.data(), 4, 0, 2, 1.f, rec.data()).ok());
  rec[2] = 1;
  EXPECT_FALSE(MergeCandidates({rec.data()}, 2, 4, SamplingOptions{}).ok());
}

}  // namespace
}  // namespace hipserve::kernels
