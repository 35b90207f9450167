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
#include "absl/strings/str_split.h"
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
ABSL_FLAG(std::string, representatives, "probes",
          "K1, K2 and A1: the mask representatives to compare (docs/HIP_NOTES.md 6-7), a comma "
          "list; each entry scores EVERY pruning stage with one option: probes, page_bound, "
          "block_means (means of --mean_block_size keys), block_means8 (means of 8 keys) or "
          "exact. All entries run in one process on the same data; each once.");
ABSL_FLAG(int, mean_block_size, 16,
          "Keys per mean of the 'block_means' entry of --representatives; > 0, dividing 256 (the "
          "stage-1 chunk).");

namespace hipserve::bench {
namespace {

using kernels::BsaDecodeGpuParams;
using kernels::DecodeAttentionGpuParams;
using kernels::HipDecodeMaskGpuParams;

// One --representatives entry: the option that scores every pruning stage.
struct RepOption {
  std::string name;  // in the tables and the JSON: probes, page_bound, block_means16, .., exact
  kernels::Stage1Representatives rep = kernels::Stage1Representatives::kProbes;
  int mean_block_size = 0;  // block_means only
};

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
  int mean_block_size = 0;
  std::vector<RepOption> options;  // --representatives, in flag order
};

// --representatives (a comma list) into options; InvalidArgument naming the flag on an unknown
// or repeated entry. block_means takes `mean_block_size` and is named block_means<size>.
absl::Status ParseRepOptions(const std::string& list, int mean_block_size,
                             std::vector<RepOption>* out) {
  using R = kernels::Stage1Representatives;
  const kernels::HipConfig defaults;
  for (absl::string_view entry : absl::StrSplit(list, ',')) {
    RepOption o{std::string(entry), R::kProbes, defaults.mean_block_size};
    if (entry == "page_bound") {
      o.rep = R::kPageBound;
    } else if (entry == "block_means" || entry == "block_means8") {
      o.rep = R::kBlockMeans;
      o.mean_block_size = entry == "block_means" ? mean_block_size : 8;
      o.name = "block_means" + std::to_string(o.mean_block_size);
    } else if (entry == "exact") {
      o.rep = R::kExact;
    } else if (entry != "probes") {
      return absl::InvalidArgumentError(
          "--representatives: every entry must be probes, page_bound, block_means, block_means8 "
          "or exact, got '" +
          std::string(entry) + "'");
    }
    for (const RepOption& seen : *out) {
      if (seen.name == o.name) {
        return absl::InvalidArgumentError("--representatives names " + o.name + " twice");
      }
    }
    out->push_back(o);
  }
  return absl::OkStatus();
}

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
  a.mean_block_size = absl::GetFlag(FLAGS_mean_block_size);
  const absl::Status options_ok =
      ParseRepOptions(absl::GetFlag(FLAGS_representatives), a.mean_block_size, &a.options);
  const int chunk1 = kernels::HipConfig{}.chunk_sizes[0];
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
           "a percentage in [0, 100]", /*allow_empty=*/true),
       CheckFlag(a.mean_block_size > 0 && chunk1 % a.mean_block_size == 0, "mean_block_size",
                 "> 0 and a divisor of " + std::to_string(chunk1) + " (the stage-1 chunk)",
                 a.mean_block_size),
       options_ok});
  return a;
}

int CeilLog2(int c) {
  int it = 0;
  while ((1 << it) < c) ++it;
  return it;
}

// The "3K" preset ((96, 24, 8) refresh, relative pruning positions) with `o` at every stage.
// probes is HipConfig{} itself (later stages empty = probes), so the default run is unchanged.
kernels::HipConfig ConfigFor(const RepOption& o) {
  kernels::HipConfig c;
  if (o.rep == kernels::Stage1Representatives::kProbes) return c;
  c.stage1_representatives = o.rep;
  c.later_stage_representatives.assign(c.num_stages() - 1, o.rep);
  c.mean_block_size = o.mean_block_size;
  return c;
}

// One refresh of stage s per KV head, `cand` candidate keys (T - 1 - n_window - n_sink): keys
// read from K and units scored against each query row of the group. Probes read 2 log2(c) keys
// per chunk of c keys (binary descent); the other options read every key of their chunks once
// (summaries computed on the fly) and score one unit per key (exact), per box of min(64, c) keys
// (page_bound) or per mean of min(mean_block_size, c) keys (block_means).
struct StageCost {
  double keys = 0, units = 0;
};
StageCost StageCostFor(const kernels::PruningSpec& spec, int s, int64_t cand) {
  const int c = spec.chunk_sizes[s];
  const double chunks = s == 0 ? double((cand + c - 1) / c)
                               : double(spec.keep_chunks(s - 1)) * (spec.chunk_sizes[s - 1] / c);
  using R = kernels::Stage1Representatives;
  switch (spec.representatives(s)) {
    case R::kProbes:
      return {chunks * 2 * CeilLog2(c), chunks * 2 * CeilLog2(c)};
    case R::kExact:
      return {chunks * c, chunks * c};
    case R::kPageBound:
      return {chunks * c, chunks * c / std::min(kernels::kHipPageSize, c)};
    case R::kBlockMeans:
      return {chunks * c, chunks * c / std::min(spec.mean_block_size, c)};
  }
  return {};
}

struct Row {
  Row(int t_len, std::string opt, std::string k, double b, double f)
      : T(t_len), option(std::move(opt)), kind(std::move(k)), bytes(b), flops(f) {}
  int T;
  std::string option;  // RepOption::name; empty for dense (no mask)
  std::string kind;
  double bytes = 0, flops = 0;
  Timing t;
  int64_t bad = 0;
};

// K1 and K2 of one (T, option) against the run's dense decode at T.
struct KSummary {
  int T;
  std::string option;
  double dense_us, k2_us, k1_us;
};

struct A1Row {
  int T;
  std::string option;
  // needle_mass: dense softmax mass on the needles; attended_mass: on the keys HiP attends.
  double err_hip, err_dense_gpu, err_oracle, needle_mass, attended_mass, needle_recall;
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

// The mask config (and layer 8's spec) the next calls use.
void UseConfig(const kernels::HipConfig& cfg, Layer* L) {
  L->cfg = cfg;
  L->spec = kernels::PruningSpecForLayer(L->cfg, 8);
}

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

// (Re)allocates the BSA and dense decode workspaces for length T.
void AllocAttentionWorkspaces(int T, const int32_t* lens, Layer* L) {
  absl::StatusOr<size_t> ws = kernels::BsaDecodeAttentionWorkspaceBytes(BsaParams(*L, T, 0, lens));
  BENCH_OK(ws.status());
  if (L->bsa_ws) BENCH_CUDA(cudaFree(L->bsa_ws));
  L->bsa_ws_bytes = *ws;
  BENCH_CUDA(cudaMalloc(&L->bsa_ws, std::max<size_t>(*ws, 16)));
  absl::StatusOr<size_t> dws =
      kernels::DenseDecodeAttentionWorkspaceBytes(AttnParams(*L, T, 0, lens));
  BENCH_OK(dws.status());
  if (L->dense_ws) BENCH_CUDA(cudaFree(L->dense_ws));
  L->dense_ws_bytes = *dws;
  BENCH_CUDA(cudaMalloc(&L->dense_ws, std::max<size_t>(*dws, 16)));
}

// K1 and K2 per (T, option) against the dense row of T, in row and option order.
std::vector<KSummary> Summarize(const std::vector<Row>& rows,
                                const std::vector<RepOption>& options) {
  std::vector<KSummary> out;
  for (const Row& d : rows) {
    if (d.kind != "dense") continue;
    for (const RepOption& o : options) {
      KSummary k{d.T, o.name, d.t.graph_us, 0, 0};
      for (const Row& r : rows) {
        if (r.T != d.T || r.option != o.name) continue;
        if (r.kind == "K1_cycle_per_step") k.k1_us = r.t.graph_us;
        if (r.kind == "K2_full+bsa") k.k2_us = r.t.graph_us;
      }
      out.push_back(k);
    }
  }
  return out;
}

// "  \"<key>\": [\n" then one line per item (`object` writes its JSON object into a 640-byte
// buffer) and "  ],\n".
template <typename T, typename Fn>
std::string JsonRows(const char* key, const std::vector<T>& items, Fn object) {
  std::string j = std::string("  \"") + key + "\": [\n";
  for (size_t i = 0; i < items.size(); ++i) {
    char buf[640];
    object(items[i], buf, sizeof(buf));
    j += std::string("    ") + buf + (i + 1 < items.size() ? ",\n" : "\n");
  }
  return j + "  ],\n";
}

inline float Bf16(uint16_t b) {
  uint32_t u = uint32_t{b} << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Attention of one head over key positions `pos` in fp64 (keys/values as bf16 host arrays);
// masses[i] = the softmax mass on the positions p with (*sets[i])[p] != 0.
void AttendRef(const float* q, const std::vector<uint16_t>& k, const std::vector<uint16_t>& v,
               int64_t row0, int KVH, int D, int kvh, const std::vector<int32_t>& pos, double scale,
               double* out, const std::vector<const std::vector<char>*>& sets, double* masses) {
  std::vector<double> s(pos.size());
  double mx = -INFINITY;
  for (size_t j = 0; j < pos.size(); ++j) {
    const uint16_t* kr = k.data() + ((row0 + pos[j]) * KVH + kvh) * D;
    double dot = 0;
    for (int x = 0; x < D; ++x) dot += double(q[x]) * Bf16(kr[x]);
    s[j] = dot * scale;
    mx = std::max(mx, s[j]);
  }
  double z = 0;
  std::vector<double> zs(sets.size(), 0.0);
  for (size_t j = 0; j < pos.size(); ++j) {
    s[j] = std::exp(s[j] - mx);
    z += s[j];
    for (size_t i = 0; i < sets.size(); ++i) {
      if ((*sets[i])[pos[j]]) zs[i] += s[j];
    }
  }
  for (size_t i = 0; i < sets.size(); ++i) masses[i] = zs[i] / z;
  std::vector<double> acc(D, 0.0);
  for (size_t j = 0; j < pos.size(); ++j) {
    const uint16_t* vr = v.data() + ((row0 + pos[j]) * KVH + kvh) * D;
    const double p = s[j] / z;
    for (int x = 0; x < D; ++x) acc[x] += p * Bf16(vr[x]);
  }
  for (int x = 0; x < D; ++x) out[x] = acc[x];
}

// Keys [0, T) that BSA attends: the sink, the window, and the `count` blocks of `block` keys
// starting at `blocks`.
std::vector<char> AttendedKeys(const kernels::HipConfig& cfg, int T, const int32_t* blocks,
                               int count, int block) {
  std::vector<char> in(T, 0);
  for (int t = 0; t < std::min(T, cfg.n_sink); ++t) in[t] = 1;
  for (int t = std::max(0, T - 1 - cfg.n_window); t < T; ++t) in[t] = 1;
  for (int i = 0; i < count; ++i) {
    for (int t = blocks[i]; t < std::min(T, blocks[i] + block); ++t) in[t] = 1;
  }
  return in;
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
  // "3K" preset, (96, 24, 8), relative pruning positions; the options differ in the scorers only
  // (same chunks, keeps, refresh, sink and window).
  UseConfig(ConfigFor(a.options[0]), &L);
  const int64_t row_elems = int64_t{L.KVH} * L.D;
  const size_t kv_bytes = static_cast<size_t>(L.rows * row_elems * 2);
  std::printf("device %s, %d SMs, L2 %.0f MB, driver %d; K and V %.2f GiB each\n", prop.name,
              prop.multiProcessorCount, prop.l2CacheSize / 1e6, driver, kv_bytes / 1073741824.0);
  if (a.options.size() > 1 || a.options[0].rep != kernels::Stage1Representatives::kProbes) {
    std::printf("representatives (every stage):");
    for (const RepOption& o : a.options) std::printf(" %s", o.name.c_str());
    std::printf("\n");
  }
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

  // RoPE positions and mask workspace: enough for every option.
  for (const RepOption& o : a.options) {
    UseConfig(ConfigFor(o), &L);
    HipDecodeMaskGpuParams mp = MaskParams(L, L.max_t, 0, L.d_lens, 0);
    absl::StatusOr<int> npos = kernels::HipDecodeMaskRopePositions(mp);
    BENCH_OK(npos.status());
    L.rope_positions = std::max(L.rope_positions, *npos);
    absl::StatusOr<size_t> ws = kernels::HipDecodeMaskWorkspaceBytes(mp);
    BENCH_OK(ws.status());
    L.mask_ws_bytes = std::max(L.mask_ws_bytes, *ws);
  }
  BENCH_CUDA(cudaMalloc(&L.mask_ws, L.mask_ws_bytes));
  {  // RoPE table (Llama 3.1) for the relative pruning positions.
    kernels::RopeConfig rc;
    rc.theta = 500000.f;
    rc.scaling = kernels::RopeScaling::kLlama3;
    rc.factor = 8.f;
    absl::StatusOr<kernels::RopeTable> table =
        kernels::RopeTable::Create(rc, L.D, L.rope_positions);
    BENCH_OK(table.status());
    const std::vector<float> rows = kernels::HipRopeRows(*table, L.rope_positions);
    BENCH_CUDA(cudaMalloc(&L.d_rope, rows.size() * sizeof(float)));
    BENCH_CUDA(
        cudaMemcpy(L.d_rope, rows.data(), rows.size() * sizeof(float), cudaMemcpyHostToDevice));
  }
  for (int s = 0; s < 3; ++s) {
    BENCH_CUDA(cudaMalloc(&L.state[s][0], L.KVH * L.spec.keep_chunks(s) * sizeof(int32_t)));
    BENCH_CUDA(cudaMalloc(&L.state[s][1], L.KVH * sizeof(int32_t)));
    BENCH_CUDA(cudaMalloc(&L.state[s][2], L.KVH * sizeof(int32_t)));
  }

  std::vector<Row> rows;
  const int nblk = L.spec.keep_chunks(2);
  for (int T : a.lens) {
    // Per-step lengths of the cycle: the sequence grows by one token per decode step.
    std::vector<int32_t> lens(96);
    for (int i = 0; i < 96; ++i) lens[i] = T - 95 + i;
    BENCH_CUDA(cudaMemcpy(L.d_lens, lens.data(), 96 * sizeof(int32_t), cudaMemcpyHostToDevice));
    const int32_t* len_T = L.d_lens + 95;
    AllocAttentionWorkspaces(T, len_T, &L);
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
    // Byte / FLOP counts (per step, all KV heads) of the current option (StageCostFor): keys x
    // 256 B, scored units x group x 2 x 128 FLOPs.
    const int64_t cand = std::max(0, T - 1 - L.cfg.n_window - L.cfg.n_sink);
    auto mask_bytes = [&](int from) {
      double b = 0;
      for (int s = from; s < 3; ++s) b += StageCostFor(L.spec, s, cand).keys * L.KVH * L.D * 2;
      return b;
    };
    auto mask_flops = [&](int from) {
      double f = 0;
      for (int s = from; s < 3; ++s) f += StageCostFor(L.spec, s, cand).units * L.H * L.D * 2;
      return f;
    };
    const double bsa_keys = L.cfg.n_sink + 8.0 * nblk + L.cfg.n_window;
    const double bsa_bytes = bsa_keys * L.KVH * L.D * 2 * 2;
    const double dense_bytes = double(T) * L.KVH * L.D * 2 * 2;
    const int R = L.R;
    auto poison = [&](cudaStream_t s) {
      BENCH_CUDA(cudaMemsetAsync(L.out, 0xff, L.q_elems() * 2, s));
    };

    {  // Dense, once per T: the baseline of every option.
      Row row(T, "", "dense", dense_bytes, double(T) * L.H * L.D * 4);
      row.t = TimeCycle(a.reps, R, stream, [&](int i, cudaStream_t s) { dense(i, s); });
      poison(stream);
      dense(0, stream);
      row.bad = CountNonFiniteBf16(L.out, L.q_elems(), stream);
      rows.push_back(row);
    }
    int counts[4] = {0, 0, 0, 0};
    for (int i = 0; i < 96; ++i) {
      const int st = kernels::DecodeRefreshStage(L.cfg, i);
      counts[st < 0 ? 3 : st]++;
    }
    std::printf("T=%d cycle: %d full, %d from stage 2, %d from stage 3, %d BSA only\n", T,
                counts[0], counts[1], counts[2], counts[3]);
    for (const RepOption& o : a.options) {
      UseConfig(ConfigFor(o), &L);
      // Mask alone from stage s (s = 0: K2's mask half), then mask + BSA.
      for (int from = 0; from < 3; ++from) {
        Row row(T, o.name, "mask_from_s" + std::to_string(from + 1), mask_bytes(from),
                mask_flops(from));
        mask(0, len_T, 0, stream);  // valid cached lists for the restarts
        row.t =
            TimeCycle(a.reps, R, stream, [&](int i, cudaStream_t s) { mask(i, len_T, from, s); });
        rows.push_back(row);
        Row both(T, o.name,
                 from == 0 ? "K2_full+bsa" : "from_s" + std::to_string(from + 1) + "+bsa",
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
        Row row(T, o.name, "bsa_only", bsa_bytes, bsa_keys * L.H * L.D * 4);
        row.t = TimeCycle(a.reps, R, stream, [&](int i, cudaStream_t s) { bsa(i, len_T, s); });
        poison(stream);
        bsa(0, len_T, stream);
        row.bad = CountNonFiniteBf16(L.out, L.q_elems(), stream);
        rows.push_back(row);
      }
      {  // K1: the 96-step refresh cycle, one graph; q rotates per step, length grows per step.
        double bytes = 0;
        for (int i = 0; i < 96; ++i) {
          const int st = kernels::DecodeRefreshStage(L.cfg, i);
          bytes += (st >= 0 ? mask_bytes(st) : 0) + bsa_bytes;
        }
        Row row(T, o.name, "K1_cycle_per_step", bytes / 96, 0);
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
  }

  UseConfig(kernels::HipConfig{}, &L);  // S1 scores with probes, whatever --representatives says
  const std::vector<SrcRow> src_rows = RunKeySourceRows(a, L, stream);  // S1
  // A1: needles.
  std::vector<A1Row> a1;
  std::mt19937_64 rng(4321);
  const int group = L.H / L.KVH;
  const int block = L.cfg.block_size();
  const size_t nopt = a.options.size();
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
    AllocAttentionWorkspaces(T, L.d_lens, &L);
    // HiP per option on the same data: output, its non-finite count, and the keys it attends
    // (sel[o][kvh]: sink, window and the final blocks).
    std::vector<std::vector<uint16_t>> out_hip(nopt);
    std::vector<int64_t> bad(nopt);
    std::vector<std::vector<std::vector<char>>> sel(nopt);
    std::vector<int32_t> blocks(L.KVH * nblk), counts(L.KVH);
    for (size_t o = 0; o < nopt; ++o) {
      UseConfig(ConfigFor(a.options[o]), &L);
      BENCH_CUDA(cudaMemsetAsync(L.out, 0xff, L.q_elems() * 2, stream));
      BENCH_OK(kernels::HipDecodeMaskGpu(MaskParams(L, T, 0, L.d_lens, 0), stream));
      BENCH_OK(kernels::BsaDecodeAttentionGpu(BsaParams(L, T, 0, L.d_lens), stream));
      bad[o] = CountNonFiniteBf16(L.out, L.q_elems(), stream, &out_hip[o]);
      BENCH_CUDA(
          cudaMemcpy(blocks.data(), L.state[2][0], blocks.size() * 4, cudaMemcpyDeviceToHost));
      BENCH_CUDA(
          cudaMemcpy(counts.data(), L.state[2][1], counts.size() * 4, cudaMemcpyDeviceToHost));
      for (int h = 0; h < L.KVH; ++h) {
        sel[o].push_back(AttendedKeys(L.cfg, T, blocks.data() + h * nblk, counts[h], block));
      }
    }
    std::vector<uint16_t> out_dense(L.q_elems());
    {
      DecodeAttentionGpuParams dp = AttnParams(L, T, 0, L.d_lens);
      dp.workspace = L.dense_ws;
      dp.workspace_bytes = L.dense_ws_bytes;
      BENCH_OK(kernels::DenseDecodeAttentionGpu(dp, stream));
      BENCH_CUDA(cudaStreamSynchronize(stream));
      BENCH_CUDA(cudaMemcpy(out_dense.data(), L.out, L.q_elems() * 2, cudaMemcpyDeviceToHost));
    }
    std::vector<uint16_t> kh(int64_t{T} * row_elems), vh(int64_t{T} * row_elems);
    BENCH_CUDA(cudaMemcpy(kh.data(), L.k, kh.size() * 2, cudaMemcpyDeviceToHost));
    BENCH_CUDA(cudaMemcpy(vh.data(), L.v, vh.size() * 2, cudaMemcpyDeviceToHost));

    // Needle recall per option; the oracle attends sink + window + the blocks of the needles.
    std::vector<double> recall_num(nopt, 0.0);
    double recall_den = 0;
    std::vector<std::vector<int32_t>> oracle_pos(L.KVH);
    // Softmax mass sets per KV head: the needles, then each option's attended keys.
    std::vector<std::vector<const std::vector<char>*>> sets(L.KVH);
    for (int h = 0; h < L.KVH; ++h) {
      std::vector<char> in = AttendedKeys(L.cfg, T, nullptr, 0, block);
      sets[h].push_back(&needle[h]);
      for (size_t o = 0; o < nopt; ++o) sets[h].push_back(&sel[o][h]);
      for (int t = 0; t < T; ++t) {
        if (needle[h][t]) {
          recall_den += 1;
          for (size_t o = 0; o < nopt; ++o) recall_num[o] += sel[o][h][t];
          const int b0 = L.cfg.n_sink + (t - L.cfg.n_sink) / block * block;
          for (int u = b0; u < std::min(T, b0 + block); ++u) in[u] = 1;
        }
      }
      for (int t = 0; t < T; ++t) {
        if (in[t]) oracle_pos[h].push_back(t);
      }
    }
    // Host fp64 references, one thread per query head.
    std::vector<double> ref(L.q_elems()), oracle(L.q_elems());
    std::vector<std::vector<double>> mass(L.H, std::vector<double>(1 + nopt));
    std::vector<int32_t> all(T);
    for (int t = 0; t < T; ++t) all[t] = t;
    const double scale = 1.0 / std::sqrt(double(L.D));
    std::vector<std::thread> threads;
    const unsigned nt = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
    std::atomic<int> next{0};
    for (unsigned w = 0; w < nt; ++w) {
      threads.emplace_back([&]() {
        for (int hq = next++; hq < L.H; hq = next++) {
          const int kvh = hq / group;
          AttendRef(qf.data() + hq * L.D, kh, vh, 0, L.KVH, L.D, kvh, all, scale,
                    ref.data() + hq * L.D, sets[kvh], mass[hq].data());
          AttendRef(qf.data() + hq * L.D, kh, vh, 0, L.KVH, L.D, kvh, oracle_pos[kvh], scale,
                    oracle.data() + hq * L.D, {}, nullptr);
        }
      });
    }
    for (std::thread& t : threads) t.join();
    auto to_double = [](const std::vector<uint16_t>& b) {
      std::vector<double> d(b.size());
      for (size_t i = 0; i < b.size(); ++i) d[i] = kernels::Bf16ToFloat(b[i]);
      return d;
    };
    auto mean_mass = [&](size_t i) {
      double m = 0;
      for (const std::vector<double>& hq : mass) m += hq[i] / L.H;
      return m;
    };
    const double err_dense = RelL2(to_double(out_dense), ref), err_oracle = RelL2(oracle, ref);
    for (size_t o = 0; o < nopt; ++o) {
      a1.push_back(A1Row{T, a.options[o].name, RelL2(to_double(out_hip[o]), ref), err_dense,
                         err_oracle, mean_mass(0), mean_mass(1 + o), recall_num[o] / recall_den,
                         bad[o]});
    }
  }

  // Tables.
  std::printf("\n%-8s %-15s %-20s %12s %12s %10s %10s %6s\n", "T", "representatives", "kind",
              "stream_us", "graph_us", "GB/s", "GFLOP/s", "bad");
  for (const Row& r : rows) {
    std::printf("%-8d %-15s %-20s %12.2f %12.2f %10.0f %10.0f %6lld\n", r.T,
                r.option.empty() ? "-" : r.option.c_str(), r.kind.c_str(), r.t.stream_us,
                r.t.graph_us, r.bytes / (r.t.graph_us * 1e3), r.flops / (r.t.graph_us * 1e3),
                static_cast<long long>(r.bad));
  }
  const std::vector<KSummary> ks = Summarize(rows, a.options);
  std::printf("\n%-8s %-15s %12s %12s %12s %14s %14s\n", "T", "representatives", "dense_us",
              "K2_us", "K1_us/step", "dense/K1 (x)", "dense/K2 (x)");
  for (const KSummary& k : ks) {
    std::printf("%-8d %-15s %12.2f %12.2f %12.2f %14.1f %14.2f\n", k.T, k.option.c_str(),
                k.dense_us, k.k2_us, k.k1_us, k.dense_us / k.k1_us, k.dense_us / k.k2_us);
  }
  PrintSrcRows(src_rows);
  std::printf("\nA1 (%d needle spans of 32 keys per KV head, needle key norm %.0f)\n", a.spans,
              a.needle_norm);
  std::printf("%-8s %-15s %10s %14s %12s %12s %14s %14s %6s\n", "T", "representatives", "err_hip",
              "err_dense_gpu", "err_oracle", "needle_mass", "attended_mass", "needle_recall",
              "bad");
  for (const A1Row& r : a1) {
    std::printf("%-8d %-15s %10.4f %14.4f %12.4f %12.4f %14.4f %14.3f %6lld\n", r.T,
                r.option.c_str(), r.err_hip, r.err_dense_gpu, r.err_oracle, r.needle_mass,
                r.attended_mass, r.needle_recall, static_cast<long long>(r.bad));
  }

  if (!a.json.empty()) {
    std::string j = JsonDeviceHead("hip_decode", prop, driver, /*with_l2=*/false);
    j += JsonCommitDate(a.commit);
    j += "  \"shape\": {\"batch\": 1, \"heads\": " + std::to_string(L.H) +
         ", \"kv_heads\": " + std::to_string(L.KVH) + ", \"head_dim\": " + std::to_string(L.D) +
         ", \"dtype\": \"bf16\", \"chunk_sizes\": [256, 32, 8], \"keep\": [32768, 8192, 2048], "
         "\"refresh\": [96, 24, 8], \"pruning_positions\": \"relative\", \"rope\": \"llama3\"},\n";
    j += "  \"representatives\": [";
    for (size_t o = 0; o < nopt; ++o) j += (o ? ", \"" : "\"") + a.options[o].name + "\"";
    j += "],\n";
    j += JsonMethod(a.reps, a.rotations, "median per call (graph replay)");
    j += JsonRows("rows", rows, [](const Row& r, char* buf, size_t n) {
      std::snprintf(buf, n,
                    "{\"T\": %d, \"representatives\": %s, \"kind\": \"%s\", \"bytes\": %.0f, "
                    "\"flops\": %.0f, %s, \"bad_outputs\": %lld}",
                    r.T, r.option.empty() ? "null" : ("\"" + r.option + "\"").c_str(),
                    r.kind.c_str(), r.bytes, r.flops, TimingJson(r.t, r.bytes).c_str(),
                    static_cast<long long>(r.bad));
    });
    j += JsonRows("k_summary", ks, [](const KSummary& k, char* buf, size_t n) {
      std::snprintf(buf, n,
                    "{\"T\": %d, \"representatives\": \"%s\", \"dense_us\": %.3f, \"k2_us\": "
                    "%.3f, \"k1_us_per_step\": %.3f, \"dense_over_k1\": %.2f, "
                    "\"dense_over_k2\": %.3f}",
                    k.T, k.option.c_str(), k.dense_us, k.k2_us, k.k1_us, k.dense_us / k.k1_us,
                    k.dense_us / k.k2_us);
    });
    j += JsonRows("a1", a1, [&](const A1Row& r, char* buf, size_t n) {
      std::snprintf(buf, n,
                    "{\"T\": %d, \"representatives\": \"%s\", \"spans_per_kv_head\": %d, "
                    "\"needle_norm\": %.1f, \"err_hip\": %.5f, \"err_dense_gpu\": %.5f, "
                    "\"err_oracle\": %.5f, \"needle_mass\": %.5f, \"attended_mass\": %.5f, "
                    "\"needle_recall\": %.4f, \"bad_outputs\": %lld}",
                    r.T, r.option.c_str(), a.spans, a.needle_norm, r.err_hip, r.err_dense_gpu,
                    r.err_oracle, r.needle_mass, r.attended_mass, r.needle_recall,
                    static_cast<long long>(r.bad));
    });
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

  Representatives (issue 12 item 2): --representatives A,B,.. runs K2, K1 (with their
      per-kind components) and A1 once per entry, in one process on the same data; each entry
      scores EVERY pruning stage with one option (docs/HIP_NOTES.md 6-7):
        probes        binary descent over probe keys (the default; HipConfig{} unchanged)
        page_bound    upper bound from element-wise min / max boxes (min(64, chunk) keys)
        block_means   mean key of each block of --mean_block_size keys (default 16); named
                      block_means<size> in the output
        block_means8  the same with 8-key means
        exact         the exact max of the probe score over every key of the chunk
      The summaries are computed on the fly, so page_bound, block_means and exact read every
      key of the candidate range at stage 1 (a dense pass per full refresh). Dense decode is
      measured once per T and is the baseline of every option; tables and JSON rows name the
      option ("representatives"; dense rows: null), and "k_summary" holds K1 / K2 and their
      ratios per (T, option). Bytes: keys read x 256 B; FLOPs: scored units (probes, keys,
      means or boxes) x 32 rows x 256 per step. A1 adds the dense softmax mass on the keys HiP
      attends (attended_mass). S1 always scores with probes.

  bench_hip_decode [--json out.json] [--lens 131072,1048576] [--a1_lens 131072,1048576]
                   [--reps 20] [--rotations 8] [--spans 4] [--commit SHA]
                   [--src_lens 1048576|none] [--src_hits 99,90,50]
                   [--representatives probes[,page_bound,block_means,block_means8,exact]]
                   [--mean_block_size 16]
  e.g. bench_hip_decode --representatives probes,block_means,page_bound,exact \
         --lens 131072,1048576 --a1_lens 131072,1048576 --src_lens none
)";

}  // namespace

int main(int argc, char** argv) {
  hipserve::flags::ParseProgramFlagsOrExit(argc, argv, kUsage, __FILE__);
  return hipserve::bench::Main(hipserve::bench::ArgsFromFlags());
}
