#include "kernels/embedding/embedding.h"

#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/testing/compare.h"

namespace hipserve::kernels {
namespace {

struct EmbeddingCase {
  int num_tokens;
  int hidden;
  int64_t vocab_begin;
  int64_t vocab_end;
  int64_t vocab_total;  // ids are drawn from [0, vocab_total)
  std::string name;
};

class EmbeddingTest : public ::testing::TestWithParam<EmbeddingCase> {};

TEST_P(EmbeddingTest, MatchesNaive) {
  const EmbeddingCase& c = GetParam();
  const int64_t shard = c.vocab_end - c.vocab_begin;
  const std::vector<float> table = testing::RandomVector(shard * c.hidden, 11);
  testing::Rng rng(12);
  std::vector<int32_t> ids(c.num_tokens);
  for (auto& id : ids) id = static_cast<int32_t>(rng.Next() % c.vocab_total);
  ids[0] = static_cast<int32_t>(c.vocab_begin);  // always hit both shard edges
  if (c.num_tokens > 1) ids[1] = static_cast<int32_t>(c.vocab_end - 1);
  std::vector<float> out = testing::Poisoned(int64_t{c.num_tokens} * c.hidden);

  EmbeddingParams p;
  p.table = table.data();
  p.vocab_begin = c.vocab_begin;
  p.vocab_end = c.vocab_end;
  p.hidden = c.hidden;
  p.ids = ids.data();
  p.num_tokens = c.num_tokens;
  p.out = out.data();
  ASSERT_TRUE(EmbeddingRef(p).ok());

  for (int t = 0; t < c.num_tokens; ++t) {
    const bool owned = ids[t] >= c.vocab_begin && ids[t] < c.vocab_end;
    for (int h = 0; h < c.hidden; ++h) {
      const double want = owned ? table[(ids[t] - c.vocab_begin) * c.hidden + h] : 0.0;
      ASSERT_EQ(out[int64_t{t} * c.hidden + h], want) << "token " << t << " col " << h;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, EmbeddingTest,
                         ::testing::Values(EmbeddingCase{1, 8, 0, 16, 16, "single_full_vocab"},
                                           EmbeddingCase{33, 64, 0, 100, 100, "full_vocab"},
                                           EmbeddingCase{40, 17, 50, 100, 150, "middle_shard"},
                                           EmbeddingCase{64, 32, 0, 37, 151, "first_shard_of_4"},
                                           EmbeddingCase{64, 32, 114, 151, 151, "last_shard"}),
                         [](const ::testing::TestParamInfo<EmbeddingCase>& info) {
                           return info.param.name;
                         });

TEST(EmbeddingErrors, InvalidParamsLeaveOutputUntouched) {
  std::vector<float> table(4 * 2, 1.f);
  int32_t ids[2] = {1, 2};
  std::vector<float> out = testing::Poisoned(4);
  auto base = [&] {
    EmbeddingParams p;
    p.table = table.data();
    p.vocab_begin = 0;
    p.vocab_end = 4;
    p.hidden = 2;
    p.ids = ids;
    p.num_tokens = 2;
    p.out = out.data();
    return p;
  };
  ASSERT_TRUE(EmbeddingRef(base()).ok());
  out = testing::Poisoned(4);

  EmbeddingParams p = base();
  p.table = nullptr;
  EXPECT_EQ(EmbeddingRef(p).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(EmbeddingRef(p).message().find("table"), std::string::npos);
  p = base();
  p.ids = nullptr;
  EXPECT_EQ(EmbeddingRef(p).code(), absl::StatusCode::kInvalidArgument);
  p = base();
  p.out = nullptr;
  EXPECT_EQ(EmbeddingRef(p).code(), absl::StatusCode::kInvalidArgument);
  p = base();
  p.hidden = 0;
  EXPECT_NE(EmbeddingRef(p).message().find("hidden"), std::string::npos);
  p = base();
  p.num_tokens = -1;
  EXPECT_EQ(EmbeddingRef(p).code(), absl::StatusCode::kInvalidArgument);
  p = base();
  p.vocab_end = 0;
  EXPECT_NE(EmbeddingRef(p).message().find("vocab_end"), std::string::npos);
  p = base();
  ids[1] = -3;
  EXPECT_NE(EmbeddingRef(p).message().find("ids[1]"), std::string::npos);
  for (float v : out) EXPECT_TRUE(std::isnan(v));  // nothing written on error
}

}  // namespace
}  // namespace hipserve::kernels
