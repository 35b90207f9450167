// See hip_prefill_tiered_rows.h.
#include "bench/hip/hip_prefill_tiered_rows.h"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "bench/kernels/bench_check.h"
#include "bench/kernels/bench_timing.h"

namespace hipserve::bench {
namespace {

uint64_t SplitMix(uint64_t* s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

std::vector<TieredBsaRow> TimeTieredBsa(const kernels::BsaPrefillGpuParams& hot, const void* k8,
                                        const void* v8, const std::vector<double>& hit_rates,
                                        int reps, cudaStream_t s) {
  const int T = hot.q_offset + hot.num_q, H = hot.num_kv_heads, D = hot.head_dim;
  const int64_t n = int64_t{T} * H * D;
  const int64_t page_stride = (T + kernels::kKvPageTokens - 1) / kernels::kKvPageTokens;
  const int64_t page_bytes = int64_t{2} * kernels::kKvPageTokens * D;
  // Cold tier: page (h, p) at (h * page_stride + p) * page_bytes, fp8 K rows then V rows.
  std::vector<uint8_t> hk(n), hv(n);
  BENCH_CUDA(cudaMemcpy(hk.data(), k8, n, cudaMemcpyDeviceToHost));
  BENCH_CUDA(cudaMemcpy(hv.data(), v8, n, cudaMemcpyDeviceToHost));
  void *cold_host = nullptr, *cold_dev = nullptr;
  BENCH_CUDA(cudaHostAlloc(&cold_host, H * page_stride * page_bytes, cudaHostAllocMapped));
  BENCH_CUDA(cudaHostGetDevicePointer(&cold_dev, cold_host, 0));
  uint8_t* cold = static_cast<uint8_t*>(cold_host);
  std::vector<uint64_t> pages(H * page_stride);
  for (int h = 0; h < H; ++h) {
    for (int64_t p = 0; p < page_stride; ++p) {
      pages[h * page_stride + p] =
          reinterpret_cast<uint64_t>(cold_dev) + (h * page_stride + p) * page_bytes;
    }
    for (int t = 0; t < T; ++t) {
      uint8_t* page = cold + (h * page_stride + t / kernels::kKvPageTokens) * page_bytes;
      const int64_t src = (int64_t{t} * H + h) * D;
      std::copy_n(hk.data() + src, D, page + (t % kernels::kKvPageTokens) * D);
      std::copy_n(hv.data() + src, D,
                  page + (kernels::kKvPageTokens + t % kernels::kKvPageTokens) * D);
    }
  }
  uint64_t* d_pages = nullptr;
  int32_t* d_slots = nullptr;
  BENCH_CUDA(cudaMalloc(&d_pages, pages.size() * 8));
  BENCH_CUDA(cudaMemcpy(d_pages, pages.data(), pages.size() * 8, cudaMemcpyHostToDevice));
  BENCH_CUDA(cudaMalloc(&d_slots, int64_t{H} * T * 4));
  const int64_t out_n = int64_t{hot.num_q} * hot.num_heads * D;

  std::vector<TieredBsaRow> rows;
  for (const kernels::KvDtype bank : {kernels::KvDtype::kBf16, kernels::KvDtype::kFp8E5m2}) {
    kernels::BsaPrefillGpuParams h = hot;
    h.kv_dtype = bank;
    if (bank == kernels::KvDtype::kFp8E5m2) h.k = k8, h.v = v8;
    for (double rate : hit_rates) {
      TieredBsaRow r;
      r.bank = kernels::KvDtypeName(bank);
      r.hit = rate;
      std::vector<int32_t> slots(int64_t{H} * T);
      uint64_t seed = 0x51ed27 + static_cast<uint64_t>(rate * 1000);
      for (int hh = 0; hh < H; ++hh) {
        for (int t = 0; t < T; ++t) {
          const bool in = rate >= 1.0 || (SplitMix(&seed) % 1000000) < rate * 1000000;
          slots[int64_t{hh} * T + t] = in ? t * H + hh : -1;
          r.hits += in;
          ++r.tokens;
        }
      }
      BENCH_CUDA(cudaMemcpy(d_slots, slots.data(), slots.size() * 4, cudaMemcpyHostToDevice));
      kernels::BsaPrefillGpuParams tp = h;
      tp.k = tp.v = nullptr;
      tp.tiered.bank_k = h.k;
      tp.tiered.bank_v = h.v;
      tp.tiered.slot_table = d_slots;
      tp.tiered.slot_stride = T;
      tp.tiered.cold_pages = d_pages;
      tp.tiered.page_stride = page_stride;
      BENCH_CUDA(cudaMemsetAsync(tp.out, 0xff, out_n * 2, s));
      BENCH_OK(kernels::BsaPrefillAttentionGpu(tp, s));  // warm-up
      r.nan = CountNonFiniteBf16(tp.out, out_n, s);
      BENCH_OK(kernels::BsaPrefillAttentionGpu(h, s));
      std::vector<double> th, tt;
      for (int i = 0; i < reps; ++i) {
        th.push_back(TimeMs(s, [&] { BENCH_OK(kernels::BsaPrefillAttentionGpu(h, s)); }));
        tt.push_back(TimeMs(s, [&] { BENCH_OK(kernels::BsaPrefillAttentionGpu(tp, s)); }));
      }
      r.hot_ms = Median(th);
      r.tiered_ms = Median(tt);
      std::printf(
          "  BSA only, tiered %-8s bank, hits %5.1f%% (%lld / %lld): %9.2f ms; all-hot "
          "%s %7.2f ms; tiered/hot = %.3f (NaN outputs: %lld)\n",
          r.bank.c_str(), 100.0 * r.hits / r.tokens, static_cast<long long>(r.hits),
          static_cast<long long>(r.tokens), r.tiered_ms, r.bank.c_str(), r.hot_ms,
          r.tiered_ms / r.hot_ms, static_cast<long long>(r.nan));
      rows.push_back(r);
    }
  }
  BENCH_CUDA(cudaFree(d_slots));
  BENCH_CUDA(cudaFree(d_pages));
  BENCH_CUDA(cudaFreeHost(cold_host));
  return rows;
}

std::string TieredRowsJson(const std::vector<TieredBsaRow>& rows) {
  std::string j = "[";
  char buf[512];
  for (size_t i = 0; i < rows.size(); ++i) {
    const TieredBsaRow& r = rows[i];
    std::snprintf(buf, sizeof(buf),
                  "%s\n    {\"bank\": \"%s\", \"hit\": %.2f, \"hits\": %lld, \"tokens\": %lld, "
                  "\"tiered_ms\": %.3f, \"hot_ms\": %.3f, \"tiered_over_hot\": %.4f, "
                  "\"nan\": %lld}",
                  i ? "," : "", r.bank.c_str(), r.hit, static_cast<long long>(r.hits),
                  static_cast<long long>(r.tokens), r.tiered_ms, r.hot_ms, r.tiered_ms / r.hot_ms,
                  static_cast<long long>(r.nan));
    j += buf;
  }
  return j + "]";
}

}  // namespace hipserve::bench
