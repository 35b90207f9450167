// bench_hip_decode: what it measures, how, and every flag are in kUsage at the end of this file
// (printed by --help).
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "bench/bench_flags.h"
#include "bench/kernels/bench_check.h"
#include "bench/kernels/bench_timing.h"
#include "bench/kernels/fill_random.h"
#include "common/flags/flags.h"
#include "kernels/attention_cuda/decode_attention.h"
#include "kernels/dtype/bf16.h"
#include "kernels/hip/hip_params.h"
#include "kernels/hip/rope_table.h"
#include "kernels/hip_cuda/mask_estimation.h"
#include "kernels/testing/attention_cases.h"

// Flags: see also kUsage at the end of the file. '-' and '_' are interchangeable in names.
ABSL_FLAG(std::string, json, "", "Write the results as JSON to this file.");
ABSL_FLAG(hipserve::flags::IntList, lens,
          (hipserve::flags::IntList{
              std::vector<int>(hipserve::kernels::testing::kDecodeBenchLens.begin(),
                               hipserve::kernels::testing::kDecodeBenchLens.end())}),
          "K1/K2: KV lengths T, each > 0.");
ABSL_FLAG(hipserve::flags::IntList, a1_lens,
          (hipserve::flags::IntList{std::vector<int>(hipserve::kernels::testing::kA1Lens.begin(),
                                                     hipserve::kernels::testing::kA1Lens.end())}),
          "A1 (needle accuracy): KV lengths T, each > 0; 'none' skips A1.");
ABSL_FLAG(int, reps, 20, "Timed repeats of each cycle (the median is reported), >= 10.");
ABSL_FLAG(int, rotations, 8, "Query sets / KV row offsets per timed cycle, >= 1.");
ABSL_FLAG(int, spans, 4, "A1: needle spans of 32 keys per KV head, >= 1.");
ABSL_FLAG(double, needle_norm, 64,
          "A1: norm of the planted needle keys (64 puts ~99% of the dense softmax mass on the "
          "needles at 1M), > 0.");
ABSL_FLAG(std::string, commit, "unknown", "Commit recorded in the JSON.");
ABSL_FLAG(hipserve::flags::IntList, src_lens, (hipserve::flags::IntList{{1048576}}),
          "S1 (mask refresh reading stored keys): KV lengths T, each > 0; 'none' skips S1.");
ABSL_FLAG(hipserve::flags::IntList, src_hits, (hipserve::flags::IntList{{99, 90, 50}}),
          "S1: mask-cache hit rates of the tiered rows, percent, each in [0, 100].");

namespace hipserve::bench {
namespace {

using kernels::BsaDecodeGpuParams;
using kernels::DecodeAttentionGpuParams;
using kernels::HipDecodeMaskGpuParams;

struct Args {
  std::string json;
  std::vector<int> lens;
  std::vector<int> a1_lens;
  int reps = 0;
  int rotations = 0;
  int spans = 0;          // needle spans per KV head (A1)
  float needle_norm = 0;  // needles hold ~99% of the dense softmax mass at 1M (default 64)
  std::string commit;
  std::vector<int> src_lens;  // S1 rows (key sources)
  std::vector<int> src_hits;  // S1 mask-cache hit rates, percent
};

// The flags, range-checked (exits 2 naming the flag on a bad value).
Args ArgsFromFlags() {
  Args a;
  a.json = absl::GetFlag(FLAGS_json);
  a.lens = absl::GetFlag(FLAGS_lens).values;
  a.a1_lens = absl::GetFlag(FLAGS_a1_lens).values;
  a.reps = absl::GetFlag(FLAGS_reps);
  a.rotations = absl::GetFlag(FLAGS_rotations);
  a.spans = absl::GetFlag(FLAGS_spans);
  const double needle_norm = absl::GetFlag(FLAGS_needle_norm);
  a.needle_norm = static_cast<float>(needle_norm);
  a.commit = absl::GetFlag(FLAGS_commit);
  a.src_lens = absl::GetFlag(FLAGS_src_lens).values;
  a.src_hits = absl::GetFlag(FLAGS_src_hits).values;
  using flags::CheckFlag;
  auto positive = [](int t) { return t > 0; };
  ExitOnBadFlags(
      "bench_hip_decode",
      {CheckEach(a.lens, positive, "lens", "> 0"),
       CheckEach(a.a1_lens, positive, "a1_lens", "> 0", /*allow_empty=*/true),
       CheckFlag(a.reps >= 10, "reps", ">= 10 (the median needs enough samples)", a.reps),
       CheckFlag(a.rotations >= 1, "rotations", ">= 1", a.rotations),
       CheckFlag(a.spans >= 1, "spans", ">= 1", a.spans),
       CheckFlag(needle_norm > 0, "needle_norm", "> 0", needle_norm),
       CheckEach(a.src_lens, positive, "src_lens", "> 0", /*allow_empty=*/true),
       CheckEach(
           a.src_hits, [](int p) { return p >= 0 && p <= 100; }, "src_hits",
           "a percentage in [0, 100]", /*allow_empty=*/true)});
  return a;
}

int CeilLog2(int c) {
  int it = 0;
  while ((1 << it) < c) ++it;
  return it;
}

struct Row {
  Row(int t_len, std::string k, double b, double f)
      : T(t_len), kind(std::move(k)), bytes(b), flops(f) {}
  int T;
  std::string kind;
  double bytes = 0, flops = 0;
  Timing t;
  int64_t bad = 0;
};

struct A1Row {
  int T;
  double err_hip, err_dense_gpu, err_oracle, needle_mass, needle_recall;
  int64_t bad;
};

// Everything one "8B layer" needs on the device.
struct Layer {
  int H = kernels::testing::k8BLayer.num_heads;
  int KVH = kernels::testing::k8BLayer.num_kv_heads;
  int D = kernels::testing::k8BLayer.head_dim;
  int max_t = 0, R = 1;
  int64_t pad = 2048, rows = 0;
  void *k = nullptr, *v = nullptr, *q = nullptr, *out = nullptr;
  int64_t* d_starts = nullptr;  // [R]
  int32_t* d_lens = nullptr;    // [96]: per-step lengths of the refresh cycle
  kernels::HipConfig cfg;
  kernels::PruningSpec spec;
  float* d_rope = nullptr;
  int rope_positions = 0;
  int32_t* state[3][3] = {};
  void* mask_ws = nullptr;
  size_t mask_ws_bytes = 0;
  void* bsa_ws = nullptr;
  size_t bsa_ws_bytes = 0;
  void* dense_ws = nullptr;
  size_t dense_ws_bytes = 0;
  int64_t q_elems() const { return int64_t{H} * D; }
};

// The fields the mask and the attention params share: query set r, K, lengths, shape.
template <typename Params>
void SetCommon(const Layer& L, int T, int r, const int32_t* lens, Params* p) {
  p->q = static_cast<const uint16_t*>(L.q) + r * L.q_elems();
  p->k = L.k;
  p->kv_start = L.d_starts + r;
  p->kv_len = lens;
  p->batch = 1;
  p->num_heads = L.H;
  p->num_kv_heads = L.KVH;
  p->head_dim = L.D;
  p->max_kv_len = T;
}

HipDecodeMaskGpuParams MaskParams(const Layer& L, int T, int r, const int32_t* lens, int start) {
  HipDecodeMaskGpuParams p;
  SetCommon(L, T, r, lens, &p);
  p.n_sink = L.cfg.n_sink;
  p.spec = &L.spec;
  p.rope = L.d_rope;
  p.rope_positions = L.rope_positions;
  p.start_stage = start;
  for (int s = 0; s < 3; ++s) {
    p.state.starts[s] = L.state[s][0];
    p.state.count[s] = L.state[s][1];
    p.state.range_end[s] = L.state[s][2];
  }
  p.workspace = L.mask_ws;
  p.workspace_bytes = L.mask_ws_bytes;
  return p;
}

DecodeAttentionGpuParams AttnParams(const Layer& L, int T, int r, const int32_t* lens) {
  DecodeAttentionGpuParams p;
  SetCommon(L, T, r, lens, &p);
  p.v = L.v;
  p.out = L.out;
  p.scale = 1.f / std::sqrt(static_cast<float>(L.D));
  return p;
}

BsaDecodeGpuParams BsaParams(const Layer& L, int T, int r, const int32_t* lens) {
  BsaDecodeGpuParams p;
  p.attn = AttnParams(L, T, r, lens);
  p.attn.workspace = L.bsa_ws;
  p.attn.workspace_bytes = L.bsa_ws_bytes;
  p.block_starts = L.state[2][0];
  p.block_count = L.state[2][1];
  p.max_blocks = L.spec.keep_chunks(2);
  p.n_sink = L.cfg.n_sink;
  p.n_window = L.cfg.n_window;
  return p;
}

inline float Bf16(uint16_t b) {
  uint32_t u = uint32_t{b} << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Attention of one head over key positions `pos` in fp64 (keys/values as bf16 host arrays).
void AttendRef(const float* q, const std::vector<uint16_t>& k, const std::vector<uint16_t>& v,
               int64_t row0, int KVH, int D, int kvh, const std::vector<int32_t>& pos, double scale,
               double* out, const std::vector<char>* needle, double* needle_mass) {
  std::vector<double> s(pos.size());
  double mx = -INFINITY;
  for (size_t j = 0; j < pos.size(); ++j) {
    const uint16_t* kr = k.data() + ((row0 + pos[j]) * KVH + kvh) * D;
    double dot = 0;
    for (int x = 0; x < D; ++x) dot += double(q[x]) * Bf16(kr[x]);
    s[j] = dot * scale;
    mx = std::max(mx, s[j]);
  }
  double z = 0, zn = 0;
  for (size_t j = 0; j < pos.size(); ++j) {
    s[j] = std::exp(s[j] - mx);
    z += s[j];
    if (needle != nullptr && (*needle)[pos[j]]) zn += s[j];
  }
  if (needle_mass != nullptr) *needle_mass = zn / z;
  std::vector<double> acc(D, 0.0);
  for (size_t j = 0; j < pos.size(); ++j) {
    const uint16_t* vr = v.data() + ((row0 + pos[j]) * KVH + kvh) * D;
    const double p = s[j] / z;
    for (int x = 0; x < D; ++x) acc[x] += p * Bf16(vr[x]);
  }
  for (int x = 0; x < D; ++x) out[x] = acc[x];
}

double RelL2(const std::vector<double>& a, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

#include "bench/hip/hip_decode_bench_sources.inc"

int Main(const Args& a) {
  const auto [prop, driver] = QueryDevice(0);
  cudaStream_t stream = NonBlockingStream();

  Layer L;
  L.R = a.rotations;
  for (int T : a.lens) L.max_t = std::max(L.max_t, T);
  for (int T : a.a1_lens) L.max_t = std::max(L.max_t, T);
  for (int T : a.src_lens) L.max_t = std::max(L.max_t, T);
  L.rows = L.max_t + (L.R - 1) * L.pad;
  L.cfg = kernels::HipConfig{};  // "3K" preset, (96, 24, 8), relative pruning positions
  L.spec = kernels::PruningSpecForLayer(L.cfg, 8);
  const int64_t row_elems = int64_t{L.KVH} * L.D;
  const size_t kv_bytes = static_cast<size_t>(L.rows * row_elems * 2);
  std::printf("device %s, %d SMs, L2 %.0f MB, driver %d; K and V %.2f GiB each\n", prop.name,
              prop.multiProcessorCount, prop.l2CacheSize / 1e6, driver, kv_bytes / 1073741824.0);
  BENCH_CUDA(cudaMalloc(&L.k, kv_bytes));
  BENCH_CUDA(cudaMalloc(&L.v, kv_bytes));
  BENCH_CUDA(cudaMalloc(&L.q, L.R * L.q_elems() * 2));
  BENCH_CUDA(cudaMalloc(&L.out, L.q_elems() * 2));
  BENCH_CUDA(FillRandomBf16(L.k, L.rows * row_elems, 11, 1.f, stream));
  BENCH_CUDA(FillRandomBf16(L.v, L.rows * row_elems, 22, 1.f, stream));
  BENCH_CUDA(FillRandomBf16(L.q, L.R * L.q_elems(), 33, 1.f, stream));
  std::vector<int64_t> starts(L.R);
  for (int r = 0; r < L.R; ++r) starts[r] = r * L.pad;
  BENCH_CUDA(cudaMalloc(&L.d_starts, L.R * sizeof(int64_t)));
  BENCH_CUDA(cudaMemcpy(L.d_starts, starts.data(), L.R * sizeof(int64_t), cudaMemcpyHostToDevice));
  BENCH_CUDA(cudaMalloc(&L.d_lens, 96 * sizeof(int32_t)));

  // RoPE table (Llama 3.1) for the relative pruning positions.
  kernels::RopeConfig rc;
  rc.theta = 500000.f;
  rc.scaling = kernels::RopeScaling::kLlama3;
  rc.factor = 8.f;
  {
    HipDecodeMaskGpuParams probe = MaskParams(L, L.max_t, 0, L.d_lens, 0);
    absl::StatusOr<int> npos = kernels::HipDecodeMaskRopePositions(probe);
    BENCH_OK(npos.status());
    L.rope_positions = *npos;
    absl::StatusOr<kernels::RopeTable> table = kernels::RopeTable::Create(rc, L.D, *npos);
    BENCH_OK(table.status());
    const std::vector<float> rows = kernels::HipRopeRows(*table, *npos);
    BENCH_CUDA(cudaMalloc(&L.d_rope, rows.size() * sizeof(float)));
    BENCH_CUDA(
        cudaMemcpy(L.d_rope, rows.data(), rows.size() * sizeof(float), cudaMemcpyHostToDevice));
  }
  for (int s = 0; s < 3; ++s) {
    BENCH_CUDA(cudaMalloc(&L.state[s][0], L.KVH * L.spec.keep_chunks(s) * sizeof(int32_t)));
    BENCH_CUDA(cudaMalloc(&L.state[s][1], L.KVH * sizeof(int32_t)));
    BENCH_CUDA(cudaMalloc(&L.state[s][2], L.KVH * sizeof(int32_t)));
  }
  {
    HipDecodeMaskGpuParams mp = MaskParams(L, L.max_t, 0, L.d_lens, 0);
    absl::StatusOr<size_t> ws = kernels::HipDecodeMaskWorkspaceBytes(mp);
    BENCH_OK(ws.status());
    L.mask_ws_bytes = *ws;
    BENCH_CUDA(cudaMalloc(&L.mask_ws, *ws));
  }

  std::vector<Row> rows;
  const int nblk = L.spec.keep_chunks(2);
  for (int T : a.lens) {
    // Per-step lengths of the cycle: the sequence grows by one token per decode step.
    std::vector<int32_t> lens(96);
    for (int i = 0; i < 96; ++i) lens[i] = T - 95 + i;
    BENCH_CUDA(cudaMemcpy(L.d_lens, lens.data(), 96 * sizeof(int32_t), cudaMemcpyHostToDevice));
    const int32_t* len_T = L.d_lens + 95;
    {
      BsaDecodeGpuParams bp = BsaParams(L, T, 0, len_T);
      absl::StatusOr<size_t> ws = kernels::BsaDecodeAttentionWorkspaceBytes(bp);
      BENCH_OK(ws.status());
      if (L.bsa_ws) BENCH_CUDA(cudaFree(L.bsa_ws));
      L.bsa_ws_bytes = *ws;
      BENCH_CUDA(cudaMalloc(&L.bsa_ws, std::max<size_t>(*ws, 16)));
      DecodeAttentionGpuParams dp = AttnParams(L, T, 0, len_T);
      absl::StatusOr<size_t> dws = kernels::DenseDecodeAttentionWorkspaceBytes(dp);
      BENCH_OK(dws.status());
      if (L.dense_ws) BENCH_CUDA(cudaFree(L.dense_ws));
      L.dense_ws_bytes = *dws;
      BENCH_CUDA(cudaMalloc(&L.dense_ws, std::max<size_t>(*dws, 16)));
    }
    auto mask = [&](int r, const int32_t* len, int start, cudaStream_t s) {
      BENCH_OK(kernels::HipDecodeMaskGpu(MaskParams(L, T, r, len, start), s));
    };
    auto bsa = [&](int r, const int32_t* len, cudaStream_t s) {
      BENCH_OK(kernels::BsaDecodeAttentionGpu(BsaParams(L, T, r, len), s));
    };
    auto dense = [&](int r, cudaStream_t s) {
      DecodeAttentionGpuParams p = AttnParams(L, T, r, len_T);
      p.workspace = L.dense_ws;
      p.workspace_bytes = L.dense_ws_bytes;
      BENCH_OK(kernels::DenseDecodeAttentionGpu(p, s));
    };
    // Byte / FLOP counts (per step, all KV heads): probes x 256 B, group x 2 x 128 FLOPs each.
    const int64_t cand = std::max(0, T - 1 - L.cfg.n_window - L.cfg.n_sink);
    const double n1 = double((cand + 255) / 256);
    const double probes[3] = {n1 * 2 * CeilLog2(256), 1024.0 * 2 * CeilLog2(32),
                              1024.0 * 2 * CeilLog2(8)};
    auto mask_bytes = [&](int from) {
      double b = 0;
      for (int s = from; s < 3; ++s) b += probes[s] * L.KVH * L.D * 2;
      return b;
    };
    auto mask_flops = [&](int from) {
      double f = 0;
      for (int s = from; s < 3; ++s) f += probes[s] * L.H * L.D * 2;
      return f;
    };
    const double bsa_keys = L.cfg.n_sink + 8.0 * nblk + L.cfg.n_window;
    const double bsa_bytes = bsa_keys * L.KVH * L.D * 2 * 2;
    const double dense_bytes = double(T) * L.KVH * L.D * 2 * 2;
    const int R = L.R;
    auto poison = [&](cudaStream_t s) {
      BENCH_CUDA(cudaMemsetAsync(L.out, 0xff, L.q_elems() * 2, s));
    };

    {  // Dense.
      Row row(T, "dense", dense_bytes, double(T) * L.H * L.D * 4);
      row.t = TimeCycle(a.reps, R, stream, [&](int i, cudaStream_t s) { dense(i, s); });
      poison(stream);
      dense(0, stream);
      row.bad = CountNonFiniteBf16(L.out, L.q_elems(), stream);
      rows.push_back(row);
    }
    // Mask alone from stage s (s = 0: K2's mask half), then mask + BSA.
    for (int from = 0; from < 3; ++from) {
      Row row(T, "mask_from_s" + std::to_string(from + 1), mask_bytes(from), mask_flops(from));
      mask(0, len_T, 0, stream);  // valid cached lists for the restarts
      row.t = TimeCycle(a.reps, R, stream, [&](int i, cudaStream_t s) { mask(i, len_T, from, s); });
      rows.push_back(row);
      Row both(T, from == 0 ? "K2_full+bsa" : "from_s" + std::to_string(from + 1) + "+bsa",
               mask_bytes(from) + bsa_bytes, mask_flops(from));
      both.t = TimeCycle(a.reps, R, stream, [&](int i, cudaStream_t s) {
        mask(i, len_T, from, s);
        bsa(i, len_T, s);
      });
      poison(stream);
      mask(0, len_T, from, stream);
      bsa(0, len_T, stream);
      both.bad = CountNonFiniteBf16(L.out, L.q_elems(), stream);
      rows.push_back(both);
    }
    {  // BSA only (mask reused).
      mask(0, len_T, 0, stream);
      Row row(T, "bsa_only", bsa_bytes, bsa_keys * L.H * L.D * 4);
      row.t = TimeCycle(a.reps, R, stream, [&](int i, cudaStream_t s) { bsa(i, len_T, s); });
      poison(stream);
      bsa(0, len_T, stream);
      row.bad = CountNonFiniteBf16(L.out, L.q_elems(), stream);
      rows.push_back(row);
    }
    {  // K1: the 96-step refresh cycle, one graph; q rotates per step, length grows per step.
      double bytes = 0;
      int counts[4] = {0, 0, 0, 0};
      for (int i = 0; i < 96; ++i) {
        const int st = kernels::DecodeRefreshStage(L.cfg, i);
        counts[st < 0 ? 3 : st]++;
        bytes += (st >= 0 ? mask_bytes(st) : 0) + bsa_bytes;
      }
      std::printf("T=%d cycle: %d full, %d from stage 2, %d from stage 3, %d BSA only\n", T,
                  counts[0], counts[1], counts[2], counts[3]);
      Row row(T, "K1_cycle_per_step", bytes / 96, 0);
      row.t = TimeCycle(a.reps, 96, stream, [&](int i, cudaStream_t s) {
        const int st = kernels::DecodeRefreshStage(L.cfg, i);
        if (st >= 0) mask(i % R, L.d_lens + i, st, s);
        bsa(i % R, L.d_lens + i, s);
      });
      poison(stream);
      mask(0, len_T, 0, stream);
      bsa(0, len_T, stream);
      row.bad = CountNonFiniteBf16(L.out, L.q_elems(), stream);
      rows.push_back(row);
    }
  }

  const std::vector<SrcRow> src_rows = RunKeySourceRows(a, L, stream);  // S1
  // A1: needles.
  std::vector<A1Row> a1;
  std::mt19937_64 rng(4321);
  const int group = L.H / L.KVH;
  for (int T : a.a1_lens) {
    std::vector<int32_t> lenv = {T};
    BENCH_CUDA(cudaMemcpy(L.d_lens, lenv.data(), sizeof(int32_t), cudaMemcpyHostToDevice));
    BENCH_CUDA(FillRandomBf16(L.k, L.rows * row_elems, 11 + T, 1.f, stream));
    BENCH_CUDA(FillRandomBf16(L.v, L.rows * row_elems, 22 + T, 1.f, stream));
    std::vector<uint16_t> qh(L.q_elems());
    BENCH_CUDA(cudaMemcpy(qh.data(), L.q, qh.size() * 2, cudaMemcpyDeviceToHost));
    std::vector<float> qf(qh.size());
    kernels::Bf16ToFloatArray(qh.data(), qf.data(), static_cast<int64_t>(qh.size()));
    std::vector<std::vector<char>> needle(L.KVH, std::vector<char>(T, 0));
    for (int h = 0; h < L.KVH; ++h) {
      std::vector<double> dir(L.D, 0.0);
      for (int g = 0; g < group; ++g) {
        for (int x = 0; x < L.D; ++x) dir[x] += qf[(h * group + g) * L.D + x];
      }
      double norm = 0;
      for (double d : dir) norm += d * d;
      norm = std::sqrt(norm);
      std::vector<uint16_t> key(L.D);
      for (int x = 0; x < L.D; ++x)
        key[x] = kernels::FloatToBf16(float(a.needle_norm * dir[x] / norm));
      const int lo = L.cfg.n_sink, hi = T - 1 - L.cfg.n_window - 32;
      for (int sp = 0; sp < a.spans; ++sp) {
        const int at = lo + static_cast<int>(rng() % (hi - lo));
        for (int t = at; t < at + 32; ++t) {
          needle[h][t] = 1;
          BENCH_CUDA(cudaMemcpy(static_cast<uint16_t*>(L.k) + (int64_t{t} * L.KVH + h) * L.D,
                                key.data(), L.D * 2, cudaMemcpyHostToDevice));
        }
      }
    }
    {
      BsaDecodeGpuParams bp = BsaParams(L, T, 0, L.d_lens);
      absl::StatusOr<size_t> ws = kernels::BsaDecodeAttentionWorkspaceBytes(bp);
      BENCH_OK(ws.status());
      if (L.bsa_ws) BENCH_CUDA(cudaFree(L.bsa_ws));
      L.bsa_ws_bytes = *ws;
      BENCH_CUDA(cudaMalloc(&L.bsa_ws, std::max<size_t>(*ws, 16)));
      DecodeAttentionGpuParams dp = AttnParams(L, T, 0, L.d_lens);
      absl::StatusOr<size_t> dws = kernels::DenseDecodeAttentionWorkspaceBytes(dp);
      BENCH_OK(dws.status());
      if (L.dense_ws) BENCH_CUDA(cudaFree(L.dense_ws));
      L.dense_ws_bytes = *dws;
      BENCH_CUDA(cudaMalloc(&L.dense_ws, std::max<size_t>(*dws, 16)));
    }
    BENCH_CUDA(cudaMemsetAsync(L.out, 0xff, L.q_elems() * 2, stream));
    BENCH_OK(kernels::HipDecodeMaskGpu(MaskParams(L, T, 0, L.d_lens, 0), stream));
    BENCH_OK(kernels::BsaDecodeAttentionGpu(BsaParams(L, T, 0, L.d_lens), stream));
    const int64_t bad = CountNonFiniteBf16(L.out, L.q_elems(), stream);
    std::vector<uint16_t> out_hip(L.q_elems()), out_dense(L.q_elems());
    BENCH_CUDA(cudaMemcpy(out_hip.data(), L.out, L.q_elems() * 2, cudaMemcpyDeviceToHost));
    {
      DecodeAttentionGpuParams dp = AttnParams(L, T, 0, L.d_lens);
      dp.workspace = L.dense_ws;
      dp.workspace_bytes = L.dense_ws_bytes;
      BENCH_OK(kernels::DenseDecodeAttentionGpu(dp, stream));
      BENCH_CUDA(cudaStreamSynchronize(stream));
      BENCH_CUDA(cudaMemcpy(out_dense.data(), L.out, L.q_elems() * 2, cudaMemcpyDeviceToHost));
    }
    std::vector<int32_t> blocks(L.KVH * nblk), counts(L.KVH);
    BENCH_CUDA(cudaMemcpy(blocks.data(), L.state[2][0], blocks.size() * 4, cudaMemcpyDeviceToHost));
    BENCH_CUDA(cudaMemcpy(counts.data(), L.state[2][1], counts.size() * 4, cudaMemcpyDeviceToHost));
    std::vector<uint16_t> kh(int64_t{T} * row_elems), vh(int64_t{T} * row_elems);
    BENCH_CUDA(cudaMemcpy(kh.data(), L.k, kh.size() * 2, cudaMemcpyDeviceToHost));
    BENCH_CUDA(cudaMemcpy(vh.data(), L.v, vh.size() * 2, cudaMemcpyDeviceToHost));

    // Host fp64 references, one thread per query head.
    std::vector<double> ref(L.q_elems()), oracle(L.q_elems()), mass(L.H);
    std::vector<int32_t> all(T);
    for (int t = 0; t < T; ++t) all[t] = t;
    double recall_num = 0, recall_den = 0;
    std::vector<std::vector<int32_t>> oracle_pos(L.KVH);
    for (int h = 0; h < L.KVH; ++h) {
      std::vector<char> in(T, 0);
      for (int t = 0; t < std::min(T, L.cfg.n_sink); ++t) in[t] = 1;
      for (int t = std::max(0, T - 1 - L.cfg.n_window); t < T; ++t) in[t] = 1;
      std::vector<char> sel = in;
      for (int i = 0; i < counts[h]; ++i) {
        for (int t = blocks[h * nblk + i]; t < std::min(T, blocks[h * nblk + i] + 8); ++t)
          sel[t] = 1;
      }
      for (int t = 0; t < T; ++t) {
        if (needle[h][t]) {
          recall_den += 1;
          recall_num += sel[t];
          const int b0 = L.cfg.n_sink + (t - L.cfg.n_sink) / 8 * 8;
          for (int u = b0; u < std::min(T, b0 + 8); ++u) in[u] = 1;
        }
      }
      for (int t = 0; t < T; ++t) {
        if (in[t]) oracle_pos[h].push_back(t);
      }
    }
    const double scale = 1.0 / std::sqrt(double(L.D));
    std::vector<std::thread> threads;
    const unsigned nt = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
    std::atomic<int> next{0};
    for (unsigned w = 0; w < nt; ++w) {
      threads.emplace_back([&]() {
        for (int hq = next++; hq < L.H; hq = next++) {
          const int kvh = hq / group;
          AttendRef(qf.data() + hq * L.D, kh, vh, 0, L.KVH, L.D, kvh, all, scale,
                    ref.data() + hq * L.D, &needle[kvh], &mass[hq]);
          AttendRef(qf.data() + hq * L.D, kh, vh, 0, L.KVH, L.D, kvh, oracle_pos[kvh], scale,
                    oracle.data() + hq * L.D, nullptr, nullptr);
        }
      });
    }
    for (std::thread& t : threads) t.join();
    std::vector<double> hip_d(L.q_elems()), dense_d(L.q_elems());
    for (int64_t i = 0; i < L.q_elems(); ++i) {
      hip_d[i] = kernels::Bf16ToFloat(out_hip[i]);
      dense_d[i] = kernels::Bf16ToFloat(out_dense[i]);
    }
    double m = 0;
    for (double x : mass) m += x / L.H;
    a1.push_back(A1Row{T, RelL2(hip_d, ref), RelL2(dense_d, ref), RelL2(oracle, ref), m,
                       recall_num / recall_den, bad});
  }

  // Tables.
  std::printf("\n%-8s %-20s %12s %12s %10s %10s %6s\n", "T", "kind", "stream_us", "graph_us",
              "GB/s", "GFLOP/s", "bad");
  for (const Row& r : rows) {
    std::printf("%-8d %-20s %12.2f %12.2f %10.0f %10.0f %6lld\n", r.T, r.kind.c_str(),
                r.t.stream_us, r.t.graph_us, r.bytes / (r.t.graph_us * 1e3),
                r.flops / (r.t.graph_us * 1e3), static_cast<long long>(r.bad));
  }
  std::printf("\n%-8s %12s %12s %14s %14s\n", "T", "K2_us", "K1_us/step", "dense/K1 (x)",
              "dense/K2 (x)");
  for (const Row& d : rows) {
    if (d.kind != "dense") continue;
    double k1 = 0, k2 = 0;
    for (const Row& r : rows) {
      if (r.T != d.T) continue;
      if (r.kind == "K1_cycle_per_step") k1 = r.t.graph_us;
      if (r.kind == "K2_full+bsa") k2 = r.t.graph_us;
    }
    std::printf("%-8d %12.2f %12.2f %14.1f %14.2f\n", d.T, k2, k1, d.t.graph_us / k1,
                d.t.graph_us / k2);
  }
  PrintSrcRows(src_rows);
  std::printf("\nA1 (%d needle spans of 32 keys per KV head, needle key norm %.0f)\n", a.spans,
              a.needle_norm);
  std::printf("%-8s %10s %14s %12s %14s %14s %6s\n", "T", "err_hip", "err_dense_gpu", "err_oracle",
              "needle_mass", "needle_recall", "bad");
  for (const A1Row& r : a1) {
    std::printf("%-8d %10.4f %14.4f %12.4f %14.4f %14.3f %6lld\n", r.T, r.err_hip, r.err_dense_gpu,
                r.err_oracle, r.needle_mass, r.needle_recall, static_cast<long long>(r.bad));
  }

  if (!a.json.empty()) {
    std::string j = JsonDeviceHead("hip_decode", prop, driver, /*with_l2=*/false);
    j += JsonCommitDate(a.commit);
    j += "  \"shape\": {\"batch\": 1, \"heads\": " + std::to_string(L.H) +
         ", \"kv_heads\": " + std::to_string(L.KVH) + ", \"head_dim\": " + std::to_string(L.D) +
         ", \"dtype\": \"bf16\", \"chunk_sizes\": [256, 32, 8], \"keep\": [32768, 8192, 2048], "
         "\"refresh\": [96, 24, 8], \"pruning_positions\": \"relative\", \"rope\": \"llama3\"},\n";
    j += JsonMethod(a.reps, a.rotations, "median per call (graph replay)") + "  \"rows\": [\n";
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      char buf[512];
      std::snprintf(buf, sizeof(buf),
                    "    {\"T\": %d, \"kind\": \"%s\", \"bytes\": %.0f, \"flops\": %.0f, %s, "
                    "\"bad_outputs\": %lld}%s\n",
                    r.T, r.kind.c_str(), r.bytes, r.flops, TimingJson(r.t, r.bytes).c_str(),
                    static_cast<long long>(r.bad), i + 1 < rows.size() ? "," : "");
      j += buf;
    }
    j += "  ],\n  \"a1\": [\n";
    for (size_t i = 0; i < a1.size(); ++i) {
      const A1Row& r = a1[i];
      char buf[384];
      std::snprintf(buf, sizeof(buf),
                    "    {\"T\": %d, \"spans_per_kv_head\": %d, \"needle_norm\": %.1f, "
                    "\"err_hip\": %.5f, \"err_dense_gpu\": %.5f, \"err_oracle\": %.5f, "
                    "\"needle_mass\": %.5f, \"needle_recall\": %.4f}%s\n",
                    r.T, a.spans, a.needle_norm, r.err_hip, r.err_dense_gpu, r.err_oracle,
                    r.needle_mass, r.needle_recall, i + 1 < a1.size() ? "," : "");
      j += buf;
    }
    j += "  ],\n";
    j += SrcRowsJson(src_rows);
    j += "}\n";
    if (!WriteTextFile(a.json, j)) return 1;
  }
  int64_t bad = 0;
  for (const Row& r : rows) bad += r.bad;
  for (const A1Row& r : a1) bad += r.bad;
  return bad == 0 ? 0 : 3;
}

}  // namespace
}  // namespace hipserve::bench

namespace {

constexpr char kUsage[] =
    R"(bench_hip_decode: HiP decode for the "8B layer" (32 query heads, 8 KV heads, head dim 128,
bf16, batch 1): GPU mask estimation (kernels/hip_cuda, relative pruning positions, Llama 3.1
RoPE, the "3K" preset) + BSA decode (kernels/attention_cuda) against dense flash decode in the
same run.
  K2: all three stages recomputed + BSA, per step.
  K1: time per step over one (96, 24, 8) refresh cycle (1 full, 3 from stage 2, 8 from stage 3,
      84 BSA only), measured as a CUDA graph of the 96 steps (the sequence grows by one token
      per step), / 96; plus the per-kind components.
  A1: needle spans (32 consecutive keys along the group's mean query, planted at random
      places in random keys): relative L2 error of the HiP output vs dense attention in fp64
      on the host; also the dense GPU kernel's error and an "oracle" floor (BSA over exactly
      the blocks covering the needles).
Method (shared/BENCHMARKS.md): CUDA events, warm-up, median of --reps; inputs rotate over
--rotations query sets and KV row offsets (the 1M KV is 4.3 GB, far beyond L2); outputs
poisoned and checked; bytes counted and GB/s printed.

  S1: a full mask refresh (all stages, K2's mask half) with the probe keys read the way they
      are stored: contiguous bf16 (the baseline, same run), contiguous fp8 e5m2, and tiered
      (bf16 mask-cache bank via the slot table, misses straight from fp8 cold pages in mapped
      pinned host memory) at --src_hits mask-cache hit rates; GB/s over PCIe for the misses.

  bench_hip_decode [--json out.json] [--lens 131072,1048576] [--a1_lens 131072,1048576]
                   [--reps 20] [--rotations 8] [--spans 4] [--commit SHA]
                   [--src_lens 1048576|none] [--src_hits 99,90,50]
)";

}  // namespace

int main(int argc, char** argv) {
  hipserve::flags::ParseProgramFlagsOrExit(argc, argv, kUsage, __FILE__);
  return hipserve::bench::Main(hipserve::bench::ArgsFromFlags());
}
