// bench_decode_kv: what it measures, how, and every flag are in kUsage at the end of this file
// (printed by --help).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "bench/bench_flags.h"
#include "bench/kernels/bench_check.h"
#include "bench/kernels/bench_timing.h"
#include "bench/kernels/fill_random.h"
#include "bench/kernels/kv_layout.h"
#include "common/flags/flags.h"
#include "kernels/attention_cuda/decode_attention.h"
#include "kernels/hip/hip_params.h"
#include "kernels/hip/rope_table.h"
#include "kernels/hip_cuda/mask_estimation.h"

// Flags: see also kUsage at the end of the file. '-' and '_' are interchangeable in names.
ABSL_FLAG(std::string, json, "", "Write the results as JSON to this file.");
ABSL_FLAG(hipserve::flags::IntList, lens, (hipserve::flags::IntList{{131072, 1048576}}),
          "fp8 section: KV lengths T, each > 0.");
ABSL_FLAG(int, tier_len, 1048576, "tiered section: KV length T, > 0.");
ABSL_FLAG(hipserve::flags::DoubleList, hits, (hipserve::flags::DoubleList{{1.0, 0.9, 0.5, 0.0}}),
          "tiered section: fractions of the tokens in the bank, each in [0, 1].");
ABSL_FLAG(int, k5_batch, 32, "K5 section: sequences per step, >= 1.");
ABSL_FLAG(int, k5_len, 131072, "K5 section: KV length of each sequence, > 0.");
ABSL_FLAG(int, reps, 20, "Timed graph replays of each cycle (the median is reported), >= 10.");
ABSL_FLAG(int, rotations, 8,
          "Input sets per timed cycle (query sets, KV offsets, block lists), >= 1.");
ABSL_FLAG(std::vector<std::string>, skip, {},
          "Sections not to run, comma-separated: fp8, tiered, k5.");
ABSL_FLAG(std::string, commit, "unknown", "Commit recorded in the JSON.");

namespace hipserve::bench {
namespace {

using kernels::BsaDecodeGpuParams;
using kernels::DecodeAttentionGpuParams;
using kernels::HipDecodeMaskGpuParams;
using kernels::KvDtype;

constexpr int kH = 32, kKvh = 8, kD = 128;

struct Args {
  std::string json;
  std::vector<int> lens;
  int tier_len = 0;
  std::vector<double> hits;
  int k5_batch = 0, k5_len = 0;
  int reps = 0, rotations = 0;
  std::vector<std::string> skip;
  std::string commit;

  bool Skipped(const std::string& section) const {
    return std::find(skip.begin(), skip.end(), section) != skip.end();
  }
};

// The flags, range-checked (exits 2 naming the flag on a bad value).
Args ArgsFromFlags() {
  Args a;
  a.json = absl::GetFlag(FLAGS_json);
  a.lens = absl::GetFlag(FLAGS_lens).values;
  a.tier_len = absl::GetFlag(FLAGS_tier_len);
  a.hits = absl::GetFlag(FLAGS_hits).values;
  a.k5_batch = absl::GetFlag(FLAGS_k5_batch);
  a.k5_len = absl::GetFlag(FLAGS_k5_len);
  a.reps = absl::GetFlag(FLAGS_reps);
  a.rotations = absl::GetFlag(FLAGS_rotations);
  a.skip = absl::GetFlag(FLAGS_skip);
  a.commit = absl::GetFlag(FLAGS_commit);
  using flags::CheckFlag;
  ExitOnBadFlags(
      "bench_decode_kv",
      {CheckEach(
           a.lens, [](int t) { return t > 0; }, "lens", "> 0", /*allow_empty=*/true),
       CheckFlag(a.tier_len > 0, "tier_len", "> 0", a.tier_len),
       CheckEach(
           a.hits, [](double h) { return h >= 0 && h <= 1; }, "hits", "in [0, 1]",
           /*allow_empty=*/true),
       CheckFlag(a.k5_batch >= 1, "k5_batch", ">= 1", a.k5_batch),
       CheckFlag(a.k5_len > 0, "k5_len", "> 0", a.k5_len),
       CheckFlag(a.reps >= 10, "reps", ">= 10 (the median needs enough samples)", a.reps),
       CheckFlag(a.rotations >= 1, "rotations", ">= 1", a.rotations),
       CheckEach(
           a.skip, [](const std::string& s) { return s == "fp8" || s == "tiered" || s == "k5"; },
           "skip", "fp8, tiered or k5", /*allow_empty=*/true)});
  return a;
}

struct Row {
  Row(std::string sec, std::string k, int t_len, int b = 1)
      : section(std::move(sec)), kind(std::move(k)), T(t_len), batch(b) {}
  std::string section, kind;
  int T = 0, batch = 1;
  double bytes = 0;  // HBM + host bytes the call must read
  double extra = 0;  // section-specific: hit rate (tiered), tokens/s (K5)
  Timing t;
  int64_t bad = 0;
};

template <typename T>
T* DeviceAlloc(size_t count) {
  void* p = nullptr;
  BENCH_CUDA(cudaMalloc(&p, std::max<size_t>(count * sizeof(T), 16)));
  return static_cast<T*>(p);
}

template <typename T>
T* Upload(const std::vector<T>& h) {
  T* d = DeviceAlloc<T>(h.size());
  BENCH_CUDA(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

// Llama 3.1 RoPE rows [0, n) in the device layout (HipRopeRows).
float* RopeRows(int n) {
  kernels::RopeConfig rc;
  rc.theta = 500000.f;
  rc.scaling = kernels::RopeScaling::kLlama3;
  rc.factor = 8.f;
  absl::StatusOr<kernels::RopeTable> table = kernels::RopeTable::Create(rc, kD, n);
  BENCH_OK(table.status());
  return Upload(kernels::HipRopeRows(*table, n));
}

// `lists` sorted block lists of `nblk` distinct blocks among the candidates [n_sink, T -
// n_window) (in 8-key units), one per (rotation, sequence, KV head).
std::vector<int32_t> RandomBlocks(int64_t lists, int nblk, int T, std::mt19937_64* rng) {
  const int lo = (256 + 7) / 8, hi = std::max(lo, (T - 1024) / 8);
  const int cnt = std::min(nblk, hi - lo);
  std::vector<int32_t> blocks(lists * nblk, -1);
  std::vector<int> cand(hi - lo);
  for (int64_t l = 0; l < lists; ++l) {
    for (int i = 0; i < static_cast<int>(cand.size()); ++i) cand[i] = lo + i;
    for (int i = 0; i < cnt; ++i) std::swap(cand[i], cand[i + (*rng)() % (cand.size() - i)]);
    std::sort(cand.begin(), cand.begin() + cnt);
    for (int i = 0; i < cnt; ++i) blocks[l * nblk + i] = cand[i] * 8;
  }
  return blocks;
}

DecodeAttentionGpuParams BaseParams(int batch, int T, void* out) {
  DecodeAttentionGpuParams p;
  p.out = out;
  p.batch = batch;
  p.num_heads = kH;
  p.num_kv_heads = kKvh;
  p.head_dim = kD;
  p.max_kv_len = T;
  p.scale = 1.f / std::sqrt(static_cast<float>(kD));
  return p;
}

void* Workspace(absl::StatusOr<size_t> ws, size_t* bytes) {
  BENCH_OK(ws.status());
  *bytes = *ws;
  return *ws > 0 ? DeviceAlloc<char>(*ws) : nullptr;
}

constexpr int kNblk = 256, kSink = 256, kWindow = 1024;

// fp8 section: bf16 vs fp8 K/V, dense and BSA (keys as stored and with in-kernel RoPE).
void Fp8Section(const Args& a, cudaStream_t st, std::vector<Row>* rows) {
  const int R = a.rotations;
  const int64_t pad = 2048, row_elems = int64_t{kKvh} * kD, q_elems = int64_t{kH} * kD;
  std::mt19937_64 rng(1234);
  for (int T : a.lens) {
    const int64_t kv_rows = T + (R - 1) * pad;
    uint16_t* k16 = DeviceAlloc<uint16_t>(kv_rows * row_elems);
    uint16_t* v16 = DeviceAlloc<uint16_t>(kv_rows * row_elems);
    uint8_t* k8 = DeviceAlloc<uint8_t>(kv_rows * row_elems);
    uint8_t* v8 = DeviceAlloc<uint8_t>(kv_rows * row_elems);
    uint16_t* q = DeviceAlloc<uint16_t>(R * q_elems);
    uint16_t* out = DeviceAlloc<uint16_t>(q_elems);
    BENCH_CUDA(FillRandomBf16(k16, kv_rows * row_elems, 11 + T, 1.f, st));
    BENCH_CUDA(FillRandomBf16(v16, kv_rows * row_elems, 22 + T, 1.f, st));
    BENCH_CUDA(FillRandomBf16(q, R * q_elems, 33, 1.f, st));
    BENCH_CUDA(Bf16ToFp8Device(k8, k16, kv_rows * row_elems, st));
    BENCH_CUDA(Bf16ToFp8Device(v8, v16, kv_rows * row_elems, st));
    std::vector<int64_t> starts(R);
    for (int r = 0; r < R; ++r) starts[r] = r * pad;
    int64_t* d_starts = Upload(starts);
    int32_t* d_len = Upload(std::vector<int32_t>{T});
    int32_t* d_blocks = Upload(RandomBlocks(int64_t{R} * kKvh, kNblk, T, &rng));
    const int cnt = std::min(kNblk, std::max(0, (T - 1024) / 8 - 32));
    int32_t* d_counts = Upload(std::vector<int32_t>(kKvh, cnt));
    float* rope = RopeRows(T);
    const double bsa_keys = kSink + 8.0 * cnt + kWindow;

    for (KvDtype dt : {KvDtype::kBf16, KvDtype::kFp8E5m2}) {
      const bool f8 = dt == KvDtype::kFp8E5m2;
      const int elem = f8 ? 1 : 2;
      DecodeAttentionGpuParams p = BaseParams(1, T, out);
      p.k = f8 ? static_cast<const void*>(k8) : k16;
      p.v = f8 ? static_cast<const void*>(v8) : v16;
      p.kv_dtype = dt;
      p.kv_len = d_len;
      {
        void* ws = Workspace(kernels::DenseDecodeAttentionWorkspaceBytes(p), &p.workspace_bytes);
        p.workspace = ws;
        auto run = [&](int r, cudaStream_t s) {
          DecodeAttentionGpuParams pr = p;
          pr.q = q + r * q_elems;
          pr.kv_start = d_starts + r;
          BENCH_OK(kernels::DenseDecodeAttentionGpu(pr, s));
        };
        Row row("fp8", std::string("dense_") + kernels::KvDtypeName(dt), T);
        row.bytes = double(T) * row_elems * elem * 2;
        row.t = TimeCycle(a.reps, R, st, run);
        row.bad = CheckOutputs(out, q_elems, st, run);
        rows->push_back(row);
        if (ws) BENCH_CUDA(cudaFree(ws));
      }
      for (bool with_rope : {false, true}) {
        BsaDecodeGpuParams bp;
        bp.attn = p;
        bp.attn.workspace = nullptr;
        bp.attn.workspace_bytes = 0;
        bp.block_count = d_counts;
        bp.max_blocks = kNblk;
        bp.n_sink = kSink;
        bp.n_window = kWindow;
        if (with_rope) {
          bp.rope = rope;
          bp.rope_positions = T;
          bp.extend = true;
        }
        void* ws =
            Workspace(kernels::BsaDecodeAttentionWorkspaceBytes(bp), &bp.attn.workspace_bytes);
        bp.attn.workspace = ws;
        auto run = [&](int r, cudaStream_t s) {
          BsaDecodeGpuParams pr = bp;
          pr.attn.q = q + r * q_elems;
          pr.attn.kv_start = d_starts + r;
          pr.block_starts = d_blocks + int64_t{r} * kKvh * kNblk;
          BENCH_OK(kernels::BsaDecodeAttentionGpu(pr, s));
        };
        Row row("fp8", std::string(with_rope ? "bsa_rope_" : "bsa_") + kernels::KvDtypeName(dt), T);
        row.bytes = bsa_keys * row_elems * elem * 2;
        row.t = TimeCycle(a.reps, R, st, run);
        row.bad = CheckOutputs(out, q_elems, st, run);
        rows->push_back(row);
        if (ws) BENCH_CUDA(cudaFree(ws));
      }
    }
    for (void* ptr :
         {static_cast<void*>(k16), static_cast<void*>(v16), static_cast<void*>(k8),
          static_cast<void*>(v8), static_cast<void*>(q), static_cast<void*>(out),
          static_cast<void*>(d_starts), static_cast<void*>(d_len), static_cast<void*>(d_blocks),
          static_cast<void*>(d_counts), static_cast<void*>(rope)}) {
      BENCH_CUDA(cudaFree(ptr));
    }
  }
}

// Tiered section: BSA + RoPE through a slot table; misses from pinned mapped host pages.
void TieredSection(const Args& a, cudaStream_t st, std::vector<Row>* rows) {
  const int T = a.tier_len;
  const int R = std::max(a.rotations, 32);  // distinct block lists: misses not L2-resident
  const int64_t row_elems = int64_t{kKvh} * kD, q_elems = int64_t{kH} * kD;
  const int64_t page_stride = (T + 63) / 64, page_bytes = 2 * 64 * kD;
  uint16_t* tmp = DeviceAlloc<uint16_t>(int64_t{T} * row_elems);
  uint8_t* k8 = DeviceAlloc<uint8_t>(int64_t{T} * row_elems);
  uint8_t* v8 = DeviceAlloc<uint8_t>(int64_t{T} * row_elems);
  BENCH_CUDA(FillRandomBf16(tmp, int64_t{T} * row_elems, 111, 1.f, st));
  BENCH_CUDA(Bf16ToFp8Device(k8, tmp, int64_t{T} * row_elems, st));
  BENCH_CUDA(FillRandomBf16(tmp, int64_t{T} * row_elems, 222, 1.f, st));
  BENCH_CUDA(Bf16ToFp8Device(v8, tmp, int64_t{T} * row_elems, st));
  BENCH_CUDA(cudaStreamSynchronize(st));
  BENCH_CUDA(cudaFree(tmp));
  // Cold tier: pack on the device, copy into pinned mapped host memory.
  const int64_t cold_bytes = kKvh * page_stride * page_bytes;
  uint8_t* staging = DeviceAlloc<uint8_t>(cold_bytes);
  BENCH_CUDA(PackColdPages(staging, k8, v8, T, kKvh, kD, page_stride, st));
  void* cold_host = nullptr;
  BENCH_CUDA(cudaHostAlloc(&cold_host, cold_bytes, cudaHostAllocMapped));
  BENCH_CUDA(cudaMemcpyAsync(cold_host, staging, cold_bytes, cudaMemcpyDeviceToHost, st));
  BENCH_CUDA(cudaStreamSynchronize(st));
  BENCH_CUDA(cudaFree(staging));
  void* cold_dev = nullptr;
  BENCH_CUDA(cudaHostGetDevicePointer(&cold_dev, cold_host, 0));
  std::vector<uint64_t> pages(kKvh * page_stride);
  for (int64_t i = 0; i < kKvh * page_stride; ++i) {
    pages[i] = reinterpret_cast<uint64_t>(cold_dev) + i * page_bytes;
  }
  uint64_t* d_pages = Upload(pages);
  uint8_t* bank_k = DeviceAlloc<uint8_t>(int64_t{T} * row_elems);
  uint8_t* bank_v = DeviceAlloc<uint8_t>(int64_t{T} * row_elems);
  int32_t* d_slots = DeviceAlloc<int32_t>(int64_t{kKvh} * T);

  std::mt19937_64 rng(99);
  uint16_t* q = DeviceAlloc<uint16_t>(R * q_elems);
  uint16_t* out = DeviceAlloc<uint16_t>(q_elems);
  BENCH_CUDA(FillRandomBf16(q, R * q_elems, 44, 1.f, st));
  int32_t* d_len = Upload(std::vector<int32_t>{T});
  int32_t* d_blocks = Upload(RandomBlocks(int64_t{R} * kKvh, kNblk, T, &rng));
  const int cnt = std::min(kNblk, std::max(0, (T - 1024) / 8 - 32));
  int32_t* d_counts = Upload(std::vector<int32_t>(kKvh, cnt));
  int64_t* d_start0 = Upload(std::vector<int64_t>{0});
  float* rope = RopeRows(T);
  const double keys = kSink + 8.0 * cnt + kWindow;

  BsaDecodeGpuParams bp;
  bp.attn = BaseParams(1, T, out);
  bp.attn.k = k8;
  bp.attn.v = v8;
  bp.attn.kv_dtype = KvDtype::kFp8E5m2;
  bp.attn.kv_len = d_len;
  bp.attn.kv_start = d_start0;
  bp.block_count = d_counts;
  bp.max_blocks = kNblk;
  bp.n_sink = kSink;
  bp.n_window = kWindow;
  bp.rope = rope;
  bp.rope_positions = T;
  void* ws = Workspace(kernels::BsaDecodeAttentionWorkspaceBytes(bp), &bp.attn.workspace_bytes);
  bp.attn.workspace = ws;
  auto run_with = [&](const BsaDecodeGpuParams& base) {
    return [&, base](int r, cudaStream_t s) {
      BsaDecodeGpuParams pr = base;
      pr.attn.q = q + (r % R) * q_elems;
      pr.block_starts = d_blocks + int64_t{r % R} * kKvh * kNblk;
      BENCH_OK(kernels::BsaDecodeAttentionGpu(pr, s));
    };
  };
  std::vector<uint16_t> hot_bits;
  {
    auto run = run_with(bp);
    Row row("tiered", "bsa_rope_fp8_all_hot", T);
    row.bytes = keys * row_elems * 2;
    row.extra = 1.0;
    row.t = TimeCycle(a.reps, R, st, run);
    row.bad = CheckOutputs(out, q_elems, st, run, &hot_bits);
    rows->push_back(row);
  }
  for (double hit : a.hits) {
    std::vector<int32_t> slots(int64_t{kKvh} * T);
    int64_t hits = 0;
    for (int h = 0; h < kKvh; ++h) {
      std::vector<int32_t> perm(T);
      for (int t = 0; t < T; ++t) perm[t] = h * T + t;
      for (int t = T - 1; t > 0; --t) std::swap(perm[t], perm[rng() % (t + 1)]);
      for (int t = 0; t < T; ++t) {
        const bool in = hit >= 1.0 || (rng() % 1000000) < hit * 1000000;
        slots[int64_t{h} * T + t] = in ? perm[t] : -1;
        hits += in;
      }
    }
    BENCH_CUDA(cudaMemcpy(d_slots, slots.data(), slots.size() * 4, cudaMemcpyHostToDevice));
    BENCH_CUDA(ScatterToBank(bank_k, bank_v, k8, v8, d_slots, T, kKvh, kD, T, st));
    BsaDecodeGpuParams tp = bp;
    tp.tiered.bank_k = bank_k;
    tp.tiered.bank_v = bank_v;
    tp.tiered.slot_table = d_slots;
    tp.tiered.slot_stride = T;
    tp.tiered.cold_pages = d_pages;
    tp.tiered.page_stride = page_stride;
    auto run = run_with(tp);
    char kind[64];
    std::snprintf(kind, sizeof(kind), "bsa_rope_fp8_tiered_hit%.0f", hit * 100);
    Row row("tiered", kind, T);
    row.bytes = keys * row_elems * 2;
    row.extra = double(hits) / (double(kKvh) * T);
    row.t = TimeCycle(a.reps, R, st, run);
    std::vector<uint16_t> bits;
    row.bad = CheckOutputs(out, q_elems, st, run, &bits);
    for (int64_t i = 0; i < q_elems; ++i) row.bad += bits[i] != hot_bits[i];  // must be identical
    rows->push_back(row);
  }
  for (void* ptr :
       {static_cast<void*>(k8), static_cast<void*>(v8), static_cast<void*>(d_pages),
        static_cast<void*>(bank_k), static_cast<void*>(bank_v), static_cast<void*>(d_slots),
        static_cast<void*>(q), static_cast<void*>(out), static_cast<void*>(d_len),
        static_cast<void*>(d_blocks), static_cast<void*>(d_counts), static_cast<void*>(d_start0),
        static_cast<void*>(rope), ws}) {
    if (ptr) BENCH_CUDA(cudaFree(ptr));
  }
  BENCH_CUDA(cudaFreeHost(cold_host));
}

// K5: batch B at T each, HiP over the (96, 24, 8) cycle vs dense.
void K5Section(const Args& a, cudaStream_t st, std::vector<Row>* rows) {
  const int B = a.k5_batch, T = a.k5_len, R = 4;
  const int64_t row_elems = int64_t{kKvh} * kD, q_elems = int64_t{B} * kH * kD;
  uint16_t* k = DeviceAlloc<uint16_t>(int64_t{B} * T * row_elems);
  uint16_t* v = DeviceAlloc<uint16_t>(int64_t{B} * T * row_elems);
  uint16_t* q = DeviceAlloc<uint16_t>(R * q_elems);
  uint16_t* out = DeviceAlloc<uint16_t>(q_elems);
  BENCH_CUDA(FillRandomBf16(k, int64_t{B} * T * row_elems, 55, 1.f, st));
  BENCH_CUDA(FillRandomBf16(v, int64_t{B} * T * row_elems, 66, 1.f, st));
  BENCH_CUDA(FillRandomBf16(q, R * q_elems, 77, 1.f, st));
  std::vector<int64_t> starts(B);
  for (int b = 0; b < B; ++b) starts[b] = int64_t{b} * T;
  int64_t* d_starts = Upload(starts);
  std::vector<int32_t> lens(96 * B);  // step i: every sequence at T - 95 + i tokens
  for (int i = 0; i < 96; ++i) std::fill_n(lens.begin() + i * B, B, T - 95 + i);
  int32_t* d_lens = Upload(lens);
  const int32_t* len_T = d_lens + 95 * B;

  kernels::HipConfig cfg;  // "3K" preset, (96, 24, 8), relative pruning positions
  const kernels::PruningSpec spec = kernels::PruningSpecForLayer(cfg, 8);
  HipDecodeMaskGpuParams mp;
  mp.k = k;
  mp.kv_start = d_starts;
  mp.batch = B;
  mp.num_heads = kH;
  mp.num_kv_heads = kKvh;
  mp.head_dim = kD;
  mp.max_kv_len = T;
  mp.n_sink = cfg.n_sink;
  mp.spec = &spec;
  mp.q = q;
  mp.kv_len = len_T;
  absl::StatusOr<int> npos = kernels::HipDecodeMaskRopePositions(mp);
  BENCH_OK(npos.status());
  const int rope_n = std::max(*npos, T);
  float* rope = RopeRows(rope_n);
  mp.rope = rope;
  mp.rope_positions = rope_n;
  for (int s = 0; s < spec.num_stages(); ++s) {
    mp.state.starts[s] = DeviceAlloc<int32_t>(int64_t{B} * kKvh * spec.keep_chunks(s));
    mp.state.count[s] = DeviceAlloc<int32_t>(int64_t{B} * kKvh);
    mp.state.range_end[s] = DeviceAlloc<int32_t>(int64_t{B} * kKvh);
  }
  void* mask_ws = Workspace(kernels::HipDecodeMaskWorkspaceBytes(mp), &mp.workspace_bytes);
  mp.workspace = mask_ws;
  const int last = spec.num_stages() - 1;

  BsaDecodeGpuParams bp;
  bp.attn = BaseParams(B, T, out);
  bp.attn.k = k;
  bp.attn.v = v;
  bp.attn.kv_start = d_starts;
  bp.attn.kv_len = len_T;
  bp.block_starts = mp.state.starts[last];
  bp.block_count = mp.state.count[last];
  bp.max_blocks = spec.keep_chunks(last);
  bp.n_sink = cfg.n_sink;
  bp.n_window = cfg.n_window;
  bp.rope = rope;
  bp.rope_positions = rope_n;
  bp.extend = true;
  void* bsa_ws = Workspace(kernels::BsaDecodeAttentionWorkspaceBytes(bp), &bp.attn.workspace_bytes);
  bp.attn.workspace = bsa_ws;
  DecodeAttentionGpuParams dp = BaseParams(B, T, out);
  dp.k = k;
  dp.v = v;
  dp.kv_start = d_starts;
  dp.kv_len = len_T;
  void* dense_ws = Workspace(kernels::DenseDecodeAttentionWorkspaceBytes(dp), &dp.workspace_bytes);
  dp.workspace = dense_ws;

  auto mask = [&](int r, const int32_t* len, int start, cudaStream_t s) {
    HipDecodeMaskGpuParams m = mp;
    m.q = q + (r % R) * q_elems;
    m.kv_len = len;
    m.start_stage = start;
    BENCH_OK(kernels::HipDecodeMaskGpu(m, s));
  };
  auto bsa = [&](int r, const int32_t* len, cudaStream_t s) {
    BsaDecodeGpuParams b = bp;
    b.attn.q = q + (r % R) * q_elems;
    b.attn.kv_len = len;
    BENCH_OK(kernels::BsaDecodeAttentionGpu(b, s));
  };
  auto dense = [&](int r, cudaStream_t s) {
    DecodeAttentionGpuParams d = dp;
    d.q = q + (r % R) * q_elems;
    BENCH_OK(kernels::DenseDecodeAttentionGpu(d, s));
  };
  const double kv_token_bytes = double(row_elems) * 2 * 2;  // K + V bf16, all KV heads
  const double bsa_keys = cfg.n_sink + 8.0 * spec.keep_chunks(last) + cfg.n_window;
  Row drow("k5", "dense", T, B);
  drow.bytes = double(B) * T * kv_token_bytes;
  drow.t = TimeCycle(a.reps, R, st, dense);
  drow.bad = CheckOutputs(out, q_elems, st, dense);
  drow.extra = B / (drow.t.graph_us * 1e-6);
  rows->push_back(drow);
  mask(0, len_T, 0, st);
  Row full("k5", "mask_all_stages", T, B);
  full.t = TimeCycle(a.reps, R, st, [&](int r, cudaStream_t s) { mask(r, len_T, 0, s); });
  rows->push_back(full);
  Row brow("k5", "bsa_rope_only", T, B);
  brow.bytes = double(B) * bsa_keys * kv_token_bytes;
  brow.t = TimeCycle(a.reps, R, st, [&](int r, cudaStream_t s) { bsa(r, len_T, s); });
  brow.bad = CheckOutputs(out, q_elems, st, [&](int r, cudaStream_t s) { bsa(r, len_T, s); });
  rows->push_back(brow);
  // The BSA variants behind the automatic choice (keys per step, RoPE, partitions).
  struct Variant {
    const char* kind;
    int ku, splits;
    bool rope;
  };
  for (const Variant& vr :
       {Variant{"bsa_rope_only_ku8", 8, 0, true}, Variant{"bsa_rope_only_ku4", 4, 0, true},
        Variant{"bsa_norope_only", 0, 0, false}, Variant{"bsa_rope_only_splits1", 0, 1, true}}) {
    BsaDecodeGpuParams vp = bp;
    vp.keys_per_step = vr.ku;
    vp.attn.num_splits = vr.splits;
    if (!vr.rope) vp.rope = nullptr;
    size_t ws_bytes = 0;
    void* vws = Workspace(kernels::BsaDecodeAttentionWorkspaceBytes(vp), &ws_bytes);
    vp.attn.workspace = vws;
    vp.attn.workspace_bytes = ws_bytes;
    auto run = [&](int r, cudaStream_t s) {
      BsaDecodeGpuParams x = vp;
      x.attn.q = q + (r % R) * q_elems;
      BENCH_OK(kernels::BsaDecodeAttentionGpu(x, s));
    };
    Row vrow("k5", vr.kind, T, B);
    vrow.bytes = brow.bytes;
    vrow.t = TimeCycle(a.reps, R, st, run);
    vrow.bad = CheckOutputs(out, q_elems, st, run);
    rows->push_back(vrow);
    if (vws) BENCH_CUDA(cudaFree(vws));
  }
  Row cyc("k5", "hip_cycle_per_step", T, B);
  auto step = [&](int i, cudaStream_t s) {
    const int stage = kernels::DecodeRefreshStage(cfg, i);
    if (stage >= 0) mask(i, d_lens + i * B, stage, s);
    bsa(i, d_lens + i * B, s);
  };
  cyc.bytes = brow.bytes;  // + the refresh steps' probes (see mask_all_stages)
  cyc.t = TimeCycle(a.reps, 96, st, step);
  cyc.bad = CheckOutputs(out, q_elems, st, [&](int, cudaStream_t s) {
    mask(0, len_T, 0, s);
    bsa(0, len_T, s);
  });
  cyc.extra = B / (cyc.t.graph_us * 1e-6);
  rows->push_back(cyc);
  for (int s = 0; s < spec.num_stages(); ++s) {
    BENCH_CUDA(cudaFree(mp.state.starts[s]));
    BENCH_CUDA(cudaFree(mp.state.count[s]));
    BENCH_CUDA(cudaFree(mp.state.range_end[s]));
  }
  for (void* ptr :
       {static_cast<void*>(k), static_cast<void*>(v), static_cast<void*>(q),
        static_cast<void*>(out), static_cast<void*>(d_starts), static_cast<void*>(d_lens),
        static_cast<void*>(rope), mask_ws, bsa_ws, dense_ws}) {
    if (ptr) BENCH_CUDA(cudaFree(ptr));
  }
}

int Main(const Args& a) {
  const auto [prop, driver] = QueryDevice(0);
  cudaStream_t st = NonBlockingStream();
  std::printf("device %s, %d SMs, L2 %.0f MB, driver %d\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize / 1e6, driver);
  std::vector<Row> rows;
  if (!a.Skipped("fp8")) Fp8Section(a, st, &rows);
  if (!a.Skipped("tiered")) TieredSection(a, st, &rows);
  if (!a.Skipped("k5")) K5Section(a, st, &rows);

  std::printf("\n%-7s %-30s %8s %5s %11s %11s %9s %12s %5s\n", "section", "kind", "T", "batch",
              "stream_us", "graph_us", "GB/s", "extra", "bad");
  for (const Row& r : rows) {
    std::printf("%-7s %-30s %8d %5d %11.2f %11.2f %9.0f %12.4g %5lld\n", r.section.c_str(),
                r.kind.c_str(), r.T, r.batch, r.t.stream_us, r.t.graph_us,
                r.bytes / (r.t.graph_us * 1e3), r.extra, static_cast<long long>(r.bad));
  }
  auto find = [&](const std::string& sec, const std::string& kind, int T) -> const Row* {
    for (const Row& r : rows) {
      if (r.section == sec && r.kind == kind && r.T == T) return &r;
    }
    return nullptr;
  };
  std::printf("\nratios (graph times)\n");
  for (int T : a.lens) {
    const Row *d16 = find("fp8", "dense_bf16", T), *d8 = find("fp8", "dense_fp8_e5m2", T);
    const Row *b16 = find("fp8", "bsa_rope_bf16", T), *b8 = find("fp8", "bsa_rope_fp8_e5m2", T);
    if (d16 && d8)
      std::printf("T=%d dense bf16/fp8 time %.2fx\n", T, d16->t.graph_us / d8->t.graph_us);
    if (b16 && b8)
      std::printf("T=%d bsa_rope bf16/fp8 time %.2fx\n", T, b16->t.graph_us / b8->t.graph_us);
  }
  const Row *k5d = find("k5", "dense", a.k5_len), *k5h = find("k5", "hip_cycle_per_step", a.k5_len);
  if (k5d && k5h) {
    std::printf("K5 batch %d x %d: dense %.0f tok/s, HiP %.0f tok/s: %.1fx (goal >= 10x)\n",
                a.k5_batch, a.k5_len, k5d->extra, k5h->extra, k5h->extra / k5d->extra);
  }

  if (!a.json.empty()) {
    std::string j = JsonDeviceHead("decode_kv", prop, driver, /*with_l2=*/true);
    j += JsonCommitDate(a.commit);
    j += "  \"shape\": {\"heads\": 32, \"kv_heads\": 8, \"head_dim\": 128, \"q_dtype\": \"bf16\", "
         "\"k_keys\": 2048, \"n_sink\": 256, \"n_window\": 1024, \"rope\": \"llama3\"},\n";
    j += JsonMethod(a.reps, a.rotations, "median per call (graph replay)") + "  \"rows\": [\n";
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      char buf[640];
      std::snprintf(buf, sizeof(buf),
                    "    {\"section\": \"%s\", \"kind\": \"%s\", \"T\": %d, \"batch\": %d, "
                    "\"bytes\": %.0f, %s, \"extra\": %.6g, \"bad_outputs\": %lld}%s\n",
                    r.section.c_str(), r.kind.c_str(), r.T, r.batch, r.bytes,
                    TimingJson(r.t, r.bytes).c_str(), r.extra, static_cast<long long>(r.bad),
                    i + 1 < rows.size() ? "," : "");
      j += buf;
    }
    j += "  ],\n  \"extra_meaning\": {\"tiered\": \"fraction of tokens in the bank\", \"k5\": "
         "\"aggregate tokens/s\"}\n}\n";
    if (!WriteTextFile(a.json, j)) return 1;
  }
  int64_t bad = 0;
  for (const Row& r : rows) bad += r.bad;
  return bad == 0 ? 0 : 3;
}

}  // namespace
}  // namespace hipserve::bench

namespace {

constexpr char kUsage[] =
    R"(bench_decode_kv: decode attention reading the KV the way the serving system stores it, for the
"8B layer" (32 query heads, 8 KV heads, head dim 128, bf16 queries):
  fp8:    dense split-K decode and BSA decode (k = 2048 keys in 8-key blocks + 256 sink + 1024
          window, mask reused), K/V bf16 vs fp8 e5m2, batch 1, T = --lens; BSA also with
          in-kernel RoPE (un-rotated K, extend on: the serving configuration).
  tiered: BSA with RoPE from a fp8 bank + fp8 cold pages in pinned mapped host memory, T =
          --tier_len, with --hits of the tokens in the bank (misses read over PCIe), against
          the all-hot fp8 BSA of the same call; outputs must be bit-identical to it.
  K5:     batch --k5_batch at --k5_len each: HiP (GPU mask estimation on the (96, 24, 8)
          refresh cycle + BSA with RoPE), one 96-step CUDA graph / 96, vs dense split-K decode
          of the same batch; aggregate tokens/s.
Method (shared/BENCHMARKS.md): CUDA events, warm-up, median of --reps graph replays; inputs
rotate over query sets / KV offsets / block lists so the working set is several times L2;
outputs poisoned (NaN) and checked; bytes counted and GB/s printed.

  bench_decode_kv [--json out.json] [--lens 131072,1048576] [--tier_len 1048576]
                  [--hits 1,0.9,0.5,0] [--k5_batch 32] [--k5_len 131072] [--reps 20]
                  [--rotations 8] [--skip fp8,tiered,k5] [--commit SHA]
)";

}  // namespace

int main(int argc, char** argv) {
  hipserve::flags::ParseProgramFlagsOrExit(argc, argv, kUsage, __FILE__);
  return hipserve::bench::Main(hipserve::bench::ArgsFromFlags());
}
