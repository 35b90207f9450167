// Test-only helpers of the decode attention GPU tests: device / mapped host buffers, bf16 and
// fp8 e5m2 KV representations, and a naive same-precision attention (the CONVENTIONS pass
// rule's "naive" side: bf16 scores and probabilities, bf16 output).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/attention_cuda/kv_source.h"
#include "kernels/dtype/bf16.h"
#include "kernels/testing/compare.h"
#include "kvstore/fp8_e5m2.h"  // header-only codec: the bit pattern the kernels must decode

namespace hipserve::kernels::decode_test {

class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(std::max<size_t>(bytes, 16)) {
    EXPECT_EQ(cudaMalloc(&ptr_, bytes_), cudaSuccess);
  }
  template <typename T>
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size() * sizeof(T)) {
    EXPECT_EQ(cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <typename T = void>
  T* get() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }
  template <typename T>
  std::vector<T> ToHost(size_t n) const {
    std::vector<T> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), ptr_, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_;
};

// Pinned, device-mapped host memory (the cold tier's kind of memory).
class MappedHostBuffer {
 public:
  explicit MappedHostBuffer(size_t bytes) {
    EXPECT_EQ(cudaHostAlloc(&host_, std::max<size_t>(bytes, 16), cudaHostAllocMapped), cudaSuccess);
    EXPECT_EQ(cudaHostGetDevicePointer(&device_, host_, 0), cudaSuccess);
  }
  ~MappedHostBuffer() { cudaFreeHost(host_); }
  MappedHostBuffer(const MappedHostBuffer&) = delete;
  MappedHostBuffer& operator=(const MappedHostBuffer&) = delete;
  uint8_t* host() const { return static_cast<uint8_t*>(host_); }
  uint64_t device_address() const { return reinterpret_cast<uint64_t>(device_); }

 private:
  void* host_ = nullptr;
  void* device_ = nullptr;
};

inline uint64_t SeedOf(const std::string& name) {  // FNV-1a: fixed per case
  uint64_t seed = 1469598103934665603ull;
  for (char ch : name) seed = (seed ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
  return seed;
}

inline std::vector<uint16_t> ToBf16Bits(const std::vector<float>& f) {
  std::vector<uint16_t> b(f.size());
  FloatToBf16Array(f.data(), b.data(), static_cast<int64_t>(f.size()));
  return b;
}

// K or V of one test in every representation the kernels read. `values` are what a correct
// kernel computes with: bf16-rounded randoms, or the decoded fp8 rounding of them.
struct KvTensor {
  std::vector<float> values;
  std::vector<uint16_t> bf16;  // bf16 bits of `values` (exact)
  std::vector<uint8_t> fp8;    // e5m2 codes (only when fp8 is used)
};

inline KvTensor MakeKv(int64_t n, uint64_t seed, float lo, float hi, bool fp8) {
  KvTensor t;
  t.values = testing::RandomVector(n, seed, lo, hi);
  RoundToBf16InPlace(t.values.data(), n);
  if (fp8) {
    t.fp8.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      t.fp8[i] = kvstore::Bf16ToFp8E5m2(FloatToBf16(t.values[i]));
      t.values[i] = Bf16ToFloat(kvstore::Fp8E5m2ToBf16(t.fp8[i]));
    }
  }
  t.bf16 = ToBf16Bits(t.values);
  return t;
}

// Naive bf16 attention of one query row over explicit key / value rows (keys already rotated
// when RoPE applies): scores and probabilities rounded to bf16, output rounded to bf16.
inline void NaiveBf16Attend(const float* q, const std::vector<const float*>& keys,
                            const std::vector<const float*>& vals, int d, float scale,
                            double* out) {
  std::vector<double> s(keys.size());
  double mx = -INFINITY;
  for (size_t j = 0; j < keys.size(); ++j) {
    float dot = 0.f;
    for (int x = 0; x < d; ++x) dot += q[x] * keys[j][x];
    s[j] = RoundToBf16(RoundToBf16(dot) * scale);
    mx = std::max(mx, s[j]);
  }
  double z = 0;
  for (double& e : s) z += (e = std::exp(e - mx));
  std::vector<double> acc(d, 0.0);
  for (size_t j = 0; j < keys.size(); ++j) {
    const double p = RoundToBf16(static_cast<float>(s[j] / z));
    for (int x = 0; x < d; ++x) acc[x] += p * vals[j][x];
  }
  for (int x = 0; x < d; ++x) out[x] = RoundToBf16(static_cast<float>(acc[x]));
}

// The same tiered K/V with every entry's tables in its own allocation (TieredKvSource::entries):
// entry b takes lists [b * kv_heads, (b + 1) * kv_heads) of `shared` (a shared-table source),
// copied with strides of its own (slot stride lens[b] + 3 b + 1, page stride
// ceil(lens[b] / 64) + b + 1), so reading an entry through the shared layout would read
// other tokens. Slots past an entry's length are absent (-1), pages past it null.
struct PerEntryTiered {
  std::vector<std::unique_ptr<DeviceBuffer>> tables;
  std::unique_ptr<DeviceBuffer> entries;
  TieredKvSource src;
};

inline void SplitTieredPerEntry(const TieredKvSource& shared, int kv_heads,
                                const std::vector<int>& lens, PerEntryTiered* out) {
  const int batch = static_cast<int>(lens.size());
  std::vector<int32_t> slots(static_cast<size_t>(batch) * kv_heads * shared.slot_stride);
  std::vector<uint64_t> pages(static_cast<size_t>(batch) * kv_heads * shared.page_stride);
  EXPECT_EQ(cudaMemcpy(slots.data(), shared.slot_table, slots.size() * 4, cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(cudaMemcpy(pages.data(), shared.cold_pages, pages.size() * 8, cudaMemcpyDeviceToHost),
            cudaSuccess);
  std::vector<TieredKvTables> entries(batch);
  for (int b = 0; b < batch; ++b) {
    const int64_t ss = lens[b] + 3 * b + 1;
    const int64_t np = (lens[b] + kKvPageTokens - 1) / kKvPageTokens;
    const int64_t ps = np + b + 1;
    std::vector<int32_t> s(static_cast<size_t>(kv_heads) * ss, -1);
    std::vector<uint64_t> pg(static_cast<size_t>(kv_heads) * ps, 0);
    for (int h = 0; h < kv_heads; ++h) {
      const int64_t list = int64_t{b} * kv_heads + h;
      std::copy_n(slots.data() + list * shared.slot_stride, lens[b], s.data() + h * ss);
      std::copy_n(pages.data() + list * shared.page_stride, np, pg.data() + h * ps);
    }
    out->tables.push_back(std::make_unique<DeviceBuffer>(s));
    entries[b].slot_table = out->tables.back()->get<int32_t>();
    entries[b].slot_stride = ss;
    out->tables.push_back(std::make_unique<DeviceBuffer>(pg));
    entries[b].cold_pages = out->tables.back()->get<uint64_t>();
    entries[b].page_stride = ps;
  }
  out->entries = std::make_unique<DeviceBuffer>(entries);
  out->src = shared;
  out->src.slot_table = nullptr;  // must not be read
  out->src.cold_pages = nullptr;
  out->src.slot_stride = out->src.page_stride = 0;
  out->src.entries = out->entries->get<TieredKvTables>();
}

// Relative L2 error of a bf16 output (METHOD.md: bf16 lands at 1e-3..1e-2).
inline double RelL2(const std::vector<float>& got, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

}  // namespace hipserve::kernels::decode_test
