// Host side of EmbeddingGpu: validation, copy-width dispatch, launch.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/param_checks.h"
#include "kernels/embedding/embedding.h"
#include "kernels/embedding/embedding_kernel.cuh"

namespace hipserve::kernels {
namespace {

using internal::Aligned16;

absl::Status Validate(const EmbeddingGpuParams& p) {
  if (p.table == nullptr) return absl::InvalidArgumentError("EmbeddingGpu: table is null");
  if (p.ids == nullptr) return absl::InvalidArgumentError("EmbeddingGpu: ids is null");
  if (p.out == nullptr) return absl::InvalidArgumentError("EmbeddingGpu: out is null");
  if (p.vocab_begin < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("EmbeddingGpu: vocab_begin must be >= 0, got ", p.vocab_begin));
  }
  if (p.vocab_end <= p.vocab_begin) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EmbeddingGpu: vocab_end (", p.vocab_end, ") must be > vocab_begin (", p.vocab_begin, ")"));
  }
  if (p.hidden <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("EmbeddingGpu: hidden must be > 0, got ", p.hidden));
  }
  if (p.num_tokens <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("EmbeddingGpu: num_tokens must be > 0, got ", p.num_tokens));
  }
  return absl::OkStatus();
}

int ThreadsFor(int units) { return std::min(std::max((units + 31) / 32 * 32, 32), 256); }

}  // namespace

absl::Status EmbeddingGpu(const EmbeddingGpuParams& p, void* stream) {
  if (absl::Status s = Validate(p); !s.ok()) return s;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (p.hidden % 8 == 0 && Aligned16(p.table) && Aligned16(p.out)) {
    const int units = p.hidden / 8;
    embedding_internal::EmbeddingKernel<uint4><<<p.num_tokens, ThreadsFor(units), 0, s>>>(
        static_cast<const uint4*>(p.table), p.vocab_begin, p.vocab_end, p.ids, units,
        static_cast<uint4*>(p.out));
  } else {
    embedding_internal::EmbeddingKernel<uint16_t><<<p.num_tokens, ThreadsFor(p.hidden), 0, s>>>(
        static_cast<const uint16_t*>(p.table), p.vocab_begin, p.vocab_end, p.ids, p.hidden,
        static_cast<uint16_t*>(p.out));
  }
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace hipserve::kernels
