// NcclCommunicator at world size 1 on one device: the CUDA model's greedy tokens through NCCL
// (every all-reduce and the logits all-gather run as NCCL collectives on the backend's stream)
// equal those through the local communicator. Skips without a device.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/device.h"
#include "worker/builtin_model.h"
#include "worker/model.h"
#include "worker/nccl_communicator.h"

namespace hipserve::worker {
namespace {

std::vector<int32_t> Greedy(Communicator* comm, int n) {
  BuiltinModelOptions o;  // head_dim 64: a shape the GPU kernels support
  o.hidden = 256;
  o.intermediate = 512;
  o.num_layers = 4;
  o.num_heads = 8;
  o.num_kv_heads = 2;
  o.head_dim = 64;
  auto w = MakeBuiltinModel(o);
  EXPECT_TRUE(w.ok()) << w.status();
  ModelOptions mo;
  mo.backend = "cuda";
  mo.max_context = 1024;
  mo.cuda.gpu_memory_bytes = int64_t{2} << 30;
  auto m = Model::Create(*std::move(w), comm, mo);
  EXPECT_TRUE(m.ok()) << m.status();
  std::vector<int32_t> out;
  if (!m.ok()) return out;
  StepBatch b;
  SeqStep s;
  s.seq = SequenceId(1);
  for (int i = 0; i < 37; ++i) s.tokens.push_back((i * 29 + 3) % 256);
  s.sample = true;
  s.sampling.temperature = 0;
  b.work = {s};
  for (int i = 0; i < n; ++i) {
    auto r = (*m)->Step(b);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok() || r->size() != 1) break;
    out.push_back((*r)[0].token);
    b.work[0].start_pos += static_cast<int>(b.work[0].tokens.size());
    b.work[0].tokens = {(*r)[0].token};
  }
  return out;
}

TEST(NcclCommunicatorGpuTest, WorldOfOneGivesTheLocalCommunicatorsTokens) {
  if (kernels::CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  auto local = MakeLocalCommunicator();
  const std::vector<int32_t> want = Greedy(local.get(), 32);
  ASSERT_EQ(want.size(), 32u);
  NcclOptions o;
  o.timeout = absl::Seconds(60);
  auto nccl = MakeNcclCommunicator(o, MakeMemoryStore());
  ASSERT_TRUE(nccl.ok()) << nccl.status();
  EXPECT_EQ((*nccl)->world_size(), 1);
  EXPECT_EQ(Greedy(nccl->get(), 32), want);
  EXPECT_TRUE((*nccl)->Barrier().ok());
}

}  // namespace
}  // namespace hipserve::worker
