// AppendKvRowsFp8 (worker/cuda_kv_encode.h).
#include <cuda_runtime.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_check.h"
#include "worker/cuda_kv_encode.h"
#include "worker/cuda_kv_fp8.cuh"

namespace hipserve::worker {
namespace {

// grid rows, block threads: 8 elements of the row per thread and pass, K and V.
__global__ void AppendRowsFp8(const uint16_t* k, const uint16_t* v, const int64_t* dst_rows,
                              int row_elems, uint8_t* pool_k, uint8_t* pool_v) {
  const int row = blockIdx.x;
  const int64_t dst = dst_rows[row];
  if (dst < 0) return;
  const int64_t src_at = int64_t{row} * row_elems, dst_at = dst * row_elems;
  for (int e = threadIdx.x * 8; e < row_elems; e += blockDim.x * 8) {
    const uint2 ck = EncodeFp8x8(*reinterpret_cast<const uint4*>(k + src_at + e));
    const uint2 cv = EncodeFp8x8(*reinterpret_cast<const uint4*>(v + src_at + e));
    *reinterpret_cast<uint2*>(pool_k + dst_at + e) = ck;
    *reinterpret_cast<uint2*>(pool_v + dst_at + e) = cv;
  }
}

}  // namespace

absl::Status AppendKvRowsFp8(const KvFp8AppendParams& p, void* stream) {
  if (p.rows < 0 || p.row_elems <= 0 || p.row_elems % 8 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("AppendKvRowsFp8: rows ", p.rows, ", row_elems ", p.row_elems,
                     " (rows >= 0 and row_elems a positive multiple of 8 needed)"));
  }
  if (p.rows == 0) return absl::OkStatus();
  if (p.k == nullptr || p.v == nullptr || p.dst_rows == nullptr || p.pool_k == nullptr ||
      p.pool_v == nullptr) {
    return absl::InvalidArgumentError("AppendKvRowsFp8: null pointer");
  }
  const int threads = std::min(256, std::max(32, (p.row_elems / 8 + 31) / 32 * 32));
  AppendRowsFp8<<<p.rows, threads, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<const uint16_t*>(p.k), static_cast<const uint16_t*>(p.v), p.dst_rows, p.row_elems,
      static_cast<uint8_t*>(p.pool_k), static_cast<uint8_t*>(p.pool_v));
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace hipserve::worker
