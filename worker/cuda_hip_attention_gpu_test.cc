// CudaHipAttention (GPU) against HipAttention (CPU) on identical inputs: random q / k / v rounded
// to bf16, the CPU side fed their exact fp32 values. Each case prefills a sequence in several
// chunks (64-query rows and the per-query tail), then decodes ~40 tokens across the refresh
// schedule (stage 0, 1, 2 refreshes and reused lists), with two rolled-back steps (Save, a step
// with garbage queries, Restore) on the way. Per (step, layer):
//   - the block lists the GPU attended with (LastRunBlocks) must EQUAL the CPU's: decode steps
//     against HipAttention::CachedBlocks (and CudaHipAttention::CachedBlocks too), prefill
//     steps against EstimateMaskRef run with HipAttention's row rule (see CpuPrefillLists);
//   - the output, NaN-poisoned before the run, must pass the CONVENTIONS rule against the CPU
//     HipAttention output (fp32): max error <= 2x a naive bf16 BSA's (over the same keys and
//     positions: kernels/hip/bsa.h BsaKeysForQuery) + 2^-16, mean likewise, no NaN.
// Each case prints its max / mean error and list mismatches. Skips without a CUDA device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "kernels/attention_cuda/decode_test_util.h"
#include "kernels/device.h"
#include "kernels/dtype/bf16.h"
#include "kernels/hip/bsa.h"
#include "kernels/hip/hip_params.h"
#include "kernels/hip/mask_estimation.h"
#include "kernels/hip/rope_table.h"
#include "kernels/testing/compare.h"
#include "worker/cuda_hip_attention.h"
#include "worker/cuda_kv_tiers.h"
#include "worker/hip_attention.h"

namespace hipserve::worker {
namespace {

using common::SequenceId;
using kernels::decode_test::DeviceBuffer;

constexpr int kLayers = 2;
constexpr int kBlock = 8;

bool HaveDevice() { return kernels::CudaDeviceCount() > 0; }

struct Case {
  std::string name;
  int head_dim = 64;
  int num_kv_heads = 2;
  int group = 1;
  std::vector<int> chunks;  // prefill chunk sizes
  int decode_steps = 40;
  bool extend = true;
  int extend_min_tokens = 0;
  int tail_queries = 24;
  bool expect_pruning = false;  // long enough that selections must drop candidate blocks
};

std::string CaseName(const ::testing::TestParamInfo<Case>& info) { return info.param.name; }

// A small config in the spirit of the CPU tests: 3 stages (64, 16, 8) that all prune at a few
// thousand tokens; layer 0 chunk-indexed with k 512, layer 1 relative with k 256.
kernels::HipConfig SmallConfig(const Case& c) {
  kernels::HipConfig cfg;
  cfg.n_sink = 64;
  cfg.n_window = 128;
  cfg.block_q = 64;
  cfg.tail_queries = c.tail_queries;
  cfg.chunk_sizes = {64, 16, 8};
  cfg.stage_keep = {1024, 512};
  cfg.k = 256;
  cfg.stride_q = {4, 2, 1};
  cfg.mask_refresh_interval = {12, 4, 2};
  cfg.extend = c.extend;
  cfg.extend_min_tokens = c.extend_min_tokens;
  cfg.pruning_positions = kernels::PruningPositions::kRelative;
  cfg.layer_overrides = {
      kernels::HipLayerOverride{{0}, 512, kernels::PruningPositions::kChunkIndexed}};
  return cfg;
}

kernels::RopeConfig Llama3Rope() {
  kernels::RopeConfig rc;
  rc.theta = 500000.f;
  rc.scaling = kernels::RopeScaling::kLlama3;
  rc.factor = 8.f;
  rc.low_freq_factor = 1.f;
  rc.high_freq_factor = 4.f;
  rc.original_max_position = 8192;
  return rc;
}

std::vector<float> RandomBf16(int64_t n, uint64_t seed, float lo, float hi) {
  std::vector<float> v = kernels::testing::RandomVector(n, seed, lo, hi);
  kernels::RoundToBf16InPlace(v.data(), n);
  return v;
}

struct Shape {
  int heads, kvh, d;
};

// HipAttention's prefill selection for every query of a step, per KV head, recomputed with
// EstimateMaskRef and the row rule of HipAttention::Run: 64-query rows aligned to absolute
// positions, the last tail_queries queries one row each.
std::vector<std::vector<int32_t>> CpuPrefillLists(const kernels::HipConfig& cfg,
                                                  const kernels::PruningSpec& spec,
                                                  const kernels::RopeTable& rope, const Shape& s,
                                                  const float* q, int num_q, int start_pos,
                                                  const float* k, int num_kv) {
  const int tail = std::min(num_q, cfg.tail_queries);
  const int group = s.heads / s.kvh;
  const int max_blocks = spec.keep_tokens.back() / cfg.block_size();
  std::vector<std::pair<int, int>> rows;
  for (int i = 0; i < num_q; ++i) {
    const bool own = i >= num_q - tail;
    if (own || rows.empty() || (start_pos + i) % cfg.block_q == 0) {
      rows.emplace_back(i, i + 1);
    } else {
      rows.back().second = i + 1;
    }
  }
  std::vector<int32_t> pos(num_q);
  for (int i = 0; i < num_q; ++i) pos[i] = start_pos + i;
  std::vector<std::vector<int32_t>> lists(static_cast<size_t>(num_q) * s.kvh);
  for (const auto& [qa, qb] : rows) {
    for (int h = 0; h < s.kvh; ++h) {
      const kernels::CandidateRange range = kernels::CandidateRangeFor(cfg, pos[qb - 1]);
      kernels::MaskEstimationParams mp;
      mp.q_token_stride = int64_t{s.heads} * s.d;
      mp.group = group;
      mp.head_dim = s.d;
      mp.k_token_stride = int64_t{s.kvh} * s.d;
      mp.num_kv = num_kv;
      mp.spec = &spec;
      mp.rope = &rope;
      mp.num_q = qb - qa;
      mp.q_pos = pos.data() + qa;
      mp.range_begin = range.begin;
      mp.range_end = range.end;
      mp.q = q + qa * mp.q_token_stride + int64_t{h} * group * s.d;
      mp.k = k + int64_t{h} * s.d;
      kernels::MaskEstimationResult result;
      const absl::Status st = kernels::EstimateMaskRef(mp, &result);
      EXPECT_TRUE(st.ok()) << st;
      if (!st.ok()) return lists;
      std::vector<int32_t> blocks = result.kept.back().starts;
      if (static_cast<int>(blocks.size()) > max_blocks) blocks.resize(max_blocks);
      for (int i = qa; i < qb; ++i) lists[static_cast<size_t>(i) * s.kvh + h] = blocks;
    }
  }
  return lists;
}

// Naive bf16 BSA (scores and probabilities rounded to bf16, rotated q / k rounded to bf16, output
// rounded to bf16) over exactly BsaKeysForQuery's keys and positions for the given lists.
std::vector<double> NaiveBf16(const kernels::HipConfig& cfg, bool extend,
                              const kernels::RopeTable& rope, const Shape& s, const float* q,
                              int num_q, int start_pos, const float* k, const float* v,
                              const std::vector<std::vector<int32_t>>& lists) {
  const int d = s.d, group = s.heads / s.kvh;
  const int64_t qrow = int64_t{s.heads} * d, kvrow = int64_t{s.kvh} * d;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  std::vector<double> out(static_cast<size_t>(num_q) * qrow);
  kernels::BsaKeySet set;
  std::vector<float> kr, qr(d), sc, acc(d);
  auto rotate = [&](const float* x, int p, float* o) {
    rope.Rotate(x, p, o);
    for (int c = 0; c < d; ++c) o[c] = kernels::RoundToBf16(o[c]);
  };
  for (int i = 0; i < num_q; ++i) {
    const int32_t pos = start_pos + i;
    for (int kh = 0; kh < s.kvh; ++kh) {
      const std::vector<int32_t>& blocks = lists[static_cast<size_t>(i) * s.kvh + kh];
      kernels::BsaKeysForQuery(pos, blocks.data(), static_cast<int>(blocks.size()), kBlock,
                               cfg.n_sink, cfg.n_window, extend, &set);
      const int n = static_cast<int>(set.keys.size());
      kr.resize(static_cast<size_t>(n) * d);
      sc.resize(n);
      for (int j = 0; j < n; ++j) {
        rotate(k + set.keys[j] * kvrow + kh * d, set.rope_positions[j], kr.data() + j * d);
      }
      for (int g = 0; g < group; ++g) {
        const int h = kh * group + g;
        rotate(q + i * qrow + h * d, pos, qr.data());
        float mx = -INFINITY;
        for (int j = 0; j < n; ++j) {
          float dot = 0.f;
          for (int c = 0; c < d; ++c) dot += qr[c] * kr[j * d + c];
          sc[j] = kernels::RoundToBf16(kernels::RoundToBf16(dot) * scale);
          mx = std::max(mx, sc[j]);
        }
        float z = 0.f;
        for (int j = 0; j < n; ++j) z += (sc[j] = std::exp(sc[j] - mx));
        std::fill(acc.begin(), acc.end(), 0.f);
        for (int j = 0; j < n; ++j) {
          const float w = kernels::RoundToBf16(sc[j] / z);
          const float* vj = v + set.keys[j] * kvrow + kh * d;
          for (int c = 0; c < d; ++c) acc[c] += w * vj[c];
        }
        for (int c = 0; c < d; ++c) out[i * qrow + h * d + c] = kernels::RoundToBf16(acc[c]);
      }
    }
  }
  return out;
}

std::string ListString(const std::vector<int32_t>& l) {
  std::string s = "[";
  for (size_t i = 0; i < l.size(); ++i) s += (i ? " " : "") + std::to_string(l[i]);
  return s + "] (" + std::to_string(l.size()) + ")";
}

class CudaHipAttentionGpuTest : public ::testing::TestWithParam<Case> {};

TEST_P(CudaHipAttentionGpuTest, MatchesCpuHipAttention) {
  if (!HaveDevice()) GTEST_SKIP() << "no CUDA device";
  const Case& c = GetParam();
  const Shape s{c.num_kv_heads * c.group, c.num_kv_heads, c.head_dim};
  HipAttentionOptions o;
  o.config = SmallConfig(c);
  o.rope = Llama3Rope();
  o.num_layers = kLayers;
  o.num_heads = s.heads;
  o.num_kv_heads = s.kvh;
  o.head_dim = s.d;
  o.pretrained_context = 0;
  const kernels::HipConfig& cfg = o.config;
  auto cpu_or = HipAttention::Create(o);
  ASSERT_TRUE(cpu_or.ok()) << cpu_or.status();
  auto gpu_or = CudaHipAttention::Create(o);
  ASSERT_TRUE(gpu_or.ok()) << gpu_or.status();
  HipAttention& cpu = **cpu_or;
  CudaHipAttention& gpu = **gpu_or;
  EXPECT_EQ(cpu.extend_min_tokens(), gpu.extend_min_tokens());

  // Steps: prefill chunks, then decode tokens.
  std::vector<std::pair<int, int>> steps;  // (start_pos, tokens)
  int total = 0;
  for (int n : c.chunks) {
    steps.emplace_back(total, n);
    total += n;
  }
  for (int i = 0; i < c.decode_steps; ++i) steps.emplace_back(total++, 1);

  const int64_t kvrow = int64_t{s.kvh} * s.d, qrow = int64_t{s.heads} * s.d;
  const uint64_t seed = kernels::decode_test::SeedOf(c.name);
  std::vector<std::vector<float>> k_host, v_host;
  std::vector<std::vector<uint16_t>> k_bits, v_bits;
  std::vector<std::unique_ptr<DeviceBuffer>> k_dev, v_dev;
  for (int l = 0; l < kLayers; ++l) {
    k_host.push_back(RandomBf16(total * kvrow, seed + 100 * l + 1, -1.f, 1.f));
    v_host.push_back(RandomBf16(total * kvrow, seed + 100 * l + 2, -1.f, 1.f));
    k_bits.push_back(kernels::decode_test::ToBf16Bits(k_host.back()));
    v_bits.push_back(kernels::decode_test::ToBf16Bits(v_host.back()));
    // Rows not yet appended stay NaN (bf16 0xFFFF), so reading past num_kv shows.
    k_dev.push_back(std::make_unique<DeviceBuffer>(total * kvrow * 2));
    v_dev.push_back(std::make_unique<DeviceBuffer>(total * kvrow * 2));
    ASSERT_EQ(cudaMemset(k_dev.back()->get(), 0xFF, total * kvrow * 2), cudaSuccess);
    ASSERT_EQ(cudaMemset(v_dev.back()->get(), 0xFF, total * kvrow * 2), cudaSuccess);
  }
  auto rope_or = kernels::RopeTable::Create(o.rope, s.d, total + cfg.n_window + 2);
  ASSERT_TRUE(rope_or.ok()) << rope_or.status();
  const kernels::RopeTable& rope = *rope_or;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the K/V poison is in place
  // A non-blocking stream, as the CUDA backend uses.
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);

  const SequenceId seq(7);
  double worst_max = 0, sum_mean = 0;
  int runs = 0, list_mismatches = 0, pruned_lists = 0, nonempty_lists = 0;
  std::vector<int> refresh_seen(cfg.num_stages() + 1, 0);  // index refresh_stage + 1

  // One step of both implementations; `check` = compare (false: a garbage step rolled back).
  auto run_step = [&](int start, int n, uint64_t q_seed, bool check) {
    cpu.BeginStep(seq, start, n);
    gpu.BeginStep(seq, start, n);
    auto ci = cpu.CurrentStep(seq);
    auto gi = gpu.CurrentStep(seq);
    ASSERT_TRUE(ci.ok() && gi.ok());
    ASSERT_EQ(ci->decode, gi->decode);
    ASSERT_EQ(ci->decode_step, gi->decode_step);
    ASSERT_EQ(ci->refresh_stage, gi->refresh_stage);
    if (check && ci->decode) ++refresh_seen[ci->refresh_stage + 1];
    const int num_kv = start + n;
    const bool extend = cfg.extend && num_kv > cpu.extend_min_tokens();
    for (int l = 0; l < kLayers; ++l) {
      ASSERT_EQ(cudaMemcpy(static_cast<uint16_t*>(k_dev[l]->get()) + start * kvrow,
                           k_bits[l].data() + start * kvrow, n * kvrow * 2, cudaMemcpyHostToDevice),
                cudaSuccess);
      ASSERT_EQ(cudaMemcpy(static_cast<uint16_t*>(v_dev[l]->get()) + start * kvrow,
                           v_bits[l].data() + start * kvrow, n * kvrow * 2, cudaMemcpyHostToDevice),
                cudaSuccess);
    }
    for (int l = 0; l < kLayers; ++l) {
      const std::string where = c.name + " step@" + std::to_string(start) + "+" +
                                std::to_string(n) + " layer " + std::to_string(l) +
                                (check ? "" : " (rolled back)");
      const std::vector<float> q = RandomBf16(n * qrow, q_seed + l, -2.f, 2.f);
      DeviceBuffer q_dev(kernels::decode_test::ToBf16Bits(q));
      DeviceBuffer out_dev(n * qrow * 2);
      // NaN poison, ordered before the Run on its (non-blocking) stream.
      ASSERT_EQ(cudaMemsetAsync(out_dev.get(), 0xFF, n * qrow * 2, stream), cudaSuccess);
      std::vector<float> cpu_out = kernels::testing::Poisoned(n * qrow);
      const absl::Status cs = cpu.Run(seq, l, q.data(), n, start, k_host[l].data(),
                                      v_host[l].data(), num_kv, cpu_out.data());
      ASSERT_TRUE(cs.ok()) << where << ": " << cs;
      const absl::Status gs = gpu.Run(seq, l, q_dev.get(), n, start, k_dev[l]->get(),
                                      v_dev[l]->get(), num_kv, out_dev.get(), stream);
      ASSERT_TRUE(gs.ok()) << where << ": " << gs;
      ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess) << where;
      if (!check) continue;
      const std::vector<uint16_t> out_bits = out_dev.ToHost<uint16_t>(n * qrow);
      std::vector<float> got(n * qrow);
      kernels::Bf16ToFloatArray(out_bits.data(), got.data(), n * qrow);

      // Block lists.
      auto blocks = gpu.LastRunBlocks(stream);
      ASSERT_TRUE(blocks.ok()) << where << ": " << blocks.status();
      ASSERT_EQ(blocks->num_q, n);
      ASSERT_EQ(static_cast<int>(blocks->lists.size()), n * s.kvh);
      std::vector<std::vector<int32_t>> want;
      if (ci->decode) {
        for (int h = 0; h < s.kvh; ++h) {
          const std::vector<int32_t>* cached = cpu.CachedBlocks(seq, l, h);
          ASSERT_NE(cached, nullptr) << where;
          const int max_blocks =
              kernels::PruningSpecForLayer(cfg, l).keep_tokens.back() / cfg.block_size();
          want.emplace_back(cached->begin(),
                            cached->begin() + std::min<int>(cached->size(), max_blocks));
          auto gc = gpu.CachedBlocks(seq, l, h, stream);
          ASSERT_TRUE(gc.ok()) << where << ": " << gc.status();
          EXPECT_EQ(*gc, *cached) << where << " kv head " << h << ": CachedBlocks";
        }
      } else {
        kernels::HipConfig step_cfg = cfg;
        step_cfg.extend = extend;
        const kernels::PruningSpec spec = kernels::PruningSpecForLayer(step_cfg, l);
        want = CpuPrefillLists(cfg, spec, rope, s, q.data(), n, start, k_host[l].data(), num_kv);
      }
      int shown = 0;
      for (int i = 0; i < n; ++i) {
        for (int h = 0; h < s.kvh; ++h) {
          const std::vector<int32_t>& g = blocks->lists[static_cast<size_t>(i) * s.kvh + h];
          const std::vector<int32_t>& w = want[static_cast<size_t>(i) * s.kvh + h];
          const int pos = start + i;
          const int candidates = std::max(0, pos - cfg.n_window - cfg.n_sink + kBlock - 1) / kBlock;
          nonempty_lists += !g.empty();
          pruned_lists += !g.empty() && static_cast<int>(g.size()) < candidates;
          if (g != w) {
            ++list_mismatches;
            if (shown++ < 4) {
              ADD_FAILURE() << where << " query " << i << " (pos " << pos << ") kv head " << h
                            << ": GPU blocks " << ListString(g) << "\n  CPU blocks "
                            << ListString(w);
            }
          }
        }
      }

      // Output.
      const std::vector<double> ref = kernels::testing::ToDouble(cpu_out);
      const std::vector<double> naive =
          NaiveBf16(cfg, extend, rope, s, q.data(), n, start, k_host[l].data(), v_host[l].data(),
                    blocks->lists);
      EXPECT_TRUE(kernels::testing::MatchesReference(got, naive, ref, 0x1.0p-16))
          << where << " (query = index / " << qrow << ")";
      const kernels::testing::ErrorStats e = kernels::testing::Errors(got, ref);
      EXPECT_EQ(e.nan_count, 0) << where;
      worst_max = std::max(worst_max, e.max_abs);
      sum_mean += e.mean_abs;
      ++runs;
    }
  };

  int decode_index = 0;
  for (size_t si = 0; si < steps.size(); ++si) {
    const auto [start, n] = steps[si];
    const bool decode = n == 1 && start > 0;
    if (decode && (decode_index == 4 || decode_index == 12)) {
      // A failed step: garbage queries, then roll back. The GPU must not have written any list
      // a snapshot holds, so the following steps (which reuse the lists) still match.
      const auto cpu_snap = cpu.Save({seq});
      const auto gpu_snap = gpu.Save({seq});
      run_step(start, n, seed ^ 0xDEADBEEFull ^ si, /*check=*/false);
      if (HasFatalFailure()) return;
      cpu.Restore(cpu_snap);
      gpu.Restore(gpu_snap);
      // Restore gives back exactly the saved lists (the garbage step must have written fresh
      // ones), whether or not the retried step recomputes them.
      for (int l = 0; l < kLayers; ++l) {
        for (int h = 0; h < s.kvh; ++h) {
          const std::vector<int32_t>* cached = cpu.CachedBlocks(seq, l, h);
          auto gc = gpu.CachedBlocks(seq, l, h, stream);
          ASSERT_EQ(cached != nullptr, gc.ok()) << c.name << " after Restore: " << gc.status();
          if (cached != nullptr) {
            EXPECT_EQ(*gc, *cached)
                << c.name << " layer " << l << " kv head " << h << ": CachedBlocks after Restore";
          }
        }
      }
    }
    run_step(start, n, seed + 1000 * (si + 1), /*check=*/true);
    if (HasFatalFailure()) return;
    decode_index += decode;
  }
  std::printf(
      "[ case ] %s: %d runs (%zu steps to %d tokens), max err %.3g, mean err %.3g, "
      "list mismatches %d, non-empty lists %d (pruned %d), refreshes reuse/s0/s1/s2 %d/%d/%d/%d\n",
      c.name.c_str(), runs, steps.size(), total, worst_max, runs ? sum_mean / runs : 0.0,
      list_mismatches, nonempty_lists, pruned_lists, refresh_seen[0], refresh_seen[1],
      refresh_seen.size() > 2 ? refresh_seen[2] : 0, refresh_seen.size() > 3 ? refresh_seen[3] : 0);
  EXPECT_EQ(list_mismatches, 0) << c.name;
  if (c.decode_steps >= 13) {
    for (int r = 0; r <= cfg.num_stages(); ++r)
      EXPECT_GT(refresh_seen[r], 0) << "refresh " << r - 1;
  }
  if (c.expect_pruning) {
    EXPECT_GT(pruned_lists, 0) << c.name << ": no selection dropped a candidate block";
  }
  EXPECT_EQ(gpu.num_sequences(), 1);
  gpu.Release(seq);
  EXPECT_EQ(gpu.num_sequences(), 0);
  EXPECT_FALSE(gpu.CurrentStep(seq).ok());
  cudaStreamDestroy(stream);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaHipAttentionGpuTest,
    ::testing::Values(
        // Shorter than sink + window: no candidates, dense-equivalent.
        Case{"short_d64_g1_extend", 64, 2, 1, {100, 50}, 40, true, 0, 24, false},
        Case{"short_d128_g4_real", 128, 2, 4, {150}, 40, false, 0, 24, false},
        // A few thousand tokens: every stage prunes.
        Case{"medium_d64_g2_extend", 64, 2, 2, {1000, 900, 700}, 40, true, 0, 24, true},
        // Extension switches on past 2000 keys (mid prefill).
        Case{"medium_d128_g3_switch", 128, 1, 3, {900, 1100, 600}, 40, true, 2000, 24, true},
        Case{"medium_d128_g1_real", 128, 2, 1, {1300, 1300}, 40, false, 0, 64, true},
        Case{"medium_d64_g4_no_tail", 64, 2, 4, {1536, 1100}, 40, true, 0, 0, true},
        // A chunk shorter than the tail: every query its own row.
        Case{"medium_d64_g2_all_tail", 64, 2, 2, {1000, 20, 1600}, 40, true, 0, 100, true}),
    CaseName);

// ---------------------------------------------------------------------------------------------
// Batched decode (RunDecodeBatch) against the per-sequence path (Run / RunTiered) of a second
// CudaHipAttention and against the CPU HipAttention. Five sequences of different lengths are
// prefilled (per-sequence path), then decode together in rounds; sequence i joins at round
// kJoin[i], so the batch mixes first decode steps, stage 0 / 1 / 2 refreshes and reused lists,
// and (extend_min_tokens = 2000) steps with and without the context extension (two groups per
// call; one sequence crosses the threshold mid-way). Twice a garbage round (other queries) runs
// between Save and Restore on all three. Odd rounds place the items' q / out rows out of order
// with gaps (copied through the workspace), even rounds consecutively (used in place). K/V: a
// bf16 pool (sequences at different rows) or CudaKvTiers (fp8 hot pages / cold host pages,
// per-sequence tables through TieredKvSource::entries); values are fp8-representable, so the
// CPU sees exactly what the GPU reads. Per round and layer:
//   - every item's block list (LastRunBlocks) EQUALS the per-sequence path's and the CPU's
//     CachedBlocks (truncated to the BSA list as above); CachedBlocks of both GPU objects equal
//     the CPU's for every (sequence, layer, KV head), also right after each Restore;
//   - the outputs are bit-identical to the per-sequence path's (both with the BSA plan fixed by
//     SetBsaDecodePlanForTesting: every sequence is longer than n_sink and n_window + 1) and
//     NaN-free (NaN-poisoned before each run).
struct BatchCase {
  std::string name;
  int head_dim = 64;
  int num_kv_heads = 2;
  int group = 2;
  bool tiered = false;
  int64_t hot_tokens = 0;  // tiered: GPU page pool (tokens)
};

std::string BatchCaseName(const ::testing::TestParamInfo<BatchCase>& info) {
  return info.param.name;
}

class CudaHipAttentionBatchGpuTest : public ::testing::TestWithParam<BatchCase> {};

TEST_P(CudaHipAttentionBatchGpuTest, BatchedDecodeMatchesPerSequence) {
  if (!HaveDevice()) GTEST_SKIP() << "no CUDA device";
  const BatchCase& bc = GetParam();
  constexpr int kSeqs = 5;
  constexpr int kRounds = 30;
  const int prompts[kSeqs] = {1000, 1993, 2400, 700, 3100};
  const int join[kSeqs] = {0, 2, 5, 9, 14};  // first decode round of each sequence
  const std::vector<int> garbage_before = {8, 16};
  const Shape s{bc.num_kv_heads * bc.group, bc.num_kv_heads, bc.head_dim};
  Case c;
  c.extend = true;
  c.extend_min_tokens = 2000;
  HipAttentionOptions o;
  o.config = SmallConfig(c);
  o.rope = Llama3Rope();
  o.num_layers = kLayers;
  o.num_heads = s.heads;
  o.num_kv_heads = s.kvh;
  o.head_dim = s.d;
  const kernels::HipConfig& cfg = o.config;
  auto cpu_or = HipAttention::Create(o);
  ASSERT_TRUE(cpu_or.ok()) << cpu_or.status();
  auto ref_or = CudaHipAttention::Create(o);
  ASSERT_TRUE(ref_or.ok()) << ref_or.status();
  auto bat_or = CudaHipAttention::Create(o);
  ASSERT_TRUE(bat_or.ok()) << bat_or.status();
  HipAttention& cpu = **cpu_or;
  CudaHipAttention& ref = **ref_or;
  CudaHipAttention& bat = **bat_or;
  ref.SetBsaDecodePlanForTesting(3, 8);
  bat.SetBsaDecodePlanForTesting(3, 8);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);

  const int64_t kvrow = int64_t{s.kvh} * s.d, qrow = int64_t{s.heads} * s.d;
  const uint64_t seed = kernels::decode_test::SeedOf(bc.name);
  // Host K/V per (sequence, layer): fp8-representable values and their bf16 bits.
  std::vector<int> total(kSeqs);
  std::vector<int64_t> kv_row(kSeqs);
  int64_t pool_rows = 0;
  std::vector<std::vector<kernels::decode_test::KvTensor>> kh(kSeqs), vh(kSeqs);
  for (int i = 0; i < kSeqs; ++i) {
    total[i] = prompts[i] + kRounds - join[i];
    kv_row[i] = pool_rows + 17 * i;  // gaps between sequences
    pool_rows = kv_row[i] + total[i];
    for (int l = 0; l < kLayers; ++l) {
      kh[i].push_back(kernels::decode_test::MakeKv(total[i] * kvrow, seed + 100 * i + 10 * l + 1,
                                                   -1.f, 1.f, /*fp8=*/true));
      vh[i].push_back(kernels::decode_test::MakeKv(total[i] * kvrow, seed + 100 * i + 10 * l + 2,
                                                   -1.f, 1.f, /*fp8=*/true));
    }
  }
  // Contiguous mode: one NaN-poisoned bf16 pool per layer for K and for V.
  std::vector<std::unique_ptr<DeviceBuffer>> pk, pv;
  std::unique_ptr<CudaKvTiers> tiers;
  if (bc.tiered) {
    CudaKvTiersOptions to;
    to.num_layers = kLayers;
    to.num_kv_heads = s.kvh;
    to.head_dim = s.d;
    to.n_sink = cfg.n_sink;
    to.n_window = cfg.n_window;
    to.hot_tokens = bc.hot_tokens;
    to.cold_tokens = int64_t{1} << 15;
    to.table_bytes = int64_t{64} << 20;
    auto t = CudaKvTiers::Create(to, stream);
    ASSERT_TRUE(t.ok()) << t.status();
    tiers = std::move(t).value();
    for (int i = 0; i < kSeqs; ++i) ASSERT_TRUE(tiers->AddSequence(SequenceId(i + 1)).ok());
  } else {
    for (int l = 0; l < kLayers; ++l) {
      pk.push_back(std::make_unique<DeviceBuffer>(pool_rows * kvrow * 2));
      pv.push_back(std::make_unique<DeviceBuffer>(pool_rows * kvrow * 2));
      ASSERT_EQ(cudaMemset(pk.back()->get(), 0xFF, pool_rows * kvrow * 2), cudaSuccess);
      ASSERT_EQ(cudaMemset(pv.back()->get(), 0xFF, pool_rows * kvrow * 2), cudaSuccess);
    }
  }
  // Writes tokens [start, start + n) of the listed sequences (one item each) to the K/V store.
  DeviceBuffer step_k(int64_t{4096} * kvrow * 2), step_v(int64_t{4096} * kvrow * 2);
  auto write_kv = [&](const std::vector<int>& seqs, const std::vector<int>& starts,
                      const std::vector<int>& counts) {
    std::vector<CudaKvTiers::Item> items;
    int row = 0;
    for (size_t j = 0; j < seqs.size(); ++j) {
      items.push_back(CudaKvTiers::Item{SequenceId(seqs[j] + 1), starts[j], counts[j], row});
      row += counts[j];
    }
    if (tiers != nullptr) {
      ASSERT_TRUE(tiers->Prepare(items).ok());
    }
    for (int l = 0; l < kLayers; ++l) {
      for (size_t j = 0; j < seqs.size(); ++j) {
        const int i = seqs[j];
        const int64_t at = int64_t{starts[j]} * kvrow, bytes = int64_t{counts[j]} * kvrow * 2;
        uint16_t* dk = tiers != nullptr
                           ? static_cast<uint16_t*>(step_k.get()) + items[j].row * kvrow
                           : static_cast<uint16_t*>(pk[l]->get()) + kv_row[i] * kvrow + at;
        uint16_t* dv = tiers != nullptr
                           ? static_cast<uint16_t*>(step_v.get()) + items[j].row * kvrow
                           : static_cast<uint16_t*>(pv[l]->get()) + kv_row[i] * kvrow + at;
        ASSERT_EQ(
            cudaMemcpyAsync(dk, kh[i][l].bf16.data() + at, bytes, cudaMemcpyHostToDevice, stream),
            cudaSuccess);
        ASSERT_EQ(
            cudaMemcpyAsync(dv, vh[i][l].bf16.data() + at, bytes, cudaMemcpyHostToDevice, stream),
            cudaSuccess);
      }
      if (tiers != nullptr) {
        ASSERT_TRUE(tiers->Append(l, step_k.get(), step_v.get()).ok());
      }
      ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);  // host rows reused next call
    }
  };

  // Prefill: each sequence alone, the per-sequence path on both GPU objects.
  for (int i = 0; i < kSeqs; ++i) {
    const SequenceId seq(i + 1);
    const int n = prompts[i];
    write_kv({i}, {0}, {n});
    if (HasFatalFailure()) return;
    cpu.BeginStep(seq, 0, n);
    ref.BeginStep(seq, 0, n);
    bat.BeginStep(seq, 0, n);
    for (int l = 0; l < kLayers; ++l) {
      const std::vector<float> q = RandomBf16(n * qrow, seed + 7000 + 10 * i + l, -2.f, 2.f);
      DeviceBuffer q_dev(kernels::decode_test::ToBf16Bits(q));
      DeviceBuffer out_dev(n * qrow * 2);
      std::vector<float> cpu_out(n * qrow);
      ASSERT_TRUE(cpu.Run(seq, l, q.data(), n, 0, kh[i][l].values.data(), vh[i][l].values.data(), n,
                          cpu_out.data())
                      .ok());
      for (CudaHipAttention* g : {&ref, &bat}) {
        absl::Status st;
        if (tiers != nullptr) {
          auto src = tiers->Source(seq, l);
          ASSERT_TRUE(src.ok()) << src.status();
          st = g->RunTiered(seq, l, q_dev.get(), n, 0, *src, n, out_dev.get(), stream);
        } else {
          st = g->Run(
              seq, l, q_dev.get(), n, 0, static_cast<uint16_t*>(pk[l]->get()) + kv_row[i] * kvrow,
              static_cast<uint16_t*>(pv[l]->get()) + kv_row[i] * kvrow, n, out_dev.get(), stream);
        }
        ASSERT_TRUE(st.ok()) << st;
      }
      ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    }
  }

  int list_mismatches = 0, out_mismatches = 0, mixed_extend_calls = 0, pruned = 0;
  std::vector<int> refresh_seen(cfg.num_stages() + 1, 0);
  std::vector<int> pos(prompts, prompts + kSeqs);  // next position of each sequence
  auto compare_cached = [&](const std::vector<int>& seqs, const std::string& where) {
    for (int i : seqs) {
      for (int l = 0; l < kLayers; ++l) {
        for (int h = 0; h < s.kvh; ++h) {
          const std::vector<int32_t>* want = cpu.CachedBlocks(SequenceId(i + 1), l, h);
          for (CudaHipAttention* g : {&ref, &bat}) {
            auto got = g->CachedBlocks(SequenceId(i + 1), l, h, stream);
            ASSERT_EQ(want != nullptr, got.ok()) << where << ": " << got.status();
            if (want != nullptr && *got != *want) {
              ++list_mismatches;
              ADD_FAILURE() << where << " seq " << i << " layer " << l << " kv head " << h
                            << (g == &bat ? " (batched)" : " (per sequence)") << ": CachedBlocks "
                            << ListString(*got) << "\n  CPU " << ListString(*want);
            }
          }
        }
      }
    }
  };

  // One decode round of the listed sequences on all three; `check`: compare (false: garbage).
  auto run_round = [&](int round, const std::vector<int>& seqs, uint64_t q_seed, bool check) {
    const int n = static_cast<int>(seqs.size());
    std::vector<int> starts, ones(n, 1);
    for (int i : seqs) starts.push_back(pos[i]);
    write_kv(seqs, starts, ones);
    if (HasFatalFailure()) return;
    bool ext_on = false, ext_off = false;
    for (int j = 0; j < n; ++j) {
      const SequenceId seq(seqs[j] + 1);
      cpu.BeginStep(seq, starts[j], 1);
      ref.BeginStep(seq, starts[j], 1);
      bat.BeginStep(seq, starts[j], 1);
      auto ci = cpu.CurrentStep(seq);
      auto bi = bat.CurrentStep(seq);
      ASSERT_TRUE(ci.ok() && bi.ok() && ci->decode && bi->decode);
      ASSERT_EQ(ci->refresh_stage, bi->refresh_stage);
      if (check) ++refresh_seen[ci->refresh_stage + 1];
      (starts[j] + 1 > cpu.extend_min_tokens() ? ext_on : ext_off) = true;
    }
    mixed_extend_calls += check && ext_on && ext_off;
    // Row of item j in the q / out buffers: consecutive on even rounds, reversed with gaps on
    // odd ones.
    const bool scattered = round % 2 == 1;
    const int rows = scattered ? 2 * n + 1 : n;
    auto row_of = [&](int j) { return scattered ? 2 * (n - 1 - j) + 1 : j; };
    for (int l = 0; l < kLayers; ++l) {
      const std::string where = bc.name + " round " + std::to_string(round) + " layer " +
                                std::to_string(l) + (check ? "" : " (rolled back)");
      const std::vector<float> q = RandomBf16(rows * qrow, q_seed + l, -2.f, 2.f);
      DeviceBuffer q_dev(kernels::decode_test::ToBf16Bits(q));
      DeviceBuffer out_ref(rows * qrow * 2), out_bat(rows * qrow * 2);
      ASSERT_EQ(cudaMemsetAsync(out_ref.get(), 0xFF, rows * qrow * 2, stream), cudaSuccess);
      ASSERT_EQ(cudaMemsetAsync(out_bat.get(), 0xFF, rows * qrow * 2, stream), cudaSuccess);
      const auto* qd = static_cast<const uint16_t*>(q_dev.get());
      std::vector<CudaHipAttention::DecodeItem> items(n);
      std::vector<std::vector<std::vector<int32_t>>> ref_lists(n);
      for (int j = 0; j < n; ++j) {
        const int i = seqs[j];
        const SequenceId seq(i + 1);
        const int num_kv = starts[j] + 1;
        std::vector<float> cpu_out(qrow);
        ASSERT_TRUE(cpu.Run(seq, l, q.data() + row_of(j) * qrow, 1, starts[j],
                            kh[i][l].values.data(), vh[i][l].values.data(), num_kv, cpu_out.data())
                        .ok());
        CudaHipAttention::DecodeItem& it = items[j];
        it.seq = seq;
        it.q = qd + row_of(j) * qrow;
        it.out = static_cast<uint16_t*>(out_bat.get()) + row_of(j) * qrow;
        it.num_kv = num_kv;
        void* ro = static_cast<uint16_t*>(out_ref.get()) + row_of(j) * qrow;
        absl::Status st;
        if (tiers != nullptr) {
          auto src = tiers->Source(seq, l);
          ASSERT_TRUE(src.ok()) << src.status();
          it.tiered = *src;
          st = ref.RunTiered(seq, l, it.q, 1, starts[j], *src, num_kv, ro, stream);
        } else {
          it.kv_row = kv_row[i];
          st = ref.Run(
              seq, l, it.q, 1, starts[j], static_cast<uint16_t*>(pk[l]->get()) + kv_row[i] * kvrow,
              static_cast<uint16_t*>(pv[l]->get()) + kv_row[i] * kvrow, num_kv, ro, stream);
        }
        ASSERT_TRUE(st.ok()) << where << ": " << st;
        if (check) {
          auto rb = ref.LastRunBlocks(stream);
          ASSERT_TRUE(rb.ok()) << where << ": " << rb.status();
          ref_lists[j] = rb->lists;
        }
      }
      const absl::Status bs =
          tiers != nullptr ? bat.RunDecodeBatch(l, items, nullptr, nullptr, stream)
                           : bat.RunDecodeBatch(l, items, pk[l]->get(), pv[l]->get(), stream);
      ASSERT_TRUE(bs.ok()) << where << ": " << bs;
      ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess) << where;
      if (!check) continue;
      auto blocks = bat.LastRunBlocks(stream);
      ASSERT_TRUE(blocks.ok()) << where << ": " << blocks.status();
      ASSERT_EQ(blocks->num_q, n);
      ASSERT_EQ(static_cast<int>(blocks->lists.size()), n * s.kvh);
      const int max_blocks =
          kernels::PruningSpecForLayer(cfg, l).keep_tokens.back() / cfg.block_size();
      for (int j = 0; j < n; ++j) {
        for (int h = 0; h < s.kvh; ++h) {
          const std::vector<int32_t>& got = blocks->lists[static_cast<size_t>(j) * s.kvh + h];
          const std::vector<int32_t>* cached = cpu.CachedBlocks(SequenceId(seqs[j] + 1), l, h);
          ASSERT_NE(cached, nullptr) << where;
          const std::vector<int32_t> want(
              cached->begin(), cached->begin() + std::min<int>(cached->size(), max_blocks));
          const int candidates =
              std::max(0, starts[j] - cfg.n_window - cfg.n_sink + kBlock - 1) / kBlock;
          pruned += static_cast<int>(got.size()) < candidates;
          if (got != want || got != ref_lists[j][h]) {
            if (list_mismatches++ < 6) {
              ADD_FAILURE() << where << " seq " << seqs[j] << " kv head " << h << ": batched "
                            << ListString(got) << "\n  per sequence " << ListString(ref_lists[j][h])
                            << "\n  CPU " << ListString(want);
            }
          }
        }
      }
      const std::vector<uint16_t> a = out_ref.ToHost<uint16_t>(rows * qrow);
      const std::vector<uint16_t> b = out_bat.ToHost<uint16_t>(rows * qrow);
      for (int j = 0; j < n; ++j) {
        int diff = 0, nan = 0;
        for (int64_t x = row_of(j) * qrow; x < (row_of(j) + 1) * qrow; ++x) {
          diff += a[x] != b[x];
          nan += std::isnan(kernels::Bf16ToFloat(b[x]));
        }
        EXPECT_EQ(nan, 0) << where << " seq " << seqs[j];
        if (diff != 0 && out_mismatches++ < 6) {
          ADD_FAILURE() << where << " seq " << seqs[j] << ": " << diff << " of " << qrow
                        << " output values differ from the per-sequence path";
        }
      }
      // Rows between the items' (odd rounds) stay untouched.
      if (scattered) {
        for (int64_t x = 0; x < qrow; ++x) EXPECT_EQ(b[x], 0xFFFF) << where << " gap row";
      }
    }
    if (check) {
      for (int i : seqs) ++pos[i];
    }
  };

  for (int round = 0; round < kRounds; ++round) {
    std::vector<int> seqs;
    for (int i = 0; i < kSeqs; ++i) {
      if (join[i] <= round) seqs.push_back(i);
    }
    const std::string where = bc.name + " round " + std::to_string(round);
    if (std::find(garbage_before.begin(), garbage_before.end(), round) != garbage_before.end()) {
      std::vector<SequenceId> ids;
      for (int i : seqs) ids.push_back(SequenceId(i + 1));
      const auto cpu_snap = cpu.Save(ids);
      const auto ref_snap = ref.Save(ids);
      const auto bat_snap = bat.Save(ids);
      run_round(round, seqs, seed ^ 0xBADC0FFEEull ^ round, /*check=*/false);
      if (HasFatalFailure()) return;
      cpu.Restore(cpu_snap);
      ref.Restore(ref_snap);
      bat.Restore(bat_snap);
      compare_cached(seqs, where + " after Restore");
      if (HasFatalFailure()) return;
    }
    run_round(round, seqs, seed + 1000 * (round + 1), /*check=*/true);
    if (HasFatalFailure()) return;
    compare_cached(seqs, where);
    if (HasFatalFailure()) return;
  }
  std::printf(
      "[ case ] %s: list mismatches %d, output mismatches %d, calls mixing extend modes %d, "
      "pruned lists %d, refreshes reuse/s0/s1/s2 %d/%d/%d/%d\n",
      bc.name.c_str(), list_mismatches, out_mismatches, mixed_extend_calls, pruned, refresh_seen[0],
      refresh_seen[1], refresh_seen[2], refresh_seen[3]);
  EXPECT_EQ(list_mismatches, 0);
  EXPECT_EQ(out_mismatches, 0);
  EXPECT_GT(mixed_extend_calls, 0);
  EXPECT_GT(pruned, 0);
  for (int r = 0; r <= cfg.num_stages(); ++r) EXPECT_GT(refresh_seen[r], 0) << "refresh " << r - 1;
  tiers.reset();  // before the stream it enqueues on
  cudaStreamDestroy(stream);
}

INSTANTIATE_TEST_SUITE_P(
    Batches, CudaHipAttentionBatchGpuTest,
    ::testing::Values(BatchCase{"pool_d64_g2", 64, 2, 2, false, 0},
                      BatchCase{"pool_d128_g4", 128, 2, 4, false, 0},
                      // Every page hot; a pool of 40 pages (most reads from host pages);
                      // no hot pool at all.
                      BatchCase{"tiers_hot_d64_g2", 64, 2, 2, true, int64_t{1} << 15},
                      BatchCase{"tiers_evicting_d128_g3", 128, 2, 3, true, 40 * 64},
                      BatchCase{"tiers_cold_d64_g1", 64, 2, 1, true, 0}),
    BatchCaseName);

TEST(CudaHipAttentionGpuErrors, RejectsUnsupportedAndMisuse) {
  if (!HaveDevice()) GTEST_SKIP() << "no CUDA device";
  HipAttentionOptions o;
  o.config = SmallConfig(Case{});
  o.rope = Llama3Rope();
  o.num_layers = 1;
  o.num_heads = 4;
  o.num_kv_heads = 2;
  o.head_dim = 96;
  EXPECT_EQ(CudaHipAttention::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.head_dim = 64;
  o.config.block_q = 32;
  EXPECT_EQ(CudaHipAttention::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.config.block_q = 64;
  o.measure_recall = true;
  EXPECT_EQ(CudaHipAttention::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.measure_recall = false;
  auto gpu = CudaHipAttention::Create(o);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  DeviceBuffer buf(1 << 16);
  const SequenceId seq(1);
  EXPECT_EQ(
      (*gpu)->Run(seq, 0, buf.get(), 1, 0, buf.get(), buf.get(), 1, buf.get(), nullptr).code(),
      absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*gpu)->LastRunBlocks(nullptr).status().code(), absl::StatusCode::kFailedPrecondition);
  (*gpu)->BeginStep(seq, 0, 4);
  EXPECT_EQ(
      (*gpu)->Run(seq, 0, buf.get(), 4, 0, buf.get(), buf.get(), 5, buf.get(), nullptr).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      (*gpu)->Run(seq, 1, buf.get(), 4, 0, buf.get(), buf.get(), 4, buf.get(), nullptr).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*gpu)->CachedBlocks(seq, 0, 0, nullptr).status().code(), absl::StatusCode::kNotFound);
  // RunDecodeBatch: only sequences in a decode step, each once, K and V both or neither.
  CudaHipAttention::DecodeItem item;
  item.seq = seq;  // in a prefill step
  item.q = buf.get();
  item.out = static_cast<char*>(buf.get()) + 4096;
  item.num_kv = 5;
  EXPECT_EQ((*gpu)->RunDecodeBatch(0, {item}, buf.get(), buf.get(), nullptr).code(),
            absl::StatusCode::kFailedPrecondition);
  item.seq = SequenceId(2);  // no BeginStep
  EXPECT_EQ((*gpu)->RunDecodeBatch(0, {item}, buf.get(), buf.get(), nullptr).code(),
            absl::StatusCode::kFailedPrecondition);
  (*gpu)->BeginStep(item.seq, 4, 1);  // decode step 0
  EXPECT_EQ((*gpu)->RunDecodeBatch(0, {item, item}, buf.get(), buf.get(), nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*gpu)->RunDecodeBatch(0, {item}, buf.get(), nullptr, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*gpu)->RunDecodeBatch(0, {}, buf.get(), buf.get(), nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*gpu)->RunDecodeBatch(0, {item}, nullptr, nullptr, nullptr).code(),
            absl::StatusCode::kInvalidArgument);  // tiered without a source
}

}  // namespace
}  // namespace hipserve::worker
