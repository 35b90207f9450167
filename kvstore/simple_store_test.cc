#include "kvstore/simple_store.h"

#include <memory>
#include <vector>

#include "gtest/gtest.h"

namespace hipserve::kvstore {
namespace {

constexpr int kHeads = 2, kDim = 4;

std::vector<float> Tokens(int n, float base) {
  std::vector<float> out(n * kHeads * kDim);
  for (size_t i = 0; i < out.size(); ++i) out[i] = base + static_cast<float>(i);
  return out;
}

std::unique_ptr<SimpleKvStore> Make(int64_t budget) {
  SimpleKvStoreOptions o{2, kHeads, kDim, budget};
  auto s = SimpleKvStore::Create(o);
  EXPECT_TRUE(s.ok()) << s.status();
  return std::unique_ptr<SimpleKvStore>(*s);
}

TEST(SimpleKvStoreTest, RejectsBadOptions) {
  EXPECT_EQ(SimpleKvStore::Create({0, 1, 1, 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SimpleKvStoreTest, BudgetExhaustionKeepsDataAndReportsNumbers) {
  auto store = Make(10);
  const SequenceId a(1), b(2);
  ASSERT_TRUE(store->AddSequence(a).ok());
  ASSERT_TRUE(store->AddSequence(b).ok());
  auto ka = Tokens(6, 0), va = Tokens(6, 1000);
  ASSERT_TRUE(store->Append(a, LayerId(0), ka.data(), va.data(), 6).ok());
  auto kb = Tokens(5, 5000), vb = Tokens(5, 6000);
  absl::Status s = store->Append(b, LayerId(0), kb.data(), vb.data(), 5);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("6 tokens in use + 5 requested > 10"), std::string::npos)
      << s.message();
  EXPECT_EQ(*store->Length(b), 0);
  EXPECT_EQ(store->TokensInUse(), 6);
  auto view = store->View(a, LayerId(0));
  ASSERT_TRUE(view.ok());
  ASSERT_EQ(view->tokens, 6);
  EXPECT_EQ(std::vector<float>(view->k, view->k + ka.size()), ka);
  EXPECT_EQ(std::vector<float>(view->v, view->v + va.size()), va);
}

TEST(SimpleKvStoreTest, FreeReturnsTokensAndUnknownSequencesError) {
  auto store = Make(10);
  const SequenceId a(1);
  ASSERT_TRUE(store->AddSequence(a).ok());
  EXPECT_EQ(store->AddSequence(a).code(), absl::StatusCode::kAlreadyExists);
  auto k = Tokens(7, 0);
  ASSERT_TRUE(store->Append(a, LayerId(0), k.data(), k.data(), 7).ok());
  EXPECT_EQ(store->TokensInUse(), 7);
  ASSERT_TRUE(store->Free(a).ok());
  EXPECT_EQ(store->TokensInUse(), 0);
  EXPECT_EQ(store->Free(a).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->Append(a, LayerId(0), k.data(), k.data(), 1).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store->View(SequenceId(9), LayerId(0)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->Length(SequenceId(9)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->Truncate(SequenceId(9), 0).code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(store->Contains(a));
  EXPECT_EQ(store->NumSequences(), 0);
}

TEST(SimpleKvStoreTest, LayersCannotOutgrowLayerZero) {
  auto store = Make(10);
  const SequenceId a(1);
  ASSERT_TRUE(store->AddSequence(a).ok());
  auto k = Tokens(3, 0);
  EXPECT_EQ(store->Append(a, LayerId(1), k.data(), k.data(), 1).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->Append(a, LayerId(2), k.data(), k.data(), 1).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SimpleKvStoreTest, TruncateShrinksEveryLayerAndReturnsBudget) {
  auto store = Make(10);
  const SequenceId a(1);
  ASSERT_TRUE(store->AddSequence(a).ok());
  auto k = Tokens(5, 0);
  ASSERT_TRUE(store->Append(a, LayerId(0), k.data(), k.data(), 5).ok());
  ASSERT_TRUE(store->Append(a, LayerId(1), k.data(), k.data(), 5).ok());
  EXPECT_EQ(store->Truncate(a, 6).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(store->Truncate(a, 2).ok());
  EXPECT_EQ(*store->Length(a), 2);
  EXPECT_EQ(store->View(a, LayerId(1))->tokens, 2);
  EXPECT_EQ(store->TokensInUse(), 2);
  EXPECT_EQ(store->View(a, LayerId(0))->k[2 * kHeads * kDim - 1], k[2 * kHeads * kDim - 1]);
}

}  // namespace
}  // namespace hipserve::kvstore
