// Test-only helpers for GPU tests: an owning device copy of a host vector (with optional
// leading padding so kernels that read before their pointer are caught) and bf16 conversions.
// Include only from *_gpu_test.cc files (needs the CUDA runtime).
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "kernels/dtype/bf16.h"

namespace hipserve::kernels::testing {

inline constexpr uint16_t kBf16NaN = 0x7fc0;

template <typename T>
class DeviceVec {
 public:
  explicit DeviceVec(const std::vector<T>& host, int pad = 0) : size_(host.size()), pad_(pad) {
    EXPECT_EQ(cudaMalloc(&base_, (size_ + pad_) * sizeof(T)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(data(), host.data(), size_ * sizeof(T), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  ~DeviceVec() { cudaFree(base_); }
  DeviceVec(const DeviceVec&) = delete;
  DeviceVec& operator=(const DeviceVec&) = delete;
  T* data() { return static_cast<T*>(base_) + pad_; }
  size_t size() const { return size_; }
  std::vector<T> ToHost() {
    std::vector<T> h(size_);
    EXPECT_EQ(cudaMemcpy(h.data(), data(), size_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }

 private:
  void* base_ = nullptr;
  size_t size_;
  int pad_;
};

inline std::vector<uint16_t> ToBf16(const std::vector<float>& f) {
  std::vector<uint16_t> b(f.size());
  FloatToBf16Array(f.data(), b.data(), static_cast<int64_t>(f.size()));
  return b;
}

inline std::vector<float> ToFloat(const std::vector<uint16_t>& b) {
  std::vector<float> f(b.size());
  Bf16ToFloatArray(b.data(), f.data(), static_cast<int64_t>(b.size()));
  return f;
}

}  // namespace hipserve::kernels::testing
