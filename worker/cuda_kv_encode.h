// AppendKvRowsFp8: writes a step's new K/V rows into the CUDA backend's GPU-resident KV pool
// when the pool holds fp8 e5m2 (--kv_dtype=fp8 without offload, CudaBackendOptions::kv_dtype).
// One launch per layer encodes the step's bf16 rows (round to nearest even, saturating:
// kvstore/fp8_e5m2.h, the same codes the offloaded tiers store) and scatters them to their pool
// rows; the attention and mask kernels decode them exactly (kernels::KvDtype::kFp8E5m2).
// CUDA builds only (compiled with cuda_backend.cu); the header carries no CUDA types.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace hipserve::worker {

struct KvFp8AppendParams {
  const void* k = nullptr;  // [rows][row_elems] bf16 (uint16_t storage), device, 16-byte aligned
  const void* v = nullptr;  // [rows][row_elems] bf16
  // [rows] device: the pool row that step row r goes to; a negative entry skips the row.
  const int64_t* dst_rows = nullptr;
  int rows = 0;            // >= 0 (0: nothing is launched)
  int row_elems = 0;       // elements per row (local KV heads x head_dim), a positive multiple of 8
  void* pool_k = nullptr;  // [pool_rows][row_elems] fp8 e5m2 codes (uint8_t), device
  void* pool_v = nullptr;  // [pool_rows][row_elems] fp8 e5m2 codes
};

// Enqueues the encode on `stream` (a cudaStream_t); InvalidArgument on bad params.
absl::Status AppendKvRowsFp8(const KvFp8AppendParams& p, void* stream);

}  // namespace hipserve::worker
