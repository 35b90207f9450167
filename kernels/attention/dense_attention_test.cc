#include "kernels/attention/dense_attention.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/testing/compare.h"

namespace hipserve::kernels {
namespace {

struct AttnCase {
  int num_q, num_kv, heads, kv_heads, head_dim, q_offset;
  std::string name;
};

// Textbook softmax(q k^T * scale + causal mask) v in precision T.
template <typename T>
std::vector<T> NaiveAttention(const AttnCase& c, const std::vector<float>& q,
                              const std::vector<float>& k, const std::vector<float>& v,
                              float scale) {
  const int d = c.head_dim;
  std::vector<T> out(int64_t{c.num_q} * c.heads * d);
  for (int i = 0; i < c.num_q; ++i) {
    for (int h = 0; h < c.heads; ++h) {
      const int kvh = h / (c.heads / c.kv_heads);
      std::vector<T> s(c.num_kv, -INFINITY);
      for (int j = 0; j <= c.q_offset + i; ++j) {
        T dot = 0;
        for (int x = 0; x < d; ++x) {
          dot += static_cast<T>(q[(int64_t{i} * c.heads + h) * d + x]) *
                 static_cast<T>(k[(int64_t{j} * c.kv_heads + kvh) * d + x]);
        }
        s[j] = dot * static_cast<T>(scale);
      }
      const T mx = *std::max_element(s.begin(), s.end());
      T z = 0;
      for (T& e : s) z += (e = std::exp(e - mx));
      for (int x = 0; x < d; ++x) {
        T acc = 0;
        for (int j = 0; j < c.num_kv; ++j) {
          acc += s[j] / z * static_cast<T>(v[(int64_t{j} * c.kv_heads + kvh) * d + x]);
        }
        out[(int64_t{i} * c.heads + h) * d + x] = acc;
      }
    }
  }
  return out;
}

class DenseAttentionRefTest : public ::testing::TestWithParam<AttnCase> {};

// Runs `impl` on seeded random inputs and checks it against the naive fp32/fp64 references.
void CheckAgainstNaive(const AttnCase& c, absl::Status (*impl)(const DenseAttentionParams&),
                       uint64_t seed) {
  const std::vector<float> q =
      testing::RandomVector(int64_t{c.num_q} * c.heads * c.head_dim, seed, -2, 2);
  const std::vector<float> k =
      testing::RandomVector(int64_t{c.num_kv} * c.kv_heads * c.head_dim, seed + 1, -2, 2);
  const std::vector<float> v =
      testing::RandomVector(int64_t{c.num_kv} * c.kv_heads * c.head_dim, seed + 2);
  std::vector<float> out = testing::Poisoned(int64_t{c.num_q} * c.heads * c.head_dim);
  const float scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
  DenseAttentionParams p{q.data(), k.data(),   v.data(),   out.data(), c.num_q, c.num_kv,
                         c.heads,  c.kv_heads, c.head_dim, c.q_offset, scale};
  ASSERT_TRUE(impl(p).ok());
  EXPECT_TRUE(testing::MatchesReference(out, NaiveAttention<float>(c, q, k, v, scale),
                                        NaiveAttention<double>(c, q, k, v, scale), 1e-6));
  p.num_heads = 5;  // not a multiple of the KV heads
  if (c.kv_heads > 1) EXPECT_EQ(impl(p).code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(DenseAttentionRefTest, MatchesNaiveFp64) {
  CheckAgainstNaive(GetParam(), &DenseAttentionRef, 51);
}

// The serving path (sgemm-based) must meet the same rule against the same naive references.
TEST_P(DenseAttentionRefTest, BlockedMatchesNaiveFp64) {
  CheckAgainstNaive(GetParam(), &DenseAttentionBlocked, 61);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, DenseAttentionRefTest,
    ::testing::Values(AttnCase{1, 1, 1, 1, 8, 0, "single"},
                      AttnCase{16, 16, 4, 4, 32, 0, "prefill_mha"},
                      AttnCase{13, 13, 9, 3, 64, 0, "prefill_gqa_smollm"},
                      AttnCase{1, 77, 8, 2, 64, 76, "decode_gqa"},
                      AttnCase{1, 50, 4, 1, 128, 49, "decode_mqa"},
                      AttnCase{5, 40, 6, 2, 16, 35, "chunked_prefill"},
                      AttnCase{3, 40, 2, 2, 16, 10, "query_block_mid_cache"},
                      AttnCase{150, 220, 9, 3, 64, 70, "several_query_blocks"},
                      // Decode split over 256-key chunks (partial last).
                      AttnCase{1, 1000, 9, 3, 64, 999, "decode_smollm_chunks"},
                      // Query 0 sees no key of the last chunk.
                      AttnCase{3, 514, 4, 4, 8, 511, "decode_rows_without_keys_in_a_chunk"}),
    [](const ::testing::TestParamInfo<AttnCase>& info) { return info.param.name; });

TEST(DenseAttentionTest, FirstQueryCopiesFirstValue) {
  // Query 0 at position 0 sees only key 0, so its output is exactly v[0].
  const std::vector<float> q = testing::RandomVector(2 * 2 * 4, 1);
  const std::vector<float> k = testing::RandomVector(2 * 1 * 4, 2);
  const std::vector<float> v = testing::RandomVector(2 * 1 * 4, 3);
  std::vector<float> out = testing::Poisoned(2 * 2 * 4);
  ASSERT_TRUE(
      DenseAttentionRef({q.data(), k.data(), v.data(), out.data(), 2, 2, 2, 1, 4, 0, 0.5f}).ok());
  for (int h = 0; h < 2; ++h) {
    for (int x = 0; x < 4; ++x) EXPECT_EQ(out[h * 4 + x], v[x]);
  }
}

TEST(DenseAttentionErrors, InvalidArgumentNamesField) {
  float q[8] = {}, k[8] = {}, v[8] = {}, o[8];
  const DenseAttentionParams good{q, k, v, o, 1, 2, 2, 1, 4, 1, 0.5f};
  ASSERT_TRUE(DenseAttentionRef(good).ok());
  struct Bad {
    DenseAttentionParams p;
    const char* field;
  };
  std::vector<Bad> bad;
  DenseAttentionParams p = good;
  p = good, p.q = nullptr, bad.push_back({p, "q is"});
  p = good, p.k = nullptr, bad.push_back({p, "k is"});
  p = good, p.v = nullptr, bad.push_back({p, "v is"});
  p = good, p.out = nullptr, bad.push_back({p, "out"});
  p = good, p.num_q = 0, bad.push_back({p, "num_q"});
  p = good, p.num_kv = 0, bad.push_back({p, "num_kv"});
  p = good, p.num_heads = -1, bad.push_back({p, "num_heads"});
  p = good, p.num_kv_heads = 0, bad.push_back({p, "num_kv_heads"});
  p = good, p.head_dim = 0, bad.push_back({p, "head_dim"});
  p = good, p.num_heads = 3, p.num_kv_heads = 2, bad.push_back({p, "multiple of num_kv_heads"});
  p = good, p.q_offset = 2, bad.push_back({p, "q_offset"});
  p = good, p.q_offset = -1, bad.push_back({p, "q_offset"});
  p = good, p.scale = 0.f, bad.push_back({p, "scale"});
  p = good, p.scale = INFINITY, bad.push_back({p, "scale"});
  for (const Bad& b : bad) {
    const absl::Status s = DenseAttentionRef(b.p);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << b.field;
    EXPECT_NE(s.message().find(b.field), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace hipserve::kernels
