// GlooCommunicator between ranks in threads (in-memory rendezvous): exact all-reduce /
// all-gather / broadcast on integer-valued data, dtypes, timeouts on a stalled or missing peer,
// errors on a dead peer, and the sharded model giving the same greedy tokens at TP = 1, 2, 3.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "kernels/dtype/bf16.h"
#include "worker/builtin_model.h"
#include "worker/gloo_communicator.h"
#include "worker/hip_config.h"
#include "worker/model.h"
#include "worker/nccl_communicator.h"

namespace hipserve::worker {
namespace {

using kernels::DType;

GlooOptions Opts(int rank, int world, absl::Duration timeout = absl::Seconds(20)) {
  GlooOptions o;
  o.rank = rank;
  o.world_size = world;
  o.timeout = timeout;
  o.rendezvous_timeout = absl::Seconds(20);
  return o;
}

// Runs fn(rank, comm) on `world` threads, each with its own connected communicator.
void RunRanks(int world, const std::function<void(int, Communicator&)>& fn,
              absl::Duration timeout = absl::Seconds(20)) {
  auto store = MakeMemoryStore();
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      auto comm = MakeGlooCommunicator(Opts(r, world, timeout), store);
      ASSERT_TRUE(comm.ok()) << comm.status();
      fn(r, **comm);
    });
  }
  for (auto& t : threads) t.join();
}

class GlooWorldTest : public ::testing::TestWithParam<int> {};

TEST_P(GlooWorldTest, AllReduceSumIsExactOnIntegerValuedData) {
  const int world = GetParam();
  // Past Gloo's 1 MiB segment so that the ring runs several segments per rank.
  const int64_t n = 300007;
  RunRanks(world, [&](int rank, Communicator& comm) {
    EXPECT_EQ(comm.rank(), rank);
    EXPECT_EQ(comm.world_size(), world);
    std::vector<float> f(n);
    std::vector<int32_t> i32(n);
    for (int64_t i = 0; i < n; ++i) {
      f[i] = static_cast<float>((rank + 1) * (i % 1000) - rank);
      i32[i] = static_cast<int32_t>(rank * 100000 + i);
    }
    ASSERT_TRUE(comm.AllReduceSum(f.data(), n, DType::kFloat32, nullptr).ok());
    ASSERT_TRUE(comm.AllReduceSum(i32.data(), n, DType::kInt32, nullptr).ok());
    const int tri = world * (world + 1) / 2;    // sum of (rank + 1)
    const int ranks = world * (world - 1) / 2;  // sum of rank
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(f[i], static_cast<float>(tri * (i % 1000) - ranks)) << "fp32 element " << i;
      ASSERT_EQ(i32[i], static_cast<int32_t>(ranks * 100000 + world * i)) << "int32 " << i;
    }
  });
}

TEST_P(GlooWorldTest, Bf16AllReduceSumsInFp32AndRoundsOnce) {
  const int world = GetParam();
  const int64_t n = 1000;
  RunRanks(world, [&](int rank, Communicator& comm) {
    // Integers below 256 are exact in bf16, so are their sums here (< 256 * 3).
    std::vector<uint16_t> b(n);
    for (int64_t i = 0; i < n; ++i) {
      b[i] = kernels::FloatToBf16(static_cast<float>((i + rank) % 200));
    }
    ASSERT_TRUE(comm.AllReduceSum(b.data(), n, DType::kBf16, nullptr).ok());
    for (int64_t i = 0; i < n; ++i) {
      float want = 0;
      for (int r = 0; r < world; ++r) want += static_cast<float>((i + r) % 200);
      ASSERT_EQ(kernels::Bf16ToFloat(b[i]), kernels::RoundToBf16(want)) << "element " << i;
    }
    // fp8 cannot be summed by Gloo: refused, naming the supported dtypes.
    uint8_t fp8[4] = {0};
    absl::Status s = comm.AllReduceSum(fp8, 4, DType::kFp8E5m2, nullptr);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(s.message(), "fp32, bf16")) << s;
  });
}

TEST_P(GlooWorldTest, AllGatherStacksRanksInOrderAlsoInPlace) {
  const int world = GetParam();
  const int64_t n = 1001;
  RunRanks(world, [&](int rank, Communicator& comm) {
    std::vector<float> in(n), out(n * world, -1.f);
    for (int64_t i = 0; i < n; ++i) in[i] = static_cast<float>(rank * 10000 + i);
    ASSERT_TRUE(comm.AllGather(in.data(), n, DType::kFloat32, out.data(), nullptr).ok());
    for (int r = 0; r < world; ++r) {
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(out[r * n + i], static_cast<float>(r * 10000 + i)) << r << " " << i;
      }
    }
    // In place: this rank's slice already sits in the output (NCCL's in-place convention),
    // and an input at the start of the output overlaps other ranks' slices.
    std::vector<float> buf(n * world, -1.f);
    std::copy(in.begin(), in.end(), buf.begin() + rank * n);
    ASSERT_TRUE(
        comm.AllGather(buf.data() + rank * n, n, DType::kFloat32, buf.data(), nullptr).ok());
    EXPECT_EQ(buf, out);
    std::vector<float> front(n * world, -1.f);
    std::copy(in.begin(), in.end(), front.begin());
    ASSERT_TRUE(comm.AllGather(front.data(), n, DType::kFloat32, front.data(), nullptr).ok());
    EXPECT_EQ(front, out);
  });
}

TEST_P(GlooWorldTest, BroadcastCopiesTheRootAndBarrierPasses) {
  const int world = GetParam();
  const int root = world - 1;
  RunRanks(world, [&](int rank, Communicator& comm) {
    std::vector<uint16_t> b(513, static_cast<uint16_t>(rank));
    if (rank == root) {
      for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint16_t>(7 * i);
    }
    ASSERT_TRUE(comm.Broadcast(b.data(), 513, DType::kBf16, root, nullptr).ok());
    for (size_t i = 0; i < b.size(); ++i) ASSERT_EQ(b[i], static_cast<uint16_t>(7 * i));
    ASSERT_TRUE(comm.Barrier().ok());
    EXPECT_EQ(comm.Broadcast(b.data(), 1, DType::kBf16, world, nullptr).code(),
              absl::StatusCode::kInvalidArgument);
  });
}

INSTANTIATE_TEST_SUITE_P(Worlds, GlooWorldTest, ::testing::Values(1, 2, 3),
                         [](const ::testing::TestParamInfo<int>& i) {
                           return "world" + std::to_string(i.param);
                         });

TEST(GlooTest, StalledPeerTimesOutNamingTheRank) {
  auto store = MakeMemoryStore();
  absl::Notification done;
  std::thread peer([&] {
    auto comm = MakeGlooCommunicator(Opts(1, 2), store);
    ASSERT_TRUE(comm.ok()) << comm.status();
    done.WaitForNotification();  // never joins the collective
  });
  auto comm = MakeGlooCommunicator(Opts(0, 2, absl::Milliseconds(500)), store);
  ASSERT_TRUE(comm.ok()) << comm.status();
  std::vector<float> x(16, 1.f);
  const auto start = std::chrono::steady_clock::now();
  absl::Status s = (*comm)->AllReduceSum(x.data(), 16, DType::kFloat32, nullptr);
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "rank 0 of 2")) << s;
  EXPECT_LT(took, 5.0);
  // Broken for good: the next call fails at once.
  EXPECT_FALSE((*comm)->Barrier().ok());
  done.Notify();
  peer.join();
}

TEST(GlooTest, DeadPeerFailsFastNotAtTheTimeout) {
  auto store = MakeMemoryStore();
  std::thread peer([&] {
    auto comm = MakeGlooCommunicator(Opts(1, 2), store);
    ASSERT_TRUE(comm.ok()) << comm.status();
    // Destroying the communicator closes its connections, as a killed process would.
  });
  auto comm = MakeGlooCommunicator(Opts(0, 2, absl::Seconds(30)), store);
  ASSERT_TRUE(comm.ok()) << comm.status();
  peer.join();
  std::vector<float> x(1 << 16, 1.f);
  const auto start = std::chrono::steady_clock::now();
  absl::Status s = (*comm)->AllReduceSum(x.data(), x.size(), DType::kFloat32, nullptr);
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.message(), "rank 0 of 2")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "peer rank 1")) << s;
  EXPECT_LT(took, 10.0) << s;
}

TEST(GlooTest, MissingPeerAtRendezvousTimesOut) {
  auto store = MakeMemoryStore();
  GlooOptions o = Opts(0, 2);
  o.rendezvous_timeout = absl::Milliseconds(300);
  auto comm = MakeGlooCommunicator(o, store);
  ASSERT_FALSE(comm.ok());
  EXPECT_TRUE(absl::StrContains(comm.status().message(), "rank 0 of 2")) << comm.status();
  EXPECT_EQ(MakeGlooCommunicator(Opts(2, 2), store).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(NcclStubTest, CpuBuildSaysUnimplemented) {
  if (NcclAvailable()) GTEST_SKIP() << "built with NCCL";
  auto c = MakeNcclCommunicator(NcclOptions{}, MakeMemoryStore());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnimplemented);
}

// --- The sharded model over Gloo -------------------------------------------------------

constexpr char kPruningHip[] = R"({
    "n_sink": 4, "n_window": 8, "block_q": 4, "chunk_sizes": [16, 4, 2], "extend_min_tokens": 0,
    "stage_keep": [64, 16], "k": 8, "stride_q": [2, 2, 1], "mask_refresh_interval": [6, 3, 2],
    "layer_overrides": [{"layers": [0], "k": 12, "pruning_positions": "chunk_indexed"}]})";

BuiltinModelOptions SixKvHeads() {
  BuiltinModelOptions o;
  o.hidden = 96;
  o.intermediate = 192;
  o.num_layers = 2;
  o.num_heads = 12;
  o.num_kv_heads = 6;
  o.head_dim = 16;
  return o;
}

// Tokens of two sequences batched together (sampled with `o1` / `o2`; seeded ones advance their
// sample index per token), prefill then `steps` decode steps, on `world` ranks; rank 0's tokens
// are returned, and rank 0's sharded-sampling counts in *stats when given.
std::vector<int32_t> SampleTp(int world, const std::string& attention, int steps,
                              const kernels::SamplingOptions& o1,
                              const kernels::SamplingOptions& o2,
                              ShardedSamplingStats* stats = nullptr, int vocab = 259) {
  std::vector<int32_t> tokens;
  auto store = MakeMemoryStore();
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      std::unique_ptr<Communicator> comm;
      if (world == 1) {
        comm = MakeLocalCommunicator();
      } else {
        auto c = MakeGlooCommunicator(Opts(r, world), store);
        ASSERT_TRUE(c.ok()) << c.status();
        comm = std::move(*c);
      }
      BuiltinModelOptions shape = SixKvHeads();
      shape.vocab_size = vocab;
      auto full = MakeBuiltinModel(shape);
      ASSERT_TRUE(full.ok());
      auto shard = ShardWeights(*std::move(full), r, world);
      ASSERT_TRUE(shard.ok()) << shard.status();
      ModelOptions mo;
      mo.attention = attention;
      if (attention == "hip") {
        // Small enough that HiP prunes at these lengths (worker/hip_model_test.cc's config).
        auto c = ParseHipConfig(kPruningHip);
        ASSERT_TRUE(c.ok()) << c.status();
        mo.hip = *c;
      }
      auto m = Model::Create(*std::move(shard), comm.get(), mo);
      ASSERT_TRUE(m.ok()) << m.status();
      StepBatch b;
      std::vector<int32_t> p1, p2;
      for (int i = 0; i < 40; ++i) p1.push_back((i * 37 + 11) % 256);
      for (int i = 0; i < 23; ++i) p2.push_back((i * 53 + 5) % 256);
      SeqStep a{SequenceId(1), p1, 0, true, o1, {}};
      SeqStep c{SequenceId(2), p2, 0, true, o2, {}};
      b.work = {a, c};
      for (int s = 0; s < steps; ++s) {
        b.work[0].sampling.sample_index = o1.sample_index + s;
        b.work[1].sampling.sample_index = o2.sample_index + s;
        auto out = (*m)->Step(b);
        ASSERT_TRUE(out.ok()) << out.status();
        if (r != 0) {
          ASSERT_TRUE(out->empty());
          // Other ranks learn the tokens only through the test; mirror rank 0's inputs.
        }
        // Every rank must feed the same next tokens: rank 0 publishes them.
        std::vector<int32_t> next(2);
        if (r == 0) {
          ASSERT_EQ(out->size(), 2u);
          next = {(*out)[0].token, (*out)[1].token};
          tokens.insert(tokens.end(), next.begin(), next.end());
        }
        ASSERT_TRUE(comm->Broadcast(next.data(), 2, DType::kInt32, 0, nullptr).ok());
        b.work[0].start_pos += static_cast<int>(b.work[0].tokens.size());
        b.work[1].start_pos += static_cast<int>(b.work[1].tokens.size());
        b.work[0].tokens = {next[0]};
        b.work[1].tokens = {next[1]};
      }
      if (r == 0 && stats != nullptr) *stats = (*m)->sharded_sampling_stats();
    });
  }
  for (auto& t : threads) t.join();
  return tokens;
}

std::vector<int32_t> GreedyTp(int world, const std::string& attention, int steps,
                              ShardedSamplingStats* stats = nullptr) {
  return SampleTp(world, attention, steps, {}, {}, stats);  // temperature 0
}

class TpModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TpModelTest, GreedyTokensEqualAtTp1Tp2Tp3) {
  const std::vector<int32_t> tp1 = GreedyTp(1, GetParam(), 32);
  ASSERT_EQ(tp1.size(), 64u);
  ShardedSamplingStats stats;
  EXPECT_EQ(GreedyTp(2, GetParam(), 32, &stats), tp1);
  // Greedy rows are settled by the candidates alone: no logits row is gathered.
  EXPECT_EQ(stats.candidate_rows, 64);
  EXPECT_EQ(stats.fallback_rows, 0);
  EXPECT_EQ(GreedyTp(3, GetParam(), 32), tp1);
}

kernels::SamplingOptions Seeded(float temperature, int top_k, float top_p, uint64_t seed) {
  kernels::SamplingOptions o;
  o.temperature = temperature;
  o.top_k = top_k;
  o.top_p = top_p;
  o.seed = seed;
  o.sample_index = seed % 5;
  return o;
}

// Seeded sampling gives the same tokens at TP = 1, 2, 3 (vocabulary 3000, so shards hold more
// logits than the records): rows settled from the candidates (greedy, top_k, top_p with a
// nucleus the records hold) and rows whose whole logits are gathered (temperature alone; a
// nucleus wider than the records) alike. The counts show which path ran.
TEST(TpSamplingTest, SeededTokensEqualAtTp1Tp2Tp3) {
  enum Expect { kCandidates, kFallback, kHalf };
  struct Pair {
    kernels::SamplingOptions a, b;
    Expect expect;
  };
  const std::vector<Pair> pairs = {
      {Seeded(0.8f, 40, 1.f, 11), Seeded(1.3f, 5, 0.7f, 12), kCandidates},
      {Seeded(0.05f, 0, 0.9f, 21), Seeded(0.f, 0, 1.f, 22), kCandidates},
      {Seeded(0.9f, 0, 1.f, 31), Seeded(1.2f, 0, 1.f, 32), kFallback},  // temperature alone
      {Seeded(1.f, 0, 1.f, 41), Seeded(0.7f, 3, 1.f, 42), kHalf},
      {Seeded(3.f, 0, 0.95f, 51), Seeded(0.f, 0, 1.f, 52), kHalf},  // nucleus wider than records
  };
  constexpr int kSteps = 12, kVocab = 3000;
  for (const Pair& p : pairs) {
    const std::vector<int32_t> tp1 = SampleTp(1, "dense", kSteps, p.a, p.b, nullptr, kVocab);
    ASSERT_EQ(tp1.size(), 2u * kSteps);
    for (int world : {2, 3}) {
      ShardedSamplingStats stats;
      EXPECT_EQ(SampleTp(world, "dense", kSteps, p.a, p.b, &stats, kVocab), tp1)
          << "world " << world << " seeds " << p.a.seed << ", " << p.b.seed;
      EXPECT_EQ(stats.candidate_rows + stats.fallback_rows, 2 * kSteps);
      const int64_t want = p.expect == kCandidates ? 2 * kSteps : p.expect == kHalf ? kSteps : 0;
      EXPECT_EQ(stats.candidate_rows, want) << "world " << world << " seed " << p.a.seed;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Attention, TpModelTest, ::testing::Values("dense", "hip"));

}  // namespace
}  // namespace hipserve::worker
